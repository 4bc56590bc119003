//! In-memory signing keys. An Ed25519 key is expanded once at unlock (SHA-512 of the seed,
//! RFC 8032 §5.1.5) and kept as an `ExpandedSecretKey`, which zeroizes itself on drop; a
//! secp256k1 key (EVM) is its scalar in a `k256` `SigningKey`, which zeroizes itself on drop.
//! The 32 bytes each came from are zeroized by the caller. Nothing here can print or
//! serialise a secret.

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

/// A fresh agent key: the 32 secret bytes the keystore holds, its address on the chain, and
/// the public bytes its manifest fingerprint is of (Solana: the Ed25519 public key; EVM: the
/// 20 address bytes, the address being a hash of the public key).
#[derive(Debug)]
pub struct NewAgentKey {
    /// The seed (Solana) or secret scalar (EVM).
    pub secret: Zeroizing<[u8; 32]>,
    /// The address (base58; EVM: EIP-55 checksummed).
    pub address: String,
    /// What the fingerprint is computed over.
    pub fingerprint_bytes: Vec<u8>,
}

/// Makes a fresh agent key for `chain` from the OS CSPRNG.
pub fn new_agent_key(chain: vigil_protocol::Chain) -> Result<NewAgentKey, getrandom::Error> {
    match chain {
        vigil_protocol::Chain::Solana => {
            let (key, secret) = Ed25519Key::generate()?;
            let public = key.public_bytes();
            Ok(NewAgentKey {
                secret,
                address: crate::chains::solana::address_of(&public),
                fingerprint_bytes: public.to_vec(),
            })
        }
        vigil_protocol::Chain::Evm | vigil_protocol::Chain::Hyperliquid => {
            let (key, secret) = Secp256k1Key::generate()?;
            Ok(NewAgentKey {
                secret,
                address: key.address_text(),
                fingerprint_bytes: key.address().to_vec(),
            })
        }
    }
}

/// An agent's key, of the kind its chain uses.
#[derive(Debug)]
pub(crate) enum AgentSecret {
    /// Solana.
    Ed25519(Ed25519Key),
    /// EVM.
    Secp256k1(Secp256k1Key),
    /// Hyperliquid: the agent's two keys on one exchange.
    Hyperliquid {
        /// The API wallet: signs L1 actions (orders, cancels, leverage, the dead-man switch).
        api: Secp256k1Key,
        /// The master account: signs user-signed actions (transfers, withdrawals, registering
        /// the API wallet), only after the operator's approval.
        master: Secp256k1Key,
    },
}

/// A secp256k1 signing key (EVM agent keys): the 32 bytes in the keystore are the secret
/// scalar, which must be in `[1, n)`.
pub struct Secp256k1Key {
    signing: k256::ecdsa::SigningKey,
    address: alloy_primitives::Address,
}

impl Secp256k1Key {
    /// The key whose scalar is `secret`; `None` if it is zero or not below the group order
    /// (a random 32 bytes is that with probability below 2^-127).
    pub fn from_secret(secret: &Zeroizing<[u8; 32]>) -> Option<Self> {
        let signing = k256::ecdsa::SigningKey::from_slice(&secret[..]).ok()?;
        let address = alloy_primitives::Address::from_public_key(signing.verifying_key());
        Some(Self { signing, address })
    }

    /// Generates a fresh key from the OS CSPRNG, returning it and its secret (for the keystore).
    pub fn generate() -> Result<(Self, Zeroizing<[u8; 32]>), getrandom::Error> {
        loop {
            let mut secret = Zeroizing::new([0u8; 32]);
            getrandom::getrandom(&mut *secret)?;
            if let Some(key) = Self::from_secret(&secret) {
                return Ok((key, secret));
            }
        }
    }

    /// Signs a 32-byte hash (an EIP-1559 transaction's signature hash): RFC 6979 deterministic
    /// nonce, low-s, with the recovery parity.
    pub fn sign_hash(&self, hash: &[u8; 32]) -> Result<alloy_primitives::Signature, String> {
        let (sig, recid) = self
            .signing
            .sign_prehash_recoverable(hash)
            .map_err(|e| format!("secp256k1 signing failed: {e}"))?;
        Ok(alloy_primitives::Signature::from_signature_and_parity(
            sig,
            recid.is_y_odd(),
        ))
    }

    /// The `k256` key, for the Hyperliquid signing code (which hashes its own EIP-712 messages).
    pub(crate) fn signing_key(&self) -> &k256::ecdsa::SigningKey {
        &self.signing
    }

    /// The EVM address (last 20 bytes of keccak-256 of the uncompressed public key).
    pub fn address(&self) -> alloy_primitives::Address {
        self.address
    }

    /// The address in EIP-55 mixed-case checksum form.
    pub fn address_text(&self) -> String {
        self.address.to_checksum(None)
    }
}

impl std::fmt::Debug for Secp256k1Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Secp256k1Key")
            .field("address", &self.address_text())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::{Signature, Verifier};

    #[test]
    fn secp256k1_key_has_the_known_address_and_signs_recoverably() {
        // Hardhat/anvil's first development account.
        let secret = Zeroizing::new(
            <[u8; 32]>::try_from(
                hex::decode("ac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80")
                    .unwrap(),
            )
            .unwrap(),
        );
        let key = Secp256k1Key::from_secret(&secret).unwrap();
        assert_eq!(
            key.address_text(),
            "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"
        );
        let hash = [9u8; 32];
        let sig = key.sign_hash(&hash).unwrap();
        assert_eq!(
            sig.recover_address_from_prehash(&hash.into()).unwrap(),
            key.address()
        );
        assert_eq!(
            sig,
            key.sign_hash(&hash).unwrap(),
            "RFC 6979: deterministic"
        );
        assert!(sig.normalize_s().is_none(), "low s");
        assert!(!format!("{key:?}").contains("ac0974"));
        for bad in [[0u8; 32], [0xff; 32]] {
            assert!(Secp256k1Key::from_secret(&Zeroizing::new(bad)).is_none());
        }
        let (fresh, secret) = Secp256k1Key::generate().unwrap();
        assert_eq!(
            Secp256k1Key::from_secret(&secret).unwrap().address(),
            fresh.address()
        );
    }

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
