//! Cameras behind one interface: a [`CameraBackend`] opens a [`CaptureDevice`] whose `read`
//! blocks until the next frame — possibly forever, if a driver stalls.
//!
//! Backends are plain structs and never spawn threads. The pipeline runs each opened device on
//! its own capture thread and supervises it: a frame that does not arrive within the frame
//! timeout, a read error or a failed open means the camera is lost; the pipeline emits
//! `camera_lost`, abandons that capture (the thread ends as soon as its read returns), waits with
//! capped exponential backoff ([`Backoff`]) and opens the camera again; the first frame after that
//! emits `camera_restored`.

use std::time::Duration;

use image::DynamicImage;

use crate::config::Roi;

/// Why a camera could not be opened or read.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CaptureError {
    #[error("camera not found: {0}")]
    NotFound(String),
    #[error("cannot open camera: {0}")]
    Open(String),
    #[error("camera read failed: {0}")]
    Read(String),
    #[error("no frame from the camera within {0:?}")]
    Timeout(Duration),
    #[error("cannot convert a {format} frame: {reason}")]
    Convert { format: String, reason: String },
}

/// One frame from a camera, already in a pixel layout the preprocessor takes (8-bit gray or RGB).
#[derive(Debug)]
pub struct CapturedFrame {
    pub image: DynamicImage,
    /// The device's own frame counter, when it has one.
    pub device_frame_id: Option<u64>,
}

/// An opened camera stream. Lives on one capture thread; dropped there.
pub trait CaptureDevice: Send {
    /// Blocks until the next frame. May block forever on a stalled driver: the pipeline's
    /// watchdog does not rely on it returning.
    fn read(&mut self) -> Result<CapturedFrame, CaptureError>;
    /// What the camera actually granted (resolution, format, rate, exposure...), logged on open.
    fn granted(&self) -> String;
}

/// A camera that can be (re)opened.
pub trait CameraBackend: Send + Sync {
    /// The verdicts' `source` field (`camera`, `genicam`).
    fn name(&self) -> &str;
    /// Opens the device and starts acquisition.
    fn open(&self) -> Result<Box<dyn CaptureDevice>, CaptureError>;
}

/// How the pipeline supervises a camera.
#[derive(Debug, Clone, PartialEq)]
pub struct Supervision {
    /// A camera silent for this long is lost.
    pub frame_timeout: Duration,
    /// Extra time allowed for the first frame after opening the device.
    pub open_timeout: Duration,
    /// First wait before reopening a lost camera; doubles each failure up to `backoff_max`.
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
    /// Inspect every Nth frame (1 = every frame); the others are not taken in.
    pub every_nth: u32,
    /// Software region of interest, cropped before preprocessing.
    pub roi: Option<Roi>,
}

impl Default for Supervision {
    fn default() -> Self {
        Self {
            frame_timeout: Duration::from_secs(2),
            open_timeout: Duration::from_secs(10),
            backoff_initial: Duration::from_millis(500),
            backoff_max: Duration::from_secs(10),
            every_nth: 1,
            roi: None,
        }
    }
}

/// Crops `image` to `roi`; a region outside the frame is an error (the frame is reported, not
/// silently cut down to what fits).
pub fn crop_roi(image: DynamicImage, roi: &Roi) -> Result<DynamicImage, CaptureError> {
    let (w, h) = (image.width(), image.height());
    let fits = u64::from(roi.x) + u64::from(roi.width) <= u64::from(w)
        && u64::from(roi.y) + u64::from(roi.height) <= u64::from(h);
    if !fits {
        return Err(CaptureError::Convert {
            format: format!("{w}x{h}"),
            reason: format!(
                "region of interest {}x{} at ({}, {}) does not fit in the frame",
                roi.width, roi.height, roi.x, roi.y
            ),
        });
    }
    Ok(image.crop_imm(roi.x, roi.y, roi.width, roi.height))
}

/// Capped exponential backoff.
#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    pub fn new(initial: Duration, max: Duration) -> Self {
        Self {
            initial,
            max,
            next: initial,
        }
    }

    /// The wait before the next attempt; each call doubles the following one, up to the cap.
    pub fn next_delay(&mut self) -> Duration {
        let d = self.next;
        self.next = (self.next * 2).min(self.max);
        d
    }

    /// After a success: start again from the initial wait.
    pub fn reset(&mut self) {
        self.next = self.initial;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roi_crops_the_right_pixels_and_rejects_overflow() {
        let img = image::GrayImage::from_fn(8, 6, |x, y| image::Luma([(10 * y + x) as u8]));
        let roi = Roi {
            x: 2,
            y: 1,
            width: 3,
            height: 4,
        };
        let out = crop_roi(DynamicImage::ImageLuma8(img), &roi)
            .unwrap()
            .into_luma8();
        assert_eq!(out.dimensions(), (3, 4));
        assert_eq!(out.get_pixel(0, 0)[0], 12);
        assert_eq!(out.get_pixel(2, 3)[0], 44);
        let too_big = Roi {
            x: 6,
            y: 0,
            width: 3,
            height: 1,
        };
        let img = DynamicImage::ImageLuma8(image::GrayImage::new(8, 6));
        assert!(matches!(
            crop_roi(img, &too_big),
            Err(CaptureError::Convert { .. })
        ));
    }

    #[test]
    fn backoff_doubles_up_to_the_cap_and_resets() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_millis(500));
        let seen: Vec<u64> = (0..5).map(|_| b.next_delay().as_millis() as u64).collect();
        assert_eq!(seen, [100, 200, 400, 500, 500]);
        b.reset();
        assert_eq!(b.next_delay(), Duration::from_millis(100));
    }
}
