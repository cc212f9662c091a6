//! The internal verdict: one per frame, whatever happened to it.
//!
//! This is what the pipeline passes around; its wire form lives in [`crate::wire`] and is made
//! by one conversion function there.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use crate::score::Decision;
use crate::soart3::Soart3;

#[derive(Debug, Clone)]
pub struct Verdict {
    /// Position of the frame in the daemon's stream, from 1, without gaps.
    pub seq: u64,
    /// The source's name (e.g. `replay`).
    pub source: Arc<str>,
    /// The frame's id within its source.
    pub frame: String,
    /// The trigger that took this frame (trigger mode): its acquisition id and part id.
    pub trigger: Option<TriggerId>,
    pub captured_at: SystemTime,
    /// When the frame was taken; latency is measured from here to emission.
    pub taken: Instant,
    pub outcome: Outcome,
    /// SHA-256 of the model that inspected the frame.
    pub model_sha256: Arc<str>,
    /// Id of the reference set the frame was scored against.
    pub reference_set: Arc<str>,
    /// The worker's time on the frame (decode to score); `None` when no worker saw it.
    pub inspection: Option<Duration>,
    /// Frames waiting for a worker when this one was queued (the queue's depth).
    pub queued: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// The frame was embedded and scored.
    Inspected {
        decision: Decision,
        score: f64,
        threshold: f64,
        /// SOART3 against the nearest reference.
        soart3: Soart3,
        reference_index: usize,
    },
    /// The frame could not be inspected; the reason says why.
    Error { reason: String },
    /// No image was inspected for this frame or trigger (an acknowledged trigger whose frame
    /// did not come in time, a frame dropped by the overload policy); the reason says why.
    Skipped { reason: String },
}

/// What identifies an acquisition taken on a trigger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TriggerId {
    /// Counts up from 1 per daemon run, one per acknowledged trigger.
    pub acq_id: u64,
    /// The part the trigger named, if any.
    pub part_id: Option<String>,
}

/// What a verdict says, without its details.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum VerdictKind {
    Pass,
    Fail,
    Error,
    Skipped,
}

impl VerdictKind {
    /// `pass`, `fail`, `error` or `skipped` (the wire's and the config's spelling).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pass => "pass",
            Self::Fail => "fail",
            Self::Error => "error",
            Self::Skipped => "skipped",
        }
    }
}

impl Outcome {
    pub fn kind(&self) -> VerdictKind {
        match self {
            Outcome::Inspected {
                decision: Decision::Pass,
                ..
            } => VerdictKind::Pass,
            Outcome::Inspected {
                decision: Decision::Fail,
                ..
            } => VerdictKind::Fail,
            Outcome::Error { .. } => VerdictKind::Error,
            Outcome::Skipped { .. } => VerdictKind::Skipped,
        }
    }

    /// `pass`, `fail`, `error` or `skipped`.
    pub fn label(&self) -> &'static str {
        self.kind().as_str()
    }
}

impl Verdict {
    /// `pass`, `fail`, `error` or `skipped`.
    pub fn label(&self) -> &'static str {
        self.outcome.label()
    }
}

/// Something that happened to the source or the reference set, reported on the socket between
/// verdicts.
#[derive(Debug, Clone, PartialEq)]
pub struct StatusEvent {
    pub kind: StatusKind,
    pub source: Arc<str>,
    pub at: SystemTime,
    /// Why (for `camera_lost`, `reload_refused`).
    pub reason: Option<String>,
    /// The `seq` of the last frame taken before the event (0 if none yet); for a reload, the
    /// last frame scored with the previous reference set.
    pub after_seq: u64,
    /// The reference set in force after the event (reload events).
    pub reference_set: Option<Arc<str>>,
    /// The reference set in force before it (reload events).
    pub previous_reference_set: Option<Arc<str>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusKind {
    CameraLost,
    CameraRestored,
    /// SIGHUP: a new reference set and scoring settings are in force from the next frame.
    ReferencesReloaded,
    /// SIGHUP: the new files were refused; the previous set stays in force.
    ReloadRefused,
    /// Reported by a client (a PLC bridge): its PLC stopped polling.
    PlcLinkLost,
    /// Reported by a client: its PLC polls again.
    PlcLinkRestored,
}

impl StatusKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::CameraLost => "camera_lost",
            Self::CameraRestored => "camera_restored",
            Self::ReferencesReloaded => "references_reloaded",
            Self::ReloadRefused => "reload_refused",
            Self::PlcLinkLost => "plc_link_lost",
            Self::PlcLinkRestored => "plc_link_restored",
        }
    }
}
