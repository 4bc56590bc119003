//! Paper and live produce the same orders for the same path. One seeded market path
//! (`vigil_devnet::hyperliquid::MarketPath`, ETH −20 % at step 4) and one script of replies
//! (open a long, add to it, reduce it, then buy at the crash), run twice through the real
//! signer: once on paper against the Rust local market serving the path, once live against
//! the loopback exchange (`tests/peers/hyperliquid`, checked by the official SDK) whose mids
//! the test sets to the path's marks step by step. Each run has its own signer (same policy),
//! reached through an observer: a Unix-socket relay in this process that records every request
//! frame the orchestrator sends before passing it on unchanged, the one place paper
//! (`dry_run`) and live (`sign`) both pass. The sequences of Hyperliquid intents the signer
//! received (kind, coin, side, size, limit price, tif, reduce-only, leverage, margin mode) must
//! be identical, and be the expected five: the leverage, the three orders of the script and the
//! loss floor's reduce-only close.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};
use vigil_devnet::hyperliquid::{Event, LocalMarket, MarketPath, usd_text};
use vigil_orchestrator::{AgentConfig, Orchestrator, Outcome};
use vigil_protocol::Op;
use vigil_testkit::Signer;
use vigil_testkit::config::{AgentSpec, ConfigBuilder, PerpSpec};
use vigil_testkit::hyperliquid::{self, Exchange, TRADER_POLICY};
use vigil_testkit::requests::ok;
use vigil_testkit::script::{Reply, Script};

const AGENT: &str = "trader";
const ETH: usize = 1;
/// The step of the crash.
const CRASH: u64 = 4;

/// A relay in front of a signer's socket that records every request frame.
struct Observer {
    socket: PathBuf,
    frames: Arc<Mutex<Vec<Value>>>,
    accept: tokio::task::JoinHandle<()>,
}

impl Observer {
    /// Listens on `<dir>/observer.sock`, relaying each connection to `signer`.
    fn start(signer: &Path, dir: &Path) -> Observer {
        let socket = dir.join("observer.sock");
        let listener = UnixListener::bind(&socket).unwrap();
        let frames = Arc::new(Mutex::new(Vec::new()));
        let (seen, upstream) = (frames.clone(), signer.to_owned());
        let accept = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let server = UnixStream::connect(&upstream).await.unwrap();
                tokio::spawn(relay(client, server, seen.clone()));
            }
        });
        Observer {
            socket,
            frames,
            accept,
        }
    }

    /// The Hyperliquid intents of the requests so far, each as the fields the venue acts on.
    fn intents(&self) -> Vec<Value> {
        self.frames
            .lock()
            .unwrap()
            .iter()
            .filter_map(|f| f.get("intent"))
            .filter(|i| i["chain"] == "hyperliquid")
            .map(|i| {
                let keys = [
                    "kind",
                    "asset",
                    "side",
                    "size",
                    "limit_px",
                    "tif",
                    "reduce_only",
                    "leverage",
                    "cross",
                ];
                keys.iter()
                    .filter_map(|k| i.get(*k).map(|v| ((*k).to_owned(), v.clone())))
                    .collect::<serde_json::Map<_, _>>()
                    .into()
            })
            .collect()
    }

    /// The ops of the requests so far, in order.
    fn ops(&self) -> Vec<String> {
        self.frames
            .lock()
            .unwrap()
            .iter()
            .map(|f| f["op"].as_str().unwrap_or_default().to_owned())
            .collect()
    }
}

impl Drop for Observer {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

/// Copies the signer's answers back as they are; reads the client's frames (4-byte big-endian
/// length, then JSON), records each, passes it on.
async fn relay(client: UnixStream, server: UnixStream, seen: Arc<Mutex<Vec<Value>>>) {
    let (mut from_client, mut to_client) = client.into_split();
    let (mut from_server, mut to_server) = server.into_split();
    let answers = tokio::spawn(async move {
        let _ = tokio::io::copy(&mut from_server, &mut to_client).await;
    });
    loop {
        let mut len = [0u8; 4];
        if from_client.read_exact(&mut len).await.is_err() {
            break;
        }
        let mut body = vec![0u8; u32::from_be_bytes(len) as usize];
        if from_client.read_exact(&mut body).await.is_err() {
            break;
        }
        if let Ok(frame) = serde_json::from_slice::<Value>(&body) {
            seen.lock().unwrap().push(frame);
        }
        if to_server.write_all(&len).await.is_err() || to_server.write_all(&body).await.is_err() {
            break;
        }
    }
    answers.abort();
}

fn order(side: &str, size: &str, px: u64, reduce_only: bool, why: &str) -> Reply {
    Reply::decision(json!({"action": "perp_order", "asset": "ETH", "side": side,
        "size": size, "limit_px": px.to_string(), "tif": "ioc", "reduce_only": reduce_only,
        "confidence": 0.8, "reasoning": why}))
}

/// The same replies for both runs, from the path's marks: at steps 1 to 4, a long of 0.4
/// (limit a dollar above the mark, whole dollars), 0.2 more, a reduce-only sell of 0.1 (a
/// dollar below), and a buy at the crash that the halted deputy never sends.
fn script(path: &MarketPath) -> Script {
    let mark = |step| path.at(step).marks[ETH] / 1_000_000;
    Script::new().agent(
        AGENT,
        [
            order(
                "buy",
                "0.4",
                mark(1) + 1,
                false,
                "ETH trends up; open a modest long.",
            ),
            order(
                "buy",
                "0.2",
                mark(2) + 1,
                false,
                "The long works; add a little to it.",
            ),
            order(
                "sell",
                "0.1",
                mark(3) - 1,
                true,
                "Take some profit off the long here.",
            ),
            order(
                "buy",
                "0.1",
                mark(CRASH) + 1,
                false,
                "ETH fell hard; buy a little of it.",
            ),
        ],
    )
}

/// ETH: 1 500 USD an order, 2 500 of position, 3x, 1 % from the mark; a floor of 150 USD.
fn deputy(live: bool) -> AgentSpec {
    let spec = AgentSpec::new(AGENT)
        .actions(&["perp_order", "perp_cancel", "hold"])
        .perp(
            "testnet",
            "ETH",
            PerpSpec {
                max_order_usd_micros: 1_500_000_000,
                max_position_usd_micros: 2_500_000_000,
                leverage: 3,
                max_slippage_bps: 100,
            },
        )
        .loss_floor(150_000_000)
        .confirm_transfers(false);
    if live { spec.live("ETH") } else { spec }
}

fn orchestrator(
    observer: &Observer,
    dir: &Path,
    url: &str,
    path: &MarketPath,
    live: bool,
) -> (Orchestrator, AgentConfig) {
    let replies = dir.join("script.toml");
    script(path).write(&replies);
    let o = ConfigBuilder::new(&observer.socket, &dir.join("state.sqlite"))
        .scripted(&replies)
        .hyperliquid("testnet", url)
        .agent(deputy(live))
        .orchestrator();
    let agent = o.agents()[0].clone();
    (o, agent)
}

/// Steps 1 to 4 of the path, one decision each, after `set_marks(step)`; the outcomes.
async fn run<F, Fut>(o: &Orchestrator, agent: &AgentConfig, mut set_marks: F) -> Vec<Outcome>
where
    F: FnMut(u64) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let mut outcomes = Vec::new();
    for step in 1..=CRASH {
        set_marks(step).await;
        let decided = o.decide(agent, Vec::new()).await;
        assert!(
            decided.corrections.is_empty(),
            "step {step}: layer 1 corrected the script: {:?}",
            decided.corrections
        );
        outcomes.push(decided.outcome);
    }
    outcomes
}

/// The outcomes of a run: three orders through, the crash refused by the halted deputy.
fn check_outcomes(mode: &str, outcomes: &[Outcome]) {
    for (i, outcome) in outcomes[..3].iter().enumerate() {
        assert!(
            matches!(
                outcome,
                Outcome::Signed { .. } | Outcome::PaperFilled { .. }
            ),
            "{mode}, step {}: {outcome:?}",
            i + 1
        );
    }
    assert!(
        matches!(&outcomes[3], Outcome::Refused { layer, rule, .. } if layer == "2" && rule == "RiskState"),
        "{mode}, the crash: {:?}",
        outcomes[3]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paper_and_live_send_the_signer_the_same_orders_for_the_same_path() {
    let path = MarketPath::btc_eth(23, 30, 0).with(Event::Move {
        step: CRASH,
        coin: "ETH".into(),
        move_bps: -2000,
    });

    // Paper: the local market serves the path.
    let paper_signer = Signer::with(&[AGENT]).policy_toml(TRADER_POLICY).start();
    let paper_dir = tempfile::tempdir().unwrap();
    let market = LocalMarket::start(path.clone()).await.unwrap();
    let paper_observer = Observer::start(&paper_signer.socket(), paper_dir.path());
    let (o, agent) = orchestrator(&paper_observer, paper_dir.path(), &market.url, &path, false);
    let outcomes = run(&o, &agent, |step| {
        market.set_step(step);
        async {}
    })
    .await;
    check_outcomes("paper", &outcomes);
    let paper = paper_observer.intents();
    let paper_ops = paper_observer.ops();
    drop(o);

    // Live: the exchange's mids set to the path's marks, step by step.
    let live_signer = Signer::with(&[AGENT]).policy_toml(TRADER_POLICY).start();
    let hello = ok(live_signer.client().call(Op::Hello).unwrap());
    let (api, master) = hyperliquid::agent_addresses(&hello, 0, "hyperliquid:testnet");
    let exchange = Exchange::start(&[(&master, "10000", &[&api])]);
    let live_dir = tempfile::tempdir().unwrap();
    let live_observer = Observer::start(&live_signer.socket(), live_dir.path());
    let (o, agent) = orchestrator(&live_observer, live_dir.path(), exchange.url(), &path, true);
    let outcomes = run(&o, &agent, |step| {
        let marks = path.at(step).marks;
        let exchange = &exchange;
        async move {
            exchange
                .set_mids(&json!({"BTC": usd_text(marks[0]), "ETH": usd_text(marks[ETH])}))
                .await;
        }
    })
    .await;
    check_outcomes("live", &outcomes);
    let live = live_observer.intents();
    let live_ops = live_observer.ops();
    assert!(exchange.disagreements().await.is_empty());

    // The same intents, in the same order, and the ones expected: not a vacuous equality.
    assert_eq!(
        paper, live,
        "paper ops {paper_ops:?}\nlive ops {live_ops:?}"
    );
    let kinds: Vec<&str> = paper.iter().map(|i| i["kind"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        [
            "perp_leverage",
            "perp_order",
            "perp_order",
            "perp_order",
            "perp_order"
        ],
        "{paper:#?}"
    );
    let orders: Vec<(&str, &str, bool)> = paper[1..]
        .iter()
        .map(|i| {
            (
                i["side"].as_str().unwrap(),
                i["size"].as_str().unwrap(),
                i["reduce_only"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        orders,
        [
            ("buy", "0.4", false),
            ("buy", "0.2", false),
            ("sell", "0.1", true),
            ("sell", "0.5", true)
        ],
        "{paper:#?}"
    );
    assert_eq!(paper[0]["leverage"], 3);
    // Both asked the signer for the pause at the floor.
    for ops in [&paper_ops, &live_ops] {
        assert!(ops.iter().any(|op| op == "pause_agent"), "{ops:?}");
    }
}
