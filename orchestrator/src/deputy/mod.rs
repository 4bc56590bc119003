//! The trading deputy's risk engine (`docs/deputies.md`): its state per agent (Active,
//! Reducing, Halted, persisted in the state database), the equity it is judged by, and the
//! daily loss floor.
//!
//! - **Active**: layer 2's caps decide.
//! - **Reducing**: only reduce-only orders, cancels, `aave_repay` and `aave_withdraw` pass
//!   layer 2 (rule `RiskState`, or `PerpReconcile` when reconciliation put it there: the
//!   venue and the local record differ).
//! - **Halted**: nothing the agent proposes passes; the engine's own closing flow (cancel every
//!   open order, close every position reduce-only at a slippage-bounded price) runs each tick
//!   until flat. Only the operator's code at the approver ends it (`engine.rs`).
//!
//! Equity is the orchestrator's estimate, in USD, summed over the venues the deputy trades
//! (`venues.rs`): Hyperliquid live, the venue's account value
//! (`clearinghouseState.marginSummary.accountValue`); paper, the paper cash plus the realised
//! PnL, minus the fees, plus the funding, plus the unrealised PnL at the venue's marks
//! ([`paper_equity`]); Aave, collateral − debt at the oracle's prices. The baseline is the
//! equity at the first tick of the UTC day; the floor is hit when equity − baseline ≤ −floor
//! ([`floor_hit`]).
//!
//! `gate.rs` applies the state to the Aave and transfer actions (perpetuals' in
//! `firewall::risk_perp`); `engine.rs` runs the per-tick hook and the resume; `funding.rs`
//! accrues paper funding;
//! `report.rs` renders `/positions`,
//! `/pnl` and `/risk`.

pub(crate) mod aave_paper;
mod close_aave;
pub(crate) mod engine;
mod funding;
pub(crate) mod gate;
pub(crate) mod report;
pub(crate) mod usd;
pub(crate) mod venues;

use std::collections::BTreeMap;
use std::fmt;

use vigil_protocol::AssetSymbol;

use crate::firewall::risk_perp::fixed::Fx;
use crate::store::PerpPositionRow;

/// A deputy's risk state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub enum RiskState {
    /// The caps decide.
    #[default]
    Active,
    /// Only orders that reduce a position, and cancels.
    Reducing,
    /// Nothing new; the engine closes everything.
    Halted,
}

impl RiskState {
    /// The name stored and shown.
    pub const fn as_str(self) -> &'static str {
        match self {
            RiskState::Active => "active",
            RiskState::Reducing => "reducing",
            RiskState::Halted => "halted",
        }
    }

    /// Parses a stored name.
    pub fn parse(text: &str) -> Option<RiskState> {
        match text {
            "active" => Some(RiskState::Active),
            "reducing" => Some(RiskState::Reducing),
            "halted" => Some(RiskState::Halted),
            _ => None,
        }
    }
}

impl fmt::Display for RiskState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a deputy is not Active.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StateCause {
    /// The daily loss floor was hit.
    LossFloor,
    /// The venue and the local record differ.
    Reconciliation,
}

impl StateCause {
    /// The name stored and shown.
    pub const fn as_str(self) -> &'static str {
        match self {
            StateCause::LossFloor => "loss_floor",
            StateCause::Reconciliation => "reconciliation",
        }
    }

    /// Parses a stored name.
    pub fn parse(text: &str) -> Option<StateCause> {
        match text {
            "loss_floor" => Some(StateCause::LossFloor),
            "reconciliation" => Some(StateCause::Reconciliation),
            _ => None,
        }
    }
}

/// What layer 2 is told of the deputy's state.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StateGate {
    /// The state.
    pub state: RiskState,
    /// Why it is not Active (absent when Active).
    pub cause: Option<StateCause>,
    /// What the operator reads about it.
    pub detail: String,
}

impl StateGate {
    /// Reducing because reconciliation found `detail`.
    pub fn reconciling(detail: String) -> StateGate {
        StateGate {
            state: RiskState::Reducing,
            cause: Some(StateCause::Reconciliation),
            detail,
        }
    }
}

/// Paper equity: `cash` + Σ (realised − fees + funding) + Σ size × (mark − entry) over the
/// book.
/// `None` when a non-flat position has no mark (the estimate would be wrong) or on overflow.
pub(crate) fn paper_equity(
    cash: Fx,
    book: &[(String, PerpPositionRow)],
    marks: &BTreeMap<AssetSymbol, Fx>,
) -> Option<Fx> {
    let mut equity = cash;
    for (coin, p) in book {
        equity = equity.add(p.realized_pnl)?.sub(p.fees)?.add(p.funding)?;
        if !p.size.is_zero() {
            let mark = marks.get(&coin.parse::<AssetSymbol>().ok()?)?;
            equity = equity.add(unrealised(p, *mark)?)?;
        }
    }
    Some(equity)
}

/// The unrealised PnL of a position at `mark`: size × (mark − entry).
pub(crate) fn unrealised(p: &PerpPositionRow, mark: Fx) -> Option<Fx> {
    p.size.mul(mark.sub(p.entry_px)?)
}

/// Whether `equity` is at or below `baseline − floor`.
pub(crate) fn floor_hit(equity: Fx, baseline: Fx, floor: Fx) -> bool {
    match equity.sub(baseline) {
        Some(change) => change <= floor.neg(),
        // An overflow is no estimate at all: treat it as hit (fail closed).
        None => true,
    }
}

/// Micro-USD as an [`Fx`] of dollars.
pub(crate) fn usd_fx(micros: u64) -> Fx {
    Fx::from_micros(micros)
}

/// The start (Unix seconds) of the UTC day holding `now`.
pub(crate) const fn utc_day(now: u64) -> u64 {
    now - now % 86_400
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn f(s: &str) -> Fx {
        Fx::parse(s).unwrap()
    }

    #[test]
    fn states_and_causes_round_trip_and_refuse_anything_else() {
        for s in [RiskState::Active, RiskState::Reducing, RiskState::Halted] {
            assert_eq!(RiskState::parse(s.as_str()), Some(s));
        }
        for c in [StateCause::LossFloor, StateCause::Reconciliation] {
            assert_eq!(StateCause::parse(c.as_str()), Some(c));
        }
        assert_eq!(RiskState::parse("Active"), None);
        assert_eq!(StateCause::parse(""), None);
    }

    #[test]
    fn the_floor_is_hit_at_the_floor_exactly_and_below() {
        let floor = usd_fx(100_000_000);
        assert_eq!(floor, f("100"));
        assert!(!floor_hit(f("9900.01"), f("10000"), floor));
        assert!(floor_hit(f("9900"), f("10000"), floor));
        assert!(floor_hit(f("9000"), f("10000"), floor));
        assert!(!floor_hit(f("12000"), f("10000"), floor));
    }

    #[test]
    fn paper_equity_adds_realised_unrealised_and_takes_fees() {
        let eth = PerpPositionRow {
            size: f("0.5"),
            entry_px: f("2000"),
            realized_pnl: f("30"),
            fees: f("1.5"),
            funding: Fx::ZERO,
        };
        let btc_flat = PerpPositionRow {
            size: Fx::ZERO,
            entry_px: Fx::ZERO,
            realized_pnl: f("-10"),
            fees: f("0.5"),
            funding: Fx::ZERO,
        };
        let marks = BTreeMap::from([("ETH".parse().unwrap(), f("1800"))]);
        let book = vec![("ETH".to_owned(), eth), ("BTC".to_owned(), btc_flat)];
        // 10000 + 30 − 1.5 − 10 − 0.5 + 0.5 × (1800 − 2000) = 9918.
        assert_eq!(paper_equity(f("10000"), &book, &marks), Some(f("9918")));
        // A position without a mark is no estimate.
        assert_eq!(paper_equity(f("10000"), &book, &BTreeMap::new()), None);
        assert_eq!(utc_day(86_400 * 3 + 5), 86_400 * 3);
    }
}
