//! The confirmed-action executor: a live transfer the operator confirmed with Yes runs at
//! most once (its idempotency key is claimed durably first), with a fresh blockhash.
//!
//! Every Yes ends in a final state: the transfer ran (its execution is recorded), or it could
//! not run (the agent went back to paper, the RPC was down, ...) and that is recorded as its
//! execution too, so the "Not sent" the operator read stays true: nothing runs it later. After
//! a restart, a transfer approved and never started runs only while its confirmation is still
//! inside its time-to-live; an older one is put to the operator again as a new confirmation
//! (the agent may have paid by other means since), never run on the old Yes.

use vigil_protocol::{AgentId, Intent};

use super::{Orchestrator, unix_now};
use crate::operator;
use crate::pipeline::{self, Outcome};
use crate::store::{ConfirmationKind, ConfirmationRow, ConfirmationStatus};

/// A `move_funds` confirmation's stored action: what to run, for whom, under which key.
struct StoredTransfer {
    agent: AgentId,
    intent: Intent,
    key: String,
}

impl StoredTransfer {
    /// Reads the action out of an approved `move_funds` confirmation.
    fn of(row: &ConfirmationRow) -> Result<StoredTransfer, String> {
        if row.confirmation.kind != ConfirmationKind::MoveFunds {
            return Err(format!("#{} is not a transfer to run", row.id.0));
        }
        if row.status != ConfirmationStatus::Approved {
            return Err(format!("#{} is not approved", row.id.0));
        }
        let payload: serde_json::Value = serde_json::from_str(&row.confirmation.payload_json)
            .map_err(|e| format!("#{}: stored action unreadable: {e}", row.id.0))?;
        let intent: Intent = serde_json::from_value(payload["intent"].clone())
            .map_err(|e| format!("#{}: stored intent unreadable: {e}", row.id.0))?;
        let key = payload["idempotency_key"]
            .as_str()
            .ok_or_else(|| format!("#{}: stored action has no idempotency key", row.id.0))?
            .to_owned();
        let agent = row
            .confirmation
            .agent
            .clone()
            .ok_or_else(|| format!("#{}: the action names no agent", row.id.0))?;
        Ok(StoredTransfer { agent, intent, key })
    }
}

impl Orchestrator {
    /// Runs a live transfer the operator approved with Yes (a `move_funds` confirmation):
    /// with a fresh blockhash, at most once (its idempotency key is claimed durably first, so
    /// a second call, or a call after a crash, never signs or broadcasts it again). Refused if
    /// the item is not approved. When it cannot run (the agent or asset is no longer live, the
    /// chain cannot be read) the refusal is recorded as the action's final outcome: it never
    /// runs later, and the agent proposes it again if it still wants it.
    pub async fn execute_confirmed(&self, row: &ConfirmationRow) -> Result<Outcome, String> {
        let transfer = StoredTransfer::of(row)?;
        let run = self.run_transfer(row, &transfer).await;
        if let Err(why) = &run {
            self.record_not_run(&transfer.key, why);
        }
        run
    }

    /// The checks that come before the claim, then the execution itself.
    async fn run_transfer(
        &self,
        row: &ConfirmationRow,
        t: &StoredTransfer,
    ) -> Result<Outcome, String> {
        let agent = self
            .config
            .agents
            .iter()
            .find(|a| a.id == t.agent)
            .ok_or_else(|| format!("#{}: agent {} is no longer configured", row.id.0, t.agent))?;
        let agent = match self.store.lock() {
            Ok(store) => operator::with_mode_override(&store, agent),
            Err(_) => return Err("state unavailable".into()),
        };
        let asset = t.intent.asset();
        if !asset.is_some_and(|asset| agent.is_live(asset)) {
            return Err(format!(
                "#{}: {} is no longer live for {}",
                row.id.0,
                t.agent,
                asset.map_or_else(|| t.intent.action().to_owned(), |a| a.to_string())
            ));
        }
        let (chain, intended) = t.intent.chain_network();
        let live = pipeline::Live {
            store: &self.store,
            signer: &self.signer,
            rpc: self.rpc.as_ref(),
            evm_rpc: self.evm_rpcs.get(&intended),
        };
        let moved = |network: vigil_protocol::Network| {
            format!(
                "#{}: the action was asked for on {}, but {} works on {} now; nothing was sent",
                row.id.0,
                vigil_protocol::network_name(chain, intended),
                t.agent,
                vigil_protocol::network_name(chain, network)
            )
        };
        if chain == vigil_protocol::Chain::Evm {
            // A node checked against the pin, the account settled, a fresh nonce and fees.
            let view = self
                .evm_view(&t.agent, agent.mode)
                .await?
                .ok_or_else(|| format!("#{}: {} has no EVM network here now", row.id.0, t.agent))?;
            if view.network != intended {
                return Err(moved(view.network));
            }
            let rpc = live
                .evm_rpc
                .ok_or_else(|| format!("#{}: no node for its network", row.id.0))?;
            let context =
                pipeline::evm_context(rpc, &self.store, &view, &t.intent, unix_now()).await?;
            return Ok(pipeline::execute_live_evm(
                &live,
                &view,
                &t.agent,
                &t.intent,
                &t.key,
                context,
                unix_now(),
            )
            .await);
        }
        let (_, blockhash, network) = self.chain_view(&t.agent).await?;
        if intended != network {
            return Err(moved(network));
        }
        Ok(
            pipeline::execute_live(&live, &t.agent, &t.intent, &t.key, &blockhash, unix_now())
                .await,
        )
    }

    /// Records that the transfer under `key` did not run, as its final outcome.
    fn record_not_run(&self, key: &str, why: &str) {
        let recorded = match self.store.lock() {
            Ok(store) => store
                .record_not_run(key, why, unix_now())
                .map_err(|e| e.to_string()),
            Err(_) => Err("state unavailable".into()),
        };
        if let Err(e) = recorded {
            tracing::error!(key, error = %e, "could not record that a confirmed transfer did not run");
        }
    }

    /// After a restart at `now`: the transfers the operator approved that never started (a
    /// crash or restart between the Yes and the execution). One still inside its
    /// confirmation's time-to-live runs; an older one does not run on the old Yes, it is put
    /// to the operator again as a new confirmation. One line each, for the log and the
    /// operator.
    pub async fn resume_confirmed(&self, now: u64) -> Vec<String> {
        let rows = match self.store.lock() {
            Ok(store) => store.approved_unexecuted(ConfirmationKind::MoveFunds),
            Err(_) => return vec!["state unavailable: approved transfers not resumed".into()],
        };
        let rows = match rows {
            Ok(rows) => rows,
            Err(e) => return vec![format!("approved transfers not resumed: {e}")],
        };
        let mut report = Vec::new();
        for row in rows {
            let line = if now < row.confirmation.expires_at {
                match self.execute_confirmed(&row).await {
                    Ok(outcome) => {
                        format!("approved #{} run after a restart: {}", row.id.0, outcome)
                    }
                    Err(e) => format!("approved #{} not run: {e}", row.id.0),
                }
            } else {
                self.ask_again(&row, now)
            };
            report.push(line);
        }
        report
    }

    /// An approved transfer whose confirmation expired before it ran: recorded as not run,
    /// and asked again as a new confirmation (a fresh key and time-to-live).
    fn ask_again(&self, row: &ConfirmationRow, now: u64) -> String {
        let id = row.id.0;
        let t = match StoredTransfer::of(row) {
            Ok(t) => t,
            Err(e) => return format!("approved #{id} not run: {e}"),
        };
        let recorded = match self.store.lock() {
            Ok(store) => store
                .record_not_run(
                    &t.key,
                    "its confirmation expired before it ran (a restart): asked again",
                    now,
                )
                .map_err(|e| e.to_string()),
            Err(_) => Err("state unavailable".into()),
        };
        match recorded {
            Ok(true) => {}
            Ok(false) => return format!("approved #{id}: it already ran; nothing to do"),
            Err(e) => return format!("approved #{id} not run and not asked again: {e}"),
        }
        let key = pipeline::retry_key(&t.agent, now, &t.intent, &t.key);
        let asked = pipeline::ask_confirmation(
            &t.agent,
            &self.store,
            now,
            &t.intent,
            &key,
            &row.confirmation.summary,
        );
        match asked {
            Outcome::AwaitingConfirmation {
                confirmation_id, ..
            } => format!(
                "approved #{id} was not run before its confirmation expired (a restart); \
                 nothing was sent. Asked again as #{confirmation_id}: answer it only if the \
                 transfer is still wanted"
            ),
            other => format!(
                "approved #{id} was not run before its confirmation expired (a restart); \
                 nothing was sent, and it could not be asked again: {other}"
            ),
        }
    }
}
