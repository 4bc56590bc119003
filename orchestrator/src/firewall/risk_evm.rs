//! Layer 2 for the EVM actions: the agent's risk profile against what the chain says of its
//! account ([`EvmView`]: wallet balances, the Aave position), a pure function.
//!
//! In order: the action is allowed; the asset is the network's native asset or a token of the
//! signed policy's table (an Aave action: a token the Pool lists); a transfer goes to an EVM
//! peer; the amount is at most the profile's fraction (per asset, else the default) of what
//! it draws on: the wallet balance (transfer, supply, repay), the supplied amount (withdraw),
//! or what the Pool would still lend in that asset (borrow); a withdraw is at most what is
//! supplied and a repay at most what is owed. A borrow or a withdraw must leave the health
//! factor at or above the profile's floor by the estimate of [`health_after`].
//!
//! The health-factor estimate is Aave's own formula on the Pool's `getUserAccountData`:
//! `HF = collateral × liquidation threshold / debt`, all in the market's base currency. The
//! action's value is `amount × price / 10^decimals` with the price from the market's oracle,
//! rounded up. A borrow adds that value to the debt. A withdraw removes it from the collateral,
//! weighted by the asset's own liquidation threshold (`getReserveData`), since the account's
//! threshold is the collateral-weighted average of its reserves' thresholds; an asset that is
//! supplied but not used as collateral is counted as if it were (the estimate can only be
//! lower than Aave's, never higher). Interest accrued since the last block is not counted: the
//! floor is meant to sit well above 1.

use std::collections::BTreeMap;

use alloy_primitives::{Address, U256};
use vigil_protocol::{
    AaveIntent, AaveRepayIntent, AaveWithdrawIntent, Amount, AmountOrAll, AssetSymbol, Chain,
    Intent, Network, TransferIntent, truncate,
};

use super::risk::within_fraction;
use super::risk::{RiskRefusal, RiskRule, allowed_action, list_peers, refuse, resolve_peer};
use super::schema::{Action, AgentDecision};
use crate::chains::evm_rpc::AccountData;
use crate::config::RiskProfile;

/// What the chain says of an agent's account on its EVM network, read before a decision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EvmView {
    /// The network (`evm:<network>`).
    pub network: Network,
    /// The agent's address there (its key for that network).
    pub address: Address,
    /// The native asset's symbol (`ETH`).
    pub native: AssetSymbol,
    /// Wallet balances in base units: the native asset and every token of the policy's table.
    pub wallet: BTreeMap<AssetSymbol, u128>,
    /// The token contracts and decimals of the policy's table.
    pub tokens: BTreeMap<AssetSymbol, (Address, u8)>,
    /// The policy's bounds: largest gas limit and max fee per gas (wei).
    pub max_gas_limit: u64,
    pub max_fee_per_gas: u128,
    /// The Aave position, when the policy names a Pool.
    pub aave: Option<AaveView>,
}

/// The agent's Aave position.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AaveView {
    /// The Pool (from the signed policy).
    pub pool: Address,
    /// `getUserAccountData`.
    pub account: AccountData,
    /// Per token the Pool lists: what the agent supplied and owes, and what layer 2 needs to
    /// estimate the health factor.
    pub reserves: BTreeMap<AssetSymbol, ReserveView>,
}

/// One reserve as the agent's position sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReserveView {
    /// The aToken balance, base units of the token.
    pub supplied: u128,
    /// The variable-debt token balance, base units.
    pub debt: u128,
    /// The oracle's price of one whole token, in the market's base currency.
    pub price: U256,
    /// The token's decimals.
    pub decimals: u8,
    /// The reserve's liquidation threshold, basis points.
    pub liquidation_threshold_bps: u16,
}

/// An EVM action that passed layer 2: the intent for the signer, and the health-factor
/// estimate when one was made (for the record).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct EvmChecked {
    pub intent: Intent,
    pub estimate: Option<String>,
}

const WAD: u128 = 1_000_000_000_000_000_000;

/// Checks an EVM decision (not hold) against the profile and the view.
pub(crate) fn check_evm(
    decision: &AgentDecision,
    profile: &RiskProfile,
    view: &EvmView,
) -> Result<EvmChecked, RiskRefusal> {
    let action = decision.action;
    allowed_action(profile, action)?;
    let (Some(asset), Some(amount)) = (decision.asset, decision.amount) else {
        return Err(refuse(
            RiskRule::Incomplete,
            format!("action {action} needs an asset and an amount"),
        ));
    };
    let known = view.wallet.contains_key(&asset)
        && (asset == view.native || view.tokens.contains_key(&asset));
    if !known {
        let names: Vec<&str> = view.wallet.keys().map(AssetSymbol::as_str).collect();
        return Err(refuse(
            RiskRule::UnknownAsset,
            format!(
                "asset {asset} is not one of evm:{}'s assets in the signed policy; use one of {}",
                view.network,
                names.join(", ")
            ),
        ));
    }
    let bps = profile.fraction_bps(asset);
    let wallet = view.wallet.get(&asset).copied().unwrap_or(0);
    let (chain, network) = (Chain::Evm, view.network);
    if action == Action::Transfer {
        let to = decision.to.as_deref().unwrap_or_default();
        let peer = resolve_peer(to, &profile.peers)
            .filter(|p| p.address.starts_with("0x"))
            .ok_or_else(|| {
                refuse(
                    RiskRule::PeerNotAllowed,
                    format!(
                        "recipient {:?} is neither the label nor the address of an EVM peer in \
                         this agent's allowlist; choose one of: {}",
                        truncate(to),
                        list_peers(&profile.peers)
                    ),
                )
            })?;
        within_fraction(amount, wallet, bps, &format!("the {asset} balance"))?;
        return Ok(EvmChecked {
            intent: Intent::Transfer(TransferIntent {
                chain,
                network,
                asset,
                to: peer.address.clone(),
                amount,
            }),
            estimate: None,
        });
    }
    let (aave, reserve) = match (
        &view.aave,
        view.aave.as_ref().and_then(|a| a.reserves.get(&asset)),
    ) {
        (Some(aave), Some(reserve)) => (aave, *reserve),
        (None, _) => {
            return Err(refuse(
                RiskRule::AavePosition,
                format!(
                    "the signed policy names no Aave Pool on evm:{network}: {action} is not possible there"
                ),
            ));
        }
        (Some(_), None) => {
            return Err(refuse(
                RiskRule::AavePosition,
                format!(
                    "{asset} is not a token the Aave Pool lists; choose a token of the policy's table"
                ),
            ));
        }
    };
    let aave_intent = AaveIntent {
        chain,
        network,
        asset,
        amount,
    };
    let mut estimate = None;
    let intent = match action {
        Action::AaveSupply => {
            within_fraction(amount, wallet, bps, &format!("the {asset} balance"))?;
            Intent::AaveSupply(aave_intent)
        }
        Action::AaveRepay => {
            at_most(amount, reserve.debt, &format!("the {asset} debt"))?;
            within_fraction(amount, wallet, bps, &format!("the {asset} balance"))?;
            Intent::AaveRepay(AaveRepayIntent {
                chain,
                network,
                asset,
                amount: AmountOrAll::Exact(amount),
                up_to: None,
            })
        }
        Action::AaveWithdraw => {
            at_most(amount, reserve.supplied, &format!("the {asset} supplied"))?;
            within_fraction(
                amount,
                reserve.supplied,
                bps,
                &format!("the {asset} supplied"),
            )?;
            estimate = Some(floor(action, asset, amount, aave, &reserve, profile)?);
            Intent::AaveWithdraw(AaveWithdrawIntent {
                chain,
                network,
                asset,
                amount: AmountOrAll::Exact(amount),
            })
        }
        Action::AaveBorrow => {
            let lendable = units_of(aave.account.available_borrows_base, &reserve);
            within_fraction(
                amount,
                lendable,
                bps,
                &format!("what the Pool would lend in {asset}"),
            )?;
            estimate = Some(floor(action, asset, amount, aave, &reserve, profile)?);
            Intent::AaveBorrow(aave_intent)
        }
        Action::Hold | Action::Transfer | Action::PerpOrder | Action::PerpCancel => {
            return Err(refuse(
                RiskRule::Incomplete,
                format!("action {action} is not an Aave action"),
            ));
        }
    };
    Ok(EvmChecked { intent, estimate })
}

/// Refuses an amount above what the position holds.
fn at_most(amount: Amount, held: u128, what: &str) -> Result<(), RiskRefusal> {
    if amount.base_units() > held {
        return Err(refuse(
            RiskRule::AavePosition,
            format!(
                "amount {amount} is more than {what} ({held} base units); propose at most that"
            ),
        ));
    }
    Ok(())
}

/// The estimate after a borrow or withdraw, refused below the profile's floor; the estimate
/// as text otherwise.
fn floor(
    action: Action,
    asset: AssetSymbol,
    amount: Amount,
    aave: &AaveView,
    reserve: &ReserveView,
    profile: &RiskProfile,
) -> Result<String, RiskRefusal> {
    let Some(floor_milli) = profile.min_health_factor_milli else {
        return Err(refuse(
            RiskRule::HealthFactorFloor,
            format!(
                "{action} needs a health-factor floor in the agent's risk profile (min_health_factor); none is set"
            ),
        ));
    };
    let floor = U256::from(floor_milli) * U256::from(WAD / 1000);
    let after = health_after(action, amount.base_units(), &aave.account, reserve).ok_or_else(|| {
        refuse(
            RiskRule::HealthFactorFloor,
            format!("the health factor after {action} of {amount} {asset} cannot be estimated (the numbers overflow); propose a smaller amount"),
        )
    })?;
    let now = format_hf(aave.account.health_factor);
    if after < floor {
        return Err(refuse(
            RiskRule::HealthFactorFloor,
            format!(
                "{action} of {amount} base units of {asset} would bring the Aave health factor \
                 from {now} to about {} (estimate), below this agent's floor of {}; propose a \
                 smaller amount, or repay or supply first",
                format_hf(after),
                format_hf(floor)
            ),
        ));
    }
    Ok(format!(
        "health factor {now} -> about {} (floor {})",
        format_hf(after),
        format_hf(floor)
    ))
}

/// The estimated health factor (18 decimals, `U256::MAX` without debt) after `action` of
/// `amount` base units of the reserve's token; `None` if the numbers overflow. See the module
/// docs for the formula.
pub(crate) fn health_after(
    action: Action,
    amount: u128,
    account: &AccountData,
    reserve: &ReserveView,
) -> Option<U256> {
    let scale = U256::from(10u8).checked_pow(U256::from(reserve.decimals))?;
    let value = U256::from(amount)
        .checked_mul(reserve.price)?
        .div_ceil(scale);
    let weighted = account
        .total_collateral_base
        .checked_mul(account.liquidation_threshold_bps)?;
    let (weighted, debt) = match action {
        Action::AaveBorrow => (weighted, account.total_debt_base.checked_add(value)?),
        Action::AaveWithdraw => {
            let removed = value.checked_mul(U256::from(reserve.liquidation_threshold_bps))?;
            (weighted.saturating_sub(removed), account.total_debt_base)
        }
        _ => (weighted, account.total_debt_base),
    };
    if debt.is_zero() {
        return Some(U256::MAX);
    }
    weighted
        .checked_mul(U256::from(WAD))?
        .checked_div(debt.checked_mul(U256::from(10_000u16))?)
}

/// A value in the market's base currency as base units of the reserve's token (rounded down).
fn units_of(base: U256, reserve: &ReserveView) -> u128 {
    let scale = U256::from(10u8).saturating_pow(U256::from(reserve.decimals));
    let units = base.saturating_mul(scale) / reserve.price.max(U256::from(1u8));
    u128::try_from(units).unwrap_or(u128::MAX)
}

/// A health factor (18 decimals) with two decimals, rounded down; `no debt` for the maximum.
pub(crate) fn format_hf(hf: U256) -> String {
    if hf == U256::MAX {
        return "infinite (no debt)".into();
    }
    let hundredths = hf / U256::from(WAD / 100);
    let whole = hundredths / U256::from(100u8);
    let frac = u64::try_from(hundredths % U256::from(100u8)).unwrap_or(0);
    format!("{whole}.{frac:02}")
}

#[cfg(test)]
mod tests;
