//! The engine: one request in, one response out. It ties the policy, the keys, the
//! approvals and the ledger together, and it is the only place where a signature is
//! released — always after its spend record is durable in the audit log.
//!
//! Concurrency: the policy decision, the spend reservation and the idempotency record are
//! made under one short lock, so two concurrent requests can never both fit under a cap
//! that only one of them fits under. The durable write happens outside the lock and is
//! group-committed with other requests' writes.
//!
//! This file is the dispatcher and what the operations share (the [`Refusal`], the audit of
//! a refusal, the durable commit of a spend, every append to the journal). The peer's role
//! is checked first, in `roles`, against the table of `vigil_protocol::Op::access`. Each
//! operation has its own file: `hello`, `status`, `dry_run`, `sign` (which also collects a
//! granted approval), `approve` (grants), `requests` (`request_confirmation`,
//! `request_set_cap`, `request_status`), `confirm`, `set_cap` (the `set_limit` op),
//! `awaiting`, `events`, `audit_op`, `import` (`import_status`, `import_confirm`), and
//! `pause` (`pause_agent`, `request_resume`, `resume_agent`);
//! `prepare` builds and signs a transaction, `operator_code` checks codes that are not bound
//! to an approval.

mod approve;
mod audit_op;
mod awaiting;
mod confirm;
mod dry_run;
mod events;
mod hello;
mod hyperliquid;
mod import;
mod operator_code;
mod pause;
mod prepare;
mod refusals;
mod requests;
mod roles;
mod set_cap;
mod sign;
mod status;

pub(crate) use import::{After, Origin};
pub(crate) use roles::Peer;

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use vigil_protocol::{
    AgentId, Chain, ErrorKind, Intent, Network, Op, Request, Response, Rule, SignRequest, Signed,
    network_name,
};

use crate::approval::Approvals;
use crate::audit::{Appended, AuditError, AuditLog, JournalKey, Opened};
use crate::chains::solana;
use crate::import::live::AtStart;
use crate::keyring::AgentKeys;
use crate::keys::{AgentSecret, Ed25519Key, Secp256k1Key};
use crate::ledger::{Event, Ledger, Remembered};
use crate::operator_events::EventWindow;
use crate::pause::Pauses;
use crate::policy::Policy;
use crate::requests::Requests;

/// A refusal: becomes an error response, and (for decisions) an audit entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Refusal {
    /// The protocol error kind.
    pub kind: ErrorKind,
    /// The rule, for policy refusals.
    pub rule: Option<Rule>,
    /// What was wrong and what to do.
    pub message: String,
}

impl Refusal {
    fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            rule: None,
            message: message.into(),
        }
    }
    fn bad_request(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::BadRequest, message)
    }
    fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Internal, message)
    }
}

/// An agent's key on one chain and network, and its address, encoded once at start.
pub(crate) enum AgentKey {
    /// A Solana key and its base58 address.
    Solana {
        key: Ed25519Key,
        address: solana::Address,
    },
    /// An EVM key (it holds its address).
    Evm(Secp256k1Key),
    /// Hyperliquid: the API wallet (L1 actions) and the master (user-signed actions).
    Hyperliquid {
        api: Secp256k1Key,
        master: Secp256k1Key,
    },
}

impl AgentKey {
    fn new(secret: AgentSecret) -> Self {
        match secret {
            AgentSecret::Ed25519(key) => {
                let address =
                    solana::Address::of(solana_pubkey::Pubkey::new_from_array(key.public_bytes()));
                AgentKey::Solana { key, address }
            }
            AgentSecret::Secp256k1(key) => AgentKey::Evm(key),
            AgentSecret::Hyperliquid { api, master } => AgentKey::Hyperliquid { api, master },
        }
    }

    /// Hyperliquid: the master account's address, lowercase as the exchange writes it.
    pub(crate) fn master_address_text(&self) -> Option<String> {
        match self {
            AgentKey::Hyperliquid { master, .. } => Some(format!("{:#x}", master.address())),
            _ => None,
        }
    }

    /// The address as `hello` shows it (base58; EVM: EIP-55 checksummed; Hyperliquid: the API
    /// wallet, lowercase as the exchange writes addresses).
    pub(crate) fn address_text(&self) -> String {
        match self {
            AgentKey::Solana { address, .. } => address.as_str().to_owned(),
            AgentKey::Evm(key) => key.address_text(),
            AgentKey::Hyperliquid { api, .. } => format!("{:#x}", api.address()),
        }
    }
}

/// Approval requests whose audit entry replay remembers (newest first); more than ever wait at
/// once ([`crate::approval::MAX_WAITING`]), so every waiting one is among them.
const REQUESTED_SEQS_KEPT: usize = 4096;

/// What the engine starts from.
#[derive(Debug)]
pub(crate) struct EngineParts {
    /// The verified, signed policy.
    pub policy: Policy,
    /// Unlocked agent keys.
    pub keys: AgentKeys,
    /// Approval verifier (with the secret from the keystore).
    pub approvals: Approvals,
    /// The audit log, opened and verified, its writer not started: replayed (streamed) into
    /// the ledger, then started.
    pub journal: Opened<Event>,
    /// The keystore's journal key (none while awaiting keys, or with a format 1 keystore).
    pub journal_key: Option<JournalKey>,
    /// The staged key-ceremony import found at start, and one applied at start (if any).
    pub import: AtStart,
    /// True when the signer runs without a keystore, waiting for the staged import: it
    /// answers `hello`, `status` and the import ops, and refuses everything else.
    pub awaiting_keys: bool,
    /// The policy key the keystore pins (none while awaiting keys): a staged stick signed by
    /// it replaces the keys without the current authenticator's code.
    pub pinned_policy_key: Option<[u8; 32]>,
    /// When the journal rotates and which sealed segments are kept (none: it never rotates).
    pub retention: Option<crate::audit::Retention>,
}

/// The signer's request handler.
pub(crate) struct Engine {
    policy: Policy,
    keys: BTreeMap<(AgentId, Chain, Network), AgentKey>,
    audit: AuditLog<Event>,
    inner: Mutex<Inner>,
    /// The latest operator events, for `events` (its own lock: appends feed it).
    window: Mutex<EventWindow>,
    import: import::ImportState,
    clock: fn() -> u64,
    /// Milliseconds, for Hyperliquid nonces (each key's nonces increase whatever it says).
    clock_ms: fn() -> u64,
}

struct Inner {
    ledger: Ledger,
    approvals: Approvals,
    refusals: refusals::Throttle,
    /// Confirmations and cap changes waiting for (or answered by) the operator.
    requests: Requests,
    /// The audit entry of each approval request still known, for `awaiting`.
    approval_seqs: std::collections::HashMap<vigil_protocol::ApprovalId, u64>,
    /// The agents that are paused (`crate::pause`).
    pauses: Pauses,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("agents", &self.keys.len())
            .finish_non_exhaustive()
    }
}

/// Unix milliseconds from the system clock.
pub(crate) fn system_now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Unix seconds from the system clock.
pub(crate) fn system_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Engine {
    /// Builds the engine: rebuilds its state by streaming the journal, then starts the
    /// journal's writer.
    pub(crate) fn new(parts: EngineParts) -> Result<Self, AuditError> {
        Self::with_clock(parts, system_now)
    }

    /// As [`Engine::new`], with a clock (tests).
    pub(crate) fn with_clock(parts: EngineParts, clock: fn() -> u64) -> Result<Self, AuditError> {
        Self::with_clocks(parts, clock, system_now_ms)
    }

    /// As [`Engine::new`], with a clock in seconds and one in milliseconds (tests).
    pub(crate) fn with_clocks(
        parts: EngineParts,
        clock: fn() -> u64,
        clock_ms: fn() -> u64,
    ) -> Result<Self, AuditError> {
        let EngineParts {
            policy,
            keys,
            mut approvals,
            journal,
            journal_key,
            import,
            awaiting_keys,
            pinned_policy_key,
            retention,
        } = parts;
        let now = clock();
        // One streamed pass: the ledger replays each entry, and the same entry rebuilds the
        // operator requests, the window of operator events, and the audit entry of recent
        // approval requests (bounded: the window and the seqs keep only the newest).
        let mut requests = Requests::default();
        let mut pauses = Pauses::default();
        let mut window = EventWindow::default();
        let mut requested: BTreeMap<u64, vigil_protocol::ApprovalId> = BTreeMap::new();
        // A checkpoint (the first entry of a rotated segment) stands for the entries it carries.
        let entries = crate::ledger::expand(journal.entries()).inspect(|e| {
            if let Ok(e) = e {
                requests.replay_entry(e, now);
                pauses.replay_entry(e);
                window.push(e.seq, e.ts, &e.event);
                if let Event::ApprovalRequested { approval_id, .. } = &e.event {
                    requested.insert(e.seq, approval_id.clone());
                    if requested.len() > REQUESTED_SEQS_KEPT {
                        requested.pop_first();
                    }
                }
            }
        });
        let ledger = Ledger::replay(entries, &mut approvals, now)?;
        requests.prune(now);
        let approval_seqs = requested
            .into_iter()
            .filter(|(_, id)| approvals.get(id).is_some())
            .map(|(seq, id)| (id, seq))
            .collect();
        let audit = match retention {
            Some(retention) => journal.start_rotating(journal_key, retention)?,
            None => journal.start(journal_key)?,
        };
        let keys = keys
            .into_iter()
            .map(|(id, secret)| (id, AgentKey::new(secret)))
            .collect();
        Ok(Self {
            policy,
            keys,
            audit,
            inner: Mutex::new(Inner {
                ledger,
                approvals,
                refusals: refusals::Throttle::default(),
                requests,
                approval_seqs,
                pauses,
            }),
            window: Mutex::new(window),
            import: import::ImportState::new(import, awaiting_keys, pinned_policy_key),
            clock,
            clock_ms,
        })
    }

    /// Records the start in the audit log (and an import applied, or a confirmation expired,
    /// at this start).
    pub(crate) async fn record_start(&self) -> Result<(), String> {
        let policy_digest = self.policy_digest();
        let mut events = vec![Event::Started {
            version: env!("CARGO_PKG_VERSION").to_string(),
            policy_digest: policy_digest.clone(),
        }];
        events.extend(self.import.start_events(policy_digest));
        self.journal((self.clock)(), events)
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    /// Records what loading did with a staged import (an import applied, a confirmation
    /// expired) without a `started` entry: the console's `import-confirm` serves nothing.
    pub(crate) async fn record_import_events(&self) -> Result<(), String> {
        let events = self.import.start_events(self.policy_digest());
        if events.is_empty() {
            return Ok(());
        }
        self.record_events(events).await
    }

    /// Appends `events` durably (the console's import confirmation records what it applied).
    pub(crate) async fn record_events(&self, events: Vec<Event>) -> Result<(), String> {
        self.journal((self.clock)(), events)
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    /// The policy digest `hello` reports: empty while awaiting keys (there is no policy).
    fn policy_digest(&self) -> String {
        if self.import.awaiting_keys() {
            String::new()
        } else {
            hex::encode(self.policy.digest)
        }
    }

    /// Answers one request with the JSON text of its response, and says what the server must
    /// do once the answer is written (exit for a restart after a confirmed import: see [`After`]).
    /// `peer` is the connection's uid and role: the op is checked against the role first,
    /// before anything else looks at it (`roles.rs`).
    pub(crate) async fn handle_request(&self, req: Request, peer: Peer) -> (String, After) {
        let Request { id, op } = req;
        if let Err(refusal) = self.check_role(peer, &op).await {
            return (respond::<()>(id, Err(refusal)), After::Continue);
        }
        if let Some(refusal) = self.import.refuse_while_awaiting_keys(&op) {
            return (respond::<()>(id, Err(refusal)), After::Continue);
        }
        let response = match op {
            Op::ImportStatus => Response::ok_json(&id, &self.import.status()),
            Op::ImportConfirm(r) => {
                let result = self.import_confirm(r, Origin::Socket).await;
                let after = if result.is_ok() {
                    After::ExitForRestart
                } else {
                    After::Continue
                };
                return (respond(id, result), after);
            }
            Op::Hello => Response::ok_json(&id, &self.hello()),
            Op::Status => Response::ok_json(&id, &self.status()),
            Op::DryRun(r) => respond(id, self.dry_run(&r)),
            Op::Sign(r) => respond(id, self.sign(r).await),
            Op::Approve(r) => respond(id, self.approve(r).await),
            Op::Confirm(r) => respond(id, self.confirm(r).await),
            Op::SetCap(r) => respond(id, self.set_cap(r).await),
            Op::Audit(r) => respond(id, self.audit(r).await),
            Op::RequestConfirmation(r) => respond(id, self.request_confirmation(r).await),
            Op::RequestSetCap(r) => respond(id, self.request_set_cap(r).await),
            Op::RequestStatus(r) => respond(id, self.request_status(&r)),
            Op::Awaiting => Response::ok_json(&id, &self.awaiting()),
            Op::Events(r) => Response::ok_json(&id, &self.events(r)),
            Op::PauseAgent(r) => respond(id, self.pause_agent(r).await),
            Op::RequestResume(r) => respond(id, self.request_resume(r).await),
            Op::ResumeAgent(r) => respond(id, self.resume_agent(r).await),
        };
        (response, After::Continue)
    }

    /// Appends `events` to the journal (durably, group-committed) and feeds the operator
    /// events among them to the `events` window. Every append of the engine goes through here.
    async fn journal(&self, now: u64, events: Vec<Event>) -> Result<Vec<Appended>, AuditError> {
        let rendered: Vec<_> = events.iter().map(crate::operator_events::render).collect();
        let appended = self.audit.append(now, events).await?;
        let mut window = self
            .window
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for (a, line) in appended.iter().zip(rendered) {
            window.push_rendered(a.seq, now, line);
        }
        Ok(appended)
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A poisoned lock means a panic in a critical section; with panic=abort in release
        // that cannot be observed, and in tests the state is still consistent enough to read.
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The agent's key for the intent's chain AND network: keys are per network, and a key
    /// never signs for another network than its own. An agent the policy does not name is
    /// `unknown_agent`; a network the policy does not give the agent is the policy's
    /// `network_not_allowed` (whether or not a key exists for it); a network the policy allows
    /// but no key serves is `unknown_agent`.
    fn check_agent(&self, agent: &AgentId, intent: &Intent) -> Result<&AgentKey, Refusal> {
        let (chain, network) = network_of(intent);
        let Some(rules) = self.policy.agents.get(agent) else {
            return Err(Refusal::new(
                ErrorKind::UnknownAgent,
                format!(
                    "agent {agent} is not in the signed policy; agents are added at a key ceremony"
                ),
            ));
        };
        if !rules.networks.contains(&(chain, network)) {
            let allowed: Vec<String> = rules
                .networks
                .iter()
                .map(|&(c, n)| network_name(c, n))
                .collect();
            return Err(Refusal {
                kind: ErrorKind::PolicyDenied,
                rule: Some(Rule::NetworkNotAllowed),
                message: format!(
                    "{} is not among agent {agent}'s networks ({}); mainnet is allowed only when the signed policy names it",
                    network_name(chain, network),
                    allowed.join(", ")
                ),
            });
        }
        self.keys.get(&(agent.clone(), chain, network)).ok_or_else(|| {
            Refusal::new(
                ErrorKind::UnknownAgent,
                format!(
                    "agent {agent} has no key for {} in the keystore: keys are per network and made at a key ceremony; \
                     run one that makes this agent a {} key and import it",
                    network_name(chain, network),
                    network_name(chain, network)
                ),
            )
        })
    }

    /// Makes the spend record (and any events before it) durable, then releases the signature.
    async fn commit(
        &self,
        r: &SignRequest,
        digest: &str,
        event: Event,
        mut signed: Signed,
        now: u64,
        mut before: Vec<Event>,
    ) -> Result<Signed, Refusal> {
        before.push(event);
        match self.journal(now, before).await {
            Ok(appended) => {
                signed.ledger_seq = appended.last().map_or(0, |a| a.seq);
                self.lock().ledger.remember(
                    &r.agent,
                    &r.idempotency_key,
                    Remembered::Signed {
                        intent_digest: digest.to_string(),
                        seq: signed.ledger_seq,
                        ts: now,
                    },
                );
                Ok(signed)
            }
            Err(e) => {
                // The spend stays reserved (failing closed); the signature is dropped unreleased.
                self.lock().ledger.forget(&r.agent, &r.idempotency_key);
                tracing::error!(error = %e, "spend record could not be written; signature withheld");
                Err(Refusal::internal(format!(
                    "the spend could not be recorded durably ({e}); no signature was released. \
                     The signer refuses to sign until its state disk is fixed and it is restarted"
                )))
            }
        }
    }

    /// Records a refusal in the audit log (or counts it, merged: see [`refusals`]), then
    /// returns it.
    async fn refuse(&self, agent: &AgentId, refusal: Refusal, now: u64) -> Refusal {
        let event = Event::Denied {
            agent: agent.clone(),
            kind: refusal.kind,
            rule: refusal.rule,
            message: refusal.message.clone(),
        };
        let key = refusals::Key {
            what: "denied",
            agent: self
                .policy
                .agents
                .contains_key(agent)
                .then(|| agent.clone()),
            kind: refusal.kind,
            rule: refusal.rule,
        };
        if let Err(e) = self.record_refusal(key, event, now).await {
            tracing::error!(error = %e, "could not record a refusal in the audit log");
        }
        refusal
    }

    /// Writes a refusal's entry, merged with others of its key ([`refusals::Throttle`]).
    async fn record_refusal(
        &self,
        key: refusals::Key,
        event: Event,
        now: u64,
    ) -> Result<(), crate::audit::AuditError> {
        let verdict = self.lock().refusals.refusal(key, event, now);
        match verdict {
            refusals::Verdict::Merged => Ok(()),
            refusals::Verdict::Write(events) => self.journal(now, events).await.map(|_| ()),
        }
    }
}

/// The (chain, network) an intent is for.
fn network_of(intent: &Intent) -> (Chain, Network) {
    intent.chain_network()
}

/// The JSON text of the response to request `id`.
fn respond<T: serde::Serialize>(
    id: vigil_protocol::RequestId,
    result: Result<T, Refusal>,
) -> String {
    match result {
        Ok(v) => Response::ok_json(&id, &v),
        Err(r) => Response::error(Some(id), r.kind, r.rule, r.message).to_json(),
    }
}
