//! The orchestrator's USD estimate of a request (`context.usd_estimate`): what the operator
//! reads next to an amount ("≈ $1,250.00"), with the mark it came from and the name of the
//! price source. The signer has no prices: it never decides on this figure, it only shows it
//! in the texts it renders, labelled as the orchestrator's word and not checked.
//!
//! Bounded like every field: micro-USD as a digit string (no sign, no exponent, no fraction),
//! at most [`MAX_USD_ESTIMATE_MICROS`] (one trillion dollars); the mark a non-negative decimal
//! ([`PerpDecimal`]); the source a short lower-case name.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::perp::PerpDecimal;
use crate::types::truncate;

/// The largest estimate accepted, micro-USD: one trillion dollars. More is no estimate of
/// anything an agent could do; it is refused, not shown.
pub const MAX_USD_ESTIMATE_MICROS: u64 = 1_000_000_000_000_000_000;
/// The longest price-source name.
pub const MAX_PRICE_SOURCE_LEN: usize = 40;

/// `{"micros": "1250000000", "mark": "2500", "source": "hyperliquid_all_mids"}`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UsdEstimate {
    /// The estimate, micro-USD.
    pub micros: UsdMicros,
    /// The price of one unit of the asset, USD, that the estimate came from.
    pub mark: UsdMark,
    /// Where the mark was read (`hyperliquid_all_mids`, `aave_oracle`, `solana_price`).
    pub source: PriceSource,
}

/// A USD amount in micro-USD, at most [`MAX_USD_ESTIMATE_MICROS`]; a digit string on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct UsdMicros(u64);

/// The mark an estimate came from: a non-negative decimal ([`PerpDecimal`]'s rules), USD per
/// unit of the asset.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct UsdMark(PerpDecimal);

/// A price source's name: 1–40 of `a-z`, `0-9`, `_`, `-`, `.`, `:`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct PriceSource(String);

impl UsdMicros {
    /// `micros` when within the bound.
    pub fn new(micros: u64) -> Result<UsdMicros, String> {
        if micros > MAX_USD_ESTIMATE_MICROS {
            return Err(format!(
                "usd_estimate.micros {micros} is more than {MAX_USD_ESTIMATE_MICROS} (one trillion dollars): no estimate is that large; send a correct estimate or none"
            ));
        }
        Ok(UsdMicros(micros))
    }

    /// The value, micro-USD.
    pub const fn get(self) -> u64 {
        self.0
    }
}

impl TryFrom<String> for UsdMicros {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        let bad = |why: &str| {
            Err(format!(
                "usd_estimate.micros {:?} {why}; write whole micro-USD as digits, e.g. \"1250000000\" for $1,250, or leave the estimate out",
                truncate(&s)
            ))
        };
        if s.is_empty() || s.len() > 20 {
            return bad("is empty or longer than 20 characters");
        }
        if s.starts_with('-') {
            return bad("is negative");
        }
        if !s.bytes().all(|b| b.is_ascii_digit()) {
            return bad("is not made of digits");
        }
        if s.len() > 1 && s.starts_with('0') {
            return bad("has a leading zero");
        }
        match s.parse::<u64>() {
            Ok(v) => UsdMicros::new(v),
            Err(_) => bad("is too large"),
        }
    }
}

impl From<UsdMicros> for String {
    fn from(v: UsdMicros) -> String {
        v.0.to_string()
    }
}

impl TryFrom<String> for UsdMark {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        PerpDecimal::try_from(s)
            .map(UsdMark)
            .map_err(|e| format!("usd_estimate.mark: {e}"))
    }
}

impl std::str::FromStr for UsdMark {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Self::try_from(s.to_owned())
    }
}

impl From<UsdMark> for String {
    fn from(v: UsdMark) -> String {
        v.0.into()
    }
}

impl fmt::Display for UsdMark {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl TryFrom<String> for PriceSource {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        let ok = !s.is_empty()
            && s.len() <= MAX_PRICE_SOURCE_LEN
            && s.bytes().all(|b| {
                b.is_ascii_lowercase()
                    || b.is_ascii_digit()
                    || matches!(b, b'_' | b'-' | b'.' | b':')
            });
        if ok {
            Ok(PriceSource(s))
        } else {
            Err(format!(
                "usd_estimate.source {:?} is not a price source's name: use 1-{MAX_PRICE_SOURCE_LEN} of a-z, 0-9, _ - . :, e.g. \"aave_oracle\"",
                truncate(&s)
            ))
        }
    }
}

impl std::str::FromStr for PriceSource {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Self::try_from(s.to_owned())
    }
}

impl From<PriceSource> for String {
    fn from(v: PriceSource) -> String {
        v.0
    }
}

impl PriceSource {
    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for PriceSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Display for UsdMicros {
    /// `$1,250.00`: dollars with thousands separators and cents (rounded half up).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&format_usd_micros(self.0))
    }
}

/// `$1,250.00` for 1 250 000 000 µUSD: dollars with thousands separators, cents rounded half up.
pub fn format_usd_micros(micros: u64) -> String {
    let cents = micros / 10_000 + u64::from(micros % 10_000 >= 5_000);
    let dollars = (cents / 100).to_string();
    let mut grouped = String::with_capacity(dollars.len() + dollars.len() / 3);
    for (i, c) in dollars.chars().enumerate() {
        if i > 0 && (dollars.len() - i).is_multiple_of(3) {
            grouped.push(',');
        }
        grouped.push(c);
    }
    format!("${grouped}.{:02}", cents % 100)
}

/// What the signer shows of a request's estimate: labelled as the orchestrator's word, or
/// "no USD estimate" when the request carries none.
pub fn usd_label(estimate: Option<&UsdEstimate>) -> String {
    match estimate {
        Some(e) => format!(
            "≈ {} by the orchestrator's estimate (mark {} from {}; not checked by the signer)",
            e.micros, e.mark, e.source
        ),
        None => "no USD estimate".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn estimates_parse_strictly() {
        let ok = r#"{"micros":"1250000000","mark":"2500","source":"hyperliquid_all_mids"}"#;
        let e: UsdEstimate = serde_json::from_str(ok).unwrap();
        assert_eq!(e.micros.get(), 1_250_000_000);
        assert_eq!(e.micros.to_string(), "$1,250.00");
        for (bad, names) in [
            (r#"{"micros":"-5","mark":"1","source":"x"}"#, "is negative"),
            (r#"{"micros":5,"mark":"1","source":"x"}"#, "string"),
            (r#"{"micros":"1.5","mark":"1","source":"x"}"#, "digits"),
            (
                r#"{"micros":"1000000000000000001","mark":"1","source":"x"}"#,
                "one trillion",
            ),
            (
                r#"{"micros":"99999999999999999999","mark":"1","source":"x"}"#,
                "too large",
            ),
            (r#"{"micros":"01","mark":"1","source":"x"}"#, "leading zero"),
            (
                r#"{"micros":"1","mark":"-1","source":"x"}"#,
                "usd_estimate.mark",
            ),
            (
                r#"{"micros":"1","mark":"1","source":"Evil Source"}"#,
                "price source",
            ),
            (r#"{"micros":"1","mark":"1","source":""}"#, "price source"),
            (
                r#"{"micros":"1","mark":"1","source":"x","checked":true}"#,
                "unknown field",
            ),
            (r#"{"micros":"1","mark":"1"}"#, "missing field"),
        ] {
            let err = serde_json::from_str::<UsdEstimate>(bad)
                .unwrap_err()
                .to_string();
            assert!(err.contains(names), "{bad}: {err}");
        }
        let top = format!(r#"{{"micros":"{MAX_USD_ESTIMATE_MICROS}","mark":"1","source":"x"}}"#);
        assert!(serde_json::from_str::<UsdEstimate>(&top).is_ok());
    }

    #[test]
    fn dollars_read_with_separators_and_cents() {
        assert_eq!(format_usd_micros(0), "$0.00");
        assert_eq!(format_usd_micros(4_999), "$0.00");
        assert_eq!(format_usd_micros(5_000), "$0.01");
        assert_eq!(format_usd_micros(300_000_000), "$300.00");
        assert_eq!(format_usd_micros(1_000_004_999), "$1,000.00");
        assert_eq!(format_usd_micros(1_234_567_890_000), "$1,234,567.89");
        assert_eq!(
            format_usd_micros(MAX_USD_ESTIMATE_MICROS),
            "$1,000,000,000,000.00"
        );
    }

    #[test]
    fn the_label_names_whose_estimate_it_is() {
        let e = UsdEstimate {
            micros: UsdMicros::new(300_000_000).unwrap(),
            mark: "150".parse().unwrap(),
            source: "solana_price".parse().unwrap(),
        };
        assert_eq!(
            usd_label(Some(&e)),
            "≈ $300.00 by the orchestrator's estimate (mark 150 from solana_price; not checked by the signer)"
        );
        assert_eq!(usd_label(None), "no USD estimate");
    }
}
