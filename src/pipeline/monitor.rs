//! The monitor, on the caller's thread: readiness, `STATUS=` and the systemd watchdog.
//!
//! `WATCHDOG=1` is sent only while the pipeline is healthy: no stage has been busy on one frame
//! for longer than `stall_timeout` (a stage waiting for work, for a paced frame, for a trigger or
//! for the camera is idle, not busy) and no thread has died. A lost camera is not a stall: the
//! source reports it and reconnects; a restart would not help.

use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, never, select};

use super::slot::SharedScorer;
use crate::service::Notifier;
use crate::stop::StopSignal;
use crate::verdict::{StatusKind, Verdict, VerdictKind};

/// How often the monitor updates `STATUS=`.
const STATUS_EVERY: Duration = Duration::from_secs(1);

/// When each stage started the piece of work it is on, for the watchdog: milliseconds since
/// `epoch` plus one, or 0 while the stage is idle.
pub(super) struct Stages {
    epoch: Instant,
    busy: Vec<AtomicU64>,
}

/// Marks a stage busy until dropped.
pub(super) struct Busy<'a>(&'a AtomicU64);

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        self.0.store(0, Ordering::Relaxed);
    }
}

impl Stages {
    pub const SOURCE: usize = 0;
    pub const SEQUENCER: usize = 1;

    pub fn encoder(i: usize) -> usize {
        2 + i
    }

    pub fn new(encoders: usize) -> Stages {
        Stages {
            epoch: Instant::now(),
            busy: (0..2 + encoders).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    fn name(i: usize) -> String {
        match i {
            Self::SOURCE => "source".into(),
            Self::SEQUENCER => "sequencer".into(),
            i => format!("encoder-{}", i - 2),
        }
    }

    pub fn enter(&self, i: usize) -> Busy<'_> {
        let since = self.epoch.elapsed().as_millis() as u64 + 1;
        self.busy[i].store(since, Ordering::Relaxed);
        Busy(&self.busy[i])
    }

    /// The stage busy the longest, if longer than `limit`.
    pub fn stalled(&self, limit: Duration) -> Option<String> {
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

/// The verdicts the sequencer has emitted: written by the sequencer only, read by the monitor.
#[derive(Default)]
pub(super) struct Counters {
    frames: AtomicU64,
    pass: AtomicU64,
    fail: AtomicU64,
    error: AtomicU64,
    skipped: AtomicU64,
}

/// What a run emitted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    pub frames: u64,
    pub pass: u64,
    pub fail: u64,
    pub error: u64,
    pub skipped: u64,
}

impl Counters {
    pub fn count(&self, v: &Verdict) {
        self.frames.fetch_add(1, Ordering::Relaxed);
        let counter = match v.outcome.kind() {
            VerdictKind::Pass => &self.pass,
            VerdictKind::Fail => &self.fail,
            VerdictKind::Error => &self.error,
            VerdictKind::Skipped => &self.skipped,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub fn tally(&self) -> Tally {
        Tally {
            frames: self.frames.load(Ordering::Relaxed),
            pass: self.pass.load(Ordering::Relaxed),
            fail: self.fail.load(Ordering::Relaxed),
            error: self.error.load(Ordering::Relaxed),
            skipped: self.skipped.load(Ordering::Relaxed),
        }
    }
}

/// The pipeline's threads, for the monitor's liveness check.
pub(super) struct Threads<'a> {
    pub source: &'a JoinHandle<u64>,
    pub workers: &'a [(String, JoinHandle<()>)],
    pub sinks: &'a [(String, JoinHandle<()>)],
    pub socket: Option<&'a JoinHandle<Result<(), crate::socket::SocketError>>>,
}

impl Threads<'_> {
    /// A thread that ended although it should still run. Once the source has ended the
    /// pipeline is draining and the workers end in turn; sink threads and the socket end only
    /// after the sequencer.
    fn dead(&self) -> Option<String> {
        let draining = self.source.is_finished();
        if !draining && let Some((name, _)) = self.workers.iter().find(|(_, h)| h.is_finished()) {
            return Some(format!("thread {name} ended"));
        }
        if let Some((name, _)) = self.sinks.iter().find(|(_, h)| h.is_finished()) {
            return Some(format!("thread {name} ended"));
        }
        self.socket
            .is_some_and(JoinHandle::is_finished)
            .then(|| "thread socket ended".into())
    }
}

pub(super) struct Monitor<'a> {
    /// Status events from the sequencer; closed when the sequencer ends.
    pub events: Receiver<StatusKind>,
    pub stop: &'a StopSignal,
    pub notifier: Option<&'a Notifier>,
    pub stages: &'a Stages,
    pub stall_timeout: Duration,
    pub counters: &'a Counters,
    pub scorer: &'a SharedScorer,
    pub threads: Threads<'a>,
}

/// What the monitor has seen so far.
struct Seen {
    camera_lost: bool,
    problem: Option<String>,
    stopping: bool,
    /// (when, frames) at the last `STATUS=`, and the rate since the one before.
    last: (Instant, u64),
    fps: f64,
}

impl Monitor<'_> {
    fn status(&self, seen: &Seen) -> String {
        let t = self.counters.tally();
        let mut s = format!(
            "{}{} frames: {} pass, {} fail, {} error, {} skipped; {:.1} fps; references {}",
            if seen.stopping {
                "stopping, draining; "
            } else {
                ""
            },
            t.frames,
            t.pass,
            t.fail,
            t.error,
            t.skipped,
            seen.fps,
            self.scorer.current().id,
        );
        if seen.camera_lost {
            s += "; camera lost, reconnecting";
        }
        if let Some(p) = &seen.problem {
            s += &format!("; STALLED: {p}");
        }
        s
    }

    /// Runs until the sequencer ends: `READY=1` once, then `STATUS=` every [`STATUS_EVERY`],
    /// `WATCHDOG=1` every half watchdog interval while healthy, `STOPPING=1` when the source
    /// stops. Without a service manager it still logs stalls.
    pub fn run(self) {
        let mut seen = Seen {
            camera_lost: false,
            problem: None,
            stopping: false,
            last: (Instant::now(), 0),
            fps: 0.0,
        };
        // Half the interval, as sd_watchdog_enabled(3) advises (and never a busy loop).
        let ping_every = self
            .notifier
            .and_then(Notifier::watchdog)
            .map(|w| (w / 2).max(Duration::from_millis(10)));
        let started = Instant::now();
        seen.last = (started, 0);
        if let Some(n) = self.notifier {
            n.ready(&self.status(&seen));
            if let Some(every) = ping_every {
                n.watchdog_ping();
                tracing::info!(
                    every_ms = every.as_millis() as u64,
                    stall_timeout_ms = self.stall_timeout.as_millis() as u64,
                    "feeding the systemd watchdog while the pipeline makes progress"
                );
            }
        }
        let mut next_ping = ping_every.map(|every| started + every);
        let mut next_status = started + STATUS_EVERY;
        loop {
            let wake = next_ping.map_or(next_status, |p| p.min(next_status));
            let stop_rx = if seen.stopping {
                never()
            } else {
                self.stop.receiver().clone()
            };
            select! {
                recv(self.events) -> event => match event {
                    Ok(kind) => seen.camera_lost = match kind {
                        StatusKind::CameraLost => true,
                        StatusKind::CameraRestored => false,
                        _ => seen.camera_lost,
                    },
                    Err(_) => break,
                },
                recv(stop_rx) -> _ => {}
                default(wake.saturating_duration_since(Instant::now())) => {}
            }
            let now = Instant::now();
            self.check_health(&mut seen);
            if let (Some(n), Some(due), Some(every)) = (self.notifier, next_ping, ping_every)
                && now >= due
            {
                if seen.problem.is_none() {
                    n.watchdog_ping();
                }
                next_ping = Some(now + every);
            }
            if now >= next_status {
                self.update_status(&mut seen, now);
                next_status = now + STATUS_EVERY;
            }
        }
    }

    fn check_health(&self, seen: &mut Seen) {
        let found = self
            .stages
            .stalled(self.stall_timeout)
            .or_else(|| self.threads.dead());
        match (&seen.problem, &found) {
            (None, Some(p)) => {
                tracing::error!(problem = %p, stall_timeout_ms = self.stall_timeout.as_millis() as u64, "pipeline stalled: no longer feeding the watchdog")
            }
            (Some(_), None) => tracing::info!("pipeline progressing again"),
            _ => {}
        }
        seen.problem = found;
        let source_ended = self.threads.source.is_finished();
        if !seen.stopping && (self.stop.is_raised() || source_ended) {
            seen.stopping = true;
            if let Some(n) = self.notifier {
                n.stopping(&self.status(seen));
            }
        }
    }

    fn update_status(&self, seen: &mut Seen, now: Instant) {
        let frames = self.counters.tally().frames;
        let dt = now.duration_since(seen.last.0).as_secs_f64();
        if dt > 0.0 {
            seen.fps = (frames - seen.last.1) as f64 / dt;
        }
        seen.last = (now, frames);
        if let Some(n) = self.notifier {
            n.status(&self.status(seen));
        }
    }
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
        let stalled = stages
            .stalled(Duration::from_millis(10))
            .expect("encoder-1 has been busy for 30 ms");
        assert!(
            stalled.starts_with("encoder-1 busy on one frame"),
            "{stalled}"
        );
        drop(busy);
        assert_eq!(stages.stalled(Duration::ZERO), None);
    }
}
