//! `vigil-signer unlock-codes`: the appliance's console lifts the lock on operator codes.
//!
//! Once the daily budget of wrong codes is spent (`approval::lockout`), the signer refuses every
//! code until this runs. It runs as root at the appliance, with the signer STOPPED (it takes the
//! journal's lock, so it refuses to run beside a running signer): it reads the journal, says
//! what the lock was, and appends a `codes_unlocked` entry, which the signer replays at its next
//! start. The authority is physical: whoever runs it is root on the appliance, which no peer of
//! the signer's socket (a compromised orchestrator included) is.

use std::path::Path;

use crate::approval::{LockState, Lockout};
use crate::audit::{AUDIT_FILE, Opened};
use crate::devinit::layout;
use crate::engine::system_now;
use crate::error::Error;
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
pub fn unlock_codes(state_dir: &Path) -> Result<CodesUnlocked, Error> {
    let dir = layout::ledger(state_dir);
    if !dir.join(AUDIT_FILE).is_file() {
        return Err(Error::Other(format!(
            "no journal at {}: is --state-dir the signer's state dir? Nothing to unlock",
            dir.join(AUDIT_FILE).display()
        )));
    }
    let opened: Opened<Event> = Opened::open(&dir)?;
    let now = system_now();
    let mut lockout = Lockout::default();
    for entry in opened.entries() {
        let entry = entry?;
        if let Some(outcome) = entry.event.code_outcome() {
            lockout.replay(outcome, entry.ts);
        }
    }
    let state = lockout.state(now);
    let wrong_codes_in_window = u64::try_from(lockout.failures_in_window()).unwrap_or(u64::MAX);
    let log = opened.start()?;
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
