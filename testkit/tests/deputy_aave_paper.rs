//! The paper Aave book of a deputy, in process: anvil with Aave v3's Test market (USDC lent
//! out on the real Pool by a dev account, so its rates are not zero), the real confined signer
//! under a policy naming `evm:devnet` and `hyperliquid:testnet`, the Rust local market for BTC.
//! A paper deputy supplies 2 WETH and 500 USDC and borrows 300 USDC on paper; the tick clock
//! (`Orchestrator::decide_at`) moves 30 days; the interest booked equals the hand computation
//! from the rates read off the Pool here (`getReserveData`, words 2 and 4); `/risk`, `/pnl` and
//! `/positions` show the paper Aave part at the oracle's prices; a withdraw beyond the paper
//! position is refused, a repay within it books; the real Pool knows nothing of the agent.
//! And the loss floor's closing flow on a paper position: WETH halved in the market's mock
//! aggregator halts a paper deputy, the paper debt is repaid, then the paper WETH withdrawn.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use alloy_primitives::{Address, I256, U256, keccak256};
use vigil_devnet::hyperliquid::{LocalMarket, MarketPath};
use vigil_orchestrator::{Figures, Outcome, RiskState, StateCause, Store};
use vigil_protocol::Network;
use vigil_testkit::alerts::Alerts;
use vigil_testkit::anvil::{Anvil, DEV_ACCOUNTS};
use vigil_testkit::config::ConfigBuilder;
use vigil_testkit::evm_world::{AGENT, ETHER, EvmWorld, Pin, aave_btc_deputy, trader};
use vigil_testkit::script::Script;
use vigil_testkit::{Reply, unix_now};

/// 30 days, seconds.
const INTERVAL: u64 = 30 * 86_400;
/// Aave's year and a ray, written out here (not taken from the orchestrator).
const SECONDS_PER_YEAR: u64 = 365 * 86_400;
const RAY: u128 = 1_000_000_000_000_000_000_000_000_000;

/// `(currentLiquidityRate, currentVariableBorrowRate)` of `asset`, ray, read off the Pool by
/// hand: `getReserveData(address)` answers `ReserveData` word by word; words 2 and 4.
async fn rates(anvil: &Anvil, asset: Address) -> (U256, U256) {
    let mut data = keccak256("getReserveData(address)")[..4].to_vec();
    data.extend_from_slice(&[0u8; 12]);
    data.extend_from_slice(asset.as_slice());
    let out = anvil.call(anvil.aave().pool, data).await;
    let word = |i: usize| U256::from_be_slice(&out[32 * i..32 * (i + 1)]);
    (word(2), word(4))
}

/// Dollars of 8 decimals as the operator reads them: cents, rounded half away from zero.
fn money8(v: i128) -> String {
    let cents = (v.abs() + 500_000) / 1_000_000 * v.signum();
    let sign = if cents < 0 { "-" } else { "" };
    format!("{sign}{}.{:02}", cents.abs() / 100, cents.abs() % 100)
}

fn i(v: U256) -> i128 {
    i128::try_from(v).unwrap()
}

#[tokio::test]
async fn paper_aave_interest_over_a_scripted_interval_equals_the_hand_computation() {
    let world = EvmWorld::start_with(Pin::default(), true).await;
    let market = world.anvil.aave().clone();
    let (weth, usdc) = (market.asset("WETH"), market.asset("USDC"));
    // A real borrower on the Pool: 10 WETH in, 3 000 of the 9 000 USDC out, so USDC earns and
    // costs interest at rates the Pool states.
    let lender = DEV_ACCOUNTS[0].0;
    world
        .anvil
        .supply(lender, "WETH", U256::from(10 * ETHER))
        .await;
    world
        .anvil
        .try_borrow(lender, "USDC", U256::from(3_000_000_000u64))
        .await
        .unwrap();
    let (liquidity, borrow) = rates(&world.anvil, usdc.token).await;
    assert!(
        !liquidity.is_zero() && borrow > liquidity,
        "USDC is lent out: {liquidity} {borrow}"
    );

    let perps = LocalMarket::start(MarketPath::btc_eth(5, 0, unix_now() * 1000))
        .await
        .unwrap();
    let spec = aave_btc_deputy(trader()).loss_floor(1_000_000_000);
    let script = world.state_db().with_file_name("paper.toml");
    Script::new()
        .agent(
            AGENT,
            vec![
                Reply::evm("aave_supply", "WETH", 2 * ETHER, None),
                Reply::evm("aave_supply", "USDC", 500_000_000, None),
                Reply::evm("aave_borrow", "USDC", 300_000_000, None),
                Reply::hold(),
                Reply::evm("aave_withdraw", "USDC", 10_000_000_000, None),
                Reply::evm("aave_repay", "USDC", 100_000_000, None),
            ],
        )
        .write(&script);
    let o = ConfigBuilder::new(&world.signer.socket(), &world.state_db())
        .scripted(&script)
        .evm_rpc("devnet", world.anvil.url())
        .hyperliquid("testnet", &perps.url)
        .agent(spec)
        .orchestrator();
    let agent = o.agents()[0].clone();

    // The book: three paper fills at t0.
    let t0 = unix_now();
    for what in ["supply WETH", "supply USDC", "borrow USDC"] {
        let outcome = o.decide_at(&agent, Vec::new(), t0).await.outcome;
        assert!(
            matches!(&outcome, Outcome::PaperFilled { .. }),
            "{what}: {outcome:?}"
        );
    }
    // 30 days later on the tick's clock: the interval's interest is booked.
    let t1 = t0 + INTERVAL;
    let outcome = o.decide_at(&agent, Vec::new(), t1).await.outcome;
    assert!(matches!(&outcome, Outcome::Held { .. }), "{outcome:?}");
    assert_eq!(
        rates(&world.anvil, usdc.token).await,
        (liquidity, borrow),
        "nothing moved the Pool's rates during the test"
    );

    // By hand: supplied × rate × Δt / (SECONDS_PER_YEAR × RAY), the supply rounded down, the
    // debt rounded up.
    let year_ray = U256::from(SECONDS_PER_YEAR) * U256::from(RAY);
    let earned = U256::from(500_000_000u64) * liquidity * U256::from(INTERVAL) / year_ray;
    let owed = (U256::from(300_000_000u64) * borrow * U256::from(INTERVAL)).div_ceil(year_ray);
    let (earned, owed) = (
        u128::try_from(earned).unwrap(),
        u128::try_from(owed).unwrap(),
    );
    assert!(
        earned > 0 && owed > 0,
        "a month of interest: {earned} {owed}"
    );
    let (weth_liquidity, weth_borrow) = rates(&world.anvil, weth.token).await;
    let weth_earned = U256::from(2 * ETHER) * weth_liquidity * U256::from(INTERVAL) / year_ray;
    {
        let store = Store::open(&world.state_db()).unwrap();
        let a = store.agent(&agent.id);
        let rows = a.paper_aave_interest(Network::Devnet).unwrap();
        let usdc_row = rows.iter().find(|r| r.asset == "USDC").expect("a USDC row");
        assert_eq!((usdc_row.from_ts, usdc_row.to_ts), (t0, t1));
        assert_eq!(
            (usdc_row.rates.liquidity, usdc_row.rates.variable_borrow),
            (liquidity, borrow)
        );
        assert_eq!(
            (usdc_row.supply_interest, usdc_row.borrow_interest),
            (earned, owed)
        );
        let weth_row = rows.iter().find(|r| r.asset == "WETH").expect("a WETH row");
        assert_eq!(
            (
                weth_row.rates.variable_borrow,
                U256::from(weth_row.supply_interest)
            ),
            (weth_borrow, weth_earned)
        );
        let book = a.paper_aave_book(Network::Devnet).unwrap();
        let usdc_book = book.iter().find(|(s, _)| s == "USDC").unwrap().1;
        assert_eq!(
            (usdc_book.supplied, usdc_book.borrowed),
            (500_000_000 + earned, 300_000_000 + owed)
        );
    }

    // What the operator reads: the paper book at the oracle's prices, computed here by hand.
    let (p_weth, p_usdc) = (
        i(world.anvil.price("WETH").await.into_raw()),
        i(world.anvil.price("USDC").await.into_raw()),
    );
    let supplied_usdc = i128::try_from(500_000_000 + earned).unwrap();
    let owed_usdc = i128::try_from(300_000_000 + owed).unwrap();
    let weth_units = i128::try_from(2 * ETHER + u128::try_from(weth_earned).unwrap()).unwrap();
    let collateral =
        weth_units * p_weth / 1_000_000_000_000_000_000 + supplied_usdc * p_usdc / 1_000_000;
    let debt = (owed_usdc * p_usdc + 999_999) / 1_000_000;
    let risk = o.deputy_figures(Figures::Risk).await;
    assert!(
        risk.contains(&format!(
            "(Hyperliquid 10000.00, Aave {})",
            money8(collateral - debt)
        )),
        "{risk}"
    );
    assert!(risk.contains("trader [paper]: ACTIVE"), "{risk}");
    let pnl = o.deputy_figures(Figures::Pnl).await;
    assert!(
        pnl.contains(&format!(
            "Aave (the oracle's prices): collateral {}, debt {}",
            money8(collateral),
            money8(debt)
        )),
        "{pnl}"
    );
    let token = |units: u128| {
        let whole = units / 1_000_000;
        let frac = format!("{:06}", units % 1_000_000);
        let frac = frac.trim_end_matches('0');
        if frac.is_empty() {
            whole.to_string()
        } else {
            format!("{whole}.{frac}")
        }
    };
    assert!(
        pnl.contains(&format!(
            "Aave USDC [paper] interest since start: earned {} ≈ ${}, paid {} ≈ ${}",
            token(earned),
            money8(i128::try_from(earned).unwrap() * p_usdc / 1_000_000),
            token(owed),
            money8(i128::try_from(owed).unwrap() * p_usdc / 1_000_000)
        )),
        "{pnl}"
    );
    let positions = o.deputy_figures(Figures::Positions).await;
    assert!(
        positions.contains(&format!(
            "Aave USDC [paper]: supplied {} ≈ ${}, owed {} ≈ ${}",
            token(500_000_000 + earned),
            money8(supplied_usdc * p_usdc / 1_000_000),
            token(300_000_000 + owed),
            money8(owed_usdc * p_usdc / 1_000_000)
        )),
        "{positions}"
    );
    assert!(
        positions.contains("Aave WETH [paper]: supplied 2"),
        "{positions}"
    );

    // A withdraw beyond the paper position is refused, naming what is supplied; a repay within
    // it books. Nothing of either reached the real Pool.
    let outcome = o.decide_at(&agent, Vec::new(), t1).await.outcome;
    match &outcome {
        Outcome::Refused { layer, message, .. } => {
            assert_eq!(layer, "2", "{outcome:?}");
            assert!(
                message.contains(&format!(
                    "the USDC supplied ({} base units)",
                    500_000_000 + earned
                )),
                "{message}"
            );
        }
        other => panic!("expected layer 2's refusal, got {other:?}"),
    }
    let outcome = o.decide_at(&agent, Vec::new(), t1).await.outcome;
    assert!(
        matches!(&outcome, Outcome::PaperFilled { .. }),
        "{outcome:?}"
    );
    let store = Store::open(&world.state_db()).unwrap();
    let a = store.agent(&agent.id);
    let book = a.paper_aave_book(Network::Devnet).unwrap();
    let usdc_book = book.iter().find(|(s, _)| s == "USDC").unwrap().1;
    assert_eq!(usdc_book.borrowed, 200_000_000 + owed);
    assert_eq!(a.deputy().unwrap().state, RiskState::Active);
    let real = world.anvil.account_data(world.agent).await;
    assert_eq!(
        (real.total_collateral_base, real.total_debt_base),
        (U256::ZERO, U256::ZERO),
        "paper moved nothing on the Pool"
    );
}

/// The paper book of `agent` on devnet, per asset: (supplied, owed), read from the Store.
fn book(world: &EvmWorld, agent: &vigil_orchestrator::AgentConfig) -> Vec<(String, u128, u128)> {
    let store = Store::open(&world.state_db()).unwrap();
    let rows = store
        .agent(&agent.id)
        .paper_aave_book(Network::Devnet)
        .unwrap();
    rows.into_iter()
        .map(|(asset, p)| (asset, p.supplied, p.borrowed))
        .collect()
}

/// The paper Aave fills booked for the deputy so far (`paper_aave_fills`), in order.
fn fills(world: &EvmWorld) -> Vec<(String, String, String)> {
    let db = rusqlite::Connection::open(world.state_db()).unwrap();
    let mut q = db
        .prepare("SELECT kind, asset, amount FROM paper_aave_fills ORDER BY id")
        .unwrap();
    q.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

/// The loss floor closes a paper Aave position the same way it closes a live one
/// (`deputy_aave_crash.rs`): a paper deputy supplies 2 WETH and borrows 1 200 USDC on paper
/// (more than the 1 000 USDC the real wallet holds: only the paper borrow lets the paper wallet
/// cover the debt), takes the next day's baseline with that position, WETH's price is halved in
/// the market's mock aggregator, and the next tick halts it (loss floor) and repays the whole
/// paper USDC debt; the tick after withdraws the paper WETH; the book is flat, a later tick
/// books nothing, and the real Pool never saw the agent.
#[tokio::test]
async fn the_loss_floor_closes_a_paper_aave_position_debt_first_then_the_collateral() {
    const USDC: u128 = 1_000_000;
    let world = EvmWorld::start_with(Pin::default(), true).await;
    let perps = LocalMarket::start(MarketPath::btc_eth(5, 0, unix_now() * 1000))
        .await
        .unwrap();
    let spec = aave_btc_deputy(trader()).loss_floor(100_000_000);
    let script = world.state_db().with_file_name("paper.toml");
    let mut replies = vec![
        Reply::evm("aave_supply", "WETH", 2 * ETHER, None),
        Reply::evm("aave_borrow", "USDC", 1_200 * USDC, None),
    ];
    replies.extend(vec![Reply::hold(); 8]);
    Script::new().agent(AGENT, replies).write(&script);
    let mut o = ConfigBuilder::new(&world.signer.socket(), &world.state_db())
        .scripted(&script)
        .evm_rpc("devnet", world.anvil.url())
        .hyperliquid("testnet", &perps.url)
        .agent(spec)
        .orchestrator();
    let alerts = Alerts::default();
    o.set_operator(Arc::new(alerts.clone()));
    let agent = o.agents()[0].clone();
    let (weth, usdc) = {
        let market = world.anvil.aave();
        (market.asset("WETH").token, market.asset("USDC").token)
    };
    let real_wallet = (
        world.anvil.balance_of(weth, world.agent).await,
        world.anvil.balance_of(usdc, world.agent).await,
    );
    assert_eq!(
        real_wallet,
        (U256::from(5 * ETHER), U256::from(1_000 * USDC)),
        "the real wallet holds less USDC than the paper debt"
    );

    // The paper position, day one.
    let t0 = unix_now();
    for what in ["supply WETH", "borrow USDC"] {
        let outcome = o.decide_at(&agent, Vec::new(), t0).await.outcome;
        assert!(
            matches!(&outcome, Outcome::PaperFilled { .. }),
            "{what}: {outcome:?}"
        );
    }
    // The next UTC day's first tick takes the baseline with the position.
    let t1 = t0 + 86_400;
    let outcome = o.decide_at(&agent, Vec::new(), t1).await.outcome;
    assert!(matches!(&outcome, Outcome::Held { .. }), "{outcome:?}");
    let opened = book(&world, &agent);
    let pos = |b: &[(String, u128, u128)], asset: &str| {
        b.iter()
            .find(|(a, _, _)| a == asset)
            .map_or((0, 0), |(_, s, d)| (*s, *d))
    };
    let (weth_supplied, _) = pos(&opened, "WETH");
    let (_, usdc_owed) = pos(&opened, "USDC");
    assert!(weth_supplied >= 2 * ETHER, "{opened:?}");
    assert!(usdc_owed >= 1_200 * USDC, "{opened:?}");

    // WETH halved: the paper collateral halves, the paper debt does not.
    let price = world.anvil.price("WETH").await;
    world
        .anvil
        .set_price("WETH", price / I256::try_from(2).unwrap())
        .await;

    // The crash tick: Halted (loss floor), the whole paper USDC debt repaid on paper; the
    // collateral waits for a tick whose view shows no debt.
    let t2 = t1 + 60;
    o.decide_at(&agent, Vec::new(), t2).await;
    let halted = |when: &str| {
        let row = Store::open(&world.state_db())
            .unwrap()
            .agent(&agent.id)
            .deputy()
            .unwrap();
        assert_eq!(
            (row.state, row.cause),
            (RiskState::Halted, Some(StateCause::LossFloor)),
            "{when}"
        );
    };
    halted("the crash tick");
    let repaid = book(&world, &agent);
    assert_eq!(pos(&repaid, "USDC").1, 0, "the debt repaid: {repaid:?}");
    assert!(
        pos(&repaid, "WETH").0 >= weth_supplied,
        "nothing withdrawn yet: {repaid:?}"
    );
    let booked = fills(&world);
    assert_eq!(booked.len(), 3, "{booked:?}");
    assert_eq!(
        (booked[2].0.as_str(), booked[2].1.as_str()),
        ("repay", "USDC"),
        "{booked:?}"
    );
    let repay: u128 = booked[2].2.parse().unwrap();
    assert!(
        (usdc_owed..1_201 * USDC).contains(&repay),
        "the whole debt, an exact amount: {booked:?}"
    );
    let all = alerts.all();
    let floor: Vec<&String> = all
        .iter()
        .filter(|a| a.contains("loss floor hit"))
        .collect();
    assert_eq!(floor.len(), 1, "{all:?}");
    let alert = floor[0];
    assert!(
        alert.contains("Aave: repay the whole USDC debt (1200")
            && alert.contains("USDC): filled on paper")
            && alert.contains("the collateral (2")
            && alert.contains("WETH) is withdrawn at a later tick"),
        "{alert}"
    );
    assert!(!alert.contains("LEFT OPEN"), "{alert}");

    // The next tick: no paper debt in the view, so the paper WETH is withdrawn.
    o.decide_at(&agent, Vec::new(), t2 + 60).await;
    let flat = book(&world, &agent);
    assert!(
        flat.iter().all(|(_, s, d)| (*s, *d) == (0, 0)),
        "the paper book is flat: {flat:?}"
    );
    let booked = fills(&world);
    assert_eq!(booked.len(), 4, "{booked:?}");
    assert_eq!(
        (booked[3].0.as_str(), booked[3].1.as_str()),
        ("withdraw", "WETH"),
        "{booked:?}"
    );
    assert!(
        booked[3].2.parse::<u128>().unwrap() >= 2 * ETHER,
        "{booked:?}"
    );

    // Flat: a later tick books nothing, the deputy stays halted, the operator is told once.
    o.decide_at(&agent, Vec::new(), t2 + 120).await;
    assert_eq!(fills(&world).len(), 4);
    assert_eq!(book(&world, &agent), flat);
    halted("a later tick");
    assert_eq!(
        alerts
            .all()
            .iter()
            .filter(|a| a.contains("loss floor hit"))
            .count(),
        1
    );
    // Paper all along: the real Pool knows nothing of the agent, its real wallet is untouched.
    let real = world.anvil.account_data(world.agent).await;
    assert_eq!(
        (real.total_collateral_base, real.total_debt_base),
        (U256::ZERO, U256::ZERO),
        "paper moved nothing on the Pool"
    );
    assert_eq!(
        (
            world.anvil.balance_of(weth, world.agent).await,
            world.anvil.balance_of(usdc, world.agent).await,
        ),
        real_wallet
    );
}
