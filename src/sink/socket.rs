//! Every line to the verdict socket's clients, through the socket thread's [`Broadcaster`].

use std::sync::Arc;

use super::{Ready, Sink};
use crate::socket::Broadcaster;
use crate::verdict::{StatusEvent, StatusKind};
use crate::wire;

pub struct SocketSink {
    broadcaster: Broadcaster,
    model_sha256: Arc<str>,
}

impl SocketSink {
    pub fn new(broadcaster: Broadcaster, model_sha256: Arc<str>) -> Self {
        Self {
            broadcaster,
            model_sha256,
        }
    }
}

impl Sink for SocketSink {
    fn name(&self) -> &'static str {
        "socket"
    }

    fn verdict(&mut self, ready: &Ready<'_>) {
        self.broadcaster.send(ready.line.clone());
    }

    /// A reload also changes the `hello` that clients connecting from now on get.
    fn status(&mut self, event: &StatusEvent, line: &Arc<str>) {
        if let (StatusKind::ReferencesReloaded, Some(id)) = (event.kind, &event.reference_set) {
            self.broadcaster
                .set_hello(wire::hello_line(&self.model_sha256, id));
        }
        self.broadcaster.send(line.clone());
    }
}
