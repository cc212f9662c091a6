//! The verdict socket: a Unix stream socket speaking JSON Lines both ways (protocol v2,
//! `docs/PROTOCOL.md`) with any number of clients.
//!
//! One event loop ([`SocketServer::run`], on a thread the pipeline spawns) owns the listener
//! and every client, all non-blocking (mio). Each client has a bounded queue of lines; a client
//! that stops reading fills its kernel buffer, then its queue, and is disconnected when the
//! queue overflows. Nothing the server does blocks, so a slow client never slows the pipeline
//! or the other clients. Each client gets a `hello` line, then every verdict from the moment it
//! connected. A client's input is split into command lines (at most 64 KiB read per
//! readable event, rate-limited per client), each answered with exactly one reply
//! (`handle.rs`); `trigger` goes to the source over the control channel, and the source's
//! answer comes back over a channel of this loop's own plus its waker. The last
//! `output.retain` verdict and status lines stay in a ring (`retention.rs`) for `subscribe`.
//! A client that half-closes (end of its input) keeps receiving until a write to it fails or
//! it hangs up. Clients that hung up are reaped before new ones are accepted, so churn never
//! fills the socket; refusals over `max_clients` are counted and logged at most once a second.
//!
//! Shutdown: when the [`Broadcaster`] is dropped, the loop flushes what is queued (for at most
//! [`DRAIN_TIMEOUT`]), closes every client and removes the socket file it created.

mod client;
mod handle;
mod peer;
mod retention;
mod state;
pub mod stats;

use std::collections::HashMap;
use std::io::{self, ErrorKind};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::UnixStream as StdUnixStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TryRecvError, bounded};
use mio::net::{UnixListener, UnixStream};
use mio::{Events, Interest, Poll, Token, Waker};

use crate::config::defaults;
use crate::pipeline::{Control, TriggerAnswer};
use crate::verdict::{StatusKind, VerdictKind};
use crate::wire::{self, ClientId, TriggerMode};
use client::{Client, Flush, Queued};
use handle::error_line;
pub use peer::{ControlPolicy, Peer};
use retention::{Entry, Ring};
use state::RunState;

const LISTENER: Token = Token(0);
const WAKER: Token = Token(1);
const FIRST_CLIENT: usize = 2;

/// Trigger answers in flight back to this loop: more than the control channel holds.
const ANSWERS: usize = 1024;

/// Retained lines moved into a resuming client's queue at a time.
const REFILL: u64 = 64;

/// How long queued lines may take to reach clients at shutdown.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(2);

/// At most one "socket full" warning per this interval; the others are counted.
const REFUSAL_WARN_INTERVAL: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub enum SocketError {
    #[error("cannot create directory {path} for the verdict socket")]
    Dir { path: PathBuf, source: io::Error },
    #[error("{path} exists and is not a socket; refusing to replace it")]
    NotASocket { path: PathBuf },
    #[error(
        "another process is serving {path} (socket owned by {owner}); stop it or choose another output.socket"
    )]
    InUse { path: PathBuf, owner: String },
    #[error(
        "cannot tell whether {path} (socket owned by {owner}) is still served; refusing to replace it"
    )]
    Unverified {
        path: PathBuf,
        owner: String,
        #[source]
        source: io::Error,
    },
    #[error("cannot bind verdict socket {path}")]
    Bind { path: PathBuf, source: io::Error },
    #[error("verdict socket event loop: {0}")]
    Poll(io::Error),
}

/// Server settings.
#[derive(Debug, Clone)]
pub struct SocketSettings {
    pub client_buffer: usize,
    pub max_clients: usize,
    /// Verdict and status lines kept for `subscribe`.
    pub retain: usize,
    /// Between heartbeats; `None`: none.
    pub heartbeat: Option<Duration>,
    /// Per client; bursts of twice that.
    pub commands_per_second: u32,
    /// Who may send `trigger` and `report`.
    pub policy: ControlPolicy,
}

impl Default for SocketSettings {
    /// The config's defaults.
    fn default() -> Self {
        SocketSettings {
            client_buffer: defaults::CLIENT_BUFFER,
            max_clients: defaults::MAX_CLIENTS,
            retain: defaults::RETAIN,
            heartbeat: Some(defaults::HEARTBEAT),
            commands_per_second: defaults::COMMANDS_PER_SECOND,
            policy: ControlPolicy::new(Vec::new(), Vec::new()),
        }
    }
}

/// Whether a failed `connect()` to an existing socket file shows that nobody serves it: only
/// `ECONNREFUSED` does. Anything else (`EACCES`: a live socket of another user; `EAGAIN`: a full
/// backlog) may be a live daemon, whose socket must not be taken over.
pub fn connect_error_means_stale(e: &io::Error) -> bool {
    e.kind() == ErrorKind::ConnectionRefused
}

/// `uid N (name)`, or `uid N` when the user database does not know it.
fn owner(meta: &std::fs::Metadata) -> String {
    let uid = meta.uid();
    match user_name(uid) {
        Some(name) => format!("uid {uid} ({name})"),
        None => format!("uid {uid}"),
    }
}

/// The user name of `uid` from the user database (`getpwuid_r`).
fn user_name(uid: u32) -> Option<String> {
    let mut buf = vec![0 as libc::c_char; 4096];
    // SAFETY: a zeroed `passwd` is a valid out-parameter; `buf` outlives the call and its
    // length is passed; `pw_name` is read only when the call reports an entry.
    unsafe {
        let mut pwd: libc::passwd = std::mem::zeroed();
        let mut found: *mut libc::passwd = std::ptr::null_mut();
        let rc = libc::getpwuid_r(uid, &mut pwd, buf.as_mut_ptr(), buf.len(), &mut found);
        if rc != 0 || found.is_null() || pwd.pw_name.is_null() {
            return None;
        }
        Some(
            std::ffi::CStr::from_ptr(pwd.pw_name)
                .to_string_lossy()
                .into_owned(),
        )
    }
}

/// Binds `path` with permission bits `mode`, replacing a stale socket file left by a crash
/// (one whose `connect()` is refused); a live or unverifiable socket is an error.
pub fn bind(path: &Path, mode: u32) -> Result<std::os::unix::net::UnixListener, SocketError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty())
        && !dir.exists()
    {
        std::fs::create_dir_all(dir).map_err(|source| SocketError::Dir {
            path: dir.into(),
            source,
        })?;
    }
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => match StdUnixStream::connect(path) {
            Ok(_) => {
                return Err(SocketError::InUse {
                    path: path.into(),
                    owner: owner(&meta),
                });
            }
            Err(e) if !connect_error_means_stale(&e) => {
                return Err(SocketError::Unverified {
                    path: path.into(),
                    owner: owner(&meta),
                    source: e,
                });
            }
            Err(_) => {
                tracing::info!(path = %path.display(), "replacing stale verdict socket");
                std::fs::remove_file(path).map_err(|source| SocketError::Bind {
                    path: path.into(),
                    source,
                })?;
            }
        },
        Ok(_) => return Err(SocketError::NotASocket { path: path.into() }),
        Err(_) => {}
    }
    let listener =
        std::os::unix::net::UnixListener::bind(path).map_err(|source| SocketError::Bind {
            path: path.into(),
            source,
        })?;
    if let Err(source) = std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)) {
        let _ = std::fs::remove_file(path); // just created by this process
        return Err(SocketError::Bind {
            path: path.into(),
            source,
        });
    }
    Ok(listener)
}

/// What the pipeline hands the socket thread: the line with what the thread keeps of it.
#[derive(Debug, Clone)]
pub enum Outgoing {
    Verdict {
        seq: u64,
        kind: VerdictKind,
        line: Arc<str>,
        /// The set the frame was scored against, and what the verdict adds to the run's
        /// distributions (`snapshot`'s `stats`).
        reference_set: Arc<str>,
        observation: stats::Observation,
    },
    Status {
        kind: StatusKind,
        /// Reload events: the reference set in force after the event.
        reference_set: Option<Arc<str>>,
        line: Arc<str>,
    },
}

/// The pipeline's handle: hands items to the event loop and wakes it.
pub struct Broadcaster {
    tx: Sender<Outgoing>,
    waker: Arc<Waker>,
    connected: Arc<AtomicUsize>,
}

impl Broadcaster {
    /// Queues an item for every connected client (and the retention ring). Blocks only while
    /// the event loop, which never blocks, catches up.
    pub fn send(&self, item: Outgoing) {
        if self.tx.send(item).is_ok() {
            let _ = self.waker.wake();
        }
    }

    /// A counter of connected clients that outlives the broadcaster.
    pub fn connected_counter(&self) -> Arc<AtomicUsize> {
        self.connected.clone()
    }
}

impl Drop for Broadcaster {
    fn drop(&mut self) {
        // Closing the channel is the shutdown request; wake the loop so it sees it.
        let (dead, _) = bounded(0);
        drop(std::mem::replace(&mut self.tx, dead));
        let _ = self.waker.wake();
    }
}

/// What the socket thread says about the run (`hello`, `snapshot`) and where triggers go.
pub struct RunInfo {
    pub model_sha256: Arc<str>,
    /// The reference set at start (reloads update it).
    pub reference_set: Arc<str>,
    pub trigger_mode: TriggerMode,
    /// The source is a replay (`snapshot`'s `camera` says `replay`).
    pub replay: bool,
    /// The control channel into the source (`trigger`); `None`: triggers are missed.
    pub control: Option<Sender<Control>>,
    /// The model's name and version (`snapshot`).
    pub model: Option<wire::ModelInfo>,
    /// The workers' queue capacity (`snapshot`'s `stats`).
    pub queue_capacity: usize,
}

impl RunInfo {
    /// A free-running replay without a control channel.
    pub fn new(model_sha256: &str, reference_set: &str) -> RunInfo {
        RunInfo {
            model_sha256: Arc::from(model_sha256),
            reference_set: Arc::from(reference_set),
            trigger_mode: TriggerMode::FreeRun,
            replay: true,
            control: None,
            model: None,
            queue_capacity: 0,
        }
    }
}

/// A trigger's answer from the source, routed back to the client that sent it.
struct Answered {
    token: Token,
    client: u64,
    id: Option<ClientId>,
    part_id: Option<String>,
    answer: TriggerAnswer,
}

/// The event loop; see the module documentation.
pub struct SocketServer {
    poll: Poll,
    listener: UnixListener,
    /// The socket file to remove at exit (with its device and inode, so a successor's file is
    /// never removed).
    owned_path: Option<(PathBuf, u64, u64)>,
    rx: Receiver<Outgoing>,
    answers: (Sender<Answered>, Receiver<Answered>),
    control: Option<Sender<Control>>,
    clients: HashMap<Token, Client>,
    /// Clients whose read budget ran out: read again on the next turn.
    pending_reads: Vec<Token>,
    next_token: usize,
    next_client_id: u64,
    settings: SocketSettings,
    state: RunState,
    ring: Ring,
    connected: Arc<AtomicUsize>,
    evicted: u64,
    refusals: Refusals,
    /// The loop's own handle on the waker, so its eventfd stays open while the loop runs: mio
    /// delivers wake-ups only while the `Waker` is alive, and the broadcaster's last wake-up (in
    /// its `Drop`) would otherwise be lost when the broadcaster closes the fd right after it.
    waker: Arc<Waker>,
}

impl SocketServer {
    /// Wraps a bound listener. `owned_path` is the socket file this process created (removed at
    /// exit); `None` for a listener passed in by the service manager.
    pub fn new(
        listener: std::os::unix::net::UnixListener,
        owned_path: Option<PathBuf>,
        run: RunInfo,
        settings: SocketSettings,
    ) -> Result<(SocketServer, Broadcaster), SocketError> {
        let owned_path = owned_path.and_then(|p| {
            let meta = std::fs::symlink_metadata(&p).ok()?;
            Some((p, meta.dev(), meta.ino()))
        });
        let remove_owned = |e| {
            if let Some((path, _, _)) = &owned_path {
                let _ = std::fs::remove_file(path);
            }
            SocketError::Poll(e)
        };
        listener.set_nonblocking(true).map_err(remove_owned)?;
        let mut listener = UnixListener::from_std(listener);
        let poll = Poll::new().map_err(remove_owned)?;
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)
            .map_err(remove_owned)?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER).map_err(remove_owned)?);
        let (tx, rx) = bounded(4096);
        let connected = Arc::new(AtomicUsize::new(0));
        let server = SocketServer {
            poll,
            listener,
            owned_path,
            rx,
            answers: bounded(ANSWERS),
            control: run.control,
            clients: HashMap::new(),
            pending_reads: Vec::new(),
            next_token: FIRST_CLIENT,
            next_client_id: 1,
            state: RunState::with_model(
                run.model_sha256,
                run.reference_set,
                run.trigger_mode,
                run.replay,
                run.model,
                run.queue_capacity,
            ),
            ring: Ring::new(settings.retain),
            settings,
            connected: connected.clone(),
            evicted: 0,
            refusals: Refusals::default(),
            waker: waker.clone(),
        };
        Ok((
            server,
            Broadcaster {
                tx,
                waker,
                connected,
            },
        ))
    }

    /// Serves until the broadcaster is dropped, then drains and cleans up.
    pub fn run(mut self) -> Result<(), SocketError> {
        tracing::info!(
            run_id = %self.state.run_id,
            retain = self.settings.retain,
            heartbeat_ms = self.settings.heartbeat.map(|d| d.as_millis() as u64),
            "verdict socket serving protocol v2"
        );
        let mut events = Events::with_capacity(256);
        let mut closing = false;
        let mut deadline = None;
        let mut next_heartbeat = self.settings.heartbeat.map(|d| Instant::now() + d);
        loop {
            let now = Instant::now();
            let timeout = [deadline, next_heartbeat]
                .into_iter()
                .flatten()
                .min()
                .map(|d: Instant| d.saturating_duration_since(now));
            let timeout = if self.pending_reads.is_empty() {
                timeout
            } else {
                Some(Duration::ZERO)
            };
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() == ErrorKind::Interrupted {
                    continue;
                }
                self.cleanup();
                return Err(SocketError::Poll(e));
            }
            // Clients first: one that hung up is reaped before the listener accepts new ones.
            let mut accept = false;
            let pending = std::mem::take(&mut self.pending_reads);
            for event in events.iter() {
                match event.token() {
                    LISTENER => accept = true,
                    WAKER => {
                        self.take_answers();
                        closing |= self.take_items();
                    }
                    token if event.is_write_closed() => self.remove(token, "closed by client"),
                    token => {
                        if event.is_readable() && !pending.contains(&token) {
                            self.read(token);
                        }
                        if event.is_writable() {
                            self.flush(token);
                        }
                    }
                }
            }
            for token in pending {
                self.read(token);
            }
            if accept {
                self.accept();
            }
            if let Some(at) = next_heartbeat
                && Instant::now() >= at
            {
                self.heartbeat();
                let every = self.settings.heartbeat.unwrap_or(Duration::from_secs(1));
                next_heartbeat = Some((at + every).max(Instant::now()));
            }
            if closing {
                let drained = self.clients.values().all(|c| c.queue.is_empty());
                let deadline = *deadline.get_or_insert_with(|| Instant::now() + DRAIN_TIMEOUT);
                if drained || Instant::now() >= deadline {
                    self.cleanup();
                    return Ok(());
                }
            }
        }
    }

    fn accept(&mut self) {
        loop {
            match self.listener.accept() {
                Ok((stream, _)) => self.admit(stream),
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => {
                    tracing::warn!(error = %e, "accept on the verdict socket failed");
                    return;
                }
            }
        }
    }

    /// A new connection: its credentials, its permission, its `hello`.
    fn admit(&mut self, mut stream: UnixStream) {
        if self.clients.len() >= self.settings.max_clients {
            self.reap_hung_up();
        }
        if self.clients.len() >= self.settings.max_clients {
            self.refusals.refused(self.settings.max_clients);
            return;
        }
        let token = Token(self.next_token);
        self.next_token += 1;
        if let Err(e) = self.poll.registry().register(
            &mut stream,
            token,
            Interest::READABLE | Interest::WRITABLE,
        ) {
            tracing::warn!(error = %e, "cannot register a verdict client");
            return;
        }
        let id = self.next_client_id;
        self.next_client_id += 1;
        let peer = match Peer::of(&stream) {
            Ok(p) => Some(p),
            Err(e) => {
                tracing::warn!(client = id, error = %e, "cannot read the verdict client's credentials; it may not command");
                None
            }
        };
        let control = peer
            .as_ref()
            .is_some_and(|p| self.settings.policy.permits(p));
        let mut client = Client::new(
            id,
            stream,
            peer.clone(),
            control,
            self.settings.commands_per_second,
        );
        client.reply(wire::line(&self.state.hello(control, self.ring.retained())));
        self.clients.insert(token, client);
        self.connected.store(self.clients.len(), Ordering::SeqCst);
        self.state.counters.clients = self.clients.len() as u64;
        tracing::info!(
            client = id,
            uid = peer.as_ref().map(|p| p.uid),
            gid = peer.as_ref().map(|p| p.gid),
            pid = peer.as_ref().map(|p| p.pid),
            control,
            clients = self.clients.len(),
            "verdict client connected"
        );
        self.flush(token);
    }

    /// Moves items from the pipeline to the ring and every client queue; `true` when the
    /// pipeline is done.
    fn take_items(&mut self) -> bool {
        let mut done = false;
        loop {
            match self.rx.try_recv() {
                Ok(item) => self.publish(item),
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => {
                    done = true;
                    break;
                }
            }
        }
        self.flush_all();
        done
    }

    /// One verdict or status line: counted, retained, queued for every live client.
    fn publish(&mut self, item: Outgoing) {
        let entry = match item {
            Outgoing::Verdict {
                seq,
                kind,
                line,
                reference_set,
                observation,
            } => {
                // The source answers a trigger before it takes the frame: an answer sent before
                // this verdict is in the channel now and its `trigger_ack` goes out first.
                if !self.answers.1.is_empty() {
                    self.take_answers();
                }
                self.state.observed(seq, kind, &reference_set, observation);
                Entry {
                    verdict_seq: Some(seq),
                    follows: seq,
                    line,
                }
            }
            Outgoing::Status {
                kind,
                reference_set,
                line,
            } => {
                self.state.status(kind, reference_set.as_ref());
                Entry {
                    verdict_seq: None,
                    follows: self.state.seq,
                    line,
                }
            }
        };
        for client in self.clients.values_mut() {
            client.push_live(&entry.line);
        }
        self.ring.push(entry);
    }

    /// Flushes every client and evicts those whose queue overflowed.
    fn flush_all(&mut self) {
        let tokens: Vec<Token> = self.clients.keys().copied().collect();
        for token in tokens {
            self.flush(token);
            if let Some(c) = self.clients.get(&token)
                && c.queue.len() > self.settings.client_buffer
            {
                let (id, queued) = (c.id, c.queue.len());
                self.evict(
                    token,
                    id,
                    queued,
                    "verdict client is not reading; disconnecting it",
                );
            }
        }
    }

    fn evict(&mut self, token: Token, client: u64, queued: usize, message: &'static str) {
        self.evicted += 1;
        self.state.counters.evicted = self.evicted;
        tracing::warn!(
            client,
            queued,
            client_buffer = self.settings.client_buffer,
            evicted_total = self.evicted,
            "{message}"
        );
        self.remove(token, "too slow");
    }

    fn heartbeat(&mut self) {
        let line: Arc<str> = Arc::from(wire::line(&self.state.heartbeat()));
        for client in self.clients.values_mut() {
            client.push_live(&line);
        }
        self.flush_all();
    }

    /// Writes what a client has queued; a resuming client is fed from the retention ring as
    /// its queue empties, until it has caught up with the live stream.
    fn flush(&mut self, token: Token) {
        let Some(client) = self.clients.get_mut(&token) else {
            return;
        };
        loop {
            match client.flush() {
                Flush::Blocked => return,
                Flush::Closed(e) => {
                    tracing::debug!(client = client.id, error = %e, "write to verdict client failed");
                    return self.remove(token, "write failed");
                }
                Flush::Done => {}
            }
            let Some(cursor) = client.cursor else {
                break;
            };
            if cursor < self.ring.first_index() {
                let id = client.id;
                return self.evict(
                    token,
                    id,
                    0,
                    "resuming verdict client fell behind the retention ring; disconnecting it",
                );
            }
            let end = self.ring.end_index().min(cursor + REFILL);
            for index in cursor..end {
                if let Some(e) = self.ring.get(index) {
                    client.queue.push_back(Queued::Stream(e.line.clone()));
                }
            }
            client.cursor = (end < self.ring.end_index()).then_some(end);
            if client.queue.is_empty() {
                break;
            }
        }
        if client.closing && client.queue.is_empty() {
            self.remove(token, "closed after an error");
        }
    }

    fn read(&mut self, token: Token) {
        let Some(client) = self.clients.get_mut(&token).filter(|c| c.reading) else {
            return;
        };
        let input = client.read_lines();
        if input.eof {
            // End of the client's input, not of the connection: keep sending to it.
            tracing::debug!(
                client = client.id,
                "verdict client closed its sending side; still serving it"
            );
            self.stop_reading(token);
        }
        if input.error.is_some() {
            return self.remove(token, "read failed");
        }
        for line in input.lines {
            if self.clients.get(&token).is_none_or(|c| c.closing) {
                break;
            }
            self.command_line(token, &line);
        }
        if input.too_long {
            self.close_with_error(token, None, "line too long");
        } else if input.more && self.clients.get(&token).is_some_and(|c| c.reading) {
            self.pending_reads.push(token);
        }
        self.flush(token);
    }

    /// Stops reading a client (its input ended, or it is being closed); it is still written to.
    fn stop_reading(&mut self, token: Token) {
        let Some(client) = self.clients.get_mut(&token) else {
            return;
        };
        client.reading = false;
        let registered =
            self.poll
                .registry()
                .reregister(&mut client.stream, token, Interest::WRITABLE);
        if registered.is_err() {
            self.remove(token, "cannot re-register");
        }
    }

    /// Replies `error {reason}`, then closes the connection once its queue is written.
    fn close_with_error(&mut self, token: Token, id: Option<ClientId>, reason: &'static str) {
        let Some(client) = self.clients.get_mut(&token) else {
            return;
        };
        tracing::warn!(client = client.id, reason, "closing a verdict client");
        client.reply(error_line(id, reason.to_string()));
        client.closing = true;
        self.stop_reading(token);
        self.flush(token);
    }

    /// Removes the clients that have hung up (or failed) but whose event has not been handled
    /// yet, so a full socket refuses only when it is really full.
    fn reap_hung_up(&mut self) {
        use std::os::fd::AsRawFd;
        let tokens: Vec<Token> = self.clients.keys().copied().collect();
        let mut fds: Vec<libc::pollfd> = tokens
            .iter()
            .filter_map(|t| self.clients.get(t))
            .map(|c| libc::pollfd {
                fd: c.stream.as_raw_fd(),
                events: 0, // POLLHUP and POLLERR are always reported
                revents: 0,
            })
            .collect();
        // SAFETY: `fds` is a valid array of `fds.len()` pollfd structures; timeout 0.
        let ready = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, 0) };
        if ready <= 0 {
            return;
        }
        for (token, fd) in tokens.into_iter().zip(&fds) {
            if fd.revents & (libc::POLLHUP | libc::POLLERR) != 0 {
                self.remove(token, "closed by client");
            }
        }
    }

    fn remove(&mut self, token: Token, reason: &str) {
        if let Some(mut client) = self.clients.remove(&token) {
            let _ = self.poll.registry().deregister(&mut client.stream);
            let _ = client.stream.shutdown(std::net::Shutdown::Both);
            self.connected.store(self.clients.len(), Ordering::SeqCst);
            self.state.counters.clients = self.clients.len() as u64;
            tracing::info!(
                client = client.id,
                reason,
                clients = self.clients.len(),
                "verdict client disconnected"
            );
        }
    }

    /// Removes the socket file this process created, once (never a successor's: checked by
    /// device and inode).
    fn remove_socket_file(&mut self) {
        if let Some((path, dev, ino)) = self.owned_path.take()
            && let Ok(meta) = std::fs::symlink_metadata(&path)
            && meta.dev() == dev
            && meta.ino() == ino
            && let Err(e) = std::fs::remove_file(&path)
        {
            tracing::warn!(path = %path.display(), error = %e, "cannot remove the verdict socket");
        }
    }

    fn cleanup(&mut self) {
        let tokens: Vec<Token> = self.clients.keys().copied().collect();
        for token in tokens {
            self.remove(token, "daemon stopping");
        }
        self.remove_socket_file();
        if self.evicted > 0 {
            tracing::info!(
                evicted = self.evicted,
                "slow verdict clients were disconnected during this run"
            );
        }
        if self.refusals.total > 0 {
            tracing::info!(
                refused_total = self.refusals.total,
                max_clients = self.settings.max_clients,
                "verdict clients refused during this run (socket full)"
            );
        }
    }
}

/// A server that never ran (start-up failed after binding) still removes its socket file.
impl Drop for SocketServer {
    fn drop(&mut self) {
        self.remove_socket_file();
    }
}

/// Connections refused because the socket was full: all counted, at most one warning per
/// [`REFUSAL_WARN_INTERVAL`] (a client hammering a full socket must not flood the journal).
#[derive(Default)]
struct Refusals {
    total: u64,
    /// Refusals since the last warning, not logged one by one.
    suppressed: u64,
    last_warning: Option<Instant>,
}

impl Refusals {
    fn refused(&mut self, max_clients: usize) {
        self.total += 1;
        let now = Instant::now();
        if self
            .last_warning
            .is_some_and(|t| now.duration_since(t) < REFUSAL_WARN_INTERVAL)
        {
            self.suppressed += 1;
            return;
        }
        tracing::warn!(
            max_clients,
            refused_total = self.total,
            suppressed = self.suppressed,
            "verdict socket full; refusing a client (logged at most once a second)"
        );
        self.suppressed = 0;
        self.last_warning = Some(now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_refused_connection_means_stale() {
        let errno = io::Error::from_raw_os_error;
        assert!(connect_error_means_stale(&errno(libc::ECONNREFUSED)));
        for e in [
            libc::EACCES,
            libc::EPERM,
            libc::EAGAIN,
            libc::ENOENT,
            libc::EINTR,
        ] {
            assert!(!connect_error_means_stale(&errno(e)), "errno {e}");
        }
    }

    #[test]
    fn a_socket_nobody_serves_is_replaced_and_a_live_one_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sock");
        drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
        let listener = bind(&path, 0o600).expect("stale socket replaced");
        match bind(&path, 0o600) {
            Err(SocketError::InUse { owner, .. }) => assert!(owner.starts_with("uid "), "{owner}"),
            other => panic!("a live socket was not refused: {other:?}"),
        }
        drop(listener);
    }

    #[test]
    fn owners_are_named() {
        assert_eq!(user_name(0).as_deref(), Some("root"));
        assert_eq!(user_name(4_000_000_000), None);
    }
}
