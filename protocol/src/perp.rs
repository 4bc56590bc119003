//! Hyperliquid perpetuals: the intents an agent may send for the `hyperliquid` chain, and the
//! decimal strings they carry. The signer builds every action from these (the asset index,
//! the wire strings, the nonce, the recipient of nothing but the agent's own account); nothing
//! here is signed as given.
//!
//! Numbers are plain decimal strings as the exchange's wire form writes them (`"1670.1"`,
//! `"0.0147"`): digits with at most one point and at most 8 digits after it, no sign, no
//! exponent. A size or price off the perpetual's grid is the signer's refusal, not a parse
//! error: the grid is the policy's.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::intent::{Chain, Network};
use crate::types::{Amount, AssetSymbol, truncate};

/// Digits after the point a Hyperliquid number may have.
pub const PERP_DECIMALS: usize = 8;
/// The longest decimal string accepted (20 digits before the point, the point, 8 after).
const MAX_DECIMAL_LEN: usize = 29;

/// A non-negative decimal string: `"0.5"`, `"1670"`, `"0.00000001"`. Parsed where it enters;
/// kept as written (the signer normalises it to the exchange's wire form).
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct PerpDecimal(String);

/// A signed decimal string (`"-0.5"`, `"2"`): a position's size, negative when short.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct PerpPosition(String);

fn check_decimal(s: &str, what: &str) -> Result<(), String> {
    let bad = |why: &str| {
        Err(format!(
            "{what} {:?} is not a decimal: {why}; write digits with at most {PERP_DECIMALS} after the point, e.g. \"1670.1\"",
            truncate(s)
        ))
    };
    if s.is_empty() || s.len() > MAX_DECIMAL_LEN {
        return bad("it is empty or longer than 29 characters");
    }
    let (int, frac) = match s.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (s, None),
    };
    if int.is_empty() || !int.bytes().all(|b| b.is_ascii_digit()) {
        return bad("it must start with digits (no sign, no exponent)");
    }
    if int.len() > 1 && int.starts_with('0') {
        return bad("it has a leading zero");
    }
    if let Some(f) = frac {
        if f.is_empty() || !f.bytes().all(|b| b.is_ascii_digit()) {
            return bad("the point must be followed by digits");
        }
        if f.len() > PERP_DECIMALS {
            return bad("it has more than 8 digits after the point");
        }
    }
    Ok(())
}

impl PerpDecimal {
    /// The decimal as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl PerpPosition {
    /// The position as written (with its `-` when short).
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// True when short.
    pub fn is_short(&self) -> bool {
        self.0.starts_with('-')
    }

    /// The size without its sign.
    pub fn magnitude(&self) -> &str {
        self.0.strip_prefix('-').unwrap_or(&self.0)
    }
}

impl TryFrom<String> for PerpDecimal {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        check_decimal(&s, "number")?;
        Ok(Self(s))
    }
}

impl std::str::FromStr for PerpDecimal {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Self::try_from(s.to_owned())
    }
}

impl TryFrom<String> for PerpPosition {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        check_decimal(s.strip_prefix('-').unwrap_or(&s), "position")?;
        Ok(Self(s))
    }
}

impl std::str::FromStr for PerpPosition {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Self::try_from(s.to_owned())
    }
}

impl From<PerpDecimal> for String {
    fn from(v: PerpDecimal) -> String {
        v.0
    }
}

impl From<PerpPosition> for String {
    fn from(v: PerpPosition) -> String {
        v.0
    }
}

impl fmt::Display for PerpDecimal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for PerpDecimal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PerpDecimal({})", self.0)
    }
}

impl fmt::Display for PerpPosition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for PerpPosition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PerpPosition({})", self.0)
    }
}

/// Which way an order trades.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Side {
    /// Buy: opens or adds to a long, or reduces a short.
    Buy,
    /// Sell: opens or adds to a short, or reduces a long.
    Sell,
}

/// How long a limit order lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TimeInForce {
    /// Good till cancelled: rests on the book.
    Gtc,
    /// Immediate or cancel: what does not fill at once is cancelled.
    Ioc,
    /// Add liquidity only (post-only): refused by the exchange if it would cross.
    Alo,
}

impl Side {
    /// The wire name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Side::Buy => "buy",
            Side::Sell => "sell",
        }
    }
}

impl TimeInForce {
    /// The exchange's name (`Gtc`, `Ioc`, `Alo`).
    pub const fn exchange_name(self) -> &'static str {
        match self {
            TimeInForce::Gtc => "Gtc",
            TimeInForce::Ioc => "Ioc",
            TimeInForce::Alo => "Alo",
        }
    }
}

/// `{"kind": "perp_order", "chain": "hyperliquid", "network", "asset", "side", "size",
/// "limit_px", "tif", "reduce_only", "cloid"?}`: a limit order on a perpetual the policy
/// lists, signed with the agent's API wallet key.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PerpOrderIntent {
    /// The chain family (`hyperliquid`).
    pub chain: Chain,
    /// The network (`testnet` or `mainnet`).
    pub network: Network,
    /// The perpetual, as the policy names it (`ETH`).
    pub asset: AssetSymbol,
    /// Buy or sell.
    pub side: Side,
    /// Size in the coin's units, on the perpetual's size grid.
    pub size: PerpDecimal,
    /// Limit price in USD, on the perpetual's price grid.
    pub limit_px: PerpDecimal,
    /// Time in force.
    pub tif: TimeInForce,
    /// Only reduces the position (the exchange refuses one that would grow or flip it).
    pub reduce_only: bool,
    /// The agent's client order id: `0x` and 32 hex digits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cloid: Option<String>,
}

/// `{"kind": "perp_cancel", "chain", "network", "asset", "oid"}`: cancel one resting order.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PerpCancelIntent {
    /// The chain family (`hyperliquid`).
    pub chain: Chain,
    /// The network.
    pub network: Network,
    /// The perpetual the order is on.
    pub asset: AssetSymbol,
    /// The exchange's order id.
    pub oid: u64,
}

/// `{"kind": "perp_leverage", "chain", "network", "asset", "leverage", "cross"}`: set the
/// leverage of a perpetual, at most the policy's maximum for it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PerpLeverageIntent {
    /// The chain family (`hyperliquid`).
    pub chain: Chain,
    /// The network.
    pub network: Network,
    /// The perpetual.
    pub asset: AssetSymbol,
    /// The leverage, 1 or more.
    pub leverage: u32,
    /// Cross margin if true, isolated otherwise.
    pub cross: bool,
}

/// `{"kind": "perp_schedule_cancel", "chain", "network", "in_secs"?}`: the dead-man switch —
/// every open order of the account is cancelled `in_secs` seconds after the signer's clock
/// (absent: clear the schedule). The signer sets the time itself.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PerpScheduleCancelIntent {
    /// The chain family (`hyperliquid`).
    pub chain: Chain,
    /// The network.
    pub network: Network,
    /// Seconds from now; absent clears the schedule.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub in_secs: Option<u32>,
}

/// `{"kind": "perp_withdraw", "chain", "network", "asset": "USDC", "to", "amount"}`: withdraw
/// USDC from the exchange to a policy recipient on its bridge chain; signed with the master
/// key, always with the operator's approval. `amount` in micro-USDC (6 decimals).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PerpWithdrawIntent {
    /// The chain family (`hyperliquid`).
    pub chain: Chain,
    /// The network.
    pub network: Network,
    /// `USDC`.
    pub asset: AssetSymbol,
    /// The destination address (`0x` and 40 hex digits), one of the agent's recipients.
    pub to: String,
    /// Micro-USDC.
    pub amount: Amount,
}

/// `{"kind": "perp_register_api_key", "chain", "network"}`: approve the agent's own API
/// wallet (its trading key in the keystore) on its master account. Signed with the master
/// key, always with the operator's approval, at most once per key: a key is never registered
/// again after it was (its old actions would become replayable).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PerpRegisterApiKeyIntent {
    /// The chain family (`hyperliquid`).
    pub chain: Chain,
    /// The network.
    pub network: Network,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals_parse_strictly() {
        for ok in [
            "0",
            "1",
            "0.5",
            "1670.1",
            "0.00000001",
            "12345678901234567890.12345678",
        ] {
            assert!(ok.parse::<PerpDecimal>().is_ok(), "{ok}");
        }
        for bad in [
            "",
            "-1",
            "+1",
            "1e3",
            "1.",
            ".5",
            "01",
            "0.123456789",
            "1,5",
            " 1",
            "NaN",
            "1.2.3",
            "123456789012345678901.12345678",
        ] {
            assert!(bad.parse::<PerpDecimal>().is_err(), "{bad}");
        }
        let p: PerpPosition = "-0.5".parse().unwrap();
        assert!(p.is_short());
        assert_eq!(p.magnitude(), "0.5");
        assert!("--1".parse::<PerpPosition>().is_err());
        assert!("-".parse::<PerpPosition>().is_err());
        let n: Result<PerpDecimal, _> = serde_json::from_str("1.5");
        assert!(n.is_err(), "a JSON number is not a decimal string");
    }
}
