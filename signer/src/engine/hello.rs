//! The engine's `hello` op: the protocol version, the policy digest, the networks the
//! policy allows and what identifies each (the pins the orchestrator checks its node
//! against), and each agent's addresses: per `chain:network` (`network_addresses`), and per
//! chain where the agent has one key on that chain (`addresses`, as protocol 1 had it), and
//! its pause if it is paused.

use std::collections::BTreeMap;

use vigil_protocol::{AgentId, AgentInfo, Chain, HelloResult, PROTOCOL_VERSION, network_name};

use super::Engine;

impl Engine {
    pub(super) fn hello(&self) -> HelloResult {
        // agent -> chain -> [(network name, address)]
        type Addresses = BTreeMap<Chain, Vec<(String, String)>>;
        let mut agents: BTreeMap<AgentId, Addresses> = BTreeMap::new();
        let mut masters: BTreeMap<AgentId, BTreeMap<String, String>> = BTreeMap::new();
        for ((agent, chain, network), key) in &self.keys {
            if let Some(master) = key.master_address_text() {
                masters
                    .entry(agent.clone())
                    .or_default()
                    .insert(network_name(*chain, *network), master);
            }
            agents
                .entry(agent.clone())
                .or_default()
                .entry(*chain)
                .or_default()
                .push((network_name(*chain, *network), key.address_text()));
        }
        let pauses: BTreeMap<AgentId, vigil_protocol::AgentPause> = {
            let inner = self.lock();
            agents
                .keys()
                .filter_map(|a| inner.pauses.get(a).map(|p| (a.clone(), p.report())))
                .collect()
        };
        HelloResult {
            version: PROTOCOL_VERSION,
            policy_digest: self.policy_digest(),
            networks: self.policy.networks(),
            network_ids: self.policy.network_ids(),
            agents: agents
                .into_iter()
                .map(|(agent, chains)| {
                    let mut addresses = BTreeMap::new();
                    let mut network_addresses = BTreeMap::new();
                    for (chain, keys) in chains {
                        // One key on the chain: its address is unambiguous for a client that
                        // knows no networks. Several: such a client must not guess.
                        if let [(_, only)] = keys.as_slice() {
                            addresses.insert(chain.as_str().to_owned(), only.clone());
                        }
                        network_addresses.extend(keys);
                    }
                    AgentInfo {
                        paused: pauses.get(&agent).cloned(),
                        hyperliquid_masters: masters.remove(&agent).unwrap_or_default(),
                        agent,
                        addresses,
                        network_addresses,
                    }
                })
                .collect(),
        }
    }
}
