//! Two verdict-socket clients during a replay of real held-out ELPV images, a truncated PNG and
//! a zero-byte file: both clients get the hello and every verdict, in order, identical, with the
//! Python evaluation's predictions.

mod common;

use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::time::{Duration, SystemTime};

use common::{Artifacts, TestConfig};
use serde_json::Value;

const LIMIT: Duration = Duration::from_secs(120);
const SCORE_TOL: f64 = 1e-5;

#[test]
fn two_clients_receive_every_verdict_in_order() {
    let tmp = common::temp_dir();
    let art = Artifacts::snapshot(tmp.path());

    // 6 predicted good + 6 predicted defective held-out images, a truncated PNG and an empty
    // file, named so that the broken ones sort between real ones.
    let images = tmp.path().join("images");
    std::fs::create_dir(&images).unwrap();
    let picked = art.pick_heldout(6, 6);
    for p in &picked {
        std::fs::copy(common::image(&p.file), images.join(&p.file)).unwrap();
    }
    let mut names: Vec<String> = picked.iter().map(|p| p.file.clone()).collect();
    names.sort();
    let stem = |i: usize| names[i].trim_end_matches(".png").to_string();
    let truncated = format!("{}-truncated.png", stem(3));
    let empty = format!("{}-empty.png", stem(8));
    let png = std::fs::read(common::image(&names[0])).unwrap();
    std::fs::write(images.join(&truncated), &png[..png.len() / 2]).unwrap();
    std::fs::write(images.join(&empty), b"").unwrap();
    let mut files: Vec<String> = std::fs::read_dir(&images)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    files.sort(); // byte order of the file names: the replay order
    assert_eq!(files.len(), 14);

    let socket = tmp.path().join("v.sock");
    let mut cfg = TestConfig::new(&art, &images);
    cfg.socket = Some(socket.clone());
    let config = cfg.write(&tmp.path().join("inspectord.toml"));

    let started = SystemTime::now();
    let daemon = common::replay_waiting(tmp.path(), &config, 2, LIMIT);
    let a = daemon.connect(&socket, LIMIT);
    // A client is connected and the replay is held until the second one is, so the daemon is
    // certainly serving now. (Once both are connected the 14 frames may be done, and the socket
    // file removed, before this thread gets to look.)
    let meta =
        std::fs::symlink_metadata(&socket).expect("socket file exists while the daemon runs");
    assert!(
        meta.file_type().is_socket(),
        "{} is not a socket",
        socket.display()
    );
    assert_eq!(
        meta.permissions().mode() & 0o777,
        0o660,
        "socket mode is {:o}",
        meta.permissions().mode() & 0o777
    );
    let b = daemon.connect(&socket, LIMIT);
    let (ra, rb) = (
        common::spawn_reader(a, LIMIT),
        common::spawn_reader(b, LIMIT),
    );
    let (bytes_a, bytes_b) = (ra.join().expect("client a"), rb.join().expect("client b"));
    let done = daemon.wait(LIMIT);
    let finished_at = SystemTime::now();
    done.assert_success();
    assert!(
        !socket.exists(),
        "the socket file is still there after exit"
    );

    let lines_a = common::socket_lines(&bytes_a);
    let lines_b = common::socket_lines(&bytes_b);
    assert_eq!(lines_a, lines_b, "the two clients saw different lines");
    assert_eq!(
        lines_a.len(),
        1 + files.len(),
        "hello + one verdict per file:\n{}",
        lines_a.join("\n")
    );
    // stdout of the replay carries the same verdict lines.
    assert_eq!(done.stdout, lines_a[1..], "stdout and the socket differ");

    let msgs = common::parse_json_lines(&lines_a);
    let hello = &msgs[0];
    assert_eq!(hello["type"], "hello", "first line: {hello}");
    assert_eq!(hello["v"], 1);
    assert!(
        hello["daemon"]
            .as_str()
            .is_some_and(|d| d.starts_with("inspectord ")),
        "{hello}"
    );
    assert_eq!(hello["model_sha256"], art.model_sha256.as_str());
    assert_eq!(hello["reference_set"], art.reference_set.as_str());

    let verdicts = &msgs[1..];
    common::assert_seq_contiguous(verdicts);
    let threshold = art.threshold();
    for (v, file) in verdicts.iter().zip(&files) {
        common::assert_wire_verdict(v);
        assert_eq!(
            v["frame"],
            file.as_str(),
            "frames must come in file-name order"
        );
        assert_eq!(v["source"], "replay");
        assert_eq!(v["model_sha256"], art.model_sha256.as_str());
        assert_eq!(v["reference_set"], art.reference_set.as_str());
        let at = common::parse_captured_at(v["captured_at"].as_str().unwrap());
        assert!(
            at >= started - Duration::from_secs(1) && at <= finished_at,
            "captured_at {} is outside the run",
            v["captured_at"]
        );
        if *file == truncated || *file == empty {
            assert_eq!(v["verdict"], "error", "{v}");
            assert!(v["score"].is_null());
            assert!(
                v["error"].as_str().is_some_and(|e| !e.trim().is_empty()),
                "{v}"
            );
        } else {
            check_against_python(v, &art, threshold);
        }
    }
    let counted = |label: &str| verdicts.iter().filter(|v| v["verdict"] == label).count();
    assert_eq!(
        (counted("pass"), counted("fail"), counted("error")),
        (6, 6, 2)
    );
}

/// Pass/fail, score and nearest reference as the Python evaluation found them.
fn check_against_python(v: &Value, art: &Artifacts, threshold: f64) {
    let p = art.prediction(v["frame"].as_str().unwrap());
    let want = if p.defective() { "fail" } else { "pass" };
    assert_eq!(
        v["verdict"], want,
        "{}: Python predicted {}: {v}",
        p.file, p.prediction
    );
    let score = v["score"].as_f64().unwrap();
    assert!(
        (score - p.score).abs() <= SCORE_TOL,
        "{}: score {score}, Python {}",
        p.file,
        p.score
    );
    assert_eq!(v["threshold"].as_f64(), Some(threshold), "{v}");
    assert_eq!(
        v["reference_index"].as_u64(),
        Some(p.nearest_ref as u64),
        "{}: nearest reference",
        p.file
    );
}
