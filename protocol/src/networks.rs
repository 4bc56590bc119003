//! Which network a node serves. A network is named `chain:network` (`solana:devnet`), and the
//! signed policy pins what identifies it on its chain: for Solana the genesis hash, the one
//! thing that decides which cluster accepts a transaction (a transaction names only a recent
//! blockhash, which the signer cannot place in a cluster). `hello` reports the pins
//! ([`NetworkIdentity`]), and the orchestrator checks its RPC node against them before it
//! does live work. Chains added later pin their own identity here (EVM: `chain_id`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::intent::{Chain, Network};
use crate::types::{AssetSymbol, Quantity};

/// Genesis hash of Solana mainnet-beta (what `getGenesisHash` answers there).
pub const SOLANA_MAINNET_GENESIS_HASH: &str = "5eykt4UsFv8P8NJdTREpY1vzqKqZKvdpKuc147dw2N9d";
/// Genesis hash of Solana testnet.
pub const SOLANA_TESTNET_GENESIS_HASH: &str = "4uhcVJyU9pJkvQyS88uRDiswHXSCkY3zQawwpjk2NsNY";
/// Genesis hash of Solana devnet.
pub const SOLANA_DEVNET_GENESIS_HASH: &str = "EtWTRABZaYq6iMfeYKouRu166VU2xqa1wcaWoxPkrZBG";

/// The genesis hash of the public Solana cluster of that name (mainnet means mainnet-beta).
pub const fn public_solana_genesis_hash(network: Network) -> &'static str {
    match network {
        Network::Mainnet => SOLANA_MAINNET_GENESIS_HASH,
        Network::Testnet => SOLANA_TESTNET_GENESIS_HASH,
        Network::Devnet => SOLANA_DEVNET_GENESIS_HASH,
    }
}

/// `solana:devnet`: how the policy, `hello` and the config name a (chain, network) pair.
pub fn network_name(chain: Chain, network: Network) -> String {
    format!("{chain}:{network}")
}

/// Parses `chain:network`, e.g. `solana:devnet`; `None` for anything else.
pub fn parse_network_name(s: &str) -> Option<(Chain, Network)> {
    let (chain, network) = s.split_once(':')?;
    let chain = serde_json::from_value(serde_json::Value::String(chain.to_owned())).ok()?;
    let network = serde_json::from_value(serde_json::Value::String(network.to_owned())).ok()?;
    Some((chain, network))
}

/// What identifies a network on its chain, as the signed policy pins it (`hello`'s
/// `network_ids`). One field per chain family; a node serving that network must answer the
/// same.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkIdentity {
    /// Solana: the cluster's genesis hash, base58 (`getGenesisHash`). EVM: the hash of block
    /// 0, `0x` and 64 lowercase hex digits (`eth_getBlockByNumber("0x0")`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub genesis_hash: Option<String>,
    /// EVM: the chain id (`eth_chainId`), the one every transaction signed for this network
    /// carries (EIP-155).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chain_id: Option<u64>,
    /// EVM: what else the signed policy's network table says, for a client that reads the
    /// chain for this network (balances, the Aave position) and prepares the context of an
    /// intent within the policy's fee bounds. Absent for Solana.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evm: Option<EvmNetworkInfo>,
    /// Hyperliquid: the exchange (`Testnet` or `Mainnet`, as its `hyperliquidChain` names it)
    /// and the perpetuals the signed policy lists. Absent for other chains.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hyperliquid: Option<HyperliquidNetworkInfo>,
}

/// A Hyperliquid exchange of the signed policy as `hello` shows it. Informational: the signer
/// builds every action from its own table (the asset index, the grid), never from a client's.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HyperliquidNetworkInfo {
    /// `Testnet` or `Mainnet`: the `hyperliquidChain` of user-signed actions (L1 actions are
    /// signed with source `b` on testnet, `a` on mainnet).
    pub hyperliquid_chain: String,
    /// The perpetuals by the policy's symbol.
    pub perps: BTreeMap<AssetSymbol, PerpInfo>,
}

/// One perpetual of the policy's table.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PerpInfo {
    /// The coin as the exchange names it (`ETH`, `kPEPE`).
    pub coin: String,
    /// Its asset index (position in the exchange's `meta.universe`).
    pub index: u32,
    /// The exchange's size decimals for it.
    pub sz_decimals: u32,
    /// The highest leverage the signer sets.
    pub max_leverage: u32,
    /// The largest position notional an opening order may reach, micro-USD.
    pub max_position_notional: Quantity,
}

/// An EVM network of the signed policy as `hello` shows it: the native asset, the fee bounds,
/// the Aave v3 Pool and the tokens (their addresses EIP-55). Informational: the signer builds
/// every transaction from its own table, never from what a client sends back.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvmNetworkInfo {
    /// The native asset's symbol (`ETH`).
    pub native: AssetSymbol,
    /// The native asset's decimals (18).
    pub native_decimals: u8,
    /// The largest gas limit of one transaction.
    pub max_gas_limit: u64,
    /// The largest EIP-1559 max fee per gas, wei.
    pub max_fee_per_gas: Quantity,
    /// The Aave v3 Pool (EIP-55), if the policy uses Aave on this network.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aave_pool: Option<String>,
    /// The ERC-20 tokens by symbol.
    #[serde(default)]
    pub tokens: BTreeMap<AssetSymbol, EvmTokenInfo>,
}

/// One token of an EVM network's table.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvmTokenInfo {
    /// The token contract (EIP-55).
    pub address: String,
    /// Its decimals.
    pub decimals: u8,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_the_public_hashes_are_distinct() {
        for network in [Network::Devnet, Network::Testnet, Network::Mainnet] {
            let name = network_name(Chain::Solana, network);
            assert_eq!(parse_network_name(&name), Some((Chain::Solana, network)));
            let hash = public_solana_genesis_hash(network);
            assert_eq!(bs58::decode(hash).into_vec().map(|b| b.len()), Ok(32));
        }
        assert_eq!(
            network_name(Chain::Solana, Network::Devnet),
            "solana:devnet"
        );
        assert_eq!(
            parse_network_name("evm:mainnet"),
            Some((Chain::Evm, Network::Mainnet))
        );
        for bad in [
            "solana",
            "solana:",
            "Solana:devnet",
            "solana:localnet",
            "evm:",
            "ethereum:devnet",
            "",
        ] {
            assert_eq!(parse_network_name(bad), None, "{bad:?}");
        }
        let hashes = [
            SOLANA_MAINNET_GENESIS_HASH,
            SOLANA_TESTNET_GENESIS_HASH,
            SOLANA_DEVNET_GENESIS_HASH,
        ];
        assert!(
            hashes
                .iter()
                .all(|h| hashes.iter().filter(|o| *o == h).count() == 1)
        );
    }
}
