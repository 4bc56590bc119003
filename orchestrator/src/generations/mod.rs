//! Configuration generations (`docs/operations.md`, "Generations"): every applied change to
//! what the agents do is a new numbered directory, the earlier ones kept, and one symlink
//! says which is current.
//!
//! ```text
//! <dir>/<N>/files/orchestrator.toml   the configuration the daemon runs
//! <dir>/<N>/files/modules/...         strategy modules (opaque files here)
//! <dir>/<N>/meta.json                 number, parent, created_at, reason, digest
//! <dir>/<N>/state-before.sqlite3      the state as it was just before N was applied
//! <dir>/<N>/health.json               the health check's verdict (watching, passed, failed)
//! <dir>/current -> <N>                replaced by rename: old or new, never half
//! <dir>/system-config.sha256          the digest of the system file last taken in
//! <dir>/restore-pending.json          a rollback decided but not yet finished
//! ```
//!
//! A generation is written under a temporary name, fsynced, renamed to its number and the
//! directory fsynced; only then is `current` switched (a new symlink renamed over it, the
//! directory fsynced). A crash at any point leaves the old or the new generation current.
//! A generation is never changed after it is written (only its `health.json`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::config::{Config, GenerationSettings};

pub mod health;
pub mod restore;

/// The configuration file inside a generation.
pub const CONFIG_FILE: &str = "orchestrator.toml";
/// The directory of strategy modules inside a generation.
pub const MODULES_DIR: &str = "modules";
/// The state snapshot inside a generation.
pub const SNAPSHOT_FILE: &str = "state-before.sqlite3";
/// The most bytes a generation's files may hold together.
const MAX_GENERATION_BYTES: u64 = 16 * 1024 * 1024;
/// The most files a generation may hold.
const MAX_FILES: usize = 1024;
/// The longest reason kept, in characters.
const MAX_REASON_CHARS: usize = 200;
/// How long staged files are kept (`staged/<digest>/`): two days, beyond the one day within
/// which the signer's approvals expire.
pub const STAGED_MAX_AGE_SECS: u64 = 2 * 86_400;

/// A generation's files: relative path (`orchestrator.toml`, `modules/...`) to content.
pub type Files = BTreeMap<String, Vec<u8>>;

/// Why a generation operation failed; each says what to do.
#[derive(Debug, thiserror::Error)]
pub enum GenerationError {
    /// A file operation failed.
    #[error("{}: {}", .0.display(), .1)]
    Io(PathBuf, std::io::Error),
    /// A file of a generation has a name that is not accepted.
    #[error("file {0:?} cannot be part of a generation: {1}")]
    BadPath(String, String),
    /// The files are not a configuration the orchestrator accepts.
    #[error("the generation's {CONFIG_FILE} is refused: {0}; nothing was applied")]
    BadConfig(String),
    /// Too large or too many files.
    #[error("the generation is too large ({0}); nothing was applied")]
    TooLarge(String),
    /// No such generation.
    #[error(
        "generation {0} does not exist (or was pruned): `vigil-orchestrator generations list` shows those kept"
    )]
    Missing(u32),
    /// A generation's `meta.json` is unreadable or does not match its files.
    #[error("generation {0} is damaged: {1}; switch to another one with /rollback")]
    Damaged(u32, String),
    /// There are no generations yet.
    #[error("no generation is current in {}: start the daemon once with [generations] in its config", .0.display())]
    NoCurrent(PathBuf),
    /// The state could not be copied before an apply.
    #[error("the state could not be snapshotted before the apply: {0}; nothing was applied")]
    Snapshot(#[from] crate::snapshot::SnapshotError),
    /// A rollback that cannot be done.
    #[error("{0}")]
    Rollback(String),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> GenerationError + '_ {
    move |e| GenerationError::Io(path.to_path_buf(), e)
}

/// What `meta.json` records; never changed after the generation is written.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Meta {
    /// The generation's number (1, 2, ...).
    pub number: u32,
    /// The generation that was current when it was applied (none for the first).
    pub parent: Option<u32>,
    /// Unix seconds.
    pub created_at: u64,
    /// Why it was made (bounded printable text).
    pub reason: String,
    /// SHA-256 of its files ([`digest`]), lowercase hex.
    pub digest: String,
    /// Whether `state-before.sqlite3` holds the state from just before it was applied.
    pub snapshot: bool,
}

/// The health check's verdict on a generation (`health.json`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case", deny_unknown_fields)]
pub enum Health {
    /// Being watched from `since` to `until` (Unix seconds).
    Watching {
        /// When it was applied.
        since: u64,
        /// When the window ends.
        until: u64,
    },
    /// The window passed without a failed check.
    Passed {
        /// When it was judged.
        at: u64,
    },
    /// A check failed and the generation was rolled back.
    Failed {
        /// When.
        at: u64,
        /// Which check and its numbers.
        why: String,
    },
    /// The operator rolled back from it.
    RolledBack {
        /// When.
        at: u64,
    },
}

/// A decided rollback, written before `current` moves and removed once the state is
/// restored (the daemon finishes it at start).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PendingRestore {
    /// A random id, also written into the restored state (so a restart after the restore
    /// but before the marker is removed does not restore twice).
    pub id: String,
    /// The generation that was current.
    pub from: u32,
    /// The generation that becomes current.
    pub to: u32,
    /// The snapshot restored.
    pub snapshot: PathBuf,
    /// Why, for the operator.
    pub reason: String,
}

/// SHA-256 of a generation's files: for each file in path order, its path, a 0 byte, its
/// length as 8 bytes big-endian, and its bytes. Lowercase hex.
pub fn digest(files: &Files) -> String {
    let mut h = Sha256::new();
    for (path, bytes) in files {
        h.update(path.as_bytes());
        h.update([0u8]);
        h.update((bytes.len() as u64).to_be_bytes());
        h.update(bytes);
    }
    hex::encode(h.finalize())
}

/// Checks a relative file name of a generation: `orchestrator.toml` or `modules/<name>/...`,
/// each part 1-64 characters of `A-Z a-z 0-9 . _ -`, not starting with a dot.
fn check_path(path: &str) -> Result<(), GenerationError> {
    let bad = |why: &str| GenerationError::BadPath(vigil_protocol::truncate(path), why.into());
    if path == CONFIG_FILE {
        return Ok(());
    }
    let mut parts = path.split('/');
    if parts.next() != Some(MODULES_DIR) {
        return Err(bad(
            "only orchestrator.toml and files under modules/ are kept",
        ));
    }
    let rest: Vec<&str> = parts.collect();
    if rest.is_empty() || rest.len() > 8 {
        return Err(bad(
            "a module file is modules/<name>, at most 8 levels deep",
        ));
    }
    for part in rest {
        let ok = !part.is_empty()
            && part.len() <= 64
            && !part.starts_with('.')
            && part
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        if !ok {
            return Err(bad(
                "each part of the name is 1-64 characters of A-Z a-z 0-9 . _ -, not starting with a dot",
            ));
        }
    }
    Ok(())
}

/// Checks a set of files before it becomes a generation: names, size, and a configuration
/// that parses and checks.
pub fn check_files(files: &Files) -> Result<(), GenerationError> {
    if files.len() > MAX_FILES {
        return Err(GenerationError::TooLarge(format!(
            "{} files, at most {MAX_FILES}",
            files.len()
        )));
    }
    let mut total = 0u64;
    for (path, bytes) in files {
        check_path(path)?;
        total = total.saturating_add(bytes.len() as u64);
    }
    if total > MAX_GENERATION_BYTES {
        return Err(GenerationError::TooLarge(format!(
            "{total} bytes, at most {MAX_GENERATION_BYTES}"
        )));
    }
    let Some(config) = files.get(CONFIG_FILE) else {
        return Err(GenerationError::BadConfig(format!(
            "there is no {CONFIG_FILE}"
        )));
    };
    let text = std::str::from_utf8(config)
        .map_err(|_| GenerationError::BadConfig("it is not UTF-8 text".into()))?;
    Config::from_toml_in_files(text, files)
        .map_err(|e| GenerationError::BadConfig(e.to_string()))?;
    Ok(())
}

/// The generations directory of one orchestrator.
#[derive(Clone, Debug)]
pub struct Generations {
    dir: PathBuf,
    keep: u32,
}

impl Generations {
    /// The generations under `settings.dir` (created if missing, mode 0700).
    pub fn open(settings: &GenerationSettings) -> Result<Generations, GenerationError> {
        let dir = settings.dir.clone();
        std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        Ok(Generations {
            dir,
            keep: settings.keep,
        })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn gen_dir(&self, n: u32) -> PathBuf {
        self.dir.join(n.to_string())
    }

    /// The directory of generation `n`'s files (what the daemon reads).
    pub fn files_dir(&self, n: u32) -> PathBuf {
        self.gen_dir(n).join("files")
    }

    /// The current generation's configuration file (through `current`).
    pub fn current_config_path(&self) -> PathBuf {
        self.dir.join("current").join("files").join(CONFIG_FILE)
    }

    /// The current generation, if any.
    pub fn current(&self) -> Result<Option<u32>, GenerationError> {
        let link = self.dir.join("current");
        match std::fs::read_link(&link) {
            Ok(target) => {
                let n = target
                    .to_str()
                    .and_then(|t| t.parse::<u32>().ok())
                    .ok_or_else(|| {
                        GenerationError::Rollback(format!(
                            "{} points at {}, not at a generation number; point it at one (ln -sfn N current)",
                            link.display(),
                            target.display()
                        ))
                    })?;
                Ok(Some(n))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(GenerationError::Io(link, e)),
        }
    }

    /// The current generation, or an error saying there is none.
    pub fn require_current(&self) -> Result<u32, GenerationError> {
        self.current()?
            .ok_or_else(|| GenerationError::NoCurrent(self.dir.clone()))
    }

    /// The numbers of the generations kept, ascending.
    pub fn numbers(&self) -> Result<Vec<u32>, GenerationError> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(&self.dir).map_err(io(&self.dir))? {
            let entry = entry.map_err(io(&self.dir))?;
            if let Some(n) = entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<u32>().ok())
                && entry.path().join("meta.json").is_file()
            {
                out.push(n);
            }
        }
        out.sort_unstable();
        Ok(out)
    }

    /// Generation `n`'s `meta.json`.
    pub fn meta(&self, n: u32) -> Result<Meta, GenerationError> {
        let path = self.gen_dir(n).join("meta.json");
        let text = match std::fs::read(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(GenerationError::Missing(n));
            }
            Err(e) => return Err(GenerationError::Io(path, e)),
        };
        let meta: Meta = serde_json::from_slice(&text)
            .map_err(|e| GenerationError::Damaged(n, format!("meta.json: {e}")))?;
        if meta.number != n {
            return Err(GenerationError::Damaged(
                n,
                format!("meta.json names generation {}", meta.number),
            ));
        }
        Ok(meta)
    }

    /// Generation `n`'s health verdict (none for one never watched).
    pub fn health(&self, n: u32) -> Result<Option<Health>, GenerationError> {
        let path = self.gen_dir(n).join("health.json");
        match std::fs::read(&path) {
            Ok(t) => serde_json::from_slice(&t)
                .map(Some)
                .map_err(|e| GenerationError::Damaged(n, format!("health.json: {e}"))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(GenerationError::Io(path, e)),
        }
    }

    /// Records generation `n`'s health verdict (atomically).
    pub fn set_health(&self, n: u32, health: &Health) -> Result<(), GenerationError> {
        let bytes = serde_json::to_vec_pretty(health)
            .map_err(|e| GenerationError::Damaged(n, e.to_string()))?;
        write_atomic(&self.gen_dir(n).join("health.json"), &bytes)
    }

    /// Generation `n`'s files, read back and checked against its digest.
    pub fn files(&self, n: u32) -> Result<Files, GenerationError> {
        let meta = self.meta(n)?;
        let root = self.files_dir(n);
        let mut files = Files::new();
        read_tree(&root, "", &mut files)?;
        let found = digest(&files);
        if found != meta.digest {
            return Err(GenerationError::Damaged(
                n,
                format!(
                    "its files hash to {found}, its meta.json says {}",
                    meta.digest
                ),
            ));
        }
        Ok(files)
    }

    /// Applies `files` as a new generation: checked, the state at `state_db` snapshotted
    /// into it (when the file exists), written, then made current. Its number.
    pub fn apply(
        &self,
        files: &Files,
        reason: &str,
        state_db: &Path,
        now: u64,
    ) -> Result<u32, GenerationError> {
        check_files(files)?;
        let parent = self.current()?;
        let n = self.next_number()?;
        let tmp = self.dir.join(format!(".new-{n}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&tmp);
        let built = self.build(&tmp, n, parent, files, reason, state_db, now);
        if let Err(e) = built {
            let _ = std::fs::remove_dir_all(&tmp);
            return Err(e);
        }
        let dest = self.gen_dir(n);
        std::fs::rename(&tmp, &dest).map_err(io(&dest))?;
        sync_dir(&self.dir)?;
        self.switch(n)?;
        // Pruning is housekeeping: a failure leaves extra generations, never a wrong one.
        if let Err(e) = self.prune() {
            tracing::warn!("generations: pruning old ones failed: {e}");
        }
        Ok(n)
    }

    #[allow(clippy::too_many_arguments)]
    fn build(
        &self,
        tmp: &Path,
        n: u32,
        parent: Option<u32>,
        files: &Files,
        reason: &str,
        state_db: &Path,
        now: u64,
    ) -> Result<(), GenerationError> {
        let root = tmp.join("files");
        std::fs::create_dir_all(&root).map_err(io(&root))?;
        for (rel, bytes) in files {
            let path = root.join(rel);
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir).map_err(io(dir))?;
            }
            write_synced(&path, bytes)?;
        }
        let snapshot = if state_db.exists() {
            crate::snapshot::snapshot(state_db, &tmp.join(SNAPSHOT_FILE))?;
            true
        } else {
            false
        };
        let meta = Meta {
            number: n,
            parent,
            created_at: now,
            reason: bounded_text(reason),
            digest: digest(files),
            snapshot,
        };
        let bytes = serde_json::to_vec_pretty(&meta)
            .map_err(|e| GenerationError::Damaged(n, e.to_string()))?;
        write_synced(&tmp.join("meta.json"), &bytes)?;
        sync_tree(&root)?;
        sync_dir(tmp)
    }

    /// Makes generation `n` current: a new symlink renamed over `current`, the directory
    /// fsynced.
    pub fn switch(&self, n: u32) -> Result<(), GenerationError> {
        self.meta(n)?;
        let tmp = self.dir.join(format!(".current-{}", std::process::id()));
        let _ = std::fs::remove_file(&tmp);
        std::os::unix::fs::symlink(n.to_string(), &tmp).map_err(io(&tmp))?;
        let link = self.dir.join("current");
        std::fs::rename(&tmp, &link).map_err(io(&link))?;
        sync_dir(&self.dir)
    }

    /// Removes the oldest generations beyond `keep`, never the current one (whose snapshot a
    /// rollback to its parent restores) nor its parent (whose files that rollback runs).
    fn prune(&self) -> Result<(), GenerationError> {
        let numbers = self.numbers()?;
        let keep = usize::try_from(self.keep).unwrap_or(usize::MAX);
        if numbers.len() <= keep {
            return Ok(());
        }
        let current = self.current()?;
        let parent = match current {
            Some(c) => self.meta(c).ok().and_then(|m| m.parent),
            None => None,
        };
        let excess = numbers.len() - keep;
        for n in numbers
            .into_iter()
            .filter(|n| Some(*n) != current && Some(*n) != parent)
            .take(excess)
        {
            let path = self.gen_dir(n);
            std::fs::remove_dir_all(&path).map_err(io(&path))?;
        }
        sync_dir(&self.dir)
    }

    /// The number the next applied generation gets.
    pub fn next_number(&self) -> Result<u32, GenerationError> {
        self.numbers()?
            .last()
            .copied()
            .unwrap_or(0)
            .checked_add(1)
            .ok_or_else(|| GenerationError::TooLarge("generation numbers ran out".into()))
    }

    /// Keeps `files` (checked) under `staged/<digest>/` until the operator's code for that
    /// digest comes back; their digest. Staging the same files again is a no-op. Staged sets
    /// older than [`STAGED_MAX_AGE_SECS`] are removed first ([`Generations::prune_staged`]).
    pub fn stage(&self, files: &Files) -> Result<String, GenerationError> {
        check_files(files)?;
        // Housekeeping: a failure leaves old staged sets, never touches a live one.
        let _ = self.prune_staged(std::time::SystemTime::now());
        let d = digest(files);
        let staged = self.dir.join("staged");
        let dest = staged.join(&d);
        if dest.is_dir() {
            return Ok(d);
        }
        std::fs::create_dir_all(&staged).map_err(io(&staged))?;
        let tmp = staged.join(format!(".{d}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&tmp);
        let written = (|| {
            for (rel, bytes) in files {
                let path = tmp.join(rel);
                if let Some(dir) = path.parent() {
                    std::fs::create_dir_all(dir).map_err(io(dir))?;
                }
                write_synced(&path, bytes)?;
            }
            sync_tree(&tmp)
        })();
        if let Err(e) = written {
            let _ = std::fs::remove_dir_all(&tmp);
            return Err(e);
        }
        std::fs::rename(&tmp, &dest).map_err(io(&dest))?;
        sync_dir(&staged)?;
        Ok(d)
    }

    /// Removes what was staged (and any half-written staging) more than
    /// [`STAGED_MAX_AGE_SECS`] before `now`, by modification time: no code can still grant
    /// it, since the signer's approvals expire within a day. The number removed.
    pub fn prune_staged(&self, now: std::time::SystemTime) -> Result<usize, GenerationError> {
        let staged = self.dir.join("staged");
        let entries = match std::fs::read_dir(&staged) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(io(&staged)(e)),
        };
        let limit = std::time::Duration::from_secs(STAGED_MAX_AGE_SECS);
        let mut removed = 0;
        for entry in entries {
            let entry = entry.map_err(io(&staged))?;
            let path = entry.path();
            let old = entry
                .metadata()
                .and_then(|m| m.modified())
                .is_ok_and(|t| now.duration_since(t).is_ok_and(|age| age > limit));
            if old {
                std::fs::remove_dir_all(&path).map_err(io(&path))?;
                removed += 1;
            }
        }
        if removed > 0 {
            sync_dir(&staged)?;
        }
        Ok(removed)
    }

    /// The staged files of `digest`, read back and checked against it.
    pub fn staged(&self, digest_hex: &str) -> Result<Files, GenerationError> {
        let ok = digest_hex.len() == 64 && digest_hex.bytes().all(|b| b.is_ascii_hexdigit());
        if !ok {
            return Err(GenerationError::Rollback(format!(
                "{:?} is not a digest of staged files",
                vigil_protocol::truncate(digest_hex)
            )));
        }
        let root = self.dir.join("staged").join(digest_hex);
        if !root.is_dir() {
            return Err(GenerationError::Rollback(format!(
                "no files are staged under {digest_hex}: ask for the change again"
            )));
        }
        let mut files = Files::new();
        read_tree(&root, "", &mut files)?;
        let found = digest(&files);
        if found != digest_hex {
            return Err(GenerationError::Rollback(format!(
                "the staged files hash to {found}, not to the {digest_hex} you approved: nothing was applied"
            )));
        }
        Ok(files)
    }

    /// The generation a rollback from the current one goes to by default: its parent.
    pub fn default_target(&self) -> Result<u32, GenerationError> {
        let current = self.require_current()?;
        self.meta(current)?.parent.ok_or_else(|| {
            GenerationError::Rollback(format!(
                "generation {current} is the first: there is nothing before it to roll back to"
            ))
        })
    }

    /// Plans a rollback from the current generation to `to`: `to` must be an ancestor of
    /// the current one; the snapshot restored is the one taken just before `to`'s child on
    /// that line was applied (the state as it was when `to` was last current).
    pub fn plan_rollback(&self, to: u32, reason: &str) -> Result<PendingRestore, GenerationError> {
        let from = self.require_current()?;
        if to == from {
            return Err(GenerationError::Rollback(format!(
                "generation {to} is already current: nothing to roll back"
            )));
        }
        self.meta(to)?;
        let mut child = from;
        loop {
            let meta = self.meta(child)?;
            match meta.parent {
                Some(p) if p == to => break,
                Some(p) => child = p,
                None => {
                    return Err(GenerationError::Rollback(format!(
                        "generation {to} is not before the current generation {from} (it is not one of its ancestors): /rollback only goes back"
                    )));
                }
            }
        }
        let meta = self.meta(child)?;
        if !meta.snapshot {
            return Err(GenerationError::Rollback(format!(
                "generation {child} has no state snapshot (the state did not exist when it was applied): nothing to restore"
            )));
        }
        Ok(PendingRestore {
            id: random_id(),
            from,
            to,
            snapshot: self.gen_dir(child).join(SNAPSHOT_FILE),
            reason: bounded_text(reason),
        })
    }

    /// Records a decided rollback (the marker), then switches `current` to its target. The
    /// state is restored by [`restore::finish_pending`] when the daemon next starts.
    pub fn begin_rollback(&self, plan: &PendingRestore) -> Result<(), GenerationError> {
        // Check that the files of the target are intact before anything moves.
        self.files(plan.to)?;
        let bytes = serde_json::to_vec_pretty(plan)
            .map_err(|e| GenerationError::Rollback(e.to_string()))?;
        write_atomic(&self.pending_path(), &bytes)?;
        self.switch(plan.to)
    }

    fn pending_path(&self) -> PathBuf {
        self.dir.join("restore-pending.json")
    }

    /// The rollback waiting to be finished, if any.
    pub fn pending(&self) -> Result<Option<PendingRestore>, GenerationError> {
        let path = self.pending_path();
        match std::fs::read(&path) {
            Ok(t) => serde_json::from_slice(&t).map(Some).map_err(|e| {
                GenerationError::Rollback(format!(
                    "{} is unreadable ({e}); remove it after checking the state by hand",
                    path.display()
                ))
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(GenerationError::Io(path, e)),
        }
    }

    /// Removes the marker of a finished rollback.
    pub fn clear_pending(&self) -> Result<(), GenerationError> {
        let path = self.pending_path();
        match std::fs::remove_file(&path) {
            Ok(()) => sync_dir(&self.dir),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(GenerationError::Io(path, e)),
        }
    }

    /// At start: seeds generation 1 from the system configuration file `system`, or, when
    /// that file changed since it was last taken in (a NixOS switch), applies it as a new
    /// generation (the current generation's modules kept). The new generation's number, if
    /// one was made.
    pub fn adopt_system_config(
        &self,
        system: &Path,
        state_db: &Path,
        now: u64,
    ) -> Result<Option<u32>, GenerationError> {
        let bytes = std::fs::read(system).map_err(io(system))?;
        let seen = hex::encode(Sha256::digest(&bytes));
        let record = self.dir.join("system-config.sha256");
        let last = std::fs::read_to_string(&record).ok();
        let current = self.current()?;
        let made = match current {
            None => {
                let mut files = Files::new();
                files.insert(CONFIG_FILE.into(), bytes);
                Some(self.apply(
                    &files,
                    &format!("seeded from {}", system.display()),
                    state_db,
                    now,
                )?)
            }
            Some(c) if last.as_deref().map(str::trim) != Some(seen.as_str()) => {
                let mut files = self.files(c)?;
                if files.get(CONFIG_FILE) == Some(&bytes) {
                    None
                } else {
                    files.insert(CONFIG_FILE.into(), bytes);
                    Some(self.apply(
                        &files,
                        &format!("system configuration changed ({})", system.display()),
                        state_db,
                        now,
                    )?)
                }
            }
            Some(_) => None,
        };
        write_atomic(&record, format!("{seen}\n").as_bytes())?;
        Ok(made)
    }
}

/// A lowercase-hex random id (16 bytes from the kernel).
fn random_id() -> String {
    let mut buf = [0u8; 16];
    // /dev/urandom never blocks once the kernel is seeded; on failure the id falls back to
    // the time and pid, still unique enough for a marker.
    let read = std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut buf));
    if read.is_err() {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        buf[..16].copy_from_slice(&t.to_be_bytes());
        buf[..4].copy_from_slice(&std::process::id().to_be_bytes());
    }
    hex::encode(buf)
}

/// `text` as one line of printable characters, at most [`MAX_REASON_CHARS`].
pub fn bounded_text(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(MAX_REASON_CHARS)
        .collect()
}

fn read_tree(dir: &Path, prefix: &str, out: &mut Files) -> Result<(), GenerationError> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .map_err(io(dir))?
        .collect::<Result<_, _>>()
        .map_err(io(dir))?;
    entries.sort_by_key(std::fs::DirEntry::file_name);
    for entry in entries {
        let name = entry.file_name().to_string_lossy().into_owned();
        let rel = if prefix.is_empty() {
            name
        } else {
            format!("{prefix}/{name}")
        };
        let path = entry.path();
        let kind = entry.file_type().map_err(io(&path))?;
        if kind.is_dir() {
            read_tree(&path, &rel, out)?;
        } else if kind.is_file() {
            let bytes = std::fs::read(&path).map_err(io(&path))?;
            out.insert(rel, bytes);
        } else {
            return Err(GenerationError::BadPath(
                rel,
                "a generation holds only regular files and directories".into(),
            ));
        }
    }
    Ok(())
}

/// Writes `bytes` to a new file at `path` and fsyncs it.
fn write_synced(path: &Path, bytes: &[u8]) -> Result<(), GenerationError> {
    use std::io::Write as _;
    let mut f = std::fs::File::create(path).map_err(io(path))?;
    f.write_all(bytes).map_err(io(path))?;
    f.sync_all().map_err(io(path))
}

/// Replaces `path` with `bytes`: a temp file, fsynced, renamed, the directory fsynced.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), GenerationError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    write_synced(&tmp, bytes)?;
    std::fs::rename(&tmp, path).map_err(io(path))?;
    sync_dir(dir)
}

/// fsyncs a directory (its entries: renames, new files).
pub(crate) fn sync_dir(dir: &Path) -> Result<(), GenerationError> {
    std::fs::File::open(dir)
        .and_then(|f| f.sync_all())
        .map_err(io(dir))
}

fn sync_tree(dir: &Path) -> Result<(), GenerationError> {
    for entry in std::fs::read_dir(dir).map_err(io(dir))? {
        let entry = entry.map_err(io(dir))?;
        if entry.file_type().map_err(io(dir))?.is_dir() {
            sync_tree(&entry.path())?;
        }
    }
    sync_dir(dir)
}

/// A line per changed file between two generations' files: `+ path` (only in `b`), `- path`
/// (only in `a`), `~ path` (changed), with a line diff of changed text files.
pub fn diff(a: &Files, b: &Files) -> String {
    let mut out = String::new();
    let names: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    for name in names {
        match (a.get(name), b.get(name)) {
            (Some(x), Some(y)) if x == y => {}
            (Some(x), Some(y)) => {
                out.push_str(&format!("~ {name}\n"));
                if let (Ok(x), Ok(y)) = (std::str::from_utf8(x), std::str::from_utf8(y)) {
                    out.push_str(&line_diff(x, y));
                } else {
                    out.push_str(&format!("  (binary: {} -> {} bytes)\n", x.len(), y.len()));
                }
            }
            (None, Some(y)) => out.push_str(&format!("+ {name} ({} bytes)\n", y.len())),
            (Some(x), None) => out.push_str(&format!("- {name} ({} bytes)\n", x.len())),
            (None, None) => {}
        }
    }
    out
}

/// A plain line diff (longest common subsequence): `-` lines of `a`, `+` lines of `b`.
fn line_diff(a: &str, b: &str) -> String {
    let a: Vec<&str> = a.lines().collect();
    let b: Vec<&str> = b.lines().collect();
    // Config files are small (1 MiB at most); beyond 4,000 lines each, say so instead.
    if a.len() > 4000 || b.len() > 4000 {
        return format!(
            "  ({} -> {} lines; too long to diff here)\n",
            a.len(),
            b.len()
        );
    }
    let mut lcs = vec![vec![0u16; b.len() + 1]; a.len() + 1];
    for i in (0..a.len()).rev() {
        for j in (0..b.len()).rev() {
            lcs[i][j] = if a[i] == b[j] {
                lcs[i + 1][j + 1].saturating_add(1)
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let (mut i, mut j, mut out) = (0, 0, String::new());
    while i < a.len() || j < b.len() {
        if i < a.len() && j < b.len() && a[i] == b[j] {
            i += 1;
            j += 1;
        } else if i < a.len() && (j == b.len() || lcs[i + 1][j] >= lcs[i][j + 1]) {
            out.push_str(&format!("  - {}\n", a[i]));
            i += 1;
        } else {
            out.push_str(&format!("  + {}\n", b[j]));
            j += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests;

/// A unified diff from generation files `a` to `b` (what the operator receives for a
/// proposal): for each changed file, `--- a/<path>` / `+++ b/<path>` (`/dev/null` for an added
/// or removed file) and one hunk spanning the whole file, so `a` and the diff give `b` byte for
/// byte (`patch -p1`). Only UTF-8 text of at most 4,000 lines a file is diffed; anything else
/// is an error naming the file.
pub fn unified_diff(a: &Files, b: &Files) -> Result<String, String> {
    let mut out = String::new();
    let names: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    for name in names {
        let (x, y) = (a.get(name), b.get(name));
        if x == y {
            continue;
        }
        let (tx, ty) = (utf8_or_empty(name, x)?, utf8_or_empty(name, y)?);
        let (lx, ly) = (split_lines(tx), split_lines(ty));
        if lx.len() > 4000 || ly.len() > 4000 {
            return Err(format!("{name} has more than 4,000 lines"));
        }
        out.push_str(&match x {
            Some(_) => format!("--- a/{name}\n"),
            None => "--- /dev/null\n".into(),
        });
        out.push_str(&match y {
            Some(_) => format!("+++ b/{name}\n"),
            None => "+++ /dev/null\n".into(),
        });
        let start = |n: usize| if n == 0 { 0 } else { 1 };
        out.push_str(&format!(
            "@@ -{},{} +{},{} @@\n",
            start(lx.len()),
            lx.len(),
            start(ly.len()),
            ly.len()
        ));
        let mut lcs = vec![vec![0u16; ly.len() + 1]; lx.len() + 1];
        for i in (0..lx.len()).rev() {
            for j in (0..ly.len()).rev() {
                lcs[i][j] = if lx[i] == ly[j] {
                    lcs[i + 1][j + 1].saturating_add(1)
                } else {
                    lcs[i + 1][j].max(lcs[i][j + 1])
                };
            }
        }
        let line = |out: &mut String, mark: char, l: &str| {
            out.push(mark);
            match l.strip_suffix('\n') {
                Some(l) => {
                    out.push_str(l);
                    out.push('\n');
                }
                None => {
                    out.push_str(l);
                    out.push_str("\n\\ No newline at end of file\n");
                }
            }
        };
        let (mut i, mut j) = (0, 0);
        while i < lx.len() || j < ly.len() {
            if i < lx.len() && j < ly.len() && lx[i] == ly[j] {
                line(&mut out, ' ', lx[i]);
                i += 1;
                j += 1;
            } else if i < lx.len() && (j == ly.len() || lcs[i + 1][j] >= lcs[i][j + 1]) {
                line(&mut out, '-', lx[i]);
                i += 1;
            } else {
                line(&mut out, '+', ly[j]);
                j += 1;
            }
        }
    }
    Ok(out)
}

fn utf8_or_empty<'a>(name: &str, bytes: Option<&'a Vec<u8>>) -> Result<&'a str, String> {
    bytes.map_or(Ok(""), |b| {
        std::str::from_utf8(b).map_err(|_| format!("{name} is not UTF-8 text"))
    })
}

/// The lines of `text`, each with its `\n` (the last without one when the text does not end
/// with a newline).
fn split_lines(text: &str) -> Vec<&str> {
    text.split_inclusive('\n').collect()
}
