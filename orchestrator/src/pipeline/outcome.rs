//! What one decision came to ([`Outcome`]), and its record: a row in the agent's decision
//! log and a line in its memory.

use serde::Serialize;

use super::{Deps, Inputs};
use crate::config::AgentConfig;
use crate::store::NewDecision;

/// What one decision came to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    /// The agent holds: by its own choice, or because a gate stopped the call or the reply.
    Held { layer: String, reason: String },
    /// A layer refused the agent's action.
    Refused {
        layer: String,
        rule: String,
        message: String,
    },
    /// Paper mode: the signer would sign; a fill was simulated and recorded.
    PaperFilled { summary: String },
    /// Live mode: the signer would sign this, and it waits for the operator's Yes (a
    /// pending confirmation was recorded); nothing is signed until then.
    AwaitingConfirmation {
        summary: String,
        confirmation_id: i64,
    },
    /// The signer needs the operator's code; a pending confirmation was recorded.
    NeedsApproval {
        approval_id: String,
        summary: String,
        confirmation_id: i64,
    },
    /// Live mode: signed by the signer, then broadcast and confirmed when an RPC is set.
    Signed {
        summary: String,
        signature: String,
        tx: String,
        /// What the chain said: "confirmed", "finalized", "failed: ...", "not broadcast: ...".
        chain: String,
    },
}

pub(super) fn record(agent: &AgentConfig, inputs: &Inputs, deps: &Deps<'_>, outcome: &Outcome) {
    use crate::store::{Layer, Outcome as Stored};
    let layer_of = |layer: &str| match layer {
        "1" => Some(Layer::Schema),
        "2" => Some(Layer::RiskProfile),
        "3" | "signer" => Some(Layer::Signer),
        _ => None,
    };
    let (kind, layer, rule) = match outcome {
        // Gates outside the three layers (cost, llm, state, operator) are named in `rule`.
        Outcome::Held { layer, .. } => (Stored::Held, layer_of(layer), Some(layer.clone())),
        Outcome::Refused { layer, rule, .. } => {
            (Stored::Refused, layer_of(layer), Some(rule.clone()))
        }
        Outcome::PaperFilled { .. } => (Stored::PaperFilled, None, None),
        Outcome::NeedsApproval { .. } => (
            Stored::Held,
            Some(Layer::Signer),
            Some("approval_threshold".to_string()),
        ),
        Outcome::AwaitingConfirmation { .. } => (
            Stored::Held,
            None,
            Some("operator_confirmation".to_string()),
        ),
        Outcome::Signed { .. } => (Stored::Signed, None, None),
    };
    let memory = match outcome {
        Outcome::Held { layer, reason } => format!("held ({layer}): {reason}"),
        Outcome::Refused {
            layer,
            rule,
            message,
        } => format!("refused by layer {layer} [{rule}]: {message}"),
        Outcome::PaperFilled { summary } => format!("paper fill: {summary}"),
        Outcome::NeedsApproval { summary, .. } => format!("waiting for the operator: {summary}"),
        Outcome::AwaitingConfirmation { summary, .. } => {
            format!("waiting for the operator's yes: {summary}")
        }
        Outcome::Signed { summary, chain, .. } => format!("signed ({chain}): {summary}"),
    };
    let Ok(store) = deps.store.lock() else { return };
    let result = store.agent(&agent.id).record_decision(&NewDecision {
        ts: inputs.now,
        prompt_digest: String::new(),
        reply: String::new(),
        parsed_json: serde_json::to_string(outcome).ok(),
        outcome: kind,
        layer,
        rule,
        idempotency_key: None,
    });
    let remembered = store.agent(&agent.id).append_memory(inputs.now, &memory);
    if let Err(e) = result.map(|_| ()).and(remembered) {
        tracing::error!(agent = %agent.id, error = %e, "could not record the decision");
    }
}
