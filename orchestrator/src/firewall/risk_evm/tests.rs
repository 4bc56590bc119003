//! Layer 2 on EVM actions: a table of decisions against one account, and the health-factor
//! estimate checked against numbers worked out by hand.

use std::collections::{BTreeMap, BTreeSet};

use alloy_primitives::{Address, U256};
use vigil_protocol::{Amount, AssetSymbol, Intent};

use super::*;
use crate::config::Peer;

const BOB: &str = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8";
const SOLANA_PEER: &str = "8ZDDe1aK6RfvH9RPvXYkXmXHDjVSdNCuDEqNhZX6E4cV";
/// USD with 8 decimals, as Aave v3's base currency.
const USD: u128 = 100_000_000;
const ETHER: u128 = 1_000_000_000_000_000_000;

fn sym(s: &str) -> AssetSymbol {
    s.parse().unwrap()
}

fn profile(floor: Option<u32>) -> RiskProfile {
    RiskProfile {
        allowed_actions: Action::ALL.into_iter().collect::<BTreeSet<_>>(),
        max_fraction_per_tx_bps: 5_000,
        asset_fraction_bps: BTreeMap::from([(sym("USDC"), 10_000)]),
        min_health_factor_milli: floor,
        perps: std::collections::BTreeMap::new(),
        deputy: None,
        peers: vec![
            Peer {
                label: "bob".into(),
                address: BOB.into(),
            },
            Peer {
                label: "treasury".into(),
                address: SOLANA_PEER.into(),
            },
        ],
    }
}

/// 2 WETH supplied at 4 000 USD (8 000 USD of collateral, threshold 82.5 %), 1 000 USDC owed:
/// health factor 8 000 × 0.825 / 1 000 = 6.6.
fn view() -> EvmView {
    let weth = ReserveView {
        supplied: 2 * ETHER,
        debt: 0,
        price: U256::from(4_000 * USD),
        decimals: 18,
        liquidation_threshold_bps: 8_250,
    };
    let usdc = ReserveView {
        supplied: 0,
        debt: 1_000_000_000,
        price: U256::from(USD),
        decimals: 6,
        liquidation_threshold_bps: 8_500,
    };
    EvmView {
        network: Network::Devnet,
        address: Address::repeat_byte(0xaa),
        native: sym("ETH"),
        wallet: BTreeMap::from([
            (sym("ETH"), 10 * ETHER),
            (sym("WETH"), ETHER),
            (sym("USDC"), 5_000_000_000),
        ]),
        tokens: BTreeMap::from([
            (sym("WETH"), (Address::repeat_byte(1), 18)),
            (sym("USDC"), (Address::repeat_byte(2), 6)),
        ]),
        max_gas_limit: 500_000,
        max_fee_per_gas: 100_000_000_000,
        aave: Some(AaveView {
            pool: Address::repeat_byte(3),
            account: AccountData {
                total_collateral_base: U256::from(8_000 * USD),
                total_debt_base: U256::from(1_000 * USD),
                available_borrows_base: U256::from(5_000 * USD),
                liquidation_threshold_bps: U256::from(8_250),
                ltv_bps: U256::from(8_000),
                health_factor: U256::from(66 * ETHER / 10),
            },
            reserves: BTreeMap::from([(sym("WETH"), weth), (sym("USDC"), usdc)]),
        }),
    }
}

fn decision(action: Action, asset: &str, amount: u128, to: Option<&str>) -> AgentDecision {
    AgentDecision {
        action,
        asset: Some(sym(asset)),
        to: to.map(str::to_owned),
        amount: Some(Amount::from_base_units(amount)),
        perp: None,
        confidence_milli: 600,
        reasoning: "a reason of at least twenty characters".into(),
    }
}

#[test]
fn the_health_factor_estimate_is_aaves_formula() {
    let v = view();
    let aave = v.aave.as_ref().unwrap();
    let (weth, usdc) = (aave.reserves[&sym("WETH")], aave.reserves[&sym("USDC")]);
    // Borrow 3 000 USDC: debt 4 000, HF 8 000 × 0.825 / 4 000 = 1.65.
    let hf = health_after(Action::AaveBorrow, 3_000_000_000, &aave.account, &usdc).unwrap();
    assert_eq!(hf, U256::from(165 * ETHER / 100));
    // Withdraw 0.5 WETH (2 000 USD at its own 82.5 %): 6 000 × 0.825 / 1 000 = 4.95.
    let hf = health_after(Action::AaveWithdraw, ETHER / 2, &aave.account, &weth).unwrap();
    assert_eq!(hf, U256::from(495 * ETHER / 100));
    // Withdraw everything: nothing left against the debt.
    let hf = health_after(Action::AaveWithdraw, 2 * ETHER, &aave.account, &weth).unwrap();
    assert_eq!(hf, U256::ZERO);
    // No debt: no health factor to lose.
    let mut free = aave.account;
    free.total_debt_base = U256::ZERO;
    assert_eq!(
        health_after(Action::AaveWithdraw, ETHER, &free, &weth),
        Some(U256::MAX)
    );
    assert_eq!(format_hf(U256::from(165 * ETHER / 100)), "1.65");
    assert_eq!(format_hf(U256::from(ETHER + ETHER / 20)), "1.05");
    assert_eq!(format_hf(U256::MAX), "infinite (no debt)");
    // A huge amount overflows into None, not a panic.
    let huge = ReserveView {
        price: U256::MAX,
        ..usdc
    };
    assert_eq!(
        health_after(Action::AaveBorrow, u128::MAX, &aave.account, &huge),
        None
    );
}

/// (case, decision, floor, Ok(intent kind) or Err(rule))
type Case = (
    &'static str,
    AgentDecision,
    Option<u32>,
    Result<&'static str, RiskRule>,
);

#[test]
fn table_of_evm_decisions() {
    let cases: Vec<Case> = vec![
        (
            "native transfer to an EVM peer",
            decision(Action::Transfer, "ETH", ETHER, Some("bob")),
            None,
            Ok("transfer"),
        ),
        (
            "token transfer by address",
            decision(Action::Transfer, "USDC", 1_000, Some(BOB)),
            None,
            Ok("transfer"),
        ),
        (
            "transfer to a Solana peer",
            decision(Action::Transfer, "ETH", 1, Some("treasury")),
            None,
            Err(RiskRule::PeerNotAllowed),
        ),
        (
            "transfer to a stranger",
            decision(
                Action::Transfer,
                "ETH",
                1,
                Some("0x0000000000000000000000000000000000000001"),
            ),
            None,
            Err(RiskRule::PeerNotAllowed),
        ),
        (
            "ETH above half the balance",
            decision(Action::Transfer, "ETH", 5 * ETHER + 1, Some("bob")),
            None,
            Err(RiskRule::FractionOfBalance),
        ),
        (
            "USDC may use the whole balance",
            decision(Action::AaveSupply, "USDC", 5_000_000_000, None),
            None,
            Ok("aave_supply"),
        ),
        (
            "supply more than the wallet",
            decision(Action::AaveSupply, "USDC", 5_000_000_001, None),
            None,
            Err(RiskRule::FractionOfBalance),
        ),
        (
            "an asset not in the policy",
            decision(Action::AaveSupply, "DAI", 1, None),
            None,
            Err(RiskRule::UnknownAsset),
        ),
        (
            "the native asset is no reserve",
            decision(Action::AaveSupply, "ETH", 1, None),
            None,
            Err(RiskRule::AavePosition),
        ),
        (
            "repay within the debt",
            decision(Action::AaveRepay, "USDC", 1_000_000_000, None),
            None,
            Ok("aave_repay"),
        ),
        (
            "repay more than owed",
            decision(Action::AaveRepay, "USDC", 1_000_000_001, None),
            None,
            Err(RiskRule::AavePosition),
        ),
        (
            "withdraw more than supplied",
            decision(Action::AaveWithdraw, "WETH", 2 * ETHER + 1, None),
            Some(1_500),
            Err(RiskRule::AavePosition),
        ),
        (
            "withdraw keeping the floor",
            decision(Action::AaveWithdraw, "WETH", ETHER / 2, None),
            Some(1_500),
            Ok("aave_withdraw"),
        ),
        (
            "borrow to 1.65 over a 1.5 floor",
            decision(Action::AaveBorrow, "USDC", 3_000_000_000, None),
            Some(1_500),
            Ok("aave_borrow"),
        ),
        (
            "borrow to 1.46 under a 1.5 floor",
            decision(Action::AaveBorrow, "USDC", 3_500_000_000, None),
            Some(1_500),
            Err(RiskRule::HealthFactorFloor),
        ),
        (
            "borrow with no floor set",
            decision(Action::AaveBorrow, "USDC", 1, None),
            None,
            Err(RiskRule::HealthFactorFloor),
        ),
    ];
    for (name, d, floor, want) in cases {
        let got = check_evm(&d, &profile(floor), &view());
        match (got, want) {
            (Ok(c), Ok(kind)) => {
                assert_eq!(c.intent.action(), kind, "{name}");
                assert_eq!(c.intent.asset(), d.asset, "{name}");
                assert_eq!(
                    c.intent.chain_network(),
                    (vigil_protocol::Chain::Evm, Network::Devnet),
                    "{name}"
                );
                if let Intent::Transfer(t) = &c.intent {
                    assert_eq!(t.to, BOB, "{name}: the peer's address");
                }
            }
            (Err(refusal), Err(rule)) => {
                assert_eq!(refusal.rule, rule, "{name}: {}", refusal.message)
            }
            (got, want) => panic!("{name}: got {got:?}, want {want:?}"),
        }
    }
}

#[test]
fn a_refused_borrow_names_the_floor_and_the_estimate() {
    let d = decision(Action::AaveBorrow, "USDC", 3_500_000_000, None);
    let refusal = check_evm(&d, &profile(Some(1_500)), &view()).unwrap_err();
    for part in ["from 6.60", "to about 1.46", "floor of 1.50", "estimate"] {
        assert!(
            refusal.message.contains(part),
            "{part}: {}",
            refusal.message
        );
    }
    let ok = check_evm(
        &decision(Action::AaveBorrow, "USDC", 3_000_000_000, None),
        &profile(Some(1_500)),
        &view(),
    )
    .unwrap();
    assert_eq!(
        ok.estimate.as_deref(),
        Some("health factor 6.60 -> about 1.65 (floor 1.50)")
    );
    // A borrow above the fraction of what the Pool would lend (5 000 USD at 50 % for WETH).
    let mut p = profile(Some(1_000));
    p.asset_fraction_bps.clear();
    let refusal = check_evm(
        &decision(Action::AaveBorrow, "USDC", 2_500_000_001, None),
        &p,
        &view(),
    )
    .unwrap_err();
    assert_eq!(
        refusal.rule,
        RiskRule::FractionOfBalance,
        "{}",
        refusal.message
    );
    assert!(
        refusal.message.contains("what the Pool would lend"),
        "{}",
        refusal.message
    );
}

#[test]
fn without_a_pool_aave_actions_are_refused() {
    let mut v = view();
    v.aave = None;
    let refusal = check_evm(
        &decision(Action::AaveSupply, "USDC", 1, None),
        &profile(None),
        &v,
    )
    .unwrap_err();
    assert_eq!(refusal.rule, RiskRule::AavePosition);
    assert!(
        refusal.message.contains("no Aave Pool"),
        "{}",
        refusal.message
    );
    let mut p = profile(None);
    p.allowed_actions = [Action::Hold, Action::Transfer].into_iter().collect();
    let refusal = check_evm(&decision(Action::AaveSupply, "USDC", 1, None), &p, &v).unwrap_err();
    assert_eq!(refusal.rule, RiskRule::ActionNotAllowed);
}
