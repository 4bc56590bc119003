//! The `[[agents]]` tables of the orchestrator's config: each agent as written
//! ([`RawAgent`], with its `risk` table) checked value by value into an [`AgentConfig`]; the
//! first problem is a [`ConfigError`] naming the key, e.g. `agents[1].risk.peers[0].address`.

use std::collections::{BTreeMap, BTreeSet};

use serde::Deserialize;
use vigil_protocol::{AgentId, AssetSymbol, truncate};

use super::hyperliquid::{
    RawDeputy, RawPerpRisk, check_deputy, check_perps, network as hyperliquid_network,
};
use super::modules::{self, ModulesConfig};
use super::{
    AgentConfig, ConfigError, FULL_BPS, MAX_MAX_TOKENS, MAX_SYSTEM_PROMPT_BYTES, Mode, Peer,
    ProviderConfig, RiskProfile, invalid,
};
use crate::firewall::Action;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAgent {
    id: String,
    system_prompt: String,
    provider: String,
    fallback_provider: Option<String>,
    model: String,
    temperature: f32,
    max_tokens: u32,
    schedule_secs: u64,
    risk: RawRisk,
    #[serde(default)]
    mode: Mode,
    #[serde(default)]
    live_assets: BTreeSet<String>,
    #[serde(default = "yes")]
    confirm_transfers: bool,
    hyperliquid_network: Option<String>,
    strategy_module: Option<String>,
}

fn yes() -> bool {
    true
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRisk {
    allowed_actions: Vec<String>,
    max_fraction_per_tx_bps: u32,
    #[serde(default)]
    asset_fraction_bps: BTreeMap<String, u32>,
    min_health_factor: Option<String>,
    #[serde(default)]
    peers: Vec<Peer>,
    #[serde(default)]
    perps: BTreeMap<String, RawPerpRisk>,
    deputy: Option<RawDeputy>,
}

impl RawAgent {
    pub(super) fn check(
        self,
        i: usize,
        providers: &BTreeMap<String, ProviderConfig>,
        modules: &ModulesConfig,
        module_source: modules::Source<'_>,
    ) -> Result<AgentConfig, ConfigError> {
        let key = |field: &str| format!("agents[{i}].{field}");
        let id: AgentId = self.id.parse().map_err(|e: String| invalid(key("id"), e))?;
        if self.system_prompt.trim().is_empty()
            || self.system_prompt.len() > MAX_SYSTEM_PROMPT_BYTES
        {
            return Err(invalid(
                key("system_prompt"),
                "must be 1 byte to 16 KiB of text describing the agent's role",
            ));
        }
        if !providers.contains_key(&self.provider) {
            return Err(invalid(
                key("provider"),
                unknown_provider(&self.provider, providers),
            ));
        }
        if let Some(fallback) = &self.fallback_provider {
            if !providers.contains_key(fallback) {
                return Err(invalid(
                    key("fallback_provider"),
                    unknown_provider(fallback, providers),
                ));
            }
            if fallback == &self.provider {
                return Err(invalid(
                    key("fallback_provider"),
                    "is the same as provider; name another provider or remove it",
                ));
            }
        }
        if self.model.trim().is_empty()
            || self.model.len() > 128
            || self.model.chars().any(char::is_control)
        {
            return Err(invalid(
                key("model"),
                "must be a model name of 1-128 characters",
            ));
        }
        if !(0.0..=2.0).contains(&self.temperature) {
            return Err(invalid(
                key("temperature"),
                format!(
                    "{} is out of range: give a number from 0.0 to 2.0",
                    self.temperature
                ),
            ));
        }
        if !(1..=MAX_MAX_TOKENS).contains(&self.max_tokens) {
            return Err(invalid(
                key("max_tokens"),
                format!(
                    "{} is out of range: give 1 to {MAX_MAX_TOKENS}",
                    self.max_tokens
                ),
            ));
        }
        if self.schedule_secs == 0 {
            return Err(invalid(key("schedule_secs"), "must be at least 1 second"));
        }
        let risk = self.risk.check(&key("risk"))?;
        let hyperliquid_network = self
            .hyperliquid_network
            .as_deref()
            .map(hyperliquid_network)
            .transpose()
            .map_err(|reason| invalid(key("hyperliquid_network"), reason))?;
        let trades_perps = risk.allowed_actions.iter().any(|a| a.is_perp());
        if trades_perps && hyperliquid_network.is_none() {
            return Err(invalid(
                key("hyperliquid_network"),
                "is missing: an agent that may perp_order or perp_cancel trades on one Hyperliquid \
                 network; write hyperliquid_network = \"testnet\" (or \"mainnet\")",
            ));
        }
        if trades_perps && risk.perps.is_empty() {
            return Err(invalid(
                key("risk.perps"),
                "is empty: an agent that may perp_order or perp_cancel needs a [agents.risk.perps.<COIN>] \
                 table per perpetual it trades (max_order_usd_micros, max_position_usd_micros, leverage, \
                 max_slippage_bps)",
            ));
        }
        let mut live_assets = BTreeSet::new();
        for asset in &self.live_assets {
            // Any symbol: SOL is Solana's, the others are the assets of the agent's EVM network
            // in the signed policy, which the config cannot see (an unknown one never acts).
            let asset = asset.parse::<AssetSymbol>().map_err(|_| {
                invalid(
                    key("live_assets"),
                    format!(
                        "asset {:?} is not a symbol: use 1-10 upper-case letters or digits, e.g. \"SOL\" or \"USDC\"",
                        truncate(asset)
                    ),
                )
            })?;
            live_assets.insert(asset);
        }
        match (self.mode, live_assets.is_empty()) {
            (Mode::Paper, false) => {
                return Err(invalid(
                    key("live_assets"),
                    "the agent is in paper mode: set mode = \"live\" to make these assets live, or remove them",
                ));
            }
            (Mode::Live, true) => {
                return Err(invalid(
                    key("live_assets"),
                    "mode is live but no asset is: list the assets that go live, e.g. [\"SOL\"]",
                ));
            }
            _ => {}
        }
        let strategy = self
            .strategy_module
            .as_deref()
            .map(|name| modules::load(&key("strategy_module"), name, modules, module_source))
            .transpose()?;
        Ok(AgentConfig {
            id,
            system_prompt: self.system_prompt,
            provider: self.provider,
            fallback_provider: self.fallback_provider,
            model: self.model,
            temperature: self.temperature,
            max_tokens: self.max_tokens,
            schedule_secs: self.schedule_secs,
            risk,
            mode: self.mode,
            live_assets,
            confirm_transfers: self.confirm_transfers,
            hyperliquid_network,
            strategy,
        })
    }
}

fn unknown_provider(name: &str, providers: &BTreeMap<String, ProviderConfig>) -> String {
    let known: Vec<&str> = providers.keys().map(String::as_str).collect();
    format!(
        "provider {:?} is not defined: use one of [{}] or add a [providers.{}] table",
        truncate(name),
        known.join(", "),
        truncate(name)
    )
}

impl RawRisk {
    fn check(self, prefix: &str) -> Result<RiskProfile, ConfigError> {
        if self.allowed_actions.is_empty() {
            return Err(invalid(
                format!("{prefix}.allowed_actions"),
                "is empty: list at least \"hold\"",
            ));
        }
        let mut allowed_actions = BTreeSet::new();
        for (j, name) in self.allowed_actions.iter().enumerate() {
            let action = parse_action(name)
                .map_err(|reason| invalid(format!("{prefix}.allowed_actions[{j}]"), reason))?;
            allowed_actions.insert(action);
        }
        if self.max_fraction_per_tx_bps > FULL_BPS {
            return Err(invalid(
                format!("{prefix}.max_fraction_per_tx_bps"),
                format!(
                    "{} is more than 10000 (100 %): give basis points, e.g. 1000 for 10 %",
                    self.max_fraction_per_tx_bps
                ),
            ));
        }
        let mut asset_fraction_bps = BTreeMap::new();
        for (symbol, bps) in &self.asset_fraction_bps {
            let key = format!("{prefix}.asset_fraction_bps.{}", truncate(symbol));
            let asset = symbol.parse::<AssetSymbol>().map_err(|_| {
                invalid(
                    &key,
                    "is not an asset symbol: use 1-10 upper-case letters or digits, e.g. USDC",
                )
            })?;
            if *bps > FULL_BPS {
                return Err(invalid(
                    &key,
                    format!("{bps} is more than 10000 (100 %): give basis points"),
                ));
            }
            asset_fraction_bps.insert(asset, *bps);
        }
        let min_health_factor_milli = self
            .min_health_factor
            .as_deref()
            .map(parse_health_factor)
            .transpose()
            .map_err(|reason| invalid(format!("{prefix}.min_health_factor"), reason))?;
        let risky = allowed_actions.contains(&Action::AaveBorrow)
            || allowed_actions.contains(&Action::AaveWithdraw);
        if risky && min_health_factor_milli.is_none() {
            return Err(invalid(
                format!("{prefix}.min_health_factor"),
                "is missing: an agent that may aave_borrow or aave_withdraw needs the lowest Aave \
                 health factor it may leave, e.g. min_health_factor = \"1.5\"",
            ));
        }
        for (j, peer) in self.peers.iter().enumerate() {
            let key = |field: &str| format!("{prefix}.peers[{j}].{field}");
            let label_ok = !peer.label.is_empty()
                && peer.label.len() <= 32
                && peer.label.bytes().all(|b| {
                    b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-'
                });
            if !label_ok {
                return Err(invalid(
                    key("label"),
                    format!(
                        "{:?} is not a label: use 1-32 characters of a-z 0-9 _ -",
                        truncate(&peer.label)
                    ),
                ));
            }
            check_address(&peer.address).map_err(|reason| invalid(key("address"), reason))?;
            let earlier = &self.peers[..j];
            if earlier.iter().any(|p| p.label == peer.label) {
                return Err(invalid(
                    key("label"),
                    format!("label {:?} is used twice", peer.label),
                ));
            }
            if earlier.iter().any(|p| p.address == peer.address) {
                return Err(invalid(
                    key("address"),
                    format!("address {} is listed twice", peer.address),
                ));
            }
            // A label that is also an address would make `to` ambiguous in layer 2.
            if self.peers.iter().any(|p| p.address == peer.label) {
                return Err(invalid(
                    key("label"),
                    "is also a peer's address: give the peer a short name",
                ));
            }
        }
        Ok(RiskProfile {
            allowed_actions,
            max_fraction_per_tx_bps: self.max_fraction_per_tx_bps,
            asset_fraction_bps,
            min_health_factor_milli,
            peers: self.peers,
            perps: check_perps(prefix, self.perps)?,
            deputy: self.deputy.map(|d| check_deputy(prefix, d)).transpose()?,
        })
    }
}

/// An action of `allowed_actions`. `program_call` gets its own message: it was removed (it
/// sent a plain SOL transfer to the program's address), and a config written for an older
/// release must say so instead of failing as an unknown word (docs/orchestrator.md, "Actions").
fn parse_action(name: &str) -> Result<Action, String> {
    if name == REMOVED_PROGRAM_CALL {
        return Err(format!(
            "\"{REMOVED_PROGRAM_CALL}\" was removed: it sent a plain SOL transfer to the program's \
             address, never a program call; delete it from allowed_actions (and a program's \
             address from peers), since real program calls will come as venue intents"
        ));
    }
    Action::from_wire(name).ok_or_else(|| {
        let known: Vec<&str> = Action::ALL.iter().map(|a| a.as_str()).collect();
        format!(
            "{:?} is not an action: use {}",
            truncate(name),
            known.join(", ")
        )
    })
}

/// The action older configs may still name.
const REMOVED_PROGRAM_CALL: &str = "program_call";

/// A peer's address: an EVM address (`0x` and 40 hex digits, in its EIP-55 checksummed form,
/// so a typo is caught) or a Solana address (base58 decoding to exactly 32 bytes).
fn check_address(address: &str) -> Result<(), String> {
    if address.starts_with("0x") {
        return alloy_primitives::Address::parse_checksummed(address, None)
            .map(drop)
            .map_err(|e| {
                format!(
                    "{:?} is not an EVM address in its EIP-55 checksummed form ({e}): copy it as \
                     a block explorer or `hello` shows it",
                    truncate(address)
                )
            });
    }
    match bs58::decode(address).into_vec() {
        Ok(bytes) if bytes.len() == 32 => Ok(()),
        Ok(bytes) => Err(format!(
            "{:?} decodes to {} bytes, not the 32 of a Solana address",
            truncate(address),
            bytes.len()
        )),
        Err(e) => Err(format!(
            "{:?} is neither an EVM address (0x...) nor base58 ({e}): give a Solana or an EVM address",
            truncate(address)
        )),
    }
}

/// A health factor written as a decimal string with at most three decimals, at least 1.0
/// (below 1 a position is liquidated): its thousandths.
fn parse_health_factor(text: &str) -> Result<u32, String> {
    let bad = || {
        format!(
            "{:?} is not a health factor: write a decimal string of at least \"1.0\" with at \
             most three decimals, e.g. \"1.5\"",
            truncate(text)
        )
    };
    let (whole, frac) = text.split_once('.').unwrap_or((text, ""));
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(whole) || (text.contains('.') && !digits(frac)) || frac.len() > 3 {
        return Err(bad());
    }
    let whole: u32 = whole.parse().map_err(|_| bad())?;
    let frac: u32 = format!("{frac:0<3}").parse().map_err(|_| bad())?;
    let milli = whole
        .checked_mul(1000)
        .and_then(|w| w.checked_add(frac))
        .ok_or_else(bad)?;
    if milli < 1000 {
        return Err(format!(
            "{text} is below 1.0: at a health factor below 1 Aave liquidates the position; give \
             1.0 or more, e.g. \"1.5\""
        ));
    }
    Ok(milli)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_factors_parse_to_thousandths_and_below_one_is_refused() {
        for (text, milli) in [
            ("1.5", 1500),
            ("1", 1000),
            ("2.125", 2125),
            ("10.0", 10_000),
        ] {
            assert_eq!(parse_health_factor(text), Ok(milli), "{text}");
        }
        for bad in [
            "0.9", "1.2345", "-1.5", "1,5", "", ".5", "1.", "1e3", "99999999",
        ] {
            assert!(parse_health_factor(bad).is_err(), "{bad}");
        }
        assert!(
            parse_health_factor("0.99")
                .unwrap_err()
                .contains("liquidates")
        );
    }

    #[test]
    fn peers_are_solana_or_checksummed_evm_addresses() {
        assert!(check_address("8ZDDe1aK6RfvH9RPvXYkXmXHDjVSdNCuDEqNhZX6E4cV").is_ok());
        assert!(check_address("0x70997970C51812dc3A010C7d01b50e0d17dc79C8").is_ok());
        let lower = check_address("0x70997970c51812dc3a010c7d01b50e0d17dc79c8").unwrap_err();
        assert!(lower.contains("EIP-55"), "{lower}");
        assert!(check_address("0x1234").is_err());
        assert!(check_address("not an address").is_err());
    }
}
