//! Executing a live action at most once: its idempotency key is claimed durably, the
//! signer signs it (or asks for the operator's code), it is broadcast and confirmed, and the
//! outcome is recorded with the execution. A Solana transfer goes through the Solana node; an
//! EVM action through [`super::evm`] (every transaction of the answer recorded, then sent in
//! order).

use std::time::Duration;

use tokio::sync::Mutex;
use vigil_protocol::{AgentId, Chain, Context, Intent, SignRequest, SignResult};

use super::Outcome;
use super::layer3::{AtSigner, pending_approval, signer_failure};
use crate::chains::evm_rpc::EvmRpc;
use crate::chains::solana_rpc::{SigStatus, SolanaRpc};
use crate::firewall::risk_evm::EvmView;
use crate::signer_client::SignerClient;
use crate::store::Store;

/// What executing a live transfer needs: the state, the signer, the chain.
#[derive(Debug)]
pub struct Live<'a> {
    /// State (execution claims and records, pending confirmations).
    pub store: &'a std::sync::Mutex<Store>,
    /// The signer.
    pub signer: &'a Mutex<SignerClient>,
    /// The chain, for broadcast and confirmation.
    pub rpc: Option<&'a SolanaRpc>,
    /// The EVM node of the action's network, for an EVM action.
    pub evm_rpc: Option<&'a EvmRpc>,
}

/// Executes a live transfer at most once: claims its idempotency key durably, asks the
/// signer to sign, broadcasts and confirms, and records the outcome. Used for a decision
/// that needs no confirmation and for one the operator confirmed.
pub async fn execute_live(
    live: &Live<'_>,
    agent: &AgentId,
    intent: &Intent,
    key: &str,
    recent_blockhash: &str,
    now: u64,
) -> Outcome {
    let Intent::Transfer(t) = intent.clone() else {
        return Outcome::Held {
            layer: "state".into(),
            reason: format!(
                "a {} is an EVM action: it runs with its nonce and fees (execute_live_evm)",
                intent.action()
            ),
        };
    };
    if t.chain != Chain::Solana {
        return Outcome::Held {
            layer: "state".into(),
            reason: "an EVM transfer runs with its nonce and fees (execute_live_evm)".into(),
        };
    }
    if let Err(held) = claim(live.store, key, now) {
        return held;
    }
    let request = SignRequest {
        agent: agent.clone(),
        intent: intent.clone(),
        context: Context {
            recent_blockhash: Some(recent_blockhash.to_string()),
            ..Context::default()
        },
        idempotency_key: match key.parse() {
            Ok(k) => k,
            Err(e) => {
                return Outcome::Held {
                    layer: "state".into(),
                    reason: e,
                };
            }
        },
    };
    let answer = live.signer.lock().await.sign(request).await;
    let outcome = match answer {
        Ok(SignResult::Signed(s)) => {
            let chain = broadcast_signed(live.rpc, &s.tx, &s.signature).await;
            Outcome::Signed {
                summary: s.summary,
                signature: s.signature,
                tx: s.tx,
                chain,
            }
        }
        Ok(SignResult::NeedsApproval(n)) => {
            awaiting_approval(live, agent, now, intent, key, &n.summary, &n.approval_id)
        }
        Err(e) => signer_failure(e),
    };
    let record = serde_json::json!({
        "agent": agent,
        "asset": t.asset,
        "amount": t.amount,
        "result": outcome,
    });
    record_outcome(live, key, &record, now);
    outcome
}

/// Executes a live EVM action at most once: claims its key, asks the signer to sign it with
/// `context` (the nonce and fees [`super::evm::context`] read), sends every transaction of the
/// answer in order, each recorded first, waits for the receipts, and records the outcome with
/// what the signer counts as spent (the amount, and the fees' worst case in the native asset).
pub(crate) async fn execute_live_evm(
    live: &Live<'_>,
    view: &EvmView,
    agent: &AgentId,
    intent: &Intent,
    key: &str,
    context: Context,
    now: u64,
) -> Outcome {
    let Some(rpc) = live.evm_rpc else {
        return Outcome::Held {
            layer: "rpc".into(),
            reason: "a live EVM action needs the node of its network (evm_rpc_urls)".into(),
        };
    };
    if let Err(held) = claim(live.store, key, now) {
        return held;
    }
    let (nonce, fee_per_tx) = (
        context.nonce.unwrap_or(0),
        u128::from(context.gas_limit.unwrap_or(0))
            .saturating_mul(context.max_fee_per_gas.map_or(0, |q| q.get())),
    );
    let idempotency_key = match key.parse() {
        Ok(k) => k,
        Err(e) => {
            return Outcome::Held {
                layer: "state".into(),
                reason: e,
            };
        }
    };
    let request = SignRequest {
        agent: agent.clone(),
        intent: intent.clone(),
        context,
        idempotency_key,
    };
    let answer = live.signer.lock().await.sign(request).await;
    let mut spends = Vec::new();
    let outcome = match answer {
        Ok(SignResult::Signed(s)) => {
            let count = u128::try_from(s.prior.len() + 1).unwrap_or(u128::MAX);
            // As the signer counts it: every call's token amount, borrow and withdraw
            // included (its caps bound what moves either way), and the fees' worst case.
            if let Some((asset, delta)) = super::paper_delta(intent) {
                spends.push((asset.to_string(), delta.unsigned_abs().to_string()));
            }
            spends.push((
                view.native.to_string(),
                fee_per_tx.saturating_mul(count).to_string(),
            ));
            let chain = super::evm::send_signed(
                rpc,
                live.store,
                super::evm::Sender {
                    agent: agent.as_str(),
                    view,
                    key,
                    nonce,
                },
                &s,
                now,
            )
            .await;
            Outcome::Signed {
                summary: s.summary,
                signature: s.signature,
                tx: s.tx,
                chain,
            }
        }
        Ok(SignResult::NeedsApproval(n)) => {
            awaiting_approval(live, agent, now, intent, key, &n.summary, &n.approval_id)
        }
        Err(e) => signer_failure(e),
    };
    let record = serde_json::json!({
        "agent": agent,
        "chain": "evm",
        "asset": intent.asset(),
        "spends": spends,
        "result": outcome,
    });
    record_outcome(live, key, &record, now);
    outcome
}

/// Sends a signed transaction through the RPC and waits for confirmation. The RPC client checks
/// that the node answers with the transaction's own signature (a lying node is an error).
pub(crate) async fn broadcast_signed(rpc: Option<&SolanaRpc>, tx: &str, signature: &str) -> String {
    let Some(rpc) = rpc else {
        return "not broadcast: no Solana RPC configured".into();
    };
    let sent = match rpc.send_transaction(tx).await {
        Ok(sig) if sig == signature => sig,
        Ok(other) => {
            return format!("failed: the node answered signature {other}, not {signature}");
        }
        Err(e) => return format!("failed: {e}"),
    };
    match rpc
        .confirm(&sent, CONFIRM_TIMEOUT, Duration::from_millis(200))
        .await
    {
        Ok(SigStatus::Confirmed) => "confirmed".into(),
        Ok(SigStatus::Finalized) => "finalized".into(),
        Ok(SigStatus::Failed(why)) => format!("failed on chain: {why}"),
        Ok(other) => format!("not confirmed: {other:?}"),
        Err(e) => format!("not confirmed: {e}"),
    }
}

/// How long a live transfer may take to confirm before it is reported unconfirmed.
pub(super) const CONFIRM_TIMEOUT: Duration = Duration::from_secs(30);

/// Claims the decision's idempotency key in the state store (durably, before anything is
/// asked of the signer); an already-claimed key or an unavailable store means hold.
pub(super) fn claim(store: &std::sync::Mutex<Store>, key: &str, now: u64) -> Result<(), Outcome> {
    let held = |reason: String| Outcome::Held {
        layer: "state".into(),
        reason,
    };
    let store = store.lock().map_err(|_| held("state unavailable".into()))?;
    match store.claim_execution(key, now) {
        Ok(true) => Ok(()),
        Ok(false) => Err(held(format!("decision {key} was already executed"))),
        Err(e) => Err(held(format!("cannot claim execution {key}: {e}"))),
    }
}

/// Records a claimed execution's outcome; a failure to record it is logged.
fn record_outcome(live: &Live<'_>, key: &str, record: &serde_json::Value, now: u64) {
    let finished = live
        .store
        .lock()
        .map_err(|_| "state unavailable".to_string())
        .and_then(|store| {
            store
                .finish_execution(key, &record.to_string(), now)
                .map_err(|e| e.to_string())
        });
    if let Err(e) = finished {
        tracing::error!(error = %e, "could not record the execution's outcome");
    }
}

/// A live request the signer holds for the operator's approval: recorded as pending, with the
/// signer's approval id and the idempotency key the grant is collected with.
fn awaiting_approval(
    live: &Live<'_>,
    agent: &AgentId,
    now: u64,
    intent: &Intent,
    key: &str,
    summary: &str,
    approval_id: &vigil_protocol::ApprovalId,
) -> Outcome {
    pending_approval(
        agent,
        live.store,
        now,
        intent,
        "live",
        summary,
        AtSigner {
            approval_id: Some(approval_id.as_str()),
            key: Some(key),
            request_id: None,
        },
    )
}
