//! `inspectord enroll`: real good train images → a reference file for this model, which a replay
//! then scores against; a corrupt image makes enrolling fail without writing anything.

mod common;

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
    let args = [
        "enroll".as_ref(),
        "--config".as_ref(),
        config.as_os_str(),
        "--images".as_ref(),
        images.as_os_str(),
        "--out".as_ref(),
        out.as_os_str(),
    ];
    common::run(common::command(tmp, args), LIMIT)
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
