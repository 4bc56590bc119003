//! Connection slots per peer. Every allowed uid (`SO_PEERCRED`) has its own quota of
//! [`MAX_CONNECTIONS_PER_PEER`] connections, so one peer (a compromised orchestrator, a
//! runaway CLI) can use up its own slots but never another peer's: the approver, the operator's
//! CLI or the orchestrator keep theirs. The set of allowed uids is fixed at start, so the
//! total is bounded too (quota × allowed uids).
//!
//! A refused connection is closed at once. The warnings a flood causes are throttled: the
//! first refusal of a uid is logged, then at most one line per [`WARN_EVERY`] with the count.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Most connections one peer uid may hold at once; more are closed on accept.
pub(crate) const MAX_CONNECTIONS_PER_PEER: usize = 16;
/// At most one warning per uid this often while its connections are being refused.
const WARN_EVERY: Duration = Duration::from_secs(10);

/// The quota of one uid, and its refusals not yet logged.
#[derive(Debug)]
struct Quota {
    slots: Arc<Semaphore>,
    refused: u64,
    last_warning: Option<Instant>,
}

/// The slots of every allowed peer.
#[derive(Debug)]
pub(crate) struct PeerSlots {
    quotas: BTreeMap<u32, Quota>,
    per_peer: usize,
}

/// Why a connection was not given a slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Refused {
    /// The uid is not an allowed peer.
    NotAllowed,
    /// The uid already holds its quota.
    Full,
}

impl PeerSlots {
    /// Slots for `allowed` uids, [`MAX_CONNECTIONS_PER_PEER`] each.
    pub(crate) fn new(allowed: &[u32]) -> PeerSlots {
        PeerSlots::with_quota(allowed, MAX_CONNECTIONS_PER_PEER)
    }

    fn with_quota(allowed: &[u32], per_peer: usize) -> PeerSlots {
        let quotas = allowed
            .iter()
            .map(|uid| {
                let quota = Quota {
                    slots: Arc::new(Semaphore::new(per_peer)),
                    refused: 0,
                    last_warning: None,
                };
                (*uid, quota)
            })
            .collect();
        PeerSlots { quotas, per_peer }
    }

    /// A slot for a connection from `uid`, held until the permit is dropped.
    pub(crate) fn take(&mut self, uid: u32) -> Result<OwnedSemaphorePermit, Refused> {
        let Some(quota) = self.quotas.get_mut(&uid) else {
            return Err(Refused::NotAllowed);
        };
        match Arc::clone(&quota.slots).try_acquire_owned() {
            Ok(permit) => Ok(permit),
            Err(_) => {
                quota.refused += 1;
                let due = quota
                    .last_warning
                    .is_none_or(|at| at.elapsed() >= WARN_EVERY);
                if due {
                    tracing::warn!(
                        uid,
                        refused = quota.refused,
                        "peer uid {uid} already holds its {} connections; closing new ones (other peers keep their own slots)",
                        self.per_peer
                    );
                    quota.refused = 0;
                    quota.last_warning = Some(Instant::now());
                }
                Err(Refused::Full)
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    /// What it checks: a uid that holds its whole quota is refused, another uid is not, a
    /// freed slot can be taken again, and a uid that is not allowed gets no slot at all.
    #[test]
    fn one_peer_cannot_take_another_peers_slots() {
        let mut slots = PeerSlots::with_quota(&[1000, 2000], 3);
        let held: Vec<_> = (0..3).map(|_| slots.take(1000).unwrap()).collect();
        assert_eq!(slots.take(1000).unwrap_err(), Refused::Full);
        let other = slots.take(2000).expect("the other peer keeps its slots");
        drop(held);
        assert!(slots.take(1000).is_ok(), "a freed slot is free again");
        assert_eq!(slots.take(3000).unwrap_err(), Refused::NotAllowed);
        drop(other);
    }
}
