//! The recorded market window on disk (`proposal/recorder.rs` keeps it in memory and flushes
//! it here every few seconds): one row per network and second, the marks and the venue's
//! grid of that second as JSON, the newest `keep` per network kept. A proposal's `/build`
//! replays this window, so it must outlive a restart (the re-exec after an `/apply` included).
//!
//! The store does not read the JSON: the recorder parses each row when it loads, and skips a
//! row it cannot read (logged), so a damaged row costs one step of the window, never the start.

use super::{Store, StoreError, from_sql_u64, migrations, to_sql_ts};

/// Version 10: the recorded window of marks a proposal is replayed over.
pub(super) const V10: &str = r#"
CREATE TABLE recorded_marks (
    network  TEXT NOT NULL,
    ts       INTEGER NOT NULL CHECK (ts >= 0),
    marks    TEXT NOT NULL,
    PRIMARY KEY (network, ts)
) STRICT;
"#;

/// Back from version 10: the recorded window goes (the next deputy reads start a new one).
pub(super) const V10_DOWN: &str = "DROP TABLE recorded_marks;";

/// One recorded second of one network.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MarkStep {
    /// The network's wire name (`testnet`).
    pub network: String,
    /// Unix seconds.
    pub ts: u64,
    /// The marks and their assets' grid, JSON (the recorder's format).
    pub marks: String,
}

impl Store {
    /// Writes `steps` (a second already recorded is replaced) and keeps only the newest `keep`
    /// seconds of each network written to: one transaction, so one commit for the lot.
    pub fn save_mark_steps(&self, steps: &[MarkStep], keep: usize) -> Result<(), StoreError> {
        if steps.is_empty() {
            return Ok(());
        }
        let keep = i64::try_from(keep.max(1)).unwrap_or(i64::MAX);
        let tx = migrations::begin_immediate(&self.conn)?;
        let mut networks: Vec<&str> = Vec::new();
        {
            let mut insert = tx.prepare_cached(
                "INSERT INTO recorded_marks (network, ts, marks) VALUES (?1, ?2, ?3)
                 ON CONFLICT (network, ts) DO UPDATE SET marks = excluded.marks",
            )?;
            for step in steps {
                let ts = to_sql_ts(step.ts, "recorded mark time")?;
                insert.execute(rusqlite::params![step.network, ts, step.marks])?;
                if !networks.contains(&step.network.as_str()) {
                    networks.push(&step.network);
                }
            }
            // The newest `keep` of each network stay: everything older than the keep-th newest.
            let mut prune = tx.prepare_cached(
                "DELETE FROM recorded_marks WHERE network = ?1 AND ts < (
                     SELECT ts FROM recorded_marks WHERE network = ?1
                     ORDER BY ts DESC LIMIT 1 OFFSET ?2)",
            )?;
            for network in networks {
                prune.execute(rusqlite::params![network, keep - 1])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// The newest `keep` seconds of every network, oldest first within a network.
    pub fn mark_steps(&self, keep: usize) -> Result<Vec<MarkStep>, StoreError> {
        let keep = i64::try_from(keep).unwrap_or(i64::MAX);
        let mut stmt = self.conn.prepare(
            "SELECT network, ts, marks FROM (
                 SELECT network, ts, marks,
                        row_number() OVER (PARTITION BY network ORDER BY ts DESC) AS n
                 FROM recorded_marks)
             WHERE n <= ?1 ORDER BY network, ts",
        )?;
        let mut rows = stmt.query([keep])?;
        let mut out = Vec::new();
        while let Some(row) = rows.next()? {
            out.push(MarkStep {
                network: row.get(0)?,
                ts: from_sql_u64(row.get(1)?, "recorded mark time")?,
                marks: row.get(2)?,
            });
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn step(network: &str, ts: u64, marks: &str) -> MarkStep {
        MarkStep {
            network: network.into(),
            ts,
            marks: marks.into(),
        }
    }

    #[test]
    fn the_newest_are_kept_per_network_and_a_second_is_replaced() {
        let s = Store::open_in_memory().unwrap();
        let first: Vec<MarkStep> = (1..=5).map(|t| step("testnet", t, "a")).collect();
        s.save_mark_steps(&first, 3).unwrap();
        s.save_mark_steps(&[step("mainnet", 9, "m")], 3).unwrap();
        let got = s.mark_steps(100).unwrap();
        let times: Vec<(String, u64)> = got.iter().map(|m| (m.network.clone(), m.ts)).collect();
        assert_eq!(
            times,
            [
                ("mainnet", 9),
                ("testnet", 3),
                ("testnet", 4),
                ("testnet", 5)
            ]
            .map(|(n, t)| (n.to_string(), t))
        );
        // The same second again: replaced, not added; one newer pushes the oldest out.
        s.save_mark_steps(&[step("testnet", 5, "b"), step("testnet", 6, "c")], 3)
            .unwrap();
        let got = s.mark_steps(100).unwrap();
        let testnet: Vec<(u64, &str)> = got
            .iter()
            .filter(|m| m.network == "testnet")
            .map(|m| (m.ts, m.marks.as_str()))
            .collect();
        assert_eq!(testnet, [(4, "a"), (5, "b"), (6, "c")]);
        // Reading fewer than are stored gives the newest.
        let two: Vec<u64> = s
            .mark_steps(2)
            .unwrap()
            .iter()
            .filter(|m| m.network == "testnet")
            .map(|m| m.ts)
            .collect();
        assert_eq!(two, [5, 6]);
        assert!(matches!(
            s.save_mark_steps(&[step("testnet", u64::MAX, "x")], 3),
            Err(StoreError::InvalidInput { .. })
        ));
    }
}
