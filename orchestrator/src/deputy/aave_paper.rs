//! The paper Aave book in the agent's view: each tick its interest is booked up to the tick's
//! clock at the rates the real Pool states (`store/aave_paper.rs` has the formula and the
//! rows), and on paper the view's Aave position is the paper book's, priced at the market's
//! oracle, so layer 2, the equity and what the operator reads all see the paper position.
//!
//! The paper account is computed as Aave computes `getUserAccountData`, in the market's base
//! currency (USD with 8 decimals): per reserve `amount × price / 10^decimals` (collateral
//! rounded down, debt rounded up: against the agent), the liquidation threshold and LTV
//! averaged over the collateral, `availableBorrows = collateral × LTV − debt` (at least 0),
//! `healthFactor = collateral × threshold / debt` (18 decimals; no debt: the maximum). Every
//! paper supply counts as collateral (Aave's default for a reserve with an LTV).

use std::collections::BTreeMap;

use alloy_primitives::U256;
use vigil_protocol::{AgentId, AssetSymbol, Network};

use crate::chains::evm_rpc::{AccountData, Reserve};
use crate::config::Mode;
use crate::firewall::risk_evm::{AaveView, ReserveView};
use crate::scheduler::Orchestrator;
use crate::store::{PaperAavePosition, ReserveRates};

const WAD: u128 = 1_000_000_000_000_000_000;

impl Orchestrator {
    /// Books the paper Aave interest due at `accrue_at` (when given) from the rates in
    /// `reserves`, then on paper puts the paper book into `view`. Lines for the log.
    pub(crate) fn paper_aave(
        &self,
        agent: &AgentId,
        network: Network,
        mode: Mode,
        accrue_at: Option<u64>,
        view: &mut AaveView,
        reserves: &BTreeMap<AssetSymbol, Reserve>,
    ) -> Result<Vec<String>, String> {
        let mut lines = Vec::new();
        if let Some(now) = accrue_at {
            let rates: BTreeMap<AssetSymbol, ReserveRates> = reserves
                .iter()
                .map(|(symbol, r)| {
                    (
                        *symbol,
                        ReserveRates {
                            liquidity: r.liquidity_rate,
                            variable_borrow: r.variable_borrow_rate,
                        },
                    )
                })
                .collect();
            let booked =
                self.with_store(|s| s.agent(agent).accrue_paper_aave(network, now, &rates))?;
            for b in booked {
                lines.push(format!(
                    "{agent} PAPER Aave interest {} {}..{}: supplied {} at {} ray → +{}, owed {} \
                     at {} ray → +{} (base units)",
                    b.asset,
                    b.from_ts,
                    b.to_ts,
                    b.supplied,
                    b.rates.liquidity,
                    b.supply_interest,
                    b.borrowed,
                    b.rates.variable_borrow,
                    b.borrow_interest
                ));
            }
        }
        if mode == Mode::Paper {
            let book = self.with_store(|s| s.agent(agent).paper_aave_book(network))?;
            let book: BTreeMap<String, PaperAavePosition> = book.into_iter().collect();
            paper_view(view, reserves, &book)
                .ok_or_else(|| format!("the paper Aave book of {agent} is too large to price"))?;
        }
        Ok(lines)
    }
}

/// Puts the paper `book` into `view`: each listed reserve's supplied and owed amounts, and the
/// account figures computed from them (module docs); `None` when a figure overflows.
pub(crate) fn paper_view(
    view: &mut AaveView,
    reserves: &BTreeMap<AssetSymbol, Reserve>,
    book: &BTreeMap<String, PaperAavePosition>,
) -> Option<()> {
    let mut collateral = U256::ZERO;
    let mut debt = U256::ZERO;
    let mut weighted_lt = U256::ZERO;
    let mut weighted_ltv = U256::ZERO;
    for (symbol, r) in &mut view.reserves {
        let p = book.get(symbol.as_str()).copied().unwrap_or_default();
        r.supplied = p.supplied;
        r.debt = p.borrowed;
        let c = base_value(p.supplied, r, false)?;
        let d = base_value(p.borrowed, r, true)?;
        let ltv = reserves.get(symbol).map_or(0, |raw| raw.ltv_bps);
        collateral = collateral.checked_add(c)?;
        debt = debt.checked_add(d)?;
        weighted_lt =
            weighted_lt.checked_add(c.checked_mul(U256::from(r.liquidation_threshold_bps))?)?;
        weighted_ltv = weighted_ltv.checked_add(c.checked_mul(U256::from(ltv))?)?;
    }
    let (lt, ltv) = if collateral.is_zero() {
        (U256::ZERO, U256::ZERO)
    } else {
        (weighted_lt / collateral, weighted_ltv / collateral)
    };
    let bps = U256::from(10_000u16);
    let available = (collateral.checked_mul(ltv)? / bps).saturating_sub(debt);
    let health_factor = if debt.is_zero() {
        U256::MAX
    } else {
        collateral
            .checked_mul(lt)?
            .checked_mul(U256::from(WAD))?
            .checked_div(debt.checked_mul(bps)?)?
    };
    view.account = AccountData {
        total_collateral_base: collateral,
        total_debt_base: debt,
        available_borrows_base: available,
        liquidation_threshold_bps: lt,
        ltv_bps: ltv,
        health_factor,
    };
    Some(())
}

/// `amount` base units of the reserve's token in the market's base currency (8 decimals),
/// rounded down (`up`: up).
pub(crate) fn base_value(amount: u128, r: &ReserveView, up: bool) -> Option<U256> {
    let scale = U256::from(10u8).checked_pow(U256::from(r.decimals))?;
    let value = U256::from(amount).checked_mul(r.price)?;
    Some(if up {
        value.div_ceil(scale)
    } else {
        value / scale
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use alloy_primitives::Address;

    use super::*;

    fn reserve(ltv_bps: u16) -> Reserve {
        Reserve {
            a_token: Address::repeat_byte(1),
            variable_debt_token: Address::repeat_byte(2),
            liquidation_threshold_bps: 0,
            ltv_bps,
            liquidity_rate: U256::ZERO,
            variable_borrow_rate: U256::ZERO,
        }
    }

    /// 2 WETH at 2 000 USD (LTV 80 %, threshold 82.5 %) supplied, 1 000.000001 USDC at 1 USD
    /// (LTV 75 %, threshold 85 %) owed. By hand, base units of 10^-8 USD: collateral
    /// 2 × 2000 × 10^8 = 400 000 000 000; debt ⌈1 000 000 001 × 10^8 / 10^6⌉ = 100 000 000 100;
    /// threshold 8 250, LTV 8 000 (WETH is the only collateral); available 400 000 000 000 ×
    /// 0.8 − 100 000 000 100 = 219 999 999 900; health factor 400 000 000 000 × 8 250 × 10^18 /
    /// (100 000 000 100 × 10 000) = 3.29999999670000000329… × 10^18, rounded down.
    #[test]
    fn the_paper_account_is_aaves_formula_on_the_paper_book() {
        let weth: AssetSymbol = "WETH".parse().unwrap();
        let usdc: AssetSymbol = "USDC".parse().unwrap();
        let mut view = AaveView {
            pool: Address::repeat_byte(9),
            account: AccountData {
                total_collateral_base: U256::from(1u8),
                total_debt_base: U256::ZERO,
                available_borrows_base: U256::ZERO,
                liquidation_threshold_bps: U256::ZERO,
                ltv_bps: U256::ZERO,
                health_factor: U256::MAX,
            },
            reserves: BTreeMap::from([
                (
                    weth,
                    ReserveView {
                        supplied: 7,
                        debt: 7,
                        price: U256::from(200_000_000_000u64),
                        decimals: 18,
                        liquidation_threshold_bps: 8_250,
                    },
                ),
                (
                    usdc,
                    ReserveView {
                        supplied: 7,
                        debt: 7,
                        price: U256::from(100_000_000u64),
                        decimals: 6,
                        liquidation_threshold_bps: 8_500,
                    },
                ),
            ]),
        };
        let raw = BTreeMap::from([(weth, reserve(8_000)), (usdc, reserve(7_500))]);
        let book = BTreeMap::from([
            (
                "WETH".to_owned(),
                PaperAavePosition {
                    supplied: 2 * WAD,
                    ..PaperAavePosition::default()
                },
            ),
            (
                "USDC".to_owned(),
                PaperAavePosition {
                    borrowed: 1_000_000_001,
                    ..PaperAavePosition::default()
                },
            ),
        ]);
        paper_view(&mut view, &raw, &book).unwrap();
        let a = &view.account;
        assert_eq!(a.total_collateral_base, U256::from(400_000_000_000u64));
        assert_eq!(a.total_debt_base, U256::from(100_000_000_100u64));
        assert_eq!(a.liquidation_threshold_bps, U256::from(8_250u16));
        assert_eq!(a.ltv_bps, U256::from(8_000u16));
        assert_eq!(a.available_borrows_base, U256::from(219_999_999_900u64));
        assert_eq!(a.health_factor, U256::from(3_299_999_996_700_000_003u64));
        assert_eq!(
            (view.reserves[&weth].supplied, view.reserves[&weth].debt),
            (2 * WAD, 0)
        );
        assert_eq!(
            (view.reserves[&usdc].supplied, view.reserves[&usdc].debt),
            (0, 1_000_000_001)
        );

        // An empty book: nothing supplied or owed, no borrowing power, no debt.
        paper_view(&mut view, &raw, &BTreeMap::new()).unwrap();
        assert_eq!(view.account.total_collateral_base, U256::ZERO);
        assert_eq!(view.account.available_borrows_base, U256::ZERO);
        assert_eq!(view.account.health_factor, U256::MAX);
        assert_eq!(view.reserves[&weth].supplied, 0);
    }
}
