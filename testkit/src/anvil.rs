//! A local EVM node for the tests: anvil (npm `@foundry-rs/anvil`, its binary from the
//! platform package `@foundry-rs/anvil-linux-amd64`, installed in `tests/peers` by
//! `tests/run`) on a free loopback port, chain id [`CHAIN_ID`], killed on drop.
//!
//! [`Anvil::start`] gives a plain chain whose dev accounts ([`DEV_ACCOUNTS`]) hold 10 000 ETH
//! each and are unlocked (`eth_sendTransaction` from them needs no signer);
//! [`Anvil::with_aave`] loads Aave v3's "Test" market ([`crate::aave`]). The helpers speak
//! JSON-RPC themselves (nothing from the orchestrator's client, which the tests check against
//! this node): fund an address, send a call from a dev account and read its receipt, read an
//! ERC-20 balance, and the anvil-only cheats (`anvil_setBalance`, `anvil_setStorageAt`).

use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use alloy_primitives::{Address, B256, U256, address, b256};
use alloy_sol_types::{SolCall, sol};
use serde_json::{Value, json};

use crate::aave::AaveMarket;
use crate::host::repo_root;

/// The chain id every test chain has (anvil's and hardhat's default).
pub const CHAIN_ID: u64 = 31337;

/// The first two of anvil's dev accounts (from the public test mnemonic "test test ... junk"):
/// address and private key. Funded with 10 000 ETH and unlocked on every test chain; the
/// first deployed the Aave market and owns its faucet. Public keys of a test chain, never a
/// secret.
pub const DEV_ACCOUNTS: [(Address, B256); 2] = [
    (
        address!("f39Fd6e51aad88F6F4ce6aB8827279cffFb92266"),
        b256!("ac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"),
    ),
    (
        address!("70997970C51812dc3A010C7d01b50e0d17dc79C8"),
        b256!("59c6995e998f97a5a0044966f0945389dc9c86dae88c7a8412f4603b6b78690d"),
    ),
];

/// The gas limit of every transaction the fixture sends. Not anvil's estimate: Aave's
/// interest accrual costs more gas when a second has passed between the estimate and the block
/// (under load the estimate then falls short and the transaction reverts out of gas).
const FIXTURE_GAS: u64 = 3_000_000;

/// How long anvil may take to listen (loading the Aave state takes well under a second).
const START_TIMEOUT: Duration = Duration::from_secs(20);

sol! {
    interface IERC20 {
        function balanceOf(address account) external view returns (uint256);
        function approve(address spender, uint256 amount) external returns (bool);
        function transfer(address to, uint256 amount) external returns (bool);
    }
}

/// The repository's `tests/peers` directory.
pub(crate) fn peers_dir() -> PathBuf {
    repo_root().join("tests/peers")
}

/// Panics, saying to run `tests/run`, unless the npm test peers under `peers` hold `what`
/// (`file`): the same convention as the Telegram emulator's (a missing peer fails, never
/// passes silently).
pub fn require_peer(peers: &Path, what: &str, file: &str) -> PathBuf {
    let path = peers.join(file);
    assert!(
        path.is_file(),
        "{what} is not installed ({} missing): run tests/run (it installs the test peers), or \
         `npm ci --ignore-scripts` in tests/peers",
        path.display()
    );
    path
}

/// A running anvil; killed on drop.
#[derive(Debug)]
pub struct Anvil {
    child: Child,
    url: String,
    aave: Option<AaveMarket>,
    http: reqwest::Client,
}

impl Drop for Anvil {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Anvil {
    /// A fresh chain: no contracts, the dev accounts funded.
    pub fn start() -> Anvil {
        Anvil::spawn(None, None)
    }

    /// A chain with Aave v3's "Test" market deployed (loaded from the dump made once per
    /// `tests/peers/package-lock.json`; the first call of a run may take a minute to make it).
    pub fn with_aave() -> Anvil {
        let (state, market) = crate::aave::market_state();
        Anvil::spawn(Some(&state), Some(market))
    }

    fn spawn(state: Option<&Path>, aave: Option<AaveMarket>) -> Anvil {
        let peers = peers_dir();
        let binary = require_peer(
            &peers,
            "anvil (npm @foundry-rs/anvil-linux-amd64)",
            "node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil",
        );
        let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .and_then(|l| l.local_addr())
            .unwrap_or_else(|e| panic!("no free loopback port for anvil: {e}"))
            .port();
        let mut command = Command::new(&binary);
        command
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["--chain-id", &CHAIN_ID.to_string(), "--silent"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        if let Some(state) = state {
            command.arg("--load-state").arg(state);
        }
        let mut child = command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()));
        let listening = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let deadline = Instant::now() + START_TIMEOUT;
        while TcpStream::connect_timeout(&listening, Duration::from_millis(200)).is_err() {
            if let Ok(Some(status)) = child.try_wait() {
                panic!("anvil exited ({status}) before listening on {listening}");
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("anvil did not listen on {listening} within {START_TIMEOUT:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Anvil {
            child,
            url: format!("http://{listening}"),
            aave,
            http: reqwest::Client::new(),
        }
    }

    /// The JSON-RPC URL, `http://127.0.0.1:<port>`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The Aave market's addresses (panics on a plain chain: use [`Anvil::with_aave`]).
    pub fn aave(&self) -> &AaveMarket {
        self.aave
            .as_ref()
            .expect("this chain has no Aave market: start it with Anvil::with_aave()")
    }

    /// One JSON-RPC call: its `result`, or the node's `error` object as text.
    pub async fn try_rpc(&self, method: &str, params: Value) -> Result<Value, String> {
        let request = json!({ "jsonrpc": "2.0", "id": 1, "method": method, "params": params });
        let mut answer: Value = self
            .http
            .post(&self.url)
            .json(&request)
            .send()
            .await
            .unwrap_or_else(|e| panic!("{method}: anvil at {} unreachable: {e}", self.url))
            .json()
            .await
            .unwrap_or_else(|e| panic!("{method}: anvil answered no JSON: {e}"));
        match answer.get_mut("error") {
            Some(error) => Err(format!("{method}: {error}")),
            None => Ok(answer["result"].take()),
        }
    }

    /// One JSON-RPC call that must succeed.
    pub async fn rpc(&self, method: &str, params: Value) -> Value {
        self.try_rpc(method, params)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// `eth_call` of `data` on `to` at the latest block: the returned bytes.
    pub async fn call(&self, to: Address, data: Vec<u8>) -> Vec<u8> {
        let result = self
            .rpc(
                "eth_call",
                json!([{ "to": to.to_string(), "data": hex_bytes(&data) }, "latest"]),
            )
            .await;
        let text = result.as_str().unwrap_or_default();
        hex::decode(text.trim_start_matches("0x"))
            .unwrap_or_else(|e| panic!("eth_call answered {result}: {e}"))
    }

    /// Sends `data` to `to` from the unlocked `from` (`eth_sendTransaction`, gas limit
    /// 3 000 000; anvil mines it at once) and returns its receipt, or the node's refusal or a failed receipt as text.
    pub async fn try_send(
        &self,
        from: Address,
        to: Address,
        data: Vec<u8>,
    ) -> Result<Value, String> {
        let hash = self
            .try_rpc(
                "eth_sendTransaction",
                json!([{
                    "from": from.to_string(),
                    "to": to.to_string(),
                    "data": hex_bytes(&data),
                    "gas": format!("{FIXTURE_GAS:#x}"),
                }]),
            )
            .await?;
        let receipt = self.receipt(&hash).await;
        match receipt["status"].as_str() {
            Some("0x1") => Ok(receipt),
            _ => Err(format!("transaction {hash} failed: {receipt}")),
        }
    }

    /// [`Anvil::try_send`] that must succeed.
    pub async fn send(&self, from: Address, to: Address, data: Vec<u8>) -> Value {
        self.try_send(from, to, data)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// The receipt of the transaction `hash` (waiting up to 10 s for it to be mined).
    pub async fn receipt(&self, hash: &Value) -> Value {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let receipt = self.rpc("eth_getTransactionReceipt", json!([hash])).await;
            if !receipt.is_null() {
                return receipt;
            }
            assert!(
                Instant::now() < deadline,
                "no receipt for {hash} after 10 s"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Sets the ETH balance of `who` to `wei` (`anvil_setBalance`).
    pub async fn fund(&self, who: Address, wei: U256) {
        self.rpc("anvil_setBalance", json!([who.to_string(), quantity(wei)]))
            .await;
    }

    /// The ETH balance of `who`, in wei.
    pub async fn eth_balance(&self, who: Address) -> U256 {
        parse_quantity(
            &self
                .rpc("eth_getBalance", json!([who.to_string(), "latest"]))
                .await,
        )
    }

    /// The ERC-20 balance of `owner` in `token`, in base units.
    pub async fn balance_of(&self, token: Address, owner: Address) -> U256 {
        let out = self
            .call(token, IERC20::balanceOfCall { account: owner }.abi_encode())
            .await;
        IERC20::balanceOfCall::abi_decode_returns(&out)
            .unwrap_or_else(|e| panic!("balanceOf of {token} answered {out:?}: {e}"))
    }

    /// `from` approves `spender` for `amount` of `token`.
    pub async fn approve(&self, from: Address, token: Address, spender: Address, amount: U256) {
        self.send(
            from,
            token,
            IERC20::approveCall { spender, amount }.abi_encode(),
        )
        .await;
    }

    /// Writes the 32-byte `value` at storage `slot` of `contract` (`anvil_setStorageAt`).
    pub async fn set_storage(&self, contract: Address, slot: U256, value: B256) {
        self.rpc(
            "anvil_setStorageAt",
            json!([contract.to_string(), quantity(slot), value.to_string()]),
        )
        .await;
    }

    /// The number of the latest block.
    pub async fn block_number(&self) -> u64 {
        u64::try_from(parse_quantity(
            &self.rpc("eth_blockNumber", json!([])).await,
        ))
        .expect("a block number that fits in 64 bits")
    }
}

/// `0x`-prefixed hex of `bytes`.
fn hex_bytes(bytes: &[u8]) -> String {
    format!("0x{}", hex::encode(bytes))
}

/// A JSON-RPC quantity: `0x` and hex without leading zeros.
pub fn quantity(value: U256) -> String {
    format!("0x{value:x}")
}

/// A JSON-RPC quantity read back (panics naming the value if it is none).
pub fn parse_quantity(value: &Value) -> U256 {
    value
        .as_str()
        .and_then(|s| s.strip_prefix("0x"))
        .and_then(|s| U256::from_str_radix(s, 16).ok())
        .unwrap_or_else(|| panic!("{value} is not a hex quantity"))
}
