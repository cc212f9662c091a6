//! `inspectord devices` on the real binary: lists both back ends and exits 0. On a host without
//! V4L2 video nodes it says no UVC cameras were found. (The GenICam section depends on whether a
//! camera or the Aravis simulator is reachable, so it is only checked to be present.)

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const LIMIT: Duration = Duration::from_secs(60);

fn has_video_nodes() -> bool {
    std::fs::read_dir("/dev")
        .map(|d| {
            d.flatten()
                .any(|e| e.file_name().to_string_lossy().starts_with("video"))
        })
        .unwrap_or(false)
}

#[test]
fn devices_lists_both_back_ends_and_exits_zero() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_inspectord"))
        .arg("devices")
        .env("INSPECTORD_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn inspectord");
    let start = Instant::now();
    while child.try_wait().expect("wait").is_none() {
        if start.elapsed() > LIMIT {
            child.kill().ok();
            panic!("`inspectord devices` did not finish within {LIMIT:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().expect("output");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "exit {:?}\nstdout:\n{stdout}\nstderr:\n{stderr}",
        out.status
    );

    let uvc = stdout
        .find("UVC cameras")
        .unwrap_or_else(|| panic!("no UVC section:\n{stdout}"));
    let genicam = stdout
        .find("GenICam cameras")
        .unwrap_or_else(|| panic!("no GenICam section:\n{stdout}"));
    assert!(uvc < genicam, "{stdout}");
    let uvc_section = &stdout[uvc..genicam];
    if has_video_nodes() {
        assert!(!uvc_section.contains("cannot list"), "{stdout}");
    } else {
        assert!(uvc_section.contains("no UVC cameras found"), "{stdout}");
    }
}
