//! A client that connects and never reads must not hold up another client: the daemon
//! disconnects it once its queue (`output.client_buffer`) overflows, and the reading client
//! still gets every verdict.

mod common;

use std::fmt::Write as _;
use std::time::Duration;

use common::{Artifacts, TestConfig};

const LIMIT: Duration = Duration::from_secs(240);
/// Frames replayed: several times what a silent client's kernel socket buffer holds (the
/// daemon's accepted sockets get `net.core.wmem_default` bytes, ~200 KiB by default, which holds
/// a few hundred verdict lines of ~500 bytes plus kernel overhead), so the silent client is
/// disconnected early and the reading client keeps receiving long after.
fn frame_count() -> usize {
    let wmem: usize = std::fs::read_to_string("/proc/sys/net/core/wmem_default")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(212_992);
    (wmem * 6 / 640).clamp(2000, 50_000)
}

const CLIENT_BUFFER: usize = 8;

#[test]
fn silent_client_does_not_block_a_reading_client() {
    let tmp = common::temp_dir();
    let art = Artifacts::snapshot(tmp.path());

    let frames = frame_count();
    // A list file repeating four held-out images (absolute paths).
    let images: Vec<_> = art
        .pick_heldout(2, 2)
        .iter()
        .map(|p| common::image(&p.file))
        .collect();
    let mut list = String::new();
    for i in 0..frames {
        writeln!(list, "{}", images[i % images.len()].display()).unwrap();
    }
    let list_path = tmp.path().join("frames.txt");
    std::fs::write(&list_path, list).unwrap();

    let socket = tmp.path().join("v.sock");
    let mut cfg = TestConfig::new(&art, &list_path);
    cfg.socket = Some(socket.clone());
    cfg.client_buffer = Some(CLIENT_BUFFER);
    let config = cfg.write(&tmp.path().join("inspectord.toml"));

    let daemon = common::replay_waiting(tmp.path(), &config, 2, LIMIT);
    let silent = daemon.connect(&socket, LIMIT);
    let reader = common::spawn_reader(daemon.connect(&socket, LIMIT), LIMIT);
    let got = reader.join().expect("reading client");
    let done = daemon.wait(LIMIT);
    done.assert_success();

    let lines = common::socket_lines(&got);
    let msgs = common::parse_json_lines(&lines);
    assert_eq!(
        msgs.first().map(|m| m["type"].clone()),
        Some("hello".into()),
        "first line must be the hello"
    );
    let verdicts = &msgs[1..];
    assert_eq!(
        verdicts.len(),
        frames,
        "the reading client must get every verdict"
    );
    common::assert_seq_contiguous(verdicts);
    for (i, v) in verdicts.iter().enumerate() {
        let want = images[i % images.len()]
            .file_name()
            .unwrap()
            .to_str()
            .unwrap();
        assert_eq!(v["frame"], want, "verdict {} is for the wrong frame", i + 1);
        assert_ne!(v["verdict"], "error", "{v}");
    }
    assert_eq!(done.stdout.len(), frames, "stdout verdicts");

    let log = common::strip_ansi(&done.stderr);
    assert!(
        log.contains("verdict client is not reading; disconnecting it"),
        "the daemon never disconnected the silent client:\n{log}"
    );

    // What the silent client's kernel buffer held when it was dropped: the hello, then a gap-free
    // prefix of the verdicts, then end of stream — not the whole run.
    let silent_lines = common::socket_lines(&common::read_to_eof(silent, LIMIT));
    let silent_msgs = common::parse_json_lines(&silent_lines);
    assert_eq!(
        silent_msgs.first().map(|m| m["type"].clone()),
        Some("hello".into())
    );
    let prefix = &silent_msgs[1..];
    common::assert_seq_contiguous(prefix);
    assert!(
        prefix.len() < frames / 2,
        "the silent client was cut off only after {} verdicts",
        prefix.len()
    );
}
