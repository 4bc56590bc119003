//! Which network each agent works on, and whether the Solana RPC node serves it.
//!
//! An agent's network comes from the config (`solana_network`) or, without it, from the one
//! Solana network the signer holds a key for the agent on (keys are per network, made for the
//! networks the signed policy names); never from a constant. Its address is that key's.
//!
//! On Solana only the blockhash decides which cluster accepts a transaction, and the signer
//! cannot tell which cluster a blockhash comes from. So before any work on the chain (at start,
//! every chain view, every live transfer and approval) the node's `getGenesisHash` is compared
//! with the genesis hash the signed policy pins for that network (`hello`'s `network_ids`). A
//! node of another cluster (a mainnet URL under a devnet policy) is refused, nothing goes out,
//! and the operator is alerted. A node that lies about its genesis hash is not caught here:
//! what bounds it is that a devnet key holds no mainnet funds (`docs/security-model.md`).

use vigil_protocol::{AgentId, Chain, HelloResult, Network, network_name};

use super::Orchestrator;
use crate::operator::Alert;

impl Orchestrator {
    /// The network `agent` works on, and its address there (see the module docs).
    pub(crate) fn agent_network(
        &self,
        hello: &HelloResult,
        agent: &AgentId,
    ) -> Result<(Network, String), String> {
        let info = hello
            .agents
            .iter()
            .find(|a| &a.agent == agent)
            .ok_or_else(|| format!("the signer has no key for {agent}"))?;
        let keys: Vec<(Network, &String)> = info
            .network_addresses
            .iter()
            .filter_map(
                |(name, address)| match vigil_protocol::parse_network_name(name) {
                    Some((Chain::Solana, network)) => Some((network, address)),
                    _ => None,
                },
            )
            .collect();
        match (self.config.solana_network, keys.as_slice()) {
            (Some(network), _) => keys
                .iter()
                .find(|(n, _)| *n == network)
                .map(|(n, a)| (*n, (*a).clone()))
                .ok_or_else(|| {
                    format!(
                        "the config's solana_network is {network}, but the signer has no {} key for {agent}: \
                         its keys are made per network the signed policy names",
                        network_name(Chain::Solana, network)
                    )
                }),
            (None, [(network, address)]) => Ok((*network, (*address).clone())),
            (None, []) => Err(format!("the signer has no Solana key for {agent}")),
            (None, several) => {
                let names: Vec<String> = several
                    .iter()
                    .map(|(n, _)| network_name(Chain::Solana, *n))
                    .collect();
                Err(format!(
                    "{agent} has keys for {}: set solana_network in the config to the network solana_rpc_url serves",
                    names.join(" and ")
                ))
            }
        }
    }

    /// Checks that the RPC node serves `network` as the signed policy pins it: its genesis
    /// hash must be the pinned one. A mismatch is alerted (once until it changes) and returned
    /// as the reason to do no work on that node. Without an RPC node there is nothing to check.
    pub(crate) async fn check_node(
        &self,
        hello: &HelloResult,
        network: Network,
    ) -> Result<(), String> {
        let Some(rpc) = &self.rpc else {
            return Ok(());
        };
        let name = network_name(Chain::Solana, network);
        let pinned = hello
            .network_ids
            .get(&name)
            .and_then(|id| id.genesis_hash.clone())
            .ok_or_else(|| {
                format!(
                    "the signer's policy pins no genesis hash for {name}: it is not a network the policy allows"
                )
            });
        let checked = match pinned {
            Err(e) => Err(e),
            Ok(pinned) => match rpc.get_genesis_hash().await {
                Err(e) => return Err(format!("genesis hash of the RPC node: {e}")),
                Ok(served) if served == pinned => Ok(()),
                Ok(served) => Err(format!(
                    "the Solana RPC node serves the cluster with genesis hash {served}{}, but the signed policy pins {pinned} for {name}: \
                     nothing is signed for it or sent through it; point solana_rpc_url at a {name} node (or set solana_network) and restart",
                    known_cluster(&served)
                )),
            },
        };
        self.alert_once_per_mismatch(&self.network_alerted, &checked);
        checked
    }

    /// At start: every agent's network resolved and the RPC node checked against it. One line
    /// per problem (each mismatch is also alerted); empty when all agree.
    pub async fn check_networks(&self) -> Vec<String> {
        let hello = match self.hello().await {
            Ok(hello) => hello,
            Err(e) => return vec![format!("networks not checked: signer unreachable: {e}")],
        };
        let mut report = Vec::new();
        let mut checked = Vec::new();
        let mut evm_checked = Vec::new();
        for agent in &self.config.agents {
            match self.agent_evm_network(&hello, &agent.id) {
                Ok(Some((network, _)))
                    if self.evm_rpcs.contains_key(&network) && !evm_checked.contains(&network) =>
                {
                    evm_checked.push(network);
                    if let Err(why) = self.checked_evm_node(&hello, network).await {
                        report.push(why);
                    }
                }
                Ok(_) => {}
                Err(why) => report.push(format!("{}: {why}", agent.id)),
            }
            // An agent that works off Solana (an EVM network, or Hyperliquid) and holds no
            // Solana key has no Solana network to check, as its decisions have none.
            let off_solana = agent.hyperliquid_network.is_some()
                || self
                    .agent_evm_network(&hello, &agent.id)
                    .ok()
                    .flatten()
                    .is_some();
            if off_solana && !self.has_solana_key(&agent.id).await {
                continue;
            }
            match self.agent_network(&hello, &agent.id) {
                Ok((network, _)) if checked.contains(&network) => {}
                Ok((network, _)) => {
                    checked.push(network);
                    if let Err(why) = self.check_node(&hello, network).await {
                        report.push(why);
                    }
                }
                Err(why) => report.push(format!("{}: {why}", agent.id)),
            }
        }
        report
    }

    /// A recent blockhash for live work of `agent`, from a node checked to serve its network;
    /// and that network.
    pub async fn live_blockhash(&self, agent: &AgentId) -> Result<(String, Network), String> {
        let (_, blockhash, network) = self.chain_view(agent).await?;
        Ok((blockhash, network))
    }
}

/// ` (Solana mainnet-beta)` when `hash` is a public cluster's genesis hash, else nothing.
fn known_cluster(hash: &str) -> &'static str {
    match hash {
        vigil_protocol::SOLANA_MAINNET_GENESIS_HASH => " (Solana mainnet-beta)",
        vigil_protocol::SOLANA_TESTNET_GENESIS_HASH => " (Solana testnet)",
        vigil_protocol::SOLANA_DEVNET_GENESIS_HASH => " (Solana devnet)",
        _ => "",
    }
}

impl Orchestrator {
    /// Alerts the operator once per new mismatch of a node's identity (a `WrongNetwork` alert
    /// and an error log), and forgets the last one once the check passes again: `last` holds
    /// the reason last alerted for that node.
    pub(super) fn alert_once_per_mismatch(
        &self,
        last: &std::sync::Mutex<Option<String>>,
        checked: &Result<(), String>,
    ) {
        let mut alerted = last
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match checked {
            Ok(()) => *alerted = None,
            Err(why) if alerted.as_deref() != Some(why.as_str()) => {
                tracing::error!("{why}");
                self.alert(Alert::WrongNetwork(why.clone()));
                *alerted = Some(why.clone());
            }
            Err(_) => {}
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use std::collections::BTreeMap;
    use std::time::Duration;

    use vigil_protocol::AgentInfo;

    use super::*;
    use crate::config::Config;
    use crate::signer_client::SignerClient;
    use crate::store::Store;

    fn orchestrator(dir: &std::path::Path, network: Option<Network>) -> Orchestrator {
        let mut config = Config::default_config();
        config.providers.clear();
        config.state_db = dir.join("state.sqlite");
        config.signer_socket = dir.join("no-signer.sock");
        config.solana_network = network;
        let store = Store::open(&config.state_db).unwrap();
        let signer = SignerClient::new(&config.signer_socket, Duration::from_secs(1));
        Orchestrator::new(config, store, signer).unwrap()
    }

    fn hello(keys: &[(&str, &str)]) -> HelloResult {
        HelloResult {
            version: 1,
            policy_digest: String::new(),
            networks: Vec::new(),
            network_ids: BTreeMap::new(),
            agents: vec![AgentInfo {
                agent: "trader".parse().unwrap(),
                addresses: BTreeMap::new(),
                network_addresses: keys
                    .iter()
                    .map(|(n, a)| ((*n).to_owned(), (*a).to_owned()))
                    .collect(),
                hyperliquid_masters: BTreeMap::new(),
                paused: None,
            }],
        }
    }

    #[test]
    fn an_agents_network_comes_from_its_keys_or_the_config_never_a_constant() {
        let dir = tempfile::tempdir().unwrap();
        let trader: AgentId = "trader".parse().unwrap();
        let from_keys = orchestrator(dir.path(), None);
        assert_eq!(
            from_keys
                .agent_network(&hello(&[("solana:testnet", "T")]), &trader)
                .unwrap(),
            (Network::Testnet, "T".to_owned()),
            "one key: its network, not devnet"
        );
        let two = hello(&[("solana:devnet", "D"), ("solana:mainnet", "M")]);
        let err = from_keys.agent_network(&two, &trader).unwrap_err();
        assert!(
            err.contains("solana:devnet and solana:mainnet") && err.contains("solana_network"),
            "{err}"
        );
        let err = from_keys.agent_network(&hello(&[]), &trader).unwrap_err();
        assert!(err.contains("no Solana key"), "{err}");

        let dir = tempfile::tempdir().unwrap();
        let named = orchestrator(dir.path(), Some(Network::Mainnet));
        assert_eq!(
            named.agent_network(&two, &trader).unwrap(),
            (Network::Mainnet, "M".to_owned())
        );
        let err = named
            .agent_network(&hello(&[("solana:devnet", "D")]), &trader)
            .unwrap_err();
        assert!(err.contains("no solana:mainnet key for trader"), "{err}");
    }
}
