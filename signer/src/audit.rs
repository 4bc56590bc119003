//! The signer's journal: a durable, hash-chained, append-only log that is both the spend ledger
//! and the audit log, written to the live segment `audit.jsonl` (sealed and followed by a new
//! segment that opens with a checkpoint once it is full: [`segment`]), so that a signature's record is on disk after a
//! single `fdatasync`, before the signature is released.
//!
//! Each line is one JSON object `{"seq":N,"ts":T,"prev":"<hex>","event":<event>,"hash":"<hex>"}`
//! where `hash = SHA-256(prev || body)` and `body` is the line without its `hash` member (the
//! exact bytes are defined in [`format`]). Editing, deleting or reordering any entry breaks the
//! chain at that entry or the next one; [`verify_file`] names the first bad line.
//!
//! Life cycle: [`Opened::open`] reads and verifies the live segment (truncating a torn final line
//! left by a crash) without starting any thread, so the signer can confine itself with landlock
//! first; [`Opened::entries`] then streams the verified entries (the replay at start), and
//! [`Opened::start`] starts the single writer thread and returns an [`AuditLog`] handle. No
//! reader holds the journal in memory: every read streams it line by line ([`stream`]), from
//! the start or from a checkpoint, so memory does not grow with the journal's length. Appends are group-committed: the writer takes every request queued at that moment,
//! writes all their lines with one write and makes them durable with one `fdatasync`, then
//! completes every caller. A failed write or `fdatasync` poisons the log: that batch and every
//! later append fail, so the signer stops releasing signatures (fail closed).
//!
//! Operator-facing description: `docs/audit.md`.

mod format;
pub mod key;
pub mod segment;
pub mod stream;
mod verify_dir;
mod writer;

use std::fs::File;
use std::io;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

pub use format::{
    VerifyFailure, VerifyReport, verify_file, verify_file_keyed, verify_file_with_head,
    verify_reader,
};
pub use key::{JournalKey, KeyProblem, KeyReport};
pub use segment::{Carried, Checkpointed, Retention, SealedEnd};
pub use stream::{CHECKPOINT_EVERY, Checkpoint, Entries};
pub use verify_dir::{DirReport, verify_dir};

/// The journal's file name inside the signer's state directory.
pub const AUDIT_FILE: &str = "audit.jsonl";

/// `prev` of the first entry: 32 zero bytes.
pub const GENESIS: [u8; 32] = [0; 32];

/// How far (seconds) an entry's `ts` may lie before the previous entry's `ts`: clock
/// corrections smaller than this are tolerated, larger steps back are refused.
pub const MAX_CLOCK_SKEW_SECS: u64 = 300;

/// The most events the writer puts in one batch (one write, one `fdatasync`). A single request
/// larger than this is still written whole, in one batch of its own.
pub const MAX_BATCH_EVENTS: usize = 512;

/// One verified entry of the journal.
#[derive(Clone, Debug)]
pub struct Entry<E> {
    /// Position in the chain: 1-based and contiguous.
    pub seq: u64,
    /// Unix seconds, as given by the caller of `append`.
    pub ts: u64,
    /// The previous entry's `hash` ([`GENESIS`] for the first entry).
    pub prev: [u8; 32],
    /// `SHA-256(prev || body)`.
    pub hash: [u8; 32],
    /// `HMAC(journal key, hash)` for a keyed entry ([`key`]); none in entries of earlier releases.
    pub mac: Option<[u8; 32]>,
    /// The recorded event.
    pub event: E,
}

/// Where an appended event landed in the chain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Appended {
    /// The entry's sequence number.
    pub seq: u64,
    /// The entry's hash (the new head of the chain if it is the last one).
    pub hash: [u8; 32],
}

/// Counters of the writer, for `status` and for tests of group commit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AuditStats {
    /// Batches written, each with one write and one `fdatasync`.
    pub batches: u64,
    /// Entries written by this process (not counting the ones replayed at open).
    pub entries: u64,
    /// Segments sealed by this process.
    pub rotations: u64,
}

/// Why the journal could not be opened, verified or appended to.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// A complete line of the journal fails verification: the log was edited, truncated in the
    /// middle or reordered. The signer refuses to start on it.
    #[error(transparent)]
    Verify(#[from] VerifyFailure),
    /// Reading, creating, truncating, writing or syncing the journal failed.
    #[error("audit log {path}: {err}; check the disk and the state directory, then restart the signer", path = .0.display(), err = .1)]
    Io(PathBuf, io::Error),
    /// The journal's MACs do not vouch for it under the keystore's journal key ([`key`]): it
    /// was rewritten by someone without the key, or it predates keyed journals.
    #[error("audit log {path}: {problem}", path = .0.display(), problem = .1)]
    Key(PathBuf, KeyProblem),
    /// An earlier write or `fdatasync` failed, so nothing can be made durable any more.
    #[error(
        "the audit log is poisoned: an earlier write or fdatasync failed, so no later entry can be made durable; no signature may be released: check the disk, then restart the signer"
    )]
    Poisoned,
    /// An event could not be serialized to one line of JSON (nothing was written for it).
    #[error("an audit event could not be encoded as one line of JSON: {0}")]
    Encode(String),
    /// The caller's timestamp lies too far before the last entry's (nothing was written).
    #[error(
        "the clock went back: timestamp {ts} is more than {MAX_CLOCK_SKEW_SECS} s before the last audit entry's ({last_ts}); fix the system clock (the entry was not written)"
    )]
    ClockWentBack {
        /// The timestamp given to `append`.
        ts: u64,
        /// The timestamp of the last entry in the log.
        last_ts: u64,
    },
    /// Another process (or another handle in this one) holds the journal open for writing.
    #[error(
        "audit log {}: another process holds it open for writing (another signer running on the same state directory?); stop it first",
        .0.display()
    )]
    Locked(PathBuf),
    /// The journal exists but is not a regular file owned safely (e.g. a directory, or
    /// writable by group or others).
    #[error("audit log {path}: {reason}", path = .0.display(), reason = .1)]
    Unsafe(PathBuf, String),
    /// The writer thread could not be started.
    #[error("could not start the audit writer thread: {0}")]
    Spawn(io::Error),
    /// The writer thread is gone (it panicked); nothing more can be appended.
    #[error("the audit writer thread stopped; no signature may be released: restart the signer")]
    WriterStopped,
}

/// The journal, opened and verified, with no thread started yet.
///
/// The signer confines itself with landlock between [`Opened::open`] and [`Opened::start`]:
/// landlock applies only to threads created after it.
#[derive(Debug)]
pub struct Opened<E> {
    path: PathBuf,
    file: Arc<File>,
    /// Where the live segment's chain starts (the journal's start, or before its checkpoint).
    anchor: Checkpoint,
    /// Length of the live segment's checkpoint line (0 when it has none).
    anchor_len: u64,
    /// The sealed segments, oldest first, listed at open (before confinement: no directory
    /// listing is allowed after it).
    sealed: Vec<(u64, PathBuf)>,
    /// Where the verified chain ends.
    end: Checkpoint,
    index: stream::Index,
    truncated: u64,
    /// The keyed verification made at open, when a key was given.
    keyed: Option<(KeyReport, Option<KeyProblem>)>,
    _event: std::marker::PhantomData<fn() -> E>,
}

impl<E: serde::Serialize + serde::de::DeserializeOwned + Send + 'static> Opened<E> {
    /// Opens or creates `dir/audit.jsonl` (mode 0600; `dir` must exist), takes an exclusive lock
    /// on it, and reads and verifies every entry.
    ///
    /// A torn final line (no trailing newline: a write cut by a crash) is truncated away and
    /// reported by [`Opened::truncated_tail_bytes`]; it was never acknowledged, because
    /// acknowledgement happens only after `fdatasync`. Any complete line that fails verification,
    /// or whose event is not an `E`, is an error naming the line: the log was tampered with, and
    /// the signer must refuse to start.
    pub fn open(dir: &Path) -> Result<Opened<E>, AuditError> {
        Self::open_keyed(dir, None)
    }

    /// As [`Opened::open`], and with `key` the same pass checks the entries' MACs
    /// ([`key`]); the verdict is [`Opened::key_check`].
    pub fn open_keyed(dir: &Path, key: Option<&JournalKey>) -> Result<Opened<E>, AuditError> {
        let path = dir.join(AUDIT_FILE);
        let io_err = |e| AuditError::Io(path.clone(), e);
        // A rotation cut by a crash is finished or undone first (`segment`).
        segment::recover(dir)?;
        let sealed = segment::list_sealed(dir).map_err(|e| AuditError::Io(dir.to_path_buf(), e))?;
        let mut options = std::fs::OpenOptions::new();
        options.read(true).append(true).mode(0o600);
        let (file, created) = match options.clone().create_new(true).open(&path) {
            Ok(file) => (file, true),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                (options.open(&path).map_err(io_err)?, false)
            }
            Err(e) => return Err(io_err(e)),
        };
        check_file(&path, &file)?;
        lock(&path, &file)?;
        if created {
            // The new directory entry must survive a crash too, or the first fdatasync'd
            // entries could vanish with their file.
            File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(|e| AuditError::Io(dir.to_path_buf(), e))?;
        }
        let file = Arc::new(file);
        let (anchor, anchor_len) = segment::anchor_of(&file, &path)?;
        let (end, index, torn, keyed) = verify_at_open::<E>(&path, &file, anchor, key)?;
        if torn > 0 {
            tracing::warn!(
                path = %path.display(),
                bytes = torn,
                "removing a torn final line of the audit log (a write cut by a crash; it was never acknowledged)"
            );
            file.set_len(end.offset).map_err(io_err)?;
            file.sync_all().map_err(io_err)?;
        }
        Ok(Opened {
            path,
            file,
            anchor,
            anchor_len,
            sealed,
            end,
            index,
            truncated: torn,
            keyed,
            _event: std::marker::PhantomData,
        })
    }

    /// The keyed verification: made at open ([`Opened::open_keyed`]) or now (another pass over
    /// the journal). `Ok((report, None))` when the MACs vouch for the whole chain under `key`.
    pub fn key_check(
        &self,
        key: &JournalKey,
    ) -> Result<(KeyReport, Option<KeyProblem>), AuditError> {
        if let Some(done) = &self.keyed {
            return Ok(done.clone());
        }
        let mut scanner = stream::Scanner::of_file(
            &self.file,
            &self.path,
            self.anchor,
            Some(self.end.offset),
            self.anchor.seq,
        );
        let mut check = key::KeyCheck::new(key);
        while let Some(c) = scanner.next_checked()? {
            check.see(c.seq, &c.hash, c.mac.as_ref());
        }
        Ok(check.finish())
    }

    /// The verified entries, in order, read again from the file as the caller iterates (the
    /// chain is checked again as it is read, and must end where it ended at open).
    pub fn entries(&self) -> Entries<'_, E> {
        let scanner = stream::Scanner::of_file(
            &self.file,
            &self.path,
            self.anchor,
            Some(self.end.offset),
            self.anchor.seq,
        );
        Entries::new(scanner, Some(self.end), 0, None)
    }

    /// The journal's path (for messages).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Where the verified chain ends: its last entry's seq, hash and time, and the file's length.
    pub fn end(&self) -> Checkpoint {
        self.end
    }

    /// The seq before the live segment's first entry: 0, or the last seq of the newest sealed
    /// segment (entries up to it are in sealed segments, or carried by the checkpoint).
    pub fn anchor_seq(&self) -> u64 {
        self.anchor.seq
    }

    /// Bytes of a torn final line removed at open (0 when the file ended cleanly).
    pub fn truncated_tail_bytes(&self) -> u64 {
        self.truncated
    }

    /// Starts the single writer thread and returns its handle; with `key`, every entry it
    /// writes carries its MAC, and the handle's verification checks MACs.
    pub fn start(self, key: Option<JournalKey>) -> Result<AuditLog<E>, AuditError> {
        self.start_with(key, None)
    }

    fn start_with(
        self,
        key: Option<JournalKey>,
        rotator: Option<Box<dyn writer::Rotate>>,
    ) -> Result<AuditLog<E>, AuditError> {
        let key = key.map(Arc::new);
        let head = writer::Head {
            seq: self.end.seq,
            hash: self.end.hash,
            ts: self.end.ts.unwrap_or(0),
        };
        let path = self.path.clone();
        let live = Arc::new(Mutex::new(Live {
            file: Arc::clone(&self.file),
            anchor: self.anchor,
            index: self.index,
        }));
        let inner = writer::Writer::spawn(
            self.path,
            self.file,
            head,
            key.clone(),
            rotator,
            Arc::clone(&live),
        )?;
        Ok(AuditLog {
            inner: Arc::new(inner),
            path,
            live,
            key,
        })
    }

    /// Test hook: the file the writer will write to.
    #[cfg(test)]
    pub(crate) fn file_for_test(&self) -> Arc<File> {
        Arc::clone(&self.file)
    }

    /// Test hook: makes the writer write to `file` instead (e.g. `/dev/full`, to make writes fail).
    #[cfg(test)]
    pub(crate) fn replace_file_for_test(&mut self, file: File) {
        self.file = Arc::new(file);
    }
}

impl<E: Checkpointed> Opened<E> {
    /// As [`Opened::start`], and the journal rotates under `retention` ([`segment`]): the writer
    /// seals the live segment when it is full, opens the next with a checkpoint, and deletes
    /// old sealed segments (now, too, if the policy says so).
    pub fn start_rotating(
        self,
        key: Option<JournalKey>,
        retention: Retention,
    ) -> Result<AuditLog<E>, AuditError> {
        let dir = self
            .path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default();
        let mut rotator = segment::Rotator::<E> {
            dir,
            policy: retention,
            written: self.end.offset.saturating_sub(self.anchor_len),
            anchor: self.anchor,
            sealed: self.sealed.clone(),
            _event: std::marker::PhantomData,
        };
        rotator.retain(std::time::SystemTime::now())?;
        self.start_with(key, Some(Box::new(rotator)))
    }
}

/// The live segment as readers see it: replaced whole by a rotation.
#[derive(Debug)]
struct Live {
    /// A descriptor on the live segment, for reading it back (`pread`, offset untouched).
    file: Arc<File>,
    /// Where its chain starts.
    anchor: Checkpoint,
    /// Checkpoints every [`CHECKPOINT_EVERY`] entries, from the verification at open and
    /// extended by every later read.
    index: stream::Index,
}

/// A handle on the running journal. Cheap to clone; the writer thread stops (and the file is
/// closed and unlocked) when the last handle is dropped.
#[derive(Debug)]
pub struct AuditLog<E> {
    inner: Arc<writer::Writer<E>>,
    path: PathBuf,
    /// The live segment, for reading it back.
    live: Arc<Mutex<Live>>,
    /// The journal key the writer MACs with, to check MACs when reading back.
    key: Option<Arc<JournalKey>>,
}

impl<E> Clone for AuditLog<E> {
    fn clone(&self) -> Self {
        AuditLog {
            inner: Arc::clone(&self.inner),
            path: self.path.clone(),
            live: Arc::clone(&self.live),
            key: self.key.clone(),
        }
    }
}

impl<E> AuditLog<E> {
    /// The journal's path (for messages).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Verifies the whole chain as it is on disk now, through the descriptor opened at start (a
    /// confined signer running as another user than the file's owner can still read it), and
    /// keeps the last `keep` entries' raw parts. Streams: memory is one buffer and `keep`
    /// entries. A final line being appended meanwhile is not read.
    pub fn verify_keeping_last(
        &self,
        keep: usize,
    ) -> (Result<VerifyReport, VerifyFailure>, Vec<RawEntry>) {
        let (file, anchor) = {
            let live = self.lock_live();
            (Arc::clone(&live.file), live.anchor)
        };
        let mut scanner = stream::Scanner::of_file(&file, &self.path, anchor, None, anchor.seq);
        let mut latest = std::collections::VecDeque::with_capacity(keep.min(1024));
        let mut index = stream::Index::from(anchor);
        let mut check = self.key.as_deref().map(key::KeyCheck::new);
        let result = loop {
            match scanner.next_checked() {
                Ok(Some(c)) => {
                    if let Some(check) = check.as_mut() {
                        check.see(c.seq, &c.hash, c.mac.as_ref());
                    }
                    if latest.len() == keep {
                        latest.pop_front();
                    }
                    if keep > 0 {
                        latest.push_back(RawEntry {
                            seq: c.seq,
                            ts: c.ts,
                            event: c.event.get().to_string(),
                        });
                    }
                    index.note(scanner.position());
                }
                Ok(None) => {
                    let end = scanner.position();
                    if let Some((_, Some(problem))) = check.take().map(key::KeyCheck::finish) {
                        break Err(scanner.failure_next(format!("the journal's MACs: {problem}")));
                    }
                    break Ok(VerifyReport {
                        entries: end.seq,
                        head_seq: end.seq,
                        head_hash: end.hash,
                    });
                }
                Err(failure) => break Err(failure),
            }
        };
        if result.is_ok() {
            let mut live = self.lock_live();
            if Arc::ptr_eq(&live.file, &file) {
                live.index = index;
            }
        }
        (result, latest.into_iter().collect())
    }

    /// The entries from seq `from` on (all of them for 0 or 1), verified as they are read from
    /// the nearest checkpoint before `from`, up to the end as it is now (a final line being
    /// appended meanwhile is not read). The reader of "events since seq N".
    /// In a rotated journal the live segment is read: an entry before it is found among the
    /// entries its checkpoint carries (the caller looks there).
    pub fn entries_from(&self, from: u64) -> Entries<'_, E> {
        let (file, start, anchor) = {
            let live = self.lock_live();
            (Arc::clone(&live.file), live.index.before(from), live.anchor)
        };
        let scanner = stream::Scanner::of_file(&file, &self.path, start, None, anchor.seq);
        Entries::new(scanner, None, from, Some((&*self.live, file)))
    }

    fn lock_live(&self) -> std::sync::MutexGuard<'_, Live> {
        // The view is only ever replaced or pushed to whole; a poisoned lock leaves it usable.
        self.live
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// An entry as read by [`AuditLog::verify_keeping_last`]: its event as the JSON it was written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RawEntry {
    /// The entry's seq.
    pub seq: u64,
    /// Its time.
    pub ts: u64,
    /// Its event's exact JSON.
    pub event: String,
}

impl<E: serde::Serialize + Send + 'static> AuditLog<E> {
    /// Appends `events` (all with timestamp `ts`) as consecutive entries; resolves only after
    /// they are on disk. If the future is dropped early the entries may still be written (and
    /// then count, e.g. as spent): callers must not release anything before this resolves.
    ///
    /// Group commit within one turn of the runtime: the request is queued, the task yields so
    /// that every other request ready in this turn queues its entries too, and the first to
    /// resume hands them all to the writer in one message (one wake-up, one batch).
    pub async fn append(&self, ts: u64, events: Vec<E>) -> Result<Vec<Appended>, AuditError> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.inner.queue(ts, events, writer::Reply::Async(tx))?;
        // Flushed even if this future is dropped while it yields.
        let flush = FlushOnDrop(&self.inner);
        tokio::task::yield_now().await;
        drop(flush);
        rx.await.map_err(|_| AuditError::WriterStopped)?
    }

    /// Blocking variant of [`AuditLog::append`] for non-async callers (tests, CLIs). Do not call
    /// it from an async task: it blocks the thread until the batch is on disk.
    pub fn append_blocking(&self, ts: u64, events: Vec<E>) -> Result<Vec<Appended>, AuditError> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        self.inner.queue(ts, events, writer::Reply::Blocking(tx))?;
        self.inner.flush()?;
        rx.recv().map_err(|_| AuditError::WriterStopped)?
    }
}

/// Hands what is queued to the writer when dropped (the end of `append`'s yield, or its
/// cancellation). A flush that fails leaves the requests' replies unsent: their callers then
/// see [`AuditError::WriterStopped`].
struct FlushOnDrop<'a, E>(&'a writer::Writer<E>);

impl<E> Drop for FlushOnDrop<'_, E> {
    fn drop(&mut self) {
        if let Err(e) = self.0.flush() {
            tracing::error!(error = %e, "could not hand queued audit entries to the writer");
        }
    }
}

impl<E> AuditLog<E> {
    /// `(last seq, last hash)` acknowledged so far; `(0, GENESIS)` when empty.
    pub fn head(&self) -> (u64, [u8; 32]) {
        self.inner.head()
    }

    /// True once a write or `fdatasync` has failed: every append fails from then on.
    pub fn is_poisoned(&self) -> bool {
        self.inner.is_poisoned()
    }

    /// Batches and entries written by this process.
    pub fn stats(&self) -> AuditStats {
        self.inner.stats()
    }

    /// Why the journal's rotation is off until the next start (it failed before sealing
    /// anything, so the live segment goes on growing), if it is.
    pub fn rotation_failure(&self) -> Option<String> {
        self.inner.rotation_failure()
    }
}

/// Refuses a journal that is not a regular file, or that others could write to.
fn check_file(path: &Path, file: &File) -> Result<(), AuditError> {
    let meta = file
        .metadata()
        .map_err(|e| AuditError::Io(path.to_path_buf(), e))?;
    if !meta.file_type().is_file() {
        return Err(AuditError::Unsafe(
            path.to_path_buf(),
            "is not a regular file; move it away and restore the journal from a backup".into(),
        ));
    }
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o022 != 0 {
        return Err(AuditError::Unsafe(
            path.to_path_buf(),
            format!(
                "is writable by group or others (mode {mode:o}); run `chmod 600` on it, and verify it with `vigil-signer audit-verify` since anyone could have edited it"
            ),
        ));
    }
    Ok(())
}

/// Takes an exclusive advisory lock, so two signers never interleave appends to one chain.
fn lock(path: &Path, file: &File) -> Result<(), AuditError> {
    use rustix::fs::{FlockOperation, flock};
    match flock(file, FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => Ok(()),
        Err(rustix::io::Errno::WOULDBLOCK) => Err(AuditError::Locked(path.to_path_buf())),
        Err(e) => Err(AuditError::Io(path.to_path_buf(), e.into())),
    }
}

/// Verifies every complete line at open, parsing each event as an `E` (and dropping it).
/// Returns where the chain ends, the checkpoint index, and the bytes of a torn final line.
type KeyVerdict = (KeyReport, Option<KeyProblem>);

fn verify_at_open<E: serde::de::DeserializeOwned>(
    path: &Path,
    file: &Arc<File>,
    anchor: Checkpoint,
    key: Option<&JournalKey>,
) -> Result<(Checkpoint, stream::Index, u64, Option<KeyVerdict>), AuditError> {
    let mut scanner = stream::Scanner::of_file(file, path, anchor, None, anchor.seq);
    let mut index = stream::Index::from(anchor);
    let mut check = key.map(key::KeyCheck::new);
    while let Some(entry) = scanner.next_entry::<E>()? {
        if let Some(check) = check.as_mut() {
            check.see(entry.seq, &entry.hash, entry.mac.as_ref());
        }
        index.note(scanner.position());
    }
    Ok((
        scanner.position(),
        index,
        scanner.torn_bytes(),
        check.map(key::KeyCheck::finish),
    ))
}

#[cfg(test)]
mod tests;
