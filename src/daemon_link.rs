//! A client's link to the daemon's verdict socket (protocol v2, `docs/PROTOCOL.md`), shared by
//! the Modbus bridge and the gateway: parsing the daemon's lines, the resume rule (`Resume`),
//! the commands clients send, and the connection itself (non-blocking, registered in the
//! client's one `mio` loop).
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
use serde_json::Value;

use crate::wire::{self, ClientId, Command, Message, ReportedEvent};

/// Longest line accepted from the daemon.
const MAX_LINE: usize = 1 << 20;

/// A daemon line the bridge acts on.
#[derive(Debug, Clone, PartialEq)]
pub enum Inbound {
    Hello(wire::Hello),
    Verdict(wire::WireVerdict),
    Status {
        event: wire::WireEvent,
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
    Snapshot(Box<wire::Snapshot>),
    Heartbeat(wire::Heartbeat),
    /// Anything else (pong, acked, reported, a type of a later version): ignored.
    Other(String),
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
    #[error("the daemon answered nothing for {} ms (not even a ping)", .0.as_millis())]
    Silent(Duration),
    #[error("a line from the daemon over {MAX_LINE} bytes")]
    LineTooLong,
    #[error("a line from the daemon is not a protocol v2 message: {line}")]
    Malformed {
        line: String,
        #[source]
        source: serde_json::Error,
    },
}

/// The `id` of a reply: the bridge sends integers; anything else is no id of ours.
fn reply_id(id: Option<ClientId>) -> Option<u64> {
    match id {
        Some(ClientId::Number(n)) => Some(n),
        _ => None,
    }
}

/// The message types of protocol v2 (a line of another type is ignored, not an error).
const KNOWN: [&str; 13] = [
    "hello",
    "verdict",
    "status",
    "heartbeat",
    "trigger_ack",
    "trigger_missed",
    "subscribed",
    "gap",
    "acked",
    "pong",
    "snapshot",
    "reported",
    "error",
];

/// Parses one line from the daemon into the wire types of `wire.rs`.
pub fn parse(line: &str) -> Result<Inbound, LinkError> {
    let malformed = |source| LinkError::Malformed {
        line: line.chars().take(200).collect(),
        source,
    };
    let v: Value = serde_json::from_str(line).map_err(malformed)?;
    let kind = v.get("type").and_then(Value::as_str).unwrap_or("");
    if !KNOWN.contains(&kind) {
        return Ok(Inbound::Other(kind.to_string()));
    }
    Ok(match Message::deserialize(&v).map_err(malformed)? {
        Message::Hello(h) => Inbound::Hello(h),
        Message::Verdict(v) => Inbound::Verdict(v),
        Message::Status(s) => Inbound::Status {
            event: s.event,
            reference_set: s.reference_set,
        },
        Message::TriggerAck(a) => Inbound::TriggerAck {
            id: reply_id(a.id),
            acq_id: a.acq_id,
        },
        Message::TriggerMissed(m) => Inbound::TriggerMissed {
            id: reply_id(m.id),
            reason: m.reason,
        },
        Message::Subscribed(s) => Inbound::Subscribed {
            from_seq: s.from_seq,
            to_seq: s.to_seq,
        },
        Message::Gap(g) => Inbound::Gap {
            from_seq: g.from_seq,
            to_seq: g.to_seq,
            count: g.count,
        },
        Message::Error(e) => Inbound::Error {
            id: reply_id(e.id),
            reason: e.reason,
        },
        Message::Snapshot(s) => Inbound::Snapshot(s),
        Message::Heartbeat(h) => Inbound::Heartbeat(h),
        other => Inbound::Other(format!("{other:?}").chars().take(40).collect()),
    })
}

fn command_line(c: &Command) -> String {
    // Plain structs and strings: serialising cannot fail.
    let mut s = serde_json::to_string(c).unwrap_or_default();
    s.push('\n');
    s
}

/// `{"type":"trigger","id":7,"part_id":"4711"}`.
pub fn trigger_command(id: u64, part_id: u32) -> String {
    command_line(&Command::Trigger {
        id: Some(ClientId::Number(id)),
        v: None,
        part_id: Some(part_id.to_string()),
    })
}

/// `{"type":"subscribe","from_seq":N}`.
pub fn subscribe_command(from_seq: u64) -> String {
    command_line(&Command::Subscribe {
        id: None,
        v: None,
        from_seq,
    })
}

/// `{"type":"ping"}`: a quiet daemon must still answer.
pub fn ping_command() -> String {
    command_line(&Command::Ping { id: None, v: None })
}

/// `{"type":"ack","seq":N}`: everything up to `seq` is delivered.
pub fn ack_command(seq: u64) -> String {
    command_line(&Command::Ack {
        id: None,
        v: None,
        seq,
    })
}

/// `{"type":"status"}`: the snapshot says whether the camera is lost.
pub fn status_command() -> String {
    command_line(&Command::Status { id: None, v: None })
}

/// `{"type":"report","event":…,"source":…,"reason":…}`.
pub fn report_command(lost: bool, source: &str, reason: &str) -> String {
    let event = if lost {
        ReportedEvent::PlcLinkLost
    } else {
        ReportedEvent::PlcLinkRestored
    };
    command_line(&Command::Report {
        id: None,
        v: None,
        event,
        source: source.to_string(),
        reason: Some(reason.to_string()),
    })
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
    /// The first connection subscribes from 0 (everything retained), not from now.
    from_start: bool,
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
    /// A client that delivers everything (the gateway's MQTT link): its first connection asks
    /// for every retained verdict instead of starting from now.
    pub fn everything() -> Resume {
        Resume {
            from_start: true,
            ..Resume::default()
        }
    }

    /// Resumes a run handled before this process started (a persisted `run_id` and seq).
    pub fn restored(run_id: &str, last_seq: u64) -> Resume {
        Resume {
            run_id: Some(run_id.to_string()),
            last_seq,
            awaiting_cut: false,
            from_start: true,
        }
    }

    /// Between `subscribe` and `subscribed` (the cut repeats what arrives meanwhile).
    pub fn awaiting_cut(&self) -> bool {
        self.awaiting_cut
    }

    /// The run of the last hello.
    pub fn run_id(&self) -> Option<&str> {
        self.run_id.as_deref()
    }

    /// A hello arrived: where to subscribe from.
    pub fn hello(&mut self, run_id: &str, seq: u64) -> Start {
        self.awaiting_cut = true;
        let start = match &self.run_id {
            None if self.from_start => Start::First { from_seq: 0 },
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

/// One connection to the daemon: non-blocking, with its read and write buffers.
#[derive(Debug)]
pub struct Connection {
    pub stream: UnixStream,
    rbuf: Vec<u8>,
    wbuf: Vec<u8>,
    /// Set once `hello` has been handled.
    pub greeted: bool,
    /// The last line from the daemon (or the connect).
    pub last_heard: Instant,
    /// A `ping` is out since the daemon went quiet.
    pub pinged: bool,
    /// The daemon closed the connection after the lines last returned: the next
    /// [`Connection::read_lines`] fails at once (no further readiness event would come).
    eof: bool,
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
            last_heard: Instant::now(),
            pinged: false,
            eof: false,
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

    /// Whether the daemon has closed the connection (the caller handles the lines it got, then
    /// calls [`Connection::read_lines`] again to get the error).
    pub fn at_eof(&self) -> bool {
        self.eof
    }

    /// Reads what is there and returns the complete lines.
    pub fn read_lines(&mut self) -> Result<Vec<String>, LinkError> {
        if self.eof {
            return Err(LinkError::Closed);
        }
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
        if !self.rbuf.is_empty() {
            self.last_heard = Instant::now();
            self.pinged = false;
        }
        // One pass over what was read, one move of the incomplete rest to the front (removing
        // each line from the front instead costs time quadratic in a large read).
        let mut start = 0;
        while let Some(i) = self.rbuf[start..].iter().position(|&b| b == b'\n') {
            let end = start + i;
            lines.push(
                String::from_utf8_lossy(&self.rbuf[start..end])
                    .trim()
                    .to_string(),
            );
            start = end + 1;
        }
        self.rbuf.drain(..start);
        if self.rbuf.len() > MAX_LINE {
            return Err(LinkError::LineTooLong);
        }
        if closed && lines.is_empty() {
            return Err(LinkError::Closed);
        }
        self.eof = closed;
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
        assert_eq!(h.run_id, "5f3a9c0e12ab44d0");
        assert_eq!((h.seq, h.control), (1234, true));
        let verdict = r#"{"type":"verdict","v":2,"seq":17,"source":"replay","frame":"","acq_id":3,"part_id":"4711","captured_at":"2026-11-28T16:16:45.276158Z","verdict":"skipped","score":null,"threshold":null,"soart3":null,"reference_index":null,"latency_us":2997,"model_sha256":"ab","reference_set":"f0","reason":"trigger timeout"}"#;
        let Inbound::Verdict(v) = parse(verdict).unwrap() else {
            panic!("not a verdict")
        };
        assert_eq!(
            (v.seq, v.acq_id, v.part_id.as_deref()),
            (17, Some(3), Some("4711"))
        );
        assert_eq!((v.verdict, v.score), (wire::WireVerdictKind::Skipped, None));
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
            parse(r#"{"type":"fancy_new_thing","v":3}"#).unwrap(),
            Inbound::Other("fancy_new_thing".into())
        );
        assert!(parse("not json").is_err());
        assert!(parse(r#"{"type":"verdict","seq":"x"}"#).is_err());
    }

    #[test]
    fn commands_are_single_json_lines() {
        let t: Value = serde_json::from_str(&trigger_command(7, 4711)).unwrap();
        assert_eq!(
            t,
            serde_json::json!({"type":"trigger","part_id":"4711","id":7})
        );
        assert!(trigger_command(1, 2).ends_with("}\n"));
        let r: Value = serde_json::from_str(&report_command(true, "bridge-modbus", "why")).unwrap();
        assert_eq!(
            (&r["source"], &r["event"]),
            (&"bridge-modbus".into(), &"plc_link_lost".into())
        );
        let s: Value = serde_json::from_str(&subscribe_command(5)).unwrap();
        assert_eq!(s, serde_json::json!({"type":"subscribe","from_seq":5}));
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
    fn a_delivering_client_starts_from_everything_or_its_persisted_seq() {
        let mut r = Resume::everything();
        assert_eq!(r.hello("aaaa", 10), Start::First { from_seq: 0 });
        let mut r = Resume::restored("aaaa", 7);
        assert_eq!(r.hello("aaaa", 10), Start::Resume { from_seq: 7 });
        r.subscribed();
        assert!(!r.accept(7) && r.accept(8));
        let mut r = Resume::restored("aaaa", 7);
        assert_eq!(r.hello("bbbb", 10), Start::NewRun);
        assert_eq!(r.run_id(), Some("bbbb"));
    }
}
