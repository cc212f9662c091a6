//! GenICam / GigE Vision (and USB3 Vision) cameras through Aravis (`[source] kind = "genicam"`).
//!
//! A [`GenicamBackend`] is plain configuration; [`CameraBackend::open`] opens the camera by its id
//! or address (the first listed device when none is configured), applies the configured region,
//! pixel format (Mono8), frame rate, exposure, gain and acquisition mode, creates the stream with
//! a small pool of buffers and starts acquisition. The [`GenicamStream`] it returns owns the
//! camera and the stream; it lives and is dropped on the pipeline's capture thread (Aravis objects
//! are `Send`, not `Sync`). [`list_devices`] lists the cameras found as [`GenicamCameraInfo`].
//!
//! `read` never blocks longer than the frame timeout: it pops buffers with a short timeout and
//! gives up with [`CaptureError::Timeout`] once the frame timeout passes without a good buffer,
//! so a capture the pipeline abandoned ends soon. Buffers with a non-success status (missing
//! packets, ...) are skipped and counted.

use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

use aravis::glib;
use aravis::prelude::*;
use aravis::{
    AcquisitionMode, AlreadyInitializedError, Aravis, Buffer, BufferStatus, Camera, GvStreamOption,
    PixelFormat, Stream,
};
use image::{DynamicImage, GrayImage};

use crate::config::{Acquisition, GenicamConfig, GenicamPixelFormat};
use crate::source::camera::{CameraBackend, CaptureDevice, CaptureError, CapturedFrame};

/// Buffers queued on the stream.
const BUFFERS: usize = 8;
/// The longest single wait for a buffer inside `read`.
const POP_SLICE: Duration = Duration::from_millis(100);

/// A GenICam camera's failure, with the device, the operation and Aravis' error.
#[derive(Debug, thiserror::Error)]
pub enum GenicamError {
    /// Aravis' process-wide token was taken outside this module.
    #[error("cannot use Aravis")]
    Init(#[source] AlreadyInitializedError),
    #[error("cannot open GenICam camera {device:?}")]
    Open {
        device: String,
        #[source]
        source: glib::Error,
    },
    #[error("GenICam camera {device:?}: cannot {operation}")]
    Configure {
        device: String,
        operation: &'static str,
        #[source]
        source: glib::Error,
    },
    #[error("GenICam camera {device:?} has no {setting} setting")]
    NoSetting {
        device: String,
        setting: &'static str,
    },
    #[error("the previous session with GenICam camera {device} is still closing after {waited:?}")]
    StillClosing { device: String, waited: Duration },
    #[error("GenICam camera {device:?}: the software trigger failed")]
    Trigger {
        device: String,
        #[source]
        source: glib::Error,
    },
}

/// Aravis' global state: the token may be taken once per process; the device list is global, so
/// enumerating and opening are serialised. `None` if the token was taken elsewhere.
fn aravis() -> &'static Option<Mutex<Aravis>> {
    static ARAVIS: OnceLock<Option<Mutex<Aravis>>> = OnceLock::new();
    ARAVIS.get_or_init(|| Aravis::initialize().ok().map(Mutex::new))
}

fn lock_aravis() -> Result<std::sync::MutexGuard<'static, Aravis>, GenicamError> {
    let token = aravis()
        .as_ref()
        .ok_or(GenicamError::Init(AlreadyInitializedError))?;
    Ok(token.lock().unwrap_or_else(|p| p.into_inner()))
}

/// A GenICam camera as Aravis lists it (found, not opened).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GenicamCameraInfo {
    /// Aravis' device id (`<vendor>-<serial>` or similar); `device = ` accepts it.
    pub id: String,
    pub vendor: String,
    pub model: String,
    /// Serial number or MAC address, as the transport reports it.
    pub physical_id: String,
    /// IP address (GigE Vision) or bus address (USB3 Vision); `device = ` accepts it.
    pub address: String,
    /// `GigEVision`, `USB3Vision`, `Fake`.
    pub protocol: String,
}

impl From<&aravis::DeviceInfo> for GenicamCameraInfo {
    fn from(d: &aravis::DeviceInfo) -> Self {
        let s = |c: &std::ffi::CString| c.to_string_lossy().into_owned();
        GenicamCameraInfo {
            id: s(&d.id),
            vendor: s(&d.vendor),
            model: s(&d.model),
            physical_id: s(&d.physical_id),
            address: s(&d.address),
            protocol: s(&d.protocol),
        }
    }
}

/// Every GenICam device Aravis finds now (GigE Vision discovery, USB3 Vision).
pub fn list_devices() -> Result<Vec<GenicamCameraInfo>, CaptureError> {
    let token = lock_aravis()?;
    Ok(token
        .get_device_list()
        .iter()
        .map(GenicamCameraInfo::from)
        .collect())
}

/// The device id of the listed device that `spec` names: its id, address or physical id (MAC),
/// or its serial number (Aravis ids are `<vendor>-<serial>`), case-insensitively.
fn resolve_device(spec: &str, listed: &[GenicamCameraInfo]) -> Option<String> {
    let spec = spec.trim();
    let eq = |a: &str| a.eq_ignore_ascii_case(spec);
    let serial = |id: &str| id.rsplit_once('-').is_some_and(|(_, serial)| eq(serial));
    listed
        .iter()
        .find(|d| eq(&d.id) || eq(&d.address) || eq(&d.physical_id))
        .or_else(|| listed.iter().find(|d| serial(&d.id)))
        .map(|d| d.id.clone())
}

/// Opens the configured GenICam camera.
///
/// One session at a time: a capture the pipeline abandoned still holds the camera (GigE Vision
/// control privilege, heartbeat, acquisition) until its teardown ends, which takes seconds when
/// the camera went away. Opening a new session meanwhile lets the old one's `AcquisitionStop` and
/// control release reach the camera after the new session started it (seen with the simulator
/// as a restored camera that sends nothing). So `open` first waits, for at most half the open
/// timeout, for the previous session to be dropped; if it is still closing, the open fails and
/// the pipeline retries after its backoff.
#[derive(Debug, Clone)]
pub struct GenicamBackend {
    config: GenicamConfig,
    sessions: Arc<Sessions>,
}

/// How many sessions of a backend are alive (opened and not yet dropped).
#[derive(Debug, Default)]
struct Sessions {
    live: Mutex<usize>,
    ended: Condvar,
}

/// Counts one live session; dropped last, after the camera.
struct SessionGuard(Arc<Sessions>);

impl Drop for SessionGuard {
    fn drop(&mut self) {
        let mut live = self.0.live.lock().unwrap_or_else(|p| p.into_inner());
        *live -= 1;
        self.0.ended.notify_all();
    }
}

impl Sessions {
    /// Waits up to `patience` for no live session, then counts a new one.
    fn begin(
        self: &Arc<Self>,
        patience: Duration,
        device: &str,
    ) -> Result<SessionGuard, GenicamError> {
        let live = self.live.lock().unwrap_or_else(|p| p.into_inner());
        let (mut live, _) = self
            .ended
            .wait_timeout_while(live, patience, |n| *n > 0)
            .unwrap_or_else(|p| p.into_inner());
        if *live > 0 {
            return Err(GenicamError::StillClosing {
                device: device.into(),
                waited: patience,
            });
        }
        *live += 1;
        Ok(SessionGuard(self.clone()))
    }
}

impl GenicamBackend {
    pub fn new(config: &GenicamConfig) -> Self {
        Self {
            config: config.clone(),
            sessions: Arc::default(),
        }
    }
}

impl CameraBackend for GenicamBackend {
    fn name(&self) -> &str {
        "genicam"
    }

    fn open(&self) -> Result<Box<dyn CaptureDevice>, CaptureError> {
        let waited = Instant::now();
        let device = self.config.camera.device.as_deref();
        let session = self.sessions.begin(
            self.config.camera.open_timeout / 2,
            device.unwrap_or("(the first found)"),
        )?;
        let waited = waited.elapsed();
        if waited > Duration::from_millis(50) {
            tracing::debug!(
                waited_ms = waited.as_millis() as u64,
                "waited for the previous GenICam session to close"
            );
        }
        Ok(Box::new(GenicamStream::open(&self.config, session)?))
    }
}

/// An opened, acquiring GenICam camera.
pub struct GenicamStream {
    // Field order is drop order: the stream (and its receiving thread) goes before the camera.
    stream: Stream,
    camera: Camera,
    /// The id it was opened by (for errors).
    device: String,
    frame_timeout: Duration,
    trigger: bool,
    granted: String,
    skipped: u64,
    /// Last: the session ends once the stream and the camera are gone.
    _session: SessionGuard,
}

impl GenicamStream {
    fn open(c: &GenicamConfig, session: SessionGuard) -> Result<GenicamStream, CaptureError> {
        let (camera, device) = open_camera(c.camera.device.as_deref())?;
        let step = |operation| {
            let device = device.clone();
            move |source| GenicamError::Configure {
                device,
                operation,
                source,
            }
        };
        if camera.is_gv_device() && !c.packet_socket {
            // Must precede create_stream.
            camera.gv_set_stream_options(GvStreamOption::PACKET_SOCKET_DISABLED);
        }
        configure(&camera, &device, c)?;
        camera
            .set_acquisition_mode(AcquisitionMode::Continuous)
            .map_err(step("set continuous acquisition"))?;
        let trigger = c.acquisition == Acquisition::SoftwareTrigger;
        if trigger {
            camera
                .set_string("TriggerSelector", "FrameStart")
                .and_then(|()| camera.set_string("TriggerMode", "On"))
                .and_then(|()| camera.set_string("TriggerSource", "Software"))
                .map_err(step("set software trigger"))?;
        } else if let Err(e) = camera.set_string("TriggerMode", "Off") {
            tracing::debug!(error = %e, "cannot switch the trigger off (the camera may have none)");
        }
        let payload = camera.payload().map_err(step("read payload size"))?;
        let stream = camera.create_stream().map_err(step("create stream"))?;
        for _ in 0..BUFFERS {
            stream.push_buffer(Buffer::new_allocate(payload as usize));
        }
        let granted = granted(&camera, payload, trigger);
        camera
            .start_acquisition()
            .map_err(step("start acquisition"))?;
        Ok(GenicamStream {
            stream,
            camera,
            device,
            frame_timeout: c.camera.frame_timeout,
            trigger,
            granted,
            skipped: 0,
            _session: session,
        })
    }
}

/// Opens the camera `device` names (an id, address or MAC as given; a serial number through the
/// device list), or the first one listed; returns it with the id it was opened by.
fn open_camera(device: Option<&str>) -> Result<(Camera, String), CaptureError> {
    let token = lock_aravis()?;
    let name = match device {
        Some(d) => {
            let listed: Vec<GenicamCameraInfo> = token
                .get_device_list()
                .iter()
                .map(GenicamCameraInfo::from)
                .collect();
            resolve_device(d, &listed).unwrap_or_else(|| d.to_string())
        }
        // Opening "the first camera" may pick another interface's device (e.g. with a
        // simulator on 127.0.0.1): take the first listed one and open it by its id.
        None => {
            let list = token.get_device_list();
            let first = list
                .first()
                .ok_or_else(|| CaptureError::NotFound("no GenICam camera found".into()))?;
            first.id.to_string_lossy().into_owned()
        }
    };
    match Camera::new(Some(&name)) {
        Ok(camera) => Ok((camera, name)),
        Err(source) => Err(GenicamError::Open {
            device: name,
            source,
        }
        .into()),
    }
}

/// Applies the configured pixel format, region, frame rate, exposure and gain.
fn configure(camera: &Camera, device: &str, c: &GenicamConfig) -> Result<(), GenicamError> {
    let step = |operation| {
        move |source| GenicamError::Configure {
            device: device.to_string(),
            operation,
            source,
        }
    };
    let no_setting = |setting| GenicamError::NoSetting {
        device: device.to_string(),
        setting,
    };
    match c.pixel_format {
        Some(GenicamPixelFormat::Mono8) => camera
            .set_pixel_format(PixelFormat::MONO_8)
            .map_err(step("set pixel format Mono8"))?,
        // Mono8 is the only format converted; a camera without it fails on the first frame.
        None => {
            if let Err(e) = camera.set_pixel_format(PixelFormat::MONO_8) {
                tracing::debug!(error = %e, "cannot select Mono8; keeping the camera's format");
            }
        }
    }
    let cam = &c.camera;
    if cam.width.is_some() || cam.height.is_some() || c.offset_x > 0 || c.offset_y > 0 {
        let (_, _, w0, h0) = camera.region().map_err(step("read region"))?;
        let w = cam.width.map_or(w0, |w| w as i32);
        let h = cam.height.map_or(h0, |h| h as i32);
        camera
            .set_region(c.offset_x as i32, c.offset_y as i32, w, h)
            .map_err(step("set region"))?;
    }
    if let Some(fps) = cam.frame_rate {
        camera.set_frame_rate(fps).map_err(step("set frame rate"))?;
    }
    if let Some(us) = c.exposure_us {
        if !camera.is_exposure_time_available().unwrap_or(false) {
            return Err(no_setting("exposure time"));
        }
        camera
            .set_exposure_time(us)
            .map_err(step("set exposure time"))?;
    }
    if let Some(gain) = c.gain {
        if !camera.is_gain_available().unwrap_or(false) {
            return Err(no_setting("gain"));
        }
        camera.set_gain(gain).map_err(step("set gain"))?;
    }
    Ok(())
}

/// What the camera granted, read back.
fn granted(camera: &Camera, payload: u32, trigger: bool) -> String {
    let text = |r: Result<aravis::glib::GString, aravis::glib::Error>| {
        r.map(|s| s.to_string())
            .unwrap_or_else(|e| format!("? ({e})"))
    };
    let num = |r: Result<f64, aravis::glib::Error>| {
        r.map(|v| format!("{v}")).unwrap_or_else(|_| "n/a".into())
    };
    let region = camera
        .region()
        .map(|(x, y, w, h)| format!("{w}x{h}+{x}+{y}"))
        .unwrap_or_else(|e| format!("? ({e})"));
    format!(
        "{} {} ({}), region {region}, pixel format {}, frame rate {} fps, exposure {} us, gain {}, payload {payload} bytes, {}",
        text(camera.vendor_name()),
        text(camera.model_name()),
        text(camera.device_id()),
        text(camera.pixel_format_as_string()),
        num(camera.frame_rate()),
        num(camera.exposure_time()),
        num(camera.gain()),
        if trigger {
            "software trigger"
        } else {
            "free-run"
        },
    )
}

/// A Mono8 buffer as an owned gray image: the image part's bytes, rows of `width` pixels, each
/// followed by the buffer's `x_padding` bytes (GigE Vision line padding), dropped here.
fn mono8_image(buffer: &Buffer) -> Result<GrayImage, CaptureError> {
    let convert = |reason: String| CaptureError::Convert {
        format: format!("{:?}", buffer.image_pixel_format()),
        reason,
    };
    if buffer.image_pixel_format() != PixelFormat::MONO_8 {
        return Err(convert(
            "only Mono8 is supported; set pixel_format = \"mono8\"".into(),
        ));
    }
    let (w, h) = (buffer.image_width(), buffer.image_height());
    let (x_padding, _) = buffer.image_padding();
    if w <= 0 || h <= 0 || x_padding < 0 {
        return Err(convert(format!(
            "image size {w}x{h}, line padding {x_padding}"
        )));
    }
    let (w, h, stride) = (w as usize, h as usize, (w + x_padding) as usize);
    let mut data = buffer.image_data();
    let needed = stride * (h - 1) + w;
    if data.len() < needed {
        return Err(convert(format!(
            "{} bytes for a {w}x{h} image with {x_padding} bytes of line padding",
            data.len()
        )));
    }
    if stride == w {
        data.truncate(w * h);
    } else {
        data = (0..h)
            .flat_map(|y| &data[y * stride..y * stride + w])
            .copied()
            .collect();
    }
    GrayImage::from_raw(w as u32, h as u32, data).ok_or_else(|| convert("bad buffer size".into()))
}

impl CaptureDevice for GenicamStream {
    fn read(&mut self) -> Result<CapturedFrame, CaptureError> {
        let start = Instant::now();
        if self.trigger
            && let Err(source) = self.camera.execute_command("TriggerSoftware")
        {
            let device = self.device.clone();
            return Err(GenicamError::Trigger { device, source }.into());
        }
        loop {
            let left = self.frame_timeout.saturating_sub(start.elapsed());
            if left.is_zero() {
                return Err(CaptureError::Timeout(self.frame_timeout));
            }
            let slice = left.min(POP_SLICE);
            let Some(buffer) = self.stream.timeout_pop_buffer(slice.as_micros() as u64) else {
                continue;
            };
            let status = buffer.status();
            if status != BufferStatus::Success {
                self.skipped += 1;
                tracing::debug!(
                    ?status,
                    skipped = self.skipped,
                    "skipping an incomplete GenICam buffer"
                );
                self.stream.push_buffer(buffer);
                continue;
            }
            let frame_id = buffer.frame_id();
            let image = mono8_image(&buffer);
            self.stream.push_buffer(buffer);
            return image.map(|image| CapturedFrame {
                image: DynamicImage::ImageLuma8(image),
                device_frame_id: Some(frame_id),
            });
        }
    }

    fn granted(&self) -> String {
        self.granted.clone()
    }
}

impl Drop for GenicamStream {
    fn drop(&mut self) {
        // Slow (seconds) when the camera has gone away; runs on the capture thread.
        let started = Instant::now();
        if let Err(e) = self.camera.stop_acquisition() {
            tracing::debug!(error = %e, "stopping GenICam acquisition");
        }
        tracing::debug!(
            skipped = self.skipped,
            stop_ms = started.elapsed().as_millis() as u64,
            "GenICam capture closed"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dev(id: &str, address: &str, mac: &str) -> GenicamCameraInfo {
        GenicamCameraInfo {
            id: id.into(),
            vendor: "v".into(),
            model: "m".into(),
            physical_id: mac.into(),
            address: address.into(),
            protocol: "GigEVision".into(),
        }
    }

    #[test]
    fn a_device_is_found_by_id_address_mac_or_serial() {
        let listed = [
            dev("Basler-21234567", "192.168.10.20", "00:30:53:aa:bb:cc"),
            dev("Aravis-Fake-GV01", "127.0.0.1", "00:00:00:00:00:00"),
        ];
        let want = Some("Aravis-Fake-GV01".to_string());
        assert_eq!(resolve_device("Aravis-Fake-GV01", &listed), want);
        assert_eq!(resolve_device("127.0.0.1", &listed), want);
        assert_eq!(resolve_device("gv01", &listed), want);
        assert_eq!(
            resolve_device("21234567", &listed).as_deref(),
            Some("Basler-21234567")
        );
        assert_eq!(
            resolve_device("00:30:53:AA:BB:CC", &listed).as_deref(),
            Some("Basler-21234567")
        );
        assert_eq!(resolve_device("99999", &listed), None);
    }
}
