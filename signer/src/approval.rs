//! Operator approvals: pending approval requests and the TOTP check that completes them.
//!
//! The approval secret (RFC 6238 TOTP, enrolled in the operator's authenticator at the
//! ceremony) lives only here. A code is accepted once: its time step must be later than the
//! last step ever accepted (RFC 6238 §5.2), which also binds one code to one approval. Wrong
//! codes lock codes for a while, longer each time, and a daily budget of them locks codes until
//! the appliance's console unlocks them ([`lockout`]), so a compromised orchestrator cannot
//! brute-force six digits, restarts of the signer included: the counts are replayed from the
//! journal.

mod lockout;

use std::collections::BTreeMap;

use totp_rs::{Algorithm, TOTP};
use vigil_protocol::{
    AgentId, ApprovalId, Context, ErrorKind, IdempotencyKey, Intent, OperatorCode,
};
use zeroize::Zeroizing;

/// How long an approval stays valid, by default.
pub const DEFAULT_TTL_SECS: u64 = 600;
/// TOTP time step (RFC 6238 default).
pub const STEP_SECS: u64 = 30;
pub(crate) use lockout::{CodeOutcome, LockState, Lockout};
#[cfg(test)]
pub(crate) use lockout::{DAILY_FAILURE_BUDGET, LOCKOUT_SECS, MAX_CONSECUTIVE_FAILURES};
/// How long a granted approval can be collected by `sign`, by default.
pub const DEFAULT_GRANT_TTL_SECS: u64 = 300;
/// Most approvals that may wait at once (bounds memory under a flood of large requests).
pub(crate) const MAX_WAITING: usize = 256;

/// A request waiting for the operator.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApprovalRequest {
    /// The agent that asked.
    pub agent: AgentId,
    /// The idempotency key of the `sign` that asked.
    pub idempotency_key: IdempotencyKey,
    /// What was asked.
    pub intent: Intent,
    /// The context it was asked with (the `sign` that collects the grant brings a fresh one).
    pub context: Context,
    /// The signer's own summary shown to the operator.
    pub summary: String,
    /// Unix seconds after which the approval is void.
    pub expires_at: u64,
}

/// A granted approval, waiting for the asker's `sign` to collect its one signature.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Grant {
    /// What was approved.
    pub request: ApprovalRequest,
    /// Unix seconds until which `sign` may collect it.
    pub collect_by: u64,
}

/// Why an approval attempt failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// The protocol error kind.
    pub kind: ErrorKind,
    /// What to tell the operator.
    pub message: String,
}

/// The state of approvals: pending requests, spent ids, the TOTP verifier and lockout.
pub struct Approvals {
    totp: TOTP,
    ttl_secs: u64,
    waiting: BTreeMap<ApprovalId, ApprovalRequest>,
    /// Granted, not yet collected by `sign`.
    granted: BTreeMap<ApprovalId, Grant>,
    grant_ttl_secs: u64,
    /// Ids that were collected, refused or expired, to answer `approval_used` precisely.
    closed: BTreeMap<ApprovalId, ErrorKind>,
    last_step: u64,
    lockout: lockout::Lockout,
}

impl std::fmt::Debug for Approvals {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Approvals")
            .field("waiting", &self.waiting.len())
            .field("last_step", &self.last_step)
            .finish_non_exhaustive()
    }
}

impl Approvals {
    /// Builds the verifier from the approval secret (at least 16 bytes).
    pub fn new(secret: &Zeroizing<Vec<u8>>, ttl_secs: u64) -> Result<Self, String> {
        let totp = totp_of(secret)?;
        Ok(Self {
            totp,
            ttl_secs,
            waiting: BTreeMap::new(),
            granted: BTreeMap::new(),
            grant_ttl_secs: DEFAULT_GRANT_TTL_SECS,
            closed: BTreeMap::new(),
            last_step: 0,
            lockout: lockout::Lockout::default(),
        })
    }

    /// Registers a pending approval under `id` (from the CSPRNG) and returns its expiry.
    pub fn open(
        &mut self,
        id: ApprovalId,
        mut request: ApprovalRequest,
        now: u64,
    ) -> Result<u64, Refusal> {
        self.prune(now);
        if self.waiting.len() >= MAX_WAITING {
            return Err(Refusal {
                kind: ErrorKind::RateLimited,
                message: format!(
                    "{MAX_WAITING} approvals are already waiting; answer or let them expire first"
                ),
            });
        }
        request.expires_at = now.saturating_add(self.ttl_secs);
        let expires = request.expires_at;
        self.waiting.insert(id, request);
        Ok(expires)
    }

    /// Restores a pending approval while replaying the audit log at start.
    pub fn restore(&mut self, id: ApprovalId, request: ApprovalRequest) {
        self.waiting.insert(id, request);
    }

    /// Marks an id closed while replaying (granted or refused before a restart).
    pub fn restore_closed(&mut self, id: ApprovalId, step: Option<u64>) {
        self.waiting.remove(&id);
        self.closed.insert(id, ErrorKind::ApprovalUsed);
        if let Some(s) = step {
            self.restore_step(s);
        }
    }

    /// The pending approval with this id, if any and unexpired.
    pub fn get(&self, id: &ApprovalId) -> Option<&ApprovalRequest> {
        self.waiting.get(id)
    }

    /// How long an approval (or a confirmation, a cap change) waits for the operator.
    pub fn ttl_secs(&self) -> u64 {
        self.ttl_secs
    }

    /// Sets how long a grant can be collected (`--grant-ttl`).
    pub fn set_grant_ttl(&mut self, secs: u64) {
        self.grant_ttl_secs = secs;
    }

    /// Grants `request` (just verified with [`Approvals::verify`]) until now + the grant TTL;
    /// returns that deadline.
    pub fn grant(&mut self, id: ApprovalId, request: ApprovalRequest, now: u64) -> u64 {
        let collect_by = now.saturating_add(self.grant_ttl_secs);
        self.closed.remove(&id);
        self.granted.insert(
            id,
            Grant {
                request,
                collect_by,
            },
        );
        collect_by
    }

    /// Withdraws a grant that could not be recorded (it was never answered as granted).
    pub fn revoke_grant(&mut self, id: &ApprovalId) {
        self.granted.remove(id);
        self.closed.insert(id.clone(), ErrorKind::ApprovalUsed);
    }

    /// The grant with this id, if it is still there (expired or not).
    pub fn granted(&self, id: &ApprovalId) -> Option<&Grant> {
        self.granted.get(id)
    }

    /// Takes the grant for `sign` to collect: at most once, and only until its deadline (an
    /// expired grant is closed and refused `approval_expired`).
    pub fn take_grant(&mut self, id: &ApprovalId, now: u64) -> Result<Grant, Refusal> {
        let Some(grant) = self.granted.remove(id) else {
            return Err(Refusal {
                kind: ErrorKind::ApprovalUnknown,
                message: format!("approval {id} is not granted"),
            });
        };
        if now > grant.collect_by {
            self.closed.insert(id.clone(), ErrorKind::ApprovalExpired);
            return Err(Refusal {
                kind: ErrorKind::ApprovalExpired,
                message: format!(
                    "approval {id} was granted but not collected by {}; nothing was signed. Ask again",
                    grant.collect_by
                ),
            });
        }
        self.closed.insert(id.clone(), ErrorKind::ApprovalUsed);
        Ok(grant)
    }

    /// Puts back a grant taken by [`Approvals::take_grant`] when the policy refused it now
    /// (it may fit later, until its deadline).
    pub fn restore_grant(&mut self, id: ApprovalId, grant: Grant) {
        self.closed.remove(&id);
        self.granted.insert(id, grant);
    }

    /// Replaying `approval_granted`: the waiting request becomes a grant (returned, so the
    /// ledger can keep its idempotency record until the deadline).
    pub fn restore_granted(
        &mut self,
        id: &ApprovalId,
        step: u64,
        collect_by: u64,
    ) -> Option<ApprovalRequest> {
        self.last_step = self.last_step.max(step);
        let request = self.waiting.remove(id)?;
        self.granted.insert(
            id.clone(),
            Grant {
                request: request.clone(),
                collect_by,
            },
        );
        Some(request)
    }

    /// Replaying a `signed` entry of an approval: its grant was collected.
    pub fn restore_collected(&mut self, id: &ApprovalId) {
        self.granted.remove(id);
        self.waiting.remove(id);
        self.closed.insert(id.clone(), ErrorKind::ApprovalUsed);
    }

    /// The approvals waiting for the operator, oldest id order (ids are random: callers sort).
    pub fn waiting(&self) -> impl Iterator<Item = (&ApprovalId, &ApprovalRequest)> {
        self.waiting.iter()
    }

    /// Where approval `id` stands, if the signer knows it: waiting, granted (or collected),
    /// expired; `None` for an id it never gave out (or forgot).
    pub fn state_of(&self, id: &ApprovalId, now: u64) -> Option<vigil_protocol::RequestState> {
        use vigil_protocol::RequestState;
        if let Some(p) = self.waiting.get(id) {
            return Some(if now > p.expires_at {
                RequestState::Expired
            } else {
                RequestState::Waiting
            });
        }
        if let Some(g) = self.granted.get(id) {
            return Some(if now > g.collect_by {
                RequestState::Expired
            } else {
                RequestState::Granted
            });
        }
        match self.closed.get(id)? {
            ErrorKind::ApprovalUsed => Some(RequestState::Granted),
            _ => Some(RequestState::Expired),
        }
    }

    /// Checks `code` for approval `id` at time `now`. On success removes and returns the
    /// pending request and the TOTP step used (to be recorded durably).
    pub fn verify(
        &mut self,
        id: &ApprovalId,
        code: &OperatorCode,
        now: u64,
    ) -> Result<(ApprovalRequest, u64), Refusal> {
        self.check_lockout(now)?;
        let Some(pending) = self.waiting.get(id) else {
            if self.granted.contains_key(id) {
                return Err(Refusal {
                    kind: ErrorKind::ApprovalUsed,
                    message: format!("approval {id} was already granted"),
                });
            }
            return Err(match self.closed.get(id) {
                Some(kind) => Refusal {
                    kind: *kind,
                    message: format!("approval {id} was already used or closed"),
                },
                None => Refusal {
                    kind: ErrorKind::ApprovalUnknown,
                    message: format!(
                        "no pending approval {id}; ask the agent to make the request again"
                    ),
                },
            });
        };
        if now > pending.expires_at {
            self.waiting.remove(id);
            self.closed.insert(id.clone(), ErrorKind::ApprovalExpired);
            return Err(Refusal {
                kind: ErrorKind::ApprovalExpired,
                message: format!("approval {id} expired; ask the agent to make the request again"),
            });
        }
        let matched = self.matching_step(code, now);
        let step = self.use_step(matched, now, ErrorKind::ApprovalInvalidCode)?;
        let done = self.waiting.remove(id);
        self.closed.insert(id.clone(), ErrorKind::ApprovalUsed);
        // Invariant: `waiting.get(id)` returned Some above and nothing removed it since.
        done.map(|p| (p, step)).ok_or_else(|| Refusal {
            kind: ErrorKind::Internal,
            message: "approval vanished during verification".into(),
        })
    }

    /// Checks an operator code that is not bound to an approval (`confirm`, `set_limit`):
    /// the same single-use-per-step rule, the same failure count and lockout. Returns the
    /// step consumed, to be recorded durably. A wrong code is `operator_code_invalid`.
    pub fn verify_code(&mut self, code: &OperatorCode, now: u64) -> Result<u64, Refusal> {
        self.check_lockout(now)?;
        let matched = self.matching_step(code, now);
        self.use_step(matched, now, ErrorKind::OperatorCodeInvalid)
    }

    /// Checks a code of ANOTHER secret (`staged`: a staged key-ceremony import's approval
    /// secret) under THIS verifier's single-use steps, failure count and lockout, so that
    /// `import_confirm` gives an attacker no extra guesses. Returns the step consumed.
    pub fn verify_code_with(
        &mut self,
        staged: &Approvals,
        code: &OperatorCode,
        now: u64,
    ) -> Result<u64, Refusal> {
        self.check_lockout(now)?;
        let matched = staged.matching_step(code, now);
        self.use_step(matched, now, ErrorKind::OperatorCodeInvalid)
    }

    /// Checks two codes at once, for replacing the keys (`import_confirm`): `new` of the
    /// `staged` secret (the new ceremony's authenticator) and `current` of THIS secret (the
    /// authenticator the appliance runs on). Both must match a step later than any used before
    /// (two authenticators show their codes for the same step, so the pair spends it once); one
    /// failure is counted when either does not, under this verifier's lockout. Returns the
    /// steps consumed (new, current).
    pub fn verify_code_pair(
        &mut self,
        staged: &Approvals,
        new: &OperatorCode,
        current: &OperatorCode,
        now: u64,
    ) -> Result<(u64, u64), Refusal> {
        self.check_lockout(now)?;
        let (new_step, current_step) = (
            staged.matching_step(new, now),
            self.matching_step(current, now),
        );
        let (Some(new_step), Some(current_step)) = (new_step, current_step) else {
            let which = match (new_step, current_step) {
                (None, None) => "neither code matches",
                (None, Some(_)) => "the new authenticator's code does not match",
                _ => "the current authenticator's code does not match",
            };
            return Err(self.fail(
                now,
                ErrorKind::OperatorCodeInvalid,
                &format!("{which}; check both authenticator entries and the device clock"),
            ));
        };
        let later = new_step.max(current_step);
        self.use_step(
            Some(new_step.min(current_step)),
            now,
            ErrorKind::OperatorCodeInvalid,
        )?;
        self.last_step = later;
        Ok((new_step, current_step))
    }

    /// Accepts a matched step once (later than any step used before), else counts a failure
    /// refused as `wrong` (the kind of the op that carried the code).
    fn use_step(
        &mut self,
        matched: Option<u64>,
        now: u64,
        wrong: ErrorKind,
    ) -> Result<u64, Refusal> {
        match matched {
            Some(step) if step > self.last_step => {
                self.lockout.record_success();
                self.last_step = step;
                Ok(step)
            }
            Some(_) => Err(self.fail(
                now,
                wrong,
                "this code was already used; wait for the next code in your authenticator",
            )),
            None => Err(self.fail(
                now,
                wrong,
                "wrong code; check your authenticator app and the device clock",
            )),
        }
    }

    /// Marks a TOTP step as used (replaying `confirm` and `set_limit` records).
    /// An accepted code also restarts the failures in a row.
    pub fn restore_step(&mut self, step: u64) {
        self.last_step = self.last_step.max(step);
        self.lockout.record_success();
    }

    fn check_lockout(&self, now: u64) -> Result<(), Refusal> {
        self.lockout.check(now)
    }

    fn fail(&mut self, now: u64, kind: ErrorKind, why: &str) -> Refusal {
        let mut message = why.to_string();
        if let Some(lock) = self.lockout.record_failure(now) {
            message.push_str(&lock);
        }
        Refusal { kind, message }
    }

    /// Replays a wrong code or the console's unlock recorded at `ts` (accepted codes are
    /// replayed with their step: [`Approvals::restore_step`]).
    pub(crate) fn restore_code_outcome(&mut self, outcome: CodeOutcome, ts: u64) {
        self.lockout.replay(outcome, ts);
    }

    /// The lock in force at `now`.
    #[cfg(test)]
    pub(crate) fn lock_state(&self, now: u64) -> LockState {
        self.lockout.state(now)
    }

    /// Wrong codes counted within the last 24 hours.
    #[cfg(test)]
    pub(crate) fn failures_in_window(&self) -> usize {
        self.lockout.failures_in_window()
    }

    /// The time step (of now-1, now, now+1) whose code equals `code`, compared in constant time.
    fn matching_step(&self, code: &OperatorCode, now: u64) -> Option<u64> {
        matching_step(&self.totp, code, now)
    }

    /// Drops expired approvals (remembering them as expired) and bounds the closed set.
    pub fn prune(&mut self, now: u64) {
        let expired: Vec<ApprovalId> = self
            .waiting
            .iter()
            .filter(|(_, p)| now > p.expires_at)
            .map(|(id, _)| id.clone())
            .collect();
        for id in expired {
            self.waiting.remove(&id);
            self.closed.insert(id, ErrorKind::ApprovalExpired);
        }
        let lapsed: Vec<ApprovalId> = self
            .granted
            .iter()
            .filter(|(_, g)| now > g.collect_by)
            .map(|(id, _)| id.clone())
            .collect();
        for id in lapsed {
            self.granted.remove(&id);
            self.closed.insert(id, ErrorKind::ApprovalExpired);
        }
        while self.closed.len() > 4 * MAX_WAITING {
            self.closed.pop_first();
        }
    }

    /// Closes every pending approval (replaying an applied key-ceremony import: what was
    /// asked for under the previous keys must be asked for again).
    pub fn close_all_waiting(&mut self) {
        for (id, _) in std::mem::take(&mut self.waiting) {
            self.closed.insert(id, ErrorKind::ApprovalExpired);
        }
        for (id, _) in std::mem::take(&mut self.granted) {
            self.closed.insert(id, ErrorKind::ApprovalExpired);
        }
    }

    /// Number of approvals waiting.
    pub fn waiting_count(&self) -> usize {
        self.waiting.len()
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Whether `code` is the approval secret's TOTP code (RFC 6238, SHA-1, 6 digits, 30 s) for
/// the step of `now` or one step either side. For one-off checks outside the signer's
/// approvals (the ceremony's enrolment check, confirming an import); no replay state.
pub fn code_matches(
    secret: &Zeroizing<Vec<u8>>,
    code: &OperatorCode,
    now: u64,
) -> Result<bool, String> {
    Ok(matching_step(&totp_of(secret)?, code, now).is_some())
}

/// The approval secret's TOTP generator (RFC 6238: SHA-1, 6 digits, 30 s steps).
fn totp_of(secret: &Zeroizing<Vec<u8>>) -> Result<TOTP, String> {
    TOTP::new(
        Algorithm::SHA1,
        6,
        1,
        STEP_SECS,
        secret.to_vec(),
        None,
        String::new(),
    )
    .map_err(|e| format!("approval secret is unusable ({e}); re-run the key ceremony"))
}

/// The time step (of now-1, now, now+1) whose code equals `code`, compared in constant time.
fn matching_step(totp: &TOTP, code: &OperatorCode, now: u64) -> Option<u64> {
    let code = code.expose_digits();
    let current = now / STEP_SECS;
    let mut found = None;
    for step in [current.saturating_sub(1), current, current + 1] {
        let expected = Zeroizing::new(totp.generate(step * STEP_SECS));
        if constant_time_eq(expected.as_bytes(), code.as_bytes()) && found.is_none() {
            found = Some(step);
        }
    }
    found
}

/// A fresh approval id: 16 random bytes, hex.
pub(crate) fn new_approval_id() -> Result<ApprovalId, String> {
    let mut raw = [0u8; 16];
    getrandom::getrandom(&mut raw).map_err(|e| format!("the OS random source failed: {e}"))?;
    ApprovalId::try_from(format!("ap-{}", hex::encode(raw)))
}

#[cfg(test)]
mod tests;
