//! `inspectord enroll`: real good train images → a reference file for this model, which a replay
//! then scores against; a corrupt image makes enrolling fail without writing anything;
//! `--max-references` keeps a k-center coreset whose threshold holds for every enrolled part.

mod common;

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{Artifacts, TestConfig};

const LIMIT: Duration = Duration::from_secs(120);
const COUNT: usize = 40;

/// The first `n` good images of the train split, by file name.
fn good_train_images(n: usize) -> Vec<String> {
    let mut files: Vec<String> = common::load_split()
        .into_iter()
        .filter(|r| r.split == "train" && r.label == "good")
        .map(|r| r.file)
        .collect();
    files.sort();
    assert!(
        files.len() >= n,
        "only {} good train images in the split",
        files.len()
    );
    files.truncate(n);
    files
}

fn copy_images(files: &[String], dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    for f in files {
        std::fs::copy(common::image(f), dir.join(f)).unwrap();
    }
}

fn enroll(tmp: &Path, config: &Path, images: &Path, out: &Path) -> common::Finished {
    enroll_with(tmp, config, images, out, &[])
}

fn enroll_with(
    tmp: &Path,
    config: &Path,
    images: &Path,
    out: &Path,
    extra: &[&str],
) -> common::Finished {
    let mut args: Vec<&OsStr> = vec![
        "enroll".as_ref(),
        "--config".as_ref(),
        config.as_os_str(),
        "--images".as_ref(),
        images.as_os_str(),
        "--out".as_ref(),
        out.as_os_str(),
    ];
    args.extend(extra.iter().map(OsStr::new));
    common::run(common::command(tmp, args), LIMIT)
}

/// The `references` tensor's rows, read from the safetensors header's offsets (independently of
/// the crate's own parser).
fn reference_rows(bytes: &[u8]) -> Vec<Vec<f32>> {
    let header = common::safetensors_header(bytes);
    let t = &header["references"];
    assert_eq!(t["dtype"], "F32");
    let dim = t["shape"][1].as_u64().unwrap() as usize;
    let start = 8 + u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let (a, b) = (
        t["data_offsets"][0].as_u64().unwrap() as usize,
        t["data_offsets"][1].as_u64().unwrap() as usize,
    );
    let values: Vec<f32> = bytes[start + a..start + b]
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect();
    values.chunks_exact(dim).map(<[f32]>::to_vec).collect()
}

#[test]
fn enrolled_references_are_used_by_replay() {
    let tmp = common::temp_dir();
    let art = Artifacts::snapshot(tmp.path());
    let files = good_train_images(COUNT);
    let images = tmp.path().join("good");
    copy_images(&files, &images);
    let config = TestConfig::new(&art, &images).write(&tmp.path().join("inspectord.toml"));
    let out: PathBuf = tmp.path().join("enrolled.safetensors");

    enroll(tmp.path(), &config, &images, &out).assert_success();
    let bytes = std::fs::read(&out).expect("enroll wrote the reference file");
    let header = common::safetensors_header(&bytes);
    let meta = common::safetensors_metadata(&bytes);
    assert_eq!(
        meta["model_sha256"], art.model_sha256,
        "references must record the model's sha256"
    );
    assert_eq!(meta["count"], COUNT.to_string());
    let dim: usize = meta["embedding_dim"].parse().unwrap();
    assert_eq!(
        header["references"]["shape"],
        serde_json::json!([COUNT, dim])
    );
    assert_eq!(header["references"]["dtype"], "F32");
    let threshold: f64 = meta["threshold"].parse().expect("threshold is a number");
    assert!(
        threshold.is_finite() && threshold > 0.0,
        "threshold {threshold}"
    );
    let new_id = &common::sha256_hex(&bytes)[..16];
    assert_ne!(new_id, art.reference_set);

    // Replay the enrolled images against the new references: each one is its own nearest
    // reference (the rows are in file-name order, as enrolled) at distance zero.
    let mut cfg = TestConfig::new(&art, &images);
    cfg.references = out.clone();
    let socket = tmp.path().join("v.sock");
    cfg.socket = Some(socket.clone());
    let config = cfg.write(&tmp.path().join("enrolled.toml"));
    let daemon = common::replay_waiting(tmp.path(), &config, 1, LIMIT);
    let reader = common::spawn_reader(daemon.connect(&socket, LIMIT), LIMIT);
    let got = reader.join().unwrap();
    let done = daemon.wait(LIMIT);
    done.assert_success();

    let msgs = common::parse_json_lines(&common::socket_lines(&got));
    assert_eq!(msgs[0]["type"], "hello");
    assert_eq!(
        msgs[0]["reference_set"], new_id,
        "hello must name the new reference set"
    );
    let verdicts = common::parse_json_lines(&done.stdout);
    assert_eq!(verdicts, msgs[1..], "stdout and socket verdicts differ");
    assert_eq!(verdicts.len(), COUNT);
    for (i, (v, file)) in verdicts.iter().zip(&files).enumerate() {
        common::assert_wire_verdict(v);
        assert_eq!(v["frame"], file.as_str());
        assert_eq!(v["reference_set"], new_id);
        assert_eq!(v["model_sha256"], art.model_sha256.as_str());
        assert_eq!(v["threshold"].as_f64(), Some(threshold));
        assert_eq!(
            v["verdict"], "pass",
            "an enrolled image must pass against its own references: {v}"
        );
        assert_eq!(
            v["reference_index"].as_u64(),
            Some(i as u64),
            "{file} should be nearest to itself: {v}"
        );
        assert!(
            v["score"].as_f64().unwrap().abs() < 1e-5,
            "{file} against itself: {v}"
        );
    }
}

#[test]
fn corrupt_image_fails_enrolling_and_writes_nothing() {
    let tmp = common::temp_dir();
    let art = Artifacts::snapshot(tmp.path());
    let files = good_train_images(5);
    let images = tmp.path().join("good");
    copy_images(&files, &images);
    let png = std::fs::read(common::image(&files[0])).unwrap();
    std::fs::write(images.join("zz-truncated.png"), &png[..png.len() / 2]).unwrap();
    let config = TestConfig::new(&art, &images).write(&tmp.path().join("inspectord.toml"));
    let out = tmp.path().join("refs").join("enrolled.safetensors");
    std::fs::create_dir(out.parent().unwrap()).unwrap();

    let done = enroll(tmp.path(), &config, &images, &out);
    done.assert_failure();
    assert!(
        done.stderr.contains("zz-truncated.png"),
        "stderr should name the corrupt image:\n{}",
        done.stderr
    );
    assert!(
        !out.exists(),
        "enroll wrote {} despite the corrupt image",
        out.display()
    );
    let left: Vec<_> = std::fs::read_dir(out.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(left.is_empty(), "enroll left files behind: {left:?}");
}

const ENROLLED: usize = 160;
const KEPT: usize = 64;

#[test]
fn max_references_keeps_a_k_center_coreset_whose_threshold_holds_for_every_enrolled_part() {
    let tmp = common::temp_dir();
    let art = Artifacts::snapshot(tmp.path());
    let files = good_train_images(ENROLLED);
    let images = tmp.path().join("good");
    copy_images(&files, &images);
    let config = TestConfig::new(&art, &images).write(&tmp.path().join("inspectord.toml"));
    let all_out = tmp.path().join("all.safetensors");
    let out = tmp.path().join("coreset.safetensors");

    enroll(tmp.path(), &config, &images, &all_out).assert_success();
    let kept = KEPT.to_string();
    let done = enroll_with(
        tmp.path(),
        &config,
        &images,
        &out,
        &["--max-references", &kept],
    );
    done.assert_success();
    assert!(
        done.stdout.concat().contains("selected by k-center"),
        "{:?}",
        done.stdout
    );

    let all_bytes = std::fs::read(&all_out).unwrap();
    let all_meta = common::safetensors_metadata(&all_bytes);
    assert_eq!(all_meta["count"], ENROLLED.to_string());
    assert_eq!(all_meta["enrolled_count"], ENROLLED.to_string());
    assert_eq!(all_meta["coreset"], "none");

    let bytes = std::fs::read(&out).expect("enroll wrote the coreset reference file");
    let meta = common::safetensors_metadata(&bytes);
    assert_eq!(meta["count"], KEPT.to_string());
    assert_eq!(meta["enrolled_count"], ENROLLED.to_string());
    assert_eq!(meta["coreset"], "k-center");
    assert_eq!(meta["model_sha256"], art.model_sha256);
    assert!(
        meta["threshold_method"].contains(&format!("over {ENROLLED} good images"))
            && meta["threshold_method"].contains("k-center"),
        "{}",
        meta["threshold_method"]
    );
    let threshold: f64 = meta["threshold"].parse().unwrap();
    assert!(threshold.is_finite() && threshold > 0.0, "{threshold}");

    // Every kept row is one of the enrolled embeddings, none twice.
    let all_rows = reference_rows(&all_bytes);
    let rows = reference_rows(&bytes);
    assert_eq!(rows.len(), KEPT);
    let positions: Vec<usize> = rows
        .iter()
        .map(|r| {
            all_rows
                .iter()
                .position(|a| a == r)
                .expect("a kept row is an enrolled embedding")
        })
        .collect();
    let mut distinct = positions.clone();
    distinct.sort_unstable();
    distinct.dedup();
    assert_eq!(distinct.len(), KEPT, "a row was kept twice: {positions:?}");

    // Replay every enrolled part against the coreset: all get verdicts, the kept ones are their
    // own nearest reference, and the false-reject target (1 %) holds for the whole population.
    let mut cfg = TestConfig::new(&art, &images);
    cfg.references = out.clone();
    let replay_config = cfg.write(&tmp.path().join("coreset.toml"));
    let args = [
        "replay".as_ref(),
        "--config".as_ref(),
        replay_config.as_os_str(),
    ];
    let replayed = common::run(common::command(tmp.path(), args), LIMIT);
    replayed.assert_success();
    let verdicts = common::parse_json_lines(&replayed.stdout);
    assert_eq!(verdicts.len(), ENROLLED);
    let id = &common::sha256_hex(&bytes)[..16];
    let mut fails = 0;
    for (i, (v, file)) in verdicts.iter().zip(&files).enumerate() {
        common::assert_wire_verdict(v);
        assert_eq!(v["frame"], file.as_str());
        assert_eq!(v["reference_set"], id);
        assert_eq!(v["threshold"].as_f64(), Some(threshold));
        let score = v["score"].as_f64().unwrap();
        match positions.iter().position(|&p| p == i) {
            Some(row) => {
                assert_eq!(v["reference_index"].as_u64(), Some(row as u64), "{v}");
                assert!(score.abs() < 1e-5, "{file} against itself: {v}");
            }
            None => assert!(score > 1e-5, "{file} was not kept, yet scores {score}"),
        }
        match v["verdict"].as_str() {
            Some("pass") => {}
            Some("fail") => fails += 1,
            other => panic!("{file}: verdict {other:?}: {v}"),
        }
    }
    assert!(
        fails <= ENROLLED / 100,
        "{fails} of {ENROLLED} enrolled good parts fail against the coreset (target 1 %)"
    );
}

#[test]
fn max_references_below_k_is_refused_and_writes_nothing() {
    let tmp = common::temp_dir();
    let art = Artifacts::snapshot(tmp.path());
    let images = tmp.path().join("good");
    copy_images(&good_train_images(5), &images);
    let config = tmp.path().join("inspectord.toml");
    let toml = TestConfig::new(&art, &images).to_toml() + "\n[scoring]\nk = 3\n";
    std::fs::write(&config, toml).unwrap();
    let out = tmp.path().join("enrolled.safetensors");

    let done = enroll_with(
        tmp.path(),
        &config,
        &images,
        &out,
        &["--max-references", "2"],
    );
    done.assert_failure();
    assert!(
        done.stderr.contains("scoring.k = 3") && done.stderr.contains("--max-references"),
        "{}",
        done.stderr
    );
    assert!(!out.exists());

    let done = enroll_with(
        tmp.path(),
        &config,
        &images,
        &out,
        &["--max-references", "0"],
    );
    done.assert_failure();
    assert!(done.stderr.contains("--max-references"), "{}", done.stderr);
    assert!(!out.exists());
}
