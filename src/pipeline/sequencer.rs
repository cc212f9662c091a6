//! The sequencer: one inbox, one event at a time. Restores frame order, stamps latency,
//! serialises each verdict and status event once, and hands them to the sinks in order.

use std::collections::BTreeMap;
use std::sync::Arc;

use crossbeam_channel::{Receiver, Sender};

use super::events::{Event, Inspected};
use super::monitor::{Counters, Stages};
use crate::sink::{Ready, Sink};
use crate::verdict::{StatusEvent, StatusKind};
use crate::wire;

/// Whether the sequencer goes on after an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Flow {
    Continue,
    /// Every worker has ended: no verdict can come any more.
    Done,
}

pub(super) struct Sequencer {
    pub sinks: Vec<Box<dyn Sink>>,
    pub workers_running: usize,
    pub stages: Arc<Stages>,
    pub counters: Arc<Counters>,
    /// Status events for the monitor (`STATUS=`); its end tells the monitor the run is over.
    pub monitor: Sender<StatusKind>,
    pub pending: BTreeMap<u64, Inspected>,
    /// The `seq` emitted next.
    pub next: u64,
}

impl Sequencer {
    pub fn new(
        sinks: Vec<Box<dyn Sink>>,
        workers: usize,
        stages: Arc<Stages>,
        counters: Arc<Counters>,
        monitor: Sender<StatusKind>,
    ) -> Self {
        Self {
            sinks,
            workers_running: workers,
            stages,
            counters,
            monitor,
            pending: BTreeMap::new(),
            next: 1,
        }
    }

    /// Until every worker has ended; then the sinks finish.
    pub fn run(mut self, inbox: Receiver<Event>) {
        if self.workers_running > 0 {
            while let Ok(event) = inbox.recv() {
                if self.handle(event) == Flow::Done {
                    break;
                }
            }
        }
        // Unreachable with a gap-free source, but never drop a verdict.
        for (seq, item) in std::mem::take(&mut self.pending) {
            tracing::error!(seq, expected = self.next, "verdict out of sequence");
            self.emit(item);
        }
        for sink in &mut self.sinks {
            sink.finish();
        }
    }

    pub fn handle(&mut self, event: Event) -> Flow {
        let stages = self.stages.clone();
        let _busy = stages.enter(Stages::SEQUENCER);
        match event {
            Event::Verdict(item) => {
                self.pending.insert(item.verdict.seq, *item);
                while let Some(item) = self.pending.remove(&self.next) {
                    self.emit(item);
                    self.next += 1;
                }
            }
            Event::Status(e) => self.status(&e),
            Event::WorkerEnded => {
                self.workers_running = self.workers_running.saturating_sub(1);
                if self.workers_running == 0 {
                    return Flow::Done;
                }
            }
        }
        Flow::Continue
    }

    fn emit(&mut self, item: Inspected) {
        let v = &item.verdict;
        let latency = v.taken.elapsed();
        let line: Arc<str> = Arc::from(wire::verdict_line(v, latency));
        tracing::debug!(seq = v.seq, frame = %v.frame, verdict = v.label(), latency_us = latency.as_micros() as u64, "verdict");
        let ready = Ready {
            verdict: v,
            line: &line,
            latency,
            payload: item.payload.as_ref(),
        };
        for sink in &mut self.sinks {
            sink.verdict(&ready);
        }
        self.counters.count(v);
    }

    fn status(&mut self, e: &StatusEvent) {
        log_status(e);
        let line: Arc<str> = Arc::from(wire::status_line(e));
        for sink in &mut self.sinks {
            sink.status(e, &line);
        }
        // The monitor only summarises: when it is behind, it misses nothing a sink needs.
        let _ = self.monitor.try_send(e.kind);
    }
}

fn log_status(e: &StatusEvent) {
    let reason = e.reason.as_deref().unwrap_or("");
    match e.kind {
        StatusKind::CameraLost => {
            tracing::warn!(source = %e.source, reason, after_seq = e.after_seq, "camera lost")
        }
        StatusKind::CameraRestored => {
            tracing::info!(source = %e.source, after_seq = e.after_seq, "camera restored")
        }
        StatusKind::ReferencesReloaded => tracing::info!(
            reference_set = e.reference_set.as_deref(),
            previous = e.previous_reference_set.as_deref(),
            after_seq = e.after_seq,
            "new reference set in force from the next frame"
        ),
        StatusKind::ReloadRefused => tracing::error!(
            reason,
            reference_set = e.reference_set.as_deref(),
            "reload refused; the reference set in force stays"
        ),
        StatusKind::PlcLinkLost => {
            tracing::warn!(source = %e.source, reason, "a bridge reports its PLC link lost")
        }
        StatusKind::PlcLinkRestored => {
            tracing::info!(source = %e.source, "a bridge reports its PLC link restored")
        }
    }
}
