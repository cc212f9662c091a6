//! Failure-image logging: frames whose verdict is `fail` or `error` (configurable) are saved to
//! a directory with a size quota, oldest removed first. A full or read-only disk is reported to
//! the caller (which logs it) and never stops inspection.
//!
//! File names sort by time: `<UTC time>-seq<seq>-<verdict>-<frame id>.<ext>`. Decoded frames are
//! saved as PNG; frames that arrived encoded keep their original bytes (so a corrupt file is kept
//! exactly as it came).
//!
//! The directory may hold other files: the log counts and removes only regular files whose name
//! is exactly its own pattern ([`is_own_image`]). Symlinks, directories, FIFOs and any other
//! name are never counted, followed or removed.

use std::collections::VecDeque;
use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::source::Payload;

#[derive(Debug, thiserror::Error)]
pub enum FailureLogError {
    #[error("cannot use failure-image directory {path}")]
    Dir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write failure image {path}: {reason}")]
    Write { path: PathBuf, reason: String },
    #[error("failure image of {bytes} bytes is larger than the whole quota ({quota} bytes)")]
    TooLarge { bytes: u64, quota: u64 },
}

pub struct FailureLog {
    dir: PathBuf,
    quota: u64,
    /// Files in the directory, oldest first, with their sizes.
    files: VecDeque<(PathBuf, u64)>,
    total: u64,
}

impl FailureLog {
    /// Opens (creating if needed) `dir` and takes stock of what it holds.
    pub fn open(dir: &Path, quota_bytes: u64) -> Result<Self, FailureLogError> {
        let err = |source| FailureLogError::Dir {
            path: dir.into(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(err)?;
        let mut files = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(err)? {
            let entry = entry.map_err(err)?;
            // `file_type` and `metadata` of a directory entry do not follow symlinks.
            let own = entry.file_type().map_err(err)?.is_file()
                && entry.file_name().to_str().is_some_and(is_own_image);
            if own {
                files.push((entry.path(), entry.metadata().map_err(err)?.len()));
            }
        }
        files.sort();
        let total = files.iter().map(|(_, n)| n).sum();
        Ok(Self {
            dir: dir.into(),
            quota: quota_bytes,
            files: files.into(),
            total,
        })
    }

    /// Bytes currently used.
    pub fn used(&self) -> u64 {
        self.total
    }

    /// Saves one frame; removes the oldest files first to stay within the quota.
    pub fn save(
        &mut self,
        seq: u64,
        verdict: &str,
        frame_id: &str,
        payload: &Payload,
    ) -> Result<PathBuf, FailureLogError> {
        let (bytes, ext) = match payload {
            Payload::Encoded(b) => (b.clone(), extension_of(frame_id)),
            Payload::Decoded(img) => {
                let mut out = Vec::new();
                img.write_to(&mut Cursor::new(&mut out), image::ImageFormat::Png)
                    .map_err(|e| FailureLogError::Write {
                        path: self.dir.clone(),
                        reason: e.to_string(),
                    })?;
                (out, "png".to_string())
            }
        };
        let size = bytes.len() as u64;
        if size > self.quota {
            return Err(FailureLogError::TooLarge {
                bytes: size,
                quota: self.quota,
            });
        }
        while self.total + size > self.quota {
            let Some((old, n)) = self.files.pop_front() else {
                break;
            };
            match remove_own(&old) {
                Ok(()) => self.total -= n,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => self.total -= n,
                Err(e) => {
                    self.files.push_front((old.clone(), n));
                    return Err(FailureLogError::Write {
                        path: old,
                        reason: format!("cannot remove to make room: {e}"),
                    });
                }
            }
        }
        let stamp = humantime::format_rfc3339_micros(SystemTime::now())
            .to_string()
            .replace(':', "");
        let name = format!(
            "{stamp}-seq{seq:010}-{verdict}-{}.{ext}",
            sanitize(frame_id)
        );
        let path = self.dir.join(name);
        let tmp = path.with_extension("part");
        // `create_new` never follows (or replaces) whatever is already at that name.
        let written = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .and_then(|mut f| std::io::Write::write_all(&mut f, &bytes))
            .and_then(|()| std::fs::rename(&tmp, &path));
        if let Err(e) = written {
            let _ = std::fs::remove_file(&tmp);
            return Err(FailureLogError::Write {
                path,
                reason: e.to_string(),
            });
        }
        self.total += size;
        self.files.push_back((path.clone(), size));
        Ok(path)
    }
}

/// Removes one of the log's own files, if it still is a regular file (never what replaced it).
fn remove_own(path: &Path) -> std::io::Result<()> {
    let meta = std::fs::symlink_metadata(path)?;
    if !meta.is_file() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            "no longer a regular file",
        ));
    }
    std::fs::remove_file(path)
}

/// Whether `name` is exactly what [`FailureLog::save`] writes:
/// `YYYY-MM-DDTHHMMSS.ffffffZ-seq<10 to 20 digits>-<fail|error>-<id>.<ext>` (the id: at most 64
/// of `[A-Za-z0-9_-]`; the extension: 1 to 5 lower-case letters or digits, `part` while writing).
pub fn is_own_image(name: &str) -> bool {
    const STAMP: &str = "dddd-dd-ddTdddddd.ddddddZ";
    let Some((stamp, rest)) = name.split_at_checked(STAMP.len()) else {
        return false;
    };
    let stamp_ok = stamp.bytes().zip(STAMP.bytes()).all(|(c, p)| {
        if p == b'd' {
            c.is_ascii_digit()
        } else {
            c == p
        }
    });
    let Some(rest) = rest.strip_prefix("-seq") else {
        return false;
    };
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    let Some(rest) = rest[digits..].strip_prefix('-') else {
        return false;
    };
    let Some(rest) = ["fail-", "error-"]
        .iter()
        .find_map(|v| rest.strip_prefix(v))
    else {
        return false;
    };
    let Some((id, ext)) = rest.rsplit_once('.') else {
        return false;
    };
    stamp_ok
        && (10..=20).contains(&digits)
        && id.len() <= 64
        && id
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
        && (1..=5).contains(&ext.len())
        && ext
            .bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
}

fn extension_of(frame_id: &str) -> String {
    Path::new(frame_id)
        .extension()
        .and_then(|e| e.to_str())
        .filter(|e| e.len() <= 5 && e.chars().all(|c| c.is_ascii_alphanumeric()))
        .map_or_else(|| "bin".to_string(), str::to_lowercase)
}

fn sanitize(id: &str) -> String {
    let stem = Path::new(id)
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or(id);
    stem.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .take(64)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn quota_removes_the_oldest_first() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = FailureLog::open(dir.path(), 250).unwrap();
        for seq in 1..=5u64 {
            log.save(
                seq,
                "fail",
                &format!("cell{seq}.png"),
                &Payload::Encoded(vec![seq as u8; 100]),
            )
            .unwrap();
        }
        let mut names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names.len(), 2, "{names:?}");
        assert!(
            names[0].contains("seq0000000004-fail-cell4.png"),
            "{names:?}"
        );
        assert!(
            names[1].contains("seq0000000005-fail-cell5.png"),
            "{names:?}"
        );
        assert_eq!(log.used(), 200);
        // a reopened log sees the files and keeps counting them
        let log = FailureLog::open(dir.path(), 250).unwrap();
        assert_eq!(log.used(), 200);
    }

    #[test]
    fn own_names_are_recognised_strictly() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = FailureLog::open(dir.path(), 10_000).unwrap();
        for (id, payload) in [
            ("cell 7.png", Payload::Encoded(vec![1])),
            ("", Payload::Encoded(vec![1])),
            ("x.JPEG", Payload::Encoded(vec![1])),
        ] {
            let p = log.save(12, "fail", id, &payload).unwrap();
            let name = p.file_name().unwrap().to_str().unwrap();
            assert!(is_own_image(name), "{name}");
        }
        for name in [
            "2026-11-28T161645.276158Z-seq0000000001-fail-cell.png",
            "2026-11-28T161645.276158Z-seq00000000000000000001-error-a-b_c.bin",
            "2026-11-28T161645.276158Z-seq0000000001-error-.part",
        ] {
            assert!(is_own_image(name), "{name}");
        }
        for name in [
            "references.safetensors",
            "2026-11-28T161645.276158Z-seq0000000001-pass-cell.png",
            "2026-11-28T161645.276158Z-seq1-fail-cell.png",
            "2026-11-28T16:16:45.276158Z-seq0000000001-fail-cell.png",
            "2026-11-28T161645.276158Z-seq0000000001-fail-cell.png.bak",
            "2026-11-28T161645.276158Z-seq0000000001-fail-ce ll.png",
            "2026-11-28T161645.276158Z-seq0000000001-fail-cell.PNG",
            "2026-11-28T161645.276158Z-seq0000000001-fail-cell",
            "x026-11-28T161645.276158Z-seq0000000001-fail-cell.png",
        ] {
            assert!(!is_own_image(name), "{name}");
        }
    }

    #[test]
    fn decoded_frames_become_png_and_oversize_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = FailureLog::open(dir.path(), 10_000).unwrap();
        let img =
            image::DynamicImage::ImageLuma8(image::GrayImage::from_pixel(4, 4, image::Luma([7])));
        let p = log.save(3, "error", "17", &Payload::Decoded(img)).unwrap();
        assert!(p.to_string_lossy().ends_with("-seq0000000003-error-17.png"));
        let back = image::open(&p).unwrap().into_luma8();
        assert_eq!(back.get_pixel(3, 3)[0], 7);
        let big = Payload::Encoded(vec![0; 20_000]);
        assert!(matches!(
            log.save(4, "fail", "x.png", &big),
            Err(FailureLogError::TooLarge { .. })
        ));
    }

    #[test]
    fn read_only_directory_is_an_error_not_a_panic() {
        if unsafe { libc::geteuid() } == 0 {
            // root ignores directory permissions; the error path is covered by a missing parent
            let mut log =
                FailureLog::open(&tempfile::tempdir().unwrap().path().join("d"), 1000).unwrap();
            log.dir = PathBuf::from("/proc/inspectord-no-such-dir");
            assert!(matches!(
                log.save(1, "fail", "a.png", &Payload::Encoded(vec![1])),
                Err(FailureLogError::Write { .. })
            ));
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let mut log = FailureLog::open(dir.path(), 1000).unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o500)).unwrap();
        assert!(matches!(
            log.save(1, "fail", "a.png", &Payload::Encoded(vec![1])),
            Err(FailureLogError::Write { .. })
        ));
    }
}
