//! The development approver peer: the uid that the signer serves as the **approver**
//! (`docs/protocol.md`, "Roles"), and a connection made as that uid. `vigil demo` and the
//! tests answer what awaits the operator through it, as `vigil-approver` does on an appliance;
//! the process that asks (root, in the role of the orchestrator) never carries the code.
//!
//! A connection's role is the uid the signer reads with `SO_PEERCRED`, which is the uid of
//! the thread that called `connect(2)`. So one short-lived thread switches ITS OWN uid (a
//! thread-scoped `setresuid`, not the process's) to the approver's, connects, and hands the
//! connected socket back; the rest of the process stays root. The signer's socket is given
//! to that uid when the dev signer starts, as an appliance's socket unit gives it to
//! `vigil-approver`'s group.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use vigil_protocol::Client;

/// The approver's uid for a dev signer started as root: numeric, no passwd entry needed.
pub const DEV_APPROVER_UID: u32 = 4_244;

/// Connects to the signer's socket as `uid` (from this thread's uid if it is the same).
pub fn connect_as(socket: &Path, uid: u32, timeout: Duration) -> std::io::Result<Client> {
    let stream = if rustix::process::geteuid().as_raw() == uid {
        UnixStream::connect(socket)?
    } else {
        let socket = socket.to_owned();
        std::thread::spawn(move || -> std::io::Result<UnixStream> {
            // This thread only: the process's other threads keep their uid. The thread ends
            // right after, never to act as root again.
            let as_uid = rustix::process::Uid::from_raw(uid);
            rustix::thread::set_thread_res_uid(as_uid, as_uid, as_uid)?;
            UnixStream::connect(&socket)
        })
        .join()
        .map_err(|_| std::io::Error::other("the thread connecting as the approver panicked"))??
    };
    Client::from_stream(stream, timeout)
}

/// Lets `uid` reach `socket`: owner of the socket file, and search permission on its
/// directory. The signer still serves it only as the approver (by `SO_PEERCRED`).
pub fn grant_socket(socket: &Path, uid: u32) -> std::io::Result<()> {
    std::os::unix::fs::chown(socket, Some(uid), None)?;
    if let Some(dir) = socket.parent() {
        let mode = std::fs::metadata(dir)?.permissions().mode();
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode | 0o001))?;
    }
    Ok(())
}
