//! The encrypted keystore: one versioned JSON file per secret (an agent's signing seed for one
//! chain and network, the operator approval secret, the pinned policy public key), each
//! encrypted with AES-256-GCM (NIST SP 800-38D). The associated data binds every piece of
//! metadata, so a file cannot be edited, or renamed into another agent's, network's or
//! purpose's place, without failing to decrypt.
//!
//! Keys: format 2 (written today) runs scrypt (RFC 7914) ONCE per keystore, from the
//! passphrase and the keystore's master salt, to a [`MasterKey`]; each entry's AES key is
//! HKDF-SHA256 (RFC 5869) of the master key and the entry's own salt. Unlocking costs one
//! scrypt however many entries there are. Format 1 (read only: keystores made before keys
//! were per network) ran scrypt per entry, with the entry's salt, and its agent keys name no
//! network: the signer binds such a key to the one network its signed policy names for that
//! agent and chain (`keyring`). Nothing writes format 1 any more.
//!
//! - [`KdfParams`], [`Purpose`] and [`entry_file_name`]: what an entry is and where it lives.
//! - `master`: [`MasterKey`] (scrypt once, HKDF per entry) and [`Subkey`] (keys for other
//!   purposes derived from the same master key, e.g. an audit MAC key: [`MasterKey::subkey`]).
//! - `entry`: the file format, [`write_entry`], [`read_entry`] and [`inspect_entry`].
//! - `unlock`: [`unlock`] and [`unlock_files`], which open a whole keystore at start-up.
//! - `files`: private files (0600, atomic writes, permission checks) and the passphrase.

use std::fmt;

use serde::{Deserialize, Serialize};
use vigil_protocol::{AgentId, Chain, Network};

mod entry;
mod error;
mod files;
mod master;
mod unlock;

pub use entry::{DecryptedEntry, EntryInfo, inspect_entry, read_entry, write_entry};
pub use error::KeystoreError;
pub use files::{
    check_private_file, read_passphrase, read_passphrase_from, rename_no_replace,
    write_private_file,
};
pub use master::{MasterKey, Subkey};
pub use unlock::{AgentKeyId, Unlocked, unlock, unlock_files};

/// The format version written in `"vigil_keystore"` (and bound into every file's associated
/// data): one scrypt master key per keystore, HKDF per entry, agent keys per network.
pub const FORMAT_VERSION: u32 = 2;
/// The first format, still read: scrypt per entry, agent keys without a network.
pub const FORMAT_V1: u32 = 1;

/// The name of the systemd credential holding the keystore passphrase.
pub const PASSPHRASE_CREDENTIAL: &str = "vigil-keystore-passphrase";

/// scrypt cost parameters (RFC 7914): N = 2^log_n, block size r, parallelism p.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct KdfParams {
    /// log2 of the CPU/memory cost N.
    pub log_n: u8,
    /// The block size.
    pub r: u32,
    /// The parallelism.
    pub p: u32,
}

/// Largest log_n ever run: above this a file is refused before the KDF starts.
const MAX_LOG_N: u8 = 22;
/// Smallest log_n accepted when reading (what `INSECURE_DEV` uses).
const MIN_LOG_N: u8 = 10;
/// Largest block size accepted.
const MAX_R: u32 = 32;
/// Largest parallelism accepted.
const MAX_P: u32 = 16;
/// Largest scrypt working memory (128 * r * N bytes) accepted: 1 GiB.
const MAX_MEMORY: u64 = 1 << 30;

impl KdfParams {
    /// scrypt N=2^18, r=8, p=1 (EIP-2335 / geth / age default).
    pub const PRODUCTION: KdfParams = KdfParams {
        log_n: 18,
        r: 8,
        p: 1,
    };
    /// Cheap parameters for tests and `dev-init` only.
    pub const INSECURE_DEV: KdfParams = KdfParams {
        log_n: 10,
        r: 8,
        p: 1,
    };

    /// Bounds checked before any decryption: 10 <= log_n <= 22, 1 <= r <= 32, 1 <= p <= 16,
    /// and memory 128*r*2^log_n <= 1 GiB. Never decrypt with log_n > 22.
    pub fn check_readable(&self) -> Result<(), KeystoreError> {
        match self.bounds_violation() {
            None => Ok(()),
            Some(reason) => Err(KeystoreError::KdfOutOfBounds {
                path: None,
                params: *self,
                reason,
            }),
        }
    }

    /// True when weaker than PRODUCTION (used to log loudly on unlock). Conservative: any one
    /// parameter below production's counts, even if another one is raised.
    pub fn is_weaker_than_production(&self) -> bool {
        let prod = Self::PRODUCTION;
        self.log_n < prod.log_n || self.r < prod.r || self.p < prod.p
    }

    /// The first bound broken, as a sentence naming it, or `None` when all hold.
    fn bounds_violation(&self) -> Option<String> {
        if self.log_n < MIN_LOG_N || self.log_n > MAX_LOG_N {
            return Some(format!("log_n must be between {MIN_LOG_N} and {MAX_LOG_N}"));
        }
        if self.r < 1 || self.r > MAX_R {
            return Some(format!("r must be between 1 and {MAX_R}"));
        }
        if self.p < 1 || self.p > MAX_P {
            return Some(format!("p must be between 1 and {MAX_P}"));
        }
        if self.memory_bytes() > MAX_MEMORY {
            return Some("memory 128*r*2^log_n must be at most 1 GiB".to_owned());
        }
        None
    }

    /// scrypt's working memory in bytes, 128 * r * 2^log_n (saturating; only meaningful once
    /// log_n and r are in bounds).
    fn memory_bytes(&self) -> u64 {
        let n = 1u64.checked_shl(u32::from(self.log_n)).unwrap_or(u64::MAX);
        n.saturating_mul(128).saturating_mul(u64::from(self.r))
    }

    /// Total work, N * r * p (saturating), to break ties between equal memory costs.
    fn work(&self) -> u64 {
        let n = 1u64.checked_shl(u32::from(self.log_n)).unwrap_or(u64::MAX);
        n.saturating_mul(u64::from(self.r))
            .saturating_mul(u64::from(self.p))
    }

    /// The cheaper of two parameter sets (less memory, then less work).
    fn weaker(self, other: KdfParams) -> KdfParams {
        if (other.memory_bytes(), other.work()) < (self.memory_bytes(), self.work()) {
            other
        } else {
            self
        }
    }
}

impl fmt::Display for KdfParams {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "scrypt log_n={} r={} p={}", self.log_n, self.r, self.p)
    }
}

/// The role of a Hyperliquid agent key: each agent has two keys per Hyperliquid network. Bound
/// in the entry's associated data (`role=...`), so one file cannot pass for the other.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyRole {
    /// The API ("agent") wallet: signs L1 actions only (orders, cancels, leverage, the
    /// dead-man switch); it holds no funds and cannot move any.
    ApiWallet,
    /// The master account: holds the funds; signs only user-signed actions (`usdSend`,
    /// `withdraw3`, `approveAgent`), each after the operator's approval.
    Master,
}

impl KeyRole {
    /// The wire name (`api_wallet`, `master`).
    pub const fn as_str(self) -> &'static str {
        match self {
            KeyRole::ApiWallet => "api_wallet",
            KeyRole::Master => "master",
        }
    }

    /// The roles an agent key of `chain` is made in: none for a one-key chain, both for
    /// Hyperliquid.
    pub const fn for_chain(chain: Chain) -> &'static [Option<KeyRole>] {
        match chain {
            Chain::Hyperliquid => &[Some(KeyRole::ApiWallet), Some(KeyRole::Master)],
            Chain::Solana | Chain::Evm => &[None],
        }
    }

    /// Checks that `role` fits `chain`: a Hyperliquid key names its role, other keys none.
    pub fn check(chain: Chain, role: Option<KeyRole>) -> Result<(), String> {
        match (chain, role) {
            (Chain::Hyperliquid, Some(_)) | (Chain::Solana | Chain::Evm, None) => Ok(()),
            (Chain::Hyperliquid, None) => Err(
                "a hyperliquid agent key names its role (\"api_wallet\" or \"master\")".to_owned(),
            ),
            (_, Some(r)) => Err(format!(
                "only a hyperliquid agent key has a role, not a {chain} key (role {})",
                r.as_str()
            )),
        }
    }
}

impl fmt::Display for KeyRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a keystore entry holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Purpose {
    /// An agent's signing key seed (32 bytes) for one chain and network; `public` is the
    /// chain address (Solana: base58 of the ed25519 public key). `network` is `None` only in a
    /// format 1 entry (read, never written): such a key serves the one network the signed
    /// policy names for the agent on that chain.
    AgentKey {
        /// The agent.
        agent: AgentId,
        /// The chain.
        chain: Chain,
        /// The network the key serves (`None`: a format 1 entry).
        network: Option<Network>,
        /// Hyperliquid: which of the agent's two keys (`None` for every other chain).
        role: Option<KeyRole>,
    },
    /// The operator approval TOTP secret (raw bytes, 20+ bytes); `public` is "".
    ApprovalSecret,
    /// The policy public key (32 bytes) pinned at the ceremony; stored encrypted so it is authenticated by the passphrase; `public` is its hex.
    PolicyPin,
    /// The offline policy SIGNING key seed (32 bytes), kept only on the ceremony stick with
    /// `--keep-policy-key`; `public` is the hex of its public key. The signer refuses to unlock
    /// a keystore holding it: the appliance must never be able to sign a policy.
    PolicyKey,
}

impl Purpose {
    /// An agent's key for `chain` on `network` (what every writer makes).
    pub fn agent_key(agent: AgentId, chain: Chain, network: Network) -> Purpose {
        Purpose::AgentKey {
            agent,
            chain,
            network: Some(network),
            role: None,
        }
    }

    /// A Hyperliquid agent key of `role` on `network`.
    pub fn hyperliquid_key(agent: AgentId, network: Network, role: KeyRole) -> Purpose {
        Purpose::AgentKey {
            agent,
            chain: Chain::Hyperliquid,
            network: Some(network),
            role: Some(role),
        }
    }

    /// The wire name written in `"purpose"`.
    pub const fn as_str(&self) -> &'static str {
        match self {
            Purpose::AgentKey { .. } => "agent_key",
            Purpose::ApprovalSecret => "approval_secret",
            Purpose::PolicyPin => "policy_pin",
            Purpose::PolicyKey => "policy_key",
        }
    }
}

impl fmt::Display for Purpose {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Purpose::AgentKey {
                agent,
                chain,
                network: Some(network),
                role: Some(role),
            } => write!(f, "the {chain}:{network} {role} key of agent {agent}"),
            Purpose::AgentKey {
                agent,
                chain,
                network: Some(network),
                role: None,
            } => write!(f, "the {chain}:{network} key of agent {agent}"),
            Purpose::AgentKey {
                agent,
                chain,
                network: None,
                ..
            } => write!(
                f,
                "the {chain} key of agent {agent} (format 1: no network named)"
            ),
            Purpose::ApprovalSecret => f.write_str("the approval secret"),
            Purpose::PolicyPin => f.write_str("the policy key pin"),
            Purpose::PolicyKey => f.write_str("the offline policy signing key"),
        }
    }
}

/// The file name of an entry: "agent.<agent>.<chain>.<network>.key" (Hyperliquid:
/// "agent.<agent>.hyperliquid.<network>.<role>.key"; format 1:
/// "agent.<agent>.<chain>.key"), "approval.key", "policy.pin", "policy-signing.key".
/// Unambiguous, as agent ids cannot contain a dot.
pub fn entry_file_name(purpose: &Purpose) -> String {
    match purpose {
        Purpose::AgentKey {
            agent,
            chain,
            network: Some(network),
            role: Some(role),
        } => format!("agent.{agent}.{chain}.{network}.{role}.key"),
        Purpose::AgentKey {
            agent,
            chain,
            network: Some(network),
            role: None,
        } => format!("agent.{agent}.{chain}.{network}.key"),
        Purpose::AgentKey {
            agent,
            chain,
            network: None,
            ..
        } => format!("agent.{agent}.{chain}.key"),
        Purpose::ApprovalSecret => "approval.key".to_owned(),
        Purpose::PolicyPin => "policy.pin".to_owned(),
        Purpose::PolicyKey => "policy-signing.key".to_owned(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;

    #[test]
    fn file_names() {
        let agent: AgentId = "trader-2".parse().unwrap();
        assert_eq!(
            entry_file_name(&Purpose::agent_key(
                agent.clone(),
                Chain::Solana,
                Network::Mainnet
            )),
            "agent.trader-2.solana.mainnet.key"
        );
        assert_eq!(
            entry_file_name(&Purpose::AgentKey {
                agent: agent.clone(),
                chain: Chain::Solana,
                network: None,
                role: None,
            }),
            "agent.trader-2.solana.key",
            "a format 1 entry keeps its name"
        );
        assert_eq!(
            entry_file_name(&Purpose::hyperliquid_key(
                agent,
                Network::Testnet,
                KeyRole::Master
            )),
            "agent.trader-2.hyperliquid.testnet.master.key"
        );
        assert_eq!(entry_file_name(&Purpose::ApprovalSecret), "approval.key");
        assert_eq!(entry_file_name(&Purpose::PolicyPin), "policy.pin");
        assert_eq!(entry_file_name(&Purpose::PolicyKey), "policy-signing.key");
    }

    #[test]
    fn kdf_bounds_table() {
        let cases: &[(u8, u32, u32, Option<&str>)] = &[
            (10, 8, 1, None),
            (18, 8, 1, None),
            (22, 2, 1, None),
            (15, 32, 16, None),
            (22, 8, 1, Some("1 GiB")),
            (9, 8, 1, Some("log_n")),
            (23, 8, 1, Some("log_n")),
            (255, 8, 1, Some("log_n")),
            (18, 0, 1, Some("r must")),
            (18, 33, 1, Some("r must")),
            (18, 8, 0, Some("p must")),
            (18, 8, 17, Some("p must")),
            (22, 16, 1, Some("1 GiB")),
            (21, 32, 1, Some("1 GiB")),
        ];
        for &(log_n, r, p, want) in cases {
            let params = KdfParams { log_n, r, p };
            match (params.check_readable(), want) {
                (Ok(()), None) => {}
                (Err(e), Some(word)) => {
                    let msg = e.to_string();
                    assert!(msg.contains(word), "{params}: {msg}");
                    assert!(msg.contains(&format!("log_n={log_n} r={r} p={p}")), "{msg}");
                }
                (got, _) => panic!("{params}: expected {want:?}, got {got:?}"),
            }
        }
        // 128 * 8 * 2^20 = 1 GiB is the largest r=8 cost accepted.
        assert!(
            KdfParams {
                log_n: 20,
                r: 8,
                p: 1
            }
            .check_readable()
            .is_ok()
        );
        assert!(
            KdfParams {
                log_n: 21,
                r: 8,
                p: 1
            }
            .check_readable()
            .is_err()
        );
    }

    #[test]
    fn weakness_against_production() {
        assert!(!KdfParams::PRODUCTION.is_weaker_than_production());
        assert!(KdfParams::INSECURE_DEV.is_weaker_than_production());
        assert!(
            KdfParams {
                log_n: 17,
                r: 16,
                p: 1
            }
            .is_weaker_than_production()
        );
        assert!(
            KdfParams {
                log_n: 18,
                r: 4,
                p: 4
            }
            .is_weaker_than_production()
        );
        assert!(
            !KdfParams {
                log_n: 19,
                r: 8,
                p: 2
            }
            .is_weaker_than_production()
        );
        let weak = KdfParams::INSECURE_DEV;
        assert_eq!(KdfParams::PRODUCTION.weaker(weak), weak);
        assert_eq!(weak.weaker(KdfParams::PRODUCTION), weak);
        let wide = KdfParams {
            log_n: 18,
            r: 8,
            p: 4,
        };
        assert_eq!(wide.weaker(KdfParams::PRODUCTION), KdfParams::PRODUCTION);
    }
}
