//! Replay of recorded images: a directory (files with the configured extensions, sorted by file
//! name) or a list file (one path per line, relative to the list file; `#` starts a comment),
//! as fast as the pipeline takes them or paced at a fixed rate, optionally looping.
//!
//! Only regular files are read (after following symlinks), and only up to `max_file_mb`: a FIFO
//! would block the source forever and a device (`/dev/zero`) would fill memory, so such an entry
//! becomes an `error` verdict with its reason, decided before anything is opened for reading
//! (see [`read_frame`]).

use std::io::Read;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use super::{FrameSource, Payload, SourceEvent, SourceFrame};
use crate::config::ReplayConfig;
use crate::stop::StopSignal;

#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("cannot read replay source {path}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot read replay list file {path}")]
    List {
        path: PathBuf,
        source: crate::input_file::InputError,
    },
    #[error("replay source {path} holds no images (extensions: {extensions})")]
    Empty { path: PathBuf, extensions: String },
}

/// Why one replay entry could not be read; the frame becomes an `error` verdict.
#[derive(Debug, thiserror::Error)]
pub enum FrameReadError {
    #[error("cannot read {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not a regular file (a {kind}); only regular image files are replayed")]
    NotRegular { path: PathBuf, kind: &'static str },
    #[error("{path} is {bytes} bytes, larger than source.max_file_mb ({max_mb} MiB); not read")]
    TooLarge {
        path: PathBuf,
        bytes: u64,
        max_mb: u64,
    },
}

/// What kind of file `t` is, for messages.
fn kind_of(t: std::fs::FileType) -> &'static str {
    if t.is_dir() {
        "directory"
    } else if t.is_fifo() {
        "FIFO"
    } else if t.is_char_device() {
        "character device"
    } else if t.is_block_device() {
        "block device"
    } else if t.is_socket() {
        "socket"
    } else {
        "special file"
    }
}

/// Reads one image file: a regular file (symlinks followed) of at most `max_bytes`. A FIFO or a
/// device is never opened for reading: the path is resolved with `O_PATH` (which opens nothing),
/// checked, and the very file checked is then opened through `/proc/self/fd`, so it cannot be
/// swapped for a FIFO in between. The only wait left is the kernel's: a write lease another
/// process holds on the file delays the open by at most `fs.lease-break-time`.
pub fn read_frame(path: &Path, max_bytes: u64) -> Result<Vec<u8>, FrameReadError> {
    let io = |source| FrameReadError::Io {
        path: path.into(),
        source,
    };
    let too_large = |bytes| FrameReadError::TooLarge {
        path: path.into(),
        bytes,
        max_mb: max_bytes.div_ceil(1024 * 1024),
    };
    let handle = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_PATH)
        .open(path)
        .map_err(io)?;
    let meta = handle.metadata().map_err(io)?;
    if !meta.is_file() {
        return Err(FrameReadError::NotRegular {
            path: path.into(),
            kind: kind_of(meta.file_type()),
        });
    }
    if meta.len() > max_bytes {
        return Err(too_large(meta.len()));
    }
    let file = reopen(&handle, path, &meta).map_err(io)?;
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.take(max_bytes + 1)
        .read_to_end(&mut bytes)
        .map_err(io)?;
    if bytes.len() as u64 > max_bytes {
        return Err(too_large(bytes.len() as u64));
    }
    Ok(bytes)
}

/// Opens for reading the file `handle` (an `O_PATH` descriptor) refers to. Without `/proc`, the
/// path is opened without blocking and must still be the same file.
fn reopen(
    handle: &std::fs::File,
    path: &Path,
    meta: &std::fs::Metadata,
) -> std::io::Result<std::fs::File> {
    let by_fd = PathBuf::from(format!("/proc/self/fd/{}", handle.as_raw_fd()));
    let flags = libc::O_NOCTTY;
    match std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(flags)
        .open(by_fd)
    {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let file = std::fs::OpenOptions::new()
                .read(true)
                .custom_flags(flags | libc::O_NONBLOCK)
                .open(path)?;
            let now = file.metadata()?;
            if (now.dev(), now.ino()) != (meta.dev(), meta.ino()) {
                return Err(std::io::Error::other("replaced while being opened"));
            }
            Ok(file)
        }
        opened => opened,
    }
}

pub struct ReplaySource {
    files: Vec<PathBuf>,
    max_file_bytes: u64,
    next: usize,
    looping: bool,
    interval: Option<Duration>,
    started: Option<Instant>,
    emitted: u64,
}

impl ReplaySource {
    pub fn new(cfg: &ReplayConfig) -> Result<Self, ReplayError> {
        let files = list_images(&cfg.path, &cfg.extensions)?;
        if files.is_empty() {
            return Err(ReplayError::Empty {
                path: cfg.path.clone(),
                extensions: cfg.extensions.join(", "),
            });
        }
        Ok(Self {
            files,
            max_file_bytes: cfg.max_file_bytes,
            next: 0,
            looping: cfg.looping,
            interval: interval_of(cfg.fps),
            started: None,
            emitted: 0,
        })
    }
}

/// The pause between frames at `fps` (`None`: no pacing). Cannot panic: a rate so low that its
/// interval does not fit a `Duration` waits for ever (the config accepts no such rate).
fn interval_of(fps: f64) -> Option<Duration> {
    (fps > 0.0).then(|| Duration::try_from_secs_f64(1.0 / fps).unwrap_or(Duration::MAX))
}

/// When frame `n` is due on the absolute schedule `started + n·interval`; `None` when that is
/// beyond what an `Instant` can hold (never, in practice).
fn due(started: Instant, interval: Duration, n: u64) -> Option<Instant> {
    let offset = Duration::try_from_secs_f64(interval.as_secs_f64() * n as f64).ok()?;
    started.checked_add(offset)
}

/// The images of a directory (sorted by file name) or of a list file.
pub fn list_images(path: &Path, extensions: &[String]) -> Result<Vec<PathBuf>, ReplayError> {
    let read_err = |source| ReplayError::Read {
        path: path.into(),
        source,
    };
    let meta = std::fs::metadata(path).map_err(read_err)?;
    if meta.is_dir() {
        let mut files = Vec::new();
        for entry in std::fs::read_dir(path).map_err(read_err)? {
            let p = entry.map_err(read_err)?.path();
            let ext_ok = p
                .extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| extensions.iter().any(|x| x.eq_ignore_ascii_case(e)));
            if ext_ok && !p.is_dir() {
                files.push(p);
            }
        }
        files.sort_by(|a, b| a.file_name().cmp(&b.file_name()).then_with(|| a.cmp(b)));
        Ok(files)
    } else {
        // A regular file of bounded size: a FIFO or a device is refused, not read.
        let limit = crate::config::defaults::REPLAY_LIST_MAX_BYTES;
        let text =
            crate::input_file::read_to_string(path, limit).map_err(|source| ReplayError::List {
                path: path.into(),
                source,
            })?;
        let base = path.parent().unwrap_or(Path::new(""));
        Ok(text
            .lines()
            .map(|l| l.split('#').next().unwrap_or("").trim())
            .filter(|l| !l.is_empty())
            .map(|l| base.join(l))
            .collect())
    }
}

impl FrameSource for ReplaySource {
    fn name(&self) -> &str {
        "replay"
    }

    fn wait(&mut self, stop: &StopSignal) -> bool {
        if self.next == self.files.len() && !self.looping {
            return true; // `take` ends the replay at once
        }
        if let Some(interval) = self.interval {
            let started = *self.started.get_or_insert_with(Instant::now);
            // Absolute schedule: frame n is due at start + n·interval, so pacing does not drift.
            let Some(due) = due(started, interval, self.emitted) else {
                // Never due: wait for the stop.
                while !stop.sleep(Duration::from_secs(3600)) {}
                return false;
            };
            let now = Instant::now();
            if due > now && stop.sleep(due - now) {
                return false;
            }
        }
        !stop.is_raised()
    }

    fn take(&mut self) -> SourceEvent {
        if self.next == self.files.len() {
            if !self.looping {
                return SourceEvent::End;
            }
            self.next = 0;
        }
        let path = &self.files[self.next];
        self.next += 1;
        self.emitted += 1;
        let id = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let payload = read_frame(path, self.max_file_bytes)
            .map(Payload::Encoded)
            .map_err(|e| crate::error::chain(&e));
        SourceEvent::Frame(SourceFrame {
            id,
            trigger: None,
            captured_at: SystemTime::now(),
            taken: Instant::now(),
            payload,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(path: &Path) -> ReplayConfig {
        ReplayConfig {
            path: path.into(),
            fps: 0.0,
            looping: false,
            extensions: vec!["png".into(), "jpg".into()],
            max_file_bytes: 1024,
            trigger: Default::default(),
        }
    }

    #[test]
    fn only_regular_files_up_to_the_cap_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let ok = dir.path().join("ok.png");
        std::fs::write(&ok, [1u8; 1024]).unwrap();
        assert_eq!(read_frame(&ok, 1024).unwrap().len(), 1024);
        let link = dir.path().join("link.png");
        std::os::unix::fs::symlink(&ok, &link).unwrap();
        assert_eq!(read_frame(&link, 1024).unwrap().len(), 1024);
        assert!(matches!(
            read_frame(&ok, 1023),
            Err(FrameReadError::TooLarge { bytes: 1024, .. })
        ));
        let fifo = dir.path().join("fifo.png");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        for (path, kind) in [
            (fifo.as_path(), "FIFO"),
            (Path::new("/dev/zero"), "character device"),
            (dir.path(), "directory"),
        ] {
            match read_frame(path, 1 << 20) {
                Err(FrameReadError::NotRegular { kind: k, .. }) => assert_eq!(k, kind),
                other => panic!("{}: {other:?}", path.display()),
            }
        }
        let e = read_frame(&dir.path().join("gone.png"), 10).unwrap_err();
        assert!(crate::error::chain(&e).starts_with("cannot read "), "{e}");
    }

    fn ids(src: &mut ReplaySource, n: usize) -> Vec<String> {
        let stop = StopSignal::new();
        (0..n)
            .map_while(|_| match src.next(&stop) {
                SourceEvent::Frame(f) => Some(f.id),
                SourceEvent::End => None,
            })
            .collect()
    }

    #[test]
    fn directory_in_name_order_filtered_by_extension() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["b.png", "a.PNG", "c.jpg", "notes.txt"] {
            std::fs::write(dir.path().join(name), b"x").unwrap();
        }
        let mut src = ReplaySource::new(&cfg(dir.path())).unwrap();
        assert_eq!(ids(&mut src, 10), ["a.PNG", "b.png", "c.jpg"]);
    }

    #[test]
    fn list_file_and_looping() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("x.png"), b"x").unwrap();
        std::fs::write(
            dir.path().join("list.txt"),
            "# frames\nx.png\n\nmissing.png  # gone\n",
        )
        .unwrap();
        let mut c = cfg(&dir.path().join("list.txt"));
        c.looping = true;
        let mut src = ReplaySource::new(&c).unwrap();
        let stop = StopSignal::new();
        let mut seen = Vec::new();
        for _ in 0..4 {
            let SourceEvent::Frame(f) = src.next(&stop) else {
                panic!("looping source ended")
            };
            seen.push((f.id, f.payload.is_ok()));
        }
        let want = [
            ("x.png", true),
            ("missing.png", false),
            ("x.png", true),
            ("missing.png", false),
        ];
        assert_eq!(seen, want.map(|(a, b)| (a.to_string(), b)));
    }

    #[test]
    fn empty_directory_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            ReplaySource::new(&cfg(dir.path())),
            Err(ReplayError::Empty { .. })
        ));
    }

    /// However slow the configured rate (the config refuses these; other callers may not), the
    /// interval and the schedule cannot panic: an unrepresentable wait lasts until stop.
    #[test]
    fn absurd_rates_do_not_panic() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("x.png"), b"x").unwrap();
        for fps in [1e-300, 5e-324, 1e-19, f64::MIN_POSITIVE, 1e300] {
            let mut c = cfg(dir.path());
            c.looping = true;
            c.fps = fps;
            let mut src = ReplaySource::new(&c).unwrap();
            let stop = StopSignal::new();
            assert!(matches!(src.next(&stop), SourceEvent::Frame(_)), "{fps}");
            let s2 = stop.clone();
            let t = std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(20));
                s2.raise();
            });
            let second = src.next(&stop);
            t.join().unwrap();
            match second {
                SourceEvent::End => assert!(fps < 1.0, "{fps}"),
                SourceEvent::Frame(_) => assert!(fps > 1.0, "{fps}"),
            }
        }
    }

    #[test]
    fn pacing_holds_the_rate_and_stops_promptly() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("x.png"), b"x").unwrap();
        let mut c = cfg(dir.path());
        c.looping = true;
        c.fps = 2.0;
        let mut src = ReplaySource::new(&c).unwrap();
        let stop = StopSignal::new();
        assert!(matches!(src.next(&stop), SourceEvent::Frame(_)));
        // the second frame is due 500 ms later; raising stop ends the wait at once
        let s2 = stop.clone();
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            s2.raise();
        });
        let start = Instant::now();
        assert!(matches!(src.next(&stop), SourceEvent::End));
        assert!(
            start.elapsed() < Duration::from_millis(450),
            "{:?}",
            start.elapsed()
        );
        t.join().unwrap();
    }
}
