//! Tests of keyed journals: MACs written under the keystore's journal key, and what a keyed
//! verification accepts (entries of earlier releases, a key change) and refuses (a rewrite,
//! a splice, an edited MAC).

use super::*;

fn key(byte: u8) -> JournalKey {
    JournalKey::from_bytes([byte; 32])
}

/// The keyed verdict of the log in `dir` under `k`.
fn key_verdict(dir: &Path, k: &JournalKey) -> (KeyReport, Option<KeyProblem>) {
    let opened = Opened::<Ev>::open_keyed(dir, Some(k)).unwrap();
    let at_open = opened.key_check(k).unwrap();
    // The same verdict from a separate pass over a log opened without the key.
    drop(opened);
    let again = Opened::<Ev>::open(dir).unwrap().key_check(k).unwrap();
    assert_eq!(at_open, again);
    at_open
}

fn append_with(dir: &Path, k: Option<JournalKey>, n: u64) {
    let log = Opened::<Ev>::open(dir).unwrap().start(k).unwrap();
    for i in 0..n {
        log.append_blocking(T0 + i, vec![spend("a", i)]).unwrap();
    }
}

#[test]
fn keyed_entries_carry_a_mac_that_vouches_for_the_chain() {
    let dir = tempfile::tempdir().unwrap();
    // Entries of an earlier release (no MAC), then keyed ones: accepted, the tail is keyed.
    append_with(dir.path(), None, 2);
    assert_eq!(
        key_verdict(dir.path(), &key(1)).1,
        Some(KeyProblem::NeverKeyed { entries: 2 })
    );
    append_with(dir.path(), Some(key(1)), 3);
    let path = dir.path().join(AUDIT_FILE);
    assert!(lines(&path)[4].contains(",\"mac\":\""));
    assert!(!lines(&path)[1].contains("mac"));
    let (report, problem) = key_verdict(dir.path(), &key(1));
    assert_eq!(problem, None);
    assert_eq!((report.unkeyed, report.keyed, report.other_key), (2, 3, 0));
    // Under another key (another keystore): refused.
    assert_eq!(
        key_verdict(dir.path(), &key(2)).1,
        Some(KeyProblem::TailNotUnderKey {
            last_good: None,
            last: 5
        })
    );
    // A key change (a key ceremony) continues under the new key: the old entries are vouched
    // for by the new key's MACs over the chain.
    append_with(dir.path(), Some(key(2)), 1);
    let (report, problem) = key_verdict(dir.path(), &key(2));
    assert_eq!(problem, None);
    assert_eq!((report.unkeyed, report.other_key, report.keyed), (2, 3, 1));
    // An entry without a MAC after keyed ones: written without the key.
    append_with(dir.path(), None, 1);
    assert_eq!(
        key_verdict(dir.path(), &key(2)).1,
        Some(KeyProblem::OutOfOrder {
            seq: 7,
            what: "has no MAC, after entries with one"
        })
    );
    // The keyed verification of audit-verify says the same.
    let err = verify_file_keyed(&path, None, Some(&key(2))).unwrap_err();
    assert!(err.reason.contains("MACs"), "{err}");
    assert!(
        verify_file(&path).is_ok(),
        "the hash chain alone is consistent"
    );
}

#[test]
fn a_mac_that_is_not_hex_or_is_edited_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    append_with(dir.path(), Some(key(1)), 2);
    let path = dir.path().join(AUDIT_FILE);
    let original = lines(&path);
    let mut l = original.clone();
    l[1] = l[1].replace(",\"mac\":\"", ",\"mac\":\"zz");
    write_lines(&path, &l);
    assert!(verify_file(&path).unwrap_err().reason.contains("mac"));
    // A well-formed but wrong MAC on the last entry: the chain holds, the key refuses it.
    let mut l = original;
    let at = l[1].find(",\"mac\":\"").unwrap() + 8;
    l[1].replace_range(at..at + 64, &"0".repeat(64));
    write_lines(&path, &l);
    assert!(verify_file(&path).is_ok());
    assert_eq!(
        key_verdict(dir.path(), &key(1)).1,
        Some(KeyProblem::OutOfOrder {
            seq: 2,
            what: "has a MAC that is not under this key, after entries under it"
        })
    );
}
