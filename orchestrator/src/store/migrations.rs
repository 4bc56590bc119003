//! The schema, as an ordered list of migrations versioned by `PRAGMA user_version`.
//!
//! Migration `i` (0-based) takes the file from version `i` to `i + 1`. Each runs in its own
//! `BEGIN IMMEDIATE` transaction together with the `user_version` bump, so a crash leaves
//! the file at the old or the new version, never between. Two processes opening the same
//! file at once serialise on the write lock, and the second sees the work already done.
//! A file whose version is above the number of [`MIGRATIONS`] is refused (the daemon never
//! downgrades on its own).
//!
//! Every migration from version 2 on has its way back beside it (`V<n>_DOWN`, listed in
//! [`DOWNS`] with what it drops): `vigil-orchestrator migrate --down-to K` runs them newest
//! first, one transaction each with the `user_version` step, so an older orchestrator can
//! start on the data. A test checks that for every K the schema after going down equals a
//! fresh file migrated up to K only, and that the kept tables' rows survive.
//!
//! Append new migrations at the end, each with its down step; never edit one that has shipped.

use rusqlite::{Connection, TransactionBehavior};

use super::StoreError;

/// Version 1: the tables of issue 4 ("State") and the confirmations of issue 5.
/// `STRICT` tables: SQLite refuses a value of the wrong type instead of coercing it.
const V1: &str = r#"
CREATE TABLE agents (
    id          TEXT PRIMARY KEY NOT NULL,
    first_seen  INTEGER NOT NULL CHECK (first_seen >= 0)
) STRICT;

CREATE TABLE decisions (
    id               INTEGER PRIMARY KEY,
    agent            TEXT NOT NULL REFERENCES agents(id),
    ts               INTEGER NOT NULL CHECK (ts >= 0),
    prompt_digest    TEXT NOT NULL,
    reply            TEXT NOT NULL,
    reply_truncated  INTEGER NOT NULL CHECK (reply_truncated IN (0, 1)),
    parsed_json      TEXT,
    outcome          TEXT NOT NULL
                     CHECK (outcome IN ('allowed', 'held', 'refused', 'paper_filled', 'signed')),
    layer            INTEGER CHECK (layer IN (1, 2, 3)),
    rule             TEXT,
    idempotency_key  TEXT UNIQUE
) STRICT;
CREATE INDEX decisions_by_agent ON decisions (agent, id);

CREATE TABLE memory (
    id     INTEGER PRIMARY KEY,
    agent  TEXT NOT NULL REFERENCES agents(id),
    ts     INTEGER NOT NULL CHECK (ts >= 0),
    text   TEXT NOT NULL
) STRICT;
CREATE INDEX memory_by_agent ON memory (agent, id);

-- Every simulated fill, and the running position per (agent, asset) it adds up to.
-- Amounts are signed base units as decimal TEXT (i128 does not fit an INTEGER).
CREATE TABLE paper_fills (
    id     INTEGER PRIMARY KEY,
    agent  TEXT NOT NULL REFERENCES agents(id),
    ts     INTEGER NOT NULL CHECK (ts >= 0),
    asset  TEXT NOT NULL,
    delta  TEXT NOT NULL,
    note   TEXT NOT NULL
) STRICT;
CREATE INDEX paper_fills_by_agent ON paper_fills (agent, asset, id);

CREATE TABLE paper_positions (
    agent     TEXT NOT NULL REFERENCES agents(id),
    asset     TEXT NOT NULL,
    position  TEXT NOT NULL,
    PRIMARY KEY (agent, asset)
) STRICT;

CREATE TABLE pending_confirmations (
    id               INTEGER PRIMARY KEY,
    kind             TEXT NOT NULL,
    agent            TEXT REFERENCES agents(id),
    summary          TEXT NOT NULL,
    payload_json     TEXT NOT NULL,
    idempotency_key  TEXT NOT NULL UNIQUE,
    created_at       INTEGER NOT NULL CHECK (created_at >= 0),
    expires_at       INTEGER NOT NULL CHECK (expires_at > created_at),
    status           TEXT NOT NULL DEFAULT 'open'
                     CHECK (status IN ('open', 'approved', 'denied', 'expired')),
    resolved_by      INTEGER,
    resolved_at      INTEGER,
    CHECK ((status IN ('approved', 'denied')) = (resolved_by IS NOT NULL))
) STRICT;
CREATE INDEX pending_open ON pending_confirmations (status, expires_at);

-- At-most-once: a row exists from the moment an action is about to run.
CREATE TABLE executions (
    idempotency_key  TEXT PRIMARY KEY NOT NULL,
    claimed_at       INTEGER NOT NULL CHECK (claimed_at >= 0),
    finished_at      INTEGER,
    outcome_json     TEXT,
    CHECK ((finished_at IS NULL) = (outcome_json IS NULL))
) STRICT;
CREATE INDEX executions_unfinished ON executions (claimed_at) WHERE finished_at IS NULL;

CREATE TABLE cost_ledger (
    id                 INTEGER PRIMARY KEY,
    agent              TEXT NOT NULL REFERENCES agents(id),
    ts                 INTEGER NOT NULL CHECK (ts >= 0),
    micros             INTEGER NOT NULL CHECK (micros >= 0),
    prompt_tokens      INTEGER NOT NULL CHECK (prompt_tokens >= 0),
    completion_tokens  INTEGER NOT NULL CHECK (completion_tokens >= 0),
    model              TEXT NOT NULL
) STRICT;
CREATE INDEX cost_by_ts ON cost_ledger (ts);

CREATE TABLE settings (
    key    TEXT PRIMARY KEY NOT NULL,
    value  TEXT NOT NULL
) STRICT;
"#;

/// Version 2: each confirmation carries a random token that its Yes/No buttons repeat, so a
/// button shown before a database restore (whose row number now names another item) matches
/// nothing. Rows of version 1 get a token of their own; their old buttons (`yes:<id>`) match
/// nothing either.
const V2: &str = r#"
ALTER TABLE pending_confirmations ADD COLUMN button_token TEXT NOT NULL DEFAULT '';
UPDATE pending_confirmations SET button_token = lower(hex(randomblob(16)));
"#;

/// Version 3: every EVM transaction the signer signed for a live action, written before it
/// is broadcast, with its nonce and raw bytes, and its state (`docs/orchestrator.md`, "Nonces
/// on EVM chains"): `sent` (broadcast, no receipt yet), `pending` (the node's pool has it),
/// `mined` (a receipt: block, hash, status) or `dropped` (its nonce was used by another
/// transaction; it moved nothing and is never re-sent).
const V3: &str = r#"
CREATE TABLE evm_transactions (
    hash             TEXT PRIMARY KEY NOT NULL,
    agent            TEXT NOT NULL REFERENCES agents(id),
    network          TEXT NOT NULL,
    address          TEXT NOT NULL,
    nonce            INTEGER NOT NULL CHECK (nonce >= 0),
    raw              TEXT NOT NULL,
    idempotency_key  TEXT NOT NULL,
    position         INTEGER NOT NULL CHECK (position >= 0),
    summary          TEXT NOT NULL,
    state            TEXT NOT NULL CHECK (state IN ('sent', 'pending', 'mined', 'dropped')),
    sent_at          INTEGER NOT NULL CHECK (sent_at >= 0),
    settled_at       INTEGER,
    block_number     INTEGER,
    block_hash       TEXT,
    succeeded        INTEGER CHECK (succeeded IN (0, 1)),
    UNIQUE (idempotency_key, position),
    CHECK ((state = 'mined') = (block_number IS NOT NULL))
) STRICT;
CREATE INDEX evm_in_flight ON evm_transactions (network, address, nonce)
    WHERE state IN ('sent', 'pending');
"#;

/// Back from version 2: the buttons' tokens go.
const V2_DOWN: &str = "ALTER TABLE pending_confirmations DROP COLUMN button_token;";

/// Back from version 3: the EVM transaction journal goes.
const V3_DOWN: &str = "DROP INDEX evm_in_flight; DROP TABLE evm_transactions;";

/// What a down step drops.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Dropped {
    /// A whole table, its rows with it.
    Table(&'static str),
    /// A column of a kept table, its values with it.
    Column(&'static str, &'static str),
}

/// The down steps: `DOWNS[i]` takes the file from version `i + 2` to `i + 1`, and drops what
/// it lists. Version 1 (the first schema) has no way down: below it there is no state.
const DOWNS: &[(&str, &[Dropped])] = &[
    (
        V2_DOWN,
        &[Dropped::Column("pending_confirmations", "button_token")],
    ),
    (V3_DOWN, &[Dropped::Table("evm_transactions")]),
    (
        super::perps::V4_DOWN,
        &[
            Dropped::Table("perp_fills"),
            Dropped::Table("perp_positions"),
        ],
    ),
    (super::hl_actions::V5_DOWN, &[Dropped::Table("hl_actions")]),
    (
        super::deputy::V6_DOWN,
        &[
            Dropped::Table("deputy_orders"),
            Dropped::Table("deputy_risk"),
        ],
    ),
    (
        super::funding::V7_DOWN,
        &[
            Dropped::Table("perp_funding"),
            Dropped::Column("perp_positions", "opened_at"),
            Dropped::Column("perp_positions", "funding"),
        ],
    ),
    (
        super::aave_paper::V8_DOWN,
        &[
            Dropped::Table("paper_aave_interest"),
            Dropped::Table("paper_aave_fills"),
            Dropped::Table("paper_aave_positions"),
        ],
    ),
    (
        super::retention::V9_DOWN,
        &[Dropped::Table("decision_days")],
    ),
    (super::marks::V10_DOWN, &[Dropped::Table("recorded_marks")]),
];

/// One thing a down migration drops, and how many rows held it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DropLine {
    /// The step: from this version to the one below.
    pub from_version: u32,
    /// The table, or `table.column`.
    pub what: String,
    /// Rows whose data goes with it.
    pub rows: u64,
}

/// What `migrate --down-to` would drop (or dropped), step by step.
pub(super) fn down_plan(conn: &Connection, to: u32) -> Result<Vec<DropLine>, StoreError> {
    let from = user_version(conn)?;
    check_down(from, to)?;
    let mut out = Vec::new();
    for version in ((to + 1)..=from).rev() {
        let (_, dropped) = down_step(version)?;
        for d in dropped {
            let (table, what): (&str, String) = match d {
                Dropped::Table(t) => (*t, (*t).to_owned()),
                Dropped::Column(t, c) => (*t, format!("{t}.{c}")),
            };
            let rows: i64 =
                conn.query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))?;
            out.push(DropLine {
                from_version: version,
                what,
                rows: u64::try_from(rows).unwrap_or(0),
            });
        }
    }
    Ok(out)
}

/// Takes the file down to version `to`, newest step first, one transaction per step.
pub(super) fn migrate_down(conn: &Connection, to: u32) -> Result<(), StoreError> {
    let from = user_version(conn)?;
    check_down(from, to)?;
    // A dropped table may be named by another's foreign key only among those dropped in the
    // same step; the check stays off while a step rebuilds a table (DROP COLUMN).
    conn.pragma_update(None, "foreign_keys", false)?;
    for version in ((to + 1)..=from).rev() {
        let (sql, _) = down_step(version)?;
        let tx = begin_immediate(conn)?;
        if user_version(&tx)? != version {
            return Err(StoreError::Corrupt(format!(
                "the state changed version while going down (expected {version}); run the command again"
            )));
        }
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", version - 1)?;
        tx.commit()?;
    }
    conn.pragma_update(None, "foreign_keys", true)?;
    Ok(())
}

fn down_step(version: u32) -> Result<(&'static str, &'static [Dropped]), StoreError> {
    usize::try_from(version)
        .ok()
        .and_then(|v| v.checked_sub(2))
        .and_then(|i| DOWNS.get(i))
        .copied()
        .ok_or_else(|| StoreError::Corrupt(format!("no down migration from version {version}")))
}

fn check_down(from: u32, to: u32) -> Result<(), StoreError> {
    let newest = u32::try_from(MIGRATIONS.len()).unwrap_or(u32::MAX);
    if from > newest {
        return Err(StoreError::NewerSchema {
            found: from,
            supported: newest,
        });
    }
    if to == 0 || to > from {
        return Err(StoreError::InvalidInput {
            what: "--down-to",
            why: format!(
                "is {to}, but the state is at version {from}: give a version from 1 to {from}"
            ),
        });
    }
    Ok(())
}

/// The migrations in order; `MIGRATIONS[i]` moves the file from version `i` to `i + 1`.
const MIGRATIONS: &[&str] = &[
    V1,
    V2,
    V3,
    super::perps::V4,
    super::hl_actions::V5,
    super::deputy::V6,
    super::funding::V7,
    super::aave_paper::V8,
    super::retention::V9,
    super::marks::V10,
];

/// The schema version this build writes and understands (what the tests expect to find).
// The list is a handful of entries: the cast cannot truncate.
#[allow(clippy::cast_possible_truncation)]
#[cfg(test)]
pub(super) const SCHEMA_VERSION: u32 = MIGRATIONS.len() as u32;

/// Brings the database up to the last of [`MIGRATIONS`], one transaction per migration.
pub(super) fn migrate(conn: &Connection) -> Result<(), StoreError> {
    apply(conn, MIGRATIONS)
}

/// Applies `migrations` (the list in order, as [`MIGRATIONS`]) to reach `migrations.len()`.
fn apply(conn: &Connection, migrations: &[&str]) -> Result<(), StoreError> {
    let supported = u32::try_from(migrations.len())
        .map_err(|_| StoreError::Corrupt("too many migrations".into()))?;
    check_not_newer(user_version(conn)?, supported)?;
    for (target, sql) in (1..=supported).zip(migrations) {
        // Take the write lock before reading the version, so a second process migrating at
        // the same moment waits here and then sees the work already done.
        let tx = begin_immediate(conn)?;
        let current = user_version(&tx)?;
        check_not_newer(current, supported)?;
        if current >= target {
            continue; // done earlier, or by another process while we waited
        }
        // An error returns early and drops `tx`: the migration and the bump roll back together.
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", target)?;
        tx.commit()?;
    }
    Ok(())
}

/// The file's `PRAGMA user_version`.
pub(super) fn user_version(conn: &Connection) -> Result<u32, StoreError> {
    let v: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    u32::try_from(v).map_err(|_| StoreError::Corrupt(format!("user_version is {v}")))
}

/// Starts a `BEGIN IMMEDIATE` transaction on a shared connection borrow. The store never
/// nests transactions, so the unchecked variant is safe to use here.
pub(super) fn begin_immediate(conn: &Connection) -> Result<rusqlite::Transaction<'_>, StoreError> {
    Ok(rusqlite::Transaction::new_unchecked(
        conn,
        TransactionBehavior::Immediate,
    )?)
}

fn check_not_newer(found: u32, supported: u32) -> Result<(), StoreError> {
    if found > supported {
        return Err(StoreError::NewerSchema { found, supported });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `sqlite_master` of `conn`, each statement's whitespace collapsed (a dropped column
    /// leaves its neighbours' spacing), sorted.
    fn schema(conn: &Connection) -> Vec<(String, String, String)> {
        let mut rows: Vec<(String, String, String)> = conn
            .prepare("SELECT type, name, ifnull(sql, '') FROM sqlite_master WHERE name NOT LIKE 'sqlite_%'")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        for row in &mut rows {
            let flat = row.2.split_whitespace().collect::<Vec<_>>().join(" ");
            row.2 = flat
                .replace(" ,", ",")
                .replace("( ", "(")
                .replace(" )", ")");
        }
        rows.sort();
        rows
    }

    /// One row in every table the first schema has, and in the perpetual positions.
    fn fill(conn: &Connection) {
        conn.execute_batch(
            "INSERT INTO agents VALUES ('trader', 1);
             INSERT INTO decisions (agent, ts, prompt_digest, reply, reply_truncated, outcome)
                 VALUES ('trader', 2, 'd', 'r', 0, 'held');
             INSERT INTO memory (agent, ts, text) VALUES ('trader', 2, 'm');
             INSERT INTO paper_fills (agent, ts, asset, delta, note) VALUES ('trader', 2, 'SOL', '5', 'n');
             INSERT INTO paper_positions VALUES ('trader', 'SOL', '5');
             INSERT INTO executions (idempotency_key, claimed_at) VALUES ('k', 2);
             INSERT INTO cost_ledger (agent, ts, micros, prompt_tokens, completion_tokens, model)
                 VALUES ('trader', 2, 1, 1, 1, 'm');
             INSERT INTO settings VALUES ('s', 'v');
             INSERT INTO pending_confirmations
                 (kind, summary, payload_json, idempotency_key, created_at, expires_at)
                 VALUES ('move_funds', 's', '{}', 'c', 1, 2);",
        )
        .unwrap();
    }

    #[test]
    fn every_down_step_gives_the_schema_of_a_file_migrated_up_to_it_and_keeps_the_rest() {
        assert_eq!(
            DOWNS.len() + 1,
            MIGRATIONS.len(),
            "every migration from 2 on has its down step"
        );
        for k in 1..SCHEMA_VERSION {
            let conn = Connection::open_in_memory().unwrap();
            migrate(&conn).unwrap();
            fill(&conn);
            let kept = [
                "agents",
                "decisions",
                "memory",
                "paper_fills",
                "executions",
                "settings",
            ];
            let before: Vec<i64> = kept
                .iter()
                .map(|t| {
                    conn.query_row(&format!("SELECT count(*) FROM {t}"), [], |r| r.get(0))
                        .unwrap()
                })
                .collect();
            let plan = down_plan(&conn, k).unwrap();
            // What goes is named, with its rows.
            if k < 2 {
                assert!(
                    plan.iter()
                        .any(|l| l.what == "pending_confirmations.button_token" && l.rows == 1),
                    "{plan:?}"
                );
            }
            migrate_down(&conn, k).unwrap();
            assert_eq!(user_version(&conn).unwrap(), k);
            let fresh = Connection::open_in_memory().unwrap();
            apply(&fresh, &MIGRATIONS[..k as usize]).unwrap();
            assert_eq!(schema(&conn), schema(&fresh), "down to {k}");
            let after: Vec<i64> = kept
                .iter()
                .map(|t| {
                    conn.query_row(&format!("SELECT count(*) FROM {t}"), [], |r| r.get(0))
                        .unwrap()
                })
                .collect();
            assert_eq!(before, after, "down to {k}: the kept tables' rows");
            let v: String = conn
                .query_row("SELECT delta FROM paper_fills", [], |r| r.get(0))
                .unwrap();
            assert_eq!(v, "5");
            // And it goes up again from there.
            migrate(&conn).unwrap();
            assert_eq!(
                schema(&conn),
                schema(&{
                    let c = Connection::open_in_memory().unwrap();
                    migrate(&c).unwrap();
                    c
                })
            );
        }
    }

    #[test]
    fn going_down_is_refused_below_1_above_the_file_and_from_a_newer_file() {
        let conn = Connection::open_in_memory().unwrap();
        migrate(&conn).unwrap();
        for to in [0, SCHEMA_VERSION + 1] {
            let err = migrate_down(&conn, to).unwrap_err().to_string();
            assert!(err.contains("--down-to"), "{err}");
        }
        conn.pragma_update(None, "user_version", SCHEMA_VERSION + 1)
            .unwrap();
        assert!(matches!(
            migrate_down(&conn, 3),
            Err(StoreError::NewerSchema { .. })
        ));
    }

    #[test]
    fn fresh_database_reaches_the_current_version_and_has_every_table() {
        let conn = Connection::open_in_memory().unwrap();
        migrate(&conn).unwrap();
        assert_eq!(user_version(&conn).unwrap(), SCHEMA_VERSION);
        for table in [
            "agents",
            "decisions",
            "memory",
            "paper_fills",
            "paper_positions",
            "pending_confirmations",
            "executions",
            "cost_ledger",
            "settings",
            "evm_transactions",
            "perp_positions",
            "perp_fills",
            "hl_actions",
            "deputy_risk",
            "deputy_orders",
            "perp_funding",
            "paper_aave_positions",
            "paper_aave_fills",
            "paper_aave_interest",
            "decision_days",
            "recorded_marks",
        ] {
            let n: i64 = conn
                .query_row(
                    "SELECT count(*) FROM sqlite_schema WHERE type = 'table' AND name = ?1",
                    [table],
                    |r| r.get(0),
                )
                .unwrap();
            assert_eq!(n, 1, "table {table} missing");
        }
    }

    #[test]
    fn migrating_twice_is_a_no_op() {
        let conn = Connection::open_in_memory().unwrap();
        migrate(&conn).unwrap();
        conn.execute("INSERT INTO settings VALUES ('k', 'v')", [])
            .unwrap();
        migrate(&conn).unwrap();
        let v: String = conn
            .query_row("SELECT value FROM settings WHERE key = 'k'", [], |r| {
                r.get(0)
            })
            .unwrap();
        assert_eq!(v, "v");
    }

    #[test]
    fn confirmations_of_version_1_get_distinct_button_tokens() {
        let conn = Connection::open_in_memory().unwrap();
        apply(&conn, &[V1]).unwrap();
        for key in ["k1", "k2"] {
            conn.execute(
                "INSERT INTO pending_confirmations
                     (kind, summary, payload_json, idempotency_key, created_at, expires_at)
                 VALUES ('move_funds', 's', '{}', ?1, 1, 2)",
                [key],
            )
            .unwrap();
        }
        migrate(&conn).unwrap();
        let tokens: Vec<String> = conn
            .prepare("SELECT button_token FROM pending_confirmations ORDER BY id")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert_eq!(tokens.len(), 2);
        assert!(
            tokens
                .iter()
                .all(|t| t.len() == 32 && t.bytes().all(|b| b.is_ascii_hexdigit())),
            "{tokens:?}"
        );
        assert_ne!(tokens[0], tokens[1]);
    }

    #[test]
    fn a_newer_version_is_refused_before_anything_runs() {
        let conn = Connection::open_in_memory().unwrap();
        conn.pragma_update(None, "user_version", SCHEMA_VERSION + 1)
            .unwrap();
        match migrate(&conn) {
            Err(StoreError::NewerSchema { found, supported }) => {
                assert_eq!((found, supported), (SCHEMA_VERSION + 1, SCHEMA_VERSION));
            }
            other => panic!("expected NewerSchema, got {other:?}"),
        }
        let tables: i64 = conn
            .query_row("SELECT count(*) FROM sqlite_schema", [], |r| r.get(0))
            .unwrap();
        assert_eq!(tables, 0, "nothing may be created in a newer file");
    }

    #[test]
    fn a_failing_migration_rolls_back_and_keeps_the_earlier_ones() {
        let conn = Connection::open_in_memory().unwrap();
        let list = [
            "CREATE TABLE one (x INTEGER) STRICT;",
            "CREATE TABLE two (x INTEGER) STRICT; SELECT * FROM no_such_table;",
        ];
        assert!(matches!(apply(&conn, &list), Err(StoreError::Sqlite(_))));
        assert_eq!(
            user_version(&conn).unwrap(),
            1,
            "stops at the last good migration"
        );
        let names: Vec<String> = conn
            .prepare("SELECT name FROM sqlite_schema ORDER BY name")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(names, ["one"], "the half-applied migration is rolled back");
        // Fixed, it applies on the next open, from where it stopped.
        let fixed = [list[0], "CREATE TABLE two (x INTEGER) STRICT;"];
        apply(&conn, &fixed).unwrap();
        assert_eq!(user_version(&conn).unwrap(), 2);
    }
}
