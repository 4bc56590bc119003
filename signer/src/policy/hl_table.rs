//! The Hyperliquid table of the policy file (`[networks."hyperliquid:<network>"]`, its `perps`):
//! which exchange (the network's name decides it: `testnet` or `mainnet`, never a request) and
//! the perpetuals an agent may trade there, each with the exchange's asset index and size
//! decimals, and the signer's own bounds (leverage, position notional). Every failure names its
//! key path and what to write instead.

use std::collections::BTreeMap;

use serde::Deserialize;
use vigil_protocol::{AgentId, Amount, AssetSymbol, Chain, Network, truncate};

use super::file::invalid;
use super::{AgentPolicy, HyperliquidNetwork, NetworkPin, Perp, PolicyError};

/// The highest leverage any perpetual of the exchange offers (its `maxLeverage` is at most 50).
const MAX_LEVERAGE: u32 = 50;
/// The exchange's size decimals are at most 6 minus 0 (a price needs `6 - sz_decimals >= 0`).
const MAX_SZ_DECIMALS: u32 = 6;
/// A coin's name on the exchange: 1 to 20 ASCII letters and digits (`ETH`, `kPEPE`).
const MAX_COIN_LEN: usize = 20;
/// The symbol of the USD stablecoin an account holds: transfers and withdrawals, never a perp.
pub(crate) const USDC: &str = "USDC";

/// `[networks."hyperliquid:<network>".perps.<SYMBOL>]`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPerp {
    coin: String,
    index: u32,
    sz_decimals: u32,
    max_leverage: u32,
    max_position_notional: String,
}

/// A Hyperliquid network's table, checked. `devnet` is refused: the exchange has a testnet
/// and a mainnet, and the name is what picks the signing chain.
pub(super) fn hyperliquid_network(
    at: &str,
    network: Network,
    perps: BTreeMap<String, RawPerp>,
) -> Result<HyperliquidNetwork, PolicyError> {
    if network == Network::Devnet {
        return Err(invalid(
            at,
            "Hyperliquid has a testnet and a mainnet: name it hyperliquid:testnet (test funds) or hyperliquid:mainnet (real funds)",
        ));
    }
    if perps.is_empty() {
        return Err(invalid(
            &format!("{at}.perps"),
            "list at least one perpetual, e.g. perps.ETH = { coin = \"ETH\", index = 1, sz_decimals = 4, max_leverage = 5, max_position_notional = \"5000000000\" }",
        ));
    }
    let mut out: BTreeMap<AssetSymbol, Perp> = BTreeMap::new();
    for (symbol, raw) in perps {
        let pat = format!("{at}.perps.{}", truncate(&symbol));
        let symbol: AssetSymbol = symbol.parse().map_err(|e: String| invalid(&pat, e))?;
        if symbol.as_str() == USDC {
            return Err(invalid(
                &pat,
                "USDC is the account's collateral (transfers and withdrawals), not a perpetual: name the perpetual by its coin",
            ));
        }
        let coin_ok = !raw.coin.is_empty()
            && raw.coin.len() <= MAX_COIN_LEN
            && raw.coin.bytes().all(|b| b.is_ascii_alphanumeric());
        if !coin_ok {
            return Err(invalid(
                &format!("{pat}.coin"),
                format!(
                    "{:?} is not a coin name: write it as the exchange's meta.universe names it (1 to {MAX_COIN_LEN} letters and digits, e.g. \"ETH\" or \"kPEPE\")",
                    truncate(&raw.coin)
                ),
            ));
        }
        if raw.sz_decimals > MAX_SZ_DECIMALS {
            return Err(invalid(
                &format!("{pat}.sz_decimals"),
                format!(
                    "{} is above {MAX_SZ_DECIMALS}: write the szDecimals the exchange's meta answers for {}",
                    raw.sz_decimals, raw.coin
                ),
            ));
        }
        if raw.max_leverage == 0 || raw.max_leverage > MAX_LEVERAGE {
            return Err(invalid(
                &format!("{pat}.max_leverage"),
                format!(
                    "{} is outside 1..={MAX_LEVERAGE}: write the highest leverage the signer may set for {}",
                    raw.max_leverage, raw.coin
                ),
            ));
        }
        let max_position_notional = Amount::parse_wire(&raw.max_position_notional)
            .map_err(|e| {
                invalid(
                    &format!("{pat}.max_position_notional"),
                    format!(
                        "{e}; write micro-USD as a decimal string, e.g. \"5000000000\" (5000 USD)"
                    ),
                )
            })?
            .base_units();
        for (other, p) in &out {
            if p.index == raw.index || p.coin == raw.coin {
                return Err(invalid(
                    &pat,
                    format!(
                        "{other} already has coin {} / index {}: one perpetual, one symbol",
                        p.coin, p.index
                    ),
                ));
            }
        }
        out.insert(
            symbol,
            Perp {
                coin: raw.coin,
                index: raw.index,
                sz_decimals: raw.sz_decimals,
                max_leverage: raw.max_leverage,
                max_position_notional,
            },
        );
    }
    Ok(HyperliquidNetwork {
        network,
        perps: out,
    })
}

/// Every Hyperliquid asset an agent has caps for is `USDC` (transfers, withdrawals) or a
/// perpetual of the table of one of its Hyperliquid networks: a cap on anything else is a typo.
pub(super) fn check_assets(
    agents: &BTreeMap<AgentId, AgentPolicy>,
    pins: &BTreeMap<(Chain, Network), NetworkPin>,
) -> Result<(), PolicyError> {
    for (agent, rules) in agents {
        for (symbol, caps) in &rules.assets {
            if caps.chain != Chain::Hyperliquid || symbol.as_str() == USDC {
                continue;
            }
            let listed = rules.networks.iter().any(|key| match pins.get(key) {
                Some(NetworkPin::Hyperliquid(n)) => n.perps.contains_key(symbol),
                _ => false,
            });
            if !listed {
                return Err(invalid(
                    &format!("agents.{agent}.assets.{symbol}"),
                    format!(
                        "{symbol} is neither USDC nor a perpetual of any Hyperliquid network of {agent}: add it to [networks.\"hyperliquid:<network>\".perps] or remove these caps (a perp's caps are micro-USD of notional)"
                    ),
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
