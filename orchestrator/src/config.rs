//! The orchestrator's configuration: TOML, parsed into checked types at load.
//!
//! Every table rejects unknown keys. After the TOML parses, each value is checked and
//! turned into its type (agent ids, actions, peer addresses, basis points); the first
//! problem found is returned as a [`ConfigError`] naming the key (e.g.
//! `agents[1].temperature`) and the reason. The shipped default is embedded from
//! `default-config.toml` and returned by [`Config::default_config`].

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use vigil_protocol::{AgentId, AssetSymbol, Network, truncate};

use crate::cost::Prices;
use crate::firewall::Action;

mod agent;
pub(crate) mod endpoint;
mod hyperliquid;
pub use hyperliquid::{DeputyLimits, HyperliquidSettings, PerpRisk};
mod generations;
pub use generations::GenerationSettings;
pub(crate) mod modules;
mod retention;
pub use modules::ModulesConfig;
pub use retention::Retention;
#[cfg(test)]
use retention::{DEFAULT_BATCH_ROWS, DEFAULT_KEEP_DAYS};
mod telegram;
pub use telegram::{DEFAULT_PHRASE, TelegramConfig};

/// The configuration shipped with the orchestrator (three agents, all in paper mode).
pub(crate) const DEFAULT_CONFIG_TOML: &str = include_str!("default-config.toml");

/// Config files larger than this are refused unread.
const MAX_CONFIG_BYTES: u64 = 1024 * 1024;
/// Basis points in a whole.
const FULL_BPS: u32 = 10_000;
/// Upper bound of `max_tokens`.
const MAX_MAX_TOKENS: u32 = 65_536;
/// Upper bound of a system prompt, in bytes.
const MAX_SYSTEM_PROMPT_BYTES: usize = 16 * 1024;
/// How many decisions run at once when the config does not say: sized for the appliance's
/// two cores (a decision mostly waits on the signer and SQLite's durable commits).
pub(crate) const DEFAULT_MAX_CONCURRENT_DECISIONS: usize = 8;
/// The most `max_concurrent_decisions` may be: beyond it, decisions only queue on the
/// state's lock and the signer's connection, and memory grows with nothing gained.
pub(crate) const MAX_CONCURRENT_DECISIONS: usize = 64;

/// The whole configuration, checked.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    /// The signer's Unix socket.
    pub signer_socket: PathBuf,
    /// The orchestrator's SQLite file.
    pub state_db: PathBuf,
    /// The daily cap on LLM spend across all agents, in µUSD.
    pub daily_llm_usd_cap_micros: u64,
    /// How many agents' decisions may run at once (1 to [`MAX_CONCURRENT_DECISIONS`]; default
    /// [`DEFAULT_MAX_CONCURRENT_DECISIONS`]). One agent never has two at once.
    pub max_concurrent_decisions: usize,
    /// LLM providers by name.
    pub providers: BTreeMap<String, ProviderConfig>,
    /// The agents, in file order; ids are unique.
    pub agents: Vec<AgentConfig>,
    /// The Solana JSON-RPC endpoint, if any.
    pub solana_rpc_url: Option<String>,
    /// The Solana network the agents work on (and `solana_rpc_url` serves). Without it, each
    /// agent works on the one Solana network the signer holds a key for it on (the network its
    /// signed policy names); an agent with keys on several must have it named here.
    pub solana_network: Option<Network>,
    /// The JSON-RPC endpoint of each EVM network (`evm:<network>`) the agents work on. The
    /// node is checked at start and before live work to serve the chain id and genesis hash the
    /// signed policy pins for that network.
    pub evm_rpc_urls: BTreeMap<Network, String>,
    /// The EVM network the agents work on. Without it, each agent works on the one EVM network
    /// the signer holds a key for it on; an agent with keys on several must have it named here.
    pub evm_network: Option<Network>,
    /// Hyperliquid's API (`/info`, `/exchange`) per network (`testnet`, `mainnet`).
    pub hyperliquid_urls: BTreeMap<Network, String>,
    /// The SOL price source per Solana network: an API answering Hyperliquid's
    /// `/info {"type":"allMids"}` whose mids list `SOL` (Hyperliquid's own API, or the local
    /// market of `vigil devnet`). Solana transfers get their USD estimate from it and a
    /// deputy's SOL wallet counts in its equity; without it they show `no USD estimate`.
    pub sol_price_urls: BTreeMap<Network, String>,
    /// The venue's fee, the paper model's slippage and the dead-man switch's keeper.
    pub hyperliquid: HyperliquidSettings,
    /// How long raw decisions, memory lines and cost rows are kept before compaction.
    pub retention: Retention,
    /// The operator interface on Telegram; absent: no bot (the terminal is used).
    pub telegram: Option<TelegramConfig>,
    /// Configuration generations (`[generations]`); absent: the daemon runs its file as is.
    pub generations: Option<GenerationSettings>,
    /// Where strategy modules are read from, and their limits (`[modules]`).
    pub modules: ModulesConfig,
}

/// The kind of an LLM provider.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
pub enum ProviderKind {
    /// An OpenAI-compatible chat-completions endpoint.
    #[serde(rename = "openai")]
    OpenAi,
    /// Deterministic replies read from a file.
    #[serde(rename = "scripted")]
    Scripted,
}

/// One LLM provider. `openai` has a `base_url` (and optionally a key credential);
/// `scripted` has a `script`; the other fields are absent.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderConfig {
    /// Which kind of provider.
    pub kind: ProviderKind,
    /// `openai`: the API base, e.g. `https://api.openai.com/v1`.
    pub base_url: Option<String>,
    /// `openai`: the name of the systemd credential holding the API key.
    pub api_key_credential: Option<String>,
    /// `scripted`: the file of replies.
    pub script: Option<PathBuf>,
    /// Prices, µUSD per million tokens.
    pub prices: Prices,
}

/// Whether an agent's actions are simulated or broadcast.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Checked like live, then a simulated fill; nothing is broadcast.
    #[default]
    Paper,
    /// Signed and broadcast, for the assets in `live_assets` only.
    Live,
}

/// One agent.
#[derive(Clone, Debug, PartialEq)]
pub struct AgentConfig {
    /// The agent's id, as named in the signer's policy.
    pub id: AgentId,
    /// The operator's system prompt (role description).
    pub system_prompt: String,
    /// The provider's name (a key of `providers`).
    pub provider: String,
    /// The provider used when `provider` fails or has no key.
    pub fallback_provider: Option<String>,
    /// The model name sent to the provider.
    pub model: String,
    /// Sampling temperature, 0..=2.
    pub temperature: f32,
    /// Completion tokens per call, 1..=65536; also the cost gate's worst case.
    pub max_tokens: u32,
    /// Seconds between rounds, at least 1.
    pub schedule_secs: u64,
    /// Layer 2 of the firewall.
    pub risk: RiskProfile,
    /// Paper (default) or live.
    pub mode: Mode,
    /// In live mode, the assets that are live; all others stay paper.
    pub live_assets: BTreeSet<AssetSymbol>,
    /// Whether a live transfer the signer would sign without a code first waits for the
    /// operator's Yes (default true: every action that moves funds is confirmed). With
    /// false, transfers below the signer's approval threshold go out on their own; the
    /// signed policy bounds them either way.
    pub confirm_transfers: bool,
    /// The Hyperliquid network the agent trades perpetuals on (`testnet`, `mainnet`); required
    /// when it may `perp_order` or `perp_cancel`.
    pub hyperliquid_network: Option<Network>,
    /// The strategy module that decides for the agent instead of its LLM
    /// (`strategy_module = "<name>"`, read from `[modules] dir`); none: the LLM decides.
    pub strategy: Option<crate::modules::StrategyModule>,
}

impl AgentConfig {
    /// Whether an action on `asset` is broadcast (live) rather than simulated (paper).
    pub fn is_live(&self, asset: AssetSymbol) -> bool {
        self.mode == Mode::Live && self.live_assets.contains(&asset)
    }
}

/// An agent's risk profile, checked by [`crate::firewall::risk::check`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RiskProfile {
    /// The actions the agent may take (hold is always possible).
    pub allowed_actions: BTreeSet<Action>,
    /// Largest transaction as a fraction of the current balance, in basis points.
    pub max_fraction_per_tx_bps: u32,
    /// Per asset, a fraction that replaces `max_fraction_per_tx_bps` for that asset.
    pub asset_fraction_bps: BTreeMap<AssetSymbol, u32>,
    /// Aave: the lowest health factor, in thousandths (1500 = 1.5), a borrow or withdraw may
    /// leave by layer 2's estimate. Required when the agent may borrow or withdraw.
    pub min_health_factor_milli: Option<u32>,
    /// The recipients the agent may name.
    pub peers: Vec<Peer>,
    /// Hyperliquid: the perpetuals the agent trades, each with its limits.
    pub perps: BTreeMap<AssetSymbol, PerpRisk>,
    /// The deputy's loss floor and paper cash (`[agents.risk.deputy]`); none: no floor.
    pub deputy: Option<DeputyLimits>,
}

impl RiskProfile {
    /// The fraction of a balance one transaction of `asset` may move, basis points.
    pub fn fraction_bps(&self, asset: AssetSymbol) -> u32 {
        self.asset_fraction_bps
            .get(&asset)
            .copied()
            .unwrap_or(self.max_fraction_per_tx_bps)
    }
}

/// An allowlisted recipient: a short label and its address.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Peer {
    /// 1-32 characters of `a-z 0-9 _ -`, unique per agent.
    pub label: String,
    /// A base58 Solana address (32 bytes) or an EVM address in its EIP-55 form, unique per
    /// agent; an EVM transfer goes only to an EVM peer, a Solana one only to a Solana peer.
    pub address: String,
}

/// Why a configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {}: {}", .0.display(), .1)]
    ReadFile(PathBuf, std::io::Error),
    /// The file is larger than 1 MiB.
    #[error("config file {} is {} bytes, more than the 1 MiB limit; is it the right file?", .0.display(), .1)]
    TooLarge(PathBuf, u64),
    /// Not valid TOML, an unknown key, or a value of the wrong type.
    #[error("config is not valid: {0}")]
    Toml(String),
    /// A value that parsed but is not acceptable.
    #[error("config key `{key}`: {reason}")]
    Invalid {
        /// The key, e.g. `agents[1].temperature`.
        key: String,
        /// What is wrong and what to do.
        reason: String,
    },
    /// An error in a named file.
    #[error("in {}: {}", .0.display(), .1)]
    InFile(PathBuf, Box<ConfigError>),
}

impl ConfigError {
    /// The key named by an `Invalid` error (looking through `InFile`).
    pub fn key(&self) -> Option<&str> {
        match self {
            ConfigError::Invalid { key, .. } => Some(key),
            ConfigError::InFile(_, inner) => inner.key(),
            _ => None,
        }
    }
}

impl Config {
    /// Parses and checks a configuration from TOML text.
    pub fn from_toml(text: &str) -> Result<Config, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| ConfigError::Toml(e.to_string()))?;
        raw.check(modules::Source::Dir)
    }

    /// [`from_toml`](Self::from_toml), with the module `name`'s source given instead of read
    /// from `[modules] dir` (the proposal check: the module comes from the bundle).
    pub fn from_toml_with_module(
        text: &str,
        name: &str,
        source: &std::sync::Arc<str>,
    ) -> Result<Config, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| ConfigError::Toml(e.to_string()))?;
        raw.check(modules::Source::Given(name, source))
    }

    /// [`from_toml`](Self::from_toml), with every module read from a generation's `files`
    /// (`modules/<name>.star`) instead of `[modules] dir`: a generation is checked against its
    /// own modules before it is applied.
    pub fn from_toml_in_files(
        text: &str,
        files: &crate::generations::Files,
    ) -> Result<Config, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| ConfigError::Toml(e.to_string()))?;
        raw.check(modules::Source::Files(files))
    }

    /// Reads, parses and checks the configuration file at `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let len = std::fs::metadata(path)
            .map_err(|e| ConfigError::ReadFile(path.to_owned(), e))?
            .len();
        if len > MAX_CONFIG_BYTES {
            return Err(ConfigError::TooLarge(path.to_owned(), len));
        }
        let text =
            std::fs::read_to_string(path).map_err(|e| ConfigError::ReadFile(path.to_owned(), e))?;
        Config::from_toml(&text).map_err(|e| ConfigError::InFile(path.to_owned(), Box::new(e)))
    }

    /// The embedded default configuration. It is checked by a test, so it always parses;
    /// should that ever be broken, the error says so rather than panicking.
    pub fn default_config() -> Config {
        match Config::from_toml(DEFAULT_CONFIG_TOML) {
            Ok(config) => config,
            // Unreachable while `default_config_has_the_three_tiers` passes.
            Err(e) => unreachable!("the embedded default config is invalid: {e}"),
        }
    }

    /// The agent with this id.
    pub fn agent(&self, id: &AgentId) -> Option<&AgentConfig> {
        self.agents.iter().find(|a| &a.id == id)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    signer_socket: PathBuf,
    state_db: PathBuf,
    daily_llm_usd_cap_micros: u64,
    max_concurrent_decisions: Option<i64>,
    solana_rpc_url: Option<String>,
    solana_network: Option<String>,
    #[serde(default)]
    evm_rpc_urls: BTreeMap<String, String>,
    evm_network: Option<String>,
    #[serde(default)]
    hyperliquid_urls: BTreeMap<String, String>,
    #[serde(default)]
    sol_price_urls: BTreeMap<String, String>,
    hyperliquid: Option<hyperliquid::RawHyperliquid>,
    retention: Option<retention::RawRetention>,
    #[serde(default)]
    providers: BTreeMap<String, ProviderConfig>,
    #[serde(default)]
    agents: Vec<agent::RawAgent>,
    telegram: Option<telegram::RawTelegram>,
    generations: Option<generations::RawGenerations>,
    modules: Option<modules::RawModules>,
}

fn invalid(key: impl fmt::Display, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.to_string(),
        reason: reason.into(),
    }
}

impl RawConfig {
    fn check(self, module_source: modules::Source<'_>) -> Result<Config, ConfigError> {
        if self.signer_socket.as_os_str().is_empty() {
            return Err(invalid(
                "signer_socket",
                "is empty: give the signer's socket path",
            ));
        }
        if self.state_db.as_os_str().is_empty() {
            return Err(invalid("state_db", "is empty: give the SQLite file's path"));
        }
        let max_concurrent_decisions = match self.max_concurrent_decisions {
            None => DEFAULT_MAX_CONCURRENT_DECISIONS,
            Some(n) => usize::try_from(n)
                .ok()
                .filter(|n| (1..=MAX_CONCURRENT_DECISIONS).contains(n))
                .ok_or_else(|| {
                    invalid(
                        "max_concurrent_decisions",
                        format!(
                            "is {n}: give how many decisions may run at once, 1 to \
                             {MAX_CONCURRENT_DECISIONS} (default {DEFAULT_MAX_CONCURRENT_DECISIONS})"
                        ),
                    )
                })?,
        };
        if let Some(url) = &self.solana_rpc_url {
            endpoint::parse(url, endpoint::Service::ChainRpc)
                .map_err(|reason| invalid("solana_rpc_url", reason))?;
        }
        let solana_network = self
            .solana_network
            .as_deref()
            .map(|name| network_of(name, "solana_network", "Solana", "solana_rpc_url"))
            .transpose()?;
        let evm_network = self
            .evm_network
            .as_deref()
            .map(|name| network_of(name, "evm_network", "EVM", "evm_rpc_urls"))
            .transpose()?;
        let mut evm_rpc_urls = BTreeMap::new();
        for (name, url) in &self.evm_rpc_urls {
            let key = format!("evm_rpc_urls.{}", truncate(name));
            let network = network_of(name, &key, "EVM", "the URL")?;
            endpoint::parse(url, endpoint::Service::ChainRpc)
                .map_err(|reason| invalid(&key, reason))?;
            evm_rpc_urls.insert(network, url.clone());
        }
        let mut sol_price_urls = BTreeMap::new();
        for (name, url) in &self.sol_price_urls {
            let key = format!("sol_price_urls.{}", truncate(name));
            let network = network_of(name, &key, "Solana", "the price source prices SOL for")?;
            endpoint::parse(url, endpoint::Service::ChainRpc)
                .map_err(|reason| invalid(&key, reason))?;
            sol_price_urls.insert(network, url.clone());
        }
        if let Some(network) = evm_network
            && !evm_rpc_urls.contains_key(&network)
        {
            return Err(invalid(
                "evm_network",
                format!(
                    "is {network}, but evm_rpc_urls has no {network} node: add evm_rpc_urls.{network} = \"<URL>\""
                ),
            ));
        }
        let hyperliquid_urls = hyperliquid::check_urls(&self.hyperliquid_urls)?;
        let hyperliquid_settings = self
            .hyperliquid
            .map(hyperliquid::RawHyperliquid::check)
            .transpose()?
            .unwrap_or_default();
        for (name, provider) in &self.providers {
            check_provider(name, provider)?;
        }
        if self.agents.is_empty() {
            return Err(invalid(
                "agents",
                "no agents are configured: add an [[agents]] table",
            ));
        }
        let modules_config = self
            .modules
            .map(modules::RawModules::check)
            .transpose()?
            .unwrap_or_default();
        let mut agents: Vec<AgentConfig> = Vec::with_capacity(self.agents.len());
        for (i, raw) in self.agents.into_iter().enumerate() {
            let agent = raw.check(i, &self.providers, &modules_config, module_source)?;
            // The cost ledger charges `/build`'s calls to this id: an agent of that name would
            // mix its spend with the self-modification agent's in /status.
            if agent.id.as_str() == crate::proposal::flow::BUILDER_AGENT {
                return Err(invalid(
                    format!("agents[{i}].id"),
                    format!(
                        "{:?} is the self-modification agent's id (its /build calls are charged to it): give this agent another id",
                        agent.id.as_str()
                    ),
                ));
            }
            if agents.iter().any(|a| a.id == agent.id) {
                return Err(invalid(
                    format!("agents[{i}].id"),
                    format!(
                        "agent id {:?} is used twice: give each agent its own id",
                        agent.id.as_str()
                    ),
                ));
            }
            if let Some(network) = agent.hyperliquid_network
                && !hyperliquid_urls.contains_key(&network)
            {
                return Err(invalid(
                    format!("agents[{i}].hyperliquid_network"),
                    format!(
                        "is {network}, but hyperliquid_urls has no {network} API: add hyperliquid_urls.{network} = \"<URL>\""
                    ),
                ));
            }
            agents.push(agent);
        }
        let generations = self
            .generations
            .map(|g| g.check(&self.state_db))
            .transpose()?;
        Ok(Config {
            generations,
            signer_socket: self.signer_socket,
            state_db: self.state_db,
            daily_llm_usd_cap_micros: self.daily_llm_usd_cap_micros,
            max_concurrent_decisions,
            providers: self.providers,
            agents,
            solana_rpc_url: self.solana_rpc_url,
            solana_network,
            evm_rpc_urls,
            evm_network,
            hyperliquid_urls,
            sol_price_urls,
            hyperliquid: hyperliquid_settings,
            retention: self
                .retention
                .map(retention::RawRetention::check)
                .transpose()?
                .unwrap_or_default(),
            telegram: self
                .telegram
                .map(telegram::RawTelegram::check)
                .transpose()?,
            modules: modules_config,
        })
    }
}

/// A network's name in the config (`"devnet"`, `"testnet"`, `"mainnet"`).
fn network_of(name: &str, key: &str, chain: &str, serves: &str) -> Result<Network, ConfigError> {
    match name {
        "devnet" => Ok(Network::Devnet),
        "testnet" => Ok(Network::Testnet),
        "mainnet" => Ok(Network::Mainnet),
        other => Err(invalid(
            key,
            format!(
                "{:?} is not a {chain} network: write \"devnet\", \"testnet\" or \"mainnet\" (the network {serves} serves)",
                truncate(other)
            ),
        )),
    }
}

fn check_provider(name: &str, p: &ProviderConfig) -> Result<(), ConfigError> {
    let key = |field: &str| format!("providers.{name}.{field}");
    let name_ok = !name.is_empty()
        && name.len() <= 32
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
    if !name_ok {
        return Err(invalid(
            format!("providers.{}", truncate(name)),
            "a provider name is 1-32 characters of a-z 0-9 _ -",
        ));
    }
    match p.kind {
        ProviderKind::OpenAi => {
            let Some(url) = &p.base_url else {
                return Err(invalid(
                    key("base_url"),
                    "an openai provider needs base_url, e.g. \"https://api.openai.com/v1\"",
                ));
            };
            endpoint::parse(url, endpoint::Service::LlmBase)
                .map_err(|reason| invalid(key("base_url"), reason))?;
            if let Some(cred) = &p.api_key_credential {
                let ok = !cred.is_empty()
                    && cred.len() <= 64
                    && cred
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
                if !ok {
                    return Err(invalid(
                        key("api_key_credential"),
                        "is the name of a systemd credential: 1-64 characters of A-Z a-z 0-9 _ - . (not the key itself)",
                    ));
                }
            }
            if p.script.is_some() {
                return Err(invalid(
                    key("script"),
                    "only a scripted provider has a script; remove it",
                ));
            }
        }
        ProviderKind::Scripted => {
            match &p.script {
                Some(path) if !path.as_os_str().is_empty() => {}
                _ => {
                    return Err(invalid(
                        key("script"),
                        "a scripted provider needs script, the path of its replies file",
                    ));
                }
            }
            for (field, present) in [
                ("base_url", p.base_url.is_some()),
                ("api_key_credential", p.api_key_credential.is_some()),
            ] {
                if present {
                    return Err(invalid(
                        key(field),
                        "a scripted provider makes no network calls; remove it",
                    ));
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
