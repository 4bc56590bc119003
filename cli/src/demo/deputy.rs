//! Section 7 of `vigil demo`: a trading deputy on paper against a local Hyperliquid market
//! (`vigil_devnet::hyperliquid`, a seeded path in this process: no network, no Python). The
//! deputy (the `trader` agent, on the scripted LLM) opens a long that the paper engine fills at
//! the venue's mark, sees its PnL move with the mark, is refused by its position cap, and then
//! meets the scripted crash: the daily loss floor closes the long reduce-only, the deputy is
//! Halted and the signer holds the pause, as the signer's own `status` shows.

use std::path::Path;
use std::time::Duration;

use anyhow::Context as _;
use vigil_devnet::SignerProcess;
use vigil_devnet::hyperliquid::{Event, LocalMarket, MarketPath, usd_text};
use vigil_devnet::signer::{dev_init_hyperliquid_paper, hand_to_service_user};
use vigil_orchestrator::{Config, Figures, Orchestrator, SignerClient, Store};
use vigil_protocol::Op;

use super::{describe, result, section, str_of};

/// The path's seed: the same seed, the same demo.
const SEED: u64 = 19;
/// The step at which ETH falls 20 %.
const CRASH_STEP: u64 = 4;
/// ETH's index in the market (BTC is 0).
const ETH: usize = 1;
/// ETH's hourly funding rate on the demo's path (0.01 % an hour: a hot market's).
const FUNDING_RATE: &str = "0.0001";
/// A day, in seconds.
const DAY: u64 = 86_400;

/// Runs the section with a signer of its own (dev-init `--hyperliquid-paper`) under `dir`.
pub(super) fn run(
    runtime: &tokio::runtime::Runtime,
    dir: &tempfile::TempDir,
    signer_bin: &Path,
) -> anyhow::Result<()> {
    section("7. a trading deputy on paper against a local Hyperliquid market (seeded path)");
    let state = dir.path().join("deputy-signer-state");
    let socket = dir.path().join("deputy-signer.sock");
    let init = dev_init_hyperliquid_paper(signer_bin, &state, &["trader"])?;
    hand_to_service_user(dir.path())?;
    let mut signer_process = SignerProcess::new(signer_bin, &state, &socket, &init.passphrase_file);
    signer_process.start()?;
    println!(
        "  a signer of its own (dev-init --hyperliquid-paper: BTC and ETH perpetuals on hyperliquid:testnet), pid {}",
        signer_process.pid().unwrap_or_default()
    );
    let socket = socket.as_path();
    // The deputy's clock follows the market: step n is `start + n` hours, `start` today's
    // 00:00 UTC, so that the day's baseline holds across the steps and each step is one
    // funding hour (the paper engine books funding by the tick's clock, not wall time).
    let start = vigil_orchestrator::unix_now() / DAY * DAY;
    let path = MarketPath::btc_eth(SEED, 40, start * 1000)
        .with(Event::Funding {
            step: 0,
            coin: "ETH".into(),
            rate: FUNDING_RATE.into(),
        })
        .with(Event::Move {
            step: CRASH_STEP,
            coin: "ETH".into(),
            move_bps: -2000,
        });
    let mark = |step: u64| path.at(step).marks[ETH];
    let market = runtime
        .block_on(LocalMarket::start(path.clone()))
        .context("starting the local market")?;
    println!(
        "  market data on {} (/info meta, allMids, fundingHistory; /exchange takes no orders)",
        market.url
    );
    let script = dir.path().join("deputy-script.toml");
    std::fs::write(&script, replies(mark(1), mark(3), mark(CRASH_STEP)))
        .context("writing the deputy's script")?;
    let config = Config::from_toml(&config_toml(socket, dir.path(), &script, &market.url))?;
    let store = Store::open(&config.state_db)?;
    let signer = SignerClient::new(socket, Duration::from_secs(10));
    let o = Orchestrator::new(config, store, signer)?;
    let agent = o
        .agents()
        .first()
        .cloned()
        .context("the deputy's config has no agent")?;
    // Every scripted reply must pass layer 1 as written: a corrected reply would make the
    // scripted provider serve the next one (or cycle), and the demo would show another order
    // than the one it announces.
    let decide = |o: &Orchestrator, step: u64| {
        let now = start + step * path.step_ms / 1000;
        let decided = runtime.block_on(o.decide_at(&agent, Vec::new(), now));
        match decided.corrections.first() {
            None => Ok(decided.outcome),
            Some(why) => Err(anyhow::anyhow!(
                "the demo's scripted deputy sent a reply layer 1 rejected ({why}); fix the \
                 script in cli/src/demo/deputy.rs"
            )),
        }
    };

    for step in 0..=1 {
        let snap = market.set_step(step);
        println!(
            "  step {step}: BTC {} · ETH {} (the venue's mids)",
            usd_text(snap.marks[0]),
            usd_text(snap.marks[ETH])
        );
    }
    println!("  the deputy proposes a long of 0.4 ETH; the paper engine fills it at the mark:");
    println!("  {}", describe(&agent.id, &decide(&o, 1)?));
    print_figures(runtime, &o, Figures::Positions);

    for step in 2..=3 {
        market.set_step(step);
        println!("  step {step}: ETH {}", usd_text(mark(step)));
    }
    println!("  the deputy proposes 0.5 ETH more, past its 1500 USD position cap:");
    println!("  {}", describe(&agent.id, &decide(&o, 3)?));
    println!(
        "  two hours of funding booked at that tick (the market's rate {FUNDING_RATE} an hour, a long pays):"
    );
    print_figures(runtime, &o, Figures::Pnl);

    market.set_step(CRASH_STEP);
    println!(
        "  step {CRASH_STEP}: ETH {} → {} (the scripted crash, −20 %); the next tick:",
        usd_text(mark(CRASH_STEP - 1)),
        usd_text(mark(CRASH_STEP))
    );
    println!("  {}", describe(&agent.id, &decide(&o, CRASH_STEP)?));
    println!("  the risk engine closed the long reduce-only at the crashed mark (a paper fill):");
    print_figures(runtime, &o, Figures::Pnl);
    print_figures(runtime, &o, Figures::Risk);
    let mut c = vigil_protocol::Client::connect(socket, Duration::from_secs(10))
        .context("connecting to the signer")?;
    let status = result(c.call(Op::Status)?)?;
    for a in status["agents"].as_array().into_iter().flatten() {
        if a["agent"] == "trader" {
            println!(
                "  the signer's own status: trader paused = {} (only the operator's code at the approver clears it)",
                a["paused"]
                    .get("reason")
                    .map_or_else(|| "no".into(), str_of)
            );
        }
    }
    // The section's signer stops when `signer` drops.
    drop(o);
    drop(market);
    drop(signer_process);
    Ok(())
}

fn print_figures(runtime: &tokio::runtime::Runtime, o: &Orchestrator, which: Figures) {
    for line in runtime.block_on(o.deputy_figures(which)).lines() {
        println!("    {line}");
    }
}

/// The deputy's config: the trader on `hyperliquid:testnet` paper, ETH capped at 1000 USD an
/// order and 1500 USD of position, 3x, 0.5 % from the mark; a daily loss floor of 150 USD.
fn config_toml(socket: &Path, dir: &Path, script: &Path, market: &str) -> String {
    format!(
        r#"signer_socket = "{}"
state_db = "{}"
daily_llm_usd_cap_micros = 2_000_000
hyperliquid_urls = {{ testnet = "{market}" }}

[providers.scripted]
kind = "scripted"
script = "{}"
prices = {{ prompt_micros_per_mtok = 0, completion_micros_per_mtok = 0 }}

[[agents]]
id = "trader"
provider = "scripted"
model = "scripted"
temperature = 0.5
max_tokens = 600
schedule_secs = 30
mode = "paper"
hyperliquid_network = "testnet"
system_prompt = "You are a trading deputy: small positions, within your caps."
[agents.risk]
allowed_actions = ["perp_order", "perp_cancel", "hold"]
max_fraction_per_tx_bps = 1000
peers = []
[agents.risk.perps.ETH]
max_order_usd_micros = 1_000_000_000
max_position_usd_micros = 1_500_000_000
leverage = 3
max_slippage_bps = 50
[agents.risk.deputy]
daily_loss_floor_usd_micros = 150_000_000
"#,
        socket.display(),
        dir.join("deputy.sqlite").display(),
        script.display()
    )
}

/// The scripted deputy: a long of 0.4 ETH at step 1, 0.5 ETH more at step 3, and a buy at the
/// crash (each limit a whole dollar above the mark then, within 0.5 %).
fn replies(mark_1: u64, mark_3: u64, mark_crash: u64) -> String {
    let above = |m: u64| (m / 1_000_000 + 1).to_string();
    let order = |size: &str, px: String, why: &str| {
        format!(
            r#"'{{"action":"perp_order","asset":"ETH","side":"buy","size":"{size}","limit_px":"{px}","tif":"ioc","reduce_only":false,"confidence":0.8,"reasoning":"{why}"}}'"#
        )
    };
    format!(
        "[agents.trader]\nreplies = [\n  {},\n  {},\n  {},\n]\n",
        order("0.4", above(mark_1), "ETH trends up; a modest long."),
        order(
            "0.5",
            above(mark_3),
            "The long is steady; add to the winner."
        ),
        order(
            "0.2",
            above(mark_crash),
            "ETH fell 20 percent; buy the dip."
        ),
    )
}
