//! The engine's `sign` op: an idempotent request is answered from its record; a new one is
//! decided by the policy under the engine's lock and either refused, opened as an approval
//! that waits for the operator's code, or signed and committed. A request whose approval the
//! operator granted (`approve`, through the approver) is collected here: the same agent,
//! intent and idempotency key with a fresh context, decided again without the threshold,
//! signed once and committed; later calls get the remembered result. Both decisions apply the
//! agent's pause (`crate::pause`) last.

use vigil_protocol::{ErrorKind, NeedsApproval, SignRequest, SignResult, Signed};

use super::prepare::{Prepared, decide, sign_prepared, with_usd_label};
use super::{Engine, Inner, Refusal};
use crate::approval::{ApprovalRequest, Approvals, new_approval_id};
use crate::ledger::{Event, Ledger, Remembered, intent_digest};
use crate::policy::Verdict;

impl Engine {
    /// The result of a request signed earlier, read back from its `signed` entry at `seq` in
    /// the journal (streamed from the nearest checkpoint, on a blocking thread).
    async fn recorded(&self, r: &SignRequest, seq: u64) -> Result<Signed, Refusal> {
        let log = self.audit.clone();
        // In a rotated journal an entry before the live segment is one its checkpoint carries.
        let entry = tokio::task::spawn_blocking(move || {
            crate::ledger::expand(log.entries_from(seq))
                .find(|e| e.as_ref().map_or(true, |e| e.seq >= seq))
        })
        .await
        .map_err(|e| Refusal::internal(format!("reading the audit log failed: {e}")))?;
        match entry {
            Some(Ok(e)) => match e.event {
                Event::Signed {
                    agent,
                    idempotency_key,
                    summary,
                    signature,
                    tx,
                    prior,
                    ..
                } if e.seq == seq && agent == r.agent && idempotency_key == r.idempotency_key => {
                    Ok(Signed {
                        tx,
                        signature,
                        summary,
                        ledger_seq: seq,
                        prior,
                    })
                }
                _ => Err(Refusal::internal(format!(
                    "audit entry {seq} is not the signed record of this idempotency key; the journal changed under the signer: restart it"
                ))),
            },
            Some(Err(e)) => Err(Refusal::internal(format!(
                "reading audit entry {seq} failed: {e}"
            ))),
            None => Err(Refusal::internal(format!(
                "audit entry {seq} is missing; the journal changed under the signer: restart it"
            ))),
        }
    }

    pub(super) async fn sign(&self, r: SignRequest) -> Result<SignResult, Refusal> {
        let now = (self.clock)();
        let key = match self.check_agent(&r.agent, &r.intent) {
            Ok(k) => k,
            Err(refusal) => return Err(self.refuse(&r.agent, refusal, now).await),
        };
        let prepared = match self.prepare(&r.agent, key, &r.intent, &r.context, false) {
            Ok(p) => p,
            // A rule of the signed policy refused what would be built: audited like a decision.
            Err(refusal) if refusal.kind == ErrorKind::PolicyDenied => {
                return Err(self.refuse(&r.agent, refusal, now).await);
            }
            Err(refusal) => return Err(refusal),
        };
        let digest = intent_digest(&r.intent);

        let next = {
            let mut inner = self.lock();
            let Inner {
                ledger,
                approvals,
                pauses,
                ..
            } = &mut *inner;
            let pause = pauses.get(&r.agent);
            let remembered = ledger.remembered(&r.agent, &r.idempotency_key).cloned();
            match remembered {
                Some(rem) if rem.intent_digest() != digest => Next::Refuse(Refusal::new(
                    ErrorKind::IdempotencyConflict,
                    format!(
                        "idempotency key {} was already used by {} with a different intent; use a new key for a new intent",
                        r.idempotency_key, r.agent
                    ),
                )),
                Some(Remembered::Signed { seq, .. }) => Next::Recorded(seq),
                Some(Remembered::InFlight { done, .. }) => Next::Wait(done),
                Some(Remembered::AwaitingApproval { approval_id, .. })
                    if approvals.granted(&approval_id).is_some() =>
                {
                    match approvals.take_grant(&approval_id, now) {
                        Err(refusal) => Next::Refuse(Refusal::new(refusal.kind, refusal.message)),
                        Ok(grant) => {
                            // Decided again at collection: a pause set after the grant
                            // refuses it (the grant stays until its deadline).
                            let verdict = decide(
                                &self.policy,
                                ledger,
                                pause,
                                &r.agent,
                                &r.intent,
                                &prepared,
                                key,
                                now,
                                true,
                            );
                            let signed = match verdict {
                                Verdict::Deny { rule, message } => Err(Refusal {
                                    kind: ErrorKind::PolicyDenied,
                                    rule: Some(rule),
                                    message: format!(
                                        "approved, but the policy now refuses it: {message}"
                                    ),
                                }),
                                Verdict::Allow | Verdict::NeedsApproval { .. } => sign_prepared(
                                    &r,
                                    &digest,
                                    &prepared,
                                    key,
                                    Some(approval_id.clone()),
                                    (&mut *ledger, (self.clock_ms)()),
                                ),
                            };
                            match signed {
                                Ok((event, signed)) => {
                                    reserve(ledger, &r, &digest, &prepared, now, event, signed)
                                }
                                Err(refusal) => {
                                    // It may fit later (the 24 h window slides), until the deadline.
                                    approvals.restore_grant(approval_id, grant);
                                    Next::Refuse(refusal)
                                }
                            }
                        }
                    }
                }
                Some(Remembered::AwaitingApproval {
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
                    let verdict = decide(
                        &self.policy,
                        ledger,
                        pause,
                        &r.agent,
                        &r.intent,
                        &prepared,
                        key,
                        now,
                        false,
                    );
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
                                        Remembered::AwaitingApproval {
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
                            let (event, signed) = sign_prepared(
                                &r,
                                &digest,
                                &prepared,
                                key,
                                None,
                                (&mut *ledger, (self.clock_ms)()),
                            )?;
                            reserve(ledger, &r, &digest, &prepared, now, event, signed)
                        }
                    }
                }
            }
        };

        match next {
            Next::Done(result) => Ok(result),
            Next::Recorded(seq) => self.recorded(&r, seq).await.map(SignResult::Signed),
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
            Next::Approval(event, needs) => match self.journal(now, vec![event]).await {
                Ok(appended) => {
                    if let Some(a) = appended.last() {
                        self.lock()
                            .approval_seqs
                            .insert(needs.approval_id.clone(), a.seq);
                    }
                    Ok(SignResult::NeedsApproval(needs))
                }
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
}

/// What `sign` does once its decision is made under the lock.
enum Next {
    Done(SignResult),
    /// Signed before: the transaction is read back from the journal at this sequence number.
    Recorded(u64),
    Wait(tokio::sync::watch::Receiver<Option<Result<Signed, String>>>),
    Refuse(Refusal),
    Approval(Event, NeedsApproval),
    Commit(
        Event,
        Signed,
        tokio::sync::watch::Sender<Option<Result<Signed, String>>>,
    ),
}

/// Reserves a signed request's spend and marks its key in flight (under the lock), so that
/// concurrent requests count it and a retry waits for its commit.
fn reserve(
    ledger: &mut Ledger,
    r: &SignRequest,
    digest: &str,
    prepared: &Prepared,
    now: u64,
    event: Event,
    signed: Signed,
) -> Next {
    for spend in &prepared.spends {
        ledger.record_spend(&r.agent, spend.asset, spend.amount, now);
    }
    let (tx, rx) = tokio::sync::watch::channel(None);
    ledger.remember(
        &r.agent,
        &r.idempotency_key,
        Remembered::InFlight {
            intent_digest: digest.to_string(),
            done: rx,
        },
    );
    Next::Commit(event, signed, tx)
}

fn open_approval(
    approvals: &mut Approvals,
    r: &SignRequest,
    prepared: &Prepared,
    now: u64,
) -> Result<(Event, NeedsApproval), Refusal> {
    let approval_id = new_approval_id().map_err(Refusal::internal)?;
    // What the operator reads: the signer's own summary, then the orchestrator's USD estimate
    // labelled as its word (never decided on: the verdict above was made without it).
    let summary = with_usd_label(&prepared.summary, &r.context);
    let request = ApprovalRequest {
        agent: r.agent.clone(),
        idempotency_key: r.idempotency_key.clone(),
        intent: r.intent.clone(),
        context: r.context.clone(),
        summary: summary.clone(),
        expires_at: 0,
    };
    let expires_at = approvals
        .open(approval_id.clone(), request, now)
        .map_err(|refusal| Refusal::new(refusal.kind, refusal.message))?;
    let event = Event::ApprovalRequested {
        approval_id: approval_id.clone(),
        agent: r.agent.clone(),
        idempotency_key: r.idempotency_key.clone(),
        intent: r.intent.clone(),
        context: r.context.clone(),
        summary: summary.clone(),
        expires_at,
    };
    Ok((
        event,
        NeedsApproval {
            approval_id,
            summary,
            expires_at,
        },
    ))
}
