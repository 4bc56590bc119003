//! A deputy's crash day, live, end to end: the real confined signer and the loopback exchange
//! (judged by the official SDK and `@nktkas/hyperliquid`) following a seeded market path whose
//! scripted crash moves ETH −20 %. A long and a resting bid → the crash → the daily loss floor:
//! Halted persisted, the signer paused, the bid cancelled, the long closed by a reduce-only
//! order the exchange accepted. Halted survives a new orchestrator on the same SQLite; a new
//! opening order is refused by layer 2 (`RiskState`) and, forced past it, by the signer
//! (`agent_paused`), also when the orchestrator's own state is flipped to Active by hand. Only
//! `/resume` and the operator's code through the approver make it Active again.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use tempfile::TempDir;
use vigil_orchestrator::{AgentConfig, Figures, Orchestrator, Outcome, RiskState, StateCause};
use vigil_protocol::{Context, Intent, Op, SignRequest};
use vigil_testkit::Signer;
use vigil_testkit::config::{AgentSpec, ConfigBuilder, PerpSpec};
use vigil_testkit::hyperliquid::{self, Exchange};
use vigil_testkit::requests::ok;
use vigil_testkit::script::{Reply, Script};

const AGENT: &str = "trader";

/// The crash: one minute after the path starts.
const CRASH_AFTER_MS: u64 = 60_000;

fn order(side: &str, size: &str, px: &str, reduce_only: bool) -> Reply {
    Reply::decision(
        json!({"action": "perp_order", "asset": "ETH", "side": side, "size": size,
        "limit_px": px, "tif": "gtc", "reduce_only": reduce_only, "confidence": 0.9,
        "reasoning": "the scripted deputy proposes this order"}),
    )
}

/// ETH: 3 000 USD an order, 10 000 of position, 3x, 1 % from the mark; a floor of 300 USD.
fn deputy() -> AgentSpec {
    AgentSpec::new(AGENT)
        .actions(&["perp_order", "perp_cancel", "hold"])
        .perp(
            "testnet",
            "ETH",
            PerpSpec {
                max_order_usd_micros: 3_000_000_000,
                max_position_usd_micros: 10_000_000_000,
                leverage: 3,
                max_slippage_bps: 100,
            },
        )
        .loss_floor(300_000_000)
        .live("ETH")
        .confirm_transfers(false)
}

fn orchestrator(
    signer: &Signer,
    exchange: &Exchange,
    dir: &TempDir,
    replies: Vec<Reply>,
    round: u32,
) -> (Orchestrator, AgentConfig) {
    let script = dir.path().join(format!("script-{round}.toml"));
    Script::new().agent(AGENT, replies).write(&script);
    let o = ConfigBuilder::new(&signer.socket(), &dir.path().join("state.sqlite"))
        .scripted(&script)
        .hyperliquid("testnet", exchange.url())
        .agent(deputy())
        .orchestrator();
    let agent = o.agents()[0].clone();
    (o, agent)
}

async fn decide(o: &Orchestrator, agent: &AgentConfig) -> Outcome {
    o.decide(agent, Vec::new()).await.outcome
}

fn refused(outcome: &Outcome) -> (&str, &str, &str) {
    match outcome {
        Outcome::Refused {
            layer,
            rule,
            message,
        } => (layer, rule, message),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

async fn eth_position(exchange: &Exchange, master: &str) -> String {
    let state = exchange
        .post(
            "/info",
            &json!({"type": "clearinghouseState", "user": master}),
        )
        .await;
    state["assetPositions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|p| p["position"]["coin"] == "ETH")
        .map_or_else(
            || "0".into(),
            |p| p["position"]["szi"].as_str().unwrap().to_owned(),
        )
}

/// An opening order sent to the signer directly, past the orchestrator's layer 2.
async fn forced_opening(o: &Orchestrator) -> String {
    let intent: Intent = serde_json::from_value(json!({"kind": "perp_order",
        "chain": "hyperliquid", "network": "testnet", "asset": "ETH", "side": "buy",
        "size": "0.1", "limit_px": "2000", "tif": "gtc", "reduce_only": false}))
    .unwrap();
    let request = SignRequest {
        agent: AGENT.parse().unwrap(),
        intent,
        context: Context {
            perp_position: Some("0".to_owned().try_into().unwrap()),
            ..Context::default()
        },
        idempotency_key: "forced-open-1".parse().unwrap(),
    };
    match o.signer().lock().await.sign(request).await {
        Err(e) => e.to_string(),
        Ok(r) => panic!("the paused signer signed an opening order: {r:?}"),
    }
}

/// Flips the orchestrator's own state by hand; Active also takes the baseline away, so the
/// next tick takes it again at the equity then (as a resume does) instead of halting again.
fn set_state(o: &Orchestrator, agent: &AgentConfig, dir: &TempDir, state: RiskState) {
    let store = o.store().lock().unwrap();
    let cause = (state != RiskState::Active).then_some(StateCause::LossFloor);
    store
        .agent(&agent.id)
        .set_deputy_state(state, cause, "set by the test", 1)
        .unwrap();
    if state == RiskState::Active {
        let db = rusqlite::Connection::open(dir.path().join("state.sqlite")).unwrap();
        db.execute(
            "UPDATE deputy_risk SET baseline_day = NULL, baseline_equity = NULL",
            [],
        )
        .unwrap();
    }
}

#[tokio::test]
async fn the_loss_floor_cancels_closes_halts_survives_a_restart_and_resumes_only_with_the_code() {
    let signer = Signer::with(&[AGENT])
        .policy_toml(hyperliquid::TRADER_POLICY)
        .start();
    let hello = ok(signer.client().call(Op::Hello).unwrap());
    let (api, master) = hyperliquid::agent_addresses(&hello, 0, "hyperliquid:testnet");
    let t0 = u64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis(),
    )
    .unwrap();
    let exchange = Exchange::start_with(
        &[(&master, "10000", &[&api])],
        &json!({"require_canonical": true, "now_ms": t0,
                "path": {"seed": 19, "step_ms": 3_600_000, "vol_bps": 1, "start_ms": t0,
                         "events": [{"at_ms": t0 + CRASH_AFTER_MS, "coin": "ETH", "move_bps": -2000}]}}),
    );
    let dir = tempfile::tempdir().unwrap();
    let before = exchange.path_mid("ETH", t0).await;
    let after = exchange.path_mid("ETH", t0 + CRASH_AFTER_MS).await;
    let (b, a): (f64, f64) = (before.parse().unwrap(), after.parse().unwrap());
    assert!(
        (a / b - 0.8).abs() < 0.001,
        "the crash moves ETH −20 %: {before} → {after}"
    );

    // Before the crash: a long of 0.7 ETH (≈ 1 750 USD) and a bid far below the mark.
    let (o, agent) = orchestrator(
        &signer,
        &exchange,
        &dir,
        vec![
            order("buy", "0.7", &format!("{:.1}", b * 1.005), false),
            order("buy", "0.1", "1500", false),
            order("buy", "0.1", &format!("{:.1}", a), false),
        ],
        1,
    );
    let first = decide(&o, &agent).await;
    assert!(
        matches!(&first, Outcome::Signed { chain, .. } if chain.starts_with("filled 0.7")),
        "{first:?}"
    );
    let second = decide(&o, &agent).await;
    assert!(
        matches!(&second, Outcome::Signed { chain, .. } if chain.starts_with("resting")),
        "{second:?}"
    );
    assert_eq!(eth_position(&exchange, &master).await, "0.7");

    // The crash: 0.7 × −20 % ≈ −350 USD, past the floor of 300.
    exchange.set_now(Some(t0 + CRASH_AFTER_MS + 1_000)).await;
    let third = decide(&o, &agent).await;
    let (layer, rule, message) = refused(&third);
    assert_eq!((layer, rule), ("2", "RiskState"), "{message}");
    // The exchange's log: the bid cancelled, the long closed by a reduce-only order.
    let log = exchange.accepted().await;
    let after_crash: Vec<&Value> = log.iter().skip(3).collect();
    assert!(
        after_crash
            .iter()
            .any(|e| e["payload"]["action"]["type"] == "cancel"),
        "{after_crash:?}"
    );
    let close = after_crash
        .iter()
        .find(|e| e["payload"]["action"]["type"] == "order")
        .expect("a closing order was accepted");
    assert_eq!(
        close["payload"]["action"]["orders"][0]["r"], true,
        "{close}"
    );
    assert_eq!(
        close["payload"]["action"]["orders"][0]["b"], false,
        "{close}"
    );
    assert_eq!(eth_position(&exchange, &master).await, "0");
    // The signer holds the pause.
    let status = ok(signer.client().call(Op::Status).unwrap());
    assert_eq!(
        status["agents"][0]["paused"]["reason"], "loss_floor",
        "{status}"
    );
    drop(o);

    // A new orchestrator on the same SQLite: still halted; an opening order is refused by
    // layer 2.
    let (o, agent) = orchestrator(
        &signer,
        &exchange,
        &dir,
        vec![
            order("buy", "0.1", &format!("{:.1}", a), false),
            order("buy", "0.1", &format!("{:.1}", a), false),
            order("buy", "0.1", &format!("{:.1}", a * 1.005), false),
        ],
        2,
    );
    let risk = o.deputy_figures(Figures::Risk).await;
    assert!(risk.contains("HALTED (loss floor hit: equity"), "{risk}");
    let outcome = decide(&o, &agent).await;
    let (layer, rule, _) = refused(&outcome);
    assert_eq!((layer, rule), ("2", "RiskState"));

    // Forced past layer 2 (the orchestrator's own state flipped to Active by hand): the
    // signer's pause still refuses the opening order.
    set_state(&o, &agent, &dir, RiskState::Active);
    let outcome = decide(&o, &agent).await;
    let (layer, rule, message) = refused(&outcome);
    assert_eq!((layer, rule), ("3", "agent_paused"), "{message}");
    let forced = forced_opening(&o).await;
    assert!(forced.contains("agent_paused"), "{forced}");
    set_state(&o, &agent, &dir, RiskState::Halted);

    // /resume: the signer's request waits for the operator's code at the approver.
    let answer = o.request_deputy_resume(&agent.id).await.unwrap();
    assert!(answer.contains("approver"), "{answer}");
    let approver = signer.approver();
    let item = approver.only_item();
    ok(approver.answer_item(&item, signer.operator().code(), None));
    let last = decide(&o, &agent).await;
    assert!(
        matches!(&last, Outcome::Signed { .. }),
        "resumed, an opening order goes: {last:?}"
    );
    let risk = o.deputy_figures(Figures::Risk).await;
    assert!(risk.contains(": ACTIVE"), "{risk}");
}
