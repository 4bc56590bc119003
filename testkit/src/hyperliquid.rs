//! A loopback Hyperliquid exchange for the tests: `tests/peers/hyperliquid/exchange.py`, whose
//! judges of a signature are the official Python SDK (installed in a venv by `tests/run`) and
//! the npm package `@nktkas/hyperliquid` (`nktkas_check.mjs`), on a free port, killed on drop,
//! optionally following a seeded synthetic market path; the SDK's own signing, for tests of
//! what the orchestrator's client posts; and the nktkas checker on its own, for differential
//! tests of the signer.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use serde_json::{Value, json};

/// The SDK's test key (its `tests/signing_test.py`): a public test key, never a secret.
pub const SDK_TEST_KEY: &str = "0x0123456789012345678901234567890123456789012345678901234567890123";
/// The address of [`SDK_TEST_KEY`].
pub const SDK_TEST_ADDRESS: &str = "0x14791697260e4c9a71f18484c9f997b308e59325";

fn peer_dir() -> PathBuf {
    crate::anvil::peers_dir().join("hyperliquid")
}

/// The agent's two Hyperliquid addresses on `network` (e.g. `hyperliquid:testnet`) from the
/// signer's `hello` result: the API wallet (`network_addresses`) and the master account
/// (`hyperliquid_masters`), both in the exchange's lowercase form.
pub fn agent_addresses(hello: &Value, agent: usize, network: &str) -> (String, String) {
    let a = &hello["agents"][agent];
    let text = |v: &Value, what: &str| {
        v.as_str()
            .unwrap_or_else(|| panic!("hello names no {what} for {network}: {a}"))
            .to_owned()
    };
    (
        text(&a["network_addresses"][network], "API wallet"),
        text(&a["hyperliquid_masters"][network], "master"),
    )
}

/// A deputy `id` on Hyperliquid testnet ETH deciding every second: perp orders, cancels and
/// holds, at most `max_order_usd_micros` an order and twice that of position, 3x, 1 % from
/// the mark (its layer-2 profile; the signed policy's caps apply at the signer).
pub fn eth_deputy(id: &str, max_order_usd_micros: u64) -> crate::AgentSpec {
    crate::AgentSpec::new(id)
        .every(1)
        .actions(&["perp_order", "perp_cancel", "hold"])
        .perp(
            "testnet",
            "ETH",
            crate::config::PerpSpec {
                max_order_usd_micros,
                max_position_usd_micros: 2 * max_order_usd_micros,
                leverage: 3,
                max_slippage_bps: 100,
            },
        )
}

/// A signed policy for the agent `trader` on `hyperliquid:testnet` (the order, cancel,
/// leverage and dead-man switch actions): ETH 2 000 USD an order and 5 000 USD of position at
/// the signer.
pub const TRADER_POLICY: &str = r#"version = 1
[agents.trader]
actions = ["perp_order", "perp_cancel", "perp_leverage", "perp_schedule_cancel"]
networks = ["hyperliquid:testnet"]
recipients = []
rate_limit_per_minute = 600
[agents.trader.assets.ETH]
chain = "hyperliquid"
per_tx_cap = "2000000000"
velocity_24h = "100000000000"
approval_threshold = "2000000000"

[networks."hyperliquid:testnet"]
perps.ETH = { coin = "ETH", index = 1, sz_decimals = 4, max_leverage = 5, max_position_notional = "5000000000" }
"#;

/// The venv's Python, or a failure saying how to install it.
pub fn python() -> PathBuf {
    let python = peer_dir().join(".venv/bin/python");
    assert!(
        python.is_file(),
        "the Hyperliquid SDK peer is not installed ({} missing): run tests/run, which makes the venv from tests/peers/hyperliquid/requirements.txt",
        python.display()
    );
    python
}

/// A running loopback exchange; killed on drop, with its second verifier (same process group).
#[derive(Debug)]
pub struct Exchange {
    child: Child,
    url: String,
    _state: tempfile::NamedTempFile,
}

impl Exchange {
    /// Starts a testnet exchange with `users`: (master address, USDC, approved agent addresses),
    /// and mid prices BTC 97000, ETH 2500, SOL 150.
    pub fn start(users: &[(&str, &str, &[&str])]) -> Exchange {
        Exchange::start_with(users, &json!({}))
    }

    /// As [`Exchange::start`], with more of the state file's fields from `extra` (see
    /// `exchange.py`): `now_ms` (the clock), `path` (`{"seed", "step_ms", "vol_bps",
    /// "start_ms", "events": [{"at_ms", "coin", "move_bps"}]}`: seeded mids from the start
    /// prices), `funding` (hourly rate per coin), `second_verifier` (an argv replacing the
    /// nktkas checker), `require_canonical` (refuse L1 actions whose keys are not in the
    /// exchange's canonical order).
    pub fn start_with(users: &[(&str, &str, &[&str])], extra: &Value) -> Exchange {
        nktkas_installed();
        let users: serde_json::Map<String, Value> = users
            .iter()
            .map(|(user, usdc, agents)| {
                ((*user).to_owned(), json!({"usdc": usdc, "agents": agents}))
            })
            .collect();
        let mut state =
            json!({"users": users, "mids": {"BTC": "97000", "ETH": "2500", "SOL": "150"}});
        if let (Some(state), Some(extra)) = (state.as_object_mut(), extra.as_object()) {
            state.extend(extra.clone());
        }
        let mut file = tempfile::NamedTempFile::new().expect("state file");
        file.write_all(state.to_string().as_bytes())
            .expect("write state");
        let mut child = Command::new(python())
            .arg(peer_dir().join("exchange.py"))
            .arg("0")
            .arg(file.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            // Its own process group, so that dropping it also ends its verifier child.
            .process_group(0)
            .spawn()
            .expect("start exchange.py");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("read the port");
        let port: u16 = line
            .strip_prefix("listening ")
            .and_then(|p| p.trim().parse().ok())
            .unwrap_or_else(|| panic!("exchange.py did not start: {line:?}"));
        Exchange {
            child,
            url: format!("http://127.0.0.1:{port}"),
            _state: file,
        }
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// POSTs the JSON text `body` as it is (its key order kept) and returns the JSON answer.
    pub async fn post_text(&self, path: &str, body: String) -> Value {
        let answer = reqwest::Client::new()
            .post(format!("{}{path}", self.url))
            .header("Content-Type", "application/json")
            .body(body)
            .send()
            .await
            .expect("post to the exchange");
        answer.json().await.expect("the exchange answers JSON")
    }

    /// POSTs `body` to the exchange's `path` and returns its JSON answer (`Value` sorts keys:
    /// see [`Exchange::post_text`]).
    pub async fn post(&self, path: &str, body: &Value) -> Value {
        let answer = reqwest::Client::new()
            .post(format!("{}{path}", self.url))
            .json(body)
            .send()
            .await
            .expect("post to the exchange");
        answer.json().await.expect("the exchange answers JSON")
    }

    /// Moves mid prices (resting orders that now cross fill).
    pub async fn set_mids(&self, mids: &Value) {
        self.post("/_test/mids", mids).await;
    }

    /// Sets the exchange's clock (ms; `None`: the real clock). Moving it forward walks the path
    /// through every instant in between: crossed resting orders fill, funding is paid.
    pub async fn set_now(&self, ms: Option<u64>) {
        let answer = self.post("/_test/now", &json!(ms)).await;
        assert_eq!(
            answer,
            json!({"ok": true}),
            "the exchange refused the clock"
        );
    }

    /// `/info` `allMids`: every coin's mid now, as the exchange writes it.
    pub async fn mids(&self) -> Value {
        self.post("/info", &json!({"type": "allMids"})).await
    }

    /// The path's mid of `coin` at `at_ms` (pinned mids aside), without moving the clock.
    pub async fn path_mid(&self, coin: &str, at_ms: u64) -> String {
        let answer = self
            .post("/_test/path_mid", &json!({"coin": coin, "at_ms": at_ms}))
            .await;
        match answer["mid"].as_str() {
            Some(mid) => mid.to_owned(),
            None => panic!("no path mid for {coin} at {at_ms}: {answer}"),
        }
    }

    /// Every entry of the exchange's log: accepted actions and the verifiers' disagreements.
    pub async fn log(&self) -> Vec<Value> {
        let answer = reqwest::get(format!("{}/_test/log", self.url))
            .await
            .expect("read the log");
        answer.json().await.expect("the log is JSON")
    }

    /// Every action the exchange accepted, with the signer it recovered and whether its keys
    /// are in `@nktkas/hyperliquid`'s canonical order (`canonical`).
    pub async fn accepted(&self) -> Vec<Value> {
        let mut log = self.log().await;
        log.retain(|e| e.get("disagreement").is_none());
        log
    }

    /// The payloads on which the official SDK and `@nktkas/hyperliquid` recovered different
    /// signers (each refused): `{"disagreement": {"sdk", "nktkas"}, "payload"}`.
    pub async fn disagreements(&self) -> Vec<Value> {
        let mut log = self.log().await;
        log.retain(|e| e.get("disagreement").is_some());
        log
    }
}

impl Drop for Exchange {
    fn drop(&mut self) {
        if let Some(group) = rustix::process::Pid::from_raw(self.child.id().cast_signed()) {
            // Already gone (ESRCH) is fine: the group is what we started, nothing else.
            rustix::process::kill_process_group(group, rustix::process::Signal::KILL).ok();
        }
        drop(self.child.kill());
        drop(self.child.wait());
    }
}

/// Panics, saying how to install them, unless node and `@nktkas/hyperliquid` are there.
fn nktkas_installed() -> PathBuf {
    crate::anvil::require_peer(
        &crate::anvil::peers_dir(),
        "@nktkas/hyperliquid (npm)",
        "node_modules/@nktkas/hyperliquid/package.json",
    );
    peer_dir().join("nktkas_check.mjs")
}

/// Runs each request line (`{"network", "action", "nonce", "signature", "vaultAddress",
/// "expiresAfter"}`) through `@nktkas/hyperliquid` (`nktkas_check.mjs`, one process for all of
/// them) and returns its answers in order: `{"signer", "canonical"}` or `{"error"}`.
pub fn nktkas_check(lines: &[String]) -> Vec<Value> {
    let script = nktkas_installed();
    let mut child = Command::new("node")
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run node (install nodejs, or run tests/run): {e}"));
    let mut stdin = child.stdin.take().expect("stdin");
    let input: String = lines.iter().map(|l| format!("{l}\n")).collect();
    let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
    let answers: Vec<Value> = BufReader::new(child.stdout.take().expect("stdout"))
        .lines()
        .map(|l| serde_json::from_str(&l.expect("read an answer")).expect("an answer is JSON"))
        .collect();
    writer
        .join()
        .expect("the writer thread")
        .expect("write the requests");
    let status = child.wait().expect("nktkas_check.mjs");
    assert!(status.success(), "nktkas_check.mjs failed: {status}");
    assert_eq!(
        answers.len(),
        lines.len(),
        "nktkas_check.mjs answered every line"
    );
    answers
}

/// The `/exchange` payload of `action` signed by the SDK with `key` on testnet. `action` goes
/// through `serde_json::Value`, so its keys reach the SDK sorted; see [`sdk_sign_text`].
pub fn sdk_sign(key: &str, action: &Value, nonce: u64) -> Value {
    sdk_sign_text(key, &action.to_string(), nonce)
}

/// As [`sdk_sign`], with the action as JSON text whose key order is kept: the SDK signs the
/// keys in this order (write them in the exchange's canonical order to sign what the real
/// exchange accepts).
pub fn sdk_sign_text(key: &str, action: &str, nonce: u64) -> Value {
    let action: Box<serde_json::value::RawValue> = serde_json::from_str(action)
        .unwrap_or_else(|e| panic!("the action is not JSON ({e}): {action}"));
    let mut child = Command::new(python())
        .arg(peer_dir().join("sdk_sign.py"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start sdk_sign.py");
    let req = format!(
        r#"{{"key":{},"action":{},"nonce":{nonce},"is_mainnet":false}}"#,
        json!(key),
        action.get()
    );
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(req.as_bytes())
        .expect("write the request");
    let out = child.wait_with_output().expect("sdk_sign.py");
    assert!(out.status.success(), "sdk_sign.py failed");
    serde_json::from_slice(&out.stdout).expect("sdk_sign.py answers JSON")
}
