//! The retention chore: once a day (and at start when the last run is more than a day old)
//! the state's old decision rows, memory lines and cost rows are summarised and deleted
//! (`store/retention.rs`), then the freed pages are given back to the file system.
//!
//! [`Compaction`] is the run, one bounded step at a time: each step takes the state's lock
//! for one transaction of at most `batch_rows` rows per table (or one `incremental_vacuum`
//! of a few MiB) and releases it, so decisions interleave with a long compaction. The
//! benchmark (`orchestrator/benches/retention.rs`) drives the same steps.

use std::sync::Mutex;
use std::sync::atomic::Ordering;

use crate::config::Retention;
use crate::store::{CompactBatch, Store};

use super::{MEMORY_LINES, Orchestrator};

/// Seconds between two compactions.
pub const COMPACT_EVERY_SECS: u64 = 86_400;

/// One compaction run, driven by [`Compaction::step`] until it says it is finished.
#[derive(Clone, Copy, Debug)]
pub struct Compaction {
    now: u64,
    cutoff: u64,
    batch_rows: u32,
    /// What the batches did so far.
    pub rows: CompactBatch,
    /// Pages given back to the file system so far.
    pub pages_freed: u64,
    phase: Phase,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Batches,
    Reclaim,
    Finished,
}

impl Compaction {
    /// A run at `now` under `retention`.
    pub fn new(retention: &Retention, now: u64) -> Self {
        Compaction {
            now,
            cutoff: retention.cutoff(now),
            batch_rows: retention.batch_rows,
            rows: CompactBatch::default(),
            pages_freed: 0,
            phase: Phase::Batches,
        }
    }

    /// Whether `now` is a day or more after the last compaction (or none ever ran).
    pub fn due(store: &Store, now: u64) -> Result<bool, String> {
        let last = store
            .last_compacted()
            .map_err(|e| format!("retention: {e}"))?;
        Ok(last.is_none_or(|last| now >= last.saturating_add(COMPACT_EVERY_SECS)))
    }

    /// One bounded step under the state's lock; `true` once the run is finished (the last
    /// step records when, so the next run is a day later). An error leaves every committed
    /// batch committed and the rest for the next run.
    pub fn step(&mut self, store: &Mutex<Store>) -> Result<bool, String> {
        let store = store
            .lock()
            .map_err(|_| "retention: the state's lock is poisoned".to_string())?;
        match self.phase {
            Phase::Batches => {
                let b = store
                    .compact_batch(self.cutoff, self.batch_rows, MEMORY_LINES)
                    .map_err(|e| format!("retention: compaction batch failed: {e}"))?;
                self.rows.decisions += b.decisions;
                self.rows.memory_lines += b.memory_lines;
                self.rows.cost_rows += b.cost_rows;
                if b.done {
                    self.rows.done = true;
                    self.phase = Phase::Reclaim;
                }
            }
            Phase::Reclaim => {
                let (freed, more) = store
                    .reclaim_step()
                    .map_err(|e| format!("retention: giving space back failed: {e}"))?;
                self.pages_freed += freed;
                if !more {
                    store
                        .set_last_compacted(self.now)
                        .map_err(|e| format!("retention: {e}"))?;
                    self.phase = Phase::Finished;
                }
            }
            Phase::Finished => {}
        }
        Ok(self.phase == Phase::Finished)
    }

    /// What the run did, for the log.
    pub fn summary(&self) -> String {
        format!(
            "retention: compacted {} decisions, {} memory lines and {} cost rows older than {} \
             into daily summaries; {} pages given back",
            self.rows.decisions,
            self.rows.memory_lines,
            self.rows.cost_rows,
            self.cutoff,
            self.pages_freed
        )
    }
}

impl Orchestrator {
    /// The retention chore: runs a compaction when one is due, yielding between steps.
    pub(super) async fn compact_if_due(&self, now: u64) -> Option<String> {
        if now < self.next_compaction.load(Ordering::Relaxed) {
            return None;
        }
        // Checked again in an hour if anything below fails.
        self.next_compaction.store(now + 3_600, Ordering::Relaxed);
        let due = match self.store.lock() {
            Ok(store) => Compaction::due(&store, now),
            Err(_) => Err("retention: the state's lock is poisoned".to_string()),
        };
        match due {
            Ok(true) => {}
            Ok(false) => return None,
            Err(e) => return Some(e),
        }
        let mut run = Compaction::new(&self.config.retention, now);
        loop {
            match run.step(&self.store) {
                Ok(true) => break,
                Ok(false) => tokio::task::yield_now().await,
                Err(e) => return Some(e),
            }
        }
        self.next_compaction
            .store(now + COMPACT_EVERY_SECS, Ordering::Relaxed);
        tracing::info!("{}", run.summary());
        None
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use crate::store::{DecisionOutcome, NewDecision};

    #[test]
    fn a_run_steps_to_the_end_records_when_and_is_next_due_a_day_later() {
        let store = Mutex::new(Store::open_in_memory().unwrap());
        let agent = "trader".parse().unwrap();
        let day = 86_400;
        let now = 100 * day + 3_600;
        {
            let s = store.lock().unwrap();
            assert!(Compaction::due(&s, now).unwrap(), "never compacted: due");
            for ts in (40 * day..now).step_by(3_600) {
                s.agent(&agent)
                    .record_decision(&NewDecision {
                        ts,
                        prompt_digest: String::new(),
                        reply: String::new(),
                        parsed_json: None,
                        outcome: DecisionOutcome::Held,
                        layer: None,
                        rule: None,
                        idempotency_key: None,
                    })
                    .unwrap();
            }
        }
        let retention = Retention {
            keep_days: 30,
            batch_rows: 100,
        };
        let mut run = Compaction::new(&retention, now);
        let mut steps = 0;
        while !run.step(&store).unwrap() {
            steps += 1;
        }
        assert!(steps >= 2, "30 days of hourly rows take several batches");
        assert_eq!(run.rows.decisions, 30 * 24);
        assert!(run.summary().contains("compacted 720 decisions"));
        let s = store.lock().unwrap();
        assert_eq!(s.last_compacted().unwrap(), Some(now));
        assert!(!Compaction::due(&s, now + day - 1).unwrap());
        assert!(Compaction::due(&s, now + day).unwrap());
    }
}
