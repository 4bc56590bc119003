//! Layer 1 for the Hyperliquid actions: `perp_order` takes `side`, `size`, `limit_px`, `tif`
//! and, optionally, `reduce_only`; `perp_cancel` takes `oid`; both take `asset` (the
//! perpetual's coin) and never `to` or `amount`. Every other action takes none of these keys.
//! Sizes and prices are decimal strings ([`PerpDecimal`]: digits, at most 8 after the point),
//! above zero, never JSON numbers.

use serde_json::Value;
use vigil_protocol::{PerpDecimal, Side, TimeInForce, truncate};

use super::{Action, SchemaError, wrong_type};

/// What a perpetual's action carries besides its asset.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub(crate) enum PerpDecision {
    /// A limit order.
    Order(PerpOrderFields),
    /// Cancel the open order with this id.
    Cancel {
        /// The exchange's order id.
        oid: u64,
    },
}

/// A limit order's fields.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub(crate) struct PerpOrderFields {
    pub side: Side,
    /// Size in the coin, above 0.
    pub size: PerpDecimal,
    /// The worst price accepted, USD, above 0.
    pub limit_px: PerpDecimal,
    pub tif: TimeInForce,
    pub reduce_only: bool,
}

/// The raw values of the perpetuals' keys, each at most once.
#[derive(Default)]
pub(super) struct RawPerp {
    pub side: Option<Value>,
    pub size: Option<Value>,
    pub limit_px: Option<Value>,
    pub tif: Option<Value>,
    pub reduce_only: Option<Value>,
    pub oid: Option<Value>,
}

/// The perpetual's fields of `action`, or `None` for another action; a key where it does not
/// belong, or a missing or malformed one, is an error naming it. `null` counts as absent.
pub(super) fn fields(
    action: Action,
    raw: RawPerp,
    has_to: bool,
    has_amount: bool,
) -> Result<Option<PerpDecision>, SchemaError> {
    let present = |v: Option<Value>| v.filter(|v| !v.is_null());
    let side = present(raw.side);
    let size = present(raw.size);
    let limit_px = present(raw.limit_px);
    let tif = present(raw.tif);
    let reduce_only = present(raw.reduce_only);
    let oid = present(raw.oid);
    let not_allowed = |field| Err(SchemaError::NotAllowedForAction { action, field });
    let order_keys = [
        ("side", side.is_some()),
        ("size", size.is_some()),
        ("limit_px", limit_px.is_some()),
        ("tif", tif.is_some()),
        ("reduce_only", reduce_only.is_some()),
    ];
    if !action.is_perp() {
        for (field, here) in order_keys.into_iter().chain([("oid", oid.is_some())]) {
            if here {
                return not_allowed(field);
            }
        }
        return Ok(None);
    }
    for (field, here) in [("to", has_to), ("amount", has_amount)] {
        if here {
            return not_allowed(field);
        }
    }
    let missing = |field| SchemaError::MissingForAction { action, field };
    if action == Action::PerpCancel {
        for (field, here) in order_keys {
            if here {
                return not_allowed(field);
            }
        }
        let oid = oid.ok_or_else(|| missing("oid"))?;
        return Ok(Some(PerpDecision::Cancel {
            oid: parse_oid(&oid)?,
        }));
    }
    if oid.is_some() {
        return not_allowed("oid");
    }
    let side = match string("side", side.ok_or_else(|| missing("side"))?)?.as_str() {
        "buy" => Side::Buy,
        "sell" => Side::Sell,
        other => return Err(bad_word("side", other, "\"buy\" or \"sell\"")),
    };
    let tif = match string("tif", tif.ok_or_else(|| missing("tif"))?)?.as_str() {
        "gtc" => TimeInForce::Gtc,
        "ioc" => TimeInForce::Ioc,
        "alo" => TimeInForce::Alo,
        other => return Err(bad_word("tif", other, "\"gtc\", \"ioc\" or \"alo\"")),
    };
    let reduce_only = match reduce_only {
        None => false,
        Some(Value::Bool(b)) => b,
        Some(other) => return Err(wrong_type("reduce_only", "true or false", &other)),
    };
    Ok(Some(PerpDecision::Order(PerpOrderFields {
        side,
        size: decimal("size", size.ok_or_else(|| missing("size"))?)?,
        limit_px: decimal("limit_px", limit_px.ok_or_else(|| missing("limit_px"))?)?,
        tif,
        reduce_only,
    })))
}

fn string(field: &'static str, v: Value) -> Result<String, SchemaError> {
    match v {
        Value::String(s) => Ok(s),
        other => Err(wrong_type(field, "a string", &other)),
    }
}

fn bad_word(field: &'static str, found: &str, allowed: &'static str) -> SchemaError {
    SchemaError::BadWord {
        field,
        found: truncate(found),
        allowed,
    }
}

/// A positive decimal string.
fn decimal(field: &'static str, v: Value) -> Result<PerpDecimal, SchemaError> {
    let bad = |why: String| SchemaError::BadDecimal { field, why };
    let text = match v {
        Value::String(s) => s,
        Value::Number(n) => {
            return Err(bad(format!(
                "{} is a JSON number, not a string",
                truncate(&n.to_string())
            )));
        }
        other => return Err(wrong_type(field, "a decimal string", &other)),
    };
    let d: PerpDecimal = text.parse().map_err(bad)?;
    if d.as_str().bytes().all(|b| b == b'0' || b == b'.') {
        return Err(bad(format!("{:?} is zero", truncate(&text))));
    }
    Ok(d)
}

fn parse_oid(v: &Value) -> Result<u64, SchemaError> {
    v.as_u64()
        .ok_or_else(|| SchemaError::BadOid(truncate(&v.to_string())))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use vigil_protocol::AssetSymbol;

    use super::super::{AgentDecision, parse_decision};
    use super::*;

    const WHY: &str = r#""confidence": 0.6, "reasoning": "The mark is below the moving average.""#;

    fn reply(body: &str) -> String {
        format!("{{{body}, {WHY}}}")
    }

    fn parse(body: &str) -> Result<AgentDecision, SchemaError> {
        parse_decision(&reply(body))
    }

    const ORDER: &str = r#""action": "perp_order", "asset": "ETH", "side": "buy", "size": "0.05", "limit_px": "2500.5", "tif": "gtc""#;

    #[test]
    fn an_order_and_a_cancel_parse() {
        let d = parse(ORDER).unwrap();
        assert_eq!(d.action, Action::PerpOrder);
        assert_eq!(d.asset, Some("ETH".parse::<AssetSymbol>().unwrap()));
        let Some(PerpDecision::Order(o)) = d.perp else {
            panic!("{:?}", d.perp)
        };
        assert_eq!(
            (
                o.side,
                o.size.as_str(),
                o.limit_px.as_str(),
                o.tif,
                o.reduce_only
            ),
            (Side::Buy, "0.05", "2500.5", TimeInForce::Gtc, false)
        );
        let d = parse(&format!(r#"{ORDER}, "reduce_only": true"#)).unwrap();
        assert!(matches!(d.perp, Some(PerpDecision::Order(o)) if o.reduce_only));
        let d = parse(r#""action": "perp_cancel", "asset": "ETH", "oid": 77"#).unwrap();
        assert_eq!(d.perp, Some(PerpDecision::Cancel { oid: 77 }));
        for (word, tif) in [("ioc", TimeInForce::Ioc), ("alo", TimeInForce::Alo)] {
            let d = parse(&ORDER.replace("\"gtc\"", &format!("\"{word}\""))).unwrap();
            assert!(matches!(d.perp, Some(PerpDecision::Order(o)) if o.tif == tif));
        }
        // `null` for an optional key is absent.
        let d = parse(&format!(r#"{ORDER}, "reduce_only": null, "oid": null"#)).unwrap();
        assert!(matches!(d.perp, Some(PerpDecision::Order(o)) if !o.reduce_only));
    }

    #[test]
    fn every_malformed_shape_gets_its_own_error() {
        use SchemaError::*;
        let na = |action, field| NotAllowedForAction { action, field };
        let missing = |action, field| MissingForAction { action, field };
        let cancel = r#""action": "perp_cancel", "asset": "ETH", "oid": 77"#;
        let cases: Vec<(String, SchemaError)> = vec![
            (
                ORDER.replace(r#", "side": "buy""#, ""),
                missing(Action::PerpOrder, "side"),
            ),
            (
                ORDER.replace(r#", "size": "0.05""#, ""),
                missing(Action::PerpOrder, "size"),
            ),
            (
                ORDER.replace(r#", "limit_px": "2500.5""#, ""),
                missing(Action::PerpOrder, "limit_px"),
            ),
            (
                ORDER.replace(r#", "tif": "gtc""#, ""),
                missing(Action::PerpOrder, "tif"),
            ),
            (
                ORDER.replace(r#", "asset": "ETH""#, ""),
                missing(Action::PerpOrder, "asset"),
            ),
            (
                cancel.replace(r#", "oid": 77"#, ""),
                missing(Action::PerpCancel, "oid"),
            ),
            (
                format!(r#"{ORDER}, "to": "treasury""#),
                na(Action::PerpOrder, "to"),
            ),
            (
                format!(r#"{ORDER}, "amount": "5""#),
                na(Action::PerpOrder, "amount"),
            ),
            (
                format!(r#"{ORDER}, "oid": 5"#),
                na(Action::PerpOrder, "oid"),
            ),
            (
                format!(r#"{cancel}, "side": "buy""#),
                na(Action::PerpCancel, "side"),
            ),
            (
                format!(r#"{cancel}, "size": "1""#),
                na(Action::PerpCancel, "size"),
            ),
            (
                format!(r#"{cancel}, "amount": "1""#),
                na(Action::PerpCancel, "amount"),
            ),
            (
                r#""action": "transfer", "asset": "SOL", "to": "t", "amount": "5", "side": "buy""#
                    .into(),
                na(Action::Transfer, "side"),
            ),
            (
                r#""action": "hold", "oid": 1"#.into(),
                na(Action::Hold, "oid"),
            ),
            (
                r#""action": "aave_supply", "asset": "USDC", "amount": "5", "limit_px": "1""#
                    .into(),
                na(Action::AaveSupply, "limit_px"),
            ),
            (
                ORDER.replace("\"buy\"", "\"long\""),
                BadWord {
                    field: "side",
                    found: "long".into(),
                    allowed: "\"buy\" or \"sell\"",
                },
            ),
            (
                ORDER.replace("\"gtc\"", "\"Gtc\""),
                BadWord {
                    field: "tif",
                    found: "Gtc".into(),
                    allowed: "\"gtc\", \"ioc\" or \"alo\"",
                },
            ),
            (
                format!(r#"{ORDER}, "reduce_only": "yes""#),
                WrongType {
                    field: "reduce_only",
                    expected: "true or false",
                    found: "\"yes\"".into(),
                },
            ),
            (
                ORDER.replace("\"buy\"", "1"),
                WrongType {
                    field: "side",
                    expected: "a string",
                    found: "1".into(),
                },
            ),
            (cancel.replace("77", "\"77\""), BadOid("\"77\"".into())),
            (cancel.replace("77", "-1"), BadOid("-1".into())),
            (cancel.replace("77", "1.5"), BadOid("1.5".into())),
        ];
        for (body, want) in cases {
            assert_eq!(parse(&body), Err(want), "{body}");
        }
        // Numbers that are not positive decimal strings.
        for (bad, word) in [
            (r#""size": 0.05"#, "JSON number"),
            (r#""size": "0""#, "zero"),
            (r#""size": "0.000""#, "zero"),
            (r#""size": "-1""#, "not a decimal"),
            (r#""size": "1e3""#, "not a decimal"),
            (r#""size": "0.123456789""#, "8 digits"),
        ] {
            let body = ORDER.replace(r#""size": "0.05""#, bad);
            let e = parse(&body).unwrap_err();
            assert!(
                matches!(&e, BadDecimal { field: "size", .. }) && e.to_string().contains(word),
                "{body}: {e}"
            );
        }
        let e = parse(&ORDER.replace(r#""2500.5""#, "2500.5")).unwrap_err();
        assert!(
            matches!(
                e,
                BadDecimal {
                    field: "limit_px",
                    ..
                }
            ),
            "{e}"
        );
        // An unknown key and an unknown action still name the new keys and actions.
        let e = parse(&format!(r#"{ORDER}, "leverage": 50"#)).unwrap_err();
        assert!(
            e.to_string().contains("limit_px, tif, reduce_only, oid"),
            "{e}"
        );
        let e = parse(r#""action": "perp_withdraw", "asset": "USDC""#).unwrap_err();
        assert!(e.to_string().contains("\"perp_cancel\""), "{e}");
    }
}
