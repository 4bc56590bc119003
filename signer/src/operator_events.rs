//! The operator-relevant events the approver announces (`events`): which audit entries
//! count, the one line the signer renders for each, and a bounded window of the latest ones.
//!
//! The window is filled from the replayed log at start and then from every append, so a call
//! never reads the journal, whatever its size. It is deliberately separate from the audit
//! log's own reading: it holds rendered lines, nothing that is verified or replayed.

use std::collections::VecDeque;

use vigil_protocol::{ErrorKind, OperatorEvent, OperatorEventKind};

use crate::ledger::Event;
use crate::requests::RequestBody;

/// How many operator events the window keeps.
pub(crate) const WINDOW: usize = 1024;

/// The latest operator events, oldest first.
#[derive(Debug, Default)]
pub(crate) struct EventWindow {
    events: VecDeque<OperatorEvent>,
    /// The sequence number of the newest event that left the window (0: none has).
    dropped_through: u64,
}

impl EventWindow {
    /// Adds the audit entry `seq` if it is an operator event.
    pub(crate) fn push(&mut self, seq: u64, ts: u64, event: &Event) {
        self.push_rendered(seq, ts, render(event));
    }

    /// Adds the audit entry `seq`, already rendered (`None`: not an operator event).
    pub(crate) fn push_rendered(
        &mut self,
        seq: u64,
        ts: u64,
        rendered: Option<(OperatorEventKind, String)>,
    ) {
        let Some((kind, text)) = rendered else {
            return;
        };
        if self.events.len() >= WINDOW
            && let Some(old) = self.events.pop_front()
        {
            self.dropped_through = old.seq;
        }
        self.events.push_back(OperatorEvent {
            seq,
            ts,
            kind,
            text,
        });
    }

    /// At most `limit` events after `since_seq`, oldest first, and whether some events after
    /// `since_seq` have left the window.
    pub(crate) fn since(&self, since_seq: u64, limit: usize) -> (Vec<OperatorEvent>, bool) {
        let start = self.events.partition_point(|e| e.seq <= since_seq);
        let events = self
            .events
            .iter()
            .skip(start)
            .take(limit)
            .cloned()
            .collect();
        (events, since_seq < self.dropped_through)
    }
}

/// The kind and line of an operator-relevant event; `None` for the rest (spends without an
/// approval, refusals of the policy, `started` is included).
pub(crate) fn render(event: &Event) -> Option<(OperatorEventKind, String)> {
    use OperatorEventKind as K;
    let rendered = match event {
        Event::Started {
            version,
            policy_digest,
        } => (
            K::Started,
            format!(
                "the signer started (version {version}, policy {})",
                prefix(policy_digest)
            ),
        ),
        Event::ApprovalRequested {
            approval_id,
            summary,
            expires_at,
            ..
        } => (
            K::ApprovalRequested,
            format!("approval {approval_id} requested: {summary} (expires at {expires_at})"),
        ),
        Event::ApprovalGranted { approval_id, .. } => (
            K::ApprovalGranted,
            format!("approval {approval_id} granted with the operator's code"),
        ),
        Event::ApprovalRefused { approval_id, kind } if *kind == ErrorKind::RateLimited => (
            K::Lockout,
            format!(
                "a code for approval {approval_id} was refused: codes are locked after wrong codes"
            ),
        ),
        Event::ApprovalRefused { approval_id, kind } => (
            K::ApprovalRefused,
            format!("a code for approval {approval_id} was refused ({kind})"),
        ),
        Event::Signed {
            approval_id: Some(id),
            summary,
            signature,
            ..
        } => (
            K::ApprovalSigned,
            format!("approval {id} collected and signed: {summary} (signature {signature})"),
        ),
        Event::RequestCreated {
            request_id,
            request,
            summary,
            ..
        } => {
            let kind = match request {
                RequestBody::Confirmation { .. } => K::ConfirmationRequested,
                RequestBody::SetCap { .. } => K::CapChangeRequested,
                RequestBody::Resume { .. } => K::ResumeRequested,
            };
            (
                kind,
                format!("request {request_id} waits for the operator: {summary}"),
            )
        }
        Event::OperatorConfirmed {
            purpose,
            request_id,
            ..
        } => (
            K::Confirmed,
            match request_id {
                Some(id) => format!("request {id} confirmed with the operator's code: {purpose}"),
                None => format!("confirmed with the operator's code: {purpose}"),
            },
        ),
        Event::CapSet {
            agent,
            asset,
            cap,
            amount,
            ceiling,
            ..
        } => (
            K::CapSet,
            format!(
                "{agent}'s {} cap for {asset} is now {amount} base units (signed ceiling {ceiling})",
                cap.as_str()
            ),
        ),
        Event::RequestRefused {
            request_id,
            message,
            ..
        } => (
            K::CodeRefused,
            format!("request {request_id} was refused when answered: {message}"),
        ),
        Event::OperatorCodeRefused { purpose, kind } if *kind == ErrorKind::RateLimited => (
            K::Lockout,
            format!("a code for {purpose} was refused: codes are locked after wrong codes"),
        ),
        Event::OperatorCodeRefused { purpose, kind } => (
            K::CodeRefused,
            format!("a code for {purpose} was refused ({kind})"),
        ),
        Event::PeerRefused { peer_uid, role, op } if code_bearing(op) => (
            K::CodeFromWrongPeer,
            format!(
                "uid {peer_uid} ({role}) sent {op} with a code; only the approver may: refused, the code was not looked at"
            ),
        ),
        Event::ImportConfirmed {
            manifest_digest,
            via,
            ..
        } => (
            K::ImportConfirmed,
            format!(
                "key-ceremony import {} confirmed ({via:?}); the signer restarts to apply it",
                prefix(manifest_digest)
            ),
        ),
        Event::ImportApplied {
            manifest_digest,
            policy_digest,
            ..
        } => (
            K::ImportApplied,
            format!(
                "key-ceremony import {} applied: policy {}",
                prefix(manifest_digest),
                prefix(policy_digest)
            ),
        ),
        Event::ImportConfirmationExpired {
            manifest_digest, ..
        } => (
            K::ImportConfirmationExpired,
            format!(
                "the confirmation of import {} expired before it was applied",
                prefix(manifest_digest)
            ),
        ),
        Event::RefusalsMerged {
            refused,
            kind,
            count,
            ..
        } if refused != "denied" => (
            if *kind == ErrorKind::RateLimited {
                K::Lockout
            } else {
                K::CodeRefused
            },
            format!("{count} more codes were refused ({kind}) and merged into one audit entry"),
        ),
        Event::CodesUnlocked {
            was_locked,
            wrong_codes_in_window,
        } => (
            K::ConsoleAction,
            format!(
                "codes were unlocked as root at the appliance's console ({}; {wrong_codes_in_window} wrong codes in the 24 hours before)",
                if *was_locked {
                    "they were locked"
                } else {
                    "they were not locked"
                }
            ),
        ),
        Event::AgentPaused {
            agent,
            pause_id,
            reason,
        } => (
            K::AgentPaused,
            format!(
                "agent {agent} is paused ({reason}, pause {pause_id}): only reduce-only orders, cancels, Aave repayments and withdrawals are signed for it until your code resumes it"
            ),
        ),
        Event::AgentResumed {
            agent,
            pause_id,
            request_id,
            ..
        } => (
            K::AgentResumed,
            format!(
                "agent {agent} resumed with the operator's code (pause {pause_id} cleared, request {request_id})"
            ),
        ),
        Event::JournalKeyed { entries_before, .. } => (
            K::ConsoleAction,
            format!(
                "the journal was keyed as root at the appliance's console ({entries_before} earlier entries vouched for)"
            ),
        ),
        Event::Signed { .. }
        | Event::Denied { .. }
        | Event::PeerRefused { .. }
        | Event::RefusalsMerged { .. }
        | Event::Checkpoint { .. } => return None,
    };
    Some(rendered)
}

/// Whether the op named `op` carries an operator code.
fn code_bearing(op: &str) -> bool {
    matches!(
        op,
        "approve" | "confirm" | "set_limit" | "import_confirm" | "resume_agent"
    )
}

fn prefix(digest: &str) -> &str {
    digest.get(..16).unwrap_or(digest)
}

#[cfg(test)]
mod tests {
    use super::*;
    use vigil_protocol::PeerRole;

    fn started() -> Event {
        Event::Started {
            version: "1".into(),
            policy_digest: "ab".repeat(32),
        }
    }

    #[test]
    fn the_window_is_bounded_and_says_when_events_left_it() {
        let mut w = EventWindow::default();
        let denied = Event::Denied {
            agent: "t".parse().unwrap(),
            kind: ErrorKind::PolicyDenied,
            rule: None,
            message: "m".into(),
        };
        w.push(1, 10, &denied);
        assert!(
            w.since(0, 100).0.is_empty(),
            "a policy refusal is not an operator event"
        );
        for seq in 2..(2 + WINDOW as u64 + 10) {
            w.push(seq, 10, &started());
        }
        let (events, truncated) = w.since(0, 100);
        assert!(truncated);
        assert_eq!(events.len(), 100);
        assert_eq!(events[0].seq, 12, "the 10 oldest left the window");
        let (events, truncated) = w.since(11, 5);
        assert!(!truncated);
        assert_eq!(
            events.iter().map(|e| e.seq).collect::<Vec<_>>(),
            [12, 13, 14, 15, 16]
        );
        let last = 1 + WINDOW as u64 + 10;
        assert!(w.since(last, 100).0.is_empty());
    }

    #[test]
    fn a_code_from_the_wrong_peer_is_announced_and_a_read_is_not() {
        let code = Event::PeerRefused {
            peer_uid: 1000,
            role: PeerRole::Asker,
            op: "approve".into(),
        };
        let (kind, text) = render(&code).unwrap();
        assert_eq!(kind, OperatorEventKind::CodeFromWrongPeer);
        assert!(text.contains("uid 1000"), "{text}");
        let read = Event::PeerRefused {
            peer_uid: 1000,
            role: PeerRole::Asker,
            op: "awaiting".into(),
        };
        assert!(render(&read).is_none());
    }
}
