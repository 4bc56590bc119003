//! Reading the journal as a stream, in memory that does not grow with its length.
//!
//! Every reader of the journal (the verification at open, the replay at start, the `audit` op,
//! `audit-verify`, and readers of "entries since seq N") goes through a [`Scanner`]: it reads one
//! line at a time through a buffer, checks it against the chain ([`Chain::check`]) and hands it
//! out, so the memory a read needs is one buffer and one line.
//!
//! A read need not start at the beginning: a [`Checkpoint`] is a place in the chain (the byte
//! offset where an entry starts, with the seq, hash and time of the entry before it), and a
//! scan started there verifies every later entry against it exactly as a scan from the start
//! would. The journal keeps a sparse [`Index`] of checkpoints (one every
//! [`CHECKPOINT_EVERY`] entries, made by the verification at open), so a reader of the entries
//! from seq N reads at most [`CHECKPOINT_EVERY`] entries it does not want. The checkpoints are
//! in memory only and made by this process's own verification: they are as trustworthy as the
//! chain they were read from.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::{Arc, Mutex};

use super::format::{Chain, Checked};
use super::{AuditError, Entry, GENESIS, VerifyFailure};

/// Entries between two checkpoints of the in-memory index.
pub const CHECKPOINT_EVERY: u64 = 4096;

/// Size of the read buffer of a scan.
const READ_BUFFER: usize = 64 * 1024;

/// A place in the chain where a scan can start: the entry at byte `offset` is seq `seq + 1`, and
/// must link to `hash`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Checkpoint {
    /// Seq of the last entry before `offset` (0 at the start).
    pub seq: u64,
    /// Its hash ([`GENESIS`] at the start).
    pub hash: [u8; 32],
    /// Its time (none at the start).
    pub ts: Option<u64>,
    /// The byte offset of the entry after it.
    pub offset: u64,
}

impl Checkpoint {
    /// The start of every journal.
    pub const START: Checkpoint = Checkpoint {
        seq: 0,
        hash: GENESIS,
        ts: None,
        offset: 0,
    };
}

/// The sparse index of checkpoints: one every [`CHECKPOINT_EVERY`] entries, and the start.
#[derive(Clone, Debug)]
pub(super) struct Index {
    points: Vec<Checkpoint>,
}

impl Default for Index {
    fn default() -> Self {
        Index::from(Checkpoint::START)
    }
}

impl Index {
    /// An index whose first point is `start` (the start of the live segment).
    pub(super) fn from(start: Checkpoint) -> Self {
        Index {
            points: vec![start],
        }
    }

    /// Notes `at` if it falls on the index's spacing (callers pass every place they pass).
    pub(super) fn note(&mut self, at: Checkpoint) {
        let last = self.points.last().map_or(0, |p| p.seq);
        if at.seq.is_multiple_of(CHECKPOINT_EVERY) && at.seq > last {
            self.points.push(at);
        }
    }

    /// The latest checkpoint from which entry `seq` can be read.
    pub(super) fn before(&self, seq: u64) -> Checkpoint {
        let i = self.points.partition_point(|p| p.seq < seq);
        match self.points.get(i.saturating_sub(1)) {
            Some(p) => *p,
            None => self.points.first().copied().unwrap_or(Checkpoint::START),
        }
    }
}

/// Reads a file by `pread` from an offset of its own, so several readers (and the writer's
/// `O_APPEND` writes) share one descriptor without moving each other's offsets.
pub(super) struct PreadReader {
    file: Arc<File>,
    offset: u64,
    /// Stop here (the verified length at open), or read to the end as it is now.
    end: Option<u64>,
}

impl PreadReader {
    pub(super) fn new(file: Arc<File>, offset: u64, end: Option<u64>) -> Self {
        PreadReader { file, offset, end }
    }
}

impl Read for PreadReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let room = match self.end {
            Some(end) => usize::try_from(end.saturating_sub(self.offset)).unwrap_or(usize::MAX),
            None => usize::MAX,
        };
        let want = buf.len().min(room);
        if want == 0 {
            return Ok(0);
        }
        let n = self.file.read_at(&mut buf[..want], self.offset)?;
        self.offset += n as u64;
        Ok(n)
    }
}

/// Verifies a journal line by line from a checkpoint.
pub(super) struct Scanner<R> {
    reader: R,
    chain: Chain,
    line: Vec<u8>,
    /// Byte offset of the next line.
    offset: u64,
    /// Bytes of a final line without its newline, once the end is reached.
    torn: u64,
}

impl Scanner<BufReader<PreadReader>> {
    /// A scan of `file` from `from` up to `end` (or to the end as it is now). `anchor` is the
    /// seq before the file's first line (0 for the first segment), so lines are numbered in
    /// the file.
    pub(super) fn of_file(
        file: &Arc<File>,
        path: &Path,
        from: Checkpoint,
        end: Option<u64>,
        anchor: u64,
    ) -> Self {
        let reader = BufReader::with_capacity(
            READ_BUFFER,
            PreadReader::new(Arc::clone(file), from.offset, end),
        );
        Scanner::new(reader, path, from).anchored(anchor)
    }
}

impl<R: BufRead> Scanner<R> {
    /// A scan of `reader`, whose first byte is at `from.offset` in the journal.
    pub(super) fn new(reader: R, path: &Path, from: Checkpoint) -> Self {
        Scanner {
            reader,
            chain: Chain::resume(path, from),
            line: Vec::new(),
            offset: from.offset,
            torn: 0,
        }
    }

    /// Numbers lines from the file's start when its first line follows seq `anchor` (a
    /// segment that opens with a checkpoint: [`super::segment`]).
    pub(super) fn anchored(mut self, anchor: u64) -> Self {
        self.chain.renumber(anchor);
        self
    }

    /// The next complete line, verified; `None` at the end (a final line without a newline
    /// ends the scan too, its length in [`Scanner::torn_bytes`]).
    pub(super) fn next_checked(&mut self) -> Result<Option<Checked<'_>>, VerifyFailure> {
        self.line.clear();
        let n = self
            .reader
            .read_until(b'\n', &mut self.line)
            .map_err(|e| self.chain.failure_next(None, format!("cannot read: {e}")))?;
        if n == 0 {
            return Ok(None);
        }
        if self.line.last() != Some(&b'\n') {
            self.torn = n as u64;
            return Ok(None);
        }
        self.offset += n as u64;
        self.chain.check(&self.line).map(Some)
    }

    /// Where the chain stands after the last line returned.
    pub(super) fn position(&self) -> Checkpoint {
        self.chain.checkpoint(self.offset)
    }

    /// Bytes of a final line without a newline, found at the end (0 otherwise).
    pub(super) fn torn_bytes(&self) -> u64 {
        self.torn
    }

    /// A failure at the line after the last one returned.
    pub(super) fn failure_next(&self, reason: String) -> VerifyFailure {
        self.chain.failure_next(None, reason)
    }

    /// The next entry with its event parsed as an `E`; an event that is not one is a failure
    /// naming its line.
    pub(super) fn next_entry<E: serde::de::DeserializeOwned>(
        &mut self,
    ) -> Result<Option<Entry<E>>, VerifyFailure> {
        let Some(c) = self.next_checked()? else {
            return Ok(None);
        };
        let (seq, ts, prev, hash, mac) = (c.seq, c.ts, c.prev, c.hash, c.mac);
        let event = serde_json::from_str::<E>(c.event.get());
        match event {
            Ok(event) => Ok(Some(Entry {
                seq,
                ts,
                prev,
                hash,
                mac,
                event,
            })),
            Err(e) => Err(self.chain.failure(Some(seq), format!("unknown event: {e}"))),
        }
    }
}

/// The entries of a journal from a checkpoint, verified as they are read: an iterator of
/// `Result`s that ends after the first error. With `expect_end`, the scan must end exactly at
/// that place (the chain verified at open), or it fails: the file changed under the reader.
pub struct Entries<'a, E> {
    scanner: Scanner<BufReader<PreadReader>>,
    expect_end: Option<Checkpoint>,
    /// Entries before this seq are verified but not handed out.
    from: u64,
    /// The index to extend with the checkpoints passed, while the file read is still the live
    /// segment (a rotation replaces both).
    index: Option<(&'a Mutex<super::Live>, Arc<File>)>,
    done: bool,
    _event: std::marker::PhantomData<fn() -> E>,
}

impl<E> std::fmt::Debug for Entries<'_, E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Entries")
            .field("at", &self.scanner.position())
            .field("from", &self.from)
            .finish_non_exhaustive()
    }
}

impl<'a, E> Entries<'a, E> {
    pub(super) fn new(
        scanner: Scanner<BufReader<PreadReader>>,
        expect_end: Option<Checkpoint>,
        from: u64,
        index: Option<(&'a Mutex<super::Live>, Arc<File>)>,
    ) -> Self {
        Entries {
            scanner,
            expect_end,
            from,
            index,
            done: false,
            _event: std::marker::PhantomData,
        }
    }

    fn note(&self) {
        if let Some((live, file)) = &self.index {
            let mut live = live
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if Arc::ptr_eq(&live.file, file) {
                live.index.note(self.scanner.position());
            }
        }
    }
}

impl<E: serde::de::DeserializeOwned> Iterator for Entries<'_, E> {
    type Item = Result<Entry<E>, AuditError>;

    fn next(&mut self) -> Option<Self::Item> {
        while !self.done {
            match self.step() {
                Some(Ok(entry)) if entry.seq < self.from => {}
                other => return other,
            }
        }
        None
    }
}

impl<E: serde::de::DeserializeOwned> Entries<'_, E> {
    fn step(&mut self) -> Option<Result<Entry<E>, AuditError>> {
        match self.scanner.next_entry() {
            Ok(Some(entry)) => {
                if entry.seq.is_multiple_of(CHECKPOINT_EVERY) {
                    self.note();
                }
                Some(Ok(entry))
            }
            Ok(None) => {
                self.done = true;
                let at = self.scanner.position();
                match self.expect_end {
                    Some(end) if end.seq != at.seq || end.hash != at.hash => {
                        Some(Err(AuditError::Verify(self.scanner.failure_next(format!(
                            "the journal changed while it was read: it ended at seq {} but was verified up to seq {}; \
                             another process writes to it: stop it and restart the signer",
                            at.seq, end.seq
                        )))))
                    }
                    _ => None,
                }
            }
            Err(failure) => {
                self.done = true;
                Some(Err(AuditError::Verify(failure)))
            }
        }
    }
}
