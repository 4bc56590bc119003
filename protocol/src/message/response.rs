//! The response envelope: a result object or an [`ErrorBody`] (kind, rule, message), its
//! encoding on the signer's side and its decoding on the client's.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::PROTOCOL_VERSION;
use crate::types::{ErrorKind, RequestId, Rule};

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

/// A success on the wire, borrowed: what [`Response::ok_json`] writes.
#[derive(Serialize)]
struct OkWire<'a, T> {
    v: u64,
    id: &'a RequestId,
    ok: bool,
    result: &'a T,
}

impl Response {
    /// The JSON text of a success response, encoded straight from `result` without building
    /// a [`Value`] first (the signer's hot path); it parses to the same [`Response`] as
    /// `Response::ok(id, result)`. A result that cannot be encoded gives the `internal` error
    /// response that [`Response::ok`] would hold.
    pub fn ok_json(id: &RequestId, result: &impl Serialize) -> String {
        let wire = OkWire {
            v: PROTOCOL_VERSION,
            id,
            ok: true,
            result,
        };
        serde_json::to_string(&wire).unwrap_or_else(|e| {
            Response::error(
                Some(id.clone()),
                ErrorKind::Internal,
                None,
                format!("could not encode the result: {e}"),
            )
            .to_json()
        })
    }

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
