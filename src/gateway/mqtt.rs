//! One MQTT 3.1.1 client session (clean session) over a non-blocking TCP connection, driven by
//! the gateway's single `mio` loop: no threads, no async runtime.
//!
//! Packets are encoded and framed by `mqtt-protocol-core` (sans-I/O); this module owns the
//! socket, the buffers, the packet ids and the keep-alive. The session chooses every QoS 1
//! packet id itself (never one still in flight), so each PUBACK maps to exactly one publish.
//!
//! Life cycle: [`Session::connect`] starts the TCP connect and queues CONNECT; the loop calls
//! [`Session::ready`] on every event for the session's token and [`Session::tick`] when
//! [`Session::next_deadline`] passes. The end of a session (refused, broker gone, I/O error,
//! protocol error, keep-alive timeout) is reported exactly once: as `MqttEvent::Closed` from
//! `ready`, or as the `Err` of `tick`. After that the session is dead and its socket closed; the
//! caller makes a new one (and re-sends whatever was still in flight). [`Session::disconnect`]
//! ends it cleanly (DISCONNECT: the broker discards the will); dropping a live session closes
//! the socket without DISCONNECT, so the broker publishes the will.

use std::io::{self, IoSlice, Read, Write};
use std::net::{Shutdown, SocketAddr, ToSocketAddrs};
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Interest, Registry, Token};
use mqtt_protocol_core::mqtt::common::Cursor;
use mqtt_protocol_core::mqtt::connection::{PacketBuildResult, PacketBuilder, RawPacket};
use mqtt_protocol_core::mqtt::packet::Qos;
use mqtt_protocol_core::mqtt::packet::v3_1_1;
use mqtt_protocol_core::mqtt::result_code::{ConnectReturnCode, MqttError as CodecError};

/// Largest packet sent or accepted (fixed header included). A bigger incoming one ends the
/// session (protocol error) before anything is allocated for it; a bigger publish is refused.
pub const MAX_PACKET: usize = 1 << 20;

/// Bytes read from the socket at a time.
const READ_CHUNK: usize = 16 * 1024;

/// Where and how to connect.
#[derive(Debug, Clone)]
pub struct MqttSettings {
    /// `host:port`.
    pub broker: String,
    pub client_id: String,
    pub username: Option<String>,
    /// Only with a username (MQTT 3.1.1).
    pub password: Option<Vec<u8>>,
    /// Zero: no keep-alive. Sent rounded up to whole seconds.
    pub keep_alive: Duration,
    /// From the start of the TCP connect to an accepted CONNACK.
    pub connect_timeout: Duration,
    pub will: Option<Will>,
}

impl MqttSettings {
    /// Keep-alive 10 s, connect timeout 10 s, no credentials, no will.
    pub fn new(broker: impl Into<String>, client_id: impl Into<String>) -> Self {
        Self {
            broker: broker.into(),
            client_id: client_id.into(),
            username: None,
            password: None,
            keep_alive: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(10),
            will: None,
        }
    }
}

/// The Last Will the broker publishes when the connection ends without DISCONNECT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Will {
    pub topic: String,
    pub payload: Vec<u8>,
    pub qos1: bool,
    pub retain: bool,
}

/// What [`Session::ready`] reports.
#[derive(Debug)]
pub enum MqttEvent {
    /// The broker accepted the CONNECT; publishing may start.
    Connected { session_present: bool },
    /// The broker acknowledged the QoS 1 publish with this packet id (now free again).
    PubAck(u16),
    /// The session ended (reported once); the socket is closed and deregistered.
    Closed(MqttError),
}

#[derive(Debug, thiserror::Error)]
pub enum MqttError {
    #[error("cannot resolve the MQTT broker address {broker}")]
    Resolve {
        broker: String,
        #[source]
        source: io::Error,
    },
    #[error("cannot connect to the MQTT broker at {addr}")]
    Connect {
        addr: SocketAddr,
        #[source]
        source: io::Error,
    },
    #[error("MQTT connection I/O failed")]
    Io(#[source] io::Error),
    #[error("the MQTT broker closed the connection")]
    ClosedByBroker,
    #[error("MQTT protocol error: {0}")]
    Protocol(String),
    #[error("invalid MQTT packet")]
    Packet(#[source] CodecError),
    #[error("invalid MQTT settings: {0}")]
    Settings(String),
    #[error("the MQTT broker refused the connection: return code {0} ({reason})", reason = refusal(*.0))]
    Refused(u8),
    #[error("no CONNACK from the MQTT broker within {0:?}")]
    ConnectTimeout(Duration),
    #[error("no answer from the MQTT broker within 1.5 keep-alive periods after a PINGREQ")]
    KeepAliveTimeout,
    #[error("the MQTT session is not connected")]
    NotConnected,
    #[error("all 65535 MQTT packet ids are in flight")]
    InFlightFull,
    #[error("MQTT packet of {size} bytes exceeds the limit of {max} bytes")]
    TooLarge { size: usize, max: usize },
}

/// The meaning of a CONNACK return code (MQTT 3.1.1 §3.2.2.3).
fn refusal(code: u8) -> &'static str {
    match code {
        1 => "unacceptable protocol version",
        2 => "identifier rejected",
        3 => "server unavailable",
        4 => "bad user name or password",
        5 => "not authorized",
        _ => "unknown",
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// TCP connect in progress.
    Connecting,
    /// CONNECT queued or sent, no CONNACK yet.
    AwaitConnack,
    Connected,
    /// Ended (reported, or cleanly disconnected).
    Closed,
}

/// QoS 1 packet ids awaiting their PUBACK, and the next one to hand out.
#[derive(Debug)]
struct PacketIds {
    used: Box<[u64; 1024]>,
    count: usize,
    next: u16,
}

impl PacketIds {
    fn new() -> Self {
        Self {
            used: Box::new([0; 1024]),
            count: 0,
            next: 1,
        }
    }

    fn contains(&self, pid: u16) -> bool {
        self.used[usize::from(pid / 64)] & (1 << (pid % 64)) != 0
    }

    /// The next free id at or after `next` (1..=65535, wrapping, skipping ids in flight),
    /// marked in flight.
    fn allocate(&mut self) -> Option<u16> {
        if self.count >= usize::from(u16::MAX) {
            return None;
        }
        let mut pid = self.next;
        while pid == 0 || self.contains(pid) {
            pid = pid.wrapping_add(1);
        }
        self.used[usize::from(pid / 64)] |= 1 << (pid % 64);
        self.count += 1;
        self.next = pid.wrapping_add(1).max(1);
        Some(pid)
    }

    /// Whether `pid` was in flight (it no longer is).
    fn release(&mut self, pid: u16) -> bool {
        if pid == 0 || !self.contains(pid) {
            return false;
        }
        self.used[usize::from(pid / 64)] &= !(1 << (pid % 64));
        self.count -= 1;
        true
    }

    fn clear(&mut self) {
        self.used.fill(0);
        self.count = 0;
    }
}

/// One MQTT client connection; see the module documentation.
pub struct Session {
    stream: Option<TcpStream>,
    token: Token,
    state: State,
    addr: SocketAddr,
    /// Addresses not tried yet, used when the connect to `addr` fails.
    more_addrs: Vec<SocketAddr>,
    /// Bytes to send: `out[out_pos..]`.
    out: Vec<u8>,
    out_pos: usize,
    reader: PacketBuilder,
    pids: PacketIds,
    keep_alive: Duration,
    connect_timeout: Duration,
    connect_deadline: Instant,
    /// When bytes last reached the socket.
    last_sent: Instant,
    /// When a PINGREQ was queued that nothing has answered yet.
    ping_sent: Option<Instant>,
    /// When a packet last came from the broker.
    last_received: Instant,
    /// A failure met outside `ready`/`tick` (in `publish`), reported by the next of them.
    failed: Option<MqttError>,
    /// Publishes only queue (see [`Session::cork`]).
    corked: bool,
}

impl Session {
    /// Resolves the broker (blocking), starts a non-blocking connect, registers the socket with
    /// `registry` under `token` (readable and writable) and queues CONNECT (clean session).
    pub fn connect(
        settings: &MqttSettings,
        registry: &Registry,
        token: Token,
    ) -> Result<Session, MqttError> {
        let connect = connect_packet(settings)?;
        let mut addrs: Vec<SocketAddr> = settings
            .broker
            .to_socket_addrs()
            .map_err(|source| MqttError::Resolve {
                broker: settings.broker.clone(),
                source,
            })?
            .collect();
        if addrs.is_empty() {
            return Err(MqttError::Resolve {
                broker: settings.broker.clone(),
                source: io::Error::new(io::ErrorKind::NotFound, "no address"),
            });
        }
        addrs.reverse();
        let now = Instant::now();
        let mut session = Session {
            stream: None,
            token,
            state: State::Connecting,
            addr: addrs[addrs.len() - 1],
            more_addrs: addrs,
            out: Vec::new(),
            out_pos: 0,
            reader: PacketBuilder::with_maximum_packet_size(MAX_PACKET as u32),
            pids: PacketIds::new(),
            keep_alive: settings.keep_alive,
            connect_timeout: settings.connect_timeout,
            connect_deadline: now + settings.connect_timeout,
            last_sent: now,
            ping_sent: None,
            last_received: now,
            failed: None,
            corked: false,
        };
        session.queue(&connect.to_buffers());
        session.connect_next(registry)?;
        Ok(session)
    }

    /// Connects to the next untried address; the error of the last one when none is left.
    fn connect_next(&mut self, registry: &Registry) -> Result<(), MqttError> {
        if let Some(mut old) = self.stream.take() {
            let _ = registry.deregister(&mut old);
        }
        let mut last = None;
        while let Some(addr) = self.more_addrs.pop() {
            self.addr = addr;
            match TcpStream::connect(addr) {
                Ok(mut stream) => {
                    let interest = Interest::READABLE | Interest::WRITABLE;
                    registry
                        .register(&mut stream, self.token, interest)
                        .map_err(MqttError::Io)?;
                    self.stream = Some(stream);
                    return Ok(());
                }
                Err(source) => last = Some(MqttError::Connect { addr, source }),
            }
        }
        Err(last.unwrap_or(MqttError::NotConnected))
    }

    /// Call on every `mio` event for the session's token: completes the connect, writes what
    /// is queued, reads and decodes packets.
    pub fn ready(&mut self, registry: &Registry) -> Vec<MqttEvent> {
        let mut events = Vec::new();
        if self.state == State::Closed {
            return events;
        }
        if let Err(e) = self.drive(registry, &mut events) {
            self.close(Some(registry));
            events.push(MqttEvent::Closed(e));
        }
        events
    }

    fn drive(&mut self, registry: &Registry, events: &mut Vec<MqttEvent>) -> Result<(), MqttError> {
        if let Some(e) = self.failed.take() {
            return Err(e);
        }
        if self.state == State::Connecting && !self.finish_connect(registry)? {
            return Ok(());
        }
        self.flush()?;
        let mut chunk = [0u8; READ_CHUNK];
        loop {
            let Some(stream) = self.stream.as_mut() else {
                return Err(MqttError::NotConnected);
            };
            match stream.read(&mut chunk) {
                Ok(0) => return Err(MqttError::ClosedByBroker),
                Ok(n) => self.received(&chunk[..n], events)?,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(MqttError::Io(e)),
            }
        }
    }

    /// Whether the TCP connect has completed (then CONNECT can go); tries the next address
    /// when it failed.
    fn finish_connect(&mut self, registry: &Registry) -> Result<bool, MqttError> {
        let Some(stream) = self.stream.as_ref() else {
            return Err(MqttError::NotConnected);
        };
        let failure = match stream.take_error() {
            Ok(Some(e)) | Err(e) => Some(e),
            Ok(None) => match stream.peer_addr() {
                Ok(_) => None,
                Err(e)
                    if e.kind() == io::ErrorKind::NotConnected
                        || e.raw_os_error() == Some(libc::EINPROGRESS) =>
                {
                    return Ok(false);
                }
                Err(e) => Some(e),
            },
        };
        match failure {
            None => {
                self.state = State::AwaitConnack;
                Ok(true)
            }
            Some(source) if self.more_addrs.is_empty() => Err(MqttError::Connect {
                addr: self.addr,
                source,
            }),
            Some(_) => {
                self.connect_next(registry)?;
                Ok(false)
            }
        }
    }

    /// Feeds bytes read from the socket to the packet framer and handles each whole packet.
    fn received(&mut self, bytes: &[u8], events: &mut Vec<MqttEvent>) -> Result<(), MqttError> {
        let mut cursor = Cursor::new(bytes);
        while (cursor.position() as usize) < bytes.len() {
            match self.reader.feed(&mut cursor) {
                PacketBuildResult::Complete(raw) => self.handle(&raw, events)?,
                PacketBuildResult::Incomplete => {}
                PacketBuildResult::Error(CodecError::PacketTooLarge) => {
                    return Err(MqttError::Protocol(format!(
                        "the broker sent a packet over {MAX_PACKET} bytes"
                    )));
                }
                PacketBuildResult::Error(e) => return Err(MqttError::Packet(e)),
            }
        }
        Ok(())
    }

    fn handle(&mut self, raw: &RawPacket, events: &mut Vec<MqttEvent>) -> Result<(), MqttError> {
        // Any packet from the broker answers a pending PINGREQ: the broker is alive.
        self.ping_sent = None;
        self.last_received = Instant::now();
        match (raw.packet_type(), self.state) {
            (2, State::AwaitConnack) => {
                let connack = raw
                    .parse_exact(v3_1_1::Connack::parse)
                    .map_err(MqttError::Packet)?;
                let code = connack.return_code();
                if code != ConnectReturnCode::Accepted {
                    return Err(MqttError::Refused(code as u8));
                }
                self.state = State::Connected;
                events.push(MqttEvent::Connected {
                    session_present: connack.session_present(),
                });
                Ok(())
            }
            (4, State::Connected) => {
                let puback = raw
                    .parse_exact(v3_1_1::Puback::parse)
                    .map_err(MqttError::Packet)?;
                let pid = puback.packet_id();
                if !self.pids.release(pid) {
                    return Err(MqttError::Protocol(format!(
                        "PUBACK for packet id {pid}, which is not in flight"
                    )));
                }
                events.push(MqttEvent::PubAck(pid));
                Ok(())
            }
            (13, State::Connected) => {
                raw.parse_exact(v3_1_1::Pingresp::parse)
                    .map_err(MqttError::Packet)?;
                Ok(())
            }
            (kind, state) => Err(MqttError::Protocol(format!(
                "unexpected packet type {kind} in state {state:?}"
            ))),
        }
    }

    /// Queues a PUBLISH and writes what the socket takes now. QoS 1: the packet id chosen for
    /// it, reported back by `MqttEvent::PubAck`. A write failure here is reported by the next
    /// `ready` or `tick` (the publish counts as in flight until then).
    pub fn publish(
        &mut self,
        topic: &str,
        payload: &[u8],
        qos1: bool,
        retain: bool,
    ) -> Result<Option<u16>, MqttError> {
        if self.state != State::Connected || self.failed.is_some() {
            return Err(MqttError::NotConnected);
        }
        // Fixed header (at most 5), topic length (2), packet id (2).
        let size = 5 + 2 + topic.len() + 2 + payload.len();
        if size > MAX_PACKET {
            return Err(MqttError::TooLarge {
                size,
                max: MAX_PACKET,
            });
        }
        let builder = v3_1_1::Publish::builder()
            .topic_name(topic)
            .map_err(MqttError::Packet)?
            .retain(retain)
            .payload(payload);
        let (builder, pid) = if qos1 {
            let pid = self.pids.allocate().ok_or(MqttError::InFlightFull)?;
            (builder.qos(Qos::AtLeastOnce).packet_id(pid), Some(pid))
        } else {
            (builder.qos(Qos::AtMostOnce), None)
        };
        let packet = match builder.build() {
            Ok(packet) => packet,
            Err(e) => {
                if let Some(pid) = pid {
                    self.pids.release(pid);
                }
                return Err(MqttError::Packet(e));
            }
        };
        self.queue(&packet.to_buffers());
        if !self.corked
            && let Err(e) = self.flush()
        {
            self.failed = Some(e);
        }
        Ok(pid)
    }

    /// From now on publishes only queue, until [`Session::uncork`] writes them together: one
    /// write for a burst instead of one per message.
    pub fn cork(&mut self) {
        self.corked = true;
    }

    /// Writes what was queued since [`Session::cork`] (a failure is reported like a publish's).
    pub fn uncork(&mut self) {
        self.corked = false;
        if self.state == State::Connected
            && self.failed.is_none()
            && let Err(e) = self.flush()
        {
            self.failed = Some(e);
        }
    }

    /// Keep-alive and connect timeout; call when [`Session::next_deadline`] has passed. Sends
    /// PINGREQ when nothing was sent for a keep-alive period; `Err` (the end of the session,
    /// reported once) when the broker has not answered within 1.5 periods after it, or when the
    /// connect took longer than the connect timeout.
    pub fn tick(&mut self, now: Instant) -> Result<(), MqttError> {
        if self.state == State::Closed {
            return Ok(());
        }
        let result = self.keep_alive_at(now);
        if result.is_err() {
            self.close(None);
        }
        result
    }

    fn keep_alive_at(&mut self, now: Instant) -> Result<(), MqttError> {
        if let Some(e) = self.failed.take() {
            return Err(e);
        }
        if self.state != State::Connected {
            if now >= self.connect_deadline {
                return Err(MqttError::ConnectTimeout(self.connect_timeout));
            }
            return Ok(());
        }
        if self.keep_alive.is_zero() {
            return Ok(());
        }
        match self.ping_sent {
            Some(at) if now >= at + self.keep_alive.mul_f64(1.5) => {
                Err(MqttError::KeepAliveTimeout)
            }
            Some(_) => Ok(()),
            None if now >= self.ping_due() => {
                self.queue(&v3_1_1::Pingreq::new().to_buffers());
                self.ping_sent = Some(now);
                self.flush()
            }
            None => Ok(()),
        }
    }

    /// When a PINGREQ is due: nothing sent for a keep-alive period (the protocol's rule), or,
    /// while publishes await their PUBACK, nothing received for one. Writes that only fill the
    /// kernel's send buffer do not prove a half-open connection alive.
    fn ping_due(&self) -> Instant {
        let quiet = self.last_sent + self.keep_alive;
        if self.pids.count > 0 {
            quiet.min(self.last_received + self.keep_alive)
        } else {
            quiet
        }
    }

    /// When [`Session::tick`] should next be called (`None`: not needed).
    pub fn next_deadline(&self) -> Option<Instant> {
        if self.failed.is_some() {
            return Some(Instant::now());
        }
        match self.state {
            State::Closed => None,
            State::Connecting | State::AwaitConnack => Some(self.connect_deadline),
            State::Connected if self.keep_alive.is_zero() => None,
            State::Connected => Some(match self.ping_sent {
                Some(at) => at + self.keep_alive.mul_f64(1.5),
                None => self.ping_due(),
            }),
        }
    }

    /// Whether the broker has accepted the connection (and it has not ended).
    pub fn connected(&self) -> bool {
        self.state == State::Connected && self.failed.is_none()
    }

    /// QoS 1 publishes awaiting their PUBACK.
    pub fn in_flight(&self) -> usize {
        self.pids.count
    }

    /// Bytes queued but not written to the socket yet.
    pub fn buffered(&self) -> usize {
        self.out.len() - self.out_pos
    }

    /// Ends the session cleanly: DISCONNECT (so the broker discards the will), written as far
    /// as the socket takes it now, then the socket is shut down and deregistered. Whether
    /// everything queued (DISCONNECT included) was written.
    pub fn disconnect(&mut self, registry: &Registry) -> bool {
        if self.state == State::Closed {
            return true;
        }
        let mut flushed = true;
        if matches!(self.state, State::AwaitConnack | State::Connected) && self.failed.is_none() {
            self.queue(&v3_1_1::Disconnect::new().to_buffers());
            flushed = self.flush().is_ok() && self.buffered() == 0;
            if let Some(stream) = self.stream.as_mut() {
                // Unread bytes at close would make it a reset, which may drop the DISCONNECT.
                let mut sink = [0u8; READ_CHUNK];
                while matches!(stream.read(&mut sink), Ok(n) if n > 0) {}
                let _ = stream.shutdown(Shutdown::Write);
            }
        }
        self.close(Some(registry));
        flushed
    }

    /// Appends an encoded packet to the output buffer.
    fn queue(&mut self, parts: &[IoSlice<'_>]) {
        for part in parts {
            self.out.extend_from_slice(part);
        }
    }

    /// Writes queued bytes until done or the socket would block.
    fn flush(&mut self) -> Result<(), MqttError> {
        if self.state == State::Connecting {
            return Ok(());
        }
        let Some(stream) = self.stream.as_mut() else {
            return Err(MqttError::NotConnected);
        };
        while self.out_pos < self.out.len() {
            match stream.write(&self.out[self.out_pos..]) {
                Ok(0) => return Err(MqttError::Io(io::ErrorKind::WriteZero.into())),
                Ok(n) => {
                    self.out_pos += n;
                    self.last_sent = Instant::now();
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(MqttError::Io(e)),
            }
        }
        if self.out_pos == self.out.len() {
            self.out.clear();
            self.out_pos = 0;
        } else if self.out_pos >= 64 * 1024 && self.out_pos * 2 >= self.out.len() {
            self.out.drain(..self.out_pos);
            self.out_pos = 0;
        }
        Ok(())
    }

    /// Closes the socket (deregistered first when a registry is at hand; closing it removes
    /// it from the poll set anyway) and forgets what was in flight.
    fn close(&mut self, registry: Option<&Registry>) {
        if let Some(mut stream) = self.stream.take()
            && let Some(registry) = registry
        {
            let _ = registry.deregister(&mut stream);
        }
        self.state = State::Closed;
        self.out.clear();
        self.out_pos = 0;
        self.pids.clear();
        self.ping_sent = None;
        self.failed = None;
    }
}

/// The CONNECT packet for `settings` (clean session).
fn connect_packet(settings: &MqttSettings) -> Result<v3_1_1::Connect, MqttError> {
    let keep_alive =
        settings.keep_alive.as_secs() + u64::from(settings.keep_alive.subsec_nanos() > 0);
    let keep_alive = u16::try_from(keep_alive)
        .map_err(|_| MqttError::Settings("keep-alive over 65535 s".into()))?;
    let mut builder = v3_1_1::Connect::builder()
        .client_id(settings.client_id.as_str())
        .map_err(MqttError::Packet)?
        .clean_session(true)
        .keep_alive(keep_alive);
    if let Some(will) = &settings.will {
        let qos = if will.qos1 {
            Qos::AtLeastOnce
        } else {
            Qos::AtMostOnce
        };
        builder = builder
            .will_message(will.topic.as_str(), &will.payload, qos, will.retain)
            .map_err(MqttError::Packet)?;
    }
    match (&settings.username, &settings.password) {
        (None, Some(_)) => {
            return Err(MqttError::Settings(
                "a password needs a user name (MQTT 3.1.1)".into(),
            ));
        }
        (Some(user), password) => {
            builder = builder
                .user_name(user.as_str())
                .map_err(MqttError::Packet)?;
            if let Some(password) = password {
                builder = builder.password(password).map_err(MqttError::Packet)?;
            }
        }
        (None, None) => {}
    }
    builder.build().map_err(MqttError::Packet)
}

#[cfg(test)]
mod tests {
    use super::*;
    use mio::{Events, Poll};
    use std::net::{TcpListener, TcpStream as StdStream};
    use std::sync::Arc;

    /// A session against a scripted broker: the test plays the broker on the accepted socket.
    struct Fake {
        poll: Poll,
        session: Session,
        peer: StdStream,
    }

    fn settings(addr: SocketAddr) -> MqttSettings {
        let mut s = MqttSettings::new(addr.to_string(), "unit");
        s.keep_alive = Duration::from_secs(1);
        s
    }

    fn start(tweak: impl FnOnce(&mut MqttSettings)) -> Fake {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut s = settings(listener.local_addr().unwrap());
        tweak(&mut s);
        let poll = Poll::new().unwrap();
        let session = Session::connect(&s, poll.registry(), Token(7)).unwrap();
        let (peer, _) = listener.accept().unwrap();
        peer.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        let mut fake = Fake {
            poll,
            session,
            peer,
        };
        fake.pump_for(Duration::from_millis(50));
        fake
    }

    impl Fake {
        /// Runs the loop until `done` says so over the events seen (or 3 s); returns them.
        fn pump_until(&mut self, done: impl Fn(&[MqttEvent]) -> bool) -> Vec<MqttEvent> {
            let end = Instant::now() + Duration::from_secs(3);
            let mut seen = Vec::new();
            let mut events = Events::with_capacity(8);
            while !done(&seen) && Instant::now() < end {
                self.poll
                    .poll(&mut events, Some(Duration::from_millis(20)))
                    .unwrap();
                for e in events.iter() {
                    assert_eq!(e.token(), Token(7));
                    seen.extend(self.session.ready(self.poll.registry()));
                }
            }
            seen
        }

        fn pump_for(&mut self, d: Duration) -> Vec<MqttEvent> {
            let end = Instant::now() + d;
            self.pump_until(|_| Instant::now() >= end)
        }

        /// One packet from the session: (first byte, body).
        fn read_packet(&mut self) -> (u8, Vec<u8>) {
            let mut b = [0u8; 1];
            self.peer.read_exact(&mut b).unwrap();
            let first = b[0];
            let (mut len, mut mul) = (0usize, 1usize);
            loop {
                self.peer.read_exact(&mut b).unwrap();
                len += usize::from(b[0] & 0x7f) * mul;
                mul *= 128;
                if b[0] & 0x80 == 0 {
                    break;
                }
            }
            let mut body = vec![0u8; len];
            self.peer.read_exact(&mut body).unwrap();
            (first, body)
        }

        fn send(&mut self, bytes: &[u8]) {
            self.peer.write_all(bytes).unwrap();
        }

        fn accept(&mut self) {
            let (first, _) = self.read_packet();
            assert_eq!(first, 0x10, "CONNECT");
            self.send(&[0x20, 2, 0, 0]);
            let ev = self.pump_until(|e| !e.is_empty());
            assert!(
                matches!(
                    ev[..],
                    [MqttEvent::Connected {
                        session_present: false
                    }]
                ),
                "{ev:?}"
            );
        }
    }

    fn closed(ev: &[MqttEvent]) -> Option<&MqttError> {
        ev.iter().find_map(|e| match e {
            MqttEvent::Closed(e) => Some(e),
            _ => None,
        })
    }

    #[test]
    fn connect_packet_carries_the_settings_and_a_split_connack_connects() {
        let mut f = start(|s| {
            s.keep_alive = Duration::from_millis(1500);
            s.username = Some("gw".into());
            s.password = Some(vec![0xff, 0, 1]);
            s.will = Some(Will {
                topic: "x/online".into(),
                payload: b"false".to_vec(),
                qos1: true,
                retain: true,
            });
        });
        let (first, body) = f.read_packet();
        assert_eq!(first, 0x10);
        let (c, used) = v3_1_1::Connect::parse(&body).unwrap();
        assert_eq!(used, body.len());
        assert_eq!(c.client_id(), "unit");
        assert!(c.clean_session());
        assert_eq!(c.keep_alive(), 2, "rounded up to whole seconds");
        assert_eq!(c.will_topic(), Some("x/online"));
        assert_eq!(c.will_payload(), Some(&b"false"[..]));
        assert_eq!(c.will_qos(), Qos::AtLeastOnce);
        assert!(c.will_retain());
        assert_eq!(c.user_name(), Some("gw"));
        assert_eq!(c.password(), Some(&[0xff, 0, 1][..]));
        assert!(!f.session.connected());
        assert!(matches!(
            f.session.publish("t", b"x", true, false),
            Err(MqttError::NotConnected)
        ));
        // CONNACK one byte at a time (session present set).
        for b in [0x20, 2, 1] {
            f.send(&[b]);
            assert!(f.pump_for(Duration::from_millis(30)).is_empty());
        }
        f.send(&[0]);
        let ev = f.pump_until(|e| !e.is_empty());
        assert!(matches!(
            ev[..],
            [MqttEvent::Connected {
                session_present: true
            }]
        ));
        assert!(f.session.connected());
    }

    #[test]
    fn a_refusal_closes_the_session_once() {
        let mut f = start(|_| {});
        f.read_packet();
        f.send(&[0x20, 2, 0, 5]);
        let ev = f.pump_until(|e| !e.is_empty());
        assert!(matches!(closed(&ev), Some(MqttError::Refused(5))), "{ev:?}");
        assert_eq!(ev.len(), 1);
        assert!(f.session.ready(f.poll.registry()).is_empty());
        assert!(
            f.session
                .tick(Instant::now() + Duration::from_secs(60))
                .is_ok()
        );
        assert_eq!(f.session.next_deadline(), None);
        let msg = closed(&ev).unwrap().to_string();
        assert!(msg.contains("not authorized"), "{msg}");
    }

    #[test]
    fn publishes_carry_the_chosen_ids_and_each_puback_releases_one() {
        let mut f = start(|_| {});
        f.accept();
        assert_eq!(
            f.session.publish("a/b", b"one", true, false).unwrap(),
            Some(1)
        );
        assert_eq!(
            f.session.publish("a/b", b"two", true, true).unwrap(),
            Some(2)
        );
        assert_eq!(f.session.publish("a/c", b"", false, true).unwrap(), None);
        assert_eq!(
            f.session.publish("a/b", b"three", true, false).unwrap(),
            Some(3)
        );
        assert_eq!(f.session.in_flight(), 3);
        let expect = [
            ("a/b", &b"one"[..], Some(1), false),
            ("a/b", b"two", Some(2), true),
            ("a/c", b"", None, true),
            ("a/b", b"three", Some(3), false),
        ];
        for (topic, payload, pid, retain) in expect {
            let (first, body) = f.read_packet();
            assert_eq!(first >> 4, 3);
            let (p, _) = v3_1_1::Publish::parse(first & 0x0f, Arc::from(body)).unwrap();
            assert_eq!(p.topic_name(), topic);
            assert_eq!(p.payload().as_slice(), payload);
            assert_eq!(p.packet_id(), pid);
            assert_eq!(p.retain(), retain);
            let qos = if pid.is_some() {
                Qos::AtLeastOnce
            } else {
                Qos::AtMostOnce
            };
            assert_eq!(p.qos(), qos);
        }
        assert!(matches!(
            f.session.publish("a/+", b"", true, false),
            Err(MqttError::Packet(_))
        ));
        assert!(matches!(
            f.session.publish("a", &vec![0; MAX_PACKET], true, false),
            Err(MqttError::TooLarge { .. })
        ));
        assert_eq!(f.session.in_flight(), 3, "refused publishes take no id");
        // Two PUBACKs in one segment, then a duplicate: a protocol error.
        f.send(&[0x40, 2, 0, 2, 0x40, 2, 0, 3]);
        let ev = f.pump_until(|e| e.len() >= 2);
        assert!(matches!(
            ev[..],
            [MqttEvent::PubAck(2), MqttEvent::PubAck(3)]
        ));
        assert_eq!(f.session.in_flight(), 1);
        f.send(&[0x40, 2, 0, 2]);
        let ev = f.pump_until(|e| !e.is_empty());
        assert!(
            matches!(closed(&ev), Some(MqttError::Protocol(_))),
            "{ev:?}"
        );
        assert_eq!(f.session.in_flight(), 0);
    }

    #[test]
    fn an_oversized_packet_is_a_protocol_error() {
        let mut f = start(|_| {});
        f.accept();
        // PUBLISH with a remaining length of 2 MiB (0x80 0x80 0x80 0x01).
        f.send(&[0x30, 0x80, 0x80, 0x80, 0x01]);
        let ev = f.pump_until(|e| !e.is_empty());
        match closed(&ev) {
            Some(MqttError::Protocol(m)) => assert!(m.contains("over"), "{m}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_broker_that_closes_ends_the_session() {
        let mut f = start(|_| {});
        f.accept();
        f.peer.shutdown(Shutdown::Both).unwrap();
        let ev = f.pump_until(|e| !e.is_empty());
        assert!(
            matches!(
                closed(&ev),
                Some(MqttError::ClosedByBroker | MqttError::Io(_))
            ),
            "{ev:?}"
        );
        assert!(!f.session.connected());
        assert!(matches!(
            f.session.publish("t", b"", false, false),
            Err(MqttError::NotConnected)
        ));
    }

    #[test]
    fn keep_alive_pings_and_times_out() {
        let mut f = start(|_| {});
        f.accept();
        let ka = Duration::from_secs(1);
        let due = f.session.next_deadline().unwrap();
        assert!(due <= Instant::now() + ka);
        f.session.tick(due - Duration::from_millis(1)).unwrap();
        f.session.tick(due).unwrap();
        assert_eq!(f.read_packet(), (0xc0, vec![]), "PINGREQ");
        assert_eq!(f.session.next_deadline(), Some(due + ka.mul_f64(1.5)));
        // Answered: no timeout, the next ping a period after the last write.
        f.send(&[0xd0, 0]);
        assert!(f.pump_for(Duration::from_millis(50)).is_empty());
        let again = f.session.next_deadline().unwrap();
        assert!(again < due + ka.mul_f64(1.5));
        f.session.tick(again).unwrap();
        assert_eq!(f.read_packet(), (0xc0, vec![]), "PINGREQ");
        // Unanswered: the session ends, reported once.
        assert!(f.session.tick(again + ka).is_ok());
        let err = f.session.tick(again + ka.mul_f64(1.5)).unwrap_err();
        assert!(matches!(err, MqttError::KeepAliveTimeout));
        assert!(f.session.tick(again + ka * 5).is_ok());
        assert_eq!(f.session.next_deadline(), None);
    }

    #[test]
    fn no_connack_in_time_is_a_connect_timeout() {
        let mut f = start(|s| s.connect_timeout = Duration::from_millis(300));
        f.read_packet();
        let due = f.session.next_deadline().unwrap();
        f.session.tick(due - Duration::from_millis(1)).unwrap();
        assert!(matches!(
            f.session.tick(due),
            Err(MqttError::ConnectTimeout(_))
        ));
    }

    #[test]
    fn disconnect_sends_disconnect() {
        let mut f = start(|_| {});
        f.accept();
        assert!(f.session.disconnect(f.poll.registry()));
        assert_eq!(f.read_packet(), (0xe0, vec![]), "DISCONNECT");
        let mut rest = Vec::new();
        f.peer.read_to_end(&mut rest).unwrap();
        assert!(rest.is_empty());
        assert!(!f.session.connected());
        assert_eq!(f.session.next_deadline(), None);
    }

    #[test]
    fn a_refused_tcp_connect_is_a_connect_error() {
        let addr = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let mut poll = Poll::new().unwrap();
        let mut session = Session::connect(&settings(addr), poll.registry(), Token(1)).unwrap();
        let mut events = Events::with_capacity(4);
        let mut seen = Vec::new();
        for _ in 0..50 {
            poll.poll(&mut events, Some(Duration::from_millis(20)))
                .unwrap();
            for _ in events.iter() {
                seen.extend(session.ready(poll.registry()));
            }
            if !seen.is_empty() {
                break;
            }
        }
        assert!(
            matches!(closed(&seen), Some(MqttError::Connect { addr: a, .. }) if *a == addr),
            "{seen:?}"
        );
    }

    #[test]
    fn bad_settings_are_refused_before_connecting() {
        let mut s = MqttSettings::new("127.0.0.1:1", "x");
        s.password = Some(b"p".to_vec());
        let poll = Poll::new().unwrap();
        assert!(matches!(
            Session::connect(&s, poll.registry(), Token(0)),
            Err(MqttError::Settings(_))
        ));
        let s = MqttSettings::new("no-such-host.invalid:1883", "x");
        assert!(matches!(
            Session::connect(&s, poll.registry(), Token(0)),
            Err(MqttError::Resolve { .. })
        ));
    }

    #[test]
    fn packet_ids_wrap_and_skip_those_in_flight() {
        let mut ids = PacketIds::new();
        assert_eq!(ids.allocate(), Some(1));
        ids.next = u16::MAX;
        assert_eq!(ids.allocate(), Some(u16::MAX));
        assert_eq!(ids.allocate(), Some(2), "wraps past 0 and 1 (in flight)");
        assert!(ids.release(1));
        assert!(!ids.release(1));
        assert!(!ids.release(0));
        ids.next = 1;
        assert_eq!(ids.allocate(), Some(1));
        while ids.count < usize::from(u16::MAX) {
            assert!(ids.allocate().is_some());
        }
        assert_eq!(ids.allocate(), None);
        assert!(ids.release(40_000));
        assert_eq!(ids.allocate(), Some(40_000));
    }
}
