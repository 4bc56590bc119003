//! `audit-verify` of a rotated journal: every present segment, oldest first, as one chain.
//!
//! The oldest present segment is the anchor: when it opens with a checkpoint (older segments
//! were deleted by retention), the report says so ("history before seq N was rotated away").
//! Every later segment must open with a checkpoint that names the segment before it (file name,
//! last seq, hash: its `prev` is that hash), and whose carried entries are exactly those that
//! [`Checkpointed::carry`] chooses from the segment before it: the checkpoint's state summary
//! is checked against a replay of what precedes it whenever that is present. The MACs are
//! checked across all segments as one chain ([`super::key`]).

use std::fs::File;
use std::io::BufReader;
use std::path::Path;

use super::format::{Checked, VerifyFailure, VerifyReport};
use super::key::{JournalKey, KeyCheck, KeyReport};
use super::segment::{Checkpointed, list_sealed};
use super::stream::{Checkpoint, Scanner};
use super::{AUDIT_FILE, AuditError, Entry, GENESIS};

/// What [`verify_dir`] found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirReport {
    /// Entries in the present segments, head seq and hash.
    pub report: VerifyReport,
    /// The MACs' verdict, when a key was given.
    pub keyed: Option<KeyReport>,
    /// Segments verified (sealed ones and the live one).
    pub segments: usize,
    /// Checkpoints whose carried state was checked against the segment before them.
    pub checkpoints_checked: usize,
    /// When the oldest present segment opens with a checkpoint: the last seq rotated away and
    /// the time of that checkpoint.
    pub rotated_away: Option<(u64, u64)>,
}

/// Verifies every segment of the journal in `dir` (see the module docs); `expected_head`, when
/// given, must be the hash of a present entry or of the entry the oldest present one follows.
pub fn verify_dir<E: Checkpointed>(
    dir: &Path,
    expected_head: Option<[u8; 32]>,
    key: Option<&JournalKey>,
) -> Result<DirReport, VerifyFailure> {
    let live = dir.join(AUDIT_FILE);
    let sealed = list_sealed(dir).map_err(|e| failure(dir, 0, format!("cannot list: {e}")))?;
    let mut files: Vec<std::path::PathBuf> = sealed.into_iter().map(|(_, p)| p).collect();
    files.push(live);
    let mut check = key.map(KeyCheck::new);
    let mut pinned_seen = expected_head == Some(GENESIS);
    let mut end: Option<Checkpoint> = None;
    let mut rotated_away = None;
    let mut checkpoints_checked = 0;
    let mut entries_total = 0u64;
    for (i, path) in files.iter().enumerate() {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let file = File::open(path).map_err(|e| failure(path, 1, format!("cannot open: {e}")))?;
        let file = std::sync::Arc::new(file);
        let from = match end {
            Some(prev_end) => Checkpoint {
                offset: 0,
                ..prev_end
            },
            None => {
                let (anchor, _) = super::segment::anchor_of(&file, path)
                    .map_err(|e| failure(path, 1, e.to_string()))?;
                anchor
            }
        };
        if end.is_none() {
            pinned_seen |= expected_head == Some(from.hash);
        }
        let mut scanner = Scanner::new(
            BufReader::new(super::stream::PreadReader::new(
                std::sync::Arc::clone(&file),
                0,
                None,
            )),
            path,
            from,
        )
        .anchored(from.seq);
        let mut first = true;
        while let Some(c) = scanner.next_checked()? {
            let Checked {
                seq,
                ts,
                hash,
                mac,
                event,
                ..
            } = c;
            pinned_seen |= expected_head == Some(hash);
            if let Some(check) = check.as_mut() {
                check.see(seq, &hash, mac.as_ref());
            }
            let event: E = serde_json::from_str(event.get()).map_err(|e| {
                failure(
                    path,
                    seq - from.seq,
                    format!("unknown event (seq {seq}): {e}"),
                )
            })?;
            let is_checkpoint = event.as_checkpoint().is_some();
            if first {
                if i == 0 && seq > 1 {
                    if !is_checkpoint {
                        return Err(failure(
                            path,
                            1,
                            format!(
                                "the oldest present segment starts at seq {seq} without a checkpoint: entries before it are missing"
                            ),
                        ));
                    }
                    rotated_away = Some((seq - 1, ts));
                }
                if i > 0 {
                    let Some((sealed, carried)) = event.as_checkpoint() else {
                        return Err(failure(
                            path,
                            1,
                            format!(
                                "segment {name} does not open with a checkpoint (seq {seq}): a segment was replaced"
                            ),
                        ));
                    };
                    let prev = &files[i - 1];
                    let prev_name = prev
                        .file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_default();
                    if sealed.segment != prev_name || sealed.seq + 1 != seq {
                        return Err(failure(
                            path,
                            1,
                            format!(
                                "the checkpoint (seq {seq}) names segment {} ending at seq {}, but the segment before it is {prev_name}: a segment was renamed or replaced",
                                sealed.segment, sealed.seq
                            ),
                        ));
                    }
                    let expected = carry_of::<E>(prev, ts).map_err(|e| {
                        failure(
                            prev,
                            0,
                            format!("cannot replay it to check the next checkpoint: {e}"),
                        )
                    })?;
                    let (got, want) = (
                        serde_json::to_string(carried).unwrap_or_default(),
                        serde_json::to_string(&expected).unwrap_or_default(),
                    );
                    if got != want {
                        return Err(failure(
                            path,
                            1,
                            format!(
                                "the checkpoint (seq {seq}) carries a state ({} entries) that differs from a replay of {prev_name} ({} entries): the checkpoint was edited",
                                carried.len(),
                                expected.len()
                            ),
                        ));
                    }
                    checkpoints_checked += 1;
                }
            } else if is_checkpoint {
                return Err(failure(
                    path,
                    seq - from.seq,
                    format!("a checkpoint (seq {seq}) in the middle of a segment"),
                ));
            }
            first = false;
            entries_total += 1;
        }
        if scanner.torn_bytes() > 0 {
            return Err(scanner.failure_next(
                "incomplete final line (no newline): a write cut by a crash or still in progress; retry, or start the signer, which removes it".into(),
            ));
        }
        if i + 1 < files.len() {
            let at = scanner.position();
            let named = super::segment::parse_sealed_name(&name);
            if named != Some(at.seq) {
                return Err(scanner.failure_next(format!("segment {name} ends at seq {}, not the seq its name says: it was cut or replaced", at.seq)));
            }
        }
        end = Some(scanner.position());
    }
    let end = end.unwrap_or(Checkpoint::START);
    let live_path = dir.join(AUDIT_FILE);
    if let Some(head) = expected_head
        && !pinned_seen
    {
        return Err(failure(
            &live_path,
            0,
            format!(
                "the pinned head {} is not in the present chain (which ends at seq {} with {}): entries were removed from the end, the log was replaced, or the head is older than the oldest present segment (check it against the backup, which holds every segment)",
                hex::encode(head),
                end.seq,
                hex::encode(end.hash)
            ),
        ));
    }
    let keyed = match check.map(KeyCheck::finish) {
        Some((_, Some(problem))) => {
            return Err(failure(
                &live_path,
                0,
                format!("the journal's MACs: {problem}"),
            ));
        }
        Some((report, None)) => Some(report),
        None => None,
    };
    Ok(DirReport {
        report: VerifyReport {
            entries: entries_total,
            head_seq: end.seq,
            head_hash: end.hash,
        },
        keyed,
        segments: files.len(),
        checkpoints_checked,
        rotated_away,
    })
}

/// The entries a checkpoint at `now` after the segment at `path` must carry.
fn carry_of<E: Checkpointed>(path: &Path, now: u64) -> Result<Vec<super::Carried<E>>, AuditError> {
    let file =
        std::sync::Arc::new(File::open(path).map_err(|e| AuditError::Io(path.to_path_buf(), e))?);
    let (anchor, _) = super::segment::anchor_of(&file, path)?;
    let scanner = Scanner::of_file(&file, path, anchor, None, anchor.seq);
    let mut entries = super::stream::Entries::<E>::new(scanner, None, 0, None);
    let mut it = (&mut entries).map(|e: Result<Entry<E>, AuditError>| e);
    E::carry(&mut it, now)
}

fn failure(path: &Path, line: u64, reason: String) -> VerifyFailure {
    VerifyFailure {
        path: path.to_path_buf(),
        line,
        seq: None,
        reason,
    }
}
