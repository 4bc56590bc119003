//! The schema, as an ordered list of migrations versioned by `PRAGMA user_version`.
//!
//! Migration `i` (0-based) takes the file from version `i` to `i + 1`. Each runs in its own
//! `BEGIN IMMEDIATE` transaction together with the `user_version` bump, so a crash leaves
//! the file at the old or the new version, never between. Two processes opening the same
//! file at once serialise on the write lock, and the second sees the work already done.
//! A file whose version is above the number of [`MIGRATIONS`] is refused: we never downgrade.
//!
//! Append new migrations at the end; never edit one that has shipped.

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
