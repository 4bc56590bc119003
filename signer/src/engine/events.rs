//! The engine's `events` op (the approver's): the operator-relevant journal events after a
//! sequence number, from the bounded window `crate::operator_events` keeps (filled at start
//! and by every append). It never reads the journal.

use vigil_protocol::{EventsRequest, EventsResult};

use super::Engine;

impl Engine {
    pub(super) fn events(&self, r: EventsRequest) -> EventsResult {
        let limit = usize::try_from(r.limit).unwrap_or(usize::MAX);
        let (events, truncated) = self
            .window
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .since(r.since_seq, limit);
        EventsResult {
            events,
            head_seq: self.audit.head().0,
            truncated,
        }
    }
}
