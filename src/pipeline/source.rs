//! The `source` thread: takes frames, assigns each its `seq` and scorer snapshot, and hands it to
//! the workers (blocking when they are behind: back-pressure). In trigger mode a frame is taken
//! only when a [`super::Control::Trigger`] arrives; waiting for one is idle, never a stall.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use super::camera::CameraStage;
use super::events::DAEMON_STOPPING;
use super::intake::{Intake, Next};
use super::monitor::Stages;
use super::{Input, Triggering};
use crate::source::{FrameSource, SourceEvent};

/// Hold the source until this many socket clients are connected (replay `--wait-clients`).
pub struct WaitClients {
    pub count: usize,
    /// Clients connected now, kept by the socket thread.
    pub connected: Arc<AtomicUsize>,
}

/// A replay in trigger mode that has no image left answers this.
const SOURCE_ENDED: &str = "source ended";

pub(super) struct SourceStage {
    pub intake: Intake,
    pub wait_clients: Option<WaitClients>,
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
                intake: &self.intake,
            }
            .run(),
        };
        tracing::debug!(
            frames = taken,
            stopped = self.intake.stop.is_raised(),
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
            if self.intake.stop.sleep(Duration::from_millis(10)) {
                return false;
            }
        }
        true
    }

    /// Replay: free-run, or one image per trigger. Returns the `seq` of the last frame taken.
    /// In trigger mode every trigger is answered: acknowledged when its image is taken, missed
    /// when the queue is full, the images have run out or the run stops; triggers still in
    /// the control channel at the end are answered as missed too.
    fn frames(&self, mut frames: Box<dyn FrameSource>) -> u64 {
        let src = &self.intake;
        let mut taken = 0;
        let mut end = DAEMON_STOPPING;
        loop {
            let trigger = match src.next_frame() {
                Next::End => break,
                Next::Take => None,
                Next::Trigger(t) => match src.queue_full() {
                    Some(busy) => {
                        src.miss(t, busy);
                        continue;
                    }
                    None => Some(t),
                },
            };
            if !frames.wait(&src.stop) {
                if let Some(t) = trigger {
                    src.miss(t, DAEMON_STOPPING.into());
                }
                break;
            }
            let event = {
                let _busy = src.stages.enter(Stages::SOURCE);
                frames.take()
            };
            let SourceEvent::Frame(mut frame) = event else {
                end = SOURCE_ENDED;
                if let Some(t) = trigger {
                    src.miss(t, SOURCE_ENDED.into());
                }
                break;
            };
            frame.trigger = trigger.map(|t| src.acknowledge(t));
            match src.submit(frame) {
                Ok(seq) => taken = seq,
                Err(_) => break,
            }
        }
        if src.triggering == Triggering::Control {
            src.answer_waiting(end);
        }
        taken
    }
}
