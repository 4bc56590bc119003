//! A loopback Hyperliquid exchange for the tests: `tests/peers/hyperliquid/exchange.py`, whose
//! only judge of a signature is the official Python SDK (installed in a venv by `tests/run`),
//! on a free port, killed on drop; and the SDK's own signing, for tests of what the
//! orchestrator's client posts.

use std::io::{BufRead, BufReader, Write};
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

/// A running loopback exchange; killed on drop.
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
        let users: serde_json::Map<String, Value> = users
            .iter()
            .map(|(user, usdc, agents)| {
                ((*user).to_owned(), json!({"usdc": usdc, "agents": agents}))
            })
            .collect();
        let state = json!({"users": users, "mids": {"BTC": "97000", "ETH": "2500", "SOL": "150"}});
        let mut file = tempfile::NamedTempFile::new().expect("state file");
        file.write_all(state.to_string().as_bytes())
            .expect("write state");
        let mut child = Command::new(python())
            .arg(peer_dir().join("exchange.py"))
            .arg("0")
            .arg(file.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
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

    async fn post(&self, path: &str, body: &Value) -> Value {
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

    /// Every action the exchange accepted, with the signer it recovered.
    pub async fn accepted(&self) -> Vec<Value> {
        let answer = reqwest::get(format!("{}/_test/log", self.url))
            .await
            .expect("read the log");
        answer.json().await.expect("the log is JSON")
    }
}

impl Drop for Exchange {
    fn drop(&mut self) {
        drop(self.child.kill());
        drop(self.child.wait());
    }
}

/// The `/exchange` payload of `action` signed by the SDK with `key` on testnet.
pub fn sdk_sign(key: &str, action: &Value, nonce: u64) -> Value {
    let mut child = Command::new(python())
        .arg(peer_dir().join("sdk_sign.py"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start sdk_sign.py");
    let req = json!({"key": key, "action": action, "nonce": nonce, "is_mainnet": false});
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(req.to_string().as_bytes())
        .expect("write the request");
    let out = child.wait_with_output().expect("sdk_sign.py");
    assert!(out.status.success(), "sdk_sign.py failed");
    serde_json::from_slice(&out.stdout).expect("sdk_sign.py answers JSON")
}
