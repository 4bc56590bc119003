//! What the approver must not forget across a restart: which of its bot's messages shows
//! which request (the message replied to decides what a code answers), and how far the
//! signer's events have been announced to each operator.
//!
//! One small JSON file, `state.json` in the state directory, rewritten whole on every change
//! through a temp file, `fsync` and an atomic rename (then the directory is synced), so a
//! crash leaves the old or the new file and never half of one. It holds no secret: request
//! ids, message ids, deadlines. It is bounded: entries whose request the signer no longer
//! lists are kept a day (so a late reply gets "no longer waiting" rather than "not a
//! request") and the oldest go first beyond [`MAX_ENTRIES`].

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use vigil_protocol::{AwaitingItem, AwaitingKind};

use crate::ApproverError;

/// The file's name in the state directory.
pub const STATE_FILE: &str = "state.json";
/// The most message entries kept.
pub const MAX_ENTRIES: usize = 4096;
/// How long an entry is kept after its request stopped waiting, seconds.
pub const KEEP_CLOSED_SECS: u64 = 86_400;
/// The largest state file read (4096 entries of about 250 bytes fit easily).
const MAX_FILE_BYTES: u64 = 8 << 20;
/// The format of the file.
const VERSION: u32 = 1;

/// One request as the bot showed it in one chat.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Shown {
    /// The operator's private chat (= the operator's user id).
    pub chat: i64,
    /// The bot's message showing the request.
    pub message_id: i32,
    /// The signer's id of the request (approval id, request id or manifest digest).
    pub id: String,
    /// What it is (which op answers it).
    pub kind: AwaitingKind,
    /// The signer's summary, as shown.
    pub summary: String,
    /// The signer's deadline (0: none).
    pub expires_at: u64,
    /// An import replacing keys also needs a code of today's authenticator.
    #[serde(default)]
    pub current_code_required: bool,
    /// When it was shown.
    pub shown_at: u64,
    /// When the signer stopped listing it (answered, refused, expired), if it did.
    #[serde(default)]
    pub closed_at: Option<u64>,
}

impl Shown {
    /// The entry for `item` shown as `message_id` in `chat` at `now`.
    pub fn new(chat: i64, message_id: i32, item: &AwaitingItem, now: u64) -> Shown {
        Shown {
            chat,
            message_id,
            id: item.id.clone(),
            kind: item.kind,
            summary: item.summary.clone(),
            expires_at: item.expires_at,
            current_code_required: item.current_code_required,
            shown_at: now,
            closed_at: None,
        }
    }

    /// The awaiting item it shows, to build the answer from.
    pub fn item(&self) -> AwaitingItem {
        AwaitingItem {
            id: self.id.clone(),
            kind: self.kind,
            summary: self.summary.clone(),
            expires_at: self.expires_at,
            created_seq: 0,
            current_code_required: self.current_code_required,
        }
    }

    /// Whether its request is past its deadline at `now`.
    pub fn expired(&self, now: u64) -> bool {
        self.expires_at != 0 && now >= self.expires_at
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StateFile {
    version: u32,
    shown: Vec<Shown>,
    /// Per operator: the last event sequence number announced.
    announced: BTreeMap<i64, u64>,
}

/// The durable state, loaded once and rewritten on every change.
#[derive(Debug)]
pub struct Store {
    path: PathBuf,
    data: StateFile,
}

impl Store {
    /// Opens `dir/state.json` (an absent file is an empty state: a first start).
    pub fn open(dir: &Path) -> Result<Store, ApproverError> {
        let path = dir.join(STATE_FILE);
        let err = |why: String| ApproverError::State(path.clone(), why);
        let data = match std::fs::File::open(&path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => StateFile {
                version: VERSION,
                ..StateFile::default()
            },
            Err(e) => return Err(err(e.to_string())),
            Ok(file) => {
                let mut text = Vec::new();
                file.take(MAX_FILE_BYTES + 1)
                    .read_to_end(&mut text)
                    .map_err(|e| err(e.to_string()))?;
                if text.len() as u64 > MAX_FILE_BYTES {
                    return Err(err(format!("larger than {MAX_FILE_BYTES} bytes")));
                }
                let data: StateFile = serde_json::from_slice(&text).map_err(|e| {
                    err(format!(
                        "{e}; it is written only by the approver: if it was edited, restore it \
                         (or remove it: requests already shown are shown again, and events \
                         the signer still keeps are announced again)"
                    ))
                })?;
                if data.version != VERSION {
                    return Err(err(format!(
                        "format {} is not {VERSION}: this approver cannot read it",
                        data.version
                    )));
                }
                data
            }
        };
        Ok(Store { path, data })
    }

    /// The request that the bot's message `message_id` in `chat` shows, if it shows one.
    pub fn lookup(&self, chat: i64, message_id: i32) -> Option<&Shown> {
        self.data
            .shown
            .iter()
            .find(|s| s.chat == chat && s.message_id == message_id)
    }

    /// Whether request `id` was already shown in `chat`.
    pub fn was_shown(&self, chat: i64, id: &str) -> bool {
        self.data.shown.iter().any(|s| s.chat == chat && s.id == id)
    }

    /// Every entry still open (its request listed by the signer when last asked).
    pub fn open_entries(&self) -> impl Iterator<Item = &Shown> {
        self.data.shown.iter().filter(|s| s.closed_at.is_none())
    }

    /// Records that `shown` is on screen, and saves.
    pub fn record(&mut self, shown: Shown) -> Result<(), ApproverError> {
        self.data.shown.push(shown);
        self.save()
    }

    /// Marks closed every entry whose request is not in `listed` (the signer's `awaiting`
    /// now), reopens one that is listed again, drops what is old; saves if anything changed.
    pub fn sync_listed(&mut self, listed: &BTreeSet<&str>, now: u64) -> Result<(), ApproverError> {
        let mut changed = false;
        for s in &mut self.data.shown {
            let is_listed = listed.contains(s.id.as_str());
            match (s.closed_at, is_listed) {
                (None, false) => {
                    s.closed_at = Some(now);
                    changed = true;
                }
                (Some(_), true) => {
                    s.closed_at = None;
                    changed = true;
                }
                _ => {}
            }
        }
        let before = self.data.shown.len();
        self.data.shown.retain(|s| {
            s.closed_at
                .is_none_or(|at| now < at.saturating_add(KEEP_CLOSED_SECS))
        });
        if self.data.shown.len() > MAX_ENTRIES {
            // Oldest closed first, then oldest shown.
            self.data
                .shown
                .sort_by_key(|s| (s.closed_at.is_none(), s.shown_at));
            let extra = self.data.shown.len() - MAX_ENTRIES;
            self.data.shown.drain(..extra);
        }
        if changed || self.data.shown.len() != before {
            self.save()?;
        }
        Ok(())
    }

    /// Marks request `id` closed in every chat (the operator's code was accepted), and saves.
    pub fn close(&mut self, id: &str, now: u64) -> Result<(), ApproverError> {
        for s in &mut self.data.shown {
            if s.id == id && s.closed_at.is_none() {
                s.closed_at = Some(now);
            }
        }
        self.save()
    }

    /// The last event sequence number announced to `operator` (0: none yet).
    pub fn announced(&self, operator: i64) -> u64 {
        self.data.announced.get(&operator).copied().unwrap_or(0)
    }

    /// Whether `operator` has an announcement cursor (false: never announced to, a new
    /// operator or a first start).
    pub fn has_cursor(&self, operator: i64) -> bool {
        self.data.announced.contains_key(&operator)
    }

    /// Records that events up to `seq` were announced to `operator`, and saves.
    pub fn set_announced(&mut self, operator: i64, seq: u64) -> Result<(), ApproverError> {
        self.data.announced.insert(operator, seq);
        self.save()
    }

    /// How many message entries are kept.
    pub fn len(&self) -> usize {
        self.data.shown.len()
    }

    /// Whether no message entry is kept.
    pub fn is_empty(&self) -> bool {
        self.data.shown.is_empty()
    }

    /// Writes the whole state: temp file (0600), fsync, rename, fsync of the directory.
    fn save(&self) -> Result<(), ApproverError> {
        let err = |what: &str, e: std::io::Error| {
            ApproverError::State(self.path.clone(), format!("{what}: {e}"))
        };
        let json = serde_json::to_vec(&self.data)
            .map_err(|e| ApproverError::State(self.path.clone(), e.to_string()))?;
        let tmp = self.path.with_extension("json.tmp");
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(|e| err("create the temp file", e))?;
        file.write_all(&json).map_err(|e| err("write", e))?;
        file.sync_all().map_err(|e| err("fsync", e))?;
        std::fs::rename(&tmp, &self.path).map_err(|e| err("rename", e))?;
        if let Some(dir) = self.path.parent() {
            std::fs::File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(|e| err("fsync the directory", e))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(id: &str, expires_at: u64) -> AwaitingItem {
        AwaitingItem {
            id: id.into(),
            kind: AwaitingKind::Approval,
            summary: format!("send 1 SOL ({id})"),
            expires_at,
            created_seq: 3,
            current_code_required: false,
        }
    }

    #[test]
    fn the_map_survives_a_restart_and_a_torn_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::open(dir.path()).unwrap();
        assert!(s.is_empty());
        s.record(Shown::new(7, 41, &item("a1", 500), 100)).unwrap();
        s.record(Shown::new(8, 41, &item("a2", 500), 100)).unwrap();
        s.set_announced(7, 12).unwrap();
        // A crash while writing leaves a temp file; the state is the last complete one.
        std::fs::write(dir.path().join("state.json.tmp"), b"{\"vers").unwrap();
        let s = Store::open(dir.path()).unwrap();
        assert_eq!(s.lookup(7, 41).unwrap().id, "a1");
        assert_eq!(s.lookup(8, 41).unwrap().id, "a2");
        assert!(s.lookup(7, 42).is_none() && s.lookup(9, 41).is_none());
        assert!(s.was_shown(7, "a1") && !s.was_shown(7, "a2"));
        assert_eq!((s.announced(7), s.announced(8)), (12, 0));
        let mode = std::fs::metadata(dir.path().join(STATE_FILE)).unwrap();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&mode.permissions()) & 0o777,
            0o600
        );
    }

    #[test]
    fn unlisted_requests_close_and_old_ones_go() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::open(dir.path()).unwrap();
        s.record(Shown::new(7, 1, &item("a1", 500), 100)).unwrap();
        s.record(Shown::new(7, 2, &item("a2", 0), 100)).unwrap();
        s.sync_listed(&BTreeSet::from(["a2"]), 200).unwrap();
        assert_eq!(s.lookup(7, 1).unwrap().closed_at, Some(200));
        assert_eq!(s.open_entries().count(), 1);
        assert!(s.lookup(7, 1).unwrap().expired(500) && !s.lookup(7, 2).unwrap().expired(u64::MAX));
        s.sync_listed(&BTreeSet::from(["a2"]), 200 + KEEP_CLOSED_SECS)
            .unwrap();
        assert!(s.lookup(7, 1).is_none());
        assert_eq!(Store::open(dir.path()).unwrap().len(), 1);
        // Bounded, whatever the flood.
        for i in 0..(i32::try_from(MAX_ENTRIES).unwrap() + 10) {
            let id = format!("f{i}");
            s.data
                .shown
                .push(Shown::new(7, 1000 + i, &item(&id, 0), 300));
        }
        let ids: Vec<String> = s.data.shown.iter().map(|x| x.id.clone()).collect();
        s.sync_listed(&ids.iter().map(String::as_str).collect(), 301)
            .unwrap();
        assert_eq!(s.len(), MAX_ENTRIES);
    }

    #[test]
    fn a_damaged_file_is_an_error_that_says_what_to_do() {
        let dir = tempfile::tempdir().unwrap();
        for (bytes, needle) in [
            (&b"not json"[..], "remove it"),
            (
                &b"{\"version\":9,\"shown\":[],\"announced\":{}}"[..],
                "format 9",
            ),
            (
                &b"{\"version\":1,\"shown\":[],\"announced\":{},\"x\":1}"[..],
                "unknown field",
            ),
        ] {
            std::fs::write(dir.path().join(STATE_FILE), bytes).unwrap();
            let e = Store::open(dir.path()).unwrap_err().to_string();
            assert!(e.contains(needle), "{e}");
        }
    }
}
