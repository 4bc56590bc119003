//! What root does at the appliance's console on the signer's journal, the signer STOPPED (each
//! takes the journal's lock, so it refuses to run beside a running signer), with the keystore's
//! passphrase (its journal key MACs the entry it appends: `audit::key`):
//!
//! - `vigil-signer unlock-codes` lifts the lock on operator codes;
//! - `vigil-signer audit-key` keys a journal written by a release before journals were keyed.
//!
//! Once the daily budget of wrong codes is spent (`approval::lockout`), the signer refuses every
//! code until this runs. It runs as root at the appliance, with the signer STOPPED (it takes the
//! journal's lock, so it refuses to run beside a running signer): it reads the journal, says
//! what the lock was, and appends a `codes_unlocked` entry, which the signer replays at its next
//! start. The authority is physical: whoever runs it is root on the appliance, which no peer of
//! the signer's socket (a compromised orchestrator included) is.

use std::path::Path;

use crate::approval::{LockState, Lockout};
use crate::audit::{AUDIT_FILE, AuditError, JournalKey, KeyProblem, Opened};
use crate::devinit::layout;
use crate::engine::system_now;
use crate::error::Error;
use crate::keystore;
use crate::ledger::Event;

/// What `unlock-codes` found and recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodesUnlocked {
    /// The lock in force before: `none`, `until <unix time>` or `until console unlock`.
    pub was: String,
    /// Wrong codes counted within the 24 hours before.
    pub wrong_codes_in_window: u64,
    /// The seq of the `codes_unlocked` entry.
    pub seq: u64,
}

/// Clears the wrong-code counts and locks of the signer whose state dir is `state_dir` (see the
/// module docs). Fails if the signer runs, or if the journal fails verification.
pub fn unlock_codes(
    state_dir: &Path,
    passphrase_file: Option<&Path>,
) -> Result<CodesUnlocked, Error> {
    let key = journal_key(state_dir, passphrase_file)?;
    let opened = open_existing(state_dir, key.as_ref(), "Nothing to unlock")?;
    if let Some(key) = &key
        && let (_, Some(problem)) = opened.key_check(key)?
    {
        return Err(AuditError::Key(opened.path().to_path_buf(), problem).into());
    }
    let now = system_now();
    let mut lockout = Lockout::default();
    for entry in crate::ledger::expand(opened.entries()) {
        let entry = entry?;
        if let Some(outcome) = entry.event.code_outcome() {
            lockout.replay(outcome, entry.ts);
        }
    }
    let state = lockout.state(now);
    let wrong_codes_in_window = u64::try_from(lockout.failures_in_window()).unwrap_or(u64::MAX);
    let log = opened.start(key)?;
    let appended = log.append_blocking(
        now,
        vec![Event::CodesUnlocked {
            was_locked: state != LockState::Open,
            wrong_codes_in_window,
        }],
    )?;
    Ok(CodesUnlocked {
        was: match state {
            LockState::Open => "none".into(),
            LockState::Until(t) => format!("until {t}"),
            LockState::UntilConsoleUnlock => "until console unlock".into(),
        },
        wrong_codes_in_window,
        seq: appended.last().map_or(0, |a| a.seq),
    })
}

/// What `audit-key` found and did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Keyed {
    /// The journal was unkeyed: its chain verified and a keyed `journal_keyed` entry appended.
    Now {
        /// Entries before it (all unkeyed).
        entries_before: u64,
        /// The chain's head they end with (hex), recorded in the entry.
        head: String,
        /// The entry's seq.
        seq: u64,
    },
    /// The journal's MACs already vouch for it: nothing was written.
    Already,
}

/// Keys a journal written before journals were keyed (see the module docs): the chain is
/// verified, then a `journal_keyed` entry under the keystore's journal key is appended, whose
/// MAC vouches for everything before it. Refuses a journal with MACs that do not vouch for it
/// (keying it would launder a rewrite) and a keystore without a journal key (format 1).
pub fn key_journal(state_dir: &Path, passphrase_file: Option<&Path>) -> Result<Keyed, Error> {
    let key = journal_key(state_dir, passphrase_file)?.ok_or_else(|| {
        Error::Other(
            "this keystore (format 1) has no journal key: run a key ceremony with this release, whose keystore has one".into(),
        )
    })?;
    let opened = open_existing(state_dir, Some(&key), "Nothing to key")?;
    match opened.key_check(&key)?.1 {
        None => Ok(Keyed::Already),
        Some(KeyProblem::NeverKeyed { entries }) => {
            let end = opened.end();
            let head = hex::encode(end.hash);
            let log = opened.start(Some(key))?;
            let appended = log.append_blocking(
                system_now(),
                vec![Event::JournalKeyed {
                    entries_before: entries,
                    head: head.clone(),
                }],
            )?;
            Ok(Keyed::Now {
                entries_before: entries,
                head,
                seq: appended.last().map_or(0, |a| a.seq),
            })
        }
        Some(problem) => Err(AuditError::Key(opened.path().to_path_buf(), problem).into()),
    }
}

/// The journal key of the keystore in `state_dir` (none for a format 1 keystore), unlocked with
/// the passphrase from `passphrase_file` or the systemd credential (one scrypt).
pub fn journal_key(
    state_dir: &Path,
    passphrase_file: Option<&Path>,
) -> Result<Option<JournalKey>, Error> {
    let passphrase = keystore::read_passphrase(passphrase_file)?;
    let unlocked = keystore::unlock(&layout::keystore(state_dir), &passphrase)?;
    drop(passphrase);
    Ok(unlocked
        .master
        .as_ref()
        .map(JournalKey::from_master)
        .transpose()?)
}

/// Opens (locks and verifies) the journal of `state_dir`, which must exist.
fn open_existing(
    state_dir: &Path,
    key: Option<&JournalKey>,
    nothing_to_do: &str,
) -> Result<Opened<Event>, Error> {
    let dir = layout::ledger(state_dir);
    if !dir.join(AUDIT_FILE).is_file() {
        return Err(Error::Other(format!(
            "no journal at {}: is --state-dir the signer's state dir? {nothing_to_do}",
            dir.join(AUDIT_FILE).display()
        )));
    }
    Ok(Opened::open_keyed(&dir, key)?)
}

/// `audit-verify`: every present segment of the journal in `dir` (`ledger/`), as one chain,
/// each checkpoint's carried state checked against the segment before it when present
/// (`audit::verify_dir`).
pub fn verify_journal(
    dir: &Path,
    expected_head: Option<[u8; 32]>,
    key: Option<&JournalKey>,
) -> Result<crate::audit::DirReport, crate::audit::VerifyFailure> {
    crate::audit::verify_dir::<Event>(dir, expected_head, key)
}

/// Unix seconds as `YYYY-MM-DD HH:MM:SS UTC`.
pub fn utc(ts: u64) -> String {
    crate::pause::utc(ts)
}
