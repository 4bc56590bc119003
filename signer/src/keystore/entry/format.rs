//! An entry file's text: the JSON layout of both formats, parsed into a [`Sealed`] value with
//! every name, length and bound checked before any KDF runs, written back from one, and the
//! associated data that binds all of it.
//!
//! Format 1 (read only):
//! `{"vigil_keystore": 1, "purpose", ["agent", "chain"], "public", "kdf": {"name": "scrypt",
//! "log_n", "r", "p", "salt"}, "cipher": {"name": "aes-256-gcm", "nonce"}, "ciphertext"}`,
//! the AES key being scrypt(passphrase, `kdf.salt`).
//!
//! Format 2 (written): the same plus `"network"` on agent keys and
//! `"key": {"name": "hkdf-sha256", "salt"}`; `kdf.salt` is then the keystore's master salt
//! (the same in every entry) and the AES key is HKDF-SHA256(master key, `key.salt`). A
//! Hyperliquid agent key also names its `"role"` (`api_wallet` or `master`), bound in the
//! associated data as `role=<role>` after the network; no other entry has one.

use std::path::Path;

use serde::{Deserialize, Serialize};
use vigil_protocol::{AgentId, Chain, Network};

use super::super::master::SALT_LEN;
use super::super::{FORMAT_V1, FORMAT_VERSION, KdfParams, KeyRole, KeystoreError, Purpose};

/// The one KDF name.
const KDF_NAME: &str = "scrypt";
/// The one per-entry key derivation name (format 2).
const KEY_NAME: &str = "hkdf-sha256";
/// The one cipher name.
const CIPHER_NAME: &str = "aes-256-gcm";
pub(super) const NONCE_LEN: usize = 12;
pub(super) const TAG_LEN: usize = 16;
/// Longest `public` (a base58 address or a hex key is far shorter).
const MAX_PUBLIC_LEN: usize = 128;

/// How an entry's AES key is made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(in crate::keystore) enum Keying {
    /// Format 1: scrypt(passphrase, the entry's `kdf.salt`).
    Scrypt,
    /// Format 2: HKDF-SHA256 of the keystore's master key with this entry salt.
    Master {
        /// The entry's own salt (`key.salt`).
        entry_salt: [u8; SALT_LEN],
    },
}

/// An entry parsed from its file (or about to be written), still encrypted.
#[derive(Debug)]
pub(in crate::keystore) struct Sealed {
    pub(in crate::keystore) purpose: Purpose,
    pub(in crate::keystore) public: String,
    pub(in crate::keystore) params: KdfParams,
    /// Format 1: the entry's scrypt salt; format 2: the keystore's master salt.
    pub(in crate::keystore) kdf_salt: [u8; SALT_LEN],
    pub(in crate::keystore) keying: Keying,
    pub(in crate::keystore) nonce: [u8; NONCE_LEN],
    /// Ciphertext followed by the 16-byte tag.
    pub(in crate::keystore) ciphertext: Vec<u8>,
}

/// The JSON of an entry file.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct EntryFile {
    vigil_keystore: u32,
    purpose: PurposeName,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    agent: Option<AgentId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    chain: Option<Chain>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    network: Option<Network>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    role: Option<KeyRole>,
    public: String,
    kdf: KdfField,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    key: Option<KeyField>,
    cipher: CipherField,
    ciphertext: String,
}

#[derive(Clone, Copy, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum PurposeName {
    AgentKey,
    ApprovalSecret,
    PolicyPin,
    PolicyKey,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct KdfField {
    name: String,
    log_n: u8,
    r: u32,
    p: u32,
    salt: String,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyField {
    name: String,
    salt: String,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct CipherField {
    name: String,
    nonce: String,
}

/// Read first, leniently, so that a newer format gets a version error rather than a field error.
#[derive(Deserialize)]
struct VersionProbe {
    vigil_keystore: Option<serde_json::Value>,
}

impl Sealed {
    /// The format version of this entry.
    pub(in crate::keystore) fn version(&self) -> u32 {
        match self.keying {
            Keying::Scrypt => FORMAT_V1,
            Keying::Master { .. } => FORMAT_VERSION,
        }
    }

    /// Parses an entry file; checks version, names, lengths and KDF bounds.
    pub(in crate::keystore) fn parse(path: &Path, text: &str) -> Result<Sealed, KeystoreError> {
        let malformed = |reason: String| KeystoreError::Malformed {
            path: path.to_path_buf(),
            reason,
        };
        let probe: VersionProbe = serde_json::from_str(text)
            .map_err(|e| malformed(format!("not a JSON object ({e})")))?;
        let version = probe
            .vigil_keystore
            .ok_or_else(|| malformed("it has no \"vigil_keystore\" version field".to_owned()))?;
        let found = version
            .as_u64()
            .ok_or_else(|| malformed("\"vigil_keystore\" is not a version number".to_owned()))?;
        if found != u64::from(FORMAT_V1) && found != u64::from(FORMAT_VERSION) {
            return Err(KeystoreError::UnsupportedVersion {
                path: path.to_path_buf(),
                found,
            });
        }
        let file: EntryFile = serde_json::from_str(text).map_err(|e| malformed(e.to_string()))?;

        if file.kdf.name != KDF_NAME {
            return Err(unknown(path, "kdf", file.kdf.name, KDF_NAME));
        }
        if file.cipher.name != CIPHER_NAME {
            return Err(unknown(path, "cipher", file.cipher.name, CIPHER_NAME));
        }
        let params = KdfParams {
            log_n: file.kdf.log_n,
            r: file.kdf.r,
            p: file.kdf.p,
        };
        if let Some(reason) = params.bounds_violation() {
            return Err(KeystoreError::KdfOutOfBounds {
                path: Some(path.to_path_buf()),
                params,
                reason,
            });
        }
        let kdf_salt = decode_fixed::<SALT_LEN>(&file.kdf.salt)
            .map_err(|e| malformed(format!("kdf.salt {e}")))?;
        let keying = match (file.vigil_keystore, file.key) {
            (FORMAT_V1, None) => Keying::Scrypt,
            (FORMAT_V1, Some(_)) => {
                return Err(malformed(
                    "a format 1 entry has no \"key\" (its key is scrypt of its own salt)".into(),
                ));
            }
            (_, None) => {
                return Err(malformed(format!(
                    "a format {FORMAT_VERSION} entry needs \"key\": {{\"name\": \"{KEY_NAME}\", \"salt\"}}"
                )));
            }
            (_, Some(key)) => {
                if key.name != KEY_NAME {
                    return Err(unknown(path, "key", key.name, KEY_NAME));
                }
                let entry_salt = decode_fixed::<SALT_LEN>(&key.salt)
                    .map_err(|e| malformed(format!("key.salt {e}")))?;
                Keying::Master { entry_salt }
            }
        };
        let nonce = decode_fixed::<NONCE_LEN>(&file.cipher.nonce)
            .map_err(|e| malformed(format!("cipher.nonce {e}")))?;
        let ciphertext = hex::decode(&file.ciphertext)
            .map_err(|e| malformed(format!("ciphertext is not hex ({e})")))?;
        if ciphertext.len() < TAG_LEN {
            return Err(malformed(format!(
                "ciphertext is shorter than the {TAG_LEN}-byte tag"
            )));
        }
        check_public_text(&file.public).map_err(malformed)?;
        let v1 = file.vigil_keystore == FORMAT_V1;
        if file.role.is_some() && (v1 || file.chain.is_none()) {
            return Err(malformed(
                "only a format 2 hyperliquid agent_key entry has a \"role\"".to_owned(),
            ));
        }
        let role = file.role;
        if let (false, Some(chain)) = (v1, file.chain) {
            KeyRole::check(chain, role).map_err(malformed)?;
        }
        let purpose = match (file.purpose, file.agent, file.chain, file.network) {
            (PurposeName::AgentKey, Some(_), Some(Chain::Hyperliquid), _) if v1 => {
                return Err(malformed(
                    "a format 1 entry cannot be a hyperliquid key (its two keys came with format 2)"
                        .to_owned(),
                ));
            }
            (PurposeName::AgentKey, Some(agent), Some(chain), None) if v1 => Purpose::AgentKey {
                agent,
                chain,
                network: None,
                role: None,
            },
            (PurposeName::AgentKey, Some(_), Some(_), Some(_)) if v1 => {
                return Err(malformed(
                    "a format 1 agent_key entry names no \"network\"".to_owned(),
                ));
            }
            (PurposeName::AgentKey, Some(agent), Some(chain), Some(network)) => Purpose::AgentKey {
                agent,
                chain,
                network: Some(network),
                role,
            },
            (PurposeName::AgentKey, _, _, _) if v1 => {
                return Err(malformed(
                    "an agent_key entry needs \"agent\" and \"chain\"".to_owned(),
                ));
            }
            (PurposeName::AgentKey, _, _, _) => {
                return Err(malformed(
                    "an agent_key entry needs \"agent\", \"chain\" and \"network\"".to_owned(),
                ));
            }
            (PurposeName::ApprovalSecret, None, None, None) => Purpose::ApprovalSecret,
            (PurposeName::PolicyPin, None, None, None) => Purpose::PolicyPin,
            (PurposeName::PolicyKey, None, None, None) => Purpose::PolicyKey,
            (_, _, _, _) => {
                return Err(malformed(
                    "only agent_key entries have \"agent\", \"chain\" and \"network\"".to_owned(),
                ));
            }
        };
        Ok(Sealed {
            purpose,
            public: file.public,
            params,
            kdf_salt,
            keying,
            nonce,
            ciphertext,
        })
    }

    /// The file's JSON, pretty-printed with a final newline.
    pub(in crate::keystore) fn to_json(&self, path: &Path) -> Result<String, KeystoreError> {
        let (purpose, agent, chain, network, role) = match &self.purpose {
            Purpose::AgentKey {
                agent,
                chain,
                network,
                role,
            } => (
                PurposeName::AgentKey,
                Some(agent.clone()),
                Some(*chain),
                *network,
                *role,
            ),
            Purpose::ApprovalSecret => (PurposeName::ApprovalSecret, None, None, None, None),
            Purpose::PolicyPin => (PurposeName::PolicyPin, None, None, None, None),
            Purpose::PolicyKey => (PurposeName::PolicyKey, None, None, None, None),
        };
        let key = match self.keying {
            Keying::Scrypt => None,
            Keying::Master { entry_salt } => Some(KeyField {
                name: KEY_NAME.to_owned(),
                salt: hex::encode(entry_salt),
            }),
        };
        let file = EntryFile {
            vigil_keystore: self.version(),
            purpose,
            agent,
            chain,
            network,
            role,
            public: self.public.clone(),
            kdf: KdfField {
                name: KDF_NAME.to_owned(),
                log_n: self.params.log_n,
                r: self.params.r,
                p: self.params.p,
                salt: hex::encode(self.kdf_salt),
            },
            key,
            cipher: CipherField {
                name: CIPHER_NAME.to_owned(),
                nonce: hex::encode(self.nonce),
            },
            ciphertext: hex::encode(&self.ciphertext),
        };
        let mut json = serde_json::to_string_pretty(&file).map_err(|e| KeystoreError::Write {
            path: path.to_path_buf(),
            source: std::io::Error::other(e),
        })?;
        json.push('\n');
        Ok(json)
    }

    /// The associated data: every piece of metadata, in a fixed order, one `key=value` a line.
    /// Unambiguous as agent ids, chain and network names and `public` hold no newline or `=`.
    /// Format 1's is exactly what format 1 writers bound (so those files still open).
    pub(in crate::keystore) fn associated_data(&self) -> String {
        let mut aad = format!(
            "vigil-keystore/{}\npurpose={}\n",
            self.version(),
            self.purpose.as_str()
        );
        if let Purpose::AgentKey {
            agent,
            chain,
            network,
            role,
        } = &self.purpose
        {
            aad.push_str(&format!("agent={agent}\nchain={chain}\n"));
            if let Some(network) = network {
                aad.push_str(&format!("network={network}\n"));
            }
            if let Some(role) = role {
                aad.push_str(&format!("role={role}\n"));
            }
        }
        let p = self.params;
        aad.push_str(&format!(
            "public={}\nkdf={KDF_NAME}:{}:{}:{}:{}\n",
            self.public,
            p.log_n,
            p.r,
            p.p,
            hex::encode(self.kdf_salt)
        ));
        if let Keying::Master { entry_salt } = self.keying {
            aad.push_str(&format!("key={KEY_NAME}:{}\n", hex::encode(entry_salt)));
        }
        aad.push_str(&format!("cipher={CIPHER_NAME}\n"));
        aad
    }
}

/// `public` is short and alphanumeric (base58 or hex), so the associated data is unambiguous.
pub(in crate::keystore) fn check_public_text(public: &str) -> Result<(), String> {
    if public.len() > MAX_PUBLIC_LEN || !public.chars().all(|c| c.is_ascii_alphanumeric()) {
        return Err(format!(
            "the public part must be at most {MAX_PUBLIC_LEN} ASCII letters and digits"
        ));
    }
    Ok(())
}

/// Lowercase or uppercase hex of exactly `N` bytes.
fn decode_fixed<const N: usize>(text: &str) -> Result<[u8; N], String> {
    let bytes = hex::decode(text).map_err(|e| format!("is not hex ({e})"))?;
    <[u8; N]>::try_from(bytes.as_slice())
        .map_err(|_| format!("must be {N} bytes, not {}", bytes.len()))
}

fn unknown(
    path: &Path,
    what: &'static str,
    name: String,
    supported: &'static str,
) -> KeystoreError {
    KeystoreError::UnknownAlgorithm {
        path: path.to_path_buf(),
        what,
        name,
        supported,
    }
}
