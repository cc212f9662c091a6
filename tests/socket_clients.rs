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
    // Protocol v2 (a superset of v1): the v1 fields plus the run's state.
    assert_eq!(hello["v"], 2);
    assert_eq!(hello["protocols"], serde_json::json!([1, 2]));
    assert_eq!(hello["seq"], 0, "connected before the first frame: {hello}");
    assert_eq!(hello["retained"], Value::Null);
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

/// Defect: a client that half-closes (`shutdown(SHUT_WR)`, as `nc -N` or a PLC bridge that has
/// nothing to say) got the hello and was then dropped as "closed by client". EOF on the read
/// side must not end the write side.
#[test]
fn half_closed_client_gets_every_verdict() {
    let tmp = common::temp_dir();
    let art = Artifacts::snapshot(tmp.path());
    let images = tmp.path().join("images");
    let names = art.copy_heldout(&images, 3, 3);
    let socket = tmp.path().join("v.sock");
    let mut cfg = TestConfig::new(&art, &images);
    cfg.socket = Some(socket.clone());
    let config = cfg.write(&tmp.path().join("inspectord.toml"));

    let daemon = common::replay_waiting(tmp.path(), &config, 1, LIMIT);
    let client = daemon.connect(&socket, LIMIT);
    client.shutdown(std::net::Shutdown::Write).unwrap();
    let lines = common::socket_lines(&common::read_to_eof(client, LIMIT));
    assert_eq!(
        lines.len(),
        1 + names.len(),
        "hello + every verdict expected; got:\n{}\nstderr:\n{}",
        lines.join("\n"),
        daemon.stderr_so_far()
    );
    let msgs = common::parse_json_lines(&lines);
    assert_eq!(msgs[0]["type"], "hello");
    common::assert_seq_contiguous(&msgs[1..]);
    daemon.wait(LIMIT).assert_success();
}

/// A config whose socket serves at most `max_clients`.
fn limited_config(
    tmp: &std::path::Path,
    max_clients: usize,
) -> (std::path::PathBuf, std::path::PathBuf) {
    let art = Artifacts::snapshot(tmp);
    let images = tmp.join("images");
    art.copy_heldout(&images, 1, 1);
    let socket = tmp.join("v.sock");
    let mut cfg = TestConfig::new(&art, &images);
    cfg.socket = Some(socket.clone());
    let toml = cfg.to_toml().replace(
        "\n[runtime]",
        &format!("max_clients = {max_clients}\n\n[runtime]"),
    );
    let config = tmp.join("inspectord.toml");
    std::fs::write(&config, toml).unwrap();
    (config, socket)
}

/// Connects and reads the first line: `true` if it is the hello, `false` if the daemon closed
/// the connection without one (refused).
fn greeted(socket: &std::path::Path) -> bool {
    use std::io::BufRead;
    let s = std::os::unix::net::UnixStream::connect(socket).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut line = String::new();
    let n = std::io::BufReader::new(s).read_line(&mut line).unwrap_or(0);
    n > 0 && line.contains("\"hello\"")
}

/// Defect (issue 11): every refused connection logged a WARN, so a client hammering a full
/// socket flooded the journal. Refusals are now rate-limited in the log and counted.
#[test]
fn refusals_are_rate_limited_and_counted() {
    let tmp = common::temp_dir();
    let (config, socket) = limited_config(tmp.path(), 1);
    // held forever: two clients are waited for, one is served
    let daemon = common::replay_waiting(tmp.path(), &config, 2, LIMIT);
    let _served = daemon.connect(&socket, LIMIT);
    const REFUSED: usize = 300;
    for i in 0..REFUSED {
        assert!(
            !greeted(&socket),
            "connection {i} over max_clients was served"
        );
    }
    daemon.signal(libc::SIGTERM);
    let done = daemon.wait(LIMIT);
    done.assert_success();
    let log = common::strip_ansi(&done.stderr);
    let warnings = log
        .lines()
        .filter(|l| l.contains("verdict socket full"))
        .count();
    assert!(
        (1..=5).contains(&warnings),
        "{warnings} refusal warnings for {REFUSED} refusals:\n{log}"
    );
    assert!(
        log.lines()
            .any(|l| l.contains("refused") && l.contains(&format!("refused_total={REFUSED}"))),
        "the refusals are not counted:\n{log}"
    );
}

/// Issue 11: during heavy churn connections were refused although only one client stayed
/// connected: clients that had gone were reaped after the new ones were accepted. With room
/// for every client that is really connected, no connection is refused.
#[test]
fn churning_clients_are_not_refused_while_there_is_room() {
    const CHURNERS: usize = 4;
    const CYCLES: usize = 150;
    let tmp = common::temp_dir();
    let (config, socket) = limited_config(tmp.path(), CHURNERS + 1);
    // held forever: more clients are waited for than may connect
    let daemon = common::replay_waiting(tmp.path(), &config, CHURNERS + 2, LIMIT);
    let _steady = daemon.connect(&socket, LIMIT);
    let threads: Vec<_> = (0..CHURNERS)
        .map(|_| {
            let socket = socket.clone();
            std::thread::spawn(move || (0..CYCLES).filter(|_| !greeted(&socket)).count())
        })
        .collect();
    let refused: usize = threads.into_iter().map(|t| t.join().unwrap()).sum();
    daemon.signal(libc::SIGTERM);
    let done = daemon.wait(LIMIT);
    done.assert_success();
    assert_eq!(
        refused,
        0,
        "{refused} of {} connections refused with room for all:\n{}",
        CHURNERS * CYCLES,
        common::strip_ansi(&done.stderr)
            .lines()
            .filter(|l| l.contains("verdict"))
            .take(40)
            .collect::<Vec<_>>()
            .join("\n")
    );
}
