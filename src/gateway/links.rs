//! A link to the daemon's verdict socket as the gateway holds it: the connection (shared
//! `daemon_link::Connection`), reconnecting with capped backoff, pinging a quiet daemon and
//! dropping a silent one. The gateway has two: `live` (the page and `/metrics`) and `delivery`
//! (MQTT, which acknowledges what the broker has).

use std::time::{Duration, Instant};

use mio::{Interest, Registry, Token};

use crate::backoff::Backoff;
use crate::daemon_link::{self, Connection, LinkError};
use crate::error::chain;

/// A daemon quiet this long is pinged (heartbeats may be off) …
const QUIET: Duration = Duration::from_secs(2);
/// … and one that answers nothing for this long (or never says hello) is dropped.
const SILENT: Duration = Duration::from_secs(6);

pub struct Link {
    name: &'static str,
    token: Token,
    socket: std::path::PathBuf,
    pub conn: Option<Connection>,
    backoff: Backoff,
    /// When to connect next (`None` while connected, or paused by the caller).
    pub retry_at: Option<Instant>,
    failure_logged: bool,
    /// Connections made after the first.
    pub reconnects: u64,
    connected_once: bool,
}

impl Link {
    pub fn new(
        name: &'static str,
        token: Token,
        socket: &std::path::Path,
        initial: Duration,
        max: Duration,
    ) -> Link {
        Link {
            name,
            token,
            socket: socket.to_path_buf(),
            conn: None,
            backoff: Backoff::new(initial, max),
            retry_at: Some(Instant::now()),
            failure_logged: false,
            reconnects: 0,
            connected_once: false,
        }
    }

    pub fn greeted(&self) -> bool {
        self.conn.as_ref().is_some_and(|c| c.greeted)
    }

    /// Connects now; a failure schedules the next attempt.
    pub fn connect(&mut self, registry: &Registry) {
        self.retry_at = None;
        match Connection::connect(&self.socket) {
            Ok(mut conn) => {
                let interest = Interest::READABLE | Interest::WRITABLE;
                if let Err(e) = registry.register(&mut conn.stream, self.token, interest) {
                    self.failed(registry, &LinkError::Read(e));
                    return;
                }
                tracing::debug!(link = self.name, socket = %self.socket.display(), "connected to the daemon");
                if self.connected_once {
                    self.reconnects += 1;
                }
                self.connected_once = true;
                self.conn = Some(conn);
            }
            Err(e) => {
                self.failed(registry, &e);
            }
        }
    }

    /// The hello arrived: the link works (backoff starts over).
    pub fn greeted_now(&mut self) {
        if let Some(c) = self.conn.as_mut() {
            c.greeted = true;
        }
        self.backoff.reset();
        self.failure_logged = false;
    }

    /// Drops the connection and schedules a reconnect; returns whether it had been greeted.
    pub fn failed(&mut self, registry: &Registry, e: &LinkError) -> bool {
        let was_greeted = self.greeted();
        if let Some(mut conn) = self.conn.take() {
            let _ = registry.deregister(&mut conn.stream);
        }
        let delay = self.backoff.next_delay();
        self.retry_at = Some(Instant::now() + delay);
        if was_greeted || !self.failure_logged {
            tracing::warn!(link = self.name, error = %chain(e), retry_ms = delay.as_millis() as u64, "daemon unreachable");
            self.failure_logged = true;
        } else {
            tracing::debug!(link = self.name, error = %chain(e), "daemon still unreachable");
        }
        was_greeted
    }

    /// Closes the link on purpose (no reconnect until `resume`).
    pub fn pause(&mut self, registry: &Registry) {
        if let Some(mut conn) = self.conn.take() {
            let _ = registry.deregister(&mut conn.stream);
        }
        self.retry_at = None;
    }

    pub fn paused(&self) -> bool {
        self.conn.is_none() && self.retry_at.is_none()
    }

    pub fn resume(&mut self) {
        if self.paused() {
            self.retry_at = Some(Instant::now());
        }
    }

    /// Queues a command; a write failure drops the link.
    pub fn send(&mut self, registry: &Registry, line: &str) {
        let Some(conn) = self.conn.as_mut() else {
            return;
        };
        if let Err(e) = conn.send(line) {
            self.failed(registry, &e);
        }
    }

    /// Flushes and reads: the complete lines, or the error that ended the link.
    pub fn ready(&mut self) -> Result<Vec<String>, LinkError> {
        let Some(conn) = self.conn.as_mut() else {
            return Ok(Vec::new());
        };
        conn.flush()?;
        conn.read_lines()
    }

    /// The daemon closed the link after the lines last read: the error that ends it.
    pub fn closed(&mut self) -> Option<LinkError> {
        let conn = self.conn.as_mut()?;
        if conn.at_eof() {
            return conn.read_lines().err();
        }
        None
    }

    /// Pings a quiet daemon; an error for one that stayed silent (or never said hello).
    pub fn liveness(&mut self, registry: &Registry, now: Instant) -> Option<LinkError> {
        let conn = self.conn.as_mut()?;
        let quiet = now.saturating_duration_since(conn.last_heard);
        if quiet >= SILENT {
            return Some(LinkError::Silent(quiet));
        }
        if quiet >= QUIET && !conn.pinged && conn.greeted {
            conn.pinged = true;
            self.send(registry, &daemon_link::ping_command());
        }
        None
    }

    /// The next time this link needs the loop.
    pub fn deadline(&self) -> Option<Instant> {
        match &self.conn {
            Some(c) => Some(c.last_heard + if c.pinged { SILENT } else { QUIET }),
            None => self.retry_at,
        }
    }
}
