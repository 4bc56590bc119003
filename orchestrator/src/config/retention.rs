//! The `[retention]` table: how long the orchestrator keeps its raw decision rows, memory
//! lines and LLM cost rows before the daily compaction folds them into per-agent, per-UTC-day
//! summaries (`store/retention.rs`, `docs/orchestrator.md`, "Retention").
//!
//! Only those three tables are ever compacted; everything an operator figure or a safety
//! check reads (fills, positions, executions, confirmations, funding, interest, risk state,
//! baselines, today's costs) is kept whatever is written here.

use serde::Deserialize;

use super::{ConfigError, invalid};

/// Days of raw decisions, memory lines and cost rows kept when the config does not say.
pub(crate) const DEFAULT_KEEP_DAYS: u32 = 30;
/// The longest window accepted: ten years.
const MAX_KEEP_DAYS: u32 = 3650;
/// Rows of each compacted table per compaction transaction when the config does not say.
pub(crate) const DEFAULT_BATCH_ROWS: u32 = 2_000;
/// Bounds of `batch_rows`: below, compaction is mostly commits; above, one batch holds the
/// state's lock for long enough to delay decisions.
const MIN_BATCH_ROWS: u32 = 100;
const MAX_BATCH_ROWS: u32 = 50_000;
/// Seconds in a UTC day.
const DAY_SECS: u64 = 86_400;

/// The `[retention]` settings, checked; every field has a default.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Retention {
    /// Whole UTC days of raw rows kept before today (1 to 3650, default 30): rows older than
    /// the start of today minus this many days are summarised and deleted.
    pub keep_days: u32,
    /// Rows of each compacted table summarised and deleted per transaction (100 to 50,000,
    /// default 2,000): the state's lock is released between batches.
    pub batch_rows: u32,
}

impl Default for Retention {
    fn default() -> Self {
        Retention {
            keep_days: DEFAULT_KEEP_DAYS,
            batch_rows: DEFAULT_BATCH_ROWS,
        }
    }
}

impl Retention {
    /// The first second whose rows are kept at `now`: the start of the UTC day `keep_days`
    /// before today's. Today's rows (what the daily cost cap reads) are always after it.
    pub fn cutoff(&self, now: u64) -> u64 {
        let today = now - now % DAY_SECS;
        today.saturating_sub(u64::from(self.keep_days) * DAY_SECS)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRetention {
    keep_days: Option<i64>,
    batch_rows: Option<i64>,
}

impl RawRetention {
    pub(super) fn check(self) -> Result<Retention, ConfigError> {
        let d = Retention::default();
        let keep_days = bounded(
            self.keep_days,
            d.keep_days,
            1,
            MAX_KEEP_DAYS,
            "retention.keep_days",
            "days of raw decisions, memory lines and LLM cost rows to keep",
        )?;
        let batch_rows = bounded(
            self.batch_rows,
            d.batch_rows,
            MIN_BATCH_ROWS,
            MAX_BATCH_ROWS,
            "retention.batch_rows",
            "rows compacted per transaction",
        )?;
        Ok(Retention {
            keep_days,
            batch_rows,
        })
    }
}

/// `value` if given and within `min..=max`, `default` if absent; otherwise an error naming
/// `key`, the value, the range and the default.
pub(super) fn bounded(
    value: Option<i64>,
    default: u32,
    min: u32,
    max: u32,
    key: &str,
    what: &str,
) -> Result<u32, ConfigError> {
    let Some(n) = value else {
        return Ok(default);
    };
    u32::try_from(n)
        .ok()
        .filter(|n| (min..=max).contains(n))
        .ok_or_else(|| {
            invalid(
                key,
                format!("is {n}: give the {what}, {min} to {max} (default {default})"),
            )
        })
}
