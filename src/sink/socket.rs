//! Every verdict and status event to the verdict socket's clients, through the socket thread's
//! [`Broadcaster`], typed so that the socket thread keeps its counters without re-reading JSON.

use std::sync::Arc;

use super::{Ready, Sink};
use crate::socket::{Broadcaster, Outgoing};
use crate::verdict::StatusEvent;

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
        self.broadcaster.send(Outgoing::Verdict {
            seq: ready.verdict.seq,
            kind: ready.verdict.outcome.kind(),
            line: ready.line.clone(),
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
