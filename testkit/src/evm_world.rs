//! An EVM world for the orchestrator's tests: anvil with Aave v3's Test market, the real
//! confined signer under a policy whose `evm:devnet` table is that market (its chain id and
//! genesis hash, WETH and USDC, the Pool), the agent's address funded, and an orchestrator in
//! this process on a config that points `evm_rpc_urls.devnet` at the node.

use std::path::PathBuf;

use alloy_primitives::{Address, U256};
use serde_json::json;
use tempfile::TempDir;
use vigil_orchestrator::{AgentConfig, Orchestrator};

use crate::aave::units;
use crate::anvil::{Anvil, CHAIN_ID, DEV_ACCOUNTS};
use crate::config::{AgentSpec, ConfigBuilder, PerpSpec};
use crate::script::{Reply, Script};
use crate::signer::Signer;

/// The agent of the EVM world.
pub const AGENT: &str = "trader";
/// One ether in wei.
pub const ETHER: u128 = 1_000_000_000_000_000_000;

/// The second dev account: the agent's one policy recipient and peer `bob`.
pub fn bob() -> Address {
    DEV_ACCOUNTS[1].0
}

/// What the signed policy pins for `evm:devnet` (a test may pin another chain on purpose).
#[derive(Clone, Debug)]
pub struct Pin {
    pub chain_id: u64,
    /// `None`: the node's own block-0 hash.
    pub genesis_hash: Option<String>,
}

impl Default for Pin {
    fn default() -> Pin {
        Pin {
            chain_id: CHAIN_ID,
            genesis_hash: None,
        }
    }
}

/// The running world.
#[derive(Debug)]
pub struct EvmWorld {
    pub anvil: Anvil,
    pub signer: Signer,
    /// The agent's EVM address (its key for `evm:devnet`, from `hello`).
    pub agent: Address,
    dir: TempDir,
}

impl EvmWorld {
    /// Anvil with the Aave market, the signer under the market's policy (pinned as `pin`), the
    /// agent holding 10 ETH, 5 WETH and 1 000 USDC, and 9 000 USDC of liquidity in the Pool.
    pub async fn start(pin: Pin) -> EvmWorld {
        EvmWorld::start_with(pin, false).await
    }

    /// [`EvmWorld::start`], and with `perps` the policy also lets the agent trade the BTC
    /// perpetual on `hyperliquid:testnet` (index 0, as the local market lists it) and repay
    /// all of a USDC debt (`allow_all`): a deputy on Aave and Hyperliquid.
    pub async fn start_with(pin: Pin, perps: bool) -> EvmWorld {
        let anvil = Anvil::with_aave();
        let genesis = match pin.genesis_hash {
            Some(hash) => hash,
            None => anvil
                .rpc("eth_getBlockByNumber", json!(["0x0", false]))
                .await["hash"]
                .as_str()
                .expect("block 0 has a hash")
                .to_owned(),
        };
        let signer = Signer::with(&[AGENT])
            .policy_toml(&if perps {
                with_perps(&policy(&anvil, pin.chain_id, &genesis))
            } else {
                policy(&anvil, pin.chain_id, &genesis)
            })
            .start();
        let mut client = signer.client();
        let hello = crate::requests::ok(
            client
                .call(vigil_protocol::Op::Hello)
                .expect("the signer answers hello"),
        );
        let agent: Address = hello["agents"][0]["network_addresses"]["evm:devnet"]
            .as_str()
            .expect("an evm:devnet key")
            .parse()
            .expect("an EVM address");
        let market = anvil.aave().clone();
        anvil.fund(agent, U256::from(10 * ETHER)).await;
        anvil
            .mint("WETH", agent, units(market.asset("WETH"), 5))
            .await;
        anvil
            .mint("USDC", agent, units(market.asset("USDC"), 1_000))
            .await;
        anvil
            .supply(bob(), "USDC", units(market.asset("USDC"), 9_000))
            .await;
        EvmWorld {
            anvil,
            signer,
            agent,
            dir: tempfile::tempdir().expect("a temporary directory"),
        }
    }

    /// The state file every orchestrator of this world shares (restarts keep it).
    pub fn state_db(&self) -> PathBuf {
        self.dir.path().join("state.sqlite")
    }

    /// An orchestrator on a fresh config for `spec` (the agent `trader` with peer `bob`)
    /// whose scripted model answers `replies` in order.
    pub fn orchestrator(
        &self,
        spec: AgentSpec,
        replies: Vec<Reply>,
    ) -> (Orchestrator, AgentConfig) {
        let script = self.dir.path().join("script.toml");
        Script::new().agent(AGENT, replies).write(&script);
        let builder = ConfigBuilder::new(&self.signer.socket(), &self.state_db())
            .scripted(&script)
            .evm_rpc("devnet", self.anvil.url())
            .agent(spec);
        let orchestrator = builder.orchestrator();
        let agent = orchestrator.agents()[0].clone();
        (orchestrator, agent)
    }
}

/// The agent's profile: every EVM action, peer `bob`, a floor of 1.5, up to the whole of a
/// balance per transaction (the signer's caps still bound it).
pub fn trader() -> AgentSpec {
    AgentSpec::new(AGENT)
        .actions(&[
            "transfer",
            "aave_supply",
            "aave_withdraw",
            "aave_borrow",
            "aave_repay",
            "hold",
        ])
        .peer("bob", &bob().to_checksum(None))
        .fraction_bps(10_000)
        .min_health_factor("1.5")
}

/// `trader` live on ETH, WETH and USDC, each action going out without the operator's Yes (the
/// signer's policy bounds it).
pub fn live_trader() -> AgentSpec {
    trader()
        .live("ETH")
        .live("WETH")
        .live("USDC")
        .confirm_transfers(false)
}

/// The actions of a deputy on Aave and the BTC perpetual ([`EvmWorld::start_with`]`(.., true)`).
pub const AAVE_DEPUTY_ACTIONS: &[&str] = &[
    "aave_supply",
    "aave_borrow",
    "aave_repay",
    "aave_withdraw",
    "perp_order",
    "perp_cancel",
    "hold",
];

/// `spec` as a deputy on Aave and the BTC perpetual of [`EvmWorld::start_with`]`(.., true)`'s
/// policy: [`AAVE_DEPUTY_ACTIONS`], BTC capped at 1 000 USD an order and 2 000 USD of position,
/// 3x, 1 % from the mark. The loss floor is the caller's.
pub fn aave_btc_deputy(spec: AgentSpec) -> AgentSpec {
    spec.actions(AAVE_DEPUTY_ACTIONS).perp(
        "testnet",
        "BTC",
        PerpSpec {
            max_order_usd_micros: 1_000_000_000,
            max_position_usd_micros: 2_000_000_000,
            leverage: 3,
            max_slippage_bps: 100,
        },
    )
}

/// `policy` with the BTC perpetual of `hyperliquid:testnet` added for the agent, and USDC's
/// `allow_all` (a deputy repays a whole debt with `"all"`; WETH keeps exact amounts only, so a
/// withdrawal of `"all"` is refused: both forms are met).
fn with_perps(policy: &str) -> String {
    let policy = policy
        .replace("decimals = 6\n", "decimals = 6\nallow_all = true\n")
        .replace(
            "networks = [\"evm:devnet\"]",
            "networks = [\"evm:devnet\", \"hyperliquid:testnet\"]",
        )
        .replace(
            "\"aave_borrow\", \"aave_repay\"]",
            "\"aave_borrow\", \"aave_repay\", \"perp_order\", \"perp_cancel\", \
             \"perp_leverage\", \"perp_schedule_cancel\"]",
        );
    format!(
        r#"{policy}
[agents.{AGENT}.assets.BTC]
chain = "hyperliquid"
per_tx_cap = "2000000000"
velocity_24h = "100000000000"
approval_threshold = "2000000000"

[networks."hyperliquid:testnet"]
perps.BTC = {{ coin = "BTC", index = 0, sz_decimals = 5, max_leverage = 40, max_position_notional = "5000000000" }}
"#
    )
}

/// The signed policy of the world: caps far above what the tests move, an approval threshold
/// of 50 ETH / 5 000 USDC / 50 WETH, the market's tokens and Pool.
fn policy(anvil: &Anvil, chain_id: u64, genesis: &str) -> String {
    let market = anvil.aave();
    let token = |symbol: &str| market.asset(symbol).token.to_checksum(None);
    format!(
        r#"version = 1

[agents.{AGENT}]
actions = ["transfer", "aave_supply", "aave_withdraw", "aave_borrow", "aave_repay"]
networks = ["evm:devnet"]
recipients = ["{bob}"]
rate_limit_per_minute = 600

[agents.{AGENT}.assets.ETH]
chain = "evm"
per_tx_cap = "100000000000000000000"
velocity_24h = "1000000000000000000000"
approval_threshold = "50000000000000000000"

[agents.{AGENT}.assets.WETH]
chain = "evm"
per_tx_cap = "100000000000000000000"
velocity_24h = "1000000000000000000000"
approval_threshold = "50000000000000000000"

[agents.{AGENT}.assets.USDC]
chain = "evm"
per_tx_cap = "100000000000"
velocity_24h = "1000000000000"
approval_threshold = "5000000000"

[networks."evm:devnet"]
chain_id = {chain_id}
genesis_hash = "{genesis}"
max_gas_limit = 1000000
max_fee_per_gas = "1000000000000"
aave_pool = "{pool}"

[networks."evm:devnet".tokens.WETH]
address = "{weth}"
decimals = 18

[networks."evm:devnet".tokens.USDC]
address = "{usdc}"
decimals = 6
"#,
        bob = bob().to_checksum(None),
        pool = market.pool.to_checksum(None),
        weth = token("WETH"),
        usdc = token("USDC"),
    )
}
