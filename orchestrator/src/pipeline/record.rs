//! The record of one decision, written after the fact in one transaction
//! ([`crate::store::DecisionBatch`]): the costs of its LLM calls, its paper fill (claimed,
//! filled and finished at once), the row in the agent's decision log and the line in its
//! memory. One commit, so one `fsync`, per decision instead of one per write.
//!
//! What must be on disk *before* the orchestrator acts is not here and stays first, each its
//! own commit: a live action's execution claim before the signer signs it (`execute.rs`), a
//! pending confirmation or approval before the operator is waited on (`layer3.rs`), the
//! order counted for a deputy's rate cap. A paper fill changes nothing outside the state file,
//! so its claim goes with the record: a crash before the commit leaves no trace of the
//! decision (and nothing was done), after it the whole of it.

use vigil_protocol::AssetSymbol;

use super::{Deps, Inputs, Outcome};
use crate::config::AgentConfig;
use crate::store::{
    DecisionOutcome as Stored, Layer, NewCost, NewDecision, PaperAaveFill, PaperFill, Store,
    StoreError,
};

/// What a decision has to record besides its outcome, gathered on the way.
#[derive(Debug, Default)]
pub(super) struct Pending {
    /// The actual cost of each LLM call made (the cost gate counts them before the next call).
    pub(super) costs: Vec<NewCost>,
    /// A paper fill the signer's dry run allowed, recorded with the decision.
    pub(super) fill: Option<PendingFill>,
}

impl Pending {
    /// What this decision's calls cost so far, micro-USD (not yet in the ledger).
    pub(super) fn spent_micros(&self) -> u64 {
        self.costs
            .iter()
            .fold(0, |sum, c| sum.saturating_add(c.micros))
    }
}

/// A paper fill waiting for the decision's record.
#[derive(Debug)]
pub(super) struct PendingFill {
    /// The decision's idempotency key.
    pub(super) key: String,
    /// The asset and signed change in base units.
    pub(super) asset: AssetSymbol,
    pub(super) delta: i128,
    /// The signer's summary (stored with the fill and in the execution's outcome).
    pub(super) summary: String,
    /// An Aave action's move of the paper Aave book, booked with the fill.
    pub(super) aave: Option<PaperAaveFill>,
}

/// Records `outcome` with everything `pending`, in one commit; the outcome as recorded (a
/// paper fill that could not be recorded is a hold of layer "state", and says why).
pub(super) fn record(
    agent: &AgentConfig,
    inputs: &Inputs,
    deps: &Deps<'_>,
    outcome: Outcome,
    pending: &Pending,
) -> Outcome {
    let not_filled = |why: String| Outcome::Held {
        layer: "state".into(),
        reason: why,
    };
    let Ok(store) = deps.store.lock() else {
        tracing::error!(agent = %agent.id, "state unavailable: the decision is not recorded");
        return match pending.fill {
            Some(_) => not_filled("paper fill not recorded: state unavailable".into()),
            None => outcome,
        };
    };
    match write(&store, agent, inputs, outcome.clone(), pending) {
        Ok(recorded) => recorded,
        Err(e) => {
            tracing::error!(agent = %agent.id, error = %e, "could not record the decision");
            // The cost ledger is what the daily cap reads: its rows are tried on their own.
            for c in &pending.costs {
                let one = store.record_cost(
                    &agent.id,
                    c.ts,
                    c.micros,
                    c.prompt_tokens,
                    c.completion_tokens,
                    &c.model,
                );
                if let Err(e) = one {
                    tracing::error!(agent = %agent.id, error = %e, "could not record LLM cost");
                }
            }
            match pending.fill {
                Some(_) => not_filled(format!("paper fill not recorded: {e}")),
                None => outcome,
            }
        }
    }
}

/// The batch itself: all of it committed, or (on error) none of it.
fn write(
    store: &Store,
    agent: &AgentConfig,
    inputs: &Inputs,
    outcome: Outcome,
    pending: &Pending,
) -> Result<Outcome, StoreError> {
    let mut batch = store.decision_batch(&agent.id, inputs.now)?;
    for cost in &pending.costs {
        batch.record_cost(cost)?;
    }
    let outcome = match &pending.fill {
        None => outcome,
        Some(fill) => {
            let executed = serde_json::json!({ "paper": fill.summary }).to_string();
            let filled = batch.paper_fill_with(
                inputs.now,
                &PaperFill {
                    key: &fill.key,
                    asset: fill.asset,
                    delta_base_units: fill.delta,
                    note: &fill.summary,
                    outcome_json: &executed,
                },
                fill.aave.as_ref(),
            );
            match filled {
                Ok(()) => outcome,
                Err(StoreError::DuplicateIdempotencyKey(key)) => Outcome::Held {
                    layer: "state".into(),
                    reason: format!("decision {key} was already executed"),
                },
                Err(
                    e @ (StoreError::PositionOverflow { .. } | StoreError::InvalidInput { .. }),
                ) => Outcome::Held {
                    layer: "state".into(),
                    reason: format!("paper fill not recorded: {e}"),
                },
                Err(e) => return Err(e),
            }
        }
    };
    batch.record_decision(&decision_row(inputs.now, &outcome))?;
    batch.append_memory(inputs.now, &outcome.to_string())?;
    batch.commit()?;
    Ok(outcome)
}

/// The decision log's row of `outcome`.
fn decision_row(now: u64, outcome: &Outcome) -> NewDecision {
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
    NewDecision {
        ts: now,
        prompt_digest: String::new(),
        reply: String::new(),
        parsed_json: serde_json::to_string(outcome).ok(),
        outcome: kind,
        layer,
        rule,
        idempotency_key: None,
    }
}
