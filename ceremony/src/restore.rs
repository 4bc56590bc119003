//! `vigil-ceremony restore`: rebuilds a keystore from the paper backup printed at a ceremony
//! (`--backup shamir:K-of-N` or `--backup bip39`), on the same offline machine and with the same
//! air-gap checks as `new`:
//!
//! 1. refuse an output directory that already holds a keystore; check the air gap;
//! 2. rebuild the agent seeds (any K Shamir shares, or the 24 words of each key) and match
//!    each one, by the address it gives, to a key of the ceremony's public manifest: every key
//!    of the manifest must be found and every seed must be one of them, or nothing is written;
//! 3. check the air gap again, make a new approval secret and enrol it in the operator's
//!    authenticator (the paper backup never held the old one: a restored keystore always
//!    comes with a new authenticator entry);
//! 4. check the air gap again, write the keystore (one scrypt for its master key under the new
//!    passphrase, every agent key, the new approval secret, the policy pin from the manifest)
//!    into a temp dir beside the output;
//! 5. open it with the signer's own `keystore::unlock` and compare every address with the
//!    manifest, then rename it into place.
//!
//! The manifest (`manifest.json` of the ceremony stick) is public: the restore needs it for
//! the policy pin and for which agent, chain, network and role each seed belongs to. Keep a
//! copy of it with the paper backup (docs/key-ceremony.md).

use secrecy::SecretString;
use vigil_protocol::{Chain, Network};
use vigil_signer::import::manifest::{self, AgentInfo, KEYSTORE_DIR, Manifest};
use vigil_signer::keystore::{self, KdfParams, MasterKey, Purpose};
use vigil_signer::{Ed25519Key, Secp256k1Key};
use zeroize::Zeroizing;

use crate::backup;
use crate::error::CeremonyError;
use crate::network::AirGap;
use crate::new::{self, Operator};
use crate::output::Staging;

/// Bytes of the approval secret made for the restored keystore (as at a ceremony).
const APPROVAL_SECRET_LEN: usize = 20;

/// The paper backup, as the operator typed it.
pub enum PaperBackup {
    /// At least `threshold` Shamir shares (the hex of each, whitespace ignored).
    Shamir {
        /// How many shares the backup needs (printed at its top: "any K of N").
        threshold: u8,
        /// The shares.
        shares: Vec<Zeroizing<String>>,
    },
    /// The 24 words of each agent key, one phrase per key, in any order.
    Bip39 {
        /// The phrases.
        phrases: Vec<Zeroizing<String>>,
    },
}

impl std::fmt::Debug for PaperBackup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PaperBackup::Shamir { threshold, shares } => f
                .debug_struct("Shamir")
                .field("threshold", threshold)
                .field("shares", &shares.len())
                .finish_non_exhaustive(),
            PaperBackup::Bip39 { phrases } => f
                .debug_struct("Bip39")
                .field("phrases", &phrases.len())
                .finish_non_exhaustive(),
        }
    }
}

/// One agent key rebuilt from the paper and matched to the manifest.
pub struct RestoredKey {
    /// The manifest's entry for it (agent, chain, network, role, address).
    pub info: AgentInfo,
    /// Its network (a format 1 manifest without one is refused).
    pub network: Network,
    /// The seed.
    pub seed: Zeroizing<[u8; 32]>,
}

impl std::fmt::Debug for RestoredKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RestoredKey")
            .field("info", &self.info)
            .finish_non_exhaustive()
    }
}

/// Everything `restore` needs besides the passphrase and the operator.
#[derive(Debug)]
pub struct Restore {
    /// The directory that receives `keystore/` (must not hold one).
    pub out: std::path::PathBuf,
    /// The ceremony's manifest.
    pub manifest: Manifest,
    /// The air-gap check and its override.
    pub air_gap: AirGap,
    /// scrypt parameters of the new keystore.
    pub kdf: KdfParams,
    /// Allow `kdf` weaker than production (tests only).
    pub insecure_weak_kdf: bool,
}

/// Rebuilds the seeds of `paper` and matches each to a key of `manifest` by its address.
/// Refused, naming what to check, when a key of the manifest is not found or a seed is not a
/// key of the manifest. Nothing secret is in the error.
pub fn rebuild(
    manifest: &Manifest,
    paper: &PaperBackup,
) -> Result<Vec<RestoredKey>, CeremonyError> {
    let seeds = seeds_of(paper)?;
    let mut used = vec![false; seeds.len()];
    let mut keys = Vec::with_capacity(manifest.agents.len());
    for info in &manifest.agents {
        let network = info.network.ok_or_else(|| {
            CeremonyError::Other(format!(
                "the manifest's {} {} key names no network (a format 1 ceremony): its keys cannot be restored into this keystore format; run a new ceremony",
                info.agent, info.chain
            ))
        })?;
        let found = seeds.iter().enumerate().find(|(i, seed)| {
            !used[*i] && address_of(info.chain, seed).as_deref() == Some(info.address.as_str())
        });
        let Some((i, seed)) = found else {
            return Err(CeremonyError::Other(format!(
                "no seed of the paper backup gives the {}:{network} key of agent {} ({}): {}",
                info.chain,
                info.agent,
                info.address,
                match paper {
                    PaperBackup::Shamir { .. } =>
                        "check that every share comes from the ceremony of this manifest and was copied completely",
                    PaperBackup::Bip39 { .. } =>
                        "check that the words of every key of this manifest were typed, from the ceremony of this manifest",
                }
            )));
        };
        used[i] = true;
        keys.push(RestoredKey {
            info: info.clone(),
            network,
            seed: seed.clone(),
        });
    }
    let extra = used.iter().filter(|u| !**u).count();
    if extra > 0 {
        return Err(CeremonyError::Other(format!(
            "{extra} seed(s) of the paper backup are not keys of this manifest: the backup and the manifest come from different ceremonies; use the manifest.json of the ceremony that printed this backup"
        )));
    }
    Ok(keys)
}

/// Writes the keystore of `keys` into `c.out` (see the module docs, steps 1 and 3 to 5).
pub fn run(
    c: &Restore,
    keys: &[RestoredKey],
    passphrase: &SecretString,
    op: &mut dyn Operator,
) -> Result<std::path::PathBuf, CeremonyError> {
    let staging = Staging::new(&c.out, &[KEYSTORE_DIR])?;
    c.air_gap.check()?;
    let policy_public = c
        .manifest
        .policy_key_bytes()
        .map_err(|e| CeremonyError::Other(format!("the manifest: {e}")))?;

    // A new approval secret, enrolled like at a ceremony.
    c.air_gap.check()?;
    let mut approval_secret = Zeroizing::new(vec![0u8; APPROVAL_SECRET_LEN]);
    getrandom::getrandom(&mut approval_secret)
        .map_err(|e| CeremonyError::Other(format!("the OS random source failed: {e}")))?;
    new::enrol(&approval_secret, "restored keystore", op)?;

    c.air_gap.check()?;
    let ks = staging.dir(KEYSTORE_DIR)?;
    let total = keys.len() + 3;
    op.progress(
        1,
        total,
        "deriving the keystore's master key from the passphrase (scrypt)",
    );
    let master = MasterKey::create(passphrase, c.kdf, c.insecure_weak_kdf)?;
    for (step, key) in keys.iter().enumerate() {
        let purpose = match key.info.role {
            Some(role) => Purpose::hyperliquid_key(key.info.agent.clone(), key.network, role),
            None => Purpose::agent_key(key.info.agent.clone(), key.info.chain, key.network),
        };
        op.progress(step + 2, total, &format!("encrypting {purpose}"));
        keystore::write_entry(&ks, &purpose, &key.seed[..], &key.info.address, &master)?;
    }
    op.progress(total - 1, total, "encrypting the approval secret");
    keystore::write_entry(&ks, &Purpose::ApprovalSecret, &approval_secret, "", &master)?;
    op.progress(total, total, "encrypting the policy key pin");
    keystore::write_entry(
        &ks,
        &Purpose::PolicyPin,
        &policy_public,
        &hex::encode(policy_public),
        &master,
    )?;
    op.progress_done();
    drop(approval_secret);

    // The signer's own reader, on what was written: same keys, same addresses, same pin.
    let unlocked = keystore::unlock(&ks, passphrase)?;
    let mut got: Vec<(String, String)> = unlocked
        .agent_public
        .iter()
        .map(|(id, address)| (id.to_string(), address.clone()))
        .collect();
    got.sort();
    let mut want: Vec<(String, String)> = keys
        .iter()
        .map(|k| {
            let id = keystore::AgentKeyId {
                agent: k.info.agent.clone(),
                chain: k.info.chain,
                network: Some(k.network),
                role: k.info.role,
            };
            (id.to_string(), k.info.address.clone())
        })
        .collect();
    want.sort();
    if got != want || unlocked.policy_public_key != policy_public {
        return Err(CeremonyError::Other(
            "the written keystore does not open to the manifest's keys; nothing was kept, run again".into(),
        ));
    }
    staging.commit(&[KEYSTORE_DIR])?;
    Ok(c.out.join(KEYSTORE_DIR))
}

/// Refuses, before anything is asked, an output directory that already holds a keystore
/// (`run` checks again when it starts writing).
pub fn check_out(out: &std::path::Path) -> Result<(), CeremonyError> {
    if std::fs::symlink_metadata(out.join(KEYSTORE_DIR)).is_ok() {
        return Err(CeremonyError::OutputNotEmpty(
            out.to_path_buf(),
            KEYSTORE_DIR.to_owned(),
        ));
    }
    Ok(())
}

/// The manifest's digest (what the ceremony record printed) and the manifest, from its bytes.
pub fn read_manifest(bytes: &[u8]) -> Result<(Manifest, String), CeremonyError> {
    let m = Manifest::parse(bytes).map_err(|e| {
        CeremonyError::Other(format!(
            "the manifest is not a ceremony's manifest.json: {e}; give the manifest.json of the ceremony stick"
        ))
    })?;
    Ok((m, manifest::sha256_hex(bytes)))
}

/// The 32-byte seeds the paper holds.
fn seeds_of(paper: &PaperBackup) -> Result<Vec<Zeroizing<[u8; 32]>>, CeremonyError> {
    match paper {
        PaperBackup::Shamir { threshold, shares } => {
            let refs: Vec<&str> = shares.iter().map(|s| s.as_str()).collect();
            let secret = backup::recover_shamir(*threshold, &refs)?;
            Ok(secret
                .chunks_exact(32)
                .map(|chunk| {
                    let mut seed = Zeroizing::new([0u8; 32]);
                    seed.copy_from_slice(chunk);
                    seed
                })
                .collect())
        }
        PaperBackup::Bip39 { phrases } => phrases
            .iter()
            .enumerate()
            .map(|(i, phrase)| seed_of_words(i + 1, phrase))
            .collect(),
    }
}

/// The seed of one key's 24 words; a wrong word is named (which key, which position, what
/// was typed), a wrong order or a misread word that is in the list fails the checksum.
pub fn seed_of_words(key: usize, phrase: &str) -> Result<Zeroizing<[u8; 32]>, CeremonyError> {
    let lower = Zeroizing::new(phrase.to_lowercase());
    let words: Vec<&str> = lower.split_whitespace().collect();
    let bad = |what: String| CeremonyError::Other(format!("the words of key {key}: {what}"));
    if words.len() != 24 {
        return Err(bad(format!(
            "{} words typed, a key's backup has 24; copy them again from the paper",
            words.len()
        )));
    }
    let list = bip39::Language::English;
    if let Some((i, word)) = words
        .iter()
        .enumerate()
        .find(|(_, w)| list.find_word(w).is_none())
    {
        return Err(bad(format!(
            "word {} ({word:?}) is not a BIP39 word; check its spelling on the paper",
            i + 1
        )));
    }
    let joined = Zeroizing::new(words.join(" "));
    let mnemonic = bip39::Mnemonic::parse_in_normalized(list, &joined).map_err(|e| match e {
        bip39::Error::InvalidChecksum => bad(
            "the checksum does not match: a word is wrong (but in the list) or two are swapped; compare each word with the paper".into(),
        ),
        other => bad(other.to_string()),
    })?;
    let entropy = Zeroizing::new(mnemonic.to_entropy());
    let mut seed = Zeroizing::new([0u8; 32]);
    if entropy.len() != 32 {
        return Err(bad(format!("{} bytes, not 32", entropy.len())));
    }
    seed.copy_from_slice(&entropy);
    Ok(seed)
}

/// The address a seed gives on `chain` (`None`: not a key of that kind).
fn address_of(chain: Chain, seed: &Zeroizing<[u8; 32]>) -> Option<String> {
    match chain {
        Chain::Solana => Some(vigil_signer::solana_address_of(
            &Ed25519Key::from_seed(seed).public_bytes(),
        )),
        Chain::Evm | Chain::Hyperliquid => {
            Secp256k1Key::from_secret(seed).map(|k| k.address_text())
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;

    /// A known 24-word phrase (the BIP39 test vector of 32 bytes of 0x7f).
    fn phrase_of(seed: &[u8; 32]) -> String {
        bip39::Mnemonic::from_entropy(seed).unwrap().to_string()
    }

    #[test]
    fn words_rebuild_the_seed_and_a_wrong_word_is_named() {
        let seed = [0x7f; 32];
        let phrase = phrase_of(&seed);
        assert_eq!(*seed_of_words(1, &phrase).unwrap(), seed);
        assert_eq!(*seed_of_words(1, &phrase.to_uppercase()).unwrap(), seed);

        let mut words: Vec<&str> = phrase.split(' ').collect();
        words[6] = "notaword";
        let err = seed_of_words(2, &words.join(" ")).unwrap_err().to_string();
        assert!(
            err.contains("key 2: word 7 (\"notaword\") is not a BIP39 word"),
            "{err}"
        );

        // A word of the list in the wrong place: the checksum catches it.
        let mut words: Vec<&str> = phrase.split(' ').collect();
        words.swap(0, 1);
        if words[0] != words[1] {
            let err = seed_of_words(1, &words.join(" ")).unwrap_err().to_string();
            assert!(err.contains("checksum does not match"), "{err}");
        }
        let err = seed_of_words(1, "abandon abandon").unwrap_err().to_string();
        assert!(err.contains("2 words typed"), "{err}");
    }

    #[test]
    fn addresses_are_the_signers() {
        let seed = Zeroizing::new([7u8; 32]);
        let (key, _) = (Ed25519Key::from_seed(&seed), ());
        assert_eq!(
            address_of(Chain::Solana, &seed).unwrap(),
            vigil_signer::solana_address_of(&key.public_bytes())
        );
        assert!(address_of(Chain::Evm, &seed).unwrap().starts_with("0x"));
        // Zero is not a secp256k1 secret.
        assert!(address_of(Chain::Evm, &Zeroizing::new([0u8; 32])).is_none());
    }
}
