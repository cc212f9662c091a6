//! Camera supervision, on the `source` thread: opens the camera on a fresh `capture-k` thread,
//! forwards its frames as jobs, and treats a silent, failing or unopenable camera as lost
//! (status event, backoff, reopen on `capture-k+1`, `camera_restored` on the first frame; in
//! trigger mode, as soon as the device is open again).
//!
//! In trigger mode each acknowledged trigger becomes one read command to the capture thread
//! (for a GenICam camera in `software-trigger` acquisition, one exposure), tagged with its
//! acquisition id; the frame comes back with that id, so a frame that comes after its trigger
//! was given up is dropped, never matched to another trigger. A trigger is acknowledged only
//! while the camera is open, fewer than [`OUTSTANDING_TRIGGERS`] reads are waiting and the
//! workers' queue has room; otherwise it is missed (`camera opening`, `camera lost`, `busy: …`). An acknowledged trigger whose frame has not come within
//! the trigger timeout, or whose camera is lost (or the run stops) first, gets its one verdict
//! as `skipped`. The frame timeout runs only while a read is outstanding (or the device is
//! opening), so a camera waiting for the next part is idle, not lost.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use crossbeam_channel::{Receiver, Sender, bounded, select};

use super::events::{Control, DAEMON_STOPPING, Event, Trigger};
use super::intake::Intake;
use super::{Triggering, spawn};
use crate::backoff::Backoff;
use crate::source::camera::{CameraBackend, CaptureError, CapturedFrame, Supervision, crop_roi};
use crate::source::{Payload, SourceFrame};
use crate::verdict::{StatusEvent, StatusKind, TriggerId};

/// Reads waiting at the capture thread at most; a trigger beyond them is missed (busy).
const OUTSTANDING_TRIGGERS: usize = 8;

/// How long an idle trigger-mode wait lasts before looking again (no timeout is armed).
const IDLE: Duration = Duration::from_secs(3600);

type Captured = Result<CapturedFrame, CaptureError>;

/// What a capture thread tells the supervisor.
enum Msg {
    /// The device is open.
    Opened,
    /// A read's result, with the acquisition id it was made for (trigger mode).
    Frame(Option<u64>, Captured),
}

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

/// What the supervisor keeps across captures.
struct State {
    received: u64,
    /// `camera_lost` reported and not yet restored.
    lost: bool,
    backoff: Backoff,
}

/// An acknowledged trigger waiting for its frame.
struct Pending {
    id: TriggerId,
    deadline: Instant,
}

/// One opened capture, as the supervisor sees it.
struct Capture {
    msgs: Receiver<Msg>,
    /// Trigger mode: one read per acknowledged trigger, tagged with its acquisition id.
    reads: Option<Sender<u64>>,
    /// Acknowledged triggers waiting for their frame, oldest first.
    outstanding: VecDeque<Pending>,
    /// Reads sent and not answered yet (including those of triggers already skipped).
    in_flight: usize,
    opened: bool,
    /// The camera must show life within `allowance` from `since` (while a timeout is armed).
    since: Instant,
    allowance: Duration,
}

impl Capture {
    /// When the camera counts as lost if nothing comes: always armed in free-run; in trigger
    /// mode only while opening or while a read is outstanding.
    fn lost_at(&self) -> Option<Instant> {
        let armed = self.reads.is_none() || !self.opened || self.in_flight > 0;
        armed.then(|| self.since + self.allowance)
    }
}

/// The capture thread's body: free-run reads continuously; trigger mode reads once per command.
fn capture(backend: Arc<dyn CameraBackend>, msgs: Sender<Msg>, reads: Option<Receiver<u64>>) {
    let mut dev = match backend.open() {
        Ok(dev) => dev,
        Err(e) => {
            let _ = msgs.send(Msg::Frame(None, Err(e)));
            return;
        }
    };
    tracing::info!(granted = dev.granted(), "camera opened");
    if msgs.send(Msg::Opened).is_err() {
        return;
    }
    loop {
        let acq_id = match &reads {
            Some(reads) => match reads.recv() {
                Ok(acq_id) => Some(acq_id),
                Err(_) => return,
            },
            None => None,
        };
        let r = dev.read();
        let failed = r.is_err();
        // A closed channel means the supervisor gave up on this capture: end, and drop (close)
        // the device here, off the pipeline's path.
        if msgs.send(Msg::Frame(acq_id, r)).is_err() || failed {
            return;
        }
    }
}

impl CameraStage<'_> {
    fn trigger_mode(&self) -> bool {
        self.intake.triggering == Triggering::Control
    }

    /// Until stop; returns the `seq` of the last frame taken.
    pub fn run(self) -> u64 {
        let mut st = State {
            received: 0,
            lost: false,
            backoff: Backoff::new(self.sup.backoff_initial, self.sup.backoff_max),
        };
        for attempt in 1u64.. {
            if self.intake.stop.is_raised() {
                break;
            }
            let ended = match self.open(attempt) {
                Err(e) => Ended::Lost(crate::error::chain(&e)),
                Ok(mut capture) => {
                    let ended = self.stream(&mut capture, &mut st);
                    self.give_up(&mut capture, &ended);
                    ended
                }
            };
            let Ended::Lost(reason) = ended else {
                break;
            };
            if st.lost {
                tracing::debug!(attempt, reason, "camera still lost");
            } else {
                st.lost = true;
                self.status(StatusKind::CameraLost, Some(reason));
            }
            if self.backoff(st.backoff.next_delay()) {
                break;
            }
        }
        if self.trigger_mode() {
            self.intake.answer_waiting(DAEMON_STOPPING);
        }
        self.intake.slot.position().0
    }

    /// Waits out a reconnect delay, answering triggers (`camera lost`); `true` on stop.
    fn backoff(&self, delay: Duration) -> bool {
        let src = self.intake;
        let deadline = Instant::now() + delay;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            select! {
                recv(src.control) -> msg => match msg {
                    Ok(Control::Trigger(t)) => self.refuse(t, "camera lost"),
                    Err(_) => return src.stop.sleep(left),
                },
                recv(src.stop.receiver()) -> _ => return true,
                default(left) => return false,
            }
        }
    }

    /// A trigger not taken: `reason` in trigger mode, `not in trigger mode` in free-run.
    fn refuse(&self, t: Trigger, reason: &str) {
        if self.trigger_mode() {
            self.intake.miss(t, reason.into());
        } else {
            tracing::warn!(
                part_id = t.part_id.as_deref(),
                "trigger missed: the source free-runs (set [source] trigger = \"command\" to take frames on triggers)"
            );
            t.miss("not in trigger mode");
        }
    }

    /// The acknowledged triggers of a capture that ended get their `skipped` verdicts.
    fn give_up(&self, capture: &mut Capture, ended: &Ended) {
        for p in capture.outstanding.drain(..) {
            let reason = match ended {
                Ended::Lost(why) => format!("camera lost: {why}"),
                Ended::Stop => DAEMON_STOPPING.to_string(),
            };
            self.intake.skip_trigger(p.id, reason);
        }
    }

    fn open(&self, attempt: u64) -> Result<Capture, super::PipelineError> {
        let (msg_tx, msgs) = bounded::<Msg>(2);
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
            capture(backend, msg_tx, read_rx)
        })?;
        Ok(Capture {
            msgs,
            reads,
            outstanding: VecDeque::new(),
            in_flight: 0,
            opened: false,
            since: Instant::now(),
            // The first frame may take longer: opening a device is not a frame wait.
            allowance: self.sup.frame_timeout + self.sup.open_timeout,
        })
    }

    /// Forwards one capture's frames until it is lost or the run stops.
    fn stream(&self, capture: &mut Capture, st: &mut State) -> Ended {
        let src = self.intake;
        let mut control = src.control.clone();
        loop {
            let now = Instant::now();
            self.expire(capture, now);
            let lost_at = capture.lost_at();
            if lost_at.is_some_and(|at| now >= at) {
                let e = CaptureError::Timeout(capture.allowance);
                return Ended::Lost(crate::error::chain(&e));
            }
            let next_deadline = capture.outstanding.front().map(|p| p.deadline);
            let wake = lost_at.into_iter().chain(next_deadline).min();
            let timeout = wake.map_or(IDLE, |at| at.saturating_duration_since(now));
            select! {
                recv(capture.msgs) -> msg => match msg {
                    Ok(Msg::Opened) => self.opened(capture, st),
                    Ok(Msg::Frame(acq_id, Ok(frame))) => {
                        if !self.frame(capture, st, acq_id, frame) {
                            return Ended::Stop;
                        }
                    }
                    Ok(Msg::Frame(_, Err(e))) => return Ended::Lost(crate::error::chain(&e)),
                    Err(_) => return Ended::Lost("the capture thread ended".into()),
                },
                recv(control) -> msg => match msg {
                    Ok(Control::Trigger(t)) => self.trigger(capture, st, t),
                    Err(_) if capture.reads.is_some() => return Ended::Stop,
                    Err(_) => control = crossbeam_channel::never(),
                },
                recv(src.stop.receiver()) -> _ => return Ended::Stop,
                default(timeout) => {}
            }
        }
    }

    /// Acknowledged triggers whose frame is overdue: `skipped`.
    fn expire(&self, capture: &mut Capture, now: Instant) {
        while let Some(p) = capture.outstanding.pop_front_if(|p| p.deadline <= now) {
            let reason = format!(
                "trigger timeout: no frame within {} ms",
                self.intake.trigger_timeout.as_millis()
            );
            self.intake.skip_trigger(p.id, reason);
        }
    }

    fn opened(&self, capture: &mut Capture, st: &mut State) {
        capture.opened = true;
        if capture.reads.is_none() {
            // Free-run: restored on the first frame, which has the open allowance.
            return;
        }
        self.alive(capture, st);
    }

    /// The camera answered: the frame clock restarts with the frame timeout, and a lost camera
    /// is restored (backoff reset, `camera_restored`).
    fn alive(&self, capture: &mut Capture, st: &mut State) {
        capture.since = Instant::now();
        capture.allowance = self.sup.frame_timeout;
        if st.lost {
            st.lost = false;
            st.backoff.reset();
            self.status(StatusKind::CameraRestored, None);
        }
    }

    /// A trigger in trigger mode: acknowledged and sent to the capture thread as a read, or
    /// missed.
    fn trigger(&self, capture: &mut Capture, st: &State, t: Trigger) {
        let src = self.intake;
        let Some(reads) = &capture.reads else {
            return self.refuse(t, "not in trigger mode");
        };
        if st.lost {
            return self.refuse(t, "camera lost");
        }
        if !capture.opened {
            // Not ready: a trigger acknowledged now would wait out the open, not an exposure.
            return self.refuse(t, "camera opening");
        }
        if capture.in_flight >= OUTSTANDING_TRIGGERS {
            let busy = format!("busy: {} triggers waiting", capture.in_flight);
            return self.refuse(t, &busy);
        }
        if let Some(busy) = src.queue_full() {
            return self.refuse(t, &busy);
        }
        let id = src.acknowledge(t);
        let now = Instant::now();
        if capture.in_flight == 0 && capture.opened {
            // The camera starts on this read now; until now it was idle.
            capture.since = now;
        }
        if reads.try_send(id.acq_id).is_err() {
            // Only when the capture thread has ended; its end is reported next.
            src.skip_trigger(id, "camera lost: the capture thread ended".into());
            return;
        }
        capture.in_flight += 1;
        capture.outstanding.push_back(Pending {
            id,
            deadline: now + src.trigger_timeout,
        });
    }

    /// Takes one received frame in as a job; `false` when the workers are gone.
    fn frame(
        &self,
        capture: &mut Capture,
        st: &mut State,
        acq_id: Option<u64>,
        frame: CapturedFrame,
    ) -> bool {
        self.alive(capture, st);
        st.received += 1;
        let trigger = match acq_id {
            Some(acq_id) => {
                capture.in_flight = capture.in_flight.saturating_sub(1);
                let at = capture
                    .outstanding
                    .iter()
                    .position(|p| p.id.acq_id == acq_id);
                match at.and_then(|i| capture.outstanding.remove(i)) {
                    Some(p) => Some(p.id),
                    None => {
                        tracing::info!(
                            acq_id,
                            "frame for a trigger already skipped: dropped, not inspected"
                        );
                        return true;
                    }
                }
            }
            None if !(st.received - 1).is_multiple_of(u64::from(self.sup.every_nth)) => {
                return true;
            }
            None => None,
        };
        let id = frame.device_frame_id.unwrap_or(st.received).to_string();
        let payload = match &self.sup.roi {
            Some(roi) => crop_roi(frame.image, roi),
            None => Ok(frame.image),
        };
        let frame = SourceFrame {
            id,
            trigger,
            captured_at: SystemTime::now(),
            taken: Instant::now(),
            payload: payload
                .map(Payload::Decoded)
                .map_err(|e| crate::error::chain(&e)),
        };
        self.intake.submit(frame).is_ok()
    }

    fn status(&self, kind: StatusKind, reason: Option<String>) {
        let event = StatusEvent {
            kind,
            source: self.intake.name.clone(),
            at: SystemTime::now(),
            reason,
            after_seq: self.intake.slot.position().0,
            reference_set: None,
            previous_reference_set: None,
        };
        let _ = self.intake.events.send(Event::Status(event));
    }
}
