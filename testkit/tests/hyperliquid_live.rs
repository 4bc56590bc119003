//! The orchestrator's live Hyperliquid path end to end against real peers: the real confined
//! signer (a policy with a `hyperliquid:testnet` table) and the loopback exchange judged by the
//! official Python SDK and `@nktkas/hyperliquid` (`require_canonical`), the agent's master
//! funded there and its API wallet registered. A live proposal sets leverage first, is signed,
//! recorded, posted and accepted, and its position read back from `/info` and reconciled;
//! layer 2 and the signer each refuse what is theirs; paper proposes the same order; the keeper
//! keeps resting orders alive past `cancel_after_secs` and they die once it stops; a position
//! the store does not know is alerted and holds opening orders until acknowledged.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use serde_json::{Value, json};
use tempfile::TempDir;
use vigil_orchestrator::{AgentConfig, HlState, HyperliquidApi, Orchestrator, Outcome};
use vigil_protocol::{AgentId, Op};
use vigil_testkit::Signer;
use vigil_testkit::alerts::Alerts;
use vigil_testkit::config::{AgentSpec, ConfigBuilder, PerpSpec};
use vigil_testkit::hyperliquid::{self, Exchange};
use vigil_testkit::requests::ok;
use vigil_testkit::script::{Reply, Script};

const AGENT: &str = "trader";

struct World {
    signer: Signer,
    exchange: Exchange,
    master: String,
    dir: TempDir,
}

impl World {
    fn start() -> World {
        let signer = Signer::with(&[AGENT])
            .policy_toml(hyperliquid::TRADER_POLICY)
            .start();
        let hello = ok(signer.client().call(Op::Hello).unwrap());
        let (api, master) = hyperliquid::agent_addresses(&hello, 0, "hyperliquid:testnet");
        let exchange = Exchange::start_with(
            &[(&master, "10000", &[&api])],
            &json!({"require_canonical": true}),
        );
        World {
            signer,
            exchange,
            master,
            dir: tempfile::tempdir().unwrap(),
        }
    }

    /// An orchestrator (its own state file `state`) for `spec`, the model answering `replies`.
    fn orchestrator(
        &self,
        state: &str,
        spec: AgentSpec,
        replies: Vec<Reply>,
    ) -> (Orchestrator, AgentConfig) {
        let script = self.dir.path().join(format!("{state}.toml"));
        Script::new().agent(AGENT, replies).write(&script);
        let orchestrator = ConfigBuilder::new(&self.signer.socket(), &self.dir.path().join(state))
            .scripted(&script)
            .hyperliquid("testnet", self.exchange.url())
            .keeper(5, 8)
            .agent(spec)
            .orchestrator();
        let agent = orchestrator.agents()[0].clone();
        (orchestrator, agent)
    }

    fn api(&self) -> HyperliquidApi {
        HyperliquidApi::new(self.exchange.url(), Duration::from_secs(10)).unwrap()
    }
}

/// ETH within 3 000 USD an order (above the signer's 2 000) and 10 000 of position, 3x.
fn paper_trader() -> AgentSpec {
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
}

fn live_trader() -> AgentSpec {
    paper_trader().live("ETH").confirm_transfers(false)
}

fn order(side: &str, size: &str, px: &str, reduce_only: bool) -> Reply {
    Reply::decision(
        json!({"action": "perp_order", "asset": "ETH", "side": side, "size": size,
        "limit_px": px, "tif": "gtc", "reduce_only": reduce_only, "confidence": 0.9,
        "reasoning": "the scripted trader proposes this order"}),
    )
}

async fn decide(o: &Orchestrator, agent: &AgentConfig) -> Outcome {
    o.decide(agent, Vec::new()).await.outcome
}

/// The venue's answer phrase of a signed outcome.
fn posted(outcome: &Outcome) -> &str {
    match outcome {
        Outcome::Signed { chain, .. } => chain,
        other => panic!("expected a signed and posted order, got {other:?}"),
    }
}

fn kinds(log: &[Value]) -> Vec<String> {
    log.iter()
        .map(|e| e["payload"]["action"]["type"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn a_live_order_sets_leverage_first_is_posted_accepted_and_reconciled() {
    let w = World::start();
    let replies = vec![
        // Rounded to the grid (0.4 at 2510), crosses the mid 2500: fills.
        order("buy", "0.40004", "2510.06", false),
        order("buy", "0.2", "2400", false),
        // 2 × 2500 = 5 000 USD: above the agent's 3 000 per order (layer 2).
        order("buy", "2", "2500", false),
        // 1 × 2500 = 2 500 USD: within the agent's 3 000, above the signer's 2 000.
        order("buy", "1", "2500", false),
    ];
    let (o, agent) = w.orchestrator("live.sqlite", live_trader(), replies);
    let first = decide(&o, &agent).await;
    assert!(
        posted(&first).starts_with("filled 0.4 at 2500"),
        "{first:?}"
    );
    let second = decide(&o, &agent).await;
    assert!(
        posted(&second).starts_with("resting as order "),
        "{second:?}"
    );

    let Outcome::Refused { layer, rule, .. } = decide(&o, &agent).await else {
        panic!("layer 2 refuses the order over the agent's cap")
    };
    assert_eq!((layer.as_str(), rule.as_str()), ("2", "PerpOrderNotional"));
    let Outcome::Refused {
        layer,
        rule,
        message,
    } = decide(&o, &agent).await
    else {
        panic!("the signer refuses the order over its cap")
    };
    assert_eq!(
        (layer.as_str(), rule.as_str()),
        ("3", "per_tx_cap"),
        "{message}"
    );

    // Leverage once, before the first order; then the two orders. Every body was accepted
    // as the signer wrote it (canonical key order), signed by the agent's API wallet.
    let log = w.exchange.accepted().await;
    assert_eq!(kinds(&log), ["updateLeverage", "order", "order"]);
    assert_eq!(log[0]["payload"]["action"]["leverage"], 3);
    assert_eq!(log[1]["payload"]["action"]["orders"][0]["s"], "0.4");
    assert_eq!(log[1]["payload"]["action"]["orders"][0]["p"], "2510");
    assert!(log.iter().all(|e| e["canonical"] == true), "{log:?}");
    assert!(w.exchange.disagreements().await.is_empty());

    // The store recorded each body before the post, and the venue's answer after it.
    {
        let store = o.store().lock().unwrap();
        let rows = store
            .hl_orders(
                AGENT,
                vigil_protocol::Network::Testnet,
                &[HlState::Filled, HlState::Resting],
            )
            .unwrap();
        assert_eq!(rows.len(), 2, "{rows:?}");
        for (row, accepted) in rows.iter().zip(&log[1..]) {
            let body = base64::engine::general_purpose::STANDARD
                .decode(&row.body)
                .unwrap();
            let sent: Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(
                sent, accepted["payload"],
                "the recorded body is what was posted"
            );
        }
    }

    // The position, read independently from /info, is what the store booked; reconciliation
    // finds nothing, and what the signer counted is what the orchestrator recorded.
    let account = w.api().account(&w.master).await.unwrap();
    assert_eq!(account.positions.len(), 1);
    assert_eq!(account.positions[0].szi.text(), "0.4");
    assert_eq!(o.reconcile().await, Vec::<String>::new());
    assert_eq!(w.signer.spent_of(AGENT, "ETH"), 1_004_000_000 + 480_000_000);

    // Paper proposes the same order for the same proposal: the same grid, the same size.
    let (paper, agent) = w.orchestrator(
        "paper.sqlite",
        paper_trader(),
        vec![order("buy", "0.40004", "2510.06", false)],
    );
    let Outcome::PaperFilled { summary } = decide(&paper, &agent).await else {
        panic!("paper fills at the mark")
    };
    assert!(
        summary.starts_with("PAPER buy 0.4 ETH at 2501.25"),
        "{summary}"
    );
    // The operator reads its USD value at the venue's mark (allMids 2500) and the leverage.
    assert!(
        summary.contains("long 0.4 ETH-PERP ≈ $1,000.00, 3x"),
        "{summary}"
    );
    assert_eq!(w.exchange.accepted().await.len(), 3, "paper posts nothing");
}

#[tokio::test]
async fn the_keeper_keeps_resting_orders_alive_and_they_die_once_it_stops() {
    let w = World::start();
    let (o, agent) = w.orchestrator(
        "keeper.sqlite",
        live_trader(),
        vec![order("buy", "0.2", "2400", false)],
    );
    let started = std::time::Instant::now();
    assert_eq!(o.keep_alive().await, Vec::<String>::new());
    assert!(posted(&decide(&o, &agent).await).starts_with("resting"));
    // Refreshed every 4 s for 12 s: past the 8 s the switch is set ahead.
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_secs(4)).await;
        assert_eq!(o.keep_alive().await, Vec::<String>::new());
    }
    assert!(started.elapsed() > Duration::from_secs(8));
    let open = w.api().open_orders(&w.master).await.unwrap();
    assert_eq!(open.len(), 1, "alive past cancel_after_secs");
    let refreshes = |log: &[Value]| kinds(log).iter().filter(|k| *k == "scheduleCancel").count();
    assert_eq!(refreshes(&w.exchange.accepted().await), 4);

    // Paused: no more refreshes; once the last schedule passes, the order is gone.
    o.set_paused_by(&agent.id, true, "the test");
    assert_eq!(o.keep_alive().await, Vec::<String>::new());
    assert_eq!(refreshes(&w.exchange.accepted().await), 4);
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis();
    w.exchange
        .set_now(Some(u64::try_from(now_ms).unwrap() + 9_000))
        .await;
    assert!(w.api().open_orders(&w.master).await.unwrap().is_empty());

    // A venue that does not answer: alerted once per streak, not at every tick.
    let down = ConfigBuilder::new(&w.signer.socket(), &w.dir.path().join("down.sqlite"))
        .scripted(&w.dir.path().join("keeper.sqlite.toml"))
        .hyperliquid("testnet", "http://127.0.0.1:9")
        .keeper(5, 8)
        .agent(live_trader())
        .orchestrator();
    let first = down.keep_alive().await;
    assert_eq!(first.len(), 1, "{first:?}");
    assert!(first[0].contains("could not be refreshed"), "{first:?}");
    assert_eq!(down.keep_alive().await, Vec::<String>::new());
}

#[tokio::test]
async fn a_position_the_store_does_not_know_is_alerted_and_holds_opening_orders() {
    let w = World::start();
    // Outside the orchestrator: leverage and a filled order signed by the signer directly.
    let mut c = w.signer.client();
    let net = |mut i: Value| {
        i["chain"] = json!("hyperliquid");
        i["network"] = json!("testnet");
        i
    };
    for (key, intent, context) in [
        (
            "x1",
            net(json!({"kind": "perp_leverage", "asset": "ETH", "leverage": 3, "cross": true})),
            json!({}),
        ),
        (
            "x2",
            net(
                json!({"kind": "perp_order", "asset": "ETH", "side": "buy", "size": "0.1",
            "limit_px": "2500", "tif": "gtc", "reduce_only": false}),
            ),
            json!({"perp_position": "0"}),
        ),
    ] {
        let r = json!({"v": 1, "id": "r", "op": "sign", "agent": AGENT, "intent": intent,
                       "context": context, "idempotency_key": key});
        let signed = ok(c.call_raw(&serde_json::to_vec(&r).unwrap()).unwrap());
        let body = base64::engine::general_purpose::STANDARD
            .decode(signed["tx"].as_str().unwrap())
            .unwrap();
        let answer = w
            .exchange
            .post_text("/exchange", String::from_utf8(body).unwrap())
            .await;
        assert_eq!(answer["status"], "ok", "{answer}");
    }

    let replies = vec![
        order("buy", "0.1", "2500", false),
        order("buy", "0.1", "2500", false),
    ];
    let (mut o, agent) = w.orchestrator("recon.sqlite", live_trader(), replies);
    let alerts = Alerts::default();
    o.set_operator(Arc::new(alerts.clone()));
    let report = o.reconcile().await;
    assert!(
        report
            .iter()
            .any(|l| l.contains("the venue shows a position of 0.1") && l.contains("add up to 0")),
        "{report:?}"
    );
    let Outcome::Refused {
        layer,
        rule,
        message,
    } = decide(&o, &agent).await
    else {
        panic!("opening orders are held")
    };
    assert_eq!(
        (layer.as_str(), rule.as_str()),
        ("2", "PerpReconcile"),
        "{message}"
    );
    // One alert for these differences, however often they are seen.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let said: Vec<String> = alerts
        .all()
        .into_iter()
        .filter(|a| a.contains("/reconciled trader"))
        .collect();
    assert_eq!(said.len(), 1, "{said:?}");

    let id: AgentId = AGENT.parse().unwrap();
    let answer = o.acknowledge_reconciliation(&id).await;
    assert!(answer.starts_with("acknowledged for trader"), "{answer}");
    assert!(posted(&decide(&o, &agent).await).starts_with("filled 0.1"));
}
