//! The per-agent pause (`docs/protocol.md`, "The pause"): any peer may set it
//! (`pause_agent`, a tightening); only the operator's code clears it. An asker asks for the
//! clearing with `request_resume`, the approver lists it in `awaiting` with a summary the
//! signer rendered, and answers it with the operator's code (`resume_agent`). While an agent
//! is paused the signer signs for it only what cannot add exposure or move funds out (the
//! rule `agent_paused`).
//!
//! The reason is a closed set, not free text: it is rendered into what the operator reads when
//! asked to resume, and nothing an asker writes is shown to the operator verbatim.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::operator_code::OperatorCode;
use crate::types::{AgentId, IdempotencyKey, OperatorRequestId, PauseId};

/// Why an agent was paused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PauseReason {
    /// The agent's daily loss floor was reached.
    LossFloor,
    /// The operator asked for it (e.g. `/pause` in the orchestrator's bot).
    Operator,
    /// The venues' state and the local state disagree (reconciliation at start).
    Reconciliation,
    /// Anything else: the orchestrator's alert says more.
    Other,
}

impl PauseReason {
    /// The wire name.
    pub const fn as_str(self) -> &'static str {
        match self {
            PauseReason::LossFloor => "loss_floor",
            PauseReason::Operator => "operator",
            PauseReason::Reconciliation => "reconciliation",
            PauseReason::Other => "other",
        }
    }
}

impl fmt::Display for PauseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Fields of `pause_agent` (either role: a tightening).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PauseAgentRequest {
    /// The agent to pause.
    pub agent: AgentId,
    /// Why.
    pub reason: PauseReason,
}

/// An agent's pause, as `pause_agent`, `status` and `hello` report it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentPause {
    /// The pause's id (a `request_resume` is bound to it).
    pub pause_id: PauseId,
    /// Unix seconds when it was set.
    pub since: u64,
    /// Why it was set.
    pub reason: PauseReason,
}

/// Result of `pause_agent`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PauseResult {
    /// The agent.
    pub agent: AgentId,
    /// The pause in force (when it was already set: the earlier one, unchanged).
    pub pause: AgentPause,
    /// True when the agent was paused already: nothing was recorded.
    pub already_paused: bool,
    /// The audit entry that records the pause (0 when `already_paused`).
    pub ledger_seq: u64,
}

/// Fields of `request_resume` (asker): a clearing of the agent's pause, for the operator.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewResume {
    /// The paused agent.
    pub agent: AgentId,
    /// The same key for the same pause returns the same request.
    pub idempotency_key: IdempotencyKey,
}

/// Fields of `resume_agent` (approver only): the answer to one `request_resume`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResumeAgentRequest {
    /// The request the operator was shown.
    pub request_id: OperatorRequestId,
    /// The operator's current TOTP code (6 digits).
    pub code: OperatorCode,
}

/// Result of `resume_agent`: the pause is cleared.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResumeResult {
    /// The agent, no longer paused.
    pub agent: AgentId,
    /// The pause that was cleared.
    pub pause_id: PauseId,
    /// The request answered.
    pub request_id: OperatorRequestId,
    /// What the operator was shown (the signer's own).
    pub summary: String,
    /// The audit entry that records the clearing.
    pub ledger_seq: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_are_a_closed_set() {
        for (r, wire) in [
            (PauseReason::LossFloor, "loss_floor"),
            (PauseReason::Operator, "operator"),
            (PauseReason::Reconciliation, "reconciliation"),
            (PauseReason::Other, "other"),
        ] {
            assert_eq!(serde_json::to_string(&r).unwrap(), format!("\"{wire}\""));
            assert_eq!(r.as_str(), wire);
        }
        for bad in [
            r#""LossFloor""#,
            r#""because the market crashed""#,
            r#""""#,
            "1",
        ] {
            assert!(serde_json::from_str::<PauseReason>(bad).is_err(), "{bad}");
        }
        let extra = r#"{"agent":"trader","reason":"operator","note":"x"}"#;
        assert!(serde_json::from_str::<PauseAgentRequest>(extra).is_err());
    }
}
