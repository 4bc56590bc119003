//! Issue 20: the self-modification agent's LLM calls (`/build`) count against the daily LLM
//! cost cap like a decision's. An orchestrator in this process on a real state file, its
//! provider an OpenAI-compatible server on loopback (wiremock) that reports usage, priced at
//! 1 µUSD a token; the recorded market window is in the state before the orchestrator starts
//! (so `/build` has one to replay; it is loaded at start).
//!
//! - `/build` is charged what the provider reported, as agent `builder`; once what is left of
//!   the cap is less than a `/build` call's worst case, the next `/build` is refused before
//!   the call (the server sees no request) and says the cap, today's spend, when it resets
//!   and how to raise it.
//! - A `/build`'s cost is in the day's spend the decisions' gate reads: an agent's decision
//!   that passed the gate before the `/build` is held by it after.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::time::Duration;

use serde_json::json;
use vigil_orchestrator::generations::Generations;
use vigil_orchestrator::{
    AgentConfig, Config, MarkStep, OpenAiProvider, Orchestrator, Outcome, Prices, Provider,
    SignerClient, Store, unix_now,
};
use vigil_testkit::ConfigBuilder;
use vigil_testkit::config::{AgentSpec, PerpSpec, devnet_inputs, free_deps};
use wiremock::matchers::{body_string_contains, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

/// One µUSD a token, both ways.
const PRICE: u64 = 1_000_000;
/// What the server reports for a `/build` call: 1,000 + 16,000 tokens = 17,000 µUSD. The worst
/// case the gate reserves for one is about 16,700 µUSD (16,384 tokens of reply and the prompt).
const BUILD_COST: u64 = 17_000;
/// What it reports for a decision: 1,000 + 1,000 tokens = 2,000 µUSD (its worst case is about
/// 1,300).
const DECISION_COST: u64 = 2_000;
const HOLD: &str = r#"{"action":"hold","confidence":0.5,"reasoning":"Nothing to do this round, all balances are fine."}"#;
const BUNDLE: &str = r#"{"name": "dip", "module": "def decide(ctx):\n    return None\n", "tests": "def test_x():\n    pass\n", "rationale": "Hold."}"#;

fn completion(content: &str, prompt: u64, reply: u64) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(json!({
        "model": "m",
        "choices": [{"message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": prompt, "completion_tokens": reply},
    }))
}

/// The provider: a bundle for the self-modification agent, a hold for anyone else.
async fn provider() -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .and(body_string_contains("self-modification agent"))
        .respond_with(completion(BUNDLE, 1_000, 16_000))
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(completion(HOLD, 1_000, 1_000))
        .with_priority(2)
        .mount(&server)
        .await;
    server
}

/// `/build` requests the server received.
async fn build_calls(server: &MockServer) -> usize {
    server
        .received_requests()
        .await
        .unwrap()
        .iter()
        .filter(|r| String::from_utf8_lossy(&r.body).contains("self-modification agent"))
        .count()
}

/// An orchestrator on `state` with [generations], a testnet deputy `trader` on the priced
/// provider at `server`, the daily cap `cap`; the state holds a recorded window first.
fn orchestrator(dir: &Path, server: &MockServer, cap: u64) -> Orchestrator {
    let state = dir.join("state.db");
    let now = unix_now();
    let window: Vec<MarkStep> = (0..30)
        .map(|i| MarkStep {
            network: "testnet".into(),
            ts: now - 60 + i,
            marks: r#"{"ETH":{"mark":"2000","index":1,"sz_decimals":4,"max_leverage":25}}"#.into(),
        })
        .collect();
    Store::open(&state)
        .unwrap()
        .save_mark_steps(&window, 10_000)
        .unwrap();
    let deputy = AgentSpec::new("trader")
        .provider("mock", "m")
        .actions(&["perp_order", "hold"])
        .perp(
            "testnet",
            "ETH",
            PerpSpec {
                max_order_usd_micros: 1_000_000_000,
                max_position_usd_micros: 2_000_000_000,
                leverage: 3,
                max_slippage_bps: 100,
            },
        );
    let builder = ConfigBuilder::new(&dir.join("signer.sock"), &state)
        .openai("mock", &format!("{}/v1", server.uri()))
        .priced("mock", PRICE, PRICE)
        .daily_llm_cap(cap)
        .hyperliquid("testnet", "http://127.0.0.1:9")
        .generations(3600)
        .agent(deputy);
    let settings = builder.build().generations.unwrap();
    let mut orch = builder.orchestrator();
    orch.set_generations(Generations::open(&settings).unwrap(), settings);
    orch
}

fn builder_spent(orch: &Orchestrator) -> u64 {
    let now = unix_now();
    orch.store()
        .lock()
        .unwrap()
        .cost_spent_since_by(&"builder".parse().unwrap(), now - now % 86_400)
        .unwrap()
}

fn spent_today(orch: &Orchestrator) -> u64 {
    let now = unix_now();
    orch.store()
        .lock()
        .unwrap()
        .cost_spent_since(now - now % 86_400)
        .unwrap()
}

#[tokio::test]
async fn build_calls_are_charged_and_refused_before_the_call_once_the_cap_is_reached() {
    let dir = tempfile::tempdir().unwrap();
    let server = provider().await;
    // Two /build calls fit (0 + 16,700 and 17,000 + 16,700); a third (34,000 + 16,700) does not.
    let orch = orchestrator(dir.path(), &server, 40_000);
    for n in 1..=2 {
        let built = orch.build_proposal("trader buy ETH dips").await;
        assert!(
            !built.text.contains("cost cap"),
            "/build {n} was within the cap: {}",
            built.text
        );
        assert_eq!(build_calls(&server).await, n);
        assert_eq!(builder_spent(&orch), BUILD_COST * u64::try_from(n).unwrap());
    }
    let refused = orch.build_proposal("trader buy ETH dips").await;
    let text = &refused.text;
    assert_eq!(build_calls(&server).await, 2, "no call was made: {text}");
    for part in [
        "/build refused by the daily LLM cost cap",
        "today's cap of $0.040000",
        "($0.034000 already spent today",
        "The cap resets at 00:00 UTC, in ",
        "raise daily_llm_usd_cap_micros",
        "Nothing was asked and nothing was written",
    ] {
        assert!(text.contains(part), "{part:?} missing: {text}");
    }
    assert!(refused.files.is_empty());
    assert_eq!(
        spent_today(&orch),
        2 * BUILD_COST,
        "the refusal cost nothing"
    );
    // The rows are the self-modification agent's, with the reported tokens.
    let rows: Vec<(String, i64, i64, i64)> =
        rusqlite::Connection::open(dir.path().join("state.db"))
            .unwrap()
            .prepare("SELECT agent, micros, prompt_tokens, completion_tokens FROM cost_ledger")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect();
    assert_eq!(
        rows,
        vec![("builder".to_string(), 17_000, 1_000, 16_000); 2]
    );
}

fn sentinel() -> AgentConfig {
    Config::default_config()
        .agents
        .into_iter()
        .find(|a| a.id.as_str() == "sentinel")
        .unwrap()
}

#[tokio::test]
async fn a_builds_cost_is_in_the_days_spend_and_holds_a_decision_it_leaves_no_room_for() {
    let dir = tempfile::tempdir().unwrap();
    let server = provider().await;
    // A decision (worst case about 1,300) fits before the /build: 0 + 1,300 <= 20,000. The
    // /build then fits (2,000 + 16,700) and is charged 17,000: 19,000 spent, 1,000 left.
    let cap = 20_000;
    let orch = orchestrator(dir.path(), &server, cap);
    let llm = Provider::OpenAi(
        OpenAiProvider::new(
            "mock",
            &format!("{}/v1", server.uri()),
            None,
            false,
            Duration::from_secs(5),
        )
        .unwrap(),
    );
    let signer = tokio::sync::Mutex::new(SignerClient::new(
        Path::new("/nonexistent/vigil.sock"),
        Duration::from_millis(200),
    ));
    let deps = vigil_orchestrator::Deps {
        prices: Prices {
            prompt_micros_per_mtok: PRICE,
            completion_micros_per_mtok: PRICE,
        },
        daily_cap_micros: cap,
        ..free_deps(&llm, orch.store(), &signer)
    };
    let held_by_cost =
        |o: &Outcome| matches!(o, Outcome::Held { layer, .. } if layer.as_str() == "cost");

    let before = vigil_orchestrator::decide(&sentinel(), &devnet_inputs(unix_now()), &deps).await;
    assert!(!held_by_cost(&before.outcome), "{:?}", before.outcome);
    assert_eq!(spent_today(&orch), DECISION_COST);

    let built = orch.build_proposal("trader buy ETH dips").await;
    assert!(!built.text.contains("cost cap"), "{}", built.text);
    assert_eq!(spent_today(&orch), DECISION_COST + BUILD_COST);
    assert_eq!(builder_spent(&orch), BUILD_COST);

    let requests = server.received_requests().await.unwrap().len();
    let after = vigil_orchestrator::decide(&sentinel(), &devnet_inputs(unix_now()), &deps).await;
    match &after.outcome {
        Outcome::Held { layer, reason } if layer == "cost" => {
            assert!(reason.contains("$0.019000 already spent"), "{reason}");
        }
        other => panic!("the decision was not held by the cap: {other:?}"),
    }
    assert_eq!(
        server.received_requests().await.unwrap().len(),
        requests,
        "the held decision made no call"
    );
}
