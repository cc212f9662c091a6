//! Replay of recorded images: a directory (files with the configured extensions, sorted by file
//! name) or a list file (one path per line, relative to the list file; `#` starts a comment),
//! as fast as the pipeline takes them or paced at a fixed rate, optionally looping.

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

pub struct ReplaySource {
    files: Vec<PathBuf>,
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
        let payload = std::fs::read(path)
            .map(Payload::Encoded)
            .map_err(|e| format!("cannot read {}: {e}", path.display()));
        SourceEvent::Frame(SourceFrame {
            id,
            part: None,
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
        }
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
