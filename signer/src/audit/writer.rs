//! The journal's single writer thread and its group commit.
//!
//! Callers queue requests ([`Writer::queue`]) and hand what is queued to the writer thread in
//! one message ([`Writer::flush`]): the async `append` queues, lets every other request that is
//! ready in the same turn of the runtime queue too, then flushes, so the writer is woken once
//! per turn, not once per request. The writer takes a message, drains whatever else is on its
//! channel (up to [`MAX_BATCH_EVENTS`] events), assigns seqs and chain hashes in order, writes
//! all the lines with one write, calls `fdatasync` once, and only then completes every caller. If the
//! write or the `fdatasync` fails, part of the batch may be on disk while the chain head in
//! memory is not, so the log is poisoned: that batch and every later request fail. A restart
//! re-reads the file, which is the only truth.

use std::fmt;
use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::thread::JoinHandle;

use serde_json::value::RawValue;

use super::format::{body, chain_hash, push_line};
use super::key::JournalKey;
use super::segment::{Checkpointed, RotateError, Rotated, Rotator, Step};
use super::{Appended, AuditError, AuditStats, Live, MAX_BATCH_EVENTS, MAX_CLOCK_SKEW_SECS};

/// The writer's side of rotation ([`super::segment`]), without the event type.
pub(super) trait Rotate: Send {
    /// Counts bytes appended to the live segment.
    fn note_written(&mut self, bytes: u64);
    /// Whether the live segment is due to be sealed.
    fn due(&self) -> bool;
    /// Seals the live segment and opens the next one with its checkpoint at `ts`.
    fn rotate(
        &mut self,
        live: &Arc<File>,
        head: (u64, [u8; 32], u64),
        ts: u64,
        key: Option<&JournalKey>,
        stop_after: Option<Step>,
    ) -> Result<Rotated, RotateError>;
}

impl<E: Checkpointed> Rotate for Rotator<E> {
    fn note_written(&mut self, bytes: u64) {
        self.written = self.written.saturating_add(bytes);
    }

    fn due(&self) -> bool {
        Rotator::due(self)
    }

    fn rotate(
        &mut self,
        live: &Arc<File>,
        head: (u64, [u8; 32], u64),
        ts: u64,
        key: Option<&JournalKey>,
        stop_after: Option<Step>,
    ) -> Result<Rotated, RotateError> {
        Rotator::rotate(self, live, head, ts, key, stop_after)
    }
}

type Outcome = Result<Vec<Appended>, AuditError>;

/// The chain's end: what the next entry links to.
#[derive(Clone, Copy, Debug)]
pub(super) struct Head {
    pub(super) seq: u64,
    pub(super) hash: [u8; 32],
    pub(super) ts: u64,
}

/// How a caller waits for its request.
pub(super) enum Reply {
    Async(tokio::sync::oneshot::Sender<Outcome>),
    Blocking(mpsc::SyncSender<Outcome>),
}

impl Reply {
    fn send(self, outcome: Outcome) {
        // A caller that gave up waiting is no error of the writer's: its entries, if written,
        // stay written (and count), which is the safe direction for a spend ledger.
        match self {
            Reply::Async(tx) => drop(tx.send(outcome)),
            Reply::Blocking(tx) => drop(tx.send(outcome)),
        }
    }
}

struct Request<E> {
    ts: u64,
    events: Vec<E>,
    reply: Reply,
}

/// State the writer publishes to the handles.
#[derive(Debug)]
struct Shared {
    /// `(seq, hash)` of the last acknowledged entry.
    head: Mutex<(u64, [u8; 32])>,
    poisoned: AtomicBool,
    batches: AtomicU64,
    entries: AtomicU64,
    rotations: AtomicU64,
    /// Why rotation was turned off (a failure before anything was sealed), until a restart.
    rotation_failure: Mutex<Option<String>>,
}

/// The handles' side: the requests queued and not yet handed over, the channel to the thread,
/// and the thread, joined when the last handle goes.
pub(super) struct Writer<E> {
    path: PathBuf,
    queued: Mutex<Vec<Request<E>>>,
    tx: Option<mpsc::Sender<Vec<Request<E>>>>,
    thread: Option<JoinHandle<()>>,
    shared: Arc<Shared>,
}

impl<E: serde::Serialize + Send + 'static> Writer<E> {
    /// Starts the writer thread on `file` (opened with `O_APPEND`), continuing the chain at `head`;
    /// with `key`, every entry carries its MAC.
    pub(super) fn spawn(
        path: PathBuf,
        file: Arc<File>,
        head: Head,
        key: Option<Arc<JournalKey>>,
        rotator: Option<Box<dyn Rotate>>,
        live: Arc<Mutex<Live>>,
    ) -> Result<Writer<E>, AuditError> {
        let shared = Arc::new(Shared {
            head: Mutex::new((head.seq, head.hash)),
            poisoned: AtomicBool::new(false),
            batches: AtomicU64::new(0),
            entries: AtomicU64::new(0),
            rotations: AtomicU64::new(0),
            rotation_failure: Mutex::new(None),
        });
        let (tx, rx) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("vigil-audit".into())
            .spawn({
                let shared = Arc::clone(&shared);
                let path = path.clone();
                move || {
                    let mut segments = Segments {
                        rotator,
                        live,
                        file,
                    };
                    run(&path, &mut segments, head, key.as_deref(), &rx, &shared);
                }
            })
            .map_err(AuditError::Spawn)?;
        Ok(Writer {
            path,
            queued: Mutex::new(Vec::new()),
            tx: Some(tx),
            thread: Some(thread),
            shared,
        })
    }
}

impl<E> Writer<E> {
    /// Queues a request; the outcome arrives on `reply` once it is flushed and written.
    pub(super) fn queue(&self, ts: u64, events: Vec<E>, reply: Reply) -> Result<(), AuditError> {
        if self.is_poisoned() {
            return Err(AuditError::Poisoned);
        }
        if self.tx.is_none() {
            return Err(AuditError::WriterStopped);
        }
        self.lock_queued().push(Request { ts, events, reply });
        Ok(())
    }

    /// Hands every queued request to the writer thread in one message (nothing if none).
    pub(super) fn flush(&self) -> Result<(), AuditError> {
        let batch = std::mem::take(&mut *self.lock_queued());
        if batch.is_empty() {
            return Ok(());
        }
        let tx = self.tx.as_ref().ok_or(AuditError::WriterStopped)?;
        tx.send(batch).map_err(|_| AuditError::WriterStopped)
    }

    fn lock_queued(&self) -> std::sync::MutexGuard<'_, Vec<Request<E>>> {
        // A poisoned queue only means a panic while pushing; the requests in it are whole.
        self.queued
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(super) fn head(&self) -> (u64, [u8; 32]) {
        // A poisoned mutex only means a panic elsewhere; the pair itself is always whole.
        *self
            .shared
            .head
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(super) fn is_poisoned(&self) -> bool {
        self.shared.poisoned.load(Ordering::Acquire)
    }

    pub(super) fn stats(&self) -> AuditStats {
        AuditStats {
            batches: self.shared.batches.load(Ordering::Acquire),
            entries: self.shared.entries.load(Ordering::Acquire),
            rotations: self.shared.rotations.load(Ordering::Acquire),
        }
    }

    /// Why rotation is off until the next start, if it failed.
    pub(super) fn rotation_failure(&self) -> Option<String> {
        self.shared
            .rotation_failure
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

impl<E> fmt::Debug for Writer<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Writer")
            .field("path", &self.path)
            .field("head", &self.head())
            .field("poisoned", &self.is_poisoned())
            .finish_non_exhaustive()
    }
}

impl<E> Drop for Writer<E> {
    /// Closes the channel and waits for the thread, so the file is closed and unlocked when the
    /// last handle is gone (a reopen right after succeeds).
    fn drop(&mut self) {
        // Requests still queued are handed over, so that none is silently lost.
        drop(self.flush());
        drop(self.tx.take());
        if let Some(thread) = self.thread.take() {
            // A panicked writer has nothing left to flush; there is nothing to report here.
            drop(thread.join());
        }
    }
}

/// The live segment the writer appends to, and its rotation.
struct Segments {
    rotator: Option<Box<dyn Rotate>>,
    live: Arc<Mutex<Live>>,
    file: Arc<File>,
}

impl Segments {
    /// Seals the live segment if it is due, before a batch at time `ts`; the new head then is
    /// the checkpoint.
    fn rotate_if_due(
        &mut self,
        head: &mut Head,
        ts: u64,
        key: Option<&JournalKey>,
        shared: &Shared,
    ) -> Result<(), AuditError> {
        let Some(rotator) = self.rotator.as_mut().filter(|r| r.due()) else {
            return Ok(());
        };
        let ts = ts.max(head.ts);
        let rotated = match rotator.rotate(
            &self.file,
            (head.seq, head.hash, head.ts),
            ts,
            key,
            None,
        ) {
            Ok(rotated) => rotated,
            Err(RotateError::NotStarted(e)) => {
                // Nothing changed on disk: the live segment goes on growing, and rotation is
                // off until the next start (`status` shows it; the operator fixes the cause).
                tracing::error!(error = %e, "the journal could not be rotated; it goes on in one segment until the signer restarts: check the state directory");
                self.rotator = None;
                *shared
                    .rotation_failure
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(e.to_string());
                return Ok(());
            }
            Err(RotateError::Started(e)) => return Err(e),
        };
        self.file = Arc::clone(&rotated.file);
        *self
            .live
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Live {
            file: rotated.file,
            anchor: rotated.anchor,
            index: super::stream::Index::from(rotated.anchor),
        };
        *shared
            .head
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = (rotated.seq, rotated.hash);
        shared.entries.fetch_add(1, Ordering::AcqRel);
        shared.rotations.fetch_add(1, Ordering::AcqRel);
        *head = Head {
            seq: rotated.seq,
            hash: rotated.hash,
            ts,
        };
        Ok(())
    }
}

/// The writer thread's loop: one batch per turn until every handle is dropped.
fn run<E: serde::Serialize>(
    path: &Path,
    segments: &mut Segments,
    mut head: Head,
    key: Option<&JournalKey>,
    rx: &mpsc::Receiver<Vec<Request<E>>>,
    shared: &Shared,
) {
    let mut buf = Vec::new();
    while let Ok(mut batch) = rx.recv() {
        let mut queued: usize = batch.iter().map(|r| r.events.len()).sum();
        while queued < MAX_BATCH_EVENTS {
            let Ok(more) = rx.try_recv() else { break };
            queued += more.iter().map(|r| r.events.len()).sum::<usize>();
            batch.extend(more);
        }
        if shared.poisoned.load(Ordering::Acquire) {
            batch
                .into_iter()
                .for_each(|r| r.reply.send(Err(AuditError::Poisoned)));
            continue;
        }
        let first_ts = batch.first().map_or(head.ts, |r| r.ts);
        if let Err(e) = segments.rotate_if_due(&mut head, first_ts, key, shared) {
            shared.poisoned.store(true, Ordering::Release);
            tracing::error!(path = %path.display(), error = %e, "sealing the journal's live segment failed; the log is poisoned (a restart finishes or undoes the rotation)");
            let text = e.to_string();
            for r in batch {
                r.reply.send(Err(AuditError::Io(
                    path.to_path_buf(),
                    io::Error::other(text.clone()),
                )));
            }
            continue;
        }
        buf.clear();
        let mut next = head;
        let mut accepted = Vec::with_capacity(batch.len());
        for request in batch {
            match encode(&mut buf, &mut next, request.ts, &request.events, key) {
                Ok(appended) => accepted.push((request.reply, appended)),
                Err(e) => request.reply.send(Err(e)),
            }
        }
        if accepted.is_empty() {
            continue;
        }
        match write_durably(&segments.file, &buf) {
            Ok(()) => {
                if let Some(r) = segments.rotator.as_mut() {
                    r.note_written(buf.len() as u64);
                }
                *shared
                    .head
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = (next.seq, next.hash);
                shared.batches.fetch_add(1, Ordering::AcqRel);
                shared
                    .entries
                    .fetch_add(next.seq - head.seq, Ordering::AcqRel);
                head = next;
                accepted
                    .into_iter()
                    .for_each(|(reply, appended)| reply.send(Ok(appended)));
            }
            Err(e) => {
                shared.poisoned.store(true, Ordering::Release);
                tracing::error!(path = %path.display(), error = %e, "audit log write failed; the log is poisoned");
                for (reply, _) in accepted {
                    let copy = io::Error::new(e.kind(), e.to_string());
                    reply.send(Err(AuditError::Io(path.to_path_buf(), copy)));
                }
            }
        }
    }
}

/// One write and one `fdatasync` for the whole batch.
fn write_durably(file: &File, buf: &[u8]) -> io::Result<()> {
    let mut file = file;
    file.write_all(buf)?;
    file.sync_data()
}

/// Encodes one request's events as consecutive lines after `next`, advancing it. On error
/// nothing of this request stays in `buf` and `next` is unchanged (its seqs are not used).
fn encode<E: serde::Serialize>(
    buf: &mut Vec<u8>,
    next: &mut Head,
    ts: u64,
    events: &[E],
    key: Option<&JournalKey>,
) -> Result<Vec<Appended>, AuditError> {
    if ts.saturating_add(MAX_CLOCK_SKEW_SECS) < next.ts {
        return Err(AuditError::ClockWentBack {
            ts,
            last_ts: next.ts,
        });
    }
    let start = buf.len();
    let mut cursor = *next;
    let mut appended = Vec::with_capacity(events.len());
    for event in events {
        let json = match event_json(event) {
            Ok(json) => json,
            Err(e) => {
                buf.truncate(start);
                return Err(e);
            }
        };
        let seq = cursor.seq + 1;
        let body = body(seq, ts, &cursor.hash, &json);
        let hash = chain_hash(&cursor.hash, &body);
        let mac = key.map(|k| k.mac(&hash));
        push_line(buf, &body, &hash, mac.as_ref());
        cursor = Head { seq, hash, ts };
        appended.push(Appended { seq, hash });
    }
    *next = cursor;
    Ok(appended)
}

/// The event as compact JSON that the verifier will read back byte for byte (an event holding
/// a `RawValue` with a newline or outer whitespace would not be).
fn event_json<E: serde::Serialize>(event: &E) -> Result<String, AuditError> {
    let json = serde_json::to_string(event).map_err(|e| AuditError::Encode(e.to_string()))?;
    let round_trips = serde_json::from_str::<&RawValue>(&json).is_ok_and(|raw| raw.get() == json);
    if json.contains('\n') || !round_trips {
        return Err(AuditError::Encode(format!(
            "the event's JSON does not read back as the same bytes: {json:?}"
        )));
    }
    Ok(json)
}
