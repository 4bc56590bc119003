//! One keystore entry on disk: versioned JSON holding the purpose, the public part, the scrypt
//! parameters and salt, the AES-256-GCM nonce and the ciphertext. The associated data is a
//! canonical rendering of all of that metadata, so any edit or any move of the file into
//! another purpose's or agent's place makes decryption fail.
//!
//! Reading parses the whole file into a `Sealed` value and checks the KDF bounds before
//! scrypt runs; decrypted bytes only ever live in `Zeroizing` buffers.

use std::fmt;
use std::path::{Path, PathBuf};

use aes_gcm::aead::AeadInPlace;
use aes_gcm::{Aes256Gcm, Key, KeyInit, Nonce, Tag};
use ed25519_dalek::{SigningKey, VerifyingKey};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use vigil_protocol::{AgentId, Chain};
use zeroize::Zeroizing;

use super::files::{Replace, read_private_text, write_atomic};
use super::{FORMAT_VERSION, KdfParams, KeystoreError, Purpose, entry_file_name};

/// Largest entry file read.
const MAX_ENTRY_BYTES: usize = 64 * 1024;
/// The one KDF name.
const KDF_NAME: &str = "scrypt";
/// The one cipher name.
const CIPHER_NAME: &str = "aes-256-gcm";
const SALT_LEN: usize = 32;
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;
/// Longest `public` (a base58 address or a hex key is far shorter).
const MAX_PUBLIC_LEN: usize = 128;
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

/// Encrypts `secret` under scrypt(passphrase) with AES-256-GCM and writes it 0600 via temp file + fsync + atomic rename + fsync of the dir. Refuses params weaker than PRODUCTION unless `insecure_allow_weak_kdf`.
///
/// Also refuses a secret that does not fit its purpose (length, public part), and never
/// overwrites an existing entry.
pub fn write_entry(
    dir: &Path,
    purpose: &Purpose,
    secret: &[u8],
    public: &str,
    params: KdfParams,
    insecure_allow_weak_kdf: bool,
    passphrase: &SecretString,
) -> Result<PathBuf, KeystoreError> {
    let path = dir.join(entry_file_name(purpose));
    check_writable(&path, params, insecure_allow_weak_kdf)?;
    check_public_text(public)
        .and_then(|()| check_secret(purpose, secret, public))
        .map_err(|reason| KeystoreError::BadSecret {
            path: path.clone(),
            reason,
        })?;
    // Fail before the (slow) KDF if the entry is there; the no-replace rename is the real guard.
    if std::fs::symlink_metadata(&path).is_ok() {
        return Err(KeystoreError::EntryExists(path));
    }
    let sealed = seal(
        &path,
        purpose.clone(),
        public.to_owned(),
        secret,
        params,
        passphrase,
    )?;
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
/// only then scrypt and AES-256-GCM. The decrypted secret is checked against its purpose.
pub fn read_entry(path: &Path, passphrase: &SecretString) -> Result<DecryptedEntry, KeystoreError> {
    let text = read_private_text(path, MAX_ENTRY_BYTES)?;
    let sealed = Sealed::parse(path, &text)?;
    let secret = sealed.open(path, passphrase)?;
    check_secret(&sealed.purpose, &secret, &sealed.public).map_err(|reason| {
        KeystoreError::Inconsistent {
            path: path.to_path_buf(),
            reason,
        }
    })?;
    Ok(DecryptedEntry {
        purpose: sealed.purpose,
        public: sealed.public,
        params: sealed.params,
        secret,
    })
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
        purpose: sealed.purpose,
        public: sealed.public,
        params: sealed.params,
    })
}

/// The parameters `write_entry` accepts: readable ones, and weak ones only when asked for.
fn check_writable(
    path: &Path,
    params: KdfParams,
    insecure_allow_weak_kdf: bool,
) -> Result<(), KeystoreError> {
    if let Some(reason) = params.bounds_violation() {
        return Err(KeystoreError::KdfOutOfBounds {
            path: Some(path.to_path_buf()),
            params,
            reason,
        });
    }
    if params.is_weaker_than_production() && !insecure_allow_weak_kdf {
        return Err(KeystoreError::WeakKdf {
            path: path.to_path_buf(),
            params,
        });
    }
    Ok(())
}

/// `public` is short and alphanumeric (base58 or hex), so the associated data is unambiguous.
fn check_public_text(public: &str) -> Result<(), String> {
    if public.len() > MAX_PUBLIC_LEN || !public.chars().all(|c| c.is_ascii_alphanumeric()) {
        return Err(format!(
            "the public part must be at most {MAX_PUBLIC_LEN} ASCII letters and digits"
        ));
    }
    Ok(())
}

/// Whether a secret fits its purpose and its public part.
pub(super) fn check_secret(purpose: &Purpose, secret: &[u8], public: &str) -> Result<(), String> {
    match purpose {
        Purpose::AgentKey { chain, .. } => {
            let seed = seed_of(secret)
                .ok_or_else(|| format!("an agent key seed is 32 bytes, not {}", secret.len()))?;
            let address = chain_address(*chain, &seed);
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

/// The address of an agent key on a chain (Solana: base58 of the Ed25519 public key).
pub(super) fn chain_address(chain: Chain, seed: &Zeroizing<[u8; 32]>) -> String {
    match chain {
        Chain::Solana => {
            // `SigningKey` zeroizes itself on drop.
            let signing = SigningKey::from_bytes(seed);
            bs58::encode(signing.verifying_key().as_bytes()).into_string()
        }
    }
}

/// An entry parsed from its file (or about to be written), still encrypted.
#[derive(Debug)]
struct Sealed {
    purpose: Purpose,
    public: String,
    params: KdfParams,
    salt: [u8; SALT_LEN],
    nonce: [u8; NONCE_LEN],
    /// Ciphertext followed by the 16-byte tag.
    ciphertext: Vec<u8>,
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
    public: String,
    kdf: KdfField,
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
    /// Parses an entry file; checks version, names, lengths and KDF bounds.
    fn parse(path: &Path, text: &str) -> Result<Sealed, KeystoreError> {
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
        if found != u64::from(FORMAT_VERSION) {
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
        let salt = decode_fixed::<SALT_LEN>(&file.kdf.salt)
            .map_err(|e| malformed(format!("kdf.salt {e}")))?;
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
        let purpose = match (file.purpose, file.agent, file.chain) {
            (PurposeName::AgentKey, Some(agent), Some(chain)) => Purpose::AgentKey { agent, chain },
            (PurposeName::AgentKey, _, _) => {
                return Err(malformed(
                    "an agent_key entry needs \"agent\" and \"chain\"".to_owned(),
                ));
            }
            (PurposeName::ApprovalSecret, None, None) => Purpose::ApprovalSecret,
            (PurposeName::PolicyPin, None, None) => Purpose::PolicyPin,
            (PurposeName::PolicyKey, None, None) => Purpose::PolicyKey,
            (_, _, _) => {
                return Err(malformed(
                    "only agent_key entries have \"agent\" and \"chain\"".to_owned(),
                ));
            }
        };
        Ok(Sealed {
            purpose,
            public: file.public,
            params,
            salt,
            nonce,
            ciphertext,
        })
    }

    /// The file's JSON, pretty-printed with a final newline.
    fn to_json(&self, path: &Path) -> Result<String, KeystoreError> {
        let (purpose, agent, chain) = match &self.purpose {
            Purpose::AgentKey { agent, chain } => {
                (PurposeName::AgentKey, Some(agent.clone()), Some(*chain))
            }
            Purpose::ApprovalSecret => (PurposeName::ApprovalSecret, None, None),
            Purpose::PolicyPin => (PurposeName::PolicyPin, None, None),
            Purpose::PolicyKey => (PurposeName::PolicyKey, None, None),
        };
        let file = EntryFile {
            vigil_keystore: FORMAT_VERSION,
            purpose,
            agent,
            chain,
            public: self.public.clone(),
            kdf: KdfField {
                name: KDF_NAME.to_owned(),
                log_n: self.params.log_n,
                r: self.params.r,
                p: self.params.p,
                salt: hex::encode(self.salt),
            },
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
    /// Unambiguous as agent ids, chain names and `public` hold no newline or `=`.
    fn associated_data(&self) -> String {
        let mut aad = format!(
            "vigil-keystore/{FORMAT_VERSION}\npurpose={}\n",
            self.purpose.as_str()
        );
        if let Purpose::AgentKey { agent, chain } = &self.purpose {
            aad.push_str(&format!("agent={agent}\nchain={chain}\n"));
        }
        let p = self.params;
        aad.push_str(&format!(
            "public={}\nkdf={KDF_NAME}:{}:{}:{}:{}\ncipher={CIPHER_NAME}\n",
            self.public,
            p.log_n,
            p.r,
            p.p,
            hex::encode(self.salt)
        ));
        aad
    }

    /// Decrypts into a zeroizing buffer; any failure is the one "could not decrypt" error.
    fn open(
        &self,
        path: &Path,
        passphrase: &SecretString,
    ) -> Result<Zeroizing<Vec<u8>>, KeystoreError> {
        let key = derive_key(path, passphrase, &self.salt, self.params)?;
        let cipher = Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(&key[..]));
        let body_len = self.ciphertext.len().saturating_sub(TAG_LEN);
        let (body, tag) = self.ciphertext.split_at(body_len);
        let mut buf = Zeroizing::new(body.to_vec());
        cipher
            .decrypt_in_place_detached(
                Nonce::from_slice(&self.nonce),
                self.associated_data().as_bytes(),
                &mut buf[..],
                Tag::from_slice(tag),
            )
            .map_err(|_| KeystoreError::Decrypt(path.to_path_buf()))?;
        Ok(buf)
    }
}

/// Encrypts `secret` with a fresh salt and nonce.
fn seal(
    path: &Path,
    purpose: Purpose,
    public: String,
    secret: &[u8],
    params: KdfParams,
    passphrase: &SecretString,
) -> Result<Sealed, KeystoreError> {
    let mut salt = [0u8; SALT_LEN];
    let mut nonce = [0u8; NONCE_LEN];
    getrandom::getrandom(&mut salt).map_err(KeystoreError::Random)?;
    getrandom::getrandom(&mut nonce).map_err(KeystoreError::Random)?;
    let mut sealed = Sealed {
        purpose,
        public,
        params,
        salt,
        nonce,
        ciphertext: Vec::new(),
    };

    let key = derive_key(path, passphrase, &salt, params)?;
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

/// scrypt(passphrase, salt) into a zeroizing 32-byte key. Bounds are checked by the callers.
fn derive_key(
    path: &Path,
    passphrase: &SecretString,
    salt: &[u8],
    params: KdfParams,
) -> Result<Zeroizing<[u8; 32]>, KeystoreError> {
    let kdf_error = |reason: String| KeystoreError::Kdf {
        path: path.to_path_buf(),
        reason,
    };
    let scrypt_params = scrypt::Params::new(params.log_n, params.r, params.p, 32)
        .map_err(|e| kdf_error(e.to_string()))?;
    let mut key = Zeroizing::new([0u8; 32]);
    scrypt::scrypt(
        passphrase.expose_secret().as_bytes(),
        salt,
        &scrypt_params,
        &mut key[..],
    )
    .map_err(|e| kdf_error(e.to_string()))?;
    Ok(key)
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

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
pub(super) mod tests;
