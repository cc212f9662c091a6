//! Fault injection against the real binary: each fault is made to happen while the daemon runs,
//! and each test asserts the invariants — one verdict per frame, no `seq` gap, no exit except
//! on purpose, no file touched that the daemon did not create.
//!
//! Faults tested elsewhere: a corrupt or out-of-range reference file swapped in + SIGHUP
//! (`systemd.rs`), the ONNX Runtime library missing (`check.rs`), a client that never reads
//! (`slow_client.rs`), a camera whose read blocks forever (`camera_stall.rs`).

mod common;

use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use common::{Artifacts, TestConfig};
use serde_json::Value;

const LIMIT: Duration = Duration::from_secs(120);

fn verdicts_of(lines: &[String]) -> Vec<Value> {
    common::parse_json_lines(lines)
        .into_iter()
        .filter(|m| m["type"] == "verdict")
        .collect()
}

/// `n` verdicts, `seq` 1..=n, one each.
fn assert_every_frame_once(verdicts: &[Value], n: usize) {
    assert_eq!(verdicts.len(), n, "verdicts: {verdicts:?}");
    common::assert_seq_contiguous(verdicts);
    assert_eq!(verdicts[0]["seq"], 1);
}

/// The failure-image directory turns into something unwritable mid-run (here: the directory is
/// moved away and a regular file takes its name, which defeats even root): saving fails, is
/// logged, and inspection goes on — every frame its verdict, and the file that took the
/// directory's place is left as it was.
#[test]
fn failure_dir_turning_unwritable_mid_run_loses_no_verdict() {
    let tmp = common::temp_dir();
    let art = Artifacts::snapshot(tmp.path());
    let images = tmp.path().join("images");
    let names = art.copy_heldout(&images, 10, 30);
    let failures = tmp.path().join("failures");
    let mut cfg = TestConfig::new(&art, &images);
    cfg.fps = 20.0;
    let toml = cfg.to_toml()
        + &format!(
            "\n[failures]\ndir = {}\nquota_mb = 16\n",
            common::toml_str(failures.to_str().unwrap())
        );
    let config = tmp.path().join("inspectord.toml");
    std::fs::write(&config, toml).unwrap();

    let daemon = common::spawn(
        common::command(
            tmp.path(),
            ["replay".as_ref(), "--config".as_ref(), config.as_os_str()],
        ),
        LIMIT,
    );
    // Let some failure images be saved, then take the directory away.
    assert!(
        common::wait_until(LIMIT, || std::fs::read_dir(&failures)
            .map(|d| d.count() >= 3)
            .unwrap_or(false)),
        "no failure image saved: {}",
        daemon.stderr_so_far()
    );
    std::fs::rename(&failures, tmp.path().join("failures.moved")).unwrap();
    std::fs::write(
        &failures,
        b"not a directory; the daemon must leave me alone\n",
    )
    .unwrap();

    let done = daemon.wait(LIMIT);
    done.assert_success();
    assert_every_frame_once(&verdicts_of(&done.stdout), names.len());
    assert!(
        done.stderr.contains("failure image not saved"),
        "the failed saves are not logged:\n{}",
        done.stderr
    );
    assert_eq!(
        std::fs::read(&failures).unwrap(),
        b"not a directory; the daemon must leave me alone\n"
    );
}

/// The socket's directory is deleted while the daemon serves: connected clients keep every
/// verdict, the daemon finishes and exits 0, and it removes nothing else.
#[test]
fn socket_directory_removed_while_running() {
    let tmp = common::temp_dir();
    let art = Artifacts::snapshot(tmp.path());
    let images = tmp.path().join("images");
    let names = art.copy_heldout(&images, 15, 15);
    let dir = tmp.path().join("run");
    let socket = dir.join("v.sock");
    let mut cfg = TestConfig::new(&art, &images);
    cfg.fps = 15.0;
    cfg.socket = Some(socket.clone());
    let config = cfg.write(&tmp.path().join("inspectord.toml"));

    let daemon = common::replay_waiting(tmp.path(), &config, 1, LIMIT);
    let client = daemon.connect(&socket, LIMIT);
    let reader = common::spawn_reader(client, LIMIT);
    std::thread::sleep(Duration::from_millis(500));
    std::fs::remove_dir_all(&dir).unwrap();
    let got = reader.join().expect("reader");
    let done = daemon.wait(LIMIT);
    done.assert_success();
    let lines = common::socket_lines(&got);
    assert_every_frame_once(&verdicts_of(&lines), names.len());
    assert_every_frame_once(&verdicts_of(&done.stdout), names.len());
    assert!(!dir.exists(), "the daemon recreated what was removed");
}

/// A client that floods the socket with garbage (and never reads) does not disturb a steady
/// client: it gets every verdict, in order; the flooder is disconnected (a line too long).
#[test]
fn a_flooding_client_does_not_disturb_a_steady_one() {
    let tmp = common::temp_dir();
    let art = Artifacts::snapshot(tmp.path());
    let images = tmp.path().join("images");
    let names = art.copy_heldout(&images, 20, 20);
    let socket = tmp.path().join("v.sock");
    let mut cfg = TestConfig::new(&art, &images);
    cfg.fps = 20.0;
    cfg.socket = Some(socket.clone());
    let config = cfg.write(&tmp.path().join("inspectord.toml"));

    let daemon = common::replay_waiting(tmp.path(), &config, 2, LIMIT);
    let mut flood = daemon.connect(&socket, LIMIT);
    let steady = common::spawn_reader(daemon.connect(&socket, LIMIT), LIMIT);
    flood
        .set_write_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let junk: Vec<u8> = (0..65536u32).map(|i| (i * 7 + 13) as u8).collect();
    let mut sent = 0usize;
    let mut closed = false;
    let until = Instant::now() + Duration::from_secs(10);
    while Instant::now() < until {
        match flood.write(&junk) {
            Ok(n) => sent += n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(_) => {
                closed = true;
                break;
            }
        }
    }
    // Protocol v2 reads client input as commands: 64 KiB without a newline is a line too long,
    // answered with an `error` and the connection closed.
    assert!(
        closed && sent > 64 * 1024,
        "the flooding client was not disconnected ({sent} bytes sent)"
    );
    let got = steady.join().expect("steady reader");
    let done = daemon.wait(LIMIT);
    done.assert_success();
    assert_every_frame_once(&verdicts_of(&common::socket_lines(&got)), names.len());
    drop(flood);
}

/// SIGTERM at every phase of start-up (before the config is read, while the model loads, around
/// binding the socket, installing the handlers, starting the threads, running): the process
/// always ends promptly, and never leaves its socket file behind.
#[test]
fn sigterm_at_every_phase_of_start_up_leaves_nothing_behind() {
    let tmp = common::temp_dir();
    let art = Artifacts::snapshot(tmp.path());
    let images = tmp.path().join("images");
    art.copy_heldout(&images, 2, 2);
    let socket = tmp.path().join("v.sock");
    let mut cfg = TestConfig::new(&art, &images);
    cfg.looping = true;
    cfg.fps = 50.0;
    cfg.socket = Some(socket.clone());
    let config = cfg.write(&tmp.path().join("inspectord.toml"));

    let mut outcomes = Vec::new();
    for delay_ms in [0u64, 1, 3, 10, 30, 60, 100, 150, 250, 400, 700, 1200] {
        let daemon = common::spawn(
            common::command(
                tmp.path(),
                ["run".as_ref(), "--config".as_ref(), config.as_os_str()],
            ),
            LIMIT,
        );
        std::thread::sleep(Duration::from_millis(delay_ms));
        if daemon.try_status().is_none() {
            daemon.signal(libc::SIGTERM);
        }
        let started = Instant::now();
        let status = loop {
            if let Some(s) = daemon.try_status() {
                break s;
            }
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "SIGTERM {delay_ms} ms after start: still running after 20 s:\n{}",
                daemon.stderr_so_far()
            );
            std::thread::sleep(Duration::from_millis(10));
        };
        let done = daemon.wait(LIMIT);
        assert!(
            !socket_exists(&socket),
            "SIGTERM {delay_ms} ms after start ({status}): the socket file was left behind:\n{}",
            done.stderr
        );
        use std::os::unix::process::ExitStatusExt;
        assert!(
            status.success() || status.signal() == Some(libc::SIGTERM),
            "SIGTERM {delay_ms} ms after start: {status}\n{}",
            done.stderr
        );
        outcomes.push((delay_ms, status.code(), status.signal()));
    }
    // At least the later signals reached a running daemon, which drained and exited 0.
    assert!(
        outcomes.iter().any(|(_, code, _)| *code == Some(0)),
        "{outcomes:?}"
    );
    eprintln!("(delay ms, exit code, signal): {outcomes:?}");
}

fn socket_exists(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok()
}
