//! Hyperliquid: the exchange's two signing schemes, as its official Python SDK
//! (`hyperliquid/utils/signing.py`) implements them, for actions the signer builds itself.
//!
//! - **L1 actions** (`order`, `cancel`, `scheduleCancel`, `updateLeverage`): the action's
//!   MessagePack bytes, then the nonce, vault and expiry bytes, hashed with keccak-256 to a
//!   `connectionId`, signed as the EIP-712 message `Agent(string source,bytes32 connectionId)`
//!   in the `Exchange` domain (chain id 1337). `source` is `a` on mainnet and `b` on testnet.
//! - **User-signed actions** (`usdSend`, `withdraw3`): EIP-712 in the
//!   `HyperliquidSignTransaction` domain, primary types named `HyperliquidTransaction:UsdSend`
//!   and `HyperliquidTransaction:Withdraw`, with `hyperliquidChain` `Mainnet` or `Testnet`.
//!
//! Which of the two chains an action is for is a [`HlNetwork`], which the engine takes from the
//! signed policy, never from a request. Every byte that is hashed comes from the typed wire
//! structs in [`wire`]: field order is the SDK's dict order, numbers are the SDK's wire strings,
//! addresses are lowercase. The unit tests reproduce every signing vector of the SDK's
//! `tests/signing_test.py` byte for byte.

pub(crate) mod build;
pub(crate) mod order;
pub(crate) mod signing;
pub(crate) mod wire;

#[cfg(test)]
mod differential;
#[cfg(test)]
mod tests;

/// The Hyperliquid chain an action is signed for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum HlNetwork {
    /// Real funds: L1 `source` `a`, user-signed `hyperliquidChain` `Mainnet`.
    Mainnet,
    /// The test exchange: `source` `b`, `hyperliquidChain` `Testnet`.
    Testnet,
}

impl HlNetwork {
    /// The `source` of the phantom `Agent` an L1 action is signed as.
    pub(crate) const fn source(self) -> &'static str {
        match self {
            HlNetwork::Mainnet => "a",
            HlNetwork::Testnet => "b",
        }
    }

    /// The `hyperliquidChain` field of a user-signed action.
    pub(crate) const fn chain_name(self) -> &'static str {
        match self {
            HlNetwork::Mainnet => "Mainnet",
            HlNetwork::Testnet => "Testnet",
        }
    }
}

/// What can go wrong building or signing a Hyperliquid action.
#[derive(Debug, thiserror::Error)]
pub(crate) enum HyperliquidError {
    /// A price, size or amount is not a wire decimal.
    #[error(
        "{input:?} is not a valid Hyperliquid number: {reason}; send a plain decimal with at most 8 digits after the point, e.g. \"1670.1\""
    )]
    BadDecimal {
        /// What was sent (clipped).
        input: String,
        /// Why it was refused.
        reason: &'static str,
    },
    /// An address is not 20 bytes of hex.
    #[error("{0:?} is not an EVM address: send 0x followed by 40 hex digits")]
    BadAddress(String),
    /// A client order id is not 16 bytes of hex.
    #[error("{0:?} is not a client order id: send 0x followed by 32 hex digits")]
    BadCloid(String),
    /// MessagePack encoding failed (it cannot for the signer's own structs; reported, not assumed).
    #[error("the action could not be encoded as MessagePack: {0}")]
    Encode(String),
    /// The secp256k1 signature failed (it cannot for a valid key and a 32-byte hash).
    #[error("the action could not be signed: {0}")]
    Sign(String),
}
