//! `inspectord bridge modbus`: a Modbus/TCP server that a PLC polls like a smart camera, and an
//! ordinary client of the daemon's verdict socket (protocol v2). One single-threaded `mio`
//! event loop holds everything: the TCP listener, the PLC connections, the link to the daemon,
//! the signal pipe and the timers (heartbeat, PLC watchdog, reconnect backoff). No threads.
//!
//! All Modbus framing is `rmodbus`'s (`ModbusFrame` with the external read/write calls); the
//! register map is `registers.rs`, the handshake `handshake.rs`, the daemon link `crate::daemon_link` (shared with the gateway).
//! The PLC side is documented in `docs/PLC.md`.

pub mod handshake;
pub mod registers;

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};
use rmodbus::consts::ModbusFunction;
use rmodbus::server::{ModbusFrame, Read as MbRead, Write as MbWrite};
use rmodbus::{ErrorKind, ModbusProto};

use crate::backoff::Backoff;
use crate::config::BridgeConfig;
use crate::daemon_link::{self as link, Connection, Inbound, Resume};
use crate::error::chain;
use crate::stop::SignalPipe;
use crate::wire::WireEvent;
use handshake::{Action, Handshake};
use registers::{coil, status};

const LISTENER: Token = Token(0);
const LINK: Token = Token(1);
const SIGNALS: Token = Token(2);
const FIRST_CLIENT: usize = 10;
/// PLC connections served at once (a PLC, an HMI, a commissioning tool, …).
const MAX_CLIENTS: usize = 16;
/// A PLC that does not read its responses is disconnected beyond this.
const MAX_PENDING_OUT: usize = 64 * 1024;
const HEARTBEAT: Duration = Duration::from_secs(1);
/// A daemon quiet this long is pinged (its heartbeats may be off) …
const QUIET: Duration = Duration::from_secs(2);
/// … and one that answers nothing for this long is dropped and reconnected (Online off).
const SILENT: Duration = Duration::from_secs(6);

#[derive(Debug, thiserror::Error)]
pub enum BridgeError {
    #[error("cannot listen for Modbus/TCP on {addr}")]
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
    Service(#[from] crate::service::ServiceError),
}

/// One PLC (or HMI) connection.
struct Client {
    stream: TcpStream,
    peer: SocketAddr,
    rbuf: Vec<u8>,
    wbuf: Vec<u8>,
}

/// The bridge: everything the event loop owns.
pub struct Bridge {
    cfg: BridgeConfig,
    poll: Poll,
    listener: TcpListener,
    clients: HashMap<Token, Client>,
    next_token: usize,
    link: Option<Connection>,
    retry_at: Option<Instant>,
    backoff: Backoff,
    /// The last link failure was logged (further ones go to debug until it works again).
    link_failure_logged: bool,
    resume: Resume,
    hs: Handshake,
    last_request: Option<Instant>,
    /// What the daemon was last told of the PLC link (`report`): lost or not.
    told_lost: bool,
    next_heartbeat: Instant,
    signals: SignalPipe,
    stop: bool,
}

/// Runs the bridge until SIGINT or SIGTERM.
pub fn run(cfg: BridgeConfig) -> Result<(), BridgeError> {
    let mut bridge = Bridge::new(cfg)?;
    if let Some(n) = crate::service::Notifier::from_env() {
        n.ready("serving Modbus/TCP");
    }
    bridge.serve()
}

impl Bridge {
    fn new(cfg: BridgeConfig) -> Result<Bridge, BridgeError> {
        let poll = Poll::new().map_err(BridgeError::Poll)?;
        let listen = cfg.listen;
        let listen_err = |source| BridgeError::Listen {
            addr: listen,
            source,
        };
        let std_listener = match crate::service::activated_tcp_listener()? {
            Some(l) => l,
            None => std::net::TcpListener::bind(listen).map_err(listen_err)?,
        };
        std_listener.set_nonblocking(true).map_err(listen_err)?;
        let local = std_listener.local_addr().map_err(listen_err)?;
        let mut listener = TcpListener::from_std(std_listener);
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)
            .map_err(BridgeError::Poll)?;
        let signals =
            SignalPipe::register(poll.registry(), SIGNALS).map_err(BridgeError::Signals)?;
        tracing::info!(
            listen = %local,
            socket = %cfg.socket.display(),
            unit_id = cfg.unit_id,
            word_order = ?cfg.word_order,
            buffer = cfg.buffer,
            plc_timeout_ms = cfg.plc_timeout.as_millis() as u64,
            "Modbus bridge listening"
        );
        Ok(Bridge {
            backoff: Backoff::new(cfg.reconnect_initial, cfg.reconnect_max),
            hs: Handshake::new(cfg.buffer),
            cfg,
            poll,
            listener,
            clients: HashMap::new(),
            next_token: FIRST_CLIENT,
            link: None,
            retry_at: Some(Instant::now()),
            link_failure_logged: false,
            resume: Resume::default(),
            last_request: None,
            told_lost: false,
            next_heartbeat: Instant::now() + HEARTBEAT,
            signals,
            stop: false,
        })
    }

    fn serve(&mut self) -> Result<(), BridgeError> {
        let mut events = Events::with_capacity(64);
        while !self.stop {
            self.timers(Instant::now());
            let timeout = self
                .next_deadline()
                .saturating_duration_since(Instant::now());
            match self.poll.poll(&mut events, Some(timeout)) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(BridgeError::Poll(e)),
            }
            for event in events.iter() {
                match event.token() {
                    LISTENER => self.accept(),
                    LINK => self.link_ready(),
                    SIGNALS => self.signalled(),
                    token => self.client_ready(token),
                }
            }
        }
        tracing::info!("Modbus bridge stopping");
        Ok(())
    }

    fn signalled(&mut self) {
        self.signals.drain();
        self.stop = true;
    }

    fn next_deadline(&self) -> Instant {
        let mut at = self.next_heartbeat;
        if let Some(retry) = self.retry_at {
            at = at.min(retry);
        }
        if let (Some(last), false) = (self.last_request, self.hs.watchdog_expired()) {
            at = at.min(last + self.cfg.plc_timeout);
        }
        if let Some(conn) = &self.link {
            let after = if conn.pinged { SILENT } else { QUIET };
            at = at.min(conn.last_heard + after);
        }
        at
    }

    /// Pings a quiet daemon; drops one that answers nothing (a wedged daemon is not Online).
    fn daemon_liveness(&mut self, now: Instant) {
        let Some(conn) = self.link.as_mut() else {
            return;
        };
        let quiet = now.saturating_duration_since(conn.last_heard);
        if quiet >= SILENT {
            self.link_failed(&link::LinkError::Silent(quiet));
        } else if quiet >= QUIET && !conn.pinged {
            conn.pinged = true;
            self.send_to_daemon(&link::ping_command());
        }
    }

    fn timers(&mut self, now: Instant) {
        if now >= self.next_heartbeat {
            self.hs.toggle_heartbeat();
            self.next_heartbeat += HEARTBEAT;
            if self.next_heartbeat < now {
                self.next_heartbeat = now + HEARTBEAT;
            }
        }
        if self.retry_at.is_some_and(|t| now >= t) {
            self.retry_at = None;
            self.connect();
        }
        self.daemon_liveness(now);
        if let Some(last) = self.last_request
            && !self.hs.watchdog_expired()
            && now.duration_since(last) >= self.cfg.plc_timeout
        {
            let ms = self.cfg.plc_timeout.as_millis() as u64;
            tracing::warn!(
                timeout_ms = ms,
                "PLC watchdog expired: no Modbus request; TriggerReady off"
            );
            self.hs.set_watchdog_expired(true);
            self.report_plc_link();
        }
    }

    /// Tells the daemon the PLC link's state (`plc_link_lost` / `plc_link_restored`).
    fn report_plc_link(&mut self) {
        let ms = self.cfg.plc_timeout.as_millis();
        let lost = self.hs.watchdog_expired();
        let reason = if lost {
            format!("no Modbus request from the PLC for {ms} ms")
        } else {
            "Modbus requests from the PLC again".to_string()
        };
        let line = link::report_command(lost, &self.cfg.source, &reason);
        if self.link.as_ref().is_some_and(|c| c.greeted) {
            self.send_to_daemon(&line);
            self.told_lost = lost;
        }
    }

    // ---- the daemon link ----

    fn connect(&mut self) {
        match Connection::connect(&self.cfg.socket) {
            Ok(mut conn) => {
                let interest = Interest::READABLE | Interest::WRITABLE;
                if let Err(e) = self
                    .poll
                    .registry()
                    .register(&mut conn.stream, LINK, interest)
                {
                    self.link_failed(&link::LinkError::Read(e));
                    return;
                }
                tracing::debug!(socket = %self.cfg.socket.display(), "connected to the daemon");
                self.link = Some(conn);
            }
            Err(e) => self.link_failed(&e),
        }
    }

    fn link_failed(&mut self, e: &link::LinkError) {
        if let Some(mut conn) = self.link.take() {
            let _ = self.poll.registry().deregister(&mut conn.stream);
        }
        let was_online = self.hs.view().status & (1 << status::ONLINE) != 0;
        self.hs.link_down();
        let delay = self.backoff.next_delay();
        self.retry_at = Some(Instant::now() + delay);
        if was_online || !self.link_failure_logged {
            tracing::warn!(
                error = %chain(e),
                retry_ms = delay.as_millis() as u64,
                "daemon unreachable: Online and TriggerReady off"
            );
            self.link_failure_logged = true;
        } else {
            tracing::debug!(error = %chain(e), retry_ms = delay.as_millis() as u64, "daemon still unreachable");
        }
    }

    fn send_to_daemon(&mut self, line: &str) {
        let Some(conn) = self.link.as_mut() else {
            return;
        };
        if let Err(e) = conn.send(line) {
            self.link_failed(&e);
        }
    }

    fn link_ready(&mut self) {
        let Some(conn) = self.link.as_mut() else {
            return;
        };
        let lines = conn.flush().and_then(|()| conn.read_lines());
        match lines {
            Ok(lines) => {
                for line in lines.iter().filter(|l| !l.is_empty()) {
                    match link::parse(line) {
                        Ok(msg) => self.on_daemon(msg),
                        Err(e) => {
                            tracing::warn!(error = %chain(&e), "ignoring a line from the daemon")
                        }
                    }
                }
                // Closed right after its last lines: no further event would come.
                let closed = self
                    .link
                    .as_mut()
                    .filter(|c| c.at_eof())
                    .map(|c| c.read_lines());
                if let Some(Err(e)) = closed {
                    self.link_failed(&e);
                }
            }
            Err(e) => self.link_failed(&e),
        }
    }

    fn on_daemon(&mut self, msg: Inbound) {
        match msg {
            Inbound::Hello(h) => self.on_hello(h),
            Inbound::Verdict(v) => {
                if self.resume.accept(v.seq) {
                    self.hs.on_result(to_result(&v));
                }
            }
            Inbound::Status {
                event,
                reference_set,
            } => match event {
                WireEvent::CameraLost => self.hs.set_camera_lost(true),
                WireEvent::CameraRestored => self.hs.set_camera_lost(false),
                WireEvent::ReferencesReloaded => {
                    if let Some(set) = reference_set {
                        self.hs.identity.reference_set = set;
                    }
                }
                _ => {}
            },
            Inbound::TriggerAck { id, acq_id } => self.hs.on_trigger_ack(id, acq_id),
            Inbound::TriggerMissed { id, reason } => {
                tracing::warn!(id, reason, "the daemon missed a trigger");
                self.hs.on_trigger_missed(id);
            }
            Inbound::Subscribed { from_seq, to_seq } => {
                tracing::debug!(from_seq, to_seq, "subscribed");
                self.resume.subscribed();
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
                    "verdicts no longer retained by the daemon: lost for the PLC"
                );
                self.resume.gap(to_seq);
                self.hs.results_lost();
            }
            Inbound::Error { id, reason } => {
                tracing::warn!(id, reason, "the daemon refused a command");
                self.hs.on_command_error(id, reason == "not permitted");
            }
            Inbound::Snapshot(s) => self.hs.set_camera_lost(s.camera == "lost"),
            Inbound::Other(_) | Inbound::Heartbeat(_) => {}
        }
    }

    fn on_hello(&mut self, h: crate::wire::Hello) {
        let run_id = h.run_id.clone();
        let start = self.resume.hello(&run_id, h.seq);
        if start == link::Start::NewRun {
            tracing::info!(run_id, "a new daemon run: results from its first seq");
            self.hs.new_run();
        }
        let from_seq = Resume::from_seq(start);
        self.hs.identity.model_sha256 = h.model_sha256.chars().take(16).collect();
        self.hs.identity.reference_set = h.reference_set.clone();
        self.hs.identity.run_id = run_id.clone();
        self.hs.link_up(h.control);
        self.backoff.reset();
        self.link_failure_logged = false;
        if let Some(conn) = self.link.as_mut() {
            conn.greeted = true;
        }
        tracing::info!(
            run_id,
            seq = h.seq,
            from_seq,
            control = h.control,
            trigger_mode = ?h.trigger_mode,
            "daemon link up"
        );
        if !h.control {
            tracing::warn!(
                "the daemon does not permit this bridge to trigger (SO_PEERCRED): join its group"
            );
        }
        self.send_to_daemon(&link::subscribe_command(from_seq));
        self.send_to_daemon(&link::status_command());
        if start == link::Start::NewRun {
            self.told_lost = false; // a new daemon run has heard nothing
        }
        if self.hs.watchdog_expired() != self.told_lost {
            self.report_plc_link();
        }
    }

    // ---- the PLC side ----

    fn accept(&mut self) {
        loop {
            match self.listener.accept() {
                Ok((mut stream, peer)) => {
                    if self.clients.len() >= MAX_CLIENTS {
                        tracing::warn!(%peer, max = MAX_CLIENTS, "refusing a Modbus connection: too many");
                        continue;
                    }
                    let token = Token(self.next_token);
                    self.next_token += 1;
                    let interest = Interest::READABLE | Interest::WRITABLE;
                    if let Err(e) = self.poll.registry().register(&mut stream, token, interest) {
                        tracing::warn!(%peer, error = %e, "cannot register a Modbus connection");
                        continue;
                    }
                    let _ = stream.set_nodelay(true);
                    tracing::info!(%peer, "PLC connected");
                    let client = Client {
                        stream,
                        peer,
                        rbuf: Vec::new(),
                        wbuf: Vec::new(),
                    };
                    self.clients.insert(token, client);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    tracing::warn!(error = %e, "accepting a Modbus connection");
                    return;
                }
            }
        }
    }

    fn client_ready(&mut self, token: Token) {
        let Some(client) = self.clients.get_mut(&token) else {
            return;
        };
        let mut chunk = [0u8; 4096];
        let mut closed = false;
        loop {
            match client.stream.read(&mut chunk) {
                Ok(0) => {
                    closed = true;
                    break;
                }
                Ok(n) => client.rbuf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => {
                    closed = true;
                    break;
                }
            }
        }
        let mut input = std::mem::take(&mut client.rbuf);
        let mut output = Vec::new();
        let mut broken = false;
        while input.len() >= 6 {
            let len = match rmodbus::guess_request_frame_len(&input, ModbusProto::TcpUdp) {
                Ok(len) => usize::from(len),
                Err(_) => {
                    broken = true;
                    break;
                }
            };
            if input.len() < len {
                break;
            }
            let frame: Vec<u8> = input.drain(..len).collect();
            match self.serve_frame(&frame) {
                Some(resp) => output.extend_from_slice(&resp),
                None => {
                    broken = true;
                    break;
                }
            }
        }
        let Some(client) = self.clients.get_mut(&token) else {
            return;
        };
        client.rbuf = input;
        client.wbuf.extend_from_slice(&output);
        let flushed = flush(&mut client.stream, &mut client.wbuf);
        if closed || broken || flushed.is_err() || client.wbuf.len() > MAX_PENDING_OUT {
            let why = if broken { "not Modbus/TCP" } else { "closed" };
            if let Some(mut c) = self.clients.remove(&token) {
                let _ = self.poll.registry().deregister(&mut c.stream);
                tracing::info!(peer = %c.peer, why, "PLC disconnected");
            }
        }
    }

    /// One request frame (MBAP header included) → the response bytes (possibly none); `None`
    /// when the frame is broken (the connection is closed, as Modbus/TCP servers do).
    fn serve_frame(&mut self, frame: &[u8]) -> Option<Vec<u8>> {
        let mut resp = Vec::new();
        // No broadcast unit: on Modbus/TCP unit 0 is just another unit (not ours).
        let mut f = ModbusFrame::new(self.cfg.unit_id, frame, ModbusProto::TcpUdp, &mut resp)
            .with_broadcast_units(&[]);
        f.parse().ok()?;
        if f.processing_required {
            let func = f.func;
            let result = if f.readonly {
                let read = f.get_external_read().and_then(|r| self.read(func, r));
                f.process_external_read(read)
            } else {
                let write = f.get_external_write().map(owned_write);
                let applied = write.and_then(|w| self.write(w));
                f.process_external_write(applied)
            };
            result.ok()?;
        }
        if f.response_required {
            f.finalize_response().ok()?;
        }
        // After serving: the first response after an expiry still shows PlcWatchdogExpired.
        self.plc_request();
        Some(resp)
    }

    /// A request arrived: the PLC link is alive.
    fn plc_request(&mut self) {
        self.last_request = Some(Instant::now());
        if self.hs.watchdog_expired() {
            tracing::info!("PLC link restored: Modbus requests again");
            self.hs.set_watchdog_expired(false);
            self.report_plc_link();
        }
    }

    fn read(&self, func: ModbusFunction, read: MbRead) -> Result<(), ErrorKind> {
        let in_range =
            |addr: u16, count: u16, n: u16| u32::from(addr) + u32::from(count) <= u32::from(n);
        match read {
            MbRead::Bits(b) => {
                let (n, word) = match func {
                    ModbusFunction::GetCoils => (coil::COUNT, self.hs.control_word()),
                    _ => (status::COUNT, self.hs.status_word()),
                };
                if !in_range(b.address, b.count, n) {
                    return Err(ErrorKind::IllegalDataAddress);
                }
                let bits = (b.address..b.address + b.count).map(|i| word & (1 << i) != 0);
                registers::pack_bits(bits, b.buf);
                Ok(())
            }
            MbRead::Words(w) => {
                if !in_range(w.address, w.count, registers::REGISTER_COUNT) {
                    return Err(ErrorKind::IllegalDataAddress);
                }
                let image = registers::image(&self.hs.view(), self.cfg.word_order);
                let words = &image[usize::from(w.address)..usize::from(w.address + w.count)];
                for (out, word) in w.buf.chunks_exact_mut(2).zip(words) {
                    out.copy_from_slice(&word.to_be_bytes());
                }
                Ok(())
            }
        }
    }

    fn write(&mut self, w: OwnedWrite) -> Result<(), ErrorKind> {
        let actions = match w {
            OwnedWrite::Bits {
                address,
                count,
                data,
            } => {
                if u32::from(address) + u32::from(count) > u32::from(coil::COUNT) {
                    return Err(ErrorKind::IllegalDataAddress);
                }
                let bits: Vec<bool> = (0..usize::from(count))
                    .map(|i| registers::bit(&data, i))
                    .collect();
                self.hs.write_coils(address, &bits)
            }
            OwnedWrite::Words {
                address,
                count,
                data,
            } => {
                if !registers::writable(address, count) {
                    return Err(ErrorKind::IllegalDataAddress);
                }
                self.write_registers(address, &data)
            }
        };
        for action in actions {
            match action {
                Action::Trigger { id, part_id } => {
                    tracing::debug!(id, part_id, "trigger");
                    self.send_to_daemon(&link::trigger_command(id, part_id));
                }
            }
        }
        Ok(())
    }

    /// Writes holding registers 0..=2: PartId first, so a write of the three together
    /// triggers with the new PartId.
    fn write_registers(&mut self, address: u16, data: &[u8]) -> Vec<Action> {
        let words: Vec<u16> = data
            .chunks_exact(2)
            .map(|c| u16::from_be_bytes([c[0], c[1]]))
            .collect();
        let order = self.cfg.word_order;
        let mut part = registers::split_u32(self.hs.part_id(), order);
        let mut control = None;
        for (i, &word) in words.iter().enumerate() {
            match address + i as u16 {
                registers::CONTROL => control = Some(word),
                a => part[usize::from(a - registers::PART_ID)] = word,
            }
        }
        self.hs.write_part_id(registers::join_u32(part, order));
        control
            .map(|c| self.hs.write_control_word(c))
            .unwrap_or_default()
    }
}

/// A write request copied out of the frame.
enum OwnedWrite {
    Bits {
        address: u16,
        count: u16,
        data: Vec<u8>,
    },
    Words {
        address: u16,
        count: u16,
        data: Vec<u8>,
    },
}

fn owned_write(w: MbWrite) -> OwnedWrite {
    match w {
        MbWrite::Bits(b) => OwnedWrite::Bits {
            address: b.address,
            count: b.count,
            data: b.data.to_vec(),
        },
        MbWrite::Words(w) => OwnedWrite::Words {
            address: w.address,
            count: w.count,
            data: w.data.to_vec(),
        },
    }
}

fn to_result(v: &crate::wire::WireVerdict) -> registers::InspectionResult {
    registers::InspectionResult {
        seq: v.seq,
        acquisition_id: v.acq_id.unwrap_or(0),
        part_id: v
            .part_id
            .as_deref()
            .and_then(|p| p.parse().ok())
            .unwrap_or(0),
        code: registers::ResultCode::of(v.verdict),
        score: v.score,
        threshold: v.threshold,
        latency_ms: u32::try_from(v.latency_us / 1000).unwrap_or(u32::MAX),
    }
}

fn flush(stream: &mut TcpStream, buf: &mut Vec<u8>) -> io::Result<()> {
    while !buf.is_empty() {
        match stream.write(buf) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => {
                buf.drain(..n);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
