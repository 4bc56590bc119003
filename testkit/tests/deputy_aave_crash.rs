//! A deputy's crash on the EVM side: anvil with Aave v3's Test market, the real confined
//! signer under a policy naming `evm:devnet` (the market) and `hyperliquid:testnet` (BTC), the
//! Rust local market for the perpetuals. The deputy supplies 2 WETH and borrows 1 000 USDC
//! live; a deputy with a fresh state file takes its baseline with that position, then the test
//! halves WETH's price in the market's mock aggregator. `/risk` shows the Aave part at the
//! oracle's prices before and after (collateral − debt from the Pool's `getUserAccountData`),
//! the floor is hit and the deputy Halted, and the operator's alert names the Aave position
//! the closing flow leaves open.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use alloy_primitives::{I256, U256};
use vigil_devnet::hyperliquid::{LocalMarket, MarketPath};
use vigil_orchestrator::{Figures, Outcome, RiskState, StateCause, Store};
use vigil_testkit::alerts::Alerts;
use vigil_testkit::config::{ConfigBuilder, PerpSpec};
use vigil_testkit::evm_world::{AGENT, ETHER, EvmWorld, Pin, live_trader};
use vigil_testkit::script::Script;
use vigil_testkit::{Reply, unix_now};

/// Dollars of 8 decimals as the operator reads them: cents, rounded half away from zero.
fn money8(v: i128) -> String {
    let cents = (v.abs() + 500_000) / 1_000_000 * v.signum();
    let sign = if cents < 0 { "-" } else { "" };
    format!("{sign}{}.{:02}", cents.abs() / 100, cents.abs() % 100)
}

fn base8(v: U256) -> i128 {
    i128::try_from(v).unwrap()
}

#[tokio::test]
async fn a_weth_crash_moves_the_aave_part_and_the_floor_halts_the_deputy() {
    let world = EvmWorld::start_with(Pin::default(), true).await;
    let perps = LocalMarket::start(MarketPath::btc_eth(5, 0, unix_now() * 1000))
        .await
        .unwrap();
    let spec = live_trader()
        .actions(&[
            "aave_supply",
            "aave_borrow",
            "aave_repay",
            "aave_withdraw",
            "perp_order",
            "perp_cancel",
            "hold",
        ])
        .perp(
            "testnet",
            "BTC",
            PerpSpec {
                max_order_usd_micros: 1_000_000_000,
                max_position_usd_micros: 2_000_000_000,
                leverage: 3,
                max_slippage_bps: 100,
            },
        )
        .loss_floor(100_000_000);
    let build = |state: &str, replies: Vec<Reply>| {
        let script = world.state_db().with_file_name(format!("{state}.toml"));
        Script::new().agent(AGENT, replies).write(&script);
        let o = ConfigBuilder::new(
            &world.signer.socket(),
            &world.state_db().with_file_name(format!("{state}.sqlite")),
        )
        .scripted(&script)
        .evm_rpc("devnet", world.anvil.url())
        .hyperliquid("testnet", &perps.url)
        .agent(spec.clone())
        .orchestrator();
        let agent = o.agents()[0].clone();
        (o, agent)
    };

    // The position: 2 WETH supplied, 1 000 USDC borrowed, both mined.
    let (o, agent) = build(
        "opening",
        vec![
            Reply::evm("aave_supply", "WETH", 2 * ETHER, None),
            Reply::evm("aave_borrow", "USDC", 1_000_000_000, None),
        ],
    );
    for _ in 0..2 {
        let outcome = o.decide(&agent, Vec::new()).await.outcome;
        assert!(
            matches!(&outcome, Outcome::Signed { chain, .. } if chain == "mined"),
            "{outcome:?}"
        );
    }
    drop(o);

    // A deputy whose day starts with that position: its baseline includes it.
    let (mut o, agent) = build("deputy", vec![Reply::hold(), Reply::hold(), Reply::hold()]);
    let alerts = Alerts::default();
    o.set_operator(Arc::new(alerts.clone()));
    o.decide(&agent, Vec::new()).await;
    let before = world.anvil.account_data(world.agent).await;
    let aave_before = base8(before.total_collateral_base) - base8(before.total_debt_base);
    let text = o.deputy_figures(Figures::Risk).await;
    assert!(
        text.contains(&format!(
            "(Hyperliquid 10000.00, Aave {})",
            money8(aave_before)
        )),
        "{text}\n{before:?}"
    );
    assert!(text.contains("trader [paper]: ACTIVE"), "{text}");
    let pnl = o.deputy_figures(Figures::Pnl).await;
    assert!(
        pnl.contains(&format!(
            "Aave (the oracle's prices): collateral {}, debt {}",
            money8(base8(before.total_collateral_base)),
            money8(base8(before.total_debt_base))
        )),
        "{pnl}"
    );

    // WETH halves in the market's aggregator: the collateral halves, the debt does not.
    let price = world.anvil.price("WETH").await;
    world
        .anvil
        .set_price("WETH", price / I256::try_from(2).unwrap())
        .await;
    o.decide(&agent, Vec::new()).await;
    let after = world.anvil.account_data(world.agent).await;
    let aave_after = base8(after.total_collateral_base) - base8(after.total_debt_base);
    assert!(
        aave_before - aave_after > 100 * 100_000_000,
        "a loss past the floor"
    );
    let text = o.deputy_figures(Figures::Risk).await;
    assert!(text.contains("HALTED (loss floor hit"), "{text}");
    assert!(
        text.contains(&format!(
            "(Hyperliquid 10000.00, Aave {})",
            money8(aave_after)
        )),
        "{text}"
    );
    let state = world.state_db().with_file_name("deputy.sqlite");
    let row = Store::open(&state)
        .unwrap()
        .agent(&agent.id)
        .deputy()
        .unwrap();
    assert_eq!(
        (row.state, row.cause),
        (RiskState::Halted, Some(StateCause::LossFloor))
    );
    let all = alerts.all();
    assert!(
        all.iter()
            .any(|a| a.contains("loss floor hit") && a.contains("LEFT OPEN: the Aave position")),
        "{all:?}"
    );
}
