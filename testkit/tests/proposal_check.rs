//! `vigil-orchestrator proposal check <bundle-dir> --recording <file>`, the real binary, on
//! bundles written here and a window of the local market's seeded path
//! (`MarketPath::recording`): a good bundle passes every step and reports the replay's
//! trades, PnL and the bundle's SHA-256 (the same as `sha256sum` of `sha256sum`); a bundle
//! with a syntax error, failing tests, a config that does not parse, or a module that is
//! stopped during the replay is refused, the failing step named and the later ones skipped.
//! The command runs with an empty environment: it needs nothing but its two paths.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

use vigil_devnet::hyperliquid::MarketPath;
use vigil_testkit::host::binary;

const T0_MS: u64 = 1_767_225_600_000;

/// Buys 0.1 ETH when flat at hours ≡ 0 (mod 4), sells the long reduce-only at hours ≡ 2.
const TREND: &str = r#"
def decide(ctx):
    eth = marks()["ETH"]
    pos = positions().get("ETH", {}).get("size", 0)
    hour = (ctx["now"] // 3600) % 4
    if hour == 0 and pos <= 0:
        return propose({"action": "perp_order", "asset": "ETH", "side": "buy", "size": 0.1,
                        "limit_px": decimal(eth * 1.005, 0), "tif": "ioc"})
    if hour == 2 and pos > 0:
        return propose({"action": "perp_order", "asset": "ETH", "side": "sell", "size": pos,
                        "limit_px": decimal(eth * 0.995, 0), "tif": "ioc", "reduce_only": True})
    return None
"#;

const TREND_TESTS: &str = r#"
def test_buys_when_flat_at_hour_0():
    fixture(marks = {"ETH": 2000.0}, positions = {})
    order = decide({"now": 0})
    assert_eq(order["side"], "buy")
    assert_eq(order["limit_px"], "2010")

def test_sells_the_long_at_hour_2():
    fixture(marks = {"ETH": 2000.0}, positions = {"ETH": {"size": 0.1}})
    assert_eq(decide({"now": 2 * 3600})["reduce_only"], True)

def test_holds_otherwise():
    fixture(marks = {"ETH": 2000.0}, positions = {})
    assert_eq(decide({"now": 3600}), None)
"#;

/// A bundle directory with `files`.
fn bundle(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in files {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    dir
}

fn good(extra: &[(&'static str, &'static str)]) -> tempfile::TempDir {
    let mut files = vec![
        ("trend.star", TREND),
        ("trend_test.star", TREND_TESTS),
        (
            "rationale.md",
            "Buy the morning, sell the afternoon: a test strategy.\n",
        ),
    ];
    files.extend_from_slice(extra);
    bundle(&files)
}

/// Two days of hourly BTC and ETH marks.
fn recording(dir: &Path) -> PathBuf {
    let path = dir.join("window.json");
    let json = MarketPath::btc_eth(7, 50, T0_MS).recording("testnet", 48);
    std::fs::write(&path, serde_json::to_vec(&json).unwrap()).unwrap();
    path
}

/// Runs the check with an empty environment; (exit code, stdout).
fn check(bundle: &Path, recording: &Path, output: Option<&Path>) -> (i32, String) {
    let mut cmd = Command::new(binary("vigil-orchestrator"));
    cmd.env_clear()
        .arg("proposal")
        .arg("check")
        .arg(bundle)
        .arg("--recording")
        .arg(recording);
    if let Some(out) = output {
        cmd.arg("--output").arg(out);
    }
    let out = cmd.output().unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    (out.status.code().unwrap_or(-1), stdout)
}

/// The status of `step` in a report.
fn status<'a>(report: &'a str, step: &str) -> &'a str {
    report
        .lines()
        .find_map(|l| {
            let (status, rest) = l.strip_prefix('[')?.split_once("] ")?;
            rest.starts_with(&format!("{step}:")).then_some(status)
        })
        .unwrap_or_else(|| panic!("no {step} line in:\n{report}"))
}

#[test]
fn a_good_bundle_passes_and_reports_the_replay_and_its_digest() {
    let window = tempfile::tempdir().unwrap();
    let recording = recording(window.path());
    let bundle = good(&[]);
    let out = window.path().join("report.json");
    let (code, report) = check(bundle.path(), &recording, Some(&out));
    assert_eq!(code, 0, "{report}");
    for step in ["bundle", "parse", "config", "tests", "replay"] {
        assert_eq!(status(&report, step), "pass", "{step}:\n{report}");
    }
    assert!(report.contains("[pass] tests: 3 of 3 passed"), "{report}");
    assert!(report.contains("result: PASSED"), "{report}");

    // The digest is sha256sum of sha256sum's listing, as docs/operations.md says.
    let listing = Command::new("sh")
        .arg("-c")
        .arg("LC_ALL=C sha256sum -- * | sha256sum")
        .current_dir(bundle.path())
        .output()
        .unwrap();
    assert!(listing.status.success(), "sha256sum is needed (coreutils)");
    let digest = String::from_utf8(listing.stdout).unwrap();
    let digest = digest.split_whitespace().next().unwrap();
    assert!(
        report.contains(&format!("digest: sha256:{digest}")),
        "{digest}\n{report}"
    );

    // The JSON report says the same, with the replay's figures: 48 steps, a buy every 4 hours
    // and its sale 2 hours later.
    let json: serde_json::Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    assert_eq!(json["passed"], true);
    assert_eq!(json["digest"], digest);
    let replay = &json["replay"];
    assert_eq!(replay["steps"], 48, "{replay}");
    assert_eq!(replay["trades"], 24, "{replay}");
    assert_eq!(replay["refusals"].as_array().unwrap().len(), 0, "{replay}");
    let pnl: f64 = replay["pnl_usd"].as_str().unwrap().parse().unwrap();
    let fees: f64 = replay["fees_usd"].as_str().unwrap().parse().unwrap();
    assert!(fees > 0.0 && pnl != 0.0, "{replay}");
    assert!(report.contains("24 trades"), "{report}");
}

#[test]
fn a_bundles_own_config_is_used_and_its_caps_refuse() {
    let window = tempfile::tempdir().unwrap();
    let recording = recording(window.path());
    // ETH orders capped at 100 USD: every 0.1-ETH buy (~200 USD) is refused by layer 2.
    let config = r#"
signer_socket = "/nonexistent/s.sock"
state_db = "/nonexistent/s.sqlite3"
daily_llm_usd_cap_micros = 0
hyperliquid_urls = { testnet = "https://replay.invalid" }

[providers.scripted]
kind = "scripted"
script = "/nonexistent/r.toml"
prices = { prompt_micros_per_mtok = 0, completion_micros_per_mtok = 0 }

[[agents]]
id = "trader"
system_prompt = "A small trader."
provider = "scripted"
model = "scripted"
temperature = 0.0
max_tokens = 1
schedule_secs = 3600
hyperliquid_network = "testnet"
strategy_module = "trend"

[agents.risk]
allowed_actions = ["perp_order", "hold"]
max_fraction_per_tx_bps = 0

[agents.risk.perps.ETH]
max_order_usd_micros = 100_000_000
max_position_usd_micros = 1_000_000_000
leverage = 2
max_slippage_bps = 100
"#;
    let bundle = good(&[("config.toml", config)]);
    let (code, report) = check(bundle.path(), &recording, None);
    assert_eq!(code, 0, "{report}");
    assert!(
        report.contains("[pass] config: config.toml: agent trader"),
        "{report}"
    );
    assert!(report.contains("0 trades"), "{report}");
    assert!(report.contains("layer 2 PerpOrderNotional"), "{report}");
}

#[test]
fn bad_bundles_are_refused_with_the_step_named() {
    let window = tempfile::tempdir().unwrap();
    let recording = recording(window.path());
    let refused = |files: &[(&str, &str)], step: &str, says: &str| {
        let bundle = bundle(files);
        let (code, report) = check(bundle.path(), &recording, None);
        assert_eq!(code, 1, "{report}");
        assert_eq!(status(&report, step), "fail", "{report}");
        assert!(report.contains(says), "{says:?} not in:\n{report}");
        assert!(report.contains("result: REFUSED"), "{report}");
        report
    };
    let rationale = ("rationale.md", "Why.\n");

    // A syntax error: refused at parse, with the file and line; the tests never run.
    let report = refused(
        &[
            ("trend.star", "def decide(ctx)\n    return None\n"),
            ("trend_test.star", TREND_TESTS),
            rationale,
        ],
        "parse",
        "trend.star",
    );
    assert_eq!(status(&report, "tests"), "skip");

    // Its own tests fail: refused at tests, naming the test and the assertion.
    let wrong = "def test_sells_at_hour_0():\n    fixture(marks = {\"ETH\": 2000.0}, positions = {})\n    assert_eq(decide({\"now\": 0})[\"side\"], \"sell\")\n";
    let report = refused(
        &[("trend.star", TREND), ("trend_test.star", wrong), rationale],
        "tests",
        "0 of 1 passed; test_sells_at_hour_0: ",
    );
    assert!(report.contains("assert_eq"), "{report}");
    assert_eq!(status(&report, "replay"), "skip");

    // No tests at all is no pass.
    refused(
        &[
            ("trend.star", TREND),
            ("trend_test.star", "X = 1\n"),
            rationale,
        ],
        "tests",
        "defines no test_* function",
    );

    // A config that does not parse, or names another module.
    refused(
        &[
            ("trend.star", TREND),
            ("trend_test.star", TREND_TESTS),
            rationale,
            ("config.toml", "signer_socket = ["),
        ],
        "config",
        "config.toml does not parse",
    );

    // A module that passes its tests but is stopped in the replay (it loops once the hour is
    // not 0): refused at replay, the step and the limit named (the wall time or the steps,
    // whichever this build's speed reaches first).
    let sly = "def decide(ctx):\n    if ctx[\"now\"] % 86400 == 0:\n        return None\n    n = 0\n    for i in range(2000000000):\n        n += i\n    return None\n";
    let sly_tests = "def test_holds_at_midnight():\n    assert_eq(decide({\"now\": 0}), None)\n";
    refused(
        &[
            ("trend.star", sly),
            ("trend_test.star", sly_tests),
            rationale,
        ],
        "replay",
        "the module was stopped at 1 of 2 steps (first: ",
    );

    // Not a bundle: an extra file.
    refused(
        &[
            ("trend.star", TREND),
            ("trend_test.star", TREND_TESTS),
            rationale,
            ("run.sh", "curl x"),
        ],
        "bundle",
        "run.sh is not part of a bundle",
    );
}

/// Serves `connections` connections on a socket as `vigil-proposal.socket` (`Accept=yes`)
/// does: each accepted connection becomes the stdin and stdout of one `vigil-orchestrator
/// proposal serve`, with an empty environment and a private scratch directory as TMPDIR.
/// With `serve == false` each connection is closed unanswered (an instance killed at start).
fn accept_like_systemd(
    socket: &Path,
    connections: usize,
    serve: bool,
) -> std::thread::JoinHandle<()> {
    let listener = std::os::unix::net::UnixListener::bind(socket).unwrap();
    std::thread::spawn(move || {
        for _ in 0..connections {
            let (stream, _) = listener.accept().unwrap();
            if !serve {
                drop(stream);
                continue;
            }
            let scratch = tempfile::tempdir().unwrap();
            let input = std::os::fd::OwnedFd::from(stream.try_clone().unwrap());
            let output = std::os::fd::OwnedFd::from(stream);
            let status = Command::new(binary("vigil-orchestrator"))
                .env_clear()
                .env("TMPDIR", scratch.path())
                .args(["proposal", "serve"])
                .stdin(input)
                .stdout(output)
                .status()
                .unwrap();
            assert!(status.success(), "proposal serve: {status}");
            // The unpacked proposal is removed once its report is written.
            assert_eq!(std::fs::read_dir(scratch.path()).unwrap().count(), 0);
        }
    })
}

/// `proposal submit` (what /build does on the appliance); (exit code, stdout + stderr).
fn submit(bundle: &Path, recording: &Path, socket: &Path) -> (i32, String) {
    let out = Command::new(binary("vigil-orchestrator"))
        .env_clear()
        .args(["proposal", "submit"])
        .arg(bundle)
        .arg("--recording")
        .arg(recording)
        .arg("--socket")
        .arg(socket)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

#[test]
fn the_appliance_socket_checks_a_bundle_sent_over_the_connection() {
    let window = tempfile::tempdir().unwrap();
    let recording = recording(window.path());
    let socket = window.path().join("proposal.sock");
    let server = accept_like_systemd(&socket, 2, true);

    // A good bundle: the same report as `proposal check`, the digest sha256sum gives.
    let bundle = good(&[]);
    let (code, out) = submit(bundle.path(), &recording, &socket);
    assert_eq!(code, 0, "{out}");
    let (_, local) = check(bundle.path(), &recording, None);
    let digest = local
        .lines()
        .find_map(|l| l.trim().strip_prefix("digest: sha256:"))
        .unwrap_or_else(|| panic!("no digest in {local}"));
    assert!(out.contains(&format!("bundle SHA-256: {digest}")), "{out}");
    assert!(out.contains("[pass] tests: 3 of 3 passed"), "{out}");
    assert!(
        out.contains("replay: 48 steps") && out.contains("24 trades"),
        "{out}"
    );

    // A failing test: refused at `tests`, exit status 1.
    let broken = TREND_TESTS.replace(
        r#"assert_eq(decide({"now": 3600}), None)"#,
        r#"assert_eq(decide({"now": 3600}), "sell")"#,
    );
    let bad = bundle_with_tests(&broken);
    let (code, out) = submit(bad.path(), &recording, &socket);
    assert_eq!(code, 1, "{out}");
    assert_eq!(status(&out, "tests"), "fail", "{out}");
    assert_eq!(status(&out, "replay"), "skip", "{out}");
    server.join().unwrap();

    // An instance that dies before it answers (killed at its limit, or too many at once).
    std::fs::remove_file(&socket).unwrap();
    let server = accept_like_systemd(&socket, 1, false);
    let (code, out) = submit(bundle.path(), &recording, &socket);
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains("closed the connection without a report"),
        "{out}"
    );
    server.join().unwrap();

    // Nothing listening: says what to check.
    std::fs::remove_file(&socket).unwrap();
    let (code, out) = submit(bundle.path(), &recording, &socket);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("cannot reach the proposal sandbox"), "{out}");
}

/// The good bundle with other tests.
fn bundle_with_tests(tests: &str) -> tempfile::TempDir {
    let dir = good(&[]);
    std::fs::write(dir.path().join("trend_test.star"), tests).unwrap();
    dir
}
