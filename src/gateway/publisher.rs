//! MQTT for the plant: the delivery link to the daemon, the broker session, and the outbox
//! between them. Every verdict and status event the daemon retains goes to the broker with
//! QoS 1; the daemon is told `ack {seq}` only for what the broker has acknowledged, and that seq
//! is persisted, so a broker outage or a gateway restart loses nothing the daemon still retains
//! (duplicates, with the same `seq`, only across such a break). A broker that is down stalls
//! only the outbox; when it is full the delivery link is closed and the daemon's retention is the
//! buffer, so inspection is never slowed. `online` is retained and is the Last Will: `false`
//! when the gateway dies, or while the daemon is unreachable.

use std::time::{Duration, Instant};

use mio::{Registry, Token};

use super::delivery::{self, Outbox, Persisted, StateFileError, Topic};
use super::links::Link;
use super::metrics::MqttStats;
use super::mqtt::{MqttError, MqttEvent, MqttSettings, Session, Will};
use crate::backoff::Backoff;
use crate::config::MqttConfig;
use crate::daemon_link::{self, Inbound, LinkError, Resume, Start};
use crate::error::chain;

/// The broker's write buffer beyond which nothing more is queued (heartbeats are skipped,
/// publishes wait for PUBACKs to drain it).
const MAX_BUFFERED: usize = 1 << 20;
/// The state file is written at most this often while the watermark moves.
const SAVE_EVERY: Duration = Duration::from_millis(200);
/// The daemon is told the watermark at most this often: one `ack` per PUBACK would be a command
/// per verdict, far above the daemon's per-client command rate limit (200/s by default).
const ACK_EVERY: Duration = Duration::from_millis(100);

#[derive(Debug, thiserror::Error)]
pub enum PublisherError {
    #[error(transparent)]
    State(#[from] StateFileError),
    #[error("reading the MQTT password from {path}")]
    Password {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
}

pub struct Publisher {
    cfg: MqttConfig,
    settings: MqttSettings,
    pub link: Link,
    resume: Resume,
    session: Option<Session>,
    session_token: Token,
    retry_at: Option<Instant>,
    backoff: Backoff,
    connected_once: bool,
    outbox: Outbox,
    /// The daemon is reachable on the delivery link (greeted, not failed since); `None` until
    /// the first hello or failure, so a start does not publish `false` for a daemon about to
    /// answer.
    daemon_up: Option<bool>,
    /// What `online` was last published as on this broker connection.
    online_told: Option<bool>,
    /// The highest seq the daemon announced in the current run (hello, heartbeat): what a new
    /// run's hello says was lost when the delivery had not taken that far.
    announced: u64,
    /// The last seq acknowledged to the daemon, and when the next `ack` may go.
    told_seq: u64,
    next_ack: Instant,
    ack_due: bool,
    save_at: Option<Instant>,
    saved: Option<Persisted>,
    pub stats: MqttStats,
    topic_verdict: String,
    topic_status: String,
    topic_heartbeat: String,
    topic_online: String,
}

impl Publisher {
    pub fn new(
        cfg: MqttConfig,
        link: Link,
        session_token: Token,
    ) -> Result<Publisher, PublisherError> {
        let saved = delivery::load_state(&cfg.state_file)?;
        let (resume, watermark) = match &saved {
            Some(p) => {
                tracing::info!(run_id = p.run_id, acked_seq = p.acked_seq, state_file = %cfg.state_file.display(), "resuming MQTT delivery from the state file");
                (Resume::restored(&p.run_id, p.acked_seq), p.acked_seq)
            }
            None => (Resume::everything(), 0),
        };
        let base = format!("{}/{}", cfg.topic_prefix, cfg.line);
        let password = match &cfg.password_file {
            Some(path) => {
                let mut b = std::fs::read(path).map_err(|source| PublisherError::Password {
                    path: path.clone(),
                    source,
                })?;
                while b.last().is_some_and(|c| *c == b'\n' || *c == b'\r') {
                    b.pop();
                }
                Some(b)
            }
            None => None,
        };
        let settings = MqttSettings {
            broker: cfg.broker.clone(),
            client_id: cfg.client_id.clone(),
            username: cfg.username.clone(),
            password,
            keep_alive: cfg.keep_alive,
            connect_timeout: Duration::from_secs(10),
            will: Some(Will {
                topic: format!("{base}/online"),
                payload: b"false".to_vec(),
                qos1: true,
                retain: true,
            }),
        };
        Ok(Publisher {
            backoff: Backoff::new(cfg.reconnect_initial, cfg.reconnect_max),
            outbox: Outbox::new(cfg.outbox, cfg.max_inflight, watermark),
            topic_verdict: format!("{base}/verdict"),
            topic_status: format!("{base}/status"),
            topic_heartbeat: format!("{base}/heartbeat"),
            topic_online: format!("{base}/online"),
            told_seq: watermark,
            next_ack: Instant::now(),
            ack_due: false,
            saved,
            cfg,
            settings,
            link,
            resume,
            session: None,
            session_token,
            retry_at: Some(Instant::now()),
            connected_once: false,
            daemon_up: None,
            online_told: None,
            announced: 0,
            save_at: None,
            stats: MqttStats::default(),
        })
    }

    fn connected(&self) -> bool {
        self.session.as_ref().is_some_and(Session::connected)
    }

    pub fn snapshot(&mut self) -> MqttStats {
        self.stats.connected = self.connected();
        self.stats.acked_seq = self.outbox.watermark();
        self.stats.outbox = self.outbox.len();
        self.stats.published = self.outbox.published;
        self.stats.clone()
    }

    // ---- the daemon side ----

    /// The delivery link is readable or writable.
    pub fn link_ready(&mut self, registry: &Registry) {
        match self.link.ready() {
            Ok(lines) => {
                for line in lines.iter().filter(|l| !l.is_empty()) {
                    match daemon_link::parse(line) {
                        Ok(msg) => self.on_daemon(registry, msg, line),
                        Err(e) => {
                            tracing::warn!(error = %chain(&e), "ignoring a line from the daemon")
                        }
                    }
                    if self.link.paused() {
                        // The outbox is full: the rest of what was read comes again after the
                        // resubscribe (none of it was taken), so the outbox stays bounded.
                        return self.pump(registry);
                    }
                }
                if let Some(e) = self.link.closed() {
                    self.link_failed(registry, &e);
                }
            }
            Err(e) => self.link_failed(registry, &e),
        }
        self.pump(registry);
    }

    fn link_failed(&mut self, registry: &Registry, e: &LinkError) {
        self.link.failed(registry, e);
        self.daemon_gone(registry);
    }

    /// The daemon is unreachable: `online` false (also when it was never reached).
    fn daemon_gone(&mut self, registry: &Registry) {
        if self.daemon_up != Some(false) {
            self.daemon_up = Some(false);
            self.publish_online(registry);
        }
    }

    fn on_daemon(&mut self, registry: &Registry, msg: Inbound, line: &str) {
        match msg {
            Inbound::Hello(h) => {
                let taken = self.resume.last_seq();
                let start = self.resume.hello(&h.run_id, h.seq);
                if start == Start::NewRun {
                    let unseen = self.announced.saturating_sub(taken);
                    if unseen > 0 {
                        tracing::warn!(
                            count = unseen,
                            "the daemon restarted before its last verdicts were taken: lost for MQTT"
                        );
                        self.stats.lost += unseen;
                    }
                    tracing::info!(
                        run_id = h.run_id,
                        "a new daemon run: delivering from its first seq"
                    );
                    self.outbox.new_run();
                    self.announced = 0;
                }
                self.announced = self.announced.max(h.seq);
                // A new connection has been told nothing yet.
                self.told_seq = 0;
                let from_seq = Resume::from_seq(start);
                self.link.greeted_now();
                self.link
                    .send(registry, &daemon_link::subscribe_command(from_seq));
                tracing::info!(run_id = h.run_id, from_seq, "delivery subscribed");
                self.daemon_up = Some(true);
                self.publish_online(registry);
            }
            Inbound::Subscribed { .. } => self.resume.subscribed(),
            Inbound::Verdict(v) if self.resume.accept(v.seq) => {
                let payload = delivery::splice(line, &self.cfg.line, self.run_id());
                self.outbox.push(Some(v.seq), Topic::Verdict, payload);
                if self.outbox.is_full() {
                    tracing::warn!(
                        outbox = self.outbox.len(),
                        acked_seq = self.outbox.watermark(),
                        "MQTT outbox full: the daemon's retention holds the rest until the broker catches up"
                    );
                    self.link.pause(registry);
                }
            }
            Inbound::Status { .. } | Inbound::Gap { .. } if self.resume.awaiting_cut() => {}
            Inbound::Status { .. } => {
                let payload = delivery::splice(line, &self.cfg.line, self.run_id());
                self.outbox.push(None, Topic::Status, payload);
            }
            Inbound::Gap {
                from_seq,
                to_seq,
                count,
            } => {
                tracing::warn!(
                    from_seq,
                    to_seq,
                    count,
                    "verdicts no longer retained by the daemon: lost for MQTT"
                );
                self.stats.lost += count;
                self.resume.gap(to_seq);
                let payload = delivery::splice(line, &self.cfg.line, self.run_id());
                self.outbox.push(None, Topic::Status, payload);
            }
            Inbound::Heartbeat(h) => {
                self.announced = self.announced.max(h.seq);
                self.publish_heartbeat(line);
            }
            _ => {}
        }
    }

    fn run_id(&self) -> &str {
        self.resume.run_id().unwrap_or("")
    }

    // ---- the broker side ----

    /// Connects to the broker now; a failure schedules the next attempt.
    fn connect(&mut self, registry: &Registry) {
        self.retry_at = None;
        match Session::connect(&self.settings, registry, self.session_token) {
            Ok(s) => self.session = Some(s),
            Err(e) => self.session_closed(&e),
        }
    }

    fn session_closed(&mut self, e: &MqttError) {
        let was = self.connected();
        self.session = None;
        self.online_told = None;
        self.outbox.connection_lost();
        let delay = self.backoff.next_delay();
        self.retry_at = Some(Instant::now() + delay);
        if was || !self.connected_once {
            tracing::warn!(broker = self.cfg.broker, error = %chain(e), retry_ms = delay.as_millis() as u64, outbox = self.outbox.len(), "MQTT broker unreachable");
        } else {
            tracing::debug!(broker = self.cfg.broker, error = %chain(e), "MQTT broker still unreachable");
        }
    }

    /// The broker connection is readable or writable.
    pub fn session_ready(&mut self, registry: &Registry) {
        let Some(session) = self.session.as_mut() else {
            return;
        };
        for event in session.ready(registry) {
            match event {
                MqttEvent::Connected { .. } => {
                    if self.connected_once {
                        self.stats.reconnects += 1;
                    }
                    self.connected_once = true;
                    self.backoff.reset();
                    tracing::info!(
                        broker = self.cfg.broker,
                        client_id = self.cfg.client_id,
                        outbox = self.outbox.len(),
                        "MQTT connected"
                    );
                    self.publish_online(registry);
                }
                MqttEvent::PubAck(pid) => {
                    if self.outbox.acked(pid) {
                        self.save_at.get_or_insert(Instant::now() + SAVE_EVERY);
                    }
                }
                MqttEvent::Closed(e) => {
                    self.session_closed(&e);
                    break;
                }
            }
        }
        self.pump(registry);
    }

    fn publish_online(&mut self, _registry: &Registry) {
        let Some(online) = self.daemon_up else {
            return;
        };
        if !self.connected() || self.online_told == Some(online) {
            return;
        }
        let payload: &[u8] = if online { b"true" } else { b"false" };
        let topic = self.topic_online.clone();
        if let Some(s) = self.session.as_mut() {
            match s.publish(&topic, payload, true, true) {
                Ok(_) => self.online_told = Some(online),
                Err(e) => self.session_closed(&e),
            }
        }
    }

    /// The daemon's heartbeat with the gateway's delivery state, QoS 0, retained.
    fn publish_heartbeat(&mut self, line: &str) {
        if !self.connected()
            || self
                .session
                .as_ref()
                .is_some_and(|s| s.buffered() > MAX_BUFFERED / 2)
        {
            return;
        }
        let gateway = serde_json::json!({"acked_seq": self.outbox.watermark(), "outbox": self.outbox.len(), "lost": self.stats.lost});
        let body = line.trim_end().strip_prefix('{').unwrap_or(line);
        let payload = format!(
            "{{\"line\":{},\"gateway\":{gateway},{body}",
            serde_json::Value::from(self.cfg.line.as_str())
        );
        let topic = self.topic_heartbeat.clone();
        if let Some(s) = self.session.as_mut()
            && let Err(e) = s.publish(&topic, payload.as_bytes(), false, true)
        {
            self.session_closed(&e);
        }
    }

    /// Publishes what the outbox has ready, and tells the daemon what the broker has.
    pub fn pump(&mut self, registry: &Registry) {
        if let Some(s) = self.session.as_mut() {
            s.cork();
        }
        self.publish_ready();
        if let Some(s) = self.session.as_mut() {
            s.uncork();
        }
        self.ack_daemon(registry);
    }

    /// Publishes what the outbox has ready (queued: `pump` writes them together).
    fn publish_ready(&mut self) {
        while self.connected() {
            let next: Vec<(usize, Topic, Vec<u8>)> = self
                .outbox
                .next_to_send()
                .into_iter()
                .map(|(i, t, p)| (i, t, p.to_vec()))
                .collect();
            if next.is_empty() {
                break;
            }
            for (i, topic, payload) in next {
                let name = match topic {
                    Topic::Verdict => &self.topic_verdict,
                    Topic::Status => &self.topic_status,
                };
                let Some(s) = self.session.as_mut() else {
                    return;
                };
                if s.buffered() > MAX_BUFFERED {
                    return;
                }
                match s.publish(name, &payload, true, false) {
                    Ok(Some(pid)) => self.outbox.sent(i, pid),
                    Ok(None) => {}
                    Err(e) => {
                        self.session_closed(&e);
                        return;
                    }
                }
            }
        }
    }

    fn ack_daemon(&mut self, registry: &Registry) {
        let watermark = self.outbox.watermark();
        self.ack_due = watermark > self.told_seq && self.link.greeted();
        let now = Instant::now();
        if self.ack_due && now >= self.next_ack {
            self.link
                .send(registry, &daemon_link::ack_command(watermark));
            self.told_seq = watermark;
            self.next_ack = now + ACK_EVERY;
            self.ack_due = false;
        }
        if self.link.paused() && self.outbox.has_room() {
            tracing::info!(
                outbox = self.outbox.len(),
                "MQTT outbox drained: taking verdicts from the daemon again"
            );
            self.link.resume();
        }
    }

    fn save(&mut self, sync: bool) {
        self.save_at = None;
        let Some(run_id) = self.resume.run_id() else {
            return;
        };
        let state = Persisted {
            run_id: run_id.to_string(),
            acked_seq: self.outbox.watermark(),
        };
        if self.saved.as_ref() == Some(&state) && !sync {
            return;
        }
        match delivery::save_state(&self.cfg.state_file, &state, sync) {
            Ok(()) => self.saved = Some(state),
            Err(e) => tracing::warn!(error = %chain(&e), "cannot persist the MQTT delivery state"),
        }
    }

    pub fn timers(&mut self, registry: &Registry, now: Instant) {
        if self.retry_at.is_some_and(|t| now >= t) {
            self.connect(registry);
        }
        if let Some(s) = self.session.as_mut()
            && let Err(e) = s.tick(now)
        {
            self.session_closed(&e);
        }
        if self.link.retry_at.is_some_and(|t| now >= t) {
            self.link.connect(registry);
            // A link closed on purpose (full outbox) that cannot reconnect: the daemon is gone.
            if self.link.conn.is_none() {
                self.daemon_gone(registry);
            }
        }
        if let Some(e) = self.link.liveness(registry, now) {
            self.link_failed(registry, &e);
        }
        if self.save_at.is_some_and(|t| now >= t) {
            self.save(false);
        }
        if self.ack_due && now >= self.next_ack {
            self.ack_daemon(registry);
        }
    }

    pub fn deadline(&self) -> Option<Instant> {
        [
            self.retry_at,
            self.session.as_ref().and_then(Session::next_deadline),
            self.link.deadline(),
            self.save_at,
            self.ack_due.then_some(self.next_ack),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// A clean stop: `online` false, the broker connection closed (no Will), the state synced.
    pub fn stop(&mut self, registry: &Registry) {
        self.daemon_up = Some(false);
        self.publish_online(registry);
        if let Some(mut s) = self.session.take() {
            s.disconnect(registry);
        }
        self.save(true);
    }
}
