//! Reading the daemon's input files (config, model, references, a replay list file): the path
//! must name a regular file (a symbolic link is followed) no larger than a cap, and both are
//! checked before a byte is read, so a FIFO, a device or a directory is refused at once
//! instead of blocking forever or growing memory without bound. The caps live in
//! `config::defaults`.

use std::fs::{File, Metadata};
use std::io::{self, Read};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::Path;

/// Why an input file was not read. Callers name the file and what it is for; these messages
/// say what is wrong with it.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    #[error("it is {0}, not a regular file")]
    NotAFile(&'static str),
    #[error("it is {size} bytes, more than the {limit} bytes allowed")]
    TooLarge { size: u64, limit: u64 },
    #[error("it is not UTF-8 text")]
    NotText(#[source] std::string::FromUtf8Error),
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// What a file that is not a regular file is, for the message.
fn kind(meta: &Metadata) -> Option<&'static str> {
    let t = meta.file_type();
    if t.is_file() {
        None
    } else if t.is_dir() {
        Some("a directory")
    } else if t.is_fifo() {
        Some("a FIFO (named pipe)")
    } else if t.is_char_device() {
        Some("a character device")
    } else if t.is_block_device() {
        Some("a block device")
    } else if t.is_socket() {
        Some("a socket")
    } else {
        Some("not a file")
    }
}

fn check(meta: &Metadata, limit: u64) -> Result<(), InputError> {
    if let Some(what) = kind(meta) {
        return Err(InputError::NotAFile(what));
    }
    if meta.len() > limit {
        return Err(InputError::TooLarge {
            size: meta.len(),
            limit,
        });
    }
    Ok(())
}

/// The bytes of the regular file at `path`, at most `limit` of them.
pub fn read(path: &Path, limit: u64) -> Result<Vec<u8>, InputError> {
    check(&std::fs::metadata(path)?, limit)?;
    // Non-blocking open: a path swapped for a FIFO after the check cannot block here; the
    // opened file is checked again, and reading stops one byte past the limit whatever the
    // file claims.
    let file = File::options()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)?;
    let meta = file.metadata()?;
    check(&meta, limit)?;
    let mut bytes = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
    file.take(limit.saturating_add(1)).read_to_end(&mut bytes)?;
    let size = bytes.len() as u64;
    if size > limit {
        return Err(InputError::TooLarge { size, limit });
    }
    Ok(bytes)
}

/// The text of the regular file at `path`, at most `limit` bytes of UTF-8.
pub fn read_to_string(path: &Path, limit: u64) -> Result<String, InputError> {
    String::from_utf8(read(path, limit)?).map_err(InputError::NotText)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_regular_files_within_the_limit_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        std::fs::write(&file, b"12345").unwrap();
        assert_eq!(read(&file, 5).unwrap(), b"12345");
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&file, &link).unwrap();
        assert_eq!(read_to_string(&link, 5).unwrap(), "12345");
        assert!(matches!(
            read(&file, 4),
            Err(InputError::TooLarge { size: 5, limit: 4 })
        ));
        let e = read(dir.path(), 1 << 20).unwrap_err();
        assert_eq!(e.to_string(), "it is a directory, not a regular file");
        let e = read(Path::new("/dev/zero"), 1 << 20).unwrap_err();
        assert!(
            matches!(e, InputError::NotAFile("a character device")),
            "{e}"
        );
        let e = read(&dir.path().join("missing"), 1).unwrap_err();
        assert!(matches!(e, InputError::Io(_)), "{e}");
    }
}
