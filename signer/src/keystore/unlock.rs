//! Unlocking a keystore directory at start-up: every entry is decrypted with the one
//! passphrase, each must sit under its own file name, nothing else may be in the directory,
//! and the set must be complete (at least one agent key, the approval secret, the policy pin).

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use secrecy::SecretString;
use vigil_protocol::{AgentId, Chain};
use zeroize::Zeroizing;

use super::entry::{chain_address, read_entry, seed_of};
use super::files::check_entry_metadata;
use super::{KdfParams, KeystoreError, Purpose, entry_file_name};

/// Unlocks every entry in the dir (files ending .key / .pin; anything else there is an error naming the file). Requires exactly one approval.key and one policy.pin, at least one agent key. For Solana agent keys, checks that the seed's ed25519 public key (base58, via `bs58`) equals the stored `public` and that the file name matches the entry's agent/chain.
pub struct Unlocked {
    /// Each agent's signing seed, per chain.
    pub agent_seeds: BTreeMap<(AgentId, Chain), Zeroizing<[u8; 32]>>,
    /// Each agent's address, per chain.
    pub agent_public: BTreeMap<(AgentId, Chain), String>,
    /// The operator approval TOTP secret.
    pub approval_secret: Zeroizing<Vec<u8>>,
    /// The policy public key pinned at the ceremony.
    pub policy_public_key: [u8; 32],
    /// The cheapest scrypt parameters among the entries (to warn when below production).
    pub weakest_kdf: KdfParams,
}

impl fmt::Debug for Unlocked {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Unlocked")
            .field("agent_public", &self.agent_public)
            .field("policy_public_key", &hex::encode(self.policy_public_key))
            .field("weakest_kdf", &self.weakest_kdf)
            .finish_non_exhaustive()
    }
}

/// Opens the keystore in `dir` (see [`Unlocked`]). The directory listing is checked first (no
/// stray files, private regular files, a complete set of names), so those mistakes are reported
/// before any slow KDF runs; entries are then decrypted in file-name order.
pub fn unlock(dir: &Path, passphrase: &SecretString) -> Result<Unlocked, KeystoreError> {
    let paths = list_entries(dir)?;
    let mut agent_seeds = BTreeMap::new();
    let mut agent_public = BTreeMap::new();
    let mut approval_secret = None;
    let mut policy_public_key = None;
    let mut weakest_kdf: Option<KdfParams> = None;

    for path in paths {
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_owned();
        let entry = read_entry(&path, passphrase)?;
        let expected = entry_file_name(&entry.purpose);
        if name != expected {
            return Err(KeystoreError::WrongFileName {
                path,
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
        // purpose (or agent and chain) can be seen twice.
        match entry.purpose {
            Purpose::AgentKey { agent, chain } => {
                let seed = seed_of(&entry.secret).ok_or_else(|| {
                    inconsistent(format!(
                        "an agent key seed is 32 bytes, not {}",
                        entry.secret.len()
                    ))
                })?;
                let address = chain_address(chain, &seed);
                if address != entry.public {
                    return Err(inconsistent(format!(
                        "the stored address {:?} is not the address of the seed ({address})",
                        entry.public
                    )));
                }
                agent_seeds.insert((agent.clone(), chain), seed);
                agent_public.insert((agent, chain), address);
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
    })
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

    let has = |wanted: &dyn Fn(&str) -> bool| {
        paths
            .iter()
            .any(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(wanted))
    };
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
    Ok(paths)
}

const MISSING_AGENT: &str = "agent key (agent.<agent>.<chain>.key)";
const MISSING_APPROVAL: &str = "approval secret (approval.key)";
const MISSING_PIN: &str = "policy key pin (policy.pin)";

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;
    use crate::keystore::entry::tests::{fixture_dir, pass, write_unchecked};
    use crate::keystore::write_entry;
    use std::os::unix::fs::PermissionsExt;

    fn agent(name: &str) -> AgentId {
        name.parse().unwrap()
    }

    #[test]
    fn unlocks_two_agents_approval_and_pin() {
        let (dir, fixture) = fixture_dir();
        let unlocked = unlock(dir.path(), &pass()).unwrap();
        assert_eq!(unlocked.agent_seeds.len(), 2);
        for (name, seed) in &fixture.seeds {
            let id = (agent(name), Chain::Solana);
            assert_eq!(**unlocked.agent_seeds.get(&id).unwrap(), *seed);
            assert_eq!(unlocked.agent_public[&id], fixture.addresses[name]);
        }
        assert_eq!(*unlocked.approval_secret, fixture.approval);
        assert_eq!(unlocked.policy_public_key, fixture.policy_key);
        assert_eq!(unlocked.weakest_kdf, KdfParams::INSECURE_DEV);
        let shown = format!("{unlocked:?}");
        assert!(!shown.contains(&hex::encode(fixture.approval)), "{shown}");
        assert!(shown.contains(&fixture.addresses["trader"]), "{shown}");
    }

    #[test]
    fn wrong_passphrase_fails_to_unlock() {
        let (dir, _) = fixture_dir();
        let err = unlock(dir.path(), &SecretString::from("wrong".to_owned())).unwrap_err();
        assert!(matches!(err, KeystoreError::Decrypt(_)), "{err}");
    }

    #[test]
    fn stray_file_is_named() {
        for stray in ["notes.txt", ".agent.trader.solana.key.tmp-0011223344556677"] {
            let (dir, _) = fixture_dir();
            let path = dir.path().join(stray);
            std::fs::write(&path, b"x").unwrap();
            let err = unlock(dir.path(), &pass()).unwrap_err();
            assert!(matches!(err, KeystoreError::UnexpectedFile(_)), "{err}");
            assert!(err.to_string().contains(stray), "{err}");
        }
        let (dir, _) = fixture_dir();
        std::fs::create_dir(dir.path().join("sub.key")).unwrap();
        assert!(unlock(dir.path(), &pass()).is_err());
    }

    #[test]
    fn public_key_mismatch_is_refused() {
        let (dir, fixture) = fixture_dir();
        // A correctly encrypted entry whose stored address belongs to another seed.
        let trader = Purpose::AgentKey {
            agent: agent("trader"),
            chain: Chain::Solana,
        };
        std::fs::remove_file(dir.path().join(entry_file_name(&trader))).unwrap();
        write_unchecked(
            dir.path(),
            &trader,
            &fixture.seeds["trader"],
            &fixture.addresses["saver"],
        );
        let err = unlock(dir.path(), &pass()).unwrap_err();
        assert!(matches!(err, KeystoreError::Inconsistent { .. }), "{err}");
        assert!(err.to_string().contains("agent.trader.solana.key"), "{err}");
    }

    #[test]
    fn renamed_agent_file_is_refused() {
        let (dir, _) = fixture_dir();
        // saver's file copied under a third agent's name: it decrypts, but the name is wrong.
        std::fs::copy(
            dir.path().join("agent.saver.solana.key"),
            dir.path().join("agent.other.solana.key"),
        )
        .unwrap();
        let err = unlock(dir.path(), &pass()).unwrap_err();
        assert!(matches!(err, KeystoreError::WrongFileName { .. }), "{err}");
        assert!(err.to_string().contains("agent.other.solana.key"), "{err}");
    }

    #[test]
    fn incomplete_keystores_are_refused() {
        for (remove, missing) in [
            (&["approval.key"][..], "approval.key"),
            (&["policy.pin"][..], "policy.pin"),
            (
                &["agent.trader.solana.key", "agent.saver.solana.key"][..],
                "agent key",
            ),
        ] {
            let (dir, _) = fixture_dir();
            for name in remove {
                std::fs::remove_file(dir.path().join(name)).unwrap();
            }
            let err = unlock(dir.path(), &pass()).unwrap_err();
            assert!(matches!(err, KeystoreError::Incomplete { .. }), "{err}");
            assert!(err.to_string().contains(missing), "{err}");
        }
    }

    #[test]
    fn group_readable_entry_is_refused() {
        let (dir, _) = fixture_dir();
        let path = dir.path().join("policy.pin");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        let fix = format!("chmod 600 {}", path.display());
        let err = unlock(dir.path(), &pass()).unwrap_err();
        assert!(err.to_string().contains(&fix), "{err}");
    }

    #[test]
    fn weakest_kdf_is_reported_wherever_it_sits() {
        // A little stronger than INSECURE_DEV and hardly slower. The first entry read (saver's)
        // and the last (the pin) are stronger, so neither "first" nor "last" would pass.
        let stronger = KdfParams {
            log_n: 10,
            r: 9,
            p: 1,
        };
        let (dir, fixture) = fixture_dir();
        let saver = Purpose::AgentKey {
            agent: agent("saver"),
            chain: Chain::Solana,
        };
        std::fs::remove_file(dir.path().join(entry_file_name(&saver))).unwrap();
        write_entry(
            dir.path(),
            &saver,
            &fixture.seeds["saver"],
            &fixture.addresses["saver"],
            stronger,
            true,
            &pass(),
        )
        .unwrap();
        let key = fixture.policy_key;
        std::fs::remove_file(dir.path().join("policy.pin")).unwrap();
        write_entry(
            dir.path(),
            &Purpose::PolicyPin,
            &key,
            &hex::encode(key),
            stronger,
            true,
            &pass(),
        )
        .unwrap();
        let unlocked = unlock(dir.path(), &pass()).unwrap();
        assert_eq!(unlocked.weakest_kdf, KdfParams::INSECURE_DEV);
        assert_eq!(unlocked.policy_public_key, key);
        assert_eq!(
            *unlocked.agent_seeds[&(agent("saver"), Chain::Solana)],
            fixture.seeds["saver"]
        );
    }

    #[test]
    fn symlinked_entry_is_refused() {
        let (dir, _) = fixture_dir();
        let real = dir.path().join("policy.pin");
        let moved = tempfile::tempdir().unwrap();
        let target = moved.path().join("policy.pin");
        std::fs::rename(&real, &target).unwrap();
        std::os::unix::fs::symlink(&target, &real).unwrap();
        let err = unlock(dir.path(), &pass()).unwrap_err();
        assert!(matches!(err, KeystoreError::NotRegularFile(_)), "{err}");
    }

    #[test]
    fn a_policy_signing_key_is_never_unlocked_and_inspect_reads_metadata() {
        let (dir, _) = fixture_dir();
        let (key, seed) = crate::keys::Ed25519Key::generate().unwrap();
        let public = hex::encode(key.public_bytes());
        let path = write_entry(
            dir.path(),
            &Purpose::PolicyKey,
            &seed[..],
            &public,
            KdfParams::INSECURE_DEV,
            true,
            &pass(),
        )
        .unwrap();
        assert!(path.ends_with("policy-signing.key"));
        let info = crate::keystore::inspect_entry(&path, &std::fs::read_to_string(&path).unwrap())
            .unwrap();
        assert_eq!(info.purpose, Purpose::PolicyKey);
        assert_eq!(info.public, public);
        let err = unlock(dir.path(), &pass()).unwrap_err();
        assert!(
            err.to_string().contains("must never be on the appliance"),
            "{err}"
        );
        // A seed that does not match its public part is refused when written.
        let (other, _) = crate::keys::Ed25519Key::generate().unwrap();
        let err = write_entry(
            tempfile::tempdir().unwrap().path(),
            &Purpose::PolicyKey,
            &seed[..],
            &hex::encode(other.public_bytes()),
            KdfParams::INSECURE_DEV,
            true,
            &pass(),
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("not the public key of the seed"),
            "{err}"
        );
    }
}
