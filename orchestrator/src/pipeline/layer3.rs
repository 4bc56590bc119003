//! Layer 3, the signer: `dry_run` for a paper decision (a simulated fill when it would
//! sign), `sign` for a live one (after the operator's Yes unless the agent is configured
//! otherwise). What waits for the operator is recorded as a confirmation.

use vigil_protocol::{
    AgentId, Chain, ConfirmationPurpose, Context, Decision, DryRunRequest, DryRunResult, Intent,
    NewConfirmation,
};

use super::execute::{Live, execute_live, execute_live_evm};
use super::record::{Pending, PendingFill};
use super::{Deps, Inputs, Outcome, evm, idempotency_key, paper_delta};
use crate::config::AgentConfig;
use crate::deputy::usd;
use crate::signer_client::SignerError;
use crate::store::Store;

/// A paper action: the signer's `dry_run`; when it would sign, the fill is left in `pending`
/// for the decision's record, which claims, fills and finishes it in one commit (nothing
/// leaves the state file for a paper fill, so nothing needs to be on disk before).
pub(super) async fn paper(
    agent: &AgentConfig,
    intent: &Intent,
    inputs: &Inputs,
    deps: &Deps<'_>,
    pending: &mut Pending,
) -> Outcome {
    // Paper EVM actions are asked without a context: the signer decides on the policy's fee
    // bounds, the most the fees could be. Nothing is settled, signed or sent for them.
    let context = solana_context(intent, inputs);
    let usd = usd::phrase(context.usd_estimate.as_deref());
    match dry_run(&agent.id, intent, context, deps).await {
        Ok(r) => match r.decision {
            Decision::Allow => {
                let Some((asset, delta)) = paper_delta(intent) else {
                    return Outcome::Held {
                        layer: "state".into(),
                        reason: "paper fill not recorded: amount too large or \"all\"".into(),
                    };
                };
                pending.fill = Some(PendingFill {
                    key: idempotency_key(&agent.id, inputs.now, intent),
                    asset,
                    delta,
                    summary: r.summary.clone(),
                    aave: super::paper_aave_fill(intent),
                });
                Outcome::PaperFilled {
                    summary: format!("{} ({usd})", r.summary),
                }
            }
            Decision::NeedsApproval => {
                let context = solana_context(intent, inputs);
                paper_approval(&agent.id, intent, context, inputs, deps).await
            }
            Decision::Deny => denied(r),
        },
        Err(e) => signer_failure(e),
    }
}

/// A paper or confirmation context: a Solana intent's recent blockhash and its USD estimate at
/// the SOL price source's price; an EVM intent's USD
/// estimate at the Aave oracle's price (no fees: the signer decides on the policy's bounds).
fn solana_context(intent: &Intent, inputs: &Inputs) -> Context {
    match intent.chain_network().0 {
        Chain::Solana => Context {
            recent_blockhash: Some(inputs.recent_blockhash.clone()),
            usd_estimate: inputs
                .sol_usd
                .and_then(|price| usd::solana_intent(intent, price))
                .map(Box::new),
            ..Context::default()
        },
        Chain::Evm => Context {
            usd_estimate: inputs
                .evm
                .as_ref()
                .and_then(|view| usd::evm_intent(intent, view))
                .map(Box::new),
            ..Context::default()
        },
        Chain::Hyperliquid => Context::default(),
    }
}

pub(super) async fn live(
    agent: &AgentConfig,
    intent: &Intent,
    inputs: &Inputs,
    deps: &Deps<'_>,
) -> Outcome {
    live_as(agent, intent, inputs, deps, agent.confirm_transfers).await
}

/// A live action, asking the operator's Yes first when `ask_operator` (the agent's
/// `confirm_transfers` for what it proposes; never for the risk engine's closing flow, which
/// only takes exposure off and alerts the operator itself). The signer decides as always.
pub(super) async fn live_as(
    agent: &AgentConfig,
    intent: &Intent,
    inputs: &Inputs,
    deps: &Deps<'_>,
    ask_operator: bool,
) -> Outcome {
    let key = idempotency_key(&agent.id, inputs.now, intent);
    // EVM: the nonce and fees from the node (after settling what is in flight), the same
    // context for the dry run and the signature.
    let evm = match intent.chain_network().0 {
        Chain::Solana => None,
        // Hyperliquid actions take their own path (`perp.rs`) and never reach this one.
        Chain::Hyperliquid => {
            return Outcome::Held {
                layer: "3".into(),
                reason: "a Hyperliquid action reached the EVM/Solana path; nothing was signed"
                    .into(),
            };
        }
        Chain::Evm => {
            let (Some(rpc), Some(view)) = (deps.evm_rpc, inputs.evm.as_ref()) else {
                return Outcome::Held {
                    layer: "rpc".into(),
                    reason: "a live EVM action needs the node of the agent's EVM network (evm_rpc_urls in the config)".into(),
                };
            };
            match evm::context(rpc, deps.store, view, intent, inputs.now).await {
                Ok(context) => Some((rpc, view, context)),
                Err(reason) => {
                    return Outcome::Held {
                        layer: "rpc".into(),
                        reason,
                    };
                }
            }
        }
    };
    if ask_operator {
        let context = evm
            .as_ref()
            .map_or_else(|| solana_context(intent, inputs), |(_, _, c)| c.clone());
        let usd = usd::phrase(context.usd_estimate.as_deref());
        match dry_run(&agent.id, intent, context, deps).await {
            Ok(r) if r.decision == Decision::Allow => {
                // The operator reads the signer's summary and the orchestrator's estimate.
                let summary = format!("{} ({usd}, the orchestrator's estimate)", r.summary);
                return ask_confirmation(&agent.id, deps.store, inputs.now, intent, &key, &summary);
            }
            // Above the threshold the signer's own approval (a code, stronger than a button)
            // decides.
            Ok(r) if r.decision == Decision::NeedsApproval => {}
            Ok(r) => return denied(r),
            Err(e) => return signer_failure(e),
        }
    }
    let live = Live {
        store: deps.store,
        signer: deps.signer,
        rpc: deps.rpc,
        evm_rpc: deps.evm_rpc,
    };
    match evm {
        Some((_, view, context)) => {
            execute_live_evm(&live, view, &agent.id, intent, &key, context, inputs.now).await
        }
        None => {
            execute_live(
                &live,
                &agent.id,
                intent,
                &key,
                &inputs.recent_blockhash,
                inputs.now,
            )
            .await
        }
    }
}

/// A paper action above the approval threshold: the signer is asked to put it to the operator
/// (`request_confirmation` of a `paper_approval`: the signer renders it, marked PAPER), and
/// it waits here for the approver's answer. Nothing is ever signed for it.
pub(super) async fn paper_approval(
    agent: &AgentId,
    intent: &Intent,
    context: Context,
    inputs: &Inputs,
    deps: &Deps<'_>,
) -> Outcome {
    let key = format!("p-{}", idempotency_key(agent, inputs.now, intent));
    let idempotency_key = match key.parse() {
        Ok(k) => k,
        Err(e) => {
            return Outcome::Held {
                layer: "state".into(),
                reason: e,
            };
        }
    };
    let request = NewConfirmation {
        purpose: ConfirmationPurpose::PaperApproval {
            agent: agent.clone(),
            intent: Box::new(intent.clone()),
            context,
        },
        idempotency_key,
    };
    match deps.signer.lock().await.request_confirmation(request).await {
        Ok(created) => pending_approval(
            agent,
            deps.store,
            inputs.now,
            intent,
            "paper",
            &created.summary,
            AtSigner {
                request_id: Some(created.request_id.as_str()),
                ..AtSigner::default()
            },
        ),
        Err(e) => signer_failure(e),
    }
}

/// Asks the signer what it would do with `intent` now (`dry_run`: nothing signed or recorded).
pub(super) async fn dry_run(
    agent: &AgentId,
    intent: &Intent,
    context: Context,
    deps: &Deps<'_>,
) -> Result<DryRunResult, SignerError> {
    let request = DryRunRequest {
        agent: agent.clone(),
        intent: intent.clone(),
        context,
    };
    deps.signer.lock().await.dry_run(request).await
}

/// The signer's policy would refuse it: layer 3, with the rule that decided.
pub(super) fn denied(r: DryRunResult) -> Outcome {
    Outcome::Refused {
        layer: "3".into(),
        rule: r
            .rule
            .map_or("deny".into(), |rule| rule.as_str().to_string()),
        message: r.summary,
    }
}

/// Records a live transfer as waiting for the operator's Yes (a `move_funds` pending
/// confirmation carrying the intent and its idempotency key). The same decision twice is
/// one pending item. Also how a transfer approved before a restart that outlived its
/// confirmation is put to the operator again.
pub(crate) fn ask_confirmation(
    agent: &AgentId,
    store: &std::sync::Mutex<Store>,
    now: u64,
    intent: &Intent,
    key: &str,
    summary: &str,
) -> Outcome {
    let payload = serde_json::json!({
        "mode": "live", "agent": agent, "intent": intent, "idempotency_key": key,
    });
    let pending = crate::store::NewConfirmation {
        kind: crate::store::ConfirmationKind::MoveFunds,
        agent: Some(agent.clone()),
        summary: summary.to_string(),
        payload_json: payload.to_string(),
        idempotency_key: confirmation_key(key),
        created_at: now,
        expires_at: now + MOVE_FUNDS_TTL_SECS,
    };
    match create_confirmation(store, &pending) {
        Ok(id) => Outcome::AwaitingConfirmation {
            summary: summary.to_string(),
            confirmation_id: id,
        },
        Err(e) => Outcome::Held {
            layer: "state".into(),
            reason: format!("could not record the confirmation request: {e}"),
        },
    }
}

/// Records a pending confirmation; its id.
fn create_confirmation(
    store: &std::sync::Mutex<Store>,
    pending: &crate::store::NewConfirmation,
) -> Result<i64, String> {
    let store = store.lock().map_err(|_| "state unavailable".to_string())?;
    store
        .create_confirmation(pending)
        .map(|id| id.0)
        .map_err(|e| e.to_string())
}

/// How long a live transfer waits for the operator's Yes.
pub(super) const MOVE_FUNDS_TTL_SECS: u64 = 600;

/// What identifies a pending approval at the signer: a live transfer's `approval_id` and the
/// idempotency `key` its `sign` used (the same `sign` collects the grant), or a paper
/// action's confirmation `request_id`.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct AtSigner<'a> {
    pub(crate) approval_id: Option<&'a str>,
    pub(crate) key: Option<&'a str>,
    pub(crate) request_id: Option<&'a str>,
}

/// Records what waits for the operator's answer in the approver's chat (a `signer_approval`
/// row); the orchestrator follows it with `request_status` (`scheduler/operator_requests.rs`).
pub(super) fn pending_approval(
    agent: &AgentId,
    store: &std::sync::Mutex<Store>,
    now: u64,
    intent: &Intent,
    mode: &str,
    summary: &str,
    at: AtSigner<'_>,
) -> Outcome {
    let key = format!("approval-{}", idempotency_key(agent, now, intent));
    let payload = serde_json::json!({
        "mode": mode, "agent": agent, "intent": intent, "approval_id": at.approval_id,
        "key": at.key, "request_id": at.request_id,
    });
    let created = create_confirmation(
        store,
        &crate::store::NewConfirmation {
            kind: crate::store::ConfirmationKind::SignerApproval,
            agent: Some(agent.clone()),
            summary: summary.to_string(),
            payload_json: payload.to_string(),
            idempotency_key: key.clone(),
            created_at: now,
            expires_at: now + 600,
        },
    );
    match created {
        Ok(id) => Outcome::NeedsApproval {
            approval_id: at
                .approval_id
                .or(at.request_id)
                .unwrap_or_default()
                .to_string(),
            summary: summary.to_string(),
            confirmation_id: id,
        },
        Err(e) => Outcome::Held {
            layer: "state".into(),
            reason: format!("could not record the pending approval: {e}"),
        },
    }
}

pub(super) fn signer_failure(e: SignerError) -> Outcome {
    match e {
        SignerError::Refused(body) => Outcome::Refused {
            layer: "3".into(),
            rule: body.rule.map_or_else(
                || body.kind.as_str().to_string(),
                |r| r.as_str().to_string(),
            ),
            message: body.message,
        },
        other => Outcome::Held {
            layer: "signer".into(),
            reason: other.to_string(),
        },
    }
}

/// The store key of the operator's Yes/No confirmation for the live transfer whose signer
/// key is `key`. A decision key is at most 60 characters (a 32-character agent id, the unix
/// time, 16 hex digits), so a two-character prefix keeps every confirmation key within the
/// 64 an idempotency key may hold; the longer `confirm-` prefix pushed agents with ids over
/// 24 characters past it, and their live transfers could never be confirmed.
fn confirmation_key(key: &str) -> String {
    format!("c-{key}")
}

#[cfg(test)]
mod tests {
    use vigil_protocol::{AgentId, IdempotencyKey};

    use super::confirmation_key;

    #[test]
    fn the_confirmation_key_of_the_longest_agent_id_is_a_valid_key() {
        let agent: AgentId = "a"
            .repeat(32)
            .parse()
            .expect("a 32-character agent id is valid");
        let key = format!("{agent}-{}-{}", u64::from(u32::MAX) * 4, "f".repeat(16));
        assert!(IdempotencyKey::try_from(key.clone()).is_ok(), "{key}");
        let confirmation = confirmation_key(&key);
        assert!(
            IdempotencyKey::try_from(confirmation.clone()).is_ok(),
            "{confirmation} ({} characters)",
            confirmation.len()
        );
    }
}
