//! The one check of who may send what: a connection's role (from its peer uid, given by
//! the server) against the op's access in `vigil_protocol::Op::access`, before anything else
//! looks at the op. A refusal is recorded in the audit log (`peer_refused`, never the code)
//! and answers at once: no code is verified, no time step spent, the lockout counter is not
//! touched.

use vigil_protocol::{Access, ErrorKind, Op, PeerRole};

use super::{Engine, Refusal};
use crate::ledger::Event;

/// Who sent a request: the peer uid (`SO_PEERCRED`) and the role the server gave it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Peer {
    /// The peer's uid.
    pub uid: u32,
    /// Its role.
    pub role: PeerRole,
}

impl Engine {
    /// Refuses (and records) an op the peer's role may not send.
    pub(super) async fn check_role(&self, peer: Peer, op: &Op) -> Result<(), Refusal> {
        let access = op.access();
        if access.admits(peer.role) {
            return Ok(());
        }
        let refusal = refusal_for(peer, op, access);
        let event = Event::PeerRefused {
            peer_uid: peer.uid,
            role: peer.role,
            op: op.name().to_string(),
        };
        if let Err(e) = self.journal((self.clock)(), vec![event]).await {
            tracing::error!(error = %e, "could not record a refusal by role");
        }
        tracing::warn!(uid = peer.uid, role = %peer.role, op = op.name(), "op refused for the peer's role");
        Err(refusal)
    }
}

/// The answer to an op the role may not send: `approver_only` for the approver's ops,
/// `bad_request` for an asker's op from the approver.
fn refusal_for(peer: Peer, op: &Op, access: Access) -> Refusal {
    match access {
        Access::Approver => Refusal::new(
            ErrorKind::ApproverOnly,
            format!(
                "{} is the approver's alone (uid {} is an asker): operator codes reach the signer only through \
                 vigil-approver, from the operator's own chat with it. Nothing was checked or spent",
                op.name(),
                peer.uid
            ),
        ),
        Access::Asker | Access::Both => Refusal::bad_request(format!(
            "the approver may not send {}: it answers requests and runs no agents",
            op.name()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vigil_protocol::parse_request;

    #[test]
    fn refusals_name_the_role_and_never_a_code() {
        let op = parse_request(
            br#"{"v":1,"id":"r","op":"approve","approval_id":"ap-1","code":"493027"}"#,
        )
        .unwrap()
        .op;
        let asker = Peer {
            uid: 1000,
            role: PeerRole::Asker,
        };
        let r = refusal_for(asker, &op, op.access());
        assert_eq!(r.kind, ErrorKind::ApproverOnly);
        assert!(!r.message.contains("493027"));
        let sign = parse_request(
            br#"{"v":1,"id":"r","op":"sign","agent":"t","intent":{"kind":"transfer","chain":"solana","network":"devnet","asset":"SOL","to":"x","amount":"5"},"context":{},"idempotency_key":"k"}"#,
        )
        .unwrap()
        .op;
        let approver = Peer {
            uid: 1001,
            role: PeerRole::Approver,
        };
        assert!(!sign.access().admits(approver.role));
        assert_eq!(
            refusal_for(approver, &sign, sign.access()).kind,
            ErrorKind::BadRequest
        );
    }
}
