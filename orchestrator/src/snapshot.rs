//! A consistent copy of the orchestrator's SQLite state, safe while the daemon runs:
//! `VACUUM INTO` on a read-only connection reads one snapshot of the database (a read
//! transaction, so the WAL's committed pages are included and later commits are not), and
//! writes a compact copy with no WAL of its own. The copy is then opened and checked with
//! `PRAGMA integrity_check`, fsynced, renamed into place and its directory fsynced: the
//! output path holds either nothing new or a complete, checked copy.
//!
//! Used by `vigil-orchestrator snapshot` (the nightly backup's first step, `vigil-backup`)
//! and by anything that needs the state as of one instant. The rusqlite `backup` feature
//! (the online backup API) would copy page by page and restart when the writer commits in
//! between; `VACUUM INTO` needs no extra feature and never restarts.

use std::path::{Path, PathBuf};

use std::os::unix::fs::PermissionsExt;

use rusqlite::{Connection, OpenFlags};

/// Why a snapshot was not made. Nothing is left at the output path in any of these cases.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// The state file could not be opened.
    #[error("cannot open the state {}: {}; give the orchestrator's state_db (its config) with --state", .0.display(), .1)]
    Open(PathBuf, rusqlite::Error),
    /// The output path exists already.
    #[error("{} exists: the snapshot never replaces a file; remove it or give another --out", .0.display())]
    Exists(PathBuf),
    /// SQLite could not write the copy.
    #[error("cannot copy {} into {}: {}", .0.display(), .1.display(), .2)]
    Copy(PathBuf, PathBuf, rusqlite::Error),
    /// The copy does not pass `PRAGMA integrity_check`.
    #[error("the copy of {} fails PRAGMA integrity_check ({}): the state itself may be damaged; run `sqlite3 {} 'PRAGMA integrity_check'` and keep the previous backups", .0.display(), .1, .0.display())]
    Integrity(PathBuf, String),
    /// A file operation on the copy failed.
    #[error("cannot write {}: {}", .0.display(), .1)]
    Write(PathBuf, std::io::Error),
}

/// What was copied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Snapshot {
    /// The checked copy.
    pub path: PathBuf,
    /// Its size in bytes.
    pub bytes: u64,
    /// Rows per table, in table-name order (what a restore should find again).
    pub tables: Vec<(String, u64)>,
}

/// Copies the SQLite file `state` to `out` (see the module docs). `out` must not exist.
pub fn snapshot(state: &Path, out: &Path) -> Result<Snapshot, SnapshotError> {
    if std::fs::symlink_metadata(out).is_ok() {
        return Err(SnapshotError::Exists(out.to_path_buf()));
    }
    let dir = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = out
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "snapshot".to_owned());
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    let tables = match copy_and_check(state, &tmp) {
        Ok(tables) => tables,
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
    };
    let finish = || -> std::io::Result<u64> {
        // As private as the state itself (the daemon opens only a 0600 file).
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600))?;
        let f = std::fs::File::open(&tmp)?;
        f.sync_all()?;
        let bytes = f.metadata()?.len();
        std::fs::rename(&tmp, out)?;
        std::fs::File::open(&dir)?.sync_all()?;
        Ok(bytes)
    };
    let bytes = finish().map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        SnapshotError::Write(out.to_path_buf(), e)
    })?;
    Ok(Snapshot {
        path: out.to_path_buf(),
        bytes,
        tables,
    })
}

/// Rows per table of the SQLite file at `path`, in table-name order (`sqlite_%` tables left
/// out). For comparing a restored state with its snapshot.
pub fn table_counts(path: &Path) -> Result<Vec<(String, u64)>, SnapshotError> {
    let conn = open_read_only(path)?;
    counts(&conn).map_err(|e| SnapshotError::Open(path.to_path_buf(), e))
}

/// `VACUUM INTO tmp`, then the copy opened and checked; its row counts.
fn copy_and_check(state: &Path, tmp: &Path) -> Result<Vec<(String, u64)>, SnapshotError> {
    let src = open_read_only(state)?;
    let target = tmp.to_string_lossy().into_owned();
    src.execute("VACUUM INTO ?1", [&target])
        .map_err(|e| SnapshotError::Copy(state.to_path_buf(), tmp.to_path_buf(), e))?;
    drop(src);
    let copy = open_read_only(tmp)?;
    let verdict: String = copy
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .map_err(|e| SnapshotError::Copy(state.to_path_buf(), tmp.to_path_buf(), e))?;
    if verdict != "ok" {
        return Err(SnapshotError::Integrity(state.to_path_buf(), verdict));
    }
    counts(&copy).map_err(|e| SnapshotError::Copy(state.to_path_buf(), tmp.to_path_buf(), e))
}

/// A read-only connection (it never creates the file, and never writes the state).
fn open_read_only(path: &Path) -> Result<Connection, SnapshotError> {
    Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| SnapshotError::Open(path.to_path_buf(), e))
}

fn counts(conn: &Connection) -> Result<Vec<(String, u64)>, rusqlite::Error> {
    let mut stmt = conn.prepare(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name",
    )?;
    let names: Vec<String> = stmt
        .query_map([], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    let mut out = Vec::with_capacity(names.len());
    for name in names {
        let quoted = format!("\"{}\"", name.replace('"', "\"\""));
        let n: i64 = conn.query_row(&format!("SELECT count(*) FROM {quoted}"), [], |r| r.get(0))?;
        out.push((name, u64::try_from(n).unwrap_or(0)));
    }
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;

    /// A WAL database with a writer that keeps committing while the snapshot runs.
    fn wal_db(path: &Path) -> Connection {
        let c = Connection::open(path).unwrap();
        c.pragma_update(None, "journal_mode", "WAL").unwrap();
        c.execute_batch("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT); CREATE TABLE u (x);")
            .unwrap();
        c
    }

    #[test]
    fn copies_committed_rows_from_the_wal_and_checks_them() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("state.db");
        let c = wal_db(&db);
        for i in 0..500 {
            c.execute("INSERT INTO t (v) VALUES (?1)", [format!("row {i}")])
                .unwrap();
        }
        // Still in the WAL (no checkpoint): the copy must include them.
        assert!(dir.path().join("state.db-wal").metadata().unwrap().len() > 0);
        // An open, uncommitted write is not in the copy.
        c.execute_batch("BEGIN; INSERT INTO u VALUES (1);").unwrap();
        let out = dir.path().join("copy.db");
        let snap = snapshot(&db, &out).unwrap();
        assert_eq!(snap.tables, vec![("t".into(), 500), ("u".into(), 0)]);
        assert_eq!(table_counts(&out).unwrap(), snap.tables);
        assert!(snap.bytes > 0);
        assert_eq!(out.metadata().unwrap().permissions().mode() & 0o777, 0o600);
        // No temp file left beside it.
        let names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(!names.iter().any(|n| n.contains(".tmp-")), "{names:?}");
        // It never replaces a file.
        let err = snapshot(&db, &out).unwrap_err().to_string();
        assert!(err.contains("never replaces a file"), "{err}");
    }

    #[test]
    fn a_missing_or_damaged_state_is_refused_and_nothing_is_left() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("copy.db");
        let err = snapshot(&dir.path().join("absent.db"), &out)
            .unwrap_err()
            .to_string();
        assert!(err.contains("cannot open the state"), "{err}");
        assert!(!out.exists());

        let bad = dir.path().join("bad.db");
        std::fs::write(&bad, vec![0x55u8; 8192]).unwrap();
        assert!(snapshot(&bad, &out).is_err());
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            1,
            "only bad.db"
        );
    }
}
