//! The pipeline: the only module that spawns threads. This file only wires the stages; each
//! thread's body is in a file of its own.
//!
//! ```text
//! control ──▶ source ──Job (bounded: queue_depth)──▶ encoder-0..N ──Event──▶ sequencer ──▶ sinks
//!   (triggers)  (source.rs, camera.rs: capture-k)     (worker.rs)     ▲       (sequencer.rs)
//!                                                       signals ──────┘ reload status events
//! monitor (caller's thread, monitor.rs): READY=1, STATUS=, WATCHDOG=1 while healthy
//! ```
//!
//! * `source` assigns `seq` (1, 2, 3, … without gaps) to every frame it takes and blocks when
//!   the workers are behind (back-pressure). In trigger mode it takes a frame only per trigger
//!   from the control channel.
//! * `encoder-i` owns one [`Inspector`] (its own ONNX Runtime session); every job yields exactly
//!   one verdict, even if inspection panics.
//! * `sequencer` has one inbox: verdicts (any order), status events, workers ending. It restores
//!   frame order, serialises each line once and hands it to the sinks; it ends when every worker
//!   has ended, and then the sinks finish.
//! * Sinks ([`crate::sink`]) that need a thread get `sink-<name>`; the socket event loop runs
//!   on `socket` and ends when its broadcaster (in the socket sink) is dropped.
//!
//! On SIGINT/SIGTERM the source stops taking frames; everything already taken drains through to
//! the sinks; a second signal exits at once. SIGHUP asks the [`Reload`] hook for a new
//! [`crate::inspect::Scorer`] and swaps it in between frames; the status line announcing it carries `after_seq`,
//! the last frame scored the old way.

mod camera;
mod events;
mod intake;
mod monitor;
mod sequencer;
mod signals;
mod slot;
mod source;
mod worker;

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender, bounded};

pub use events::{Control, DAEMON_STOPPING, Trigger, TriggerAnswer};
pub use monitor::Tally;
pub use signals::{Reload, ReloadError, SignalHandlers};
pub use slot::{ScorerSlot, SharedScorer, shared_scorer};
pub use source::WaitClients;

use events::Event;
use intake::Intake;
use monitor::{Counters, Monitor, Stages, Threads};
use sequencer::Sequencer;
use signals::SighupReload;
use source::SourceStage;
use worker::Worker;

use crate::config::Overload;
use crate::inspect::Inspector;
use crate::service::Notifier;
use crate::sink::Sink;
use crate::socket::SocketServer;
use crate::source::FrameSource;
use crate::source::camera::{CameraBackend, Supervision};
use crate::stop::StopSignal;

#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error("cannot start thread {name}")]
    Spawn {
        name: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot install signal handlers")]
    Signals(#[source] std::io::Error),
    #[error("thread {0} panicked")]
    Panicked(String),
    #[error(transparent)]
    Socket(#[from] crate::socket::SocketError),
}

/// Where frames come from.
pub enum Input {
    /// A source whose `take` returns (replay).
    Frames(Box<dyn FrameSource>),
    /// A camera, supervised: each opened device runs on its own capture thread under a watchdog.
    Camera {
        backend: Arc<dyn CameraBackend>,
        supervision: Supervision,
    },
}

/// When the source takes a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Triggering {
    /// As fast as the source gives them (a replay's pace, a camera's frame rate).
    FreeRun,
    /// One frame per [`Control::Trigger`] on the control channel.
    Control,
}

/// What the process does with signals.
pub enum Signals {
    /// SIGINT/SIGTERM stop (drain, then exit); SIGHUP runs the hook, if any. The handlers are
    /// installed by the caller ([`SignalHandlers::install`]) before it binds the socket.
    Handle(SignalHandlers),
    /// The caller raises the stop signal itself (embedding, tests).
    Ignore,
}

/// The control channel into the source: commands such as triggers.
pub fn control_channel() -> (Sender<Control>, Receiver<Control>) {
    bounded(64)
}

/// Everything a run needs, built by the caller (see `commands`).
pub struct Pipeline {
    pub source: Input,
    pub triggering: Triggering,
    /// Trigger mode: an acknowledged trigger whose frame has not come within this gets a
    /// `skipped` verdict.
    pub trigger_timeout: Duration,
    /// Free-run: what a frame that finds the queue full does (wait, or become `skipped`).
    pub overload: Overload,
    /// Commands into the source (see [`control_channel`]).
    pub control: Receiver<Control>,
    /// One per encoder thread.
    pub inspectors: Vec<Inspector>,
    pub scorer: SharedScorer,
    pub model_sha256: Arc<str>,
    /// Frames waiting between the source and the workers.
    pub queue_depth: usize,
    /// In order; each gets every verdict and status event.
    pub sinks: Vec<Box<dyn Sink>>,
    /// The verdict socket's event loop, when there is a socket (its sink is in `sinks`).
    pub socket: Option<SocketServer>,
    pub wait_clients: Option<WaitClients>,
    pub stop: StopSignal,
    pub signals: Signals,
    /// The service manager to notify (readiness, status, watchdog), when run under one.
    pub notifier: Option<Notifier>,
    /// A stage busy this long on one frame is wedged: `WATCHDOG=1` stops.
    pub stall_timeout: Duration,
}

pub(crate) fn spawn<T: Send + 'static>(
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

/// The threads the sinks ask for, named `sink-<name>`.
fn spawn_sink_workers(
    sinks: &mut [Box<dyn Sink>],
) -> Result<Vec<(String, JoinHandle<()>)>, PipelineError> {
    let mut threads = Vec::new();
    for sink in sinks {
        if let Some(work) = sink.take_worker() {
            let name = format!("sink-{}", sink.name());
            threads.push((name.clone(), spawn(&name, work)?));
        }
    }
    Ok(threads)
}

/// The encoder threads, named `encoder-<index>`.
fn spawn_workers(workers: Vec<Worker>) -> Result<Vec<(String, JoinHandle<()>)>, PipelineError> {
    workers
        .into_iter()
        .map(|worker| {
            let thread = format!("encoder-{}", worker.index);
            Ok((thread.clone(), spawn(&thread, move || worker.run())?))
        })
        .collect()
}

fn join_all(threads: Vec<(String, JoinHandle<()>)>) -> Result<(), PipelineError> {
    for (name, handle) in threads {
        join(&name, handle)?;
    }
    Ok(())
}

fn join<T>(name: &str, handle: JoinHandle<T>) -> Result<T, PipelineError> {
    handle
        .join()
        .map_err(|_| PipelineError::Panicked(name.to_string()))
}

/// Runs the pipeline to the end of the source or a stop signal; returns what it emitted.
pub fn run(p: Pipeline) -> Result<Tally, PipelineError> {
    let Pipeline {
        source: input,
        triggering,
        trigger_timeout,
        overload,
        control,
        inspectors,
        scorer,
        model_sha256,
        queue_depth,
        mut sinks,
        socket,
        wait_clients,
        stop,
        signals,
        notifier,
        stall_timeout,
    } = p;
    let name: Arc<str> = Arc::from(match &input {
        Input::Frames(f) => f.name(),
        Input::Camera { backend, .. } => backend.name(),
    });
    let (event_tx, event_rx) = bounded::<Event>(queue_depth + inspectors.len() + 16);
    let hup = |reload| SighupReload {
        reload,
        scorer: scorer.clone(),
        events: event_tx.clone(),
        source: name.clone(),
        notifier: notifier.clone(),
    };
    let signals = match signals {
        Signals::Handle(handlers) => Some(signals::watch(&stop, handlers, hup)?),
        Signals::Ignore => None,
    };
    let socket_thread = socket
        .map(|server| spawn("socket", move || server.run()))
        .transpose()?;
    let sink_threads = spawn_sink_workers(&mut sinks)?;

    let (job_tx, job_rx) = bounded(queue_depth);
    let stages = Arc::new(Stages::new(inspectors.len()));
    let counters = Arc::new(Counters::default());
    let intake = Intake {
        name: name.clone(),
        triggering,
        trigger_timeout,
        overload,
        control,
        slot: scorer.clone(),
        jobs: job_tx,
        events: event_tx.clone(),
        stop: stop.clone(),
        stages: stages.clone(),
        model_sha256: model_sha256.clone(),
        acquisitions: std::sync::atomic::AtomicU64::new(0),
    };
    let stage = SourceStage {
        intake,
        wait_clients,
    };
    let source_thread = spawn("source", move || stage.run(input))?;

    let workers = inspectors
        .into_iter()
        .enumerate()
        .map(|(index, inspector)| Worker {
            index,
            inspector,
            jobs: job_rx.clone(),
            events: event_tx.clone(),
            stages: stages.clone(),
            source: name.clone(),
            model_sha256: model_sha256.clone(),
        })
        .collect();
    let workers = spawn_workers(workers)?;
    drop((job_rx, event_tx));

    let (monitor_tx, monitor_rx) = bounded(64);
    let (n, c) = (workers.len(), counters.clone());
    let sequencer = Sequencer::new(sinks, n, stages.clone(), c, monitor_tx);
    let sequencer = spawn("sequencer", move || sequencer.run(event_rx))?;

    let threads = Threads {
        source: &source_thread,
        workers: &workers,
        sinks: &sink_threads,
        socket: socket_thread.as_ref(),
    };
    Monitor {
        events: monitor_rx,
        stop: &stop,
        notifier: notifier.as_ref(),
        stages: &stages,
        stall_timeout,
        counters: &counters,
        scorer: &scorer,
        threads,
    }
    .run();

    let taken = join("source", source_thread)?;
    join_all(workers)?;
    join("sequencer", sequencer)?;
    join_all(sink_threads)?;
    if let Some(t) = socket_thread {
        join("socket", t)??;
    }
    if let Some((handle, thread)) = signals {
        handle.close();
        join("signals", thread)?;
    }
    let tally = counters.tally();
    debug_assert_eq!(taken, tally.frames);
    Ok(tally)
}
