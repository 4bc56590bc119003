//! Requests that wait for the operator's code besides approvals: confirmations
//! (`request_confirmation`), cap changes (`request_set_cap`) and the clearing of a pause
//! (`request_resume`). An asker creates one; only the approver answers it (`confirm`,
//! `set_limit`, `resume_agent`), with a code, by the id the signer gave it. This module holds
//! their state, rebuilt from the audit log at start; the ops are in `engine/requests.rs`,
//! `engine/confirm.rs`, `engine/set_cap.rs` and `engine/pause.rs`.
//!
//! A request is answered at most once, and only before it expires; whether it can still be
//! answered is decided here BEFORE a code is looked at, so no code is spent on an unknown,
//! answered or expired request.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};
use vigil_protocol::{
    AgentId, Amount, AssetSymbol, AwaitingItem, AwaitingKind, CapKind, ConfirmationPurpose,
    ErrorKind, IdempotencyKey, OperatorRequestId, PauseId, RequestState,
};

use crate::approval::MAX_WAITING;
use crate::audit::Entry;
use crate::ledger::Event;

/// How long an answered or expired request is remembered (for `request_status` and for its
/// idempotency key).
const REMEMBER_SECS: u64 = 2 * 86_400;

/// What a request asks, as recorded in `request_created`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum RequestBody {
    /// A confirmation (`request_confirmation`).
    Confirmation {
        /// What is confirmed.
        purpose: ConfirmationPurpose,
    },
    /// A cap change (`request_set_cap`).
    SetCap {
        /// The agent.
        agent: AgentId,
        /// The asset.
        asset: AssetSymbol,
        /// Which cap (`limit` on the wire).
        #[serde(rename = "limit")]
        cap: CapKind,
        /// The new cap.
        amount: Amount,
        /// The signed ceiling when it was asked.
        ceiling: Amount,
    },
    /// A clearing of an agent's pause (`request_resume`).
    Resume {
        /// The paused agent.
        agent: AgentId,
        /// The pause it clears (and no later one).
        pause_id: PauseId,
    },
}

impl RequestBody {
    /// The kind `awaiting` lists it as.
    pub(crate) fn kind(&self) -> AwaitingKind {
        match self {
            RequestBody::Confirmation { .. } => AwaitingKind::Confirmation,
            RequestBody::SetCap { .. } => AwaitingKind::SetCap,
            RequestBody::Resume { .. } => AwaitingKind::Resume,
        }
    }
}

/// One request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Pending {
    pub(crate) body: RequestBody,
    pub(crate) idempotency_key: IdempotencyKey,
    pub(crate) summary: String,
    pub(crate) expires_at: u64,
    pub(crate) created_seq: u64,
    answer: Option<(RequestState, u64)>,
}

impl Pending {
    /// A new request, not answered yet.
    pub(crate) fn new(
        body: RequestBody,
        idempotency_key: IdempotencyKey,
        summary: String,
        expires_at: u64,
        created_seq: u64,
    ) -> Self {
        Self {
            body,
            idempotency_key,
            summary,
            expires_at,
            created_seq,
            answer: None,
        }
    }

    /// Where it stands at `now`, and the audit entry of its answer.
    pub(crate) fn state(&self, now: u64) -> (RequestState, Option<u64>) {
        match self.answer {
            Some((state, seq)) => (state, Some(seq)),
            None if now > self.expires_at => (RequestState::Expired, None),
            None => (RequestState::Waiting, None),
        }
    }
}

/// Why a request cannot be answered (checked before any code).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct NotAnswerable {
    pub(crate) kind: ErrorKind,
    pub(crate) message: String,
}

/// How often replay prunes what it has rebuilt (in journal entries).
const PRUNE_EVERY: u64 = 1024;

/// The requests the signer knows.
#[derive(Debug, Default)]
pub(crate) struct Requests {
    all: BTreeMap<OperatorRequestId, Pending>,
    by_key: HashMap<IdempotencyKey, OperatorRequestId>,
}

impl Requests {
    /// Applies one replayed audit entry. Pruned as it goes (every [`PRUNE_EVERY`] entries), so
    /// that replaying a long journal keeps only what [`Requests::prune`] would keep at the end.
    pub(crate) fn replay_entry(&mut self, e: &Entry<Event>, now: u64) {
        match &e.event {
            Event::RequestCreated {
                request_id,
                idempotency_key,
                request,
                summary,
                expires_at,
            } => self.insert(
                request_id.clone(),
                Pending::new(
                    request.clone(),
                    idempotency_key.clone(),
                    summary.clone(),
                    *expires_at,
                    e.seq,
                ),
            ),
            Event::OperatorConfirmed {
                request_id: Some(id),
                ..
            }
            | Event::CapSet {
                request_id: Some(id),
                ..
            }
            | Event::AgentResumed { request_id: id, .. } => {
                self.resolve(id, RequestState::Granted, e.seq);
            }
            Event::RequestRefused { request_id, .. } => {
                self.resolve(request_id, RequestState::Refused, e.seq);
            }
            _ => {}
        }
        if e.seq.is_multiple_of(PRUNE_EVERY) {
            self.prune(now);
        }
    }

    /// The request an idempotency key made, if it is remembered.
    pub(crate) fn by_key(&self, key: &IdempotencyKey) -> Option<(&OperatorRequestId, &Pending)> {
        let id = self.by_key.get(key)?;
        self.all.get(id).map(|p| (id, p))
    }

    /// Whether another request may wait now (at most [`MAX_WAITING`] at once).
    pub(crate) fn has_room(&self, now: u64) -> bool {
        self.waiting(now).count() < MAX_WAITING
    }

    /// Records a new request.
    pub(crate) fn insert(&mut self, id: OperatorRequestId, pending: Pending) {
        self.by_key
            .insert(pending.idempotency_key.clone(), id.clone());
        self.all.insert(id, pending);
    }

    /// Sets the audit entry that created request `id`.
    pub(crate) fn set_created_seq(&mut self, id: &OperatorRequestId, seq: u64) {
        if let Some(p) = self.all.get_mut(id) {
            p.created_seq = seq;
        }
    }

    /// Removes a request whose creation could not be recorded.
    pub(crate) fn remove(&mut self, id: &OperatorRequestId) {
        if let Some(p) = self.all.remove(id) {
            self.by_key.remove(&p.idempotency_key);
        }
    }

    /// Marks request `id` answered (`Granted` / `Refused`) if it still waits; false if another
    /// answer came first. Its audit entry is set later with [`Requests::resolve`].
    pub(crate) fn claim(&mut self, id: &OperatorRequestId, state: RequestState, now: u64) -> bool {
        match self.all.get_mut(id) {
            Some(p) if p.state(now).0 == RequestState::Waiting => {
                p.answer = Some((state, 0));
                true
            }
            _ => false,
        }
    }

    /// Undoes [`Requests::claim`] when the answer could not be recorded.
    pub(crate) fn unclaim(&mut self, id: &OperatorRequestId) {
        if let Some(p) = self.all.get_mut(id) {
            p.answer = None;
        }
    }

    /// The request `id`, if the signer knows it.
    pub(crate) fn get(&self, id: &OperatorRequestId) -> Option<&Pending> {
        self.all.get(id)
    }

    /// The request `id` if it can be answered now by the op for `kind`; else why not.
    pub(crate) fn answerable(
        &self,
        id: &OperatorRequestId,
        kind: AwaitingKind,
        now: u64,
    ) -> Result<&Pending, NotAnswerable> {
        let Some(p) = self.all.get(id) else {
            return Err(NotAnswerable {
                kind: ErrorKind::ApprovalUnknown,
                message: format!("no request {id} is waiting; ask for it again"),
            });
        };
        if p.body.kind() != kind {
            let op = match p.body.kind() {
                AwaitingKind::SetCap => "set_limit",
                AwaitingKind::Resume => "resume_agent",
                _ => "confirm",
            };
            return Err(NotAnswerable {
                kind: ErrorKind::BadRequest,
                message: format!("request {id} is answered with {op}"),
            });
        }
        match p.state(now).0 {
            RequestState::Waiting => Ok(p),
            RequestState::Expired => Err(NotAnswerable {
                kind: ErrorKind::ApprovalExpired,
                message: format!("request {id} expired unanswered; ask for it again"),
            }),
            RequestState::Granted | RequestState::Refused => Err(NotAnswerable {
                kind: ErrorKind::ApprovalUsed,
                message: format!("request {id} was already answered"),
            }),
        }
    }

    /// Records the answer to request `id` (its audit entry `seq`).
    pub(crate) fn resolve(&mut self, id: &OperatorRequestId, state: RequestState, seq: u64) {
        if let Some(p) = self.all.get_mut(id) {
            p.answer = Some((state, seq));
        }
    }

    /// The requests waiting at `now`, oldest first.
    pub(crate) fn waiting(&self, now: u64) -> impl Iterator<Item = (&OperatorRequestId, &Pending)> {
        self.all
            .iter()
            .filter(move |(_, p)| p.state(now).0 == RequestState::Waiting)
    }

    /// What `awaiting` lists for the waiting requests.
    pub(crate) fn awaiting_items(&self, now: u64) -> Vec<AwaitingItem> {
        self.waiting(now)
            .map(|(id, p)| AwaitingItem {
                id: id.to_string(),
                kind: p.body.kind(),
                summary: p.summary.clone(),
                expires_at: p.expires_at,
                created_seq: p.created_seq,
                current_code_required: false,
            })
            .collect()
    }

    /// Forgets requests answered or expired more than two days ago.
    pub(crate) fn prune(&mut self, now: u64) {
        let keep_from = now.saturating_sub(REMEMBER_SECS);
        self.all.retain(|_, p| p.expires_at >= keep_from);
        let all = &self.all;
        self.by_key.retain(|_, id| all.contains_key(id));
    }
}

/// A fresh request id: `rq-` and 16 random bytes, hex.
pub(crate) fn new_request_id() -> Result<OperatorRequestId, String> {
    let mut raw = [0u8; 16];
    getrandom::getrandom(&mut raw).map_err(|e| format!("the OS random source failed: {e}"))?;
    OperatorRequestId::try_from(format!("rq-{}", hex::encode(raw)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use vigil_protocol::DestructiveCommand;

    fn body() -> RequestBody {
        RequestBody::Confirmation {
            purpose: ConfirmationPurpose::Destructive {
                what: DestructiveCommand::Resume,
                target: "trader".parse().unwrap(),
            },
        }
    }

    fn pending(expires_at: u64) -> Pending {
        Pending::new(body(), "k1".parse().unwrap(), "s".into(), expires_at, 7)
    }

    #[test]
    fn a_request_is_answered_once_before_it_expires() {
        let mut r = Requests::default();
        let id: OperatorRequestId = "rq-1".parse().unwrap();
        r.insert(id.clone(), pending(100));
        assert!(r.answerable(&id, AwaitingKind::Confirmation, 50).is_ok());
        // The wrong op for its kind, an unknown id, and after expiry: refused, each its kind.
        assert_eq!(
            r.answerable(&id, AwaitingKind::SetCap, 50)
                .unwrap_err()
                .kind,
            ErrorKind::BadRequest
        );
        assert_eq!(
            r.answerable(&"rq-2".parse().unwrap(), AwaitingKind::Confirmation, 50)
                .unwrap_err()
                .kind,
            ErrorKind::ApprovalUnknown
        );
        assert_eq!(
            r.answerable(&id, AwaitingKind::Confirmation, 101)
                .unwrap_err()
                .kind,
            ErrorKind::ApprovalExpired
        );
        assert_eq!(r.awaiting_items(50).len(), 1);
        r.resolve(&id, RequestState::Granted, 9);
        assert_eq!(
            r.answerable(&id, AwaitingKind::Confirmation, 50)
                .unwrap_err()
                .kind,
            ErrorKind::ApprovalUsed
        );
        assert_eq!(
            r.get(&id).unwrap().state(50),
            (RequestState::Granted, Some(9))
        );
        assert!(r.awaiting_items(50).is_empty());
        assert_eq!(r.by_key(&"k1".parse().unwrap()).unwrap().0, &id);
    }

    #[test]
    fn old_requests_are_forgotten_with_their_keys() {
        let mut r = Requests::default();
        let id: OperatorRequestId = "rq-1".parse().unwrap();
        r.insert(id.clone(), pending(100));
        r.prune(100 + REMEMBER_SECS);
        assert!(r.get(&id).is_some());
        r.prune(101 + REMEMBER_SECS);
        assert!(r.get(&id).is_none());
        assert!(r.by_key(&"k1".parse().unwrap()).is_none());
    }

    #[test]
    fn bodies_are_recorded_strictly() {
        let b = RequestBody::SetCap {
            agent: "trader".parse().unwrap(),
            asset: AssetSymbol::SOL,
            cap: CapKind::PerTx,
            amount: Amount::from_base_units(5),
            ceiling: Amount::from_base_units(9),
        };
        let s = serde_json::to_string(&b).unwrap();
        assert!(s.contains(r#""limit":"per_tx""#), "{s}");
        assert_eq!(serde_json::from_str::<RequestBody>(&s).unwrap(), b);
        let extra = s.replace(r#""limit""#, r#""x":1,"limit""#);
        assert!(serde_json::from_str::<RequestBody>(&extra).is_err());
        let c = serde_json::to_string(&body()).unwrap();
        assert_eq!(serde_json::from_str::<RequestBody>(&c).unwrap(), body());
    }
}
