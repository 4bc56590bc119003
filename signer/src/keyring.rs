//! The agents' signing keys as the engine uses them: one per (agent, chain, network), and each
//! serves only its own network. A devnet key and a mainnet key of the same agent are different
//! keys with different addresses, so a key made for test money never holds real funds by
//! accident, whatever a request's `network` label says.
//!
//! A format 2 keystore entry names its network. A format 1 entry (made before keys were per
//! network) names none: [`bind_networks`] binds it to the ONE network the signed policy names
//! for its agent on its chain, and refuses to start when the policy names several (one key
//! must not serve two networks), saying how to migrate. Used by the signer at start and by the
//! import, which refuses a stick the signer would then refuse to start on.

use std::collections::BTreeMap;

use vigil_protocol::{AgentId, Chain, Network, network_name};

use crate::keys::{AgentSecret, Ed25519Key, Secp256k1Key};
use crate::keystore::{AgentKeyId, KeyRole, Unlocked};
use crate::policy::Policy;

/// The agents' keys by (agent, chain, network).
pub(crate) type AgentKeys = BTreeMap<(AgentId, Chain, Network), AgentSecret>;

/// The network each agent key serves (see the module docs). A format 1 key whose agent the
/// policy gives no network of its chain is left out (it could serve nothing); the error names
/// a format 1 key the policy would have serve several networks, and what to do.
pub fn bind_networks<'a>(
    keys: impl IntoIterator<Item = &'a AgentKeyId>,
    policy: &Policy,
) -> Result<BTreeMap<AgentKeyId, Network>, String> {
    let mut bound = BTreeMap::new();
    for id in keys {
        let network = match id.network {
            Some(network) => network,
            None => {
                let named = policy.agent_networks(&id.agent, id.chain);
                match named.as_slice() {
                    [] => {
                        tracing::warn!(key = %id, "a format 1 key whose agent the policy gives no network of its chain: it serves nothing");
                        continue;
                    }
                    [one] => *one,
                    several => {
                        let names: Vec<String> =
                            several.iter().map(|&n| network_name(id.chain, n)).collect();
                        return Err(format!(
                            "the {chain} key of agent {agent} is a format 1 key (one key per agent and chain, made before \
                             keys were per network), and the signed policy names {count} {chain} networks for {agent} \
                             ({names}): one key must not serve two networks. Either sign a policy that names one {chain} \
                             network for {agent}, or run a key ceremony with this release (a key per network) and import \
                             it with --replace (docs/key-ceremony.md)",
                            chain = id.chain,
                            agent = id.agent,
                            count = several.len(),
                            names = names.join(", "),
                        ));
                    }
                }
            }
        };
        bound.insert(id.clone(), network);
    }
    Ok(bound)
}

/// The engine's keys from an unlocked keystore and the verified policy (see
/// [`bind_networks`]). Warns about policy networks no key serves (their requests are refused).
pub(crate) fn agent_keys(unlocked: &Unlocked, policy: &Policy) -> Result<AgentKeys, String> {
    let bound = bind_networks(unlocked.agent_seeds.keys(), policy)?;
    let mut keys = AgentKeys::new();
    // Hyperliquid: the API wallet and the master of one (agent, network), paired below.
    let mut halves: BTreeMap<(AgentId, Network), (Option<Secp256k1Key>, Option<Secp256k1Key>)> =
        BTreeMap::new();
    for (id, network) in bound {
        if let Some(seed) = unlocked.agent_seeds.get(&id) {
            let secp = || {
                Secp256k1Key::from_secret(seed).ok_or_else(|| {
                    format!("the {id} key is not a secp256k1 secret key: the keystore entry is damaged; import the ceremony's keys again")
                })
            };
            let key = match (id.chain, id.role) {
                (Chain::Solana, _) => AgentSecret::Ed25519(Ed25519Key::from_seed(seed)),
                (Chain::Evm, _) => AgentSecret::Secp256k1(secp()?),
                (Chain::Hyperliquid, role) => {
                    let pair = halves.entry((id.agent.clone(), network)).or_default();
                    match role {
                        Some(KeyRole::ApiWallet) => pair.0 = Some(secp()?),
                        Some(KeyRole::Master) => pair.1 = Some(secp()?),
                        // The keystore refuses a Hyperliquid entry without its role.
                        None => {
                            return Err(format!(
                                "the {id} key names no role: import the ceremony's keys again"
                            ));
                        }
                    }
                    continue;
                }
            };
            keys.insert((id.agent.clone(), id.chain, network), key);
        }
    }
    for ((agent, network), pair) in halves {
        match pair {
            (Some(api), Some(master)) => {
                if api.address() == master.address() {
                    return Err(format!(
                        "agent {agent}'s Hyperliquid API wallet and master are the same key: the keystore is damaged; import the ceremony's keys again"
                    ));
                }
                keys.insert(
                    (agent, Chain::Hyperliquid, network),
                    AgentSecret::Hyperliquid { api, master },
                );
            }
            _ => {
                tracing::warn!(%agent, %network, "a Hyperliquid key without its pair (API wallet and master): it serves nothing")
            }
        }
    }
    for (agent, rules) in &policy.agents {
        for &(chain, network) in &rules.networks {
            if !keys.contains_key(&(agent.clone(), chain, network)) {
                tracing::warn!(%agent, network = %network_name(chain, network), "the policy lets this agent use a network it has no key for; its requests there will be refused");
            }
        }
    }
    Ok(keys)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;

    fn policy(networks: &[&str]) -> Policy {
        let list: Vec<String> = networks.iter().map(|n| format!("\"{n}\"")).collect();
        let text = format!(
            "version = 1\n[agents.trader]\nactions = [\"transfer\"]\nnetworks = [{}]\nrecipients = []\n\
             rate_limit_per_minute = 1\n[agents.trader.assets.SOL]\nchain = \"solana\"\nper_tx_cap = \"1\"\n\
             velocity_24h = \"1\"\napproval_threshold = \"1\"\n",
            list.join(", ")
        );
        crate::policy::parse(text.as_bytes()).unwrap()
    }

    fn id(agent: &str, network: Option<Network>) -> AgentKeyId {
        AgentKeyId {
            agent: agent.parse().unwrap(),
            chain: Chain::Solana,
            network,
            role: None,
        }
    }

    #[test]
    fn a_format_2_key_serves_the_network_it_names() {
        let keys = [
            id("trader", Some(Network::Devnet)),
            id("trader", Some(Network::Mainnet)),
        ];
        let bound = bind_networks(&keys, &policy(&["solana:devnet"])).unwrap();
        assert_eq!(bound[&keys[0]], Network::Devnet);
        assert_eq!(bound[&keys[1]], Network::Mainnet, "unused, but never moved");
    }

    #[test]
    fn a_format_1_key_serves_the_one_network_its_policy_names() {
        let legacy = [id("trader", None)];
        for (networks, want) in [
            (&["solana:devnet"][..], Network::Devnet),
            (&["solana:mainnet"][..], Network::Mainnet),
        ] {
            let bound = bind_networks(&legacy, &policy(networks)).unwrap();
            assert_eq!(bound[&legacy[0]], want, "{networks:?}");
        }
        // An agent the policy does not name at all: the key serves nothing.
        let other = [id("saver", None)];
        assert!(
            bind_networks(&other, &policy(&["solana:devnet"]))
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn a_format_1_key_is_refused_where_the_policy_names_two_networks() {
        let err = bind_networks(
            &[id("trader", None)],
            &policy(&["solana:devnet", "solana:mainnet"]),
        )
        .unwrap_err();
        for part in [
            "format 1 key",
            "solana:devnet, solana:mainnet",
            "one key must not serve two networks",
            "--replace",
        ] {
            assert!(err.contains(part), "{part}: {err}");
        }
    }
}
