//! Tests of the journal: round trips, group commit under concurrency, tamper detection by
//! line, crash recovery of a torn tail, tail-truncation with a pinned head, and poisoning.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::*;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
enum Ev {
    Spend { agent: String, amount: u64 },
    Deny { rule: String },
}

fn spend(agent: &str, amount: u64) -> Ev {
    Ev::Spend {
        agent: agent.into(),
        amount,
    }
}

const T0: u64 = 1_700_000_000;

fn start(dir: &Path) -> (AuditLog<Ev>, Vec<Entry<Ev>>) {
    let opened = Opened::<Ev>::open(dir).unwrap();
    let entries = all(&opened);
    (opened.start(None).unwrap(), entries)
}

/// Every entry of an opened log, collected.
fn all(opened: &Opened<Ev>) -> Vec<Entry<Ev>> {
    opened.entries().collect::<Result<_, _>>().unwrap()
}

/// A log with `n` entries (`spend("a", i)` for i in 1..=n) in a fresh dir; returns its path.
fn log_with(n: u64) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = start(dir.path());
    for i in 1..=n {
        log.append_blocking(T0 + i, vec![spend("a", i)]).unwrap();
    }
    drop(log);
    let path = dir.path().join(AUDIT_FILE);
    (dir, path)
}

fn lines(path: &Path) -> Vec<String> {
    fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

fn write_lines(path: &Path, lines: &[String]) {
    let mut text = lines.join("\n");
    text.push('\n');
    fs::write(path, text).unwrap();
}

#[test]
fn append_then_reopen_gives_same_entries_and_head() {
    let dir = tempfile::tempdir().unwrap();
    let (log, replayed) = start(dir.path());
    assert!(replayed.is_empty());
    assert_eq!(log.head(), (0, GENESIS));
    let first = log
        .append_blocking(T0, vec![spend("a", 5), Ev::Deny { rule: "cap".into() }])
        .unwrap();
    let second = log.append_blocking(T0 + 1, vec![spend("b", 7)]).unwrap();
    assert_eq!(first.iter().map(|a| a.seq).collect::<Vec<_>>(), [1, 2]);
    assert_eq!(second[0].seq, 3);
    assert_eq!(log.head(), (3, second[0].hash));
    assert_eq!(
        log.stats(),
        AuditStats {
            batches: 2,
            entries: 3,
            rotations: 0,
        }
    );
    let head = log.head();
    drop(log);

    // Dropping the last handle joined the writer and released the lock: reopening works now.
    let opened = Opened::<Ev>::open(dir.path()).unwrap();
    assert_eq!(opened.truncated_tail_bytes(), 0);
    let entries = all(&opened);
    assert_eq!(entries.len(), 3);
    assert_eq!(
        entries.iter().map(|e| e.event.clone()).collect::<Vec<_>>(),
        [
            spend("a", 5),
            Ev::Deny { rule: "cap".into() },
            spend("b", 7)
        ]
    );
    assert_eq!(entries[0].prev, GENESIS);
    assert_eq!(entries[1].prev, first[0].hash);
    assert_eq!(entries[1].hash, first[1].hash);
    assert_eq!(entries[2].ts, T0 + 1);
    assert_eq!(opened.end().seq, 3);
    let log = opened.start(None).unwrap();
    assert_eq!(log.head(), head);
    // The chain continues from the replayed head.
    let next = log.append_blocking(T0 + 2, vec![spend("c", 1)]).unwrap();
    assert_eq!(next[0].seq, 4);
    drop(log);
    let report = verify_file(&dir.path().join(AUDIT_FILE)).unwrap();
    assert_eq!((report.entries, report.head_seq), (4, 4));
    assert_eq!(report.head_hash, next[0].hash);
}

#[test]
fn line_format_is_the_documented_one() {
    let (_dir, path) = log_with(1);
    let line = &lines(&path)[0];
    let prev = "0".repeat(64);
    let event = r#"{"kind":"spend","agent":"a","amount":1}"#;
    let body = format!(
        r#"{{"seq":1,"ts":{},"prev":"{prev}","event":{event}}}"#,
        T0 + 1
    );
    let mut hashed = GENESIS.to_vec();
    hashed.extend_from_slice(body.as_bytes());
    let hash = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&hashed));
    let expected = format!(
        r#"{{"seq":1,"ts":{},"prev":"{prev}","event":{event},"hash":"{hash}"}}"#,
        T0 + 1
    );
    assert_eq!(line, &expected);
}

#[test]
fn file_is_created_0600() {
    use std::os::unix::fs::PermissionsExt;
    let (_dir, path) = log_with(0);
    let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
}

#[test]
fn world_writable_log_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let (dir, path) = log_with(1);
    fs::set_permissions(&path, fs::Permissions::from_mode(0o666)).unwrap();
    let err = Opened::<Ev>::open(dir.path()).unwrap_err();
    assert!(matches!(err, AuditError::Unsafe(..)), "{err}");
    assert!(err.to_string().contains("chmod 600"), "{err}");
}

#[test]
fn second_writer_on_the_same_log_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = start(dir.path());
    let err = Opened::<Ev>::open(dir.path()).unwrap_err();
    assert!(matches!(err, AuditError::Locked(_)), "{err}");
    drop(log);
    assert!(Opened::<Ev>::open(dir.path()).is_ok());
}

#[test]
fn concurrent_appends_are_contiguous_chained_and_group_committed() {
    const THREADS: u64 = 8;
    const PER_THREAD: u64 = 200;
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = start(dir.path());
    std::thread::scope(|s| {
        for t in 0..THREADS {
            let log = log.clone();
            s.spawn(move || {
                let agent = format!("agent{t}");
                let mut last_seq = 0;
                for i in 0..PER_THREAD {
                    let appended = log.append_blocking(T0, vec![spend(&agent, i)]).unwrap();
                    assert!(appended[0].seq > last_seq);
                    last_seq = appended[0].seq;
                }
            });
        }
    });
    let total = THREADS * PER_THREAD;
    let stats = log.stats();
    assert_eq!(stats.entries, total);
    assert!(
        stats.batches < total,
        "no group commit: {} fdatasyncs for {total} appends",
        stats.batches
    );
    assert_eq!(log.head().0, total);
    drop(log);

    let report = verify_file(&dir.path().join(AUDIT_FILE)).unwrap();
    assert_eq!(report.entries, total);
    let (_, entries) = start(dir.path());
    let mut per_agent: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for (i, e) in entries.iter().enumerate() {
        assert_eq!(e.seq, i as u64 + 1);
        let Ev::Spend { agent, amount } = &e.event else {
            panic!("unexpected event {:?}", e.event)
        };
        per_agent.entry(agent.clone()).or_default().push(*amount);
    }
    assert_eq!(per_agent.len() as u64, THREADS);
    for amounts in per_agent.values() {
        assert_eq!(*amounts, (0..PER_THREAD).collect::<Vec<_>>());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_appends_complete_after_durable_write() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = start(dir.path());
    let tasks: Vec<_> = (0..50u64)
        .map(|i| {
            let log = log.clone();
            tokio::spawn(async move { log.append(T0, vec![spend("x", i), spend("y", i)]).await })
        })
        .collect();
    let mut seqs = Vec::new();
    for task in tasks {
        let appended = task.await.unwrap().unwrap();
        // A request's events are consecutive entries.
        assert_eq!(appended[1].seq, appended[0].seq + 1);
        seqs.extend(appended.iter().map(|a| a.seq));
    }
    seqs.sort_unstable();
    assert_eq!(seqs, (1..=100).collect::<Vec<_>>());
    assert!(log.append(T0, Vec::new()).await.unwrap().is_empty());
    assert_eq!(log.head().0, 100);
    drop(log);
    assert_eq!(
        verify_file(&dir.path().join(AUDIT_FILE)).unwrap().entries,
        100
    );
}

/// Each case tampers with a 5-entry log and names the first bad line and its seq.
#[test]
fn verify_names_the_first_bad_line() {
    type Tamper = fn(&mut Vec<String>);
    let cases: &[(&str, Tamper, u64, Option<u64>, &str)] = &[
        (
            "edited event byte",
            |l| l[2] = l[2].replace(r#""amount":3"#, r#""amount":9"#),
            3,
            Some(3),
            "edited",
        ),
        (
            "deleted middle line",
            |l| drop(l.remove(2)),
            3,
            Some(4),
            "seq is 4 but 3",
        ),
        (
            "swapped lines",
            |l| l.swap(1, 2),
            2,
            Some(3),
            "seq is 3 but 2",
        ),
        (
            "edited hash",
            |l| {
                let at = l[1].find(r#""hash":""#).unwrap() + 8;
                let c = if &l[1][at..=at] == "0" { "1" } else { "0" };
                l[1].replace_range(at..=at, c);
            },
            2,
            Some(2),
            "hash is",
        ),
        (
            "bad prev",
            |l| {
                let at = l[3].find(r#""prev":""#).unwrap() + 8;
                let c = if &l[3][at..=at] == "0" { "1" } else { "0" };
                l[3].replace_range(at..=at, c);
            },
            4,
            Some(4),
            "prev is",
        ),
        (
            "entry rewritten with a correct hash",
            |l| {
                let prev: [u8; 32] =
                    hex::decode(&l[1][l[1].find(r#""prev":""#).unwrap() + 8..][..64])
                        .unwrap()
                        .try_into()
                        .unwrap();
                let body = format::body(
                    2,
                    T0 + 2,
                    &prev,
                    r#"{"kind":"spend","agent":"a","amount":0}"#,
                );
                let hash = format::chain_hash(&prev, &body);
                let mut line = Vec::new();
                format::push_line(&mut line, &body, &hash, None);
                l[1] = String::from_utf8(line).unwrap().trim_end().to_owned();
            },
            3,
            Some(3),
            "prev is",
        ),
        (
            "whitespace added",
            |l| l[0] = l[0].replacen(":", ": ", 1),
            1,
            Some(1),
            "byte-for-byte",
        ),
        (
            "keys reordered",
            |l| l[4] = reorder(&l[4]),
            5,
            Some(5),
            "byte-for-byte",
        ),
        (
            "unknown field",
            |l| l[1] = l[1].replacen('{', r#"{"x":1,"#, 1),
            2,
            None,
            "unknown field",
        ),
        (
            "not JSON",
            |l| l[3] = "garbage".into(),
            4,
            None,
            "malformed",
        ),
        (
            "empty line",
            |l| l.insert(2, String::new()),
            3,
            None,
            "malformed",
        ),
    ];
    for (name, tamper, line, seq, reason) in cases {
        let (_dir, path) = log_with(5);
        let mut l = lines(&path);
        tamper(&mut l);
        write_lines(&path, &l);
        let err = verify_file(&path).expect_err(name);
        assert_eq!((err.line, err.seq), (*line, *seq), "{name}: {err}");
        assert!(err.reason.contains(reason), "{name}: {err}");
        assert!(
            err.to_string().contains(&format!("line {line}")),
            "{name}: {err}"
        );
    }
}

/// Moves the `seq` member to the end of the object, keeping the same values.
fn reorder(line: &str) -> String {
    let (seq, rest) = line.split_once(',').unwrap();
    format!("{{{},{}}}", &rest[..rest.len() - 1], &seq[1..])
}

#[test]
fn verify_catches_a_timestamp_far_back() {
    let (_dir, path) = log_with(2);
    let mut l = lines(&path);
    // Rebuild entry 2 properly chained but 301 s before entry 1.
    let first_hash: [u8; 32] = hex::decode(&l[0][l[0].len() - 66..l[0].len() - 2])
        .unwrap()
        .try_into()
        .unwrap();
    let body = format::body(
        2,
        T0 + 1 - 301,
        &first_hash,
        r#"{"kind":"deny","rule":"r"}"#,
    );
    let mut line = Vec::new();
    format::push_line(
        &mut line,
        &body,
        &format::chain_hash(&first_hash, &body),
        None,
    );
    l[1] = String::from_utf8(line).unwrap().trim_end().to_owned();
    write_lines(&path, &l);
    let err = verify_file(&path).unwrap_err();
    assert_eq!((err.line, err.seq), (2, Some(2)), "{err}");
    assert!(err.reason.contains("before the previous"), "{err}");
}

#[test]
fn torn_last_line_is_truncated_on_open() {
    let (dir, path) = log_with(3);
    let intact = fs::read(&path).unwrap();
    let l = lines(&path);
    let mut torn = intact.clone();
    let half = &l[2].as_bytes()[..l[2].len() / 2];
    torn.extend_from_slice(half);
    fs::write(&path, &torn).unwrap();
    let err = verify_file(&path).unwrap_err();
    assert_eq!(err.line, 4, "{err}");

    let opened = Opened::<Ev>::open(dir.path()).unwrap();
    assert_eq!(opened.truncated_tail_bytes(), half.len() as u64);
    assert_eq!(all(&opened).len(), 3);
    drop(opened);
    assert_eq!(fs::read(&path).unwrap(), intact);
    assert_eq!(verify_file(&path).unwrap().entries, 3);
}

#[test]
fn corrupted_complete_last_line_refuses_open() {
    let (dir, path) = log_with(3);
    let mut l = lines(&path);
    l[2] = l[2].replace(r#""amount":3"#, r#""amount":4"#);
    write_lines(&path, &l);
    let err = Opened::<Ev>::open(dir.path()).unwrap_err();
    let AuditError::Verify(failure) = &err else {
        panic!("expected a verification failure, got {err}")
    };
    assert_eq!((failure.line, failure.seq), (3, Some(3)));
    // Nothing was truncated: the evidence stays.
    assert_eq!(lines(&path), l);
}

#[test]
fn unknown_event_refuses_open_but_verifies_untyped() {
    #[derive(Serialize, Deserialize)]
    struct Other {
        note: String,
    }
    let dir = tempfile::tempdir().unwrap();
    let log = Opened::<Other>::open(dir.path())
        .unwrap()
        .start(None)
        .unwrap();
    log.append_blocking(T0, vec![Other { note: "n".into() }])
        .unwrap();
    drop(log);
    let err = Opened::<Ev>::open(dir.path()).unwrap_err();
    assert!(
        matches!(&err, AuditError::Verify(f) if f.line == 1 && f.reason.contains("unknown event")),
        "{err}"
    );
    assert_eq!(
        verify_file(&dir.path().join(AUDIT_FILE)).unwrap().entries,
        1
    );
}

#[test]
fn pinned_head_catches_a_truncated_tail() {
    let (_dir, path) = log_with(4);
    let l = lines(&path);
    let hash_of = |line: &str| -> [u8; 32] {
        hex::decode(&line[line.len() - 66..line.len() - 2])
            .unwrap()
            .try_into()
            .unwrap()
    };
    let head = verify_file(&path).unwrap().head_hash;
    assert_eq!(head, hash_of(&l[3]));
    // An earlier head is still in the grown chain; the current one is too.
    assert!(verify_file_with_head(&path, Some(hash_of(&l[1]))).is_ok());
    assert!(verify_file_with_head(&path, Some(head)).is_ok());

    write_lines(&path, &l[..3]);
    assert_eq!(
        verify_file(&path).unwrap().entries,
        3,
        "undetectable without a pin"
    );
    let err = verify_file_with_head(&path, Some(head)).unwrap_err();
    assert_eq!((err.line, err.seq), (4, None), "{err}");
    assert!(err.reason.contains("pinned head"), "{err}");

    fs::write(&path, "").unwrap();
    let report = verify_file_with_head(&path, Some(GENESIS)).unwrap();
    assert_eq!((report.entries, report.head_hash), (0, GENESIS));
    assert!(verify_file_with_head(&path, Some(head)).is_err());
}

#[test]
fn failed_write_poisons_the_log() {
    let (dir, path) = log_with(2);
    let before = fs::read(&path).unwrap();
    let mut opened = Opened::<Ev>::open(dir.path()).unwrap();
    // Writes to /dev/full fail with ENOSPC, as on a full disk.
    let full = fs::OpenOptions::new()
        .append(true)
        .open("/dev/full")
        .unwrap();
    opened.replace_file_for_test(full);
    let log = opened.start(None).unwrap();
    let head = log.head();
    assert!(!log.is_poisoned());

    let err = log
        .append_blocking(T0 + 10, vec![spend("a", 1)])
        .unwrap_err();
    assert!(
        matches!(&err, AuditError::Io(_, e) if e.kind() == std::io::ErrorKind::StorageFull),
        "{err:?}"
    );
    assert!(log.is_poisoned());
    for _ in 0..2 {
        let err = log
            .append_blocking(T0 + 11, vec![spend("a", 2)])
            .unwrap_err();
        assert!(matches!(err, AuditError::Poisoned), "{err}");
    }
    assert_eq!(log.head(), head);
    assert_eq!(log.stats().batches, 0);
    drop(log);
    assert_eq!(fs::read(&path).unwrap(), before);
    assert_eq!(verify_file(&path).unwrap().entries, 2);
}

#[test]
fn clock_step_back_and_bad_event_are_refused_without_using_a_seq() {
    #[derive(Serialize, Deserialize)]
    struct Bad(BTreeMap<(u8, u8), u8>);
    let dir = tempfile::tempdir().unwrap();
    let log = Opened::<Bad>::open(dir.path())
        .unwrap()
        .start(None)
        .unwrap();
    log.append_blocking(T0, vec![Bad(BTreeMap::new())]).unwrap();
    let err = log
        .append_blocking(T0 - 301, vec![Bad(BTreeMap::new())])
        .unwrap_err();
    assert!(
        matches!(err, AuditError::ClockWentBack { last_ts: T0, .. }),
        "{err}"
    );
    // Within the tolerated skew is fine.
    assert_eq!(
        log.append_blocking(T0 - 300, vec![Bad(BTreeMap::new())])
            .unwrap()[0]
            .seq,
        2
    );
    let err = log
        .append_blocking(T0, vec![Bad(BTreeMap::from([((1, 2), 3)]))])
        .unwrap_err();
    assert!(matches!(err, AuditError::Encode(_)), "{err}");
    assert!(!log.is_poisoned());
    assert_eq!(
        log.append_blocking(T0, vec![Bad(BTreeMap::new())]).unwrap()[0].seq,
        3
    );
    drop(log);
    assert_eq!(
        verify_file(&dir.path().join(AUDIT_FILE)).unwrap().entries,
        3
    );
}

#[test]
fn entries_from_a_seq_start_at_a_checkpoint_and_see_later_appends() {
    let dir = tempfile::tempdir().unwrap();
    let log = Opened::<Ev>::open(dir.path()).unwrap().start(None).unwrap();
    let n = 2 * CHECKPOINT_EVERY + 5;
    let batch: Vec<Ev> = (1..=n).map(|i| spend("a", i)).collect();
    log.append_blocking(T0, batch).unwrap();
    drop(log);
    let opened = Opened::<Ev>::open(dir.path()).unwrap();
    assert_eq!(opened.end().seq, n);
    let log = opened.start(None).unwrap();
    for from in [
        0,
        1,
        CHECKPOINT_EVERY - 1,
        CHECKPOINT_EVERY,
        CHECKPOINT_EVERY + 1,
        n,
    ] {
        let first = log.entries_from(from).next().unwrap().unwrap();
        assert_eq!(first.seq, from.max(1));
        assert_eq!(first.event, spend("a", from.max(1)));
    }
    assert!(log.entries_from(n + 1).next().is_none());
    // Entries appended after open are read too, from the checkpoints made at open.
    log.append_blocking(T0 + 1, vec![spend("b", 1)]).unwrap();
    let tail: Vec<Entry<Ev>> = log.entries_from(n).collect::<Result<_, _>>().unwrap();
    assert_eq!(tail.len(), 2);
    assert_eq!(tail[1].event, spend("b", 1));
    // An edit before the checkpoint a read starts from is not this read's to see, but one
    // after it is: the chain is checked from the checkpoint on.
    drop(log);
    let path = dir.path().join(AUDIT_FILE);
    let mut l = lines(&path);
    let i = usize::try_from(CHECKPOINT_EVERY + 2).unwrap();
    l[i] = l[i].replace("\"amount\":", "\"amount\":1");
    write_lines(&path, &l);
    assert!(Opened::<Ev>::open(dir.path()).is_err());
}

mod keyed;

mod segments;
