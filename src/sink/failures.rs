//! Failure images: the frames of the verdict kinds asked for, saved by [`FailureLog`] on the
//! sink's own thread. The verdict path never waits for the disk: when the saver is behind, the
//! image is dropped, counted and logged.

use std::sync::Arc;

use crossbeam_channel::{Receiver, Sender, bounded};

use super::{Ready, Sink, SinkWorker};
use crate::failures::FailureLog;
use crate::source::Payload;
use crate::verdict::{StatusEvent, VerdictKind};

/// Images waiting for the saver.
const QUEUE: usize = 16;

struct FailureImage {
    seq: u64,
    kind: VerdictKind,
    frame: String,
    payload: Arc<Payload>,
}

pub struct FailureImageSink {
    wanted: Vec<VerdictKind>,
    tx: Option<Sender<FailureImage>>,
    saver: Option<(FailureLog, Receiver<FailureImage>)>,
    dropped: u64,
}

impl FailureImageSink {
    /// Saves the frames of `wanted` verdicts into `log`.
    pub fn new(log: FailureLog, wanted: Vec<VerdictKind>) -> Self {
        let (tx, rx) = bounded(QUEUE);
        Self {
            wanted,
            tx: Some(tx),
            saver: Some((log, rx)),
            dropped: 0,
        }
    }
}

fn save_all(mut log: FailureLog, rx: Receiver<FailureImage>) {
    let mut failed = 0u64;
    for f in rx.iter() {
        match log.save(f.seq, f.kind.as_str(), &f.frame, &f.payload) {
            Ok(path) => tracing::debug!(seq = f.seq, path = %path.display(), "failure image saved"),
            Err(e) => {
                failed += 1;
                tracing::warn!(seq = f.seq, error = %crate::error::chain(&e), failed_total = failed, "failure image not saved; inspection goes on");
            }
        }
    }
}

impl Sink for FailureImageSink {
    fn name(&self) -> &'static str {
        "failures"
    }

    fn take_worker(&mut self) -> Option<SinkWorker> {
        let (log, rx) = self.saver.take()?;
        Some(Box::new(move || save_all(log, rx)))
    }

    fn verdict(&mut self, ready: &Ready<'_>) {
        let v = ready.verdict;
        let kind = v.outcome.kind();
        let (Some(tx), Some(payload)) = (&self.tx, ready.payload) else {
            return;
        };
        if !self.wanted.contains(&kind) {
            return;
        }
        let image = FailureImage {
            seq: v.seq,
            kind,
            frame: v.frame.clone(),
            payload: payload.clone(),
        };
        if tx.try_send(image).is_err() {
            self.dropped += 1;
            tracing::warn!(
                seq = v.seq,
                dropped_total = self.dropped,
                "failure-image saver is behind; this image is not saved"
            );
        }
    }

    fn status(&mut self, _event: &StatusEvent, _line: &Arc<str>) {}

    /// Closes the queue: the saver finishes what it holds, then its thread ends.
    fn finish(&mut self) {
        self.tx = None;
        if self.dropped > 0 {
            tracing::warn!(
                dropped = self.dropped,
                "failure images dropped during this run (saver behind)"
            );
        }
    }
}
