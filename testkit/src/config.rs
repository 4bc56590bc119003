//! The orchestrator's configuration built as values and written as the TOML it reads
//! (`orchestrator/src/config.rs`): the daemon gets the file, an in-process orchestrator the
//! [`Config`] parsed from the same text, so both paths go through the real parser and its checks.
//!
//! An [`AgentSpec`] starts as a paper agent on the scripted provider that may transfer or hold
//! up to half its balance, deciding hourly; tests change what they test.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;
use vigil_orchestrator::{
    Config, Deps, Inputs, Orchestrator, Prices as LlmPrices, Provider, SignerClient, StateGate,
    Store,
};

/// The provider name of the scripted LLM.
pub const SCRIPTED: &str = "scripted";
/// The name of the systemd credential holding the bot token in the tests' configs.
pub const BOT_TOKEN_CREDENTIAL: &str = "bot-token";

/// A whole orchestrator configuration.
#[derive(Clone, Debug, Serialize)]
pub struct ConfigBuilder {
    signer_socket: PathBuf,
    state_db: PathBuf,
    daily_llm_usd_cap_micros: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_concurrent_decisions: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    solana_rpc_url: Option<String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    evm_rpc_urls: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    hyperliquid_urls: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    sol_price_urls: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    hyperliquid: Option<HyperliquidSpec>,
    providers: BTreeMap<String, ProviderSpec>,
    agents: Vec<AgentSpec>,
    #[serde(skip_serializing_if = "Option::is_none")]
    telegram: Option<TelegramSpec>,
    #[serde(skip_serializing_if = "Option::is_none")]
    generations: Option<GenerationsSpec>,
    #[serde(skip_serializing_if = "Option::is_none")]
    modules: Option<ModulesSpec>,
}

/// The `[generations]` table: a short health window for tests.
#[derive(Clone, Copy, Debug, Serialize)]
struct GenerationsSpec {
    health_window_secs: u32,
    min_errors: u32,
}

/// The `[modules]` table: where strategy modules are read from, and the limits.
#[derive(Clone, Debug, Serialize)]
pub struct ModulesSpec {
    /// The directory of `<name>.star` files.
    pub dir: PathBuf,
    /// Interpreter steps per call.
    pub max_steps: u64,
    /// Heap bytes per call.
    pub max_heap_bytes: u64,
    /// Wall time per call, ms.
    pub max_wall_ms: u64,
}

impl ModulesSpec {
    /// Modules in `dir`, the orchestrator's default limits (1,000,000 steps, 32 MiB, 250 ms).
    pub fn new(dir: &Path) -> ModulesSpec {
        ModulesSpec {
            dir: dir.to_owned(),
            max_steps: 1_000_000,
            max_heap_bytes: 32 << 20,
            max_wall_ms: 250,
        }
    }
}

/// The `[hyperliquid]` table's keeper settings.
#[derive(Clone, Copy, Debug, Serialize)]
struct HyperliquidSpec {
    keeper_every_secs: u64,
    cancel_after_secs: u32,
}

#[derive(Clone, Debug, Serialize)]
struct ProviderSpec {
    kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    base_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    script: Option<PathBuf>,
    prices: Prices,
}

/// Free: the tests' providers cost nothing, so the cost gate never decides for them.
#[derive(Clone, Copy, Debug, Serialize)]
struct Prices {
    prompt_micros_per_mtok: u64,
    completion_micros_per_mtok: u64,
}

const FREE: Prices = Prices {
    prompt_micros_per_mtok: 0,
    completion_micros_per_mtok: 0,
};

#[derive(Clone, Debug, Serialize)]
struct TelegramSpec {
    operators: Vec<i64>,
    api_url: String,
    token_credential: String,
    pending_expiry_secs: u64,
}

/// One agent.
#[derive(Clone, Debug, Serialize)]
pub struct AgentSpec {
    id: String,
    system_prompt: String,
    provider: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    fallback_provider: Option<String>,
    model: String,
    temperature: f64,
    max_tokens: u32,
    schedule_secs: u64,
    mode: &'static str,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    live_assets: Vec<String>,
    confirm_transfers: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    hyperliquid_network: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    strategy_module: Option<String>,
    risk: RiskSpec,
}

#[derive(Clone, Debug, Serialize)]
struct RiskSpec {
    allowed_actions: Vec<String>,
    max_fraction_per_tx_bps: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    min_health_factor: Option<String>,
    peers: Vec<PeerSpec>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    perps: BTreeMap<String, PerpSpec>,
    #[serde(skip_serializing_if = "Option::is_none")]
    deputy: Option<DeputySpec>,
}

/// The deputy's loss floor (`[agents.risk.deputy]`).
#[derive(Clone, Copy, Debug, Serialize)]
struct DeputySpec {
    daily_loss_floor_usd_micros: u64,
}

/// One perpetual's limits in an agent's risk profile.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct PerpSpec {
    pub max_order_usd_micros: u64,
    pub max_position_usd_micros: u64,
    pub leverage: u32,
    pub max_slippage_bps: u32,
}

#[derive(Clone, Debug, Serialize)]
struct PeerSpec {
    label: String,
    address: String,
}

impl ConfigBuilder {
    /// A config for the signer at `signer_socket` and the state in `state_db`, no providers,
    /// no agents, no chain, no bot.
    pub fn new(signer_socket: &Path, state_db: &Path) -> ConfigBuilder {
        ConfigBuilder {
            signer_socket: signer_socket.to_owned(),
            state_db: state_db.to_owned(),
            daily_llm_usd_cap_micros: 1_000_000,
            max_concurrent_decisions: None,
            solana_rpc_url: None,
            evm_rpc_urls: BTreeMap::new(),
            hyperliquid_urls: BTreeMap::new(),
            sol_price_urls: BTreeMap::new(),
            hyperliquid: None,
            providers: BTreeMap::new(),
            agents: Vec::new(),
            telegram: None,
            generations: None,
            modules: None,
        }
    }

    /// Configuration generations (`[generations]`, beside the state), each new one watched
    /// for `health_window_secs`; an error spike needs at least 3 errors.
    pub fn generations(mut self, health_window_secs: u32) -> ConfigBuilder {
        self.generations = Some(GenerationsSpec {
            health_window_secs,
            min_errors: 3,
        });
        self
    }

    /// The `[modules]` table.
    pub fn modules(mut self, modules: ModulesSpec) -> ConfigBuilder {
        self.modules = Some(modules);
        self
    }

    /// How many decisions may run at once (`max_concurrent_decisions`; else the default).
    pub fn concurrency(mut self, bound: usize) -> ConfigBuilder {
        self.max_concurrent_decisions = Some(bound);
        self
    }

    /// The Solana JSON-RPC endpoint.
    pub fn rpc(mut self, url: &str) -> ConfigBuilder {
        self.solana_rpc_url = Some(url.to_owned());
        self
    }

    /// The JSON-RPC endpoint of the EVM network `network` (`"devnet"`).
    pub fn evm_rpc(mut self, network: &str, url: &str) -> ConfigBuilder {
        self.evm_rpc_urls.insert(network.to_owned(), url.to_owned());
        self
    }

    /// Hyperliquid's API of `network` (`"testnet"`) at `url`.
    pub fn hyperliquid(mut self, network: &str, url: &str) -> ConfigBuilder {
        self.hyperliquid_urls
            .insert(network.to_owned(), url.to_owned());
        self
    }

    /// The SOL price source of the Solana `network` (`"devnet"`): an `allMids` at `url`.
    pub fn sol_price(mut self, network: &str, url: &str) -> ConfigBuilder {
        self.sol_price_urls
            .insert(network.to_owned(), url.to_owned());
        self
    }

    /// The dead-man switch's keeper: a refresh every `every` seconds, `after` seconds ahead.
    pub fn keeper(mut self, every: u64, after: u32) -> ConfigBuilder {
        self.hyperliquid = Some(HyperliquidSpec {
            keeper_every_secs: every,
            cancel_after_secs: after,
        });
        self
    }

    /// The scripted provider ([`SCRIPTED`]) answering from the file at `script`.
    pub fn scripted(mut self, script: &Path) -> ConfigBuilder {
        self.providers.insert(
            SCRIPTED.into(),
            ProviderSpec {
                kind: "scripted",
                base_url: None,
                script: Some(script.to_owned()),
                prices: FREE,
            },
        );
        self
    }

    /// An OpenAI-compatible provider `name` at `base_url`, without a key.
    pub fn openai(mut self, name: &str, base_url: &str) -> ConfigBuilder {
        self.providers.insert(
            name.into(),
            ProviderSpec {
                kind: "openai",
                base_url: Some(base_url.to_owned()),
                script: None,
                prices: FREE,
            },
        );
        self
    }

    /// Prices provider `name` (added before) at `prompt` and `completion` micro-USD per
    /// million tokens, so the daily LLM cost cap decides for its calls.
    pub fn priced(mut self, name: &str, prompt: u64, completion: u64) -> ConfigBuilder {
        let provider = self
            .providers
            .get_mut(name)
            .unwrap_or_else(|| panic!("no provider {name} to price: add it first"));
        provider.prices = Prices {
            prompt_micros_per_mtok: prompt,
            completion_micros_per_mtok: completion,
        };
        self
    }

    /// The daily LLM cost cap (`daily_llm_usd_cap_micros`; else 1,000,000).
    pub fn daily_llm_cap(mut self, micros: u64) -> ConfigBuilder {
        self.daily_llm_usd_cap_micros = micros;
        self
    }

    /// Adds an agent.
    pub fn agent(mut self, agent: AgentSpec) -> ConfigBuilder {
        self.agents.push(agent);
        self
    }

    /// The bot on the Bot API at `api_url`, obeying `operators`, its token in the credential
    /// [`BOT_TOKEN_CREDENTIAL`].
    pub fn telegram(mut self, api_url: &str, operators: &[i64]) -> ConfigBuilder {
        self.telegram = Some(TelegramSpec {
            operators: operators.to_vec(),
            api_url: api_url.to_owned(),
            token_credential: BOT_TOKEN_CREDENTIAL.into(),
            pending_expiry_secs: 600,
        });
        self
    }

    /// Another SQLite file for the state.
    pub fn state_db(mut self, state_db: &Path) -> ConfigBuilder {
        self.state_db = state_db.to_owned();
        self
    }

    /// The SQLite file of the state.
    pub fn state_db_path(&self) -> &Path {
        &self.state_db
    }

    /// The file the orchestrator reads.
    pub fn to_toml(&self) -> String {
        toml::to_string(self).expect("a config always serialises")
    }

    /// Writes the file at `path`; `path`.
    pub fn write(&self, path: &Path) -> PathBuf {
        std::fs::write(path, self.to_toml())
            .unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
        path.to_owned()
    }

    /// The checked config, parsed from [`to_toml`](Self::to_toml) by the orchestrator itself.
    pub fn build(&self) -> Config {
        let text = self.to_toml();
        Config::from_toml(&text).unwrap_or_else(|e| panic!("{e}\n{text}"))
    }

    /// An orchestrator in this process on this config: its store opened, its signer client
    /// made (10 s timeout), its providers built.
    pub fn orchestrator(&self) -> Orchestrator {
        let config = self.build();
        let store = Store::open(&config.state_db).expect("opening the state");
        let client = SignerClient::new(&config.signer_socket, Duration::from_secs(10));
        Orchestrator::new(config, store, client).unwrap_or_else(|e| panic!("{e}"))
    }
}

/// What one `pipeline::decide` needs, the LLM free of charge and uncapped, without a fallback
/// provider or a chain; a test sets the fields it tests (they are public), e.g.
/// `Deps { rpc: Some(&rpc), ..free_deps(&provider, &store, &signer) }`.
pub fn free_deps<'a>(
    provider: &'a Provider,
    store: &'a std::sync::Mutex<Store>,
    signer: &'a tokio::sync::Mutex<SignerClient>,
) -> Deps<'a> {
    Deps {
        provider,
        fallback: None,
        prices: LlmPrices {
            prompt_micros_per_mtok: 0,
            completion_micros_per_mtok: 0,
        },
        daily_cap_micros: u64::MAX,
        store,
        signer,
        rpc: None,
        evm_rpc: None,
        hyperliquid: None,
    }
}

/// What one `pipeline::decide` of a Solana devnet agent sees at `now`: 10 SOL, no untrusted
/// text, [`SOME_BLOCKHASH`](crate::requests::SOME_BLOCKHASH), no EVM or Hyperliquid view, an
/// Active risk state, no SOL price; a test sets the fields it tests, e.g.
/// `Inputs { gate, ..devnet_inputs(now) }`.
pub fn devnet_inputs(now: u64) -> Inputs {
    Inputs {
        balance: (10 * crate::SOL).into(),
        untrusted: Vec::new(),
        recent_blockhash: crate::requests::SOME_BLOCKHASH.into(),
        network: vigil_protocol::Network::Devnet,
        now,
        day_start: now - now % 86_400,
        evm: None,
        perp: None,
        gate: StateGate::default(),
        sol_usd: None,
    }
}

impl AgentSpec {
    /// A paper agent `id` on the scripted provider: transfer or hold, up to 50 % of its
    /// balance a transaction, no peers, deciding every hour, every live transfer confirmed.
    pub fn new(id: &str) -> AgentSpec {
        AgentSpec {
            id: id.to_owned(),
            system_prompt: "Pay the dev peer when asked; otherwise hold.".into(),
            provider: SCRIPTED.into(),
            fallback_provider: None,
            model: "scripted".into(),
            temperature: 0.1,
            max_tokens: 300,
            schedule_secs: 3600,
            mode: "paper",
            live_assets: Vec::new(),
            confirm_transfers: true,
            hyperliquid_network: None,
            strategy_module: None,
            risk: RiskSpec {
                allowed_actions: vec!["transfer".into(), "hold".into()],
                max_fraction_per_tx_bps: 5000,
                min_health_factor: None,
                peers: Vec::new(),
                perps: BTreeMap::new(),
                deputy: None,
            },
        }
    }

    /// Decides with the strategy module `name` (`[modules] dir`/`name`.star), not the LLM.
    pub fn strategy_module(mut self, name: &str) -> AgentSpec {
        self.strategy_module = Some(name.to_owned());
        self
    }

    /// Decides every `secs` seconds.
    pub fn every(mut self, secs: u64) -> AgentSpec {
        self.schedule_secs = secs;
        self
    }

    /// Live for `asset` (e.g. `"SOL"`).
    pub fn live(mut self, asset: &str) -> AgentSpec {
        self.mode = "live";
        self.live_assets.push(asset.to_owned());
        self
    }

    /// Whether a live transfer waits for the operator's Yes (default yes).
    pub fn confirm_transfers(mut self, confirm: bool) -> AgentSpec {
        self.confirm_transfers = confirm;
        self
    }

    /// May pay `address` under the name `label`.
    pub fn peer(mut self, label: &str, address: &str) -> AgentSpec {
        self.risk.peers.push(PeerSpec {
            label: label.to_owned(),
            address: address.to_owned(),
        });
        self
    }

    /// Layer 2's largest transaction, in basis points of the balance.
    pub fn fraction_bps(mut self, bps: u32) -> AgentSpec {
        self.risk.max_fraction_per_tx_bps = bps;
        self
    }

    /// Layer 2's allowed actions.
    pub fn actions(mut self, actions: &[&str]) -> AgentSpec {
        self.risk.allowed_actions = actions.iter().map(|a| (*a).to_owned()).collect();
        self
    }

    /// Layer 2's Aave health-factor floor, e.g. `"1.5"`.
    pub fn min_health_factor(mut self, floor: &str) -> AgentSpec {
        self.risk.min_health_factor = Some(floor.to_owned());
        self
    }

    /// Asks `provider` (a name of the config's providers) with `model`.
    pub fn provider(mut self, provider: &str, model: &str) -> AgentSpec {
        self.provider = provider.to_owned();
        self.model = model.to_owned();
        self
    }

    /// Another system prompt (e.g. to make a configuration change that is not a schedule).
    pub fn prompt(mut self, prompt: &str) -> AgentSpec {
        self.system_prompt = prompt.to_owned();
        self
    }

    /// Trades the perpetual `coin` on Hyperliquid's `network` within `limits`.
    pub fn perp(mut self, network: &str, coin: &str, limits: PerpSpec) -> AgentSpec {
        self.hyperliquid_network = Some(network.to_owned());
        self.risk.perps.insert(coin.to_owned(), limits);
        self
    }

    /// The deputy's daily loss floor, micro-USD.
    pub fn loss_floor(mut self, usd_micros: u64) -> AgentSpec {
        self.risk.deputy = Some(DeputySpec {
            daily_loss_floor_usd_micros: usd_micros,
        });
        self
    }

    /// The agent's id.
    pub fn id(&self) -> &str {
        &self.id
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_orchestrator_parses_what_the_builder_writes() {
        let config = ConfigBuilder::new(Path::new("/run/s.sock"), Path::new("/var/db"))
            .rpc("http://127.0.0.1:8899")
            .scripted(Path::new("/etc/script.toml"))
            .openai("remote", "http://127.0.0.1:9/v1")
            .telegram("http://127.0.0.1:8081", &[1001])
            .agent(
                AgentSpec::new("trader")
                    .live("SOL")
                    .confirm_transfers(false)
                    .peer("dev-peer", "4uQeVj5tqViQh7yWWGStvkEG1Zmhx6uasJtWCJziofM")
                    .fraction_bps(4000)
                    .every(1),
            )
            .agent(AgentSpec::new("sentinel").provider("remote", "m"))
            .build();
        let trader = &config.agents[0];
        assert!(trader.is_live(vigil_protocol::AssetSymbol::SOL) && !trader.confirm_transfers);
        assert_eq!(trader.risk.max_fraction_per_tx_bps, 4000);
        assert_eq!(trader.risk.peers[0].label, "dev-peer");
        assert_eq!(trader.schedule_secs, 1);
        assert_eq!(config.agents[1].provider, "remote");
        assert_eq!(config.telegram.unwrap().operators, vec![1001]);
        assert_eq!(
            config.solana_rpc_url.as_deref(),
            Some("http://127.0.0.1:8899")
        );
    }
}
