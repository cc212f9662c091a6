//! Stopping and starting cleanly: SIGTERM drains the frames already taken and exits 0 with a
//! gap-free verdict stream; a stale socket file from a crash is replaced, a live one is not.

mod common;

use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::UnixListener;
use std::time::{Duration, Instant};

use common::{Artifacts, TestConfig};
use serde_json::Value;

const LIMIT: Duration = Duration::from_secs(90);

#[test]
fn sigterm_drains_and_exits_cleanly() {
    let tmp = common::temp_dir();
    let art = Artifacts::snapshot(tmp.path());
    let images = tmp.path().join("images");
    let names = art.copy_heldout(&images, 2, 1);
    let socket = tmp.path().join("v.sock");
    let mut cfg = TestConfig::new(&art, &images);
    cfg.fps = 20.0;
    cfg.looping = true;
    cfg.socket = Some(socket.clone());
    let config = cfg.write(&tmp.path().join("inspectord.toml"));

    let daemon = common::spawn(
        common::command(
            tmp.path(),
            [
                "--log-format".as_ref(),
                "json".as_ref(),
                "replay".as_ref(),
                "--config".as_ref(),
                config.as_os_str(),
            ],
        ),
        LIMIT,
    );
    let mut early = 0;
    while early < 10 {
        match daemon.next_line(LIMIT) {
            Some(line) if line.contains("\"verdict\"") => early += 1,
            Some(_) => {}
            None => panic!(
                "stdout ended after {early} verdicts:\n{}",
                daemon.stderr_so_far()
            ),
        }
    }
    assert!(
        socket.exists(),
        "the socket file should exist while the daemon runs"
    );
    daemon.signal(libc::SIGTERM);
    let signalled = Instant::now();
    let done = daemon.wait(LIMIT);
    let stop_time = signalled.elapsed();
    done.assert_success();
    assert!(
        stop_time < Duration::from_secs(5),
        "took {stop_time:?} to stop after SIGTERM"
    );
    assert!(
        !socket.exists(),
        "the socket file is still there after exit"
    );

    let verdicts = common::parse_json_lines(&done.stdout);
    assert!(verdicts.len() >= 10, "{} verdicts", verdicts.len());
    common::assert_seq_contiguous(&verdicts);
    for (i, v) in verdicts.iter().enumerate() {
        common::assert_wire_verdict(v);
        assert_eq!(
            v["frame"],
            names[i % names.len()].as_str(),
            "the looping replay goes round the images in order"
        );
    }

    // The final log line counts exactly the verdicts printed.
    let logs: Vec<Value> = done
        .stderr
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    assert!(
        !logs.is_empty(),
        "no JSON log lines on stderr:\n{}",
        done.stderr
    );
    let stopped = logs
        .iter()
        .rfind(|l| l["fields"]["message"] == "stopped")
        .unwrap_or_else(|| panic!("no `stopped` log line:\n{}", done.stderr));
    assert_eq!(
        stopped["fields"]["frames"].as_u64(),
        Some(verdicts.len() as u64),
        "stopped line: {stopped}"
    );
    assert!(
        logs.iter().any(|l| l["fields"]["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("stop signal"))),
        "the signal was not logged:\n{}",
        done.stderr
    );
}

#[test]
fn stale_socket_is_replaced() {
    let tmp = common::temp_dir();
    let art = Artifacts::snapshot(tmp.path());
    let images = tmp.path().join("images");
    let names = art.copy_heldout(&images, 2, 1);
    let socket = tmp.path().join("v.sock");
    // A crashed daemon's leftover: a socket file nobody listens on.
    drop(UnixListener::bind(&socket).unwrap());
    assert!(
        std::fs::symlink_metadata(&socket)
            .unwrap()
            .file_type()
            .is_socket()
    );

    let mut cfg = TestConfig::new(&art, &images);
    cfg.socket = Some(socket.clone());
    let config = cfg.write(&tmp.path().join("inspectord.toml"));
    let daemon = common::replay_waiting(tmp.path(), &config, 1, LIMIT);
    let reader = common::spawn_reader(daemon.connect(&socket, LIMIT), LIMIT);
    let got = common::parse_json_lines(&common::socket_lines(&reader.join().unwrap()));
    let done = daemon.wait(LIMIT);
    done.assert_success();
    assert_eq!(
        got.len(),
        1 + names.len(),
        "hello + every verdict through the replaced socket"
    );
    assert_eq!(got[0]["type"], "hello");
    common::assert_seq_contiguous(&got[1..]);
    assert!(
        common::strip_ansi(&done.stderr).contains("replacing stale verdict socket"),
        "{}",
        done.stderr
    );
    assert!(
        !socket.exists(),
        "the socket file is still there after exit"
    );
}

#[test]
fn live_socket_is_not_taken_over() {
    let tmp = common::temp_dir();
    let art = Artifacts::snapshot(tmp.path());
    let images = tmp.path().join("images");
    art.copy_heldout(&images, 2, 1);
    let socket = tmp.path().join("v.sock");
    // Another process serving the path (here: this test).
    let listener = UnixListener::bind(&socket).unwrap();

    let mut cfg = TestConfig::new(&art, &images);
    cfg.socket = Some(socket.clone());
    let config = cfg.write(&tmp.path().join("inspectord.toml"));
    let done = common::run(
        common::command(
            tmp.path(),
            ["replay".as_ref(), "--config".as_ref(), config.as_os_str()],
        ),
        LIMIT,
    );
    done.assert_failure();
    assert!(
        done.stderr.contains("another process is serving"),
        "{}",
        done.stderr
    );
    assert!(done.stdout.is_empty(), "no verdicts expected");
    // The other process's socket is untouched and still accepts connections.
    listener.set_nonblocking(true).unwrap();
    let _client =
        std::os::unix::net::UnixStream::connect(&socket).expect("the live socket still works");
    assert!(
        common::wait_until(Duration::from_secs(5), || listener.accept().is_ok()),
        "the live listener lost its socket"
    );
}

/// Defect: `connect()` failing with EACCES (a live socket another user owns) was taken for a
/// stale socket, and the file was unlinked and replaced. Only ECONNREFUSED means stale; anything
/// else is an error that names the path and the file's owner. As root (where permission checks
/// do not apply) the daemon runs as `nobody`; otherwise the socket file's mode denies everyone.
#[test]
fn live_socket_of_another_user_is_not_taken_over() {
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::process::CommandExt;

    let tmp = common::temp_dir();
    let art = Artifacts::snapshot(tmp.path());
    let images = tmp.path().join("images");
    art.copy_heldout(&images, 2, 1);
    let socket = tmp.path().join("v.sock");
    let listener = UnixListener::bind(&socket).unwrap();
    let root = unsafe { libc::geteuid() } == 0;
    // root: the socket is root's and only root may connect; the directory lets `nobody` in (and
    // would let it unlink the socket). Otherwise: nobody may connect, not even its owner.
    let socket_mode = if root { 0o600 } else { 0o000 };
    std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(socket_mode)).unwrap();
    if root {
        std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    }
    let mut cfg = TestConfig::new(&art, &images);
    cfg.socket = Some(socket.clone());
    let config = cfg.write(&tmp.path().join("inspectord.toml"));
    let args = ["replay".as_ref(), "--config".as_ref(), config.as_os_str()];
    let cmd = if root {
        // `nobody` may not be able to reach the build tree (a checkout under /root): run a copy
        // of the binary, with ONNX Runtime next to it where the daemon looks.
        let bin = tmp.path().join("bin");
        std::fs::create_dir(&bin).unwrap();
        std::fs::copy(common::bin(), bin.join("inspectord")).unwrap();
        let ort = common::repo().join("third_party/onnxruntime/lib/libonnxruntime.so");
        std::fs::copy(ort, bin.join("libonnxruntime.so")).unwrap();
        let mut cmd = std::process::Command::new(bin.join("inspectord"));
        cmd.args(args)
            .current_dir(tmp.path())
            .stdin(std::process::Stdio::null())
            .env_remove("INSPECTORD_LOG")
            .env_remove("ORT_DYLIB_PATH")
            .uid(65534)
            .gid(65534);
        cmd
    } else {
        common::command(tmp.path(), args)
    };
    let done = common::run(cmd, LIMIT);
    let err = common::strip_ansi(&done.stderr);
    done.assert_failure();
    assert!(
        done.stdout.is_empty(),
        "no verdicts expected: {:?}",
        done.stdout
    );
    assert!(
        err.contains(socket.to_str().unwrap()),
        "path not named:\n{err}"
    );
    let owner = if root { "uid 0" } else { "uid " };
    assert!(err.contains(owner), "owner not named:\n{err}");
    if root {
        assert!(err.contains("root"), "owner's name not given:\n{err}");
    }
    // The other process's socket is untouched and still serves.
    std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o600)).unwrap();
    listener.set_nonblocking(true).unwrap();
    let _client =
        std::os::unix::net::UnixStream::connect(&socket).expect("the live socket still works");
    assert!(
        common::wait_until(Duration::from_secs(5), || listener.accept().is_ok()),
        "the live listener lost its socket"
    );
}

/// Issue 11: SIGTERM between binding the socket and installing the signal handlers (while the
/// workers' ONNX Runtime sessions are created) killed the process and left the socket file
/// behind. The handlers are installed before binding: the stop drains and removes the file.
#[test]
fn sigterm_right_after_binding_leaves_no_socket_file() {
    let tmp = common::temp_dir();
    let art = Artifacts::snapshot(tmp.path());
    let images = tmp.path().join("images");
    art.copy_heldout(&images, 2, 1);
    let socket = tmp.path().join("v.sock");
    let mut cfg = TestConfig::new(&art, &images);
    cfg.socket = Some(socket.clone());
    cfg.looping = true;
    cfg.fps = 20.0;
    cfg.workers = 4; // a longer start-up after binding
    let config = cfg.write(&tmp.path().join("inspectord.toml"));
    let daemon = common::spawn(
        common::command(
            tmp.path(),
            ["replay".as_ref(), "--config".as_ref(), config.as_os_str()],
        ),
        LIMIT,
    );
    let deadline = Instant::now() + LIMIT;
    while std::fs::symlink_metadata(&socket).is_err() {
        assert!(
            Instant::now() < deadline && daemon.try_status().is_none(),
            "no socket file:\n{}",
            daemon.stderr_so_far()
        );
        std::thread::sleep(Duration::from_micros(200));
    }
    daemon.signal(libc::SIGTERM);
    let done = daemon.wait(LIMIT);
    assert!(
        !socket.exists(),
        "the socket file is left behind ({}):\n{}",
        done.status,
        done.stderr
    );
    done.assert_success();
    common::assert_seq_contiguous(&common::parse_json_lines(&done.stdout));
}
