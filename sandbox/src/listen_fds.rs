//! Taking the systemd-activated listening socket (`LISTEN_FDS`, sd_listen_fds(3)): the one
//! raw-fd operation of the start-up, kept here with the other unsafe code of the walls. Call
//! it before the daemon's `confine` (the socket must exist before seccomp forbids socket(2)),
//! and keep `LISTEN_PID`/`LISTEN_FDS` and fd 3 through [`crate::sanitize_process`].

use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixListener;

/// The first fd systemd passes (SD_LISTEN_FDS_START).
pub const LISTEN_FDS_START: RawFd = 3;

/// The environment variables socket activation needs (pass them to `sanitize_process`).
pub const LISTEN_ENV: &[&str] = &["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"];

/// Takes fd 3 when `LISTEN_PID` is this process and `LISTEN_FDS` is 1.
pub fn systemd_listener() -> Result<UnixListener, String> {
    let pid = std::env::var("LISTEN_PID")
        .ok()
        .and_then(|v| v.parse::<u32>().ok());
    let fds = std::env::var("LISTEN_FDS")
        .ok()
        .and_then(|v| v.parse::<u32>().ok());
    match (pid, fds) {
        (Some(pid), Some(1)) if pid == std::process::id() => {}
        (Some(pid), Some(n)) if pid == std::process::id() => {
            return Err(format!(
                "systemd passed {n} sockets; the signer takes exactly one"
            ));
        }
        _ => {
            return Err(
                "no --socket given and no systemd-activated socket (LISTEN_FDS) for this \
                        process; pass --socket PATH or start vigil-signer.socket"
                    .into(),
            );
        }
    }
    // SAFETY: LISTEN_PID names this process, so systemd handed us fd 3 and nothing else in
    // the process owns it (this function is called once, at start-up). Ownership moves
    // here; if fd 3 is not an open socket, fstat below says so and dropping it closes
    // nothing that another owner holds.
    #[allow(unsafe_code)]
    let owned = unsafe { OwnedFd::from_raw_fd(LISTEN_FDS_START) };
    let stat = rustix::fs::fstat(&owned)
        .map_err(|e| format!("fd {LISTEN_FDS_START} from systemd is not usable: {e}"))?;
    if rustix::fs::FileType::from_raw_mode(stat.st_mode) != rustix::fs::FileType::Socket {
        return Err(format!(
            "fd {LISTEN_FDS_START} from systemd is not a socket"
        ));
    }
    Ok(UnixListener::from(owned))
}
