//! A deputy's crash on the Solana side, in process: a paper deputy trading ETH perpetuals on
//! the Rust local market, holding 10 SOL (paper) on Solana devnet, whose SOL price source
//! (`sol_price_urls.devnet`) is a second local market serving SOL at 150 USD on a seeded path
//! with a scripted −50 % crash at step 1. Before the crash `/risk` shows the equity per venue
//! (Hyperliquid 10 000, Solana 1 500) and the distance to the 500 USD floor; after it the
//! Solana part is 750, the floor is hit (a loss of 750) and the deputy is Halted, with the
//! figures the operator reads saying so.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use vigil_devnet::hyperliquid::{Coin, Event, HOUR_MS, LocalMarket, MarketPath};
use vigil_orchestrator::{Figures, Orchestrator, RiskState, StateCause};
use vigil_testkit::config::{AgentSpec, ConfigBuilder, PerpSpec};
use vigil_testkit::script::{Reply, Script};
use vigil_testkit::{Signer, unix_now};

const AGENT: &str = "trader";

/// Perpetuals on Hyperliquid's testnet and SOL on Solana devnet.
const POLICY: &str = r#"version = 1
[agents.trader]
actions = ["perp_order", "perp_cancel", "perp_leverage", "perp_schedule_cancel", "transfer"]
networks = ["hyperliquid:testnet", "solana:devnet"]
recipients = []
rate_limit_per_minute = 600
[agents.trader.assets.ETH]
chain = "hyperliquid"
per_tx_cap = "2000000000"
velocity_24h = "100000000000"
approval_threshold = "2000000000"
[agents.trader.assets.SOL]
chain = "solana"
per_tx_cap = "1000000000"
velocity_24h = "10000000000"
approval_threshold = "500000000"

[networks."hyperliquid:testnet"]
perps.ETH = { coin = "ETH", index = 1, sz_decimals = 4, max_leverage = 5, max_position_notional = "5000000000" }
"#;

/// SOL at 150 USD, hourly steps, no walk (vol 0): the crash is the only move.
fn sol_path() -> MarketPath {
    MarketPath {
        seed: 7,
        vol_bps: 0,
        start_ms: unix_now() * 1000,
        step_ms: HOUR_MS,
        coins: vec![Coin {
            name: "SOL".into(),
            start_micros: 150_000_000,
            sz_decimals: 2,
            max_leverage: 20,
            funding_rate: "0.00001".into(),
        }],
        events: vec![Event::Move {
            step: 1,
            coin: "SOL".into(),
            move_bps: -5000,
        }],
    }
}

fn deputy() -> AgentSpec {
    AgentSpec::new(AGENT)
        .actions(&["perp_order", "perp_cancel", "hold"])
        .perp(
            "testnet",
            "ETH",
            PerpSpec {
                max_order_usd_micros: 1_000_000_000,
                max_position_usd_micros: 2_000_000_000,
                leverage: 3,
                max_slippage_bps: 100,
            },
        )
        .loss_floor(500_000_000)
}

async fn risk_of(o: &Orchestrator) -> String {
    o.deputy_figures(Figures::Risk).await
}

#[tokio::test]
async fn a_sol_crash_moves_the_solana_part_and_the_floor_halts_the_deputy() {
    let signer = Signer::with(&[AGENT]).policy_toml(POLICY).start();
    let perps = LocalMarket::start(MarketPath::btc_eth(3, 0, unix_now() * 1000))
        .await
        .unwrap();
    let sol = LocalMarket::start(sol_path()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("script.toml");
    Script::new()
        .agent(AGENT, std::iter::repeat_n(Reply::hold(), 10))
        .write(&script);
    let o = ConfigBuilder::new(&signer.socket(), &dir.path().join("state.sqlite"))
        .scripted(&script)
        .hyperliquid("testnet", &perps.url)
        .sol_price("devnet", &sol.url)
        .agent(deputy())
        .orchestrator();
    let agent = o.agents()[0].clone();

    // Step 0: the baseline, 10 000 of paper cash + 10 SOL × 150.
    let first = o.decide(&agent, Vec::new()).await.outcome;
    assert!(
        matches!(&first, vigil_orchestrator::Outcome::Held { layer, .. } if layer == "agent"),
        "{first:?}"
    );
    let text = risk_of(&o).await;
    assert!(
        text.contains(
            "trader [paper]: ACTIVE\n  equity 11500.00 USD (Hyperliquid 10000.00, Solana 1500.00), \
             baseline today 11500.00 USD, floor 500.00 USD, distance to the floor 500.00 USD"
        ),
        "{text}"
    );
    assert!(
        o.deputy_figures(Figures::Pnl)
            .await
            .contains("Solana (the SOL price source): wallet 1500.00 USD")
    );

    // The crash: SOL at 75, the Solana part 750, a loss of 750 > the 500 floor.
    sol.set_step(1);
    o.decide(&agent, Vec::new()).await;
    let text = risk_of(&o).await;
    assert!(
        text.contains(
            "HALTED (loss floor hit: equity 10750 USD, baseline 11500 USD, floor 500 USD)"
        ),
        "{text}"
    );
    assert!(
        text.contains("equity 10750.00 USD (Hyperliquid 10000.00, Solana 750.00)"),
        "{text}"
    );
    let store = vigil_orchestrator::Store::open(&dir.path().join("state.sqlite")).unwrap();
    let row = store.agent(&agent.id).deputy().unwrap();
    assert_eq!(
        (row.state, row.cause),
        (RiskState::Halted, Some(StateCause::LossFloor))
    );
}
