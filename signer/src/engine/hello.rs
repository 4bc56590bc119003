//! The engine's `hello` op: the protocol version, the policy digest, the networks the
//! policy allows, and each agent's public address per chain.

use std::collections::BTreeMap;

use vigil_protocol::{AgentId, AgentInfo, HelloResult, PROTOCOL_VERSION};

use super::Engine;

impl Engine {
    pub(super) fn hello(&self) -> HelloResult {
        let mut agents: BTreeMap<AgentId, BTreeMap<String, String>> = BTreeMap::new();
        for ((agent, chain), key) in &self.keys {
            agents
                .entry(agent.clone())
                .or_default()
                .insert(chain.as_str().to_string(), key.address.as_str().to_owned());
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
