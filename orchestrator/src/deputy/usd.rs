//! The orchestrator's USD estimates of what an action moves or trades, from the venue's own
//! marks: Hyperliquid's `allMids` for a perpetual's order, the Aave oracle's `getAssetPrice`
//! (the Pool's own price source, USD with 8 decimals) for an Aave action, the network's SOL
//! price source (`sol_price_urls`, the `SOL` of an `allMids`) for a Solana transfer. Shown in the
//! operator's confirmations and passed to the signer as `context.usd_estimate`, where it is
//! labelled as the orchestrator's word and never decided on (`docs/protocol.md`).
//!
//! Exact arithmetic (no floating point), rounded up to the micro-dollar. A figure that cannot
//! be made (no mark, an overflow, more than the protocol's bound) is no estimate: the texts then
//! say "no USD estimate", and nothing else changes.

use alloy_primitives::U256;
use vigil_protocol::{
    AmountOrAll, Intent, PerpOrderIntent, UsdEstimate, UsdMicros, format_usd_micros,
};

use crate::firewall::risk_evm::{EvmView, ReserveView};
use crate::firewall::risk_perp::PerpChecked;
use crate::firewall::risk_perp::fixed::Fx;

/// The source name of a Hyperliquid mark.
pub(crate) const HYPERLIQUID_SOURCE: &str = "hyperliquid_all_mids";
/// The source name of an Aave oracle price.
pub(crate) const AAVE_SOURCE: &str = "aave_oracle";

/// The source name of the SOL price (`sol_price_urls`: an `allMids` that lists SOL).
pub(crate) const SOL_SOURCE: &str = "sol_price_all_mids";

/// `lamports` at the SOL price, in micro-USD rounded up: lamports × price / 10^9 (the price
/// counted with 8 decimals: / 10^11 in all). `None` for a price ≤ 0 or an overflow.
pub(crate) fn sol_micros(lamports: u128, price: Fx) -> Option<u128> {
    let price = u128::try_from(price.raw8()).ok().filter(|p| *p > 0)?;
    Some(lamports.checked_mul(price)?.div_ceil(100_000_000_000))
}

/// A Solana transfer of SOL at the SOL price source's price; `None` for anything else.
pub(crate) fn solana_intent(intent: &Intent, price: Fx) -> Option<UsdEstimate> {
    let Intent::Transfer(t) = intent else {
        return None;
    };
    if t.chain != vigil_protocol::Chain::Solana || t.asset != vigil_protocol::AssetSymbol::SOL {
        return None;
    }
    let micros = u64::try_from(sol_micros(t.amount.base_units(), price)?).ok()?;
    Some(UsdEstimate {
        micros: UsdMicros::new(micros).ok()?,
        mark: price.to_string().parse().ok()?,
        source: SOL_SOURCE.parse().ok()?,
    })
}

/// `|quantity| × mark` from `source`; `None` for a negative mark or a figure out of bounds.
pub(crate) fn estimate(quantity: Fx, mark: Fx, source: &str) -> Option<UsdEstimate> {
    if mark.is_negative() {
        return None;
    }
    let micros = u64::try_from(quantity.notional_micros(mark)?).ok()?;
    Some(UsdEstimate {
        micros: UsdMicros::new(micros).ok()?,
        mark: mark.to_string().parse().ok()?,
        source: source.parse().ok()?,
    })
}

/// A perpetual's order at the venue's mark: its size × the mark.
pub(crate) fn perp_order(order: &PerpOrderIntent, mark: Fx) -> Option<UsdEstimate> {
    estimate(Fx::parse(order.size.as_str())?, mark, HYPERLIQUID_SOURCE)
}

/// A checked perpetual's action: an order's notional at the mark it was checked against;
/// `None` for a cancel.
pub(crate) fn perp_checked(checked: &PerpChecked) -> Option<UsdEstimate> {
    match &checked.intent {
        Intent::PerpOrder(order) => perp_order(order, checked.mark?),
        _ => None,
    }
}

/// An Aave action (or an ERC-20 transfer of a token the Pool prices) at the oracle's price:
/// the amount in whole tokens × the price. `"all"` is valued at what the view says the agent
/// supplied (withdraw) or owes (repay).
pub(crate) fn evm_intent(intent: &Intent, view: &EvmView) -> Option<UsdEstimate> {
    let aave = view.aave.as_ref()?;
    let (asset, units) = match intent {
        Intent::AaveSupply(a) | Intent::AaveBorrow(a) => (a.asset, a.amount.base_units()),
        Intent::Transfer(t) => (t.asset, t.amount.base_units()),
        Intent::AaveWithdraw(w) => {
            let r = aave.reserves.get(&w.asset)?;
            (w.asset, exact_or(&w.amount, r.supplied))
        }
        Intent::AaveRepay(r) => {
            let reserve = aave.reserves.get(&r.asset)?;
            (r.asset, exact_or(&r.amount, reserve.debt))
        }
        _ => return None,
    };
    reserve_usd(aave.reserves.get(&asset)?, units)
}

fn exact_or(amount: &AmountOrAll, all: u128) -> u128 {
    match amount {
        AmountOrAll::Exact(a) => a.base_units(),
        AmountOrAll::All => all,
    }
}

/// `units` base units of a reserve at its oracle price (USD, 8 decimals).
pub(crate) fn reserve_usd(reserve: &ReserveView, units: u128) -> Option<UsdEstimate> {
    let price = oracle_fx(reserve.price)?;
    // units × price(8 dp) / 10^decimals is USD with 8 decimals; micro-USD is /100, rounded up.
    let scale = U256::from(10u8).checked_pow(U256::from(reserve.decimals))?;
    let numerator = U256::from(units).checked_mul(reserve.price)?;
    let denominator = scale.checked_mul(U256::from(100u8))?;
    let micros = numerator.div_ceil(denominator);
    let micros = u64::try_from(micros).ok()?;
    Some(UsdEstimate {
        micros: UsdMicros::new(micros).ok()?,
        mark: price.to_string().parse().ok()?,
        source: AAVE_SOURCE.parse().ok()?,
    })
}

/// An Aave oracle price (USD, 8 decimals) as an [`Fx`] (also 8 decimals).
pub(crate) fn oracle_fx(price: U256) -> Option<Fx> {
    // `from_micros` reads 6 decimals; the price has 8: divide by 100 (exact, 8 decimals).
    let raw = u64::try_from(price).ok()?;
    Fx::from_micros(raw).div(Fx::from_micros(100_000_000))
}

/// What the operator reads of an estimate: `≈ $1,250.00`, or `no USD estimate`.
pub(crate) fn phrase(estimate: Option<&UsdEstimate>) -> String {
    estimate.map_or_else(
        || "no USD estimate".to_owned(),
        |e| format!("≈ {}", format_usd_micros(e.micros.get())),
    )
}

/// A perpetual's order as the operator reads it: `long 0.5 ETH-PERP ≈ $1,250.00, 3x`
/// (`reduce` instead of the side when it only reduces).
pub(crate) fn perp_order_line(
    order: &PerpOrderIntent,
    estimate: Option<&UsdEstimate>,
    leverage: Option<u32>,
) -> String {
    let side = match (order.reduce_only, order.side) {
        (true, vigil_protocol::Side::Buy) => "reduce (buy)",
        (true, vigil_protocol::Side::Sell) => "reduce (sell)",
        (false, vigil_protocol::Side::Buy) => "long",
        (false, vigil_protocol::Side::Sell) => "short",
    };
    let lev = leverage.map_or_else(String::new, |l| format!(", {l}x"));
    format!(
        "{side} {} {}-PERP {}{lev}",
        order.size,
        order.asset,
        phrase(estimate)
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::collections::BTreeMap;

    use alloy_primitives::Address;
    use vigil_protocol::Network;

    use super::*;
    use crate::firewall::risk_evm::AaveView;

    fn order(text: &str) -> PerpOrderIntent {
        match serde_json::from_str::<Intent>(text).unwrap() {
            Intent::PerpOrder(o) => o,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_perp_order_reads_its_notional_at_the_mark() {
        let o = order(
            r#"{"kind":"perp_order","chain":"hyperliquid","network":"testnet","asset":"ETH","side":"buy","size":"0.5","limit_px":"2600","tif":"gtc","reduce_only":false}"#,
        );
        let e = perp_order(&o, Fx::parse("2500").unwrap()).unwrap();
        assert_eq!(e.micros.get(), 1_250_000_000);
        assert_eq!(e.mark.to_string(), "2500");
        assert_eq!(e.source.as_str(), HYPERLIQUID_SOURCE);
        assert_eq!(
            perp_order_line(&o, Some(&e), Some(3)),
            "long 0.5 ETH-PERP ≈ $1,250.00, 3x"
        );
        assert_eq!(
            perp_order_line(&o, None, None),
            "long 0.5 ETH-PERP no USD estimate"
        );
        // A mark so large the figure passes the protocol's bound is no estimate.
        assert!(perp_order(&o, Fx::parse("99999999999999999999").unwrap()).is_none());
        assert!(estimate(Fx::ONE, Fx::parse("-1").unwrap(), HYPERLIQUID_SOURCE).is_none());
    }

    #[test]
    fn a_solana_transfer_reads_at_the_sol_price() {
        let price = Fx::parse("150.25").unwrap();
        // 0.2 SOL × 150.25 = $30.05; one lamport × 150.25 = 0.00000015025 USD, rounded up.
        assert_eq!(sol_micros(200_000_000, price), Some(30_050_000));
        assert_eq!(sol_micros(1, price), Some(1));
        assert_eq!(sol_micros(1, Fx::ZERO), None);
        assert_eq!(sol_micros(u128::MAX, price), None);
        let transfer = Intent::Transfer(vigil_protocol::TransferIntent {
            chain: vigil_protocol::Chain::Solana,
            network: vigil_protocol::Network::Devnet,
            asset: vigil_protocol::AssetSymbol::SOL,
            to: "11111111111111111111111111111112".into(),
            amount: vigil_protocol::Amount::from_base_units(2_000_000_000),
        });
        let e = solana_intent(&transfer, price).unwrap();
        assert_eq!(e.micros.get(), 300_500_000);
        assert_eq!(e.source.as_str(), SOL_SOURCE);
        assert_eq!(phrase(Some(&e)), "≈ $300.50");
    }

    #[test]
    fn an_aave_action_reads_at_the_oracle_price() {
        let usdc = ReserveView {
            supplied: 2_000_000_000,
            debt: 0,
            price: U256::from(100_010_000u64), // $1.0001
            decimals: 6,
            liquidation_threshold_bps: 7800,
        };
        let weth = ReserveView {
            supplied: 0,
            debt: 500_000_000_000_000_000,         // 0.5 WETH
            price: U256::from(250_000_000_000u64), // $2,500
            decimals: 18,
            liquidation_threshold_bps: 8250,
        };
        let view = EvmView {
            network: Network::Devnet,
            address: Address::ZERO,
            native: "ETH".parse().unwrap(),
            wallet: BTreeMap::new(),
            tokens: BTreeMap::new(),
            max_gas_limit: 1,
            max_fee_per_gas: 1,
            aave: Some(AaveView {
                pool: Address::ZERO,
                account: crate::chains::evm_rpc::AccountData {
                    total_collateral_base: U256::ZERO,
                    total_debt_base: U256::ZERO,
                    available_borrows_base: U256::ZERO,
                    liquidation_threshold_bps: U256::ZERO,
                    ltv_bps: U256::ZERO,
                    health_factor: U256::MAX,
                },
                reserves: BTreeMap::from([
                    ("USDC".parse().unwrap(), usdc),
                    ("WETH".parse().unwrap(), weth),
                ]),
            }),
        };
        let intent = |t: &str| serde_json::from_str::<Intent>(t).unwrap();
        // 1,000 USDC × 1.0001 = $1,000.10.
        let supply = intent(
            r#"{"kind":"aave_supply","chain":"evm","network":"devnet","asset":"USDC","amount":"1000000000"}"#,
        );
        let e = evm_intent(&supply, &view).unwrap();
        assert_eq!(e.micros.get(), 1_000_100_000);
        assert_eq!(e.mark.to_string(), "1.0001");
        assert_eq!(e.source.as_str(), AAVE_SOURCE);
        // Repay all: the whole debt, 0.5 × 2,500 = $1,250.
        let repay = intent(
            r#"{"kind":"aave_repay","chain":"evm","network":"devnet","asset":"WETH","amount":"all","up_to":"600000000000000000"}"#,
        );
        assert_eq!(
            evm_intent(&repay, &view).unwrap().micros.get(),
            1_250_000_000
        );
        // Withdraw all: what was supplied, 2,000 × 1.0001.
        let withdraw = intent(
            r#"{"kind":"aave_withdraw","chain":"evm","network":"devnet","asset":"USDC","amount":"all"}"#,
        );
        assert_eq!(
            evm_intent(&withdraw, &view).unwrap().micros.get(),
            2_000_200_000
        );
        // A token the Pool does not price: no estimate.
        let dai = intent(
            r#"{"kind":"aave_supply","chain":"evm","network":"devnet","asset":"DAI","amount":"1"}"#,
        );
        assert!(evm_intent(&dai, &view).is_none());
        // One base unit of USDC rounds up to a micro-dollar, never down to nothing.
        assert_eq!(reserve_usd(&usdc, 1).unwrap().micros.get(), 2);
    }
}
