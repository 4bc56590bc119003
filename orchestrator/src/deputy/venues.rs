//! The deputy's equity across the venues it trades, each venue's part kept apart for what
//! the operator reads (`/risk`, `/pnl`) and summed for the daily loss floor.
//!
//! - **Hyperliquid**: the venue's account value live, the paper book's equity on paper
//!   (`engine::equity_of`).
//! - **Aave**: collateral − debt at the market's oracle prices, from the Pool's
//!   `getUserAccountData` (`totalCollateralBase`, `totalDebtBase`). Aave v3's USD markets
//!   count the base currency with 8 decimals (`BASE_CURRENCY_UNIT` = 10^8, one dollar), which
//!   is what is assumed here; a market quoted in another base currency would be misread.
//!   Interest accrued since the last block is not counted until the next block shows it.
//! - **Solana**: the wallet's SOL × the network's SOL price (`sol_price_urls`), when the agent
//!   works on Solana and a source is configured; without a source the SOL wallet is left out.
//!
//! The total is `None` when a part the deputy has is unknown (a paper position without a
//! mark, an Aave figure too large to state): the floor then cannot be judged that tick.

use alloy_primitives::U256;

use crate::firewall::risk_evm::EvmView;
use crate::firewall::risk_perp::fixed::Fx;

/// The deputy's Aave position in USD (the oracle's prices).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct AaveEquity {
    /// `totalCollateralBase`.
    pub collateral: Fx,
    /// `totalDebtBase`.
    pub debt: Fx,
}

impl AaveEquity {
    /// What the position is worth: collateral − debt.
    pub(crate) fn net(self) -> Option<Fx> {
        self.collateral.sub(self.debt)
    }
}

/// Each venue's part of the deputy's equity.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct VenueEquity {
    /// Hyperliquid (`None`: a paper position has no mark).
    pub hyperliquid: Option<Fx>,
    /// Aave, when the agent's EVM view has a Pool (`Err`: the figure cannot be stated).
    pub aave: Option<Result<AaveEquity, String>>,
    /// Solana: the SOL wallet at the SOL price, when the agent is on Solana and its network
    /// has a price source (`Err`: the figure cannot be stated).
    pub solana: Option<Result<Fx, String>>,
}

impl VenueEquity {
    /// The parts of a tick: the Hyperliquid equity and the agent's EVM view.
    pub(crate) fn of(hyperliquid: Option<Fx>, evm: Option<&EvmView>) -> VenueEquity {
        VenueEquity {
            hyperliquid,
            aave: evm
                .and_then(|v| v.aave.as_ref())
                .map(|a| aave_equity(a.account.total_collateral_base, a.account.total_debt_base)),
            solana: None,
        }
    }

    /// With the Solana part: `lamports` at `sol_usd` (nothing when there is no price).
    pub(crate) fn with_solana(mut self, lamports: u128, sol_usd: Option<Fx>) -> VenueEquity {
        self.solana = sol_usd.map(|price| solana_equity(lamports, price));
        self
    }

    /// The sum of the parts; `None` when a part is unknown.
    pub(crate) fn total(&self) -> Option<Fx> {
        let mut total = self.hyperliquid?;
        if let Some(aave) = &self.aave {
            total = total.add(aave.as_ref().ok()?.net()?)?;
        }
        if let Some(solana) = &self.solana {
            total = total.add(*solana.as_ref().ok()?)?;
        }
        Some(total)
    }
}

/// `lamports` of SOL at `price`, USD (rounded up to the micro-dollar).
pub(crate) fn solana_equity(lamports: u128, price: Fx) -> Result<Fx, String> {
    super::usd::sol_micros(lamports, price)
        .and_then(|m| u64::try_from(m).ok())
        .map(Fx::from_micros)
        .ok_or_else(|| format!("{lamports} lamports at {price} USD is no figure to state"))
}

/// The Aave position from `getUserAccountData`'s base-currency figures (8 decimals).
pub(crate) fn aave_equity(collateral: U256, debt: U256) -> Result<AaveEquity, String> {
    let fx = |v: U256, what: &str| {
        i128::try_from(v)
            .map(Fx::from_raw8)
            .map_err(|_| format!("the Pool's {what} ({v}) is too large to state in USD"))
    };
    Ok(AaveEquity {
        collateral: fx(collateral, "totalCollateralBase")?,
        debt: fx(debt, "totalDebtBase")?,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn f(s: &str) -> Fx {
        Fx::parse(s).unwrap()
    }

    #[test]
    fn aave_is_collateral_minus_debt_in_dollars_of_eight_decimals() {
        // 3000.5 USD of collateral, 1234.56789 USD of debt, as the Pool states them.
        let a = aave_equity(
            U256::from(300_050_000_000u64),
            U256::from(123_456_789_000u64),
        )
        .unwrap();
        assert_eq!(a.collateral, f("3000.5"));
        assert_eq!(a.debt, f("1234.56789"));
        assert_eq!(a.net(), Some(f("1765.93211")));
        let e = aave_equity(U256::MAX, U256::ZERO).unwrap_err();
        assert!(e.contains("totalCollateralBase"), "{e}");
    }

    #[test]
    fn the_total_sums_every_venue_and_is_unknown_when_a_part_is() {
        let aave = aave_equity(
            U256::from(200_000_000_000u64),
            U256::from(50_000_000_000u64),
        );
        let both = VenueEquity {
            hyperliquid: Some(f("9918")),
            aave: Some(aave.clone()),
            solana: None,
        };
        // 9918 + (2000 − 500).
        assert_eq!(both.total(), Some(f("11418")));
        let hl_only = VenueEquity {
            hyperliquid: Some(f("9918")),
            aave: None,
            solana: None,
        };
        assert_eq!(hl_only.total(), Some(f("9918")));
        let no_mark = VenueEquity {
            hyperliquid: None,
            aave: Some(aave),
            solana: None,
        };
        assert_eq!(no_mark.total(), None);
        let broken = VenueEquity {
            hyperliquid: Some(f("1")),
            aave: Some(Err("too large".into())),
            solana: None,
        };
        assert_eq!(broken.total(), None);
        // Debt above collateral is a negative part.
        let under = VenueEquity {
            hyperliquid: Some(f("100")),
            aave: Some(aave_equity(
                U256::from(100_000_000u64),
                U256::from(300_000_000u64),
            )),
            solana: None,
        };
        assert_eq!(under.total(), Some(f("98")));
        // 2.5 SOL at 150.25 = 375.625 USD; no price, no part; a failed read, no total.
        let sol = under.clone().with_solana(2_500_000_000, Some(f("150.25")));
        assert_eq!(sol.solana, Some(Ok(f("375.625"))));
        assert_eq!(sol.total(), Some(f("473.625")));
        assert_eq!(under.clone().with_solana(2_500_000_000, None).solana, None);
        let failed = VenueEquity {
            solana: Some(Err("node down".into())),
            ..under
        };
        assert_eq!(failed.total(), None);
    }
}
