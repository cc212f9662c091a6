//! At-least-once delivery to the broker: the outbox of messages taken from the daemon's
//! delivery link, in the order the daemon sent them, each published with QoS 1 and kept until the
//! broker's PUBACK; the watermark (the last verdict `seq` with everything up to it acknowledged),
//! which is what the gateway `ack`s to the daemon and persists; and the state file that carries
//! the watermark across restarts. Pure apart from the state file.

use std::collections::VecDeque;
use std::io;
use std::path::{Path, PathBuf};

use serde_json::Value;

/// What a message is for the broker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Topic {
    Verdict,
    Status,
}

#[derive(Debug)]
struct Pending {
    /// The verdict's `seq` (`None`: a status event, which follows the verdicts before it).
    seq: Option<u64>,
    topic: Topic,
    payload: Vec<u8>,
    /// The packet id of the publish in flight on the current broker connection.
    pid: Option<u16>,
    acked: bool,
}

/// Messages on their way to the broker, oldest first.
#[derive(Debug)]
pub struct Outbox {
    queue: VecDeque<Pending>,
    capacity: usize,
    max_inflight: usize,
    in_flight: usize,
    watermark: u64,
    /// QoS 1 messages the broker acknowledged since the start.
    pub published: u64,
}

impl Outbox {
    pub fn new(capacity: usize, max_inflight: usize, watermark: u64) -> Outbox {
        Outbox {
            queue: VecDeque::new(),
            capacity,
            max_inflight,
            in_flight: 0,
            watermark,
            published: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.queue.len()
    }

    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    pub fn is_full(&self) -> bool {
        self.queue.len() >= self.capacity
    }

    /// Drained to half: the delivery link may take more from the daemon again.
    pub fn has_room(&self) -> bool {
        self.queue.len() <= self.capacity / 2
    }

    pub fn push(&mut self, seq: Option<u64>, topic: Topic, payload: Vec<u8>) {
        self.queue.push_back(Pending {
            seq,
            topic,
            payload,
            pid: None,
            acked: false,
        });
    }

    /// The last verdict `seq` such that it and everything before it are acknowledged.
    pub fn watermark(&self) -> u64 {
        self.watermark
    }

    /// A new daemon run: its seqs start again at 1. What the outbox still holds of the old run
    /// is delivered but no longer moves the watermark.
    pub fn new_run(&mut self) {
        for p in &mut self.queue {
            p.seq = None;
        }
        self.watermark = 0;
    }

    /// The next messages to publish now (oldest first, up to the in-flight limit): the caller
    /// publishes each and reports its packet id with [`Outbox::sent`].
    pub fn next_to_send(&self) -> Vec<(usize, Topic, &[u8])> {
        let room = self.max_inflight.saturating_sub(self.in_flight);
        self.queue
            .iter()
            .enumerate()
            .filter(|(_, p)| p.pid.is_none() && !p.acked)
            .take(room)
            .map(|(i, p)| (i, p.topic, p.payload.as_slice()))
            .collect()
    }

    pub fn sent(&mut self, index: usize, pid: u16) {
        if let Some(p) = self.queue.get_mut(index) {
            p.pid = Some(pid);
            self.in_flight += 1;
        }
    }

    /// The broker acknowledged `pid`: returns whether the watermark moved.
    pub fn acked(&mut self, pid: u16) -> bool {
        if let Some(p) = self
            .queue
            .iter_mut()
            .find(|p| p.pid == Some(pid) && !p.acked)
        {
            p.acked = true;
            p.pid = None;
            self.in_flight -= 1;
            self.published += 1;
        }
        let before = self.watermark;
        while self.queue.front().is_some_and(|p| p.acked) {
            if let Some(Pending { seq: Some(seq), .. }) = self.queue.pop_front() {
                self.watermark = seq;
            }
        }
        self.watermark != before
    }

    /// The broker connection is gone: nothing is in flight; everything unacknowledged goes
    /// again, in order, on the next connection.
    pub fn connection_lost(&mut self) {
        for p in &mut self.queue {
            p.pid = None;
        }
        self.in_flight = 0;
    }
}

/// The persisted watermark: `{"run_id":"…","acked_seq":N}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Persisted {
    pub run_id: String,
    pub acked_seq: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum StateFileError {
    #[error("reading the MQTT state file {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "{path} is not a state file of the gateway (expected {{\"run_id\":…,\"acked_seq\":…}}); move it away or set [mqtt] state_file"
    )]
    Foreign { path: PathBuf },
    #[error("writing the MQTT state file {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// Reads the state file: `None` when there is none yet. A file that is not the gateway's is an
/// error (it is never overwritten).
pub fn load_state(path: &Path) -> Result<Option<Persisted>, StateFileError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(StateFileError::Read {
                path: path.into(),
                source,
            });
        }
    };
    let foreign = || StateFileError::Foreign { path: path.into() };
    let v: Value = serde_json::from_str(&text).map_err(|_| foreign())?;
    let run_id = v
        .get("run_id")
        .and_then(Value::as_str)
        .ok_or_else(foreign)?;
    let acked_seq = v
        .get("acked_seq")
        .and_then(Value::as_u64)
        .ok_or_else(foreign)?;
    Ok(Some(Persisted {
        run_id: run_id.to_string(),
        acked_seq,
    }))
}

/// Writes the state file: a temporary file beside it, then renamed over it (never a torn file).
/// `sync`: flushed to disk first (at a clean stop; after a crash an older seq only means more
/// duplicates, which consumers drop by seq).
pub fn save_state(path: &Path, state: &Persisted, sync: bool) -> Result<(), StateFileError> {
    let write_err = |source| StateFileError::Write {
        path: path.into(),
        source,
    };
    let text =
        serde_json::json!({"run_id": state.run_id, "acked_seq": state.acked_seq}).to_string();
    let tmp = path.with_extension("state.tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&tmp)
        .map_err(write_err)?;
    io::Write::write_all(&mut f, text.as_bytes()).map_err(write_err)?;
    if sync {
        f.sync_all().map_err(write_err)?;
    }
    std::fs::rename(&tmp, path).map_err(write_err)
}

/// A daemon line with `"line":…,"run_id":…,` inserted after its `{`: still one valid protocol
/// message, not re-serialised (the daemon's own bytes and number formatting).
pub fn splice(line: &str, line_name: &str, run_id: &str) -> Vec<u8> {
    let body = line.trim_end().strip_prefix('{').unwrap_or(line);
    let head = serde_json::json!({"line": line_name, "run_id": run_id}).to_string();
    let mut out = Vec::with_capacity(line.len() + head.len());
    out.extend_from_slice(&head.as_bytes()[..head.len() - 1]);
    out.push(b',');
    out.extend_from_slice(body.as_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_watermark_is_contiguous_whatever_order_the_acks_come_in() {
        let mut o = Outbox::new(10, 3, 0);
        for seq in 1..=4 {
            o.push(Some(seq), Topic::Verdict, vec![seq as u8]);
        }
        let first: Vec<usize> = o.next_to_send().iter().map(|(i, ..)| *i).collect();
        assert_eq!(first, vec![0, 1, 2], "in flight is capped");
        for (i, pid) in [(0, 10), (1, 11), (2, 12)] {
            o.sent(i, pid);
        }
        assert!(o.next_to_send().is_empty());
        assert!(!o.acked(12), "seq 3 alone does not move the watermark");
        assert!(!o.acked(11));
        assert!(o.acked(10));
        assert_eq!(o.watermark(), 3);
        assert_eq!(o.len(), 1);
        assert_eq!(o.published, 3);
    }

    #[test]
    fn a_lost_connection_resends_everything_unacked_in_order() {
        let mut o = Outbox::new(10, 8, 5);
        o.push(Some(6), Topic::Verdict, b"6".to_vec());
        o.push(None, Topic::Status, b"s".to_vec());
        o.push(Some(7), Topic::Verdict, b"7".to_vec());
        for (i, pid) in [(0, 1), (1, 2), (2, 3)] {
            o.sent(i, pid);
        }
        assert!(o.acked(1));
        assert_eq!(o.watermark(), 6);
        assert!(
            !o.acked(3),
            "the status event before 7 is not acknowledged yet"
        );
        o.connection_lost();
        let again: Vec<&[u8]> = o.next_to_send().iter().map(|(_, _, p)| *p).collect();
        assert_eq!(
            again,
            vec![b"s".as_slice()],
            "7 was acknowledged; s goes again"
        );
        o.sent(0, 1);
        assert!(o.acked(1));
        assert_eq!(o.watermark(), 7);
        assert!(o.is_empty());
    }

    #[test]
    fn full_and_room() {
        let mut o = Outbox::new(4, 2, 0);
        for seq in 1..=4 {
            o.push(Some(seq), Topic::Verdict, Vec::new());
        }
        assert!(o.is_full() && !o.has_room());
    }

    #[test]
    fn splicing_keeps_the_daemon_line_and_adds_the_line_and_run() {
        let line = r#"{"type":"verdict","v":2,"seq":3}"#;
        let out = splice(&format!("{line}\n"), "line-1", "ab12");
        let text = String::from_utf8(out).unwrap();
        assert_eq!(
            text,
            r#"{"line":"line-1","run_id":"ab12","type":"verdict","v":2,"seq":3}"#
        );
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["seq"], 3);
    }

    #[test]
    fn the_state_file_round_trips_and_a_foreign_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mqtt.state");
        assert_eq!(load_state(&path).unwrap(), None);
        let s = Persisted {
            run_id: "ab".into(),
            acked_seq: 42,
        };
        save_state(&path, &s, true).unwrap();
        save_state(&path, &s, false).unwrap();
        assert_eq!(load_state(&path).unwrap(), Some(s));
        std::fs::write(&path, "hello").unwrap();
        assert!(matches!(
            load_state(&path),
            Err(StateFileError::Foreign { .. })
        ));
    }
}
