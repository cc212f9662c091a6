//! Camera supervision, on the `source` thread: opens the camera on a fresh `capture-k` thread,
//! forwards its frames as jobs, and treats a silent, failing or unopenable camera as lost
//! (status event, backoff, reopen on `capture-k+1`, `camera_restored` on the first frame).
//!
//! In trigger mode each trigger becomes one read command to the capture thread (for a GenICam
//! camera in `software-trigger` acquisition, one exposure); the frame timeout runs only while a
//! trigger is outstanding, so a camera waiting for the next part is idle, not lost.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use crossbeam_channel::{Receiver, Sender, bounded, select};

use super::events::{Control, Event, Job};
use super::intake::Intake;
use super::{Triggering, spawn};
use crate::source::camera::{
    Backoff, CameraBackend, CaptureError, CapturedFrame, Supervision, crop_roi,
};
use crate::source::{Payload, SourceFrame};
use crate::verdict::{StatusEvent, StatusKind, TriggerId};

/// Triggers waiting for their frame at the capture thread.
const OUTSTANDING_TRIGGERS: usize = 8;

/// How long an idle trigger-mode wait lasts before looking again (no timeout is armed).
const IDLE: Duration = Duration::from_secs(3600);

type Captured = Result<CapturedFrame, CaptureError>;

pub(super) struct CameraStage<'a> {
    pub backend: Arc<dyn CameraBackend>,
    pub sup: Supervision,
    pub intake: &'a Intake,
}

/// Why one capture ended.
enum Ended {
    /// The camera is lost: the reason.
    Lost(String),
    /// Stop, or the workers are gone.
    Stop,
}

/// One opened capture, as the supervisor sees it.
struct Capture {
    frames: Receiver<Captured>,
    /// Trigger mode: one read per command.
    reads: Option<Sender<()>>,
    /// The parts of the triggers sent, oldest first.
    outstanding: VecDeque<Option<TriggerId>>,
}

/// The capture thread's body: free-run reads continuously; trigger mode reads once per command.
fn capture(backend: Arc<dyn CameraBackend>, frames: Sender<Captured>, reads: Option<Receiver<()>>) {
    let mut dev = match backend.open() {
        Ok(dev) => dev,
        Err(e) => {
            let _ = frames.send(Err(e));
            return;
        }
    };
    tracing::info!(granted = dev.granted(), "camera opened");
    loop {
        if let Some(reads) = &reads
            && reads.recv().is_err()
        {
            return;
        }
        let r = dev.read();
        let failed = r.is_err();
        // A closed channel means the supervisor gave up on this capture: end, and drop (close)
        // the device here, off the pipeline's path.
        if frames.send(r).is_err() || failed {
            return;
        }
    }
}

impl CameraStage<'_> {
    /// Until stop; returns the `seq` of the last frame taken.
    pub fn run(self) -> u64 {
        let mut seq = 0u64;
        let mut received = 0u64;
        let mut lost = false;
        let mut backoff = Backoff::new(self.sup.backoff_initial, self.sup.backoff_max);
        for attempt in 1u64.. {
            if self.intake.stop.is_raised() {
                break;
            }
            let ended = match self.open(attempt) {
                Err(e) => Ended::Lost(crate::error::chain(&e)),
                Ok(mut capture) => self.stream(
                    &mut capture,
                    &mut seq,
                    &mut received,
                    &mut lost,
                    &mut backoff,
                ),
            };
            let Ended::Lost(reason) = ended else {
                break;
            };
            if lost {
                tracing::debug!(attempt, reason, "camera still lost");
            } else {
                lost = true;
                self.status(StatusKind::CameraLost, Some(reason), seq);
            }
            if self.intake.stop.sleep(backoff.next_delay()) {
                break;
            }
        }
        seq
    }

    fn open(&self, attempt: u64) -> Result<Capture, super::PipelineError> {
        let (frame_tx, frames) = bounded::<Captured>(2);
        let (reads, read_rx) = match self.intake.triggering {
            Triggering::FreeRun => (None, None),
            Triggering::Control => {
                let (tx, rx) = bounded(OUTSTANDING_TRIGGERS);
                (Some(tx), Some(rx))
            }
        };
        let backend = self.backend.clone();
        // Detached: a read that never returns must not hold the supervisor.
        spawn(&format!("capture-{attempt}"), move || {
            capture(backend, frame_tx, read_rx)
        })?;
        Ok(Capture {
            frames,
            reads,
            outstanding: VecDeque::new(),
        })
    }

    /// Forwards one capture's frames until it is lost or the run stops.
    fn stream(
        &self,
        capture: &mut Capture,
        seq: &mut u64,
        received: &mut u64,
        lost: &mut bool,
        backoff: &mut Backoff,
    ) -> Ended {
        let src = self.intake;
        // The first frame may take longer: opening a device is not a frame wait.
        let mut wait = self.sup.frame_timeout + self.sup.open_timeout;
        loop {
            if capture.reads.is_none() {
                src.ignore_commands();
            }
            // Trigger mode arms the frame timeout only while a trigger is outstanding (a device
            // that fails to open still says so at once).
            let armed = capture.reads.is_none() || !capture.outstanding.is_empty();
            let timeout = if armed { wait } else { IDLE };
            let control = match &capture.reads {
                Some(_) => src.control.clone(),
                None => crossbeam_channel::never(),
            };
            select! {
                recv(capture.frames) -> msg => match msg {
                    Ok(Ok(frame)) => {
                        wait = self.sup.frame_timeout;
                        if *lost {
                            *lost = false;
                            backoff.reset();
                            self.status(StatusKind::CameraRestored, None, *seq);
                        }
                        *received += 1;
                        if !self.take(capture, frame, *received, seq) {
                            return Ended::Stop;
                        }
                    }
                    Ok(Err(e)) => return Ended::Lost(crate::error::chain(&e)),
                    Err(_) => return Ended::Lost("the capture thread ended".into()),
                },
                recv(control) -> msg => match msg {
                    Ok(Control::Trigger(t)) => trigger(capture, self.intake.acknowledge(t)),
                    Err(_) => return Ended::Stop,
                },
                recv(src.stop.receiver()) -> _ => return Ended::Stop,
                default(timeout) => {
                    if armed {
                        return Ended::Lost(crate::error::chain(&CaptureError::Timeout(wait)));
                    }
                }
            }
        }
    }

    /// Takes one received frame in as a job; `false` when the workers are gone.
    fn take(
        &self,
        capture: &mut Capture,
        frame: CapturedFrame,
        received: u64,
        seq: &mut u64,
    ) -> bool {
        let part = match capture.reads {
            Some(_) => match capture.outstanding.pop_front() {
                Some(part) => part,
                None => {
                    tracing::warn!("frame without a trigger: not taken");
                    return true;
                }
            },
            None if !(received - 1).is_multiple_of(u64::from(self.sup.every_nth)) => return true,
            None => None,
        };
        let (taken, scorer) = self.intake.slot.admit();
        *seq = taken;
        let id = frame.device_frame_id.unwrap_or(received).to_string();
        let payload = match &self.sup.roi {
            Some(roi) => crop_roi(frame.image, roi),
            None => Ok(frame.image),
        };
        let frame = SourceFrame {
            id,
            trigger: part,
            captured_at: SystemTime::now(),
            taken: Instant::now(),
            payload: payload
                .map(Payload::Decoded)
                .map_err(|e| crate::error::chain(&e)),
        };
        self.intake
            .jobs
            .send(Job {
                seq: taken,
                frame,
                scorer,
            })
            .is_ok()
    }

    fn status(&self, kind: StatusKind, reason: Option<String>, after_seq: u64) {
        let event = StatusEvent {
            kind,
            source: self.intake.name.clone(),
            at: SystemTime::now(),
            reason,
            after_seq,
            reference_set: None,
            previous_reference_set: None,
        };
        let _ = self.intake.events.send(Event::Status(event));
    }
}

/// Sends one read command to the capture thread for `part`.
fn trigger(capture: &mut Capture, part: TriggerId) {
    let Some(reads) = &capture.reads else {
        return;
    };
    if reads.try_send(()).is_ok() {
        capture.outstanding.push_back(Some(part));
    } else {
        tracing::warn!(
            part_id = part.part_id.as_deref(),
            outstanding = capture.outstanding.len(),
            "trigger refused: the camera has too many triggers outstanding"
        );
    }
}
