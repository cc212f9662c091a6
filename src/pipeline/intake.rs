//! What the source thread needs to take a frame in, shared by the replay loop (`source.rs`)
//! and the camera supervisor (`camera.rs`): the control channel and trigger mode, the scorer
//! slot (`seq` + scorer snapshot), the job and event channels, stop, and the busy clocks.

use std::sync::Arc;

use crossbeam_channel::{Receiver, Sender, TryRecvError, select};

use super::Triggering;
use super::events::{Control, Event, Job};
use super::monitor::Stages;
use super::slot::SharedScorer;
use crate::stop::StopSignal;

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
}

/// What the source does next after looking at the control channel.
pub(super) enum Next {
    /// Take a frame, for this part if a trigger named one.
    Take(Option<String>),
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
                    Ok(Control::Trigger { part }) => Next::Take(part),
                    Err(_) => {
                        tracing::info!("trigger mode: the control channel is closed; no trigger can come");
                        Next::End
                    }
                },
                recv(self.stop.receiver()) -> _ => Next::End,
            },
        }
    }

    /// Drains commands that have no meaning in free-run mode, logging each.
    pub fn ignore_commands(&self) {
        loop {
            match self.control.try_recv() {
                Ok(Control::Trigger { part }) => tracing::warn!(
                    part = part.as_deref(),
                    "trigger ignored: the source free-runs (set the source's trigger mode to take frames on triggers)"
                ),
                Err(TryRecvError::Empty | TryRecvError::Disconnected) => return,
            }
        }
    }
}
