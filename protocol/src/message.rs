//! The request/response envelope and the ops' fields and results.
//!
//! Parsing is two-step so that errors can be precise: the frame must be a UTF-8 JSON
//! object (else `bad_frame`, and the connection closes); then `v`, `id` and `op` are taken
//! out and the remaining fields are decoded into the op's own struct with unknown fields
//! rejected (else `bad_request`, and the connection stays open).

use std::collections::BTreeMap;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::PROTOCOL_VERSION;
use crate::import::ImportConfirmRequest;
use crate::intent::{Context, Intent};
use crate::types::{
    AgentId, Amount, ApprovalId, ErrorKind, IdempotencyKey, Purpose, RequestId, Rule, truncate,
};

/// One parsed request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    /// Echoed in the response.
    pub id: RequestId,
    /// What is asked.
    pub op: Op,
}

/// The operations of protocol version 1.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// Version, policy digest, networks and agent addresses.
    Hello,
    /// Evaluate, build, and sign (or ask for approval).
    Sign(SignRequest),
    /// Evaluate only: no signature, no record.
    DryRun(DryRunRequest),
    /// Complete a pending approval with the operator's code.
    Approve(ApproveRequest),
    /// Spend totals, limits, ledger sequence and audit head.
    Status,
    /// Check an operator code for a named purpose (a phrase gate), record it, use it up.
    Confirm(ConfirmRequest),
    /// Set an agent's cap within the signed ceiling, with the operator's code.
    SetLimit(SetLimitRequest),
    /// The signer verifies its own audit chain and returns the latest entries.
    Audit(AuditRequest),
    /// What key-ceremony import is staged (digest, agents, fingerprints).
    ImportStatus,
    /// Confirm the staged import with a code of ITS authenticator; the signer then restarts.
    ImportConfirm(ImportConfirmRequest),
}

impl Op {
    /// The wire name of the op.
    pub const fn name(&self) -> &'static str {
        match self {
            Op::Hello => "hello",
            Op::Sign(_) => "sign",
            Op::DryRun(_) => "dry_run",
            Op::Approve(_) => "approve",
            Op::Status => "status",
            Op::Confirm(_) => "confirm",
            Op::SetLimit(_) => "set_limit",
            Op::Audit(_) => "audit",
            Op::ImportStatus => "import_status",
            Op::ImportConfirm(_) => "import_confirm",
        }
    }
}

/// Fields of `sign`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignRequest {
    /// The agent on whose behalf, and with whose key, to sign.
    pub agent: AgentId,
    /// What to do.
    pub intent: Intent,
    /// Non-value context (e.g. a recent blockhash).
    pub context: Context,
    /// Same key + same intent = same result, counted once.
    pub idempotency_key: IdempotencyKey,
}

/// Fields of `dry_run`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DryRunRequest {
    /// The agent.
    pub agent: AgentId,
    /// What would be done.
    pub intent: Intent,
    /// Non-value context; optional for a dry run.
    #[serde(default)]
    pub context: Context,
}

/// Fields of `approve`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApproveRequest {
    /// The id returned with `needs_approval`.
    pub approval_id: ApprovalId,
    /// The operator's current TOTP code (6 digits).
    pub code: String,
    /// Optional fresh context (e.g. a newer blockhash): an approval may come minutes after the
    /// request, when the original blockhash has expired. It cannot change what is paid to whom.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<Context>,
}

/// Fields of `confirm`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfirmRequest {
    /// What the operator confirms, e.g. `go_live trader SOL`.
    pub purpose: Purpose,
    /// The operator's current TOTP code (6 digits).
    pub code: String,
}

/// Which cap `set_limit` changes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LimitKind {
    /// The largest single transfer (`per_tx_cap` in the policy).
    PerTx,
    /// The most in any rolling 24 hours (`velocity_24h` in the policy).
    #[serde(rename = "velocity_24h")]
    Velocity24h,
}

impl LimitKind {
    /// The wire name.
    pub const fn as_str(self) -> &'static str {
        match self {
            LimitKind::PerTx => "per_tx",
            LimitKind::Velocity24h => "velocity_24h",
        }
    }
}

/// Fields of `set_limit`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetLimitRequest {
    /// The agent whose cap changes.
    pub agent: AgentId,
    /// The asset symbol, as in the policy (`SOL`).
    pub asset: String,
    /// Which cap.
    pub limit: LimitKind,
    /// The new cap in base units; at most the signed policy's value (the ceiling).
    pub amount: Amount,
    /// The operator's current TOTP code (6 digits).
    pub code: String,
}

/// Fields of `audit`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditRequest {
    /// How many of the latest entries to return: 1 to [`MAX_AUDIT_LIMIT`].
    #[serde(deserialize_with = "audit_limit")]
    pub limit: u32,
}

/// The most entries one `audit` returns.
pub const MAX_AUDIT_LIMIT: u32 = 50;

fn audit_limit<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    let v = u32::deserialize(d)?;
    if (1..=MAX_AUDIT_LIMIT).contains(&v) {
        Ok(v)
    } else {
        Err(serde::de::Error::custom(format!(
            "limit {v} is out of range: ask for 1 to {MAX_AUDIT_LIMIT} entries"
        )))
    }
}

/// Result of `audit`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditResult {
    /// Whether the whole chain verified (every entry, hash links, sequence, time order).
    pub verified: bool,
    /// Why it did not (the first bad line), when it did not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Number of entries.
    pub entries: u64,
    /// Sequence number of the last entry.
    pub head_seq: u64,
    /// Hash of the last entry, hex (pin it: `docs/audit.md`).
    pub head: String,
    /// The latest entries, oldest first; each event without its wire transaction.
    pub latest: Vec<AuditEntrySummary>,
}

/// One audit entry in `audit`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntrySummary {
    /// Its sequence number.
    pub seq: u64,
    /// Unix seconds.
    pub ts: u64,
    /// The event (its `type` and fields), as recorded, minus the base64 transaction.
    pub event: Value,
}

/// Why a frame was not turned into a [`Request`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseFailure {
    /// The request id, when it could be read.
    pub id: Option<RequestId>,
    /// `bad_frame` or `bad_request`.
    pub kind: ErrorKind,
    /// For a human: what was wrong and what to send instead.
    pub message: String,
}

impl ParseFailure {
    /// Whether the connection must be closed after the error reply (frame-level errors).
    pub fn closes_connection(&self) -> bool {
        self.kind == ErrorKind::BadFrame
    }

    fn frame(message: impl Into<String>) -> Self {
        Self {
            id: None,
            kind: ErrorKind::BadFrame,
            message: message.into(),
        }
    }

    fn request(id: Option<RequestId>, message: impl Into<String>) -> Self {
        Self {
            id,
            kind: ErrorKind::BadRequest,
            message: message.into(),
        }
    }
}

/// Parses one frame's payload into a request.
pub fn parse_request(payload: &[u8]) -> Result<Request, ParseFailure> {
    let text = std::str::from_utf8(payload)
        .map_err(|e| ParseFailure::frame(format!("frame is not UTF-8 ({e}); send UTF-8 JSON")))?;
    let value: Value = serde_json::from_str(text).map_err(|e| {
        ParseFailure::frame(format!("frame is not JSON ({e}); send one JSON object"))
    })?;
    let Value::Object(mut fields) = value else {
        return Err(ParseFailure::frame(
            "frame is JSON but not an object; send one JSON object",
        ));
    };

    // The id first, so that every later error can be matched to its request.
    let id = match fields.remove("id") {
        Some(Value::String(s)) => {
            RequestId::try_from(s).map_err(|e| ParseFailure::request(None, e))?
        }
        Some(_) => return Err(ParseFailure::request(None, "\"id\" must be a string")),
        None => {
            return Err(ParseFailure::request(
                None,
                "missing \"id\": every request needs an id",
            ));
        }
    };
    match fields.remove("v") {
        Some(Value::Number(n)) if n.as_u64() == Some(PROTOCOL_VERSION) => {}
        Some(other) => {
            return Err(ParseFailure::request(
                Some(id),
                format!(
                    "unsupported protocol version {}; this signer speaks \"v\": {PROTOCOL_VERSION}",
                    truncate(&other.to_string())
                ),
            ));
        }
        None => {
            return Err(ParseFailure::request(
                Some(id),
                "missing \"v\": send \"v\": 1",
            ));
        }
    }
    let op_name = match fields.remove("op") {
        Some(Value::String(s)) => s,
        Some(_) => return Err(ParseFailure::request(Some(id), "\"op\" must be a string")),
        None => return Err(ParseFailure::request(Some(id), "missing \"op\"")),
    };
    let op = match op_name.as_str() {
        "hello" => no_fields(&id, "hello", fields).map(|()| Op::Hello),
        "status" => no_fields(&id, "status", fields).map(|()| Op::Status),
        "sign" => op_fields(&id, "sign", fields).map(Op::Sign),
        "dry_run" => op_fields(&id, "dry_run", fields).map(Op::DryRun),
        "approve" => op_fields(&id, "approve", fields).map(Op::Approve),
        "confirm" => op_fields(&id, "confirm", fields).map(Op::Confirm),
        "set_limit" => op_fields(&id, "set_limit", fields).map(Op::SetLimit),
        "audit" => op_fields(&id, "audit", fields).map(Op::Audit),
        "import_status" => no_fields(&id, "import_status", fields).map(|()| Op::ImportStatus),
        "import_confirm" => op_fields(&id, "import_confirm", fields).map(Op::ImportConfirm),
        other => Err(ParseFailure::request(
            Some(id.clone()),
            format!(
                "unknown op {:?}; ops are hello, sign, dry_run, approve, status, confirm, set_limit, \
                 import_status, import_confirm",
                truncate(other)
            ),
        )),
    }?;
    Ok(Request { id, op })
}

fn no_fields(id: &RequestId, op: &str, fields: Map<String, Value>) -> Result<(), ParseFailure> {
    match fields.keys().next() {
        None => Ok(()),
        Some(k) => Err(ParseFailure::request(
            Some(id.clone()),
            format!(
                "unknown field {:?} for op {op}, which takes no fields",
                truncate(k)
            ),
        )),
    }
}

fn op_fields<T: DeserializeOwned>(
    id: &RequestId,
    op: &str,
    fields: Map<String, Value>,
) -> Result<T, ParseFailure> {
    serde_json::from_value(Value::Object(fields)).map_err(|e| {
        ParseFailure::request(Some(id.clone()), format!("invalid fields for op {op}: {e}"))
    })
}

impl Request {
    /// Encodes the request as the JSON text of one frame.
    pub fn to_json(&self) -> String {
        let mut obj = Map::new();
        obj.insert("v".into(), Value::from(PROTOCOL_VERSION));
        obj.insert("id".into(), Value::from(self.id.as_str()));
        obj.insert("op".into(), Value::from(self.op.name()));
        let fields = match &self.op {
            Op::Hello | Op::Status | Op::ImportStatus => Value::Null,
            Op::Sign(r) => serde_json::to_value(r).unwrap_or(Value::Null),
            Op::DryRun(r) => serde_json::to_value(r).unwrap_or(Value::Null),
            Op::Approve(r) => serde_json::to_value(r).unwrap_or(Value::Null),
            Op::Confirm(r) => serde_json::to_value(r).unwrap_or(Value::Null),
            Op::SetLimit(r) => serde_json::to_value(r).unwrap_or(Value::Null),
            Op::Audit(r) => serde_json::to_value(r).unwrap_or(Value::Null),
            Op::ImportConfirm(r) => serde_json::to_value(r).unwrap_or(Value::Null),
        };
        if let Value::Object(f) = fields {
            obj.extend(f);
        }
        Value::Object(obj).to_string()
    }
}

/// The error half of a response.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ErrorBody {
    /// Which kind of failure.
    pub kind: ErrorKind,
    /// The policy rule that decided, for `policy_denied`.
    pub rule: Option<Rule>,
    /// What was wrong and what to do next.
    pub message: String,
}

/// One response.
#[derive(Clone, Debug, PartialEq)]
pub struct Response {
    /// The request id, or `None` when it could not be read.
    pub id: Option<RequestId>,
    /// The result object, or the error.
    pub outcome: Result<Value, ErrorBody>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ResponseWire {
    v: u64,
    id: Option<RequestId>,
    ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    result: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    error: Option<ErrorBody>,
}

impl Response {
    /// A success carrying a result object.
    pub fn ok(id: RequestId, result: &impl Serialize) -> Self {
        let outcome = serde_json::to_value(result).map_err(|e| ErrorBody {
            kind: ErrorKind::Internal,
            rule: None,
            message: format!("could not encode the result: {e}"),
        });
        Self {
            id: Some(id),
            outcome,
        }
    }

    /// An error.
    pub fn error(
        id: Option<RequestId>,
        kind: ErrorKind,
        rule: Option<Rule>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            id,
            outcome: Err(ErrorBody {
                kind,
                rule,
                message: message.into(),
            }),
        }
    }

    /// Encodes the response as the JSON text of one frame.
    pub fn to_json(&self) -> String {
        let wire = match &self.outcome {
            Ok(v) => ResponseWire {
                v: PROTOCOL_VERSION,
                id: self.id.clone(),
                ok: true,
                result: Some(v.clone()),
                error: None,
            },
            Err(e) => ResponseWire {
                v: PROTOCOL_VERSION,
                id: self.id.clone(),
                ok: false,
                result: None,
                error: Some(e.clone()),
            },
        };
        // Invariant: ResponseWire holds only strings, numbers and JSON values, which always encode.
        serde_json::to_string(&wire).unwrap_or_else(|_| {
            r#"{"v":1,"id":null,"ok":false,"error":{"kind":"internal","rule":null,"message":"encoding failed"}}"#.into()
        })
    }

    /// Decodes a response frame (client side).
    pub fn parse(payload: &[u8]) -> Result<Self, String> {
        let wire: ResponseWire = serde_json::from_slice(payload)
            .map_err(|e| format!("bad response from signer: {e}"))?;
        if wire.v != PROTOCOL_VERSION {
            return Err(format!("signer answered with protocol version {}", wire.v));
        }
        let outcome = match (wire.ok, wire.result, wire.error) {
            (true, Some(r), None) => Ok(r),
            (false, None, Some(e)) => Err(e),
            _ => return Err("bad response from signer: ok/result/error do not agree".into()),
        };
        Ok(Self {
            id: wire.id,
            outcome,
        })
    }

    /// The result decoded as `T`, or the error body.
    pub fn into_result<T: DeserializeOwned>(self) -> Result<T, ErrorBody> {
        let v = self.outcome?;
        serde_json::from_value(v).map_err(|e| ErrorBody {
            kind: ErrorKind::Internal,
            rule: None,
            message: format!("unexpected result shape: {e}"),
        })
    }
}

/// Result of `hello`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HelloResult {
    /// Protocol version.
    pub version: u64,
    /// SHA-256 of the signed policy file, hex.
    pub policy_digest: String,
    /// The `chain:network` pairs the policy allows to anyone.
    pub networks: Vec<String>,
    /// Agents and their public addresses.
    pub agents: Vec<AgentInfo>,
}

/// One agent in `hello`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentInfo {
    /// The agent id.
    pub agent: AgentId,
    /// Chain name → address.
    pub addresses: BTreeMap<String, String>,
}

/// Result of `sign` and `approve`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum SignResult {
    /// Signed and recorded.
    Signed(Signed),
    /// Above the threshold: the operator must approve.
    NeedsApproval(NeedsApproval),
}

/// A signed transaction.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Signed {
    /// The wire transaction, base64.
    pub tx: String,
    /// The transaction signature (base58 for Solana).
    pub signature: String,
    /// One line, rendered from what was built.
    pub summary: String,
    /// Sequence number of the ledger record of this spend.
    pub ledger_seq: u64,
}

/// A pending approval.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NeedsApproval {
    /// Pass this to `approve`.
    pub approval_id: ApprovalId,
    /// One line, rendered from what would be built.
    pub summary: String,
    /// Unix seconds after which the approval is void.
    pub expires_at: u64,
}

/// The decision of a `dry_run`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    /// Would be signed.
    Allow,
    /// Would wait for the operator.
    NeedsApproval,
    /// Would be refused.
    Deny,
}

/// Result of `dry_run`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DryRunResult {
    /// What `sign` would do now.
    pub decision: Decision,
    /// The rule that decided (none for a plain allow).
    pub rule: Option<Rule>,
    /// The summary, or the reason for a denial.
    pub summary: String,
}

/// Result of `status`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusResult {
    /// Per agent.
    pub agents: Vec<AgentStatus>,
    /// The last ledger sequence number.
    pub ledger_seq: u64,
    /// The hash of the last audit entry, hex.
    pub audit_head: String,
}

/// One agent in `status`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentStatus {
    /// The agent id.
    pub agent: AgentId,
    /// Asset → base units spent in the last 24 h (decimal string).
    pub spent_24h: BTreeMap<String, String>,
    /// The agent's limits from the signed policy.
    pub limits: Value,
}

/// Result of `confirm`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfirmResult {
    /// Always true: a refused code is an error response.
    pub confirmed: bool,
    /// The purpose, as recorded.
    pub purpose: Purpose,
    /// Sequence number of the audit entry that records the confirmation.
    pub ledger_seq: u64,
}

/// Result of `set_limit`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetLimitResult {
    /// The agent.
    pub agent: AgentId,
    /// The asset.
    pub asset: String,
    /// Which cap.
    pub limit: LimitKind,
    /// The cap now in force, base units.
    pub amount: Amount,
    /// The signed policy's value: the most the cap can be set to.
    pub ceiling: Amount,
    /// Sequence number of the audit entry that records the change.
    pub ledger_seq: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Request, ParseFailure> {
        parse_request(s.as_bytes())
    }

    #[test]
    fn audit_limit_is_bounded() {
        let r = parse(r#"{"v":1,"id":"a","op":"audit","limit":5}"#).unwrap();
        assert_eq!(r.op, Op::Audit(AuditRequest { limit: 5 }));
        assert_eq!(parse(&r.to_json()).unwrap(), r);
        for bad in [0, 51] {
            let e =
                parse(&format!(r#"{{"v":1,"id":"a","op":"audit","limit":{bad}}}"#)).unwrap_err();
            assert!(e.message.contains("out of range"), "{}", e.message);
        }
        assert!(parse(r#"{"v":1,"id":"a","op":"audit"}"#).is_err());
    }

    #[test]
    fn confirm_and_set_limit_parse_strictly() {
        let r = parse(
            r#"{"v":1,"id":"a","op":"confirm","purpose":"go_live trader SOL","code":"123456"}"#,
        )
        .unwrap();
        assert_eq!(r.op.name(), "confirm");
        assert_eq!(parse(&r.to_json()).unwrap(), r);
        // Control characters or an empty purpose are refused.
        assert!(parse(r#"{"v":1,"id":"a","op":"confirm","purpose":"a\nb","code":"1"}"#).is_err());
        assert!(parse(r#"{"v":1,"id":"a","op":"confirm","purpose":"","code":"1"}"#).is_err());
        let r = parse(
            r#"{"v":1,"id":"a","op":"set_limit","agent":"trader","asset":"SOL","limit":"velocity_24h","amount":"5","code":"123456"}"#,
        )
        .unwrap();
        let Op::SetLimit(s) = &r.op else {
            panic!("{r:?}")
        };
        assert_eq!(s.limit, LimitKind::Velocity24h);
        assert_eq!(s.amount.base_units(), 5);
        assert_eq!(parse(&r.to_json()).unwrap(), r);
        for bad in [
            r#"{"v":1,"id":"a","op":"set_limit","agent":"trader","asset":"SOL","limit":"daily","amount":"5","code":"1"}"#,
            r#"{"v":1,"id":"a","op":"set_limit","agent":"trader","asset":"SOL","limit":"per_tx","amount":"0","code":"1"}"#,
            r#"{"v":1,"id":"a","op":"set_limit","agent":"trader","asset":"SOL","limit":"per_tx","amount":"5"}"#,
        ] {
            let e = parse(bad).unwrap_err();
            assert_eq!(e.kind, ErrorKind::BadRequest, "{bad}");
        }
    }

    #[test]
    fn import_ops_parse_strictly_and_round_trip() {
        let r = parse(r#"{"v":1,"id":"a","op":"import_status"}"#).unwrap();
        assert_eq!(r.op, Op::ImportStatus);
        assert_eq!(parse(&r.to_json()).unwrap(), r);
        let digest = "0a".repeat(32);
        let r = parse(&format!(
            r#"{{"v":1,"id":"a","op":"import_confirm","manifest_digest":"{digest}","code":"123456"}}"#
        ))
        .unwrap();
        let Op::ImportConfirm(c) = &r.op else {
            panic!("{r:?}")
        };
        assert_eq!(
            (c.manifest_digest.as_str(), c.code.as_str()),
            (digest.as_str(), "123456")
        );
        assert_eq!(r.op.name(), "import_confirm");
        assert_eq!(parse(&r.to_json()).unwrap(), r);
        for bad in [
            r#"{"v":1,"id":"a","op":"import_status","staged":true}"#.to_string(),
            format!(r#"{{"v":1,"id":"a","op":"import_confirm","manifest_digest":"{digest}"}}"#),
            r#"{"v":1,"id":"a","op":"import_confirm","code":"123456"}"#.to_string(),
            format!(
                r#"{{"v":1,"id":"a","op":"import_confirm","manifest_digest":"{}","code":"123456"}}"#,
                digest.to_uppercase()
            ),
            format!(
                r#"{{"v":1,"id":"a","op":"import_confirm","manifest_digest":"{digest}","code":"1","replace":true}}"#
            ),
        ] {
            let e = parse(&bad).unwrap_err();
            assert_eq!(
                (e.kind, e.id.map(String::from)),
                (ErrorKind::BadRequest, Some("a".into())),
                "{bad}"
            );
        }
    }

    #[test]
    fn envelope_errors_are_classified() {
        assert_eq!(parse("\u{0}\u{ff}").unwrap_err().kind, ErrorKind::BadFrame);
        assert_eq!(
            parse_request(&[0xff, 0xfe]).unwrap_err().kind,
            ErrorKind::BadFrame
        );
        assert_eq!(parse("[1]").unwrap_err().kind, ErrorKind::BadFrame);
        assert_eq!(parse("{\"v\":1").unwrap_err().kind, ErrorKind::BadFrame);
        let e = parse(r#"{"v":1,"op":"hello"}"#).unwrap_err();
        assert_eq!((e.kind, e.id), (ErrorKind::BadRequest, None));
        let e = parse(r#"{"v":2,"id":"a","op":"hello"}"#).unwrap_err();
        assert_eq!(e.kind, ErrorKind::BadRequest);
        assert_eq!(e.id.unwrap().as_str(), "a");
        assert!(
            parse(r#"{"v":1,"id":"a","op":"hello","x":1}"#)
                .unwrap_err()
                .message
                .contains("unknown field")
        );
        assert!(
            parse(r#"{"v":1,"id":"a","op":"export_key"}"#)
                .unwrap_err()
                .message
                .contains("unknown op")
        );
        assert!(parse(r#"{"v":1,"id":"a","op":"sign","agent":"t"}"#).is_err());
    }

    #[test]
    fn sign_round_trips() {
        let s = r#"{"v":1,"id":"r1","op":"sign","agent":"trader","idempotency_key":"k1",
            "intent":{"kind":"transfer","chain":"solana","network":"devnet","asset":"SOL","to":"abc","amount":"10"},
            "context":{"recent_blockhash":"xyz"}}"#;
        let req = parse(s).unwrap();
        assert_eq!(req.op.name(), "sign");
        assert_eq!(parse(&req.to_json()).unwrap(), req);
        let bad = s.replace("\"k1\"", "\"k1\",\"extra\":true");
        assert_eq!(parse(&bad).unwrap_err().kind, ErrorKind::BadRequest);
    }

    #[test]
    fn responses_round_trip() {
        let id = RequestId::try_from("x".to_string()).unwrap();
        let r = Response::error(
            Some(id),
            ErrorKind::PolicyDenied,
            Some(Rule::PerTxCap),
            "too much",
        );
        let back = Response::parse(r.to_json().as_bytes()).unwrap();
        let err = back.outcome.unwrap_err();
        assert_eq!(
            (err.kind, err.rule),
            (ErrorKind::PolicyDenied, Some(Rule::PerTxCap))
        );
    }

    #[test]
    fn fuzz_smoke() {
        // Deterministic xorshift noise plus mutations of a valid request.
        let base = br#"{"v":1,"id":"r1","op":"sign","agent":"trader","idempotency_key":"k1","intent":{"kind":"transfer","chain":"solana","network":"devnet","asset":"SOL","to":"abc","amount":"10"},"context":{}}"#;
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let mut buf = base.to_vec();
            let pos = usize::try_from(x % base.len() as u64).unwrap();
            buf[pos] = x.to_le_bytes()[4];
            if x.is_multiple_of(3) {
                buf.truncate(pos);
            }
            crate::fuzz_one(&buf);
        }
    }
}
