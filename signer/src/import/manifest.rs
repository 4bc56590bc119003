//! The ceremony manifest: the public record of a key ceremony, written to the stick next to
//! the keystore and the signed policy, and signed by the policy key. It names every agent's
//! address and key fingerprint, the policy key, the policy digest, and the SHA-256 and size
//! of every file the appliance imports, so the import can check the stick file by file and
//! the operator can compare fingerprints with what the ceremony showed.
//!
//! `vigil-ceremony` writes it (through [`Manifest::to_bytes`] and [`signing_message`]);
//! `vigil-signer import` reads it. Format: `docs/key-ceremony.md`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use vigil_protocol::{AgentId, Chain, Network};

use crate::keystore::{self, KdfParams, Purpose};
use crate::policy;

/// The manifest's file name at the root of the stick.
pub const MANIFEST_FILE: &str = "manifest.json";
/// Its detached signature by the policy key: hex of 64 bytes and `"\n"`.
pub const MANIFEST_SIG_FILE: &str = "manifest.json.sig";
/// Domain separation prefix of the signed message (distinct from the policy's).
pub const MANIFEST_DOMAIN: &[u8] = b"vigil-manifest-v1\n";
/// The only manifest format version.
pub const MANIFEST_VERSION: u32 = 1;
/// Largest manifest read.
pub const MAX_MANIFEST_LEN: u64 = 256 * 1024;
/// The keystore directory on the stick (and in the signer's state dir).
pub const KEYSTORE_DIR: &str = "keystore";
/// The policy directory on the stick (and in the signer's state dir).
pub const POLICY_DIR: &str = "policy";
/// Where a kept policy signing key sits on the stick; never imported.
pub const POLICY_KEY_DIR: &str = "policy-key";
/// Domain separation prefix of a key fingerprint.
const FINGERPRINT_DOMAIN: &[u8] = b"vigil-fingerprint-v1\n";
/// Bytes of SHA-256 shown in a fingerprint (80 bits: 20 hex digits in groups of 4).
const FINGERPRINT_BYTES: usize = 10;

/// The manifest, as signed. Unknown fields are refused.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Always [`MANIFEST_VERSION`].
    pub vigil_manifest: u32,
    /// The tool and version that ran the ceremony, e.g. `vigil-ceremony 0.1.0`.
    pub tool: String,
    /// When the ceremony ran (unix seconds, from the ceremony machine's clock).
    pub created_at: u64,
    /// True when the ceremony ran with a network interface up (`--i-know-this-is-online`).
    pub online_override: bool,
    /// The interfaces that were up when the override was used (empty otherwise).
    pub online_interfaces: Vec<String>,
    /// The scrypt parameters of every keystore entry.
    pub kdf: KdfParams,
    /// The policy public key: it signed the policy and this manifest.
    pub policy_key: PolicyKeyInfo,
    /// Whether the policy signing key was written (encrypted) to the stick.
    pub policy_key_kept: bool,
    /// SHA-256 (hex) of `policy/policy.toml`: the `policy_digest` the signer reports in `hello`.
    pub policy_digest: String,
    /// One entry per agent key (agent, chain, network), sorted.
    pub agents: Vec<AgentInfo>,
    /// Every file the appliance imports, by path relative to the stick's root.
    pub files: BTreeMap<String, FileInfo>,
}

/// The policy public key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyKeyInfo {
    /// Hex of the 32-byte Ed25519 public key.
    pub public: String,
    /// Its [`fingerprint`].
    pub fingerprint: String,
}

/// One agent key.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentInfo {
    /// The agent.
    pub agent: AgentId,
    /// The chain of this key.
    pub chain: Chain,
    /// The network the key serves. Absent only in a manifest of a format 1 ceremony (one key
    /// per agent and chain), whose key serves the one network the policy names for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<Network>,
    /// Hyperliquid: which of the agent's two keys (`api_wallet`, `master`); absent elsewhere.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<crate::keystore::KeyRole>,
    /// Its address on that chain (Solana: base58 public key).
    pub address: String,
    /// [`fingerprint`] of the public key bytes.
    pub fingerprint: String,
}

/// One imported file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileInfo {
    /// SHA-256 of its bytes, hex.
    pub sha256: String,
    /// Its length in bytes.
    pub size: u64,
}

impl Manifest {
    /// The exact bytes written to `manifest.json` (and signed): pretty JSON and a newline.
    pub fn to_bytes(&self) -> Result<Vec<u8>, String> {
        let mut bytes = serde_json::to_vec_pretty(self)
            .map_err(|e| format!("could not serialise the manifest: {e}"))?;
        bytes.push(b'\n');
        Ok(bytes)
    }

    /// Parses manifest bytes (not yet trusted: verify the signature over the same bytes).
    pub fn parse(bytes: &[u8]) -> Result<Manifest, String> {
        let m: Manifest = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        if m.vigil_manifest != MANIFEST_VERSION {
            return Err(format!(
                "manifest format version {} is not supported (this signer reads {MANIFEST_VERSION}): use a matching vigil-ceremony release",
                m.vigil_manifest
            ));
        }
        for path in m.files.keys() {
            check_file_path(path)?;
        }
        Ok(m)
    }

    /// The policy public key's bytes.
    pub fn policy_key_bytes(&self) -> Result<[u8; 32], String> {
        let mut key = [0u8; 32];
        hex::decode_to_slice(&self.policy_key.public, &mut key)
            .map_err(|e| format!("policy_key.public is not 64 hex digits ({e})"))?;
        Ok(key)
    }
}

/// Only the layout the ceremony writes may be listed: `keystore/<entry>`,
/// `policy/policy.toml`, `policy/policy.toml.sig`. No other directory, no `..`.
pub fn check_file_path(path: &str) -> Result<(), String> {
    let ok = match path.split_once('/') {
        Some((KEYSTORE_DIR, name)) => {
            !name.is_empty()
                && !name.starts_with('.')
                && (name.ends_with(".key") || name.ends_with(".pin"))
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
        }
        Some((POLICY_DIR, name)) => name == policy::POLICY_FILE || name == policy::SIGNATURE_FILE,
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        Err(format!(
            "the manifest lists {path:?}, which is not part of a ceremony stick (only keystore/*.key|*.pin and policy/policy.toml[.sig])"
        ))
    }
}

/// The file name of a keystore entry as listed in the manifest.
pub fn keystore_path(purpose: &Purpose) -> String {
    format!("{KEYSTORE_DIR}/{}", keystore::entry_file_name(purpose))
}

/// The exact message the policy key signs: `MANIFEST_DOMAIN || manifest bytes`.
pub fn signing_message(manifest_bytes: &[u8]) -> Vec<u8> {
    let mut msg = Vec::with_capacity(MANIFEST_DOMAIN.len() + manifest_bytes.len());
    msg.extend_from_slice(MANIFEST_DOMAIN);
    msg.extend_from_slice(manifest_bytes);
    msg
}

/// A key fingerprint for people to compare: the first 80 bits of
/// SHA-256(`"vigil-fingerprint-v1\n"` || public key bytes), as 5 groups of 4 hex digits.
pub fn fingerprint(public: &[u8]) -> String {
    let mut h = Sha256::new();
    h.update(FINGERPRINT_DOMAIN);
    h.update(public);
    let digest = h.finalize();
    group(&hex::encode(&digest[..FINGERPRINT_BYTES]))
}

/// Lowercase hex of SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// `abcd ef01 ...`: hex in groups of 4, for reading aloud.
pub fn group(hex: &str) -> String {
    hex.as_bytes()
        .chunks(4)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;

    fn sample() -> Manifest {
        Manifest {
            vigil_manifest: MANIFEST_VERSION,
            tool: "vigil-ceremony 0.1.0".into(),
            created_at: 1_700_000_000,
            online_override: false,
            online_interfaces: vec![],
            kdf: KdfParams::PRODUCTION,
            policy_key: PolicyKeyInfo {
                public: "11".repeat(32),
                fingerprint: fingerprint(&[0x11; 32]),
            },
            policy_key_kept: false,
            policy_digest: "22".repeat(32),
            agents: vec![],
            files: BTreeMap::from([(
                "policy/policy.toml".to_owned(),
                FileInfo {
                    sha256: "33".repeat(32),
                    size: 10,
                },
            )]),
        }
    }

    #[test]
    fn round_trips_and_refuses_unknown_fields_and_versions() {
        let m = sample();
        let bytes = m.to_bytes().unwrap();
        assert!(bytes.ends_with(b"}\n"));
        assert_eq!(Manifest::parse(&bytes).unwrap(), m);
        assert_eq!(m.policy_key_bytes().unwrap(), [0x11; 32]);

        let mut v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        v["extra"] = serde_json::json!(1);
        let err = Manifest::parse(v.to_string().as_bytes()).unwrap_err();
        assert!(err.contains("unknown field"), "{err}");

        let mut v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        v["vigil_manifest"] = serde_json::json!(2);
        let err = Manifest::parse(v.to_string().as_bytes()).unwrap_err();
        assert!(err.contains("version 2"), "{err}");
    }

    #[test]
    fn only_the_stick_layout_may_be_listed() {
        for ok in [
            "keystore/agent.trader.solana.key",
            "keystore/agent.trader.solana.devnet.key",
            "keystore/approval.key",
            "keystore/policy.pin",
            "policy/policy.toml",
            "policy/policy.toml.sig",
        ] {
            check_file_path(ok).unwrap();
        }
        for bad in [
            "../etc/passwd",
            "keystore/../../x.key",
            "keystore/.hidden.key",
            "keystore/notes.txt",
            "keystore/",
            "policy/other.toml",
            "policy-key/policy-signing.key",
            "manifest.json",
            "/keystore/approval.key",
        ] {
            assert!(check_file_path(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn fingerprints_are_domain_separated_and_grouped() {
        let fp = fingerprint(&[7; 32]);
        assert_eq!(fp.len(), 24);
        assert_eq!(fp.split(' ').count(), 5);
        assert_ne!(fp, group(&hex::encode(&Sha256::digest([7u8; 32])[..10])));
        assert_ne!(fp, fingerprint(&[8; 32]));
        assert_eq!(
            signing_message(b"x"),
            b"vigil-manifest-v1\nx".to_vec(),
            "manifest and policy signatures use different domains"
        );
        assert_ne!(MANIFEST_DOMAIN, policy::SIGNING_DOMAIN);
    }
}
