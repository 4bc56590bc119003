//! Refusals are audited, but a flood of them must not grow the journal without bound (a peer
//! asking for an unknown agent in a loop made one fdatasync'd entry per request: about 9,000
//! entries and 3.4 MB per second).
//!
//! Refusals are merged per reason: the [`Key`] is the kind of entry, the agent (when the
//! policy names it; all agents the policy does not name share one key, so the number of keys
//! is bounded by the policy, not by what peers send), the error kind and the rule. The first
//! refusal of a key in a [`WINDOW_SECS`] window is written in full, durably, before its answer,
//! as before; the others within the window are only counted, answered at once, and written as
//! one `refusals_merged` entry (the count, the first and last time) when the window is over:
//! at the next refusal of any key after that. So a flood costs at most two entries per key per
//! minute.
//!
//! What is not merged: a wrong operator code (the lockout replays every one of them, see
//! `approval::lockout`), and everything that is not a refusal. What a crash loses: the counts
//! of windows still open (at most one window per key); the first refusal of each is on disk.

use std::collections::BTreeMap;

use vigil_protocol::{AgentId, ErrorKind, Rule};

use crate::ledger::Event;

/// How long refusals of one key are merged into one count.
pub(crate) const WINDOW_SECS: u64 = 60;

/// What refusals are merged by.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Key {
    /// The entry type of the refusal (`denied`, `approval_refused`, `operator_code_refused`).
    pub(crate) what: &'static str,
    /// The agent, when the policy names it (none: any agent it does not name, or no agent).
    pub(crate) agent: Option<AgentId>,
    /// The protocol error kind.
    pub(crate) kind: ErrorKind,
    /// The policy rule, for `policy_denied`.
    pub(crate) rule: Option<Rule>,
}

impl Key {
    /// The key as comparable parts (the wire names of the kind and rule).
    fn parts(&self) -> (&str, Option<&AgentId>, &str, Option<&str>) {
        (
            self.what,
            self.agent.as_ref(),
            self.kind.as_str(),
            self.rule.map(|r| r.as_str()),
        )
    }
}

impl Ord for Key {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.parts().cmp(&other.parts())
    }
}

impl PartialOrd for Key {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

/// One key's open window.
#[derive(Debug)]
struct Window {
    started: u64,
    merged: u64,
    first_merged: u64,
    last_merged: u64,
}

/// The open windows, one per key.
#[derive(Debug, Default)]
pub(crate) struct Throttle {
    windows: BTreeMap<Key, Window>,
}

/// What to do with one refusal.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Write these entries (counts of windows that ended, then the refusal itself) before
    /// answering.
    Write(Vec<Event>),
    /// Counted; answer at once, nothing to write now.
    Merged,
}

impl Throttle {
    /// Decides on a refusal of `key` at `now`, whose full entry is `event`.
    pub(crate) fn refusal(&mut self, key: Key, event: Event, now: u64) -> Verdict {
        if let Some(w) = self.windows.get_mut(&key)
            && now < w.started.saturating_add(WINDOW_SECS)
            && now >= w.started
        {
            if w.merged == 0 {
                w.first_merged = now;
            }
            w.merged += 1;
            w.last_merged = now;
            return Verdict::Merged;
        }
        let mut events = self.take_ended(now, Some(&key));
        self.windows.insert(
            key,
            Window {
                started: now,
                merged: 0,
                first_merged: now,
                last_merged: now,
            },
        );
        events.push(event);
        Verdict::Write(events)
    }

    /// The counts of every window over at `now` (and of `also`'s, which a new refusal
    /// replaces), as entries; those windows are closed.
    fn take_ended(&mut self, now: u64, also: Option<&Key>) -> Vec<Event> {
        let ended: Vec<Key> = self
            .windows
            .iter()
            .filter(|(k, w)| {
                Some(*k) == also || now >= w.started.saturating_add(WINDOW_SECS) || now < w.started
            })
            .map(|(k, _)| k.clone())
            .collect();
        let mut events = Vec::new();
        for key in ended {
            if let Some(w) = self.windows.remove(&key)
                && w.merged > 0
            {
                events.push(Event::RefusalsMerged {
                    refused: key.what.to_string(),
                    agent: key.agent,
                    kind: key.kind,
                    rule: key.rule,
                    count: w.merged,
                    first_ts: w.first_merged,
                    last_ts: w.last_merged,
                });
            }
        }
        events
    }

    /// Refusals counted and not yet written.
    #[cfg(test)]
    pub(crate) fn pending(&self) -> u64 {
        self.windows.values().map(|w| w.merged).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(agent: Option<&str>) -> Key {
        Key {
            what: "denied",
            agent: agent.map(|a| a.parse().unwrap()),
            kind: ErrorKind::UnknownAgent,
            rule: None,
        }
    }

    fn denied(message: &str) -> Event {
        Event::Denied {
            agent: "nobody".parse().unwrap(),
            kind: ErrorKind::UnknownAgent,
            rule: None,
            message: message.into(),
        }
    }

    #[test]
    fn a_flood_is_one_entry_per_key_and_window_and_the_count_is_kept() {
        let mut t = Throttle::default();
        let t0 = 1_700_000_000;
        assert_eq!(
            t.refusal(key(None), denied("first"), t0),
            Verdict::Write(vec![denied("first")])
        );
        for i in 0..9_000 {
            assert_eq!(
                t.refusal(key(None), denied("x"), t0 + i % 60),
                Verdict::Merged
            );
        }
        // Another key has its own window.
        assert!(matches!(
            t.refusal(key(Some("trader")), denied("t"), t0 + 1),
            Verdict::Write(_)
        ));
        assert_eq!(t.pending(), 9_000);
        // After the window, the next refusal writes the count, then itself.
        let Verdict::Write(events) = t.refusal(key(None), denied("again"), t0 + 60) else {
            panic!("a new window writes");
        };
        assert_eq!(events.len(), 2);
        let Event::RefusalsMerged {
            count,
            first_ts,
            last_ts,
            agent,
            ..
        } = &events[0]
        else {
            panic!("the count first: {events:?}");
        };
        assert_eq!((*count, *first_ts, *last_ts), (9_000, t0, t0 + 59));
        assert_eq!(agent, &None);
        assert_eq!(events[1], denied("again"));
        assert_eq!(t.pending(), 0);
    }

    #[test]
    fn a_clock_step_back_closes_the_window_rather_than_extending_it() {
        let mut t = Throttle::default();
        let t0 = 1_700_000_000;
        t.refusal(key(None), denied("a"), t0);
        assert_eq!(t.refusal(key(None), denied("b"), t0 + 5), Verdict::Merged);
        let Verdict::Write(events) = t.refusal(key(None), denied("c"), t0 - 100) else {
            panic!("a step back starts a new window");
        };
        assert_eq!(events.len(), 2);
    }
}
