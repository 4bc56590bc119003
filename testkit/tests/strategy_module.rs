//! A strategy module as a deputy's decision source, through the real pipeline: an in-process
//! orchestrator on the Rust local market (`vigil_devnet::hyperliquid`) and the real signer
//! process. A good module's order is signed on paper (the signer's `dry_run`) and filled like
//! an LLM's; one above the profile's caps is refused by layer 2, one within them but above the
//! signer's per-transaction cap by the signer; a module that loops forever, allocates without
//! bound, or asks for another agent's data is stopped and the deputy holds, the decision record
//! naming the limit and the numbers. The scripted LLM is configured and would only ever hold:
//! no outcome here comes from it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use rusqlite::{Connection, OpenFlags};
use serde_json::json;
use vigil_devnet::hyperliquid::{LocalMarket, MarketPath};
use vigil_orchestrator::{AgentConfig, Orchestrator, Outcome};
use vigil_testkit::Signer;
use vigil_testkit::config::{AgentSpec, ConfigBuilder, ModulesSpec};
use vigil_testkit::hyperliquid::{TRADER_POLICY, eth_deputy};
use vigil_testkit::script::{Reply, Script};

const AGENT: &str = "trader";
/// A tick time whose last digit the module reads to choose what to propose.
const T0: u64 = 1_767_225_600;

/// Buys ETH at 0.5 % above the mark, the size chosen by the tick's last digit: 1 → 0.1 ETH
/// (~200 USD: within every cap), 2 → 1.5 ETH (~3,000 USD: within the profile, above the
/// signer's 2,000-USD per-transaction cap), 3 → 6 ETH (~12,000 USD: above the profile's
/// 10,000-USD order cap); any other → nothing.
const TRADER: &str = r#"
SIZES = {1: 0.1, 2: 1.5, 3: 6.0}

def decide(ctx):
    size = SIZES.get(ctx["now"] % 10)
    if size == None or risk_state() != "active":
        return None
    px = marks()["ETH"]
    return propose({"action": "perp_order", "asset": "ETH", "side": "buy", "size": size,
                    "limit_px": decimal(px * 1.005, 0), "tif": "ioc",
                    "reasoning": "the test's module buys %s ETH" % size})
"#;

const LOOPS_FOREVER: &str = r#"
def decide(ctx):
    n = 0
    for i in range(2000000000):
        for j in range(2000000000):
            n += 1
    return None
"#;

const HOARDS: &str = r#"
def decide(ctx):
    keep = []
    for i in range(2000000000):
        keep.append("x" * 1000 + str(i))
    return None
"#;

const PRYING: &str = r#"
def decide(ctx):
    theirs = positions("someone_else")
    return None
"#;

/// ETH: 10,000 USD an order and 20,000 of position, 3x, 1 % from the mark.
fn deputy(module: &str) -> AgentSpec {
    eth_deputy(AGENT, 10_000_000_000).strategy_module(module)
}

/// An orchestrator whose deputy decides with `source` (as module `name`), steps limited to
/// `max_steps`, the heap to `max_heap_bytes`.
fn orchestrator(
    dir: &Path,
    signer: &Signer,
    market: &str,
    name: &str,
    source: &str,
    modules: impl FnOnce(ModulesSpec) -> ModulesSpec,
) -> (Orchestrator, AgentConfig) {
    let module_dir = dir.join("modules");
    std::fs::create_dir_all(&module_dir).unwrap();
    std::fs::write(module_dir.join(format!("{name}.star")), source).unwrap();
    let script = dir.join("script.toml");
    Script::new()
        .default_replies([Reply::decision(json!({"action": "hold", "confidence": 0.5,
            "reasoning": "the scripted LLM was asked, and it holds"}))])
        .write(&script);
    let o = ConfigBuilder::new(&signer.socket(), &dir.join("state.sqlite"))
        .scripted(&script)
        .hyperliquid("testnet", market)
        .modules(modules(ModulesSpec::new(&module_dir)))
        .agent(deputy(name))
        .orchestrator();
    let agent = o.agents()[0].clone();
    assert_eq!(agent.strategy.as_ref().map(|s| s.name.as_str()), Some(name));
    (o, agent)
}

/// The decision log's rows of the agent: (outcome, rule, the recorded outcome's JSON).
fn decisions(state: &Path) -> Vec<(String, Option<String>, String)> {
    let db = Connection::open_with_flags(state, OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
    let mut q = db
        .prepare("SELECT outcome, rule, parsed_json FROM decisions WHERE agent = ?1 ORDER BY id")
        .unwrap();
    q.query_map([AGENT], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_modules_orders_pass_layer_2_and_the_signer_like_an_llms() {
    let signer = Signer::with(&[AGENT]).policy_toml(TRADER_POLICY).start();
    let market = LocalMarket::start(MarketPath::btc_eth(5, 30, T0 * 1000))
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (o, agent) = orchestrator(dir.path(), &signer, &market.url, "trader", TRADER, |m| m);

    // Within every cap: the signer's dry run allows it and paper fills it.
    let small = o.decide_at(&agent, Vec::new(), T0 + 1).await.outcome;
    let Outcome::PaperFilled { summary } = &small else {
        panic!("the small order: {small:?}")
    };
    assert!(summary.contains("PAPER buy 0.1 ETH"), "{summary}");

    // Within the profile, above the signer's per-transaction cap: the signer refuses it.
    let medium = o.decide_at(&agent, Vec::new(), T0 + 12).await.outcome;
    assert!(
        matches!(&medium, Outcome::Refused { layer, .. } if layer == "3"),
        "the order above the signer's cap: {medium:?}"
    );

    // Above the profile's order cap: layer 2 refuses it before the signer sees it.
    let large = o.decide_at(&agent, Vec::new(), T0 + 23).await.outcome;
    assert!(
        matches!(&large, Outcome::Refused { layer, rule, .. } if layer == "2" && rule.contains("Order")),
        "the order above the profile's cap: {large:?}"
    );

    // Nothing to do: the module's own hold, not the LLM's.
    let none = o.decide_at(&agent, Vec::new(), T0 + 34).await.outcome;
    let Outcome::Held { layer, reason } = &none else {
        panic!("{none:?}")
    };
    assert_eq!(layer, "agent");
    assert!(
        reason.contains("strategy module trader proposed nothing"),
        "{reason}"
    );

    let log = decisions(&dir.path().join("state.sqlite"));
    let outcomes: Vec<&str> = log.iter().map(|(o, _, _)| o.as_str()).collect();
    assert_eq!(outcomes, ["paper_filled", "refused", "refused", "held"]);
    assert!(
        log.iter()
            .all(|(_, _, json)| !json.contains("scripted LLM"))
    );
}

/// One tick of a deputy deciding with `source`; the outcome and the decision log's last row.
async fn stopped(
    name: &str,
    source: &str,
    modules: impl FnOnce(ModulesSpec) -> ModulesSpec,
) -> (String, (String, Option<String>, String)) {
    let signer = Signer::with(&[AGENT]).policy_toml(TRADER_POLICY).start();
    let market = LocalMarket::start(MarketPath::btc_eth(5, 30, T0 * 1000))
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (o, agent) = orchestrator(dir.path(), &signer, &market.url, name, source, modules);
    let started = std::time::Instant::now();
    let outcome = o.decide_at(&agent, Vec::new(), T0 + 1).await.outcome;
    assert!(
        started.elapsed().as_secs() < 20,
        "the stopped module held the tick for {:?}",
        started.elapsed()
    );
    let Outcome::Held { layer, reason } = outcome else {
        panic!("{name}: {outcome:?}")
    };
    assert_eq!(layer, "module", "{reason}");
    let log = decisions(&dir.path().join("state.sqlite"));
    assert_eq!(log.len(), 1, "{log:?}");
    (reason, log.into_iter().next().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_module_that_loops_forever_is_stopped_and_the_deputy_holds() {
    // By the step limit (the wall time far away)...
    let (reason, (outcome, rule, json)) = stopped("spin", LOOPS_FOREVER, |m| ModulesSpec {
        max_steps: 20_000,
        max_wall_ms: 10_000,
        ..m
    })
    .await;
    assert!(
        reason.contains("step_limit") && reason.contains("limit of 20000"),
        "{reason}"
    );
    assert_eq!(
        (outcome.as_str(), rule.as_deref()),
        ("held", Some("module"))
    );
    assert!(json.contains("step_limit"), "{json}");
    // ... and by the wall time (the step limit far away).
    let (reason, _) = stopped("spin", LOOPS_FOREVER, |m| ModulesSpec {
        max_steps: 100_000_000,
        max_wall_ms: 100,
        ..m
    })
    .await;
    assert!(
        reason.contains("wall_time_limit") && reason.contains("limit of 100 ms"),
        "{reason}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_module_that_allocates_without_bound_is_stopped_by_the_heap_limit() {
    let (reason, (_, _, json)) = stopped("hoard", HOARDS, |m| ModulesSpec {
        max_steps: 100_000_000,
        max_heap_bytes: 2 << 20,
        max_wall_ms: 10_000,
        ..m
    })
    .await;
    assert!(
        reason.contains("heap_limit") && reason.contains("limit of 2097152"),
        "{reason}"
    );
    assert!(json.contains("heap_limit"), "{json}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_module_cannot_name_another_agent() {
    let (reason, _) = stopped("prying", PRYING, |m| m).await;
    assert!(
        reason.contains("error") && reason.contains("positional arguments"),
        "{reason}"
    );
}

/// Modules that end their child process, not the orchestrator: one huge string (its
/// allocation fails at the child's address-space limit), a string doubled 40 times (the
/// interpreter's bump allocator runs out: a panic inside the interpreter, which aborts the
/// child), deep recursion, and a loop of long built-in calls that only the parent's kill at
/// the wall time stops.
const WRECKERS: &[(&str, &str, &str)] = &[
    (
        "huge",
        "def decide(ctx):\n    return \"x\" * (100000000 + len(marks()))\n",
        "heap_limit",
    ),
    (
        "doubles",
        "def decide(ctx):\n    s = \"x\"\n    for i in range(40):\n        s = s + s\n    return None\n",
        "heap_limit",
    ),
    (
        "recurses",
        "def f(n):\n    return f(n + 1)\ndef decide(ctx):\n    return f(0)\n",
        "error",
    ),
    (
        "grinds",
        "def decide(ctx):\n    s = \"ab\" * 8000000\n    n = 0\n    for i in range(100000):\n        n += s.count(\"ba\")\n    return None\n",
        "wall_time_limit",
    ),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_module_that_ends_its_child_holds_its_deputy_and_the_others_go_on() {
    let signer = Signer::with(&[AGENT]).policy_toml(TRADER_POLICY).start();
    let market = LocalMarket::start(MarketPath::btc_eth(5, 30, T0 * 1000))
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let module_dir = dir.path().join("modules");
    std::fs::create_dir_all(&module_dir).unwrap();
    std::fs::write(module_dir.join("trader.star"), TRADER).unwrap();
    for (name, source, _) in WRECKERS {
        std::fs::write(module_dir.join(format!("{name}.star")), source).unwrap();
    }
    let script = dir.path().join("script.toml");
    Script::new()
        .default_replies([Reply::decision(json!({"action": "hold", "confidence": 0.5,
            "reasoning": "the scripted LLM was asked, and it holds"}))])
        .write(&script);
    let mut builder = ConfigBuilder::new(&signer.socket(), &dir.path().join("state.sqlite"))
        .scripted(&script)
        .hyperliquid("testnet", &market.url)
        .modules(ModulesSpec {
            max_wall_ms: 300,
            ..ModulesSpec::new(&module_dir)
        })
        .agent(deputy("trader"));
    for (name, _, _) in WRECKERS {
        builder = builder.agent(
            eth_deputy(&format!("wrecked_{name}"), 10_000_000_000)
                .actions(&["perp_order", "hold"])
                .strategy_module(name),
        );
    }
    let o = builder.orchestrator();
    let agents = o.agents().to_vec();
    let trader = agents.iter().find(|a| a.id.as_str() == AGENT).unwrap();
    for (i, (name, _, kind)) in WRECKERS.iter().enumerate() {
        let wrecked = agents
            .iter()
            .find(|a| a.id.as_str() == format!("wrecked_{name}"))
            .unwrap();
        let outcome = o.decide_at(wrecked, Vec::new(), T0 + 1).await.outcome;
        let Outcome::Held { layer, reason } = &outcome else {
            panic!("{name}: {outcome:?}")
        };
        assert_eq!(layer, "module", "{name}: {reason}");
        assert!(reason.contains(kind), "{name}: {reason}");
        // The orchestrator is still here, and the trader's next order is filled.
        let at = T0 + 1 + 10 * (i as u64 + 1);
        let filled = o.decide_at(trader, Vec::new(), at).await.outcome;
        assert!(
            matches!(&filled, Outcome::PaperFilled { .. }),
            "after {name}: {filled:?}"
        );
    }
}
