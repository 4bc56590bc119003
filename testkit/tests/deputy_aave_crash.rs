//! A deputy's crash on the EVM side: anvil with Aave v3's Test market, the real confined
//! signer under a policy naming `evm:devnet` (the market; USDC with `allow_all`, WETH without)
//! and `hyperliquid:testnet` (BTC), the Rust local market for the perpetuals. The deputy
//! supplies 2 WETH and borrows 1 000 USDC live; a deputy with a fresh state file takes its
//! baseline with that position, then the test halves WETH's price in the market's mock
//! aggregator. `/risk` shows the Aave part at the oracle's prices before and after
//! (collateral − debt from the Pool's `getUserAccountData`), the floor is hit and the deputy
//! Halted, and the closing flow closes the Aave position through layer 2 and the paused signer:
//! the whole USDC debt repaid (`"all"`), then at the next tick the WETH withdrawn (`"all"`
//! refused by the policy, so the exact amount), the Pool showing nothing and the wallet its WETH
//! back. When the wallet cannot cover the debt (USDC sent away first), it repays what the wallet
//! holds, withdraws nothing, and the alert names what is left open.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use alloy_primitives::{I256, U256};
use vigil_devnet::hyperliquid::{LocalMarket, MarketPath};
use vigil_orchestrator::{
    AgentConfig, Figures, Orchestrator, Outcome, RiskState, StateCause, Store,
};
use vigil_testkit::alerts::Alerts;
use vigil_testkit::config::ConfigBuilder;
use vigil_testkit::evm_world::{
    AAVE_DEPUTY_ACTIONS, AGENT, ETHER, EvmWorld, Pin, aave_btc_deputy, live_trader,
};
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

/// The world, the local market and a way to build an orchestrator on a named state file whose
/// scripted model answers the given replies.
struct Crash {
    world: EvmWorld,
    _perps: LocalMarket,
    perps_url: String,
}

impl Crash {
    async fn start() -> Crash {
        let world = EvmWorld::start_with(Pin::default(), true).await;
        let perps = LocalMarket::start(MarketPath::btc_eth(5, 0, unix_now() * 1000))
            .await
            .unwrap();
        let perps_url = perps.url.clone();
        Crash {
            world,
            _perps: perps,
            perps_url,
        }
    }

    fn build(&self, state: &str, replies: Vec<Reply>) -> (Orchestrator, AgentConfig) {
        let spec = aave_btc_deputy(live_trader())
            .actions(&[&["transfer"], AAVE_DEPUTY_ACTIONS].concat())
            .loss_floor(100_000_000);
        let world = &self.world;
        let script = world.state_db().with_file_name(format!("{state}.toml"));
        Script::new().agent(AGENT, replies).write(&script);
        let o = ConfigBuilder::new(
            &world.signer.socket(),
            &world.state_db().with_file_name(format!("{state}.sqlite")),
        )
        .scripted(&script)
        .evm_rpc("devnet", world.anvil.url())
        .hyperliquid("testnet", &self.perps_url)
        .agent(spec)
        .orchestrator();
        let agent = o.agents()[0].clone();
        (o, agent)
    }

    /// The position, each action mined: `opening` (2 WETH supplied, 1 000 USDC borrowed, and
    /// whatever else the test adds).
    async fn open(&self, opening: Vec<Reply>) {
        let n = opening.len();
        let (o, agent) = self.build("opening", opening);
        for _ in 0..n {
            let outcome = o.decide(&agent, Vec::new()).await.outcome;
            assert!(
                matches!(&outcome, Outcome::Signed { chain, .. } if chain == "mined"),
                "{outcome:?}"
            );
        }
    }

    /// A deputy whose day starts with the position (its baseline includes it), alerts
    /// recorded; its first tick taken.
    async fn deputy(&self) -> (Orchestrator, AgentConfig, Alerts) {
        let (mut o, agent) = self.build("deputy", vec![Reply::hold(); 8]);
        let alerts = Alerts::default();
        o.set_operator(Arc::new(alerts.clone()));
        o.decide(&agent, Vec::new()).await;
        (o, agent, alerts)
    }

    /// WETH halved in the market's aggregator: the collateral halves, the debt does not.
    async fn crash(&self) {
        let price = self.world.anvil.price("WETH").await;
        self.world
            .anvil
            .set_price("WETH", price / I256::try_from(2).unwrap())
            .await;
    }

    fn halted(&self, agent: &AgentConfig) {
        let state = self.world.state_db().with_file_name("deputy.sqlite");
        let row = Store::open(&state)
            .unwrap()
            .agent(&agent.id)
            .deputy()
            .unwrap();
        assert_eq!(
            (row.state, row.cause),
            (RiskState::Halted, Some(StateCause::LossFloor))
        );
    }

    /// The deputy's decision log, in order: each decision's outcome, rule and recorded
    /// outcome (its JSON, with the signer's summary).
    fn decisions(&self) -> Vec<(String, Option<String>, String)> {
        let db = rusqlite::Connection::open(self.world.state_db().with_file_name("deputy.sqlite"))
            .unwrap();
        let mut q = db
            .prepare("SELECT outcome, rule, parsed_json FROM decisions ORDER BY id")
            .unwrap();
        q.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    }

    /// The signer's summaries of what was signed for the deputy, in order.
    fn signed(&self) -> Vec<String> {
        self.decisions()
            .into_iter()
            .filter(|(outcome, _, _)| outcome == "signed")
            .map(|(_, _, json)| json)
            .collect()
    }

    async fn balance(&self, symbol: &str) -> U256 {
        let token = self.world.anvil.aave().asset(symbol).token;
        self.world.anvil.balance_of(token, self.world.agent).await
    }
}

const USDC: u128 = 1_000_000;

fn opening() -> Vec<Reply> {
    vec![
        Reply::evm("aave_supply", "WETH", 2 * ETHER, None),
        Reply::evm("aave_borrow", "USDC", 1_000 * USDC, None),
    ]
}

#[tokio::test]
async fn a_weth_crash_halts_the_deputy_and_the_floor_repays_then_withdraws_on_aave() {
    let c = Crash::start().await;
    let world = &c.world;
    c.open(opening()).await;
    let (o, agent, alerts) = c.deputy().await;
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

    c.crash().await;
    let crashed = world.anvil.account_data(world.agent).await;
    let aave_crashed = base8(crashed.total_collateral_base) - base8(crashed.total_debt_base);
    assert!(
        aave_before - aave_crashed > 100 * 100_000_000,
        "a loss past the floor"
    );
    let (weth, usdc) = (c.balance("WETH").await, c.balance("USDC").await);
    assert_eq!(weth, U256::from(3 * ETHER), "5 minted, 2 supplied");

    // The crash tick: Halted, the signer paused, the whole USDC debt repaid ("all"); the
    // collateral waits for a tick whose view shows no debt.
    o.decide(&agent, Vec::new()).await;
    c.halted(&agent);
    let repaid = world.anvil.account_data(world.agent).await;
    assert_eq!(repaid.total_debt_base, U256::ZERO, "{repaid:?}");
    assert!(
        repaid.total_collateral_base >= crashed.total_collateral_base,
        "nothing withdrawn yet: {repaid:?}"
    );
    let paid = usdc - c.balance("USDC").await;
    assert!(
        paid >= U256::from(1_000 * USDC) && paid < U256::from(1_001 * USDC),
        "the debt and its interest: {paid}"
    );
    let signed = c.signed();
    assert_eq!(signed.len(), 1, "{signed:?}");
    assert!(
        signed[0].contains("repay all USDC of trader's variable debt")
            && signed[0].contains("mined"),
        "{signed:?}"
    );
    let text = o.deputy_figures(Figures::Risk).await;
    assert!(text.contains("HALTED (loss floor hit"), "{text}");
    assert!(
        text.contains(&format!(
            "(Hyperliquid 10000.00, Aave {})",
            money8(base8(repaid.total_collateral_base))
        )),
        "{text}"
    );
    let all = alerts.all();
    let floor: Vec<&String> = all
        .iter()
        .filter(|a| a.contains("loss floor hit"))
        .collect();
    assert_eq!(floor.len(), 1, "{all:?}");
    let alert = floor[0];
    assert!(
        alert.contains("Aave: repay the whole USDC debt (1000")
            && alert.contains("USDC): signed, mined")
            && alert.contains("the collateral (2 WETH) is withdrawn at a later tick"),
        "{alert}"
    );
    assert!(!alert.contains("LEFT OPEN"), "{alert}");

    // The next tick: no debt in the view, so the WETH comes back. The policy allows no
    // withdrawal of "all" WETH: the signer refuses it and the exact amount goes instead.
    o.decide(&agent, Vec::new()).await;
    let flat = world.anvil.account_data(world.agent).await;
    assert_eq!(
        (flat.total_collateral_base, flat.total_debt_base),
        (U256::ZERO, U256::ZERO),
        "{flat:?}"
    );
    assert_eq!(c.balance("WETH").await, U256::from(5 * ETHER));
    let signed = c.signed();
    assert_eq!(signed.len(), 2, "{signed:?}");
    assert!(
        signed[1].contains("withdraw 2 WETH (2000000000000000000 base units) from the Aave Pool"),
        "{signed:?}"
    );
    // The signer's refusal of "all" WETH is in the log, just before the exact withdrawal.
    let log = c.decisions();
    assert!(
        log.iter()
            .any(|(o, rule, _)| o == "refused" && rule.as_deref() == Some("all_not_allowed")),
        "{log:?}"
    );
    // Flat: a later tick signs nothing more, and the operator is not told again.
    o.decide(&agent, Vec::new()).await;
    assert_eq!(c.signed().len(), 2);
    c.halted(&agent);
    assert_eq!(
        alerts
            .all()
            .iter()
            .filter(|a| a.contains("loss floor hit"))
            .count(),
        1
    );
}

#[tokio::test]
async fn a_wallet_short_of_the_debt_repays_what_it_holds_withdraws_nothing_and_says_what_is_left() {
    let c = Crash::start().await;
    let world = &c.world;
    // 1 000 minted + 1 000 borrowed − 1 600 sent to bob: the wallet holds 400 USDC.
    let mut replies = opening();
    replies.push(Reply::evm("transfer", "USDC", 1_600 * USDC, Some("bob")));
    c.open(replies).await;
    assert_eq!(c.balance("USDC").await, U256::from(400 * USDC));
    let (o, agent, alerts) = c.deputy().await;
    c.crash().await;
    let crashed = world.anvil.account_data(world.agent).await;

    o.decide(&agent, Vec::new()).await;
    c.halted(&agent);
    let after = world.anvil.account_data(world.agent).await;
    assert_eq!(c.balance("USDC").await, U256::ZERO, "all the wallet held");
    let debt = base8(after.total_debt_base);
    assert!(
        (600 * 100_000_000..601 * 100_000_000).contains(&debt),
        "about 600 USD of debt left: {after:?}"
    );
    assert_eq!(
        after.total_collateral_base, crashed.total_collateral_base,
        "nothing withdrawn"
    );
    assert_eq!(c.balance("WETH").await, U256::from(3 * ETHER));
    let signed = c.signed();
    assert_eq!(signed.len(), 1, "{signed:?}");
    assert!(
        signed[0].contains("repay 400 USDC (400000000 base units) of trader's variable debt"),
        "{signed:?}"
    );
    let all = alerts.all();
    let alert = all
        .iter()
        .find(|a| a.contains("loss floor hit"))
        .unwrap_or_else(|| panic!("{all:?}"));
    for part in [
        "Aave: repay 400 USDC, all the wallet holds, of the USDC debt: signed, mined",
        "LEFT OPEN on Aave: debt 600",
        "USDC left (owed 1000",
        "the wallet holds only 400 USDC)",
        "the collateral (2 WETH) stays supplied while debt is left",
    ] {
        assert!(alert.contains(part), "{part:?} in {alert}");
    }

    // The next tick: the wallet holds no USDC, so nothing is signed and nothing withdrawn.
    o.decide(&agent, Vec::new()).await;
    assert_eq!(c.signed().len(), 1);
    let later = world.anvil.account_data(world.agent).await;
    assert_eq!(later.total_collateral_base, crashed.total_collateral_base);
    assert!(later.total_debt_base >= after.total_debt_base);
    c.halted(&agent);

    // USDC sent to the agent's address is used at the next tick: the rest of the debt repaid,
    // then the WETH withdrawn; the operator was told once.
    let usdc = world.anvil.aave().asset("USDC").clone();
    world
        .anvil
        .mint(
            "USDC",
            world.agent,
            vigil_testkit::aave::units(&usdc, 1_000),
        )
        .await;
    o.decide(&agent, Vec::new()).await;
    assert_eq!(
        world.anvil.account_data(world.agent).await.total_debt_base,
        U256::ZERO
    );
    o.decide(&agent, Vec::new()).await;
    let flat = world.anvil.account_data(world.agent).await;
    assert_eq!(
        (flat.total_collateral_base, flat.total_debt_base),
        (U256::ZERO, U256::ZERO),
        "{flat:?}"
    );
    assert_eq!(c.balance("WETH").await, U256::from(5 * ETHER));
    assert_eq!(c.signed().len(), 3, "{:?}", c.signed());
    assert_eq!(
        alerts
            .all()
            .iter()
            .filter(|a| a.contains("loss floor hit"))
            .count(),
        1
    );
}
