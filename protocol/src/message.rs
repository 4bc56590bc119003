//! The request envelope and the ops' fields. Parsing a frame into a [`Request`] is in
//! `message/parse.rs`, the response envelope in `message/response.rs`, and the ops' results
//! in `message/results.rs`; the ops of the operator's path (requests awaiting the operator,
//! the approver's reads) in `message/operator.rs`.

mod change;
mod operator;
pub use change::{ChangeDigest, ChangeKind, ChangeSummary, MAX_CHANGE_SUMMARY_CHARS};
mod parse;
mod pause;
mod response;
mod results;

pub use operator::{
    ApproveResult, AwaitingItem, AwaitingKind, AwaitingResult, ConfirmationPurpose,
    DestructiveCommand, EventsRequest, EventsResult, GrantStatus, MAX_EVENTS_LIMIT, NewCapChange,
    NewConfirmation, OperatorEvent, OperatorEventKind, RequestCreated, RequestState,
    RequestStatusRequest, RequestStatusResult,
};

pub use parse::{ParseFailure, parse_request};
pub use pause::{
    AgentPause, NewResume, PauseAgentRequest, PauseReason, PauseResult, ResumeAgentRequest,
    ResumeResult,
};
pub use response::{ErrorBody, Response};
pub use results::{
    AgentInfo, AgentStatus, AuditEntrySummary, AuditResult, ConfirmResult, Decision, DryRunResult,
    HelloResult, NeedsApproval, SetCapResult, SignResult, Signed, SignedTx, StatusResult,
};

use serde::{Deserialize, Serialize};

use crate::import::ImportConfirmRequest;
use crate::intent::{Context, Intent};
use crate::operator_code::OperatorCode;
use crate::types::{AgentId, ApprovalId, IdempotencyKey, OperatorRequestId, RequestId};

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
    /// Grant a pending approval with the operator's code (approver only); the asker then
    /// collects the signature with `sign`.
    Approve(ApproveRequest),
    /// Spend totals, limits, ledger sequence and audit head.
    Status,
    /// Answer a `request_confirmation` with the operator's code (approver only).
    Confirm(ConfirmRequest),
    /// Answer a `request_set_cap` with the operator's code (approver only): the cap is set.
    SetCap(SetCapRequest),
    /// The signer verifies its own audit chain and returns the latest entries.
    Audit(AuditRequest),
    /// What key-ceremony import is staged (digest, agents, fingerprints).
    ImportStatus,
    /// Confirm the staged import with a code of ITS authenticator; the signer then restarts.
    ImportConfirm(ImportConfirmRequest),
    /// Create a confirmation that waits for the operator (asker).
    RequestConfirmation(NewConfirmation),
    /// Create a cap change that waits for the operator (asker); the ceiling is checked here.
    RequestSetCap(NewCapChange),
    /// Where a confirmation or cap change stands (asker).
    RequestStatus(RequestStatusRequest),
    /// Everything waiting for the operator's code (approver only).
    Awaiting,
    /// The operator-relevant events after a sequence number (approver only).
    Events(EventsRequest),
    /// Pause an agent (either role: a tightening); idempotent.
    PauseAgent(PauseAgentRequest),
    /// Ask the operator to clear an agent's pause (asker).
    RequestResume(NewResume),
    /// Answer a `request_resume` with the operator's code (approver only): the pause is cleared.
    ResumeAgent(ResumeAgentRequest),
}

/// Every op's wire name, in the order of [`Op`].
pub const OP_NAMES: [&str; 18] = [
    "hello",
    "sign",
    "dry_run",
    "approve",
    "status",
    "confirm",
    "set_limit",
    "audit",
    "import_status",
    "import_confirm",
    "request_confirmation",
    "request_set_cap",
    "request_status",
    "awaiting",
    "events",
    "pause_agent",
    "request_resume",
    "resume_agent",
];

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
            Op::RequestConfirmation(_) => "request_confirmation",
            Op::RequestSetCap(_) => "request_set_cap",
            Op::RequestStatus(_) => "request_status",
            Op::Awaiting => "awaiting",
            Op::Events(_) => "events",
            Op::PauseAgent(_) => "pause_agent",
            Op::RequestResume(_) => "request_resume",
            Op::ResumeAgent(_) => "resume_agent",
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

/// Fields of `approve` (approver only).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApproveRequest {
    /// The id returned with `needs_approval` (and listed by `awaiting`).
    pub approval_id: ApprovalId,
    /// The operator's current TOTP code (6 digits).
    pub code: OperatorCode,
}

/// Fields of `confirm` (approver only): the answer to one `request_confirmation`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfirmRequest {
    /// The request the operator was shown.
    pub request_id: OperatorRequestId,
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

/// Fields of `set_limit` (approver only): the answer to one `request_set_cap`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetCapRequest {
    /// The request the operator was shown.
    pub request_id: OperatorRequestId,
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
