//! The decision: (policy, history, agent, intent, now) → [`Verdict`]. Pure: it reads the
//! ledger through [`History`] and changes nothing, so `dry_run`, `sign` and `approve` all
//! ask exactly the same question.
//!
//! Checks run in a fixed order and the first failing rule wins: agent, action, network,
//! asset, recipient, rate limit, per-transaction cap, 24 h velocity, approval threshold.
//! Allowlists come first so that a refusal never reveals limits to an agent that may not
//! use the asset at all; amounts come last because they depend on the ledger.
//!
//! The amounts are the [`Spend`]s the engine computed from what it built: one per asset. A
//! Solana transfer spends its amount; an EVM request also spends its fees in the native asset
//! (`gas_limit × max_fee_per_gas` per transaction), so a fee that would drain the balance is
//! refused by the native asset's caps like any other spend.

use vigil_protocol::{AgentId, AssetSymbol, Intent, Rule};

use super::{Action, AgentPolicy, AssetCaps, Policy, network_name};

/// The rate-limit window, in seconds.
const RATE_WINDOW: u64 = 60;
/// The velocity window, in seconds.
const VELOCITY_WINDOW: u64 = 86_400;

/// What the decision needs from the durable ledger; the engine implements it over the ledger.
pub trait History {
    /// Base units of `asset` spent by `agent` at unix time >= `since`.
    fn spent_since(&self, agent: &AgentId, asset: AssetSymbol, since: u64) -> u128;
    /// Number of `sign` requests by `agent` evaluated at unix time >= `since` (the current one not included).
    fn requests_since(&self, agent: &AgentId, since: u64) -> u32;
    /// Caps the operator set for `agent` and `asset` with `set_limit` (within the ceilings).
    fn cap_override(&self, agent: &AgentId, asset: AssetSymbol) -> CapOverride;
}

/// Caps set by the operator at run time. The signed policy's values stay the ceilings: the
/// cap in force is the smaller of the two, so a new policy with a lower ceiling wins.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CapOverride {
    /// Replaces `per_tx_cap` (up to it).
    pub per_tx: Option<u128>,
    /// Replaces `velocity_24h` (up to it).
    pub velocity_24h: Option<u128>,
}

impl CapOverride {
    /// The caps in force: each cap is the override, if set, and never above the ceiling.
    pub fn apply(self, ceiling: AssetCaps) -> AssetCaps {
        AssetCaps {
            per_tx_cap: self
                .per_tx
                .map_or(ceiling.per_tx_cap, |v| v.min(ceiling.per_tx_cap)),
            velocity_24h: self
                .velocity_24h
                .map_or(ceiling.velocity_24h, |v| v.min(ceiling.velocity_24h)),
            ..ceiling
        }
    }
}

/// The outcome of [`decide`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Sign it.
    Allow,
    /// Sign only after the operator approves with a code.
    NeedsApproval {
        /// What is above the threshold, for the operator and the agent.
        message: String,
    },
    /// Refuse.
    Deny {
        /// The first rule that failed.
        rule: Rule,
        /// What was refused, with the numbers, and what to do next.
        message: String,
    },
}

impl Verdict {
    /// The rule behind the verdict: `None` for `Allow`, `approval_threshold` for
    /// `NeedsApproval`, the failing rule for `Deny`.
    pub fn rule(&self) -> Option<Rule> {
        match self {
            Verdict::Allow => None,
            Verdict::NeedsApproval { .. } => Some(Rule::ApprovalThreshold),
            Verdict::Deny { rule, .. } => Some(*rule),
        }
    }
}

/// What a request spends of one asset, in base units.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Spend {
    /// The asset.
    pub asset: AssetSymbol,
    /// Base units.
    pub amount: u128,
}

/// Pure: (policy, history, agent, intent, spends, now) → verdict. The caller has already
/// checked `intent.to` is a canonical, valid address for the chain, and computed `spends`
/// (one per asset) from what it built.
pub fn decide(
    policy: &Policy,
    history: &impl History,
    agent: &AgentId,
    intent: &Intent,
    spends: &[Spend],
    now: u64,
) -> Verdict {
    evaluate(
        policy,
        history,
        agent,
        (intent, spends),
        now,
        Threshold::Apply,
    )
}

/// The same but skipping the approval threshold (used when the operator approved):
/// re-checks everything else at approval time.
pub fn decide_approved(
    policy: &Policy,
    history: &impl History,
    agent: &AgentId,
    intent: &Intent,
    spends: &[Spend],
    now: u64,
) -> Verdict {
    evaluate(
        policy,
        history,
        agent,
        (intent, spends),
        now,
        Threshold::Skip,
    )
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Threshold {
    Apply,
    Skip,
}

fn evaluate(
    policy: &Policy,
    history: &impl History,
    agent: &AgentId,
    request: (&Intent, &[Spend]),
    now: u64,
    threshold: Threshold,
) -> Verdict {
    match check(policy, history, agent, request, now, threshold) {
        Ok(()) => Verdict::Allow,
        Err(verdict) => verdict,
    }
}

fn deny(rule: Rule, message: String) -> Verdict {
    Verdict::Deny { rule, message }
}

/// Every check, in order; the first that fails returns its verdict as the error.
fn check(
    policy: &Policy,
    history: &impl History,
    agent: &AgentId,
    (intent, spends): (&Intent, &[Spend]),
    now: u64,
    threshold: Threshold,
) -> Result<(), Verdict> {
    let Some(rules) = policy.agents.get(agent) else {
        return Err(deny(
            Rule::ActionNotAllowed,
            format!(
                "agent {agent} is not in the signed policy; ask the operator to add it at the next ceremony"
            ),
        ));
    };
    let action = Action::of(intent);
    if !rules.actions.contains(&action) {
        let allowed: Vec<&str> = rules.actions.iter().map(|a| a.as_str()).collect();
        return Err(deny(
            Rule::ActionNotAllowed,
            format!(
                "agent {agent} may not {action} (allowed: {}); add the action to the policy at the next ceremony",
                list_or_none(&allowed)
            ),
        ));
    }
    check_allowlists(rules, agent, intent, spends)?;
    let recent = history.requests_since(agent, now.saturating_sub(RATE_WINDOW));
    if recent >= rules.rate_limit_per_minute {
        return Err(deny(
            Rule::RateLimit,
            format!(
                "agent {agent} already made {recent} sign requests in the last {RATE_WINDOW} s (limit {} per minute); wait a minute and retry, or ask the operator to raise rate_limit_per_minute in a new signed policy",
                rules.rate_limit_per_minute
            ),
        ));
    }
    // Every cap of every asset first, then every threshold: a request a cap refuses is never
    // sent to the operator.
    let caps: Vec<(Spend, AssetCaps, AssetCaps)> = spends
        .iter()
        .filter_map(|s| {
            let ceiling = *rules.assets.get(&s.asset)?;
            Some((
                *s,
                ceiling,
                history.cap_override(agent, s.asset).apply(ceiling),
            ))
        })
        .collect();
    for (spend, ceiling, in_force) in &caps {
        check_caps(history, agent, *spend, *ceiling, *in_force, now)?;
    }
    if threshold == Threshold::Apply {
        for (Spend { asset, amount }, _, in_force) in &caps {
            if *amount > in_force.approval_threshold {
                return Err(Verdict::NeedsApproval {
                    message: format!(
                        "{amount} base units of {asset} is above agent {agent}'s approval threshold of {} base units: the operator must approve this transfer with a code",
                        in_force.approval_threshold
                    ),
                });
            }
        }
    }
    Ok(())
}

/// Network, assets (the intent's and every spent one) and, for a transfer, the recipient.
fn check_allowlists(
    rules: &AgentPolicy,
    agent: &AgentId,
    intent: &Intent,
    spends: &[Spend],
) -> Result<(), Verdict> {
    let (chain, network) = intent.chain_network();
    if !rules.networks.contains(&(chain, network)) {
        let allowed: Vec<String> = rules
            .networks
            .iter()
            .map(|&(c, n)| network_name(c, n))
            .collect();
        return Err(deny(
            Rule::NetworkNotAllowed,
            format!(
                "{} is not among agent {agent}'s networks ({}); mainnet is reachable only when the signed policy names it: add the network at the next ceremony",
                network_name(chain, network),
                allowed.join(", ")
            ),
        ));
    }
    let assets = intent
        .asset()
        .into_iter()
        .chain(spends.iter().map(|s| s.asset));
    for asset in assets {
        match rules.assets.get(&asset) {
            Some(l) if l.chain == chain => {}
            Some(l) => {
                return Err(deny(
                    Rule::AssetNotAllowed,
                    format!(
                        "asset {asset} is allowed to agent {agent} on {}, not on {chain}; add it for {chain} to the policy at the next ceremony",
                        l.chain
                    ),
                ));
            }
            None => {
                let allowed: Vec<&str> = rules.assets.keys().map(AssetSymbol::as_str).collect();
                return Err(deny(
                    Rule::AssetNotAllowed,
                    format!(
                        "asset {asset} is not in agent {agent}'s allowlist (allowed: {}); add it to the policy at the next ceremony",
                        list_or_none(&allowed)
                    ),
                ));
            }
        }
    }
    let to = match intent {
        Intent::Transfer(t) => Some(t.to.as_str()),
        Intent::PerpWithdraw(w) => Some(w.to.as_str()),
        _ => None,
    };
    if let Some(to) = to {
        // Hyperliquid writes addresses lowercase; the policy keeps them EIP-55.
        let canonical = match chain {
            vigil_protocol::Chain::Hyperliquid => super::parse_evm_address(to)
                .map(|a| a.to_checksum(None))
                .unwrap_or_else(|_| to.to_owned()),
            _ => to.to_owned(),
        };
        if !rules.recipients.contains(&canonical) {
            return Err(deny(
                Rule::RecipientNotAllowed,
                format!(
                    "recipient {to} is not in agent {agent}'s allowlist; add it to the policy at the next ceremony"
                ),
            ));
        }
    }
    Ok(())
}

/// The per-transaction and 24 h caps of one spend.
fn check_caps(
    history: &impl History,
    agent: &AgentId,
    Spend { asset, amount }: Spend,
    ceiling: AssetCaps,
    caps: AssetCaps,
    now: u64,
) -> Result<(), Verdict> {
    if amount > caps.per_tx_cap {
        let raise = if caps.per_tx_cap < ceiling.per_tx_cap {
            format!(
                "the operator lowered it; they can raise it up to the signed {} base units with a code",
                ceiling.per_tx_cap
            )
        } else {
            "ask the operator to raise per_tx_cap in a new signed policy".to_owned()
        };
        return Err(deny(
            Rule::PerTxCap,
            format!(
                "{amount} base units of {asset} exceeds agent {agent}'s per-transaction cap of {} base units; splitting the transfer is not a workaround (the 24 h cap still applies): {raise}",
                caps.per_tx_cap
            ),
        ));
    }

    let since = now.saturating_sub(VELOCITY_WINDOW);
    let spent = history.spent_since(agent, asset, since);
    match spent.checked_add(amount) {
        Some(total) if total <= caps.velocity_24h => {}
        total => {
            let total = total.map_or_else(|| "more than 2^128-1".to_owned(), |v| v.to_string());
            let cap = caps.velocity_24h;
            let when = match fits_again_at(history, agent, asset, amount, cap, now) {
                Some(at) => format!(
                    "wait until unix time {at} ({}) as earlier spends leave the window",
                    in_about(at.saturating_sub(now))
                ),
                None => "the ledger holds spends dated in the future: check the signer's clock"
                    .to_owned(),
            };
            let raise = if cap < ceiling.velocity_24h {
                format!(
                    "ask the operator to raise the 24 h cap (lowered by them; signed ceiling {})",
                    ceiling.velocity_24h
                )
            } else {
                "ask the operator to raise velocity_24h in a new signed policy".to_owned()
            };
            return Err(deny(
                Rule::VelocityCap24h,
                format!(
                    "{amount} base units of {asset} would bring agent {agent}'s 24 h {asset} total to {total} (cap {cap}, already spent {spent}); {when}, send at most {} now, or {raise}",
                    cap.saturating_sub(spent)
                ),
            ));
        }
    }

    Ok(())
}

/// The earliest unix time at which `amount` fits under `cap` again as older spends leave
/// the 24 h window, found by bisection over `since` (spent totals only shrink as `since`
/// grows). `None` if it does not fit even with an empty window (spends dated after `now`).
fn fits_again_at(
    history: &impl History,
    agent: &AgentId,
    asset: AssetSymbol,
    amount: u128,
    cap: u128,
    now: u64,
) -> Option<u64> {
    let fits = |since: u64| {
        history
            .spent_since(agent, asset, since)
            .checked_add(amount)
            .is_some_and(|t| t <= cap)
    };
    // Invariant: `fits(lo)` is false (the caller just saw it fail), `fits(hi)` is true.
    let mut lo = now.saturating_sub(VELOCITY_WINDOW);
    let mut hi = now.checked_add(1)?;
    if !fits(hi) {
        return None;
    }
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if fits(mid) {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    hi.checked_add(VELOCITY_WINDOW)
}

/// "in about 3 h 12 min", "in about 40 s".
fn in_about(secs: u64) -> String {
    let minutes = secs.div_ceil(60);
    match secs {
        0..60 => format!("in about {secs} s"),
        60..3600 => format!("in about {minutes} min"),
        _ => format!("in about {} h {} min", minutes / 60, minutes % 60),
    }
}

fn list_or_none(items: &[&str]) -> String {
    if items.is_empty() {
        "none".to_owned()
    } else {
        items.join(", ")
    }
}

#[cfg(test)]
mod tests;
