//! The `[[agents]]` tables of the orchestrator's config: each agent as written
//! ([`RawAgent`], with its `risk` table) checked value by value into an [`AgentConfig`]; the
//! first problem is a [`ConfigError`] naming the key, e.g. `agents[1].risk.peers[0].address`.

use std::collections::{BTreeMap, BTreeSet};

use serde::Deserialize;
use vigil_protocol::{AgentId, AssetSymbol, truncate};

use super::{
    AgentConfig, ConfigError, FULL_BPS, MAX_MAX_TOKENS, MAX_SYSTEM_PROMPT_BYTES, Mode, Peer,
    ProviderConfig, RiskProfile, invalid,
};
use crate::firewall::{Action, KNOWN_ASSETS, known_assets};

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
    peers: Vec<Peer>,
}

impl RawAgent {
    pub(super) fn check(
        self,
        i: usize,
        providers: &BTreeMap<String, ProviderConfig>,
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
        let mut live_assets = BTreeSet::new();
        for asset in &self.live_assets {
            let known = asset
                .parse::<AssetSymbol>()
                .ok()
                .filter(|a| KNOWN_ASSETS.contains(a));
            let Some(asset) = known else {
                return Err(invalid(
                    key("live_assets"),
                    format!(
                        "asset {:?} is unknown: use one of {}",
                        truncate(asset),
                        known_assets()
                    ),
                ));
            };
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
            check_solana_address(&peer.address)
                .map_err(|reason| invalid(key("address"), reason))?;
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
            peers: self.peers,
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

/// A Solana address: base58 decoding to exactly 32 bytes.
fn check_solana_address(address: &str) -> Result<(), String> {
    match bs58::decode(address).into_vec() {
        Ok(bytes) if bytes.len() == 32 => Ok(()),
        Ok(bytes) => Err(format!(
            "{:?} decodes to {} bytes, not the 32 of a Solana address",
            truncate(address),
            bytes.len()
        )),
        Err(e) => Err(format!(
            "{:?} is not base58 ({e}): give a Solana address",
            truncate(address)
        )),
    }
}
