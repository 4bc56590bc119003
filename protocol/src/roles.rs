//! Who may send which op: the peer roles of `docs/protocol.md`, "Roles".
//!
//! The signer gives every connection a role from its peer uid (`SO_PEERCRED`): the uids it
//! serves as **askers** (the orchestrator, the CLIs, tests, outside checkers) and the one uid
//! of the **approver** (`vigil-approver`, the only process that ever carries an operator's
//! code). This table is the whole rule; the signer checks it in one place, before an op
//! reaches the engine.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::message::Op;

/// A connection's role, from its peer uid.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PeerRole {
    /// May ask: evaluate, sign, create requests that wait for the operator, read their status.
    Asker,
    /// May answer: list what awaits the operator and carry the operator's code.
    Approver,
}

impl PeerRole {
    /// The role's name.
    pub const fn as_str(self) -> &'static str {
        match self {
            PeerRole::Asker => "asker",
            PeerRole::Approver => "approver",
        }
    }
}

impl fmt::Display for PeerRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which roles an op is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Access {
    /// Either role (`hello`, `status`).
    Both,
    /// Askers only.
    Asker,
    /// The approver only: the code-bearing ops and the approver's reads.
    Approver,
}

impl Access {
    /// Whether a peer of `role` may send an op with this access.
    pub const fn admits(self, role: PeerRole) -> bool {
        matches!(
            (self, role),
            (Access::Both, _)
                | (Access::Asker, PeerRole::Asker)
                | (Access::Approver, PeerRole::Approver)
        )
    }
}

impl Op {
    /// Which roles may send this op (the table of `docs/protocol.md`, "Roles").
    pub const fn access(&self) -> Access {
        match self {
            // Pausing is a tightening any peer may ask for; clearing it needs the code.
            Op::Hello | Op::Status | Op::PauseAgent(_) => Access::Both,
            Op::Sign(_)
            | Op::DryRun(_)
            | Op::Audit(_)
            | Op::ImportStatus
            | Op::RequestConfirmation(_)
            | Op::RequestSetCap(_)
            | Op::RequestStatus(_)
            | Op::RequestResume(_) => Access::Asker,
            Op::Approve(_)
            | Op::Confirm(_)
            | Op::SetCap(_)
            | Op::ImportConfirm(_)
            | Op::ResumeAgent(_)
            | Op::Awaiting
            | Op::Events(_) => Access::Approver,
        }
    }

    /// Whether the op carries an operator code.
    pub const fn carries_code(&self) -> bool {
        matches!(
            self,
            Op::Approve(_)
                | Op::Confirm(_)
                | Op::SetCap(_)
                | Op::ImportConfirm(_)
                | Op::ResumeAgent(_)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse_request;

    fn op(json: &str) -> Op {
        match parse_request(json.as_bytes()) {
            Ok(r) => r.op,
            Err(e) => panic!("{json}: {}", e.message),
        }
    }

    /// The whole table, op by op, as documented: a change to it must change this test.
    #[test]
    fn every_op_has_the_documented_roles() {
        let intent = r#""intent":{"kind":"transfer","chain":"solana","network":"devnet","asset":"SOL","to":"x","amount":"5"}"#;
        let digest = "a".repeat(64);
        let table: Vec<(String, Access, bool)> = vec![
            (r#""op":"hello""#.into(), Access::Both, false),
            (r#""op":"status""#.into(), Access::Both, false),
            (
                r#""op":"pause_agent","agent":"t","reason":"loss_floor""#.into(),
                Access::Both,
                false,
            ),
            (
                r#""op":"request_resume","agent":"t","idempotency_key":"k""#.into(),
                Access::Asker,
                false,
            ),
            (
                r#""op":"resume_agent","request_id":"r1","code":"123456""#.into(),
                Access::Approver,
                true,
            ),
            (
                format!(
                    r#""op":"sign","agent":"t",{intent},"context":{{}},"idempotency_key":"k""#
                ),
                Access::Asker,
                false,
            ),
            (
                format!(r#""op":"dry_run","agent":"t",{intent}"#),
                Access::Asker,
                false,
            ),
            (r#""op":"audit","limit":5"#.into(), Access::Asker, false),
            (r#""op":"import_status""#.into(), Access::Asker, false),
            (
                r#""op":"request_confirmation","purpose":{"kind":"destructive","what":"resume","target":"t"},"idempotency_key":"k""#.into(),
                Access::Asker,
                false,
            ),
            (
                r#""op":"request_set_cap","agent":"t","asset":"SOL","limit":"per_tx","amount":"5","idempotency_key":"k""#.into(),
                Access::Asker,
                false,
            ),
            (
                r#""op":"request_status","request_id":"r1""#.into(),
                Access::Asker,
                false,
            ),
            (r#""op":"awaiting""#.into(), Access::Approver, false),
            (
                r#""op":"events","since_seq":0,"limit":10"#.into(),
                Access::Approver,
                false,
            ),
            (
                r#""op":"approve","approval_id":"a1","code":"123456""#.into(),
                Access::Approver,
                true,
            ),
            (
                r#""op":"confirm","request_id":"r1","code":"123456""#.into(),
                Access::Approver,
                true,
            ),
            (
                r#""op":"set_limit","request_id":"r1","code":"123456""#.into(),
                Access::Approver,
                true,
            ),
            (
                format!(r#""op":"import_confirm","manifest_digest":"{digest}","code":"123456""#),
                Access::Approver,
                true,
            ),
        ];
        assert_eq!(table.len(), crate::message::OP_NAMES.len());
        for (fields, access, code) in table {
            let o = op(&format!(r#"{{"v":1,"id":"r",{fields}}}"#));
            assert_eq!((o.access(), o.carries_code()), (access, code), "{fields}");
            // Every code-bearing op is the approver's alone.
            if o.carries_code() {
                assert!(o.access().admits(PeerRole::Approver));
                assert!(!o.access().admits(PeerRole::Asker));
            }
        }
    }

    #[test]
    fn access_admits_exactly_its_roles() {
        assert!(Access::Both.admits(PeerRole::Asker) && Access::Both.admits(PeerRole::Approver));
        assert!(Access::Asker.admits(PeerRole::Asker));
        assert!(!Access::Asker.admits(PeerRole::Approver));
        assert!(Access::Approver.admits(PeerRole::Approver));
        assert!(!Access::Approver.admits(PeerRole::Asker));
    }
}
