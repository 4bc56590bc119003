//! The LLM cost ledger: what each call actually cost, in integer micro-USD. The daily cap
//! is global, so the sum is over all agents.

use vigil_protocol::AgentId;

use super::{Store, StoreError, from_sql_u64, migrations, to_sql_ts};

/// The actual cost of one LLM call, as the ledger records it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewCost {
    /// When (Unix seconds).
    pub ts: u64,
    /// What it cost, micro-USD.
    pub micros: u64,
    /// Tokens charged for the prompt.
    pub prompt_tokens: u32,
    /// Tokens charged for the reply.
    pub completion_tokens: u32,
    /// The model that answered.
    pub model: String,
}

impl Store {
    /// Records the actual cost of one LLM call (its own commit; a decision's costs go with
    /// its record in [`super::DecisionBatch`]).
    pub fn record_cost(
        &self,
        agent: &AgentId,
        ts: u64,
        micros: u64,
        prompt_tokens: u32,
        completion_tokens: u32,
        model: &str,
    ) -> Result<(), StoreError> {
        let tx = migrations::begin_immediate(&self.conn)?;
        self.ensure_agent(agent.as_str(), ts)?;
        self.insert_cost(
            &tx,
            agent,
            &NewCost {
                ts,
                micros,
                prompt_tokens,
                completion_tokens,
                model: model.to_owned(),
            },
        )?;
        tx.commit()?;
        Ok(())
    }

    /// The ledger's row, inside the caller's transaction.
    pub(super) fn insert_cost(
        &self,
        conn: &rusqlite::Connection,
        agent: &AgentId,
        cost: &NewCost,
    ) -> Result<(), StoreError> {
        let sql_ts = to_sql_ts(cost.ts, "cost timestamp")?;
        let sql_micros = to_sql_ts(cost.micros, "cost in micro-USD")?;
        conn.prepare_cached(
            "INSERT INTO cost_ledger (agent, ts, micros, prompt_tokens, completion_tokens, model)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )?
        .execute(rusqlite::params![
            agent.as_str(),
            sql_ts,
            sql_micros,
            cost.prompt_tokens,
            cost.completion_tokens,
            cost.model
        ])?;
        Ok(())
    }

    /// Total micro-USD spent at or after `since`, all agents, saturating at `u64::MAX`
    /// (SQLite's own `SUM` would fail on overflow; a cap check must not).
    pub fn cost_spent_since(&self, since: u64) -> Result<u64, StoreError> {
        self.cost_sum("SELECT micros FROM cost_ledger WHERE ts >= ?1", since, None)
    }

    /// What `agent` alone spent at or after `since`, micro-USD, saturating (e.g. the
    /// self-modification agent's `/build` calls, shown apart in `/status`).
    pub fn cost_spent_since_by(&self, agent: &AgentId, since: u64) -> Result<u64, StoreError> {
        self.cost_sum(
            "SELECT micros FROM cost_ledger WHERE ts >= ?1 AND agent = ?2",
            since,
            Some(agent.as_str()),
        )
    }

    fn cost_sum(&self, sql: &str, since: u64, agent: Option<&str>) -> Result<u64, StoreError> {
        // A `since` beyond the INTEGER range is later than anything stored.
        let Ok(since) = i64::try_from(since) else {
            return Ok(0);
        };
        let mut stmt = self.conn.prepare_cached(sql)?;
        let mut rows = match agent {
            Some(agent) => stmt.query(rusqlite::params![since, agent])?,
            None => stmt.query([since])?,
        };
        let mut total: u64 = 0;
        while let Some(row) = rows.next()? {
            total = total.saturating_add(from_sql_u64(row.get(0)?, "cost")?);
        }
        Ok(total)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> AgentId {
        AgentId::try_from(s.to_string()).unwrap()
    }

    #[test]
    fn sums_only_since_and_over_all_agents() {
        let s = Store::open_in_memory().unwrap();
        s.record_cost(&id("a"), 99, 1_000, 10, 5, "m").unwrap();
        s.record_cost(&id("a"), 100, 20, 10, 5, "m").unwrap();
        s.record_cost(&id("b"), 150, 300, 10, 5, "m").unwrap();
        let cases = [
            (0, 1_320),
            (99, 1_320),
            (100, 320),
            (101, 300),
            (151, 0),
            (u64::MAX, 0),
        ];
        for (since, want) in cases {
            assert_eq!(s.cost_spent_since(since).unwrap(), want, "since {since}");
        }
        assert_eq!(s.cost_spent_since_by(&id("a"), 0).unwrap(), 1_020);
        assert_eq!(s.cost_spent_since_by(&id("a"), 100).unwrap(), 20);
        assert_eq!(s.cost_spent_since_by(&id("b"), 0).unwrap(), 300);
        assert_eq!(s.cost_spent_since_by(&id("c"), 0).unwrap(), 0);
    }

    #[test]
    fn the_sum_saturates_instead_of_failing() {
        let s = Store::open_in_memory().unwrap();
        let max = u64::try_from(i64::MAX).unwrap();
        for ts in 0..3 {
            s.record_cost(&id("a"), ts, max, 1, 1, "m").unwrap();
        }
        assert_eq!(s.cost_spent_since(0).unwrap(), u64::MAX);
        assert_eq!(s.cost_spent_since(1).unwrap(), 2 * max);
        assert!(matches!(
            s.record_cost(&id("a"), 1, max + 1, 1, 1, "m"),
            Err(StoreError::InvalidInput { .. })
        ));
    }
}
