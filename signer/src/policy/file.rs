//! The policy file: TOML as written at the ceremony, parsed into a [`Policy`] and checked
//! value by value. Every failure names the key path (`agents.trader.assets.SOL.per_tx_cap`)
//! and says what to write instead. Unknown keys are refused everywhere, so a typo cannot
//! silently drop a limit.

use std::collections::{BTreeMap, BTreeSet};

use serde::Deserialize;
use serde::de::IntoDeserializer;
use sha2::{Digest, Sha256};
use vigil_protocol::{AgentId, Amount, AssetSymbol, Chain, Network, network_name, truncate};

use super::evm_table::{self, RawEvm, RawToken};
use super::hl_table::{self, RawPerp};
use super::{Action, AgentPolicy, AssetCaps, NetworkPin, Policy, PolicyError};

/// The only policy format version this signer reads.
pub const POLICY_VERSION: u32 = 1;

/// Parses and validates policy TOML (no signature check; for tooling and tests).
pub fn parse(bytes: &[u8]) -> Result<Policy, PolicyError> {
    let text = std::str::from_utf8(bytes).map_err(|e| PolicyError::NotUtf8(e.valid_up_to()))?;
    let raw: RawPolicy = toml::from_str(text).map_err(|e| PolicyError::Toml(e.to_string()))?;
    if raw.version != POLICY_VERSION {
        return Err(invalid(
            "version",
            format!(
                "version {} is not supported: this signer reads version {POLICY_VERSION}; write `version = {POLICY_VERSION}`",
                raw.version
            ),
        ));
    }
    if raw.agents.is_empty() {
        return Err(invalid(
            "agents",
            "the policy names no agent, so it would refuse everything: add at least one [agents.<name>] table",
        ));
    }
    let agents = raw
        .agents
        .into_iter()
        .map(|(name, agent)| agent_policy(&name, agent))
        .collect::<Result<BTreeMap<_, _>, _>>()?;
    let networks = network_pins(&agents, raw.networks)?;
    check_evm_assets(&agents, &networks)?;
    hl_table::check_assets(&agents, &networks)?;
    Ok(Policy {
        version: POLICY_VERSION,
        agents,
        networks,
        digest: Sha256::digest(bytes).into(),
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    version: u32,
    #[serde(default)]
    agents: BTreeMap<String, RawAgent>,
    #[serde(default)]
    networks: BTreeMap<String, RawNetwork>,
}

/// `[networks."solana:devnet"]`: what identifies the network; an EVM network's table also
/// holds its fee bounds, tokens and Aave Pool (`evm_table.rs`); a Hyperliquid table holds only
/// its perpetuals (`hl_table.rs`).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNetwork {
    genesis_hash: Option<String>,
    chain_id: Option<u64>,
    native: Option<String>,
    max_gas_limit: Option<u64>,
    max_fee_per_gas: Option<String>,
    aave_pool: Option<String>,
    #[serde(default)]
    tokens: BTreeMap<String, RawToken>,
    #[serde(default)]
    perps: BTreeMap<String, RawPerp>,
}

impl RawNetwork {
    /// The EVM-only fields present, for the refusal of a Solana table that has them.
    fn evm_fields(&self) -> Vec<&'static str> {
        let mut out = Vec::new();
        for (present, name) in [
            (self.chain_id.is_some(), "chain_id"),
            (self.native.is_some(), "native"),
            (self.max_gas_limit.is_some(), "max_gas_limit"),
            (self.max_fee_per_gas.is_some(), "max_fee_per_gas"),
            (self.aave_pool.is_some(), "aave_pool"),
            (!self.tokens.is_empty(), "tokens"),
            (self.genesis_hash.is_some(), "genesis_hash"),
        ] {
            if present {
                out.push(name);
            }
        }
        out
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAgent {
    actions: Vec<String>,
    networks: Vec<String>,
    recipients: Vec<String>,
    rate_limit_per_minute: u32,
    #[serde(default)]
    assets: BTreeMap<String, RawAsset>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAsset {
    chain: String,
    per_tx_cap: String,
    velocity_24h: String,
    approval_threshold: String,
}

pub(super) fn invalid(key: &str, reason: impl Into<String>) -> PolicyError {
    PolicyError::Invalid {
        key: key.to_owned(),
        reason: reason.into(),
    }
}

fn agent_policy(name: &str, raw: RawAgent) -> Result<(AgentId, AgentPolicy), PolicyError> {
    let at = format!("agents.{name}");
    let id = AgentId::try_from(name.to_owned()).map_err(|e| invalid(&at, e))?;

    let actions = parse_list(&format!("{at}.actions"), &raw.actions, parse_action)?;
    if actions.is_empty() {
        return Err(invalid(
            &format!("{at}.actions"),
            "no action is allowed, so the agent could do nothing: name at least one (e.g. \"transfer\") or remove the agent",
        ));
    }

    let networks = parse_list(&format!("{at}.networks"), &raw.networks, parse_network)?;
    if networks.is_empty() {
        return Err(invalid(
            &format!("{at}.networks"),
            "no network is allowed: name at least one, e.g. \"solana:devnet\" (mainnet only if you mean real funds)",
        ));
    }
    let chains: BTreeSet<Chain> = networks.iter().map(|&(c, _)| c).collect();

    let recipients = parse_list(&format!("{at}.recipients"), &raw.recipients, |s| {
        canonical_recipient(&chains, s)
    })?;

    if raw.rate_limit_per_minute == 0 {
        return Err(invalid(
            &format!("{at}.rate_limit_per_minute"),
            "0 would refuse every request: give at least 1 sign request per minute",
        ));
    }

    if raw.assets.is_empty() {
        return Err(invalid(
            &format!("{at}.assets"),
            "no asset is allowed: add an [agents.<name>.assets.<SYMBOL>] table with its chain and limits",
        ));
    }
    let assets = raw
        .assets
        .into_iter()
        .map(|(symbol, asset)| {
            asset_caps(&format!("{at}.assets.{symbol}"), &symbol, asset, &chains)
        })
        .collect::<Result<BTreeMap<_, _>, PolicyError>>()?;

    Ok((
        id,
        AgentPolicy {
            actions,
            networks,
            recipients,
            rate_limit_per_minute: raw.rate_limit_per_minute,
            assets,
        },
    ))
}

/// Parses each element with `one`, naming `key[i]` on failure, and refuses duplicates
/// (after canonicalisation), which are almost always a copy-paste slip.
fn parse_list<T: Ord>(
    key: &str,
    raw: &[String],
    one: impl Fn(&str) -> Result<T, String>,
) -> Result<BTreeSet<T>, PolicyError> {
    let mut out = BTreeSet::new();
    for (i, s) in raw.iter().enumerate() {
        let at = format!("{key}[{i}]");
        let v = one(s).map_err(|e| invalid(&at, e))?;
        if !out.insert(v) {
            return Err(invalid(
                &at,
                format!("{:?} is listed twice: remove the duplicate", truncate(s)),
            ));
        }
    }
    Ok(out)
}

/// Parses a closed-set wire name through the type's own `Deserialize`, so a new variant
/// is accepted here as soon as it exists.
fn parse_name<'de, T: Deserialize<'de>>(s: &'de str) -> Option<T> {
    T::deserialize(IntoDeserializer::<serde::de::value::Error>::into_deserializer(s)).ok()
}

fn parse_action(s: &str) -> Result<Action, String> {
    parse_name(s).ok_or_else(|| {
        let known: Vec<&str> = Action::ALL.iter().map(|a| a.as_str()).collect();
        format!(
            "unknown action {:?}: use one of {}",
            truncate(s),
            known.join(", ")
        )
    })
}

fn parse_chain(s: &str) -> Result<Chain, String> {
    parse_name(s).ok_or_else(|| {
        format!(
            "unknown chain {:?}: this signer supports \"solana\", \"evm\" and \"hyperliquid\"",
            truncate(s)
        )
    })
}

fn parse_network(s: &str) -> Result<(Chain, Network), String> {
    let Some((chain, network)) = s.split_once(':') else {
        return Err(format!(
            "{:?} is not of the form \"chain:network\", e.g. \"solana:devnet\"",
            truncate(s)
        ));
    };
    let chain = parse_chain(chain)?;
    let network = parse_name(network).ok_or_else(|| {
        format!(
            "unknown network {:?}: use devnet, testnet or mainnet (e.g. \"solana:devnet\")",
            truncate(network)
        )
    })?;
    Ok((chain, network))
}

/// The pin of every (chain, network) an agent names: its `[networks."chain:network"]` entry,
/// or, without one, the public network's (Solana: the cluster's published genesis hash). An
/// entry no agent uses, an entry without its chain's identity, and a pin that is another
/// public network's (a devnet label on mainnet's genesis) are refused; mainnet means the
/// public mainnet (mainnet-beta for Solana) and can only be pinned to it.
fn network_pins(
    agents: &BTreeMap<AgentId, AgentPolicy>,
    raw: BTreeMap<String, RawNetwork>,
) -> Result<BTreeMap<(Chain, Network), NetworkPin>, PolicyError> {
    let named: BTreeSet<(Chain, Network)> = agents
        .values()
        .flat_map(|a| a.networks.iter().copied())
        .collect();
    let mut pins = BTreeMap::new();
    for (name, entry) in raw {
        let at = format!("networks.\"{}\"", truncate(&name));
        let (chain, network) = parse_network(&name).map_err(|e| invalid(&at, e))?;
        if !named.contains(&(chain, network)) {
            return Err(invalid(
                &at,
                format!(
                    "no agent names {name}: remove this table, or add {name:?} to an agent's networks"
                ),
            ));
        }
        if chain != Chain::Hyperliquid && !entry.perps.is_empty() {
            return Err(invalid(
                &format!("{at}.perps"),
                "only a Hyperliquid network has perps: remove them from this table",
            ));
        }
        let pin = match chain {
            Chain::Solana => {
                if let Some(field) = entry.evm_fields().iter().find(|f| **f != "genesis_hash") {
                    return Err(invalid(
                        &format!("{at}.{field}"),
                        format!(
                            "only an EVM network has {field}: remove it from this Solana table"
                        ),
                    ));
                }
                let hash = entry.genesis_hash.ok_or_else(|| {
                    invalid(
                        &format!("{at}.genesis_hash"),
                        format!(
                            "a Solana network is identified by its genesis hash: write the base58 hash `getGenesisHash` answers on a node of {name}"
                        ),
                    )
                })?;
                solana_pin(&format!("{at}.genesis_hash"), network, &hash)?
            }
            Chain::Evm => NetworkPin::Evm(evm_table::evm_network(
                &at,
                network,
                RawEvm {
                    chain_id: entry.chain_id,
                    genesis_hash: entry.genesis_hash,
                    native: entry.native,
                    max_gas_limit: entry.max_gas_limit,
                    max_fee_per_gas: entry.max_fee_per_gas,
                    aave_pool: entry.aave_pool,
                    tokens: entry.tokens,
                },
            )?),
            Chain::Hyperliquid => {
                if let Some(field) = entry.evm_fields().first() {
                    return Err(invalid(
                        &format!("{at}.{field}"),
                        format!(
                            "a Hyperliquid table has only perps (the network's name picks the exchange): remove {field}"
                        ),
                    ));
                }
                NetworkPin::Hyperliquid(hl_table::hyperliquid_network(&at, network, entry.perps)?)
            }
        };
        pins.insert((chain, network), pin);
    }
    for (chain, network) in named {
        if pins.contains_key(&(chain, network)) {
            continue;
        }
        let pin = match chain {
            Chain::Solana => NetworkPin::SolanaGenesis(
                vigil_protocol::public_solana_genesis_hash(network).to_owned(),
            ),
            Chain::Evm => {
                let name = network_name(chain, network);
                return Err(invalid(
                    &format!("networks.\"{name}\""),
                    format!(
                        "an agent names {name} but the policy has no [networks.\"{name}\"] table: an EVM network needs its chain_id, genesis_hash, max_gas_limit and max_fee_per_gas (docs/policy.md)"
                    ),
                ));
            }
            Chain::Hyperliquid => {
                let name = network_name(chain, network);
                return Err(invalid(
                    &format!("networks.\"{name}\""),
                    format!(
                        "an agent names {name} but the policy has no [networks.\"{name}\"] table: list its perpetuals (docs/policy.md, Hyperliquid)"
                    ),
                ));
            }
        };
        pins.insert((chain, network), pin);
    }
    Ok(pins)
}

/// Every EVM asset an agent has caps for is its network's native asset or a token of the
/// table of one of its EVM networks: a cap on a symbol no table lists is a typo.
fn check_evm_assets(
    agents: &BTreeMap<AgentId, AgentPolicy>,
    pins: &BTreeMap<(Chain, Network), NetworkPin>,
) -> Result<(), PolicyError> {
    for (agent, rules) in agents {
        for (symbol, caps) in &rules.assets {
            if caps.chain != Chain::Evm {
                continue;
            }
            let listed = rules.networks.iter().any(|key| match pins.get(key) {
                Some(NetworkPin::Evm(n)) => n.native == *symbol || n.tokens.contains_key(symbol),
                _ => false,
            });
            if !listed {
                return Err(invalid(
                    &format!("agents.{agent}.assets.{symbol}"),
                    format!(
                        "{symbol} is neither the native asset nor a token of any EVM network of {agent}: add it to a [networks.\"evm:<network>\".tokens.{symbol}] table or remove these caps"
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// A Solana genesis hash pinned for `network`: base58 of 32 bytes, not another public
/// cluster's, and mainnet only as mainnet-beta.
fn solana_pin(at: &str, network: Network, hash: &str) -> Result<NetworkPin, PolicyError> {
    let canonical = match bs58::decode(hash).into_vec() {
        Ok(bytes) if bytes.len() == 32 => bs58::encode(bytes).into_string(),
        _ => {
            return Err(invalid(
                at,
                format!(
                    "{:?} is not a Solana genesis hash (base58 of 32 bytes): copy what `getGenesisHash` answers",
                    truncate(hash)
                ),
            ));
        }
    };
    let public = vigil_protocol::public_solana_genesis_hash(network);
    if network == Network::Mainnet && canonical != public {
        return Err(invalid(
            at,
            format!(
                "solana:mainnet is Solana mainnet-beta, whose genesis hash is {public}: pin that or leave the table out (a private cluster is devnet or testnet)"
            ),
        ));
    }
    for other in [Network::Mainnet, Network::Testnet, Network::Devnet] {
        if other != network && canonical == vigil_protocol::public_solana_genesis_hash(other) {
            return Err(invalid(
                at,
                format!(
                    "{canonical} is the genesis hash of Solana {other}: a {network} key would sign for {other}; name the network solana:{other} instead"
                ),
            ));
        }
    }
    Ok(NetworkPin::SolanaGenesis(canonical))
}

/// A recipient must be a valid address on one of the agent's chains; it is stored in that
/// chain's canonical encoding, which is what the caller compares intents against.
fn canonical_recipient(chains: &BTreeSet<Chain>, s: &str) -> Result<String, String> {
    let mut reasons = Vec::new();
    for &chain in chains {
        match canonical_address(chain, s) {
            Ok(canonical) => return Ok(canonical),
            Err(reason) => reasons.push(reason),
        }
    }
    Err(reasons.join("; "))
}

fn canonical_address(chain: Chain, s: &str) -> Result<String, String> {
    match chain {
        Chain::Evm | Chain::Hyperliquid => evm_table::canonical_address(s),
        Chain::Solana => {
            let bytes = bs58::decode(s).into_vec().map_err(|e| {
                format!(
                    "{:?} is not a Solana address: not base58 ({e})",
                    truncate(s)
                )
            })?;
            if bytes.len() != 32 {
                return Err(format!(
                    "{:?} is not a Solana address: it decodes to {} bytes, not 32; copy the recipient's base58 public key",
                    truncate(s),
                    bytes.len()
                ));
            }
            Ok(bs58::encode(bytes).into_string())
        }
    }
}

fn asset_caps(
    at: &str,
    symbol: &str,
    raw: RawAsset,
    chains: &BTreeSet<Chain>,
) -> Result<(AssetSymbol, AssetCaps), PolicyError> {
    let symbol: AssetSymbol = symbol.parse().map_err(|e: String| invalid(at, e))?;
    let chain = parse_chain(&raw.chain).map_err(|e| invalid(&format!("{at}.chain"), e))?;
    if !chains.contains(&chain) {
        return Err(invalid(
            &format!("{at}.chain"),
            format!(
                "asset {symbol} is on {chain} but the agent names no {chain} network: add e.g. \"{chain}:devnet\" to networks or remove the asset"
            ),
        ));
    }
    let amount = |field: &str, s: &str| {
        Amount::parse_wire(s).map(Amount::base_units).map_err(|e| {
            invalid(
                &format!("{at}.{field}"),
                format!("{e}; write a decimal string of base units >= 1, e.g. \"1000000000\""),
            )
        })
    };
    let per_tx_cap = amount("per_tx_cap", &raw.per_tx_cap)?;
    let velocity_24h = amount("velocity_24h", &raw.velocity_24h)?;
    let approval_threshold = amount("approval_threshold", &raw.approval_threshold)?;
    if approval_threshold > per_tx_cap {
        return Err(invalid(
            &format!("{at}.approval_threshold"),
            format!(
                "approval_threshold {approval_threshold} is above per_tx_cap {per_tx_cap}: transfers above the cap are refused outright, so the operator would never be asked; set it at most to per_tx_cap (equal means never ask)"
            ),
        ));
    }
    if per_tx_cap > velocity_24h {
        return Err(invalid(
            &format!("{at}.per_tx_cap"),
            format!(
                "per_tx_cap {per_tx_cap} is above velocity_24h {velocity_24h}: no single transfer could use it, since the 24 h cap would refuse it; lower per_tx_cap or raise velocity_24h"
            ),
        ));
    }
    Ok((
        symbol,
        AssetCaps {
            chain,
            per_tx_cap,
            velocity_24h,
            approval_threshold,
        },
    ))
}

#[cfg(test)]
mod tests;
