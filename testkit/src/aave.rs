//! Aave v3's "Test" market on the tests' anvil: its addresses typed ([`AaveMarket`]), the
//! dumped chain state it lives in, and what the tests do with it (mint test tokens from the
//! faucet, supply and borrow from a dev account, move a mock price, read a user's account
//! data).
//!
//! The market is deployed by `tests/peers/aave/deploy.js` (the package `@aave/deploy-v3`'s own
//! deployment scripts, offline) once per content of `tests/peers/package-lock.json` and of the
//! two deploy files; the result (`state.json`, `addresses.json`) is cached under the target
//! dir (`<target>/vigil-aave/<key>/`) and loaded by each test with `anvil --load-state`.
//! Parallel test processes take a file lock while one of them deploys, so none races.
//!
//! Aave's code is BUSL-1.1: a test fixture deployed on a local chain, never shipped or linked.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::str::FromStr;
use std::time::Instant;

use alloy_primitives::{Address, B256, I256, U256};
use alloy_sol_types::{SolCall, sol};
use serde::{Deserialize, Deserializer};
use sha2::{Digest, Sha256};

/// What `Pool.getUserAccountData` answers; the orchestrator's type, decoded here on its own.
pub use vigil_orchestrator::AccountData;

use crate::anvil::{Anvil, DEV_ACCOUNTS, peers_dir, require_peer};

sol! {
    interface IFaucet {
        function mint(address token, address to, uint256 amount) external returns (uint256);
    }
    interface IPool {
        function supply(address asset, uint256 amount, address onBehalfOf, uint16 referralCode) external;
        function borrow(address asset, uint256 amount, uint256 interestRateMode, uint16 referralCode, address onBehalfOf) external;
        function getUserAccountData(address user) external view returns (
            uint256 totalCollateralBase,
            uint256 totalDebtBase,
            uint256 availableBorrowsBase,
            uint256 currentLiquidationThreshold,
            uint256 ltv,
            uint256 healthFactor
        );
    }
    interface IMockAggregator {
        function latestAnswer() external view returns (int256);
    }
}

/// Aave's variable interest rate mode (`interestRateMode` 2).
pub const VARIABLE_RATE: u64 = 2;

/// The storage slot of a `MockAggregator`'s price (`int256 private _latestAnswer`, its first
/// and only variable; `@aave/core-v3` 1.19.3, contracts/mocks/oracle/CLAggregators).
pub const AGGREGATOR_PRICE_SLOT: u64 = 0;

/// The deployed market, as `tests/peers/aave/deploy.js` wrote it.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AaveMarket {
    pub chain_id: u64,
    /// The account that deployed it (anvil's first dev account): pool admin, faucet owner.
    #[serde(deserialize_with = "address")]
    pub deployer: Address,
    #[serde(deserialize_with = "address")]
    pub pool: Address,
    #[serde(deserialize_with = "address")]
    pub pool_addresses_provider: Address,
    #[serde(deserialize_with = "address")]
    pub pool_data_provider: Address,
    #[serde(deserialize_with = "address")]
    pub oracle: Address,
    #[serde(deserialize_with = "address")]
    pub faucet: Address,
    /// Per symbol (`WETH`, `USDC`, `DAI`, `AAVE`, `LINK`).
    pub assets: BTreeMap<String, AaveAsset>,
}

/// One reserve of the market.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AaveAsset {
    /// The mintable test token.
    #[serde(deserialize_with = "address")]
    pub token: Address,
    pub decimals: u8,
    #[serde(deserialize_with = "address")]
    pub a_token: Address,
    #[serde(deserialize_with = "address")]
    pub variable_debt_token: Address,
    /// Its `MockAggregator` (price in USD with 8 decimals).
    #[serde(deserialize_with = "address")]
    pub price_aggregator: Address,
}

fn address<'de, D: Deserializer<'de>>(d: D) -> Result<Address, D::Error> {
    let text = String::deserialize(d)?;
    Address::from_str(&text).map_err(serde::de::Error::custom)
}

impl AaveMarket {
    /// The reserve `symbol` (panics naming the market's symbols if there is none such).
    pub fn asset(&self, symbol: &str) -> &AaveAsset {
        self.assets.get(symbol).unwrap_or_else(|| {
            panic!(
                "the Aave test market has no {symbol}; it has {:?}",
                self.assets.keys().collect::<Vec<_>>()
            )
        })
    }
}

/// `amount` whole tokens of `asset` in base units (`amount * 10^decimals`).
pub fn units(asset: &AaveAsset, amount: u64) -> U256 {
    U256::from(amount) * U256::from(10u64).pow(U256::from(asset.decimals))
}

impl Anvil {
    /// Mints `amount` (base units) of the market's `symbol` to `to` from its faucet (at most
    /// the faucet's limit per call, 10 000 whole tokens).
    pub async fn mint(&self, symbol: &str, to: Address, amount: U256) {
        let market = self.aave();
        let token = market.asset(symbol).token;
        let call = IFaucet::mintCall { token, to, amount }.abi_encode();
        self.send(market.deployer, market.faucet, call).await;
    }

    /// The unlocked `from` mints `amount` of `symbol` to itself, approves the Pool for it and
    /// supplies it.
    pub async fn supply(&self, from: Address, symbol: &str, amount: U256) {
        let market = self.aave();
        let asset = market.asset(symbol).token;
        self.mint(symbol, from, amount).await;
        self.approve(from, asset, market.pool, amount).await;
        let call = IPool::supplyCall {
            asset,
            amount,
            onBehalfOf: from,
            referralCode: 0,
        };
        self.send(from, market.pool, call.abi_encode()).await;
    }

    /// The unlocked `from` borrows `amount` of `symbol` at the variable rate; the node's
    /// refusal (e.g. not enough collateral) as text.
    pub async fn try_borrow(
        &self,
        from: Address,
        symbol: &str,
        amount: U256,
    ) -> Result<(), String> {
        let market = self.aave();
        let call = IPool::borrowCall {
            asset: market.asset(symbol).token,
            amount,
            interestRateMode: U256::from(VARIABLE_RATE),
            referralCode: 0,
            onBehalfOf: from,
        };
        self.try_send(from, market.pool, call.abi_encode())
            .await
            .map(drop)
    }

    /// The Pool's `getUserAccountData(user)`.
    pub async fn account_data(&self, user: Address) -> AccountData {
        let out = self
            .call(
                self.aave().pool,
                IPool::getUserAccountDataCall { user }.abi_encode(),
            )
            .await;
        let r = IPool::getUserAccountDataCall::abi_decode_returns(&out)
            .unwrap_or_else(|e| panic!("getUserAccountData answered {out:?}: {e}"));
        AccountData {
            total_collateral_base: r.totalCollateralBase,
            total_debt_base: r.totalDebtBase,
            available_borrows_base: r.availableBorrowsBase,
            liquidation_threshold_bps: r.currentLiquidationThreshold,
            ltv_bps: r.ltv,
            health_factor: r.healthFactor,
        }
    }

    /// The mock price of `symbol` (USD, 8 decimals).
    pub async fn price(&self, symbol: &str) -> I256 {
        let aggregator = self.aave().asset(symbol).price_aggregator;
        let out = self
            .call(
                aggregator,
                IMockAggregator::latestAnswerCall {}.abi_encode(),
            )
            .await;
        IMockAggregator::latestAnswerCall::abi_decode_returns(&out)
            .unwrap_or_else(|e| panic!("latestAnswer of {aggregator} answered {out:?}: {e}"))
    }

    /// Moves the mock price of `symbol` to `price` (USD, 8 decimals) by writing its
    /// aggregator's storage, and checks the aggregator now answers it.
    pub async fn set_price(&self, symbol: &str, price: I256) {
        let aggregator = self.aave().asset(symbol).price_aggregator;
        let word = B256::from(price.into_raw());
        self.set_storage(aggregator, U256::from(AGGREGATOR_PRICE_SLOT), word)
            .await;
        assert_eq!(
            self.price(symbol).await,
            price,
            "the {symbol} aggregator does not keep its price in slot {AGGREGATOR_PRICE_SLOT}"
        );
    }
}

/// The dumped state and the addresses of the market, deploying it first if this
/// package-lock has none yet (under a lock: one process deploys, the others wait for it).
pub(crate) fn market_state() -> (PathBuf, AaveMarket) {
    let peers = peers_dir();
    let node_ok = Command::new("node")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        node_ok,
        "node is not installed: run tests/run (it installs the test peers), or install nodejs"
    );
    require_peer(
        &peers,
        "Aave v3's deployment (npm @aave/deploy-v3)",
        "node_modules/@aave/deploy-v3/package.json",
    );
    require_peer(&peers, "hardhat (npm)", "node_modules/hardhat/package.json");
    let root = target_dir().join("vigil-aave");
    std::fs::create_dir_all(&root)
        .unwrap_or_else(|e| panic!("cannot make {}: {e}", root.display()));
    let key = cache_key(&peers);
    let dir = root.join(&key);
    let lock = File::create(root.join(".lock"))
        .unwrap_or_else(|e| panic!("cannot open the lock in {}: {e}", root.display()));
    rustix::fs::flock(&lock, rustix::fs::FlockOperation::LockExclusive)
        .unwrap_or_else(|e| panic!("cannot lock {}: {e}", root.display()));
    if !dir.join("addresses.json").is_file() || !dir.join("state.json").is_file() {
        deploy(&peers, &root, &key);
    }
    drop(lock);
    let text = std::fs::read_to_string(dir.join("addresses.json"))
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()));
    let market: AaveMarket = serde_json::from_str(&text).unwrap_or_else(|e| {
        panic!(
            "{}/addresses.json does not parse ({e}): remove {} and run again",
            dir.display(),
            dir.display()
        )
    });
    assert_eq!(
        market.deployer, DEV_ACCOUNTS[0].0,
        "the market's deployer is not anvil's first dev account"
    );
    (dir.join("state.json"), market)
}

/// Runs `tests/peers/aave/deploy.js` into `root/<key>.partial`, then renames it to
/// `root/<key>` (so a dump is complete or absent); its output goes to `root/<key>.log`.
fn deploy(peers: &Path, root: &Path, key: &str) {
    let partial = root.join(format!("{key}.partial"));
    let _ = std::fs::remove_dir_all(&partial);
    let log_path = root.join(format!("{key}.log"));
    let log = File::create(&log_path)
        .unwrap_or_else(|e| panic!("cannot write {}: {e}", log_path.display()));
    let started = Instant::now();
    let status = Command::new("node")
        .arg(peers.join("aave/deploy.js"))
        .arg(&partial)
        .current_dir(peers)
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .status()
        .unwrap_or_else(|e| panic!("cannot run node aave/deploy.js: {e}"));
    if !status.success() {
        let output = std::fs::read_to_string(&log_path).unwrap_or_default();
        let tail: Vec<&str> = output.lines().rev().take(30).collect();
        panic!(
            "deploying the Aave test market failed ({status}); the end of {}:\n{}",
            log_path.display(),
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        );
    }
    std::fs::rename(&partial, root.join(key))
        .unwrap_or_else(|e| panic!("cannot move the deployed market into place: {e}"));
    println!("deployed the Aave test market in {:.1?}", started.elapsed());
}

/// What the dump depends on: the installed packages and the two deploy files.
fn cache_key(peers: &Path) -> String {
    let mut hash = Sha256::new();
    for file in [
        "package-lock.json",
        "aave/hardhat.config.js",
        "aave/deploy.js",
    ] {
        let path = peers.join(file);
        let bytes =
            std::fs::read(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        hash.update(file.as_bytes());
        hash.update((bytes.len() as u64).to_le_bytes());
        hash.update(&bytes);
    }
    hex::encode(&hash.finalize()[..8])
}

/// The cargo target dir: `CARGO_TARGET_DIR` (relative to the repository if relative), else
/// the repository's `target/`.
fn target_dir() -> PathBuf {
    let root = crate::host::repo_root();
    std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), |dir| root.join(dir))
}
