//! Issue 20, the proposal flow end to end on the real daemons: the `vigil-orchestrator`
//! daemon with `[generations]` and its bot on a Bot API emulator, a paper deputy on the Rust
//! local market, the real confined signer with a signed Hyperliquid policy, the
//! `vigil-approver` daemon with its own bot, and bubblewrap for the proposal's check.
//!
//! `/build trader ...`: the scripted self-modification agent answers a module bundle; the
//! orchestrator checks it in the sandbox and shows the operator the check's steps, the replay,
//! the diff's path and text and its SHA-256 (the SHA-256 of the file itself). `/apply 1`: the
//! approver's APPLY CHANGE (proposal) carries that same digest; a wrong code applies nothing;
//! the right one makes generation 2 with the module, and the deputy then decides with it.
//! Bad proposals (failing their own tests; a config that does not parse) are refused in the
//! sandbox and `/apply` refuses them, naming the failed step. A proposal that passes the
//! sandbox (whose replay has no signer) but whose every live order the signer refuses is an
//! error spike in the health window: rolled back to generation 1, the operator told why.
//! The recorded window outlives a crash: the seconds flushed to the state before a SIGKILL are
//! in the `recording.json` a `/build` replays after the restart; a SIGTERM writes the rest.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};
use serde_json::json;
use sha2::{Digest, Sha256};
use vigil_devnet::hyperliquid::{LocalMarket, MarketPath};
use vigil_orchestrator::generations::{CONFIG_FILE, Health};
use vigil_orchestrator::unix_now;
use vigil_testkit::config::{AgentSpec, ModulesSpec};
use vigil_testkit::daemon::BotToken;
use vigil_testkit::generations;
use vigil_testkit::hyperliquid::{TRADER_POLICY, eth_deputy};
use vigil_testkit::operator::fresh_step;
use vigil_testkit::script::{Reply, Script};
use vigil_testkit::telegram::{Chat, OPERATOR};
use vigil_testkit::{ConfigBuilder, Scenario, World, require_root};

const T0: u64 = 1_767_225_600;

/// Buys 0.01 ETH (about 20 USD) when flat; holds otherwise.
const DIP: &str = r#"
def decide(ctx):
    pos = positions().get("ETH", {}).get("size", 0)
    if pos > 0:
        return None
    px = marks()["ETH"]
    return propose({"action": "perp_order", "asset": "ETH", "side": "buy", "size": 0.01,
                    "limit_px": decimal(px * 1.005, 0), "tif": "ioc",
                    "reasoning": "the dip module buys 0.01 ETH when flat"})
"#;

const DIP_TESTS: &str = r#"
def test_buys_when_flat():
    fixture(marks = {"ETH": 2000.0}, positions = {})
    assert_eq(decide({"now": 0})["side"], "buy")

def test_holds_when_long():
    fixture(marks = {"ETH": 2000.0}, positions = {"ETH": {"size": 0.01}})
    assert_eq(decide({"now": 0}), None)
"#;

/// The scripted self-modification agent's answer.
fn reply(name: &str, module: &str, tests: &str, agent_config: Option<serde_json::Value>) -> Reply {
    let mut v = json!({"name": name, "module": module, "tests": tests,
        "rationale": "Buy a little ETH whenever the deputy is flat."});
    if let Some(c) = agent_config {
        v["agent_config"] = c;
    }
    Reply::text(&v.to_string())
}

/// The confined signer with the trader's policy, the Bot API emulator (and the approver's
/// daemon with its own bot when `approver`), and the local market on its seeded path.
async fn world_and_market(script: Script, approver: bool) -> (World, LocalMarket) {
    let mut scenario = Scenario::new()
        .signer(&["trader"])
        .policy(TRADER_POLICY)
        .telegram();
    if approver {
        scenario = scenario.approver();
    }
    let world = scenario.script(script).start().await;
    let market = LocalMarket::start(MarketPath::btc_eth(5, 30, T0 * 1000))
        .await
        .unwrap();
    (world, market)
}

/// The orchestrator's config: `[generations]` watched `window` s, the market, the current
/// generation's modules directory, and `agent`.
fn config_with(
    world: &World,
    market: &LocalMarket,
    window: u32,
    agent: AgentSpec,
) -> ConfigBuilder {
    let gens_dir = world.state_path().parent().unwrap().join("generations");
    world
        .config()
        .generations(window)
        .hyperliquid("testnet", &market.url)
        .modules(ModulesSpec::new(&gens_dir.join("current/files/modules")))
        .agent(agent)
}

/// `(path, sha256)` of the diff named in a /build answer.
fn diff_of(text: &str) -> (PathBuf, String) {
    let line = text
        .lines()
        .find(|l| l.contains("change.diff (SHA-256 "))
        .unwrap_or_else(|| panic!("no diff line in {text}"));
    let path = line
        .split_whitespace()
        .find(|w| w.ends_with("change.diff"))
        .unwrap();
    let sha = line
        .split("(SHA-256 ")
        .nth(1)
        .unwrap()
        .trim_end_matches(|c: char| !c.is_ascii_hexdigit())
        .to_owned();
    (PathBuf::from(path), sha)
}

/// The trader's decisions from `since` with `outcome`.
fn decisions_with(state: &Path, since: u64, outcome: &str) -> i64 {
    let c = Connection::open_with_flags(state, OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
    c.query_row(
        "SELECT count(*) FROM decisions WHERE agent = 'trader' AND ts >= ?1 AND outcome = ?2",
        rusqlite::params![i64::try_from(since).unwrap(), outcome],
        |r| r.get(0),
    )
    .unwrap_or(0)
}

async fn wait_for(what: &str, secs: u64, mut ok: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(secs);
    while !ok() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting: {what}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_checked_proposal_is_applied_only_with_the_code_for_its_diffs_digest_and_bad_ones_are_refused()
 {
    if !require_root("a second uid for the approver") {
        return;
    }
    let script = Script::new()
        .agent(
            "builder",
            [
                // Fails its own test.
                reply(
                    "broken",
                    DIP,
                    DIP_TESTS.replace("\"buy\")", "\"sell\")").as_str(),
                    None,
                ),
                // A config that does not parse: a schedule of zero seconds.
                reply("zero", DIP, DIP_TESTS, Some(json!({"schedule_secs": 0}))),
                reply("dip", DIP, DIP_TESTS, Some(json!({"schedule_secs": 1}))),
            ],
        )
        .default_replies([Reply::hold()]);
    let (world, market) = world_and_market(script, true).await;
    let state = world.state_path();
    let config = config_with(&world, &market, 3600, eth_deputy("trader", 1_000_000_000));
    let mut orch = Chat::new(world.emulator(), OPERATOR);
    let daemon = world.daemon(&config, BotToken::Given);
    orch.expect("generation 1 seeded").await;
    let g = generations::beside(&state);

    // Wait until the deputy has read the market (the recorded window the check replays).
    let since = unix_now();
    wait_for("the LLM deputy decides", 30, || {
        Connection::open_with_flags(&state, OpenFlags::SQLITE_OPEN_READ_ONLY)
            .and_then(|c| {
                c.query_row(
                    "SELECT count(*) FROM decisions WHERE ts >= ?1",
                    [i64::try_from(since).unwrap()],
                    |r| r.get::<_, i64>(0),
                )
            })
            .unwrap_or(0)
            >= 3
    })
    .await;

    // (b) Failing its own tests: refused in the sandbox, and /apply refuses it.
    let bad = orch
        .ask("/build trader the same, broken", "Proposal #1")
        .await;
    assert!(
        bad.text.contains("REFUSED in the sandbox (tests:"),
        "{}",
        bad.text
    );
    assert!(bad.text.contains("[fail] tests"), "{}", bad.text);
    let no = orch.ask("/apply 1", "Proposal #1").await;
    assert!(
        no.text.contains("REFUSED in the sandbox (tests:") && no.text.contains("cannot be applied"),
        "{}",
        no.text
    );

    // A config that does not parse: refused at the config step.
    let bad = orch
        .ask("/build trader every zero seconds", "Proposal #2")
        .await;
    assert!(
        bad.text.contains("REFUSED in the sandbox (config:"),
        "{}",
        bad.text
    );
    let no = orch.ask("/apply 2", "Proposal #2").await;
    assert!(no.text.contains("cannot be applied"), "{}", no.text);
    assert_eq!(g.numbers().unwrap(), vec![1], "nothing was applied");

    // (a) /build: checked in the sandbox, the results, the diff and its digest.
    let built = orch
        .ask("/build trader buy a little ETH when flat", "Proposal #3")
        .await;
    let text = &built.text;
    assert!(text.contains("Check PASSED in the sandbox"), "{text}");
    for step in [
        "[pass] bundle",
        "[pass] parse",
        "[pass] config",
        "[pass] tests: 2 of 2 passed",
        "[pass] replay",
    ] {
        assert!(text.contains(step), "{step} missing: {text}");
    }
    assert!(text.contains("replay: ") && text.contains("PnL"), "{text}");
    assert!(text.contains("+++ b/modules/dip.star"), "{text}");
    let (diff_path, sha) = diff_of(text);
    let diff = std::fs::read(&diff_path).unwrap();
    assert_eq!(
        hex::encode(Sha256::digest(&diff)),
        sha,
        "the digest is the diff file's SHA-256"
    );
    assert!(text.contains("/apply 3"), "{text}");

    // /apply 1: the approver shows the same digest.
    let asked = orch.ask("/apply 3", "needs your code").await;
    assert!(asked.text.contains(&sha), "{}", asked.text);
    let approver_bot = world.approver_bot();
    let mut appr = Chat::new(approver_bot, OPERATOR);
    let shown = appr.expect("APPLY CHANGE (proposal)").await;
    assert!(
        shown.text.contains(&sha) && shown.text.contains("generation 2"),
        "{}",
        shown.text
    );

    // A wrong code: nothing applied.
    let operator = world.operator();
    approver_bot
        .send_reply(
            OPERATOR,
            operator.wrong_code().expose_digits(),
            Some(&shown),
        )
        .await;
    appr.expect("Refused by the signer").await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        g.current().unwrap(),
        Some(1),
        "a wrong code applied nothing"
    );

    // The right code: generation 2 holds the module and the config naming it.
    let t = fresh_step(8);
    approver_bot
        .send_reply(OPERATOR, operator.code_at(t).expose_digits(), Some(&shown))
        .await;
    orch.expect("generation 2 applied").await;
    wait_for("generation 2 current", 30, || {
        g.current().unwrap() == Some(2)
    })
    .await;
    let two = g.files(2).unwrap();
    assert_eq!(two["modules/dip.star"], DIP.as_bytes());
    let cfg = String::from_utf8(two[CONFIG_FILE].clone()).unwrap();
    assert!(cfg.contains("strategy_module = \"dip\""), "{cfg}");

    // The deputy decides with the module after the restart: its order is filled on paper
    // (the scripted LLM only ever holds, so no fill before; none comes from it).
    assert_eq!(decisions_with(&state, 0, "paper_filled"), 0);
    wait_for("a decision from the module", 60, || {
        decisions_with(&state, 0, "paper_filled") >= 1
    })
    .await;

    assert_eq!(g.numbers().unwrap(), vec![1, 2]);
    drop(daemon);
}

/// Buys 1.5 ETH (about 3,000 USD) every tick: within the deputy's profile (layer 2, and so
/// the sandbox's replay, which has no signer), above the signer's 2,000-USD per-transaction
/// cap, so live every order is refused by the signer.
const GREEDY: &str = r#"
def decide(ctx):
    px = marks()["ETH"]
    return propose({"action": "perp_order", "asset": "ETH", "side": "buy", "size": 1.5,
                    "limit_px": decimal(px * 1.005, 0), "tif": "ioc",
                    "reasoning": "the greedy module buys 1.5 ETH"})
"#;

const GREEDY_TESTS: &str = r#"
def test_buys_one_and_a_half():
    fixture(marks = {"ETH": 2000.0}, positions = {})
    assert_eq(decide({"now": 0})["size"], 1.5)
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proposal_that_passes_the_sandbox_but_fails_health_is_rolled_back_and_the_operator_told_why()
 {
    if !require_root("a second uid for the approver") {
        return;
    }
    let script = Script::new()
        .agent("builder", [reply("greedy", GREEDY, GREEDY_TESTS, None)])
        .default_replies([Reply::hold()]);
    let (world, market) = world_and_market(script, true).await;
    let state = world.state_path();
    // The profile allows 10,000 USD an order; the signer 2,000. Watched for 5 s.
    let wide = eth_deputy("trader", 10_000_000_000);
    let config = config_with(&world, &market, 5, wide);
    let mut orch = Chat::new(world.emulator(), OPERATOR);
    let daemon = world.daemon(&config, BotToken::Given);
    orch.expect("generation 1 seeded").await;
    let g = generations::beside(&state);
    // The window before the apply: decisions, none an error.
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert!(decisions_with(&state, 0, "held") >= 3);
    assert_eq!(decisions_with(&state, 0, "refused"), 0);

    let built = orch.ask("/build trader buy more ETH", "Proposal #1").await;
    assert!(
        built.text.contains("Check PASSED in the sandbox"),
        "{}",
        built.text
    );
    let (_, sha) = diff_of(&built.text);
    orch.ask("/apply 1", "needs your code").await;
    let approver_bot = world.approver_bot();
    let mut appr = Chat::new(approver_bot, OPERATOR);
    let shown = appr.expect("APPLY CHANGE (proposal)").await;
    assert!(shown.text.contains(&sha), "{}", shown.text);
    let operator = world.operator();
    let t = fresh_step(8);
    approver_bot
        .send_reply(OPERATOR, operator.code_at(t).expose_digits(), Some(&shown))
        .await;
    orch.expect("generation 2 applied").await;

    // Live, the signer refuses every order: an error spike, rolled back, the operator told why.
    let failed = orch.expect("generation 2 FAILED its health check").await;
    assert!(failed.text.contains("error spike"), "{}", failed.text);
    assert!(
        failed.text.contains("Rolling back to generation 1"),
        "{}",
        failed.text
    );
    orch.expect("rolled back from generation 2 to 1").await;
    wait_for("generation 1 current again", 30, || {
        g.current().unwrap() == Some(1)
    })
    .await;
    match g.health(2).unwrap() {
        Some(Health::Failed { why, .. }) => {
            assert!(why.starts_with("error spike"), "{why}");
        }
        other => panic!("generation 2's verdict: {other:?}"),
    }
    assert!(
        !String::from_utf8(std::fs::read(g.current_config_path()).unwrap())
            .unwrap()
            .contains("greedy")
    );
    drop(daemon);
}

/// The recorded window's seconds in the state file (`recorded_marks`, testnet).
fn stored_seconds(state: &Path) -> Vec<u64> {
    let Ok(c) = Connection::open_with_flags(state, OpenFlags::SQLITE_OPEN_READ_ONLY) else {
        return Vec::new();
    };
    let Ok(mut stmt) =
        c.prepare("SELECT ts FROM recorded_marks WHERE network = 'testnet' ORDER BY ts")
    else {
        return Vec::new();
    };
    stmt.query_map([], |r| r.get::<_, i64>(0))
        .unwrap()
        .map(|t| u64::try_from(t.unwrap()).unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_window_recorded_before_a_crash_is_replayed_by_a_build_after_the_restart() {
    let script = Script::new()
        .agent("builder", [reply("dip", DIP, DIP_TESTS, None)])
        .default_replies([Reply::hold()]);
    let (world, market) = world_and_market(script, false).await;
    let state = world.state_path();
    let config = config_with(&world, &market, 3600, eth_deputy("trader", 1_000_000_000));
    let mut orch = Chat::new(world.emulator(), OPERATOR);
    let daemon = world.daemon(&config, BotToken::Given);
    orch.expect("generation 1 seeded").await;
    // The deputy reads the venue each second; the marks reach the state within a flush.
    wait_for("three recorded seconds in the state", 30, || {
        stored_seconds(&state).len() >= 3
    })
    .await;
    let before = stored_seconds(&state);
    // A crash (SIGKILL): what was flushed stays, at most the last few seconds are lost.
    daemon.kill();
    let restarted_at = unix_now();
    let daemon = world.daemon(&config, BotToken::Given);
    daemon
        .wait_for_log("steps of Hyperliquid testnet loaded from the state", 30)
        .await;
    let built = orch
        .ask("/build trader buy a little ETH when flat", "Proposal #1")
        .await;
    assert!(
        built.text.contains("Check PASSED in the sandbox"),
        "{}",
        built.text
    );
    let (diff_path, _) = diff_of(&built.text);
    let recording: serde_json::Value = serde_json::from_slice(
        &std::fs::read(diff_path.parent().unwrap().join("recording.json")).unwrap(),
    )
    .unwrap();
    let times: Vec<u64> = recording["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["time"].as_u64().unwrap())
        .collect();
    for t in &before {
        assert!(
            times.contains(t),
            "second {t}, recorded before the crash, is not in the window /build replayed: {times:?}"
        );
    }
    assert!(
        times.first().unwrap() < &restarted_at,
        "the window starts before the restart: {times:?}"
    );

    // A normal stop (SIGTERM) writes what the last flush left: every decision's view read is
    // in the state, up to the second of the last decision recorded.
    let mut daemon = daemon;
    std::process::Command::new("kill")
        .args(["-TERM", &daemon.pid().to_string()])
        .status()
        .unwrap();
    wait_for("the daemon stops on SIGTERM", 20, || !daemon.running()).await;
    let last_decision: i64 = Connection::open_with_flags(&state, OpenFlags::SQLITE_OPEN_READ_ONLY)
        .unwrap()
        .query_row(
            "SELECT max(ts) FROM decisions WHERE agent = 'trader'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    let newest = *stored_seconds(&state).last().unwrap();
    assert!(
        newest >= u64::try_from(last_decision).unwrap(),
        "the newest stored second {newest} is older than the last decision's {last_decision}: the stop did not flush"
    );
}
