//! Signed-policy files built as values, written as the TOML the signer reads
//! (`docs/policy.md`): tests say what they allow, never how the file is spelled.
//!
//! ```
//! use vigil_testkit::policy::{AgentRules, Policy};
//! use vigil_testkit::SOL;
//! let text = Policy::new()
//!     .agent("trader", AgentRules::sol(2 * SOL, 10 * SOL, SOL / 2).recipients(&["4uQeVj5tqViQh7yWWGStvkEG1Zmhx6uasJtWCJziofM"]))
//!     .to_toml();
//! assert!(text.contains("[agents.trader.assets.SOL]"));
//! ```

use std::collections::BTreeMap;

use serde::Serialize;

use crate::host::SOL;

/// The limits `vigil-signer dev-init` writes into its default policy, per agent and in
/// lamports (checked against a running dev signer by the kit's tests).
pub mod dev {
    use crate::host::SOL;
    /// Largest single transfer: 1 SOL.
    pub const PER_TX_CAP: u64 = SOL;
    /// Most in any 24 h: 5 SOL.
    pub const VELOCITY_24H: u64 = 5 * SOL;
    /// Above this the operator approves: 0.5 SOL.
    pub const APPROVAL_THRESHOLD: u64 = SOL / 2;
    /// Sign requests per minute.
    pub const RATE_LIMIT_PER_MINUTE: u32 = 60;
}

/// A policy: version 1, one table per agent, and the networks' pins (`[networks]`) when a
/// test sets them (else the public clusters' genesis hashes apply).
#[derive(Clone, Debug, Default, Serialize)]
pub struct Policy {
    version: u32,
    agents: BTreeMap<String, AgentRules>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    networks: BTreeMap<String, NetworkPin>,
}

/// `[networks."chain:network"]`: what identifies the network.
#[derive(Clone, Debug, Serialize)]
struct NetworkPin {
    genesis_hash: String,
}

/// What one agent may do.
#[derive(Clone, Debug, Serialize)]
pub struct AgentRules {
    actions: Vec<String>,
    networks: Vec<String>,
    recipients: Vec<String>,
    rate_limit_per_minute: u64,
    assets: BTreeMap<String, AssetCaps>,
}

/// One asset's limits, base units as decimal strings (the file's own spelling).
#[derive(Clone, Debug, Serialize)]
struct AssetCaps {
    chain: String,
    per_tx_cap: String,
    velocity_24h: String,
    approval_threshold: String,
}

impl Policy {
    /// A policy with no agent yet.
    pub fn new() -> Policy {
        Policy {
            version: 1,
            agents: BTreeMap::new(),
            networks: BTreeMap::new(),
        }
    }

    /// Adds (or replaces) `agent`'s rules.
    pub fn agent(mut self, agent: &str, rules: AgentRules) -> Policy {
        self.agents.insert(agent.into(), rules);
        self
    }

    /// Pins Solana `network` (e.g. `"solana:devnet"`) to `genesis_hash` (a private cluster).
    pub fn pin(mut self, network: &str, genesis_hash: &str) -> Policy {
        self.networks.insert(
            network.into(),
            NetworkPin {
                genesis_hash: genesis_hash.into(),
            },
        );
        self
    }

    /// The policy file's text.
    pub fn to_toml(&self) -> String {
        toml::to_string(self).expect("a policy always serialises")
    }
}

impl AgentRules {
    /// Transfers of SOL on devnet, to no one yet, 30 requests a minute, with these caps
    /// (lamports): largest transfer, most in 24 h, and the operator's threshold.
    pub fn sol(per_tx_cap: u64, velocity_24h: u64, approval_threshold: u64) -> AgentRules {
        AgentRules {
            actions: vec!["transfer".into()],
            networks: vec!["solana:devnet".into()],
            recipients: Vec::new(),
            rate_limit_per_minute: 30,
            assets: BTreeMap::from([(
                "SOL".into(),
                AssetCaps {
                    chain: "solana".into(),
                    per_tx_cap: per_tx_cap.to_string(),
                    velocity_24h: velocity_24h.to_string(),
                    approval_threshold: approval_threshold.to_string(),
                },
            )]),
        }
    }

    /// The dev-init default's limits (1 SOL a transfer, 5 SOL a day, approval above 0.5 SOL).
    pub fn dev_default() -> AgentRules {
        AgentRules::sol(dev::PER_TX_CAP, dev::VELOCITY_24H, dev::APPROVAL_THRESHOLD)
            .rate_limit(dev::RATE_LIMIT_PER_MINUTE.into())
    }

    /// Limits that never bind a benchmark or a burst: up to `per_tx_cap` a transfer, never
    /// an approval, a million SOL a day, `rate` requests a minute.
    pub fn unbounded(per_tx_cap: u64, rate: u64) -> AgentRules {
        AgentRules::sol(per_tx_cap, 1_000_000 * SOL, per_tx_cap).rate_limit(rate)
    }

    /// The addresses the agent may pay.
    pub fn recipients(mut self, recipients: &[&str]) -> AgentRules {
        self.recipients = recipients.iter().map(|r| (*r).to_owned()).collect();
        self
    }

    /// The `chain:network` pairs the agent may use (instead of `solana:devnet`); the signer
    /// holds a key per network, so dev-init makes the agent one for each.
    pub fn networks(mut self, networks: &[&str]) -> AgentRules {
        self.networks = networks.iter().map(|n| (*n).to_owned()).collect();
        self
    }

    /// Sign requests allowed per minute.
    pub fn rate_limit(mut self, per_minute: u64) -> AgentRules {
        self.rate_limit_per_minute = per_minute;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signer::Signer;
    use vigil_protocol::Op;
    use vigil_protocol::StatusResult;

    #[test]
    fn the_dev_limits_are_what_dev_init_signs() {
        let signer = Signer::start(&["trader"]);
        let status: StatusResult = signer
            .client()
            .call(Op::Status)
            .unwrap()
            .into_result()
            .unwrap();
        let limits = &status.agents[0].limits;
        let sol = &limits["assets"]["SOL"];
        let lamports = |key: &str| sol[key].as_str().unwrap().parse::<u64>().unwrap();
        assert_eq!(lamports("per_tx_cap"), dev::PER_TX_CAP, "{limits}");
        assert_eq!(lamports("velocity_24h"), dev::VELOCITY_24H, "{limits}");
        assert_eq!(
            lamports("approval_threshold"),
            dev::APPROVAL_THRESHOLD,
            "{limits}"
        );
        assert_eq!(
            limits["rate_limit_per_minute"],
            dev::RATE_LIMIT_PER_MINUTE,
            "{limits}"
        );
    }

    #[test]
    fn renders_the_documented_format() {
        let text = Policy::new()
            .agent(
                "trader",
                AgentRules::sol(2 * SOL, 10 * SOL, SOL / 2).recipients(&["Abc"]),
            )
            .to_toml();
        let parsed: toml::Value = toml::from_str(&text).unwrap();
        assert_eq!(parsed["version"].as_integer(), Some(1));
        let trader = &parsed["agents"]["trader"];
        assert_eq!(trader["recipients"][0].as_str(), Some("Abc"));
        assert_eq!(trader["networks"][0].as_str(), Some("solana:devnet"));
        let sol = &trader["assets"]["SOL"];
        assert_eq!(sol["per_tx_cap"].as_str(), Some("2000000000"));
        assert_eq!(sol["velocity_24h"].as_str(), Some("10000000000"));
        assert_eq!(sol["approval_threshold"].as_str(), Some("500000000"));
        assert_eq!(sol["chain"].as_str(), Some("solana"));
    }
}
