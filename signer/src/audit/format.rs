//! The journal's line format and its verification, shared by the writer, by replay at open and
//! by `audit-verify`.
//!
//! A line is `{"seq":N,"ts":T,"prev":"<hex>","event":<event JSON>,"hash":"<hex>"}` plus `\n`,
//! with lowercase hex and no whitespace outside the event. `body` is the same object without
//! its `hash` member, `{"seq":N,"ts":T,"prev":"<hex>","event":<event JSON>}`, and
//! `hash = SHA-256(prev bytes || body)`. The verifier keeps the event's exact bytes
//! (`RawValue`) and rebuilds `body` and the whole line with `format!`, so it depends on
//! neither serde_json's key order nor the event type.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};

use super::key::{JournalKey, KeyCheck, KeyReport};
use super::stream::{Checkpoint, Scanner};
use super::{GENESIS, MAX_CLOCK_SKEW_SECS};

/// What a successful verification found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifyReport {
    /// Number of entries.
    pub entries: u64,
    /// Sequence number of the last entry (0 when empty).
    pub head_seq: u64,
    /// Hash of the last entry ([`GENESIS`] when empty).
    pub head_hash: [u8; 32],
}

/// The first bad entry of a journal, by line number (1-based) and, when it could be read, seq.
#[derive(Debug, thiserror::Error)]
#[error("audit log {}: line {line}{}: {reason}", .path.display(), seq_suffix(*.seq))]
pub struct VerifyFailure {
    /// The journal.
    pub path: PathBuf,
    /// 1-based line number of the first bad entry.
    pub line: u64,
    /// The entry's `seq`, if the line could be parsed.
    pub seq: Option<u64>,
    /// What is wrong with it.
    pub reason: String,
}

fn seq_suffix(seq: Option<u64>) -> String {
    seq.map(|s| format!(" (seq {s})")).unwrap_or_default()
}

/// Verifies a journal without knowing the event type: every line must be well formed and
/// canonical, seqs contiguous from 1, each `prev` the previous `hash`, each `hash` correct,
/// and no `ts` more than 300 s before the previous one. Names the first bad line.
///
/// Edits, deletions and reorderings anywhere are detected, but removing entries from the *end*
/// cannot be seen from the file alone (what is left is a valid, shorter chain): use
/// [`verify_file_with_head`] with a head pinned earlier for that. A final line without a
/// newline (a write cut by a crash, or one in progress while the signer runs) is reported too:
/// retry, or let the signer remove it at its next start.
pub fn verify_file(path: &Path) -> Result<VerifyReport, VerifyFailure> {
    verify_file_with_head(path, None)
}

/// As [`verify_file`], and when `expected_head` is given, also fails unless some entry of the
/// chain has exactly that hash. An operator who noted the `audit_head` shown by `status` (or an
/// earlier verification) can thus detect that entries up to that point were removed from the
/// tail, which [`verify_file`] alone cannot. The log may have grown since the head was pinned:
/// the pinned hash need not be the final one, only part of the chain.
pub fn verify_file_with_head(
    path: &Path,
    expected_head: Option<[u8; 32]>,
) -> Result<VerifyReport, VerifyFailure> {
    verify_file_keyed(path, expected_head, None).map(|(report, _)| report)
}

/// As [`verify_file_with_head`], and with the keystore's journal `key`, the entries' MACs must
/// vouch for the chain ([`super::key`]): a consistent rewrite by someone without the key fails.
pub fn verify_file_keyed(
    path: &Path,
    expected_head: Option<[u8; 32]>,
    key: Option<&JournalKey>,
) -> Result<(VerifyReport, Option<KeyReport>), VerifyFailure> {
    let file = File::open(path).map_err(|e| {
        Chain::resume(path, Checkpoint::START).failure_next(None, format!("cannot open: {e}"))
    })?;
    verify_reader_keyed(BufReader::new(file), path, expected_head, key)
}

/// As [`verify_file_with_head`], over a journal's bytes already open (`path` names it in
/// messages). Reads one line at a time: its memory does not grow with the journal.
pub fn verify_reader(
    reader: impl BufRead,
    path: &Path,
    expected_head: Option<[u8; 32]>,
) -> Result<VerifyReport, VerifyFailure> {
    verify_reader_keyed(reader, path, expected_head, None).map(|(report, _)| report)
}

fn verify_reader_keyed(
    reader: impl BufRead,
    path: &Path,
    expected_head: Option<[u8; 32]>,
    key: Option<&JournalKey>,
) -> Result<(VerifyReport, Option<KeyReport>), VerifyFailure> {
    let mut scanner = Scanner::new(reader, path, Checkpoint::START);
    let mut pinned_seen = expected_head == Some(GENESIS);
    let mut check = key.map(KeyCheck::new);
    while let Some(checked) = scanner.next_checked()? {
        pinned_seen |= expected_head == Some(checked.hash);
        if let Some(check) = check.as_mut() {
            check.see(checked.seq, &checked.hash, checked.mac.as_ref());
        }
    }
    if scanner.torn_bytes() > 0 {
        return Err(scanner.failure_next(
            "incomplete final line (no newline): a write cut by a crash or still in progress; retry, or start the signer, which removes it".into(),
        ));
    }
    let end = scanner.position();
    if let Some(head) = expected_head
        && !pinned_seen
    {
        return Err(scanner.failure_next(format!(
            "the pinned head {} is not in the chain (which ends at seq {} with {}): entries were removed from the end, or the log was replaced",
            hex::encode(head),
            end.seq,
            hex::encode(end.hash)
        )));
    }
    let keyed = match check.map(KeyCheck::finish) {
        Some((_, Some(problem))) => {
            return Err(scanner.failure_next(format!("the journal's MACs: {problem}")));
        }
        Some((report, None)) => Some(report),
        None => None,
    };
    let report = VerifyReport {
        entries: end.seq,
        head_seq: end.seq,
        head_hash: end.hash,
    };
    Ok((report, keyed))
}

/// The exact bytes that are hashed: the line's object without its `hash` member.
pub(super) fn body(seq: u64, ts: u64, prev: &[u8; 32], event_json: &str) -> String {
    format!(
        "{{\"seq\":{seq},\"ts\":{ts},\"prev\":\"{}\",\"event\":{event_json}}}",
        hex::encode(prev)
    )
}

/// `SHA-256(prev || body)`.
pub(super) fn chain_hash(prev: &[u8; 32], body: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(prev);
    h.update(body.as_bytes());
    h.finalize().into()
}

/// Appends the full line (with `hash`, the `mac` of a keyed entry, and the newline) for `body`
/// to `out`.
pub(super) fn push_line(out: &mut Vec<u8>, body: &str, hash: &[u8; 32], mac: Option<&[u8; 32]>) {
    // `body` always ends with the `}` that closes the object: reopen it for the hash member.
    let open = body.strip_suffix('}').unwrap_or(body);
    out.extend_from_slice(open.as_bytes());
    out.extend_from_slice(b",\"hash\":\"");
    out.extend_from_slice(hex::encode(hash).as_bytes());
    if let Some(mac) = mac {
        out.extend_from_slice(b"\",\"mac\":\"");
        out.extend_from_slice(hex::encode(mac).as_bytes());
    }
    out.extend_from_slice(b"\"}\n");
}

/// A line as parsed, before any check beyond its shape.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLine<'a> {
    seq: u64,
    ts: u64,
    #[serde(borrow)]
    prev: &'a str,
    #[serde(borrow)]
    event: &'a RawValue,
    #[serde(borrow)]
    hash: &'a str,
    /// Present on keyed entries (`key`).
    #[serde(default, borrow)]
    mac: Option<&'a str>,
}

/// One line that passed every check, borrowing its event's bytes.
pub(super) struct Checked<'a> {
    pub(super) seq: u64,
    pub(super) ts: u64,
    pub(super) prev: [u8; 32],
    pub(super) hash: [u8; 32],
    pub(super) mac: Option<[u8; 32]>,
    pub(super) event: &'a RawValue,
}

/// The verifier's state between lines: where the chain stands after the last good line.
pub(super) struct Chain {
    path: PathBuf,
    /// 1-based number of the line being checked (the last one checked, after `check`).
    line: u64,
    seq: u64,
    hash: [u8; 32],
    ts: Option<u64>,
}

impl Chain {
    /// The chain at `from` (its line count is the seq: one line per entry).
    pub(super) fn resume(path: &Path, from: Checkpoint) -> Chain {
        Chain {
            path: path.to_path_buf(),
            line: from.seq,
            seq: from.seq,
            hash: from.hash,
            ts: from.ts,
        }
    }

    /// Numbers lines from a file whose first line follows seq `anchor`.
    pub(super) fn renumber(&mut self, anchor: u64) {
        self.line = self.seq.saturating_sub(anchor);
    }

    /// Where the chain stands, the next entry starting at byte `offset`.
    pub(super) fn checkpoint(&self, offset: u64) -> Checkpoint {
        Checkpoint {
            seq: self.seq,
            hash: self.hash,
            ts: self.ts,
            offset,
        }
    }

    /// A failure at the current line.
    pub(super) fn failure(&self, seq: Option<u64>, reason: String) -> VerifyFailure {
        VerifyFailure {
            path: self.path.clone(),
            line: self.line,
            seq,
            reason,
        }
    }

    /// A failure at the line after the last one checked (one that could not be read, or is
    /// missing).
    pub(super) fn failure_next(&self, seq: Option<u64>, reason: String) -> VerifyFailure {
        VerifyFailure {
            line: self.line + 1,
            ..self.failure(seq, reason)
        }
    }

    /// Checks the next complete line (with its `\n`), in this order: shape, seq, prev, hash,
    /// canonical form, ts. On success the chain advances to it.
    pub(super) fn check<'a>(&mut self, line: &'a [u8]) -> Result<Checked<'a>, VerifyFailure> {
        self.line += 1;
        let raw: RawLine<'a> = serde_json::from_slice(line).map_err(|e| {
            self.failure(
                None,
                format!("not a journal entry (malformed JSON or wrong fields): {e}"),
            )
        })?;
        let seq = Some(raw.seq);
        let expected_seq = self.seq + 1;
        if raw.seq != expected_seq {
            return Err(self.failure(
                seq,
                format!(
                    "seq is {} but {expected_seq} was expected: an entry was deleted, inserted or moved here",
                    raw.seq
                ),
            ));
        }
        let prev = parse_hex32(raw.prev).ok_or_else(|| {
            self.failure(seq, format!("prev {:?} is not 64 hex digits", raw.prev))
        })?;
        let hash = parse_hex32(raw.hash).ok_or_else(|| {
            self.failure(seq, format!("hash {:?} is not 64 hex digits", raw.hash))
        })?;
        if prev != self.hash {
            return Err(self.failure(
                seq,
                format!(
                    "prev is {} but the previous entry's hash is {}: the chain is broken here (an earlier entry was replaced)",
                    raw.prev,
                    hex::encode(self.hash)
                ),
            ));
        }
        let body = body(raw.seq, raw.ts, &prev, raw.event.get());
        let computed = chain_hash(&prev, &body);
        if hash != computed {
            return Err(self.failure(
                seq,
                format!(
                    "hash is {} but the entry hashes to {}: the entry was edited",
                    raw.hash,
                    hex::encode(computed)
                ),
            ));
        }
        let mac = match raw.mac {
            None => None,
            Some(m) => Some(
                parse_hex32(m)
                    .ok_or_else(|| self.failure(seq, format!("mac {m:?} is not 64 hex digits")))?,
            ),
        };
        let mut canonical = Vec::with_capacity(line.len());
        push_line(&mut canonical, &body, &hash, mac.as_ref());
        if canonical != line {
            return Err(self.failure(
                seq,
                "the line is not byte-for-byte as the signer writes it (whitespace, escapes, key order or hex case changed): it was edited".into(),
            ));
        }
        if let Some(last_ts) = self.ts
            && raw.ts.saturating_add(MAX_CLOCK_SKEW_SECS) < last_ts
        {
            return Err(self.failure(
                seq,
                format!(
                    "ts {} is more than {MAX_CLOCK_SKEW_SECS} s before the previous entry's ts {last_ts}: entries were reordered",
                    raw.ts
                ),
            ));
        }
        self.seq = raw.seq;
        self.hash = hash;
        self.ts = Some(raw.ts);
        Ok(Checked {
            seq: raw.seq,
            ts: raw.ts,
            prev,
            hash,
            mac,
            event: raw.event,
        })
    }
}

/// Parses exactly 64 hex digits (either case here; the canonical check then requires lowercase).
fn parse_hex32(s: &str) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(s, &mut out).ok()?;
    Some(out)
}
