//! GenICam / GigE Vision (and USB3 Vision) cameras through Aravis (`[source] kind = "genicam"`).
//!
//! A [`GenicamBackend`] is plain configuration; [`CameraBackend::open`] opens the camera by its id
//! or address (the first listed device when none is configured), applies the configured region,
//! pixel format (Mono8), frame rate, exposure, gain and acquisition mode, creates the stream with
//! a small pool of buffers and starts acquisition. The [`GenicamDevice`] it returns owns the
//! camera and the stream; it lives and is dropped on the pipeline's capture thread (Aravis objects
//! are `Send`, not `Sync`).
//!
//! `read` never blocks longer than the frame timeout: it pops buffers with a short timeout and
//! gives up with [`CaptureError::Timeout`] once the frame timeout passes without a good buffer,
//! so a capture the pipeline abandoned ends soon. Buffers with a non-success status (missing
//! packets, ...) are skipped and counted.

use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

use aravis::prelude::*;
use aravis::{
    AcquisitionMode, Aravis, Buffer, BufferStatus, Camera, GvStreamOption, PixelFormat, Stream,
};
use image::{DynamicImage, GrayImage};

use crate::config::{Acquisition, CameraConfig};
use crate::source::camera::{CameraBackend, CaptureDevice, CaptureError, CapturedFrame};

/// Buffers queued on the stream.
const BUFFERS: usize = 8;
/// The longest single wait for a buffer inside `read`.
const POP_SLICE: Duration = Duration::from_millis(100);

/// Aravis' global state: the token may be taken once per process; the device list is global, so
/// enumerating and opening are serialised.
fn aravis() -> &'static Mutex<Aravis> {
    static ARAVIS: OnceLock<Mutex<Aravis>> = OnceLock::new();
    ARAVIS
        .get_or_init(|| Mutex::new(Aravis::initialize().expect("Aravis is initialised only here")))
}

fn lock_aravis() -> std::sync::MutexGuard<'static, Aravis> {
    aravis().lock().unwrap_or_else(|p| p.into_inner())
}

/// A GenICam device as Aravis lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GenicamDevice {
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

impl From<&aravis::DeviceInfo> for GenicamDevice {
    fn from(d: &aravis::DeviceInfo) -> Self {
        let s = |c: &std::ffi::CString| c.to_string_lossy().into_owned();
        GenicamDevice {
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
pub fn list_devices() -> Result<Vec<GenicamDevice>, CaptureError> {
    let token = lock_aravis();
    Ok(token
        .get_device_list()
        .iter()
        .map(GenicamDevice::from)
        .collect())
}

/// The device id of the listed device that `spec` names: its id, address or physical id (MAC),
/// or its serial number (Aravis ids are `<vendor>-<serial>`), case-insensitively.
pub fn resolve_device(spec: &str, listed: &[GenicamDevice]) -> Option<String> {
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
    config: CameraConfig,
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
    fn begin(self: &Arc<Self>, patience: Duration) -> Result<SessionGuard, CaptureError> {
        let live = self.live.lock().unwrap_or_else(|p| p.into_inner());
        let (mut live, _) = self
            .ended
            .wait_timeout_while(live, patience, |n| *n > 0)
            .unwrap_or_else(|p| p.into_inner());
        if *live > 0 {
            return Err(CaptureError::Open(format!(
                "the previous session with this camera is still closing after {patience:?}"
            )));
        }
        *live += 1;
        Ok(SessionGuard(self.clone()))
    }
}

impl GenicamBackend {
    pub fn new(config: &CameraConfig) -> Self {
        Self {
            config: config.clone(),
            sessions: Arc::default(),
        }
    }
}

fn open_err(what: &str) -> impl Fn(aravis::glib::Error) -> CaptureError + '_ {
    move |e| CaptureError::Open(format!("{what}: {e}"))
}

impl CameraBackend for GenicamBackend {
    fn name(&self) -> &str {
        "genicam"
    }

    fn open(&self) -> Result<Box<dyn CaptureDevice>, CaptureError> {
        let waited = Instant::now();
        let session = self.sessions.begin(self.config.open_timeout / 2)?;
        let waited = waited.elapsed();
        if waited > Duration::from_millis(50) {
            tracing::debug!(
                waited_ms = waited.as_millis() as u64,
                "waited for the previous GenICam session to close"
            );
        }
        Ok(Box::new(GenicamCapture::open(&self.config, session)?))
    }
}

/// An opened, acquiring GenICam camera.
pub struct GenicamCapture {
    // Field order is drop order: the stream (and its receiving thread) goes before the camera.
    stream: Stream,
    camera: Camera,
    frame_timeout: Duration,
    trigger: bool,
    granted: String,
    skipped: u64,
    /// Last: the session ends once the stream and the camera are gone.
    _session: SessionGuard,
}

impl GenicamCapture {
    fn open(c: &CameraConfig, session: SessionGuard) -> Result<GenicamCapture, CaptureError> {
        let camera = {
            let token = lock_aravis();
            let name = match &c.device {
                // An id, address or MAC as given; a serial number through the device list.
                Some(d) => {
                    let listed: Vec<GenicamDevice> = token
                        .get_device_list()
                        .iter()
                        .map(GenicamDevice::from)
                        .collect();
                    resolve_device(d, &listed).unwrap_or_else(|| d.clone())
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
            Camera::new(Some(&name))
                .map_err(|e| CaptureError::NotFound(format!("GenICam camera {name:?}: {e}")))?
        };
        if camera.is_gv_device() && !c.packet_socket {
            // Must precede create_stream.
            camera.gv_set_stream_options(GvStreamOption::PACKET_SOCKET_DISABLED);
        }
        match c.pixel_format.as_deref() {
            Some(_) => camera
                .set_pixel_format(PixelFormat::MONO_8)
                .map_err(open_err("set pixel format Mono8"))?,
            // Mono8 is the only format converted; a camera without it fails on the first frame.
            None => {
                if let Err(e) = camera.set_pixel_format(PixelFormat::MONO_8) {
                    tracing::debug!(error = %e, "cannot select Mono8; keeping the camera's format");
                }
            }
        }
        if c.width.is_some() || c.height.is_some() || c.offset_x > 0 || c.offset_y > 0 {
            let (_, _, w0, h0) = camera.region().map_err(open_err("read region"))?;
            let w = c.width.map_or(w0, |w| w as i32);
            let h = c.height.map_or(h0, |h| h as i32);
            camera
                .set_region(c.offset_x as i32, c.offset_y as i32, w, h)
                .map_err(open_err("set region"))?;
        }
        if let Some(fps) = c.frame_rate {
            camera
                .set_frame_rate(fps)
                .map_err(open_err("set frame rate"))?;
        }
        if let Some(us) = c.exposure_us {
            if camera.is_exposure_time_available().unwrap_or(false) {
                camera
                    .set_exposure_time(us)
                    .map_err(open_err("set exposure time"))?;
            } else {
                return Err(CaptureError::Open(
                    "the camera has no exposure time setting".into(),
                ));
            }
        }
        if let Some(gain) = c.gain {
            if camera.is_gain_available().unwrap_or(false) {
                camera.set_gain(gain).map_err(open_err("set gain"))?;
            } else {
                return Err(CaptureError::Open("the camera has no gain setting".into()));
            }
        }
        camera
            .set_acquisition_mode(AcquisitionMode::Continuous)
            .map_err(open_err("set continuous acquisition"))?;
        let trigger = c.acquisition == Acquisition::SoftwareTrigger;
        if trigger {
            camera
                .set_string("TriggerSelector", "FrameStart")
                .and_then(|()| camera.set_string("TriggerMode", "On"))
                .and_then(|()| camera.set_string("TriggerSource", "Software"))
                .map_err(open_err("set software trigger"))?;
        } else if let Err(e) = camera.set_string("TriggerMode", "Off") {
            tracing::debug!(error = %e, "cannot switch the trigger off (the camera may have none)");
        }
        let payload = camera.payload().map_err(open_err("read payload size"))?;
        let stream = camera.create_stream().map_err(open_err("create stream"))?;
        for _ in 0..BUFFERS {
            stream.push_buffer(Buffer::new_allocate(payload as usize));
        }
        let granted = granted(&camera, payload, trigger);
        camera
            .start_acquisition()
            .map_err(open_err("start acquisition"))?;
        Ok(GenicamCapture {
            stream,
            camera,
            frame_timeout: c.frame_timeout,
            trigger,
            granted,
            skipped: 0,
            _session: session,
        })
    }
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

impl CaptureDevice for GenicamCapture {
    fn read(&mut self) -> Result<CapturedFrame, CaptureError> {
        let start = Instant::now();
        if self.trigger {
            self.camera
                .execute_command("TriggerSoftware")
                .map_err(|e| CaptureError::Read(format!("software trigger: {e}")))?;
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

impl Drop for GenicamCapture {
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

    fn dev(id: &str, address: &str, mac: &str) -> GenicamDevice {
        GenicamDevice {
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
