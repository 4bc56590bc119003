//! The engine: one request in, one response out. It ties the policy, the keys, the
//! approvals and the ledger together, and it is the only place where a signature is
//! released — always after its spend record is durable in the audit log.
//!
//! Concurrency: the policy decision, the spend reservation and the idempotency record are
//! made under one short lock, so two concurrent requests can never both fit under a cap
//! that only one of them fits under. The durable write happens outside the lock and is
//! group-committed with other requests' writes.
//!
//! The key-ceremony import ops (`import_status`, `import_confirm`) live in `engine/import.rs`.

mod audit_op;
mod import;

pub use import::After;

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use vigil_protocol::message::{
    AgentInfo, AgentStatus, ConfirmResult, Decision, DryRunResult, HelloResult, NeedsApproval,
    SetLimitResult, SignResult, Signed, StatusResult,
};
use vigil_protocol::{
    AgentId, Amount, ApproveRequest, Chain, ConfirmRequest, Context, DryRunRequest, ErrorKind,
    Intent, LimitKind, Op, PROTOCOL_VERSION, Request, Response, Rule, SetLimitRequest, SignRequest,
};

use crate::approval::{Approvals, Pending, new_approval_id};
use crate::audit::{AuditLog, Entry};
use crate::chains::solana;
use crate::import::live::AtStart;
use crate::keys::Ed25519Key;
use crate::ledger::{Event, Ledger, Remembered, intent_digest};
use crate::policy::{self, History as _, Policy, Verdict};

/// A refusal: becomes an error response, and (for decisions) an audit entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
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

/// Keys and addresses of the agents, by (agent, chain).
pub type AgentKeys = BTreeMap<(AgentId, Chain), Ed25519Key>;

/// What the engine starts from.
#[derive(Debug)]
pub struct EngineParts {
    /// The verified, signed policy.
    pub policy: Policy,
    /// Unlocked agent keys.
    pub keys: AgentKeys,
    /// Approval verifier (with the secret from the keystore).
    pub approvals: Approvals,
    /// The running audit log.
    pub audit: AuditLog<Event>,
    /// Entries replayed from the log at start.
    pub replayed: Vec<Entry<Event>>,
    /// The staged key-ceremony import found at start, and one applied at start (if any).
    pub import: AtStart,
    /// True when the signer runs without a keystore, waiting for the staged import: it
    /// answers `hello`, `status` and the import ops, and refuses everything else.
    pub awaiting_keys: bool,
}

/// The signer's request handler.
pub struct Engine {
    policy: Policy,
    keys: AgentKeys,
    audit: AuditLog<Event>,
    inner: Mutex<Inner>,
    import: import::ImportState,
    clock: fn() -> u64,
}

struct Inner {
    ledger: Ledger,
    approvals: Approvals,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("agents", &self.keys.len())
            .finish_non_exhaustive()
    }
}

/// Unix seconds from the system clock.
pub fn system_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A prepared transaction: inputs checked, built, summarised; not yet signed.
struct Prepared {
    asset: String,
    amount: u128,
    built: solana::Built,
}

impl Engine {
    /// Builds the engine and rebuilds its state from the replayed log.
    pub fn new(parts: EngineParts) -> Self {
        Self::with_clock(parts, system_now)
    }

    /// As [`Engine::new`], with a clock (tests).
    pub fn with_clock(parts: EngineParts, clock: fn() -> u64) -> Self {
        let EngineParts {
            policy,
            keys,
            mut approvals,
            audit,
            replayed,
            import,
            awaiting_keys,
        } = parts;
        let ledger = Ledger::replay(&replayed, &mut approvals, clock());
        Self {
            policy,
            keys,
            audit,
            inner: Mutex::new(Inner { ledger, approvals }),
            import: import::ImportState::new(import, awaiting_keys),
            clock,
        }
    }

    /// Records the start in the audit log (and an import applied at this start).
    pub async fn record_start(&self) -> Result<(), String> {
        let policy_digest = self.policy_digest();
        let mut events = vec![Event::Started {
            version: env!("CARGO_PKG_VERSION").to_string(),
            policy_digest: policy_digest.clone(),
        }];
        events.extend(self.import.applied_event(policy_digest));
        self.audit
            .append((self.clock)(), events)
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

    /// Answers one request.
    pub async fn handle(&self, req: Request) -> Response {
        self.handle_request(req).await.0
    }

    /// Answers one request, and says what the server must do once the answer is written
    /// (exit for a restart after a confirmed import: see [`After`]).
    pub async fn handle_request(&self, req: Request) -> (Response, After) {
        let Request { id, op } = req;
        if let Some(refusal) = self.import.refuse_while_awaiting_keys(&op) {
            return (respond::<()>(id, Err(refusal)), After::Continue);
        }
        let response = match op {
            Op::ImportStatus => Response::ok(id, &self.import.status()),
            Op::ImportConfirm(r) => {
                let result = self.import_confirm(r).await;
                let after = if result.is_ok() {
                    After::ExitForRestart
                } else {
                    After::Continue
                };
                return (respond(id, result), after);
            }
            Op::Hello => Response::ok(id, &self.hello()),
            Op::Status => Response::ok(id, &self.status()),
            Op::DryRun(r) => respond(id, self.dry_run(&r)),
            Op::Sign(r) => respond(id, self.sign(r).await),
            Op::Approve(r) => respond(id, self.approve(r).await),
            Op::Confirm(r) => respond(id, self.confirm(r).await),
            Op::SetLimit(r) => respond(id, self.set_limit(r).await),
            Op::Audit(r) => respond(id, self.audit(r).await),
        };
        (response, After::Continue)
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A poisoned lock means a panic in a critical section; with panic=abort in release
        // that cannot be observed, and in tests the state is still consistent enough to read.
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn hello(&self) -> HelloResult {
        let mut agents: BTreeMap<AgentId, BTreeMap<String, String>> = BTreeMap::new();
        for ((agent, chain), key) in &self.keys {
            let address = match chain {
                Chain::Solana => solana::address_of(&key.public_bytes()),
            };
            agents
                .entry(agent.clone())
                .or_default()
                .insert(chain.as_str().to_string(), address);
        }
        HelloResult {
            version: PROTOCOL_VERSION,
            policy_digest: self.policy_digest(),
            networks: self.policy.networks(),
            agents: agents
                .into_iter()
                .map(|(agent, addresses)| AgentInfo { agent, addresses })
                .collect(),
        }
    }

    fn status(&self) -> StatusResult {
        let now = (self.clock)();
        let inner = self.lock();
        let agents = self
            .policy
            .agents
            .iter()
            .map(|(agent, p)| AgentStatus {
                agent: agent.clone(),
                spent_24h: inner
                    .ledger
                    .spent_24h(agent, now)
                    .into_iter()
                    .map(|(a, v)| (a, v.to_string()))
                    .collect(),
                limits: p.limits_json(|asset| inner.ledger.limit_override(agent, asset)),
            })
            .collect();
        drop(inner);
        let (seq, head) = self.audit.head();
        StatusResult {
            agents,
            ledger_seq: seq,
            audit_head: hex::encode(head),
        }
    }

    /// `confirm`: checks an operator code for a named purpose (a phrase gate such as going
    /// live), records it durably and uses the code up. The orchestrator cannot produce a
    /// confirmation without the operator's authenticator.
    async fn confirm(&self, r: ConfirmRequest) -> Result<ConfirmResult, Refusal> {
        let step = self.operator_code(r.purpose.as_str(), &r.code).await?;
        let event = Event::OperatorConfirmed {
            purpose: r.purpose.clone(),
            totp_step: step,
        };
        let seq = self.record_operator_event(event).await?;
        Ok(ConfirmResult {
            confirmed: true,
            purpose: r.purpose,
            ledger_seq: seq,
        })
    }

    /// `set_limit`: sets an agent's per-transaction or 24 h cap for one asset, anywhere up to
    /// the signed policy's value. The ceiling is checked before the code is spent.
    async fn set_limit(&self, r: SetLimitRequest) -> Result<SetLimitResult, Refusal> {
        let Some(rules) = self.policy.agents.get(&r.agent) else {
            return Err(Refusal::new(
                ErrorKind::UnknownAgent,
                format!("agent {} is not in the signed policy", r.agent),
            ));
        };
        let Some(limits) = rules.assets.get(&r.asset) else {
            let known: Vec<&str> = rules.assets.keys().map(String::as_str).collect();
            return Err(Refusal::bad_request(format!(
                "agent {} has no limits for asset {:?} in the signed policy (it has: {})",
                r.agent,
                vigil_protocol::types::truncate(&r.asset),
                known.join(", ")
            )));
        };
        let (ceiling, rule) = match r.limit {
            LimitKind::PerTx => (limits.per_tx_cap, Rule::PerTxCap),
            LimitKind::Velocity24h => (limits.velocity_24h, Rule::VelocityCap24h),
        };
        let amount = r.amount.base_units();
        if amount > ceiling {
            return Err(Refusal {
                kind: ErrorKind::PolicyDenied,
                rule: Some(rule),
                message: format!(
                    "{amount} base units is above the signed ceiling of {ceiling} for {} {} {}; \
                     a higher cap needs a new policy signed at a ceremony",
                    r.agent,
                    r.asset,
                    r.limit.as_str()
                ),
            });
        }
        let purpose = format!("set_limit {} {} {}", r.agent, r.asset, r.limit.as_str());
        let step = self.operator_code(&purpose, &r.code).await?;
        let event = Event::LimitSet {
            agent: r.agent.clone(),
            asset: r.asset.clone(),
            limit: r.limit,
            amount: r.amount,
            ceiling: Amount::from_base_units(ceiling),
            totp_step: step,
        };
        let seq = self.record_operator_event(event).await?;
        self.lock()
            .ledger
            .set_limit(&r.agent, &r.asset, r.limit, amount);
        Ok(SetLimitResult {
            agent: r.agent,
            asset: r.asset,
            limit: r.limit,
            amount: r.amount,
            ceiling: Amount::from_base_units(ceiling),
            ledger_seq: seq,
        })
    }

    /// Verifies an operator code not bound to an approval; a refusal is audited.
    async fn operator_code(&self, purpose: &str, code: &str) -> Result<u64, Refusal> {
        self.operator_code_of(purpose, code, None).await
    }

    /// As [`Engine::operator_code`]; with `staged`, the code must be one of THAT secret (a
    /// staged import's), under the live verifier's single-use steps and lockout.
    async fn operator_code_of(
        &self,
        purpose: &str,
        code: &str,
        staged: Option<&Approvals>,
    ) -> Result<u64, Refusal> {
        let now = (self.clock)();
        let verified = match staged {
            None => self.lock().approvals.verify_code(code, now),
            Some(staged) => self.lock().approvals.verify_code_with(staged, code, now),
        };
        match verified {
            Ok(step) => Ok(step),
            Err(refusal) => {
                let event = Event::OperatorCodeRefused {
                    purpose: purpose.to_string(),
                    kind: refusal.kind,
                };
                if let Err(e) = self.audit.append(now, vec![event]).await {
                    tracing::error!(error = %e, "could not record a refused operator code");
                }
                Err(Refusal::new(refusal.kind, refusal.message))
            }
        }
    }

    /// Makes an operator event durable before the answer; returns its sequence number.
    async fn record_operator_event(&self, event: Event) -> Result<u64, Refusal> {
        let now = (self.clock)();
        match self.audit.append(now, vec![event]).await {
            Ok(appended) => Ok(appended.last().map_or(0, |a| a.seq)),
            Err(e) => Err(Refusal::internal(format!(
                "the confirmation could not be recorded durably ({e}); nothing changed. \
                 Fix the signer's state disk and restart it"
            ))),
        }
    }

    /// Checks the agent exists in both the policy and the keystore for the intent's chain.
    fn check_agent(&self, agent: &AgentId, intent: &Intent) -> Result<&Ed25519Key, Refusal> {
        let Intent::Transfer(t) = intent;
        let key = self.keys.get(&(agent.clone(), t.chain));
        match (self.policy.agents.contains_key(agent), key) {
            (true, Some(key)) => Ok(key),
            (false, _) => Err(Refusal::new(
                ErrorKind::UnknownAgent,
                format!(
                    "agent {agent} is not in the signed policy; agents are added at a key ceremony"
                ),
            )),
            (true, None) => Err(Refusal::new(
                ErrorKind::UnknownAgent,
                format!(
                    "agent {agent} has no {} key in the keystore; keys are made at a key ceremony",
                    t.chain
                ),
            )),
        }
    }

    /// Checks the intent's inputs and builds the transaction (not signed).
    fn prepare(
        &self,
        agent: &AgentId,
        key: &Ed25519Key,
        intent: &Intent,
        context: &Context,
        dry: bool,
    ) -> Result<Prepared, Refusal> {
        let Intent::Transfer(t) = intent;
        match t.chain {
            Chain::Solana => {
                if t.asset != "SOL" {
                    return Err(Refusal::bad_request(format!(
                        "a native Solana transfer moves SOL, not {:?}; token transfers are not supported yet",
                        vigil_protocol::types::truncate(&t.asset)
                    )));
                }
                let to = solana::parse_address(&t.to)
                    .map_err(|e| Refusal::bad_request(e.to_string()))?;
                let canonical = solana::address_of(&to.to_bytes());
                if canonical != t.to {
                    return Err(Refusal::bad_request(format!(
                        "recipient must be in canonical base58: send {canonical}"
                    )));
                }
                let blockhash = match (&context.recent_blockhash, dry) {
                    (None, true) => solana_hash::Hash::default(),
                    (bh, _) => solana::parse_blockhash(bh.as_deref())
                        .map_err(|e| Refusal::bad_request(e.to_string()))?,
                };
                let lamports =
                    solana::lamports(t.amount).map_err(|e| Refusal::bad_request(e.to_string()))?;
                let transfer = solana::Transfer {
                    agent: agent.clone(),
                    network: t.network,
                    from: solana_pubkey::Pubkey::new_from_array(key.public_bytes()),
                    to,
                    lamports,
                    blockhash,
                };
                let built = solana::build_transfer(&transfer)
                    .map_err(|e| Refusal::bad_request(e.to_string()))?;
                Ok(Prepared {
                    asset: t.asset.clone(),
                    amount: t.amount.base_units(),
                    built,
                })
            }
        }
    }

    fn dry_run(&self, r: &DryRunRequest) -> Result<DryRunResult, Refusal> {
        let key = self.check_agent(&r.agent, &r.intent)?;
        let prepared = self.prepare(&r.agent, key, &r.intent, &r.context, true)?;
        let now = (self.clock)();
        let verdict = policy::decide(&self.policy, &self.lock().ledger, &r.agent, &r.intent, now);
        let rule = verdict.rule();
        Ok(match verdict {
            Verdict::Allow => DryRunResult {
                decision: Decision::Allow,
                rule,
                summary: prepared.built.summary,
            },
            Verdict::NeedsApproval { .. } => DryRunResult {
                decision: Decision::NeedsApproval,
                rule,
                summary: prepared.built.summary,
            },
            Verdict::Deny { message, .. } => DryRunResult {
                decision: Decision::Deny,
                rule,
                summary: message,
            },
        })
    }

    async fn sign(&self, r: SignRequest) -> Result<SignResult, Refusal> {
        let now = (self.clock)();
        let key = match self.check_agent(&r.agent, &r.intent) {
            Ok(k) => k,
            Err(refusal) => return Err(self.refuse(&r.agent, refusal, now).await),
        };
        let prepared = self.prepare(&r.agent, key, &r.intent, &r.context, false)?;
        let digest = intent_digest(&r.intent);

        enum Next {
            Done(SignResult),
            Wait(tokio::sync::watch::Receiver<Option<Result<Signed, String>>>),
            Refuse(Refusal),
            Approval(Event, NeedsApproval),
            Commit(
                Event,
                Signed,
                tokio::sync::watch::Sender<Option<Result<Signed, String>>>,
            ),
        }

        let next = {
            let mut inner = self.lock();
            let Inner { ledger, approvals } = &mut *inner;
            let remembered = ledger.remembered(&r.agent, &r.idempotency_key).cloned();
            match remembered {
                Some(rem) if rem.intent_digest() != digest => Next::Refuse(Refusal::new(
                    ErrorKind::IdempotencyConflict,
                    format!(
                        "idempotency key {} was already used by {} with a different intent; use a new key for a new intent",
                        r.idempotency_key, r.agent
                    ),
                )),
                Some(Remembered::Signed { result, .. }) => Next::Done(SignResult::Signed(result)),
                Some(Remembered::InFlight { done, .. }) => Next::Wait(done),
                Some(Remembered::Pending {
                    approval_id,
                    expires_at,
                    ..
                }) if approvals.get(&approval_id).is_some() => {
                    let summary = approvals
                        .get(&approval_id)
                        .map(|p| p.summary.clone())
                        .unwrap_or_default();
                    Next::Done(SignResult::NeedsApproval(NeedsApproval {
                        approval_id,
                        summary,
                        expires_at,
                    }))
                }
                _ => {
                    // New request (or one whose approval has lapsed): decide now.
                    ledger.forget(&r.agent, &r.idempotency_key);
                    let verdict = policy::decide(&self.policy, &*ledger, &r.agent, &r.intent, now);
                    ledger.note_request(&r.agent, now);
                    match verdict {
                        Verdict::Deny { rule, message } => Next::Refuse(Refusal {
                            kind: ErrorKind::PolicyDenied,
                            rule: Some(rule),
                            message,
                        }),
                        Verdict::NeedsApproval { .. } => {
                            match open_approval(approvals, &r, &prepared, now) {
                                Ok((event, needs)) => {
                                    ledger.remember(
                                        &r.agent,
                                        &r.idempotency_key,
                                        Remembered::Pending {
                                            intent_digest: digest.clone(),
                                            approval_id: needs.approval_id.clone(),
                                            expires_at: needs.expires_at,
                                        },
                                    );
                                    Next::Approval(event, needs)
                                }
                                Err(refusal) => Next::Refuse(refusal),
                            }
                        }
                        Verdict::Allow => {
                            let (event, signed) = sign_prepared(&r, &digest, &prepared, key, None)?;
                            ledger.record_spend(&r.agent, &prepared.asset, prepared.amount, now);
                            let (tx, rx) = tokio::sync::watch::channel(None);
                            ledger.remember(
                                &r.agent,
                                &r.idempotency_key,
                                Remembered::InFlight {
                                    intent_digest: digest.clone(),
                                    done: rx,
                                },
                            );
                            Next::Commit(event, signed, tx)
                        }
                    }
                }
            }
        };

        match next {
            Next::Done(result) => Ok(result),
            Next::Refuse(refusal) => Err(self.refuse(&r.agent, refusal, now).await),
            Next::Wait(mut rx) => match rx.wait_for(Option::is_some).await {
                Ok(outcome) => match outcome.as_ref() {
                    Some(Ok(signed)) => Ok(SignResult::Signed(signed.clone())),
                    Some(Err(e)) => Err(Refusal::internal(e.clone())),
                    None => Err(Refusal::internal(
                        "the first request with this key did not finish",
                    )),
                },
                Err(_) => Err(Refusal::internal(
                    "the first request with this key did not finish; retry",
                )),
            },
            Next::Approval(event, needs) => match self.audit.append(now, vec![event]).await {
                Ok(_) => Ok(SignResult::NeedsApproval(needs)),
                Err(e) => Err(Refusal::internal(format!(
                    "could not record the approval request ({e}); nothing is pending"
                ))),
            },
            Next::Commit(event, signed, tx) => {
                let result = self
                    .commit(&r, &digest, event, signed, now, Vec::new())
                    .await;
                let _ = tx.send(Some(result.clone().map_err(|e| e.message.clone())));
                result.map(SignResult::Signed)
            }
        }
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
        match self.audit.append(now, before).await {
            Ok(appended) => {
                signed.ledger_seq = appended.last().map_or(0, |a| a.seq);
                self.lock().ledger.remember(
                    &r.agent,
                    &r.idempotency_key,
                    Remembered::Signed {
                        intent_digest: digest.to_string(),
                        result: signed.clone(),
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

    async fn approve(&self, r: ApproveRequest) -> Result<SignResult, Refusal> {
        let now = (self.clock)();
        // Check the fresh context (if any) before the code is spent.
        let pending = self.lock().approvals.get(&r.approval_id).cloned();
        let prepared = match &pending {
            Some(p) => {
                let key = self.check_agent(&p.agent, &p.intent)?;
                let context = r.context.clone().unwrap_or_else(|| p.context.clone());
                Some(self.prepare(&p.agent, key, &p.intent, &context, false)?)
            }
            None => None,
        };

        let verified = self.lock().approvals.verify(&r.approval_id, &r.code, now);
        let (pending, step) = match verified {
            Ok(v) => v,
            Err(refusal) => {
                let event = Event::ApprovalRefused {
                    approval_id: r.approval_id.clone(),
                    kind: refusal.kind,
                };
                if let Err(e) = self.audit.append(now, vec![event]).await {
                    tracing::error!(error = %e, "could not record a refused approval");
                }
                return Err(Refusal::new(refusal.kind, refusal.message));
            }
        };
        let (Some(prepared), Some(key)) = (
            prepared,
            self.keys
                .get(&(pending.agent.clone(), chain_of(&pending.intent))),
        ) else {
            return Err(Refusal::internal(
                "approval state changed during verification; ask again",
            ));
        };
        let granted = Event::ApprovalGranted {
            approval_id: r.approval_id.clone(),
            totp_step: step,
        };
        let sign_req = SignRequest {
            agent: pending.agent.clone(),
            intent: pending.intent.clone(),
            context: pending.context.clone(),
            idempotency_key: pending.idempotency_key.clone(),
        };
        let digest = intent_digest(&pending.intent);

        let decided = {
            let mut inner = self.lock();
            let verdict = policy::decide_approved(
                &self.policy,
                &inner.ledger,
                &pending.agent,
                &pending.intent,
                now,
            );
            match verdict {
                Verdict::Allow | Verdict::NeedsApproval { .. } => {
                    let (event, signed) = sign_prepared(
                        &sign_req,
                        &digest,
                        &prepared,
                        key,
                        Some(r.approval_id.clone()),
                    )?;
                    inner.ledger.record_spend(
                        &pending.agent,
                        &prepared.asset,
                        prepared.amount,
                        now,
                    );
                    Ok((event, signed))
                }
                Verdict::Deny { rule, message } => Err(Refusal {
                    kind: ErrorKind::PolicyDenied,
                    rule: Some(rule),
                    message: format!("approved, but the policy now refuses it: {message}"),
                }),
            }
        };
        match decided {
            Ok((event, signed)) => self
                .commit(&sign_req, &digest, event, signed, now, vec![granted])
                .await
                .map(SignResult::Signed),
            Err(refusal) => {
                let denied = Event::Denied {
                    agent: pending.agent.clone(),
                    kind: refusal.kind,
                    rule: refusal.rule,
                    message: refusal.message.clone(),
                };
                if let Err(e) = self.audit.append(now, vec![granted, denied]).await {
                    tracing::error!(error = %e, "could not record an approval");
                }
                Err(refusal)
            }
        }
    }

    /// Records a refusal in the audit log, then returns it.
    async fn refuse(&self, agent: &AgentId, refusal: Refusal, now: u64) -> Refusal {
        let event = Event::Denied {
            agent: agent.clone(),
            kind: refusal.kind,
            rule: refusal.rule,
            message: refusal.message.clone(),
        };
        if let Err(e) = self.audit.append(now, vec![event]).await {
            tracing::error!(error = %e, "could not record a refusal in the audit log");
        }
        refusal
    }
}

fn chain_of(intent: &Intent) -> Chain {
    let Intent::Transfer(t) = intent;
    t.chain
}

fn open_approval(
    approvals: &mut Approvals,
    r: &SignRequest,
    prepared: &Prepared,
    now: u64,
) -> Result<(Event, NeedsApproval), Refusal> {
    let approval_id = new_approval_id().map_err(Refusal::internal)?;
    let pending = Pending {
        agent: r.agent.clone(),
        idempotency_key: r.idempotency_key.clone(),
        intent: r.intent.clone(),
        context: r.context.clone(),
        summary: prepared.built.summary.clone(),
        expires_at: 0,
    };
    let expires_at = approvals
        .open(approval_id.clone(), pending, now)
        .map_err(|refusal| Refusal::new(refusal.kind, refusal.message))?;
    let event = Event::ApprovalRequested {
        approval_id: approval_id.clone(),
        agent: r.agent.clone(),
        idempotency_key: r.idempotency_key.clone(),
        intent: r.intent.clone(),
        context: r.context.clone(),
        summary: prepared.built.summary.clone(),
        expires_at,
    };
    Ok((
        event,
        NeedsApproval {
            approval_id,
            summary: prepared.built.summary.clone(),
            expires_at,
        },
    ))
}

fn sign_prepared(
    r: &SignRequest,
    digest: &str,
    prepared: &Prepared,
    key: &Ed25519Key,
    approval_id: Option<vigil_protocol::ApprovalId>,
) -> Result<(Event, Signed), Refusal> {
    let signed_tx =
        solana::sign(&prepared.built, key).map_err(|e| Refusal::internal(e.to_string()))?;
    let tx = base64::engine::general_purpose::STANDARD.encode(&signed_tx.wire);
    let signed = Signed {
        tx: tx.clone(),
        signature: signed_tx.signature.clone(),
        summary: prepared.built.summary.clone(),
        ledger_seq: 0,
    };
    let event = Event::Signed {
        agent: r.agent.clone(),
        idempotency_key: r.idempotency_key.clone(),
        intent_digest: digest.to_string(),
        asset: prepared.asset.clone(),
        amount: vigil_protocol::Amount::from_base_units(prepared.amount),
        summary: prepared.built.summary.clone(),
        signature: signed_tx.signature,
        tx,
        approval_id,
    };
    Ok((event, signed))
}

fn respond<T: serde::Serialize>(
    id: vigil_protocol::RequestId,
    result: Result<T, Refusal>,
) -> Response {
    match result {
        Ok(v) => Response::ok(id, &v),
        Err(r) => Response::error(Some(id), r.kind, r.rule, r.message),
    }
}
