//! The process walls: a clean start (no inherited fds or environment, umask 077), the
//! switch away from root with every capability dropped, no core dumps, no ptrace by
//! the same user (`PR_SET_DUMPABLE=0`) and `no_new_privs`. Locked memory is in `memory.rs`.

use std::ffi::OsString;
use std::os::fd::RawFd;

use nix::unistd::{Gid, Group, Uid, User};
use rustix::process::{DumpableBehavior, Resource, Rlimit, getrlimit, setrlimit};
use rustix::thread::{CapabilitySet, CapabilitySets};

use super::SandboxError;

/// Close every fd above 2 that is not in `keep`, with `close_range(2)` (Linux >= 5.9) on
/// the gaps between the kept fds, so it works without /proc.
pub fn close_inherited_fds(keep: &[RawFd]) -> Result<(), SandboxError> {
    let mut kept: Vec<u32> = keep
        .iter()
        .filter_map(|fd| u32::try_from(*fd).ok())
        .filter(|fd| *fd > 2)
        .collect();
    kept.sort_unstable();
    kept.dedup();
    let mut first = 3_u32;
    for k in kept.iter().copied().chain(std::iter::once(u32::MAX)) {
        if k > first {
            let last = if k == u32::MAX { u32::MAX } else { k - 1 };
            close_range(first, last)?;
        }
        first = k.saturating_add(1);
    }
    Ok(())
}

fn close_range(first: u32, last: u32) -> Result<(), SandboxError> {
    // SAFETY: sanitize_process runs first thing in main, while the process is single
    // threaded and no Rust object owns an inherited fd (std opens none above 2 at start),
    // so closing these numbers cannot invalidate an OwnedFd/File held elsewhere.
    #[allow(unsafe_code)]
    let rc = unsafe { libc::syscall(libc::SYS_close_range, first, last, 0_u32) };
    if rc != 0 {
        let e = std::io::Error::last_os_error();
        return Err(SandboxError::Sanitize(format!(
            "close_range({first}, {last}) failed: {e}; the kernel needs Linux >= 5.9"
        )));
    }
    Ok(())
}

/// Remove every environment variable not named in `keep`.
pub fn clear_environment(keep: &[&str]) {
    let doomed: Vec<OsString> = std::env::vars_os()
        .map(|(k, _)| k)
        .filter(|k| !keep.iter().any(|kept| k.as_os_str() == *kept))
        .collect();
    for key in doomed {
        // SAFETY: called from sanitize_process, whose contract is that the process is still
        // single threaded, so no other thread can read the environment concurrently.
        #[allow(unsafe_code)]
        unsafe {
            std::env::remove_var(&key);
        }
    }
}

/// Resolved (uid, gid) of the configured user and group.
pub fn resolve_user(user: &str, group: &str) -> Result<(Uid, Gid), SandboxError> {
    let u = User::from_name(user)
        .map_err(|e| SandboxError::PrivilegeDrop(format!("cannot look up user {user}: {e}")))?
        .ok_or_else(|| {
            SandboxError::PrivilegeDrop(format!(
                "user {user} does not exist; create it or fix run_as"
            ))
        })?;
    let g = Group::from_name(group)
        .map_err(|e| SandboxError::PrivilegeDrop(format!("cannot look up group {group}: {e}")))?
        .ok_or_else(|| {
            SandboxError::PrivilegeDrop(format!(
                "group {group} does not exist; create it or fix run_as"
            ))
        })?;
    if u.uid.is_root() || g.gid.as_raw() == 0 {
        return Err(SandboxError::PrivilegeDrop(format!(
            "run_as {user}:{group} is root; name an unprivileged user and group"
        )));
    }
    Ok((u.uid, g.gid))
}

/// Switch from root to `uid`/`gid` for good: empty the capability bounding set, drop supplementary groups, set all three gids and
/// uids (glibc applies them to every thread), then prove root cannot be regained.
pub fn drop_root(uid: Uid, gid: Gid) -> Result<(), SandboxError> {
    let err =
        |what: &str, e: &dyn std::fmt::Display| SandboxError::PrivilegeDrop(format!("{what}: {e}"));
    empty_bounding_set()?;
    nix::unistd::setgroups(&[]).map_err(|e| err("setgroups([])", &e))?;
    nix::unistd::setresgid(gid, gid, gid).map_err(|e| err("setresgid", &e))?;
    nix::unistd::setresuid(uid, uid, uid).map_err(|e| err("setresuid", &e))?;

    let ids = nix::unistd::getresuid().map_err(|e| err("getresuid", &e))?;
    let gids = nix::unistd::getresgid().map_err(|e| err("getresgid", &e))?;
    if [ids.real, ids.effective, ids.saved] != [uid; 3]
        || [gids.real, gids.effective, gids.saved] != [gid; 3]
    {
        return Err(SandboxError::PrivilegeDrop(
            "uids/gids did not all change".into(),
        ));
    }
    if !nix::unistd::getgroups()
        .map_err(|e| err("getgroups", &e))?
        .is_empty()
    {
        return Err(SandboxError::PrivilegeDrop(
            "supplementary groups remain".into(),
        ));
    }
    if nix::unistd::setuid(Uid::from_raw(0)).is_ok()
        || nix::unistd::setgid(Gid::from_raw(0)).is_ok()
    {
        return Err(SandboxError::PrivilegeDrop(
            "root could be regained after the switch".into(),
        ));
    }
    Ok(())
}

/// Remove every capability from the bounding set (needs CAP_SETPCAP, i.e. root).
fn empty_bounding_set() -> Result<(), SandboxError> {
    for bit in 0..64 {
        let cap = CapabilitySet::from_bits_retain(1 << bit);
        match rustix::thread::capability_is_in_bounding_set(cap) {
            Ok(true) => rustix::thread::remove_capability_from_bounding_set(cap).map_err(|e| {
                SandboxError::PrivilegeDrop(format!(
                    "cannot drop capability {bit} from the bounding set: {e}"
                ))
            })?,
            Ok(false) => {}
            Err(_) => break, // EINVAL: past the kernel's last capability
        }
    }
    Ok(())
}

/// Drop every capability this thread still holds (effective, permitted, inheritable,
/// ambient) and check that none is left. Works for any uid: dropping needs no privilege.
pub fn drop_capabilities() -> Result<(), SandboxError> {
    let err =
        |what: &str, e: rustix::io::Errno| SandboxError::PrivilegeDrop(format!("{what}: {e}"));
    rustix::thread::clear_ambient_capability_set()
        .map_err(|e| err("clear ambient capabilities", e))?;
    let held = |sets: &CapabilitySets| {
        !(sets.effective.is_empty() && sets.permitted.is_empty() && sets.inheritable.is_empty())
    };
    // capset only when something is held: under systemd (User=, empty bounding set) there
    // is nothing to drop, and the unit's SystemCallFilter=~@privileged forbids capset.
    if held(&rustix::thread::capabilities(None).map_err(|e| err("capget", e))?) {
        let empty = CapabilitySets {
            effective: CapabilitySet::empty(),
            permitted: CapabilitySet::empty(),
            inheritable: CapabilitySet::empty(),
        };
        rustix::thread::set_capabilities(None, empty).map_err(|e| err("capset", e))?;
    }
    let now = rustix::thread::capabilities(None).map_err(|e| err("capget", e))?;
    if held(&now) {
        return Err(SandboxError::PrivilegeDrop(format!(
            "capabilities remain: {now:?}"
        )));
    }
    Ok(())
}

/// Non-dumpable (no core, no ptrace or `/proc/<pid>/mem` by the same uid), RLIMIT_CORE=0,
/// and no_new_privs (no setuid binary or file capability can ever raise privileges).
pub fn forbid_dumps_and_new_privileges() -> Result<(), SandboxError> {
    let err = |what: &str, e: rustix::io::Errno| SandboxError::Harden(format!("{what}: {e}"));
    rustix::process::set_dumpable_behavior(DumpableBehavior::NotDumpable)
        .map_err(|e| err("PR_SET_DUMPABLE 0", e))?;
    let no_core = Rlimit {
        current: Some(0),
        maximum: Some(0),
    };
    // Set only when not already 0/0 (systemd LimitCORE=0; its ~@resources filter forbids
    // setrlimit), then checked either way.
    if getrlimit(Resource::Core) != no_core {
        setrlimit(Resource::Core, no_core).map_err(|e| err("RLIMIT_CORE 0", e))?;
    }
    if getrlimit(Resource::Core) != no_core {
        return Err(SandboxError::Harden("RLIMIT_CORE is not 0".into()));
    }
    rustix::thread::set_no_new_privs(true).map_err(|e| err("PR_SET_NO_NEW_PRIVS", e))?;
    if rustix::process::dumpable_behavior().map_err(|e| err("PR_GET_DUMPABLE", e))?
        != DumpableBehavior::NotDumpable
    {
        return Err(SandboxError::Harden("the process is still dumpable".into()));
    }
    Ok(())
}
