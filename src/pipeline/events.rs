//! What travels between the pipeline's threads.

use std::sync::Arc;

use crate::inspect::Scorer;
use crate::source::{Payload, SourceFrame};
use crate::verdict::{StatusEvent, Verdict};

/// A command into the source, through the control channel (see [`super::control_channel`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Control {
    /// Take one frame now (trigger mode), for the part named, if any: the verdict carries it.
    Trigger { part: Option<String> },
}

/// A frame taken by the source, on its way to an encoder worker.
pub(super) struct Job {
    pub seq: u64,
    pub frame: SourceFrame,
    /// The scorer in force when the frame was taken.
    pub scorer: Arc<Scorer>,
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
