//! Dropping privileges once every socket is bound (the pattern of `chronyd -u`): switch to the
//! configured user and keep CAP_SYS_TIME only for the system clock, nothing otherwise.
//!
//! Linux capabilities belong to threads, not processes, and a new thread copies its creator's.
//! So the daemon starts the server workers from a helper thread that first narrows its own set to
//! what binding needs, and switches user and narrows the main thread before the async runtime
//! (whose threads adjust the clock) is built. A user switch reaches every thread: glibc runs
//! setresuid in each, and threads without PR_SET_KEEPCAPS lose every capability with uid 0.

use std::ffi::CString;
use std::io;
use std::path::Path;

use caps::{CapSet, Capability, CapsHashSet};

use crate::config::{ClockMode, Config};

/// A privilege change that failed: the daemon does not start.
#[derive(Debug, thiserror::Error)]
pub enum PrivilegeError {
    /// `[daemon] user` names no account.
    #[error(
        "[daemon] user {0:?} does not exist; create it (useradd --system {0}) or change the configuration"
    )]
    NoSuchUser(String),
    /// A user switch was asked for by a process that cannot switch.
    #[error("[daemon] user {name:?}: switching users needs a start as root (running as uid {uid})")]
    NotRoot {
        /// The configured user.
        name: String,
        /// Our effective uid.
        uid: u32,
    },
    /// A system call failed.
    #[error("{call} failed: {source}")]
    Call {
        /// Which call.
        call: &'static str,
        /// Why.
        source: io::Error,
    },
    /// Reading or changing capabilities failed.
    #[error("cannot change capabilities: {0}")]
    Capabilities(String),
}

/// A system account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    /// Its name.
    pub name: String,
    /// User ID.
    pub uid: u32,
    /// Primary group ID.
    pub gid: u32,
}

/// What the daemon keeps after start.
#[derive(Debug, Clone)]
pub struct Privileges {
    /// The user to switch to, when it is not already the one running.
    switch_to: Option<Account>,
    /// Keep CAP_SYS_TIME (system clock).
    keep_clock: bool,
    /// A listen port below 1024 needs CAP_NET_BIND_SERVICE while binding.
    low_ports: bool,
}

impl Privileges {
    /// Looks up the configured user and checks that the switch can happen.
    pub fn plan(config: &Config) -> Result<Self, PrivilegeError> {
        let switch_to = match &config.daemon.user {
            Some(name) => {
                let account = lookup(name)?;
                let euid = effective_uid();
                match euid {
                    uid if uid == account.uid => None,
                    0 => Some(account),
                    uid => {
                        return Err(PrivilegeError::NotRoot {
                            name: name.clone(),
                            uid,
                        });
                    }
                }
            }
            None => None,
        };
        let low_ports = config
            .server
            .iter()
            .flat_map(|s| &s.listen)
            .any(|a| a.port() < 1024);
        Ok(Self {
            switch_to,
            keep_clock: config.clock.mode == ClockMode::System,
            low_ports,
        })
    }

    /// Narrows the calling thread to what binding the server sockets and the later user switch
    /// need; the server workers it then starts inherit exactly that.
    pub fn enter_server_thread(&self) -> Result<(), PrivilegeError> {
        let mut keep = Vec::new();
        if self.low_ports {
            keep.push(Capability::CAP_NET_BIND_SERVICE);
        }
        if self.switch_to.is_some() {
            // Every thread runs the setres[ug]id of a switch; they must all be allowed to.
            keep.extend([Capability::CAP_SETUID, Capability::CAP_SETGID]);
        }
        keep_only(&keep).map(drop)
    }

    /// Hands `owned` (the control socket) to the user, switches to it, and keeps only what the
    /// clock needs in this thread. Returns the capabilities kept, for the log.
    pub fn drop_for_good(&self, owned: &[&Path]) -> Result<String, PrivilegeError> {
        if let Some(account) = &self.switch_to {
            for path in owned {
                std::os::unix::fs::chown(path, Some(account.uid), Some(account.gid)).map_err(
                    |source| PrivilegeError::Call {
                        call: "chown",
                        source,
                    },
                )?;
            }
            switch_user(account)?;
        }
        let wanted: &[Capability] = if self.keep_clock {
            &[Capability::CAP_SYS_TIME]
        } else {
            &[]
        };
        let kept = keep_only(wanted)?;
        if self.keep_clock && kept.is_empty() {
            tracing::warn!(
                "no CAP_SYS_TIME: clock adjustments will fail; start as root or with CAP_SYS_TIME"
            );
        }
        let mut names: Vec<String> = kept.iter().map(ToString::to_string).collect();
        names.sort();
        Ok(if names.is_empty() {
            "none".to_owned()
        } else {
            names.join(" ")
        })
    }

    /// The uid the daemon runs as once started: the configured user's, else this process's.
    pub fn uid(&self) -> u32 {
        self.switch_to
            .as_ref()
            .map_or_else(effective_uid, |account| account.uid)
    }

    /// True if start-up switches user.
    pub fn switches_user(&self) -> bool {
        self.switch_to.is_some()
    }
}

/// The account called `name`, from the password database.
pub fn lookup(name: &str) -> Result<Account, PrivilegeError> {
    let c_name = CString::new(name).map_err(|_| PrivilegeError::NoSuchUser(name.to_owned()))?;
    let mut buffer: Vec<libc::c_char> = vec![0; 1024];
    loop {
        // SAFETY: passwd is a plain C struct; all-zero (null pointers) is a valid value.
        let mut entry: libc::passwd = unsafe { std::mem::zeroed() };
        let mut found: *mut libc::passwd = std::ptr::null_mut();
        // SAFETY: every pointer is valid for the call: a NUL-terminated name, an entry and a
        // buffer of the length passed, owned by this frame; `found` is an out-pointer.
        let rc = unsafe {
            libc::getpwnam_r(
                c_name.as_ptr(),
                &mut entry,
                buffer.as_mut_ptr(),
                buffer.len(),
                &mut found,
            )
        };
        match rc {
            libc::ERANGE if buffer.len() < 1 << 20 => buffer.resize(buffer.len() * 2, 0),
            0 if found.is_null() => return Err(PrivilegeError::NoSuchUser(name.to_owned())),
            0 => {
                return Ok(Account {
                    name: name.to_owned(),
                    uid: entry.pw_uid,
                    gid: entry.pw_gid,
                });
            }
            error => {
                return Err(PrivilegeError::Call {
                    call: "getpwnam_r",
                    source: io::Error::from_raw_os_error(error),
                });
            }
        }
    }
}

/// The effective user ID of this thread.
pub fn effective_uid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

fn check(result: libc::c_int, call: &'static str) -> Result<(), PrivilegeError> {
    if result == 0 {
        Ok(())
    } else {
        Err(PrivilegeError::Call {
            call,
            source: io::Error::last_os_error(),
        })
    }
}

/// Switches real, effective and saved IDs of every thread, supplementary groups cleared; this
/// thread keeps its permitted capabilities (PR_SET_KEEPCAPS) so that it can keep CAP_SYS_TIME.
fn switch_user(account: &Account) -> Result<(), PrivilegeError> {
    let (uid, gid) = (account.uid, account.gid);
    set_keep_caps(true)?;
    // SAFETY: setgroups with size 0 reads no memory; glibc applies it to every thread.
    check(unsafe { libc::setgroups(0, std::ptr::null()) }, "setgroups")?;
    // SAFETY: integer arguments only; glibc applies it to every thread.
    check(unsafe { libc::setresgid(gid, gid, gid) }, "setresgid")?;
    // SAFETY: integer arguments only; glibc applies it to every thread.
    check(unsafe { libc::setresuid(uid, uid, uid) }, "setresuid")?;
    set_keep_caps(false)
}

/// Sets this thread's PR_SET_KEEPCAPS flag: keep the permitted set across a switch from uid 0.
fn set_keep_caps(keep: bool) -> Result<(), PrivilegeError> {
    let flag = libc::c_ulong::from(keep);
    // SAFETY: prctl with integer arguments only; it changes a flag of this thread.
    let result = unsafe { libc::prctl(libc::PR_SET_KEEPCAPS, flag, 0, 0, 0) };
    check(result, "prctl(PR_SET_KEEPCAPS)")
}

/// Reduces this thread's capabilities to `wanted` (those of them it has); returns what it kept.
/// Drops every capability the calling thread still holds (the server workers, once the daemon's
/// privileges are settled).
pub fn drop_all_in_this_thread() -> Result<(), PrivilegeError> {
    keep_only(&[]).map(drop)
}

fn keep_only(wanted: &[Capability]) -> Result<CapsHashSet, PrivilegeError> {
    let error = |e: caps::errors::CapsError| PrivilegeError::Capabilities(e.to_string());
    let permitted = caps::read(None, CapSet::Permitted).map_err(error)?;
    let keep: CapsHashSet = wanted
        .iter()
        .copied()
        .filter(|c| permitted.contains(c))
        .collect();
    caps::clear(None, CapSet::Ambient).map_err(error)?;
    caps::clear(None, CapSet::Inheritable).map_err(error)?;
    caps::set(None, CapSet::Effective, &keep).map_err(error)?;
    caps::set(None, CapSet::Permitted, &keep).map_err(error)?;
    Ok(keep)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_and_nobody_are_found_and_nonsense_is_not() {
        let root = lookup("root").expect("root exists");
        assert_eq!((root.uid, root.gid), (0, 0));
        assert!(matches!(
            lookup("no-such-user-ntpd-lite"),
            Err(PrivilegeError::NoSuchUser(_))
        ));
        assert!(matches!(
            lookup("nul\0byte"),
            Err(PrivilegeError::NoSuchUser(_))
        ));
    }

    #[test]
    fn a_thread_narrowed_to_nothing_has_nothing() {
        // In a thread of its own: capabilities are per thread, the test runner's stay.
        let kept = std::thread::spawn(|| {
            keep_only(&[]).expect("narrowing is always allowed");
            caps::read(None, CapSet::Effective).expect("read")
        })
        .join()
        .expect("thread");
        assert!(kept.is_empty(), "{kept:?}");
    }
}
