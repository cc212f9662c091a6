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

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::atomic::Ordering;
use std::sync::{Arc, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use crossbeam_channel::{Sender, bounded, select};

use crate::failures::FailureLog;
use crate::inspect::{Inspector, Scorer};
use crate::report::{Labels, Summary};
use crate::socket::{Broadcaster, SocketServer};
use crate::source::camera::{
    Backoff, CameraBackend, CaptureError, CapturedFrame, Supervision, crop_roi,
};
use crate::source::{FrameSource, Payload, SourceEvent, SourceFrame};
use crate::stop::StopSignal;
use crate::verdict::{Outcome, StatusEvent, StatusKind, Verdict};
use crate::wire;

/// The scorer in force; workers take a snapshot per frame, so a swap lands between frames.
pub type SharedScorer = Arc<RwLock<Arc<Scorer>>>;

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
    pub failures: Option<(FailureLog, Vec<String>)>,
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
    } = p;

    let signals = if handle_signals {
        Some(watch_signals(&stop)?)
    } else {
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

    // source
    let source_name: Arc<str> = Arc::from(match &source {
        Input::Frames(f) => f.name(),
        Input::Camera { backend, .. } => backend.name(),
    });
    let connected = broadcaster.as_ref().map(Broadcaster::connected_counter);
    let source_stop = stop.clone();
    let status_tx = verdict_tx.clone();
    let name = source_name.clone();
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
                let mut seq = 0u64;
                while let SourceEvent::Frame(frame) = frames.next(&source_stop) {
                    seq += 1;
                    if job_tx.send(Job { seq, frame }).is_err() {
                        break;
                    }
                }
                seq
            }
            Input::Camera {
                backend,
                supervision,
            } => supervise_camera(
                backend,
                &supervision,
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
        let (job_rx, verdict_tx, scorer) = (job_rx.clone(), verdict_tx.clone(), scorer.clone());
        let (source_name, model_sha256) = (source_name.clone(), model_sha256.clone());
        let failure_tx = failure_tx.clone();
        let name = format!("encoder-{i}");
        workers.push((
            name.clone(),
            spawn(&name, move || {
                for Job { seq, frame } in job_rx.iter() {
                    let scorer = match scorer.read() {
                        Ok(guard) => guard.clone(),
                        Err(poisoned) => poisoned.into_inner().clone(),
                    };
                    let payload = frame.payload.as_ref().map_err(String::as_str);
                    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        inspector.inspect(payload, &scorer)
                    }))
                    .unwrap_or_else(|_| Outcome::Error {
                        reason: "internal error: inspection panicked".into(),
                    });
                    let label = outcome.label();
                    if let (Some((tx, wanted)), Ok(payload)) = (&failure_tx, frame.payload)
                        && wanted.iter().any(|w| w == label)
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
                    if verdict_tx.send(ToSequencer::Verdict(verdict)).is_err() {
                        break;
                    }
                }
            })?,
        ));
    }
    drop((job_rx, verdict_tx, failure_tx));

    // sequencer
    let sequencer = spawn("sequencer", move || {
        let mut sink = Sinks {
            stdout: stdout.then(std::io::stdout),
            broadcaster,
            labels,
        };
        let mut summary = Summary::new(sink.labels.as_ref());
        let mut first_taken = None;
        let mut pending = BTreeMap::new();
        let mut next = 1u64;
        for event in verdict_rx.iter() {
            let verdict = match event {
                ToSequencer::Verdict(v) => v,
                ToSequencer::Status(e) => {
                    sink.status(&e);
                    continue;
                }
            };
            pending.insert(verdict.seq, verdict);
            while let Some(v) = pending.remove(&next) {
                first_taken.get_or_insert(v.taken);
                sink.emit(&v, &mut summary);
                next += 1;
            }
        }
        // Unreachable with a gap-free source, but never drop a verdict.
        for v in pending.into_values() {
            tracing::error!(seq = v.seq, expected = next, "verdict out of sequence");
            sink.emit(&v, &mut summary);
        }
        summary.elapsed = first_taken.map(|t| t.elapsed()).unwrap_or_default();
        summary
    })?;

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
        }
        self.line(Arc::from(wire::status_line(e)));
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

fn watch_signals(stop: &StopSignal) -> Result<SignalWatch, PipelineError> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let mut signals =
        signal_hook::iterator::Signals::new([SIGINT, SIGTERM]).map_err(PipelineError::Signals)?;
    let handle = signals.handle();
    let stop = stop.clone();
    let thread = spawn("signals", move || {
        for signal in signals.forever() {
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

/// The scorer shared by workers, ready for swapping.
pub fn shared_scorer(scorer: Scorer) -> SharedScorer {
    Arc::new(RwLock::new(Arc::new(scorer)))
}

/// Supervises a camera until `stop`: opens it on a fresh capture thread, forwards frames as
/// jobs, and treats a silent, failing or unopenable camera as lost (status event, backoff,
/// reopen). Returns the number of frames taken.
fn supervise_camera(
    backend: Arc<dyn CameraBackend>,
    sup: &Supervision,
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
                                seq += 1;
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
                                if job_tx.send(Job { seq, frame }).is_err() {
                                    return seq;
                                }
                            }
                            Ok(Err(e)) => break e.to_string(),
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
