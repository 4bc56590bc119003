//! Paper mode's bookkeeping for the scheduler: an agent's paper balance (its fills so far)
//! and the simulated fill of a paper action the operator approved with a code.

use super::Orchestrator;
use crate::store::ConfirmationRow;
use vigil_protocol::{AgentId, AssetSymbol};

impl Orchestrator {
    /// After the operator approved a paper action held at the signer's threshold: record its
    /// simulated fill (paper mode never signs). Returns the summary that was filled.
    pub fn complete_paper_approval(
        &self,
        row: &ConfirmationRow,
        now: u64,
    ) -> Result<String, String> {
        let payload: serde_json::Value =
            serde_json::from_str(&row.confirmation.payload_json).map_err(|e| e.to_string())?;
        if payload["mode"] != "paper" {
            return Err("not a paper action".into());
        }
        let intent: vigil_protocol::Intent = serde_json::from_value(payload["intent"].clone())
            .map_err(|e| format!("stored intent unreadable: {e}"))?;
        let agent = row
            .confirmation
            .agent
            .clone()
            .ok_or("the pending action names no agent")?;
        let (asset, delta) = crate::pipeline::paper_delta(&intent)
            .ok_or_else(|| "the amount is too large or \"all\": no paper fill".to_string())?;
        let store = self
            .store
            .lock()
            .map_err(|_| "state unavailable".to_string())?;
        let a = store.agent(&agent);
        let recorded = match crate::pipeline::paper_aave_fill(&intent) {
            // An Aave action moves the paper Aave book in the same transaction as the wallet.
            Some(aave) => a.record_paper_aave_fill(
                now,
                &row.confirmation.idempotency_key,
                (asset, delta),
                &aave,
                &row.confirmation.summary,
            ),
            None => a.record_paper_fill(now, asset, delta, &row.confirmation.summary),
        };
        recorded.map_err(|e| e.to_string())?;
        Ok(row.confirmation.summary.clone())
    }

    /// The sum of the agent's paper fills in SOL (negative: paid out).
    pub(super) fn paper_delta(&self, agent: &AgentId) -> i128 {
        self.paper_delta_of(agent, AssetSymbol::SOL)
    }

    /// The sum of the agent's paper fills in `asset` (negative: paid out).
    pub(super) fn paper_delta_of(&self, agent: &AgentId, asset: AssetSymbol) -> i128 {
        self.store
            .lock()
            .ok()
            .and_then(|s| s.agent(agent).paper_position(asset).ok())
            .unwrap_or(0)
    }
}

/// A balance after paper fills, never below zero.
pub(super) fn apply_paper_delta(balance: u128, delta: i128) -> u128 {
    let start = i128::try_from(balance).unwrap_or(i128::MAX);
    u128::try_from(start.saturating_add(delta).max(0)).unwrap_or(0)
}
