//! Bounded bookkeeping for the bot: how often strangers are logged (a flood of messages
//! from non-operators must not fill the disk), and which alerts were just sent (the same
//! alert every tick must not flood the operator's phone). Pure, clock passed in.

use std::collections::BTreeMap;

/// Stranger log lines allowed per window.
pub(super) const STRANGER_LINES_PER_WINDOW: u32 = 5;
/// The stranger log window, seconds.
pub(super) const STRANGER_WINDOW_SECS: u64 = 60;
/// The same alert text is sent at most once per this many seconds.
pub(super) const ALERT_REPEAT_SECS: u64 = 600;
/// Most distinct alert texts remembered for de-duplication.
const MAX_REMEMBERED_ALERTS: usize = 256;

/// What to log about a stranger's update.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum StrangerLogLine {
    /// Log this update (and, if non-zero, how many were dropped in the previous window).
    Log {
        /// Updates not logged in the window before this one.
        suppressed_before: u64,
    },
    /// Over the limit: count it, log nothing.
    Suppress,
}

/// A fixed-window limiter for stranger log lines: at most
/// [`STRANGER_LINES_PER_WINDOW`] per [`STRANGER_WINDOW_SECS`], whatever the number of
/// strangers or messages; what is dropped is counted and reported once.
#[derive(Debug, Default)]
pub(super) struct StrangerLog {
    window_start: u64,
    logged: u32,
    suppressed: u64,
}

impl StrangerLog {
    /// Decides whether the stranger update seen at `now` is logged.
    pub(super) fn admit(&mut self, now: u64) -> StrangerLogLine {
        if now >= self.window_start.saturating_add(STRANGER_WINDOW_SECS) {
            self.window_start = now;
            self.logged = 0;
        }
        if self.logged < STRANGER_LINES_PER_WINDOW {
            self.logged += 1;
            let suppressed_before = std::mem::take(&mut self.suppressed);
            StrangerLogLine::Log { suppressed_before }
        } else {
            self.suppressed = self.suppressed.saturating_add(1);
            StrangerLogLine::Suppress
        }
    }
}

/// Remembers when each alert text was last sent.
#[derive(Debug, Default)]
pub(super) struct AlertDedup {
    last_sent: BTreeMap<String, u64>,
}

impl AlertDedup {
    /// Whether `text` should be sent at `now` (and records it if so).
    pub(super) fn should_send(&mut self, text: &str, now: u64) -> bool {
        if let Some(&at) = self.last_sent.get(text)
            && now < at.saturating_add(ALERT_REPEAT_SECS)
        {
            return false;
        }
        self.last_sent
            .retain(|_, at| now < at.saturating_add(ALERT_REPEAT_SECS));
        if self.last_sent.len() >= MAX_REMEMBERED_ALERTS {
            self.last_sent.pop_first();
        }
        self.last_sent.insert(text.to_string(), now);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flood_is_logged_a_bounded_number_of_times() {
        let mut log = StrangerLog::default();
        let logged = (0..10_000)
            .filter(|_| matches!(log.admit(1_000), StrangerLogLine::Log { .. }))
            .count();
        assert_eq!(logged, STRANGER_LINES_PER_WINDOW as usize);
        // The next window logs again and reports what was dropped.
        assert_eq!(
            log.admit(1_000 + STRANGER_WINDOW_SECS),
            StrangerLogLine::Log {
                suppressed_before: 10_000 - u64::from(STRANGER_LINES_PER_WINDOW)
            }
        );
        assert_eq!(
            log.admit(1_000 + STRANGER_WINDOW_SECS),
            StrangerLogLine::Log {
                suppressed_before: 0
            }
        );
    }

    #[test]
    fn the_same_alert_is_sent_once_per_period() {
        let mut d = AlertDedup::default();
        assert!(d.should_send("cap", 100));
        assert!(!d.should_send("cap", 101));
        assert!(d.should_send("other", 101));
        assert!(!d.should_send("cap", 100 + ALERT_REPEAT_SECS - 1));
        assert!(d.should_send("cap", 100 + ALERT_REPEAT_SECS));
        for i in 0..1_000 {
            d.should_send(&format!("a{i}"), 5_000);
        }
        assert!(d.last_sent.len() <= MAX_REMEMBERED_ALERTS);
    }
}
