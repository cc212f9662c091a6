//! Frame sources: where frames come from. Replay of recorded images implements [`FrameSource`];
//! cameras (UVC through nokhwa, GenICam through Aravis) implement [`camera::CameraBackend`], which
//! the pipeline supervises.
//!
//! A source is a plain struct: it never spawns threads. The pipeline calls
//! [`FrameSource::wait`] and [`FrameSource::take`] from its one source thread. A frame that
//! cannot be read is still a frame: it carries the reason and becomes an `error` verdict.

pub mod camera;
pub mod genicam;
pub mod pixel;
pub mod replay;
pub mod uvc;

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use crate::stop::StopSignal;

/// One frame as taken from a source.
#[derive(Debug)]
pub struct SourceFrame {
    /// The frame's identity within its source (file name, camera frame number).
    pub id: String,
    /// The trigger that took this frame (trigger mode).
    pub trigger: Option<crate::verdict::TriggerId>,
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

/// The camera back end a config's source variant names, with the supervision its shared camera
/// keys ask for; `None` for a replay source.
pub fn camera_backend(
    config: &crate::config::SourceConfig,
) -> Option<(Arc<dyn camera::CameraBackend>, camera::Supervision)> {
    use crate::config::SourceConfig;
    let backend: Arc<dyn camera::CameraBackend> = match config {
        SourceConfig::Replay(_) => return None,
        SourceConfig::Uvc(c) => Arc::new(uvc::UvcBackend::new(c)),
        SourceConfig::Genicam(c) => Arc::new(genicam::GenicamBackend::new(c)),
    };
    Some((backend, config.camera().map(Into::into)?))
}

/// A source of frames.
pub trait FrameSource: Send {
    /// A short name used as the verdict's `source` field (e.g. `replay`).
    fn name(&self) -> &str;
    /// Waits, idle by design, until the next frame is due (pacing, a trigger); `false` when
    /// `stop` was raised meanwhile. The pipeline's watchdog does not count this time as a stall.
    fn wait(&mut self, stop: &StopSignal) -> bool {
        !stop.is_raised()
    }
    /// Takes the frame that is due, or ends the source. This is work that should finish
    /// promptly: the pipeline's watchdog counts a take that does not as a stall.
    fn take(&mut self) -> SourceEvent;
    /// `wait`, then `take`.
    fn next(&mut self, stop: &StopSignal) -> SourceEvent {
        if self.wait(stop) {
            self.take()
        } else {
            SourceEvent::End
        }
    }
}
