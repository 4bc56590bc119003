//! The socket server: accepts connections on the one listening Unix socket, checks each
//! peer's uid with `SO_PEERCRED` and gives the connection its role (asker or approver:
//! `docs/protocol.md`, "Roles"; the engine checks every op against it before anything else),
//! gives it one of that peer's connection slots
//! ([`peers`]), and serves it ([`connection`]: buffered frames, batched answers, idle, frame
//! and write timeouts). A bad frame gets one error reply and the connection closes; nothing a
//! peer sends, and no number of connections it opens, can stop the server from serving other
//! peers.
//!
//! The one way the server stops on purpose: after the answer to a successful
//! `import_confirm` is written, [`serve`] returns [`Stopped::RestartForImport`] and the
//! daemon exits with status 75, so that systemd starts it again on the imported keys.

mod connection;
mod peers;

use std::os::unix::net::UnixListener as StdUnixListener;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::UnixListener;
use tokio::sync::Notify;

use vigil_protocol::PeerRole;

use crate::engine::{Engine, Peer};
use peers::{PeerSlots, Refused};

/// After a confirmed import, the server stops at the latest this long after the answer was
/// produced, even if writing it to a slow peer has not finished (the confirmation is durable).
pub(crate) const RESTART_GRACE: Duration = Duration::from_secs(2);

/// Why [`serve`] returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stopped {
    /// An import was confirmed: exit so that it is applied at the next start.
    RestartForImport,
}

/// Who may connect, and as what.
#[derive(Clone, Debug)]
pub(crate) struct ServerConfig {
    /// Peer uids served as askers (checked with `SO_PEERCRED`).
    pub allowed_uids: Vec<u32>,
    /// The one uid served as the approver (never also an asker: `daemon::run` checks).
    pub approver_uid: Option<u32>,
}

impl ServerConfig {
    /// The role of a connection from `uid`, or `None` if it is not served.
    pub(crate) fn role_of(&self, uid: u32) -> Option<PeerRole> {
        if self.approver_uid == Some(uid) {
            Some(PeerRole::Approver)
        } else if self.allowed_uids.contains(&uid) {
            Some(PeerRole::Asker)
        } else {
            None
        }
    }

    /// Every uid served, whatever its role (each gets its own connection slots).
    fn served_uids(&self) -> Vec<u32> {
        self.allowed_uids
            .iter()
            .copied()
            .chain(self.approver_uid)
            .collect()
    }
}

/// Serves until an import is confirmed (or the listener fails). Call inside a tokio runtime.
pub(crate) async fn serve(
    listener: StdUnixListener,
    engine: Arc<Engine>,
    config: ServerConfig,
) -> std::io::Result<Stopped> {
    listener.set_nonblocking(true)?;
    let listener = UnixListener::from_std(listener)?;
    let mut slots = PeerSlots::new(&config.served_uids());
    // `answered`: the confirming answer was written (or failed to be); `confirmed`: it was
    // produced, so stop after the grace period even if the write hangs.
    let answered = Arc::new(Notify::new());
    let confirmed = Arc::new(Notify::new());
    let deadline = {
        let confirmed = Arc::clone(&confirmed);
        async move {
            confirmed.notified().await;
            tokio::time::sleep(RESTART_GRACE).await;
        }
    };
    tokio::pin!(deadline);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = answered.notified() => return Ok(Stopped::RestartForImport),
            () = &mut deadline => {
                tracing::warn!("the answer to import_confirm was not written in time; exiting anyway (the confirmation is recorded)");
                return Ok(Stopped::RestartForImport);
            }
        };
        let (stream, _) = match accepted {
            Ok(conn) => conn,
            Err(e) => {
                // EMFILE and friends: back off rather than spin; the listener itself is fine.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let uid = match stream.peer_cred() {
            Ok(cred) => cred.uid(),
            Err(e) => {
                tracing::warn!(error = %e, "could not read peer credentials; closing");
                continue;
            }
        };
        let Some(role) = config.role_of(uid) else {
            tracing::warn!(uid, "connection from a uid that is not allowed; closing");
            continue;
        };
        let peer = Peer { uid, role };
        let permit = match slots.take(uid) {
            Ok(permit) => permit,
            Err(Refused::NotAllowed) => {
                tracing::warn!(uid, "connection from a uid that is not allowed; closing");
                continue;
            }
            // Logged (throttled) by the slots themselves.
            Err(Refused::Full) => continue,
        };
        let engine = Arc::clone(&engine);
        let stop = Stop {
            answered: Arc::clone(&answered),
            confirmed: Arc::clone(&confirmed),
        };
        tokio::spawn(async move {
            let closed = connection::serve(stream, &engine, peer, &stop).await;
            tracing::debug!(uid, ?closed, "connection closed");
            drop(permit);
        });
    }
}

/// How a connection tells [`serve`] to stop after a confirmed import.
struct Stop {
    answered: Arc<Notify>,
    confirmed: Arc<Notify>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_uid_decides_the_role() {
        let cfg = ServerConfig {
            allowed_uids: vec![1000, 0],
            approver_uid: Some(1001),
        };
        assert_eq!(cfg.role_of(1000), Some(PeerRole::Asker));
        assert_eq!(cfg.role_of(0), Some(PeerRole::Asker));
        assert_eq!(cfg.role_of(1001), Some(PeerRole::Approver));
        assert_eq!(cfg.role_of(1002), None);
        assert_eq!(cfg.served_uids(), [1000, 0, 1001]);
        let none = ServerConfig {
            allowed_uids: vec![1000],
            approver_uid: None,
        };
        assert_eq!(none.role_of(1001), None);
    }
}
