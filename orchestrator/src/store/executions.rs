//! Executions, at most once: before an action runs, its idempotency key is claimed here.
//!
//! `claim_execution` is a single `INSERT … ON CONFLICT DO NOTHING` committed with
//! `synchronous=FULL`: when it returns `true` the claim is on disk, and no other caller,
//! thread or process, now or after a crash, can get `true` for that key. A crash between
//! claim and finish leaves the row unfinished; [`Store::unfinished_executions`] lists those
//! for reconciliation (ask the signer's ledger / the chain what happened; never re-run blind).

use super::confirmations::check_key;
use super::{Store, StoreError, from_sql_u64, to_sql_ts};

/// An execution that was claimed and not (yet) finished.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExecutionRow {
    /// The action's idempotency key.
    pub idempotency_key: String,
    /// When it was claimed (Unix seconds).
    pub claimed_at: u64,
}

impl Store {
    /// Claims `idempotency_key` for execution: `true` the first time ever, `false` after.
    /// Durable before it returns.
    pub fn claim_execution(&self, idempotency_key: &str, now: u64) -> Result<bool, StoreError> {
        check_key(idempotency_key)?;
        let now = to_sql_ts(now, "claim time")?;
        let inserted = self.conn.execute(
            "INSERT INTO executions (idempotency_key, claimed_at) VALUES (?1, ?2)
             ON CONFLICT(idempotency_key) DO NOTHING",
            rusqlite::params![idempotency_key, now],
        )?;
        Ok(inserted == 1)
    }

    /// Records the outcome of a claimed execution, once.
    pub fn finish_execution(
        &self,
        idempotency_key: &str,
        outcome_json: &str,
        now: u64,
    ) -> Result<(), StoreError> {
        serde_json::from_str::<serde::de::IgnoredAny>(outcome_json).map_err(|e| {
            StoreError::InvalidInput {
                what: "execution outcome",
                why: format!("not JSON: {e}"),
            }
        })?;
        let now = to_sql_ts(now, "finish time")?;
        let updated = self.conn.execute(
            "UPDATE executions SET finished_at = ?2, outcome_json = ?3
             WHERE idempotency_key = ?1 AND finished_at IS NULL",
            rusqlite::params![idempotency_key, now, outcome_json],
        )?;
        if updated == 1 {
            return Ok(());
        }
        let exists: bool = self.conn.query_row(
            "SELECT EXISTS (SELECT 1 FROM executions WHERE idempotency_key = ?1)",
            [idempotency_key],
            |r| r.get(0),
        )?;
        Err(if exists {
            StoreError::ExecutionAlreadyFinished(idempotency_key.to_owned())
        } else {
            StoreError::ExecutionNotClaimed(idempotency_key.to_owned())
        })
    }

    /// Records that the action of `idempotency_key` ended without running: claimed and
    /// finished in one statement, with `{"not_sent": reason}` as its outcome, so nothing ever
    /// runs it later (a transfer the operator was told was "not sent" stays not sent). `true`
    /// if this recorded it, `false` if the key was already claimed (it ran, or is running).
    pub fn record_not_run(
        &self,
        idempotency_key: &str,
        reason: &str,
        now: u64,
    ) -> Result<bool, StoreError> {
        check_key(idempotency_key)?;
        let now = to_sql_ts(now, "not-run time")?;
        let outcome = serde_json::json!({ "not_sent": reason }).to_string();
        let inserted = self.conn.execute(
            "INSERT INTO executions (idempotency_key, claimed_at, finished_at, outcome_json)
             VALUES (?1, ?2, ?2, ?3) ON CONFLICT(idempotency_key) DO NOTHING",
            rusqlite::params![idempotency_key, now, outcome],
        )?;
        Ok(inserted == 1)
    }

    /// Executions claimed but never finished (after a crash), oldest first.
    pub fn unfinished_executions(&self) -> Result<Vec<ExecutionRow>, StoreError> {
        let mut stmt = self.conn.prepare(
            "SELECT idempotency_key, claimed_at FROM executions
             WHERE finished_at IS NULL ORDER BY claimed_at, idempotency_key",
        )?;
        let mut rows = stmt.query([])?;
        let mut out = Vec::new();
        while let Some(row) = rows.next()? {
            out.push(ExecutionRow {
                idempotency_key: row.get(0)?,
                claimed_at: from_sql_u64(row.get(1)?, "claimed_at")?,
            });
        }
        Ok(out)
    }

    /// Executions finished at or after `since`: (idempotency key, outcome JSON), oldest first.
    /// Reconciliation reads the live spends they record.
    pub fn finished_executions_since(
        &self,
        since: u64,
    ) -> Result<Vec<(String, String)>, StoreError> {
        let since = to_sql_ts(since, "since")?;
        let mut stmt = self.conn.prepare(
            "SELECT idempotency_key, outcome_json FROM executions
             WHERE finished_at IS NOT NULL AND finished_at >= ?1 ORDER BY finished_at, idempotency_key",
        )?;
        let rows = stmt.query_map([since], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
        })?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }

    /// The recorded outcome of a finished execution, if it finished.
    pub fn execution_outcome(&self, idempotency_key: &str) -> Result<Option<String>, StoreError> {
        use rusqlite::OptionalExtension;
        Ok(self
            .conn
            .query_row(
                "SELECT outcome_json FROM executions WHERE idempotency_key = ?1",
                [idempotency_key],
                |r| r.get::<_, Option<String>>(0),
            )
            .optional()?
            .flatten())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finished_since_lists_only_finished_rows_in_the_window() {
        let s = Store::open_in_memory().unwrap();
        for (key, at) in [("a", 10), ("b", 20), ("c", 30)] {
            assert!(s.claim_execution(key, at).unwrap());
        }
        s.finish_execution("a", "{\"n\":1}", 11).unwrap();
        s.finish_execution("b", "{\"n\":2}", 21).unwrap();
        let rows = s.finished_executions_since(15).unwrap();
        assert_eq!(rows, vec![("b".to_string(), "{\"n\":2}".to_string())]);
        assert_eq!(s.finished_executions_since(0).unwrap().len(), 2);
    }

    #[test]
    fn claim_is_true_once() {
        let s = Store::open_in_memory().unwrap();
        assert!(s.claim_execution("k1", 10).unwrap());
        assert!(!s.claim_execution("k1", 11).unwrap());
        assert!(s.claim_execution("k2", 12).unwrap());
    }

    #[test]
    fn finish_records_the_outcome_once_and_only_after_a_claim() {
        let s = Store::open_in_memory().unwrap();
        assert!(matches!(
            s.finish_execution("never", "{}", 1),
            Err(StoreError::ExecutionNotClaimed(k)) if k == "never"
        ));
        s.claim_execution("k", 1).unwrap();
        s.claim_execution("other", 2).unwrap();
        assert_eq!(s.execution_outcome("k").unwrap(), None);
        s.finish_execution("k", r#"{"sig":"abc"}"#, 3).unwrap();
        assert_eq!(
            s.execution_outcome("k").unwrap().as_deref(),
            Some(r#"{"sig":"abc"}"#)
        );
        assert!(matches!(
            s.finish_execution("k", "{}", 4),
            Err(StoreError::ExecutionAlreadyFinished(_))
        ));
        assert!(matches!(
            s.finish_execution("other", "not json", 4),
            Err(StoreError::InvalidInput { .. })
        ));
        let open = s.unfinished_executions().unwrap();
        assert_eq!(
            open,
            [ExecutionRow {
                idempotency_key: "other".into(),
                claimed_at: 2
            }]
        );
        assert!(
            !s.claim_execution("k", 5).unwrap(),
            "a finished key stays claimed"
        );
    }

    #[test]
    fn a_not_run_action_is_final_and_never_claimed_again() {
        let s = Store::open_in_memory().unwrap();
        assert!(s.record_not_run("k", "the RPC was down", 7).unwrap());
        assert!(!s.claim_execution("k", 8).unwrap(), "it can never run now");
        assert!(s.unfinished_executions().unwrap().is_empty());
        let outcome: serde_json::Value =
            serde_json::from_str(&s.execution_outcome("k").unwrap().unwrap()).unwrap();
        assert_eq!(outcome["not_sent"], "the RPC was down");
        // A key that already ran keeps its outcome.
        s.claim_execution("ran", 9).unwrap();
        s.finish_execution("ran", r#"{"sig":"x"}"#, 10).unwrap();
        assert!(!s.record_not_run("ran", "late", 11).unwrap());
        assert_eq!(
            s.execution_outcome("ran").unwrap().as_deref(),
            Some(r#"{"sig":"x"}"#)
        );
        assert!(matches!(
            s.record_not_run("a b", "x", 1),
            Err(StoreError::InvalidInput { .. })
        ));
    }

    #[test]
    fn invalid_keys_are_refused() {
        let s = Store::open_in_memory().unwrap();
        for bad in ["", "a b", &"x".repeat(65)] {
            assert!(matches!(
                s.claim_execution(bad, 1),
                Err(StoreError::InvalidInput { .. })
            ));
        }
    }
}
