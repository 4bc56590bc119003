//! Unlocking a whole keystore at start-up: every entry is decrypted with the one passphrase
//! (one scrypt for a format 2 keystore, whose entries share one master key), each must sit
//! under its own file name, nothing else may be in the directory, and the set must be complete
//! (at least one agent key, the approval secret, the policy pin). A keystore is wholly format 1
//! or wholly format 2 under one master key: anything mixed was not made by one ceremony.
//!
//! [`unlock`] reads a directory (with the permission checks of private files); [`unlock_files`]
//! opens the exact bytes a staged key-ceremony import was verified with.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use secrecy::SecretString;
use vigil_protocol::{AgentId, Chain, Network};
use zeroize::Zeroizing;

use super::entry::{EntryKeys, MAX_ENTRY_BYTES, Sealed, chain_address, open_checked, seed_of};
use super::files::{check_entry_metadata, read_private_text};
use super::{FORMAT_V1, KdfParams, KeystoreError, MasterKey, Purpose, entry_file_name};

/// Which agent key: the agent, its chain, and the network it serves (`None`: a format 1
/// entry, bound later to the one network the signed policy names for it).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AgentKeyId {
    /// The agent.
    pub agent: AgentId,
    /// The chain.
    pub chain: Chain,
    /// The network (`None`: format 1).
    pub network: Option<Network>,
    /// Hyperliquid: which of the agent's two keys (`None` on other chains).
    pub role: Option<super::KeyRole>,
}

impl fmt::Display for AgentKeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.network, self.role) {
            (Some(n), Some(role)) => write!(f, "{} {}:{n} {role}", self.agent, self.chain),
            (Some(n), None) => write!(f, "{} {}:{n}", self.agent, self.chain),
            (None, _) => write!(f, "{} {} (no network)", self.agent, self.chain),
        }
    }
}

/// An unlocked keystore. Its `Debug` shows the addresses and the policy pin, nothing secret.
pub struct Unlocked {
    /// Each agent key's signing seed.
    pub agent_seeds: BTreeMap<AgentKeyId, Zeroizing<[u8; 32]>>,
    /// Each agent key's address.
    pub agent_public: BTreeMap<AgentKeyId, String>,
    /// The operator approval TOTP secret.
    pub approval_secret: Zeroizing<Vec<u8>>,
    /// The policy public key pinned at the ceremony.
    pub policy_public_key: [u8; 32],
    /// The cheapest scrypt parameters among the entries (to warn when below production).
    pub weakest_kdf: KdfParams,
    /// The keystore's master key (format 2), from which other keys may be derived with
    /// [`MasterKey::subkey`]; `None` for a format 1 keystore, which has none.
    pub master: Option<MasterKey>,
}

impl fmt::Debug for Unlocked {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Unlocked")
            .field("agent_public", &self.agent_public)
            .field("policy_public_key", &hex::encode(self.policy_public_key))
            .field("weakest_kdf", &self.weakest_kdf)
            .field("master", &self.master)
            .finish_non_exhaustive()
    }
}

impl Unlocked {
    /// The keystore's format version (1 or 2).
    pub fn version(&self) -> u32 {
        match self.master {
            Some(_) => super::FORMAT_VERSION,
            None => FORMAT_V1,
        }
    }
}

/// Opens the keystore in `dir` (see [`Unlocked`]). The directory listing is checked first (no
/// stray files, private regular files, a complete set of names), so those mistakes are reported
/// before any slow KDF runs; entries are then decrypted in file-name order.
pub fn unlock(dir: &Path, passphrase: &SecretString) -> Result<Unlocked, KeystoreError> {
    let paths = list_entries(dir)?;
    let mut texts = Vec::with_capacity(paths.len());
    for path in paths {
        let text = read_private_text(&path, MAX_ENTRY_BYTES)?;
        texts.push((path, text));
    }
    unlock_texts(dir, texts, passphrase)
}

/// Opens a keystore given as (file name, bytes) pairs: the files a staged key-ceremony import
/// was verified with, so that what is unlocked is exactly what was checked. `dir` names the
/// keystore in messages. The same checks as [`unlock`], but for file permissions (the bytes
/// are in memory).
pub fn unlock_files<'a>(
    dir: &Path,
    files: impl IntoIterator<Item = (&'a str, &'a [u8])>,
    passphrase: &SecretString,
) -> Result<Unlocked, KeystoreError> {
    let mut texts = Vec::new();
    let mut names = Vec::new();
    for (name, bytes) in files {
        let path = dir.join(name);
        if !(name.ends_with(".key") || name.ends_with(".pin")) || name.contains('/') {
            return Err(KeystoreError::UnexpectedFile(path));
        }
        if bytes.len() > MAX_ENTRY_BYTES {
            return Err(KeystoreError::TooLarge {
                path,
                limit: MAX_ENTRY_BYTES,
            });
        }
        let text = String::from_utf8(bytes.to_vec()).map_err(|_| KeystoreError::Malformed {
            path: path.clone(),
            reason: "it is not UTF-8 text".to_owned(),
        })?;
        names.push(name.to_owned());
        texts.push((path, text));
    }
    check_complete(dir, &names)?;
    texts.sort_by(|a, b| a.0.cmp(&b.0));
    unlock_texts(dir, texts, passphrase)
}

/// Parses every entry (all of them before any KDF runs), then decrypts them in order.
fn unlock_texts(
    dir: &Path,
    texts: Vec<(PathBuf, String)>,
    passphrase: &SecretString,
) -> Result<Unlocked, KeystoreError> {
    let mut sealed: Vec<(PathBuf, Sealed)> = Vec::with_capacity(texts.len());
    for (path, text) in texts {
        let entry = Sealed::parse(&path, &text)?;
        if let Some((first, first_entry)) = sealed.first()
            && first_entry.version() != entry.version()
        {
            return Err(KeystoreError::MixedKeys {
                reason: format!(
                    "it is format {}, {} is format {}",
                    entry.version(),
                    display_name(first),
                    first_entry.version()
                ),
                path,
            });
        }
        sealed.push((path, entry));
    }

    let mut keys = EntryKeys::new(passphrase);
    let mut agent_seeds = BTreeMap::new();
    let mut agent_public = BTreeMap::new();
    let mut approval_secret = None;
    let mut policy_public_key = None;
    let mut weakest_kdf: Option<KdfParams> = None;

    for (path, entry) in &sealed {
        let name = display_name(path);
        let entry = open_checked(path, entry, &mut keys)?;
        let expected = entry_file_name(&entry.purpose);
        if name != expected {
            return Err(KeystoreError::WrongFileName {
                path: path.clone(),
                found: entry.purpose.to_string(),
                expected,
            });
        }
        weakest_kdf = Some(weakest_kdf.map_or(entry.params, |w| w.weaker(entry.params)));
        let inconsistent = |reason: String| KeystoreError::Inconsistent {
            path: path.clone(),
            reason,
        };

        // The file name is unique in the directory and equals the purpose's name, so no
        // purpose (or agent, chain and network) can be seen twice.
        match entry.purpose {
            Purpose::AgentKey {
                agent,
                chain,
                network,
                role,
            } => {
                let seed = seed_of(&entry.secret).ok_or_else(|| {
                    inconsistent(format!(
                        "an agent key seed is 32 bytes, not {}",
                        entry.secret.len()
                    ))
                })?;
                let address = chain_address(chain, &seed).map_err(inconsistent)?;
                if address != entry.public {
                    return Err(inconsistent(format!(
                        "the stored address {:?} is not the address of the seed ({address})",
                        entry.public
                    )));
                }
                let id = AgentKeyId {
                    agent,
                    chain,
                    network,
                    role,
                };
                agent_seeds.insert(id.clone(), seed);
                agent_public.insert(id, address);
            }
            Purpose::ApprovalSecret => approval_secret = Some(entry.secret),
            Purpose::PolicyKey => {
                return Err(inconsistent(
                    "this is the offline policy SIGNING key, which must never be on the appliance: \
                     remove the file, keep it only on the ceremony stick, and check how it got here"
                        .to_owned(),
                ));
            }
            Purpose::PolicyPin => {
                let key = <[u8; 32]>::try_from(entry.secret.as_slice())
                    .map_err(|_| inconsistent("the policy key pin is not 32 bytes".to_owned()))?;
                policy_public_key = Some(key);
            }
        }
    }

    let incomplete = |missing| KeystoreError::Incomplete {
        dir: dir.to_path_buf(),
        missing,
    };
    if agent_seeds.is_empty() {
        return Err(incomplete(MISSING_AGENT));
    }
    let approval_secret = approval_secret.ok_or_else(|| incomplete(MISSING_APPROVAL))?;
    let policy_public_key = policy_public_key.ok_or_else(|| incomplete(MISSING_PIN))?;
    let weakest_kdf = weakest_kdf.ok_or_else(|| incomplete("entries"))?;
    Ok(Unlocked {
        agent_seeds,
        agent_public,
        approval_secret,
        policy_public_key,
        weakest_kdf,
        master: keys.into_master(),
    })
}

/// The file name of `path` (for comparing with an entry's own name).
fn display_name(path: &Path) -> String {
    path.file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default()
        .to_owned()
}

/// The entries of a keystore directory, sorted, after checks that need no passphrase: every
/// file is a private regular file named `*.key` or `*.pin`, and the names required are there.
fn list_entries(dir: &Path) -> Result<Vec<PathBuf>, KeystoreError> {
    let read_err = |source| KeystoreError::Read {
        path: dir.to_path_buf(),
        source,
    };
    let mut paths = Vec::new();
    for item in std::fs::read_dir(dir).map_err(read_err)? {
        let item = item.map_err(read_err)?;
        let path = item.path();
        match item.file_name().to_str() {
            Some(name) if name.ends_with(".key") || name.ends_with(".pin") => {}
            _ => return Err(KeystoreError::UnexpectedFile(path)),
        }
        // Not following symlinks: a symlinked entry is refused.
        let meta = item.metadata().map_err(|source| KeystoreError::Read {
            path: path.clone(),
            source,
        })?;
        check_entry_metadata(&path, &meta)?;
        paths.push(path);
    }
    paths.sort();
    let names: Vec<String> = paths.iter().map(|p| display_name(p)).collect();
    check_complete(dir, &names)?;
    Ok(paths)
}

/// The names a complete keystore needs: an agent key, the approval secret, the pin.
fn check_complete(dir: &Path, names: &[String]) -> Result<(), KeystoreError> {
    let has = |wanted: &dyn Fn(&str) -> bool| names.iter().any(|n| wanted(n));
    let incomplete = |missing| KeystoreError::Incomplete {
        dir: dir.to_path_buf(),
        missing,
    };
    if !has(&|n| n.starts_with("agent.") && n.ends_with(".key")) {
        return Err(incomplete(MISSING_AGENT));
    }
    if !has(&|n| n == entry_file_name(&Purpose::ApprovalSecret)) {
        return Err(incomplete(MISSING_APPROVAL));
    }
    if !has(&|n| n == entry_file_name(&Purpose::PolicyPin)) {
        return Err(incomplete(MISSING_PIN));
    }
    Ok(())
}

const MISSING_AGENT: &str = "agent key (agent.<agent>.<chain>.<network>.key)";
const MISSING_APPROVAL: &str = "approval secret (approval.key)";
const MISSING_PIN: &str = "policy key pin (policy.pin)";

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests;
