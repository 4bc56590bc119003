//! The signer's bounds on a Hyperliquid order, applied while it builds the order from a typed
//! request and the policy's limits for that perpetual. Each refusal names its rule.
//!
//! What is checked here, from the request and the policy alone:
//! - the perpetual is one the policy lists (its asset index comes from the policy, never from
//!   the agent, as an EVM token's address does);
//! - size and price are exact on the exchange's grid: the size has at most the perpetual's
//!   `szDecimals` decimals; the price at most 5 significant figures (an integer price is
//!   always allowed) and at most `6 - szDecimals` decimals, so the exchange never rounds what
//!   was signed into something else;
//! - the order's notional (limit price × size, in USD) is within the policy's per-order cap;
//!   a reduce-only order is exempt: the exchange itself refuses one that would grow or flip
//!   a position, so it can only take exposure away (its price is not judged here: the signer
//!   has no market prices; the orchestrator bounds slippage);
//! - leverage is set only within the policy's maximum for the perpetual.
//!
//! What needs state across orders (the 24 h opened notional, the position bound, that the
//! leverage was set before the first order of a perpetual) is the ledger's, not this module's.

use super::wire::{Cloid, OrderType, OrderWire, UpdateLeverageAction, WireDecimal};

/// Decimals a perpetual's price may have: 6 minus its size decimals.
const PERP_PRICE_DECIMALS: u32 = 6;
/// Significant figures a non-integer price may have.
const PRICE_SIGNIFICANT_FIGURES: u32 = 5;

/// The policy's limits for one perpetual.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct PerpLimits {
    /// The coin, as the exchange names it (`ETH`).
    pub coin: String,
    /// Its asset index on the exchange (the position in `meta.universe`).
    pub index: u32,
    /// The exchange's size decimals for it.
    pub sz_decimals: u32,
    /// The highest leverage the signer will set.
    pub max_leverage: u32,
    /// The largest notional (limit price × size, USD) of one order that opens exposure; `None`
    /// when the caller applies its own cap (the engine: the agent's `per_tx_cap`).
    pub max_order_notional: Option<WireDecimal>,
}

/// An order as the agent asks for it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct OrderRequest {
    /// Buy (long) if true.
    pub buy: bool,
    /// Size in the coin's units.
    pub size: WireDecimal,
    /// Limit price in USD.
    pub limit_px: WireDecimal,
    /// Limit or trigger, with its time in force.
    pub order_type: OrderType,
    /// Only reduces a position (the exchange enforces it).
    pub reduce_only: bool,
    /// The agent's client order id, if any.
    pub cloid: Option<Cloid>,
}

/// Why the signer will not build an order.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum OrderRefusal {
    #[error(
        "rule size_on_grid: size {size} has more than {sz_decimals} decimals for {coin}: round it to the exchange's size step"
    )]
    SizeOffGrid {
        coin: String,
        size: String,
        sz_decimals: u32,
    },
    #[error("rule positive_size: the size of an order must be above zero")]
    ZeroSize,
    #[error(
        "rule price_on_grid: price {price} for {coin} has {why}: the exchange would round it; send at most 5 significant figures and {max_decimals} decimals"
    )]
    PriceOffGrid {
        coin: String,
        price: String,
        why: &'static str,
        max_decimals: u32,
    },
    #[error(
        "rule per_order_notional: {coin} order notional {notional} USD is above the policy's {cap} USD per order"
    )]
    NotionalAboveCap {
        coin: String,
        notional: String,
        cap: String,
    },
    #[error("rule max_leverage: leverage {asked}x for {coin} is above the policy's {max}x")]
    LeverageAboveMax { coin: String, asked: u32, max: u32 },
    #[error("rule positive_leverage: leverage must be at least 1x")]
    ZeroLeverage,
}

/// Decimals of a wire decimal (0 to 8).
fn decimals(d: WireDecimal) -> u32 {
    let scale = 10u128.pow(super::wire::DECIMALS);
    let mut frac = d.units() % scale;
    if frac == 0 {
        return 0;
    }
    let mut n = super::wire::DECIMALS;
    while frac.is_multiple_of(10) {
        frac /= 10;
        n -= 1;
    }
    n
}

/// Significant figures of a wire decimal (digits from the first non-zero one to the last).
fn significant_figures(d: WireDecimal) -> u32 {
    let mut units = d.units();
    if units == 0 {
        return 0;
    }
    while units.is_multiple_of(10) {
        units /= 10;
    }
    units.checked_ilog10().map_or(1, |l| l + 1)
}

/// The notional of `size` at `px` in 10^-8 USD, if it fits (it does for any real order).
pub(crate) fn notional(size: WireDecimal, px: WireDecimal) -> Option<WireDecimal> {
    let scale = 10u128.pow(super::wire::DECIMALS);
    let units = size.units().checked_mul(px.units())? / scale;
    WireDecimal::from_units(units)
}

/// Builds the order's wire form within `limits`, or says which rule it breaks.
pub(crate) fn plan_order(
    req: &OrderRequest,
    limits: &PerpLimits,
) -> Result<OrderWire, OrderRefusal> {
    let coin = || limits.coin.clone();
    if req.size.units() == 0 {
        return Err(OrderRefusal::ZeroSize);
    }
    if decimals(req.size) > limits.sz_decimals {
        return Err(OrderRefusal::SizeOffGrid {
            coin: coin(),
            size: req.size.to_wire(),
            sz_decimals: limits.sz_decimals,
        });
    }
    let max_decimals = PERP_PRICE_DECIMALS.saturating_sub(limits.sz_decimals);
    let price_checks = [req.limit_px].into_iter().chain(match req.order_type {
        OrderType::Trigger { trigger_px, .. } => Some(trigger_px),
        OrderType::Limit { .. } => None,
    });
    for px in price_checks {
        let why = if px.units() == 0 {
            Some("no value")
        } else if decimals(px) > max_decimals {
            Some("too many decimals")
        } else if decimals(px) > 0 && significant_figures(px) > PRICE_SIGNIFICANT_FIGURES {
            Some("more than 5 significant figures")
        } else {
            None
        };
        if let Some(why) = why {
            return Err(OrderRefusal::PriceOffGrid {
                coin: coin(),
                price: px.to_wire(),
                why,
                max_decimals,
            });
        }
    }
    if let (false, Some(cap)) = (req.reduce_only, limits.max_order_notional) {
        let n = notional(req.size, req.limit_px);
        if n.is_none_or(|n| n > cap) {
            return Err(OrderRefusal::NotionalAboveCap {
                coin: coin(),
                notional: n.map_or_else(|| "too large".into(), WireDecimal::to_wire),
                cap: cap.to_wire(),
            });
        }
    }
    Ok(OrderWire {
        a: limits.index,
        b: req.buy,
        p: req.limit_px,
        s: req.size,
        r: req.reduce_only,
        t: req.order_type,
        c: req.cloid,
    })
}

/// Builds `updateLeverage` within the policy's maximum.
pub(crate) fn plan_leverage(
    leverage: u32,
    is_cross: bool,
    limits: &PerpLimits,
) -> Result<UpdateLeverageAction, OrderRefusal> {
    if leverage == 0 {
        return Err(OrderRefusal::ZeroLeverage);
    }
    if leverage > limits.max_leverage {
        return Err(OrderRefusal::LeverageAboveMax {
            coin: limits.coin.clone(),
            asked: leverage,
            max: limits.max_leverage,
        });
    }
    Ok(UpdateLeverageAction::new(limits.index, is_cross, leverage))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::super::wire::{Tif, Tpsl, pack};
    use super::*;

    fn dec(s: &str) -> WireDecimal {
        WireDecimal::parse(s).unwrap()
    }

    fn eth() -> PerpLimits {
        PerpLimits {
            coin: "ETH".into(),
            index: 1,
            sz_decimals: 4,
            max_leverage: 5,
            max_order_notional: Some(dec("2000")),
        }
    }

    fn order(size: &str, px: &str, reduce_only: bool) -> OrderRequest {
        OrderRequest {
            buy: true,
            size: dec(size),
            limit_px: dec(px),
            order_type: OrderType::Limit { tif: Tif::Gtc },
            reduce_only,
            cloid: None,
        }
    }

    #[test]
    fn an_order_on_the_grid_within_the_cap_is_built_with_the_policys_index() {
        let wire = plan_order(&order("0.5", "2500.1", false), &eth()).unwrap();
        assert_eq!(
            (wire.a, wire.s.to_wire(), wire.p.to_wire()),
            (1, "0.5".into(), "2500.1".into())
        );
        assert!(!pack(&OrderWire { ..wire }).unwrap().is_empty());
    }

    #[test]
    fn the_per_order_notional_cap_binds_opening_orders_only() {
        // 0.8 × 2500 = 2000: at the cap; 0.8001 × 2500 = 2000.25: above.
        assert!(plan_order(&order("0.8", "2500", false), &eth()).is_ok());
        let e = plan_order(&order("0.8001", "2500", false), &eth()).unwrap_err();
        assert_eq!(
            e,
            OrderRefusal::NotionalAboveCap {
                coin: "ETH".into(),
                notional: "2000.25".into(),
                cap: "2000".into()
            }
        );
        assert!(e.to_string().starts_with("rule per_order_notional"));
        // The same order reduce-only: the exchange keeps it from adding exposure.
        assert!(plan_order(&order("0.8001", "2500", true), &eth()).is_ok());
    }

    #[test]
    fn sizes_and_prices_off_the_exchanges_grid_are_refused_not_rounded() {
        assert!(matches!(
            plan_order(&order("0.00001", "2500", false), &eth()),
            Err(OrderRefusal::SizeOffGrid { .. })
        ));
        assert_eq!(
            plan_order(&order("0", "2500", false), &eth()),
            Err(OrderRefusal::ZeroSize)
        );
        // szDecimals 4: prices may have 2 decimals and 5 significant figures.
        for (px, ok) in [
            ("2500.12", false),
            ("2500.1", true),
            ("123456", true),
            ("12345.6", false),
            ("0.12", true),
            ("0.123", false),
        ] {
            let r = plan_order(&order("0.001", px, false), &eth());
            assert_eq!(r.is_ok(), ok, "{px}: {r:?}");
        }
        let trigger = OrderRequest {
            order_type: OrderType::Trigger {
                is_market: true,
                trigger_px: dec("2400.123"),
                tpsl: Tpsl::Sl,
            },
            ..order("0.1", "2400", true)
        };
        assert!(matches!(
            plan_order(&trigger, &eth()),
            Err(OrderRefusal::PriceOffGrid { .. })
        ));
    }

    #[test]
    fn leverage_is_set_only_within_the_policy() {
        let a = plan_leverage(5, true, &eth()).unwrap();
        assert_eq!(a, UpdateLeverageAction::new(1, true, 5));
        assert_eq!(
            plan_leverage(6, false, &eth()),
            Err(OrderRefusal::LeverageAboveMax {
                coin: "ETH".into(),
                asked: 6,
                max: 5
            })
        );
        assert_eq!(
            plan_leverage(0, true, &eth()),
            Err(OrderRefusal::ZeroLeverage)
        );
    }

    #[test]
    fn grid_helpers_count_as_the_exchange_does() {
        assert_eq!(
            (
                decimals(dec("2500")),
                decimals(dec("0.0147")),
                decimals(dec("1.5"))
            ),
            (0, 4, 1)
        );
        assert_eq!(
            (
                significant_figures(dec("2500")),
                significant_figures(dec("0.0147")),
                significant_figures(dec("1670.1"))
            ),
            (2, 3, 5)
        );
        assert_eq!(
            notional(dec("0.5"), dec("2500.1")).unwrap().to_wire(),
            "1250.05"
        );
    }
}
