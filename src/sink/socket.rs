//! Every verdict and status event to the verdict socket's clients, through the socket thread's
//! [`Broadcaster`], typed so that the socket thread keeps its counters without re-reading JSON.

use std::sync::Arc;

use super::{Ready, Sink};
use crate::socket::stats::Observation;
use crate::socket::{Broadcaster, Outgoing};
use crate::verdict::{Outcome, StatusEvent};

pub struct SocketSink {
    broadcaster: Broadcaster,
}

impl SocketSink {
    pub fn new(broadcaster: Broadcaster) -> Self {
        Self { broadcaster }
    }
}

impl Sink for SocketSink {
    fn name(&self) -> &'static str {
        "socket"
    }

    fn verdict(&mut self, ready: &Ready<'_>) {
        let v = ready.verdict;
        let score = match v.outcome {
            Outcome::Inspected {
                score, threshold, ..
            } => Some((score, threshold)),
            _ => None,
        };
        self.broadcaster.send(Outgoing::Verdict {
            seq: v.seq,
            kind: v.outcome.kind(),
            line: ready.line.clone(),
            reference_set: v.reference_set.clone(),
            observation: Observation {
                latency: ready.latency,
                inspection: v.inspection,
                score,
                queued: v.queued,
            },
        });
    }

    /// A reload also changes the reference set named in `hello` and `snapshot`.
    fn status(&mut self, event: &StatusEvent, line: &Arc<str>) {
        self.broadcaster.send(Outgoing::Status {
            kind: event.kind,
            reference_set: event.reference_set.clone(),
            line: line.clone(),
        });
    }
}
