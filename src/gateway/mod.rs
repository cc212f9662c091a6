//! `inspectord gateway`: the plant's view of one line, as a separate process that is an
//! ordinary client of the daemon's verdict socket (protocol v2), so the daemon stays
//! network-free. It serves Prometheus metrics (`/metrics`), a live operator page (`/`, with
//! server-sent events on `/events`), and publishes every verdict to an MQTT broker with
//! at-least-once delivery. One single-threaded `mio` event loop holds everything: the HTTP
//! listener and connections, the live link to the daemon (page and metrics), the delivery link
//! and the broker session (`publisher.rs`), the signal pipe and the timers. No threads.
//! Documented in `docs/GATEWAY.md`.

pub mod delivery;
pub mod gallery;
pub mod http;
pub mod links;
pub mod metrics;
pub mod mqtt;
pub mod publisher;
pub mod view;

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use mio::net::TcpListener;
use mio::{Events, Interest, Poll, Token};
use prometheus::process_collector::ProcessCollector;

use crate::config::GatewayConfig;
use crate::daemon_link::{self, Inbound};
use crate::error::chain;
use crate::stop::SignalPipe;
use crate::wire::page::{self, GalleryItem};
use http::{Conn, Input};
use links::Link;
use metrics::GatewayStats;
use publisher::Publisher;
use view::LiveView;

const LISTENER: Token = Token(0);
const LIVE: Token = Token(1);
const DELIVERY: Token = Token(2);
const MQTT: Token = Token(3);
const SIGNALS: Token = Token(4);
const FIRST_CONN: usize = 16;
/// New scores go to the page streams this often (batched).
const STREAM_TICK: Duration = Duration::from_millis(250);
/// The full state goes to the page streams this often (and on a change of reachability).
const STATE_EVERY: Duration = Duration::from_secs(1);
/// After a failed frame, the gallery is looked at again once the daemon has saved the image.
const GALLERY_DELAY: Duration = Duration::from_millis(500);
/// And every so often anyway (images of an earlier run, a quota that removed some).
const GALLERY_EVERY: Duration = Duration::from_secs(10);
/// After lines from the daemon, the loop waits this long before it looks again, so that at a
/// high frame rate it takes several verdicts per wake-up (fewer wake-ups, reads and writes on a
/// machine whose cores the daemon needs) at the cost of this much delay to the page and MQTT.
const COALESCE: Duration = Duration::from_millis(2);

const INDEX_HTML: &[u8] = include_bytes!("web/index.html");
const APP_JS: &[u8] = include_bytes!("web/app.js");
const APP_CSS: &[u8] = include_bytes!("web/app.css");

#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("cannot listen for HTTP on {addr}")]
    Listen {
        addr: SocketAddr,
        #[source]
        source: io::Error,
    },
    #[error("event loop")]
    Poll(#[source] io::Error),
    #[error("installing the signal handlers")]
    Signals(#[source] io::Error),
    #[error(transparent)]
    Mqtt(#[from] publisher::PublisherError),
}

/// The gateway: everything the event loop owns.
pub struct Gateway {
    cfg: GatewayConfig,
    poll: Poll,
    listener: TcpListener,
    conns: HashMap<Token, Conn>,
    next_token: usize,
    live: Link,
    view: LiveView,
    publisher: Option<Publisher>,
    next_status: Instant,
    next_tick: Instant,
    next_state: Instant,
    /// Reachability as last sent to the page streams.
    told_up: Option<bool>,
    /// Between the live link's `subscribe` and `subscribed`: verdicts already in the socket
    /// are ignored (the cut repeats them, and the re-seed must not be skipped as old).
    live_cut: bool,
    gallery: Vec<GalleryItem>,
    next_gallery: Instant,
    stats: GatewayStats,
    process: ProcessCollector,
    signals: SignalPipe,
    stop: bool,
}

/// Runs the gateway until SIGINT or SIGTERM.
pub fn run(cfg: GatewayConfig) -> Result<(), GatewayError> {
    let mut gateway = Gateway::new(cfg)?;
    if let Some(n) = crate::service::Notifier::from_env() {
        n.ready("serving HTTP");
    }
    gateway.serve()
}

impl Gateway {
    fn new(cfg: GatewayConfig) -> Result<Gateway, GatewayError> {
        let poll = Poll::new().map_err(GatewayError::Poll)?;
        let listen = cfg.listen;
        let listen_err = |source| GatewayError::Listen {
            addr: listen,
            source,
        };
        let std_listener = std::net::TcpListener::bind(listen).map_err(listen_err)?;
        std_listener.set_nonblocking(true).map_err(listen_err)?;
        let local = std_listener.local_addr().map_err(listen_err)?;
        let mut listener = TcpListener::from_std(std_listener);
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)
            .map_err(GatewayError::Poll)?;
        let signals =
            SignalPipe::register(poll.registry(), SIGNALS).map_err(GatewayError::Signals)?;
        let link = |name, token| {
            Link::new(
                name,
                token,
                &cfg.socket,
                cfg.reconnect_initial,
                cfg.reconnect_max,
            )
        };
        let publisher = match &cfg.mqtt {
            Some(m) => Some(Publisher::new(m.clone(), link("delivery", DELIVERY), MQTT)?),
            None => None,
        };
        tracing::info!(
            listen = %local,
            socket = %cfg.socket.display(),
            mqtt = cfg.mqtt.as_ref().map(|m| m.broker.as_str()),
            line = cfg.mqtt.as_ref().map(|m| m.line.as_str()),
            failures_dir = cfg.failures_dir.as_ref().map(|d| d.display().to_string()),
            "gateway listening"
        );
        let now = Instant::now();
        Ok(Gateway {
            live: link("live", LIVE),
            view: LiveView::new(cfg.chart_points),
            publisher,
            cfg,
            poll,
            listener,
            conns: HashMap::new(),
            next_token: FIRST_CONN,
            next_status: now,
            next_tick: now + STREAM_TICK,
            next_state: now + STATE_EVERY,
            told_up: None,
            live_cut: false,
            gallery: Vec::new(),
            next_gallery: now,
            stats: GatewayStats::default(),
            process: ProcessCollector::for_self(),
            signals,
            stop: false,
        })
    }

    fn serve(&mut self) -> Result<(), GatewayError> {
        let mut events = Events::with_capacity(128);
        while !self.stop {
            self.timers(Instant::now());
            let timeout = self
                .next_deadline()
                .saturating_duration_since(Instant::now());
            match self.poll.poll(&mut events, Some(timeout)) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(GatewayError::Poll(e)),
            }
            let mut from_daemon = false;
            for event in events.iter() {
                from_daemon |= matches!(event.token(), LIVE | DELIVERY);
                match event.token() {
                    LISTENER => self.accept(),
                    LIVE => self.live_ready(),
                    DELIVERY => {
                        if let Some(p) = self.publisher.as_mut() {
                            p.link_ready(self.poll.registry());
                        }
                    }
                    MQTT => {
                        if let Some(p) = self.publisher.as_mut() {
                            p.session_ready(self.poll.registry());
                        }
                    }
                    SIGNALS => self.signalled(),
                    token => self.conn_ready(token),
                }
            }
            if from_daemon && !self.stop {
                std::thread::sleep(COALESCE);
            }
        }
        tracing::info!("gateway stopping");
        if let Some(p) = self.publisher.as_mut() {
            p.stop(self.poll.registry());
        }
        Ok(())
    }

    fn signalled(&mut self) {
        self.signals.drain();
        self.stop = true;
    }

    fn next_deadline(&self) -> Instant {
        let mut at = self.next_tick.min(self.next_state).min(self.next_gallery);
        if self.live.greeted() {
            at = at.min(self.next_status);
        }
        for t in [
            self.live.deadline(),
            self.publisher.as_ref().and_then(Publisher::deadline),
        ]
        .into_iter()
        .flatten()
        {
            at = at.min(t);
        }
        at
    }

    fn timers(&mut self, now: Instant) {
        let registry = self.poll.registry();
        if self.live.retry_at.is_some_and(|t| now >= t) {
            self.live.connect(registry);
        }
        if let Some(e) = self.live.liveness(registry, now) {
            self.live.failed(registry, &e);
        }
        if !self.live.greeted() {
            self.view.on_unreachable();
        }
        if self.live.greeted() && now >= self.next_status {
            self.live.send(registry, &daemon_link::status_command());
            self.next_status = now + self.cfg.status_poll;
        }
        if let Some(p) = self.publisher.as_mut() {
            p.timers(registry, now);
        }
        if now >= self.next_gallery {
            self.scan_gallery(now);
        }
        if now >= self.next_tick {
            self.next_tick = now + STREAM_TICK;
            self.stream_points();
        }
        if now >= self.next_state || self.told_up != Some(self.view.up()) {
            self.next_state = now + STATE_EVERY;
            self.told_up = Some(self.view.up());
            let state = page::json(&self.state());
            self.broadcast(&http::event("state", &state));
        }
        self.expire_conns(now);
    }

    // ---- the live link ----

    fn live_ready(&mut self) {
        match self.live.ready() {
            Ok(lines) => {
                for line in lines.iter().filter(|l| !l.is_empty()) {
                    match daemon_link::parse(line) {
                        Ok(msg) => self.on_live(msg),
                        Err(e) => {
                            tracing::warn!(error = %chain(&e), "ignoring a line from the daemon")
                        }
                    }
                }
                if let Some(e) = self.live.closed() {
                    self.live.failed(self.poll.registry(), &e);
                    self.view.on_unreachable();
                }
            }
            Err(e) => {
                self.live.failed(self.poll.registry(), &e);
                self.view.on_unreachable();
            }
        }
    }

    fn on_live(&mut self, msg: Inbound) {
        let registry = self.poll.registry();
        match msg {
            Inbound::Hello(h) => {
                // Re-seeds the chart from the daemon's retention (a restarted gateway's page
                // starts with the recent scores, not empty).
                let from_seq = h.seq.saturating_sub(self.cfg.chart_points as u64);
                tracing::info!(run_id = h.run_id, seq = h.seq, from_seq, "daemon link up");
                self.view.on_hello(h);
                self.live_cut = true;
                self.live.greeted_now();
                self.live
                    .send(registry, &daemon_link::subscribe_command(from_seq));
                self.live.send(registry, &daemon_link::status_command());
                self.next_status = Instant::now() + self.cfg.status_poll;
                self.stats.daemon_reconnects = self.live.reconnects;
            }
            Inbound::Subscribed { .. } => self.live_cut = false,
            Inbound::Verdict(_) if self.live_cut => {}
            Inbound::Verdict(v) => {
                self.view.on_verdict(&v);
                if self.view.new_failure {
                    self.view.new_failure = false;
                    self.next_gallery = self.next_gallery.min(Instant::now() + GALLERY_DELAY);
                }
            }
            Inbound::Status {
                event,
                reference_set,
            } => self.view.on_status(event, reference_set),
            Inbound::Heartbeat(h) => self.view.on_heartbeat(&h),
            Inbound::Snapshot(s) => self.view.on_snapshot(*s),
            _ => {}
        }
    }

    fn scan_gallery(&mut self, now: Instant) {
        self.next_gallery = now + GALLERY_EVERY;
        let Some(dir) = &self.cfg.failures_dir else {
            return;
        };
        let view = &self.view;
        match gallery::scan(dir, self.cfg.gallery, |seq| view.fail_score(seq)) {
            Ok(items) => {
                if items != self.gallery {
                    self.gallery = items;
                    let json = page::json(&self.gallery);
                    self.broadcast(&http::event("gallery", &json));
                }
            }
            Err(e) => {
                tracing::debug!(dir = %dir.display(), error = %e, "cannot list the failure images")
            }
        }
    }

    fn state(&mut self) -> page::State {
        let mqtt = self.publisher.as_mut().map(|p| {
            let s = p.snapshot();
            page::Mqtt {
                connected: s.connected,
                acked_seq: s.acked_seq,
                outbox: s.outbox,
            }
        });
        self.view.state(mqtt)
    }

    // ---- HTTP ----

    fn accept(&mut self) {
        loop {
            match self.listener.accept() {
                Ok((mut stream, peer)) => {
                    if self.conns.len() >= self.cfg.max_clients {
                        tracing::warn!(%peer, max = self.cfg.max_clients, "refusing an HTTP connection: too many");
                        continue;
                    }
                    let token = Token(self.next_token);
                    self.next_token += 1;
                    let interest = Interest::READABLE | Interest::WRITABLE;
                    if let Err(e) = self.poll.registry().register(&mut stream, token, interest) {
                        tracing::warn!(%peer, error = %e, "cannot register an HTTP connection");
                        continue;
                    }
                    self.conns.insert(token, Conn::new(stream, peer));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    tracing::warn!(error = %e, "accepting an HTTP connection");
                    return;
                }
            }
        }
    }

    fn conn_ready(&mut self, token: Token) {
        let Some(conn) = self.conns.get_mut(&token) else {
            return;
        };
        let input = conn.read();
        let reply = match input {
            Input::Waiting => None,
            Input::Closed => return self.close(token),
            Input::Refused(r) => Some(http::response(r.status(), "text/plain", b"", false)),
            Input::Request(req) => self.route(token, &req),
        };
        if let Some(conn) = self.conns.get_mut(&token) {
            if let Some(bytes) = reply {
                conn.queue(&bytes);
                conn.closing = true;
            }
            if conn.flush().is_err() {
                self.close(token);
            }
        }
    }

    /// A request's response; `None` when the connection became a page stream.
    fn route(&mut self, token: Token, req: &http::Request) -> Option<Vec<u8>> {
        let ok = |kind: &str, body: &[u8]| Some(http::response(200, kind, body, req.head));
        match req.path.as_str() {
            "/" | "/index.html" => ok("text/html; charset=utf-8", INDEX_HTML),
            "/app.js" => ok("text/javascript; charset=utf-8", APP_JS),
            "/app.css" => ok("text/css; charset=utf-8", APP_CSS),
            "/favicon.ico" => Some(http::response(204, "image/x-icon", b"", req.head)),
            "/metrics" => {
                self.stats.http_clients = self.conns.len();
                self.stats.mqtt = self.publisher.as_mut().map(Publisher::snapshot);
                let text = metrics::render(&self.view, &self.stats, &self.process);
                ok(metrics::CONTENT_TYPE, text.as_bytes())
            }
            "/api/state" => {
                let state = page::json(&self.state());
                ok("application/json", state.as_bytes())
            }
            "/healthz" if self.view.up() => ok("text/plain", b"ok\n"),
            "/healthz" => Some(http::response(
                503,
                "text/plain",
                b"daemon unreachable\n",
                req.head,
            )),
            "/events" if req.head => ok("text/event-stream", b""),
            "/events" if self.streams() >= self.max_streams() => {
                tracing::warn!(max = self.max_streams(), "refusing a page stream: too many");
                Some(http::response(
                    503,
                    "text/plain",
                    b"too many page streams\n",
                    false,
                ))
            }
            "/events" => {
                self.open_stream(token);
                None
            }
            path => {
                let image = path.strip_prefix("/failures/").and_then(|name| {
                    let dir = self.cfg.failures_dir.as_ref()?;
                    gallery::read_image(dir, &self.gallery, name)
                });
                match image {
                    Some((bytes, kind)) => ok(kind, &bytes),
                    None => Some(http::response(404, "text/plain", b"not found\n", req.head)),
                }
            }
        }
    }

    fn streams(&self) -> usize {
        self.conns.values().filter(|c| c.streaming).count()
    }

    /// Page streams stay open: a few connections are kept for scrapes and health checks.
    fn max_streams(&self) -> usize {
        self.cfg.max_clients.saturating_sub(4).max(1)
    }

    /// A page stream: the head, then everything the page draws, then events.
    fn open_stream(&mut self, token: Token) {
        let state = self.state();
        let hello = page::json(&page::Hello {
            state: &state,
            chart: self.view.chart().collect(),
            gallery: &self.gallery,
        });
        if let Some(conn) = self.conns.get_mut(&token) {
            conn.streaming = true;
            conn.queue(&http::stream_head());
            conn.queue(&http::event("hello", &hello));
            // The first event may be large (the whole chart): the cap counts what follows it.
            conn.allowance = conn.queued();
        }
    }

    fn stream_points(&mut self) {
        let fresh = self.view.take_fresh();
        if !fresh.is_empty() {
            let json = page::json(&fresh);
            self.broadcast(&http::event("verdicts", &json));
        }
    }

    /// Queues an event for every page stream; a stream that does not read is closed.
    fn broadcast(&mut self, bytes: &[u8]) {
        let mut dead = Vec::new();
        for (token, conn) in self.conns.iter_mut().filter(|(_, c)| c.streaming) {
            conn.queue(bytes);
            if conn.queued() > http::MAX_STREAM_QUEUE + conn.allowance {
                tracing::warn!(peer = %conn.peer, queued = conn.queued(), "page stream not reading; closing it");
                self.stats.sse_evicted += 1;
                dead.push(*token);
            } else if conn.flush().is_err() {
                dead.push(*token);
            }
        }
        for token in dead {
            self.close(token);
        }
    }

    /// Closes connections that never sent a complete request.
    fn expire_conns(&mut self, now: Instant) {
        let idle: Vec<Token> = self
            .conns
            .iter()
            .filter(|(_, c)| {
                !c.streaming && !c.closing && now.duration_since(c.opened) > http::IDLE
            })
            .map(|(t, _)| *t)
            .collect();
        for token in idle {
            self.close(token);
        }
    }

    fn close(&mut self, token: Token) {
        if let Some(mut c) = self.conns.remove(&token) {
            let _ = self.poll.registry().deregister(&mut c.stream);
        }
    }
}
