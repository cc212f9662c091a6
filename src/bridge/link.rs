//! The bridge's link to the daemon's verdict socket (protocol v2, `docs/PROTOCOL.md`): parsing
//! the daemon's lines, the resume rule (`Resume`), the commands the bridge sends, and the
//! connection itself (non-blocking, registered in the bridge's one `mio` loop) with capped
//! exponential reconnect backoff.
//!
//! Resume: on every (re)connect the bridge reads `hello` and sends `subscribe` — from the last
//! seq it handled when `run_id` is the run it saw before, from 0 when it is a new daemon run
//! (seq restarts at 1), and from hello's `seq` (now) on its very first connection, so a new
//! bridge does not replay history into the PLC. Verdicts before `subscribed` are ignored (the
//! cut repeats them); after it, a verdict whose seq was already handled is dropped. So the PLC
//! sees every retained verdict exactly once.

use std::io::{self, Read, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use mio::net::UnixStream;
use serde::Deserialize;
use serde_json::{Value, json};

/// Longest line accepted from the daemon.
const MAX_LINE: usize = 1 << 20;

/// A daemon line the bridge acts on.
#[derive(Debug, Clone, PartialEq)]
pub enum Inbound {
    Hello(Hello),
    Verdict(WireResult),
    Status {
        event: String,
        reference_set: Option<String>,
    },
    TriggerAck {
        id: Option<u64>,
        acq_id: u64,
    },
    TriggerMissed {
        id: Option<u64>,
        reason: String,
    },
    Subscribed {
        from_seq: u64,
        to_seq: u64,
    },
    Gap {
        from_seq: u64,
        to_seq: u64,
        count: u64,
    },
    Error {
        id: Option<u64>,
        reason: String,
    },
    Snapshot {
        camera: Option<String>,
    },
    /// Anything else (heartbeat, pong, reported, unknown types): ignored.
    Other(String),
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Hello {
    #[serde(default)]
    pub run_id: Option<String>,
    #[serde(default)]
    pub seq: u64,
    #[serde(default)]
    pub control: bool,
    #[serde(default)]
    pub model_sha256: String,
    #[serde(default)]
    pub reference_set: String,
    #[serde(default)]
    pub trigger_mode: Option<String>,
}

/// The fields of a `verdict` the PLC sees.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct WireResult {
    pub seq: u64,
    #[serde(default)]
    pub acq_id: Option<u64>,
    #[serde(default)]
    pub part_id: Option<String>,
    pub verdict: String,
    #[serde(default)]
    pub score: Option<f64>,
    #[serde(default)]
    pub threshold: Option<f64>,
    #[serde(default)]
    pub latency_us: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("cannot connect to the daemon's socket {path}")]
    Connect {
        path: String,
        #[source]
        source: io::Error,
    },
    #[error("reading from the daemon")]
    Read(#[source] io::Error),
    #[error("writing to the daemon")]
    Write(#[source] io::Error),
    #[error("the daemon closed the connection")]
    Closed,
    #[error("a line from the daemon over {MAX_LINE} bytes")]
    LineTooLong,
    #[error("a line from the daemon is not a JSON object with a type: {line}")]
    Malformed {
        line: String,
        #[source]
        source: serde_json::Error,
    },
}

/// The `id` of a reply: the bridge sends integers; anything else is no id of ours.
fn reply_id(v: &Value) -> Option<u64> {
    v.get("id").and_then(Value::as_u64)
}

fn field<T: for<'de> Deserialize<'de>>(v: &Value, key: &str) -> Option<T> {
    v.get(key).and_then(|x| T::deserialize(x).ok())
}

/// Parses one line from the daemon.
pub fn parse(line: &str) -> Result<Inbound, LinkError> {
    let malformed = |source| LinkError::Malformed {
        line: line.chars().take(200).collect(),
        source,
    };
    let v: Value = serde_json::from_str(line).map_err(malformed)?;
    let kind = v
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let text = |key: &str| field::<String>(&v, key).unwrap_or_default();
    let num = |key: &str| field::<u64>(&v, key).unwrap_or(0);
    Ok(match kind.as_str() {
        "hello" => Inbound::Hello(Hello::deserialize(&v).map_err(malformed)?),
        "verdict" => Inbound::Verdict(WireResult::deserialize(&v).map_err(malformed)?),
        "status" => Inbound::Status {
            event: text("event"),
            reference_set: field(&v, "reference_set"),
        },
        "trigger_ack" => Inbound::TriggerAck {
            id: reply_id(&v),
            acq_id: num("acq_id"),
        },
        "trigger_missed" => Inbound::TriggerMissed {
            id: reply_id(&v),
            reason: text("reason"),
        },
        "subscribed" => Inbound::Subscribed {
            from_seq: num("from_seq"),
            to_seq: num("to_seq"),
        },
        "gap" => Inbound::Gap {
            from_seq: num("from_seq"),
            to_seq: num("to_seq"),
            count: num("count"),
        },
        "error" => Inbound::Error {
            id: reply_id(&v),
            reason: text("reason"),
        },
        "snapshot" => Inbound::Snapshot {
            camera: field(&v, "camera"),
        },
        _ => Inbound::Other(kind),
    })
}

/// `{"type":"trigger","part_id":"4711","id":7}`.
pub fn trigger_command(id: u64, part_id: u32) -> String {
    line(json!({"type": "trigger", "part_id": part_id.to_string(), "id": id}))
}

/// `{"type":"subscribe","from_seq":N}`.
pub fn subscribe_command(from_seq: u64) -> String {
    line(json!({"type": "subscribe", "from_seq": from_seq}))
}

/// `{"type":"status"}`: the snapshot says whether the camera is lost.
pub fn status_command() -> String {
    line(json!({"type": "status"}))
}

/// `{"type":"report","event":…,"source":…,"reason":…}`.
pub fn report_command(event: &str, source: &str, reason: &str) -> String {
    line(json!({"type": "report", "event": event, "source": source, "reason": reason}))
}

fn line(v: Value) -> String {
    let mut s = v.to_string();
    s.push('\n');
    s
}

/// What the bridge has handled, across connections.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Resume {
    /// The run of the last hello; `None` before the first.
    run_id: Option<String>,
    /// The last verdict seq handled in that run.
    last_seq: u64,
    /// Between `subscribe` and `subscribed`: verdicts are ignored (the cut repeats them).
    awaiting_cut: bool,
}

/// What a hello means for the resume.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// The bridge's first connection: from now.
    First { from_seq: u64 },
    /// The same daemon run: from the last seq handled.
    Resume { from_seq: u64 },
    /// Another daemon run: everything it retains.
    NewRun,
}

impl Resume {
    /// A hello arrived: where to subscribe from.
    pub fn hello(&mut self, run_id: &str, seq: u64) -> Start {
        self.awaiting_cut = true;
        let start = match &self.run_id {
            None => Start::First { from_seq: seq },
            Some(r) if r == run_id => Start::Resume {
                from_seq: self.last_seq,
            },
            Some(_) => Start::NewRun,
        };
        self.run_id = Some(run_id.to_string());
        match start {
            Start::First { from_seq } => self.last_seq = from_seq,
            Start::NewRun => self.last_seq = 0,
            Start::Resume { .. } => {}
        }
        start
    }

    pub fn from_seq(start: Start) -> u64 {
        match start {
            Start::First { from_seq } | Start::Resume { from_seq } => from_seq,
            Start::NewRun => 0,
        }
    }

    /// `subscribed` arrived: verdicts count from here.
    pub fn subscribed(&mut self) {
        self.awaiting_cut = false;
    }

    /// Whether to hand this verdict to the PLC (and remember it as handled).
    pub fn accept(&mut self, seq: u64) -> bool {
        if self.awaiting_cut || seq <= self.last_seq {
            return false;
        }
        self.last_seq = seq;
        true
    }

    /// `gap`: verdicts from_seq..=to_seq are gone; the next one follows to_seq.
    pub fn gap(&mut self, to_seq: u64) {
        self.last_seq = self.last_seq.max(to_seq);
    }

    pub fn last_seq(&self) -> u64 {
        self.last_seq
    }
}

/// Capped exponential backoff.
#[derive(Debug)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    pub fn new(initial: Duration, max: Duration) -> Self {
        Self {
            initial,
            max: max.max(initial),
            next: initial,
        }
    }

    pub fn next_delay(&mut self) -> Duration {
        let d = self.next;
        self.next = (self.next * 2).min(self.max);
        d
    }

    pub fn reset(&mut self) {
        self.next = self.initial;
    }
}

/// One connection to the daemon: non-blocking, with its read and write buffers.
#[derive(Debug)]
pub struct Connection {
    pub stream: UnixStream,
    rbuf: Vec<u8>,
    wbuf: Vec<u8>,
    /// Set once `hello` has been handled.
    pub greeted: bool,
    pub since: Instant,
}

impl Connection {
    /// Connects (a Unix socket connect completes at once or fails).
    pub fn connect(path: &Path) -> Result<Connection, LinkError> {
        let std =
            std::os::unix::net::UnixStream::connect(path).map_err(|source| LinkError::Connect {
                path: path.display().to_string(),
                source,
            })?;
        std.set_nonblocking(true)
            .map_err(|source| LinkError::Connect {
                path: path.display().to_string(),
                source,
            })?;
        Ok(Connection {
            stream: UnixStream::from_std(std),
            rbuf: Vec::new(),
            wbuf: Vec::new(),
            greeted: false,
            since: Instant::now(),
        })
    }

    /// Queues a line and writes what the socket takes now.
    pub fn send(&mut self, line: &str) -> Result<(), LinkError> {
        self.wbuf.extend_from_slice(line.as_bytes());
        self.flush()
    }

    /// Writes queued bytes until the socket would block.
    pub fn flush(&mut self) -> Result<(), LinkError> {
        while !self.wbuf.is_empty() {
            match self.stream.write(&self.wbuf) {
                Ok(0) => return Err(LinkError::Closed),
                Ok(n) => {
                    self.wbuf.drain(..n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(LinkError::Write(e)),
            }
        }
        Ok(())
    }

    /// Reads what is there and returns the complete lines.
    pub fn read_lines(&mut self) -> Result<Vec<String>, LinkError> {
        let mut chunk = [0u8; 16 * 1024];
        let mut closed = false;
        loop {
            match self.stream.read(&mut chunk) {
                Ok(0) => {
                    closed = true;
                    break;
                }
                Ok(n) => self.rbuf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(LinkError::Read(e)),
            }
        }
        let mut lines = Vec::new();
        while let Some(i) = self.rbuf.iter().position(|&b| b == b'\n') {
            let raw: Vec<u8> = self.rbuf.drain(..=i).collect();
            lines.push(String::from_utf8_lossy(&raw[..i]).trim().to_string());
        }
        if self.rbuf.len() > MAX_LINE {
            return Err(LinkError::LineTooLong);
        }
        if closed && lines.is_empty() {
            return Err(LinkError::Closed);
        }
        Ok(lines)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_v2_messages() {
        let hello = r#"{"type":"hello","v":2,"daemon":"inspectord 0.1.0","protocols":[1,2],"run_id":"5f3a9c0e12ab44d0","seq":1234,"trigger_mode":"command","retained":{"from_seq":1,"to_seq":1234},"model_sha256":"ab","reference_set":"f0","control":true}"#;
        let Inbound::Hello(h) = parse(hello).unwrap() else {
            panic!("not a hello")
        };
        assert_eq!(h.run_id.as_deref(), Some("5f3a9c0e12ab44d0"));
        assert_eq!((h.seq, h.control), (1234, true));
        let verdict = r#"{"type":"verdict","v":2,"seq":17,"acq_id":3,"part_id":"4711","verdict":"skipped","score":null,"threshold":null,"latency_us":2997,"reason":"trigger timeout"}"#;
        let Inbound::Verdict(v) = parse(verdict).unwrap() else {
            panic!("not a verdict")
        };
        assert_eq!(
            (v.seq, v.acq_id, v.part_id.as_deref()),
            (17, Some(3), Some("4711"))
        );
        assert_eq!((v.verdict.as_str(), v.score), ("skipped", None));
        assert_eq!(
            parse(r#"{"type":"trigger_ack","v":2,"acq_id":9,"part_id":"1","id":4}"#).unwrap(),
            Inbound::TriggerAck {
                id: Some(4),
                acq_id: 9
            }
        );
        assert_eq!(
            parse(r#"{"type":"trigger_missed","v":2,"reason":"camera lost","id":"x"}"#).unwrap(),
            Inbound::TriggerMissed {
                id: None,
                reason: "camera lost".into()
            }
        );
        assert_eq!(
            parse(r#"{"type":"gap","v":2,"from_seq":3,"to_seq":5,"count":3}"#).unwrap(),
            Inbound::Gap {
                from_seq: 3,
                to_seq: 5,
                count: 3
            }
        );
        assert_eq!(
            parse(r#"{"type":"heartbeat","v":2,"seq":1}"#).unwrap(),
            Inbound::Other("heartbeat".into())
        );
        assert!(parse("not json").is_err());
        assert!(parse(r#"{"type":"verdict","seq":"x"}"#).is_err());
    }

    #[test]
    fn commands_are_single_json_lines() {
        let t: Value = serde_json::from_str(&trigger_command(7, 4711)).unwrap();
        assert_eq!(t, json!({"type":"trigger","part_id":"4711","id":7}));
        assert!(trigger_command(1, 2).ends_with("}\n"));
        let r: Value =
            serde_json::from_str(&report_command("plc_link_lost", "bridge-modbus", "why")).unwrap();
        assert_eq!(r["source"], "bridge-modbus");
        assert_eq!(
            subscribe_command(5),
            "{\"from_seq\":5,\"type\":\"subscribe\"}\n"
        );
    }

    #[test]
    fn resume_delivers_each_seq_once_across_reconnects_and_runs() {
        let mut r = Resume::default();
        // First connection: from now.
        assert_eq!(r.hello("aaaa", 10), Start::First { from_seq: 10 });
        assert!(!r.accept(11), "before the cut");
        r.subscribed();
        assert!(r.accept(11) && r.accept(12));
        assert!(!r.accept(12), "a repeat");
        // Same run again: from 12, repeats dropped.
        assert_eq!(r.hello("aaaa", 15), Start::Resume { from_seq: 12 });
        assert!(!r.accept(13), "before the cut: it comes again after");
        r.subscribed();
        assert!(!r.accept(12));
        assert!(r.accept(13) && r.accept(14));
        r.gap(20);
        assert!(!r.accept(19) && r.accept(21));
        // A new daemon run: from 0.
        let start = r.hello("bbbb", 3);
        assert_eq!((start, Resume::from_seq(start)), (Start::NewRun, 0));
        r.subscribed();
        assert!(r.accept(1) && r.accept(2) && !r.accept(2));
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_millis(350));
        let d: Vec<u128> = (0..4).map(|_| b.next_delay().as_millis()).collect();
        assert_eq!(d, vec![100, 200, 350, 350]);
        b.reset();
        assert_eq!(b.next_delay(), Duration::from_millis(100));
    }
}
