//! One keystore entry: writing it ([`write_entry`], always format 2, under a [`MasterKey`]),
//! reading it ([`read_entry`], [`inspect_entry`]; formats 1 and 2), and what its secret must
//! look like for its purpose. The file's text, the associated data that binds all of its
//! metadata, and the checks made before any KDF runs are in `format`.
//!
//! Decrypted bytes only ever live in `Zeroizing` buffers.

mod format;

use std::fmt;
use std::path::{Path, PathBuf};

use aes_gcm::aead::AeadInPlace;
use aes_gcm::{Aes256Gcm, Key, KeyInit, Nonce, Tag};
use ed25519_dalek::{SigningKey, VerifyingKey};
use secrecy::SecretString;
use vigil_protocol::Chain;
use zeroize::Zeroizing;

pub(super) use format::{Keying, Sealed};
use format::{NONCE_LEN, TAG_LEN, check_public_text};

use super::files::{Replace, read_private_text, write_atomic};
use super::master::{MasterKey, SALT_LEN, scrypt_key};
use super::{KdfParams, KeystoreError, Purpose, entry_file_name};

/// Largest entry file read.
pub(super) const MAX_ENTRY_BYTES: usize = 64 * 1024;
/// Bounds of the approval TOTP secret, in bytes (RFC 4226 asks for at least 160 bits).
const APPROVAL_SECRET_LEN: std::ops::RangeInclusive<usize> = 20..=128;

/// A decrypted entry. Its `Debug` shows everything but the secret.
pub struct DecryptedEntry {
    /// What the entry holds.
    pub purpose: Purpose,
    /// Its public part (an address, a hex key, or "").
    pub public: String,
    /// The scrypt parameters it was encrypted with.
    pub params: KdfParams,
    /// The secret itself.
    pub secret: Zeroizing<Vec<u8>>,
}

impl fmt::Debug for DecryptedEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DecryptedEntry")
            .field("purpose", &self.purpose)
            .field("public", &self.public)
            .field("params", &self.params)
            .finish_non_exhaustive()
    }
}

/// Encrypts `secret` under `master` (HKDF-SHA256 with a fresh entry salt, then AES-256-GCM
/// with a fresh nonce) and writes it 0600 via temp file + fsync + atomic rename + fsync of the
/// dir. The master key carries the scrypt parameters; [`MasterKey::create`] refused weak ones.
///
/// Also refuses a secret that does not fit its purpose (length, public part), an agent key
/// that names no network, and never overwrites an existing entry.
pub fn write_entry(
    dir: &Path,
    purpose: &Purpose,
    secret: &[u8],
    public: &str,
    master: &MasterKey,
) -> Result<PathBuf, KeystoreError> {
    let path = dir.join(entry_file_name(purpose));
    let bad = |reason: String| KeystoreError::BadSecret {
        path: path.clone(),
        reason,
    };
    if let Purpose::AgentKey { network: None, .. } = purpose {
        return Err(bad(
            "an agent key must name the network it serves (keys are per agent, chain and network)"
                .to_owned(),
        ));
    }
    if let Purpose::AgentKey { chain, role, .. } = purpose {
        super::KeyRole::check(*chain, *role).map_err(bad)?;
    }
    check_public_text(public)
        .and_then(|()| check_secret(purpose, secret, public))
        .map_err(bad)?;
    if std::fs::symlink_metadata(&path).is_ok() {
        return Err(KeystoreError::EntryExists(path));
    }
    let sealed = seal(&path, purpose.clone(), public.to_owned(), secret, master)?;
    let json = sealed.to_json(&path)?;
    write_atomic(&path, json.as_bytes(), Replace::No).map_err(|source| match source.kind() {
        std::io::ErrorKind::AlreadyExists => KeystoreError::EntryExists(path.clone()),
        _ => KeystoreError::Write {
            path: path.clone(),
            source,
        },
    })?;
    Ok(path)
}

/// Reads and decrypts one entry: permissions first, then the format, then the KDF bounds, and
/// only then scrypt (once, for this entry alone), HKDF and AES-256-GCM. The decrypted secret is
/// checked against its purpose. (A whole keystore is opened with [`super::unlock`], which runs
/// scrypt once for all its entries.)
pub fn read_entry(path: &Path, passphrase: &SecretString) -> Result<DecryptedEntry, KeystoreError> {
    let text = read_private_text(path, MAX_ENTRY_BYTES)?;
    let sealed = Sealed::parse(path, &text)?;
    let mut keys = EntryKeys::new(passphrase);
    open_checked(path, &sealed, &mut keys)
}

/// Decrypts a parsed entry with a key from `keys` and checks the secret against its purpose.
pub(super) fn open_checked(
    path: &Path,
    sealed: &Sealed,
    keys: &mut EntryKeys<'_>,
) -> Result<DecryptedEntry, KeystoreError> {
    let key = keys.key_for(path, sealed)?;
    let secret = open(path, sealed, &key)?;
    check_secret(&sealed.purpose, &secret, &sealed.public).map_err(|reason| {
        KeystoreError::Inconsistent {
            path: path.to_path_buf(),
            reason,
        }
    })?;
    Ok(DecryptedEntry {
        purpose: sealed.purpose.clone(),
        public: sealed.public.clone(),
        params: sealed.params,
        secret,
    })
}

/// The AES keys of the entries of one keystore: scrypt once for the master key (format 2),
/// or once per entry (format 1). Format 2 entries must all be under the same master key.
pub(super) struct EntryKeys<'a> {
    passphrase: &'a SecretString,
    /// The master key, and the first entry it was derived for (named when another differs).
    master: Option<(MasterKey, PathBuf)>,
}

impl<'a> EntryKeys<'a> {
    pub(super) fn new(passphrase: &'a SecretString) -> Self {
        Self {
            passphrase,
            master: None,
        }
    }

    /// The master key derived so far (none for a format 1 keystore).
    pub(super) fn into_master(self) -> Option<MasterKey> {
        self.master.map(|(m, _)| m)
    }

    fn key_for(
        &mut self,
        path: &Path,
        sealed: &Sealed,
    ) -> Result<Zeroizing<[u8; 32]>, KeystoreError> {
        match sealed.keying {
            Keying::Scrypt => scrypt_key(self.passphrase, &sealed.kdf_salt, sealed.params),
            Keying::Master { entry_salt } => {
                let master = match self.master.take() {
                    None => (
                        MasterKey::derive(self.passphrase, sealed.params, sealed.kdf_salt)?,
                        path.to_path_buf(),
                    ),
                    Some((m, first)) if m.is_for(sealed.params, &sealed.kdf_salt) => (m, first),
                    Some((m, first)) => {
                        let reason = format!(
                            "its master key is {} with salt {}, that of {} is {} with salt {}",
                            sealed.params,
                            hex::encode(sealed.kdf_salt),
                            first.display(),
                            m.params(),
                            hex::encode(m.salt())
                        );
                        self.master = Some((m, first));
                        return Err(KeystoreError::MixedKeys {
                            path: path.to_path_buf(),
                            reason,
                        });
                    }
                };
                let key = master.0.entry_key(&entry_salt);
                self.master = Some(master);
                Ok(key)
            }
        }
    }
}

/// The public metadata of an entry, read without the passphrase (for the import on the
/// appliance, which checks a stick's keystore against its manifest). Nothing here is
/// authenticated until the entry is decrypted: the associated data binds it then.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EntryInfo {
    /// What the entry holds.
    pub purpose: Purpose,
    /// Its public part (an address, a hex key, or "").
    pub public: String,
    /// The scrypt parameters it was encrypted with.
    pub params: KdfParams,
    /// Its format version (1 or 2).
    pub version: u32,
}

/// Parses an entry file's text (read by the caller from `path`, which is only used in
/// messages) and returns its public metadata; checks the format, names, lengths and KDF
/// bounds exactly as [`read_entry`] does before decrypting.
pub fn inspect_entry(path: &Path, text: &str) -> Result<EntryInfo, KeystoreError> {
    if text.len() > MAX_ENTRY_BYTES {
        return Err(KeystoreError::TooLarge {
            path: path.to_path_buf(),
            limit: MAX_ENTRY_BYTES,
        });
    }
    let sealed = Sealed::parse(path, text)?;
    Ok(EntryInfo {
        version: sealed.version(),
        purpose: sealed.purpose,
        public: sealed.public,
        params: sealed.params,
    })
}

/// Whether a secret fits its purpose and its public part.
pub(super) fn check_secret(purpose: &Purpose, secret: &[u8], public: &str) -> Result<(), String> {
    match purpose {
        Purpose::AgentKey { chain, .. } => {
            let seed = seed_of(secret)
                .ok_or_else(|| format!("an agent key seed is 32 bytes, not {}", secret.len()))?;
            let address = chain_address(*chain, &seed)?;
            if address != public {
                return Err(format!(
                    "the stored {chain} address {public:?} is not the address of the seed ({address}): the file was altered or mixed up"
                ));
            }
            Ok(())
        }
        Purpose::ApprovalSecret => {
            if !APPROVAL_SECRET_LEN.contains(&secret.len()) {
                return Err(format!(
                    "the approval secret must be {} to {} bytes, not {}",
                    APPROVAL_SECRET_LEN.start(),
                    APPROVAL_SECRET_LEN.end(),
                    secret.len()
                ));
            }
            if !public.is_empty() {
                return Err(
                    "the approval secret has no public part: public must be \"\"".to_owned(),
                );
            }
            Ok(())
        }
        Purpose::PolicyKey => {
            let seed = seed_of(secret).ok_or_else(|| {
                format!(
                    "the policy signing key seed is 32 bytes, not {}",
                    secret.len()
                )
            })?;
            let derived = hex::encode(SigningKey::from_bytes(&seed).verifying_key().as_bytes());
            if public != derived {
                return Err(format!(
                    "the stored policy public key {public:?} is not the public key of the seed ({derived}): the file was altered or mixed up"
                ));
            }
            Ok(())
        }
        Purpose::PolicyPin => {
            let key = <[u8; 32]>::try_from(secret).map_err(|_| {
                format!(
                    "the policy key pin is a 32-byte Ed25519 public key, not {} bytes",
                    secret.len()
                )
            })?;
            VerifyingKey::from_bytes(&key)
                .map_err(|_| "the policy key pin is not a valid Ed25519 public key".to_owned())?;
            if public != hex::encode(key) {
                return Err(format!(
                    "the policy key pin's public part {public:?} is not the hex of the pinned key"
                ));
            }
            Ok(())
        }
    }
}

/// A 32-byte seed copied into a zeroizing buffer, or `None` for another length.
pub(super) fn seed_of(secret: &[u8]) -> Option<Zeroizing<[u8; 32]>> {
    if secret.len() != 32 {
        return None;
    }
    let mut seed = Zeroizing::new([0u8; 32]);
    seed.copy_from_slice(secret);
    Some(seed)
}

/// The address of an agent key on a chain (Solana: base58 of the Ed25519 public key; EVM:
/// the EIP-55 checksummed address of the secp256k1 key), or why the 32 bytes are no key.
pub(super) fn chain_address(chain: Chain, seed: &Zeroizing<[u8; 32]>) -> Result<String, String> {
    match chain {
        Chain::Solana => {
            // `SigningKey` zeroizes itself on drop.
            let signing = SigningKey::from_bytes(seed);
            Ok(bs58::encode(signing.verifying_key().as_bytes()).into_string())
        }
        Chain::Evm | Chain::Hyperliquid => crate::keys::Secp256k1Key::from_secret(seed)
            .map(|k| k.address_text())
            .ok_or_else(|| {
                "the 32 bytes are not a secp256k1 secret key (zero or not below the group order)"
                    .to_owned()
            }),
    }
}

/// Encrypts `secret` under `master` with a fresh entry salt and nonce.
fn seal(
    path: &Path,
    purpose: Purpose,
    public: String,
    secret: &[u8],
    master: &MasterKey,
) -> Result<Sealed, KeystoreError> {
    let mut entry_salt = [0u8; SALT_LEN];
    let mut nonce = [0u8; NONCE_LEN];
    getrandom::getrandom(&mut entry_salt).map_err(KeystoreError::Random)?;
    getrandom::getrandom(&mut nonce).map_err(KeystoreError::Random)?;
    let mut sealed = Sealed {
        purpose,
        public,
        params: master.params(),
        kdf_salt: *master.salt(),
        keying: Keying::Master { entry_salt },
        nonce,
        ciphertext: Vec::new(),
    };
    let key = master.entry_key(&entry_salt);
    let cipher = Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(&key[..]));
    // Holds the plaintext until it is encrypted in place.
    let mut buf = Zeroizing::new(secret.to_vec());
    let tag = cipher
        .encrypt_in_place_detached(
            Nonce::from_slice(&nonce),
            sealed.associated_data().as_bytes(),
            &mut buf[..],
        )
        .map_err(|_| KeystoreError::BadSecret {
            path: path.to_path_buf(),
            reason: "the secret is too long to encrypt".to_owned(),
        })?;
    let mut ciphertext = Vec::with_capacity(buf.len() + TAG_LEN);
    ciphertext.extend_from_slice(&buf);
    ciphertext.extend_from_slice(&tag);
    sealed.ciphertext = ciphertext;
    Ok(sealed)
}

/// Decrypts into a zeroizing buffer; any failure is the one "could not decrypt" error.
fn open(
    path: &Path,
    sealed: &Sealed,
    key: &Zeroizing<[u8; 32]>,
) -> Result<Zeroizing<Vec<u8>>, KeystoreError> {
    let cipher = Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(&key[..]));
    let body_len = sealed.ciphertext.len().saturating_sub(TAG_LEN);
    let (body, tag) = sealed.ciphertext.split_at(body_len);
    let mut buf = Zeroizing::new(body.to_vec());
    cipher
        .decrypt_in_place_detached(
            Nonce::from_slice(&sealed.nonce),
            sealed.associated_data().as_bytes(),
            &mut buf[..],
            Tag::from_slice(tag),
        )
        .map_err(|_| KeystoreError::Decrypt(path.to_path_buf()))?;
    Ok(buf)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
pub(super) mod tests;
