//! The keystore's master key. scrypt (RFC 7914), the slow part, runs once per keystore: from
//! the passphrase and the keystore's master salt (the same in every entry of one keystore) to
//! a 32-byte master key. Every entry's AES-256-GCM key is then HKDF-SHA256 (RFC 5869) of the
//! master key, with the entry's own random salt as HKDF's salt and a fixed label as its info,
//! so an unlock costs one scrypt however many entries a keystore holds, and no two entries
//! share an AES key.
//!
//! Other keys may be derived from the same master key for other purposes (an audit-log MAC
//! key, a checkpoint key): [`MasterKey::subkey`] with a label of their own. Entry keys and
//! subkeys use different HKDF salts and info prefixes, so no subkey is ever an entry key, and
//! two labels never give the same key. A subkey is as stable as the keystore: the same
//! passphrase and keystore give the same subkey at every start, and a new ceremony (a new
//! master salt) gives new ones.

use std::fmt;

use hkdf::Hkdf;
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;
use zeroize::Zeroizing;

use super::{KdfParams, KeystoreError};

/// Bytes of the master salt and of each entry's salt.
pub(super) const SALT_LEN: usize = 32;
/// HKDF info of an entry's AES-256-GCM key (HKDF salt: the entry's salt).
const ENTRY_KEY_INFO: &[u8] = b"vigil-keystore/2 entry-key";
/// HKDF salt of every subkey (distinct from any random entry salt by construction: a label).
const SUBKEY_SALT: &[u8] = b"vigil-keystore/2 subkeys";
/// Prefix of a subkey's HKDF info; the label follows.
const SUBKEY_INFO_PREFIX: &[u8] = b"vigil-keystore/2 subkey\n";
/// Longest subkey label.
const MAX_LABEL_LEN: usize = 64;

/// The master key of one keystore: scrypt(passphrase, master salt) under its parameters. Its
/// `Debug` shows the parameters and the salt, never the key.
pub struct MasterKey {
    key: Zeroizing<[u8; 32]>,
    params: KdfParams,
    salt: [u8; SALT_LEN],
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MasterKey")
            .field("params", &self.params)
            .field("salt", &hex::encode(self.salt))
            .finish_non_exhaustive()
    }
}

impl MasterKey {
    /// The master key of a NEW keystore: a fresh salt from the OS CSPRNG, then scrypt once.
    /// Refuses parameters out of bounds, and parameters weaker than
    /// [`KdfParams::PRODUCTION`] unless `insecure_allow_weak_kdf` (tests and `dev-init`).
    pub fn create(
        passphrase: &SecretString,
        params: KdfParams,
        insecure_allow_weak_kdf: bool,
    ) -> Result<MasterKey, KeystoreError> {
        if let Some(reason) = params.bounds_violation() {
            return Err(KeystoreError::KdfOutOfBounds {
                path: None,
                params,
                reason,
            });
        }
        if params.is_weaker_than_production() && !insecure_allow_weak_kdf {
            return Err(KeystoreError::WeakKdf { params });
        }
        let mut salt = [0u8; SALT_LEN];
        getrandom::getrandom(&mut salt).map_err(KeystoreError::Random)?;
        Self::derive(passphrase, params, salt)
    }

    /// The master key of existing entries, from their parameters and master salt. The caller
    /// has checked the parameters' bounds (entries are parsed before any KDF runs).
    pub(super) fn derive(
        passphrase: &SecretString,
        params: KdfParams,
        salt: [u8; SALT_LEN],
    ) -> Result<MasterKey, KeystoreError> {
        let key = scrypt_key(passphrase, &salt, params)?;
        Ok(MasterKey { key, params, salt })
    }

    /// The scrypt parameters the master key was derived with.
    pub fn params(&self) -> KdfParams {
        self.params
    }

    /// The master salt (written in every entry of this keystore).
    pub(super) fn salt(&self) -> &[u8; SALT_LEN] {
        &self.salt
    }

    /// Whether entries written with `params` and `salt` are under this master key.
    pub(super) fn is_for(&self, params: KdfParams, salt: &[u8; SALT_LEN]) -> bool {
        self.params == params && self.salt == *salt
    }

    /// The AES-256-GCM key of the entry whose salt is `entry_salt`.
    pub(super) fn entry_key(&self, entry_salt: &[u8; SALT_LEN]) -> Zeroizing<[u8; 32]> {
        self.expand(Some(entry_salt), &[ENTRY_KEY_INFO])
    }

    /// A 32-byte key for another purpose, derived from this master key:
    /// HKDF-SHA256(salt = `"vigil-keystore/2 subkeys"`, IKM = master key,
    /// info = `"vigil-keystore/2 subkey\n"` || `label`). The same keystore and label always give
    /// the same subkey; another label, or another keystore, gives an unrelated one.
    ///
    /// `label` names the purpose and, by convention, its version: 1-64 characters of
    /// `a-z 0-9 . - _`, e.g. `audit-mac.v1` or `checkpoint.v1`. Pick a new label rather than
    /// reusing one for a new purpose.
    pub fn subkey(&self, label: &str) -> Result<Subkey, KeystoreError> {
        let ok = !label.is_empty()
            && label.len() <= MAX_LABEL_LEN
            && label.bytes().all(|b| {
                b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'-' | b'_')
            });
        if !ok {
            return Err(KeystoreError::BadSubkeyLabel(vigil_protocol::truncate(
                label,
            )));
        }
        Ok(Subkey(self.expand(
            Some(SUBKEY_SALT),
            &[SUBKEY_INFO_PREFIX, label.as_bytes()],
        )))
    }

    /// HKDF-SHA256 extract (with `salt`) and expand (with the concatenated `info`) to 32 bytes.
    fn expand(&self, salt: Option<&[u8]>, info: &[&[u8]]) -> Zeroizing<[u8; 32]> {
        let hkdf = Hkdf::<Sha256>::new(salt, &self.key[..]);
        let mut out = Zeroizing::new([0u8; 32]);
        // Invariant: 32 bytes is far below HKDF-SHA256's limit of 255 * 32, so this cannot fail.
        if hkdf.expand_multi_info(info, &mut out[..]).is_err() {
            unreachable!("HKDF-SHA256 can always expand to 32 bytes");
        }
        out
    }
}

/// A key derived from the keystore's master key for another purpose ([`MasterKey::subkey`]).
/// It zeroizes itself on drop; its `Debug` prints nothing secret.
pub struct Subkey(Zeroizing<[u8; 32]>);

impl Subkey {
    /// The key's bytes.
    pub fn expose(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Debug for Subkey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Subkey(..)")
    }
}

#[cfg(test)]
thread_local! {
    /// How many times this thread ran scrypt (tests count the slow part of an unlock).
    pub(super) static SCRYPT_RUNS: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
}

/// scrypt(passphrase, salt) into a zeroizing 32-byte key. Bounds are checked by the callers.
pub(super) fn scrypt_key(
    passphrase: &SecretString,
    salt: &[u8],
    params: KdfParams,
) -> Result<Zeroizing<[u8; 32]>, KeystoreError> {
    #[cfg(test)]
    SCRYPT_RUNS.with(|runs| runs.set(runs.get() + 1));
    let scrypt_params = scrypt::Params::new(params.log_n, params.r, params.p, 32)
        .map_err(|e| KeystoreError::Kdf(e.to_string()))?;
    let mut key = Zeroizing::new([0u8; 32]);
    scrypt::scrypt(
        passphrase.expose_secret().as_bytes(),
        salt,
        &scrypt_params,
        &mut key[..],
    )
    .map_err(|e| KeystoreError::Kdf(e.to_string()))?;
    Ok(key)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;

    fn pass(text: &str) -> SecretString {
        SecretString::from(text.to_owned())
    }

    #[test]
    fn one_master_key_gives_distinct_entry_keys_and_subkeys() {
        let master = MasterKey::create(&pass("pw"), KdfParams::INSECURE_DEV, true).unwrap();
        let (a, b) = (master.entry_key(&[1; 32]), master.entry_key(&[2; 32]));
        assert_ne!(*a, *b, "each entry salt gives its own key");
        assert_eq!(*a, *master.entry_key(&[1; 32]), "deterministic");
        let mac = master.subkey("audit-mac.v1").unwrap();
        let checkpoint = master.subkey("checkpoint.v1").unwrap();
        assert_ne!(mac.expose(), checkpoint.expose());
        assert_ne!(mac.expose(), &*a);
        assert_eq!(
            mac.expose(),
            master.subkey("audit-mac.v1").unwrap().expose()
        );
        // The same passphrase and salt derive the same master key (what the next start does).
        let again = MasterKey::derive(&pass("pw"), master.params(), *master.salt()).unwrap();
        assert_eq!(again.subkey("audit-mac.v1").unwrap().expose(), mac.expose());
        assert_eq!(*again.entry_key(&[1; 32]), *a);
        // Another passphrase, or another salt, gives unrelated keys.
        let other = MasterKey::derive(&pass("pW"), master.params(), *master.salt()).unwrap();
        assert_ne!(other.subkey("audit-mac.v1").unwrap().expose(), mac.expose());
        let fresh = MasterKey::create(&pass("pw"), KdfParams::INSECURE_DEV, true).unwrap();
        assert_ne!(fresh.salt(), master.salt());
        assert_ne!(*fresh.entry_key(&[1; 32]), *a);
        assert!(!format!("{master:?} {mac:?}").contains(&hex::encode(*master.key)));
    }

    #[test]
    fn the_derivations_are_hkdf_sha256_as_documented() {
        // Recomputed here with HMAC-SHA256 (RFC 5869 §2.2-2.3 written out), so a change of
        // salt, info or order in `expand` fails this test.
        use sha2::Digest;
        // HMAC-SHA256 (RFC 2104) for keys of at most one block.
        fn hmac(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
            let mut block = [0u8; 64];
            block[..key.len()].copy_from_slice(key);
            let pad = |byte: u8| block.map(|b| b ^ byte);
            let mut inner = Sha256::new();
            inner.update(pad(0x36));
            for p in parts {
                inner.update(p);
            }
            let mut outer = Sha256::new();
            outer.update(pad(0x5c));
            outer.update(inner.finalize());
            outer.finalize().to_vec()
        }
        let master = MasterKey {
            key: Zeroizing::new([0x0b; 32]),
            params: KdfParams::INSECURE_DEV,
            salt: [0; 32],
        };
        let prk = hmac(&[9u8; 32], &[&[0x0b; 32]]);
        let okm = hmac(&prk, &[b"vigil-keystore/2 entry-key", &[1]]);
        assert_eq!(master.entry_key(&[9; 32]).to_vec(), okm);
        let prk = hmac(b"vigil-keystore/2 subkeys", &[&[0x0b; 32]]);
        let okm = hmac(&prk, &[b"vigil-keystore/2 subkey\naudit-mac.v1", &[1]]);
        assert_eq!(
            master.subkey("audit-mac.v1").unwrap().expose().to_vec(),
            okm
        );
    }

    #[test]
    fn subkey_labels_are_checked() {
        let master = MasterKey::create(&pass("pw"), KdfParams::INSECURE_DEV, true).unwrap();
        for bad in ["", "Audit", "audit mac", "a\nb", &"x".repeat(65)] {
            let err = master.subkey(bad).unwrap_err();
            assert!(matches!(err, KeystoreError::BadSubkeyLabel(_)), "{bad:?}");
        }
        master.subkey(&"x".repeat(64)).unwrap();
    }

    #[test]
    fn weak_or_unbounded_parameters_are_refused_before_scrypt() {
        let err = MasterKey::create(&pass("pw"), KdfParams::INSECURE_DEV, false).unwrap_err();
        assert!(matches!(err, KeystoreError::WeakKdf { .. }), "{err}");
        assert!(err.to_string().contains("insecure_allow_weak_kdf"), "{err}");
        let huge = KdfParams {
            log_n: 23,
            r: 8,
            p: 1,
        };
        let err = MasterKey::create(&pass("pw"), huge, true).unwrap_err();
        assert!(matches!(err, KeystoreError::KdfOutOfBounds { .. }), "{err}");
    }
}
