//! The engine's `status` op: each agent's spend over the last 24 h and the caps in force,
//! the agent's pause if it is paused, the ledger sequence and the audit head. Read-only.

use vigil_protocol::{AgentStatus, StatusResult};

use super::Engine;
use crate::policy::History as _;

impl Engine {
    pub(super) fn status(&self) -> StatusResult {
        let now = (self.clock)();
        let inner = self.lock();
        let agents = self
            .policy
            .agents
            .iter()
            .map(|(agent, p)| AgentStatus {
                agent: agent.clone(),
                spent_24h: inner
                    .ledger
                    .spent_24h(agent, now)
                    .into_iter()
                    .map(|(a, v)| (a.to_string(), v.to_string()))
                    .collect(),
                limits: p.caps_json(|asset| inner.ledger.cap_override(agent, asset)),
                paused: inner.pauses.get(agent).map(crate::pause::Pause::report),
            })
            .collect();
        drop(inner);
        let (seq, head) = self.audit.head();
        StatusResult {
            agents,
            ledger_seq: seq,
            audit_head: hex::encode(head),
            journal_problem: self.audit.rotation_failure().map(|e| {
                format!(
                    "the journal could not be rotated ({e}); it grows in one segment until the signer restarts: check the state directory (disk space, permissions, a stray audit.jsonl.next), then restart the signer"
                )
            }),
        }
    }
}
