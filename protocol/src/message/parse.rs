//! Parsing a frame's payload into a [`Request`], in two steps so that errors are precise:
//! the frame must be a UTF-8 JSON object (else `bad_frame`, and the connection closes); then
//! `v`, `id` and `op` are taken out and the remaining fields are decoded into the op's own
//! struct with unknown fields rejected (else `bad_request`, and the connection stays open).
//! Also the inverse, [`Request::to_json`].

use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use super::{Op, Request};
use crate::PROTOCOL_VERSION;
use crate::types::{ErrorKind, RequestId, truncate};

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
        "set_limit" => op_fields(&id, "set_limit", fields).map(Op::SetCap),
        "audit" => op_fields(&id, "audit", fields).map(Op::Audit),
        "import_status" => no_fields(&id, "import_status", fields).map(|()| Op::ImportStatus),
        "import_confirm" => op_fields(&id, "import_confirm", fields).map(Op::ImportConfirm),
        "request_confirmation" => {
            op_fields(&id, "request_confirmation", fields).map(Op::RequestConfirmation)
        }
        "request_set_cap" => op_fields(&id, "request_set_cap", fields).map(Op::RequestSetCap),
        "request_status" => op_fields(&id, "request_status", fields).map(Op::RequestStatus),
        "awaiting" => no_fields(&id, "awaiting", fields).map(|()| Op::Awaiting),
        "events" => op_fields(&id, "events", fields).map(Op::Events),
        "pause_agent" => op_fields(&id, "pause_agent", fields).map(Op::PauseAgent),
        "request_resume" => op_fields(&id, "request_resume", fields).map(Op::RequestResume),
        "resume_agent" => op_fields(&id, "resume_agent", fields).map(Op::ResumeAgent),
        other => Err(ParseFailure::request(
            Some(id.clone()),
            format!(
                "unknown op {:?}; ops are {}",
                truncate(other),
                super::OP_NAMES.join(", ")
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

/// A request on the wire, borrowed: the envelope, then the op's own fields.
#[derive(serde::Serialize)]
struct RequestWire<'a, T: serde::Serialize> {
    v: u64,
    id: &'a str,
    op: &'static str,
    #[serde(flatten)]
    fields: &'a T,
}

/// The fields of an op that has none.
#[derive(serde::Serialize)]
struct NoFields {}

impl Request {
    /// Encodes the request as the JSON text of one frame, straight from the op's fields.
    pub fn to_json(&self) -> String {
        fn encode<T: serde::Serialize>(req: &Request, fields: &T) -> String {
            let wire = RequestWire {
                v: PROTOCOL_VERSION,
                id: req.id.as_str(),
                op: req.op.name(),
                fields,
            };
            // Invariant: the ops' fields are structs of strings, numbers and enums, which always
            // encode; the fallback is only there so that this never panics.
            serde_json::to_string(&wire).unwrap_or_else(|_| {
                format!(
                    r#"{{"v":{PROTOCOL_VERSION},"id":{:?},"op":{:?}}}"#,
                    req.id.as_str(),
                    req.op.name()
                )
            })
        }
        match &self.op {
            Op::Hello | Op::Status | Op::ImportStatus | Op::Awaiting => encode(self, &NoFields {}),
            Op::Sign(r) => encode(self, r),
            Op::DryRun(r) => encode(self, r),
            Op::Approve(r) => encode(self, r),
            Op::Confirm(r) => encode(self, r),
            Op::SetCap(r) => encode(self, r),
            Op::Audit(r) => encode(self, r),
            Op::ImportConfirm(r) => encode(self, r),
            Op::RequestConfirmation(r) => encode(self, r),
            Op::RequestSetCap(r) => encode(self, r),
            Op::RequestStatus(r) => encode(self, r),
            Op::Events(r) => encode(self, r),
            Op::PauseAgent(r) => encode(self, r),
            Op::RequestResume(r) => encode(self, r),
            Op::ResumeAgent(r) => encode(self, r),
        }
    }
}
