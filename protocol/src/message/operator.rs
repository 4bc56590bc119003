//! The ops of the operator's path (`docs/protocol.md`, "Roles" and "Requests awaiting the
//! operator"): an asker creates a request that waits for the operator (`request_confirmation`,
//! `request_set_cap`; a `sign` above the threshold), the approver lists what waits
//! (`awaiting`) and what happened (`events`) and answers with a code (`approve`, `confirm`,
//! `set_limit`, `import_confirm`), and the asker learns the outcome (`request_status`, or
//! `sign` again for a granted approval).
//!
//! Every summary in these results is rendered by the signer from typed fields; nothing an
//! asker sends is shown to the operator verbatim.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::change::{ChangeDigest, ChangeKind, ChangeSummary};
use super::{ApproveRequest, CapKind, ConfirmRequest, Op, ResumeAgentRequest, SetCapRequest};
use crate::import::{ImportConfirmRequest, ManifestDigest};
use crate::intent::{Chain, Context, Intent, Network};
use crate::operator_code::OperatorCode;
use crate::types::{
    AgentId, Amount, ApprovalId, AssetSymbol, CommandTarget, IdempotencyKey, OperatorRequestId,
};

/// What a `request_confirmation` asks the operator to confirm: a closed set of typed purposes,
/// from which the signer renders what the operator reads.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum ConfirmationPurpose {
    /// An agent goes live (real transfers) for one asset on one network.
    GoLive {
        /// The agent.
        agent: AgentId,
        /// The chain.
        chain: Chain,
        /// The network.
        network: Network,
        /// The asset.
        asset: AssetSymbol,
    },
    /// A paper-mode action above the approval threshold: the signer evaluates it as `dry_run`
    /// does and renders its own summary, marked PAPER. Nothing is ever signed for it.
    PaperApproval {
        /// The agent.
        agent: AgentId,
        /// What the agent would do.
        intent: Box<Intent>,
        /// Non-value context; optional.
        #[serde(default)]
        context: Context,
    },
    /// An orchestrator command the operator's configuration marks destructive.
    Destructive {
        /// Which command.
        what: DestructiveCommand,
        /// What it acts on (an agent, or for `deny` a confirmation number).
        target: CommandTarget,
    },
    /// A change to what the orchestrator runs, bound to the SHA-256 of the generation's files
    /// (`docs/operations.md`, "Generations" and "Rollback").
    ApplyChange {
        /// A configuration, a proposal, or a rollback.
        #[serde(rename = "change")]
        kind: ChangeKind,
        /// The generation that becomes current (for a rollback, the one gone back to).
        generation: u32,
        /// SHA-256 of that generation's files (or the proposal's diff).
        digest: ChangeDigest,
        /// The asker's one-line description, shown quoted.
        summary: ChangeSummary,
    },
}

impl ConfirmationPurpose {
    /// The wire name of the purpose's kind.
    pub const fn kind(&self) -> &'static str {
        match self {
            ConfirmationPurpose::GoLive { .. } => "go_live",
            ConfirmationPurpose::PaperApproval { .. } => "paper_approval",
            ConfirmationPurpose::Destructive { .. } => "destructive",
            ConfirmationPurpose::ApplyChange { .. } => "apply_change",
        }
    }
}

/// The orchestrator commands an operator may mark destructive (the closed list of
/// `destructive.what`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DestructiveCommand {
    /// `/pause <agent>`.
    Pause,
    /// `/resume <agent>`.
    Resume,
    /// `/paper <agent>`.
    Paper,
    /// `/deny <confirmation>`.
    Deny,
}

impl DestructiveCommand {
    /// Every command, in declaration order.
    pub const ALL: [DestructiveCommand; 4] = [
        DestructiveCommand::Pause,
        DestructiveCommand::Resume,
        DestructiveCommand::Paper,
        DestructiveCommand::Deny,
    ];

    /// The command's name (without the `/`).
    pub const fn as_str(self) -> &'static str {
        match self {
            DestructiveCommand::Pause => "pause",
            DestructiveCommand::Resume => "resume",
            DestructiveCommand::Paper => "paper",
            DestructiveCommand::Deny => "deny",
        }
    }
}

impl std::str::FromStr for DestructiveCommand {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|c| c.as_str() == s)
            .ok_or_else(|| {
                format!(
                    "{:?} is not a command that can be marked destructive: use pause, resume, paper or deny",
                    crate::truncate(s)
                )
            })
    }
}

impl fmt::Display for DestructiveCommand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Fields of `request_confirmation` (asker).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewConfirmation {
    /// What the operator is asked to confirm.
    pub purpose: ConfirmationPurpose,
    /// The same key with the same purpose returns the same request.
    pub idempotency_key: IdempotencyKey,
}

/// Fields of `request_set_cap` (asker): a cap change the operator is asked to confirm.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewCapChange {
    /// The agent whose cap changes.
    pub agent: AgentId,
    /// The asset symbol, as in the policy.
    pub asset: AssetSymbol,
    /// Which cap.
    #[serde(rename = "limit")]
    pub cap: CapKind,
    /// The new cap in base units; at most the signed policy's value (the ceiling).
    pub amount: Amount,
    /// The same key with the same change returns the same request.
    pub idempotency_key: IdempotencyKey,
}

/// Fields of `request_status` (asker).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestStatusRequest {
    /// The id `request_confirmation` or `request_set_cap` returned.
    pub request_id: OperatorRequestId,
}

/// Fields of `events` (approver).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventsRequest {
    /// Only events with a greater audit sequence number (0: from the oldest the signer keeps).
    pub since_seq: u64,
    /// At most this many events: 1 to [`MAX_EVENTS_LIMIT`].
    #[serde(deserialize_with = "events_limit")]
    pub limit: u32,
}

/// The most events one `events` returns.
pub const MAX_EVENTS_LIMIT: u32 = 100;

fn events_limit<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    let v = u32::deserialize(d)?;
    if (1..=MAX_EVENTS_LIMIT).contains(&v) {
        Ok(v)
    } else {
        Err(serde::de::Error::custom(format!(
            "limit {v} is out of range: ask for 1 to {MAX_EVENTS_LIMIT} events"
        )))
    }
}

/// Result of `request_confirmation` and `request_set_cap`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestCreated {
    /// Pass this to `request_status`; the approver answers it with `confirm` / `set_limit`.
    pub request_id: OperatorRequestId,
    /// One line the signer rendered from the request's typed fields.
    pub summary: String,
    /// Unix seconds after which it can no longer be granted.
    pub expires_at: u64,
}

/// Where a request awaiting the operator stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RequestState {
    /// Still waiting for the operator's code.
    Waiting,
    /// The operator's code was accepted (for a cap change: the cap is in force).
    Granted,
    /// Refused by the signer when answered (a cap no longer within the ceiling).
    Refused,
    /// Not answered in time.
    Expired,
}

/// Result of `request_status`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestStatusResult {
    /// Where it stands.
    pub status: RequestState,
    /// For `granted` and `refused`: the audit entry that records it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ledger_seq: Option<u64>,
}

/// Result of `approve`: the approval is granted; the asker collects the signature with `sign`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApproveResult {
    /// Always `"granted"`: a refused code is an error response.
    pub status: GrantStatus,
    /// The approval granted.
    pub approval_id: ApprovalId,
    /// The summary the operator approved (the signer's own).
    pub summary: String,
    /// The audit entry that records the grant.
    pub ledger_seq: u64,
    /// Unix seconds until which the grant can be collected by one `sign`.
    pub collect_by: u64,
}

/// The one status of an [`ApproveResult`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GrantStatus {
    /// Granted.
    Granted,
}

/// What an awaiting item is, and so which op answers it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AwaitingKind {
    /// A `sign` above the threshold: answered by `approve` (`id` is the `approval_id`).
    Approval,
    /// A `request_confirmation`: answered by `confirm` (`id` is the `request_id`).
    Confirmation,
    /// A `request_set_cap`: answered by `set_limit` (`id` is the `request_id`).
    SetCap,
    /// A staged key-ceremony import: answered by `import_confirm` (`id` is the manifest
    /// digest).
    Import,
    /// A `request_resume`: answered by `resume_agent` (`id` is the `request_id`).
    Resume,
}

/// One item of `awaiting`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AwaitingItem {
    /// The approval id, request id or manifest digest (by `kind`).
    pub id: String,
    /// What it is.
    pub kind: AwaitingKind,
    /// What the operator is shown, rendered by the signer.
    pub summary: String,
    /// Unix seconds after which it can no longer be answered (0: no deadline, an import).
    pub expires_at: u64,
    /// The audit entry that created it (0 for an import staged outside the audit log).
    pub created_seq: u64,
    /// For an import replacing keys: `import_confirm` also needs a code of the
    /// authenticator in use today (`current_code`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub current_code_required: bool,
}

impl AwaitingItem {
    /// The op that answers this item with the operator's `code` (and, for an import that
    /// replaces keys, `current`, a code of today's authenticator). The approver sends exactly
    /// this: the code answers the item it was shown with and nothing else.
    pub fn answer(&self, code: OperatorCode, current: Option<OperatorCode>) -> Result<Op, String> {
        let op = match self.kind {
            AwaitingKind::Approval => Op::Approve(ApproveRequest {
                approval_id: self.id.parse()?,
                code,
            }),
            AwaitingKind::Confirmation => Op::Confirm(ConfirmRequest {
                request_id: self.id.parse()?,
                code,
            }),
            AwaitingKind::SetCap => Op::SetCap(SetCapRequest {
                request_id: self.id.parse()?,
                code,
            }),
            AwaitingKind::Resume => Op::ResumeAgent(ResumeAgentRequest {
                request_id: self.id.parse()?,
                code,
            }),
            AwaitingKind::Import => {
                if self.current_code_required && current.is_none() {
                    return Err(
                        "this import replaces the keys: it also needs a code of the authenticator in use today"
                            .into(),
                    );
                }
                Op::ImportConfirm(ImportConfirmRequest {
                    manifest_digest: self.id.parse::<ManifestDigest>()?,
                    code,
                    current_code: current,
                })
            }
        };
        Ok(op)
    }
}

/// Result of `awaiting`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AwaitingResult {
    /// Everything waiting for a code, oldest first.
    pub items: Vec<AwaitingItem>,
}

/// One operator-relevant event of `events`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OperatorEvent {
    /// Its audit sequence number.
    pub seq: u64,
    /// Unix seconds.
    pub ts: u64,
    /// What happened.
    pub kind: OperatorEventKind,
    /// One line the signer rendered.
    pub text: String,
}

/// Result of `events`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventsResult {
    /// The events after `since_seq`, oldest first, at most `limit`.
    pub events: Vec<OperatorEvent>,
    /// The audit log's last sequence number (ask again from the last event returned).
    pub head_seq: u64,
    /// True when events after `since_seq` were older than the signer's window and are not
    /// returned (read them with `vigil-signer audit-verify` or the `audit` op).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub truncated: bool,
}

/// The kinds of operator-relevant events.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OperatorEventKind {
    /// The signer started.
    Started,
    /// A `sign` above the threshold waits for the operator.
    ApprovalRequested,
    /// The operator's code granted an approval.
    ApprovalGranted,
    /// An approval attempt was refused (wrong code, expired, locked).
    ApprovalRefused,
    /// A granted approval was signed (collected).
    ApprovalSigned,
    /// A confirmation waits for the operator.
    ConfirmationRequested,
    /// The operator confirmed (going live, a paper approval, a destructive command).
    Confirmed,
    /// A cap change waits for the operator.
    CapChangeRequested,
    /// A cap was set.
    CapSet,
    /// A code not bound to an approval was refused.
    CodeRefused,
    /// Codes are locked after too many wrong ones.
    Lockout,
    /// A code-bearing op came from a peer that is not the approver.
    CodeFromWrongPeer,
    /// A key-ceremony import was confirmed.
    ImportConfirmed,
    /// A confirmed import was applied at a start.
    ImportApplied,
    /// An import confirmation expired before it was applied.
    ImportConfirmationExpired,
    /// Something done as root at the appliance's console: codes unlocked, the journal keyed.
    ConsoleAction,
    /// An agent was paused (`pause_agent`).
    AgentPaused,
    /// A clearing of an agent's pause waits for the operator.
    ResumeRequested,
    /// The operator's code cleared an agent's pause.
    AgentResumed,
}

impl OperatorEventKind {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            OperatorEventKind::Started => "started",
            OperatorEventKind::ApprovalRequested => "approval_requested",
            OperatorEventKind::ApprovalGranted => "approval_granted",
            OperatorEventKind::ApprovalRefused => "approval_refused",
            OperatorEventKind::ApprovalSigned => "approval_signed",
            OperatorEventKind::ConfirmationRequested => "confirmation_requested",
            OperatorEventKind::Confirmed => "confirmed",
            OperatorEventKind::CapChangeRequested => "cap_change_requested",
            OperatorEventKind::CapSet => "cap_set",
            OperatorEventKind::CodeRefused => "code_refused",
            OperatorEventKind::Lockout => "lockout",
            OperatorEventKind::CodeFromWrongPeer => "code_from_wrong_peer",
            OperatorEventKind::ImportConfirmed => "import_confirmed",
            OperatorEventKind::ImportApplied => "import_applied",
            OperatorEventKind::ImportConfirmationExpired => "import_confirmation_expired",
            OperatorEventKind::ConsoleAction => "console_action",
            OperatorEventKind::AgentPaused => "agent_paused",
            OperatorEventKind::ResumeRequested => "resume_requested",
            OperatorEventKind::AgentResumed => "agent_resumed",
        }
    }
}

impl fmt::Display for OperatorEventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
