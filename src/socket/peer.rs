//! Who is on the other end of a connection (`SO_PEERCRED`, `SO_PEERGROUPS`) and whether it may
//! command the daemon.

use std::io;
use std::os::fd::AsRawFd;

/// A connected peer's credentials, read once at accept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    pub uid: u32,
    pub gid: u32,
    pub pid: i32,
    /// Supplementary groups (empty where the kernel cannot say: Linux < 4.13).
    pub groups: Vec<u32>,
}

impl Peer {
    /// The credentials of the process at the other end of `fd`.
    pub fn of(fd: &impl AsRawFd) -> io::Result<Peer> {
        let fd = fd.as_raw_fd();
        let mut cred = libc::ucred {
            pid: 0,
            uid: 0,
            gid: 0,
        };
        let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
        // SAFETY: `cred` is a valid `ucred` and `len` its size; the kernel writes at most `len`.
        let rc = unsafe {
            libc::getsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_PEERCRED,
                (&mut cred as *mut libc::ucred).cast(),
                &mut len,
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Peer {
            uid: cred.uid,
            gid: cred.gid,
            pid: cred.pid,
            groups: peer_groups(fd).unwrap_or_default(),
        })
    }
}

/// `SO_PEERGROUPS`, with a buffer that grows until the kernel's list fits.
fn peer_groups(fd: i32) -> io::Result<Vec<u32>> {
    let mut groups: Vec<libc::gid_t> = vec![0; 32];
    loop {
        let mut len = (groups.len() * std::mem::size_of::<libc::gid_t>()) as libc::socklen_t;
        // SAFETY: `groups` has room for `len` bytes; the kernel writes at most `len` and sets
        // `len` to the size it needs (ERANGE) or wrote.
        let rc = unsafe {
            libc::getsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_PEERGROUPS,
                groups.as_mut_ptr().cast(),
                &mut len,
            )
        };
        let n = len as usize / std::mem::size_of::<libc::gid_t>();
        if rc == 0 {
            groups.truncate(n);
            return Ok(groups);
        }
        let e = io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::ERANGE) && n > groups.len() && n <= 1 << 16 {
            groups.resize(n, 0);
        } else {
            return Err(e);
        }
    }
}

/// Who may send `trigger` and `report`: root, the users, and members of the groups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControlPolicy {
    users: Vec<u32>,
    groups: Vec<u32>,
}

impl ControlPolicy {
    /// `[control] users` and `groups`; both empty: the daemon's own user and group.
    pub fn new(users: Vec<u32>, groups: Vec<u32>) -> ControlPolicy {
        if users.is_empty() && groups.is_empty() {
            // SAFETY: getuid and getgid cannot fail.
            let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
            return ControlPolicy {
                users: vec![uid],
                groups: vec![gid],
            };
        }
        ControlPolicy { users, groups }
    }

    pub fn permits(&self, peer: &Peer) -> bool {
        peer.uid == 0
            || self.users.contains(&peer.uid)
            || self.groups.contains(&peer.gid)
            || peer.groups.iter().any(|g| self.groups.contains(g))
    }
}

/// `root, uids [..], gids [..]`: who may command, as `check` shows it.
impl std::fmt::Display for ControlPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "root, uids {:?}, gids {:?}", self.users, self.groups)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_socket_pair_shows_this_process() {
        let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
        let peer = Peer::of(&a).unwrap();
        // SAFETY: plain libc getters.
        let (uid, gid, pid) = unsafe { (libc::getuid(), libc::getgid(), libc::getpid()) };
        assert_eq!((peer.uid, peer.gid, peer.pid), (uid, gid, pid));
    }

    #[test]
    fn policy() {
        let peer = |uid, gid, groups: &[u32]| Peer {
            uid,
            gid,
            pid: 1,
            groups: groups.to_vec(),
        };
        let p = ControlPolicy::new(vec![1000], vec![50]);
        assert!(p.permits(&peer(0, 0, &[])));
        assert!(p.permits(&peer(1000, 1000, &[])));
        assert!(p.permits(&peer(1001, 50, &[])));
        assert!(p.permits(&peer(1001, 1001, &[7, 50])));
        assert!(!p.permits(&peer(1001, 1001, &[7])));
    }
}
