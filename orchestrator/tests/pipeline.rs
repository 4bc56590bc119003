//! The decision pipeline end to end: the cost gate stops calls before they reach the
//! provider, layer 1's correction rounds are bounded, provider failures hold, a missing key
//! falls back without any request, and against the real confined signer a decision becomes a
//! paper fill, a layer-2 or layer-3 refusal, or a pending operator approval.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::time::Duration;

use secrecy::SecretString;
use serde_json::json;
use tokio::sync::Mutex;
use vigil_orchestrator::{
    AgentConfig, Config, Deps, Inputs, OpenAiProvider, Outcome, Peer, Prices, Provider,
    ScriptedProvider, SignerClient, Store,
};
use vigil_testkit::config::{devnet_inputs, free_deps};
use vigil_testkit::requests::STRANGER;
use vigil_testkit::{Reply, Script, Signer, unix_now};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const HOLD: &str = r#"{"action":"hold","confidence":0.5,"reasoning":"Nothing to do this round, all balances are fine."}"#;
const PRICES: Prices = Prices {
    prompt_micros_per_mtok: 1_000_000,
    completion_micros_per_mtok: 1_000_000,
};

fn inputs() -> Inputs {
    devnet_inputs(unix_now())
}

fn agent(id: &str) -> AgentConfig {
    let config = Config::default_config();
    config
        .agents
        .into_iter()
        .find(|a| a.id.as_str() == id)
        .unwrap()
}

async fn openai_replying(body: serde_json::Value, status: u16) -> (MockServer, Provider) {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(ResponseTemplate::new(status).set_body_json(body))
        .mount(&server)
        .await;
    let provider = openai(&server, Some("sk-test"));
    (server, provider)
}

/// The OpenAI-compatible provider on `server`, with `key` (a key is required).
fn openai(server: &MockServer, key: Option<&str>) -> Provider {
    let key = key.map(|k| SecretString::from(k.to_owned()));
    let url = format!("{}/v1", server.uri());
    Provider::OpenAi(OpenAiProvider::new("mock", &url, key, true, Duration::from_secs(5)).unwrap())
}

fn completion(content: &str) -> serde_json::Value {
    json!({"model": "m", "choices": [{"message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
           "usage": {"prompt_tokens": 1000, "completion_tokens": 1000}})
}

fn unreachable_signer() -> Mutex<SignerClient> {
    Mutex::new(SignerClient::new(
        Path::new("/nonexistent/vigil.sock"),
        Duration::from_millis(200),
    ))
}

/// What a decision needs, without a chain: `provider` (and `fallback`), the state, the
/// signer, free of charge up to `daily_cap_micros`.
fn deps<'a>(
    provider: &'a Provider,
    fallback: Option<&'a Provider>,
    daily_cap_micros: u64,
    store: &'a std::sync::Mutex<Store>,
    signer: &'a Mutex<SignerClient>,
) -> Deps<'a> {
    Deps {
        fallback,
        prices: PRICES,
        daily_cap_micros,
        ..free_deps(provider, store, signer)
    }
}

fn memory_store() -> std::sync::Mutex<Store> {
    std::sync::Mutex::new(Store::open_in_memory().unwrap())
}

/// One decision of the default config's `agent` on `provider`, uncapped, no signer reachable.
async fn decide_unsigned(provider: &Provider, agent_id: &str) -> vigil_orchestrator::Decided {
    let (store, signer) = (memory_store(), unreachable_signer());
    let deps = deps(provider, None, u64::MAX, &store, &signer);
    vigil_orchestrator::decide(&agent(agent_id), &inputs(), &deps).await
}

#[tokio::test]
async fn no_request_reaches_the_provider_once_the_cap_is_reached() {
    let (server, provider) = openai_replying(completion(HOLD), 200).await;
    let (store, signer) = (memory_store(), unreachable_signer());
    // Each reply reports 2000 tokens = 2000 micro-USD; the worst case of a call is about 1300.
    let deps = deps(&provider, None, 2_500, &store, &signer);
    let sentinel = agent("sentinel");
    let first = vigil_orchestrator::decide(&sentinel, &inputs(), &deps).await;
    assert!(
        matches!(first.outcome, Outcome::Held { ref layer, .. } if layer == "agent"),
        "{first:?}"
    );
    for _ in 0..3 {
        let next = vigil_orchestrator::decide(&sentinel, &inputs(), &deps).await;
        assert!(
            matches!(next.outcome, Outcome::Held { ref layer, .. } if layer == "cost"),
            "{next:?}"
        );
    }
    assert_eq!(
        server.received_requests().await.unwrap().len(),
        1,
        "calls were made past the cap"
    );
}

/// Issue 15, finding 7: a provider that omits `usage`, or reports less than the text it took
/// and gave can have used, is charged the worst case: under a cap that fits one and a half
/// calls, one call is made, not ten. (On the old code a missing usage was recorded as 0 tokens
/// and all ten calls ran.)
#[tokio::test]
async fn a_provider_reporting_no_usage_or_too_little_is_charged_the_worst_case() {
    let mut no_usage = completion(HOLD);
    no_usage.as_object_mut().unwrap().remove("usage");
    let mut too_little = completion(HOLD);
    too_little["usage"] = json!({"prompt_tokens": 1, "completion_tokens": 1});
    let mut half = completion(HOLD);
    half["usage"] = json!({"prompt_tokens": 900});
    for body in [no_usage, too_little, half] {
        let (server, provider) = openai_replying(body.clone(), 200).await;
        let (store, signer) = (memory_store(), unreachable_signer());
        // The worst case of one of sentinel's calls is about 1300 micro-USD.
        let deps = deps(&provider, None, 2_000, &store, &signer);
        let sentinel = agent("sentinel");
        let mut held_by_cost = 0;
        for _ in 0..10 {
            let next = vigil_orchestrator::decide(&sentinel, &inputs(), &deps).await;
            if matches!(next.outcome, Outcome::Held { ref layer, .. } if layer == "cost") {
                held_by_cost += 1;
            }
        }
        let calls = server.received_requests().await.unwrap().len();
        assert_eq!(calls, 1, "calls made under a cap that fits 1.5: {body}");
        assert_eq!(held_by_cost, 9, "{body}");
        let spent = store.lock().unwrap().cost_spent_since(0).unwrap();
        assert!(
            (1_000..=2_000).contains(&spent),
            "the worst case ({spent} µUSD) was charged: {body}"
        );
    }
}

#[tokio::test]
async fn invalid_replies_get_two_corrections_then_hold() {
    let (server, provider) =
        openai_replying(completion("Sure! Sending everything now."), 200).await;
    let decided = decide_unsigned(&provider, "trader").await;
    assert!(
        matches!(decided.outcome, Outcome::Held { ref layer, .. } if layer == "1"),
        "{decided:?}"
    );
    assert_eq!(decided.corrections.len(), 2);
    let requests = server.received_requests().await.unwrap();
    assert_eq!(requests.len(), 3, "one call and two corrections");
    // The correction rounds carry the rejected reply and the error back to the model.
    let last: serde_json::Value = serde_json::from_slice(&requests[2].body).unwrap();
    assert!(last["messages"].as_array().unwrap().len() >= 5);
}

/// A decision's costs are written with its record, at its end; its own correction rounds
/// still count the calls before them: under a cap that fits one and a half calls, the
/// correction after an invalid reply is not made.
#[tokio::test]
async fn a_correction_round_counts_the_decisions_earlier_calls_against_the_cap() {
    let (server, provider) =
        openai_replying(completion("Sure! Sending everything now."), 200).await;
    let (store, signer) = (memory_store(), unreachable_signer());
    // Each reply reports 2000 tokens = 2000 micro-USD; the worst case of a call is about 1300.
    let deps = deps(&provider, None, 2_500, &store, &signer);
    let decided = vigil_orchestrator::decide(&agent("trader"), &inputs(), &deps).await;
    assert!(
        matches!(decided.outcome, Outcome::Held { ref layer, .. } if layer == "cost"),
        "{decided:?}"
    );
    assert_eq!(server.received_requests().await.unwrap().len(), 1);
    assert_eq!(store.lock().unwrap().cost_spent_since(0).unwrap(), 2_000);
}

#[tokio::test]
async fn a_provider_failure_holds() {
    let (_server, provider) = openai_replying(json!({"error": "down"}), 503).await;
    let decided = decide_unsigned(&provider, "sentinel").await;
    assert!(
        matches!(decided.outcome, Outcome::Held { ref layer, .. } if layer == "llm"),
        "{decided:?}"
    );
}

#[tokio::test]
async fn a_missing_key_falls_back_without_any_request() {
    let server = MockServer::start().await;
    let keyless = openai(&server, None);
    let scripted = Provider::Scripted(
        ScriptedProvider::from_toml(&Script::new().default_replies([Reply::text(HOLD)]).to_toml())
            .unwrap(),
    );
    let (store, signer) = (memory_store(), unreachable_signer());
    let deps = deps(&keyless, Some(&scripted), u64::MAX, &store, &signer);
    let decided = vigil_orchestrator::decide(&agent("experimental"), &inputs(), &deps).await;
    assert!(
        matches!(decided.outcome, Outcome::Held { ref layer, .. } if layer == "agent"),
        "{decided:?}"
    );
    assert_eq!(server.received_requests().await.unwrap().len(), 0);
}

// ---- against the real signer ----

#[tokio::test]
async fn each_layer_decides_against_the_real_signer() {
    let r = Signer::start(&["trader", "experimental"]);
    let script = Script::new().agent(
        "trader",
        [
            // allowed everywhere: paper fill
            Reply::transfer("dev-peer", 200_000_000),
            // layer 2: not a peer
            Reply::transfer(STRANGER, 100_000_000),
            // layer 2 allows 40% of 10 SOL; layer 3: per-tx cap 1 SOL
            Reply::transfer("dev-peer", 3_000_000_000),
            // layer 3: above the 0.5 SOL threshold
            Reply::transfer("dev-peer", 800_000_000),
        ],
    );
    let provider = Provider::Scripted(ScriptedProvider::from_toml(&script.to_toml()).unwrap());
    let store = memory_store();
    let signer = Mutex::new(SignerClient::new(&r.socket(), Duration::from_secs(10)));
    let deps = deps(&provider, None, u64::MAX, &store, &signer);
    let mut trader = agent("trader");
    trader.risk.peers = vec![Peer {
        label: "dev-peer".into(),
        address: r.dev_peer(),
    }];

    let mut outcomes = Vec::new();
    for i in 0..4u64 {
        let mut inp = inputs();
        inp.now += i; // distinct decisions, distinct idempotency keys
        outcomes.push(
            vigil_orchestrator::decide(&trader, &inp, &deps)
                .await
                .outcome,
        );
    }
    assert!(
        matches!(&outcomes[0], Outcome::PaperFilled { summary } if summary.contains("0.2 SOL")),
        "{:?}",
        outcomes[0]
    );
    assert!(
        matches!(&outcomes[1], Outcome::Refused { layer, rule, .. } if layer == "2" && rule == "PeerNotAllowed"),
        "{:?}",
        outcomes[1]
    );
    assert!(
        matches!(&outcomes[2], Outcome::Refused { layer, rule, .. } if layer == "3" && rule == "per_tx_cap"),
        "{:?}",
        outcomes[2]
    );
    assert!(
        matches!(&outcomes[3], Outcome::NeedsApproval { summary, .. } if summary.contains("0.8 SOL")),
        "{:?}",
        outcomes[3]
    );

    {
        let store = store.lock().unwrap();
        assert_eq!(
            store
                .agent(&"trader".parse().unwrap())
                .paper_position(vigil_protocol::AssetSymbol::SOL)
                .unwrap(),
            -200_000_000
        );
        assert_eq!(
            store
                .agent(&"trader".parse().unwrap())
                .decisions(10)
                .unwrap()
                .len(),
            4
        );
        assert_eq!(store.open_confirmations(unix_now()).unwrap().len(), 1);
        let memory = store.agent(&"trader".parse().unwrap()).memory(10).unwrap();
        assert_eq!(memory.len(), 4, "{memory:?}");
        assert!(memory[1].starts_with("refused by layer 2"), "{memory:?}");
        assert!(
            store
                .agent(&"experimental".parse().unwrap())
                .memory(10)
                .unwrap()
                .is_empty()
        );
        assert!(
            store
                .agent(&"experimental".parse().unwrap())
                .decisions(10)
                .unwrap()
                .is_empty(),
            "decisions are per agent"
        );
        // Paper mode never signs: the signer's ledger holds no spend.
    }
    let status = signer.lock().await.status().await.unwrap();
    assert!(
        status.agents.iter().all(|a| a.spent_24h.is_empty()),
        "{status:?}"
    );
}
