//! Running under systemd: readiness and watchdog notifications (sd_notify(3)), the listening
//! socket passed by socket activation (sd_listen_fds(3)), and whether stderr is the journal.
//!
//! Everything here is a plain function or a small value; the pipeline decides when to notify.
//! Outside systemd (no `NOTIFY_SOCKET`, no `LISTEN_FDS`) each function is a no-op or `None`.

use std::net::TcpListener;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use sd_notify::NotifyState;

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("socket activation: {0}")]
    ListenFds(std::io::Error),
    #[error(
        "socket activation passed {0} sockets; inspectord serves exactly one (the verdict socket)"
    )]
    TooManySockets(usize),
    #[error(
        "socket activation passed fd {fd}, which is not a listening Unix stream socket ({what}); use ListenStream= with a path in the .socket unit"
    )]
    NotAUnixListener { fd: RawFd, what: String },
    #[error(
        "socket activation passed fd {fd}, which is not a listening TCP socket ({what}); use ListenStream= with a port in the .socket unit"
    )]
    NotATcpListener { fd: RawFd, what: String },
}

/// The service manager's notification socket (`NOTIFY_SOCKET`), and the watchdog interval it
/// asked for (`WATCHDOG_USEC`).
#[derive(Debug, Clone)]
pub struct Notifier {
    watchdog: Option<Duration>,
    /// A failing notification is logged once, not every second.
    failed: Arc<AtomicBool>,
}

impl Notifier {
    /// `Some` when started by a service manager that listens for notifications.
    pub fn from_env() -> Option<Notifier> {
        std::env::var_os("NOTIFY_SOCKET")?;
        Some(Notifier {
            watchdog: sd_notify::watchdog_enabled(),
            failed: Arc::new(AtomicBool::new(false)),
        })
    }

    /// How often the service manager wants `WATCHDOG=1`, at the latest.
    pub fn watchdog(&self) -> Option<Duration> {
        self.watchdog
    }

    fn send(&self, what: &str, states: &[NotifyState]) {
        match sd_notify::notify(states) {
            Ok(()) => {
                if self.failed.swap(false, Ordering::Relaxed) {
                    tracing::info!(what, "notifying the service manager works again");
                }
            }
            Err(e) => {
                if !self.failed.swap(true, Ordering::Relaxed) {
                    tracing::warn!(error = %e, what, "cannot notify the service manager");
                }
            }
        }
    }

    /// `READY=1` with a status line: start-up (or a reload) is complete.
    pub fn ready(&self, status: &str) {
        self.send("ready", &[NotifyState::Ready, NotifyState::Status(status)]);
    }

    /// `RELOADING=1` (with `MONOTONIC_USEC`, as `Type=notify-reload` requires).
    pub fn reloading(&self) {
        match NotifyState::monotonic_usec_now() {
            Ok(now) => self.send("reloading", &[NotifyState::Reloading, now]),
            Err(_) => self.send("reloading", &[NotifyState::Reloading]),
        }
    }

    /// `STOPPING=1`: shutdown has begun.
    pub fn stopping(&self, status: &str) {
        self.send(
            "stopping",
            &[NotifyState::Stopping, NotifyState::Status(status)],
        );
    }

    /// `STATUS=…`, shown by `systemctl status`.
    pub fn status(&self, status: &str) {
        self.send("status", &[NotifyState::Status(status)]);
    }

    /// `WATCHDOG=1`: the daemon is making progress.
    pub fn watchdog_ping(&self) {
        self.send("watchdog", &[NotifyState::Watchdog]);
    }
}

/// Whether the service manager passed this process a socket (socket activation), without
/// taking it: what `check` needs to know to validate a config as `run` will use it.
pub fn socket_passed() -> bool {
    sd_notify::listen_fds().is_ok_and(|fds| fds.len() > 0)
}

/// The listening socket passed by socket activation, if any. Takes it at most once per
/// process; later calls return `None`.
pub fn activated_listener() -> Result<Option<UnixListener>, ServiceError> {
    Ok(take_passed_fd(check_unix_listener)?.map(UnixListener::from))
}

/// The listening TCP socket passed by socket activation (the Modbus bridge's port), if any.
/// Takes it at most once per process; later calls return `None`.
pub fn activated_tcp_listener() -> Result<Option<TcpListener>, ServiceError> {
    Ok(take_passed_fd(check_tcp_listener)?.map(TcpListener::from))
}

/// The one descriptor passed by socket activation, checked by `check`, owned by the caller:
/// taken at most once per process (a process serves one passed socket).
fn take_passed_fd(
    check: fn(RawFd) -> Result<(), ServiceError>,
) -> Result<Option<OwnedFd>, ServiceError> {
    static TAKEN: AtomicBool = AtomicBool::new(false);
    let fds: Vec<RawFd> = sd_notify::listen_fds()
        .map_err(ServiceError::ListenFds)?
        .collect();
    match fds.as_slice() {
        [] => Ok(None),
        [fd] => {
            if TAKEN.swap(true, Ordering::SeqCst) {
                return Ok(None);
            }
            check(*fd)?;
            // SAFETY: the service manager passed this descriptor to this process (LISTEN_PID
            // matched) for it to own; TAKEN makes sure it is wrapped only once.
            Ok(Some(unsafe { OwnedFd::from_raw_fd(*fd) }))
        }
        more => Err(ServiceError::TooManySockets(more.len())),
    }
}

fn check_tcp_listener(fd: RawFd) -> Result<(), ServiceError> {
    let not = |what| ServiceError::NotATcpListener { fd, what };
    let (domain, kind, listening) = socket_kind(fd).map_err(not)?;
    let inet = domain == libc::AF_INET || domain == libc::AF_INET6;
    if !inet || kind != libc::SOCK_STREAM || !listening {
        return Err(not(format!(
            "domain {domain}, type {kind}, listening {listening}"
        )));
    }
    Ok(())
}

fn check_unix_listener(fd: RawFd) -> Result<(), ServiceError> {
    let not = |what| ServiceError::NotAUnixListener { fd, what };
    let (domain, kind, listening) = socket_kind(fd).map_err(not)?;
    if domain != libc::AF_UNIX || kind != libc::SOCK_STREAM || !listening {
        return Err(not(format!(
            "domain {domain}, type {kind}, listening {listening}"
        )));
    }
    Ok(())
}

/// A socket's domain, type and whether it listens (`getsockopt`), or why that is unknown.
fn socket_kind(fd: RawFd) -> Result<(libc::c_int, libc::c_int, bool), String> {
    let opt = |name: libc::c_int| -> Result<libc::c_int, String> {
        let mut value: libc::c_int = 0;
        let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: getsockopt writes at most `len` bytes into `value`, an int, as asked.
        let rc = unsafe {
            libc::getsockopt(
                fd,
                libc::SOL_SOCKET,
                name,
                (&mut value as *mut libc::c_int).cast(),
                &mut len,
            )
        };
        if rc == 0 {
            Ok(value)
        } else {
            Err(std::io::Error::last_os_error().to_string())
        }
    };
    Ok((
        opt(libc::SO_DOMAIN)?,
        opt(libc::SO_TYPE)?,
        opt(libc::SO_ACCEPTCONN)? != 0,
    ))
}

/// True when stderr is connected to the journal (`JOURNAL_STREAM` names stderr's device and
/// inode), i.e. the daemon runs under systemd with `StandardError=journal`.
pub fn stderr_is_journal() -> bool {
    let Some(stream) = std::env::var_os("JOURNAL_STREAM") else {
        return false;
    };
    let Some((dev, ino)) = stream.to_str().and_then(|s| s.split_once(':')) else {
        return false;
    };
    let (Ok(dev), Ok(ino)) = (dev.parse::<u64>(), ino.parse::<u64>()) else {
        return false;
    };
    std::fs::metadata("/proc/self/fd/2").is_ok_and(|m| m.dev() == dev && m.ino() == ino)
}

/// The syslog priority of a tracing level (sd-daemon(3) `<N>` prefixes, journald `PRIORITY=`).
pub fn syslog_priority(level: &tracing::Level) -> u8 {
    match *level {
        tracing::Level::ERROR => 3,
        tracing::Level::WARN => 4,
        tracing::Level::INFO => 6,
        tracing::Level::DEBUG | tracing::Level::TRACE => 7,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_non_listening_socket_is_refused() {
        let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
        use std::os::fd::AsRawFd;
        let err = check_unix_listener(a.as_raw_fd()).unwrap_err();
        assert!(err.to_string().contains("listening false"), "{err}");
        let dir = tempfile::tempdir().unwrap();
        let l = UnixListener::bind(dir.path().join("s")).unwrap();
        check_unix_listener(l.as_raw_fd()).unwrap();
        assert!(check_tcp_listener(l.as_raw_fd()).is_err());
        let t = TcpListener::bind("127.0.0.1:0").unwrap();
        check_tcp_listener(t.as_raw_fd()).unwrap();
        assert!(check_unix_listener(t.as_raw_fd()).is_err());
    }

    #[test]
    fn priorities_follow_syslog() {
        assert_eq!(syslog_priority(&tracing::Level::ERROR), 3);
        assert_eq!(syslog_priority(&tracing::Level::WARN), 4);
        assert_eq!(syslog_priority(&tracing::Level::INFO), 6);
        assert_eq!(syslog_priority(&tracing::Level::DEBUG), 7);
    }
}
