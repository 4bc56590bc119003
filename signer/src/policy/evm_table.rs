//! The EVM network table of the policy file (`[networks."evm:<network>"]`, its `tokens`) and
//! EVM addresses as the policy writes them. Every value is checked and every failure names
//! its key path and what to write instead.

use std::collections::BTreeMap;

use alloy_primitives::{Address, B256};
use serde::Deserialize;
use vigil_protocol::{AssetSymbol, Network, truncate};

use super::file::invalid;
use super::{EvmNetwork, EvmToken, PolicyError};

/// Chain ids of well-known public test networks (and local nodes): never `evm:mainnet`.
const TEST_CHAIN_IDS: &[u64] = &[
    31337,    // anvil, hardhat
    1337,     // ganache, geth --dev
    11155111, // Sepolia
    17000,    // Holesky
    560048,   // Hoodi
    84532,    // Base Sepolia
    421614,   // Arbitrum Sepolia
    11155420, // OP Sepolia
];

/// The largest decimals a token may declare (10^36 still leaves room in a u128 of base units).
const MAX_DECIMALS: u8 = 36;

/// `[networks."evm:<network>".tokens.<SYMBOL>]`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawToken {
    address: String,
    decimals: u8,
    #[serde(default)]
    approve_zero_first: bool,
    #[serde(default)]
    allow_all: bool,
}

/// The EVM fields of a `[networks."evm:<network>"]` table.
pub(super) struct RawEvm {
    pub(super) chain_id: Option<u64>,
    pub(super) genesis_hash: Option<String>,
    pub(super) native: Option<String>,
    pub(super) max_gas_limit: Option<u64>,
    pub(super) max_fee_per_gas: Option<String>,
    pub(super) aave_pool: Option<String>,
    pub(super) tokens: BTreeMap<String, RawToken>,
}

/// Parses an EVM address: `0x` and 40 hex digits, all lowercase, all uppercase, or in its
/// EIP-55 checksum form (a mixed-case address with a wrong checksum is refused: it is a typo
/// or a forgery). Never the zero address.
pub(crate) fn parse_address(s: &str) -> Result<Address, String> {
    let hex_part = s.strip_prefix("0x").ok_or_else(|| {
        format!(
            "{:?} is not an EVM address: write 0x and 40 hex digits",
            truncate(s)
        )
    })?;
    if hex_part.len() != 40 || !hex_part.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!(
            "{:?} is not an EVM address: write 0x and 40 hex digits",
            truncate(s)
        ));
    }
    let mixed = hex_part.bytes().any(|b| b.is_ascii_lowercase())
        && hex_part.bytes().any(|b| b.is_ascii_uppercase());
    let address = if mixed {
        Address::parse_checksummed(s, None).map_err(|_| {
            format!(
                "{:?} has a wrong EIP-55 checksum (mixed case that is not the checksum): copy the address again",
                truncate(s)
            )
        })?
    } else {
        s.parse::<Address>()
            .map_err(|e| format!("{:?} is not an EVM address: {e}", truncate(s)))?
    };
    if address == Address::ZERO {
        return Err(
            "the zero address holds nothing and burns what it is sent: write a real address".into(),
        );
    }
    Ok(address)
}

/// The canonical text of an EVM address: its EIP-55 checksum form.
pub(crate) fn canonical_address(s: &str) -> Result<String, String> {
    parse_address(s).map(|a| a.to_checksum(None))
}

/// An EVM network's table, checked.
pub(super) fn evm_network(
    at: &str,
    network: Network,
    raw: RawEvm,
) -> Result<EvmNetwork, PolicyError> {
    let need = |field: &str, what: &str| invalid(&format!("{at}.{field}"), what.to_owned());
    let chain_id = raw.chain_id.ok_or_else(|| {
        need(
            "chain_id",
            "an EVM network is identified by its chain id: write what eth_chainId answers on a node of it (e.g. 1 for Ethereum, 31337 for anvil)",
        )
    })?;
    if chain_id == 0 {
        return Err(need(
            "chain_id",
            "chain id 0 is not a chain: write the network's EIP-155 chain id",
        ));
    }
    match network {
        Network::Mainnet if TEST_CHAIN_IDS.contains(&chain_id) => {
            return Err(need(
                "chain_id",
                &format!(
                    "{chain_id} is a test or local chain: name it evm:devnet or evm:testnet, never evm:mainnet"
                ),
            ));
        }
        Network::Devnet | Network::Testnet if chain_id == 1 => {
            return Err(need(
                "chain_id",
                "chain id 1 is Ethereum mainnet, where funds are real: name it evm:mainnet",
            ));
        }
        _ => {}
    }
    let genesis = raw.genesis_hash.ok_or_else(|| {
        need(
            "genesis_hash",
            "write the hash of block 0 (eth_getBlockByNumber(\"0x0\").hash): the orchestrator checks its node against it",
        )
    })?;
    let genesis_hash = parse_b256(&genesis).map_err(|e| need("genesis_hash", &e))?;
    let native: AssetSymbol = raw
        .native
        .as_deref()
        .unwrap_or("ETH")
        .parse()
        .map_err(|e: String| need("native", &e))?;
    let max_gas_limit = match raw.max_gas_limit {
        Some(g) if (21_000..=30_000_000).contains(&g) => g,
        Some(g) => {
            return Err(need(
                "max_gas_limit",
                &format!(
                    "{g} is outside 21000..=30000000: a transfer needs 21000 gas; an Aave call a few hundred thousand"
                ),
            ));
        }
        None => {
            return Err(need(
                "max_gas_limit",
                "write the largest gas limit one transaction may carry, e.g. 500000",
            ));
        }
    };
    let max_fee_per_gas = match raw
        .max_fee_per_gas
        .as_deref()
        .map(vigil_protocol::Amount::parse_wire)
    {
        Some(Ok(a)) => a.base_units(),
        Some(Err(e)) => {
            return Err(need(
                "max_fee_per_gas",
                &format!(
                    "{e}; write wei per gas as a decimal string, e.g. \"100000000000\" (100 gwei)"
                ),
            ));
        }
        None => {
            return Err(need(
                "max_fee_per_gas",
                "write the largest max fee per gas in wei as a decimal string, e.g. \"100000000000\" (100 gwei)",
            ));
        }
    };
    let aave_pool = raw
        .aave_pool
        .as_deref()
        .map(parse_address)
        .transpose()
        .map_err(|e| need("aave_pool", &e))?;
    let mut tokens = BTreeMap::new();
    for (symbol, t) in raw.tokens {
        let tat = format!("{at}.tokens.{}", truncate(&symbol));
        let symbol: AssetSymbol = symbol.parse().map_err(|e: String| invalid(&tat, e))?;
        if symbol == native {
            return Err(invalid(
                &tat,
                format!("{symbol} is the network's native asset, not a token: remove this table"),
            ));
        }
        let address =
            parse_address(&t.address).map_err(|e| invalid(&format!("{tat}.address"), e))?;
        if Some(address) == aave_pool {
            return Err(invalid(
                &format!("{tat}.address"),
                "this is the Aave Pool's address, not a token's",
            ));
        }
        if let Some((other, _)) = tokens
            .iter()
            .find(|(_, o): &(&AssetSymbol, &EvmToken)| o.address == address)
        {
            return Err(invalid(
                &format!("{tat}.address"),
                format!("{other} already has this address: one contract, one symbol"),
            ));
        }
        if t.decimals > MAX_DECIMALS {
            return Err(invalid(
                &format!("{tat}.decimals"),
                format!(
                    "{} decimals is more than {MAX_DECIMALS}: write what the token's decimals() answers",
                    t.decimals
                ),
            ));
        }
        tokens.insert(
            symbol,
            EvmToken {
                address,
                decimals: t.decimals,
                approve_zero_first: t.approve_zero_first,
                allow_all: t.allow_all,
            },
        );
    }
    Ok(EvmNetwork {
        chain_id,
        genesis_hash,
        native,
        native_decimals: 18,
        max_gas_limit,
        max_fee_per_gas,
        aave_pool,
        tokens,
    })
}

fn parse_b256(s: &str) -> Result<B256, String> {
    let ok =
        s.len() == 66 && s.starts_with("0x") && s.bytes().skip(2).all(|b| b.is_ascii_hexdigit());
    if !ok {
        return Err(format!(
            "{:?} is not a block hash: write 0x and 64 hex digits",
            truncate(s)
        ));
    }
    s.parse::<B256>()
        .map_err(|e| format!("{:?} is not a block hash: {e}", truncate(s)))
}

#[cfg(test)]
mod tests;
