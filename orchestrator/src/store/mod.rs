//! The orchestrator's state: one SQLite file (WAL) holding agents, their decisions and
//! memory, paper positions, pending operator confirmations, executions (at-most-once),
//! the LLM cost ledger and operator settings.
//!
//! Durability. The file is opened with `journal_mode=WAL` and `synchronous=FULL` on every
//! connection: in WAL mode FULL syncs the WAL at each commit, so a write that returned is
//! on disk (a claimed execution, a resolved confirmation); NORMAL may lose the last commits
//! on power loss. Measured on the build machine (ext4 on a virtio disk, 2 cores, release
//! build, 500 `claim_execution` commits on fresh keys, two runs): FULL p50 0.49-0.73 ms,
//! p99 8-10 ms; NORMAL p50 0.03 ms. `record_decision`: FULL p50 0.3-0.4 ms, NORMAL 0.1 ms.
//! FULL everywhere keeps one rule for all tables; what it costs is one `fsync` per commit, so
//! a decision's after-the-fact writes are one transaction ([`DecisionBatch`]: a paper decision
//! is one commit, it was six) and only what must be on disk before acting (a live action's
//! claim, a pending approval) commits on its own first (`docs/orchestrator.md`, "What is
//! durable when").
//!
//! Concurrency. [`Store`] owns one connection: it is `Send`, not `Sync`. Async callers wrap
//! calls in `spawn_blocking` or keep the store behind a `std::sync::Mutex`. Several `Store`
//! handles (threads or processes) may open the same file: every read-modify-write runs in a
//! `BEGIN IMMEDIATE` transaction and `busy_timeout` makes writers wait for each other.
//!
//! Isolation between agents. Per-agent tables (decisions, memory, paper positions) are only
//! reachable through [`AgentStore`], a view bound to one agent whose every query filters by
//! that agent; no method on it takes another agent id.
//!
//! Numbers. Money and amounts are never REAL: micro-USD as INTEGER, base units as TEXT
//! decimal (`i128`), timestamps as INTEGER Unix seconds (the caller's clock, passed in).

mod aave_paper;
mod agent;
mod confirmations;
mod cost;
mod decision_batch;
mod deputy;
mod evm_txs;
mod executions;
mod funding;
mod health;
mod hl_actions;
mod marks;
pub use health::WindowCounts;
mod migrations;
pub use migrations::DropLine;
mod perps;
mod retention;

use std::fs::OpenOptions;
use std::io;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, OptionalExtension, params};
use vigil_protocol::AgentId;

pub use aave_paper::{
    AaveInterestRow, AaveKind, PaperAaveFill, PaperAavePosition, RAY, ReserveRates,
    SECONDS_PER_YEAR,
};
pub use agent::{AgentStore, DecisionOutcome, DecisionRow, Layer, NewDecision, PaperFillRow};
pub(crate) use confirmations::MAX_SUMMARY_CHARS;
pub use confirmations::{
    ConfirmationId, ConfirmationKind, ConfirmationRow, ConfirmationStatus, NewConfirmation,
    Resolution,
};
pub use cost::NewCost;
pub use decision_batch::{DecisionBatch, PaperFill};
pub(crate) use deputy::FillTotals;
pub use evm_txs::{EvmTxRow, EvmTxState, NewEvmTx};
pub use executions::ExecutionRow;
pub(crate) use funding::FUNDING_HOUR_SECS;
pub(crate) use hl_actions::NewHlAction;
pub use hl_actions::{HlActionRow, HlState};
pub use marks::MarkStep;
pub(crate) use perps::{NewPerpFill, PerpPositionRow};
pub use retention::{CompactBatch, DecisionDay, state_file_bytes};

/// How long a writer waits for another connection's write lock before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Everything that can go wrong in the store. Each message says what was wrong and,
/// where the operator can act, what to do.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// SQLite itself failed (I/O, lock timeout, constraint we did not map).
    #[error("state database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The file was written by a newer orchestrator; we never downgrade a schema.
    #[error(
        "state database has schema version {found}, this orchestrator supports up to {supported}: \
         run the newer orchestrator, or take the state down with the newer orchestrator's \
         `vigil-orchestrator migrate --down-to {supported} --state <file>` (it names what it drops), \
         or restore a backup made by this version"
    )]
    NewerSchema {
        /// The `user_version` found in the file.
        found: u32,
        /// The newest version this build knows.
        supported: u32,
    },
    /// No pending confirmation has this id.
    #[error("pending confirmation {0} does not exist: list the open ones with /pending")]
    ConfirmationNotFound(ConfirmationId),
    /// The confirmation was already approved or denied; each one is single-use.
    #[error("pending confirmation {id} was already {resolution}: a confirmation is used once")]
    ConfirmationAlreadyResolved {
        /// The confirmation.
        id: ConfirmationId,
        /// How it was resolved the first time.
        resolution: Resolution,
    },
    /// The confirmation expired before it was answered.
    #[error("pending confirmation {0} has expired: ask the agent to propose the action again")]
    ConfirmationExpired(ConfirmationId),
    /// A row with this idempotency key already exists.
    #[error("idempotency key {0:?} is already used: each action needs a fresh key")]
    DuplicateIdempotencyKey(String),
    /// `finish_execution` for a key that was never claimed.
    #[error("execution {0:?} was never claimed: claim_execution must come first")]
    ExecutionNotClaimed(String),
    /// `finish_execution` called twice for one key.
    #[error("execution {0:?} is already finished: its outcome is recorded once")]
    ExecutionAlreadyFinished(String),
    /// A paper position would leave the `i128` range.
    #[error("paper position of agent {agent} in {asset} would overflow: the fill is not recorded")]
    PositionOverflow {
        /// The agent.
        agent: String,
        /// The asset.
        asset: String,
    },
    /// The caller passed a value the store refuses to record.
    #[error("refused to store {what}: {why}")]
    InvalidInput {
        /// Which field.
        what: &'static str,
        /// What is wrong with it.
        why: String,
    },
    /// The file holds something this code never writes.
    #[error("state database is corrupt: {0}; restore it from a backup")]
    Corrupt(String),
    /// The file could not be created or checked.
    #[error("state database {0}: {1}")]
    Io(PathBuf, io::Error),
    /// The file exists with permissions that let other users read it.
    #[error(
        "state database {path} has mode {mode:o}, readable by other users: run `chmod 600 {path}`"
    )]
    Permissions {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
}

/// The orchestrator's state database: one SQLite connection.
#[derive(Debug)]
pub struct Store {
    conn: Connection,
}

impl Store {
    /// Opens (creating it `0600` if absent) the state file at `path`, turns on WAL,
    /// `synchronous=FULL`, foreign keys and the busy timeout, and applies pending migrations.
    /// A file from a newer schema is refused with [`StoreError::NewerSchema`].
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        create_private_file(path)?;
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(path, flags)?;
        let store = Store { conn };
        store.configure(true)?;
        migrations::migrate(&store.conn)?;
        store.ensure_incremental_vacuum()?;
        Ok(store)
    }

    /// What taking the state file at `path` down to schema `to` would drop, step by step
    /// (nothing is changed). Refuses a version outside 1 to the file's.
    pub fn down_plan(path: &Path, to: u32) -> Result<Vec<DropLine>, StoreError> {
        let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
        migrations::down_plan(&conn, to)
    }

    /// Takes the state file at `path` down to schema `to` (`vigil-orchestrator migrate
    /// --down-to`): one transaction per step, newest first. The file must not be in use.
    pub fn migrate_down(path: &Path, to: u32) -> Result<(), StoreError> {
        if !path.exists() {
            return Err(StoreError::InvalidInput {
                what: "--state",
                why: format!(
                    "{} does not exist: give the orchestrator's state_db",
                    path.display()
                ),
            });
        }
        let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_WRITE)?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        migrations::migrate_down(&conn, to)
    }

    /// The schema version of the state file at `path`.
    pub fn file_schema_version(path: &Path) -> Result<u32, StoreError> {
        let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
        migrations::user_version(&conn)
    }

    /// An in-memory store with the same schema, for tests.
    pub fn open_in_memory() -> Result<Store, StoreError> {
        let store = Store {
            conn: Connection::open_in_memory()?,
        };
        store.configure(false)?;
        migrations::migrate(&store.conn)?;
        store.ensure_incremental_vacuum()?;
        Ok(store)
    }

    /// The schema version recorded in the file (`PRAGMA user_version`).
    pub fn schema_version(&self) -> Result<u32, StoreError> {
        migrations::user_version(&self.conn)
    }

    /// A view of the per-agent tables bound to `id`: every query it makes filters by it.
    pub fn agent(&self, id: &AgentId) -> AgentStore<'_> {
        AgentStore::new(self, id.clone())
    }

    /// Runs SQLite's full `integrity_check` and foreign-key check; `Corrupt` says what failed.
    pub fn integrity_check(&self) -> Result<(), StoreError> {
        let mut stmt = self.conn.prepare("PRAGMA integrity_check")?;
        let lines: Vec<String> = stmt
            .query_map([], |r| r.get::<_, String>(0))?
            .collect::<Result<_, _>>()?;
        if lines != ["ok"] {
            return Err(StoreError::Corrupt(format!(
                "integrity_check: {}",
                lines.join("; ")
            )));
        }
        let mut stmt = self.conn.prepare("PRAGMA foreign_key_check")?;
        let broken: Vec<String> = stmt
            .query_map([], |r| r.get::<_, String>(0))?
            .collect::<Result<_, _>>()?;
        if !broken.is_empty() {
            return Err(StoreError::Corrupt(format!(
                "foreign keys broken in {}",
                broken.join(", ")
            )));
        }
        Ok(())
    }

    /// An operator setting (e.g. paused agents, live flags), or `None` if never set.
    pub fn setting(&self, key: &str) -> Result<Option<String>, StoreError> {
        Ok(self
            .conn
            .query_row("SELECT value FROM settings WHERE key = ?1", [key], |r| {
                r.get(0)
            })
            .optional()?)
    }

    /// Sets (or replaces) an operator setting.
    pub fn set_setting(&self, key: &str, value: &str) -> Result<(), StoreError> {
        if key.is_empty() {
            return Err(StoreError::InvalidInput {
                what: "setting key",
                why: "it is empty".into(),
            });
        }
        self.conn.execute(
            "INSERT INTO settings (key, value) VALUES (?1, ?2)
             ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            params![key, value],
        )?;
        Ok(())
    }

    /// Sets the per-connection pragmas. `file`: a real file, where WAL must take effect.
    fn configure(&self, file: bool) -> Result<(), StoreError> {
        // The busy timeout first: switching to WAL needs a lock another handle may hold.
        self.conn.busy_timeout(BUSY_TIMEOUT)?;
        if file {
            let mode: String = self
                .conn
                .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
            if !mode.eq_ignore_ascii_case("wal") {
                return Err(StoreError::Corrupt(format!(
                    "journal_mode is {mode:?} after asking for WAL (is the file on a network \
                     filesystem? keep the state on a local disk)"
                )));
            }
        }
        self.conn.pragma_update(None, "synchronous", "FULL")?;
        // Takes effect when a fresh file gets its first table; an older file is switched by
        // one VACUUM after the migrations (`retention.rs`).
        self.conn
            .pragma_update(None, "auto_vacuum", "INCREMENTAL")?;
        self.conn.pragma_update(None, "foreign_keys", true)?;
        Ok(())
    }

    /// Makes sure `agent` has its row in `agents` (the per-agent tables reference it).
    fn ensure_agent(&self, agent: &str, now: u64) -> Result<(), StoreError> {
        self.conn.execute(
            "INSERT INTO agents (id, first_seen) VALUES (?1, ?2) ON CONFLICT(id) DO NOTHING",
            params![agent, to_sql_ts(now, "timestamp")?],
        )?;
        Ok(())
    }
}

/// Creates the file `0600` if it does not exist, and refuses one others can read.
fn create_private_file(path: &Path) -> Result<(), StoreError> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)
        .map_err(|e| StoreError::Io(path.to_path_buf(), e))?;
    let meta = file
        .metadata()
        .map_err(|e| StoreError::Io(path.to_path_buf(), e))?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(StoreError::Permissions {
            path: path.to_path_buf(),
            mode,
        });
    }
    Ok(())
}

/// A `u64` (timestamp, micro-USD) as SQLite's signed INTEGER, or `InvalidInput`.
fn to_sql_ts(v: u64, what: &'static str) -> Result<i64, StoreError> {
    i64::try_from(v).map_err(|_| StoreError::InvalidInput {
        what,
        why: format!("{v} is above {}", i64::MAX),
    })
}

/// A stored INTEGER back to `u64`; a negative one is corruption (we never write one).
fn from_sql_u64(v: i64, what: &str) -> Result<u64, StoreError> {
    u64::try_from(v).map_err(|_| StoreError::Corrupt(format!("{what} is negative ({v})")))
}

/// Whether a SQLite error is a UNIQUE / PRIMARY KEY violation.
fn is_unique_violation(e: &rusqlite::Error) -> bool {
    matches!(
        e,
        rusqlite::Error::SqliteFailure(f, _)
            if f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
                || f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY
    )
}

#[cfg(test)]
mod tests;
