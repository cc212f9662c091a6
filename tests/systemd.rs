//! Running under systemd, without systemd as PID 1: the real binary under
//! `systemd-socket-activate` (which binds the verdict socket and passes it with `LISTEN_FDS`),
//! with a real `NOTIFY_SOCKET` datagram socket opened by the test standing in for the service
//! manager. Covers readiness, `STATUS=`, the watchdog's cadence and its silence when the
//! pipeline is wedged, `STOPPING=1`, a client connected before start, SIGHUP reloads and
//! journal-style logs.

mod common;

use std::collections::HashMap;
use std::ffi::OsStr;
use std::io::{BufRead, BufReader};
use std::os::unix::net::{UnixDatagram, UnixStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Artifacts, Daemon, TestConfig};
use serde_json::Value;

const LIMIT: Duration = Duration::from_secs(120);

/// The test's stand-in for the service manager's notification socket.
struct Notify {
    path: PathBuf,
    /// Every assignment received (`READY=1`, `STATUS=…`, …), with its arrival time.
    rx: Receiver<(Instant, String)>,
    seen: Vec<(Instant, String)>,
}

impl Notify {
    fn bind(path: PathBuf) -> Notify {
        let socket = UnixDatagram::bind(&path).expect("bind NOTIFY_SOCKET");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 65536];
            while let Ok(n) = socket.recv(&mut buf) {
                let at = Instant::now();
                for line in String::from_utf8_lossy(&buf[..n]).lines() {
                    if tx.send((at, line.to_string())).is_err() {
                        return;
                    }
                }
            }
        });
        Notify {
            path,
            rx,
            seen: Vec::new(),
        }
    }

    /// Waits for an assignment starting with `prefix`; returns its arrival time.
    fn wait_for(&mut self, prefix: &str, timeout: Duration) -> Option<Instant> {
        let deadline = Instant::now() + timeout;
        while let Ok((at, line)) = self
            .rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
        {
            let hit = line.starts_with(prefix);
            self.seen.push((at, line));
            if hit {
                return Some(at);
            }
        }
        None
    }

    /// Collects everything that arrives within `d`.
    fn collect(&mut self, d: Duration) {
        let deadline = Instant::now() + d;
        while let Ok(m) = self
            .rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
        {
            self.seen.push(m);
        }
    }

    fn times(&self, assignment: &str, after: Instant) -> Vec<Instant> {
        self.seen
            .iter()
            .filter(|(at, l)| l == assignment && *at >= after)
            .map(|(at, _)| *at)
            .collect()
    }

    fn statuses(&self) -> Vec<&str> {
        self.seen
            .iter()
            .filter_map(|(_, l)| l.strip_prefix("STATUS="))
            .collect()
    }
}

/// Reads JSON lines from a verdict socket as they arrive.
struct Lines {
    rx: Receiver<Value>,
    all: Arc<Mutex<Vec<Value>>>,
}

impl Lines {
    fn read(stream: UnixStream) -> Lines {
        stream.set_read_timeout(None).unwrap();
        let (tx, rx) = mpsc::channel();
        let all = Arc::new(Mutex::new(Vec::new()));
        let store = all.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines() {
                let Ok(line) = line else { break };
                let v: Value = serde_json::from_str(&line).expect("a JSON line");
                common::assert_valid_message(&v);
                store.lock().unwrap().push(v.clone());
                if tx.send(v).is_err() {
                    break;
                }
            }
        });
        Lines { rx, all }
    }

    /// The next line satisfying `pred`, waiting at most `timeout`.
    fn until(&self, timeout: Duration, pred: impl Fn(&Value) -> bool) -> Option<Value> {
        let deadline = Instant::now() + timeout;
        while let Ok(v) = self
            .rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
        {
            if pred(&v) {
                return Some(v);
            }
        }
        None
    }

    fn all(&self) -> Vec<Value> {
        self.all.lock().unwrap().clone()
    }
}

fn verdicts(lines: &[Value]) -> Vec<Value> {
    lines
        .iter()
        .filter(|v| v["type"] == "verdict")
        .cloned()
        .collect()
}

/// `systemd-socket-activate -l SOCKET -E NOTIFY_SOCKET=… -E WATCHDOG_USEC=… inspectord run`.
/// It binds SOCKET at once and starts the daemon (in its own process, same pid) on the first
/// connection, passing the listening socket as fd 3.
fn socket_activated(
    cwd: &Path,
    socket: &Path,
    notify: &Path,
    watchdog_usec: u64,
    config: &Path,
) -> Command {
    let mut sa = Command::new("systemd-socket-activate");
    sa.current_dir(cwd)
        .stdin(std::process::Stdio::null())
        .arg("-l")
        .arg(socket)
        .arg(format!("-ENOTIFY_SOCKET={}", notify.display()))
        .arg(format!("-EWATCHDOG_USEC={watchdog_usec}"));
    // It passes the child only LISTEN_* and the -E variables.
    if let Some(filter) = std::env::var_os("INSPECTORD_TEST_LOG") {
        sa.arg(format!("-EINSPECTORD_LOG={}", filter.to_string_lossy()));
    }
    sa.arg(common::bin()).args(["run", "--config"]).arg(config);
    sa
}

fn wait_for_file(path: &Path, daemon: &Daemon) {
    assert!(
        common::wait_until(Duration::from_secs(10), || path.exists()),
        "systemd-socket-activate did not bind {}:\n{}",
        path.display(),
        daemon.stderr_so_far()
    );
}

fn median(mut xs: Vec<Duration>) -> Duration {
    xs.sort();
    xs[xs.len() / 2]
}

#[test]
fn socket_activation_readiness_watchdog_and_stopping() {
    let tmp = common::temp_dir();
    let art = Artifacts::snapshot(tmp.path());
    let dir = tmp.path().join("images");
    art.copy_heldout(&dir, 3, 1);
    let socket = tmp.path().join("verdicts.sock");
    let mut cfg = TestConfig::new(&art, &dir);
    cfg.fps = 20.0;
    cfg.looping = true;
    cfg.workers = 1;
    // No output.socket: the passed socket is served all the same.
    let config = cfg.write(&tmp.path().join("inspectord.toml"));
    let mut notify = Notify::bind(tmp.path().join("notify.sock"));

    let daemon = common::spawn(
        socket_activated(tmp.path(), &socket, &notify.path, 400_000, &config),
        LIMIT,
    );
    wait_for_file(&socket, &daemon);
    // Connected before the daemon exists: the connection waits in the socket's backlog and
    // starts the daemon.
    let connected = Instant::now();
    let client = UnixStream::connect(&socket).expect("connect to the activated socket");
    let lines = Lines::read(client);

    let ready = notify
        .wait_for("READY=1", Duration::from_secs(60))
        .unwrap_or_else(|| panic!("no READY=1:\n{}", daemon.stderr_so_far()));
    eprintln!(
        "READY=1 {:?} after the first client connected (start, model, 1 warmed-up session)",
        ready - connected
    );
    let log = daemon.stderr_so_far();
    for step in ["model loaded", "references loaded", "verdict socket passed"] {
        assert!(log.contains(step), "READY=1 before {step:?}:\n{log}");
    }
    assert!(
        notify.seen.iter().all(|(_, l)| l != "WATCHDOG=1"),
        "WATCHDOG=1 before READY=1"
    );

    let hello = lines
        .until(Duration::from_secs(10), |v| v["type"] == "hello")
        .expect("hello on the activated socket");
    assert_eq!(hello["reference_set"], art.reference_set.as_str());
    lines
        .until(Duration::from_secs(10), |v| v["type"] == "verdict")
        .expect("verdicts for the client that connected before start");

    // WATCHDOG_USEC = 400 ms: WATCHDOG=1 every 200 ms while frames flow.
    let window = Instant::now();
    notify.collect(Duration::from_millis(2500));
    let pings = notify.times("WATCHDOG=1", window);
    assert!(pings.len() >= 8, "{} pings in 2.5 s", pings.len());
    let gaps: Vec<Duration> = pings.windows(2).map(|w| w[1] - w[0]).collect();
    let m = median(gaps.clone());
    eprintln!(
        "WATCHDOG_USEC=400000: {} pings in 2.5 s, median interval {m:?}",
        pings.len()
    );
    assert!(
        m >= Duration::from_millis(150) && m <= Duration::from_millis(300),
        "median WATCHDOG=1 interval {m:?} (want 200 ms): {gaps:?}"
    );
    let status = notify.statuses().last().map(|s| s.to_string()).unwrap();
    assert!(
        status.contains(" frames: ") && status.contains(" pass, ") && status.contains(" fps"),
        "{status}"
    );

    daemon.signal(libc::SIGTERM);
    notify
        .wait_for("STOPPING=1", Duration::from_secs(10))
        .expect("STOPPING=1 after SIGTERM");
    let done = daemon.wait(Duration::from_secs(30));
    done.assert_success();
    // Every frame taken was answered, and the socket file belongs to the service manager.
    let v = verdicts(&lines.all());
    common::assert_seq_contiguous(&v);
    assert!(v.len() >= 20, "{} verdicts", v.len());
    assert!(
        socket.exists(),
        "the daemon removed a socket it did not create"
    );
}

#[test]
fn watchdog_stops_while_the_pipeline_is_wedged() {
    let tmp = common::temp_dir();
    let art = Artifacts::snapshot(tmp.path());
    let dir = tmp.path().join("images");
    let names = art.copy_heldout(&dir, 2, 1);
    // Taken last, after the three images: a regular file this test holds a write lease on.
    // Opening it for reading blocks until the lease is released (or the kernel's
    // fs.lease-break-time, 45 s by default, passes): a real wedged read in the source. (A FIFO
    // no longer wedges it: replay never opens one.)
    let wedge = dir.join("zz-wedge.png");
    let png = std::fs::read(dir.join(&names[0])).unwrap();
    std::fs::write(&wedge, &png).unwrap();
    let lease = Lease::take(&wedge);
    let socket = tmp.path().join("verdicts.sock");
    let mut cfg = TestConfig::new(&art, &dir);
    cfg.fps = 10.0;
    cfg.looping = true;
    cfg.workers = 1;
    let mut toml = cfg.to_toml();
    toml += "stall_timeout_ms = 600\n";
    let config = tmp.path().join("inspectord.toml");
    std::fs::write(&config, toml).unwrap();
    let mut notify = Notify::bind(tmp.path().join("notify.sock"));

    let daemon = common::spawn(
        socket_activated(tmp.path(), &socket, &notify.path, 400_000, &config),
        LIMIT,
    );
    wait_for_file(&socket, &daemon);
    let lines = Lines::read(UnixStream::connect(&socket).unwrap());
    notify
        .wait_for("READY=1", Duration::from_secs(60))
        .expect("READY=1");
    // The last regular image of the first pass; then the source blocks on the FIFO.
    let last = names.last().unwrap().clone();
    lines
        .until(Duration::from_secs(20), |v| v["frame"] == last.as_str())
        .expect("the images before the FIFO are inspected");
    let wedged_at = Instant::now();
    notify.collect(Duration::from_millis(3500));
    let pings = notify.times("WATCHDOG=1", wedged_at);
    eprintln!(
        "stall_timeout 600 ms, WATCHDOG_USEC=400000: last WATCHDOG=1 {:?} after the last frame before the wedge",
        pings.last().map(|t| t.duration_since(wedged_at))
    );
    let quiet_from = wedged_at + Duration::from_millis(1500);
    assert!(
        pings.iter().all(|&t| t < quiet_from),
        "WATCHDOG=1 still sent {:?} after the source wedged",
        pings.last().map(|t| t.duration_since(wedged_at))
    );
    let status = notify.statuses().last().map(|s| s.to_string()).unwrap();
    assert!(status.contains("STALLED: source busy"), "{status}");
    assert!(
        daemon.stderr_so_far().contains("pipeline stalled"),
        "{}",
        daemon.stderr_so_far()
    );

    // Unwedge: release the lease; the blocked open goes on, frames flow and pings resume.
    let unwedged = Instant::now();
    drop(lease);
    let v = lines
        .until(Duration::from_secs(10), |v| v["frame"] == "zz-wedge.png")
        .expect("a verdict for the frame whose open was blocked");
    assert_ne!(v["verdict"], "error", "{v}");
    notify
        .wait_for("WATCHDOG=1", Duration::from_secs(5))
        .expect("WATCHDOG=1 resumes once frames flow again");
    assert!(
        notify
            .times("WATCHDOG=1", unwedged)
            .iter()
            .all(|&t| t > unwedged)
    );

    daemon.signal(libc::SIGTERM);
    notify
        .wait_for("STOPPING=1", Duration::from_secs(10))
        .expect("STOPPING=1");
    daemon.wait(Duration::from_secs(30)).assert_success();
    common::assert_seq_contiguous(&verdicts(&lines.all()));
}

/// A write lease on a file (fcntl F_SETLEASE): another process's open of the file blocks until
/// the lease is dropped (or the kernel's lease-break-time passes).
struct Lease(std::fs::File);

impl Lease {
    fn take(path: &Path) -> Lease {
        use std::os::fd::AsRawFd;
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .unwrap();
        // The lease break is announced with SIGIO, whose default action ends this process.
        unsafe { libc::signal(libc::SIGIO, libc::SIG_IGN) };
        let rc = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_SETLEASE, libc::F_WRLCK) };
        assert_eq!(
            rc,
            0,
            "F_SETLEASE on {}: {}",
            path.display(),
            std::io::Error::last_os_error()
        );
        Lease(file)
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        use std::os::fd::AsRawFd;
        unsafe { libc::fcntl(self.0.as_raw_fd(), libc::F_SETLEASE, libc::F_UNLCK) };
    }
}

/// `inspectord enroll` on a few good images: a second, valid reference set for this model.
fn enroll_other_set(art: &Artifacts, tmp: &Path, config: &Path) -> PathBuf {
    let good = tmp.join("good");
    art.copy_heldout(&good, 6, 0);
    let out = tmp.join("other.safetensors");
    common::run(
        common::command(
            tmp,
            [
                OsStr::new("enroll"),
                OsStr::new("--config"),
                config.as_os_str(),
                OsStr::new("--images"),
                good.as_os_str(),
                OsStr::new("--out"),
                out.as_os_str(),
            ],
        ),
        LIMIT,
    )
    .assert_success();
    out
}

#[test]
fn sighup_swaps_references_between_frames_and_refuses_a_corrupt_file() {
    let tmp = common::temp_dir();
    let art = Artifacts::snapshot(tmp.path());
    let dir = tmp.path().join("images");
    art.copy_heldout(&dir, 3, 1);
    // The daemon's references: a copy that the test replaces.
    let refs = tmp.path().join("references.safetensors");
    std::fs::copy(&art.references, &refs).unwrap();
    let socket = tmp.path().join("verdicts.sock");
    let mut cfg = TestConfig::new(&art, &dir);
    cfg.fps = 25.0;
    cfg.looping = true;
    cfg.references = refs.clone();
    cfg.socket = Some(socket.clone());
    let config = cfg.write(&tmp.path().join("inspectord.toml"));
    let other = enroll_other_set(&art, tmp.path(), &config);
    let other_id = common::sha256_file(&other)[..16].to_string();
    assert_ne!(other_id, art.reference_set);

    // Without socket activation the daemon binds output.socket itself.
    let mut notify = Notify::bind(tmp.path().join("notify.sock"));
    let mut cmd = common::command(tmp.path(), [OsStr::new("run"), OsStr::new("--config")]);
    cmd.arg(&config).env("NOTIFY_SOCKET", &notify.path);
    let daemon = common::spawn(cmd, LIMIT);
    let lines = Lines::read(daemon.connect(&socket, Duration::from_secs(60)));
    notify
        .wait_for("READY=1", Duration::from_secs(60))
        .expect("READY=1");
    lines
        .until(Duration::from_secs(10), |v| v["type"] == "verdict")
        .expect("verdicts");

    // A valid new set, put in place atomically, then SIGHUP.
    std::fs::copy(&other, tmp.path().join("incoming")).unwrap();
    std::fs::rename(tmp.path().join("incoming"), &refs).unwrap();
    daemon.signal(libc::SIGHUP);
    let reloaded = lines
        .until(Duration::from_secs(10), |v| v["type"] == "status")
        .expect("a status line announcing the reload");
    assert_eq!(reloaded["event"], "references_reloaded", "{reloaded}");
    assert_eq!(reloaded["reference_set"], other_id.as_str());
    assert_eq!(
        reloaded["previous_reference_set"],
        art.reference_set.as_str()
    );
    notify
        .wait_for("RELOADING=1", Duration::from_secs(5))
        .expect("RELOADING=1");
    notify
        .wait_for("READY=1", Duration::from_secs(5))
        .expect("READY=1 after the reload");
    let swap_after = reloaded["after_seq"].as_u64().unwrap();
    // Frames keep flowing, scored with the new set from the frame after `after_seq`.
    lines
        .until(Duration::from_secs(10), |v| {
            v["type"] == "verdict" && v["seq"].as_u64().unwrap() > swap_after + 5
        })
        .expect("verdicts after the reload");
    // A client connecting now is greeted with the new set.
    let late = Lines::read(UnixStream::connect(&socket).unwrap());
    let hello = late
        .until(Duration::from_secs(5), |v| v["type"] == "hello")
        .unwrap();
    assert_eq!(hello["reference_set"], other_id.as_str());

    // A corrupt file: refused, announced, and the set in force stays.
    std::fs::write(tmp.path().join("incoming"), b"not a safetensors file").unwrap();
    std::fs::rename(tmp.path().join("incoming"), &refs).unwrap();
    daemon.signal(libc::SIGHUP);
    let refused = lines
        .until(Duration::from_secs(10), |v| v["type"] == "status")
        .expect("a status line announcing the refusal");
    assert_eq!(refused["event"], "reload_refused", "{refused}");
    assert_eq!(refused["reference_set"], other_id.as_str());
    let reason = refused["reason"].as_str().unwrap();
    assert!(reason.contains("references.safetensors"), "{reason}");
    let refused_after = refused["after_seq"].as_u64().unwrap();
    lines
        .until(Duration::from_secs(10), |v| {
            v["type"] == "verdict" && v["seq"].as_u64().unwrap() > refused_after + 5
        })
        .expect("inspection continues after a refused reload");

    // The config's [scoring] is reloaded too: the good file back, and a threshold set in the
    // config (it overrides what the file records).
    std::fs::copy(&other, tmp.path().join("incoming")).unwrap();
    std::fs::rename(tmp.path().join("incoming"), &refs).unwrap();
    let mut toml = std::fs::read_to_string(&config).unwrap();
    toml += "\n[scoring]\nthreshold = 0.5\n";
    std::fs::write(&config, toml).unwrap();
    daemon.signal(libc::SIGHUP);
    let rescored = lines
        .until(Duration::from_secs(10), |v| v["type"] == "status")
        .expect("a status line announcing the reload");
    assert_eq!(rescored["event"], "references_reloaded", "{rescored}");
    assert_eq!(rescored["reference_set"], other_id.as_str());
    let rescored_after = rescored["after_seq"].as_u64().unwrap();
    lines
        .until(Duration::from_secs(10), |v| {
            v["type"] == "verdict" && v["seq"].as_u64().unwrap() > rescored_after + 5
        })
        .expect("verdicts after the scoring reload");

    daemon.signal(libc::SIGTERM);
    let done = daemon.wait(Duration::from_secs(30));
    done.assert_success();
    assert!(done.stderr.contains("reload refused"), "{}", done.stderr);

    let v = verdicts(&lines.all());
    common::assert_seq_contiguous(&v);
    for verdict in &v {
        let seq = verdict["seq"].as_u64().unwrap();
        let want = if seq <= swap_after {
            art.reference_set.as_str()
        } else {
            other_id.as_str()
        };
        assert_eq!(
            verdict["reference_set"], want,
            "seq {seq} (swap after {swap_after})"
        );
        assert_ne!(verdict["verdict"], "error", "{verdict}");
        let threshold = verdict["threshold"].as_f64().unwrap();
        assert_eq!(
            threshold == 0.5,
            seq > rescored_after,
            "seq {seq}: {verdict}"
        );
        let score = verdict["score"].as_f64().unwrap();
        let failed = verdict["verdict"] == "fail";
        assert_eq!(failed, score > threshold, "{verdict}");
    }
    // The new set's threshold (from its own file) is in force too.
    let first_new = v
        .iter()
        .find(|x| x["reference_set"] == other_id.as_str())
        .unwrap();
    let old_threshold = v[0]["threshold"].as_f64().unwrap();
    assert_ne!(first_new["threshold"].as_f64().unwrap(), old_threshold);
}

/// Runs `check` with stderr on a pipe; `journal_stream(dev, ino)` gives `JOURNAL_STREAM`.
fn check_stderr(config: &Path, cwd: &Path, journal_stream: impl Fn(u64, u64) -> String) -> String {
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::MetadataExt;
    let (mut reader, writer) = std::io::pipe().unwrap();
    let meta = std::fs::metadata(format!("/proc/self/fd/{}", writer.as_raw_fd())).unwrap();
    // Validated for `replay`: the config has no socket, which `run` would need.
    let mut cmd = common::command(cwd, [OsStr::new("check"), OsStr::new("--mode")]);
    cmd.args([OsStr::new("replay"), OsStr::new("--config")])
        .arg(config)
        .env("JOURNAL_STREAM", journal_stream(meta.dev(), meta.ino()))
        .env("INSPECTORD_LOG", "debug,ort=warn")
        .stderr(writer)
        .stdout(std::process::Stdio::null());
    let mut child = cmd.spawn().unwrap();
    drop(cmd); // our copy of the pipe's write end
    let mut err = String::new();
    std::io::Read::read_to_string(&mut reader, &mut err).unwrap();
    assert!(child.wait().unwrap().success(), "{err}");
    err
}

/// One native journal protocol datagram: `NAME=value\n` or `NAME\n<u64 LE length><value>\n`.
fn journal_fields(mut d: &[u8]) -> HashMap<String, String> {
    let mut fields = HashMap::new();
    while !d.is_empty() {
        let end = d
            .iter()
            .position(|&b| b == b'\n')
            .expect("field ends with a newline");
        let head = &d[..end];
        if let Some(eq) = head.iter().position(|&b| b == b'=') {
            let (k, v) = (&head[..eq], &head[eq + 1..]);
            fields.insert(
                String::from_utf8_lossy(k).into_owned(),
                String::from_utf8_lossy(v).into_owned(),
            );
            d = &d[end + 1..];
        } else {
            let len = u64::from_le_bytes(d[end + 1..end + 9].try_into().unwrap()) as usize;
            let value = &d[end + 9..end + 9 + len];
            fields.insert(
                String::from_utf8_lossy(head).into_owned(),
                String::from_utf8_lossy(value).into_owned(),
            );
            d = &d[end + 9 + len + 1..];
        }
    }
    fields
}

#[test]
fn logs_go_to_the_journal_with_priorities_and_fields() {
    // JOURNAL_STREAM naming the daemon's stderr is how systemd says "stderr is the journal".
    const JOURNAL: &str = "/run/systemd/journal/socket";
    if Path::new(JOURNAL).exists() {
        eprintln!("a journald runs here: its socket cannot be stood in for; not checked");
        return;
    }
    let tmp = common::temp_dir();
    let art = Artifacts::snapshot(tmp.path());
    let config =
        TestConfig::new(&art, common::images_dir()).write(&tmp.path().join("inspectord.toml"));

    // 1. No journal socket: each stderr line carries an sd-daemon(3) `<N>` priority prefix.
    let err = check_stderr(&config, tmp.path(), |dev, ino| format!("{dev}:{ino}"));
    let lines: Vec<&str> = err.lines().collect();
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("<6>") && l.contains("model loaded")),
        "{err}"
    );
    assert!(lines.iter().any(|l| l.starts_with("<7>")), "{err}");
    assert!(
        lines
            .iter()
            .all(|l| l.len() > 3 && l.starts_with('<') && l.as_bytes()[2] == b'>'),
        "every line prefixed: {err}"
    );
    assert!(!err.contains('\u{1b}'), "no colour codes: {err}");

    // A JOURNAL_STREAM that names another file (inherited from a parent) is not the journal.
    let err = check_stderr(&config, tmp.path(), |dev, ino| format!("{dev}:{}", ino + 1));
    assert!(err.contains("model loaded"), "{err}");
    assert!(!err.lines().any(|l| l.starts_with("<6>")), "{err}");

    // 2. A journal socket (the test's, where journald's would be): the native protocol, with
    // the priority and every event field as a journal field.
    let Ok(()) = std::fs::create_dir_all("/run/systemd/journal") else {
        eprintln!("cannot create /run/systemd/journal here (not root?); native part not checked");
        return;
    };
    let journal = UnixDatagram::bind(JOURNAL).expect("bind the journal socket");
    let _cleanup = RemoveOnDrop(PathBuf::from(JOURNAL));
    journal
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let err = check_stderr(&config, tmp.path(), |dev, ino| format!("{dev}:{ino}"));
    assert!(
        !err.contains("model loaded"),
        "logs went to stderr, not the journal: {err}"
    );
    let mut entries = Vec::new();
    let mut buf = vec![0u8; 1 << 16];
    while let Ok(n) = journal.recv(&mut buf) {
        if n > 0 {
            entries.push(journal_fields(&buf[..n]));
        }
    }
    let loaded = entries
        .iter()
        .find(|e| e.get("MESSAGE").map(String::as_str) == Some("model loaded"))
        .unwrap_or_else(|| panic!("no `model loaded` entry in {entries:?}"));
    assert_eq!(loaded["PRIORITY"], "6", "{loaded:?}");
    assert_eq!(loaded["SYSLOG_IDENTIFIER"], "inspectord");
    assert_eq!(loaded["F_SHA256"], art.model_sha256, "{loaded:?}");
    let refs = entries
        .iter()
        .find(|e| e.get("MESSAGE").map(String::as_str) == Some("references loaded"))
        .unwrap();
    assert_eq!(refs["F_ID"], art.reference_set);
    assert!(
        entries
            .iter()
            .all(|e| e.contains_key("MESSAGE") && e.contains_key("CODE_FILE")),
        "{entries:?}"
    );
}

struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Starts `inspectord run` the way systemd starts a socket-activated service: `listener` as
/// fd 3, `LISTEN_FDS=1`, `LISTEN_PID` = the daemon's own pid (set by a shell that then `exec`s
/// the daemon, since the pid is known only after fork).
fn run_with_passed_socket(
    cwd: &Path,
    listener: &std::os::unix::net::UnixListener,
    config: &Path,
) -> Daemon {
    use std::os::fd::AsRawFd;
    use std::os::unix::process::CommandExt;
    let fd = listener.as_raw_fd();
    // The same environment policy as every other daemon the tests start.
    let cmd = common::command(cwd, std::iter::empty::<&OsStr>());
    let mut sh = Command::new("/bin/sh");
    sh.args([
        "-c",
        r#"LISTEN_PID=$$ LISTEN_FDS=1 exec "$0" run --config "$1""#,
    ])
    .arg(common::bin())
    .arg(config)
    .current_dir(cwd)
    .stdin(std::process::Stdio::null());
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => sh.env(k, v),
            None => sh.env_remove(k),
        };
    }
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        sh.pre_exec(move || {
            if fd != 3 && libc::dup2(fd, 3) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            // dup2 clears FD_CLOEXEC on the copy; fd 3 itself (if it was the listener) needs it
            // cleared explicitly.
            if fd == 3 {
                let flags = libc::fcntl(3, libc::F_GETFD);
                libc::fcntl(3, libc::F_SETFD, flags & !libc::FD_CLOEXEC);
            }
            Ok(())
        });
    }
    common::spawn(sh, LIMIT)
}

#[test]
fn a_passed_socket_serves_clients_across_daemon_restarts() {
    let tmp = common::temp_dir();
    let art = Artifacts::snapshot(tmp.path());
    let dir = tmp.path().join("images");
    art.copy_heldout(&dir, 2, 1);
    let mut cfg = TestConfig::new(&art, &dir);
    cfg.fps = 20.0;
    cfg.looping = true;
    cfg.workers = 1;
    let config = cfg.write(&tmp.path().join("inspectord.toml"));
    // The test is the service manager: it owns the listening socket for the whole test.
    let path = tmp.path().join("verdicts.sock");
    let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();

    let first = run_with_passed_socket(tmp.path(), &listener, &config);
    let a = Lines::read(UnixStream::connect(&path).unwrap());
    a.until(Duration::from_secs(60), |v| v["type"] == "verdict")
        .unwrap_or_else(|| {
            panic!(
                "no verdict from the first daemon:\n{}",
                first.stderr_so_far()
            )
        });
    first.signal(libc::SIGTERM);
    let done = first.wait(Duration::from_secs(30));
    done.assert_success();
    assert!(
        done.stderr.contains("socket activation"),
        "the daemon did not use the passed socket:\n{}",
        done.stderr
    );
    assert!(
        path.exists(),
        "the daemon removed the manager's socket file"
    );

    // No daemon now: a client still connects (the listen backlog holds it) ...
    let b = Lines::read(UnixStream::connect(&path).expect("connect while the daemon is down"));
    std::thread::sleep(Duration::from_millis(300));
    assert!(b.all().is_empty());
    // ... and is served once the daemon is back.
    let second = run_with_passed_socket(tmp.path(), &listener, &config);
    let hello = b
        .until(Duration::from_secs(60), |v| v["type"] == "hello")
        .unwrap_or_else(|| panic!("no hello after the restart:\n{}", second.stderr_so_far()));
    assert_eq!(hello["reference_set"], art.reference_set.as_str());
    let v = b
        .until(Duration::from_secs(10), |v| v["type"] == "verdict")
        .expect("verdicts after the restart");
    assert_eq!(v["seq"], 1, "a new run numbers from 1: {v}");
    second.signal(libc::SIGTERM);
    second.wait(Duration::from_secs(30)).assert_success();
}

#[test]
fn a_daemon_that_cannot_start_never_says_ready_and_says_why() {
    let tmp = common::temp_dir();
    let art = Artifacts::snapshot(tmp.path());
    let dir = tmp.path().join("images");
    art.copy_heldout(&dir, 1, 0);
    let refs = tmp.path().join("references.safetensors");
    std::fs::write(&refs, b"corrupt").unwrap();
    let mut cfg = TestConfig::new(&art, &dir);
    cfg.references = refs;
    cfg.socket = Some(tmp.path().join("verdicts.sock"));
    let config = cfg.write(&tmp.path().join("inspectord.toml"));
    let mut notify = Notify::bind(tmp.path().join("notify.sock"));
    let mut cmd = common::command(tmp.path(), [OsStr::new("run"), OsStr::new("--config")]);
    cmd.arg(&config).env("NOTIFY_SOCKET", &notify.path);
    common::run(cmd, LIMIT).assert_failure();
    notify.collect(Duration::from_millis(200));
    let lines: Vec<&str> = notify.seen.iter().map(|(_, l)| l.as_str()).collect();
    assert!(!lines.contains(&"READY=1"), "{lines:?}");
    let status = notify.statuses();
    assert!(
        status.len() == 1
            && status[0].starts_with("failed: ")
            && status[0].contains("references.safetensors"),
        "{status:?}"
    );
}

/// References whose metadata is out of range (a NaN order, a `k` that would abort the process
/// allocating) are refused at SIGHUP before anything is announced: `reload_refused` naming the
/// key, the set in force stays, inspection goes on, the process lives.
#[test]
fn sighup_refuses_out_of_range_reference_metadata_and_keeps_the_set() {
    let tmp = common::temp_dir();
    let art = Artifacts::snapshot(tmp.path());
    let dir = tmp.path().join("images");
    art.copy_heldout(&dir, 3, 1);
    let refs = tmp.path().join("references.safetensors");
    std::fs::copy(&art.references, &refs).unwrap();
    let socket = tmp.path().join("verdicts.sock");
    let mut cfg = TestConfig::new(&art, &dir);
    cfg.fps = 25.0;
    cfg.looping = true;
    cfg.references = refs.clone();
    cfg.socket = Some(socket.clone());
    let config = cfg.write(&tmp.path().join("inspectord.toml"));

    let mut cmd = common::command(tmp.path(), [OsStr::new("run"), OsStr::new("--config")]);
    cmd.arg(&config);
    let daemon = common::spawn(cmd, LIMIT);
    let lines = Lines::read(daemon.connect(&socket, Duration::from_secs(60)));
    lines
        .until(Duration::from_secs(30), |v| v["type"] == "verdict")
        .expect("verdicts");

    let incoming = tmp.path().join("incoming");
    for (key, value) in [("eta_p", "NaN"), ("gamma_p", "inf"), ("k", "1000000000000")] {
        common::references_with_metadata(&art.references, &incoming, &[(key, value)]);
        std::fs::rename(&incoming, &refs).unwrap();
        daemon.signal(libc::SIGHUP);
        let status = lines
            .until(Duration::from_secs(10), |v| v["type"] == "status")
            .unwrap_or_else(|| panic!("{key} = {value}: no status line"));
        assert_eq!(
            status["event"], "reload_refused",
            "{key} = {value}: {status}"
        );
        assert_eq!(status["reference_set"], art.reference_set.as_str());
        let reason = status["reason"].as_str().unwrap();
        assert!(reason.contains(&format!("`{key}`")), "{reason}");
        let after = status["after_seq"].as_u64().unwrap();
        lines
            .until(Duration::from_secs(10), |v| {
                v["type"] == "verdict" && v["seq"].as_u64().unwrap() > after + 5
            })
            .unwrap_or_else(|| panic!("{key} = {value}: inspection stopped"));
        assert!(
            daemon.try_status().is_none(),
            "{key} = {value}: the daemon died:\n{}",
            daemon.stderr_so_far()
        );
    }

    daemon.signal(libc::SIGTERM);
    daemon.wait(Duration::from_secs(30)).assert_success();
    assert!(!socket.exists(), "the socket file is removed at exit");
    let v = verdicts(&lines.all());
    common::assert_seq_contiguous(&v);
    for verdict in &v {
        assert_eq!(verdict["reference_set"], art.reference_set.as_str());
        assert_ne!(verdict["verdict"], "error", "{verdict}");
        let score = verdict["score"].as_f64().expect("a finite score");
        assert_eq!(
            verdict["verdict"] == "fail",
            score > verdict["threshold"].as_f64().unwrap(),
            "{verdict}"
        );
    }
}
