//! The ceremony config (`ceremony.toml`): which agents get keys on which chains, and how the
//! operator's authenticator entry is labelled. Unknown keys are refused.
//!
//! ```toml
//! operator = "alice"            # the account name in the authenticator app
//! [agents.trader]
//! chains = ["solana"]
//! [agents.sentinel]
//! chains = ["solana"]
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde::Deserialize;
use vigil_protocol::{AgentId, Chain};

use crate::error::CeremonyError;

/// Largest config file read.
const MAX_CONFIG_LEN: u64 = 64 * 1024;

/// A validated ceremony config.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CeremonyConfig {
    /// The authenticator account name (no `:`), e.g. the operator's name.
    pub operator: String,
    /// Each agent's chains (at least one agent, each with at least one chain).
    pub agents: BTreeMap<AgentId, BTreeSet<Chain>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default = "default_operator")]
    operator: String,
    #[serde(default)]
    agents: BTreeMap<String, RawAgent>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAgent {
    chains: Vec<Chain>,
}

fn default_operator() -> String {
    "operator".to_owned()
}

impl CeremonyConfig {
    /// Reads and validates the config file.
    pub fn load(path: &Path) -> Result<Self, CeremonyError> {
        let bytes = crate::output::read_bounded(path, MAX_CONFIG_LEN)?;
        let text = String::from_utf8(bytes)
            .map_err(|_| CeremonyError::Config(path.to_path_buf(), "not UTF-8 text".into()))?;
        Self::parse(&text).map_err(|e| CeremonyError::Config(path.to_path_buf(), e))
    }

    /// Parses and validates config text.
    pub fn parse(text: &str) -> Result<Self, String> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| e.to_string())?;
        let operator = raw.operator.trim().to_owned();
        if operator.is_empty()
            || operator.len() > 64
            || operator.contains(':')
            || operator.chars().any(char::is_control)
        {
            return Err(format!(
                "`operator`: {:?} must be 1-64 characters without ':' (it labels the authenticator entry)",
                raw.operator
            ));
        }
        if raw.agents.is_empty() {
            return Err(
                "`agents`: name at least one agent, e.g. [agents.trader] chains = [\"solana\"]"
                    .into(),
            );
        }
        let mut agents = BTreeMap::new();
        for (name, agent) in raw.agents {
            let id =
                AgentId::try_from(name.clone()).map_err(|e| format!("`agents.{name}`: {e}"))?;
            let chains: BTreeSet<Chain> = agent.chains.iter().copied().collect();
            if chains.is_empty() {
                return Err(format!(
                    "`agents.{name}.chains`: name at least one chain, e.g. [\"solana\"]"
                ));
            }
            if chains.len() != agent.chains.len() {
                return Err(format!("`agents.{name}.chains`: a chain is listed twice"));
            }
            agents.insert(id, chains);
        }
        Ok(Self { operator, agents })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;

    #[test]
    fn parses_agents_and_operator() {
        let c = CeremonyConfig::parse(
            "operator = \"alice\"\n[agents.trader]\nchains = [\"solana\"]\n[agents.sentinel]\nchains = [\"solana\"]\n",
        )
        .unwrap();
        assert_eq!(c.operator, "alice");
        assert_eq!(c.agents.len(), 2);
        assert!(c.agents[&"trader".parse::<AgentId>().unwrap()].contains(&Chain::Solana));
        let d = CeremonyConfig::parse("[agents.a]\nchains = [\"solana\"]\n").unwrap();
        assert_eq!(d.operator, "operator");
    }

    #[test]
    fn refusals_name_the_key() {
        for (text, word) in [
            ("", "at least one agent"),
            ("[agents.Trader]\nchains = [\"solana\"]\n", "agents.Trader"),
            ("[agents.t]\nchains = []\n", "agents.t.chains"),
            ("[agents.t]\nchains = [\"solana\", \"solana\"]\n", "twice"),
            ("[agents.t]\nchains = [\"bitcoin\"]\n", "bitcoin"),
            (
                "[agents.t]\nchains = [\"solana\"]\nkeys = 1\n",
                "unknown field",
            ),
            (
                "operator = \"a:b\"\n[agents.t]\nchains = [\"solana\"]\n",
                "operator",
            ),
        ] {
            let err = CeremonyConfig::parse(text).unwrap_err();
            assert!(err.contains(word), "{text:?}: {err}");
        }
    }
}
