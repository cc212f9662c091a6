//! User and group names → ids, through the system's user database (`getpwnam_r`,
//! `getgrnam_r`), for `[control] users` and `groups`. A name made of digits is an id.

use std::ffi::CString;

/// The user id of `name` (or `name` itself when it is a number).
pub fn uid_of(name: &str) -> Option<u32> {
    if let Ok(id) = name.parse() {
        return Some(id);
    }
    let c = CString::new(name).ok()?;
    let mut buf = vec![0 as libc::c_char; 1024];
    loop {
        // SAFETY: a zeroed `passwd` is a valid out-parameter; `c` is NUL-terminated; `buf`
        // outlives the call and its length is passed; `pw_uid` is read only when an entry was
        // found.
        let (rc, uid) = unsafe {
            let mut pwd: libc::passwd = std::mem::zeroed();
            let mut found: *mut libc::passwd = std::ptr::null_mut();
            let rc = libc::getpwnam_r(
                c.as_ptr(),
                &mut pwd,
                buf.as_mut_ptr(),
                buf.len(),
                &mut found,
            );
            (rc, (!found.is_null()).then_some(pwd.pw_uid))
        };
        match rc {
            libc::ERANGE if buf.len() < 1 << 20 => buf.resize(buf.len() * 4, 0),
            0 => return uid,
            _ => return None,
        }
    }
}

/// The group id of `name` (or `name` itself when it is a number).
pub fn gid_of(name: &str) -> Option<u32> {
    if let Ok(id) = name.parse() {
        return Some(id);
    }
    let c = CString::new(name).ok()?;
    let mut buf = vec![0 as libc::c_char; 1024];
    loop {
        // SAFETY: as in `uid_of`, with `group`.
        let (rc, gid) = unsafe {
            let mut grp: libc::group = std::mem::zeroed();
            let mut found: *mut libc::group = std::ptr::null_mut();
            let rc = libc::getgrnam_r(
                c.as_ptr(),
                &mut grp,
                buf.as_mut_ptr(),
                buf.len(),
                &mut found,
            );
            (rc, (!found.is_null()).then_some(grp.gr_gid))
        };
        match rc {
            libc::ERANGE if buf.len() < 1 << 20 => buf.resize(buf.len() * 4, 0),
            0 => return gid,
            _ => return None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_numbers_resolve() {
        assert_eq!(uid_of("root"), Some(0));
        assert_eq!(gid_of("root"), Some(0));
        assert_eq!(uid_of("1234"), Some(1234));
        assert_eq!(uid_of("no-such-user-here"), None);
        assert_eq!(gid_of("no-such-group-here"), None);
    }
}
