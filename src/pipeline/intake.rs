//! What the source thread needs to take a frame in, shared by the replay loop (`source.rs`)
//! and the camera supervisor (`camera.rs`): the control channel and trigger mode, the scorer
//! slot (`seq` + scorer snapshot), the job and event channels, stop, and the busy clocks.

use std::sync::Arc;

use crossbeam_channel::{Receiver, Sender, TryRecvError, select};

use super::Triggering;
use super::events::{Control, Event, Job, Trigger, TriggerAnswer};
use super::monitor::Stages;
use super::slot::SharedScorer;
use crate::stop::StopSignal;
use crate::verdict::TriggerId;

pub(super) struct Intake {
    /// The verdicts' and status events' `source` field.
    pub name: Arc<str>,
    pub triggering: Triggering,
    pub control: Receiver<Control>,
    pub slot: SharedScorer,
    pub jobs: Sender<Job>,
    pub events: Sender<Event>,
    pub stop: StopSignal,
    pub stages: Arc<Stages>,
    /// Acquisition ids handed out so far (one per acknowledged trigger).
    pub acquisitions: std::sync::atomic::AtomicU64,
}

/// What the source does next after looking at the control channel.
pub(super) enum Next {
    /// Take a frame, for this trigger in trigger mode.
    Take(Option<TriggerId>),
    /// Stop, or no trigger can come any more.
    End,
}

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
                    Next::Take(None)
                }
            }
            Triggering::Control => select! {
                recv(self.control) -> msg => match msg {
                    Ok(Control::Trigger(t)) => Next::Take(Some(self.acknowledge(t))),
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
    pub fn acknowledge(&self, t: Trigger) -> TriggerId {
        let acq_id = self
            .acquisitions
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            + 1;
        (t.answer)(TriggerAnswer::Acked { acq_id });
        TriggerId {
            acq_id,
            part_id: t.part_id,
        }
    }

    /// Drains commands that have no meaning in free-run mode, logging each.
    pub fn ignore_commands(&self) {
        loop {
            match self.control.try_recv() {
                Ok(Control::Trigger(t)) => {
                    tracing::warn!(
                        part_id = t.part_id.as_deref(),
                        "trigger missed: the source free-runs (set [source] trigger = \"command\" to take frames on triggers)"
                    );
                    (t.answer)(TriggerAnswer::Missed {
                        reason: "not in trigger mode".into(),
                    });
                }
                Err(TryRecvError::Empty | TryRecvError::Disconnected) => return,
            }
        }
    }
}
