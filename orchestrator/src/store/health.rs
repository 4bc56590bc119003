//! What the health check after an apply reads from the state (`generations/health.rs`):
//! per agent, how many decisions it made in a time window and how many of them were errors.

use std::collections::BTreeMap;

use super::{Store, StoreError, to_sql_ts};

/// The held outcomes that are errors rather than choices: the provider failed (`llm`), the
/// reply was not valid (`1`, the schema layer), or a chain, venue or the signer failed.
const ERROR_HOLDS: &str = "('llm', '1', 'rpc', 'venue', 'signer')";

/// One agent's decisions in a window.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WindowCounts {
    /// Decisions made.
    pub decisions: u64,
    /// Of which refused by a layer, or held by an error (see `ERROR_HOLDS`).
    pub errors: u64,
}

impl Store {
    /// Per agent, the decisions with `since <= ts < until` and the errors among them.
    pub fn window_counts(
        &self,
        since: u64,
        until: u64,
    ) -> Result<BTreeMap<String, WindowCounts>, StoreError> {
        let mut stmt = self.conn.prepare(&format!(
            "SELECT agent, count(*),
                    sum(outcome = 'refused' OR (outcome = 'held' AND rule IN {ERROR_HOLDS}))
             FROM decisions WHERE ts >= ?1 AND ts < ?2 GROUP BY agent"
        ))?;
        let rows = stmt.query_map(
            [to_sql_ts(since, "since")?, to_sql_ts(until, "until")?],
            |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, i64>(2)?,
                ))
            },
        )?;
        let mut out = BTreeMap::new();
        for row in rows {
            let (agent, decisions, errors) = row?;
            out.insert(
                agent,
                WindowCounts {
                    decisions: u64::try_from(decisions).unwrap_or(0),
                    errors: u64::try_from(errors).unwrap_or(0),
                },
            );
        }
        Ok(out)
    }

    /// The names of the state's tables (`sqlite_%` left out), in name order.
    pub fn table_names(&self) -> Result<Vec<String>, StoreError> {
        let mut stmt = self.conn.prepare(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name",
        )?;
        let names = stmt
            .query_map([], |r| r.get(0))?
            .collect::<Result<Vec<String>, _>>()?;
        Ok(names)
    }
}
