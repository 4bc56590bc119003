#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

use std::path::Path;

use rusqlite::Connection;

use super::restore::finish_pending;
use super::*;
use crate::config::DEFAULT_CONFIG_TOML;
use crate::store::Store;

fn settings(dir: &Path, keep: u32) -> GenerationSettings {
    GenerationSettings {
        dir: dir.join("generations"),
        keep,
        health_window_secs: 60,
        error_spike_multiple: 3,
        min_errors: 3,
        proposal_sandbox: "bubblewrap".into(),
    }
}

/// The default config with the first agent's schedule set to `secs`.
fn config_files(secs: u32) -> Files {
    let text =
        DEFAULT_CONFIG_TOML.replacen("schedule_secs = 60", &format!("schedule_secs = {secs}"), 1);
    let mut files = Files::new();
    files.insert(CONFIG_FILE.into(), text.into_bytes());
    files
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn an_apply_is_a_new_numbered_generation_with_its_files_snapshot_and_digest() {
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state.sqlite3");
    let g = Generations::open(&settings(tmp.path(), 20)).unwrap();
    assert_eq!(g.current().unwrap(), None);
    // No state yet: generation 1 has no snapshot.
    let one = g.apply(&config_files(60), "first", &state, 100).unwrap();
    assert_eq!(one, 1);
    assert!(!g.meta(1).unwrap().snapshot);
    drop(Store::open(&state).unwrap());
    let mut files = config_files(45);
    files.insert(
        "modules/momentum/strategy.star".into(),
        b"def run(): pass\n".to_vec(),
    );
    files.insert("modules/momentum/data.bin".into(), vec![0, 159, 146, 150]);
    let two = g.apply(&files, "faster\nschedule", &state, 200).unwrap();
    assert_eq!(two, 2);
    assert_eq!(g.current().unwrap(), Some(2));
    assert_eq!(g.numbers().unwrap(), vec![1, 2]);
    let meta = g.meta(2).unwrap();
    assert_eq!(meta.parent, Some(1));
    assert_eq!(meta.created_at, 200);
    assert_eq!(meta.reason, "faster schedule", "one printable line");
    assert_eq!(meta.digest, digest(&files));
    assert!(meta.snapshot);
    // The files come back byte for byte, and the daemon's path reads generation 2's config.
    assert_eq!(g.files(2).unwrap(), files);
    assert_eq!(
        std::fs::read(g.current_config_path()).unwrap(),
        files[CONFIG_FILE]
    );
    // The snapshot is a checked SQLite copy of the state.
    let snap = g.dir().join("2").join(SNAPSHOT_FILE);
    assert!(!crate::snapshot::table_counts(&snap).unwrap().is_empty());
    // The digest covers names and contents: a renamed module changes it.
    let mut renamed = files.clone();
    let bytes = renamed.remove("modules/momentum/data.bin").unwrap();
    renamed.insert("modules/momentum/data2.bin".into(), bytes);
    assert_ne!(digest(&renamed), digest(&files));
    // A damaged generation is named, not run.
    std::fs::write(g.files_dir(2).join("modules/momentum/data.bin"), b"x").unwrap();
    let err = g.files(2).unwrap_err().to_string();
    assert!(err.contains("generation 2 is damaged"), "{err}");
}

#[test]
fn bad_files_are_refused_and_nothing_is_applied() {
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state.sqlite3");
    let g = Generations::open(&settings(tmp.path(), 20)).unwrap();
    g.apply(&config_files(60), "first", &state, 1).unwrap();
    let cases: Vec<(Files, &str)> = vec![
        (
            {
                let mut f = Files::new();
                f.insert(CONFIG_FILE.into(), b"agents = 3".to_vec());
                f
            },
            "orchestrator.toml is refused",
        ),
        (Files::new(), "there is no orchestrator.toml"),
        (
            {
                let mut f = config_files(60);
                f.insert("modules/../../etc/passwd".into(), b"x".to_vec());
                f
            },
            "cannot be part of a generation",
        ),
        (
            {
                let mut f = config_files(60);
                f.insert("secrets.txt".into(), b"x".to_vec());
                f
            },
            "only orchestrator.toml and files under modules/",
        ),
        (
            {
                let mut f = config_files(60);
                f.insert("modules/big".into(), vec![0; 17 * 1024 * 1024]);
                f
            },
            "too large",
        ),
    ];
    for (files, want) in cases {
        let err = g.apply(&files, "bad", &state, 2).unwrap_err().to_string();
        assert!(err.contains(want), "{err} (wanted {want:?})");
    }
    assert_eq!(g.numbers().unwrap(), vec![1]);
    assert_eq!(g.current().unwrap(), Some(1));
    assert_eq!(names(g.dir()), vec!["1", "current"], "no temp left behind");
}

#[test]
fn a_crash_mid_apply_leaves_the_old_generation_current() {
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state.sqlite3");
    let g = Generations::open(&settings(tmp.path(), 20)).unwrap();
    g.apply(&config_files(60), "first", &state, 1).unwrap();
    // What a crash before the rename leaves: a half-written temp directory and a new symlink
    // not yet renamed over `current`.
    std::fs::create_dir_all(g.dir().join(".new-2-999/files")).unwrap();
    std::fs::write(g.dir().join(".new-2-999/files/orchestrator.toml"), b"half").unwrap();
    std::os::unix::fs::symlink("2", g.dir().join(".current-999")).unwrap();
    assert_eq!(g.current().unwrap(), Some(1));
    assert_eq!(g.numbers().unwrap(), vec![1]);
    assert_eq!(g.files(1).unwrap(), config_files(60));
    // The next apply is generation 2, whole.
    assert_eq!(g.apply(&config_files(30), "next", &state, 2).unwrap(), 2);
    assert_eq!(g.files(2).unwrap(), config_files(30));
}

#[test]
fn old_generations_are_pruned_to_keep_but_never_the_current_or_its_parent() {
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state.sqlite3");
    let g = Generations::open(&settings(tmp.path(), 3)).unwrap();
    for i in 0..6u32 {
        g.apply(&config_files(10 + i), "step", &state, u64::from(i))
            .unwrap();
    }
    assert_eq!(g.numbers().unwrap(), vec![4, 5, 6]);
    // Back to 4 by hand, then a new generation: 7's parent 4 is the oldest, and stays.
    g.switch(4).unwrap();
    g.apply(&config_files(50), "branch", &state, 7).unwrap();
    assert_eq!(g.current().unwrap(), Some(7));
    assert_eq!(g.meta(7).unwrap().parent, Some(4));
    let kept = g.numbers().unwrap();
    assert!(kept.contains(&7) && kept.contains(&4), "{kept:?}");
    assert_eq!(kept.len(), 3);
}

#[test]
fn the_diff_names_every_changed_file_and_line() {
    let mut a = config_files(60);
    a.insert("modules/old.star".into(), b"x = 1\n".to_vec());
    let mut b = config_files(45);
    b.insert("modules/new.star".into(), b"y = 2\n".to_vec());
    let d = diff(&a, &b);
    assert!(d.contains("~ orchestrator.toml\n"), "{d}");
    assert!(
        d.contains("  - schedule_secs = 60\n  + schedule_secs = 45\n"),
        "{d}"
    );
    assert!(d.contains("+ modules/new.star (6 bytes)"), "{d}");
    assert!(d.contains("- modules/old.star (6 bytes)"), "{d}");
    assert_eq!(diff(&a, &a), "");
}

#[test]
fn the_system_config_seeds_generation_1_and_a_changed_one_is_a_new_generation() {
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state.sqlite3");
    let system = tmp.path().join("orchestrator.toml");
    let g = Generations::open(&settings(tmp.path(), 20)).unwrap();
    std::fs::write(&system, &config_files(60)[CONFIG_FILE]).unwrap();
    assert_eq!(g.adopt_system_config(&system, &state, 1).unwrap(), Some(1));
    assert_eq!(
        g.adopt_system_config(&system, &state, 2).unwrap(),
        None,
        "unchanged"
    );
    // A proposal adds a module; the system file is unchanged: the proposal keeps running.
    let mut files = config_files(60);
    files.insert("modules/m.star".into(), b"m".to_vec());
    g.apply(&files, "proposal", &state, 3).unwrap();
    assert_eq!(g.adopt_system_config(&system, &state, 4).unwrap(), None);
    assert_eq!(g.current().unwrap(), Some(2));
    // A NixOS switch changes the system file: a new generation, the modules kept.
    std::fs::write(&system, &config_files(90)[CONFIG_FILE]).unwrap();
    assert_eq!(g.adopt_system_config(&system, &state, 5).unwrap(), Some(3));
    let three = g.files(3).unwrap();
    assert_eq!(three[CONFIG_FILE], config_files(90)[CONFIG_FILE]);
    assert_eq!(three["modules/m.star"], b"m");
    assert!(
        g.meta(3)
            .unwrap()
            .reason
            .starts_with("system configuration changed")
    );
}

/// Rows of a restored table and of fact tables, as the test reads them back.
fn rows(path: &Path, sql: &str) -> Vec<String> {
    let c = Connection::open(path).unwrap();
    let mut stmt = c.prepare(sql).unwrap();
    stmt.query_map([], |r| r.get::<_, String>(0))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

#[test]
fn a_rollback_restores_the_snapshot_and_carries_every_fact_since() {
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state.sqlite3");
    let g = Generations::open(&settings(tmp.path(), 20)).unwrap();
    {
        let s = Store::open(&state).unwrap();
        drop(s);
        let c = Connection::open(&state).unwrap();
        c.execute_batch(
            "INSERT INTO agents VALUES ('trader', 1);
             INSERT INTO memory (agent, ts, text) VALUES ('trader', 1, 'before');
             INSERT INTO executions (idempotency_key, claimed_at) VALUES ('k-before', 1);
             INSERT INTO settings VALUES ('paused.trader', '0');
             INSERT INTO recorded_marks VALUES ('testnet', 1, '{}');",
        )
        .unwrap();
    }
    g.apply(&config_files(60), "first", &state, 1).unwrap();
    g.apply(&config_files(30), "second", &state, 2).unwrap();
    // While generation 2 runs: its memory (rolled back) and facts (kept).
    {
        let c = Connection::open(&state).unwrap();
        c.pragma_update(None, "journal_mode", "WAL").unwrap();
        c.execute_batch(
            "INSERT INTO memory (agent, ts, text) VALUES ('trader', 2, 'spoiled by gen 2');
             INSERT INTO agents VALUES ('scout', 2);
             INSERT INTO executions (idempotency_key, claimed_at) VALUES ('k-after', 2);
             UPDATE executions SET finished_at = 3, outcome_json = '{}' WHERE idempotency_key = 'k-before';
             INSERT INTO paper_fills (agent, ts, asset, delta, note) VALUES ('scout', 2, 'SOL', '5', 'n');
             UPDATE settings SET value = '1' WHERE key = 'paused.trader';
             INSERT INTO recorded_marks VALUES ('testnet', 2, '{}');",
        )
        .unwrap();
        // Left open, in WAL: the restore must see these committed rows too.
        std::mem::forget(c);
    }
    // Only ancestors can be rolled back to.
    let err = g.plan_rollback(2, "x").unwrap_err().to_string();
    assert!(err.contains("already current"), "{err}");
    let plan = g.plan_rollback(1, "test").unwrap();
    assert_eq!((plan.from, plan.to), (2, 1));
    assert_eq!(plan.snapshot, g.dir().join("2").join(SNAPSHOT_FILE));
    g.begin_rollback(&plan).unwrap();
    assert_eq!(
        g.current().unwrap(),
        Some(1),
        "current moves with the marker written"
    );
    let done = finish_pending(&g, &state, 50).unwrap().unwrap();
    assert_eq!(done.plan, plan);
    // New or changed facts: scout, k-after, k-before finished, the fill, the setting (the
    // market's marks are carried too, but not counted in the operator's message).
    assert_eq!(done.carried, 5);
    assert_eq!(
        rows(
            &state,
            "SELECT network || ':' || ts FROM recorded_marks ORDER BY ts"
        ),
        ["testnet:1", "testnet:2"]
    );
    assert!(g.pending().unwrap().is_none());
    // Memory is the snapshot's; every fact is the live state's.
    assert_eq!(
        rows(&state, "SELECT text FROM memory ORDER BY id"),
        ["before"]
    );
    assert_eq!(
        rows(
            &state,
            "SELECT idempotency_key || ':' || ifnull(finished_at, '-') FROM executions ORDER BY 1"
        ),
        ["k-after:-", "k-before:3"]
    );
    assert_eq!(
        rows(&state, "SELECT id FROM agents ORDER BY id"),
        ["scout", "trader"]
    );
    assert_eq!(rows(&state, "SELECT delta FROM paper_fills"), ["5"]);
    assert_eq!(
        rows(
            &state,
            "SELECT value FROM settings WHERE key = 'paused.trader'"
        ),
        ["1"],
        "the operator's pause is a fact"
    );
    // The replaced state is kept for forensics, with the spoiled memory.
    assert_eq!(done.replaced, tmp.path().join("state.sqlite3.replaced-50"));
    assert_eq!(
        rows(&done.replaced, "SELECT text FROM memory ORDER BY id"),
        ["before", "spoiled by gen 2"]
    );
    // The restored file is a valid state the store opens.
    drop(Store::open(&state).unwrap());
    // A restart after the restore but before the marker was removed does not restore twice.
    std::fs::write(
        g.dir().join("restore-pending.json"),
        serde_json::to_vec(&plan).unwrap(),
    )
    .unwrap();
    {
        let c = Connection::open(&state).unwrap();
        c.execute(
            "INSERT INTO memory (agent, ts, text) VALUES ('trader', 9, 'after the restore')",
            [],
        )
        .unwrap();
    }
    assert!(finish_pending(&g, &state, 60).unwrap().is_none());
    assert!(g.pending().unwrap().is_none());
    assert_eq!(
        rows(&state, "SELECT text FROM memory ORDER BY id"),
        ["before", "after the restore"]
    );
}

#[test]
fn the_unified_diff_and_the_old_files_give_the_new_files_byte_for_byte() {
    let mut a = Files::new();
    a.insert(CONFIG_FILE.into(), b"x = 1\ny = 2\nz = 3\n".to_vec());
    a.insert("modules/old.star".into(), b"gone\n".to_vec());
    a.insert("modules/same.star".into(), b"same\n".to_vec());
    let mut b = a.clone();
    b.insert(CONFIG_FILE.into(), b"x = 1\ny = 20\nz = 3\nw = 4".to_vec());
    b.remove("modules/old.star");
    b.insert(
        "modules/new.star".into(),
        b"def decide(ctx):\n    return None\n".to_vec(),
    );
    let diff = unified_diff(&a, &b).unwrap();
    assert!(
        diff.contains("--- /dev/null\n+++ b/modules/new.star\n@@ -0,0 +1,2 @@\n"),
        "{diff}"
    );
    assert!(diff.contains("-y = 2\n+y = 20\n"), "{diff}");
    assert!(
        diff.contains("+w = 4\n\\ No newline at end of file\n"),
        "{diff}"
    );
    assert!(!diff.contains("same.star"), "{diff}");
    assert_eq!(unified_diff(&a, &a).unwrap(), "");
    // GNU patch, when installed, turns a's files and the diff into b's exactly.
    let dir = tempfile::tempdir().unwrap();
    for (name, bytes) in &a {
        let p = dir.path().join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, bytes).unwrap();
    }
    std::fs::write(dir.path().join("change.diff"), &diff).unwrap();
    let out = std::process::Command::new("patch")
        .args(["-p1", "-s", "-E", "-i", "change.diff"])
        .current_dir(dir.path())
        .output();
    if let Ok(out) = out {
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        for (name, bytes) in &b {
            assert_eq!(
                &std::fs::read(dir.path().join(name)).unwrap(),
                bytes,
                "{name}"
            );
        }
        assert!(!dir.path().join("modules/old.star").exists());
    }
    let mut bin = b.clone();
    bin.insert("modules/x.bin".into(), vec![0xff, 0xfe]);
    assert!(
        unified_diff(&a, &bin)
            .unwrap_err()
            .contains("modules/x.bin is not UTF-8")
    );
}

#[test]
fn staged_files_older_than_two_days_are_removed_and_newer_ones_kept() {
    let tmp = tempfile::tempdir().unwrap();
    let g = Generations::open(&settings(tmp.path(), 20)).unwrap();
    let old = g.stage(&config_files(30)).unwrap();
    let new = g.stage(&config_files(45)).unwrap();
    let staged = tmp.path().join("generations").join("staged");
    // A half-written staging left by a crash, as old as `old`.
    std::fs::create_dir(staged.join(".leftover-1")).unwrap();
    let three_days_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(3 * 86_400);
    for name in [old.as_str(), ".leftover-1"] {
        std::fs::File::open(staged.join(name))
            .unwrap()
            .set_modified(three_days_ago)
            .unwrap();
    }
    assert_eq!(g.prune_staged(std::time::SystemTime::now()).unwrap(), 2);
    assert_eq!(names(&staged), vec![new.clone()]);
    assert!(g.staged(&new).is_ok());
    let e = g.staged(&old).unwrap_err().to_string();
    assert!(e.contains("ask for the change again"), "{e}");
    // Staging prunes too; the kept set is still there a day and a half later.
    let later = std::time::SystemTime::now() + std::time::Duration::from_secs(36 * 3600);
    assert_eq!(g.prune_staged(later).unwrap(), 0);
}
