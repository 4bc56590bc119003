//! The wire forms of the actions the signer signs on Hyperliquid, field for field in the order
//! of the official SDK's dicts (MessagePack keeps the order of a struct's fields, and the
//! exchange hashes the bytes), and the exchange's number strings.

use serde::{Serialize, Serializer};

use super::HyperliquidError;

/// Digits after the point the exchange keeps; the SDK refuses anything finer.
pub(crate) const DECIMALS: u32 = 8;
/// Longest number text worth parsing (21 integer digits, the point, 8 decimals).
const MAX_DECIMAL_TEXT: usize = 30;
/// Largest value in units of 10^-8 (10^20 whole units): far above any price or size.
const MAX_UNITS: u128 = 10u128.pow(20 + DECIMALS);

/// A non-negative price, size or amount with at most 8 decimals, kept as an integer number of
/// 10^-8 units, written as the SDK's `float_to_wire` writes it (normalised: no trailing zeros,
/// no trailing point, `0` for zero).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct WireDecimal {
    units: u128,
}

impl WireDecimal {
    /// Parses plain decimal text: digits, at most one point with digits on both sides, at most
    /// 8 decimals. No sign, exponent, spaces or rounding: a number the exchange would round is
    /// refused, as the SDK refuses it.
    pub(crate) fn parse(text: &str) -> Result<WireDecimal, HyperliquidError> {
        let bad = |reason| HyperliquidError::BadDecimal {
            input: text.chars().take(MAX_DECIMAL_TEXT + 2).collect(),
            reason,
        };
        if text.is_empty() || text.len() > MAX_DECIMAL_TEXT {
            return Err(bad("it is empty or longer than 30 characters"));
        }
        let (whole, frac) = match text.split_once('.') {
            Some((w, f)) => (w, f),
            None => (text, ""),
        };
        let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        if !digits(whole) || (text.contains('.') && !digits(frac)) {
            return Err(bad(
                "only digits with at most one point between them are allowed",
            ));
        }
        if frac.len() > DECIMALS as usize {
            return Err(bad(
                "it has more than 8 decimals, which the exchange would round",
            ));
        }
        let mut units: u128 = 0;
        for b in whole.bytes().chain(frac.bytes()) {
            units = units
                .checked_mul(10)
                .and_then(|u| u.checked_add(u128::from(b - b'0')))
                .ok_or_else(|| bad("it is too large"))?;
        }
        // Pad the decimals to 8 (`frac.len()` is at most 8, checked above).
        for _ in frac.len()..DECIMALS as usize {
            units = units
                .checked_mul(10)
                .ok_or_else(|| bad("it is too large"))?;
        }
        if units > MAX_UNITS {
            return Err(bad("it is too large"));
        }
        Ok(WireDecimal { units })
    }

    /// The decimal of `units` × 10^-8, if within the largest value accepted.
    pub(crate) const fn from_units(units: u128) -> Option<WireDecimal> {
        if units > MAX_UNITS {
            None
        } else {
            Some(WireDecimal { units })
        }
    }

    /// The value in 10^-8 units (the SDK's `float_to_int_for_hashing`).
    pub(crate) const fn units(self) -> u128 {
        self.units
    }

    /// The exchange's wire text.
    pub(crate) fn to_wire(self) -> String {
        let scale = 10u128.pow(DECIMALS);
        let (whole, frac) = (self.units / scale, self.units % scale);
        if frac == 0 {
            return whole.to_string();
        }
        let frac = format!("{frac:08}");
        format!("{whole}.{}", frac.trim_end_matches('0'))
    }
}

impl Serialize for WireDecimal {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_wire())
    }
}

/// An EVM address as the exchange hashes and compares it: `0x` and 40 lowercase hex digits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct HlAddress([u8; 20]);

impl HlAddress {
    /// Parses `0x` + 40 hex digits (either case).
    pub(crate) fn parse(text: &str) -> Result<HlAddress, HyperliquidError> {
        let bad = || HyperliquidError::BadAddress(text.chars().take(44).collect());
        let hex = text.strip_prefix("0x").ok_or_else(bad)?;
        let mut out = [0u8; 20];
        if hex.len() != 40 {
            return Err(bad());
        }
        hex::decode_to_slice(hex, &mut out).map_err(|_| bad())?;
        Ok(HlAddress(out))
    }

    /// Wraps raw bytes (e.g. an address derived from a key).
    pub(crate) const fn from_bytes(bytes: [u8; 20]) -> HlAddress {
        HlAddress(bytes)
    }

    /// The 20 bytes.
    pub(crate) const fn bytes(&self) -> &[u8; 20] {
        &self.0
    }

    /// `0x` + lowercase hex.
    pub(crate) fn to_wire(self) -> String {
        format!("0x{}", hex::encode(self.0))
    }
}

impl Serialize for HlAddress {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_wire())
    }
}

/// A client order id: 16 bytes, written `0x` + 32 lowercase hex digits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Cloid([u8; 16]);

impl Cloid {
    /// Parses `0x` + 32 hex digits.
    pub(crate) fn parse(text: &str) -> Result<Cloid, HyperliquidError> {
        let bad = || HyperliquidError::BadCloid(text.chars().take(36).collect());
        let hex = text.strip_prefix("0x").ok_or_else(bad)?;
        let mut out = [0u8; 16];
        if hex.len() != 32 {
            return Err(bad());
        }
        hex::decode_to_slice(hex, &mut out).map_err(|_| bad())?;
        Ok(Cloid(out))
    }
}

impl Serialize for Cloid {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format!("0x{}", hex::encode(self.0)))
    }
}

/// Time in force of a limit order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub(crate) enum Tif {
    /// Add liquidity only (post-only).
    Alo,
    /// Immediate or cancel.
    Ioc,
    /// Good till cancelled.
    Gtc,
}

/// Take-profit or stop-loss trigger. (No intent asks for a trigger order yet: the SDK's vectors
/// and the differential test use them.)
#[cfg_attr(not(test), allow(dead_code))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Tpsl {
    /// Take profit.
    Tp,
    /// Stop loss.
    Sl,
}

/// `t` of an order: `{"limit": {"tif"}}` or `{"trigger": {"isMarket", "triggerPx", "tpsl"}}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub(crate) enum OrderType {
    /// A resting or immediate limit order.
    #[serde(rename = "limit")]
    Limit {
        /// Time in force.
        tif: Tif,
    },
    /// A trigger (stop or take-profit) order; field order as the SDK's `order_type_to_wire`.
    #[cfg_attr(not(test), allow(dead_code))]
    #[serde(rename = "trigger")]
    Trigger {
        /// Execute as a market order when triggered.
        #[serde(rename = "isMarket")]
        is_market: bool,
        /// The trigger price.
        #[serde(rename = "triggerPx")]
        trigger_px: WireDecimal,
        /// Take profit or stop loss.
        tpsl: Tpsl,
    },
}

/// One order of an `order` action (the SDK's `OrderWire`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub(crate) struct OrderWire {
    /// Asset index (perpetuals: the position in `meta.universe`).
    pub a: u32,
    /// Buy (long) if true.
    pub b: bool,
    /// Limit price.
    pub p: WireDecimal,
    /// Size in the asset's units.
    pub s: WireDecimal,
    /// Reduce only.
    pub r: bool,
    /// Order type.
    pub t: OrderType,
    /// Client order id, present only when set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub c: Option<Cloid>,
}

/// `{"type": "order", "orders": [...], "grouping": "na"}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub(crate) struct OrderAction {
    #[serde(rename = "type")]
    kind: &'static str,
    orders: Vec<OrderWire>,
    grouping: &'static str,
}

impl OrderAction {
    /// Orders with no grouping (`na`) and no builder fee.
    pub(crate) fn new(orders: Vec<OrderWire>) -> OrderAction {
        OrderAction {
            kind: "order",
            orders,
            grouping: "na",
        }
    }
}

/// One cancel: asset index and order id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub(crate) struct CancelWire {
    /// Asset index.
    pub a: u32,
    /// Order id.
    pub o: u64,
}

/// `{"type": "cancel", "cancels": [...]}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub(crate) struct CancelAction {
    #[serde(rename = "type")]
    kind: &'static str,
    cancels: Vec<CancelWire>,
}

impl CancelAction {
    /// Cancels of the given orders.
    pub(crate) fn new(cancels: Vec<CancelWire>) -> CancelAction {
        CancelAction {
            kind: "cancel",
            cancels,
        }
    }
}

/// `{"type": "scheduleCancel", "time"?}`: the dead-man switch (every open order is cancelled at
/// `time`, in ms; without `time`, a scheduled cancel is removed).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub(crate) struct ScheduleCancelAction {
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    time: Option<u64>,
}

impl ScheduleCancelAction {
    /// Schedules (or with `None` removes) the cancel-all at `time` ms.
    pub(crate) const fn new(time: Option<u64>) -> ScheduleCancelAction {
        ScheduleCancelAction {
            kind: "scheduleCancel",
            time,
        }
    }
}

/// `{"type": "updateLeverage", "asset", "isCross", "leverage"}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub(crate) struct UpdateLeverageAction {
    #[serde(rename = "type")]
    kind: &'static str,
    asset: u32,
    #[serde(rename = "isCross")]
    is_cross: bool,
    leverage: u32,
}

impl UpdateLeverageAction {
    /// Sets the leverage of `asset`, cross or isolated margin.
    pub(crate) const fn new(asset: u32, is_cross: bool, leverage: u32) -> UpdateLeverageAction {
        UpdateLeverageAction {
            kind: "updateLeverage",
            asset,
            is_cross,
            leverage,
        }
    }
}

/// The MessagePack bytes the exchange hashes: struct fields as a map, in declaration order.
pub(crate) fn pack<A: Serialize>(action: &A) -> Result<Vec<u8>, HyperliquidError> {
    rmp_serde::to_vec_named(action).map_err(|e| HyperliquidError::Encode(e.to_string()))
}
