//! An encoder worker: takes jobs, inspects each frame, sends every verdict to the sequencer.

use std::sync::Arc;

use crossbeam_channel::{Receiver, Sender};

use super::events::{Event, Inspected, Job};
use super::monitor::Stages;
use crate::inspect::Inspector;
use crate::verdict::{Outcome, Verdict};

pub(super) struct Worker {
    pub index: usize,
    pub inspector: Inspector,
    pub jobs: Receiver<Job>,
    pub events: Sender<Event>,
    pub stages: Arc<Stages>,
    pub source: Arc<str>,
    pub model_sha256: Arc<str>,
}

/// Tells the sequencer that a worker has ended, however it ends (panics included).
struct Ended(Sender<Event>);

impl Drop for Ended {
    fn drop(&mut self) {
        // Closed only when the sequencer is gone: nobody left to tell.
        let _ = self.0.send(Event::WorkerEnded);
    }
}

impl Worker {
    /// Until the job channel closes: every job yields exactly one verdict, even if inspection
    /// panics.
    pub fn run(mut self) {
        let _ended = Ended(self.events.clone());
        while let Ok(job) = self.jobs.recv() {
            let inspected = self.inspect(job);
            if self
                .events
                .send(Event::Verdict(Box::new(inspected)))
                .is_err()
            {
                break;
            }
        }
    }

    fn inspect(&mut self, job: Job) -> Inspected {
        let Job {
            seq,
            frame,
            scorer,
            queued,
        } = job;
        let _busy = self.stages.enter(Stages::encoder(self.index));
        let payload = frame.payload.as_ref().map_err(String::as_str);
        let inspector = &mut self.inspector;
        let started = std::time::Instant::now();
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            inspector.inspect(payload, &scorer)
        }))
        .unwrap_or_else(|_| Outcome::Error {
            reason: "internal error: inspection panicked".into(),
        });
        Inspected {
            verdict: Verdict {
                seq,
                source: self.source.clone(),
                frame: frame.id,
                trigger: frame.trigger,
                captured_at: frame.captured_at,
                taken: frame.taken,
                outcome,
                model_sha256: self.model_sha256.clone(),
                reference_set: scorer.id.clone(),
                inspection: Some(started.elapsed()),
                queued,
            },
            payload: frame.payload.ok().map(Arc::new),
        }
    }
}
