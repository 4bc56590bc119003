//! The engine's `audit` op: the signer verifies its own hash-chained journal (the same check
//! as `vigil-signer audit-verify`) and returns its latest entries, so the operator can see
//! them from Telegram without access to the signer's files. Read-only; the file is read on a
//! blocking thread so other requests are not held up by a long journal.

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
    // Streamed: the memory this takes is one read buffer and `limit` entries, whatever the
    // journal's length. An append racing the read is left out (its line is not complete yet).
    let (report, latest) = log.verify_keeping_last(limit);
    let (verified, error, entries, head_seq, head) = match report {
        Ok(report) => (
            true,
            None,
            report.entries,
            report.head_seq,
            hex::encode(report.head_hash),
        ),
        Err(failure) => (false, Some(failure.to_string()), 0, 0, String::new()),
    };
    let latest = latest.into_iter().filter_map(summary).collect();
    Ok(AuditResult {
        verified,
        error,
        entries,
        head_seq,
        head,
        latest,
    })
}

/// One entry as `{seq, ts, event}`, the event without its (long) base64 transactions (`tx`,
/// and the `tx` of each of its `prior` transactions, whose hashes stay). An event that is not
/// JSON is left out (verification has already named it).
fn summary(entry: audit::RawEntry) -> Option<AuditEntrySummary> {
    let mut event: Value = serde_json::from_str(&entry.event).ok()?;
    if let Some(obj) = event.as_object_mut() {
        // A checkpoint carries up to two days of entries: its summary says how many.
        if let Some(Value::Array(carried)) = obj.remove("carried") {
            obj.insert("carried_entries".into(), Value::from(carried.len()));
        }
        obj.remove("tx");
        if let Some(Value::Array(prior)) = obj.get_mut("prior") {
            for p in prior.iter_mut().filter_map(Value::as_object_mut) {
                p.remove("tx");
            }
        }
    }
    Some(AuditEntrySummary {
        seq: entry.seq,
        ts: entry.ts,
        event,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_summary_drops_the_transaction_and_keeps_the_rest() {
        let raw = |event: &str| audit::RawEntry {
            seq: 7,
            ts: 100,
            event: event.into(),
        };
        let s = summary(raw(
            r#"{"type":"signed","agent":"trader","tx":"AAAA","amount":"5"}"#,
        ))
        .unwrap();
        assert_eq!((s.seq, s.ts), (7, 100));
        assert_eq!(s.event["type"], "signed");
        assert_eq!(s.event["amount"], "5");
        assert!(s.event.get("tx").is_none());
        assert!(summary(raw("not json")).is_none());
        let evm = summary(raw(
            r#"{"type":"signed","tx":"AgE=","prior":[{"tx":"AgI=","signature":"0xab"}]}"#,
        ))
        .unwrap();
        assert_eq!(
            evm.event["prior"],
            serde_json::json!([{"signature": "0xab"}])
        );
        // A checkpoint's carried entries (up to two days of them) become their count.
        let cp = summary(raw(
            r#"{"type":"checkpoint","sealed":{"segment":"audit.x.jsonl","seq":6,"hash":"00","ts":1},"carried":[{"seq":1},{"seq":2}]}"#,
        ))
        .unwrap();
        assert!(cp.event.get("carried").is_none());
        assert_eq!(cp.event["carried_entries"], 2);
        assert_eq!(cp.event["sealed"]["seq"], 6);
    }
}
