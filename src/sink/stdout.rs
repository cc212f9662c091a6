//! Every line on standard output (replay mode: JSON Lines a script can pipe on).

use std::io::Write;
use std::sync::Arc;

use super::{Ready, Sink};
use crate::verdict::StatusEvent;

#[derive(Default)]
pub struct StdoutSink {
    /// `false` once stdout is gone (a closed pipe): verdicts continue on the other sinks.
    open: bool,
}

impl StdoutSink {
    pub fn new() -> Self {
        Self { open: true }
    }

    fn write(&mut self, line: &str) {
        if !self.open {
            return;
        }
        let out = std::io::stdout();
        let mut lock = out.lock();
        if let Err(e) = lock.write_all(line.as_bytes()).and_then(|()| lock.flush()) {
            tracing::warn!(error = %e, "stdout is gone; verdicts continue on the other sinks");
            self.open = false;
        }
    }
}

impl Sink for StdoutSink {
    fn name(&self) -> &'static str {
        "stdout"
    }

    fn verdict(&mut self, ready: &Ready<'_>) {
        self.write(ready.line);
    }

    fn status(&mut self, _event: &StatusEvent, line: &Arc<str>) {
        self.write(line);
    }
}
