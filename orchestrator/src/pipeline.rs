//! One decision of one agent, end to end: the cost gate, the LLM call, layer 1 (strict
//! schema, with up to two correction rounds), layer 2 (the agent's risk profile), layer 3
//! (the signer: `dry_run` in paper mode, `sign` in live mode), and the record of what
//! happened. Any failure along the way means `hold`, recorded with the layer and the rule.
//!
//! Nothing the LLM returns is executed: it is parsed into a closed type, and only a typed
//! transfer intent, built here from checked values, ever reaches the signer.

use std::time::Duration;

use serde::Serialize;
use sha2::{Digest, Sha256};
use tokio::sync::Mutex;
use vigil_protocol::message::{Decision, DryRunRequest, SignRequest, SignResult};
use vigil_protocol::{AgentId, Chain, Context, Intent, Network, TransferIntent};

use crate::chains::solana_rpc::{SigStatus, SolanaRpc};
use crate::config::AgentConfig;
use crate::cost::{self, Prices};
use crate::firewall::prompt::{self, UntrustedItem};
use crate::firewall::risk::{self, Checked};
use crate::firewall::schema::{self, Action, MAX_CORRECTIONS};
use crate::llm::{ChatMessage, ChatRequest, Provider, Role};
use crate::signer_client::{SignerClient, SignerError};
use crate::store::{NewDecision, Store};

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
    AwaitingConfirmation { summary: String, pending_id: i64 },
    /// The signer needs the operator's code; a pending confirmation was recorded.
    NeedsApproval {
        approval_id: String,
        summary: String,
        pending_id: i64,
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

/// Where a decision's inputs come from.
#[derive(Debug)]
pub struct Inputs {
    /// The agent's balance in base units of the asset it trades (from the chain, or paper).
    pub balance: u128,
    /// Untrusted data for the prompt (peer labels, memos, RPC data).
    pub untrusted: Vec<UntrustedItem>,
    /// A recent blockhash (live mode) or a paper stand-in.
    pub recent_blockhash: String,
    /// The network the agent's intents go to.
    pub network: Network,
    /// Unix seconds now, and the start of the cost-cap day.
    pub now: u64,
    /// Start of the current UTC day (for the daily LLM cost cap).
    pub day_start: u64,
}

/// Everything a decision needs besides its inputs.
#[derive(Debug)]
pub struct Deps<'a> {
    /// The agent's provider, and the fallback used when the first has no key.
    pub provider: &'a Provider,
    /// Used when `provider` fails with a missing key (the Experimental tier).
    pub fallback: Option<&'a Provider>,
    /// The provider's prices.
    pub prices: Prices,
    /// The daily LLM cap, micro-USD, for all agents together.
    pub daily_cap_micros: u64,
    /// State.
    pub store: &'a std::sync::Mutex<Store>,
    /// The signer.
    pub signer: &'a Mutex<SignerClient>,
    /// The chain, for live mode (broadcast and confirmation).
    pub rpc: Option<&'a SolanaRpc>,
}

/// A decision and how it came about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decided {
    /// What happened.
    pub outcome: Outcome,
    /// Replies layer 1 rejected before this one (each answered with a correction prompt).
    pub corrections: Vec<String>,
}

/// Runs one decision for `agent` and records it.
pub async fn decide(agent: &AgentConfig, inputs: &Inputs, deps: &Deps<'_>) -> Decided {
    let mut corrections = Vec::new();
    let outcome = run(agent, inputs, deps, &mut corrections).await;
    record(agent, inputs, deps, &outcome);
    Decided {
        outcome,
        corrections,
    }
}

async fn run(
    agent: &AgentConfig,
    inputs: &Inputs,
    deps: &Deps<'_>,
    corrections: &mut Vec<String>,
) -> Outcome {
    let mut messages: Vec<ChatMessage> = prompt::build_messages(
        &agent.system_prompt,
        &agent.id,
        inputs.balance,
        &agent.risk.peers,
        &inputs.untrusted,
    )
    .into_iter()
    .map(|(role, content)| ChatMessage {
        role: role_of(role),
        content,
    })
    .collect();

    // Layer 1, with up to MAX_CORRECTIONS correction rounds; every call passes the cost gate.
    let mut provider = deps.provider;
    let mut attempt = 0;
    let decision = loop {
        let request = ChatRequest {
            agent: agent.id.clone(),
            model: agent.model.clone(),
            temperature: agent.temperature,
            max_tokens: agent.max_tokens,
            messages: messages.clone(),
            json_mode: true,
        };
        if let Err(held) = cost_gate(agent, &request, inputs, deps) {
            return held;
        }
        let reply = match (provider.complete(&request).await, deps.fallback) {
            (Ok(reply), _) => reply,
            (Err(crate::llm::LlmError::MissingKey(_)), Some(fallback))
                if !std::ptr::eq(provider, fallback) =>
            {
                tracing::info!(agent = %agent.id, "no API key for {}; using the fallback provider", provider.name());
                provider = fallback;
                continue;
            }
            (Err(e), _) => {
                return Outcome::Held {
                    layer: "llm".into(),
                    reason: format!("provider {} failed ({}): {e}", provider.name(), e.kind()),
                };
            }
        };
        let spent = cost::actual_micros(
            reply.usage.prompt_tokens,
            reply.usage.completion_tokens,
            &deps.prices,
        );
        let recorded = deps
            .store
            .lock()
            .map_err(|_| "state unavailable".to_string())
            .and_then(|store| {
                store
                    .record_cost(
                        &agent.id,
                        inputs.now,
                        spent,
                        reply.usage.prompt_tokens,
                        reply.usage.completion_tokens,
                        &reply.model,
                    )
                    .map_err(|e| e.to_string())
            });
        if let Err(e) = recorded {
            tracing::error!(agent = %agent.id, error = %e, "could not record LLM cost");
        }
        match schema::parse_decision(&reply.content) {
            Ok(decision) => break decision,
            Err(e) if attempt < MAX_CORRECTIONS => {
                attempt += 1;
                tracing::info!(agent = %agent.id, attempt, error = %e, "layer 1 rejected the reply; asking for a correction");
                corrections.push(e.to_string());
                messages.push(ChatMessage {
                    role: Role::Assistant,
                    content: reply.content,
                });
                messages.push(ChatMessage {
                    role: Role::User,
                    content: schema::correction_prompt(&e),
                });
            }
            Err(e) => {
                return Outcome::Held {
                    layer: "1".into(),
                    reason: format!("no valid reply after {MAX_CORRECTIONS} corrections: {e}"),
                };
            }
        }
    };

    if decision.action == Action::Hold {
        return Outcome::Held {
            layer: "agent".into(),
            reason: decision.reasoning,
        };
    }
    // Layer 2.
    let checked = match risk::check(&decision, &agent.risk, inputs.balance) {
        Ok(Some(checked)) => checked,
        Ok(None) => {
            return Outcome::Held {
                layer: "agent".into(),
                reason: decision.reasoning,
            };
        }
        Err(refusal) => {
            return Outcome::Refused {
                layer: "2".into(),
                rule: format!("{:?}", refusal.rule),
                message: refusal.message,
            };
        }
    };
    // Layer 3.
    // Live only when the agent is live AND this asset was opted into; paper otherwise.
    if agent.is_live(&checked.asset) {
        live(agent, &checked, inputs, deps).await
    } else {
        paper(agent, &checked, inputs, deps).await
    }
}

fn cost_gate(
    agent: &AgentConfig,
    request: &ChatRequest,
    inputs: &Inputs,
    deps: &Deps<'_>,
) -> Result<(), Outcome> {
    let prompt_tokens: u32 = request
        .messages
        .iter()
        .map(|m| cost::estimate_tokens(&m.content))
        .fold(0, u32::saturating_add);
    let worst = cost::worst_case_micros(prompt_tokens, request.max_tokens, &deps.prices);
    let spent = match deps.store.lock() {
        Ok(store) => store.cost_spent_since(inputs.day_start),
        Err(_) => {
            return Err(Outcome::Held {
                layer: "cost".into(),
                reason: "state unavailable".into(),
            });
        }
    };
    let spent = match spent {
        Ok(s) => s,
        Err(e) => {
            return Err(Outcome::Held {
                layer: "cost".into(),
                reason: format!("cannot read the cost ledger: {e}"),
            });
        }
    };
    cost::check_budget(spent, deps.daily_cap_micros, worst).map_err(|refusal| {
        tracing::warn!(agent = %agent.id, "{}", refusal.message);
        Outcome::Held {
            layer: "cost".into(),
            reason: refusal.message,
        }
    })
}

fn intent_of(checked: &Checked, network: Network) -> Intent {
    Intent::Transfer(TransferIntent {
        chain: Chain::Solana,
        network,
        asset: checked.asset.clone(),
        to: checked.to_address.clone(),
        amount: checked.amount,
    })
}

/// The idempotency key of this decision: the same decision (agent, time, intent) maps to the
/// same key, so a retry after a crash is recognised by the store and by the signer.
fn idempotency_key(agent: &AgentId, now: u64, intent: &Intent) -> String {
    let digest = Sha256::digest(serde_json::to_vec(intent).unwrap_or_default());
    format!("{agent}-{now}-{}", hex::encode(&digest[..8]))
}

async fn paper(
    agent: &AgentConfig,
    checked: &Checked,
    inputs: &Inputs,
    deps: &Deps<'_>,
) -> Outcome {
    let intent = intent_of(checked, inputs.network);
    let request = DryRunRequest {
        agent: agent.id.clone(),
        intent: intent.clone(),
        context: Context {
            recent_blockhash: Some(inputs.recent_blockhash.clone()),
        },
    };
    let answer = deps.signer.lock().await.dry_run(request).await;
    match answer {
        Ok(r) => match r.decision {
            Decision::Allow => {
                let key = idempotency_key(&agent.id, inputs.now, &intent);
                if let Err(held) = claim(deps.store, &key, inputs.now) {
                    return held;
                }
                let filled = deps
                    .store
                    .lock()
                    .map_err(|_| "state unavailable".to_string())
                    .and_then(|store| {
                        let amount = i128::try_from(checked.amount.base_units())
                            .map_err(|_| "amount too large".to_string())?;
                        store
                            .agent(&agent.id)
                            .record_paper_fill(inputs.now, &checked.asset, -amount, &r.summary)
                            .and_then(|()| {
                                store.finish_execution(
                                    &key,
                                    &serde_json::json!({"paper": r.summary}).to_string(),
                                    inputs.now,
                                )
                            })
                            .map_err(|e| e.to_string())
                    });
                match filled {
                    Ok(()) => Outcome::PaperFilled { summary: r.summary },
                    Err(e) => Outcome::Held {
                        layer: "state".into(),
                        reason: format!("paper fill not recorded: {e}"),
                    },
                }
            }
            Decision::NeedsApproval => pending_approval(
                &agent.id, deps.store, inputs.now, &intent, "paper", &r.summary, None,
            ),
            Decision::Deny => Outcome::Refused {
                layer: "3".into(),
                rule: r
                    .rule
                    .map_or("deny".into(), |rule| rule.as_str().to_string()),
                message: r.summary,
            },
        },
        Err(e) => signer_failure(e),
    }
}

async fn live(agent: &AgentConfig, checked: &Checked, inputs: &Inputs, deps: &Deps<'_>) -> Outcome {
    let intent = intent_of(checked, inputs.network);
    let key = idempotency_key(&agent.id, inputs.now, &intent);
    if agent.confirm_transfers {
        let request = DryRunRequest {
            agent: agent.id.clone(),
            intent: intent.clone(),
            context: Context {
                recent_blockhash: Some(inputs.recent_blockhash.clone()),
            },
        };
        match deps.signer.lock().await.dry_run(request).await {
            Ok(r) if r.decision == Decision::Allow => {
                return confirmation_gate(
                    &agent.id, deps.store, inputs.now, &intent, &key, &r.summary,
                );
            }
            // Above the threshold the signer's own code gate (stronger than a button) decides.
            Ok(r) if r.decision == Decision::NeedsApproval => {}
            Ok(r) => {
                return Outcome::Refused {
                    layer: "3".into(),
                    rule: r
                        .rule
                        .map_or("deny".into(), |rule| rule.as_str().to_string()),
                    message: r.summary,
                };
            }
            Err(e) => return signer_failure(e),
        }
    }
    let live = Live {
        store: deps.store,
        signer: deps.signer,
        rpc: deps.rpc,
    };
    execute_live(
        &live,
        &agent.id,
        &intent,
        &key,
        &inputs.recent_blockhash,
        inputs.now,
    )
    .await
}

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

/// Records a live transfer as waiting for the operator's Yes (a `move_funds` pending
/// confirmation carrying the intent and its idempotency key). The same decision twice is
/// one pending item.
fn confirmation_gate(
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
    let pending = crate::store::NewPending {
        kind: crate::store::PendingKind::MoveFunds,
        agent: Some(agent.clone()),
        summary: summary.to_string(),
        payload_json: payload.to_string(),
        idempotency_key: format!("confirm-{key}"),
        created_at: now,
        expires_at: now + MOVE_FUNDS_TTL_SECS,
    };
    match create_pending(store, &pending) {
        Ok(id) => Outcome::AwaitingConfirmation {
            summary: summary.to_string(),
            pending_id: id,
        },
        Err(e) => Outcome::Held {
            layer: "state".into(),
            reason: format!("could not record the confirmation request: {e}"),
        },
    }
}

/// Records a pending confirmation; its id.
fn create_pending(
    store: &std::sync::Mutex<Store>,
    pending: &crate::store::NewPending,
) -> Result<i64, String> {
    let store = store.lock().map_err(|_| "state unavailable".to_string())?;
    store
        .create_pending(pending)
        .map(|id| id.0)
        .map_err(|e| e.to_string())
}

/// How long a live transfer waits for the operator's Yes.
pub const MOVE_FUNDS_TTL_SECS: u64 = 600;

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
    if let Err(held) = claim(live.store, key, now) {
        return held;
    }
    let request = SignRequest {
        agent: agent.clone(),
        intent: intent.clone(),
        context: Context {
            recent_blockhash: Some(recent_blockhash.to_string()),
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
            Some(n.approval_id.as_str()),
        ),
        Err(e) => signer_failure(e),
    };
    let Intent::Transfer(t) = intent;
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
pub async fn broadcast_signed(rpc: Option<&SolanaRpc>, tx: &str, signature: &str) -> String {
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
pub const CONFIRM_TIMEOUT: Duration = Duration::from_secs(30);

/// Claims the decision's idempotency key in the state store (durably, before anything is
/// asked of the signer); an already-claimed key or an unavailable store means hold.
fn claim(store: &std::sync::Mutex<Store>, key: &str, now: u64) -> Result<(), Outcome> {
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

fn pending_approval(
    agent: &AgentId,
    store: &std::sync::Mutex<Store>,
    now: u64,
    intent: &Intent,
    mode: &str,
    summary: &str,
    approval_id: Option<&str>,
) -> Outcome {
    let key = format!("approval-{}", idempotency_key(agent, now, intent));
    let payload = serde_json::json!({ "mode": mode, "agent": agent, "intent": intent, "approval_id": approval_id });
    let created = create_pending(
        store,
        &crate::store::NewPending {
            kind: crate::store::PendingKind::SignerApproval,
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
            approval_id: approval_id.unwrap_or("(paper)").to_string(),
            summary: summary.to_string(),
            pending_id: id,
        },
        Err(e) => Outcome::Held {
            layer: "state".into(),
            reason: format!("could not record the pending approval: {e}"),
        },
    }
}

fn signer_failure(e: SignerError) -> Outcome {
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

fn record(agent: &AgentConfig, inputs: &Inputs, deps: &Deps<'_>, outcome: &Outcome) {
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

fn role_of(role: prompt::Role) -> Role {
    match role {
        prompt::Role::System => Role::System,
        prompt::Role::User => Role::User,
    }
}

/// Default deadline for one signer call from the pipeline.
pub const SIGNER_TIMEOUT: Duration = Duration::from_secs(10);
