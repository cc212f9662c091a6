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

/// Defect: with `[failures] dir` pointing at a directory that holds other files, enforcing the
/// quota deleted them. The daemon counts and removes only its own images (strict name pattern,
/// regular files, no symlinks followed); everything else survives byte for byte.
#[test]
fn quota_never_touches_files_it_did_not_write() {
    use std::os::unix::fs::FileTypeExt;

    let tmp = temp_dir();
    let art = Artifacts::snapshot(tmp.path());
    let images = tmp.path().join("images");
    std::fs::create_dir(&images).unwrap();
    // error verdicts: their frames are saved as they came, so their size is known
    for i in 0..6 {
        std::fs::write(
            images.join(format!("bad{i}.png")),
            vec![b'x'; 300 * 1024 + i],
        )
        .unwrap();
    }
    let saved = tmp.path().join("shared");
    std::fs::create_dir(&saved).unwrap();
    let outside = tmp.path().join("outside.bin");
    std::fs::write(&outside, vec![7u8; 4096]).unwrap();
    // Not the daemon's: together larger than the quota, so a quota that counted them would
    // have to delete them.
    let foreign: Vec<(&str, Vec<u8>)> = vec![
        ("references.safetensors", vec![1u8; 1536 * 1024]),
        ("notes.txt", b"do not delete\n".to_vec()),
        // almost the daemon's pattern
        (
            "2000-01-01T000000.000000Z-seq0000000001-fail-x.png.keep",
            vec![2u8; 64],
        ),
        ("2000-01-01T000000Z-seq0000000001-fail-x.png", vec![3u8; 64]),
        ("2000-01-01T000000.000000Z-seq1-fail-x.png", vec![4u8; 64]),
        (
            "2000-01-01T000000.000000Z-seq0000000001-pass-x y.png",
            vec![5u8; 64],
        ),
    ];
    for (name, bytes) in &foreign {
        std::fs::write(saved.join(name), bytes).unwrap();
    }
    // the daemon's pattern, but a symlink, a directory and a FIFO: never followed or removed
    let link = saved.join("2000-01-01T000000.000001Z-seq0000000001-fail-link.png");
    std::os::unix::fs::symlink(&outside, &link).unwrap();
    let subdir = saved.join("2000-01-01T000000.000002Z-seq0000000002-fail-dir.png");
    std::fs::create_dir(&subdir).unwrap();
    std::fs::write(subdir.join("inner.txt"), b"inner").unwrap();
    let fifo = saved.join("2000-01-01T000000.000003Z-seq0000000003-fail-fifo.png");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    // a failure image of an earlier run: the daemon's own, counted and removed first
    let old = saved.join("2000-01-01T000000.000004Z-seq0000000009-error-old.png");
    std::fs::write(&old, vec![9u8; 700 * 1024]).unwrap();

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
    assert_eq!(verdicts.len(), 6);
    assert!(
        verdicts.iter().all(|v| v["verdict"] == "error"),
        "{verdicts:?}"
    );

    for (name, bytes) in &foreign {
        let got = std::fs::read(saved.join(name))
            .unwrap_or_else(|e| panic!("{name} (not the daemon's) is gone: {e}"));
        assert_eq!(&got, bytes, "{name} was changed");
    }
    let link_meta = std::fs::symlink_metadata(&link).expect("the symlink is still there");
    assert!(link_meta.file_type().is_symlink());
    assert_eq!(std::fs::read(&outside).unwrap(), vec![7u8; 4096]);
    assert_eq!(std::fs::read(subdir.join("inner.txt")).unwrap(), b"inner");
    assert!(
        std::fs::symlink_metadata(&fifo)
            .expect("the FIFO is still there")
            .file_type()
            .is_fifo()
    );
    assert!(!old.exists(), "the earlier run's image was not counted");
    // the daemon's own images stay within the quota, the newest kept
    let own: Vec<(String, u64)> = std::fs::read_dir(&saved)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.file_type().unwrap().is_file())
        .map(|e| {
            (
                e.file_name().into_string().unwrap(),
                e.metadata().unwrap().len(),
            )
        })
        .filter(|(n, _)| n.contains("-error-bad"))
        .collect();
    assert!(!own.is_empty(), "no failure image saved");
    assert!(
        own.iter().any(|(n, _)| n.contains("-error-bad5.png")),
        "{own:?}"
    );
    let total: u64 = own.iter().map(|(_, n)| n).sum();
    assert!(total <= 1024 * 1024, "own images: {total} bytes: {own:?}");
}
