//! The confirmed-action executor: a live transfer the operator confirmed with Yes runs at
//! most once (its idempotency key is claimed durably first), with a fresh blockhash; after a
//! restart, confirmed transfers that never ran are run.

use super::{Orchestrator, unix_now};
use crate::operator;
use crate::pipeline::{self, Outcome};
use crate::store::{ConfirmationKind, ConfirmationRow, ConfirmationStatus};

impl Orchestrator {
    /// Runs a live transfer the operator approved with Yes (a `move_funds` confirmation):
    /// with a fresh blockhash, at most once (its idempotency key is claimed durably first, so
    /// a second call, or a call after a crash, never signs or broadcasts it again). Refused if
    /// the item is not approved, or if the agent or asset is no longer live.
    pub async fn execute_confirmed(&self, row: &ConfirmationRow) -> Result<Outcome, String> {
        if row.confirmation.kind != ConfirmationKind::MoveFunds {
            return Err(format!("#{} is not a transfer to run", row.id.0));
        }
        if row.status != ConfirmationStatus::Approved {
            return Err(format!("#{} is not approved", row.id.0));
        }
        let payload: serde_json::Value = serde_json::from_str(&row.confirmation.payload_json)
            .map_err(|e| format!("#{}: stored action unreadable: {e}", row.id.0))?;
        let intent: vigil_protocol::Intent = serde_json::from_value(payload["intent"].clone())
            .map_err(|e| format!("#{}: stored intent unreadable: {e}", row.id.0))?;
        let key = payload["idempotency_key"]
            .as_str()
            .ok_or_else(|| format!("#{}: stored action has no idempotency key", row.id.0))?;
        let agent_id = row
            .confirmation
            .agent
            .clone()
            .ok_or_else(|| format!("#{}: the action names no agent", row.id.0))?;
        let agent = self
            .config
            .agents
            .iter()
            .find(|a| a.id == agent_id)
            .ok_or_else(|| format!("#{}: agent {agent_id} is no longer configured", row.id.0))?;
        let agent = match self.store.lock() {
            Ok(store) => operator::with_mode_override(&store, agent),
            Err(_) => return Err("state unavailable".into()),
        };
        let vigil_protocol::Intent::Transfer(t) = &intent;
        if !agent.is_live(t.asset) {
            return Err(format!(
                "#{}: {agent_id} is no longer live for {}; nothing was sent",
                row.id.0, t.asset
            ));
        }
        let (_, blockhash, network) = self.chain_view(&agent_id).await?;
        if t.network != network {
            return Err(format!(
                "#{}: the transfer was asked for on {}, but {agent_id} works on {} now; nothing was sent",
                row.id.0,
                vigil_protocol::network_name(t.chain, t.network),
                vigil_protocol::network_name(t.chain, network)
            ));
        }
        let live = pipeline::Live {
            store: &self.store,
            signer: &self.signer,
            rpc: self.rpc.as_ref(),
        };
        Ok(pipeline::execute_live(&live, &agent_id, &intent, key, &blockhash, unix_now()).await)
    }

    /// Runs the transfers the operator approved in the last 24 h that never ran (approved,
    /// then a crash or restart before the execution). One line each, for the log and the
    /// operator.
    pub async fn resume_confirmed(&self) -> Vec<String> {
        let rows = match self.store.lock() {
            Ok(store) => store.approved_unexecuted(
                ConfirmationKind::MoveFunds,
                unix_now().saturating_sub(86_400),
            ),
            Err(_) => return vec!["state unavailable: approved transfers not resumed".into()],
        };
        let rows = match rows {
            Ok(rows) => rows,
            Err(e) => return vec![format!("approved transfers not resumed: {e}")],
        };
        let mut report = Vec::new();
        for row in rows {
            let line = match self.execute_confirmed(&row).await {
                Ok(outcome) => format!("approved #{} run after a restart: {}", row.id.0, outcome),
                Err(e) => format!("approved #{} not run: {e}", row.id.0),
            };
            report.push(line);
        }
        report
    }
}
