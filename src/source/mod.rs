//! Frame sources: where frames come from. Replay of recorded images is here; camera back ends
//! (nokhwa, Aravis) implement the same [`FrameSource`] trait.
//!
//! A source is a plain struct: it never spawns threads. The pipeline calls [`FrameSource::next`]
//! from its one source thread. A frame that cannot be read is still a frame: it carries the
//! reason and becomes an `error` verdict.

pub mod camera;
pub mod genicam;
pub mod pixel;
pub mod replay;
pub mod uvc;

use std::time::{Instant, SystemTime};

use crate::stop::StopSignal;

/// One frame as taken from a source.
#[derive(Debug)]
pub struct SourceFrame {
    /// The frame's identity within its source (file name, camera frame number).
    pub id: String,
    /// Wall-clock time it was taken.
    pub captured_at: SystemTime,
    /// Monotonic time it was taken; latency is measured from here.
    pub taken: Instant,
    /// The pixels, or why there are none.
    pub payload: Result<Payload, String>,
}

/// A frame's pixel data.
#[derive(Debug)]
pub enum Payload {
    /// Encoded image bytes (PNG, JPEG, ...), decoded by the worker.
    Encoded(Vec<u8>),
    /// Already decoded pixels (cameras).
    Decoded(image::DynamicImage),
}

/// What a source yields when asked for a frame.
#[derive(Debug)]
pub enum SourceEvent {
    Frame(SourceFrame),
    /// No more frames (end of a replay, or the stop signal).
    End,
}

/// The camera back end a config names.
pub fn camera_backend(
    config: &crate::config::CameraConfig,
) -> Result<std::sync::Arc<dyn camera::CameraBackend>, camera::CaptureError> {
    match config.kind {
        crate::config::CameraKind::GenIcam => {
            Ok(std::sync::Arc::new(genicam::GenicamBackend::new(config)))
        }
        crate::config::CameraKind::Uvc => Ok(std::sync::Arc::new(uvc::UvcBackend::new(config))),
    }
}

/// A source of frames.
pub trait FrameSource: Send {
    /// A short name used as the verdict's `source` field (e.g. `replay`).
    fn name(&self) -> &str;
    /// Blocks until the next frame is available, the source ends, or `stop` is raised.
    fn next(&mut self, stop: &StopSignal) -> SourceEvent;
}
