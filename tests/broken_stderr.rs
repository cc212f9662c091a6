//! Logging never takes the daemon down: with stderr a pipe nobody reads (its read end closed,
//! so every write fails with EPIPE), a replay still prints every verdict and exits 0.

mod common;

use std::os::fd::{FromRawFd, OwnedFd};
use std::process::Stdio;
use std::time::Duration;

use common::{Artifacts, TestConfig};

const LIMIT: Duration = Duration::from_secs(90);

/// A pipe's write end whose read end is already closed.
fn broken_pipe() -> OwnedFd {
    let mut fds = [0; 2];
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    drop(read);
    write
}

/// Defect: a broken stderr crashed the daemon (panic "failed printing to stderr", exit 101).
#[test]
fn broken_stderr_does_not_stop_the_daemon() {
    let tmp = common::temp_dir();
    let art = Artifacts::snapshot(tmp.path());
    let images = tmp.path().join("images");
    let names = art.copy_heldout(&images, 3, 3);
    std::fs::write(images.join("zz-corrupt.png"), b"\x89PNG\r\n\x1a\nbroken").unwrap();
    let config = TestConfig::new(&art, &images).write(&tmp.path().join("c.toml"));
    for format in ["text", "json"] {
        let mut cmd = common::command(
            tmp.path(),
            [
                "--log".as_ref(),
                "debug".as_ref(),
                "--log-format".as_ref(),
                format.as_ref(),
                "replay".as_ref(),
                "--config".as_ref(),
                config.as_os_str(),
            ],
        );
        cmd.stdout(Stdio::piped())
            .stderr(Stdio::from(broken_pipe()));
        let child = cmd.spawn().expect("spawn inspectord");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || tx.send(child.wait_with_output()));
        let out = rx
            .recv_timeout(LIMIT)
            .expect("inspectord did not exit in time")
            .expect("wait for inspectord");
        assert_eq!(
            out.status.code(),
            Some(0),
            "--log-format {format}: inspectord failed ({})",
            out.status
        );
        let stdout = String::from_utf8(out.stdout).unwrap();
        let lines: Vec<&str> = stdout.lines().collect();
        let verdicts = common::parse_json_lines(&lines);
        assert_eq!(verdicts.len(), names.len() + 1, "--log-format {format}");
        common::assert_seq_contiguous(&verdicts);
        assert_eq!(verdicts.last().unwrap()["verdict"], "error");
    }
}
