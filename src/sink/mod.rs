//! Sinks: where ready verdicts and status events go.
//!
//! The sequencer hands every verdict, in frame order, with its wire line already serialised
//! (once, in [`crate::wire`]), and every status event to each sink of the run, in the order the
//! sinks were given. A sink must not block the verdict path: work that can block (a disk, a
//! network peer) goes to a thread of the sink's own, which the pipeline spawns from
//! [`Sink::take_worker`] and joins after [`Sink::finish`].
//!
//! A new sink is one file here implementing [`Sink`], one config section, and one line where
//! `commands` builds the run's sink list.

pub mod failures;
pub mod socket;
pub mod stdout;
pub mod summary;

use std::sync::Arc;
use std::time::Duration;

use crate::source::Payload;
use crate::verdict::{StatusEvent, Verdict};

/// A verdict the sequencer has put in order, with what the sinks may need of it.
pub struct Ready<'a> {
    pub verdict: &'a Verdict,
    /// The verdict's wire line (JSON, with the trailing newline).
    pub line: &'a Arc<str>,
    /// From the frame being taken to now.
    pub latency: Duration,
    /// The frame's pixels, when it had any (for sinks that keep images).
    pub payload: Option<&'a Arc<Payload>>,
}

/// Work a sink needs on a thread of its own; the pipeline names the thread `sink-<name>`.
pub type SinkWorker = Box<dyn FnOnce() + Send>;

/// One destination of verdicts and status events.
pub trait Sink: Send {
    /// Short name, used in logs and as the name of the sink's thread.
    fn name(&self) -> &'static str;
    /// One verdict, in frame order.
    fn verdict(&mut self, ready: &Ready<'_>);
    /// One status event with its wire line.
    fn status(&mut self, event: &StatusEvent, line: &Arc<str>);
    /// A thread this sink needs (taken once, before the first verdict).
    fn take_worker(&mut self) -> Option<SinkWorker> {
        None
    }
    /// The run is over: flush, report, close. Called once, after the last verdict.
    fn finish(&mut self) {}
}
