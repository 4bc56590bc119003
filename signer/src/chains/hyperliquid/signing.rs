//! The hashes the exchange verifies and the secp256k1 signature over them.
//!
//! The EIP-712 `Agent` message of L1 actions is an ordinary struct and is hashed by
//! `alloy-sol-types`. The user-signed types are named `HyperliquidTransaction:UsdSend` and so on,
//! a name no Solidity struct can have: their type strings are written out here and hashed as
//! EIP-712 says (`keccak256(typeHash ‖ encodeData)`), so that no renamed struct can change the
//! type hash unnoticed.

use alloy_primitives::{Address, B256, U256, keccak256};
use alloy_sol_types::{Eip712Domain, SolStruct, sol};
use k256::ecdsa::SigningKey;

use super::wire::{HlAddress, WireDecimal};
use super::{HlNetwork, HyperliquidError};

sol! {
    /// The phantom agent an L1 action is signed as.
    struct Agent {
        string source;
        bytes32 connectionId;
    }
}

/// The `Exchange` domain of L1 actions: chain id 1337 on every network (the network is `source`).
const L1_CHAIN_ID: u64 = 1337;
/// The chain id the SDK signs user-signed actions with (`signatureChainId` `0x66eee`); which
/// exchange accepts them is `hyperliquidChain`.
pub(crate) const USER_SIGNATURE_CHAIN_ID: u64 = 0x66eee;

/// keccak-256 of the action's MessagePack bytes, the nonce (8 bytes, big-endian), `0` or `1` +
/// the vault address, and, when set, `0` + the expiry (8 bytes): the SDK's `action_hash`.
pub(crate) fn action_hash(
    packed: &[u8],
    vault: Option<&HlAddress>,
    nonce: u64,
    expires_after: Option<u64>,
) -> B256 {
    let mut data = Vec::with_capacity(packed.len() + 8 + 21 + 9);
    data.extend_from_slice(packed);
    data.extend_from_slice(&nonce.to_be_bytes());
    match vault {
        None => data.push(0),
        Some(v) => {
            data.push(1);
            data.extend_from_slice(v.bytes());
        }
    }
    if let Some(expires) = expires_after {
        data.push(0);
        data.extend_from_slice(&expires.to_be_bytes());
    }
    keccak256(&data)
}

/// The EIP-712 signing hash of the phantom agent for `connection_id` on `network`.
pub(crate) fn l1_signing_hash(connection_id: B256, network: HlNetwork) -> B256 {
    let domain = Eip712Domain::new(
        Some("Exchange".into()),
        Some("1".into()),
        Some(U256::from(L1_CHAIN_ID)),
        Some(Address::ZERO),
        None,
    );
    Agent {
        source: network.source().to_owned(),
        connectionId: connection_id,
    }
    .eip712_signing_hash(&domain)
}

/// A user-signed action: moves USDC out of the account, so only the master key signs one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum UserSigned {
    /// `usdSend`: USDC to another Hyperliquid account.
    UsdSend {
        /// The receiving account.
        destination: HlAddress,
        /// USDC amount.
        amount: WireDecimal,
        /// The action's time (ms), also its nonce.
        time: u64,
    },
    /// `withdraw3`: USDC out through the bridge to an address on Arbitrum.
    Withdraw {
        /// The receiving address.
        destination: HlAddress,
        /// USDC amount.
        amount: WireDecimal,
        /// The action's time (ms), also its nonce.
        time: u64,
    },
}

impl UserSigned {
    /// The EIP-712 type string of the action's primary type.
    pub(crate) const fn type_string(&self) -> &'static str {
        match self {
            UserSigned::UsdSend { .. } => {
                "HyperliquidTransaction:UsdSend(string hyperliquidChain,string destination,string amount,uint64 time)"
            }
            UserSigned::Withdraw { .. } => {
                "HyperliquidTransaction:Withdraw(string hyperliquidChain,string destination,string amount,uint64 time)"
            }
        }
    }

    /// The action's `type` on the wire.
    pub(crate) const fn wire_type(&self) -> &'static str {
        match self {
            UserSigned::UsdSend { .. } => "usdSend",
            UserSigned::Withdraw { .. } => "withdraw3",
        }
    }

    /// The EIP-712 signing hash on `network`.
    pub(crate) fn signing_hash(&self, network: HlNetwork) -> B256 {
        let (UserSigned::UsdSend {
            destination,
            amount,
            time,
        }
        | UserSigned::Withdraw {
            destination,
            amount,
            time,
        }) = *self;
        let mut encoded = Vec::with_capacity(5 * 32);
        encoded.extend_from_slice(keccak256(self.type_string()).as_slice());
        encoded.extend_from_slice(keccak256(network.chain_name()).as_slice());
        encoded.extend_from_slice(keccak256(destination.to_wire()).as_slice());
        encoded.extend_from_slice(keccak256(amount.to_wire()).as_slice());
        encoded.extend_from_slice(&U256::from(time).to_be_bytes::<32>());
        user_signed_digest(keccak256(&encoded))
    }
}

/// The EIP-712 digest of a user-signed struct hash in the `HyperliquidSignTransaction` domain
/// (chain id `0x66eee`): `keccak256(0x1901 ‖ domainSeparator ‖ structHash)`.
pub(crate) fn user_signed_digest(struct_hash: B256) -> B256 {
    let domain = Eip712Domain::new(
        Some("HyperliquidSignTransaction".into()),
        Some("1".into()),
        Some(U256::from(USER_SIGNATURE_CHAIN_ID)),
        Some(Address::ZERO),
        None,
    );
    let mut digest = [0u8; 66];
    digest[..2].copy_from_slice(&[0x19, 0x01]);
    digest[2..34].copy_from_slice(domain.separator().as_slice());
    digest[34..].copy_from_slice(struct_hash.as_slice());
    keccak256(digest)
}

/// An Ethereum-style signature as the exchange takes it: `r`, `s`, and `v` = 27 + recovery id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct HlSignature {
    /// The signature's `r`.
    pub r: U256,
    /// The signature's `s` (low-s form).
    pub s: U256,
    /// 27 or 28.
    pub v: u8,
}

impl HlSignature {
    /// `{"r": "0x…", "s": "0x…", "v": 27}` with `r` and `s` as the SDK writes them (no leading
    /// zeros).
    pub(crate) fn to_json(self) -> serde_json::Value {
        serde_json::json!({
            "r": format!("{:#x}", self.r),
            "s": format!("{:#x}", self.s),
            "v": self.v,
        })
    }
}

/// Signs a 32-byte hash (RFC 6979 deterministic, low-s).
pub(crate) fn sign_hash(key: &SigningKey, hash: &B256) -> Result<HlSignature, HyperliquidError> {
    let (sig, recid) = key
        .sign_prehash_recoverable(hash.as_slice())
        .map_err(|e| HyperliquidError::Sign(e.to_string()))?;
    let (r, s) = sig.split_bytes();
    Ok(HlSignature {
        r: U256::from_be_slice(&r),
        s: U256::from_be_slice(&s),
        v: 27 + recid.to_byte(),
    })
}

/// Signs an L1 action already packed with [`super::wire::pack`].
pub(crate) fn sign_l1(
    key: &SigningKey,
    packed: &[u8],
    vault: Option<&HlAddress>,
    nonce: u64,
    expires_after: Option<u64>,
    network: HlNetwork,
) -> Result<HlSignature, HyperliquidError> {
    let connection_id = action_hash(packed, vault, nonce, expires_after);
    sign_hash(key, &l1_signing_hash(connection_id, network))
}

#[cfg(test)]
/// The address of a secp256k1 key: the last 20 bytes of keccak-256 of its uncompressed point.
pub(crate) fn address_of(key: &k256::ecdsa::VerifyingKey) -> HlAddress {
    let point = key.to_encoded_point(false);
    let hash = keccak256(&point.as_bytes()[1..]);
    let mut out = [0u8; 20];
    out.copy_from_slice(&hash[12..]);
    HlAddress::from_bytes(out)
}
