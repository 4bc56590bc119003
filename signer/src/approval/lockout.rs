//! The lockout of operator codes: how many wrong codes an attacker may try, whatever they do
//! to the signer's process.
//!
//! Every wrong code is an audit entry (`approval_refused` / `operator_code_refused` with the
//! kind `approval_invalid_code` / `operator_code_invalid`), made durable BEFORE the answer says
//! "wrong". At start the journal is replayed through [`Lockout::record_failure`] with each
//! entry's own timestamp, so the state after a restart (`kill -9` included) is exactly the state
//! before it: a restart gives no fresh guesses.
//!
//! The rules:
//! - [`MAX_CONSECUTIVE_FAILURES`] wrong codes in a row lock codes for [`LOCKOUT_SECS`]; each
//!   further lock without an accepted code in between lasts twice as long as the one before
//!   (5, 10, 20 minutes ..., at most [`MAX_LOCKOUT_SECS`]).
//! - [`DAILY_FAILURE_BUDGET`] wrong codes within 24 hours lock codes for good: every code is
//!   refused, the right one too, until the operator runs `vigil-signer unlock-codes` at the
//!   appliance's console (recorded as `codes_unlocked`). An accepted code does not refill the
//!   budget; only the console does.
//!
//! So an attacker gets at most [`DAILY_FAILURE_BUDGET`] guesses per console visit.

use std::collections::VecDeque;

use vigil_protocol::ErrorKind;

use super::Refusal;

/// Wrong codes in a row before codes lock.
pub(crate) const MAX_CONSECUTIVE_FAILURES: u32 = 3;
/// How long the first lock lasts; each further lock in a row doubles it.
pub(crate) const LOCKOUT_SECS: u64 = 300;
/// The longest a timed lock lasts.
pub(crate) const MAX_LOCKOUT_SECS: u64 = 86_400;
/// Wrong codes within [`BUDGET_WINDOW_SECS`] after which codes stay locked until the console
/// unlocks them.
pub(crate) const DAILY_FAILURE_BUDGET: usize = 10;
/// The window of the failure budget.
pub(crate) const BUDGET_WINDOW_SECS: u64 = 86_400;

/// The console command that lifts an exhausted budget (named in refusals).
pub(crate) const UNLOCK_COMMAND: &str = "vigil-signer unlock-codes";

/// Failure counts and locks; rebuilt from the journal at start.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Lockout {
    /// Wrong codes since the last accepted code or the last lock.
    consecutive: u32,
    /// Timed locks since the last accepted code (the exponent of the back-off).
    locks_in_row: u32,
    /// Unix seconds until which codes are refused.
    locked_until: u64,
    /// Times of the wrong codes within the budget window (at most the budget).
    recent: VecDeque<u64>,
    /// The budget is spent: codes are refused until the console unlocks them.
    exhausted: bool,
}

/// What a journal entry says of operator codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CodeOutcome {
    /// A wrong (or reused) code: counted.
    Wrong,
    /// A code accepted.
    Accepted,
    /// The console's `unlock-codes`.
    Unlocked,
}

/// What the lockout says of the state it is in, for `status` and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LockState {
    /// Codes are checked.
    Open,
    /// Codes are refused until this unix time.
    Until(u64),
    /// Codes are refused until the console unlocks them.
    UntilConsoleUnlock,
}

impl Lockout {
    /// Refuses any code while locked (before the code is even compared).
    pub(crate) fn check(&self, now: u64) -> Result<(), Refusal> {
        match self.state(now) {
            LockState::Open => Ok(()),
            LockState::Until(until) => Err(Refusal {
                kind: ErrorKind::RateLimited,
                message: format!(
                    "operator codes are locked for {} more seconds after {MAX_CONSECUTIVE_FAILURES} wrong codes in a row; \
                     if you did not enter them, someone else is trying",
                    until - now
                ),
            }),
            LockState::UntilConsoleUnlock => Err(exhausted_refusal()),
        }
    }

    /// The lock in force at `now`.
    pub(crate) fn state(&self, now: u64) -> LockState {
        if self.exhausted {
            LockState::UntilConsoleUnlock
        } else if now < self.locked_until {
            LockState::Until(self.locked_until)
        } else {
            LockState::Open
        }
    }

    /// Counts a wrong code at `now` (live, or replayed with its entry's time). Returns what the
    /// operator should be told on top of "wrong code" (a lock that starts now), if anything.
    pub(crate) fn record_failure(&mut self, now: u64) -> Option<String> {
        let since = now.saturating_sub(BUDGET_WINDOW_SECS);
        while self.recent.front().is_some_and(|t| *t < since) {
            self.recent.pop_front();
        }
        self.recent.push_back(now);
        if self.recent.len() >= DAILY_FAILURE_BUDGET {
            self.exhausted = true;
            return Some(format!(
                "; that was the {DAILY_FAILURE_BUDGET}th wrong code within 24 hours: operator codes are now refused until \
                 `{UNLOCK_COMMAND}` is run on the appliance's console"
            ));
        }
        self.consecutive += 1;
        if self.consecutive < MAX_CONSECUTIVE_FAILURES {
            return None;
        }
        self.consecutive = 0;
        let secs = lock_secs(self.locks_in_row);
        self.locks_in_row = self.locks_in_row.saturating_add(1);
        self.locked_until = now.saturating_add(secs);
        Some(format!(
            "; operator codes are now locked for {secs} seconds ({} of {DAILY_FAILURE_BUDGET} wrong codes allowed within 24 hours used)",
            self.recent.len()
        ))
    }

    /// An accepted code: the count in a row and the back-off start again (the budget does not).
    pub(crate) fn record_success(&mut self) {
        self.consecutive = 0;
        self.locks_in_row = 0;
    }

    /// Replays what a journal entry says of codes (see [`CodeOutcome`]) at its time `ts`.
    pub(crate) fn replay(&mut self, outcome: CodeOutcome, ts: u64) {
        match outcome {
            CodeOutcome::Wrong => drop(self.record_failure(ts)),
            CodeOutcome::Accepted => self.record_success(),
            CodeOutcome::Unlocked => self.unlock(),
        }
    }

    /// The console's unlock: every count and lock is cleared.
    pub(crate) fn unlock(&mut self) {
        *self = Lockout::default();
    }

    /// Wrong codes counted within the budget window.
    pub(crate) fn failures_in_window(&self) -> usize {
        self.recent.len()
    }
}

/// The length of the timed lock after `locks_in_row` earlier ones: 300 s doubled each time,
/// at most [`MAX_LOCKOUT_SECS`].
fn lock_secs(locks_in_row: u32) -> u64 {
    let factor = 1u64.checked_shl(locks_in_row.min(32)).unwrap_or(u64::MAX);
    LOCKOUT_SECS.saturating_mul(factor).min(MAX_LOCKOUT_SECS)
}

/// The refusal while the budget is spent.
fn exhausted_refusal() -> Refusal {
    Refusal {
        kind: ErrorKind::RateLimited,
        message: format!(
            "operator codes are refused: {DAILY_FAILURE_BUDGET} wrong codes were entered within 24 hours. \
             If you did not enter them, someone else is trying. Codes work again after `{UNLOCK_COMMAND}` \
             is run as root on the appliance's console (see docs/operator-guide.md)"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locks_back_off_exponentially_and_the_budget_needs_the_console() {
        let mut l = Lockout::default();
        let mut now = 1_700_000_000;
        let mut locks = Vec::new();
        for i in 1..=DAILY_FAILURE_BUDGET {
            assert_eq!(l.check(now), Ok(()), "guess {i} is checked");
            let said = l.record_failure(now);
            if let LockState::Until(until) = l.state(now) {
                locks.push(until - now);
                now = until;
            }
            assert_eq!(said.is_some(), i % 3 == 0 || i == DAILY_FAILURE_BUDGET);
        }
        assert_eq!(locks, vec![300, 600, 1200]);
        assert_eq!(l.state(now), LockState::UntilConsoleUnlock);
        // Days later, still refused: only the console unlocks.
        let later = now + 10 * 86_400;
        assert_eq!(l.check(later).unwrap_err().kind, ErrorKind::RateLimited);
        assert!(l.check(later).unwrap_err().message.contains(UNLOCK_COMMAND));
        l.unlock();
        assert_eq!(l.check(later), Ok(()));
    }

    #[test]
    fn a_success_resets_the_back_off_but_not_the_budget() {
        let mut l = Lockout::default();
        let now = 1_700_000_000;
        for _ in 0..3 {
            l.record_failure(now);
        }
        assert_eq!(l.state(now), LockState::Until(now + 300));
        l.record_success();
        let t = now + 300;
        for _ in 0..3 {
            l.record_failure(t);
        }
        assert_eq!(l.state(t), LockState::Until(t + 300), "back-off restarted");
        assert_eq!(l.failures_in_window(), 6);
        // Failures older than a day leave the window.
        let next_day = t + BUDGET_WINDOW_SECS + 1;
        l.record_failure(next_day);
        assert_eq!(l.failures_in_window(), 1);
    }

    #[test]
    fn lock_lengths_are_capped() {
        assert_eq!(lock_secs(0), 300);
        assert_eq!(lock_secs(3), 2400);
        assert_eq!(lock_secs(20), MAX_LOCKOUT_SECS);
        assert_eq!(lock_secs(u32::MAX), MAX_LOCKOUT_SECS);
    }
}
