//! Restoring the state snapshot of a rollback without forgetting what happened since
//! (`docs/operations.md`, "Rollback").
//!
//! A snapshot is the state as it was before a generation was applied. Rolling back brings
//! back what that generation could have spoiled — the agents' memory and decision log — but
//! never forgets a fact: what was claimed, signed, sent, filled, paid or decided by the
//! operator after the snapshot happened on chains or at the signer and stays true. So every
//! table is classified here, in one place ([`TABLES`]):
//! - [`Class::Fact`]: the live state's rows are carried into the restored state
//!   (`ATTACH`, then the table's rows replaced by `INSERT ... SELECT` from the live file):
//!   rows written after the snapshot are added, rows whose state moved on (an execution
//!   finished, a transaction mined, a position closed) keep the newer state. `executions` is the at-most-once guard: a key claimed after the snapshot stays
//!   claimed.
//! - [`Class::Restored`]: the snapshot's rows come back as they were.
//!
//! The restore is built in a temp file beside the state (a copy of the snapshot with the
//! facts carried in, fsynced), the replaced state is kept beside it for forensics (a hard
//! link `<state>.replaced-<unix time>`), and the temp file is renamed over the state: the
//! state path always holds the old or the restored state. It runs at the daemon's start,
//! before the state is opened.

use std::path::{Path, PathBuf};

use rusqlite::{Connection, OpenFlags};

use super::{GenerationError, Generations, PendingRestore};

/// How a table is treated on restore.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Class {
    /// Facts: the live rows are carried into the restored state.
    Fact,
    /// The snapshot's rows come back.
    Restored,
}

/// Every table of the state and its class, in the order facts are carried (a table before
/// the tables whose foreign keys name it). A test fails when a migration adds a table that
/// is not listed here.
pub const TABLES: &[(&str, Class)] = &[
    // Referenced by every agent-scoped table.
    ("agents", Class::Fact),
    // The agents' reasoning: what a bad generation may have spoiled.
    ("decisions", Class::Restored),
    ("memory", Class::Restored),
    ("decision_days", Class::Restored),
    // Money and chain facts.
    ("paper_fills", Class::Fact),
    ("paper_positions", Class::Fact),
    ("pending_confirmations", Class::Fact),
    ("executions", Class::Fact),
    ("cost_ledger", Class::Fact),
    // The operator's decisions (pauses, modes, acknowledgements) are facts too.
    ("settings", Class::Fact),
    ("evm_transactions", Class::Fact),
    ("perp_positions", Class::Fact),
    ("perp_fills", Class::Fact),
    ("hl_actions", Class::Fact),
    ("deputy_risk", Class::Fact),
    ("deputy_orders", Class::Fact),
    ("perp_funding", Class::Fact),
    ("paper_aave_positions", Class::Fact),
    ("paper_aave_fills", Class::Fact),
    ("paper_aave_interest", Class::Fact),
    // The market's marks the deputies read (the window a proposal replays): what the
    // world did, whichever generation was watching it.
    ("recorded_marks", Class::Fact),
];

/// The settings key the restored state carries the marker's id under.
const RESTORE_ID_KEY: &str = "generations.restore_id";

/// What a restore did, for the operator.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Restored {
    /// The rollback.
    pub plan: PendingRestore,
    /// Fact rows in the live state that were new or changed since the snapshot (carried).
    pub carried: u64,
    /// Where the replaced state was kept.
    pub replaced: PathBuf,
}

/// Finishes a rollback decided earlier, if one is pending: `current` pointed at its target,
/// the state restored (facts carried), the marker removed. None when nothing was pending.
pub fn finish_pending(
    generations: &Generations,
    state: &Path,
    now: u64,
) -> Result<Option<Restored>, GenerationError> {
    let Some(plan) = generations.pending()? else {
        return Ok(None);
    };
    if generations.current()? != Some(plan.to) {
        generations.switch(plan.to)?;
    }
    // A restart after the rename but before the marker was removed: already done.
    if restored_id(state)?.as_deref() == Some(plan.id.as_str()) {
        generations.clear_pending()?;
        return Ok(None);
    }
    let (carried, replaced) = restore(&plan.snapshot, state, &plan.id, now)?;
    generations.clear_pending()?;
    Ok(Some(Restored {
        plan,
        carried,
        replaced,
    }))
}

fn sql(path: &Path) -> impl FnOnce(rusqlite::Error) -> GenerationError + '_ {
    move |e| {
        GenerationError::Rollback(format!(
            "restoring the state at {}: {e}; the state was not replaced",
            path.display()
        ))
    }
}

fn restored_id(state: &Path) -> Result<Option<String>, GenerationError> {
    if !state.exists() {
        return Ok(None);
    }
    let conn =
        Connection::open_with_flags(state, OpenFlags::SQLITE_OPEN_READ_ONLY).map_err(sql(state))?;
    let has_settings: i64 = conn
        .query_row(
            "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'settings'",
            [],
            |r| r.get(0),
        )
        .map_err(sql(state))?;
    if has_settings == 0 {
        return Ok(None);
    }
    match conn.query_row(
        "SELECT value FROM settings WHERE key = ?1",
        [RESTORE_ID_KEY],
        |r| r.get::<_, String>(0),
    ) {
        Ok(v) => Ok(Some(v)),
        Err(rusqlite::Error::QueryReturnedNoRows) => Ok(None),
        Err(e) => Err(sql(state)(e)),
    }
}

/// Restores `snapshot` over `state`, carrying the facts of `state`; the number of fact rows
/// new or changed since the snapshot, and where the replaced state was kept.
pub fn restore(
    snapshot: &Path,
    state: &Path,
    id: &str,
    now: u64,
) -> Result<(u64, PathBuf), GenerationError> {
    let dir = match state.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = state
        .file_name()
        .map_or_else(|| "state".to_owned(), |n| n.to_string_lossy().into_owned());
    // Fold the live state's WAL into its main file, so the hard link below keeps all of it
    // and no WAL of the old file is left beside the new one.
    checkpoint(state)?;
    let tmp = dir.join(format!(".{name}.restoring-{}", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    let built = build(snapshot, state, &tmp, id);
    let carried = match built {
        Ok(n) => n,
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
    };
    let replaced = dir.join(format!("{name}.replaced-{now}"));
    let _ = std::fs::remove_file(&replaced);
    std::fs::hard_link(state, &replaced).map_err(super::io(&replaced))?;
    std::fs::rename(&tmp, state).map_err(super::io(state))?;
    super::sync_dir(&dir)?;
    Ok((carried, replaced))
}

/// `PRAGMA wal_checkpoint(TRUNCATE)` on the live state, then closed (SQLite removes the WAL
/// of a cleanly closed last connection).
fn checkpoint(state: &Path) -> Result<(), GenerationError> {
    let conn = Connection::open_with_flags(state, OpenFlags::SQLITE_OPEN_READ_WRITE)
        .map_err(sql(state))?;
    let busy: i64 = conn
        .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| r.get(0))
        .map_err(sql(state))?;
    if busy != 0 {
        return Err(GenerationError::Rollback(format!(
            "the state {} is in use by another process: stop it and start the orchestrator again",
            state.display()
        )));
    }
    drop(conn);
    let wal = PathBuf::from(format!("{}-wal", state.display()));
    if std::fs::metadata(&wal).is_ok_and(|m| m.len() > 0) {
        return Err(GenerationError::Rollback(format!(
            "{} still holds pages after a checkpoint: another process has the state open; stop it first",
            wal.display()
        )));
    }
    Ok(())
}

/// The restored state in `tmp`: the snapshot copied, the facts of `live` carried in. The
/// number of fact rows new or changed since the snapshot.
fn build(snapshot: &Path, live: &Path, tmp: &Path, id: &str) -> Result<u64, GenerationError> {
    std::fs::copy(snapshot, tmp).map_err(super::io(tmp))?;
    let conn = Connection::open(tmp).map_err(sql(live))?;
    let version = |c: &Connection, schema: &str| -> Result<i64, GenerationError> {
        c.query_row(&format!("PRAGMA {schema}.user_version"), [], |r| r.get(0))
            .map_err(sql(live))
    };
    conn.execute("ATTACH DATABASE ?1 AS live", [live.to_string_lossy()])
        .map_err(sql(live))?;
    let (old, new) = (version(&conn, "main")?, version(&conn, "live")?);
    if old != new {
        return Err(GenerationError::Rollback(format!(
            "the snapshot is at schema {old}, the state at {new}: migrate one to the other first (vigil-orchestrator migrate --down-to {old})"
        )));
    }
    let tables = tables_of(&conn, "main").map_err(sql(live))?;
    if let Some(t) = tables.iter().find(|t| class_of(t).is_none()) {
        return Err(GenerationError::Rollback(format!(
            "table {t} is not classified for restore (generations/restore.rs TABLES): nothing was restored"
        )));
    }
    // A fact table is replaced whole (delete, insert) inside one transaction; the references
    // are checked once at its end instead (`foreign_key_check` below).
    conn.pragma_update(None, "foreign_keys", false)
        .map_err(sql(live))?;
    let tx = conn.unchecked_transaction().map_err(sql(live))?;
    let mut carried = 0u64;
    for (table, class) in TABLES {
        if *class != Class::Fact || !tables.iter().any(|t| t == table) {
            continue;
        }
        // Rows new or changed since the snapshot (for the operator's message).
        let changed: i64 = tx
            .query_row(
                &format!("SELECT count(*) FROM (SELECT * FROM live.{table} EXCEPT SELECT * FROM main.{table})"),
                [],
                |r| r.get(0),
            )
            .map_err(sql(live))?;
        // The live table as it is: appended rows, and current-state rows (positions, risk
        // state, settings) that moved on or were removed since the snapshot.
        tx.execute_batch(&format!(
            "DELETE FROM main.{table}; INSERT INTO main.{table} SELECT * FROM live.{table};"
        ))
        .map_err(sql(live))?;
        // The market's marks are carried but not counted: the operator's message counts the
        // fills, executions, confirmations, transactions and settings kept, not price ticks.
        if *table != "recorded_marks" {
            carried += u64::try_from(changed).unwrap_or(0);
        }
    }
    tx.execute(
        "INSERT OR REPLACE INTO main.settings (key, value) VALUES (?1, ?2)",
        [RESTORE_ID_KEY, id],
    )
    .map_err(sql(live))?;
    let dangling: i64 = tx
        .query_row("SELECT count(*) FROM pragma_foreign_key_check", [], |r| {
            r.get(0)
        })
        .map_err(sql(live))?;
    if dangling > 0 {
        return Err(GenerationError::Rollback(format!(
            "the restored state would hold {dangling} rows naming something that is not there (PRAGMA foreign_key_check): nothing was restored; keep the current state and report this"
        )));
    }
    tx.commit().map_err(sql(live))?;
    conn.execute("DETACH DATABASE live", [])
        .map_err(sql(live))?;
    drop(conn);
    std::fs::File::open(tmp)
        .and_then(|f| f.sync_all())
        .map_err(super::io(tmp))?;
    Ok(carried)
}

/// The class of `table`, if it is listed.
pub fn class_of(table: &str) -> Option<Class> {
    TABLES.iter().find(|(t, _)| *t == table).map(|(_, c)| *c)
}

/// The tables of `schema` (`main`, or an attached name), `sqlite_%` left out.
fn tables_of(conn: &Connection, schema: &str) -> Result<Vec<String>, rusqlite::Error> {
    let mut stmt = conn.prepare(&format!(
        "SELECT name FROM {schema}.sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name"
    ))?;
    stmt.query_map([], |r| r.get(0))?.collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;
    use crate::store::Store;

    #[test]
    fn every_table_of_the_schema_is_classified_once() {
        let store = Store::open_in_memory().unwrap();
        let tables = store.table_names().unwrap();
        for t in &tables {
            assert!(
                class_of(t).is_some(),
                "table {t} is not classified in generations/restore.rs TABLES: say whether a rollback carries it (a fact) or restores it"
            );
        }
        for (t, _) in TABLES {
            assert!(
                tables.iter().any(|x| x == t),
                "{t} is listed but not in the schema"
            );
            assert_eq!(
                TABLES.iter().filter(|(x, _)| x == t).count(),
                1,
                "{t} twice"
            );
        }
    }
}
