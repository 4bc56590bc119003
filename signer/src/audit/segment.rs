//! Segments: the journal rotates, and old segments are deleted under a retention policy,
//! without breaking the chain, the MACs or the replay at start.
//!
//! The live segment is always `audit.jsonl`. When the bytes written to it after its checkpoint
//! pass [`Retention::rotate_bytes`], the writer seals it: it is renamed `audit.<last seq>.jsonl`
//! (twenty digits, so names sort by seq), and a new live segment takes its place whose FIRST entry is a checkpoint event ([`Checkpointed`]): it names the sealed
//! segment's last seq and hash (its `prev` is that hash: the chain and the MACs continue
//! unbroken), and it carries, verbatim, every earlier entry the replay at start still needs
//! ([`Carried`], chosen by [`Checkpointed::carry`]), so a start replays the live segment only.
//!
//! Rotation, step by step ([`Step`]), each one crash-safe:
//! 1. the checkpoint line is written to `audit.jsonl.next` and `fdatasync`ed;
//! 2. `audit.jsonl` is renamed to its sealed name, and the directory is `fsync`ed;
//! 3. `audit.jsonl.next` is renamed to `audit.jsonl`, and the directory is `fsync`ed;
//! 4. retention: the oldest sealed segments beyond [`Retention::keep_segments`] and older than
//!    [`Retention::keep_secs`] are unlinked, and the directory is `fsync`ed.
//!
//! A crash after 1 leaves `audit.jsonl` and a stray `audit.jsonl.next`: [`recover`] removes
//! the stray (the rotation never happened; the next one starts again). A crash after 2 leaves
//! no `audit.jsonl` and a complete `audit.jsonl.next` whose checkpoint follows the newest
//! sealed segment: [`recover`] finishes step 3. After 3 the rotation is done; a crash in 4
//! leaves segments that are deleted at the next rotation. `recover` runs at open, before
//! confinement. No hard link is ever made (`linkat` is never on a Vigil daemon's seccomp
//! allowlist).

use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use super::format::{body, chain_hash, push_line};
use super::key::JournalKey;
use super::stream::{Checkpoint, Scanner};
use super::{AUDIT_FILE, AuditError, Entry};

/// Where a rotation writes the new segment before it replaces the live one.
pub const NEXT_FILE: &str = "audit.jsonl.next";

/// The default size after which the live segment is sealed (64 MiB).
pub const DEFAULT_ROTATE_BYTES: u64 = 64 * 1024 * 1024;
/// The smallest `--journal-rotate-bytes` accepted (tests rotate often with it).
pub const MIN_ROTATE_BYTES: u64 = 4 * 1024;
/// The largest `--journal-rotate-bytes` accepted (64 GiB: a start reads at most this).
pub const MAX_ROTATE_BYTES: u64 = 64 * 1024 * 1024 * 1024;
/// The default number of sealed segments kept.
pub const DEFAULT_KEEP_SEGMENTS: usize = 8;
/// The default age (days) a sealed segment must pass before it may be deleted.
pub const DEFAULT_KEEP_DAYS: u64 = 90;

/// The name of the sealed segment whose last entry is `last_seq`.
pub fn sealed_name(last_seq: u64) -> String {
    format!("audit.{last_seq:020}.jsonl")
}

/// The last seq of a sealed segment's file name, if it is one.
pub fn parse_sealed_name(name: &str) -> Option<u64> {
    let digits = name.strip_prefix("audit.")?.strip_suffix(".jsonl")?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The sealed segments in `dir`, oldest first, by their last seq.
pub fn list_sealed(dir: &Path) -> io::Result<Vec<(u64, PathBuf)>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if let Some(seq) = entry.file_name().to_str().and_then(parse_sealed_name) {
            out.push((seq, entry.path()));
        }
    }
    out.sort();
    Ok(out)
}

/// The end of the sealed segment a checkpoint follows.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SealedEnd {
    /// The sealed segment's file name.
    pub segment: String,
    /// Its last entry's seq.
    pub seq: u64,
    /// Its last entry's hash, hex (the checkpoint's `prev`).
    pub hash: String,
    /// Its last entry's time.
    pub ts: u64,
}

/// An earlier entry carried by a checkpoint: exactly as it was written (its event's JSON is
/// the same bytes), so the replay sees it as it saw it then.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Carried<E> {
    /// Its seq.
    pub seq: u64,
    /// Its time.
    pub ts: u64,
    /// Its chain hash, hex.
    pub hash: String,
    /// Its event.
    pub event: E,
}

impl<E> Carried<E> {
    /// The carried entry as an [`Entry`] (no MAC: the checkpoint's own MAC vouches for it).
    pub fn into_entry(self) -> Entry<E> {
        let mut hash = [0u8; 32];
        // A carried hash that is not 64 hex digits reads as zeros: it is informational only
        // (the checkpoint's own hash and MAC commit to every byte of it).
        if hex::decode_to_slice(&self.hash, &mut hash).is_err() {
            hash = [0; 32];
        }
        Entry {
            seq: self.seq,
            ts: self.ts,
            prev: [0; 32],
            hash,
            mac: None,
            event: self.event,
        }
    }
}

/// An event type whose journal can rotate: it has a checkpoint event, and knows which earlier
/// entries its replay still needs.
pub trait Checkpointed: Sized + Serialize + serde::de::DeserializeOwned + Send + 'static {
    /// The checkpoint event that opens a new segment.
    fn checkpoint(sealed: SealedEnd, carried: Vec<Carried<Self>>) -> Self;

    /// This event's sealed end and carried entries, if it is a checkpoint.
    fn as_checkpoint(&self) -> Option<(&SealedEnd, &[Carried<Self>])>;

    /// The entries a checkpoint written at `now` must carry, chosen from `entries`: a whole
    /// segment in order, its own checkpoint (if any) first. Replaying the result then the
    /// entries after the checkpoint must give the state that replaying everything gives, at
    /// any time from `now` on.
    fn carry(
        entries: &mut dyn Iterator<Item = Result<Entry<Self>, AuditError>>,
        now: u64,
    ) -> Result<Vec<Carried<Self>>, AuditError>;
}

/// When the live segment is sealed, and which sealed segments are kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Retention {
    /// Seal the live segment once this many bytes were written after its checkpoint.
    pub rotate_bytes: u64,
    /// Keep at least this many sealed segments.
    pub keep_segments: usize,
    /// Keep every sealed segment younger than this (seconds since it was sealed).
    pub keep_secs: u64,
}

impl Default for Retention {
    fn default() -> Self {
        Retention {
            rotate_bytes: DEFAULT_ROTATE_BYTES,
            keep_segments: DEFAULT_KEEP_SEGMENTS,
            keep_secs: DEFAULT_KEEP_DAYS * 86_400,
        }
    }
}

impl Retention {
    /// Checks the bounds, naming the flag that is out of them.
    pub fn new(rotate_bytes: u64, keep_segments: usize, keep_days: u64) -> Result<Self, String> {
        if !(MIN_ROTATE_BYTES..=MAX_ROTATE_BYTES).contains(&rotate_bytes) {
            return Err(format!(
                "--journal-rotate-bytes {rotate_bytes} is out of bounds: give {MIN_ROTATE_BYTES}..={MAX_ROTATE_BYTES} (default {DEFAULT_ROTATE_BYTES})"
            ));
        }
        if keep_days > 36_500 {
            return Err(format!(
                "--journal-keep-days {keep_days} is out of bounds: give 0..=36500 (default {DEFAULT_KEEP_DAYS})"
            ));
        }
        Ok(Retention {
            rotate_bytes,
            keep_segments,
            keep_secs: keep_days * 86_400,
        })
    }
}

/// The steps of a rotation, for the crash tests: a rotation told to stop after a step leaves
/// the directory exactly as a crash right after it would.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Step {
    /// `audit.jsonl.next` holds the checkpoint, durably.
    NextWritten,
    /// The live file was renamed to its sealed name.
    Sealed,
    /// The new segment is live.
    Renamed,
    /// Old sealed segments were deleted.
    Retained,
}

/// Brings a directory left by a crash in the middle of a rotation back to a whole journal
/// (see the module docs). Runs at open, before confinement.
pub fn recover(dir: &Path) -> Result<(), AuditError> {
    let live = dir.join(AUDIT_FILE);
    let next = dir.join(NEXT_FILE);
    let io_err = |p: &Path, e| AuditError::Io(p.to_path_buf(), e);
    let sealed = list_sealed(dir).map_err(|e| io_err(dir, e))?;
    let live_meta = match std::fs::symlink_metadata(&live) {
        Ok(m) => Some(m),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(io_err(&live, e)),
    };
    if next.exists() {
        if live_meta.is_some() {
            // Cut after step 1: nothing was sealed.
            tracing::warn!(dir = %dir.display(), "removing a journal rotation cut by a crash before it sealed anything");
            std::fs::remove_file(&next).map_err(|e| io_err(&next, e))?;
        } else {
            // Cut after step 2: the live segment is sealed; the next one must follow it.
            let newest = sealed.last().map(|(seq, _)| *seq);
            let file = Arc::new(File::open(&next).map_err(|e| io_err(&next, e))?);
            let (anchor, len) = anchor_of(&file, &next)?;
            if len == 0 || Some(anchor.seq) != newest {
                return Err(AuditError::Unsafe(
                    live,
                    format!(
                        "is missing, and {NEXT_FILE} (which opens at seq {}) does not follow the newest sealed segment (seq {}): restore the journal from the backup (vigil-backup restore)",
                        anchor.seq + 1,
                        newest.unwrap_or(0)
                    ),
                ));
            }
            tracing::warn!(dir = %dir.display(), "finishing a journal rotation cut by a crash");
            std::fs::rename(&next, &live).map_err(|e| io_err(&next, e))?;
        }
        sync_dir(dir)?;
        return Ok(());
    }
    if live_meta.is_none() && !sealed.is_empty() {
        return Err(AuditError::Unsafe(
            live,
            format!(
                "is missing while {} sealed segment(s) are present: the live segment holds the newest spends; restore it from the backup (vigil-backup restore) before starting the signer",
                sealed.len()
            ),
        ));
    }
    Ok(())
}

/// Where the live segment's chain starts: at the journal's start, or just before its first
/// entry (a checkpoint, after a rotation). Reads the first line only.
pub(super) fn anchor_of(file: &Arc<File>, path: &Path) -> Result<(Checkpoint, u64), AuditError> {
    #[derive(Deserialize)]
    struct Head<'a> {
        seq: u64,
        #[serde(borrow)]
        prev: &'a str,
    }
    let mut reader = BufReader::new(super::stream::PreadReader::new(Arc::clone(file), 0, None));
    let mut line = Vec::new();
    reader
        .read_until(b'\n', &mut line)
        .map_err(|e| AuditError::Io(path.to_path_buf(), e))?;
    if line.last() != Some(&b'\n') {
        return Ok((Checkpoint::START, 0));
    }
    let Ok(head) = serde_json::from_slice::<Head<'_>>(&line) else {
        // Not a journal line: the full verification names it.
        return Ok((Checkpoint::START, 0));
    };
    if head.seq <= 1 {
        return Ok((Checkpoint::START, 0));
    }
    let mut hash = [0u8; 32];
    if hex::decode_to_slice(head.prev, &mut hash).is_err() {
        return Ok((Checkpoint::START, 0));
    }
    let anchor = Checkpoint {
        seq: head.seq - 1,
        hash,
        ts: None,
        offset: 0,
    };
    Ok((anchor, line.len() as u64))
}

/// The writer's rotation state: where the live segment starts, how much was written after its
/// checkpoint, which sealed segments exist.
pub(super) struct Rotator<E> {
    pub(super) dir: PathBuf,
    pub(super) policy: Retention,
    /// Bytes of the live segment after its checkpoint line.
    pub(super) written: u64,
    /// Where the live segment's chain starts.
    pub(super) anchor: Checkpoint,
    /// Sealed segments, oldest first.
    pub(super) sealed: Vec<(u64, PathBuf)>,
    pub(super) _event: std::marker::PhantomData<fn() -> E>,
}

/// Why a rotation failed: before it sealed anything (the live segment goes on, nothing
/// changed), or after (the directory must be recovered by a restart).
#[derive(Debug)]
pub(super) enum RotateError {
    /// Nothing was sealed; `audit.jsonl.next` was removed.
    NotStarted(AuditError),
    /// The live segment may be sealed already: only [`recover`] at the next open finishes it.
    Started(AuditError),
}

/// What a rotation did.
pub(super) struct Rotated {
    /// The new live segment.
    pub(super) file: Arc<File>,
    /// The checkpoint entry: seq and hash.
    pub(super) seq: u64,
    pub(super) hash: [u8; 32],
    /// Where the new segment's chain starts.
    pub(super) anchor: Checkpoint,
}

impl<E: Checkpointed> Rotator<E> {
    /// Whether the live segment is due to be sealed.
    pub(super) fn due(&self) -> bool {
        self.written >= self.policy.rotate_bytes
    }

    /// Seals the live segment `live` (whose chain ends at `head_seq`/`head_hash`/`head_ts`)
    /// and starts the next one with a checkpoint at time `ts`, stopping after `stop_after`
    /// (tests: a crash there).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn rotate(
        &mut self,
        live: &Arc<File>,
        head: (u64, [u8; 32], u64),
        ts: u64,
        key: Option<&JournalKey>,
        stop_after: Option<Step>,
    ) -> Result<Rotated, RotateError> {
        let next_path = self.dir.join(NEXT_FILE);
        let (line, seq, hash, name) = match self.prepare(live, head, ts, key, &next_path) {
            Ok(prepared) => prepared,
            Err(e) => {
                // Nothing is sealed: the next segment is removed (if it was begun) and the live
                // one goes on.
                if next_path.exists()
                    && let Err(e) = rustix::fs::unlinkat(
                        rustix::fs::CWD,
                        &next_path,
                        rustix::fs::AtFlags::empty(),
                    )
                {
                    tracing::warn!(error = %e, "could not remove the unfinished next journal segment; the next start removes it");
                }
                return Err(RotateError::NotStarted(e));
            }
        };
        let (next, _) = line;
        if stop_after == Some(Step::NextWritten) {
            return Err(RotateError::Started(AuditError::Io(
                next_path,
                io::Error::other("test: cut"),
            )));
        }
        self.seal(next, (head.0, head.1), seq, hash, &name, stop_after)
            .map_err(RotateError::Started)
    }

    /// Step 1: the checkpoint for a rotation at `ts`, written durably to `next_path`.
    #[allow(clippy::type_complexity)]
    fn prepare(
        &self,
        live: &Arc<File>,
        head: (u64, [u8; 32], u64),
        ts: u64,
        key: Option<&JournalKey>,
        next_path: &Path,
    ) -> Result<((File, u64), u64, [u8; 32], String), AuditError> {
        let (head_seq, head_hash, head_ts) = head;
        let live_path = self.dir.join(AUDIT_FILE);
        let io_err = |p: &Path, e| AuditError::Io(p.to_path_buf(), e);
        // What the checkpoint carries, chosen from the whole live segment (its own checkpoint
        // first), read back through the chain check.
        let scanner = Scanner::of_file(live, &live_path, self.anchor, None, self.anchor.seq);
        let mut entries = super::stream::Entries::<E>::new(scanner, None, 0, None);
        let ts = ts.max(head_ts);
        let carried = E::carry(&mut entries, ts)?;
        let name = sealed_name(head_seq);
        let event = E::checkpoint(
            SealedEnd {
                segment: name.clone(),
                seq: head_seq,
                hash: hex::encode(head_hash),
                ts: head_ts,
            },
            carried,
        );
        let json = serde_json::to_string(&event).map_err(|e| AuditError::Encode(e.to_string()))?;
        let seq = head_seq + 1;
        let line_body = body(seq, ts, &head_hash, &json);
        let hash = chain_hash(&head_hash, &line_body);
        let mac = key.map(|k| k.mac(&hash));
        let mut line = Vec::with_capacity(line_body.len() + 200);
        push_line(&mut line, &line_body, &hash, mac.as_ref());

        // 1. The next segment, durably, under its temporary name.
        let mut next = OpenOptions::new()
            .read(true)
            .append(true)
            .create_new(true)
            .mode(0o600)
            .open(next_path)
            .map_err(|e| io_err(next_path, e))?;
        next.write_all(&line)
            .and_then(|()| next.sync_data())
            .map_err(|e| io_err(next_path, e))?;
        super::lock(next_path, &next)?;
        Ok(((next, line.len() as u64), seq, hash, name))
    }

    /// Steps 2-4: the live segment sealed, `next` made live, old segments deleted.
    fn seal(
        &mut self,
        next: File,
        head: (u64, [u8; 32]),
        seq: u64,
        hash: [u8; 32],
        name: &str,
        stop_after: Option<Step>,
    ) -> Result<Rotated, AuditError> {
        let (head_seq, head_hash) = head;
        let live_path = self.dir.join(AUDIT_FILE);
        let next_path = self.dir.join(NEXT_FILE);
        let io_err = |p: &Path, e| AuditError::Io(p.to_path_buf(), e);
        // 2. The live segment takes its sealed name.
        let sealed_path = self.dir.join(name);
        use rustix::fs::CWD;
        rustix::fs::renameat(CWD, &live_path, CWD, &sealed_path)
            .map_err(|e| io_err(&sealed_path, e.into()))?;
        sync_dir(&self.dir)?;
        if stop_after == Some(Step::Sealed) {
            return Err(AuditError::Io(sealed_path, io::Error::other("test: cut")));
        }
        // 3. The new segment goes live.
        rustix::fs::renameat(CWD, &next_path, CWD, &live_path)
            .map_err(|e| io_err(&next_path, e.into()))?;
        sync_dir(&self.dir)?;
        self.sealed.push((head_seq, sealed_path));
        let anchor = Checkpoint {
            seq: head_seq,
            hash: head_hash,
            ts: None,
            offset: 0,
        };
        self.anchor = anchor;
        self.written = 0;
        let rotated = Rotated {
            file: Arc::new(next),
            seq,
            hash,
            anchor,
        };
        if stop_after == Some(Step::Renamed) {
            return Ok(rotated);
        }
        // 4. Retention. A failure here loses nothing: the segment is deleted next time.
        if let Err(e) = self.retain(SystemTime::now()) {
            tracing::error!(error = %e, "deleting old journal segments failed; retried at the next rotation");
        }
        Ok(rotated)
    }

    /// Deletes the oldest sealed segments while more than `keep_segments` remain and the
    /// oldest was sealed (last modified) more than `keep_secs` before `now`.
    pub(super) fn retain(&mut self, now: SystemTime) -> Result<usize, AuditError> {
        let mut deleted = 0;
        while self.sealed.len() > self.policy.keep_segments {
            let (seq, path) = &self.sealed[0];
            let sealed_at = std::fs::metadata(path)
                .and_then(|m| m.modified())
                .map_err(|e| AuditError::Io(path.clone(), e))?;
            let age = now.duration_since(sealed_at).unwrap_or(Duration::ZERO);
            if age.as_secs() < self.policy.keep_secs {
                break;
            }
            rustix::fs::unlinkat(rustix::fs::CWD, path, rustix::fs::AtFlags::empty())
                .map_err(|e| AuditError::Io(path.clone(), e.into()))?;
            tracing::info!(segment = %path.display(), last_seq = seq, "deleted a sealed journal segment (retention; the backups hold it)");
            self.sealed.remove(0);
            deleted += 1;
        }
        if deleted > 0 {
            sync_dir(&self.dir)?;
        }
        Ok(deleted)
    }
}

/// `fsync` of a directory: its entries (a new, renamed or removed name) survive a crash.
pub(super) fn sync_dir(dir: &Path) -> Result<(), AuditError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| AuditError::Io(dir.to_path_buf(), e))
}
