//! One decision of one agent, end to end: the cost gate, the LLM call, layer 1 (strict
//! schema, with up to two correction rounds), layer 2 (the agent's risk profile), layer 3
//! (the signer: `dry_run` in paper mode, `sign` in live mode), and the record of what
//! happened. Any failure along the way means `hold`, recorded with the layer and the rule.
//!
//! Nothing the LLM returns is executed: it is parsed into a closed type, and only a typed
//! transfer intent, built here from checked values, ever reaches the signer.
//!
//! This file runs the LLM and layers 1 and 2; `layer3` asks the signer (and records what
//! waits for the operator), `execute` runs a live transfer at most once, `outcome` is what a
//! decision came to, and `record` writes it with everything it gathered in one commit.

mod evm;
mod execute;
mod layer3;
mod module;
pub(crate) use module::host_view;
pub(crate) use perp::paper_fill_price;
mod outcome;
mod perp;
mod perp_live;
mod record;

pub(crate) use evm::{
    Sender as EvmSender, context as evm_context, send_signed as evm_send_signed,
    settle as evm_settle,
};
pub(crate) use execute::broadcast_signed;
pub(crate) use execute::execute_live_evm;
pub use execute::{Live, execute_live};
pub(crate) use layer3::ask_confirmation;
pub use outcome::Outcome;
pub(crate) use perp_live::{ALL_STATES as ALL_HL_STATES, Posting as PerpPosting};

use std::time::Duration;

use sha2::{Digest, Sha256};
use tokio::sync::Mutex;
use vigil_protocol::{AgentId, AmountOrAll, AssetSymbol, Chain, Intent, Network, TransferIntent};

use crate::chains::evm_rpc::EvmRpc;
use crate::chains::hyperliquid::HyperliquidApi;
use crate::chains::solana_rpc::SolanaRpc;
use crate::config::AgentConfig;
use crate::cost::{self, Prices};
use crate::deputy::StateGate;
use crate::firewall::prompt::{self, UntrustedItem};
use crate::firewall::risk::{self, Checked, RiskRefusal, RiskRule};
use crate::firewall::risk_evm::{self, EvmView};
use crate::firewall::risk_perp::fixed::Fx;
use crate::firewall::risk_perp::{self, PerpView};
use crate::firewall::schema::{self, Action, MAX_CORRECTIONS};
use crate::llm::{ChatMessage, ChatRequest, Provider, Role};
use crate::signer_client::SignerClient;
use crate::store::{NewCost, Store};

use layer3::{live, paper};
use record::{Pending, record};

/// Where a decision's inputs come from.
#[derive(Debug)]
pub struct Inputs {
    /// The agent's balance in base units of the asset it trades (from the chain, or paper).
    pub balance: u128,
    /// Untrusted data for the prompt (peer labels, memos, RPC data).
    pub untrusted: Vec<UntrustedItem>,
    /// A recent blockhash (live mode) or a paper stand-in.
    pub recent_blockhash: String,
    /// The network the agent's Solana intents go to.
    pub network: Network,
    /// The agent's account on its EVM network (balances, Aave position), when it has one and
    /// a node for it is configured: EVM actions are checked against it.
    pub evm: Option<EvmView>,
    /// The agent's Hyperliquid account (the venue's grid and marks; positions and open orders),
    /// when it trades perpetuals and the venue answered: perpetuals' actions are checked
    /// against it.
    pub perp: Option<PerpView>,
    /// The deputy's risk state, applied to its Aave and transfer actions at layer 2
    /// (`deputy::gate`; perpetuals' actions use `perp.gate`). Active for an agent that is no
    /// deputy.
    pub gate: StateGate,
    /// The SOL price in USD from the network's `sol_price_urls` source (the orchestrator's
    /// estimate, for the texts and a deputy's equity); `None`: no source, or it failed.
    pub sol_usd: Option<Fx>,
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
    /// The node of the agent's EVM network, for live EVM actions (checked against the signed
    /// policy's chain id and genesis hash before the decision).
    pub evm_rpc: Option<&'a EvmRpc>,
    /// Hyperliquid's API of the agent's network, for live perpetuals' actions.
    pub hyperliquid: Option<&'a HyperliquidApi>,
}

/// A decision and how it came about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decided {
    /// What happened.
    pub outcome: Outcome,
    /// Replies layer 1 rejected before this one (each answered with a correction prompt).
    pub corrections: Vec<String>,
    /// The time spent waiting for the LLM: a decision's latency excluding the LLM is its wall
    /// time minus this.
    pub llm: Duration,
}

/// Runs one decision for `agent` and records it.
pub async fn decide(agent: &AgentConfig, inputs: &Inputs, deps: &Deps<'_>) -> Decided {
    let mut corrections = Vec::new();
    let mut llm = Duration::ZERO;
    let mut pending = Pending::default();
    let outcome = run(
        agent,
        inputs,
        deps,
        &mut corrections,
        &mut llm,
        &mut pending,
    )
    .await;
    let outcome = record(agent, inputs, deps, outcome, &pending);
    Decided {
        outcome,
        corrections,
        llm,
    }
}

async fn run(
    agent: &AgentConfig,
    inputs: &Inputs,
    deps: &Deps<'_>,
    corrections: &mut Vec<String>,
    llm: &mut Duration,
    pending: &mut Pending,
) -> Outcome {
    // The decision source: the agent's strategy module, or its LLM.
    let decided = match &agent.strategy {
        Some(strategy) => module::decision(agent, strategy, inputs, deps).await,
        None => llm_decision(agent, inputs, deps, corrections, llm, pending).await,
    };
    let decision = match decided {
        Ok(decision) => decision,
        Err(held) => return held,
    };

    if decision.action == Action::Hold {
        return Outcome::Held {
            layer: "agent".into(),
            reason: decision.reasoning,
        };
    }
    // Layer 2 and 3 of a perpetual's action: its own view and path.
    if decision.action.is_perp() {
        let Some(view) = &inputs.perp else {
            return Outcome::Refused {
                layer: "2".into(),
                rule: format!("{:?}", RiskRule::NoChain),
                message: format!(
                    "{} is a Hyperliquid action, and {} has no Hyperliquid view here (no \
                     hyperliquid_network, or its API in hyperliquid_urls did not answer): nothing \
                     can be checked or done",
                    decision.action, agent.id
                ),
            };
        };
        let checked = match risk_perp::check_perp(&decision, &agent.risk, view) {
            Ok(checked) => checked,
            Err(refusal) => {
                return Outcome::Refused {
                    layer: "2".into(),
                    rule: format!("{:?}", refusal.rule),
                    message: refusal.message,
                };
            }
        };
        if matches!(checked.intent, Intent::PerpOrder(_)) {
            // The order rate cap counts every order of the agent that passed layer 2.
            let counted = deps
                .store
                .lock()
                .map_err(|_| "state unavailable".to_string())
                .and_then(|s| {
                    s.agent(&agent.id)
                        .record_deputy_order(inputs.now)
                        .map_err(|e| e.to_string())
                });
            if let Err(e) = counted {
                return Outcome::Held {
                    layer: "state".into(),
                    reason: format!("the order could not be counted for the rate cap: {e}"),
                };
            }
        }
        return execute_perp(agent, &checked, view, inputs, deps).await;
    }
    // Layer 2.
    let intent = match layer2(agent, &decision, inputs) {
        Ok(Some(intent)) => intent,
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
    if intent.asset().is_some_and(|asset| agent.is_live(asset)) {
        live(agent, &intent, inputs, deps).await
    } else {
        paper(agent, &intent, inputs, deps, pending).await
    }
}

/// The LLM as the decision source: the prompt, the cost gate before every call, layer 1 with
/// up to [`MAX_CORRECTIONS`] correction rounds; the decision, or the hold that ends it.
async fn llm_decision(
    agent: &AgentConfig,
    inputs: &Inputs,
    deps: &Deps<'_>,
    corrections: &mut Vec<String>,
    llm: &mut Duration,
    pending: &mut Pending,
) -> Result<schema::AgentDecision, Outcome> {
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
    loop {
        let request = ChatRequest {
            agent: agent.id.clone(),
            model: agent.model.clone(),
            temperature: agent.temperature,
            max_tokens: agent.max_tokens,
            messages: messages.clone(),
            json_mode: true,
        };
        let estimate = match cost_gate(agent, &request, inputs, deps, pending.spent_micros()) {
            Ok(estimate) => estimate,
            Err(held) => return Err(held),
        };
        let asked = std::time::Instant::now();
        let answer = provider.complete(&request).await;
        *llm += asked.elapsed();
        let reply = match (answer, deps.fallback) {
            (Ok(reply), _) => reply,
            (Err(crate::llm::LlmError::MissingKey(_)), Some(fallback))
                if !std::ptr::eq(provider, fallback) =>
            {
                tracing::info!(agent = %agent.id, "no API key for {}; using the fallback provider", provider.name());
                provider = fallback;
                continue;
            }
            (Err(e), _) => {
                return Err(Outcome::Held {
                    layer: "llm".into(),
                    reason: format!("provider {} failed ({}): {e}", provider.name(), e.kind()),
                });
            }
        };
        let charged = cost::charge(
            reply.usage,
            &cost::Call {
                reply_bytes: reply.content.len(),
                ..estimate
            },
        );
        if charged.worst_case {
            tracing::warn!(agent = %agent.id, provider = provider.name(), reported = ?reply.usage,
                "the provider reported no usage, or less than the text used: the worst case is charged");
        }
        // Recorded with the decision (one commit); counted by this decision's next gate now.
        pending.costs.push(NewCost {
            ts: inputs.now,
            micros: charged.micros(&deps.prices),
            prompt_tokens: charged.prompt_tokens,
            completion_tokens: charged.completion_tokens,
            model: reply.model,
        });
        match schema::parse_decision(&reply.content) {
            Ok(decision) => break Ok(decision),
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
                return Err(Outcome::Held {
                    layer: "1".into(),
                    reason: format!("no valid reply after {MAX_CORRECTIONS} corrections: {e}"),
                });
            }
        }
    }
}

/// Layer 3 of a perpetual's action that passed layer 2: live when the agent is live on its
/// perpetual, paper otherwise (also the risk engine's closing flow).
pub(crate) async fn execute_perp(
    agent: &AgentConfig,
    checked: &risk_perp::PerpChecked,
    view: &PerpView,
    inputs: &Inputs,
    deps: &Deps<'_>,
) -> Outcome {
    let live = checked.intent.asset().is_some_and(|a| agent.is_live(a));
    if live {
        perp_live::live(agent, checked, view, inputs, deps).await
    } else {
        perp::paper(agent, checked, view, inputs, deps).await
    }
}

/// Layer 3 and the record of an EVM or Solana action the risk engine decided itself (the loss
/// floor's closing flow on Aave), after its own layer-2 check: live when the agent is live on
/// the asset (without the operator's Yes: it only takes exposure off), paper otherwise (the
/// signer's `dry_run` and the paper booking, as for the agent's own actions). Recorded in the
/// decision log like every action.
pub(crate) async fn execute_engine(
    agent: &AgentConfig,
    intent: &Intent,
    inputs: &Inputs,
    deps: &Deps<'_>,
) -> Outcome {
    let mut pending = Pending::default();
    let outcome = if intent.asset().is_some_and(|asset| agent.is_live(asset)) {
        layer3::live_as(agent, intent, inputs, deps, false).await
    } else {
        paper(agent, intent, inputs, deps, &mut pending).await
    };
    record(agent, inputs, deps, outcome, &pending)
}

/// Layer 2: the Solana profile check for SOL, the EVM one (with the Aave health-factor floor)
/// for the Aave actions and every other asset when the agent has an EVM view; the intent for
/// the signer, or `None` for a hold.
fn layer2(
    agent: &AgentConfig,
    decision: &schema::AgentDecision,
    inputs: &Inputs,
) -> Result<Option<Intent>, RiskRefusal> {
    if decision.action != Action::Hold {
        crate::deputy::gate::check_state(decision, &inputs.gate)?;
    }
    let evm_asset =
        decision.action.is_aave() || decision.asset.is_some_and(|a| a != AssetSymbol::SOL);
    match (&inputs.evm, evm_asset) {
        (Some(view), true) => risk_evm::check_evm(decision, &agent.risk, view).map(|checked| {
            if let Some(estimate) = &checked.estimate {
                tracing::info!(agent = %agent.id, "{} passes layer 2: {estimate}", checked.intent.action());
            }
            Some(checked.intent)
        }),
        (None, true) if decision.action.is_aave() => Err(RiskRefusal {
            rule: RiskRule::NoChain,
            message: format!(
                "{} is an EVM action, and {} has no EVM network here (no EVM key at the signer, or no evm_rpc_urls node in the config): nothing can be checked or done",
                decision.action, agent.id
            ),
        }),
        _ => risk::check(decision, &agent.risk, inputs.balance)
            .map(|checked| checked.map(|c| intent_of(&c, inputs.network))),
    }
}

/// What a paper fill of `intent` changes: the asset and the signed amount of base units
/// (negative: out of the wallet). `None` for an amount of "all", which the orchestrator never
/// proposes.
pub(crate) fn paper_delta(intent: &Intent) -> Option<(AssetSymbol, i128)> {
    let exact = |a: &AmountOrAll| match a {
        AmountOrAll::Exact(a) => Some(a.base_units()),
        AmountOrAll::All => None,
    };
    let (asset, amount, out) = match intent {
        Intent::Transfer(t) => (t.asset, t.amount.base_units(), true),
        Intent::AaveSupply(a) => (a.asset, a.amount.base_units(), true),
        Intent::AaveBorrow(a) => (a.asset, a.amount.base_units(), false),
        Intent::AaveWithdraw(a) => (a.asset, exact(&a.amount)?, false),
        Intent::AaveRepay(a) => (a.asset, exact(&a.amount)?, true),
        // Perpetuals change a position, not a wallet balance.
        Intent::PerpOrder(_)
        | Intent::PerpCancel(_)
        | Intent::PerpLeverage(_)
        | Intent::PerpScheduleCancel(_)
        | Intent::PerpWithdraw(_)
        | Intent::PerpRegisterApiKey(_) => return None,
    };
    let amount = i128::try_from(amount).ok()?;
    Some((asset, if out { -amount } else { amount }))
}

/// The move of the paper Aave book an Aave intent makes (`None`: not an Aave action, or an
/// amount of `"all"`, which has no paper fill).
pub(crate) fn paper_aave_fill(intent: &Intent) -> Option<crate::store::PaperAaveFill> {
    use crate::store::{AaveKind, PaperAaveFill};
    let exact = |a: &AmountOrAll| match a {
        AmountOrAll::Exact(a) => Some(a.base_units()),
        AmountOrAll::All => None,
    };
    let (network, asset, kind, amount) = match intent {
        Intent::AaveSupply(a) => (a.network, a.asset, AaveKind::Supply, a.amount.base_units()),
        Intent::AaveBorrow(a) => (a.network, a.asset, AaveKind::Borrow, a.amount.base_units()),
        Intent::AaveWithdraw(a) => (a.network, a.asset, AaveKind::Withdraw, exact(&a.amount)?),
        Intent::AaveRepay(a) => (a.network, a.asset, AaveKind::Repay, exact(&a.amount)?),
        _ => return None,
    };
    Some(PaperAaveFill {
        network,
        asset,
        kind,
        amount,
    })
}

/// Checks the call's worst case against what is left of today's cap (the ledger, and
/// `unrecorded`: what this decision's earlier calls cost, recorded with it at its end); what
/// the call goes out with (for [`cost::charge`] after it), or hold.
fn cost_gate(
    agent: &AgentConfig,
    request: &ChatRequest,
    inputs: &Inputs,
    deps: &Deps<'_>,
    unrecorded: u64,
) -> Result<cost::Call, Outcome> {
    let call = cost::Call::before(request);
    let worst = cost::worst_case_micros(call.prompt_estimate, request.max_tokens, &deps.prices);
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
        Ok(s) => s.saturating_add(unrecorded),
        Err(e) => {
            return Err(Outcome::Held {
                layer: "cost".into(),
                reason: format!("cannot read the cost ledger: {e}"),
            });
        }
    };
    cost::check_budget(spent, deps.daily_cap_micros, worst)
        .map(|()| call)
        .map_err(|refusal| {
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
        asset: checked.asset,
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

/// A fresh idempotency key for asking the operator again, at `now`, about the action that
/// had `previous` as its key (the same intent, so the digest also covers the old key: two
/// actions asked again in the same second still get different keys).
pub(crate) fn retry_key(agent: &AgentId, now: u64, intent: &Intent, previous: &str) -> String {
    let mut hasher = Sha256::new();
    hasher.update(serde_json::to_vec(intent).unwrap_or_default());
    hasher.update(previous.as_bytes());
    format!("{agent}-{now}-{}", hex::encode(&hasher.finalize()[..8]))
}

fn role_of(role: prompt::Role) -> Role {
    match role {
        prompt::Role::System => Role::System,
        prompt::Role::User => Role::User,
    }
}

/// Default deadline for one signer call from the pipeline.
pub const SIGNER_TIMEOUT: Duration = Duration::from_secs(10);
