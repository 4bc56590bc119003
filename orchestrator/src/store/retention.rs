//! Retention: the daily compaction of the three tables that only grow with time and that no
//! operator figure or safety check reads beyond a few days (`docs/orchestrator.md`,
//! "Retention").
//!
//! - `decisions`: rows older than the cutoff are counted into `decision_days` (one row per
//!   agent and UTC day: a count per outcome, first and last row id) and deleted.
//! - `memory`: lines older than the cutoff are counted there too and deleted, except each
//!   agent's newest `keep_memory_lines` (what its next prompt reads), whatever their age.
//! - `cost_ledger`: rows older than the cutoff are added up there (calls, micro-USD, tokens)
//!   and deleted. The daily cap reads today's rows only, and the cutoff is never after the
//!   start of yesterday.
//!
//! Everything else is kept: paper fills and positions, perp fills, positions and funding,
//! the paper Aave book, fills and interest, executions (the at-most-once claims),
//! confirmations, EVM transactions, Hyperliquid actions, the deputies' risk state, baselines
//! and order counts, settings.
//!
//! One [`Store::compact_batch`] is one `BEGIN IMMEDIATE` transaction over at most
//! `batch_rows` rows of each table: the summary rows and the deletions commit together, so a
//! crash between batches (or inside one) loses nothing and counts nothing twice. The caller
//! releases the state's lock between batches. Space is given back to the file system by
//! [`Store::reclaim_step`] (`auto_vacuum = INCREMENTAL`, set on every file at open).

use rusqlite::{OptionalExtension, params};
use vigil_protocol::AgentId;

use super::{Store, StoreError, from_sql_u64, migrations, to_sql_ts};

/// Version 9: the per-agent, per-UTC-day summary of compacted decisions, memory lines and
/// LLM costs. `day` is the day's first second (Unix, UTC).
pub(super) const V9: &str = r#"
CREATE TABLE decision_days (
    agent              TEXT NOT NULL REFERENCES agents(id),
    day                INTEGER NOT NULL CHECK (day >= 0 AND day % 86400 = 0),
    allowed            INTEGER NOT NULL DEFAULT 0 CHECK (allowed >= 0),
    held               INTEGER NOT NULL DEFAULT 0 CHECK (held >= 0),
    refused            INTEGER NOT NULL DEFAULT 0 CHECK (refused >= 0),
    paper_filled       INTEGER NOT NULL DEFAULT 0 CHECK (paper_filled >= 0),
    signed             INTEGER NOT NULL DEFAULT 0 CHECK (signed >= 0),
    first_decision_id  INTEGER,
    last_decision_id   INTEGER,
    memory_lines       INTEGER NOT NULL DEFAULT 0 CHECK (memory_lines >= 0),
    llm_calls          INTEGER NOT NULL DEFAULT 0 CHECK (llm_calls >= 0),
    llm_micros         INTEGER NOT NULL DEFAULT 0 CHECK (llm_micros >= 0),
    prompt_tokens      INTEGER NOT NULL DEFAULT 0 CHECK (prompt_tokens >= 0),
    completion_tokens  INTEGER NOT NULL DEFAULT 0 CHECK (completion_tokens >= 0),
    PRIMARY KEY (agent, day)
) STRICT;
"#;

/// Back from version 9: the per-day summaries of compacted decisions go.
pub(super) const V9_DOWN: &str = "DROP TABLE decision_days;";

/// The setting holding when (Unix seconds) the last compaction finished.
const LAST_COMPACTED: &str = "retention.last_compacted";
/// Pages given back per `incremental_vacuum` step (4 MiB at the default 4 KiB page).
const VACUUM_STEP_PAGES: u32 = 1024;

/// What one compaction batch did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CompactBatch {
    /// Decision rows summarised and deleted.
    pub decisions: u64,
    /// Memory lines counted and deleted.
    pub memory_lines: u64,
    /// Cost rows added up and deleted.
    pub cost_rows: u64,
    /// Whether nothing older than the cutoff is left (no further batch is needed).
    pub done: bool,
}

/// One agent's compacted UTC day.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DecisionDay {
    /// The day's first second (Unix, UTC).
    pub day: u64,
    /// Decisions that passed every layer.
    pub allowed: u64,
    /// Decisions held.
    pub held: u64,
    /// Decisions a layer refused.
    pub refused: u64,
    /// Paper decisions filled.
    pub paper_filled: u64,
    /// Live decisions the signer signed.
    pub signed: u64,
    /// The first decision row id folded in (none if only memory or costs were).
    pub first_decision_id: Option<i64>,
    /// The last decision row id folded in.
    pub last_decision_id: Option<i64>,
    /// Memory lines deleted.
    pub memory_lines: u64,
    /// LLM calls.
    pub llm_calls: u64,
    /// Their cost, micro-USD.
    pub llm_micros: u64,
    /// Prompt tokens charged.
    pub prompt_tokens: u64,
    /// Completion tokens charged.
    pub completion_tokens: u64,
}

impl Store {
    /// Summarises and deletes at most `batch_rows` rows of each compacted table older than
    /// `cutoff` (Unix seconds; callers pass [`crate::config::Retention::cutoff`]), keeping
    /// each agent's newest `keep_memory_lines` memory lines. One transaction: all of it or
    /// none of it. Run it until [`CompactBatch::done`].
    pub fn compact_batch(
        &self,
        cutoff: u64,
        batch_rows: u32,
        keep_memory_lines: u32,
    ) -> Result<CompactBatch, StoreError> {
        if batch_rows == 0 || keep_memory_lines == 0 {
            return Err(StoreError::InvalidInput {
                what: "compaction batch",
                why: "batch_rows and keep_memory_lines must be at least 1".into(),
            });
        }
        let cutoff = to_sql_ts(cutoff, "compaction cutoff")?;
        let tx = migrations::begin_immediate(&self.conn)?;
        let decisions = compact_decisions(&tx, cutoff, batch_rows)?;
        let memory_lines = compact_memory(&tx, cutoff, batch_rows, keep_memory_lines)?;
        let cost_rows = compact_costs(&tx, cutoff, batch_rows)?;
        tx.commit()?;
        let full = u64::from(batch_rows);
        Ok(CompactBatch {
            decisions,
            memory_lines,
            cost_rows,
            done: decisions < full && memory_lines < full && cost_rows < full,
        })
    }

    /// Gives at most `VACUUM_STEP_PAGES` free pages back to the file system (one
    /// `incremental_vacuum` transaction) and returns how many it gave back and whether free
    /// pages are left. Once none are left, checkpoints the WAL and truncates it (best effort:
    /// a reader holding an old snapshot leaves it for the next checkpoint), which is when the
    /// file itself shrinks.
    pub fn reclaim_step(&self) -> Result<(u64, bool), StoreError> {
        let free = self.freelist_count()?;
        if free > 0 {
            self.conn
                .execute_batch(&format!("PRAGMA incremental_vacuum({VACUUM_STEP_PAGES})"))?;
        }
        let after = self.freelist_count()?;
        let freed = free.saturating_sub(after);
        // A file that is not INCREMENTAL gives nothing back: stop rather than loop.
        let more = after > 0 && freed > 0;
        if !more {
            // `wal_checkpoint` answers (busy, log pages, checkpointed pages); busy is no error.
            self.conn
                .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
        }
        Ok((freed, more))
    }

    fn freelist_count(&self) -> Result<u64, StoreError> {
        let free: i64 = self
            .conn
            .query_row("PRAGMA freelist_count", [], |r| r.get(0))?;
        from_sql_u64(free, "freelist_count")
    }

    /// Records that a compaction finished at `now`.
    pub fn set_last_compacted(&self, now: u64) -> Result<(), StoreError> {
        self.set_setting(LAST_COMPACTED, &now.to_string())
    }

    /// When the last compaction finished, if one ever did.
    pub fn last_compacted(&self) -> Result<Option<u64>, StoreError> {
        match self.setting(LAST_COMPACTED)? {
            None => Ok(None),
            Some(text) => text
                .parse()
                .map(Some)
                .map_err(|_| StoreError::Corrupt(format!("setting {LAST_COMPACTED} is {text:?}"))),
        }
    }

    /// `agent`'s compacted days, oldest first.
    pub fn decision_days(&self, agent: &AgentId) -> Result<Vec<DecisionDay>, StoreError> {
        let mut stmt = self.conn.prepare(
            "SELECT day, allowed, held, refused, paper_filled, signed, first_decision_id,
                    last_decision_id, memory_lines, llm_calls, llm_micros, prompt_tokens,
                    completion_tokens
             FROM decision_days WHERE agent = ?1 ORDER BY day",
        )?;
        let mut rows = stmt.query([agent.as_str()])?;
        let mut out = Vec::new();
        while let Some(r) = rows.next()? {
            let n =
                |i: usize, what: &str| -> Result<u64, StoreError> { from_sql_u64(r.get(i)?, what) };
            out.push(DecisionDay {
                day: n(0, "summary day")?,
                allowed: n(1, "allowed count")?,
                held: n(2, "held count")?,
                refused: n(3, "refused count")?,
                paper_filled: n(4, "paper_filled count")?,
                signed: n(5, "signed count")?,
                first_decision_id: r.get(6)?,
                last_decision_id: r.get(7)?,
                memory_lines: n(8, "memory line count")?,
                llm_calls: n(9, "LLM call count")?,
                llm_micros: n(10, "LLM cost")?,
                prompt_tokens: n(11, "prompt tokens")?,
                completion_tokens: n(12, "completion tokens")?,
            });
        }
        Ok(out)
    }

    /// The file's auto-vacuum mode; a file made before retention (mode NONE) is switched to
    /// INCREMENTAL with one `VACUUM` (which cannot run inside a migration's transaction, so it
    /// runs here, right after the migrations, once per file). A fresh file gets the mode
    /// before its first table and needs no `VACUUM`.
    pub(super) fn ensure_incremental_vacuum(&self) -> Result<(), StoreError> {
        const INCREMENTAL: i64 = 2;
        let mode: i64 = self
            .conn
            .query_row("PRAGMA auto_vacuum", [], |r| r.get(0))?;
        if mode == INCREMENTAL {
            return Ok(());
        }
        self.conn
            .pragma_update(None, "auto_vacuum", "INCREMENTAL")?;
        let pages: i64 = self.conn.query_row("PRAGMA page_count", [], |r| r.get(0))?;
        if pages > 0 {
            self.conn.execute_batch("VACUUM")?;
        }
        Ok(())
    }
}

/// The largest id among the oldest `batch_rows` rows `sql` selects (its `?1` the cutoff,
/// `?2` the batch, `?3` the memory lines kept), or `None` when it selects none.
fn batch_bound(
    tx: &rusqlite::Connection,
    sql: &str,
    cutoff: i64,
    batch_rows: u32,
    extra: Option<u32>,
) -> Result<Option<i64>, StoreError> {
    let bound: Option<i64> = match extra {
        None => tx.query_row(sql, params![cutoff, batch_rows], |r| r.get(0)),
        Some(x) => tx.query_row(sql, params![cutoff, batch_rows, x], |r| r.get(0)),
    }
    .optional()?
    .flatten();
    Ok(bound)
}

/// One batch of `table`'s rows that `old` selects (`?1` the cutoff; `?3` the memory lines
/// kept, with `keep`): the oldest `batch_rows` of them added into `decision_days` by `rollup`
/// (an `INSERT … SELECT` over `table WHERE old AND id <= ?2`, `?2` the batch's largest id),
/// then deleted, in the caller's transaction. How many rows went.
fn compact_batch(
    tx: &rusqlite::Connection,
    table: &str,
    old: &str,
    rollup: &str,
    cutoff: i64,
    batch_rows: u32,
    keep: Option<u32>,
) -> Result<u64, StoreError> {
    let Some(bound) = batch_bound(
        tx,
        &format!("SELECT max(id) FROM (SELECT id FROM {table} WHERE {old} ORDER BY id LIMIT ?2)"),
        cutoff,
        batch_rows,
        keep,
    )?
    else {
        return Ok(0);
    };
    let run = |sql: &str| match keep {
        None => tx.execute(sql, params![cutoff, bound]),
        Some(k) => tx.execute(sql, params![cutoff, bound, k]),
    };
    run(rollup)?;
    let deleted = run(&format!("DELETE FROM {table} WHERE {old} AND id <= ?2"))?;
    Ok(u64::try_from(deleted).unwrap_or(u64::MAX))
}

fn compact_decisions(
    tx: &rusqlite::Connection,
    cutoff: i64,
    batch_rows: u32,
) -> Result<u64, StoreError> {
    compact_batch(
        tx,
        "decisions",
        "ts < ?1",
        "INSERT INTO decision_days (agent, day, allowed, held, refused, paper_filled, signed,
                                    first_decision_id, last_decision_id)
         SELECT agent, ts - ts % 86400,
                sum(outcome = 'allowed'), sum(outcome = 'held'), sum(outcome = 'refused'),
                sum(outcome = 'paper_filled'), sum(outcome = 'signed'), min(id), max(id)
         FROM decisions WHERE ts < ?1 AND id <= ?2 GROUP BY agent, ts - ts % 86400
         ON CONFLICT (agent, day) DO UPDATE SET
             allowed = allowed + excluded.allowed,
             held = held + excluded.held,
             refused = refused + excluded.refused,
             paper_filled = paper_filled + excluded.paper_filled,
             signed = signed + excluded.signed,
             first_decision_id = min(coalesce(first_decision_id, excluded.first_decision_id),
                                     excluded.first_decision_id),
             last_decision_id = max(coalesce(last_decision_id, excluded.last_decision_id),
                                    excluded.last_decision_id)",
        cutoff,
        batch_rows,
        None,
    )
}

/// The memory lines that may go: older than the cutoff and not among the agent's newest
/// `?3` (the id of the agent's `?3`-th newest line bounds them; NULL, so nothing, when it
/// has fewer).
const OLD_MEMORY: &str = "ts < ?1 AND id < (SELECT n.id FROM memory n WHERE n.agent = memory.agent
                                             ORDER BY n.id DESC LIMIT 1 OFFSET ?3 - 1)";

fn compact_memory(
    tx: &rusqlite::Connection,
    cutoff: i64,
    batch_rows: u32,
    keep: u32,
) -> Result<u64, StoreError> {
    compact_batch(
        tx,
        "memory",
        OLD_MEMORY,
        &format!(
            "INSERT INTO decision_days (agent, day, memory_lines)
             SELECT agent, ts - ts % 86400, count(*) FROM memory
             WHERE {OLD_MEMORY} AND id <= ?2 GROUP BY agent, ts - ts % 86400
             ON CONFLICT (agent, day) DO UPDATE SET
                 memory_lines = memory_lines + excluded.memory_lines"
        ),
        cutoff,
        batch_rows,
        Some(keep),
    )
}

fn compact_costs(
    tx: &rusqlite::Connection,
    cutoff: i64,
    batch_rows: u32,
) -> Result<u64, StoreError> {
    compact_batch(
        tx,
        "cost_ledger",
        "ts < ?1",
        "INSERT INTO decision_days (agent, day, llm_calls, llm_micros, prompt_tokens,
                                    completion_tokens)
         SELECT agent, ts - ts % 86400, count(*), sum(micros), sum(prompt_tokens),
                sum(completion_tokens)
         FROM cost_ledger WHERE ts < ?1 AND id <= ?2 GROUP BY agent, ts - ts % 86400
         ON CONFLICT (agent, day) DO UPDATE SET
             llm_calls = llm_calls + excluded.llm_calls,
             llm_micros = llm_micros + excluded.llm_micros,
             prompt_tokens = prompt_tokens + excluded.prompt_tokens,
             completion_tokens = completion_tokens + excluded.completion_tokens",
        cutoff,
        batch_rows,
        None,
    )
}

/// The state's size on disk: the SQLite file and its WAL, bytes. A missing WAL counts 0.
pub fn state_file_bytes(path: &std::path::Path) -> std::io::Result<u64> {
    let main = std::fs::metadata(path)?.len();
    let mut wal_path = path.as_os_str().to_owned();
    wal_path.push("-wal");
    let wal = match std::fs::metadata(&wal_path) {
        Ok(m) => m.len(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
        Err(e) => return Err(e),
    };
    Ok(main + wal)
}

#[cfg(test)]
mod tests;
