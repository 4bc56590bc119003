//! The request envelope and the ops' fields. Parsing a frame into a [`Request`] is in
//! `message/parse.rs`, the response envelope in `message/response.rs`, and the ops' results
//! in `message/results.rs`.

mod parse;
mod response;
mod results;

pub use parse::{ParseFailure, parse_request};
pub use response::{ErrorBody, Response};
pub use results::{
    AgentInfo, AgentStatus, AuditEntrySummary, AuditResult, ConfirmResult, Decision, DryRunResult,
    HelloResult, NeedsApproval, SetCapResult, SignResult, Signed, StatusResult,
};

use serde::{Deserialize, Serialize};

use crate::import::ImportConfirmRequest;
use crate::intent::{Context, Intent};
use crate::operator_code::OperatorCode;
use crate::types::{AgentId, Amount, ApprovalId, AssetSymbol, IdempotencyKey, Purpose, RequestId};

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
    /// Check an operator code for a named purpose (a phrase confirmation), record it, use it up.
    Confirm(ConfirmRequest),
    /// Set an agent's cap within the signed ceiling, with the operator's code.
    SetCap(SetCapRequest),
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
            Op::SetCap(_) => "set_limit",
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
    pub code: OperatorCode,
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
    pub code: OperatorCode,
}

/// Which cap `set_limit` changes (the wire calls it `limit`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CapKind {
    /// The largest single transfer (`per_tx_cap` in the policy).
    PerTx,
    /// The most in any rolling 24 hours (`velocity_24h` in the policy).
    #[serde(rename = "velocity_24h")]
    Velocity24h,
}

impl CapKind {
    /// The wire name.
    pub const fn as_str(self) -> &'static str {
        match self {
            CapKind::PerTx => "per_tx",
            CapKind::Velocity24h => "velocity_24h",
        }
    }
}

/// Fields of `set_limit`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetCapRequest {
    /// The agent whose cap changes.
    pub agent: AgentId,
    /// The asset symbol, as in the policy (`SOL`).
    pub asset: AssetSymbol,
    /// Which cap.
    #[serde(rename = "limit")]
    pub cap: CapKind,
    /// The new cap in base units; at most the signed policy's value (the ceiling).
    pub amount: Amount,
    /// The operator's current TOTP code (6 digits).
    pub code: OperatorCode,
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

#[cfg(test)]
mod tests;
