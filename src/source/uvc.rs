//! UVC / V4L2 cameras through nokhwa (`[source] kind = "camera"`).
//!
//! A [`UvcBackend`] is plain configuration. [`CameraBackend::open`] resolves the configured
//! device to a V4L2 index ([`resolve_device`]), asks nokhwa for the closest format to the
//! configured one and starts the stream; the [`UvcDevice`] it returns reads raw frames and
//! converts them itself by the frame's source format ([`super::pixel`]): MJPEG → gray or RGB,
//! YUYV → RGB (BT.601 limited range), GREY → gray. nokhwa's own decoding is not used.
//!
//! `read` blocks in the driver until a frame arrives — possibly forever on a stalled camera; the
//! pipeline's watchdog handles that.

use std::path::{Component, Path, PathBuf};

use nokhwa::Camera;
use nokhwa::utils::{
    ApiBackend, CameraFormat, CameraIndex, FrameFormat, RequestedFormat, RequestedFormatType,
    Resolution,
};

use super::camera::{CameraBackend, CaptureDevice, CaptureError, CapturedFrame};
use super::pixel;
use crate::config::CameraConfig;

/// The formats inspectord converts, in the order tried when none is configured (MJPEG first:
/// it needs the least USB bandwidth).
const CONVERTIBLE: [FrameFormat; 3] = [FrameFormat::MJPEG, FrameFormat::YUYV, FrameFormat::GRAY];
/// Every format nokhwa knows (for listing a camera's modes).
const ALL_FORMATS: [FrameFormat; 6] = [
    FrameFormat::MJPEG,
    FrameFormat::YUYV,
    FrameFormat::GRAY,
    FrameFormat::NV12,
    FrameFormat::RAWRGB,
    FrameFormat::RAWBGR,
];

/// Where a configured `device` points, before any camera is opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeviceSpec {
    /// No device configured: the first camera found.
    First,
    /// A V4L2 index (`/dev/videoN`).
    Index(u32),
    /// A case-insensitive substring of the camera's name.
    Name(String),
}

/// Resolves a configured `device` without opening anything:
/// a number → that index; `/dev/videoN` → N; any other path (e.g. `/dev/v4l/by-id/...`) is
/// followed through its symlinks to a `videoN` node; anything else is a name to match against
/// the cameras found ([`match_name`]). A path that leads to no `videoN` node is `NotFound`.
pub fn resolve_device(device: Option<&str>) -> Result<DeviceSpec, CaptureError> {
    let Some(spec) = device.map(str::trim) else {
        return Ok(DeviceSpec::First);
    };
    if spec.is_empty() {
        return Ok(DeviceSpec::First);
    }
    if let Ok(n) = spec.parse::<u32>() {
        return Ok(DeviceSpec::Index(n));
    }
    if spec.starts_with('/') || spec.starts_with('.') {
        let path = Path::new(spec);
        if let Some(n) = video_index(path) {
            return Ok(DeviceSpec::Index(n));
        }
        let target = follow_symlinks(path)?;
        return video_index(&target).map(DeviceSpec::Index).ok_or_else(|| {
            CaptureError::NotFound(format!(
                "{spec} (resolves to {}) is not a V4L2 video node /dev/videoN",
                target.display()
            ))
        });
    }
    Ok(DeviceSpec::Name(spec.to_string()))
}

/// N when the path's file name is `videoN`.
fn video_index(path: &Path) -> Option<u32> {
    let name = path.file_name()?.to_str()?;
    let digits = name.strip_prefix("video")?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The path a (chain of) symlink(s) ends at. Uses `canonicalize` when the target exists;
/// otherwise follows the links by hand (relative targets are relative to the link's folder), so
/// a dangling link still names the node it points at.
fn follow_symlinks(path: &Path) -> Result<PathBuf, CaptureError> {
    if let Ok(p) = std::fs::canonicalize(path) {
        return Ok(p);
    }
    let mut current = path.to_path_buf();
    for _ in 0..40 {
        match std::fs::symlink_metadata(&current) {
            Ok(m) if m.file_type().is_symlink() => {
                let target = std::fs::read_link(&current)
                    .map_err(|e| CaptureError::NotFound(format!("{}: {e}", current.display())))?;
                let parent = current.parent().unwrap_or(Path::new("/"));
                current = normalize(&parent.join(target));
            }
            Ok(_) => return Ok(current),
            Err(e) if current == path => {
                return Err(CaptureError::NotFound(format!("{}: {e}", path.display())));
            }
            // A dangling link: its target is the answer (opening it will then fail cleanly).
            Err(_) => return Ok(current),
        }
    }
    Err(CaptureError::NotFound(format!(
        "{}: too many levels of symbolic links",
        path.display()
    )))
}

/// Removes `.` and `..` lexically.
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

/// The index of the camera whose name contains `wanted` (case-insensitive) among `(index, name)`
/// pairs. V4L2 often lists one camera as several nodes with the same name (capture and metadata):
/// then the lowest index is taken. Matches with different names are ambiguous.
pub fn match_name(wanted: &str, cameras: &[(u32, String)]) -> Result<u32, CaptureError> {
    let needle = wanted.to_lowercase();
    let mut hits: Vec<&(u32, String)> = cameras
        .iter()
        .filter(|(_, name)| name.to_lowercase().contains(&needle))
        .collect();
    hits.sort_by_key(|(i, _)| *i);
    let Some(&(first, ref first_name)) = hits.first().copied() else {
        let names: Vec<String> = cameras.iter().map(|(i, n)| format!("{i}: {n:?}")).collect();
        return Err(CaptureError::NotFound(format!(
            "no camera name contains {wanted:?} (found: {})",
            if names.is_empty() {
                "none".to_string()
            } else {
                names.join(", ")
            }
        )));
    };
    if let Some((_, other)) = hits.iter().find(|(_, n)| n != first_name) {
        return Err(CaptureError::NotFound(format!(
            "{wanted:?} matches several cameras ({first_name:?}, {other:?}); use an index or a /dev/v4l/by-id path"
        )));
    }
    Ok(first)
}

/// The formats nokhwa is asked for, tried in order until one opens: the configured pixel format
/// (or each convertible one) at the closest resolution and rate to the configured ones
/// (640x480 / 30 fps for whichever is missing); with neither a resolution nor a rate, the
/// camera's first listed mode in that format.
pub fn format_requests(
    config: &CameraConfig,
) -> Result<Vec<(RequestedFormatType, FrameFormat)>, CaptureError> {
    let formats: Vec<FrameFormat> = match config
        .pixel_format
        .as_deref()
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        None => CONVERTIBLE.to_vec(),
        Some("mjpeg") => vec![FrameFormat::MJPEG],
        Some("yuyv") => vec![FrameFormat::YUYV],
        Some("grey" | "gray" | "y8") => vec![FrameFormat::GRAY],
        Some(other) => {
            return Err(CaptureError::Open(format!(
                "pixel format {other:?} is not supported by UVC cameras (mjpeg, yuyv, grey)"
            )));
        }
    };
    let constrained =
        config.width.is_some() || config.height.is_some() || config.frame_rate.is_some();
    let resolution = Resolution::new(config.width.unwrap_or(640), config.height.unwrap_or(480));
    let fps = config.frame_rate.map_or(30, |r| (r.round() as u32).max(1));
    Ok(formats
        .into_iter()
        .map(|f| {
            let request = if constrained {
                RequestedFormatType::Closest(CameraFormat::new(resolution, f, fps))
            } else {
                RequestedFormatType::None
            };
            (request, f)
        })
        .collect())
}

/// Opens the configured UVC camera.
#[derive(Debug, Clone)]
pub struct UvcBackend {
    config: CameraConfig,
}

impl UvcBackend {
    pub fn new(config: &CameraConfig) -> Self {
        Self {
            config: config.clone(),
        }
    }

    /// The V4L2 index the configured device names now (names and "first" need a query).
    fn index(&self) -> Result<u32, CaptureError> {
        match resolve_device(self.config.device.as_deref())? {
            DeviceSpec::Index(n) => Ok(n),
            DeviceSpec::First => query()?
                .into_iter()
                .map(|(i, _)| i)
                .min()
                .ok_or_else(|| CaptureError::NotFound("no UVC cameras found".into())),
            DeviceSpec::Name(name) => match_name(&name, &query()?),
        }
    }
}

/// `(index, name)` of every V4L2 video node nokhwa lists.
fn query() -> Result<Vec<(u32, String)>, CaptureError> {
    let found = nokhwa::query(ApiBackend::Auto)
        .map_err(|e| CaptureError::Open(format!("cannot list UVC cameras: {e}")))?;
    Ok(found
        .into_iter()
        .filter_map(|info| info.index().as_index().ok().map(|i| (i, info.human_name())))
        .collect())
}

impl CameraBackend for UvcBackend {
    fn name(&self) -> &str {
        "camera"
    }

    fn open(&self) -> Result<Box<dyn CaptureDevice>, CaptureError> {
        let index = self.index()?;
        let node = PathBuf::from(format!("/dev/video{index}"));
        if !node.exists() {
            return Err(CaptureError::NotFound(format!(
                "{} does not exist",
                node.display()
            )));
        }
        let mut failures = Vec::new();
        for (request, format) in format_requests(&self.config)? {
            let wanted = [format];
            match Camera::new(
                CameraIndex::Index(index),
                RequestedFormat::with_formats(request, &wanted),
            ) {
                Ok(mut cam) => {
                    cam.open_stream().map_err(|e| {
                        CaptureError::Open(format!(
                            "{}: cannot start the stream: {e}",
                            node.display()
                        ))
                    })?;
                    let granted = cam.camera_format();
                    let name = cam.info().human_name();
                    return Ok(Box::new(UvcDevice {
                        cam,
                        granted: format!(
                            "{} ({name}) {} {}x{} @ {} fps",
                            node.display(),
                            granted.format(),
                            granted.width(),
                            granted.height(),
                            granted.frame_rate()
                        ),
                    }));
                }
                Err(e) => failures.push(format!("{format}: {e}")),
            }
        }
        Err(CaptureError::Open(format!(
            "{}: {}",
            node.display(),
            failures.join("; ")
        )))
    }
}

/// An opened UVC stream.
pub struct UvcDevice {
    cam: Camera,
    granted: String,
}

/// Converts one raw frame by its source format. V4L2 memory-mapped buffers are handed over
/// whole (nokhwa drops the driver's `bytesused`), so bytes past the frame's size are ignored:
/// the JPEG decoder stops at its end marker, YUYV and GREY take the first `width·height·bpp`.
pub fn convert(
    format: FrameFormat,
    width: u32,
    height: u32,
    data: &[u8],
) -> Result<image::DynamicImage, CaptureError> {
    let frame = |bpp: usize| {
        let n = width as usize * height as usize * bpp;
        if data.len() > n { &data[..n] } else { data }
    };
    match format {
        FrameFormat::MJPEG => pixel::mjpeg_to_image(data),
        FrameFormat::YUYV => {
            pixel::yuyv_to_rgb(frame(2), width, height).map(image::DynamicImage::ImageRgb8)
        }
        FrameFormat::GRAY => pixel::grey_to_luma(frame(1), width, height, width as usize)
            .map(image::DynamicImage::ImageLuma8),
        other => Err(CaptureError::Convert {
            format: other.to_string(),
            reason: "not supported (use mjpeg, yuyv or grey)".into(),
        }),
    }
}

impl CaptureDevice for UvcDevice {
    fn read(&mut self) -> Result<CapturedFrame, CaptureError> {
        let buffer = self
            .cam
            .frame()
            .map_err(|e| CaptureError::Read(e.to_string()))?;
        let res = buffer.resolution();
        let image = convert(
            buffer.source_frame_format(),
            res.width(),
            res.height(),
            buffer.buffer(),
        )?;
        // V4L2's sequence number is not exposed by nokhwa.
        Ok(CapturedFrame {
            image,
            device_frame_id: None,
        })
    }

    fn granted(&self) -> String {
        self.granted.clone()
    }
}

/// A UVC camera as `inspectord devices` shows it.
#[derive(Debug, Clone)]
pub struct UvcListing {
    pub index: u32,
    pub name: String,
    pub description: String,
    /// Its modes, or why the camera could not be opened to ask.
    pub formats: Result<Vec<CameraFormat>, String>,
}

impl std::fmt::Display for UvcListing {
    /// `[N] "name" (description)  device = "/dev/videoN"`, then one line per pixel format with its
    /// resolutions (largest first) and frame rates.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "[{}] {:?} ({})  device = \"/dev/video{}\"",
            self.index, self.name, self.description, self.index
        )?;
        let formats = match &self.formats {
            Err(e) => return write!(f, "\n    formats unavailable: {e}"),
            Ok(formats) if formats.is_empty() => {
                return write!(f, "\n    no capture formats (a metadata node?)");
            }
            Ok(formats) => sorted(formats),
        };
        for group in formats.chunk_by(|a, b| a.format() == b.format()) {
            let format = group[0].format();
            let note = if CONVERTIBLE.contains(&format) {
                ""
            } else {
                " (not supported by inspectord)"
            };
            let modes: Vec<String> = group
                .chunk_by(|a, b| a.resolution() == b.resolution())
                .map(|same| {
                    let rates: Vec<String> =
                        same.iter().map(|m| m.frame_rate().to_string()).collect();
                    format!(
                        "{}x{} @ {}",
                        same[0].width(),
                        same[0].height(),
                        rates.join(", ")
                    )
                })
                .collect();
            write!(f, "\n    {format}{note}: {} fps", modes.join(" fps; "))?;
        }
        Ok(())
    }
}

/// Convertible formats first (MJPEG, YUYV, GREY), then the rest by name; within a format the
/// largest resolution first, and within a resolution the fastest rate first; duplicates dropped.
fn sorted(formats: &[CameraFormat]) -> Vec<CameraFormat> {
    let mut f = formats.to_vec();
    f.sort_by_key(|m| {
        (
            CONVERTIBLE
                .iter()
                .position(|c| *c == m.format())
                .unwrap_or(CONVERTIBLE.len()),
            m.format().to_string(),
            std::cmp::Reverse(u64::from(m.width()) * u64::from(m.height())),
            std::cmp::Reverse(m.width()),
            std::cmp::Reverse(m.frame_rate()),
        )
    });
    f.dedup();
    f
}

/// Every V4L2 camera nokhwa finds, each opened briefly to list its modes (a camera busy in
/// another process may refuse: its modes are then "unavailable").
pub fn list_devices() -> Result<Vec<UvcListing>, CaptureError> {
    let found = nokhwa::query(ApiBackend::Auto)
        .map_err(|e| CaptureError::Open(format!("cannot list UVC cameras: {e}")))?;
    let mut out = Vec::new();
    for info in found {
        let Ok(index) = info.index().as_index() else {
            continue;
        };
        let formats = Camera::new(
            CameraIndex::Index(index),
            RequestedFormat::with_formats(RequestedFormatType::None, &ALL_FORMATS),
        )
        .and_then(|mut cam| cam.compatible_camera_formats())
        .map_err(|e| e.to_string());
        out.push(UvcListing {
            index,
            name: info.human_name(),
            description: info.description().to_string(),
            formats,
        });
    }
    out.sort_by_key(|d| d.index);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn config(device: Option<&str>) -> CameraConfig {
        CameraConfig {
            kind: crate::config::CameraKind::Uvc,
            device: device.map(String::from),
            width: None,
            height: None,
            offset_x: 0,
            offset_y: 0,
            frame_rate: None,
            pixel_format: None,
            exposure_us: None,
            gain: None,
            packet_socket: false,
            acquisition: crate::config::Acquisition::FreeRun,
            every_nth: 1,
            frame_timeout: Duration::from_secs(2),
            open_timeout: Duration::from_secs(10),
            backoff_initial: Duration::from_millis(500),
            backoff_max: Duration::from_secs(10),
            roi: None,
        }
    }

    #[test]
    fn device_specs_parse() {
        assert_eq!(resolve_device(None).unwrap(), DeviceSpec::First);
        assert_eq!(resolve_device(Some("  ")).unwrap(), DeviceSpec::First);
        assert_eq!(resolve_device(Some("0")).unwrap(), DeviceSpec::Index(0));
        assert_eq!(resolve_device(Some(" 12 ")).unwrap(), DeviceSpec::Index(12));
        assert_eq!(
            resolve_device(Some("/dev/video3")).unwrap(),
            DeviceSpec::Index(3)
        );
        assert_eq!(
            resolve_device(Some("/dev/video42")).unwrap(),
            DeviceSpec::Index(42)
        );
        assert_eq!(
            resolve_device(Some("Logitech C920")).unwrap(),
            DeviceSpec::Name("Logitech C920".into())
        );
        // Not video nodes.
        assert!(matches!(
            resolve_device(Some("/dev/null")),
            Err(CaptureError::NotFound(_))
        ));
        assert!(matches!(
            resolve_device(Some("/nonexistent/cam")),
            Err(CaptureError::NotFound(_))
        ));
        assert_eq!(video_index(Path::new("/dev/videoX")), None);
        assert_eq!(video_index(Path::new("/dev/video")), None);
        assert_eq!(video_index(Path::new("/dev/video-1")), None);
    }

    #[test]
    fn by_id_symlinks_resolve_to_their_video_node() {
        let dir = tempfile::tempdir().unwrap();
        let by_id = dir.path().join("v4l/by-id");
        std::fs::create_dir_all(&by_id).unwrap();
        // Absolute dangling target, as on a host where /dev/video7 is absent.
        let abs = by_id.join("usb-Acme_Cam_1234-video-index0");
        std::os::unix::fs::symlink("/dev/video7", &abs).unwrap();
        assert_eq!(resolve_device(abs.to_str()).unwrap(), DeviceSpec::Index(7));
        // Relative target, the way udev writes them (../../video2), through a chain of links.
        std::fs::write(dir.path().join("video2"), b"").unwrap();
        let rel = by_id.join("usb-Acme_Cam_5678-video-index0");
        std::os::unix::fs::symlink("../../video2", &rel).unwrap();
        let chain = dir.path().join("camera");
        std::os::unix::fs::symlink(&rel, &chain).unwrap();
        assert_eq!(resolve_device(rel.to_str()).unwrap(), DeviceSpec::Index(2));
        assert_eq!(
            resolve_device(chain.to_str()).unwrap(),
            DeviceSpec::Index(2)
        );
        // Relative and dangling.
        let gone = by_id.join("gone");
        std::os::unix::fs::symlink("../../video11", &gone).unwrap();
        assert_eq!(
            resolve_device(gone.to_str()).unwrap(),
            DeviceSpec::Index(11)
        );
        // A link to something that is not a video node.
        let other = by_id.join("other");
        std::os::unix::fs::symlink("../../media0", &other).unwrap();
        assert!(matches!(
            resolve_device(other.to_str()),
            Err(CaptureError::NotFound(_))
        ));
        // A link loop.
        let a = dir.path().join("a");
        let b = dir.path().join("b");
        std::os::unix::fs::symlink(&b, &a).unwrap();
        std::os::unix::fs::symlink(&a, &b).unwrap();
        assert!(matches!(
            resolve_device(a.to_str()),
            Err(CaptureError::NotFound(_))
        ));
    }

    #[test]
    fn names_match_case_insensitively() {
        let cams = vec![
            (2, "HD Pro Webcam C920".to_string()),
            (0, "Integrated Camera: Integrated C".to_string()),
            (1, "Integrated Camera: Integrated C".to_string()),
            (3, "HD Pro Webcam C920".to_string()),
        ];
        assert_eq!(match_name("c920", &cams).unwrap(), 2);
        assert_eq!(match_name("INTEGRATED", &cams).unwrap(), 0);
        assert!(matches!(
            match_name("Basler", &cams),
            Err(CaptureError::NotFound(_))
        ));
        assert!(matches!(
            match_name("Webcam", &[]),
            Err(CaptureError::NotFound(_))
        ));
        // Two different cameras match: ambiguous.
        assert!(matches!(
            match_name("c", &cams),
            Err(CaptureError::NotFound(_))
        ));
    }

    #[test]
    fn requests_follow_the_config() {
        let mut c = config(None);
        let r = format_requests(&c).unwrap();
        assert_eq!(
            r,
            vec![
                (RequestedFormatType::None, FrameFormat::MJPEG),
                (RequestedFormatType::None, FrameFormat::YUYV),
                (RequestedFormatType::None, FrameFormat::GRAY),
            ]
        );
        c.width = Some(1280);
        c.height = Some(720);
        c.frame_rate = Some(14.6);
        c.pixel_format = Some("yuyv".into());
        let want = CameraFormat::new(Resolution::new(1280, 720), FrameFormat::YUYV, 15);
        assert_eq!(
            format_requests(&c).unwrap(),
            vec![(RequestedFormatType::Closest(want), FrameFormat::YUYV)]
        );
        c.pixel_format = Some("grey".into());
        c.width = None;
        c.height = None;
        c.frame_rate = Some(60.0);
        let want = CameraFormat::new(Resolution::new(640, 480), FrameFormat::GRAY, 60);
        assert_eq!(
            format_requests(&c).unwrap(),
            vec![(RequestedFormatType::Closest(want), FrameFormat::GRAY)]
        );
        c.pixel_format = Some("mono8".into());
        assert!(matches!(format_requests(&c), Err(CaptureError::Open(_))));
    }

    #[test]
    fn opening_a_missing_camera_is_a_clean_error() {
        let backend = UvcBackend::new(&config(Some("/dev/video987")));
        assert_eq!(backend.name(), "camera");
        match backend.open() {
            Err(CaptureError::NotFound(m)) => assert!(m.contains("/dev/video987"), "{m}"),
            Err(e) => panic!("expected NotFound, got {e:?}"),
            Ok(_) => panic!("opened a camera that does not exist"),
        }
        // By name: nothing matches on a host without cameras (or without this one).
        let backend = UvcBackend::new(&config(Some("no such camera 0f3c")));
        assert!(matches!(
            backend.open(),
            Err(CaptureError::NotFound(_) | CaptureError::Open(_))
        ));
    }

    #[test]
    fn nokhwa_itself_fails_cleanly_on_a_missing_index() {
        // Past our own existence check: nokhwa's V4L2 back end returns an error, not a panic.
        let wanted = [FrameFormat::MJPEG];
        let r = Camera::new(
            CameraIndex::Index(987),
            RequestedFormat::with_formats(RequestedFormatType::None, &wanted),
        );
        assert!(r.is_err());
    }

    #[test]
    fn listings_group_modes_by_format() {
        let m = |w, h, f, r| CameraFormat::new(Resolution::new(w, h), f, r);
        let listing = UvcListing {
            index: 2,
            name: "HD Pro Webcam C920".into(),
            description: "Video4Linux Device @ /dev/video2".into(),
            formats: Ok(vec![
                m(640, 480, FrameFormat::YUYV, 30),
                m(1920, 1080, FrameFormat::MJPEG, 30),
                m(640, 480, FrameFormat::MJPEG, 15),
                m(640, 480, FrameFormat::MJPEG, 30),
                m(640, 480, FrameFormat::NV12, 30),
                m(640, 480, FrameFormat::MJPEG, 30),
            ]),
        };
        assert_eq!(
            listing.to_string(),
            "[2] \"HD Pro Webcam C920\" (Video4Linux Device @ /dev/video2)  device = \"/dev/video2\"\n    \
             MJPEG: 1920x1080 @ 30 fps; 640x480 @ 30, 15 fps\n    \
             YUYV: 640x480 @ 30 fps\n    \
             NV12 (not supported by inspectord): 640x480 @ 30 fps"
        );
        let busy = UvcListing {
            formats: Err("Device or resource busy".into()),
            ..listing.clone()
        };
        assert!(
            busy.to_string()
                .ends_with("\n    formats unavailable: Device or resource busy")
        );
        let meta = UvcListing {
            formats: Ok(vec![]),
            ..listing
        };
        assert!(
            meta.to_string()
                .ends_with("no capture formats (a metadata node?)")
        );
    }

    #[test]
    fn raw_frames_convert_by_their_source_format() {
        // GREY in an oversized (whole mmap) buffer: the tail is ignored.
        let mut grey = vec![5u8, 6, 7, 8];
        grey.extend_from_slice(&[0xAA; 12]);
        let img = convert(FrameFormat::GRAY, 2, 2, &grey).unwrap();
        assert_eq!(img.as_luma8().unwrap().as_raw(), &[5, 6, 7, 8]);
        // YUYV black/white pair.
        let img = convert(FrameFormat::YUYV, 2, 1, &[16, 128, 235, 128, 0, 0]).unwrap();
        assert_eq!(img.as_rgb8().unwrap().as_raw(), &[0, 0, 0, 255, 255, 255]);
        // Short buffers are still errors.
        assert!(matches!(
            convert(FrameFormat::YUYV, 2, 2, &[0; 6]),
            Err(CaptureError::Convert { .. })
        ));
        assert!(matches!(
            convert(FrameFormat::NV12, 2, 2, &[0; 6]),
            Err(CaptureError::Convert { .. })
        ));
        assert!(matches!(
            convert(FrameFormat::MJPEG, 2, 2, &[0; 6]),
            Err(CaptureError::Convert { .. })
        ));
    }
}
