//! Parity with the Python evaluation, for every shipped encoder: replaying the held-out split
//! gives, frame by frame, the predictions, scores and nearest references of the encoder's
//! `heldout-predictions.csv`, and the accuracy of its `metrics.json`.

mod common;

use std::time::Duration;

use common::{Artifacts, Encoder, TestConfig};
use serde_json::Value;

const LIMIT: Duration = Duration::from_secs(240);
const SCORE_TOL: f64 = 1e-5;

/// The summary line `<name>: n=... accuracy 0.1234 ...` of the replay's stderr, as `(key, value)` pairs.
fn rates_line<'a>(stderr: &'a str, name: &str) -> Vec<(&'a str, &'a str)> {
    let line = stderr
        .lines()
        .find(|l| l.trim_start().starts_with(&format!("{name}:")))
        .unwrap_or_else(|| panic!("no `{name}:` line in the replay summary:\n{stderr}"));
    let tokens: Vec<&str> = line.split_whitespace().collect();
    let mut pairs: Vec<(&str, &str)> = tokens
        .windows(2)
        .map(|w| (w[0].trim_start_matches('('), w[1].trim_end_matches(')')))
        .collect();
    pairs.extend(tokens.iter().filter_map(|t| t.split_once('=')));
    pairs
}

fn value<'a>(pairs: &[(&'a str, &'a str)], key: &str) -> &'a str {
    pairs
        .iter()
        .find(|(k, _)| *k == key)
        .map(|(_, v)| *v)
        .unwrap_or_else(|| panic!("no `{key}` in {pairs:?}"))
}

#[test]
fn small_encoder_matches_python_predictions() {
    heldout_replay_matches_python_predictions(Encoder::Small);
}

#[test]
fn lite0_encoder_matches_python_predictions() {
    heldout_replay_matches_python_predictions(Encoder::Lite0);
}

fn heldout_replay_matches_python_predictions(encoder: Encoder) {
    let tmp = common::temp_dir();
    let art = Artifacts::snapshot_of(tmp.path(), encoder);
    let list = common::split_list("test");
    let order: Vec<String> = std::fs::read_to_string(&list)
        .unwrap()
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| l.rsplit('/').next().unwrap().to_string())
        .collect();
    let python = art.predictions_by_file();
    assert_eq!(
        order.len(),
        python.len(),
        "test.txt and heldout-predictions.csv list different numbers of images"
    );

    let config = TestConfig::new(&art, &list).write(&tmp.path().join("inspectord.toml"));
    let labels = common::split_csv();
    let done = common::run(
        common::command(
            tmp.path(),
            [
                "replay".as_ref(),
                "--config".as_ref(),
                config.as_os_str(),
                "--labels".as_ref(),
                labels.as_os_str(),
            ],
        ),
        LIMIT,
    );
    done.assert_success();

    let verdicts = common::parse_json_lines(&done.stdout);
    assert_eq!(
        verdicts.len(),
        order.len(),
        "one verdict per held-out image"
    );
    common::assert_seq_contiguous(&verdicts);
    let mut problems = Vec::new();
    let mut worst = 0.0f64;
    for (v, file) in verdicts.iter().zip(&order) {
        common::assert_wire_verdict(v);
        assert_eq!(v["frame"], file.as_str(), "frames must come in list order");
        let p = python
            .get(file.as_str())
            .unwrap_or_else(|| panic!("{file} has no Python prediction"));
        let want = if p.defective() { "fail" } else { "pass" };
        if v["verdict"] != want {
            problems.push(format!(
                "{file}: {} but Python predicted {} (score {} vs {})",
                v["verdict"], p.prediction, v["score"], p.score
            ));
        }
        let score = v["score"].as_f64().unwrap_or(f64::NAN);
        let diff = (score - p.score).abs();
        worst = worst.max(diff);
        if diff.is_nan() || diff > SCORE_TOL {
            problems.push(format!(
                "{file}: score {score} vs Python {} (diff {diff:e})",
                p.score
            ));
        }
        if v["reference_index"].as_u64() != Some(p.nearest_ref as u64) {
            problems.push(format!(
                "{file}: nearest reference {} vs Python {}",
                v["reference_index"], p.nearest_ref
            ));
        }
        assert_eq!(v["model_sha256"], art.model_sha256.as_str());
        assert_eq!(v["reference_set"], art.reference_set.as_str());
    }
    eprintln!(
        "{encoder:?}: {} frames, {} disagreements, max |score difference| {worst:e}",
        verdicts.len(),
        problems.len()
    );
    assert!(
        problems.is_empty(),
        "{} disagreements with the Python evaluation (max score diff {worst:e}):\n{}",
        problems.len(),
        problems.join("\n")
    );

    // The summary's accuracy and confusion matrix are the Python evaluation's.
    let held_out: &Value = art
        .metrics
        .get("test")
        .expect("metrics.json has the held-out (`test`) metrics");
    let all = rates_line(&done.stderr, "all");
    let accuracy = held_out["accuracy"]
        .as_f64()
        .expect("metrics.json test.accuracy");
    assert_eq!(
        value(&all, "accuracy"),
        format!("{accuracy:.4}"),
        "held-out accuracy"
    );
    assert_eq!(value(&all, "n"), order.len().to_string());
    let confusion = held_out.get("confusion_matrix").unwrap_or(held_out);
    for key in ["tp", "fp", "tn", "fn"] {
        let want = confusion[key]
            .as_u64()
            .unwrap_or_else(|| panic!("metrics.json has no held-out `{key}`"));
        assert_eq!(
            value(&all, key),
            want.to_string(),
            "confusion matrix `{key}`"
        );
    }
    if let Some(groups) = art.metrics.get("test_by_type").and_then(Value::as_object) {
        for (group, m) in groups {
            let line = rates_line(&done.stderr, group);
            let acc = m["accuracy"].as_f64().expect("per-type accuracy");
            assert_eq!(
                value(&line, "accuracy"),
                format!("{acc:.4}"),
                "held-out accuracy of {group}"
            );
        }
    }
}
