//! The ledger: what the signer has recorded, rebuilt from the audit log at start and kept
//! in memory while serving. Spends, recent requests (for the rate limit), idempotency
//! records and approval history live here; [`Event`] is what the audit log stores.
//!
//! The audit log is the ledger's durable form: an [`Event::Signed`] entry is the spend
//! record, fsynced before the signature leaves (see `engine`). So after `kill -9` and a
//! restart, replaying the log gives exactly the totals that were acknowledged.

use std::collections::{BTreeMap, HashMap, VecDeque};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use vigil_protocol::{
    AgentId, Amount, ApprovalId, AssetSymbol, CapKind, Context, ErrorKind, IdempotencyKey, Intent,
    Network, OperatorRequestId, PauseId, PauseReason, PeerRole, Purpose, Quantity, Rule, Signed,
    SignedTx,
};

/// What a Hyperliquid `signed` entry adds: the key that signed, its nonce (the journal is the
/// durable record of every key's last nonce), and what the action did that later decisions
/// depend on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HlSigned {
    /// The exchange's network.
    pub network: Network,
    /// The signing key's address, `0x` + 40 lowercase hex digits.
    pub key: String,
    /// The action's nonce (ms), also the time of a user-signed action.
    pub nonce: u64,
    /// A `perp_leverage`: the perp whose leverage this agent set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leverage_set: Option<AssetSymbol>,
    /// A `perp_leverage`: the leverage set (absent in entries of earlier releases: then the
    /// signer does not know it, and a paused agent may not change it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leverage: Option<u32>,
    /// A `perp_leverage`: whether it set cross margin (else isolated); with `leverage`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cross: Option<bool>,
    /// A `perp_register_api_key`: the API wallet address registered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registered: Option<String>,
}

/// One more spend of a `signed` entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpendRecord {
    /// The asset.
    pub asset: AssetSymbol,
    /// Base units.
    pub amount: Amount,
}

use crate::approval::{ApprovalRequest, Approvals, CodeOutcome};
use crate::audit::{AuditError, Carried, Entry, SealedEnd};

pub(crate) mod carry;
use crate::policy::{CapOverride, History};
pub(crate) use carry::expand;

/// The rolling window of the velocity cap.
pub(crate) const VELOCITY_WINDOW_SECS: u64 = 86_400;
/// How long a signed result is remembered for its idempotency key.
pub(crate) const IDEMPOTENCY_WINDOW_SECS: u64 = 2 * 86_400;
/// The window of the per-minute rate limit.
pub(crate) const RATE_WINDOW_SECS: u64 = 60;

/// One audit log entry's payload.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Event {
    /// The signer started with this policy.
    Started {
        /// Signer version.
        version: String,
        /// SHA-256 of the policy file, hex.
        policy_digest: String,
    },
    /// A transaction was signed: this is the spend record.
    Signed {
        /// The agent whose key signed.
        agent: AgentId,
        /// Its idempotency key.
        idempotency_key: IdempotencyKey,
        /// SHA-256 of the canonical intent JSON, hex.
        intent_digest: String,
        /// The asset spent.
        asset: AssetSymbol,
        /// Base units spent (0 for a Hyperliquid action that spends nothing: a cancel, a
        /// reduce-only order, leverage, the dead-man switch, the API wallet's registration).
        amount: Quantity,
        /// The signer's summary of what it built.
        summary: String,
        /// The transaction signature.
        signature: String,
        /// The wire transaction, base64 (kept so an idempotent retry returns the same bytes).
        tx: String,
        /// The approval that released it, if it needed one.
        approval_id: Option<ApprovalId>,
        /// EVM: what else the request spent (the fees in the native asset, when `asset` is a
        /// token), counted like `amount`. Absent when nothing else.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        also_spent: Vec<SpendRecord>,
        /// EVM: the transactions signed to be sent before `tx` (the exact approval of a
        /// supply or repay), so an idempotent retry returns them too. Absent when none.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        prior: Vec<SignedTx>,
        /// Hyperliquid: the key, its nonce, and what the action set. Absent on other chains.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        hyperliquid: Option<HlSigned>,
    },
    /// A request was refused.
    Denied {
        /// The agent.
        agent: AgentId,
        /// The protocol error kind.
        kind: ErrorKind,
        /// The policy rule, for `policy_denied`.
        rule: Option<Rule>,
        /// The message returned.
        message: String,
    },
    /// A request above the threshold now waits for the operator.
    ApprovalRequested {
        /// The approval id.
        approval_id: ApprovalId,
        /// The agent.
        agent: AgentId,
        /// The idempotency key of the request.
        idempotency_key: IdempotencyKey,
        /// The request's intent.
        intent: Intent,
        /// The request's context.
        context: Context,
        /// The summary shown to the operator.
        summary: String,
        /// Unix seconds after which it is void.
        expires_at: u64,
    },
    /// The operator's code was accepted: the approval is granted, and one `sign` of the same
    /// request collects its signature until `collect_by`.
    ApprovalGranted {
        /// The approval id.
        approval_id: ApprovalId,
        /// The TOTP time step consumed (never accepted again).
        totp_step: u64,
        /// Unix seconds until which the grant can be collected (absent in logs written before
        /// grants were collected by `sign`: there the grant was signed in the same write).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        collect_by: Option<u64>,
    },
    /// An approval attempt failed.
    ApprovalRefused {
        /// The approval id.
        approval_id: ApprovalId,
        /// Why.
        kind: ErrorKind,
    },
    /// The operator confirmed something with a code (`confirm`: a phrase confirmation).
    OperatorConfirmed {
        /// What was confirmed (the signer's own words for the request).
        purpose: Purpose,
        /// The TOTP time step consumed.
        totp_step: u64,
        /// The request answered (absent before requests were created by the signer).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        request_id: Option<OperatorRequestId>,
    },
    /// The operator set a cap within the signed ceiling (`set_limit`). Recorded as
    /// `limit_set`, with the cap's kind in `limit` (the wire's names).
    #[serde(rename = "limit_set")]
    CapSet {
        /// The agent.
        agent: AgentId,
        /// The asset.
        asset: AssetSymbol,
        /// Which cap.
        #[serde(rename = "limit")]
        cap: CapKind,
        /// The new cap, base units.
        amount: Amount,
        /// The signed ceiling at the time.
        ceiling: Amount,
        /// The TOTP time step consumed.
        totp_step: u64,
        /// The request answered (absent before requests were created by the signer).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        request_id: Option<OperatorRequestId>,
    },
    /// The operator confirmed the staged key-ceremony import (`import_confirm`) with a code
    /// of the STAGED approval secret; the signer applies it at its next start.
    ImportConfirmed {
        /// SHA-256 of the staged manifest, hex.
        manifest_digest: String,
        /// The TOTP time step of the NEW authenticator's code.
        totp_step: u64,
        /// Where it was confirmed (absent in entries of earlier releases: the socket).
        #[serde(default)]
        via: ConfirmedVia,
        /// What gave the authority to install these keys (absent in earlier releases' entries).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        authority: Option<ImportAuthority>,
        /// The step of the CURRENT authenticator's code, when that was the authority.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        current_totp_step: Option<u64>,
    },
    /// A confirmation that was not applied in time (`import::live::CONFIRMATION_TTL_SECS`):
    /// never applied; the staged import must be confirmed again.
    ImportConfirmationExpired {
        /// SHA-256 of the staged manifest, hex.
        manifest_digest: String,
        /// When it was confirmed (unix seconds).
        confirmed_at: u64,
    },
    /// A confirmed import was applied at start: the keystore and policy were replaced.
    ImportApplied {
        /// SHA-256 of the applied manifest, hex.
        manifest_digest: String,
        /// The record dir under `imports/` that keeps the manifest and the previous keys.
        record: String,
        /// The digest of the policy now in force.
        policy_digest: String,
    },
    /// An asker created a request that waits for the operator's code (`request_confirmation`,
    /// `request_set_cap`).
    RequestCreated {
        /// Its id.
        request_id: OperatorRequestId,
        /// The asker's idempotency key.
        idempotency_key: IdempotencyKey,
        /// What is asked, typed.
        request: crate::requests::RequestBody,
        /// What the operator is shown (rendered by the signer).
        summary: String,
        /// Unix seconds after which it can no longer be answered.
        expires_at: u64,
    },
    /// A request was answered but refused (a cap no longer within the ceiling).
    RequestRefused {
        /// Its id.
        request_id: OperatorRequestId,
        /// The protocol error kind.
        kind: ErrorKind,
        /// The policy rule.
        rule: Option<Rule>,
        /// The message returned.
        message: String,
    },
    /// A peer sent an op its role may not send (`docs/protocol.md`, "Roles"); for a
    /// code-bearing op, the code was never looked at.
    PeerRefused {
        /// The peer's uid (`SO_PEERCRED`).
        peer_uid: u32,
        /// The role that uid has.
        role: PeerRole,
        /// The op it sent.
        op: String,
    },
    /// A `confirm`, `set_limit` or `import_confirm` code was refused.
    OperatorCodeRefused {
        /// What it was for (`set_limit` requests are named `set_limit <agent> <asset> <limit>`).
        purpose: String,
        /// Why.
        kind: ErrorKind,
    },
    /// Refusals of one reason counted within one minute after the first of them (which has
    /// its own entry) and not written one by one (`engine::refusals`).
    RefusalsMerged {
        /// The entry type they would have had (`denied`, `approval_refused`,
        /// `operator_code_refused`).
        refused: String,
        /// The agent, when the policy names it (none: agents it does not name, or no agent).
        agent: Option<AgentId>,
        /// The protocol error kind.
        kind: ErrorKind,
        /// The policy rule, for `policy_denied`.
        rule: Option<Rule>,
        /// How many.
        count: u64,
        /// Time of the first of them.
        first_ts: u64,
        /// Time of the last of them.
        last_ts: u64,
    },
    /// `vigil-signer audit-key` at the console keyed a journal of an earlier release: this is
    /// its first entry with a MAC, which vouches for the unkeyed entries before it.
    JournalKeyed {
        /// Entries before it.
        entries_before: u64,
        /// The chain's head they end with, hex.
        head: String,
    },
    /// An agent was paused (`pause_agent`): from this entry on, the signer signs for it only
    /// what cannot add exposure or move funds out (`crate::pause`). Not written when the agent
    /// was paused already.
    AgentPaused {
        /// The agent.
        agent: AgentId,
        /// The pause's id (a resume request names it).
        pause_id: PauseId,
        /// Why.
        reason: PauseReason,
    },
    /// The operator's code cleared an agent's pause (`resume_agent`).
    AgentResumed {
        /// The agent.
        agent: AgentId,
        /// The pause cleared.
        pause_id: PauseId,
        /// The TOTP time step consumed.
        totp_step: u64,
        /// The `request_resume` answered.
        request_id: OperatorRequestId,
    },
    /// The first entry of a journal segment after a rotation (`audit::segment`): the end of
    /// the sealed segment before it (whose last hash is this entry's `prev`), and the earlier
    /// entries the replay still needs, verbatim ([`carry`]). A start replays from here.
    Checkpoint {
        /// The sealed segment's name, last seq, hash and time.
        sealed: SealedEnd,
        /// The earlier entries the replay needs, in seq order.
        carried: Vec<Carried<Event>>,
    },
    /// `vigil-signer unlock-codes` at the appliance's console cleared the wrong-code counts
    /// and locks (the only way out once the daily budget of wrong codes is spent).
    CodesUnlocked {
        /// Whether codes were locked at that moment (for a timed lock or for good).
        was_locked: bool,
        /// Wrong codes counted within the 24 hours before.
        wrong_codes_in_window: u64,
    },
}

impl Event {
    /// What the entry says of operator codes, for the lockout (replayed at start and by the
    /// console's `unlock-codes`): a wrong code is an `approval_refused` or
    /// `operator_code_refused` of kind `approval_invalid_code` / `operator_code_invalid` (other
    /// refusals, such as a code sent while locked, compared no code).
    pub(crate) fn code_outcome(&self) -> Option<CodeOutcome> {
        match self {
            Event::ApprovalRefused {
                kind: ErrorKind::ApprovalInvalidCode,
                ..
            }
            | Event::OperatorCodeRefused {
                kind: ErrorKind::OperatorCodeInvalid,
                ..
            } => Some(CodeOutcome::Wrong),
            Event::ApprovalGranted { .. }
            | Event::OperatorConfirmed { .. }
            | Event::CapSet { .. }
            | Event::AgentResumed { .. }
            | Event::ImportConfirmed { .. } => Some(CodeOutcome::Accepted),
            Event::CodesUnlocked { .. } => Some(CodeOutcome::Unlocked),
            _ => None,
        }
    }
}

/// Where a key-ceremony import was confirmed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConfirmedVia {
    /// The running signer's `import_confirm` (the orchestrator's Telegram path).
    #[default]
    Socket,
    /// `vigil-signer import-confirm` at the appliance, the signer stopped.
    Console,
}

/// What gave the authority to install a key-ceremony import.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ImportAuthority {
    /// No keys yet: the operator at the appliance's console, with the new authenticator.
    FirstInstall,
    /// A code of the authenticator the replaced keys ran with.
    CurrentCode,
    /// The staged manifest is signed by the policy key the appliance pinned.
    PinnedPolicyKey,
}

/// What an idempotency key maps to.
#[derive(Clone, Debug)]
pub(crate) enum Remembered {
    /// Signed and durable: the intent's digest and where the `signed` entry is in the journal
    /// (an idempotent retry reads the transaction back from there), not the transaction itself,
    /// so 48 hours of records cost a few dozen bytes each.
    Signed {
        intent_digest: String,
        /// The `signed` entry's seq.
        seq: u64,
        ts: u64,
    },
    /// Signed, its record not yet durable; waiters watch for the outcome.
    InFlight {
        intent_digest: String,
        done: tokio::sync::watch::Receiver<Option<Result<Signed, String>>>,
    },
    /// Waiting for the operator.
    AwaitingApproval {
        intent_digest: String,
        approval_id: ApprovalId,
        expires_at: u64,
    },
}

impl Remembered {
    /// The digest of the intent this key was first used with.
    pub(crate) fn intent_digest(&self) -> &str {
        match self {
            Remembered::Signed { intent_digest, .. }
            | Remembered::InFlight { intent_digest, .. }
            | Remembered::AwaitingApproval { intent_digest, .. } => intent_digest,
        }
    }
}

/// The in-memory ledger. Queries are O(log n) in the entries of one agent and asset, so a
/// busy agent does not make every decision slower.
#[derive(Debug, Default)]
pub(crate) struct Ledger {
    spends: BTreeMap<AgentId, BTreeMap<AssetSymbol, Series>>,
    requests: BTreeMap<AgentId, VecDeque<u64>>,
    idempotency: HashMap<(AgentId, IdempotencyKey), Remembered>,
    overrides: BTreeMap<(AgentId, AssetSymbol), CapOverride>,
    last_prune: u64,
    /// Hyperliquid: each key's last nonce (by address), never forgotten.
    hl_nonces: HashMap<String, u64>,
    /// Hyperliquid: the perps whose leverage each agent set, per network, with the last
    /// leverage and margin mode set (unknown for entries of earlier releases).
    hl_leverage: BTreeMap<(AgentId, Network, AssetSymbol), Option<(u32, bool)>>,
    /// Hyperliquid: API wallet addresses registered on their master (once per key, ever).
    hl_registered: std::collections::BTreeSet<String>,
}

/// Spends of one agent and asset in time order, as running totals: the sum over any suffix
/// of the window is one binary search and one subtraction.
#[derive(Debug, Default)]
struct Series {
    /// (timestamp, running total including this spend), timestamps non-decreasing.
    entries: VecDeque<(u64, u128)>,
    /// The running total before the first kept entry.
    base: u128,
}

impl Series {
    fn push(&mut self, ts: u64, amount: u128) {
        let (last_ts, last_total) = self.entries.back().copied().unwrap_or((0, self.base));
        // A clock that stepped back must not hide a spend from the window: count it as of the
        // latest time already seen (it then stays in the window longer, never shorter).
        self.entries
            .push_back((ts.max(last_ts), last_total.saturating_add(amount)));
    }

    fn sum_since(&self, since: u64) -> u128 {
        let Some(&(_, last_total)) = self.entries.back() else {
            return 0;
        };
        let i = self.entries.partition_point(|(t, _)| *t < since);
        let before = if i == 0 {
            self.base
        } else {
            self.entries[i - 1].1
        };
        last_total - before
    }

    fn prune_before(&mut self, since: u64) {
        while let Some(&(t, total)) = self.entries.front() {
            if t >= since {
                break;
            }
            self.base = total;
            self.entries.pop_front();
        }
    }
}

impl Ledger {
    /// Rebuilds the ledger and approval state from the audit entries, streamed: what is kept
    /// is bounded by the windows (spends of 24 h, idempotency records of 48 h, approvals
    /// waiting), never the journal's length.
    pub(crate) fn replay(
        entries: impl IntoIterator<Item = Result<Entry<Event>, AuditError>>,
        approvals: &mut Approvals,
        now: u64,
    ) -> Result<Self, AuditError> {
        let mut ledger = Ledger::default();
        for e in entries {
            let e = e?;
            match &e.event {
                Event::Signed {
                    agent,
                    idempotency_key,
                    intent_digest,
                    asset,
                    amount,
                    approval_id,
                    also_spent,
                    hyperliquid,
                    ..
                } => {
                    if let Some(id) = approval_id {
                        approvals.restore_collected(id);
                    }
                    if let Some(hl) = hyperliquid {
                        ledger.note_hyperliquid(agent, hl);
                    }
                    ledger.record_spend(agent, *asset, amount.get(), e.ts);
                    for s in also_spent {
                        ledger.record_spend(agent, s.asset, s.amount.base_units(), e.ts);
                    }
                    ledger.idempotency.insert(
                        (agent.clone(), idempotency_key.clone()),
                        Remembered::Signed {
                            intent_digest: intent_digest.clone(),
                            seq: e.seq,
                            ts: e.ts,
                        },
                    );
                }
                Event::ApprovalRequested {
                    approval_id,
                    agent,
                    idempotency_key,
                    intent,
                    context,
                    summary,
                    expires_at,
                } => {
                    approvals.restore(
                        approval_id.clone(),
                        ApprovalRequest {
                            agent: agent.clone(),
                            idempotency_key: idempotency_key.clone(),
                            intent: intent.clone(),
                            context: context.clone(),
                            summary: summary.clone(),
                            expires_at: *expires_at,
                        },
                    );
                    ledger.idempotency.insert(
                        (agent.clone(), idempotency_key.clone()),
                        Remembered::AwaitingApproval {
                            intent_digest: intent_digest(intent),
                            approval_id: approval_id.clone(),
                            expires_at: *expires_at,
                        },
                    );
                }
                Event::ApprovalGranted {
                    approval_id,
                    totp_step,
                    collect_by,
                } => {
                    // A grant from before grants were collected was signed in the same write
                    // (its `signed` entry follows and closes it).
                    let collect_by = collect_by.unwrap_or(e.ts);
                    if let Some(request) =
                        approvals.restore_granted(approval_id, *totp_step, collect_by)
                    {
                        ledger.idempotency.insert(
                            (request.agent.clone(), request.idempotency_key.clone()),
                            Remembered::AwaitingApproval {
                                intent_digest: intent_digest(&request.intent),
                                approval_id: approval_id.clone(),
                                expires_at: collect_by,
                            },
                        );
                    }
                }
                Event::OperatorConfirmed { totp_step, .. } => approvals.restore_step(*totp_step),
                Event::ImportConfirmed {
                    totp_step,
                    current_totp_step,
                    ..
                } => {
                    approvals.restore_step(*totp_step);
                    approvals.restore_step(current_totp_step.unwrap_or_default());
                }
                // Approvals asked for under the previous keys are not carried over.
                Event::ImportApplied { .. } => approvals.close_all_waiting(),
                Event::CapSet {
                    agent,
                    asset,
                    cap,
                    amount,
                    totp_step,
                    ..
                } => {
                    approvals.restore_step(*totp_step);
                    ledger.set_cap(agent, *asset, *cap, amount.base_units());
                }
                Event::AgentResumed { totp_step, .. } => approvals.restore_step(*totp_step),
                Event::ApprovalRefused { .. }
                | Event::RequestCreated { .. }
                | Event::RequestRefused { .. }
                | Event::PeerRefused { .. }
                | Event::OperatorCodeRefused { .. }
                | Event::CodesUnlocked { .. } => {
                    if let Some(outcome) = e.event.code_outcome() {
                        approvals.restore_code_outcome(outcome, e.ts);
                    }
                }
                Event::ImportConfirmationExpired { .. }
                | Event::RefusalsMerged { .. }
                | Event::JournalKeyed { .. }
                | Event::Denied { .. }
                | Event::AgentPaused { .. }
                | Event::Checkpoint { .. }
                | Event::Started { .. } => {}
            }
            // Keep what replay holds bounded as it goes, as serving does.
            if e.seq.is_multiple_of(4096) {
                approvals.prune(e.ts.min(now));
                ledger.prune(e.ts.min(now));
            }
        }
        approvals.prune(now);
        ledger.prune(now);
        Ok(ledger)
    }

    /// Counts a spend (reserved before it is durable; never un-counted: failing closed).
    pub(crate) fn record_spend(
        &mut self,
        agent: &AgentId,
        asset: AssetSymbol,
        amount: u128,
        ts: u64,
    ) {
        let series = self
            .spends
            .entry(agent.clone())
            .or_default()
            .entry(asset)
            .or_default();
        series.push(ts, amount);
        series.prune_before(ts.saturating_sub(VELOCITY_WINDOW_SECS));
    }

    /// Hyperliquid: the nonce for the key at `address` now: the signer's clock in ms, or one
    /// more than the key's last nonce if the clock is not past it (strictly increasing even
    /// when the clock steps back). Call under the engine's lock, and [`Ledger::note_hyperliquid`]
    /// before the lock is released, so two requests never share a nonce.
    pub(crate) fn next_hl_nonce(&self, address: &str, now_ms: u64) -> u64 {
        match self.hl_nonces.get(address) {
            Some(last) => now_ms.max(last.saturating_add(1)),
            None => now_ms,
        }
    }

    /// Hyperliquid: records what a signed action did (its nonce, leverage set, registration).
    pub(crate) fn note_hyperliquid(&mut self, agent: &AgentId, hl: &HlSigned) {
        let last = self.hl_nonces.entry(hl.key.clone()).or_default();
        *last = (*last).max(hl.nonce);
        if let Some(perp) = hl.leverage_set {
            let value = hl.leverage.zip(hl.cross);
            self.hl_leverage
                .insert((agent.clone(), hl.network, perp), value);
        }
        if let Some(api) = &hl.registered {
            self.hl_registered.insert(api.clone());
        }
    }

    /// Hyperliquid: whether `agent` set the leverage of `perp` on `network` through the signer.
    pub(crate) fn hl_leverage_set(
        &self,
        agent: &AgentId,
        network: Network,
        perp: AssetSymbol,
    ) -> bool {
        self.hl_leverage
            .contains_key(&(agent.clone(), network, perp))
    }

    /// Hyperliquid: the leverage and margin mode (`true`: cross) `agent` last set for `perp` on
    /// `network` through the signer, when known.
    pub(crate) fn hl_leverage_of(
        &self,
        agent: &AgentId,
        network: Network,
        perp: AssetSymbol,
    ) -> Option<(u32, bool)> {
        self.hl_leverage
            .get(&(agent.clone(), network, perp))
            .copied()
            .flatten()
    }

    /// Hyperliquid: whether the API wallet at `address` was registered already.
    pub(crate) fn hl_registered(&self, address: &str) -> bool {
        self.hl_registered.contains(address)
    }

    /// Sets an operator cap (the caller checked it against the ceiling and the code).
    pub(crate) fn set_cap(
        &mut self,
        agent: &AgentId,
        asset: AssetSymbol,
        cap: CapKind,
        amount: u128,
    ) {
        let o = self.overrides.entry((agent.clone(), asset)).or_default();
        match cap {
            CapKind::PerTx => o.per_tx = Some(amount),
            CapKind::Velocity24h => o.velocity_24h = Some(amount),
        }
    }

    /// Notes that `agent` made a `sign` request now (for the rate limit), and now and then
    /// drops what no window needs any more.
    pub(crate) fn note_request(&mut self, agent: &AgentId, now: u64) {
        let q = self.requests.entry(agent.clone()).or_default();
        let last = q.back().copied().unwrap_or(0);
        q.push_back(now.max(last));
        while q
            .front()
            .is_some_and(|t| t.saturating_add(RATE_WINDOW_SECS) <= now)
        {
            q.pop_front();
        }
        if now >= self.last_prune.saturating_add(RATE_WINDOW_SECS) {
            self.prune(now);
        }
    }

    /// What this idempotency key maps to.
    pub(crate) fn remembered(&self, agent: &AgentId, key: &IdempotencyKey) -> Option<&Remembered> {
        self.idempotency.get(&(agent.clone(), key.clone()))
    }

    /// Sets what this idempotency key maps to.
    pub(crate) fn remember(&mut self, agent: &AgentId, key: &IdempotencyKey, r: Remembered) {
        self.idempotency.insert((agent.clone(), key.clone()), r);
    }

    /// Forgets a key (an approval that expired, a record that could not be written).
    pub(crate) fn forget(&mut self, agent: &AgentId, key: &IdempotencyKey) {
        self.idempotency.remove(&(agent.clone(), key.clone()));
    }

    /// Base units of each asset spent by `agent` in the 24 h before `now`.
    pub(crate) fn spent_24h(&self, agent: &AgentId, now: u64) -> BTreeMap<AssetSymbol, u128> {
        let since = now.saturating_sub(VELOCITY_WINDOW_SECS);
        self.spends
            .get(agent)
            .into_iter()
            .flatten()
            .map(|(asset, series)| (*asset, series.sum_since(since)))
            .filter(|(_, total)| *total > 0)
            .collect()
    }

    /// Drops what no window needs any more.
    pub(crate) fn prune(&mut self, now: u64) {
        self.last_prune = now;
        let since = now.saturating_sub(VELOCITY_WINDOW_SECS);
        for series in self.spends.values_mut().flat_map(BTreeMap::values_mut) {
            series.prune_before(since);
        }
        let keep_from = now.saturating_sub(IDEMPOTENCY_WINDOW_SECS);
        self.idempotency.retain(|_, r| match r {
            Remembered::Signed { ts, .. } => *ts >= keep_from,
            Remembered::AwaitingApproval { expires_at, .. } => *expires_at >= now,
            Remembered::InFlight { .. } => true,
        });
    }
}

impl History for Ledger {
    fn spent_since(&self, agent: &AgentId, asset: AssetSymbol, since: u64) -> u128 {
        self.spends
            .get(agent)
            .and_then(|a| a.get(&asset))
            .map_or(0, |series| series.sum_since(since))
    }

    fn requests_since(&self, agent: &AgentId, since: u64) -> u32 {
        let n = self
            .requests
            .get(agent)
            .map_or(0, |q| q.len() - q.partition_point(|t| *t < since));
        u32::try_from(n).unwrap_or(u32::MAX)
    }

    fn cap_override(&self, agent: &AgentId, asset: AssetSymbol) -> CapOverride {
        self.overrides
            .get(&(agent.clone(), asset))
            .copied()
            .unwrap_or_default()
    }
}

/// SHA-256 of the intent's JSON (serde field order is fixed by the types), hex.
pub(crate) fn intent_digest(intent: &Intent) -> String {
    let json = serde_json::to_vec(intent).unwrap_or_default();
    hex::encode(Sha256::digest(&json))
}

#[cfg(test)]
mod tests;
