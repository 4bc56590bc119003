//! Readiness for systemd (`Type=notify`, sd_notify(3)) under the seccomp filter.
//!
//! `sd_notify` opens a datagram socket and connects it to `$NOTIFY_SOCKET` each time it is
//! called; the confined signer may do neither (`socket` and `connect` are on
//! the signer's `seccomp::NEVER`). So the socket is opened and connected *before*
//! the daemon's `confine`, and after confinement `READY=1` is only *sent* on it: `send` is
//! the `sendto` syscall the allowlist already has for replies to clients. No syscall was
//! added to the allowlist for readiness.
//!
//! Landlock's abstract-socket scope does not get in the way either: the kernel lets a
//! datagram socket send to the peer it was connected to before the domain existed.

use std::os::unix::net::UnixDatagram;

/// The environment variable systemd sets for `Type=notify` services.
pub const NOTIFY_ENV: &str = "NOTIFY_SOCKET";

/// A datagram socket connected to systemd's notify socket, opened before confinement.
/// Absent when the signer was not started by systemd with `Type=notify`.
#[derive(Debug)]
pub struct Readiness {
    socket: Option<UnixDatagram>,
    /// `$NOTIFY_SOCKET`, for error messages.
    target: String,
}

impl Readiness {
    /// Connects to `$NOTIFY_SOCKET` if it is set (a path, or `@name` for an abstract
    /// socket). Call it before the daemon's `confine`.
    pub fn connect_from_env() -> Result<Self, String> {
        let Some(target) = std::env::var_os(NOTIFY_ENV) else {
            return Ok(Readiness {
                socket: None,
                target: String::new(),
            });
        };
        let target = target.into_string().map_err(|raw| {
            format!("{NOTIFY_ENV}={raw:?} is not UTF-8; start the signer from its systemd unit")
        })?;
        let socket = UnixDatagram::unbound()
            .and_then(|sock| connect(&sock, &target).map(|()| sock))
            .map_err(|e| {
                format!(
                    "cannot connect to systemd's notify socket {target}: {e}; \
                     is the unit Type=notify with NotifyAccess=main?"
                )
            })?;
        Ok(Readiness {
            socket: Some(socket),
            target,
        })
    }

    /// Whether systemd asked for readiness notification.
    pub fn is_requested(&self) -> bool {
        self.socket.is_some()
    }

    /// Sends `READY=1` (and a status line) once the signer serves. A no-op without systemd.
    pub fn send_ready(&self, status: &str) -> Result<(), String> {
        let Some(socket) = &self.socket else {
            return Ok(());
        };
        let msg = format!("READY=1\nSTATUS={}\n", status.replace('\n', " "));
        match socket.send(msg.as_bytes()) {
            Ok(n) if n == msg.len() => Ok(()),
            Ok(n) => Err(format!(
                "systemd's notify socket {} took {n} of {} bytes of READY=1",
                self.target,
                msg.len()
            )),
            Err(e) => Err(format!(
                "cannot send READY=1 to systemd's notify socket {}: {e}",
                self.target
            )),
        }
    }
}

/// `@name` is an abstract socket (Linux), anything else a path.
fn connect(sock: &UnixDatagram, target: &str) -> std::io::Result<()> {
    match target.strip_prefix('@') {
        Some(name) => {
            use std::os::linux::net::SocketAddrExt as _;
            let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())?;
            sock.connect_addr(&addr)
        }
        None => sock.connect(target),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    /// What it checks: a path target receives exactly `READY=1` plus the status line.
    #[test]
    fn ready_reaches_a_path_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let systemd = UnixDatagram::bind(&path).unwrap();
        let sock = UnixDatagram::unbound().unwrap();
        connect(&sock, path.to_str().unwrap()).unwrap();
        let ready = Readiness {
            socket: Some(sock),
            target: path.display().to_string(),
        };
        assert!(ready.is_requested());
        ready.send_ready("serving\n2 agents").unwrap();
        let mut buf = [0u8; 128];
        let n = systemd.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1\nSTATUS=serving 2 agents\n");
    }

    /// What it checks: `@name` means Linux's abstract namespace, not a file called "@name".
    #[test]
    fn at_sign_is_an_abstract_socket() {
        use std::os::linux::net::SocketAddrExt as _;
        let name = format!("vigil-notify-test-{}", std::process::id());
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let systemd = UnixDatagram::bind_addr(&addr).unwrap();
        let sock = UnixDatagram::unbound().unwrap();
        connect(&sock, &format!("@{name}")).unwrap();
        sock.send(b"READY=1\n").unwrap();
        let mut buf = [0u8; 16];
        let n = systemd.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1\n");
    }

    /// What it checks: without systemd nothing is connected and sending is a no-op.
    #[test]
    fn without_systemd_nothing_is_sent() {
        let ready = Readiness {
            socket: None,
            target: String::new(),
        };
        assert!(!ready.is_requested());
        assert!(ready.send_ready("x").is_ok());
    }
}
