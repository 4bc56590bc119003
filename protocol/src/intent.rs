//! Intents: what an agent wants done, as plain data. The signer builds the transaction
//! from an intent; nothing here is ever signed as given.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::types::{Amount, AssetSymbol};

/// A chain family the signer can build transactions for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Chain {
    /// Solana (ed25519 keys, System Program transfers).
    Solana,
}

/// A network of a chain. `mainnet` is only reachable when the signed policy names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Network {
    /// A development network (free test funds).
    Devnet,
    /// A test network.
    Testnet,
    /// The network where funds are real.
    Mainnet,
}

impl Chain {
    /// The wire name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Chain::Solana => "solana",
        }
    }
}

impl Network {
    /// The wire name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Network::Devnet => "devnet",
            Network::Testnet => "testnet",
            Network::Mainnet => "mainnet",
        }
    }
}

impl fmt::Display for Chain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for Network {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What an agent asks for, tagged by `kind`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Intent {
    /// Move a native asset to a recipient.
    Transfer(TransferIntent),
}

impl Intent {
    /// The action name the policy allowlists (`actions = ["transfer"]`).
    pub const fn action(&self) -> &'static str {
        match self {
            Intent::Transfer(_) => "transfer",
        }
    }
}

/// `{"kind": "transfer", "chain", "network", "asset", "to", "amount"}`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TransferIntent {
    /// The chain family.
    pub chain: Chain,
    /// The network of that chain.
    pub network: Network,
    /// The asset symbol, e.g. `SOL`.
    pub asset: AssetSymbol,
    /// The recipient address in the chain's own encoding (base58 for Solana); checked by
    /// the signer's chain module, not here.
    pub to: String,
    /// The amount in base units.
    pub amount: Amount,
}

/// Non-value context the signer needs to build a transaction. Nothing here can change
/// who is paid or how much.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Context {
    /// Solana: the recent blockhash (base58) the transaction is valid for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recent_blockhash: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transfer_parses_and_rejects_unknown_fields() {
        let ok = r#"{"kind":"transfer","chain":"solana","network":"devnet","asset":"SOL","to":"x","amount":"5"}"#;
        let i: Intent = serde_json::from_str(ok).unwrap();
        assert_eq!(i.action(), "transfer");
        let extra = r#"{"kind":"transfer","chain":"solana","network":"devnet","asset":"SOL","to":"x","amount":"5","memo":"hi"}"#;
        assert!(serde_json::from_str::<Intent>(extra).is_err());
        let float = r#"{"kind":"transfer","chain":"solana","network":"devnet","asset":"SOL","to":"x","amount":5}"#;
        assert!(serde_json::from_str::<Intent>(float).is_err());
        let kind = r#"{"kind":"raw_bytes","tx":"AAAA"}"#;
        assert!(serde_json::from_str::<Intent>(kind).is_err());
    }
}
