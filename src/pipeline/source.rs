//! The `source` thread: takes frames, assigns each its `seq` and scorer snapshot, and hands it to
//! the workers (blocking when they are behind: back-pressure). In trigger mode a frame is taken
//! only when a [`super::Control::Trigger`] arrives; waiting for one is idle, never a stall.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use super::Input;
use super::camera::CameraStage;
use super::events::Job;
use super::intake::{Intake, Next};
use super::monitor::Stages;
use crate::source::{FrameSource, SourceEvent};

/// Hold the source until this many socket clients are connected (replay `--wait-clients`).
pub struct WaitClients {
    pub count: usize,
    /// Clients connected now, kept by the socket thread.
    pub connected: Arc<AtomicUsize>,
}

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

    fn frames(&self, mut frames: Box<dyn FrameSource>) -> u64 {
        let mut taken = 0;
        while let Next::Take(part) = self.intake.next_frame() {
            if !frames.wait(&self.intake.stop) {
                break;
            }
            let event = {
                let _busy = self.intake.stages.enter(Stages::SOURCE);
                frames.take()
            };
            let SourceEvent::Frame(mut frame) = event else {
                break;
            };
            frame.trigger = part;
            let (seq, scorer) = self.intake.slot.admit();
            taken = seq;
            if self.intake.jobs.send(Job { seq, frame, scorer }).is_err() {
                break;
            }
        }
        taken
    }
}
