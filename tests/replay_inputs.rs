//! Hostile replay entries: a FIFO, a symlink to `/dev/zero` and a decodable but huge image each
//! become one `error` verdict with a clear reason; the good images still get their verdicts, the
//! seq has no gap, memory stays bounded and the process exits 0.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{Artifacts, TestConfig};
use serde_json::Value;

const LIMIT: Duration = Duration::from_secs(90);

/// A field of `/proc/<pid>/status` in KiB (`VmRSS`, `VmHWM`); `None` once the process is gone.
fn status_kib(pid: u32, field: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Runs `replay` on `images` while watching its memory: kills it and panics when its peak RSS
/// passes `max_hwm_kib` or it has not ended within `limit`.
fn replay_watched(dir: &Path, images: &Path, max_hwm_kib: u64, limit: Duration) -> Vec<Value> {
    let art = Artifacts::snapshot(dir);
    let config = TestConfig::new(&art, images).write(&dir.join("c.toml"));
    let daemon = common::spawn(
        common::command(
            dir,
            ["replay".as_ref(), "--config".as_ref(), config.as_os_str()],
        ),
        limit + Duration::from_secs(30),
    );
    let started = Instant::now();
    let mut hwm = 0;
    while daemon.try_status().is_none() {
        hwm = hwm.max(status_kib(daemon.pid(), "VmHWM").unwrap_or(0));
        assert!(
            hwm <= max_hwm_kib,
            "peak RSS grew to {hwm} KiB (limit {max_hwm_kib} KiB); stderr:\n{}",
            daemon.stderr_so_far()
        );
        assert!(
            started.elapsed() < limit,
            "replay still running after {limit:?} (blocked?); stderr:\n{}",
            daemon.stderr_so_far()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let done = daemon.wait(LIMIT);
    done.assert_success();
    let verdicts = common::parse_json_lines(&done.stdout);
    common::assert_seq_contiguous(&verdicts);
    for v in &verdicts {
        common::assert_wire_verdict(v);
    }
    verdicts
}

fn verdict_of<'a>(verdicts: &'a [Value], frame: &str) -> &'a Value {
    verdicts
        .iter()
        .find(|v| v["frame"] == frame)
        .unwrap_or_else(|| panic!("no verdict for {frame}: {verdicts:?}"))
}

fn assert_good_ones_inspected(verdicts: &[Value], names: &[String]) {
    for n in names {
        let v = verdict_of(verdicts, n);
        assert_ne!(v["verdict"], "error", "{v}");
    }
}

/// Defect: a FIFO named `*.png` blocked the source forever (and SIGTERM no longer stopped it).
#[test]
fn fifo_entry_is_an_error_verdict_and_never_blocks() {
    let tmp = common::temp_dir();
    let images = tmp.path().join("images");
    let names = Artifacts::snapshot(tmp.path()).copy_heldout(&images, 2, 1);
    let fifo = images.join("cell-fifo.png");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);

    let verdicts = replay_watched(tmp.path(), &images, 4 << 20, Duration::from_secs(30));
    assert_eq!(verdicts.len(), names.len() + 1, "{verdicts:?}");
    let v = verdict_of(&verdicts, "cell-fifo.png");
    assert_eq!(v["verdict"], "error", "{v}");
    let reason = v["error"].as_str().unwrap();
    assert!(reason.contains("not a regular file"), "{reason}");
    assert_good_ones_inspected(&verdicts, &names);
}

/// Defect: a symlink to `/dev/zero` named `*.png` was read until memory ran out.
#[test]
fn dev_zero_entry_is_an_error_verdict_with_bounded_memory() {
    let tmp = common::temp_dir();
    let images = tmp.path().join("images");
    let names = Artifacts::snapshot(tmp.path()).copy_heldout(&images, 2, 1);
    std::os::unix::fs::symlink("/dev/zero", images.join("cell-zero.png")).unwrap();

    let verdicts = replay_watched(tmp.path(), &images, 1536 << 10, Duration::from_secs(30));
    assert_eq!(verdicts.len(), names.len() + 1, "{verdicts:?}");
    let v = verdict_of(&verdicts, "cell-zero.png");
    assert_eq!(v["verdict"], "error", "{v}");
    let reason = v["error"].as_str().unwrap();
    assert!(reason.contains("not a regular file"), "{reason}");
    assert_good_ones_inspected(&verdicts, &names);
}

/// A regular file larger than `[source] max_file_mb` is an error verdict, not read.
#[test]
fn oversized_file_is_an_error_verdict() {
    let tmp = common::temp_dir();
    let images = tmp.path().join("images");
    let art = Artifacts::snapshot(tmp.path());
    let names = art.copy_heldout(&images, 1, 1);
    let big = std::fs::File::create(images.join("cell-big.png")).unwrap();
    big.set_len(3 << 20).unwrap();
    let toml = TestConfig::new(&art, &images)
        .to_toml()
        .replace("loop = false\n", "loop = false\nmax_file_mb = 2\n");
    let config = tmp.path().join("c.toml");
    std::fs::write(&config, toml).unwrap();
    let done = common::run(
        common::command(
            tmp.path(),
            ["replay".as_ref(), "--config".as_ref(), config.as_os_str()],
        ),
        LIMIT,
    );
    done.assert_success();
    let verdicts = common::parse_json_lines(&done.stdout);
    common::assert_seq_contiguous(&verdicts);
    assert_eq!(verdicts.len(), names.len() + 1);
    let v = verdict_of(&verdicts, "cell-big.png");
    assert_eq!(v["verdict"], "error", "{v}");
    let reason = v["error"].as_str().unwrap();
    assert!(
        reason.contains("larger than") && reason.contains("max_file_mb"),
        "{reason}"
    );
    assert_good_ones_inspected(&verdicts, &names);
}

fn gray_png(path: &Path, side: u32) {
    // rows of one gray level each: compresses to a few hundred KB, decodes to side² bytes
    let img = image::GrayImage::from_fn(side, side, |_, y| image::Luma([(y / 64) as u8]));
    img.save_with_format(path, image::ImageFormat::Png).unwrap();
    let bytes = std::fs::metadata(path).unwrap().len();
    assert!(bytes < 4 << 20, "{}: {bytes} bytes", path.display());
}

/// Defect: a 16000x16000 grayscale PNG (a few hundred KB) was decoded (RSS 1.3 GB), and each
/// worker kept its enlarged buffer afterwards. Now: an error verdict naming the limit, no
/// decoding; a big but allowed frame is inspected and its scratch buffers are not kept.
#[test]
fn huge_image_is_an_error_verdict_and_memory_stays_bounded() {
    let tmp = common::temp_dir();
    let art = Artifacts::snapshot(tmp.path());
    let images = tmp.path().join("images");
    let names = art.copy_heldout(&images, 2, 1);
    gray_png(&images.join("z1-huge.png"), 16_000);
    gray_png(&images.join("z2-big.png"), 6_000);
    // One frame a second, looping: the three good frames, the huge one, the big one, then the
    // good ones again. RSS is read after the second round's second good frame, well before the
    // big frame comes round again (frame 10, at 9 s).
    let mut cfg = TestConfig::new(&art, &images);
    cfg.fps = 1.0;
    cfg.looping = true;
    let config = cfg.write(&tmp.path().join("c.toml"));
    let daemon = common::spawn(
        common::command(
            tmp.path(),
            ["replay".as_ref(), "--config".as_ref(), config.as_os_str()],
        ),
        LIMIT,
    );
    let per_loop = names.len() + 2;
    let mut lines = Vec::new();
    let mut baseline_rss = 0;
    while lines.len() < per_loop + 2 {
        let line = daemon
            .next_line(LIMIT)
            .unwrap_or_else(|| panic!("stdout ended early:\n{}", daemon.stderr_so_far()));
        lines.push(line);
        if lines.len() == names.len() {
            baseline_rss = status_kib(daemon.pid(), "VmRSS").unwrap();
        }
    }
    let hwm = status_kib(daemon.pid(), "VmHWM").unwrap();
    let rss = status_kib(daemon.pid(), "VmRSS").unwrap();
    eprintln!("VmHWM {hwm} KiB, VmRSS {rss} KiB after the big frames, {baseline_rss} KiB before");
    daemon.signal(libc::SIGTERM);
    let done = daemon.wait(LIMIT);
    done.assert_success();
    let verdicts = common::parse_json_lines(&done.stdout);
    common::assert_seq_contiguous(&verdicts);
    let huge = verdict_of(&verdicts, "z1-huge.png");
    assert_eq!(huge["verdict"], "error", "{huge}");
    let reason = huge["error"].as_str().unwrap();
    assert!(
        reason.contains("16000x16000") && reason.contains("8192x8192"),
        "{reason}"
    );
    assert_ne!(verdict_of(&verdicts, "z2-big.png")["verdict"], "error");
    assert_good_ones_inspected(&verdicts, &names);
    // 6000x6000 gray: 36 MB decoded, 144 MB as f32 while it is preprocessed
    assert!(
        hwm < 700 << 10,
        "peak RSS {hwm} KiB (baseline {baseline_rss} KiB)"
    );
    assert!(
        rss < baseline_rss + (64 << 10),
        "RSS {rss} KiB after the big frames, {baseline_rss} KiB before: scratch buffers kept"
    );
}
