//! The engine's `hello` op: the protocol version, the policy digest, the networks the
//! policy allows, and each agent's public address per chain.

use std::collections::BTreeMap;

use vigil_protocol::{AgentId, AgentInfo, Chain, HelloResult, PROTOCOL_VERSION};

use super::Engine;
use crate::chains::solana;

impl Engine {
    pub(super) fn hello(&self) -> HelloResult {
        let mut agents: BTreeMap<AgentId, BTreeMap<String, String>> = BTreeMap::new();
        for ((agent, chain), key) in &self.keys {
            let address = match chain {
                Chain::Solana => solana::address_of(&key.public_bytes()),
            };
            agents
                .entry(agent.clone())
                .or_default()
                .insert(chain.as_str().to_string(), address);
        }
        HelloResult {
            version: PROTOCOL_VERSION,
            policy_digest: self.policy_digest(),
            networks: self.policy.networks(),
            agents: agents
                .into_iter()
                .map(|(agent, addresses)| AgentInfo { agent, addresses })
                .collect(),
        }
    }
}
