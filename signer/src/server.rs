//! The socket server: accepts connections on the one listening Unix socket, checks each
//! peer's uid with `SO_PEERCRED` and gives the connection its role (asker or approver:
//! `docs/protocol.md`, "Roles"), reads bounded frames, and hands requests to the engine with
//! the role (the engine checks the op against it before anything else).
//! A bad frame gets one error reply and the connection closes; nothing a peer sends can
//! stop the server from serving other connections.
//!
//! The one way the server stops on purpose: after the answer to a successful
//! `import_confirm` is written, [`serve`] returns [`Stopped::RestartForImport`] and the
//! daemon exits with status 75, so that systemd starts it again on the imported keys.

use std::os::unix::net::UnixListener as StdUnixListener;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{Notify, Semaphore};
use vigil_protocol::{ErrorKind, PeerRole, Response, check_len, encode_frame, parse_request};

use crate::engine::{After, Engine, Peer};

/// Most connections served at once; more are closed on accept.
pub(crate) const MAX_CONNECTIONS: usize = 64;
/// A connection idle this long between frames is closed.
pub(crate) const IDLE_TIMEOUT: Duration = Duration::from_secs(600);
/// Once a frame has started, the rest must arrive within this time.
pub(crate) const FRAME_TIMEOUT: Duration = Duration::from_secs(10);
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
}

/// Serves until an import is confirmed (or the listener fails). Call inside a tokio runtime.
pub(crate) async fn serve(
    listener: StdUnixListener,
    engine: Arc<Engine>,
    config: ServerConfig,
) -> std::io::Result<Stopped> {
    listener.set_nonblocking(true)?;
    let listener = UnixListener::from_std(listener)?;
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
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
        let Ok(permit) = Arc::clone(&slots).try_acquire_owned() else {
            tracing::warn!("{MAX_CONNECTIONS} connections already open; closing a new one");
            continue;
        };
        let engine = Arc::clone(&engine);
        let stop = Stop {
            answered: Arc::clone(&answered),
            confirmed: Arc::clone(&confirmed),
        };
        tokio::spawn(async move {
            connection(stream, &engine, peer, &stop).await;
            drop(permit);
        });
    }
}

/// How a connection tells [`serve`] to stop after a confirmed import.
struct Stop {
    answered: Arc<Notify>,
    confirmed: Arc<Notify>,
}

/// Serves one connection until it closes, idles out or sends a bad frame.
async fn connection(mut stream: UnixStream, engine: &Engine, peer: Peer, stop: &Stop) {
    loop {
        let mut prefix = [0u8; 4];
        match tokio::time::timeout(IDLE_TIMEOUT, stream.read_exact(&mut prefix)).await {
            Ok(Ok(_)) => {}
            Ok(Err(_)) | Err(_) => return, // closed, truncated prefix, or idle
        }
        let len = match check_len(prefix) {
            Ok(len) => len,
            Err(e) => {
                let resp = Response::error(
                    None,
                    ErrorKind::BadFrame,
                    None,
                    format!("{e}; the connection is closed"),
                );
                let _ = write_response(&mut stream, &resp).await;
                return;
            }
        };
        let mut payload = vec![0u8; len];
        match tokio::time::timeout(FRAME_TIMEOUT, stream.read_exact(&mut payload)).await {
            Ok(Ok(_)) => {}
            Ok(Err(_)) | Err(_) => return, // truncated or too slow: nothing to answer
        }
        let (resp, close, after) = match parse_request(&payload) {
            Ok(req) => {
                let (resp, after) = engine.handle_request(req, peer).await;
                (resp, false, after)
            }
            Err(failure) => {
                let close = failure.closes_connection();
                (
                    Response::error(failure.id, failure.kind, None, failure.message),
                    close,
                    After::Continue,
                )
            }
        };
        if after == After::ExitForRestart {
            stop.confirmed.notify_one();
            // Written and flushed (or failed: the peer went away) before the server stops.
            let _ = write_response(&mut stream, &resp).await;
            stop.answered.notify_one();
            return;
        }
        if write_response(&mut stream, &resp).await.is_err() || close {
            return;
        }
    }
}

async fn write_response(stream: &mut UnixStream, resp: &Response) -> std::io::Result<()> {
    let json = resp.to_json();
    let frame = match encode_frame(json.as_bytes()) {
        Ok(f) => f,
        Err(_) => {
            let fallback = Response::error(
                resp.id.clone(),
                ErrorKind::Internal,
                None,
                "response too large for one frame",
            );
            encode_frame(fallback.to_json().as_bytes())
                .map_err(|e| std::io::Error::other(e.to_string()))?
        }
    };
    stream.write_all(&frame).await?;
    stream.flush().await
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
        let none = ServerConfig {
            allowed_uids: vec![1000],
            approver_uid: None,
        };
        assert_eq!(none.role_of(1001), None);
    }
}
