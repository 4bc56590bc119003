//! A signed Hyperliquid action as the signer answered it: the exact JSON body to POST to
//! `/exchange`, kept as bytes.
//!
//! The exchange hashes an L1 action in the field order it receives (msgpack of the action as
//! written), so the body must reach it byte for byte as the signer wrote it: turning it into a
//! `serde_json::Value` and back would sort the keys and break a correct signature. This type
//! checks the body once (one JSON object, each top-level key once, only the keys of an
//! `/exchange` request, an `action` object whose `type` is one the orchestrator may post, a
//! whole-number `nonce`, a `signature` of `r`, `s`, `v`) and never re-serialises it.

use std::fmt;

use base64::Engine as _;
use serde_json::Value;
use serde_json::value::RawValue;

use super::super::jsonrpc::{RpcError, quote_str};
use crate::json_fields::Fields;

/// The largest body accepted from the signer (an order action is a few hundred bytes).
const MAX_BODY_BYTES: usize = 16 * 1024;

/// The action types the orchestrator posts (the L1 actions of an agent's API wallet and the
/// user-signed ones the operator approved).
const ACTION_TYPES: &[&str] = &[
    "order",
    "cancel",
    "scheduleCancel",
    "updateLeverage",
    "usdSend",
    "withdraw3",
    "approveAgent",
];

/// The top-level keys of an `/exchange` request.
const KEYS: &[&str] = &[
    "action",
    "nonce",
    "signature",
    "vaultAddress",
    "expiresAfter",
];

/// A checked `/exchange` body, posted exactly as the signer wrote it.
#[derive(Clone, PartialEq, Eq)]
pub struct SignedAction {
    body: Vec<u8>,
    action_type: String,
    nonce: u64,
}

impl fmt::Debug for SignedAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SignedAction")
            .field("action_type", &self.action_type)
            .field("nonce", &self.nonce)
            .field("bytes", &self.body.len())
            .finish()
    }
}

impl SignedAction {
    /// The signer's `Signed.tx`: base64 of the body.
    pub fn from_base64(tx: &str) -> Result<SignedAction, RpcError> {
        let body = base64::engine::general_purpose::STANDARD
            .decode(tx.trim())
            .map_err(|e| bad(format!("the signer's body is not base64 ({e})")))?;
        SignedAction::from_body(body)
    }

    /// The body as bytes, checked (see the module docs).
    pub fn from_body(body: Vec<u8>) -> Result<SignedAction, RpcError> {
        if body.len() > MAX_BODY_BYTES {
            return Err(bad(format!(
                "the body is {} bytes, more than {MAX_BODY_BYTES}",
                body.len()
            )));
        }
        let text = std::str::from_utf8(&body).map_err(|_| bad("the body is not UTF-8".into()))?;
        let fields: Fields<Box<RawValue>> = serde_json::from_str(text)
            .map_err(|e| bad(format!("the body is not one JSON object ({e})")))?;
        let mut action = None;
        let mut nonce = None;
        let mut signature = None;
        for (i, (key, value)) in fields.0.iter().enumerate() {
            if !KEYS.contains(&key.as_str()) {
                return Err(bad(format!(
                    "the body has key {}, not one of {}",
                    quote_str(key),
                    KEYS.join(", ")
                )));
            }
            if fields.0[..i].iter().any(|(k, _)| k == key) {
                return Err(bad(format!("the body has key {} twice", quote_str(key))));
            }
            match key.as_str() {
                "action" => action = Some(value),
                "nonce" => nonce = Some(value),
                "signature" => signature = Some(value),
                _ => {}
            }
        }
        let action: Value = action
            .map(|a| serde_json::from_str(a.get()))
            .transpose()
            .map_err(|e| bad(format!("the action is not JSON ({e})")))?
            .ok_or_else(|| bad("the body has no action".into()))?;
        let action_type = action
            .get("type")
            .and_then(Value::as_str)
            .filter(|t| ACTION_TYPES.contains(t))
            .ok_or_else(|| {
                bad(format!(
                    "the action's type is not one of {}",
                    ACTION_TYPES.join(", ")
                ))
            })?
            .to_owned();
        let nonce = nonce
            .and_then(|n| n.get().parse::<u64>().ok())
            .ok_or_else(|| bad("the body's nonce is not a whole number".into()))?;
        let signature: Value = signature
            .map(|s| serde_json::from_str(s.get()))
            .transpose()
            .map_err(|e| bad(format!("the signature is not JSON ({e})")))?
            .ok_or_else(|| bad("the body has no signature".into()))?;
        let rsv = ["r", "s", "v"].iter().all(|k| signature.get(k).is_some())
            && signature.as_object().is_some_and(|o| o.len() == 3);
        if !rsv {
            return Err(bad("the signature is not {r, s, v}".into()));
        }
        Ok(SignedAction {
            body,
            action_type,
            nonce,
        })
    }

    /// The exact bytes to POST.
    pub fn body(&self) -> &[u8] {
        &self.body
    }

    /// The action's `type` (`order`, `cancel`, ...).
    pub fn action_type(&self) -> &str {
        &self.action_type
    }

    /// The nonce the signer chose.
    pub fn nonce(&self) -> u64 {
        self.nonce
    }
}

fn bad(why: String) -> RpcError {
    RpcError::BadInput(format!(
        "the signed Hyperliquid action cannot be posted: {why}; nothing was sent"
    ))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    const SIG: &str = r#"{"r":"0x01","s":"0x02","v":27}"#;

    fn body(action: &str, rest: &str) -> Vec<u8> {
        format!(r#"{{"action":{action},"nonce":1700000000000,"signature":{SIG}{rest}}}"#)
            .into_bytes()
    }

    #[test]
    fn the_body_is_kept_byte_for_byte() {
        // Keys deliberately not sorted: `type` first, `orders` before `grouping`.
        let action = r#"{"type":"order","orders":[{"a":1,"b":true,"p":"2500","s":"0.1","r":false,"t":{"limit":{"tif":"Gtc"}}}],"grouping":"na"}"#;
        let raw = body(action, r#","vaultAddress":null"#);
        let tx = base64::engine::general_purpose::STANDARD.encode(&raw);
        let s = SignedAction::from_base64(&tx).unwrap();
        assert_eq!(s.body(), raw.as_slice());
        assert_eq!((s.action_type(), s.nonce()), ("order", 1_700_000_000_000));
    }

    #[test]
    fn malformed_bodies_are_refused_naming_the_problem() {
        let order = r#"{"type":"order","orders":[],"grouping":"na"}"#;
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (b"[1]".to_vec(), "not one JSON object"),
            (b"{} {}".to_vec(), "not one JSON object"),
            (body(order, r#","extra":1"#), "key \"extra\""),
            (body(order, r#","nonce":2"#), "twice"),
            (body(r#"{"type":"spotSend"}"#, ""), "type is not one of"),
            (body(r#"{"orders":[]}"#, ""), "type is not one of"),
            (
                format!(r#"{{"action":{order},"nonce":"1","signature":{SIG}}}"#).into_bytes(),
                "nonce",
            ),
            (
                format!(r#"{{"action":{order},"nonce":1,"signature":{{"r":"0x1"}}}}"#).into_bytes(),
                "signature",
            ),
            (
                format!(r#"{{"nonce":1,"signature":{SIG}}}"#).into_bytes(),
                "no action",
            ),
            (vec![0xff, 0xfe], "UTF-8"),
            (vec![b' '; MAX_BODY_BYTES + 1], "more than"),
        ];
        for (raw, want) in cases {
            let e = SignedAction::from_body(raw.clone())
                .unwrap_err()
                .to_string();
            assert!(
                e.contains(want) && e.contains("nothing was sent"),
                "{}: {e}",
                String::from_utf8_lossy(&raw)
            );
        }
        assert!(SignedAction::from_base64("not base64!").is_err());
    }
}
