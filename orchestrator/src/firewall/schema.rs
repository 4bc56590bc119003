//! Layer 1 of the LLM firewall: the model's reply is data, parsed into a strict type.
//!
//! A reply must be exactly one JSON object (at most [`MAX_REPLY_BYTES`]) with the keys
//! `action`, `asset`, `to`, `amount`, `confidence` and `reasoning` and no others; the action
//! comes from a closed set, the amount is a decimal string of base units, the confidence a
//! number in 0..=1, the reasoning 20 to 2000 characters. Nothing in the reply is ever run,
//! evaluated or interpreted beyond this parse.
//!
//! One leniency, on purpose: many models wrap JSON in a single Markdown fence
//! (```` ```json … ``` ````) even in JSON mode. Exactly one outer fence around the whole
//! reply is stripped; anything else outside the object (prose, a second object, a second
//! fence) is rejected. `null` for `asset`, `to` or `amount` means "absent".
//!
//! A rejected reply gets [`correction_prompt`] and another try, at most
//! [`MAX_CORRECTIONS`] times; after that the agent holds ([`AgentDecision::hold`]).

use std::fmt;

use serde::Serialize;
use serde_json::Value;
use vigil_protocol::{Amount, AssetSymbol, truncate};

use crate::json_fields::Fields;

/// The largest reply parsed; anything longer is rejected unread.
pub(crate) const MAX_REPLY_BYTES: usize = 16 * 1024;
/// How many error-correcting follow-ups a reply gets before the agent holds.
pub(crate) const MAX_CORRECTIONS: u32 = 2;
/// Bounds of `reasoning`, in characters (after trimming surrounding whitespace).
pub(crate) const REASONING_CHARS: std::ops::RangeInclusive<usize> = 20..=2000;
/// Longest `to` accepted (a peer label or a base58 / hex address fits easily).
pub(crate) const MAX_TO_CHARS: usize = 128;

/// The reply format, as stated to the model in the prompt and in every correction.
pub(crate) const DECISION_SCHEMA: &str = r#"Reply with exactly one JSON object and nothing else (no prose, no Markdown):
{
  "action": "hold" | "transfer" | "aave_supply" | "aave_withdraw" | "aave_borrow" | "aave_repay" | "perp_order" | "perp_cancel",
  "asset": "SOL",                 // every action but hold: SOL on Solana; the EVM network's native asset (ETH) or one of its tokens (USDC); for perp_order and perp_cancel the perpetual's coin (ETH)
  "to": "<peer label or address>", // transfer only
  "amount": "<decimal string of base units, e.g. \"250000000\">", // transfer and the aave actions only
  "side": "buy" | "sell",         // perp_order only
  "size": "<decimal string in the coin, e.g. \"0.05\">", // perp_order only
  "limit_px": "<decimal string in USD, e.g. \"2500.5\">", // perp_order only: the worst price you accept
  "tif": "gtc" | "ioc" | "alo",   // perp_order only: good till cancelled, immediate or cancel, add liquidity only
  "reduce_only": true | false,    // perp_order only, optional (default false): only shrink the position
  "oid": <whole number>,          // perp_cancel only: the id of your open order
  "confidence": <number from 0 to 1>,
  "reasoning": "<20 to 2000 characters explaining the decision>"
}
aave_supply lends the asset to the Aave Pool, aave_withdraw takes supplied asset back, aave_borrow borrows it at the variable rate against what is supplied, aave_repay pays borrowed asset back; all for you yourself, never for anyone else.
perp_order places a limit order on your own Hyperliquid account; perp_cancel cancels one of your open orders. There is no action to set leverage, withdraw or transfer on Hyperliquid.
Give each action only its own keys; no other keys are allowed. The amount is a string of digits (no sign, decimal point or exponent), never a JSON number; size and limit_px are decimal strings, never JSON numbers.
Example:
{"action": "transfer", "asset": "SOL", "to": "treasury", "amount": "250000000", "confidence": 0.7, "reasoning": "The treasury is below its floor and this balance can cover it."}"#;

/// What an agent may decide: a closed set.
///
/// There is no `program_call`: it used to be turned into a plain SOL transfer to the
/// program's address, which is never a program call and can strand funds in a program
/// account. Real program calls come as venue intents the signer builds and decodes itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Do nothing this round. Always allowed; the fallback for every failure.
    Hold,
    /// Move `amount` of `asset` to `to`.
    Transfer,
    /// EVM: supply `amount` of the token `asset` to the policy's Aave Pool, for the agent.
    AaveSupply,
    /// EVM: withdraw `amount` of the supplied token `asset` from the Aave Pool to the agent.
    AaveWithdraw,
    /// EVM: borrow `amount` of the token `asset` from the Aave Pool at the variable rate.
    AaveBorrow,
    /// EVM: repay `amount` of the agent's variable-rate debt in the token `asset`.
    AaveRepay,
    /// Hyperliquid: a limit order on the perpetual `asset` (side, size, limit price, time in
    /// force, reduce-only).
    PerpOrder,
    /// Hyperliquid: cancel the agent's open order `oid` on the perpetual `asset`.
    PerpCancel,
}

impl Action {
    /// Every action, in declaration order.
    pub const ALL: [Action; 8] = [
        Action::Hold,
        Action::Transfer,
        Action::AaveSupply,
        Action::AaveWithdraw,
        Action::AaveBorrow,
        Action::AaveRepay,
        Action::PerpOrder,
        Action::PerpCancel,
    ];

    /// The name used in replies and config (the signer's intent kind for the others).
    pub const fn as_str(self) -> &'static str {
        match self {
            Action::Hold => "hold",
            Action::Transfer => "transfer",
            Action::AaveSupply => "aave_supply",
            Action::AaveWithdraw => "aave_withdraw",
            Action::AaveBorrow => "aave_borrow",
            Action::AaveRepay => "aave_repay",
            Action::PerpOrder => "perp_order",
            Action::PerpCancel => "perp_cancel",
        }
    }

    /// Whether the action is a Hyperliquid one (a perpetual, never a recipient or amount).
    pub const fn is_perp(self) -> bool {
        matches!(self, Action::PerpOrder | Action::PerpCancel)
    }

    /// Whether the action is one of Aave's (EVM only, no recipient).
    pub const fn is_aave(self) -> bool {
        matches!(
            self,
            Action::AaveSupply | Action::AaveWithdraw | Action::AaveBorrow | Action::AaveRepay
        )
    }

    /// The action named `s` in a reply or a config.
    pub(crate) fn from_wire(s: &str) -> Option<Action> {
        Action::ALL.into_iter().find(|a| a.as_str() == s)
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A reply that passed layer 1. Hold carries no asset, recipient or amount; transfer
/// carries all three; an Aave action an asset and an amount, never a recipient (the position
/// is always the agent's own).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub(crate) struct AgentDecision {
    /// What the agent wants to do.
    pub action: Action,
    /// The asset symbol (e.g. `SOL`), for transfer.
    pub asset: Option<AssetSymbol>,
    /// A peer label from the allowlist or an address; resolved by layer 2.
    pub to: Option<String>,
    /// The amount in base units, for transfer.
    pub amount: Option<Amount>,
    /// Hyperliquid: the order's or the cancel's own fields (`asset` is the perpetual).
    pub perp: Option<PerpDecision>,
    /// Confidence in thousandths, 0..=1000.
    pub confidence_milli: u16,
    /// The model's explanation (trimmed).
    pub reasoning: String,
}

impl AgentDecision {
    /// A hold with this reason (the tests' decision that does nothing).
    #[cfg(test)]
    pub(crate) fn hold(reason: impl Into<String>) -> Self {
        Self {
            action: Action::Hold,
            asset: None,
            to: None,
            amount: None,
            perp: None,
            confidence_milli: 0,
            reasoning: reason.into(),
        }
    }
}

/// Why a reply was rejected. Each message says what was wrong and how to fix it; the
/// message is sent back to the model in [`correction_prompt`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum SchemaError {
    /// The reply was longer than [`MAX_REPLY_BYTES`].
    #[error(
        "the reply is {0} bytes, more than the limit of {MAX_REPLY_BYTES}; reply with one short JSON object"
    )]
    TooLarge(usize),
    /// The reply was empty or only whitespace.
    #[error("the reply is empty; reply with one JSON object")]
    Empty,
    /// The reply did not start with `{` (e.g. prose before the object).
    #[error(
        "the reply must be exactly one JSON object with no text before or after it, but it starts with {0:?}"
    )]
    NotAnObject(String),
    /// The object was followed by more text or another object.
    #[error("the reply must be exactly one JSON object, but more follows it: {0:?}")]
    TrailingData(String),
    /// The JSON itself was malformed.
    #[error("the reply is not valid JSON: {0}")]
    Json(String),
    /// A key outside the schema.
    #[error(
        "unknown key {0:?}: the only keys allowed are action, asset, to, amount, side, size, limit_px, tif, reduce_only, oid, confidence, reasoning"
    )]
    UnknownField(String),
    /// A key given twice.
    #[error("key {0:?} appears more than once; give each key once")]
    DuplicateField(String),
    /// A required key was missing.
    #[error("key {0:?} is missing; it is required")]
    MissingField(&'static str),
    /// A key held a value of the wrong JSON type.
    #[error("key {field:?} must be {expected}, but it is {found}")]
    WrongType {
        /// The key.
        field: &'static str,
        /// What was expected, e.g. "a string".
        expected: &'static str,
        /// A short rendering of what was found.
        found: String,
    },
    /// `action` was not one of the closed set.
    #[error(
        "action {0:?} is not allowed: use exactly one of \"hold\", \"transfer\", \"aave_supply\", \"aave_withdraw\", \"aave_borrow\", \"aave_repay\", \"perp_order\", \"perp_cancel\""
    )]
    UnknownAction(String),
    /// `confidence` was outside 0..=1.
    #[error("confidence {0} is out of range: give a number from 0 to 1, e.g. 0.7")]
    ConfidenceOutOfRange(String),
    /// `reasoning` was shorter than 20 characters.
    #[error(
        "reasoning is {0} characters, fewer than the minimum of 20; explain the decision in at least 20 characters"
    )]
    ReasoningTooShort(usize),
    /// `reasoning` was longer than 2000 characters.
    #[error("reasoning is {0} characters, more than the maximum of 2000; shorten it")]
    ReasoningTooLong(usize),
    /// `amount` was not a valid decimal string of base units.
    #[error("{0}; give the amount as a JSON string of base-unit digits, e.g. \"250000000\"")]
    BadAmount(String),
    /// `asset` was not a short upper-case symbol.
    #[error("asset {0:?} is not a symbol: use 1-10 upper-case letters or digits, e.g. \"SOL\"")]
    BadAsset(String),
    /// `to` was empty, too long or held control characters.
    #[error(
        "to {0:?} is not a recipient: give a peer label from the list or its address (1-128 characters, no control characters)"
    )]
    BadRecipient(String),
    /// transfer without one of asset, to, amount; an Aave action without asset or amount.
    #[error("action {action} needs key {field:?}; {}", needs(*.action))]
    MissingForAction {
        /// The action.
        action: Action,
        /// The missing key.
        field: &'static str,
    },
    /// hold carrying asset, to or amount.
    #[error("action hold must not carry key {0:?}; omit asset, to and amount when holding")]
    NotAllowedForHold(&'static str),
    /// An Aave action naming a recipient: the position is always the agent's own.
    #[error(
        "action {0} must not carry key \"to\": an Aave position is always your own; omit \"to\""
    )]
    RecipientNotAllowed(Action),
    /// A key that belongs to other actions (a perpetual's key on a transfer, `to` or `amount`
    /// on a perpetual's action, `oid` on an order, an order's keys on a cancel).
    #[error("action {action} must not carry key {field:?}; {}", keys_of(*.action))]
    NotAllowedForAction {
        /// The action.
        action: Action,
        /// The key that does not belong.
        field: &'static str,
    },
    /// `size` or `limit_px` not a positive decimal string.
    #[error(
        "{field} {why}; give it as a JSON string of digits with at most 8 after the point, above 0, e.g. \"0.05\""
    )]
    BadDecimal {
        /// The key.
        field: &'static str,
        /// What is wrong.
        why: String,
    },
    /// `side`, `tif` not one of their words.
    #[error("{field} {found:?} is not allowed: use {allowed}")]
    BadWord {
        /// The key.
        field: &'static str,
        /// What was given.
        found: String,
        /// The words allowed.
        allowed: &'static str,
    },
    /// `oid` not a whole number.
    #[error("oid {0} is not an order id: give the open order's id as a JSON whole number, e.g. 77")]
    BadOid(String),
}

/// The keys an action takes, for [`SchemaError::NotAllowedForAction`].
fn keys_of(action: Action) -> &'static str {
    match action {
        Action::Hold => "hold takes no asset, to, amount or order keys",
        Action::Transfer => "transfer takes asset, to and amount",
        Action::PerpOrder => "perp_order takes asset, side, size, limit_px, tif and reduce_only",
        Action::PerpCancel => "perp_cancel takes asset and oid",
        Action::AaveSupply | Action::AaveWithdraw | Action::AaveBorrow | Action::AaveRepay => {
            "an Aave action takes asset and amount"
        }
    }
}

/// What an action needs, for [`SchemaError::MissingForAction`].
fn needs(action: Action) -> &'static str {
    match action {
        Action::PerpOrder => "give asset, side, size, limit_px and tif",
        Action::PerpCancel => "give asset and oid",
        a if a.is_aave() => "give asset and amount",
        _ => "give asset, to and amount",
    }
}

/// Parses a model's reply into a decision, strictly. See the module docs for the rules.
pub(crate) fn parse_decision(reply: &str) -> Result<AgentDecision, SchemaError> {
    if reply.len() > MAX_REPLY_BYTES {
        return Err(SchemaError::TooLarge(reply.len()));
    }
    let body = strip_one_fence(reply.trim());
    if body.is_empty() {
        return Err(SchemaError::Empty);
    }
    if !body.starts_with('{') {
        return Err(SchemaError::NotAnObject(truncate(body)));
    }
    let fields = parse_one_object(body)?;
    decision_from_fields(fields)
}

/// The follow-up message sent after a rejected reply: the error, then the schema again.
pub(crate) fn correction_prompt(err: &SchemaError) -> String {
    format!(
        "Your previous reply was rejected and nothing was done: {err}.\n\
         Send the decision again, corrected.\n{DECISION_SCHEMA}"
    )
}

/// Removes exactly one Markdown code fence around the whole reply, if there is one:
/// a first line of ```` ``` ```` or ```` ```json ```` and a last line of ```` ``` ````.
fn strip_one_fence(reply: &str) -> &str {
    let Some(rest) = reply.strip_prefix("```") else {
        return reply;
    };
    let Some((tag, inner)) = rest.split_once('\n') else {
        return reply;
    };
    let tag = tag.trim();
    if !(tag.is_empty() || tag.eq_ignore_ascii_case("json")) {
        return reply;
    }
    match inner.trim_end().strip_suffix("```") {
        Some(inner) => inner.trim(),
        None => reply,
    }
}

/// Parses `body` as exactly one JSON object and nothing after it.
fn parse_one_object(body: &str) -> Result<Vec<(String, Value)>, SchemaError> {
    let mut stream = serde_json::Deserializer::from_str(body).into_iter::<Fields<Value>>();
    let fields = match stream.next() {
        Some(Ok(fields)) => fields,
        Some(Err(e)) => return Err(SchemaError::Json(e.to_string())),
        None => return Err(SchemaError::Empty),
    };
    let consumed = stream.byte_offset();
    let rest = body.get(consumed..).unwrap_or_default().trim_start();
    if !rest.is_empty() {
        return Err(SchemaError::TrailingData(truncate(rest)));
    }
    for (_, value) in &fields.0 {
        finite_numbers(value)?;
    }
    Ok(fields.0)
}

/// Refuses a number no `f64` holds (`1e400`) as malformed JSON. serde_json refuses it while
/// parsing unless its `arbitrary_precision` feature is on, and that feature is on in every
/// build of this workspace (the `starlark` crate turns it on; Cargo unifies features within
/// a build): this keeps layer 1's answer the same either way. Depth is bounded by
/// serde_json's recursion limit (128).
fn finite_numbers(value: &Value) -> Result<(), SchemaError> {
    match value {
        Value::Number(n) if !n.as_f64().is_some_and(f64::is_finite) => Err(SchemaError::Json(
            format!("number out of range: {}", truncate(&n.to_string())),
        )),
        Value::Array(items) => items.iter().try_for_each(finite_numbers),
        Value::Object(map) => map.values().try_for_each(finite_numbers),
        _ => Ok(()),
    }
}

/// The raw values of the known keys, each at most once.
#[derive(Default)]
struct Raw {
    action: Option<Value>,
    asset: Option<Value>,
    to: Option<Value>,
    amount: Option<Value>,
    confidence: Option<Value>,
    reasoning: Option<Value>,
    perp: perp::RawPerp,
}

fn decision_from_fields(fields: Vec<(String, Value)>) -> Result<AgentDecision, SchemaError> {
    let mut raw = Raw::default();
    for (key, value) in fields {
        let slot = match key.as_str() {
            "action" => &mut raw.action,
            "asset" => &mut raw.asset,
            "to" => &mut raw.to,
            "amount" => &mut raw.amount,
            "confidence" => &mut raw.confidence,
            "reasoning" => &mut raw.reasoning,
            "side" => &mut raw.perp.side,
            "size" => &mut raw.perp.size,
            "limit_px" => &mut raw.perp.limit_px,
            "tif" => &mut raw.perp.tif,
            "reduce_only" => &mut raw.perp.reduce_only,
            "oid" => &mut raw.perp.oid,
            _ => return Err(SchemaError::UnknownField(truncate(&key))),
        };
        if slot.replace(value).is_some() {
            return Err(SchemaError::DuplicateField(key));
        }
    }

    let action = parse_action(required("action", raw.action)?)?;
    let confidence_milli = parse_confidence(required("confidence", raw.confidence)?)?;
    let reasoning = parse_reasoning(required("reasoning", raw.reasoning)?)?;
    let asset = optional(raw.asset).map(parse_asset).transpose()?;
    let to = optional(raw.to).map(parse_to).transpose()?;
    let amount = optional(raw.amount).map(parse_amount).transpose()?;

    match action {
        Action::Hold => {
            for (field, present) in [
                ("asset", asset.is_some()),
                ("to", to.is_some()),
                ("amount", amount.is_some()),
            ] {
                if present {
                    return Err(SchemaError::NotAllowedForHold(field));
                }
            }
        }
        Action::Transfer => {
            for (field, present) in [
                ("asset", asset.is_some()),
                ("to", to.is_some()),
                ("amount", amount.is_some()),
            ] {
                if !present {
                    return Err(SchemaError::MissingForAction { action, field });
                }
            }
        }
        Action::AaveSupply | Action::AaveWithdraw | Action::AaveBorrow | Action::AaveRepay => {
            for (field, present) in [("asset", asset.is_some()), ("amount", amount.is_some())] {
                if !present {
                    return Err(SchemaError::MissingForAction { action, field });
                }
            }
            if to.is_some() {
                return Err(SchemaError::RecipientNotAllowed(action));
            }
        }
        // Checked in `perp::fields`: their own keys, and neither `to` nor `amount`.
        Action::PerpOrder | Action::PerpCancel => {}
    }
    let perp = perp::fields(action, raw.perp, to.is_some(), amount.is_some())?;
    if action.is_perp() && asset.is_none() {
        return Err(SchemaError::MissingForAction {
            action,
            field: "asset",
        });
    }
    Ok(AgentDecision {
        action,
        asset,
        to,
        amount,
        perp,
        confidence_milli,
        reasoning,
    })
}

fn required(field: &'static str, v: Option<Value>) -> Result<Value, SchemaError> {
    v.ok_or(SchemaError::MissingField(field))
}

/// `null` counts as absent for the optional keys.
fn optional(v: Option<Value>) -> Option<Value> {
    v.filter(|v| !v.is_null())
}

fn wrong_type(field: &'static str, expected: &'static str, found: &Value) -> SchemaError {
    SchemaError::WrongType {
        field,
        expected,
        found: truncate(&found.to_string()),
    }
}

fn as_string(field: &'static str, v: Value) -> Result<String, SchemaError> {
    match v {
        Value::String(s) => Ok(s),
        other => Err(wrong_type(field, "a string", &other)),
    }
}

fn parse_action(v: Value) -> Result<Action, SchemaError> {
    let s = as_string("action", v)?;
    Action::from_wire(&s).ok_or_else(|| SchemaError::UnknownAction(truncate(&s)))
}

fn parse_confidence(v: Value) -> Result<u16, SchemaError> {
    let Value::Number(n) = &v else {
        return Err(wrong_type("confidence", "a number from 0 to 1", &v));
    };
    match n.as_f64() {
        Some(c) if (0.0..=1.0).contains(&c) => {
            // The range check above bounds c * 1000 to 0.0..=1000.0: the cast cannot
            // truncate or lose a sign.
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            let milli = (c * 1000.0).round() as u16;
            Ok(milli)
        }
        _ => Err(SchemaError::ConfidenceOutOfRange(truncate(&n.to_string()))),
    }
}

fn parse_reasoning(v: Value) -> Result<String, SchemaError> {
    let s = as_string("reasoning", v)?;
    let trimmed = s.trim();
    let chars = trimmed.chars().count();
    if chars < *REASONING_CHARS.start() {
        return Err(SchemaError::ReasoningTooShort(chars));
    }
    if chars > *REASONING_CHARS.end() {
        return Err(SchemaError::ReasoningTooLong(chars));
    }
    Ok(trimmed.to_owned())
}

fn parse_asset(v: Value) -> Result<AssetSymbol, SchemaError> {
    let s = as_string("asset", v)?;
    s.parse().map_err(|_| SchemaError::BadAsset(truncate(&s)))
}

fn parse_to(v: Value) -> Result<String, SchemaError> {
    let s = as_string("to", v)?;
    let ok = !s.trim().is_empty()
        && s.chars().count() <= MAX_TO_CHARS
        && !s.chars().any(char::is_control);
    if ok {
        Ok(s)
    } else {
        Err(SchemaError::BadRecipient(truncate(&s)))
    }
}

fn parse_amount(v: Value) -> Result<Amount, SchemaError> {
    match v {
        Value::String(s) => Amount::parse_wire(&s).map_err(SchemaError::BadAmount),
        Value::Number(n) => Err(SchemaError::BadAmount(format!(
            "amount {} is a JSON number, not a string",
            truncate(&n.to_string())
        ))),
        other => Err(wrong_type("amount", "a string of digits", &other)),
    }
}

mod perp;
pub(crate) use perp::{PerpDecision, PerpOrderFields};

#[cfg(test)]
mod tests;
