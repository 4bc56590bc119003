//! The closing flow's plan by hand: what it repays, withdraws and leaves open for a position
//! and a wallet.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;

use alloy_primitives::{Address, U256};
use vigil_protocol::Network;

use super::*;
use crate::chains::evm_rpc::AccountData;
use crate::firewall::risk_evm::{AaveView, ReserveView};

const WETH: u128 = 1_000_000_000_000_000_000;
const USDC: u128 = 1_000_000;

fn sym(s: &str) -> AssetSymbol {
    s.parse().unwrap()
}

/// 2 WETH supplied and `debt` USDC base units owed, the wallet holding `wallet` USDC.
fn view(debt: u128, wallet: u128) -> EvmView {
    let reserve = |supplied, debt, decimals| ReserveView {
        supplied,
        debt,
        price: U256::from(100_000_000u64),
        decimals,
        liquidation_threshold_bps: 8000,
    };
    EvmView {
        network: Network::Devnet,
        address: Address::ZERO,
        native: sym("ETH"),
        wallet: BTreeMap::from([(sym("ETH"), WETH), (sym("USDC"), wallet), (sym("WETH"), 0)]),
        tokens: BTreeMap::new(),
        max_gas_limit: 1,
        max_fee_per_gas: 1,
        aave: Some(AaveView {
            pool: Address::ZERO,
            account: AccountData {
                total_collateral_base: U256::ZERO,
                total_debt_base: U256::ZERO,
                available_borrows_base: U256::ZERO,
                liquidation_threshold_bps: U256::ZERO,
                ltv_bps: U256::ZERO,
                health_factor: U256::MAX,
            },
            reserves: BTreeMap::from([
                (sym("WETH"), reserve(2 * WETH, 0, 18)),
                (sym("USDC"), reserve(0, debt, 6)),
            ]),
        }),
    }
}

#[test]
fn a_debt_the_wallet_covers_is_repaid_whole_and_nothing_is_withdrawn_yet() {
    let debt = 1_000_000_123; // 1000.000123 USDC
    let p = plan(&view(debt, 2_000 * USDC));
    assert_eq!(p.steps.len(), 1, "{p:?}");
    let step = &p.steps[0];
    assert_eq!(step.decision.action, Action::AaveRepay);
    assert_eq!(step.decision.asset, Some(sym("USDC")));
    assert_eq!(step.decision.amount.map(Amount::base_units), Some(debt));
    // "all", approving the debt + 0.1 % (+1) for the interest until it is mined.
    let Some(Intent::AaveRepay(all)) = &step.all else {
        panic!("{:?}", step.all)
    };
    assert_eq!(all.amount, AmountOrAll::All);
    assert_eq!(
        all.up_to.map(Amount::base_units),
        Some(debt + debt / 1000 + 1)
    );
    assert_eq!(step.what, "repay the whole USDC debt (1000.000123 USDC)");
    assert!(p.left.is_empty(), "{p:?}");
    assert!(
        p.next.as_deref().unwrap().contains("(2 WETH) is withdrawn"),
        "{p:?}"
    );
    // The approval never exceeds what the wallet holds.
    let p = plan(&view(debt, debt + 5));
    let Some(Intent::AaveRepay(all)) = &p.steps[0].all else {
        panic!("{p:?}")
    };
    assert_eq!(all.up_to.map(Amount::base_units), Some(debt + 5));
}

#[test]
fn a_debt_the_wallet_cannot_cover_is_repaid_in_part_and_the_collateral_stays() {
    let p = plan(&view(1_000 * USDC, 400 * USDC));
    assert_eq!(p.steps.len(), 1, "{p:?}");
    let step = &p.steps[0];
    assert_eq!(step.decision.action, Action::AaveRepay);
    assert_eq!(
        step.decision.amount.map(Amount::base_units),
        Some(400 * USDC)
    );
    assert_eq!(step.all, None, "an exact amount, never \"all\"");
    assert_eq!(
        p.left,
        vec![
            "debt 600 USDC left (owed 1000, the wallet holds only 400 USDC)".to_string(),
            "the collateral (2 WETH) stays supplied while debt is left: withdrawing it would \
             lower the health factor"
                .to_string(),
        ]
    );
    assert_eq!(p.next, None);
    // An empty wallet: nothing to do, and it says so.
    let p = plan(&view(1_000 * USDC, 0));
    assert!(p.steps.is_empty(), "{p:?}");
    assert_eq!(
        p.left[0],
        "debt 1000 USDC left: the wallet holds no USDC to repay it"
    );
}

#[test]
fn without_debt_every_supply_is_withdrawn_whole() {
    let p = plan(&view(0, 0));
    assert_eq!(p.steps.len(), 1, "{p:?}");
    let step = &p.steps[0];
    assert_eq!(step.decision.action, Action::AaveWithdraw);
    assert_eq!(step.decision.asset, Some(sym("WETH")));
    assert_eq!(step.decision.amount.map(Amount::base_units), Some(2 * WETH));
    assert!(matches!(
        &step.all,
        Some(Intent::AaveWithdraw(w)) if w.amount == AmountOrAll::All && w.asset == sym("WETH")
    ));
    assert!(p.left.is_empty() && p.next.is_none(), "{p:?}");
    // Flat, or no Pool: nothing at all.
    let mut flat = view(0, 0);
    if let Some(a) = flat.aave.as_mut() {
        a.reserves.values_mut().for_each(|r| r.supplied = 0);
    }
    assert_eq!(plan(&flat), AavePlan::default());
    flat.aave = None;
    assert_eq!(plan(&flat), AavePlan::default());
}

#[test]
fn token_amounts_read_in_whole_tokens() {
    assert_eq!(tokens(1_000_000_123, 6), "1000.000123");
    assert_eq!(tokens(2 * WETH, 18), "2");
    assert_eq!(tokens(1, 18), "0.000000000000000001");
    assert_eq!(tokens(5, 0), "5");
    assert_eq!(tokens(5, 60), "5 base units");
}
