//! The EVM fixtures themselves, against the real anvil and the real Aave v3 market: a plain
//! chain answers and funds; the market is live (a supply and a variable-rate borrow by the
//! unlocked dev accounts, no signer) with positions moved as asked; a mock price move changes
//! the health factor as Aave computes it; a missing npm peer fails naming `tests/run`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use alloy_primitives::{Address, I256, U256};
use serde_json::json;
use vigil_testkit::Anvil;
use vigil_testkit::aave::units;
use vigil_testkit::anvil::{CHAIN_ID, DEV_ACCOUNTS, parse_quantity, require_peer};

const ONE_ETH: u64 = 1_000_000_000_000_000_000;

#[tokio::test]
async fn a_plain_chain_has_its_chain_id_and_funds_an_address() {
    let anvil = Anvil::start();
    let id = parse_quantity(&anvil.rpc("eth_chainId", json!([])).await);
    assert_eq!(id, U256::from(CHAIN_ID));
    let who = Address::repeat_byte(0x42);
    assert_eq!(anvil.eth_balance(who).await, U256::ZERO);
    anvil.fund(who, U256::from(5 * ONE_ETH)).await;
    assert_eq!(anvil.eth_balance(who).await, U256::from(5 * ONE_ETH));
    assert!(
        anvil.eth_balance(DEV_ACCOUNTS[0].0).await > U256::from(9_000u64) * U256::from(ONE_ETH)
    );
}

#[tokio::test]
async fn the_aave_market_is_live_a_supply_and_a_borrow_move_the_positions() {
    let anvil = Anvil::with_aave();
    let market = anvil.aave().clone();
    assert_eq!(market.chain_id, CHAIN_ID);
    let (weth, usdc) = (market.asset("WETH"), market.asset("USDC"));
    assert_eq!((weth.decimals, usdc.decimals), (18, 6));
    let (borrower, lender) = (DEV_ACCOUNTS[0].0, DEV_ACCOUNTS[1].0);

    // Liquidity first: the lender supplies USDC.
    anvil.supply(lender, "USDC", units(usdc, 9_000)).await;
    assert_eq!(
        anvil.balance_of(usdc.a_token, lender).await,
        units(usdc, 9_000)
    );

    anvil.supply(borrower, "WETH", units(weth, 2)).await;
    assert_eq!(
        anvil.balance_of(weth.a_token, borrower).await,
        units(weth, 2)
    );
    let before = anvil.account_data(borrower).await;
    assert!(before.total_collateral_base > U256::ZERO);
    assert_eq!(before.total_debt_base, U256::ZERO);
    assert_eq!(
        before.health_factor,
        U256::MAX,
        "no debt: an infinite health factor"
    );

    let usdc_before = anvil.balance_of(usdc.token, borrower).await;
    anvil
        .try_borrow(borrower, "USDC", units(usdc, 1_000))
        .await
        .unwrap();
    assert_eq!(
        anvil.balance_of(usdc.token, borrower).await - usdc_before,
        units(usdc, 1_000)
    );
    assert_eq!(
        anvil.balance_of(usdc.variable_debt_token, borrower).await,
        units(usdc, 1_000)
    );
    let after = anvil.account_data(borrower).await;
    assert!(after.total_debt_base > U256::ZERO);
    assert!(after.health_factor > U256::from(ONE_ETH), "{after:?}");

    // 2 WETH at the mock's 4 000 USD is 8 000 USD of collateral: 7 000 USD of debt is beyond
    // its loan-to-value, and the Pool refuses it (the liquidity is there).
    assert_eq!(
        anvil.price("WETH").await,
        I256::try_from(400_000_000_000_i64).unwrap()
    );
    assert!(after.ltv_bps < U256::from(8_750));
    let refused = anvil.try_borrow(borrower, "USDC", units(usdc, 6_000)).await;
    assert!(refused.is_err(), "a borrow beyond the LTV went through");
}

#[tokio::test]
async fn a_price_move_changes_the_health_factor() {
    let anvil = Anvil::with_aave();
    let market = anvil.aave().clone();
    let usdc = market.asset("USDC");
    let (borrower, lender) = (DEV_ACCOUNTS[0].0, DEV_ACCOUNTS[1].0);
    anvil.supply(lender, "USDC", units(usdc, 5_000)).await;
    anvil
        .supply(borrower, "WETH", units(market.asset("WETH"), 1))
        .await;
    anvil
        .try_borrow(borrower, "USDC", units(usdc, 500))
        .await
        .unwrap();
    let before = anvil.account_data(borrower).await;

    let price = anvil.price("WETH").await;
    assert!(price > I256::ZERO);
    let half = price / I256::try_from(2).unwrap();
    anvil.set_price("WETH", half).await;
    let after = anvil.account_data(borrower).await;

    // Collateral halves, so does the health factor (debt unchanged but for a block's interest).
    assert_eq!(
        after.total_collateral_base,
        before.total_collateral_base / U256::from(2)
    );
    let expected = before.health_factor / U256::from(2);
    let diff = expected.abs_diff(after.health_factor);
    assert!(
        diff < expected / U256::from(1000),
        "health factor {} after halving the price, expected about {expected}",
        after.health_factor
    );
}

#[test]
#[should_panic(expected = "run tests/run")]
fn a_missing_peer_says_to_run_tests_run() {
    let empty = tempfile::tempdir().unwrap();
    require_peer(
        empty.path(),
        "anvil",
        "node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil",
    );
}
