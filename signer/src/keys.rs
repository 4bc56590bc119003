//! In-memory signing keys. A key is expanded once at unlock (SHA-512 of the seed, RFC 8032
//! §5.1.5) and kept as an `ExpandedSecretKey`, which zeroizes itself on drop; the seed it
//! came from is zeroized by the caller. Nothing here can print or serialise a secret.

use ed25519_dalek::hazmat::{ExpandedSecretKey, raw_sign};
use ed25519_dalek::{SigningKey, VerifyingKey};
use sha2::Sha512;
use zeroize::Zeroizing;

/// An Ed25519 signing key (Solana agent keys, the policy key at the ceremony).
pub struct Ed25519Key {
    expanded: ExpandedSecretKey,
    public: VerifyingKey,
}

impl Ed25519Key {
    /// Expands a 32-byte seed. The seed stays in the caller's zeroizing buffer.
    pub fn from_seed(seed: &Zeroizing<[u8; 32]>) -> Self {
        let signing = SigningKey::from_bytes(seed);
        let public = signing.verifying_key();
        // `SigningKey` is `ZeroizeOnDrop`; the expanded key is derived from the seed directly.
        let expanded = ExpandedSecretKey::from(&**seed);
        drop(signing);
        Self { expanded, public }
    }

    /// Generates a fresh key from the OS CSPRNG, returning it and its seed (for the keystore).
    pub fn generate() -> Result<(Self, Zeroizing<[u8; 32]>), getrandom::Error> {
        let mut seed = Zeroizing::new([0u8; 32]);
        getrandom::getrandom(&mut *seed)?;
        Ok((Self::from_seed(&seed), seed))
    }

    /// Signs a message (the serialized Solana message, a policy file).
    pub fn sign(&self, message: &[u8]) -> [u8; 64] {
        raw_sign::<Sha512>(&self.expanded, message, &self.public).to_bytes()
    }

    /// The public key.
    pub fn public(&self) -> &VerifyingKey {
        &self.public
    }

    /// The public key bytes.
    pub fn public_bytes(&self) -> [u8; 32] {
        self.public.to_bytes()
    }
}

impl std::fmt::Debug for Ed25519Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ed25519Key")
            .field("public", &hex::encode(self.public.as_bytes()))
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::{Signature, Verifier};

    #[test]
    fn expanded_signing_matches_rfc8032() {
        // RFC 8032 §7.1, TEST 1 (empty message).
        let seed = Zeroizing::new(
            <[u8; 32]>::try_from(
                hex::decode("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
                    .unwrap(),
            )
            .unwrap(),
        );
        let key = Ed25519Key::from_seed(&seed);
        assert_eq!(
            hex::encode(key.public_bytes()),
            "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"
        );
        let sig = key.sign(b"");
        assert_eq!(
            hex::encode(sig),
            "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"
        );
        key.public()
            .verify(b"", &Signature::from_bytes(&sig))
            .unwrap();
    }

    #[test]
    fn debug_prints_no_secret() {
        let (key, seed) = Ed25519Key::generate().unwrap();
        let shown = format!("{key:?}");
        assert!(!shown.contains(&hex::encode(*seed)));
        assert!(shown.contains(&hex::encode(key.public_bytes())));
    }
}
