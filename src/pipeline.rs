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
use std::time::Duration;

use crossbeam_channel::bounded;

use crate::inspect::{Inspector, Scorer};
use crate::report::{Labels, Summary};
use crate::socket::{Broadcaster, SocketServer};
use crate::source::{FrameSource, SourceEvent, SourceFrame};
use crate::stop::StopSignal;
use crate::verdict::{Outcome, Verdict};
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

/// Everything a run needs, built by the caller (see `commands`).
pub struct Pipeline {
    pub source: Box<dyn FrameSource>,
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
}

struct Job {
    seq: u64,
    frame: SourceFrame,
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
        mut source,
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
    let (verdict_tx, verdict_rx) = bounded::<Verdict>(queue_depth + inspectors.len());

    // source
    let source_name: Arc<str> = Arc::from(source.name());
    let connected = broadcaster.as_ref().map(Broadcaster::connected_counter);
    let source_stop = stop.clone();
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
        let mut seq = 0u64;
        while let SourceEvent::Frame(frame) = source.next(&source_stop) {
            seq += 1;
            if job_tx.send(Job { seq, frame }).is_err() {
                break;
            }
        }
        tracing::debug!(
            frames = seq,
            stopped = source_stop.is_raised(),
            "source ended"
        );
        seq
    })?;

    // encoders
    let mut workers = Vec::new();
    for (i, mut inspector) in inspectors.into_iter().enumerate() {
        let (job_rx, verdict_tx, scorer) = (job_rx.clone(), verdict_tx.clone(), scorer.clone());
        let (source_name, model_sha256) = (source_name.clone(), model_sha256.clone());
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
                    if verdict_tx.send(verdict).is_err() {
                        break;
                    }
                }
            })?,
        ));
    }
    drop((job_rx, verdict_tx));

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
        for verdict in verdict_rx.iter() {
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
    fn emit(&mut self, v: &Verdict, summary: &mut Summary) {
        let latency = v.taken.elapsed();
        let line: Arc<str> = Arc::from(wire::verdict_line(v, latency));
        tracing::debug!(seq = v.seq, frame = %v.frame, verdict = v.label(), latency_us = latency.as_micros() as u64, "verdict");
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
