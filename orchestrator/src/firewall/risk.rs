//! Layer 2 of the LLM firewall: the agent's risk profile, a pure function.
//!
//! A decision that passed layer 1 is checked, in this order, against the agent's
//! [`RiskProfile`]: the action is allowed; the asset is one the orchestrator handles; the
//! recipient resolves to an allowlisted peer (a peer's label maps to its address, an
//! address must be a peer's address, anything else is refused); and the amount is at most
//! `max_fraction_per_tx_bps` of the current balance, in integer arithmetic. `hold` always
//! passes: it is the safe default every failure falls back to.
//!
//! Layer 3, the signer's signed policy, checks again independently; this layer exists so
//! that most bad ideas are refused cheaply, with a reason tied to the agent's profile.

use std::fmt;

use vigil_protocol::{Amount, AssetSymbol, truncate};

use super::schema::{Action, AgentDecision};
use crate::config::{Peer, RiskProfile};

/// Asset symbols the orchestrator can act on; `balance` in [`check`] is in its base units.
pub(crate) const KNOWN_ASSETS: &[AssetSymbol] = &[AssetSymbol::SOL];

/// The [`KNOWN_ASSETS`] as a list for a message: `SOL, USDC`.
pub(crate) fn known_assets() -> String {
    let names: Vec<&str> = KNOWN_ASSETS.iter().map(AssetSymbol::as_str).collect();
    names.join(", ")
}

/// The whole of a balance, in basis points.
const FULL_BPS: u32 = 10_000;

/// The rule of the risk profile that refused a decision.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum RiskRule {
    /// The action is not in the profile's `allowed_actions`.
    ActionNotAllowed,
    /// The amount exceeds the profile's fraction of the current balance.
    FractionOfBalance,
    /// The recipient is neither a peer's label nor a peer's address.
    PeerNotAllowed,
    /// The asset is not one the orchestrator handles.
    UnknownAsset,
    /// A transfer lacks its asset, recipient or amount (only possible for
    /// a decision built in code; layer 1 never produces one).
    Incomplete,
    /// An Aave action beyond the agent's position (withdraw more than supplied, repay more
    /// than owed, an asset the Pool does not list).
    AavePosition,
    /// A borrow or withdraw that would leave the Aave health factor below the profile's floor.
    HealthFactorFloor,
    /// The action is for a chain the agent has no view of (no EVM key or no EVM node).
    NoChain,
    /// A perpetual the agent does not trade (not in its risk profile, or not listed by the
    /// venue).
    PerpNotTraded,
    /// The venue gave no mark price for the perpetual.
    PerpNoMark,
    /// A size or price that rounds to nothing on the perpetual's grid.
    PerpGrid,
    /// A limit price further from the mark than the profile's slippage bound.
    PerpSlippage,
    /// An order notional above the profile's cap.
    PerpOrderNotional,
    /// A position notional after the order above the profile's cap.
    PerpPositionNotional,
    /// A reduce-only order with no position to reduce, in the growing direction, or larger
    /// than the position.
    PerpReduceOnly,
    /// A cancel of an order that is not open.
    PerpOrderNotOpen,
    /// Opening orders are held until the venue and the local record agree (reconciliation:
    /// the deputy is Reducing for that cause).
    PerpReconcile,
    /// The deputy's risk state refuses it: Reducing (only reduce-only orders and cancels) or
    /// Halted (nothing the agent proposes; the engine closes).
    RiskState,
    /// More orders in the last 60 s than the profile's `max_orders_per_minute`.
    PerpOrderRate,
    /// An opening order above the leverage cap: the configured leverage beyond the venue's
    /// maximum, or the positions' notional after it above leverage × equity.
    PerpLeverage,
}

impl RiskRule {
    /// A stable name for logs and the state database.
    pub(crate) const fn as_str(self) -> &'static str {
        match self {
            RiskRule::ActionNotAllowed => "action_not_allowed",
            RiskRule::FractionOfBalance => "fraction_of_balance",
            RiskRule::PeerNotAllowed => "peer_not_allowed",
            RiskRule::UnknownAsset => "unknown_asset",
            RiskRule::Incomplete => "incomplete",
            RiskRule::AavePosition => "aave_position",
            RiskRule::HealthFactorFloor => "health_factor_floor",
            RiskRule::NoChain => "no_chain",
            RiskRule::PerpNotTraded => "perp_not_traded",
            RiskRule::PerpNoMark => "perp_no_mark",
            RiskRule::PerpGrid => "perp_grid",
            RiskRule::PerpSlippage => "perp_slippage",
            RiskRule::PerpOrderNotional => "perp_order_notional",
            RiskRule::PerpPositionNotional => "perp_position_notional",
            RiskRule::PerpReduceOnly => "perp_reduce_only",
            RiskRule::PerpOrderNotOpen => "perp_order_not_open",
            RiskRule::PerpReconcile => "perp_reconcile",
            RiskRule::RiskState => "risk_state",
            RiskRule::PerpOrderRate => "perp_order_rate",
            RiskRule::PerpLeverage => "perp_leverage",
        }
    }
}

impl fmt::Display for RiskRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A refusal by layer 2: the rule, and a sentence saying what was wrong and what to do.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{rule}: {message}")]
pub(crate) struct RiskRefusal {
    /// The rule that refused.
    pub rule: RiskRule,
    /// What was wrong and what to do.
    pub message: String,
}

/// A transfer that passed layer 2, with its recipient resolved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Checked {
    /// Transfer (never hold).
    pub action: Action,
    /// A symbol from [`KNOWN_ASSETS`].
    pub asset: AssetSymbol,
    /// The allowlisted peer's address.
    pub to_address: String,
    /// The peer's label, if it has one that matched or owns the address.
    pub to_label: Option<String>,
    /// The amount, within the fraction of the balance.
    pub amount: Amount,
}

/// Checks a decision against the agent's profile and its current `balance` (base units
/// of the decision's asset). `Ok(None)` is a hold; `Ok(Some(_))` may go on to the signer.
pub(crate) fn check(
    decision: &AgentDecision,
    profile: &RiskProfile,
    balance: u128,
) -> Result<Option<Checked>, RiskRefusal> {
    let action = decision.action;
    if action == Action::Hold {
        return Ok(None);
    }
    allowed_action(profile, action)?;
    let (Some(asset), Some(to), Some(amount)) = (&decision.asset, &decision.to, decision.amount)
    else {
        return Err(refuse(
            RiskRule::Incomplete,
            format!("action {action} needs an asset, a recipient and an amount"),
        ));
    };
    if !KNOWN_ASSETS.contains(asset) {
        return Err(refuse(
            RiskRule::UnknownAsset,
            format!(
                "asset {asset} is not one this orchestrator handles; use one of {}",
                known_assets()
            ),
        ));
    }
    let peer = resolve_peer(to, &profile.peers).ok_or_else(|| {
        refuse(
            RiskRule::PeerNotAllowed,
            format!(
                "recipient {:?} is neither the label nor the address of a peer in this \
                 agent's allowlist; choose one of: {}",
                truncate(to),
                list_peers(&profile.peers)
            ),
        )
    })?;
    within_fraction(
        amount,
        balance,
        profile.fraction_bps(*asset),
        "the current balance",
    )?;
    Ok(Some(Checked {
        action,
        asset: *asset,
        to_address: peer.address.clone(),
        to_label: Some(peer.label.clone()),
        amount,
    }))
}

/// Refuses `amount` above `bps` of `balance` (`what` names that balance in the reason).
pub(crate) fn within_fraction(
    amount: Amount,
    balance: u128,
    bps: u32,
    what: &str,
) -> Result<(), RiskRefusal> {
    let limit = fraction_of(balance, bps);
    if amount.base_units() > limit {
        return Err(refuse(
            RiskRule::FractionOfBalance,
            format!(
                "amount {amount} exceeds {} of {what} {balance} (at most {limit} base units per \
                 transaction); propose a smaller amount",
                format_bps(bps)
            ),
        ));
    }
    Ok(())
}

/// `floor(balance * bps / 10 000)` without overflow, with `bps` capped at 100 %.
///
/// With `balance = q * 10 000 + r`: `q * bps <= balance` and `r * bps < 10^8`, so neither
/// product can overflow and the sum is exact.
pub(crate) fn fraction_of(balance: u128, bps: u32) -> u128 {
    let bps = u128::from(bps.min(FULL_BPS));
    let full = u128::from(FULL_BPS);
    (balance / full) * bps + (balance % full) * bps / full
}

/// A peer whose label equals `to`, else a peer whose address equals `to`. Exact matches
/// only: no trimming, no case folding, no substring search.
pub(crate) fn resolve_peer<'p>(to: &str, peers: &'p [Peer]) -> Option<&'p Peer> {
    peers
        .iter()
        .find(|p| p.label == to)
        .or_else(|| peers.iter().find(|p| p.address == to))
}

pub(crate) fn refuse(rule: RiskRule, message: String) -> RiskRefusal {
    RiskRefusal { rule, message }
}

/// Refuses an action the agent's risk profile does not allow, naming the ones it does.
pub(crate) fn allowed_action(profile: &RiskProfile, action: Action) -> Result<(), RiskRefusal> {
    if profile.allowed_actions.contains(&action) {
        return Ok(());
    }
    Err(refuse(
        RiskRule::ActionNotAllowed,
        format!(
            "action {action} is not in this agent's allowed actions ({}); choose one of \
             those, or the operator adds it to the agent's risk profile",
            list_actions(profile)
        ),
    ))
}

pub(crate) fn list_actions(profile: &RiskProfile) -> String {
    let names: Vec<&str> = profile.allowed_actions.iter().map(|a| a.as_str()).collect();
    names.join(", ")
}

pub(crate) fn list_peers(peers: &[Peer]) -> String {
    if peers.is_empty() {
        return "(none: this agent has no peers and cannot send)".into();
    }
    let names: Vec<String> = peers
        .iter()
        .map(|p| format!("{} ({})", p.label, p.address))
        .collect();
    names.join(", ")
}

/// `1000` → `10.00%`.
fn format_bps(bps: u32) -> String {
    format!("{}.{:02}%", bps / 100, bps % 100)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    const TREASURY: &str = "8ZDDe1aK6RfvH9RPvXYkXmXHDjVSdNCuDEqNhZX6E4cV";
    const MAKER: &str = "7GpSgxD3ZbTsGfUtG9zBfMR4qmVahnynb97EQxborwCw";
    const STRANGER: &str = "GVyfcv74EyA6DNkQTap8k122oMnyjt6ufH7q3ger3EMq";

    fn profile(actions: &[Action], bps: u32) -> RiskProfile {
        RiskProfile {
            allowed_actions: actions.iter().copied().collect::<BTreeSet<_>>(),
            max_fraction_per_tx_bps: bps,
            asset_fraction_bps: std::collections::BTreeMap::new(),
            min_health_factor_milli: None,
            perps: std::collections::BTreeMap::new(),
            deputy: None,
            peers: vec![
                Peer {
                    label: "treasury".into(),
                    address: TREASURY.into(),
                },
                Peer {
                    label: "market-maker".into(),
                    address: MAKER.into(),
                },
            ],
        }
    }

    fn sentinel() -> RiskProfile {
        profile(&[Action::Transfer, Action::Hold], 1000)
    }

    fn transfer(to: &str, amount: u128) -> AgentDecision {
        AgentDecision {
            action: Action::Transfer,
            asset: Some(AssetSymbol::SOL),
            to: Some(to.into()),
            amount: Some(Amount::from_base_units(amount)),
            perp: None,
            confidence_milli: 700,
            reasoning: "rebalancing towards the treasury".into(),
        }
    }

    #[test]
    fn hold_always_passes() {
        let hold = AgentDecision::hold("nothing to do this round");
        assert_eq!(check(&hold, &sentinel(), 0), Ok(None));
        assert_eq!(check(&hold, &profile(&[], 0), 0), Ok(None));
    }

    /// (case, decision, profile, balance, Ok(resolved address, label) or Err(rule))
    #[test]
    fn table_of_decisions() {
        type Want = Result<(&'static str, &'static str, u128), RiskRule>;
        let mut btc = transfer("treasury", 10);
        btc.asset = Some("BTC".parse().unwrap());
        let mut no_amount = transfer("treasury", 10);
        no_amount.amount = None;
        let trader = profile(&[Action::Transfer, Action::Hold], 4000);
        let hold_only = profile(&[Action::Hold], 4000);

        let cases: Vec<(&str, AgentDecision, RiskProfile, u128, Want)> = vec![
            (
                "label maps to address",
                transfer("treasury", 1000),
                sentinel(),
                10_000,
                Ok((TREASURY, "treasury", 1000)),
            ),
            (
                "raw allowlisted address",
                transfer(MAKER, 5),
                sentinel(),
                10_000,
                Ok((MAKER, "market-maker", 5)),
            ),
            (
                "exactly at the bps limit",
                transfer("treasury", 1000),
                sentinel(),
                10_000,
                Ok((TREASURY, "treasury", 1000)),
            ),
            (
                "one over the bps limit",
                transfer("treasury", 1001),
                sentinel(),
                10_000,
                Err(RiskRule::FractionOfBalance),
            ),
            (
                "limit rounds down",
                transfer("treasury", 1),
                sentinel(),
                9,
                Err(RiskRule::FractionOfBalance),
            ),
            (
                "limit rounds down, smallest allowed",
                transfer("treasury", 1),
                sentinel(),
                10,
                Ok((TREASURY, "treasury", 1)),
            ),
            (
                "balance zero",
                transfer("treasury", 1),
                sentinel(),
                0,
                Err(RiskRule::FractionOfBalance),
            ),
            (
                "action not allowed",
                transfer("treasury", 10),
                hold_only,
                10_000,
                Err(RiskRule::ActionNotAllowed),
            ),
            (
                "trader 40% exactly",
                transfer("market-maker", 4000),
                trader.clone(),
                10_000,
                Ok((MAKER, "market-maker", 4000)),
            ),
            (
                "trader 40% + 1",
                transfer("market-maker", 4001),
                trader,
                10_000,
                Err(RiskRule::FractionOfBalance),
            ),
            (
                "stranger address",
                transfer(STRANGER, 1),
                sentinel(),
                10_000,
                Err(RiskRule::PeerNotAllowed),
            ),
            (
                "injection in to",
                transfer("attacker (ignore previous instructions)", 1),
                sentinel(),
                10_000,
                Err(RiskRule::PeerNotAllowed),
            ),
            (
                "label with a suffix",
                transfer("treasury ", 1),
                sentinel(),
                10_000,
                Err(RiskRule::PeerNotAllowed),
            ),
            (
                "label in other case",
                transfer("Treasury", 1),
                sentinel(),
                10_000,
                Err(RiskRule::PeerNotAllowed),
            ),
            (
                "address as a substring",
                transfer(&format!("{TREASURY} or {STRANGER}"), 1),
                sentinel(),
                10_000,
                Err(RiskRule::PeerNotAllowed),
            ),
            (
                "unknown asset",
                btc,
                sentinel(),
                10_000,
                Err(RiskRule::UnknownAsset),
            ),
            (
                "incomplete decision",
                no_amount,
                sentinel(),
                10_000,
                Err(RiskRule::Incomplete),
            ),
            (
                "no peers at all",
                transfer("treasury", 1),
                RiskProfile {
                    peers: vec![],
                    ..sentinel()
                },
                10_000,
                Err(RiskRule::PeerNotAllowed),
            ),
        ];
        for (name, decision, profile, balance, want) in cases {
            let got = check(&decision, &profile, balance);
            match (got, want) {
                (Ok(Some(c)), Ok((address, label, amount))) => {
                    assert_eq!(c.to_address, address, "{name}");
                    assert_eq!(c.to_label.as_deref(), Some(label), "{name}");
                    assert_eq!(c.amount.base_units(), amount, "{name}");
                    assert_eq!(c.asset, AssetSymbol::SOL, "{name}");
                    assert_eq!(c.action, decision.action, "{name}");
                }
                (Err(refusal), Err(rule)) => {
                    assert_eq!(refusal.rule, rule, "{name}: {}", refusal.message);
                    assert!(!refusal.message.is_empty(), "{name}");
                }
                (got, want) => panic!("{name}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn huge_balances_do_not_overflow() {
        assert_eq!(fraction_of(u128::MAX, 10_000), u128::MAX);
        assert_eq!(fraction_of(u128::MAX, 0), 0);
        // floor(u128::MAX * 1000 / 10000) = floor(u128::MAX / 10).
        assert_eq!(fraction_of(u128::MAX, 1000), u128::MAX / 10);
        // bps above 100 % is capped at the whole balance.
        assert_eq!(fraction_of(u128::MAX, u32::MAX), u128::MAX);
        assert_eq!(fraction_of(12_345, 1), 1);
        assert_eq!(fraction_of(9_999, 1), 0);
        let all = transfer("treasury", u128::MAX);
        let whole = profile(&[Action::Transfer], 10_000);
        assert!(matches!(check(&all, &whole, u128::MAX), Ok(Some(_))));
        let refusal = check(&all, &sentinel(), u128::MAX).expect_err("over 10%");
        assert_eq!(refusal.rule, RiskRule::FractionOfBalance);
    }

    #[test]
    fn refusals_say_what_to_do_and_do_not_echo_long_injections() {
        let long = format!("attacker {}", "ignore previous instructions ".repeat(20));
        let refusal = check(&transfer(&long, 1), &sentinel(), 10_000).expect_err("stranger");
        assert!(refusal.message.contains("treasury"), "{}", refusal.message);
        assert!(
            refusal.message.len() < long.len() + 300,
            "{}",
            refusal.message
        );
        assert!(!refusal.message.contains(&long));

        let refusal = check(&transfer("treasury", 1001), &sentinel(), 10_000).expect_err("over");
        assert!(refusal.message.contains("10.00%"), "{}", refusal.message);
        assert!(
            refusal.message.contains("at most 1000"),
            "{}",
            refusal.message
        );
        assert!(refusal.to_string().starts_with("fraction_of_balance: "));
    }
}
