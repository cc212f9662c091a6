//! Cameras behind one interface: a [`CameraBackend`] opens a [`CaptureDevice`] whose `read`
//! blocks until the next frame — possibly forever, if a driver stalls.
//!
//! Backends are plain structs and never spawn threads. The pipeline runs each opened device on
//! its own capture thread and supervises it: a frame that does not arrive within the frame
//! timeout, a read error or a failed open means the camera is lost; the pipeline emits
//! `camera_lost`, abandons that capture (the thread ends as soon as its read returns), waits with
//! capped exponential backoff ([`crate::backoff::Backoff`]) and opens the camera again; the first frame after that
//! emits `camera_restored`.

use std::time::Duration;

use image::DynamicImage;

use super::genicam::GenicamError;
use super::uvc::UvcError;
use crate::config::{CameraConfig, Roi};

/// Why a camera could not be opened or read. Causes are kept as [`std::error::Error::source`];
/// [`CaptureError::describe`] joins them into one line.
#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    /// Nothing matches the configured device (no cause: the back end found no such camera).
    #[error("camera not found: {0}")]
    NotFound(String),
    /// A UVC / V4L2 camera failed (which device, what operation, and nokhwa's or the OS's error).
    /// Boxed: nokhwa's errors are large, and this is the `Err` of every read.
    #[error(transparent)]
    Uvc(Box<UvcError>),
    /// A GenICam camera failed (which device, what operation, and Aravis' error).
    #[error(transparent)]
    Genicam(#[from] GenicamError),
    #[error("no frame from the camera within {0:?}")]
    Timeout(Duration),
    /// A frame whose buffer does not hold what its format and size say.
    #[error("cannot convert a {format} frame: {reason}")]
    Convert { format: String, reason: String },
    /// A frame that arrived as a JPEG (MJPEG) and could not be decoded.
    #[error("cannot decode an MJPEG frame")]
    Decode(#[source] image::ImageError),
    /// The configured software region of interest is not inside the frame.
    #[error(
        "region of interest {}x{} at ({}, {}) does not fit in the {width}x{height} frame",
        roi.width, roi.height, roi.x, roi.y
    )]
    RoiOutside { roi: Roi, width: u32, height: u32 },
}

impl From<UvcError> for CaptureError {
    fn from(e: UvcError) -> Self {
        Self::Uvc(Box::new(e))
    }
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
    /// The verdicts' `source` field (`camera` for UVC, `genicam`).
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

impl From<&CameraConfig> for Supervision {
    fn from(c: &CameraConfig) -> Self {
        Self {
            frame_timeout: c.frame_timeout,
            open_timeout: c.open_timeout,
            backoff_initial: c.backoff_initial,
            backoff_max: c.backoff_max,
            every_nth: c.every_nth,
            roi: c.roi,
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
        return Err(CaptureError::RoiOutside {
            roi: *roi,
            width: w,
            height: h,
        });
    }
    Ok(image.crop_imm(roi.x, roi.y, roi.width, roi.height))
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
        let e = crop_roi(img, &too_big).unwrap_err();
        assert!(matches!(e, CaptureError::RoiOutside { .. }), "{e:?}");
        assert_eq!(
            e.to_string(),
            "region of interest 3x1 at (6, 0) does not fit in the 8x6 frame"
        );
    }
}
