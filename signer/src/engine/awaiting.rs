//! The engine's `awaiting` op (the approver's): everything waiting for the operator's code,
//! oldest first, each with the summary the signer rendered and the id its answer must name:
//! approvals (from `sign` above the threshold), confirmations and cap changes (from the
//! asker's requests), and a staged key-ceremony import.

use vigil_protocol::{AwaitingItem, AwaitingKind, AwaitingResult};

use super::Engine;

impl Engine {
    pub(super) fn awaiting(&self) -> AwaitingResult {
        let now = (self.clock)();
        let mut items: Vec<AwaitingItem> = Vec::new();
        items.extend(self.import.awaiting_item());
        {
            let inner = self.lock();
            items.extend(
                inner
                    .approvals
                    .waiting()
                    .filter(|(_, p)| now <= p.expires_at)
                    .map(|(id, p)| AwaitingItem {
                        id: id.to_string(),
                        kind: AwaitingKind::Approval,
                        summary: p.summary.clone(),
                        expires_at: p.expires_at,
                        created_seq: inner.approval_seqs.get(id).copied().unwrap_or(0),
                        current_code_required: false,
                    }),
            );
            items.extend(inner.requests.awaiting_items(now));
        }
        items.sort_by(|a, b| (a.created_seq, &a.id).cmp(&(b.created_seq, &b.id)));
        AwaitingResult { items }
    }
}
