//! One decision's after-the-fact writes in one transaction: the LLM calls' costs, a paper
//! fill with its execution (claimed and finished at once), the decision record and the memory
//! line. One `BEGIN IMMEDIATE … COMMIT`, so one `fsync` under `synchronous=FULL` instead of
//! one per write, and all of it or none of it on disk after a crash.
//!
//! What must be durable *before* the orchestrator acts (a live action's execution claim
//! before the signer signs it, a pending approval before the operator is waited on) is never
//! written here: those commits stay where they are, each on its own and first. A paper fill
//! has no effect outside this file, so its claim, its fill and its finish are one write: a
//! crash before the commit leaves no trace of the decision (nothing was done), after it the
//! whole decision; the claim still makes a second fill of the same key impossible.

use rusqlite::Transaction;
use vigil_protocol::{AgentId, AssetSymbol};

use super::aave_paper::PaperAaveFill;
use super::agent::AgentStore;
use super::cost::NewCost;
use super::{NewDecision, Store, StoreError, migrations, to_sql_ts};

/// A paper fill as one decision's batch records it: the execution of `key`, claimed and
/// finished with `outcome_json`, and the fill moving the agent's paper position.
#[derive(Clone, Copy, Debug)]
pub struct PaperFill<'a> {
    /// The decision's idempotency key (claimed here, at most once ever).
    pub key: &'a str,
    /// The asset.
    pub asset: AssetSymbol,
    /// Signed change in base units.
    pub delta_base_units: i128,
    /// Free text stored with the fill (the signer's summary).
    pub note: &'a str,
    /// The execution's outcome (JSON).
    pub outcome_json: &'a str,
}

/// One decision's after-the-fact writes, bound to one agent, in one open transaction.
/// Nothing is on disk until [`DecisionBatch::commit`]; dropped without it, nothing was written.
/// Holds the store (and whoever locked it) until then: build it, write, commit, with no
/// `.await` in between.
#[derive(Debug)]
pub struct DecisionBatch<'s> {
    agent: AgentStore<'s>,
    tx: Transaction<'s>,
}

impl Store {
    /// Opens the batch of `agent`'s decision at `now` (`BEGIN IMMEDIATE`: it waits for other
    /// writers up to the busy timeout, then holds the write lock until commit or drop).
    pub fn decision_batch(
        &self,
        agent: &AgentId,
        now: u64,
    ) -> Result<DecisionBatch<'_>, StoreError> {
        let tx = migrations::begin_immediate(&self.conn)?;
        self.ensure_agent(agent.as_str(), now)?;
        Ok(DecisionBatch {
            agent: self.agent(agent),
            tx,
        })
    }
}

impl DecisionBatch<'_> {
    /// Adds the actual cost of one LLM call of this decision to the cost ledger.
    pub fn record_cost(&self, cost: &NewCost) -> Result<(), StoreError> {
        self.agent
            .store
            .insert_cost(&self.tx, &self.agent.agent, cost)
    }

    /// Claims `fill.key`, records the fill and finishes the claim with its outcome, all or
    /// nothing (a savepoint): a key already claimed is
    /// [`StoreError::DuplicateIdempotencyKey`], an overflowing position
    /// [`StoreError::PositionOverflow`], and either leaves the rest of the batch as it was.
    pub fn paper_fill(&mut self, ts: u64, fill: &PaperFill<'_>) -> Result<(), StoreError> {
        self.paper_fill_with(ts, fill, None)
    }

    /// [`DecisionBatch::paper_fill`], and with `aave` the fill's move of the paper Aave book
    /// (`store/aave_paper.rs`) in the same savepoint: a withdraw or repay above the paper
    /// position is [`StoreError::InvalidInput`] and leaves no claim, no fill, no book change.
    pub fn paper_fill_with(
        &mut self,
        ts: u64,
        fill: &PaperFill<'_>,
        aave: Option<&PaperAaveFill>,
    ) -> Result<(), StoreError> {
        super::confirmations::check_key(fill.key)?;
        serde_json::from_str::<serde::de::IgnoredAny>(fill.outcome_json).map_err(|e| {
            StoreError::InvalidInput {
                what: "execution outcome",
                why: format!("not JSON: {e}"),
            }
        })?;
        let sql_ts = to_sql_ts(ts, "paper fill timestamp")?;
        let savepoint = self.tx.savepoint()?;
        let claimed = savepoint.execute(
            "INSERT INTO executions (idempotency_key, claimed_at, finished_at, outcome_json)
             VALUES (?1, ?2, ?2, ?3) ON CONFLICT(idempotency_key) DO NOTHING",
            rusqlite::params![fill.key, sql_ts, fill.outcome_json],
        )?;
        if claimed != 1 {
            return Err(StoreError::DuplicateIdempotencyKey(fill.key.to_owned()));
        }
        self.agent.apply_paper_fill(
            &savepoint,
            ts,
            fill.asset,
            fill.delta_base_units,
            fill.note,
        )?;
        if let Some(aave) = aave {
            self.agent
                .apply_paper_aave(&savepoint, ts, fill.key, aave)?;
        }
        savepoint.commit()?;
        Ok(())
    }

    /// Appends the decision to the agent's log; its row id.
    pub fn record_decision(&self, d: &NewDecision) -> Result<i64, StoreError> {
        self.agent.insert_decision(&self.tx, d)
    }

    /// Appends a line to the agent's memory.
    pub fn append_memory(&self, ts: u64, text: &str) -> Result<(), StoreError> {
        self.agent.insert_memory(&self.tx, ts, text)
    }

    /// Commits everything: one durable write. On error nothing of the batch is on disk.
    pub fn commit(self) -> Result<(), StoreError> {
        self.tx.commit()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::DecisionOutcome;

    fn id(s: &str) -> AgentId {
        AgentId::try_from(s.to_string()).unwrap()
    }

    fn sol() -> AssetSymbol {
        "SOL".parse().unwrap()
    }

    fn cost(ts: u64, micros: u64) -> NewCost {
        NewCost {
            ts,
            micros,
            prompt_tokens: 10,
            completion_tokens: 20,
            model: "m".into(),
        }
    }

    fn held(ts: u64) -> NewDecision {
        NewDecision {
            ts,
            prompt_digest: String::new(),
            reply: String::new(),
            parsed_json: None,
            outcome: DecisionOutcome::PaperFilled,
            layer: None,
            rule: None,
            idempotency_key: None,
        }
    }

    fn fill<'a>(key: &'a str, delta: i128) -> PaperFill<'a> {
        PaperFill {
            key,
            asset: sol(),
            delta_base_units: delta,
            note: "transfer 1 SOL",
            outcome_json: r#"{"paper":"transfer 1 SOL"}"#,
        }
    }

    /// Whatever the batch wrote, as counts: (costs, executions, fills, decisions, memory).
    fn counts(s: &Store) -> [i64; 5] {
        [
            "cost_ledger",
            "executions",
            "paper_fills",
            "decisions",
            "memory",
        ]
        .map(|t| {
            s.conn
                .query_row(&format!("SELECT COUNT(*) FROM {t}"), [], |r| r.get(0))
                .unwrap()
        })
    }

    #[test]
    fn a_committed_batch_holds_every_write_and_the_claim_is_finished() {
        let s = Store::open_in_memory().unwrap();
        let mut b = s.decision_batch(&id("trader"), 7).unwrap();
        b.record_cost(&cost(7, 100)).unwrap();
        b.record_cost(&cost(7, 50)).unwrap();
        b.paper_fill(7, &fill("k1", -5)).unwrap();
        b.record_decision(&held(7)).unwrap();
        b.append_memory(7, "paper fill").unwrap();
        b.commit().unwrap();
        assert_eq!(counts(&s), [2, 1, 1, 1, 1]);
        assert_eq!(s.cost_spent_since(0).unwrap(), 150);
        assert_eq!(s.agent(&id("trader")).paper_position(sol()).unwrap(), -5);
        assert!(s.unfinished_executions().unwrap().is_empty());
        assert_eq!(
            s.execution_outcome("k1").unwrap().as_deref(),
            Some(r#"{"paper":"transfer 1 SOL"}"#)
        );
        assert!(
            !s.claim_execution("k1", 8).unwrap(),
            "the fill's key is claimed"
        );
    }

    #[test]
    fn a_batch_dropped_before_its_commit_wrote_nothing() {
        let s = Store::open_in_memory().unwrap();
        {
            let mut b = s.decision_batch(&id("trader"), 7).unwrap();
            b.record_cost(&cost(7, 100)).unwrap();
            b.paper_fill(7, &fill("k1", -5)).unwrap();
            b.record_decision(&held(7)).unwrap();
            // Dropped here: an error (or a crash) before the commit.
        }
        assert_eq!(counts(&s), [0, 0, 0, 0, 0]);
        assert!(
            s.claim_execution("k1", 8).unwrap(),
            "the key was never claimed"
        );
    }

    #[test]
    fn a_second_fill_of_one_key_or_an_overflow_changes_nothing_but_the_rest_is_kept() {
        let s = Store::open_in_memory().unwrap();
        let mut b = s.decision_batch(&id("trader"), 7).unwrap();
        b.paper_fill(7, &fill("k1", -5)).unwrap();
        b.commit().unwrap();

        let mut b = s.decision_batch(&id("trader"), 8).unwrap();
        b.record_cost(&cost(8, 100)).unwrap();
        assert!(matches!(
            b.paper_fill(8, &fill("k1", -5)),
            Err(StoreError::DuplicateIdempotencyKey(k)) if k == "k1"
        ));
        assert!(matches!(
            b.paper_fill(8, &fill("k2", i128::MIN)),
            Err(StoreError::PositionOverflow { .. })
        ));
        assert!(matches!(
            b.paper_fill(
                8,
                &PaperFill {
                    outcome_json: "not json",
                    ..fill("k3", 1)
                }
            ),
            Err(StoreError::InvalidInput { .. })
        ));
        b.record_decision(&held(8)).unwrap();
        b.commit().unwrap();
        assert_eq!(counts(&s), [1, 1, 1, 1, 0]);
        assert_eq!(s.agent(&id("trader")).paper_position(sol()).unwrap(), -5);
        assert!(
            s.claim_execution("k2", 9).unwrap(),
            "the overflowing fill left no claim"
        );
    }
}
