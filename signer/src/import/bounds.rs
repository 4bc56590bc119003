//! What a stick may ask the importer to read, checked on the signed manifest before any
//! listed file is opened, and the fingerprints the operator compares, computed from the keys.
//!
//! A manifest's signature proves only that whoever made the stick holds the key the manifest
//! names: anyone can make a stick labelled `VIGIL-KEYS` with a manifest signed by a key of
//! their own. So the manifest's shape is bounded first (how many agent keys, exactly the
//! files a ceremony writes, each no larger than its kind can be), and every file is then read
//! only up to the size the manifest gives it: the importer's memory is bounded by
//! [`MAX_AGENT_KEYS`] entries of [`MAX_ENTRY_LEN`] plus two policy files, whatever is on the
//! stick. And the fingerprints shown for comparison are recomputed from the public keys (which
//! the signer checks against the secrets when it unlocks them), never copied from the text of
//! the manifest.

use vigil_protocol::Chain;

use super::ImportError;
use super::manifest::{self, KEYSTORE_DIR, Manifest, POLICY_DIR};
use crate::chains::solana;
use crate::policy;

/// Most agent keys one ceremony may bring (each agent, chain and network is one key).
pub const MAX_AGENT_KEYS: usize = 64;
/// Files a stick lists besides the agent keys: the approval secret, the policy key's pin, the
/// policy and its signature.
pub const FILES_BESIDES_AGENT_KEYS: usize = 4;
/// Largest keystore entry read from a stick (the ceremony writes about 700 bytes).
pub const MAX_ENTRY_LEN: u64 = 16 * 1024;
/// Largest detached signature file (128 hex digits and a newline).
pub const MAX_SIGNATURE_LEN: u64 = 1024;

/// The manifest's shape is one a ceremony writes: at most [`MAX_AGENT_KEYS`] agent keys, at
/// most that many plus [`FILES_BESIDES_AGENT_KEYS`] files, each within the limit of its kind.
/// Checked before any listed file is read.
pub fn check_shape(m: &Manifest) -> Result<(), ImportError> {
    if m.agents.len() > MAX_AGENT_KEYS {
        return Err(ImportError::BadManifest(format!(
            "it names {} agent keys, more than the {MAX_AGENT_KEYS} one ceremony may bring; split the agents over several appliances or ceremonies",
            m.agents.len()
        )));
    }
    let most = m.agents.len() + FILES_BESIDES_AGENT_KEYS;
    if m.files.len() > most {
        return Err(ImportError::BadManifest(format!(
            "it lists {} files, but a ceremony of {} agent keys writes at most {most} (one per key, the approval secret, the policy pin, the policy and its signature); this stick was not written by vigil-ceremony",
            m.files.len(),
            m.agents.len()
        )));
    }
    for (rel, info) in &m.files {
        let limit = limit_of(rel);
        if info.size > limit {
            return Err(ImportError::BadManifest(format!(
                "it gives {rel} {} bytes, more than the {limit} such a file can hold; this stick was not written by vigil-ceremony",
                info.size
            )));
        }
    }
    Ok(())
}

/// The largest a listed file may be (its path is already one of the ceremony's layout).
pub fn limit_of(rel: &str) -> u64 {
    if rel.starts_with(&format!("{KEYSTORE_DIR}/")) {
        MAX_ENTRY_LEN
    } else if rel == format!("{POLICY_DIR}/{}", policy::SIGNATURE_FILE) {
        MAX_SIGNATURE_LEN
    } else {
        policy::MAX_POLICY_LEN
    }
}

/// Every fingerprint in the manifest is the one of the key it stands beside: the policy key's
/// of its public key, each agent's of the public key its address encodes.
pub fn check_fingerprints(m: &Manifest, policy_key: &[u8; 32]) -> Result<(), ImportError> {
    let computed = manifest::fingerprint(policy_key);
    if m.policy_key.fingerprint != computed {
        return Err(ImportError::FingerprintMismatch {
            what: "the policy key".into(),
            listed: m.policy_key.fingerprint.clone(),
            computed,
        });
    }
    for a in &m.agents {
        let computed = agent_fingerprint(a.chain, &a.address).map_err(|reason| {
            ImportError::BadManifest(format!("the address of agent {}: {reason}", a.agent))
        })?;
        if a.fingerprint != computed {
            return Err(ImportError::FingerprintMismatch {
                what: format!("agent {}'s {} key {}", a.agent, a.chain, a.address),
                listed: a.fingerprint.clone(),
                computed,
            });
        }
    }
    Ok(())
}

/// The fingerprint of the public key an address of `chain` encodes.
pub fn agent_fingerprint(chain: Chain, address: &str) -> Result<String, String> {
    match chain {
        Chain::Solana => solana::parse_address(address)
            .map(|key| manifest::fingerprint(&key.to_bytes()))
            .map_err(|e| e.to_string()),
        // An EVM address is a hash of the public key: the fingerprint is of its 20 bytes.
        Chain::Evm | Chain::Hyperliquid => crate::policy::parse_evm_address(address)
            .map(|a| manifest::fingerprint(a.as_slice()))
            .map_err(|e| format!("not an EVM address: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_follow_the_kind_of_file() {
        assert_eq!(
            limit_of("keystore/agent.trader.solana.devnet.key"),
            MAX_ENTRY_LEN
        );
        assert_eq!(limit_of("keystore/approval.key"), MAX_ENTRY_LEN);
        assert_eq!(limit_of("policy/policy.toml.sig"), MAX_SIGNATURE_LEN);
        assert_eq!(limit_of("policy/policy.toml"), policy::MAX_POLICY_LEN);
    }

    fn public_hex(bytes: &[u8]) -> String {
        hex::encode(bytes)
    }

    #[test]
    fn an_agent_fingerprint_is_the_one_of_its_public_key() {
        let public = [7u8; 32];
        let address = solana::address_of(&public);
        assert_eq!(
            agent_fingerprint(Chain::Solana, &address),
            Ok(manifest::fingerprint(&public))
        );
        assert!(agent_fingerprint(Chain::Solana, "not-base58!").is_err());
        // EVM: the fingerprint of the 20 address bytes (the address hashes the public key).
        let evm = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8";
        let bytes = hex::decode(&evm[2..]).unwrap();
        assert_eq!(
            agent_fingerprint(Chain::Evm, evm),
            Ok(manifest::fingerprint(&bytes))
        );
        assert!(agent_fingerprint(Chain::Evm, &public_hex(&bytes)).is_err());
    }
}
