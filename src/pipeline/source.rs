//! The `source` thread: takes frames, assigns each its `seq` and scorer snapshot, and hands it to
//! the workers (blocking when they are behind: back-pressure). In trigger mode a frame is taken
//! only when a [`Control::Trigger`] arrives; waiting for one is idle, never a stall.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender, TryRecvError, select};

use super::camera::CameraStage;
use super::events::{Control, Event, Job};
use super::monitor::Stages;
use super::slot::SharedScorer;
use super::{Input, Triggering};
use crate::source::{FrameSource, SourceEvent};
use crate::stop::StopSignal;

/// Hold the source until this many socket clients are connected (replay `--wait-clients`).
pub struct WaitClients {
    pub count: usize,
    /// Clients connected now, kept by the socket thread.
    pub connected: Arc<AtomicUsize>,
}

pub(super) struct SourceStage {
    pub name: Arc<str>,
    pub triggering: Triggering,
    pub control: Receiver<Control>,
    pub slot: SharedScorer,
    pub jobs: Sender<Job>,
    pub events: Sender<Event>,
    pub stop: StopSignal,
    pub stages: Arc<Stages>,
    pub wait_clients: Option<WaitClients>,
}

/// What the source does next after looking at the control channel.
pub(super) enum Next {
    /// Take a frame, for this part if a trigger named one.
    Take(Option<String>),
    /// Stop, or no trigger can come any more.
    End,
}

impl SourceStage {
    /// Returns the number of frames taken.
    pub fn run(self, input: Input) -> u64 {
        if !self.hold_for_clients() {
            return 0;
        }
        let taken = match input {
            Input::Frames(frames) => self.frames(frames),
            Input::Camera {
                backend,
                supervision,
            } => CameraStage {
                backend,
                sup: supervision,
                source: &self,
            }
            .run(),
        };
        tracing::debug!(
            frames = taken,
            stopped = self.stop.is_raised(),
            "source ended"
        );
        taken
    }

    fn hold_for_clients(&self) -> bool {
        let Some(w) = &self.wait_clients else {
            return true;
        };
        tracing::info!(
            wait_clients = w.count,
            "holding the source until enough verdict clients are connected"
        );
        while w.connected.load(Ordering::SeqCst) < w.count {
            if self.stop.sleep(Duration::from_millis(10)) {
                return false;
            }
        }
        true
    }

    fn frames(&self, mut frames: Box<dyn FrameSource>) -> u64 {
        let mut taken = 0;
        while let Next::Take(part) = self.next_frame() {
            if !frames.wait(&self.stop) {
                break;
            }
            let event = {
                let _busy = self.stages.enter(Stages::SOURCE);
                frames.take()
            };
            let SourceEvent::Frame(mut frame) = event else {
                break;
            };
            frame.part = part;
            let (seq, scorer) = self.slot.admit();
            taken = seq;
            if self.jobs.send(Job { seq, frame, scorer }).is_err() {
                break;
            }
        }
        taken
    }

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
