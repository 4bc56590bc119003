//! The paper crash day across `kill -9` of the real `vigil-orchestrator` daemon: the daemon in
//! paper mode, its deputy on the Rust local market (`vigil_devnet::hyperliquid`, a seeded path
//! whose step 1 is a scripted −20 % crash of ETH), the real confined signer, the scripted LLM
//! opening a long of 0.4 ETH. The test moves the market to the crash; the daemon's next tick
//! hits the daily loss floor: Halted persisted, the long closed by a reduce-only paper fill
//! the paused signer allowed, the signer's `status` showing `loss_floor`. Then the daemon is
//! killed with SIGKILL and started again on the same state: still Halted, its new opening
//! order refused by layer 2 (`RiskState`), the same order sent straight to the signer (as a
//! compromised orchestrator would) refused with `agent_paused`. Only `/resume` in the bot and
//! the operator's code through the approver make it Active again, and its next opening order
//! fills. Everything is read from outside the daemon: its SQLite opened read-only, the
//! signer's socket, the bot's chat, the daemon's log. Every wait is bounded and names what it
//! waited for.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::time::{Duration, Instant};

use rusqlite::{Connection, OpenFlags, OptionalExtension};
use serde_json::{Value, json};
use vigil_devnet::hyperliquid::{Event, LocalMarket, MarketPath, usd_text};
use vigil_orchestrator::SignerClient;
use vigil_protocol::{Context, Intent, Op, SignRequest};
use vigil_testkit::config::{AgentSpec, ConfigBuilder, PerpSpec};
use vigil_testkit::daemon::{BotToken, Daemon};
use vigil_testkit::hyperliquid::TRADER_POLICY;
use vigil_testkit::requests::ok;
use vigil_testkit::script::{Reply, Script};
use vigil_testkit::telegram::{Chat, Emulator, OPERATOR};
use vigil_testkit::{Signer, require_root, unix_now};

const AGENT: &str = "trader";
/// ETH's index in the local market (BTC is 0).
const ETH: usize = 1;
/// How long any one thing the daemon does may take to show.
const WAIT_SECS: u64 = 30;

/// A buy of `size` ETH, IOC, at `px` (within the 0.5 % band of the mark it is meant for).
fn buy(size: &str, px: &str) -> Reply {
    Reply::decision(
        json!({"action": "perp_order", "asset": "ETH", "side": "buy",
        "size": size, "limit_px": px, "tif": "ioc", "reduce_only": false, "confidence": 0.8,
        "reasoning": "The scripted deputy opens a long of ETH here."}),
    )
}

/// The deputy: paper, ticking every second, ETH at most 1 000 USD an order and 1 200 of
/// position, 3x, 0.5 % from the mark; a daily loss floor of 150 USD.
fn deputy() -> AgentSpec {
    AgentSpec::new(AGENT)
        .every(1)
        .actions(&["perp_order", "perp_cancel", "hold"])
        .perp(
            "testnet",
            "ETH",
            PerpSpec {
                max_order_usd_micros: 1_000_000_000,
                max_position_usd_micros: 1_200_000_000,
                leverage: 3,
                max_slippage_bps: 50,
            },
        )
        .loss_floor(150_000_000)
}

/// The daemon's state, opened read-only (the daemon owns it).
fn db(path: &Path) -> Connection {
    Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY)
        .unwrap_or_else(|e| panic!("opening {} read-only: {e}", path.display()))
}

/// The deputy's state and why, as the daemon persisted it (none before its first tick).
fn risk_state(state: &Path) -> Option<(String, Option<String>, String)> {
    db(state)
        .query_row(
            "SELECT state, cause, detail FROM deputy_risk WHERE agent = ?1",
            [AGENT],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .optional()
        .unwrap_or_else(|e| panic!("reading deputy_risk: {e}"))
}

/// The paper fills of ETH: (side, size, price), in order.
fn fills(state: &Path) -> Vec<(String, f64, f64)> {
    if !state.exists() {
        return Vec::new();
    }
    let db = db(state);
    let mut q = match db.prepare(
        "SELECT side, size, px FROM perp_fills WHERE agent = ?1 AND mode = 'paper' AND coin = 'ETH' ORDER BY id",
    ) {
        Ok(q) => q,
        // The table is made at the daemon's first start; before that there is nothing.
        Err(_) => return Vec::new(),
    };
    q.query_map([AGENT], |r| {
        let (side, size, px): (String, String, String) = (r.get(0)?, r.get(1)?, r.get(2)?);
        Ok((side, size.parse().unwrap(), px.parse().unwrap()))
    })
    .unwrap()
    .map(Result::unwrap)
    .collect()
}

/// The paper position in ETH (0 when there is none).
fn position(state: &Path) -> f64 {
    db(state)
        .query_row(
            "SELECT size FROM perp_positions WHERE agent = ?1 AND mode = 'paper' AND coin = 'ETH'",
            [AGENT],
            |r| r.get::<_, String>(0),
        )
        .optional()
        .unwrap()
        .map_or(0.0, |s| s.parse().unwrap())
}

/// The refusals the daemon recorded after decision `after`: (id, layer, rule).
fn refusals_after(state: &Path, after: i64) -> Vec<(i64, String, String)> {
    let db = db(state);
    let mut q = db
        .prepare(
            "SELECT id, CAST(layer AS TEXT), rule FROM decisions WHERE agent = ?1 AND id > ?2 AND outcome = 'refused' ORDER BY id",
        )
        .unwrap();
    q.query_map(rusqlite::params![AGENT, after], |r| {
        Ok((r.get(0)?, r.get(1)?, r.get(2)?))
    })
    .unwrap()
    .map(Result::unwrap)
    .collect()
}

/// The last decision's id (0 before any).
fn last_decision(state: &Path) -> i64 {
    db(state)
        .query_row(
            "SELECT COALESCE(MAX(id), 0) FROM decisions WHERE agent = ?1",
            [AGENT],
            |r| r.get(0),
        )
        .unwrap()
}

/// The signer's pause of the trader (`loss_floor`, ...), from its own `status`.
fn signer_pause(signer: &Signer) -> Option<String> {
    let status = ok(signer.client().call(Op::Status).unwrap());
    let agent = status["agents"]
        .as_array()
        .and_then(|a| a.iter().find(|a| a["agent"] == AGENT))
        .unwrap_or_else(|| panic!("the signer's status names no {AGENT}: {status}"));
    agent["paused"]
        .get("reason")
        .and_then(Value::as_str)
        .map(str::to_owned)
}

/// Polls `check` every 100 ms until it gives a value, for at most [`WAIT_SECS`]; fails naming
/// `what` and the daemon's log otherwise.
async fn wait_for<T>(what: &str, daemon: &Daemon, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(WAIT_SECS);
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "waited {WAIT_SECS} s for {what}; the daemon's log:\n{}",
            daemon.log_text()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// An opening order sent to the signer directly, past the daemon's layer 2: its error.
async fn forced_opening(socket: &Path, px: &str) -> String {
    let intent: Intent = serde_json::from_value(json!({"kind": "perp_order",
        "chain": "hyperliquid", "network": "testnet", "asset": "ETH", "side": "buy",
        "size": "0.1", "limit_px": px, "tif": "ioc", "reduce_only": false}))
    .unwrap();
    let request = SignRequest {
        agent: AGENT.parse().unwrap(),
        intent,
        context: Context {
            perp_position: Some("0".to_owned().try_into().unwrap()),
            ..Context::default()
        },
        idempotency_key: format!("forced-open-{}", unix_now()).parse().unwrap(),
    };
    let mut client = SignerClient::new(socket, Duration::from_secs(10));
    match client.sign(request).await {
        Err(e) => e.to_string(),
        Ok(r) => panic!("the paused signer signed an opening order: {r:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_on_paper_halts_at_the_floor_stays_halted_across_kill_9_and_resumes_only_with_the_code()
 {
    if !require_root("the operator's code reaches the signer through the approver's own uid") {
        return;
    }
    let signer = Signer::with(&[AGENT]).policy_toml(TRADER_POLICY).start();
    let path = MarketPath::btc_eth(19, 0, unix_now() * 1000).with(Event::Move {
        step: 1,
        coin: "ETH".into(),
        move_bps: -2000,
    });
    let (before, after) = (path.at(0).marks[ETH], path.at(1).marks[ETH]);
    assert_eq!((before, after), (2_000_000_000, 1_600_000_000));
    let market = LocalMarket::start(path).await.unwrap();
    let telegram = Emulator::start();
    let work = tempfile::tempdir().unwrap();
    let state = work.path().join("state.sqlite3");
    let script = work.path().join("script.toml");
    let config = ConfigBuilder::new(&signer.socket(), &state)
        .scripted(&script)
        .hyperliquid("testnet", &market.url)
        .telegram(&telegram.url, &[OPERATOR])
        .agent(deputy())
        .write(&work.path().join("orchestrator.toml"));

    // Day one: a long of 0.4 ETH at 2 000 (800 USD), then it holds.
    Script::new()
        .agent(
            AGENT,
            std::iter::once(buy("0.4", "2005")).chain(std::iter::repeat_n(Reply::hold(), 600)),
        )
        .write(&script);
    let daemon = Daemon::start(work.path(), &config, BotToken::Given);
    let opened = wait_for("the paper fill of the 0.4 ETH long", &daemon, || {
        fills(&state).first().cloned()
    })
    .await;
    assert_eq!(opened.0, "buy");
    // A Hyperliquid-only deputy has no Solana network: the start's network check is quiet.
    let log = daemon.log_text();
    assert!(!log.contains("network check"), "{log}");
    assert!((opened.1 - 0.4).abs() < 1e-9, "{opened:?}");
    assert!((2000.0..=2005.0).contains(&opened.2), "{opened:?}");
    assert_eq!(risk_state(&state).map(|s| s.0).as_deref(), Some("active"));
    assert_eq!(signer_pause(&signer), None);

    // The crash: 0.4 × −400 = −160 USD, past the floor of 150. The daemon's next tick halts
    // and closes.
    market.set_step(1);
    let halted = wait_for("the deputy Halted by the loss floor", &daemon, || {
        risk_state(&state).filter(|s| s.0 == "halted")
    })
    .await;
    assert_eq!(halted.1.as_deref(), Some("loss_floor"), "{halted:?}");
    assert!(halted.2.contains("loss floor hit"), "{halted:?}");
    let close = wait_for("the closing paper fill", &daemon, || {
        fills(&state).get(1).cloned()
    })
    .await;
    // Reduce-only: a sell of exactly the long, at the crashed mark moved against it by at most
    // 0.5 %, leaving the position flat (not short).
    assert_eq!(close.0, "sell", "{close:?}");
    assert!((close.1 - 0.4).abs() < 1e-9, "{close:?}");
    assert!((1592.0..=1600.0).contains(&close.2), "{close:?}");
    assert!(position(&state).abs() < 1e-12);
    let reason = wait_for("the signer's pause", &daemon, || signer_pause(&signer)).await;
    assert_eq!(reason, "loss_floor");
    let log = daemon
        .wait_for_log("closing flow: perp_order", WAIT_SECS)
        .await;
    // The paper engine's own words: a reduce-only sell (`reduce (sell)`), not a new short.
    let closing = log
        .lines()
        .find(|l| l.contains("closing flow: perp_order"))
        .unwrap_or_default();
    assert!(
        closing.contains("PAPER sell 0.4 ETH") && closing.contains("reduce (sell) 0.4 ETH-PERP"),
        "{closing}"
    );
    let mut chat = Chat::new(&telegram, OPERATOR);
    chat.expect("loss floor hit").await;

    // kill -9, and a daemon again on the same state whose deputy now wants to buy the dip.
    let first_log = daemon.log.clone();
    daemon.kill();
    let before_restart = last_decision(&state);
    let fills_before = fills(&state).len();
    let dip = usd_text(after + 4_000_000);
    Script::new()
        .agent(AGENT, [buy("0.1", &dip)])
        .write(&script);
    let daemon = Daemon::start(work.path(), &config, BotToken::Given);
    assert_ne!(daemon.log, first_log, "a new daemon, a new log");
    assert_eq!(
        risk_state(&state).map(|s| s.0).as_deref(),
        Some("halted"),
        "Halted survives kill -9"
    );
    let refused = wait_for(
        "two refusals of the new daemon's opening orders",
        &daemon,
        || {
            let r = refusals_after(&state, before_restart);
            (r.len() >= 2).then_some(r)
        },
    )
    .await;
    for (_, layer, rule) in &refused {
        assert_eq!(
            (layer.as_str(), rule.as_str()),
            ("2", "RiskState"),
            "{refused:?}"
        );
    }
    assert_eq!(
        fills(&state).len(),
        fills_before,
        "nothing filled while halted"
    );
    // Past layer 2, straight to the signer: its pause refuses the opening order.
    let forced = forced_opening(&signer.socket(), &dip).await;
    assert!(forced.contains("agent_paused"), "{forced}");
    assert_eq!(signer_pause(&signer).as_deref(), Some("loss_floor"));

    // No code, no resume: the bot's /resume only asks; the approver carries the code.
    chat.ask("/resume trader", "approver").await;
    let approver = signer.approver();
    let item = approver.only_item();
    // A tick after the request, before the code: still refused, still Halted.
    let asked = last_decision(&state);
    wait_for("a tick of the daemon after /resume", &daemon, || {
        refusals_after(&state, asked).first().cloned()
    })
    .await;
    assert_eq!(
        risk_state(&state).map(|s| s.0).as_deref(),
        Some("halted"),
        "asking is not resuming"
    );
    assert_eq!(signer_pause(&signer).as_deref(), Some("loss_floor"));
    ok(approver.answer_item(&item, signer.operator().code(), None));
    assert_eq!(
        signer_pause(&signer),
        None,
        "the code cleared the signer's pause"
    );
    wait_for("the deputy Active again", &daemon, || {
        risk_state(&state).filter(|s| s.0 == "active")
    })
    .await;
    let reopened = wait_for("the resumed deputy's opening paper fill", &daemon, || {
        fills(&state).get(fills_before).cloned()
    })
    .await;
    assert_eq!(reopened.0, "buy", "{reopened:?}");
    assert!((reopened.1 - 0.1).abs() < 1e-9, "{reopened:?}");
    daemon.kill();
}
