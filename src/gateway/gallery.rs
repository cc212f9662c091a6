//! The page's gallery: the newest failure images in the daemon's failure directory
//! (`[failures]`), read-only. Only names the daemon's `FailureLog` writes are listed
//! (`failures::is_own_image`), and only those listed are served: opened without following a
//! symbolic link, a regular file, at most [`MAX_IMAGE_BYTES`].

use std::io::{self, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::failures::is_own_image;
use crate::wire::page::GalleryItem;

/// Directory entries looked at in one scan (a directory far beyond the daemon's quota is not
/// read to the end).
const MAX_SCAN: usize = 20_000;
pub const MAX_IMAGE_BYTES: u64 = 16 << 20;

/// `2026-11-29T100000.123456Z` → `2026-11-29T10:00:00.123456Z`.
fn stamp_to_rfc3339(stamp: &str) -> String {
    let (date, time) = stamp.split_once('T').unwrap_or((stamp, ""));
    if time.len() < 6 {
        return stamp.to_string();
    }
    format!("{date}T{}:{}:{}", &time[..2], &time[2..4], &time[4..])
}

/// The parts of an image name: (stamp, seq, verdict).
fn parse_name(name: &str) -> Option<(String, u64, String)> {
    if !is_own_image(name) || name.ends_with(".part") {
        return None;
    }
    let (stamp, rest) = name.split_once("-seq")?;
    let (seq, rest) = rest.split_once('-')?;
    let (verdict, _) = rest.split_once('-')?;
    Some((
        stamp_to_rfc3339(stamp),
        seq.parse().ok()?,
        verdict.to_string(),
    ))
}

/// The newest `n` images, newest first; `score` gives the scores the gateway knows by seq.
pub fn scan(
    dir: &Path,
    n: usize,
    score: impl Fn(u64) -> Option<f64>,
) -> io::Result<Vec<GalleryItem>> {
    let mut names: Vec<String> = Vec::new();
    for entry in std::fs::read_dir(dir)?.take(MAX_SCAN) {
        let Ok(entry) = entry else { continue };
        // Not a symbolic link or anything else the page could not be served.
        let regular = entry.file_type().is_ok_and(|t| t.is_file());
        if regular
            && let Some(name) = entry.file_name().to_str()
            && parse_name(name).is_some()
        {
            names.push(name.to_string());
        }
    }
    // The time stamp leads the name: a name sorts by when the image was saved.
    names.sort_unstable_by(|a, b| b.cmp(a));
    names.truncate(n);
    Ok(names
        .into_iter()
        .filter_map(|name| {
            let (at, seq, verdict) = parse_name(&name)?;
            Some(GalleryItem {
                url: format!("/failures/{name}"),
                score: score(seq),
                name,
                seq,
                verdict,
                at,
            })
        })
        .collect())
}

/// An image's bytes and content type, if `name` is in `items`.
pub fn read_image(
    dir: &Path,
    items: &[GalleryItem],
    name: &str,
) -> Option<(Vec<u8>, &'static str)> {
    items.iter().find(|i| i.name == name)?;
    let path: PathBuf = dir.join(name);
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(&path)
        .ok()?;
    let meta = file.metadata().ok()?;
    if !meta.is_file() || meta.len() > MAX_IMAGE_BYTES {
        return None;
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.take(MAX_IMAGE_BYTES).read_to_end(&mut bytes).ok()?;
    let kind = match name.rsplit_once('.').map(|(_, e)| e) {
        Some("png") => "image/png",
        Some("jpg" | "jpeg") => "image/jpeg",
        Some("bmp") => "image/bmp",
        _ => "application/octet-stream",
    };
    Some((bytes, kind))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_only_the_daemons_images_newest_first_and_serves_only_those() {
        let dir = tempfile::tempdir().unwrap();
        let names = [
            "2026-11-29T100000.000001Z-seq0000000001-fail-cell1.png",
            "2026-11-29T100001.000001Z-seq0000000002-error-cell2.png",
            "2026-11-29T100002.000001Z-seq0000000003-fail-cell3.png",
            "2026-11-29T100003.000001Z-seq0000000004-fail-cell4.part",
            "notes.txt",
        ];
        for n in names {
            std::fs::write(dir.path().join(n), b"x").unwrap();
        }
        std::os::unix::fs::symlink(
            "/etc/passwd",
            dir.path()
                .join("2026-11-29T100009.000001Z-seq0000000009-fail-x.png"),
        )
        .unwrap();
        let items = scan(dir.path(), 10, |s| (s == 3).then_some(0.9)).unwrap();
        let seqs: Vec<u64> = items.iter().map(|i| i.seq).collect();
        assert_eq!(
            seqs,
            vec![3, 2, 1],
            "no symlink, no partial file, no foreign name"
        );
        assert_eq!(items[0].score, Some(0.9));
        assert_eq!(items[0].at, "2026-11-29T10:00:02.000001Z");
        assert_eq!(items[1].verdict, "error");
        assert!(read_image(dir.path(), &items, &items[0].name).is_some());
        let mut with_link = items.clone();
        with_link.push(GalleryItem {
            name: "2026-11-29T100009.000001Z-seq0000000009-fail-x.png".into(),
            ..items[0].clone()
        });
        let link = &with_link[3].name;
        assert!(
            read_image(dir.path(), &with_link, link).is_none(),
            "a symlink is not followed"
        );
        assert!(read_image(dir.path(), &items, "notes.txt").is_none());
        assert!(read_image(dir.path(), &items, "../etc/passwd").is_none());
        assert_eq!(scan(dir.path(), 2, |_| None).unwrap().len(), 2);
    }
}
