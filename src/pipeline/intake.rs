//! What the source thread needs to take a frame in, shared by the replay loop (`source.rs`)
//! and the camera supervisor (`camera.rs`): the control channel and trigger mode, the scorer
//! slot (`seq` + scorer snapshot), the job and event channels, the overload policy, stop, and
//! the busy clocks.
//!
//! Every trigger is answered exactly once here (acknowledged, with the next acquisition id, or
//! missed, with the reason), and every frame or acknowledged trigger that will not be inspected
//! becomes a `skipped` verdict sent straight to the sequencer with its own `seq`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use crossbeam_channel::{Receiver, Sender, TrySendError, select};

use super::Triggering;
use super::events::{Control, Event, Inspected, Job, Trigger, TriggerAnswer};
use super::monitor::Stages;
use super::slot::SharedScorer;
use crate::config::Overload;
use crate::inspect::Scorer;
use crate::source::SourceFrame;
use crate::stop::StopSignal;
use crate::verdict::{Outcome, TriggerId, Verdict};

pub(super) struct Intake {
    /// The verdicts' and status events' `source` field.
    pub name: Arc<str>,
    pub triggering: Triggering,
    /// Trigger mode: an acknowledged trigger's frame must come within this, or it is skipped.
    pub trigger_timeout: Duration,
    pub overload: Overload,
    pub control: Receiver<Control>,
    pub slot: SharedScorer,
    pub jobs: Sender<Job>,
    pub events: Sender<Event>,
    pub stop: StopSignal,
    pub stages: Arc<Stages>,
    /// For `skipped` verdicts, which no worker sees.
    pub model_sha256: Arc<str>,
    /// Acquisition ids handed out so far (one per acknowledged trigger).
    pub acquisitions: AtomicU64,
}

/// What the source does next after looking at the control channel.
pub(super) enum Next {
    /// Free-run: take the next frame.
    Take,
    /// Trigger mode: take a frame for this trigger (not answered yet).
    Trigger(Trigger),
    /// Stop, or no trigger can come any more.
    End,
}

/// Why the job channel refused a job: the workers are gone.
#[derive(Debug)]
pub(super) struct WorkersGone;

impl Intake {
    /// Free-run: take the next frame now (commands are answered and dropped). Trigger mode:
    /// wait, idle, for a trigger or the stop signal.
    pub fn next_frame(&self) -> Next {
        match self.triggering {
            Triggering::FreeRun => {
                self.ignore_commands();
                if self.stop.is_raised() {
                    Next::End
                } else {
                    Next::Take
                }
            }
            Triggering::Control => select! {
                recv(self.control) -> msg => match msg {
                    Ok(Control::Trigger(t)) => Next::Trigger(t),
                    Err(_) => {
                        tracing::info!("trigger mode: the control channel is closed; no trigger can come");
                        Next::End
                    }
                },
                recv(self.stop.receiver()) -> _ => Next::End,
            },
        }
    }

    /// Takes a trigger: the next acquisition id, answered at once.
    pub fn acknowledge(&self, mut t: Trigger) -> TriggerId {
        let acq_id = self.acquisitions.fetch_add(1, Ordering::Relaxed) + 1;
        let part_id = t.part_id.take();
        t.answer(TriggerAnswer::Acked { acq_id });
        TriggerId { acq_id, part_id }
    }

    /// Answers a trigger `Missed`, logging why.
    pub fn miss(&self, t: Trigger, reason: String) {
        tracing::warn!(part_id = t.part_id.as_deref(), reason, "trigger missed");
        t.miss(reason);
    }

    /// `Some(reason)` when the workers' queue has no room for another frame.
    pub fn queue_full(&self) -> Option<String> {
        self.jobs
            .is_full()
            .then(|| format!("busy: {} triggers waiting", self.jobs.len()))
    }

    /// Answers every command waiting in the control channel: the source is ending (`reason`)
    /// or, in free-run, triggers have no meaning.
    pub fn answer_waiting(&self, reason: &str) {
        while let Ok(Control::Trigger(t)) = self.control.try_recv() {
            self.miss(t, reason.into());
        }
    }

    /// Drains commands that have no meaning in free-run mode, logging each.
    pub fn ignore_commands(&self) {
        while let Ok(Control::Trigger(t)) = self.control.try_recv() {
            tracing::warn!(
                part_id = t.part_id.as_deref(),
                "trigger missed: the source free-runs (set [source] trigger = \"command\" to take frames on triggers)"
            );
            t.miss("not in trigger mode");
        }
    }

    /// Takes a frame in: its `seq` and scorer, then to the workers, or, when the queue is full
    /// and the overload policy says skip, a `skipped` verdict. Returns the frame's `seq`.
    pub fn submit(&self, frame: SourceFrame) -> Result<u64, WorkersGone> {
        let (seq, scorer) = self.slot.admit();
        let job = Job {
            seq,
            frame,
            scorer,
            queued: self.jobs.len(),
        };
        match self.overload {
            Overload::Wait => self.jobs.send(job).map_err(|_| WorkersGone)?,
            Overload::Skip => match self.jobs.try_send(job) {
                Ok(()) => {}
                Err(TrySendError::Full(job)) => {
                    let reason = format!("overload: {} frames queued", self.jobs.len());
                    tracing::debug!(seq, reason, "frame skipped");
                    self.send_skipped(job.seq, &job.scorer, job.frame, reason);
                }
                Err(TrySendError::Disconnected(_)) => return Err(WorkersGone),
            },
        }
        Ok(seq)
    }

    /// An acknowledged trigger whose frame will not be inspected: its one verdict, `skipped`
    /// with `reason`, with the next `seq`. Returns that `seq`.
    pub fn skip_trigger(&self, trigger: TriggerId, reason: String) -> u64 {
        let (seq, scorer) = self.slot.admit();
        tracing::warn!(
            seq,
            acq_id = trigger.acq_id,
            part_id = trigger.part_id.as_deref(),
            reason,
            "trigger skipped: no frame inspected"
        );
        let frame = SourceFrame {
            id: format!("acq-{}", trigger.acq_id),
            trigger: Some(trigger),
            captured_at: SystemTime::now(),
            taken: Instant::now(),
            payload: Err(reason.clone()),
        };
        self.send_skipped(seq, &scorer, frame, reason);
        seq
    }

    fn send_skipped(&self, seq: u64, scorer: &Scorer, frame: SourceFrame, reason: String) {
        let verdict = Verdict {
            seq,
            source: self.name.clone(),
            frame: frame.id,
            trigger: frame.trigger,
            captured_at: frame.captured_at,
            taken: frame.taken,
            outcome: Outcome::Skipped { reason },
            model_sha256: self.model_sha256.clone(),
            reference_set: scorer.id.clone(),
            inspection: None,
            queued: self.jobs.len(),
        };
        // Straight to the sequencer, which puts it in `seq` order; it is open while the source
        // runs (it ends only after every worker, which end after the source).
        let inspected = Inspected {
            verdict,
            payload: None,
        };
        let _ = self.events.send(Event::Verdict(Box::new(inspected)));
    }
}
