//! What a journal checkpoint carries (`audit::segment`): the earlier entries whose replay
//! still shapes the signer's state, chosen so that replaying them and then the new segment
//! gives exactly what replaying the whole journal gives, at the checkpoint's time and after.
//!
//! Every replay of the journal (the ledger, approvals and the code lockout, operator requests,
//! pauses, the window of operator events, a pending import confirmation) keeps state of two
//! kinds, and the checkpoint carries the entries behind both:
//! - windowed state, which forgets entries older than its window: spends (24 h), idempotency
//!   records (48 h), the rate limit (60 s), approvals, grants and operator requests (their
//!   time limits, bounded at start to [`MAX_TTL_SECS`]), the lockout's daily budget (24 h):
//!   every entry of the last [`CARRY_WINDOW_SECS`] is carried;
//! - lasting state, which no window forgets: operator caps (the latest per agent, asset and
//!   cap), pauses (the agent's current one), Hyperliquid nonces (the latest per key), leverage
//!   (the latest per agent, network and perp) and API wallet registrations (all), the code
//!   lockout (every code outcome and import event since the last console unlock, which resets
//!   it), and the last [`WINDOW`] operator events.
//!
//! The result is a function of the entries and `now` alone: `audit-verify` recomputes it from
//! the sealed segment and compares it with what the checkpoint carries.

use std::collections::{BTreeMap, VecDeque};

use super::{Event, IDEMPOTENCY_WINDOW_SECS};
use crate::audit::{AuditError, Carried, Entry};
use crate::operator_events::{WINDOW, render};

/// Entries this recent are all carried: the longest window of the replay (idempotency, 48 h)
/// and an hour of margin for clock corrections.
pub(crate) const CARRY_WINDOW_SECS: u64 = IDEMPOTENCY_WINDOW_SECS + 3600;

/// The longest time limit (approval, grant, import confirmation) the signer accepts, so that
/// every entry still open lies within [`CARRY_WINDOW_SECS`].
pub const MAX_TTL_SECS: u64 = 86_400;

/// The carried entries for a checkpoint written at `now`, from `entries` (a whole segment, its
/// own checkpoint first, whose carried entries count as entries of the segment).
pub(crate) fn carry(
    entries: &mut dyn Iterator<Item = Result<Entry<Event>, AuditError>>,
    now: u64,
) -> Result<Vec<Carried<Event>>, AuditError> {
    let mut picked = Picked::default();
    for entry in expand(entries) {
        picked.see(entry?, now);
    }
    Ok(picked.finish())
}

/// The entries with each checkpoint replaced by the entries it carries: what every replay
/// reads.
pub(crate) fn expand<'a>(
    entries: impl IntoIterator<Item = Result<Entry<Event>, AuditError>> + 'a,
) -> impl Iterator<Item = Result<Entry<Event>, AuditError>> + 'a {
    entries
        .into_iter()
        .flat_map(|e| -> Vec<Result<Entry<Event>, AuditError>> {
            match e {
                Ok(Entry {
                    event: Event::Checkpoint { carried, .. },
                    ..
                }) => carried.into_iter().map(|c| Ok(c.into_entry())).collect(),
                other => vec![other],
            }
        })
}

#[derive(Default)]
struct Picked {
    window: Vec<Carried<Event>>,
    caps: BTreeMap<String, Carried<Event>>,
    paused: BTreeMap<String, Carried<Event>>,
    hl_nonce: BTreeMap<String, (u64, Carried<Event>)>,
    hl_leverage: BTreeMap<String, Carried<Event>>,
    hl_registered: BTreeMap<String, Carried<Event>>,
    since_unlock: Vec<Carried<Event>>,
    operator: VecDeque<Carried<Event>>,
}

impl Picked {
    fn see(&mut self, e: Entry<Event>, now: u64) {
        let c = Carried {
            seq: e.seq,
            ts: e.ts,
            hash: hex::encode(e.hash),
            event: e.event,
        };
        match &c.event {
            Event::CapSet {
                agent, asset, cap, ..
            } => {
                self.caps
                    .insert(format!("{agent}/{asset:?}/{cap:?}"), c.clone());
            }
            Event::AgentPaused { agent, .. } => {
                self.paused.insert(agent.to_string(), c.clone());
            }
            Event::AgentResumed {
                agent, pause_id, ..
            } => {
                let current = self.paused.get(agent.as_str()).is_some_and(|p| {
                    matches!(&p.event, Event::AgentPaused { pause_id: id, .. } if id == pause_id)
                });
                if current {
                    self.paused.remove(agent.as_str());
                }
            }
            Event::Signed {
                agent,
                hyperliquid: Some(hl),
                ..
            } => {
                let newer = self
                    .hl_nonce
                    .get(&hl.key)
                    .is_none_or(|(nonce, _)| hl.nonce >= *nonce);
                if newer {
                    self.hl_nonce.insert(hl.key.clone(), (hl.nonce, c.clone()));
                }
                if let Some(perp) = hl.leverage_set {
                    self.hl_leverage
                        .insert(format!("{agent}/{:?}/{perp:?}", hl.network), c.clone());
                }
                if let Some(api) = &hl.registered {
                    self.hl_registered.insert(api.clone(), c.clone());
                }
            }
            _ => {}
        }
        match &c.event {
            Event::CodesUnlocked { .. } => {
                self.since_unlock.clear();
                self.since_unlock.push(c.clone());
            }
            Event::ImportConfirmed { .. }
            | Event::ImportApplied { .. }
            | Event::ImportConfirmationExpired { .. } => self.since_unlock.push(c.clone()),
            event if event.code_outcome().is_some() => self.since_unlock.push(c.clone()),
            _ => {}
        }
        if render(&c.event).is_some() {
            if self.operator.len() >= WINDOW {
                self.operator.pop_front();
            }
            self.operator.push_back(c.clone());
        }
        if c.ts.saturating_add(CARRY_WINDOW_SECS) >= now {
            self.window.push(c);
        }
    }

    fn finish(self) -> Vec<Carried<Event>> {
        let mut by_seq: BTreeMap<u64, Carried<Event>> = BTreeMap::new();
        let all = self
            .window
            .into_iter()
            .chain(self.caps.into_values())
            .chain(self.paused.into_values())
            .chain(self.hl_nonce.into_values().map(|(_, c)| c))
            .chain(self.hl_leverage.into_values())
            .chain(self.hl_registered.into_values())
            .chain(self.since_unlock)
            .chain(self.operator);
        for c in all {
            by_seq.entry(c.seq).or_insert(c);
        }
        by_seq.into_values().collect()
    }
}

impl crate::audit::Checkpointed for Event {
    fn checkpoint(sealed: crate::audit::SealedEnd, carried: Vec<Carried<Self>>) -> Self {
        Event::Checkpoint { sealed, carried }
    }

    fn as_checkpoint(&self) -> Option<(&crate::audit::SealedEnd, &[Carried<Self>])> {
        match self {
            Event::Checkpoint { sealed, carried } => Some((sealed, carried)),
            _ => None,
        }
    }

    fn carry(
        entries: &mut dyn Iterator<Item = Result<Entry<Self>, AuditError>>,
        now: u64,
    ) -> Result<Vec<Carried<Self>>, AuditError> {
        carry(entries, now)
    }
}
