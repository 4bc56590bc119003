//! The loss floor's closing flow on Aave v3: what a Halted deputy's engine does to the agent's
//! Pool position each tick, from the tick's EVM view (the Pool's reserves: what the agent
//! supplied and owes; the wallet's balances).
//!
//! - **Debt first.** For each token the agent owes (variable debt), a repayment: the whole
//!   debt (`"all"`, approving exactly `up_to` = the debt the view states + 0.1 % for the
//!   interest of the blocks until it is mined, at most the wallet's balance) when the wallet
//!   holds at least the debt; else the wallet's whole balance of that token (an exact amount),
//!   and the rest of the debt is left open and said so.
//! - **Then the collateral.** Only when the view shows no debt at all: every supplied token
//!   is withdrawn (`"all"`). While debt is left nothing is withdrawn: a withdrawal would lower
//!   the health factor. So a position whose debt the wallet covers is flat after two ticks
//!   (repay, then withdraw).
//! - Nothing is ever supplied or borrowed.
//!
//! Each step passes layer 2 as a Reducing deputy's action would (the state gate, then the EVM
//! checks of the exact amount the view states: the action allowed, at most the debt or the
//! supply, the profile's fraction, the health-factor floor), then the signer like any action
//! (`pipeline::execute_engine`: live when the agent is live on the token, paper otherwise, where
//! the exact amount is booked: the paper book does not move between the view and the fill). A
//! live `"all"` the policy does not allow for the token (`all_not_allowed`) is asked again
//! with the exact amount; what interest adds meanwhile is repaid or withdrawn at a later tick.

use std::fmt::Write as _;

use vigil_protocol::{
    AaveRepayIntent, AaveWithdrawIntent, Amount, AmountOrAll, AssetSymbol, Chain, Intent,
};

use super::{RiskState, StateCause, StateGate};
use crate::config::AgentConfig;
use crate::firewall::risk_evm::{EvmView, check_evm};
use crate::firewall::schema::{Action, AgentDecision};
use crate::pipeline::{self, Deps, Inputs, Outcome};

/// One step of the flow: the decision layer 2 checks (the exact amount the view states) and,
/// for a live agent, the `"all"` form the signer is asked for first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct AaveStep {
    pub decision: AgentDecision,
    pub all: Option<Intent>,
    /// What it does, for the operator (`repay the whole USDC debt (1000.5 USDC)`).
    pub what: String,
}

/// The flow's plan for one tick: the steps, and what stays open (for the operator).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct AavePlan {
    pub steps: Vec<AaveStep>,
    /// What this tick leaves open and why (`debt 500 USDC left: …`).
    pub left: Vec<String>,
    /// What a later tick does (`the collateral … is withdrawn once …`).
    pub next: Option<String>,
}

/// The plan for the agent's Pool position in `view` (module docs); empty without a position.
pub(crate) fn plan(view: &EvmView) -> AavePlan {
    let mut out = AavePlan::default();
    let Some(aave) = &view.aave else {
        return out;
    };
    let (chain, network) = (Chain::Evm, view.network);
    let supplied: Vec<String> = aave
        .reserves
        .iter()
        .filter(|(_, r)| r.supplied > 0)
        .map(|(asset, r)| format!("{} {asset}", tokens(r.supplied, r.decimals)))
        .collect();
    let debts: Vec<_> = aave.reserves.iter().filter(|(_, r)| r.debt > 0).collect();
    if debts.is_empty() {
        for (asset, r) in aave.reserves.iter().filter(|(_, r)| r.supplied > 0) {
            out.steps.push(AaveStep {
                decision: decision(Action::AaveWithdraw, *asset, r.supplied),
                all: Some(Intent::AaveWithdraw(AaveWithdrawIntent {
                    chain,
                    network,
                    asset: *asset,
                    amount: AmountOrAll::All,
                })),
                what: format!(
                    "withdraw all the {asset} supplied ({} {asset})",
                    tokens(r.supplied, r.decimals)
                ),
            });
        }
        return out;
    }
    for (asset, r) in debts {
        let (debt, d) = (r.debt, r.decimals);
        let wallet = view.wallet.get(asset).copied().unwrap_or(0);
        if wallet == 0 {
            out.left.push(format!(
                "debt {} {asset} left: the wallet holds no {asset} to repay it",
                tokens(debt, d)
            ));
        } else if wallet >= debt {
            let margin = debt / 1000 + 1;
            let up_to = debt.saturating_add(margin).min(wallet);
            out.steps.push(AaveStep {
                decision: decision(Action::AaveRepay, *asset, debt),
                all: Some(Intent::AaveRepay(AaveRepayIntent {
                    chain,
                    network,
                    asset: *asset,
                    amount: AmountOrAll::All,
                    up_to: Some(Amount::from_base_units(up_to)),
                })),
                what: format!("repay the whole {asset} debt ({} {asset})", tokens(debt, d)),
            });
        } else {
            out.steps.push(AaveStep {
                decision: decision(Action::AaveRepay, *asset, wallet),
                all: None,
                what: format!(
                    "repay {} {asset}, all the wallet holds, of the {asset} debt",
                    tokens(wallet, d)
                ),
            });
            out.left.push(format!(
                "debt {} {asset} left (owed {}, the wallet holds only {} {asset})",
                tokens(debt - wallet, d),
                tokens(debt, d),
                tokens(wallet, d)
            ));
        }
    }
    if !supplied.is_empty() {
        let collateral = supplied.join(", ");
        if out.left.is_empty() {
            out.next = Some(format!(
                "the collateral ({collateral}) is withdrawn at a later tick, once the Pool shows \
                 no debt"
            ));
        } else {
            out.left.push(format!(
                "the collateral ({collateral}) stays supplied while debt is left: withdrawing it \
                 would lower the health factor"
            ));
        }
    }
    out
}

/// The engine's own Aave decision (no LLM).
fn decision(action: Action, asset: AssetSymbol, units: u128) -> AgentDecision {
    AgentDecision {
        action,
        asset: Some(asset),
        to: None,
        amount: Some(Amount::from_base_units(units)),
        perp: None,
        confidence_milli: 1000,
        reasoning: "the risk engine closes a halted deputy's Aave position".into(),
    }
}

/// What one tick of the flow did: the log lines, and the text the operator's alert ends with
/// (empty without an Aave position).
#[derive(Debug, Default)]
pub(crate) struct AaveClosing {
    pub lines: Vec<String>,
    pub alert: String,
    /// The steps a layer refused this tick: a key (action, asset, rule) and what to tell the
    /// operator (a refusal repeats each tick; the engine alerts each key once per halt).
    pub refused: Vec<(String, String)>,
}

/// Runs `plan` for a Halted deputy: each step through layer 2 as a Reducing deputy's action
/// (cause: the loss floor, `detail`) and on to the signer (module docs).
pub(crate) async fn run(
    agent: &AgentConfig,
    plan: AavePlan,
    detail: &str,
    inputs: &Inputs,
    deps: &Deps<'_>,
) -> AaveClosing {
    let mut out = AaveClosing::default();
    let Some(view) = inputs.evm.as_ref() else {
        return out;
    };
    let reducing = StateGate {
        state: RiskState::Reducing,
        cause: Some(StateCause::LossFloor),
        detail: detail.to_owned(),
    };
    let AavePlan {
        steps,
        mut left,
        next,
    } = plan;
    let mut done = Vec::new();
    for step in steps {
        let outcome = match layer2(&step.decision, agent, view, &reducing) {
            Err(refused) => refused,
            Ok(exact) => {
                let live = exact.asset().is_some_and(|a| agent.is_live(a));
                match step.all.as_ref().filter(|_| live) {
                    Some(all) => {
                        let first = pipeline::execute_engine(agent, all, inputs, deps).await;
                        match &first {
                            Outcome::Refused { rule, .. } if rule == "all_not_allowed" => {
                                out.lines.push(format!(
                                    "{} closing flow: {}: the policy does not allow \"all\"; \
                                     the exact amount instead",
                                    agent.id, step.what
                                ));
                                pipeline::execute_engine(agent, &exact, inputs, deps).await
                            }
                            _ => first,
                        }
                    }
                    None => pipeline::execute_engine(agent, &exact, inputs, deps).await,
                }
            }
        };
        let line = format!("{} closing flow: {}: {outcome}", agent.id, step.what);
        tracing::warn!("{line}");
        out.lines.push(line);
        let phrase = brief(&outcome);
        if let Outcome::Refused { rule, .. } = &outcome {
            let asset = step
                .decision
                .asset
                .map(|a| a.to_string())
                .unwrap_or_default();
            let key = format!("{} {asset} {rule}", step.decision.action);
            out.refused
                .push((key, format!("{} was refused ({phrase})", step.what)));
        }
        if went_through(&outcome) {
            done.push(format!("{}: {phrase}", step.what));
        } else {
            left.push(format!(
                "{} did not go through ({phrase}); it is tried again each tick",
                step.what
            ));
        }
    }
    if !done.is_empty() {
        let _ = write!(out.alert, ". Aave: {}", done.join("; "));
        if let Some(next) = next.filter(|_| left.is_empty()) {
            let _ = write!(out.alert, "; {next}");
        }
    }
    if !left.is_empty() {
        let _ = write!(
            out.alert,
            ". LEFT OPEN on Aave: {}; the flow repays and withdraws again each tick (send the \
             agent the token it owes, or close it yourself)",
            left.join("; ")
        );
    }
    out
}

/// Layer 2 of one step: the Reducing gate, then the EVM checks; the exact intent.
fn layer2(
    d: &AgentDecision,
    agent: &AgentConfig,
    view: &EvmView,
    gate: &StateGate,
) -> Result<Intent, Outcome> {
    let refused = |r: crate::firewall::risk::RiskRefusal| Outcome::Refused {
        layer: "2".into(),
        rule: format!("{:?}", r.rule),
        message: r.message,
    };
    super::gate::check_state(d, gate).map_err(refused)?;
    check_evm(d, &agent.risk, view)
        .map(|checked| checked.intent)
        .map_err(refused)
}

/// Whether a step's outcome did what it asked (mined live, filled on paper).
fn went_through(outcome: &Outcome) -> bool {
    match outcome {
        Outcome::Signed { chain, .. } => chain == "mined",
        Outcome::PaperFilled { .. } => true,
        _ => false,
    }
}

/// An outcome in a few words for the operator's alert.
fn brief(outcome: &Outcome) -> String {
    match outcome {
        Outcome::Signed { chain, .. } => format!("signed, {chain}"),
        Outcome::PaperFilled { .. } => "filled on paper".into(),
        Outcome::Refused {
            layer,
            rule,
            message,
        } => format!("refused at layer {layer}, {rule}: {message}"),
        Outcome::Held { layer, reason } => format!("held ({layer}): {reason}"),
        Outcome::NeedsApproval { approval_id, .. } => {
            format!("waits for your code in the approver's chat ({approval_id})")
        }
        Outcome::AwaitingConfirmation {
            confirmation_id, ..
        } => format!("waits for your Yes (#{confirmation_id})"),
    }
}

/// `units` base units of a token of `decimals` in whole tokens, without trailing zeros.
fn tokens(units: u128, decimals: u8) -> String {
    let scale = 10u128.checked_pow(u32::from(decimals));
    let Some(scale) = scale else {
        return format!("{units} base units");
    };
    let (whole, frac) = (units / scale, units % scale);
    if frac == 0 {
        return whole.to_string();
    }
    let digits = format!("{frac:0width$}", width = usize::from(decimals));
    format!("{whole}.{}", digits.trim_end_matches('0'))
}

#[cfg(test)]
mod tests;
