//! Executing a live transfer at most once: its idempotency key is claimed durably, the
//! signer signs it (or asks for the operator's code), it is broadcast and confirmed, and the
//! outcome is recorded with the execution.

use std::time::Duration;

use tokio::sync::Mutex;
use vigil_protocol::{AgentId, Context, Intent, SignRequest, SignResult};

use super::Outcome;
use super::layer3::{AtSigner, pending_approval, signer_failure};
use crate::chains::solana_rpc::{SigStatus, SolanaRpc};
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
    let Intent::Transfer(t) = intent else {
        return Outcome::Held {
            layer: "layer1".into(),
            reason: super::EVM_NOT_YET.into(),
        };
    };
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
        Ok(SignResult::NeedsApproval(n)) => pending_approval(
            agent,
            live.store,
            now,
            intent,
            "live",
            &n.summary,
            AtSigner {
                approval_id: Some(n.approval_id.as_str()),
                key: Some(key),
                request_id: None,
            },
        ),
        Err(e) => signer_failure(e),
    };
    let finished = live
        .store
        .lock()
        .map_err(|_| "state unavailable".to_string())
        .and_then(|store| {
            store
                .finish_execution(
                    key,
                    &serde_json::json!({
                        "agent": agent,
                        "asset": t.asset,
                        "amount": t.amount,
                        "result": outcome,
                    })
                    .to_string(),
                    now,
                )
                .map_err(|e| e.to_string())
        });
    if let Err(e) = finished {
        tracing::error!(error = %e, "could not record the execution's outcome");
    }
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
