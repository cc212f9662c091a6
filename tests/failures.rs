//! Failure-image logging in a real replay: the frames of `fail` and `error` verdicts are saved
//! with their seq and verdict in the file name, `pass` frames are not, and the quota holds.

mod common;

use std::time::Duration;

use common::{Artifacts, TestConfig, temp_dir};

#[test]
fn fail_and_error_frames_are_saved_within_the_quota() {
    let tmp = temp_dir();
    let art = Artifacts::snapshot(tmp.path());
    let images = tmp.path().join("images");
    std::fs::create_dir(&images).unwrap();
    // 4 predicted good, 4 predicted defective, one corrupt file
    let good = art
        .predictions
        .iter()
        .filter(|p| p.prediction == "good")
        .take(4);
    let bad = art
        .predictions
        .iter()
        .filter(|p| p.prediction == "defective")
        .take(4);
    let mut expected_fail = Vec::new();
    for p in good.chain(bad) {
        std::fs::copy(common::image(&p.file), images.join(&p.file)).unwrap();
        if p.prediction == "defective" {
            expected_fail.push(p.file.clone());
        }
    }
    std::fs::write(
        images.join("zz-corrupt.png"),
        b"\x89PNG\r\n\x1a\nthis is not a png",
    )
    .unwrap();
    let saved = tmp.path().join("failures");
    let mut toml = TestConfig::new(&art, &images).to_toml();
    toml += &format!(
        "\n[failures]\ndir = {}\nquota_mb = 1\n",
        common::toml_str(saved.to_str().unwrap())
    );
    let config = tmp.path().join("c.toml");
    std::fs::write(&config, toml).unwrap();

    let out = common::run(
        common::command(
            tmp.path(),
            ["replay".as_ref(), "--config".as_ref(), config.as_os_str()],
        ),
        Duration::from_secs(60),
    );
    out.assert_success();
    let verdicts = common::parse_json_lines(&out.stdout);
    let mut want: Vec<String> = verdicts
        .iter()
        .filter(|v| v["verdict"] != "pass")
        .map(|v| {
            let frame = v["frame"].as_str().unwrap();
            let stem = frame.trim_end_matches(".png");
            format!(
                "seq{:010}-{}-{stem}.png",
                v["seq"].as_u64().unwrap(),
                v["verdict"].as_str().unwrap()
            )
        })
        .collect();
    want.sort();
    let mut got: Vec<String> = std::fs::read_dir(&saved)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .map(|n| {
            n.split_once("-seq")
                .map(|(_, rest)| format!("seq{rest}"))
                .expect("time-stamped name")
        })
        .collect();
    got.sort();
    assert_eq!(got, want, "saved failure images");
    assert_eq!(want.len(), expected_fail.len() + 1, "4 fail + 1 error");
    // the corrupt file is kept byte for byte
    let corrupt = std::fs::read_dir(&saved)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().contains("-error-zz-corrupt"))
        .expect("error frame saved");
    assert_eq!(
        std::fs::read(corrupt).unwrap(),
        b"\x89PNG\r\n\x1a\nthis is not a png"
    );
    let total: u64 = std::fs::read_dir(&saved)
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum();
    assert!(total <= 1024 * 1024);
}
