//! One connection: its credentials, its queue of outgoing lines, its incoming bytes split into
//! lines, and its command rate limit.

use std::collections::VecDeque;
use std::io::{self, ErrorKind, Read, Write};
use std::sync::Arc;
use std::time::Instant;

use mio::net::UnixStream;

use super::peer::Peer;
use crate::wire::MAX_COMMAND_LINE;

/// Bytes read from one client per readable event; the rest waits for the next turn of the
/// loop, so a client sending fast cannot starve the others.
pub(super) const READ_BUDGET: usize = 64 * 1024;

/// Refused (rate-limited) lines after which a client is disconnected.
pub(super) const MAX_REFUSED: u64 = 1000;

/// A line waiting to be written.
pub(super) enum Queued {
    /// A verdict, status event, gap or heartbeat: replaced when the client resubscribes.
    Stream(Arc<str>),
    /// The reply to a command: always delivered.
    Reply(Arc<str>),
}

impl Queued {
    fn text(&self) -> &str {
        match self {
            Queued::Stream(s) | Queued::Reply(s) => s,
        }
    }
}

pub(super) struct Client {
    pub id: u64,
    pub stream: UnixStream,
    pub peer: Option<Peer>,
    /// May send `trigger` and `report`.
    pub control: bool,
    /// `false` once the client shut down its sending side (or is being closed): nothing more
    /// is read, but it is still served.
    pub reading: bool,
    /// Closed once its queue is written (after `line too long`, or a flood).
    pub closing: bool,
    pub queue: VecDeque<Queued>,
    /// Bytes of the front line already written.
    offset: usize,
    /// Received bytes not yet ending in a newline.
    partial: Vec<u8>,
    pub bucket: TokenBucket,
    /// Lines refused by the rate limit.
    pub refused: u64,
    pub acked_seq: Option<u64>,
    /// While resuming (`subscribe`): the retention ring's index of the next line to send; live
    /// lines are not queued meanwhile (they are in the ring too).
    pub cursor: Option<u64>,
}

pub(super) enum Flush {
    Done,
    Blocked,
    Closed(io::Error),
}

/// What one readable event got from a client.
pub(super) struct Input {
    /// Complete lines, without their newline.
    pub lines: Vec<Vec<u8>>,
    /// The client closed its sending side.
    pub eof: bool,
    /// The read budget ran out before the socket was drained: read again next turn.
    pub more: bool,
    /// A line longer than [`MAX_COMMAND_LINE`] arrived.
    pub too_long: bool,
    pub error: Option<io::Error>,
}

impl Client {
    pub fn new(id: u64, stream: UnixStream, peer: Option<Peer>, control: bool, rate: u32) -> Self {
        Client {
            id,
            stream,
            peer,
            control,
            reading: true,
            closing: false,
            queue: VecDeque::new(),
            offset: 0,
            partial: Vec::new(),
            bucket: TokenBucket::new(rate),
            refused: 0,
            acked_seq: None,
            cursor: None,
        }
    }

    /// Queues a live line (not while resuming or closing).
    pub fn push_live(&mut self, line: &Arc<str>) {
        if self.cursor.is_none() && !self.closing {
            self.queue.push_back(Queued::Stream(line.clone()));
        }
    }

    pub fn reply(&mut self, line: String) {
        self.queue.push_back(Queued::Reply(Arc::from(line)));
    }

    /// Drops the queued stream lines not yet begun (a line partly written is finished first);
    /// replies stay.
    pub fn drop_unsent_stream(&mut self) {
        let started = if self.offset > 0 {
            self.queue.pop_front()
        } else {
            None
        };
        self.queue.retain(|q| matches!(q, Queued::Reply(_)));
        if let Some(front) = started {
            self.queue.push_front(front);
        }
    }

    pub fn flush(&mut self) -> Flush {
        while let Some(front) = self.queue.front() {
            let bytes = front.text().as_bytes();
            match self.stream.write(&bytes[self.offset..]) {
                Ok(0) => {
                    return Flush::Closed(io::Error::new(ErrorKind::WriteZero, "wrote 0 bytes"));
                }
                Ok(n) => {
                    self.offset += n;
                    if self.offset == bytes.len() {
                        self.queue.pop_front();
                        self.offset = 0;
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Flush::Blocked,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Flush::Closed(e),
            }
        }
        Flush::Done
    }

    /// Reads at most [`READ_BUDGET`] bytes and splits them into lines.
    pub fn read_lines(&mut self) -> Input {
        let mut input = Input {
            lines: Vec::new(),
            eof: false,
            more: false,
            too_long: false,
            error: None,
        };
        let mut buf = [0u8; 16 * 1024];
        let mut budget = READ_BUDGET;
        while budget > 0 {
            let want = budget.min(buf.len());
            match self.stream.read(&mut buf[..want]) {
                Ok(0) => {
                    input.eof = true;
                    break;
                }
                Ok(n) => {
                    budget -= n;
                    self.split(&buf[..n], &mut input);
                    if input.too_long {
                        return input;
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return input,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => {
                    input.error = Some(e);
                    return input;
                }
            }
        }
        input.more = !input.eof;
        input
    }

    fn split(&mut self, mut bytes: &[u8], input: &mut Input) {
        while let Some(nl) = bytes.iter().position(|&b| b == b'\n') {
            if self.partial.len() + nl + 1 > MAX_COMMAND_LINE {
                input.too_long = true;
                return;
            }
            let mut line = std::mem::take(&mut self.partial);
            line.extend_from_slice(&bytes[..nl]);
            input.lines.push(line);
            bytes = &bytes[nl + 1..];
        }
        // Without its newline yet; with it, it would be one byte longer.
        if self.partial.len() + bytes.len() >= MAX_COMMAND_LINE {
            input.too_long = true;
            return;
        }
        self.partial.extend_from_slice(bytes);
    }
}

/// Commands per second with bursts of twice that.
pub(super) struct TokenBucket {
    tokens: f64,
    rate: f64,
    burst: f64,
    last: Instant,
}

impl TokenBucket {
    pub fn new(per_second: u32) -> TokenBucket {
        let rate = f64::from(per_second.max(1));
        TokenBucket {
            tokens: 2.0 * rate,
            rate,
            burst: 2.0 * rate,
            last: Instant::now(),
        }
    }

    /// Takes one token if there is one.
    pub fn take(&mut self) -> bool {
        let now = Instant::now();
        let earned = now.duration_since(self.last).as_secs_f64() * self.rate;
        self.tokens = (self.tokens + earned).min(self.burst);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_of_twice_the_rate_then_refusals() {
        let mut b = TokenBucket::new(10);
        let taken = (0..100).filter(|_| b.take()).count();
        assert!((20..=21).contains(&taken), "{taken}");
    }

    fn client() -> (Client, std::os::unix::net::UnixStream) {
        let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
        a.set_nonblocking(true).unwrap();
        (Client::new(1, UnixStream::from_std(a), None, false, 10), b)
    }

    #[test]
    fn lines_are_split_and_an_overlong_one_is_caught() {
        let (mut c, mut peer) = client();
        peer.write_all(b"{\"a\":1}\n{\"b\"").unwrap();
        let got = c.read_lines();
        assert_eq!(got.lines, vec![b"{\"a\":1}".to_vec()]);
        assert!(!got.too_long && !got.eof);
        peer.write_all(b":2}\n").unwrap();
        assert_eq!(c.read_lines().lines, vec![b"{\"b\":2}".to_vec()]);
        peer.write_all(&vec![b'x'; MAX_COMMAND_LINE - 1]).unwrap();
        peer.write_all(b"\n").unwrap();
        assert_eq!(
            c.read_lines().lines.len(),
            1,
            "64 KiB with its newline is allowed"
        );
        peer.write_all(&vec![b'x'; MAX_COMMAND_LINE]).unwrap();
        let mut too_long = false;
        for _ in 0..4 {
            too_long |= c.read_lines().too_long;
        }
        assert!(too_long);
    }

    #[test]
    fn resubscribing_keeps_replies_and_a_started_line() {
        let (mut c, _peer) = client();
        c.queue.push_back(Queued::Stream(Arc::from("s1\n")));
        c.reply("r1\n".into());
        c.queue.push_back(Queued::Stream(Arc::from("s2\n")));
        c.offset = 1;
        c.drop_unsent_stream();
        let left: Vec<&str> = c.queue.iter().map(Queued::text).collect();
        assert_eq!(left, ["s1\n", "r1\n"]);
    }
}
