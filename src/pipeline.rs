//! The pipeline: the only module that spawns threads or owns channels.
//!
//! ```text
//! signals ──raise──▶ StopSignal
//! source ──Job (bounded: queue_depth)──▶ encoder-0..N ──Verdict──▶ sequencer ──▶ stdout
//!                                                                    └──line──▶ socket ──▶ clients
//! ```
//!
//! * `source` assigns `seq` (1, 2, 3, … without gaps) to every frame it takes and blocks when
//!   the workers are behind (replay back-pressure).
//! * `encoder-i` owns one [`Inspector`] (its own ONNX Runtime session); every job yields exactly
//!   one verdict, even if inspection panics.
//! * `sequencer` restores frame order, stamps latency, serialises each verdict once and hands the
//!   line to the sinks; it ends when every worker has ended.
//! * `socket` runs the verdict socket's event loop; it ends when the sequencer drops its
//!   broadcaster.
//!
//! Each thread ends when its input channel closes. On SIGINT/SIGTERM the source stops taking
//! frames; everything already taken drains through to the sinks; a second signal exits at once.
//! SIGHUP asks the [`Reload`] hook for a new [`Scorer`] and swaps it in between frames (the
//! ONNX Runtime sessions stay); a refused reload keeps the old one. Each frame is scored with
//! the scorer in force when the source took it, so a swap falls exactly between two frames;
//! the status line announcing it carries `after_seq`, the last frame scored the old way.
//!
//! The calling thread, once everything is spawned, is the monitor: it sends `READY=1`, a
//! `STATUS=` line every second and `WATCHDOG=1` at half the watchdog interval to the service
//! manager (when there is one), but `WATCHDOG=1` only while the pipeline is healthy: no stage
//! has been busy on one frame for longer than `stall_timeout` (a stage waiting for work, for a
//! paced frame or for the camera is idle, not busy) and no thread has died. A camera that is
//! lost is not a stall: the supervisor reports it and reconnects; a restart would not help.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use crossbeam_channel::{Receiver, Sender, bounded, never, select};

use crate::failures::FailureLog;
use crate::inspect::{Inspector, Scorer};
use crate::report::{Labels, Summary};
use crate::service::Notifier;
use crate::socket::{Broadcaster, SocketServer};
use crate::source::camera::{
    Backoff, CameraBackend, CaptureError, CapturedFrame, Supervision, crop_roi,
};
use crate::source::{FrameSource, Payload, SourceEvent, SourceFrame};
use crate::stop::StopSignal;
use crate::verdict::{Outcome, StatusEvent, StatusKind, Verdict, VerdictKind};
use crate::wire;

/// The scorer in force, shared by the source (which hands a snapshot to each frame it takes)
/// and the SIGHUP handler (which swaps it).
pub type SharedScorer = Arc<ScorerSlot>;

/// The scorer in force and the `seq` of the last frame taken, under one lock: each frame is
/// scored by the scorer in force when it was taken, so a swap lands exactly between two frames
/// and [`ScorerSlot::swap`] says which.
pub struct ScorerSlot(Mutex<(u64, Arc<Scorer>)>);

impl ScorerSlot {
    fn lock(&self) -> std::sync::MutexGuard<'_, (u64, Arc<Scorer>)> {
        // Nothing panics while holding the lock; a poisoned lock still holds a valid pair.
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Takes a frame: its `seq` and the scorer it will be scored with.
    fn admit(&self) -> (u64, Arc<Scorer>) {
        let mut slot = self.lock();
        slot.0 += 1;
        (slot.0, slot.1.clone())
    }

    /// The scorer in force now.
    pub fn current(&self) -> Arc<Scorer> {
        self.lock().1.clone()
    }

    /// The `seq` of the last frame taken and the scorer in force.
    fn position(&self) -> (u64, Arc<Scorer>) {
        let slot = self.lock();
        (slot.0, slot.1.clone())
    }

    /// Puts `new` in force from the next frame taken; returns the `seq` of the last frame
    /// scored with the previous scorer, and that scorer.
    fn swap(&self, new: Arc<Scorer>) -> (u64, Arc<Scorer>) {
        let mut slot = self.lock();
        let previous = std::mem::replace(&mut slot.1, new);
        (slot.0, previous)
    }
}

/// SIGHUP's hook: builds the scorer to swap in, or says why not (the old one stays).
pub type Reload = Box<dyn FnMut() -> Result<Scorer, String> + Send>;

/// How often the monitor updates `STATUS=`.
const STATUS_EVERY: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error("cannot start thread {name}: {source}")]
    Spawn {
        name: String,
        source: std::io::Error,
    },
    #[error("cannot install signal handlers: {0}")]
    Signals(std::io::Error),
    #[error("thread {0} panicked")]
    Panicked(String),
    #[error(transparent)]
    Socket(#[from] crate::socket::SocketError),
}

/// Where frames come from.
pub enum Input {
    /// A source whose `next` returns (replay).
    Frames(Box<dyn FrameSource>),
    /// A camera, supervised: each opened device runs on its own capture thread under a watchdog.
    Camera {
        backend: Arc<dyn CameraBackend>,
        supervision: Supervision,
    },
}

/// Everything a run needs, built by the caller (see `commands`).
pub struct Pipeline {
    pub source: Input,
    /// One per encoder thread.
    pub inspectors: Vec<Inspector>,
    pub scorer: SharedScorer,
    pub model_sha256: Arc<str>,
    /// Frames waiting between the source and the workers.
    pub queue_depth: usize,
    /// Print every verdict line on stdout (replay).
    pub stdout: bool,
    pub socket: Option<(SocketServer, Broadcaster)>,
    /// Hold the source until this many socket clients are connected.
    pub wait_clients: usize,
    pub labels: Option<Labels>,
    pub stop: StopSignal,
    /// Install SIGINT/SIGTERM handlers that raise `stop`.
    pub handle_signals: bool,
    /// Save the frames of these verdicts (`fail`, `error`) here.
    pub failures: Option<(FailureLog, Vec<VerdictKind>)>,
    /// The service manager to notify (readiness, status, watchdog), when run under one.
    pub notifier: Option<Notifier>,
    /// A stage busy this long on one frame is wedged: `WATCHDOG=1` stops.
    pub stall_timeout: Duration,
    /// What SIGHUP reloads (with `handle_signals`); `None` = SIGHUP is logged and ignored.
    pub reload: Option<Reload>,
}

/// A frame to save as a failure image.
struct FailureImage {
    seq: u64,
    verdict: &'static str,
    frame: String,
    payload: Payload,
}

struct Job {
    seq: u64,
    frame: SourceFrame,
    /// The scorer in force when the frame was taken.
    scorer: Arc<Scorer>,
}

/// What reaches the sequencer.
enum ToSequencer {
    Verdict(Verdict),
    Status(StatusEvent),
}

fn spawn<T: Send + 'static>(
    name: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<JoinHandle<T>, PipelineError> {
    std::thread::Builder::new()
        .name(name.to_string())
        .spawn(f)
        .map_err(|source| PipelineError::Spawn {
            name: name.to_string(),
            source,
        })
}

fn join<T>(name: &str, handle: JoinHandle<T>) -> Result<T, PipelineError> {
    handle
        .join()
        .map_err(|_| PipelineError::Panicked(name.to_string()))
}

/// Runs the pipeline to the end of the source or a stop signal; returns the run's summary.
pub fn run(p: Pipeline) -> Result<Summary, PipelineError> {
    let Pipeline {
        source,
        inspectors,
        scorer,
        model_sha256,
        queue_depth,
        stdout,
        socket,
        wait_clients,
        labels,
        stop,
        handle_signals,
        failures,
        notifier,
        stall_timeout,
        reload,
    } = p;

    let source_name: Arc<str> = Arc::from(match &source {
        Input::Frames(f) => f.name(),
        Input::Camera { backend, .. } => backend.name(),
    });
    let (reload_tx, reload_rx) = bounded::<StatusEvent>(16);
    let signals = if handle_signals {
        let hup = SighupReload {
            reload,
            scorer: scorer.clone(),
            events: reload_tx,
            source: source_name.clone(),
            notifier: notifier.clone(),
        };
        Some(watch_signals(&stop, hup)?)
    } else {
        drop(reload_tx);
        None
    };

    let (broadcaster, socket_thread) = match socket {
        Some((server, broadcaster)) => (
            Some(broadcaster),
            Some(spawn("socket", move || server.run())?),
        ),
        None => (None, None),
    };

    let (job_tx, job_rx) = bounded::<Job>(queue_depth);
    let (verdict_tx, verdict_rx) = bounded::<ToSequencer>(queue_depth + inspectors.len());
    let stages = Stages::new(inspectors.len());
    let counters = Arc::new(Counters::default());

    // source
    let connected = broadcaster.as_ref().map(Broadcaster::connected_counter);
    let source_stop = stop.clone();
    let status_tx = verdict_tx.clone();
    let name = source_name.clone();
    let source_stages = stages.clone();
    let slot = scorer.clone();
    let source_thread = spawn("source", move || {
        if wait_clients > 0 {
            let connected = connected.unwrap_or_default();
            tracing::info!(
                wait_clients,
                "holding the source until enough verdict clients are connected"
            );
            while connected.load(Ordering::SeqCst) < wait_clients {
                if source_stop.sleep(Duration::from_millis(10)) {
                    return 0;
                }
            }
        }
        let taken = match source {
            Input::Frames(mut frames) => {
                let mut taken = 0u64;
                while frames.wait(&source_stop) {
                    let event = {
                        let _busy = source_stages.enter(Stages::SOURCE);
                        frames.take()
                    };
                    let SourceEvent::Frame(frame) = event else {
                        break;
                    };
                    let (seq, scorer) = slot.admit();
                    taken = seq;
                    if job_tx.send(Job { seq, frame, scorer }).is_err() {
                        break;
                    }
                }
                taken
            }
            Input::Camera {
                backend,
                supervision,
            } => supervise_camera(
                backend,
                &supervision,
                &slot,
                &source_stop,
                &job_tx,
                &status_tx,
                &name,
            ),
        };
        tracing::debug!(
            frames = taken,
            stopped = source_stop.is_raised(),
            "source ended"
        );
        taken
    })?;

    // failure images: off the verdict path; when the saver is behind, images are dropped (logged)
    let (failure_tx, failure_thread) = match failures {
        Some((mut log, verdicts)) => {
            let (tx, rx) = bounded::<FailureImage>(16);
            let thread = spawn("failures", move || {
                let mut failed = 0u64;
                for f in rx.iter() {
                    match log.save(f.seq, f.verdict, &f.frame, &f.payload) {
                        Ok(path) => {
                            tracing::debug!(seq = f.seq, path = %path.display(), "failure image saved")
                        }
                        Err(e) => {
                            failed += 1;
                            tracing::warn!(seq = f.seq, error = %e, failed_total = failed, "failure image not saved; inspection goes on");
                        }
                    }
                }
            })?;
            (Some((tx, Arc::new(verdicts))), Some(thread))
        }
        None => (None, None),
    };

    // encoders
    let mut workers = Vec::new();
    for (i, mut inspector) in inspectors.into_iter().enumerate() {
        let (job_rx, verdict_tx) = (job_rx.clone(), verdict_tx.clone());
        let (source_name, model_sha256) = (source_name.clone(), model_sha256.clone());
        let failure_tx = failure_tx.clone();
        let stages = stages.clone();
        let name = format!("encoder-{i}");
        workers.push((
            name.clone(),
            spawn(&name, move || {
                for Job { seq, frame, scorer } in job_rx.iter() {
                    let busy = stages.enter(Stages::encoder(i));
                    let payload = frame.payload.as_ref().map_err(String::as_str);
                    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        inspector.inspect(payload, &scorer)
                    }))
                    .unwrap_or_else(|_| Outcome::Error {
                        reason: "internal error: inspection panicked".into(),
                    });
                    let label = outcome.label();
                    if let (Some((tx, wanted)), Ok(payload)) = (&failure_tx, frame.payload)
                        && wanted.contains(&outcome.kind())
                    {
                        let image = FailureImage {
                            seq,
                            verdict: label,
                            frame: frame.id.clone(),
                            payload,
                        };
                        if tx.try_send(image).is_err() {
                            tracing::warn!(
                                seq,
                                "failure-image saver is behind; this image is not saved"
                            );
                        }
                    }
                    let verdict = Verdict {
                        seq,
                        source: source_name.clone(),
                        frame: frame.id,
                        captured_at: frame.captured_at,
                        taken: frame.taken,
                        outcome,
                        model_sha256: model_sha256.clone(),
                        reference_set: scorer.id.clone(),
                    };
                    drop(busy);
                    if verdict_tx.send(ToSequencer::Verdict(verdict)).is_err() {
                        break;
                    }
                }
            })?,
        ));
    }
    drop((job_rx, verdict_tx, failure_tx));

    // sequencer; `done` closes when it ends, however it ends
    let (done_tx, done_rx) = bounded::<()>(0);
    let sequencer_stages = stages.clone();
    let sequencer_counters = counters.clone();
    let sequencer_sha = model_sha256.clone();
    let sequencer = spawn("sequencer", move || {
        let _done = done_tx;
        let (stages, counters) = (sequencer_stages, sequencer_counters);
        let mut sink = Sinks {
            stdout: stdout.then(std::io::stdout),
            broadcaster,
            labels,
        };
        let mut summary = Summary::new(sink.labels.as_ref());
        let mut first_taken = None;
        let mut pending = BTreeMap::new();
        let mut next = 1u64;
        let mut reload_rx = reload_rx;
        loop {
            let event = select! {
                recv(verdict_rx) -> msg => msg.ok(),
                recv(reload_rx) -> msg => {
                    match msg {
                        Ok(event) => {
                            let _busy = stages.enter(Stages::SEQUENCER);
                            sink.reload(&event, &sequencer_sha);
                        }
                        Err(_) => reload_rx = never(),
                    }
                    continue;
                },
            };
            let Some(event) = event else {
                break;
            };
            let _busy = stages.enter(Stages::SEQUENCER);
            let verdict = match event {
                ToSequencer::Verdict(v) => v,
                ToSequencer::Status(e) => {
                    counters
                        .camera_lost
                        .store(e.kind == StatusKind::CameraLost, Ordering::Relaxed);
                    sink.status(&e);
                    continue;
                }
            };
            pending.insert(verdict.seq, verdict);
            while let Some(v) = pending.remove(&next) {
                first_taken.get_or_insert(v.taken);
                sink.emit(&v, &mut summary);
                counters.count(&v);
                next += 1;
            }
        }
        // Unreachable with a gap-free source, but never drop a verdict.
        for v in pending.into_values() {
            tracing::error!(seq = v.seq, expected = next, "verdict out of sequence");
            sink.emit(&v, &mut summary);
            counters.count(&v);
        }
        summary.elapsed = first_taken.map(|t| t.elapsed()).unwrap_or_default();
        summary
    })?;

    // monitor: readiness, status and watchdog, until the sequencer ends
    let threads = Threads {
        source: &source_thread,
        workers: &workers,
        failures: failure_thread.as_ref(),
        socket: socket_thread.as_ref(),
    };
    monitor(Monitor {
        done: &done_rx,
        stop: &stop,
        notifier: notifier.as_ref(),
        stages: &stages,
        stall_timeout,
        counters: &counters,
        scorer: &scorer,
        threads,
    });

    let taken = join("source", source_thread)?;
    for (name, handle) in workers {
        join(&name, handle)?;
    }
    let summary = join("sequencer", sequencer)?;
    if let Some(t) = failure_thread {
        join("failures", t)?;
    }
    if let Some(t) = socket_thread {
        join("socket", t)??;
    }
    if let Some((handle, thread)) = signals {
        handle.close();
        join("signals", thread)?;
    }
    debug_assert_eq!(taken, summary.frames);
    Ok(summary)
}

/// When each stage started the piece of work it is on, for the watchdog: milliseconds since
/// `epoch` plus one, or 0 while the stage is idle (waiting for work, pacing, waiting for the
/// camera).
struct Stages {
    epoch: Instant,
    busy: Vec<AtomicU64>,
}

/// Marks a stage busy until dropped.
struct Busy<'a>(&'a AtomicU64);

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        self.0.store(0, Ordering::Relaxed);
    }
}

impl Stages {
    const SOURCE: usize = 0;
    const SEQUENCER: usize = 1;

    fn encoder(i: usize) -> usize {
        2 + i
    }

    fn new(encoders: usize) -> Arc<Stages> {
        Arc::new(Stages {
            epoch: Instant::now(),
            busy: (0..2 + encoders).map(|_| AtomicU64::new(0)).collect(),
        })
    }

    fn name(i: usize) -> String {
        match i {
            Self::SOURCE => "source".into(),
            Self::SEQUENCER => "sequencer".into(),
            i => format!("encoder-{}", i - 2),
        }
    }

    fn enter(&self, i: usize) -> Busy<'_> {
        let since = self.epoch.elapsed().as_millis() as u64 + 1;
        self.busy[i].store(since, Ordering::Relaxed);
        Busy(&self.busy[i])
    }

    /// The stage busy the longest, if longer than `limit`.
    fn stalled(&self, limit: Duration) -> Option<String> {
        let now = self.epoch.elapsed().as_millis() as u64 + 1;
        let (i, busy_ms) = self
            .busy
            .iter()
            .enumerate()
            .filter_map(|(i, b)| match b.load(Ordering::Relaxed) {
                0 => None,
                since => Some((i, now.saturating_sub(since))),
            })
            .max_by_key(|&(_, ms)| ms)?;
        (Duration::from_millis(busy_ms) > limit).then(|| {
            format!(
                "{} busy on one frame for {:.1} s",
                Self::name(i),
                busy_ms as f64 / 1000.0
            )
        })
    }
}

/// What the sequencer has emitted, for `STATUS=`.
#[derive(Default)]
struct Counters {
    frames: AtomicU64,
    pass: AtomicU64,
    fail: AtomicU64,
    error: AtomicU64,
    camera_lost: AtomicBool,
}

impl Counters {
    fn count(&self, v: &Verdict) {
        self.frames.fetch_add(1, Ordering::Relaxed);
        let counter = match v.label() {
            "pass" => &self.pass,
            "fail" => &self.fail,
            _ => &self.error,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// The pipeline's threads, for the monitor's liveness check.
struct Threads<'a> {
    source: &'a JoinHandle<u64>,
    workers: &'a [(String, JoinHandle<()>)],
    failures: Option<&'a JoinHandle<()>>,
    socket: Option<&'a JoinHandle<Result<(), crate::socket::SocketError>>>,
}

impl Threads<'_> {
    /// A thread that ended although it should still run. Once the source has ended the
    /// pipeline is draining and the workers end in turn; the socket ends only after the
    /// sequencer.
    fn dead(&self) -> Option<String> {
        let draining = self.source.is_finished();
        if !draining {
            if let Some((name, _)) = self.workers.iter().find(|(_, h)| h.is_finished()) {
                return Some(format!("thread {name} ended"));
            }
            if self.failures.is_some_and(JoinHandle::is_finished) {
                return Some("thread failures ended".into());
            }
        }
        self.socket
            .is_some_and(JoinHandle::is_finished)
            .then(|| "thread socket ended".into())
    }
}

struct Monitor<'a> {
    done: &'a Receiver<()>,
    stop: &'a StopSignal,
    notifier: Option<&'a Notifier>,
    stages: &'a Stages,
    stall_timeout: Duration,
    counters: &'a Counters,
    scorer: &'a SharedScorer,
    threads: Threads<'a>,
}

/// Runs on the caller's thread until the sequencer ends: `READY=1` once, then `STATUS=` every
/// [`STATUS_EVERY`], `WATCHDOG=1` every half watchdog interval while healthy, `STOPPING=1`
/// when the source stops. Without a service manager it still logs stalls.
fn monitor(m: Monitor<'_>) {
    // Half the interval, as sd_watchdog_enabled(3) advises (and never a busy loop).
    let ping_every = m
        .notifier
        .and_then(Notifier::watchdog)
        .map(|w| (w / 2).max(Duration::from_millis(10)));
    let started = Instant::now();
    let mut last = (started, 0u64);
    let mut fps = 0.0;
    let mut problem: Option<String> = None;
    let mut stopping = false;
    let status = |fps: f64, problem: &Option<String>, stopping: bool| {
        let c = m.counters;
        let mut s = format!(
            "{}{} frames: {} pass, {} fail, {} error; {fps:.1} fps; references {}",
            if stopping { "stopping, draining; " } else { "" },
            c.frames.load(Ordering::Relaxed),
            c.pass.load(Ordering::Relaxed),
            c.fail.load(Ordering::Relaxed),
            c.error.load(Ordering::Relaxed),
            m.scorer.current().id,
        );
        if c.camera_lost.load(Ordering::Relaxed) {
            s += "; camera lost, reconnecting";
        }
        if let Some(p) = problem {
            s += &format!("; STALLED: {p}");
        }
        s
    };
    if let Some(n) = m.notifier {
        n.ready(&status(0.0, &None, false));
        if let Some(every) = ping_every {
            n.watchdog_ping();
            tracing::info!(
                every_ms = every.as_millis() as u64,
                stall_timeout_ms = m.stall_timeout.as_millis() as u64,
                "feeding the systemd watchdog while the pipeline makes progress"
            );
        }
    }
    let mut next_ping = ping_every.map(|every| started + every);
    let mut next_status = started + STATUS_EVERY;
    loop {
        let wake = next_ping.map_or(next_status, |p| p.min(next_status));
        let stop_rx = if stopping {
            never()
        } else {
            m.stop.receiver().clone()
        };
        select! {
            recv(m.done) -> _ => break,
            recv(stop_rx) -> _ => {}
            default(wake.saturating_duration_since(Instant::now())) => {}
        }
        let now = Instant::now();
        let found = m
            .stages
            .stalled(m.stall_timeout)
            .or_else(|| m.threads.dead());
        match (&problem, &found) {
            (None, Some(p)) => {
                tracing::error!(problem = %p, stall_timeout_ms = m.stall_timeout.as_millis() as u64, "pipeline stalled: no longer feeding the watchdog")
            }
            (Some(_), None) => tracing::info!("pipeline progressing again"),
            _ => {}
        }
        problem = found;
        if !stopping && (m.stop.is_raised() || m.threads.source.is_finished()) {
            stopping = true;
            if let Some(n) = m.notifier {
                n.stopping(&status(fps, &problem, true));
            }
        }
        if let (Some(n), Some(due), Some(every)) = (m.notifier, next_ping, ping_every)
            && now >= due
        {
            if problem.is_none() {
                n.watchdog_ping();
            }
            next_ping = Some(now + every);
        }
        if now >= next_status {
            let frames = m.counters.frames.load(Ordering::Relaxed);
            let dt = now.duration_since(last.0).as_secs_f64();
            if dt > 0.0 {
                fps = (frames - last.1) as f64 / dt;
            }
            last = (now, frames);
            if let Some(n) = m.notifier {
                n.status(&status(fps, &problem, stopping));
            }
            next_status = now + STATUS_EVERY;
        }
    }
}

struct Sinks {
    stdout: Option<std::io::Stdout>,
    broadcaster: Option<Broadcaster>,
    labels: Option<Labels>,
}

impl Sinks {
    fn line(&mut self, line: Arc<str>) {
        if let Some(out) = &self.stdout {
            let mut lock = out.lock();
            if let Err(e) = lock.write_all(line.as_bytes()).and_then(|()| lock.flush()) {
                tracing::warn!(error = %e, "stdout is gone; verdicts continue on the other sinks");
                drop(lock);
                self.stdout = None;
            }
        }
        if let Some(b) = &self.broadcaster {
            b.send(line);
        }
    }

    fn status(&mut self, e: &StatusEvent) {
        match e.kind {
            StatusKind::CameraLost => {
                tracing::warn!(source = %e.source, reason = e.reason.as_deref().unwrap_or(""), after_seq = e.after_seq, "camera lost")
            }
            StatusKind::CameraRestored => {
                tracing::info!(source = %e.source, after_seq = e.after_seq, "camera restored")
            }
            StatusKind::ReferencesReloaded => {
                tracing::info!(
                    reference_set = e.reference_set.as_deref(),
                    previous = e.previous_reference_set.as_deref(),
                    after_seq = e.after_seq,
                    "new reference set in force from the next frame"
                )
            }
            StatusKind::ReloadRefused => {
                tracing::error!(
                    reason = e.reason.as_deref().unwrap_or(""),
                    reference_set = e.reference_set.as_deref(),
                    "reload refused; the reference set in force stays"
                )
            }
        }
        self.line(Arc::from(wire::status_line(e)));
    }

    /// A reload event: announced to connected clients, and the new set's id in the `hello`
    /// that clients connecting from now on get.
    fn reload(&mut self, e: &StatusEvent, model_sha256: &str) {
        if let (StatusKind::ReferencesReloaded, Some(b), Some(id)) =
            (e.kind, &self.broadcaster, &e.reference_set)
        {
            b.set_hello(wire::hello_line(model_sha256, id));
        }
        self.status(e);
    }

    fn emit(&mut self, v: &Verdict, summary: &mut Summary) {
        let latency = v.taken.elapsed();
        let line: Arc<str> = Arc::from(wire::verdict_line(v, latency));
        tracing::debug!(seq = v.seq, frame = %v.frame, verdict = v.label(), latency_us = latency.as_micros() as u64, "verdict");
        self.line(line);
        summary.record(v, latency, self.labels.as_ref());
    }
}

type SignalWatch = (signal_hook::iterator::Handle, JoinHandle<()>);

/// What the signal thread needs to answer SIGHUP.
struct SighupReload {
    reload: Option<Reload>,
    scorer: SharedScorer,
    /// To the sequencer, which announces the outcome on the socket.
    events: Sender<StatusEvent>,
    source: Arc<str>,
    notifier: Option<Notifier>,
}

impl SighupReload {
    fn reload(&mut self) {
        let Some(reload) = self.reload.as_mut() else {
            tracing::info!("SIGHUP: nothing to reload in this mode");
            return;
        };
        if let Some(n) = &self.notifier {
            n.reloading();
        }
        let (kind, reason, after_seq, in_force, previous) = match reload() {
            Ok(new) => {
                let new = Arc::new(new);
                let id = new.id.clone();
                let (after_seq, previous) = self.scorer.swap(new);
                (
                    StatusKind::ReferencesReloaded,
                    None,
                    after_seq,
                    id,
                    previous.id.clone(),
                )
            }
            Err(reason) => {
                let (after_seq, in_force) = self.scorer.position();
                let id = in_force.id.clone();
                (
                    StatusKind::ReloadRefused,
                    Some(reason),
                    after_seq,
                    id.clone(),
                    id,
                )
            }
        };
        if let Some(n) = &self.notifier {
            n.ready(&format!("{}: references {in_force}", kind.as_str()));
        }
        let event = StatusEvent {
            kind,
            source: self.source.clone(),
            at: SystemTime::now(),
            reason,
            after_seq,
            reference_set: Some(in_force),
            previous_reference_set: Some(previous),
        };
        // Closed only when the sequencer has ended: nobody is left to tell.
        let _ = self.events.send(event);
    }
}

fn watch_signals(stop: &StopSignal, mut hup: SighupReload) -> Result<SignalWatch, PipelineError> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP])
        .map_err(PipelineError::Signals)?;
    let handle = signals.handle();
    let stop = stop.clone();
    let thread = spawn("signals", move || {
        for signal in signals.forever() {
            if signal == SIGHUP {
                tracing::info!(signal, "SIGHUP: reloading references and scoring settings");
                hup.reload();
                continue;
            }
            if stop.is_raised() {
                tracing::warn!(signal, "second stop signal: exiting without draining");
                std::process::exit(130);
            }
            tracing::info!(
                signal,
                "stop signal: taking no new frames, draining those already taken"
            );
            stop.raise();
        }
    })?;
    Ok((handle, thread))
}

/// The scorer in force at start, ready for swapping.
pub fn shared_scorer(scorer: Scorer) -> SharedScorer {
    Arc::new(ScorerSlot(Mutex::new((0, Arc::new(scorer)))))
}

/// Supervises a camera until `stop`: opens it on a fresh capture thread, forwards frames as
/// jobs, and treats a silent, failing or unopenable camera as lost (status event, backoff,
/// reopen). Returns the number of frames taken.
fn supervise_camera(
    backend: Arc<dyn CameraBackend>,
    sup: &Supervision,
    slot: &ScorerSlot,
    stop: &StopSignal,
    job_tx: &Sender<Job>,
    status_tx: &Sender<ToSequencer>,
    source: &Arc<str>,
) -> u64 {
    let mut seq = 0u64;
    let mut received = 0u64;
    let mut lost = false;
    let mut backoff = Backoff::new(sup.backoff_initial, sup.backoff_max);
    let status = |kind, reason: Option<String>, after_seq| {
        let event = StatusEvent {
            kind,
            source: source.clone(),
            at: SystemTime::now(),
            reason,
            after_seq,
            reference_set: None,
            previous_reference_set: None,
        };
        let _ = status_tx.send(ToSequencer::Status(event));
    };
    for attempt in 1u64.. {
        if stop.is_raised() {
            break;
        }
        let (frame_tx, frame_rx) = bounded::<Result<CapturedFrame, CaptureError>>(2);
        let device = backend.clone();
        let opened = spawn(&format!("capture-{attempt}"), move || {
            let mut dev = match device.open() {
                Ok(dev) => dev,
                Err(e) => {
                    let _ = frame_tx.send(Err(e));
                    return;
                }
            };
            tracing::info!(granted = dev.granted(), "camera opened");
            loop {
                let r = dev.read();
                let failed = r.is_err();
                // A closed channel means the supervisor gave up on this capture: end, and drop
                // (close) the device here, off the pipeline's path.
                if frame_tx.send(r).is_err() || failed {
                    return;
                }
            }
        });
        let reason = match opened {
            Err(e) => e.to_string(),
            Ok(_detached) => {
                // The first frame may take longer: opening a device is not a frame wait.
                let mut wait = sup.frame_timeout + sup.open_timeout;
                loop {
                    select! {
                        recv(frame_rx) -> msg => match msg {
                            Ok(Ok(frame)) => {
                                wait = sup.frame_timeout;
                                if lost {
                                    lost = false;
                                    backoff.reset();
                                    status(StatusKind::CameraRestored, None, seq);
                                }
                                received += 1;
                                if !(received - 1).is_multiple_of(u64::from(sup.every_nth)) {
                                    continue;
                                }
                                let (taken, scorer) = slot.admit();
                                seq = taken;
                                let id = frame.device_frame_id.unwrap_or(received).to_string();
                                let payload = match &sup.roi {
                                    Some(roi) => crop_roi(frame.image, roi),
                                    None => Ok(frame.image),
                                };
                                let frame = SourceFrame {
                                    id,
                                    captured_at: SystemTime::now(),
                                    taken: Instant::now(),
                                    payload: payload.map(Payload::Decoded).map_err(|e| e.to_string()),
                                };
                                if job_tx.send(Job { seq, frame, scorer }).is_err() {
                                    return seq;
                                }
                            }
                            Ok(Err(e)) => break e.describe(),
                            Err(_) => break "the capture thread ended".to_string(),
                        },
                        recv(stop.receiver()) -> _ => return seq,
                        default(wait) => break CaptureError::Timeout(wait).to_string(),
                    }
                }
            }
        };
        if lost {
            tracing::debug!(attempt, reason, "camera still lost");
        } else {
            lost = true;
            status(StatusKind::CameraLost, Some(reason), seq);
        }
        drop(frame_rx);
        if stop.sleep(backoff.next_delay()) {
            break;
        }
    }
    seq
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stage_is_stalled_only_while_busy_beyond_the_limit() {
        let stages = Stages::new(2);
        assert_eq!(
            stages.stalled(Duration::ZERO),
            None,
            "idle stages never stall"
        );
        let busy = stages.enter(Stages::encoder(1));
        std::thread::sleep(Duration::from_millis(30));
        assert_eq!(stages.stalled(Duration::from_secs(10)), None);
        let stalled = stages.stalled(Duration::from_millis(10)).unwrap();
        assert!(
            stalled.starts_with("encoder-1 busy on one frame"),
            "{stalled}"
        );
        drop(busy);
        assert_eq!(stages.stalled(Duration::ZERO), None);
    }
}
