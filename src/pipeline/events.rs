//! What travels between the pipeline's threads.

use std::sync::Arc;

use crate::inspect::Scorer;
use crate::source::{Payload, SourceFrame};
use crate::verdict::{StatusEvent, Verdict};

/// A command into the source, through the control channel (see [`super::control_channel`]).
#[derive(Debug)]
pub enum Control {
    /// Take one frame now (trigger mode), for the part named, if any: the verdict carries it.
    Trigger(Trigger),
}

/// A trigger: the source answers it exactly once (taken, with its acquisition id, or missed)
/// and, when taken, exactly one verdict carries that acquisition id. A trigger dropped without
/// an answer (left in the control channel when the source ends, or refused by a closed channel)
/// answers itself `Missed { reason: "daemon stopping" }`.
pub struct Trigger {
    pub part_id: Option<String>,
    /// Called once with the source's answer (the socket thread routes it to the client).
    pub answer: Box<dyn FnOnce(TriggerAnswer) + Send>,
}

/// The answer of a trigger dropped unanswered.
pub const DAEMON_STOPPING: &str = "daemon stopping";

impl Trigger {
    /// Gives the answer (once: the call consumes the trigger).
    pub fn answer(mut self, answer: TriggerAnswer) {
        let f = std::mem::replace(&mut self.answer, Box::new(|_| {}));
        f(answer);
    }

    /// Answers `Missed` with `reason`.
    pub fn miss(self, reason: impl Into<String>) {
        self.answer(TriggerAnswer::Missed {
            reason: reason.into(),
        });
    }

    /// A trigger whose answer nobody waits for (tests, embedding).
    pub fn unanswered(part_id: Option<String>) -> Trigger {
        Trigger {
            part_id,
            answer: Box::new(|_| {}),
        }
    }
}

impl Drop for Trigger {
    fn drop(&mut self) {
        // After `answer` this is the no-op put in its place.
        let f = std::mem::replace(&mut self.answer, Box::new(|_| {}));
        f(TriggerAnswer::Missed {
            reason: DAEMON_STOPPING.into(),
        });
    }
}

impl std::fmt::Debug for Trigger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Trigger")
            .field("part_id", &self.part_id)
            .finish_non_exhaustive()
    }
}

/// The source's answer to a [`Trigger`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TriggerAnswer {
    /// Taken: a verdict with this acquisition id follows (within the trigger timeout, or
    /// `skipped`).
    Acked { acq_id: u64 },
    /// Not taken, no image: why (`camera lost`, `not in trigger mode`, `busy: …`,
    /// `source ended`, `daemon stopping`).
    Missed { reason: String },
}

/// A frame taken by the source, on its way to an encoder worker.
pub(super) struct Job {
    pub seq: u64,
    pub frame: SourceFrame,
    /// The scorer in force when the frame was taken.
    pub scorer: Arc<Scorer>,
    /// Frames already waiting for a worker when this one was queued.
    pub queued: usize,
}

/// A worker's result: the verdict, and the frame's pixels for the sinks that keep images.
pub(super) struct Inspected {
    pub verdict: Verdict,
    pub payload: Option<Arc<Payload>>,
}

/// The sequencer's one inbox.
pub(super) enum Event {
    /// A frame's verdict, from a worker (in any order).
    Verdict(Box<Inspected>),
    /// Camera lost/restored (from the source), references reloaded/refused (from SIGHUP).
    Status(StatusEvent),
    /// A worker has ended (its job channel closed, or it died); sent once per worker.
    WorkerEnded,
}
