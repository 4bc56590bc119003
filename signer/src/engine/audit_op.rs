//! The engine's `audit` op: the signer verifies its own hash-chained journal (the same check
//! as `vigil-signer audit-verify`) and returns its latest entries, so the operator can see
//! them from Telegram without access to the signer's files. Read-only; the file is read on a
//! blocking thread so other requests are not held up by a long journal.

use std::collections::VecDeque;

use serde_json::Value;
use vigil_protocol::{AuditEntrySummary, AuditRequest, AuditResult};

use super::{Engine, Refusal};
use crate::audit;

impl Engine {
    /// `audit`: verification of the whole chain, its head, and the latest `limit` entries.
    pub(super) async fn audit(&self, r: AuditRequest) -> Result<AuditResult, Refusal> {
        let log = self.audit.clone();
        let limit = usize::try_from(r.limit).unwrap_or(1);
        tokio::task::spawn_blocking(move || read(&log, limit))
            .await
            .map_err(|e| Refusal::internal(format!("reading the audit log failed: {e}")))?
    }
}

fn read(log: &audit::AuditLog<crate::ledger::Event>, limit: usize) -> Result<AuditResult, Refusal> {
    let bytes = log
        .read_all()
        .map_err(|e| Refusal::internal(format!("cannot read {}: {e}", log.path().display())))?;
    // An append racing this read may leave a cut last line: verify complete lines only.
    let complete = bytes
        .iter()
        .rposition(|b| *b == b'\n')
        .map_or(&bytes[..0], |i| &bytes[..=i]);
    let (verified, error, entries, head_seq, head) =
        match audit::verify_reader(complete, log.path(), None) {
            Ok(report) => (
                true,
                None,
                report.entries,
                report.head_seq,
                hex::encode(report.head_hash),
            ),
            Err(failure) => (false, Some(failure.to_string()), 0, 0, String::new()),
        };
    let mut latest = VecDeque::with_capacity(limit);
    for line in String::from_utf8_lossy(complete).lines() {
        if latest.len() == limit {
            latest.pop_front();
        }
        latest.push_back(line.to_string());
    }
    let latest = latest.iter().filter_map(|line| summary(line)).collect();
    Ok(AuditResult {
        verified,
        error,
        entries,
        head_seq,
        head,
        latest,
    })
}

/// One line as `{seq, ts, event}`, the event without its (long) base64 transaction. A line
/// that is not an entry is left out (verification has already named it).
fn summary(line: &str) -> Option<AuditEntrySummary> {
    let mut v: Value = serde_json::from_str(line).ok()?;
    let mut event = v.get_mut("event")?.take();
    if let Some(obj) = event.as_object_mut() {
        obj.remove("tx");
    }
    Some(AuditEntrySummary {
        seq: v.get("seq")?.as_u64()?,
        ts: v.get("ts")?.as_u64()?,
        event,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_summary_drops_the_transaction_and_keeps_the_rest() {
        let line = r#"{"seq":7,"ts":100,"prev":"00","event":{"type":"signed","agent":"trader","tx":"AAAA","amount":"5"},"hash":"11"}"#;
        let s = summary(line).unwrap();
        assert_eq!((s.seq, s.ts), (7, 100));
        assert_eq!(s.event["type"], "signed");
        assert_eq!(s.event["amount"], "5");
        assert!(s.event.get("tx").is_none());
        assert!(summary("not json").is_none());
        assert!(summary(r#"{"seq":1}"#).is_none());
    }
}
