//! Layer 2 for the Hyperliquid actions: the agent's per-perpetual limits against what the
//! venue says ([`PerpView`]: the universe's grid, the marks, the account's positions and open
//! orders), a pure function.
//!
//! In order: the action is allowed; the perpetual is one the agent trades (its risk profile)
//! and the venue lists; a cancel names an order that is open on that perpetual. An order's
//! size and limit price are rounded DOWN to the perpetual's grid (sizes to `szDecimals`,
//! prices to 5 significant figures and `6 − szDecimals` decimals, integers always allowed), so
//! the signer's grid rule never trips on an honest proposal; a size that rounds to nothing is
//! refused. Then, on the rounded values: the limit price is within the profile's slippage
//! bound of the mark (a buy at most mark × (1 + bps), a sell at least mark × (1 − bps)); the
//! order notional (size × limit) is at most the profile's cap; a reduce-only order needs a
//! position, in the reducing direction, at least as large as the order; every order counts
//! against the order rate cap (orders that passed in the last 60 s); any other order is an
//! opening one: it is refused unless the deputy is Active (`deputy/`: Reducing for a
//! reconciliation difference is `PerpReconcile`, otherwise `RiskState`), the position it could
//! reach (the position, plus the resting orders on the same side, plus this order) times the
//! mark is at most the profile's position cap, and the leverage cap holds: the configured
//! leverage is within the venue's maximum, and the notional of every position after it (at
//! the marks) is at most leverage × the deputy's equity. A Halted deputy's proposals are all
//! refused (`RiskState`): the engine's own closing flow runs instead.
//!
//! All arithmetic is exact ([`fixed::Fx`], 8 decimals; notionals in micro-USD rounded up).
//! The signer checks its own ceilings (policy notional caps with the limit price, leverage,
//! 24 h opened notional) independently.

pub(crate) mod fixed;

use std::collections::BTreeMap;

use vigil_protocol::{
    AssetSymbol, Chain, Intent, Network, PerpCancelIntent, PerpDecimal, PerpOrderIntent,
    PerpPosition, Side,
};

use super::risk::{RiskRefusal, RiskRule, allowed_action, refuse};
use super::schema::{AgentDecision, PerpDecision};
use crate::config::{PerpRisk, RiskProfile};
use crate::deputy::{RiskState, StateCause, StateGate};
use fixed::Fx;

/// One perpetual as the venue lists it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PerpMeta {
    /// The asset index orders carry.
    pub index: u32,
    /// Digits of a size.
    pub sz_decimals: u32,
    /// The venue's maximum leverage.
    pub max_leverage: u32,
}

/// A resting order of the agent's account.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ViewOrder {
    pub oid: u64,
    pub buy: bool,
    /// Remaining size (positive).
    pub size: Fx,
}

/// What the venue says of the agent's Hyperliquid account, read before a decision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PerpView {
    /// The network (`hyperliquid:<network>`).
    pub network: Network,
    /// The universe (coins the venue lists), by coin.
    pub perps: BTreeMap<AssetSymbol, PerpMeta>,
    /// Mark (mid) prices by coin.
    pub marks: BTreeMap<AssetSymbol, Fx>,
    /// Signed position sizes by coin (absent: flat).
    pub positions: BTreeMap<AssetSymbol, Fx>,
    /// Resting orders by coin.
    pub open_orders: BTreeMap<AssetSymbol, Vec<ViewOrder>>,
    /// The account's value, USD.
    pub account_value: Fx,
    /// The account's master address, whose state the venue was asked for (live only).
    pub master: Option<String>,
    /// The deputy's risk state (reconciliation differences make it Reducing).
    pub gate: StateGate,
    /// The deputy's equity, USD (the orchestrator's estimate: live the account value, paper
    /// the paper book's), for the leverage cap.
    pub equity: Fx,
    /// Orders of the agent that passed layer 2 in the last 60 s.
    pub orders_last_minute: u32,
    /// The venue's taker fee, parts per million (what a paper fill pays).
    pub taker_fee_ppm: u32,
    /// The paper model's slippage from the mark, basis points.
    pub paper_slippage_bps: u32,
}

impl PerpView {
    /// The signed position in `coin` (zero when flat).
    pub fn position(&self, coin: AssetSymbol) -> Fx {
        self.positions.get(&coin).copied().unwrap_or(Fx::ZERO)
    }
}

/// A perpetual's action that passed layer 2.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct PerpChecked {
    /// The intent for the signer (an order on the grid, or a cancel).
    pub intent: Intent,
    /// The mark it was checked against (an order), for the paper fill and the record.
    pub mark: Option<Fx>,
    /// The position before it, for the signer's context.
    pub position: PerpPosition,
    /// The profile's limits for this perpetual (the leverage set before a first order).
    pub risk: PerpRisk,
}

/// Checks a perpetual's decision (`perp_order`, `perp_cancel`) against the profile and view.
pub(crate) fn check_perp(
    decision: &AgentDecision,
    profile: &RiskProfile,
    view: &PerpView,
) -> Result<PerpChecked, RiskRefusal> {
    let action = decision.action;
    allowed_action(profile, action)?;
    let (Some(coin), Some(perp)) = (decision.asset, decision.perp.as_ref()) else {
        return Err(refuse(
            RiskRule::Incomplete,
            format!("action {action} needs a perpetual and its fields"),
        ));
    };
    let traded: Vec<&str> = profile.perps.keys().map(AssetSymbol::as_str).collect();
    let risk = *profile.perps.get(&coin).ok_or_else(|| {
        refuse(
            RiskRule::PerpNotTraded,
            format!(
                "{coin} is not a perpetual this agent trades; use one of {}",
                traded.join(", ")
            ),
        )
    })?;
    let meta = *view.perps.get(&coin).ok_or_else(|| {
        refuse(
            RiskRule::PerpNotTraded,
            format!(
                "hyperliquid:{} lists no perpetual {coin}; use one of {}",
                view.network,
                traded.join(", ")
            ),
        )
    })?;
    if view.gate.state == RiskState::Halted {
        return Err(refuse(
            RiskRule::RiskState,
            format!(
                "{} is halted ({}): nothing it proposes goes; the risk engine is cancelling and \
                 closing. The operator resumes it with /resume and the code at the approver",
                decision.action, view.gate.detail
            ),
        ));
    }
    let position = view.position(coin);
    let position_text = PerpPosition::try_from(position.to_string()).map_err(|e| {
        refuse(
            RiskRule::PerpPositionNotional,
            format!("the venue's {coin} position cannot be stated ({e}); holding"),
        )
    })?;
    let (chain, network) = (Chain::Hyperliquid, view.network);
    let order = match perp {
        PerpDecision::Cancel { oid } => {
            let open = view
                .open_orders
                .get(&coin)
                .is_some_and(|orders| orders.iter().any(|o| o.oid == *oid));
            if !open {
                let ids: Vec<String> = view
                    .open_orders
                    .get(&coin)
                    .map(|o| o.iter().map(|o| o.oid.to_string()).collect())
                    .unwrap_or_default();
                return Err(refuse(
                    RiskRule::PerpOrderNotOpen,
                    format!(
                        "order {oid} is not open on {coin}; the open ones are: {}",
                        if ids.is_empty() {
                            "none".to_owned()
                        } else {
                            ids.join(", ")
                        }
                    ),
                ));
            }
            return Ok(PerpChecked {
                intent: Intent::PerpCancel(PerpCancelIntent {
                    chain,
                    network,
                    asset: coin,
                    oid: *oid,
                }),
                mark: None,
                position: position_text,
                risk,
            });
        }
        PerpDecision::Order(order) => order,
    };
    let parse = |d: &PerpDecimal| Fx::parse(d.as_str());
    let (Some(size), Some(limit)) = (parse(&order.size), parse(&order.limit_px)) else {
        return Err(refuse(
            RiskRule::PerpGrid,
            "the size or the limit price is too large to handle".into(),
        ));
    };
    let size = size.size_grid(meta.sz_decimals);
    let limit = limit.price_grid(meta.sz_decimals);
    if size.is_zero() || limit.is_zero() {
        return Err(refuse(
            RiskRule::PerpGrid,
            format!(
                "size {} at {} rounds to nothing on {coin}'s grid ({} size decimals); propose \
                 a larger size",
                order.size, order.limit_px, meta.sz_decimals
            ),
        ));
    }
    let mark = *view.marks.get(&coin).ok_or_else(|| {
        refuse(
            RiskRule::PerpNoMark,
            format!("the venue gave no mark price for {coin}; holding until it does"),
        )
    })?;
    let buy = order.side == Side::Buy;
    let overflow = || {
        refuse(
            RiskRule::PerpOrderNotional,
            "the order's numbers overflow; propose a smaller order".into(),
        )
    };
    let band = mark.bps(risk.max_slippage_bps).ok_or_else(overflow)?;
    let (bound, beyond) = if buy {
        let b = mark.add(band).ok_or_else(overflow)?;
        (b, limit > b)
    } else {
        let b = mark.sub(band).ok_or_else(overflow)?;
        (b, limit < b)
    };
    if beyond {
        return Err(refuse(
            RiskRule::PerpSlippage,
            format!(
                "a {} limit of {limit} is more than {} bps from the mark {mark} (the bound is {bound}); \
                 propose a limit {} {bound}",
                order.side.as_str(),
                risk.max_slippage_bps,
                if buy { "at most" } else { "at least" }
            ),
        ));
    }
    let notional = size.notional_micros(limit).ok_or_else(overflow)?;
    if notional > u128::from(risk.max_order_micros) {
        return Err(refuse(
            RiskRule::PerpOrderNotional,
            format!(
                "{size} {coin} at {limit} is {} USD, above this agent's order cap of {} USD; \
                 propose a smaller size",
                usd(notional),
                usd(u128::from(risk.max_order_micros))
            ),
        ));
    }
    if view.orders_last_minute >= risk.max_orders_per_minute {
        return Err(refuse(
            RiskRule::PerpOrderRate,
            format!(
                "{} orders passed in the last 60 s, this agent's cap is {} a minute; wait and \
                 propose it again",
                view.orders_last_minute, risk.max_orders_per_minute
            ),
        ));
    }
    let signed = if buy { size } else { size.neg() };
    if order.reduce_only {
        let reduces = !position.is_zero() && position.is_negative() == buy;
        if !reduces || size > position.abs() {
            return Err(refuse(
                RiskRule::PerpReduceOnly,
                format!(
                    "a reduce-only {} of {size} {coin} does not reduce the position of {position}: \
                     a reduce-only order must trade against the position and be at most its size",
                    order.side.as_str()
                ),
            ));
        }
    } else {
        if view.gate.state != RiskState::Active {
            let why = &view.gate.detail;
            return Err(if view.gate.cause == Some(StateCause::Reconciliation) {
                refuse(
                    RiskRule::PerpReconcile,
                    format!(
                        "opening orders are held until the venue and the local record agree \
                         ({why}); only reduce-only orders and cancels are allowed"
                    ),
                )
            } else {
                refuse(
                    RiskRule::RiskState,
                    format!(
                        "the deputy is {} ({why}): only reduce-only orders and cancels are allowed",
                        view.gate.state
                    ),
                )
            });
        }
        let after =
            after_of(position, &view.open_orders, coin, buy, signed).ok_or_else(overflow)?;
        let resting = after
            .sub(position)
            .and_then(|r| r.sub(signed))
            .ok_or_else(overflow)?;
        let exposure = after.notional_micros(mark).ok_or_else(overflow)?;
        if exposure > u128::from(risk.max_position_micros) {
            return Err(refuse(
                RiskRule::PerpPositionNotional,
                format!(
                    "the {coin} position could reach {after} (now {position}, resting orders on \
                     this side {}), {} USD at the mark {mark}, above this agent's position cap of \
                     {} USD; propose a smaller size or reduce first",
                    resting.abs(),
                    usd(exposure),
                    usd(u128::from(risk.max_position_micros))
                ),
            ));
        }
        check_leverage(coin, &risk, meta, view, after)?;
    }
    let grid = |f: Fx| PerpDecimal::try_from(f.to_string());
    let (Ok(size_text), Ok(limit_text)) = (grid(size), grid(limit)) else {
        return Err(overflow());
    };
    Ok(PerpChecked {
        intent: Intent::PerpOrder(PerpOrderIntent {
            chain,
            network,
            asset: coin,
            side: order.side,
            size: size_text,
            limit_px: limit_text,
            tif: order.tif,
            reduce_only: order.reduce_only,
            cloid: None,
        }),
        mark: Some(mark),
        position: position_text,
        risk,
    })
}

/// The position an opening order could reach: the position, the resting orders on its side,
/// and the order (signed).
fn after_of(
    position: Fx,
    open_orders: &BTreeMap<AssetSymbol, Vec<ViewOrder>>,
    coin: AssetSymbol,
    buy: bool,
    signed: Fx,
) -> Option<Fx> {
    let resting = open_orders
        .get(&coin)
        .map(|orders| {
            orders
                .iter()
                .filter(|o| o.buy == buy)
                .try_fold(Fx::ZERO, |acc, o| acc.add(o.size))
        })
        .unwrap_or(Some(Fx::ZERO))?;
    let resting = if buy { resting } else { resting.neg() };
    position.add(resting)?.add(signed)
}

/// The leverage cap of an opening order that would take `coin`'s position to `after`.
fn check_leverage(
    coin: AssetSymbol,
    risk: &PerpRisk,
    meta: PerpMeta,
    view: &PerpView,
    after: Fx,
) -> Result<(), RiskRefusal> {
    if risk.leverage > meta.max_leverage {
        return Err(refuse(
            RiskRule::PerpLeverage,
            format!(
                "this agent's {coin} leverage is {}x, above the venue's maximum of {}x; lower \
                 leverage in [agents.risk.perps.{coin}]",
                risk.leverage, meta.max_leverage
            ),
        ));
    }
    let overflow = || {
        refuse(
            RiskRule::PerpLeverage,
            "the positions' numbers overflow; propose a smaller order".into(),
        )
    };
    let mut exposure: u128 = 0;
    for (c, size) in &view.positions {
        if *c == coin || size.is_zero() {
            continue;
        }
        let mark = view.marks.get(c).ok_or_else(|| {
            refuse(
                RiskRule::PerpNoMark,
                format!("the venue gave no mark for {c}, so the leverage cannot be checked"),
            )
        })?;
        exposure = exposure
            .checked_add(size.notional_micros(*mark).ok_or_else(overflow)?)
            .ok_or_else(overflow)?;
    }
    let mark = view.marks.get(&coin).copied().ok_or_else(overflow)?;
    exposure = exposure
        .checked_add(after.notional_micros(mark).ok_or_else(overflow)?)
        .ok_or_else(overflow)?;
    let equity = if view.equity.is_negative() {
        0
    } else {
        view.equity.notional_micros(Fx::ONE).ok_or_else(overflow)?
    };
    let allowed = equity
        .checked_mul(u128::from(risk.leverage))
        .ok_or_else(overflow)?;
    if exposure > allowed {
        return Err(refuse(
            RiskRule::PerpLeverage,
            format!(
                "the positions would reach {} USD at the marks, above {}x this deputy's equity of \
                 {} USD ({} USD); propose a smaller size or reduce first",
                usd(exposure),
                risk.leverage,
                usd(equity),
                usd(allowed)
            ),
        ));
    }
    Ok(())
}

/// Micro-USD as dollars with cents (rounded down).
pub(crate) fn usd(micros: u128) -> String {
    format!("{}.{:02}", micros / 1_000_000, micros % 1_000_000 / 10_000)
}

#[cfg(test)]
mod tests;
