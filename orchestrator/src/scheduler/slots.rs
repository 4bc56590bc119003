//! When each agent decides: the scheduler's bookkeeping, kept apart from the decisions
//! themselves so its rules can be checked without a signer or a clock.
//!
//! - Each agent has a slot every `schedule_secs`, at a fixed rate (the next slot is a period
//!   after the last one, not after the decision ended), its first slot spread over the first
//!   period by its place in the config so the agents do not all start in the same instant.
//! - An agent whose decision is still running is not started again: it is skipped at this
//!   pass, never queued twice.
//! - Among the due agents, the ones due longest go first, as many as the bound leaves room
//!   for; the others stay due.
//! - An agent starts at most one decision per wall-clock second: a decision's idempotency key
//!   is its agent, its Unix second and its intent, so a second decision with the same intent
//!   in the same second would be refused as the first one again. A slot that comes up in the
//!   second of the agent's last start (its previous slot ran late) waits for the next second.
//! - A slot missed by a whole period (a slow decision, or more agents due than the bound lets
//!   through) is skipped and counted, never made up later: the backlog is dropped, not queued.
//!   The first skip of a streak is reported once, and so is the agent's return to its schedule.

use std::time::Duration;

use tokio::time::Instant;

/// One agent's place in the schedule.
#[derive(Debug)]
struct Slot {
    period: Duration,
    /// Its next (or current, if it has passed) slot.
    due: Instant,
    running: bool,
    /// Not started before this (the next wall-clock second after its last start).
    not_before: Instant,
    /// Slots skipped since it last started on time.
    streak: u64,
}

/// Every agent's slots, by its index in the config.
#[derive(Debug)]
pub(super) struct Slots {
    slots: Vec<Slot>,
    skipped: u64,
}

/// What a pass over the slots found to report.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Note {
    /// Agent `agent` (an index) fell behind: `skipped` slots were dropped (the first of a
    /// streak).
    Behind { agent: usize, skipped: u64 },
    /// Agent `agent` starts on time again after `skipped` dropped slots.
    Caught { agent: usize, skipped: u64 },
}

impl Slots {
    /// Slots for agents with these periods (at least a second each), starting at `start`.
    pub(super) fn new(periods: &[Duration], start: Instant) -> Slots {
        let n = u32::try_from(periods.len()).unwrap_or(u32::MAX).max(1);
        let slots = periods
            .iter()
            .enumerate()
            .map(|(i, period)| {
                let period = (*period).max(Duration::from_secs(1));
                let i = u32::try_from(i).unwrap_or(u32::MAX);
                Slot {
                    period,
                    due: start + period / n * i,
                    running: false,
                    not_before: start,
                    streak: 0,
                }
            })
            .collect();
        Slots { slots, skipped: 0 }
    }

    /// Slots dropped so far, all agents together.
    pub(super) fn skipped(&self) -> u64 {
        self.skipped
    }

    /// At `now`, with room for `room` more decisions: drops every slot missed by a whole
    /// period, then takes the due agents that are not running and did not start in this
    /// wall-clock second, the longest due first, at most `room` of them; each is marked
    /// running, its next slot set a period on, and held until `next_second` (the start of the
    /// next wall-clock second). Returns the agents to start and what to report.
    pub(super) fn take_due(
        &mut self,
        now: Instant,
        next_second: Instant,
        room: usize,
    ) -> (Vec<usize>, Vec<Note>) {
        let mut notes = Vec::new();
        for (agent, slot) in self.slots.iter_mut().enumerate() {
            let Some(late) = now.checked_duration_since(slot.due) else {
                continue;
            };
            // Whole periods since the slot: that many slots passed without a start (whether the
            // agent was still running or the bound had no room).
            let behind =
                u64::try_from(late.as_nanos() / slot.period.as_nanos().max(1)).unwrap_or(u64::MAX);
            if behind == 0 {
                continue;
            }
            let step = u32::try_from(behind).unwrap_or(u32::MAX);
            slot.due += slot.period.saturating_mul(step);
            if slot.streak == 0 {
                notes.push(Note::Behind {
                    agent,
                    skipped: behind,
                });
            }
            slot.streak = slot.streak.saturating_add(behind);
            self.skipped = self.skipped.saturating_add(behind);
        }
        let mut due: Vec<(Instant, usize)> = self
            .slots
            .iter()
            .enumerate()
            .filter(|(_, s)| !s.running && s.due <= now && s.not_before <= now)
            .map(|(i, s)| (s.due, i))
            .collect();
        due.sort_unstable();
        due.truncate(room);
        let mut start = Vec::with_capacity(due.len());
        for (_, agent) in due {
            let Some(slot) = self.slots.get_mut(agent) else {
                continue;
            };
            slot.running = true;
            slot.due += slot.period;
            slot.not_before = next_second;
            if slot.streak > 0 {
                notes.push(Note::Caught {
                    agent,
                    skipped: slot.streak,
                });
                slot.streak = 0;
            }
            start.push(agent);
        }
        (start, notes)
    }

    /// Agent `agent`'s decision ended.
    pub(super) fn finished(&mut self, agent: usize) {
        if let Some(slot) = self.slots.get_mut(agent) {
            slot.running = false;
        }
    }

    /// The earliest an agent that is not running may start (a running one is woken by its
    /// end).
    pub(super) fn next_due(&self) -> Option<Instant> {
        self.slots
            .iter()
            .filter(|s| !s.running)
            .map(|s| s.due.max(s.not_before))
            .min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: Duration = Duration::from_secs(1);
    const MS: Duration = Duration::from_millis(1);

    /// `take_due` where the wall-clock second never holds an agent back.
    fn take(slots: &mut Slots, now: Instant, room: usize) -> (Vec<usize>, Vec<Note>) {
        slots.take_due(now, now + MS, room)
    }

    #[test]
    fn first_slots_are_spread_over_the_first_period() {
        let t0 = Instant::now();
        let mut slots = Slots::new(&[SEC; 4], t0);
        assert_eq!(slots.next_due(), Some(t0));
        let (start, _) = take(&mut slots, t0 + 499 * MS, 10);
        assert_eq!(start, [0, 1], "agents 0 and 1 are due at 0 and 250 ms");
        let (start, _) = take(&mut slots, t0 + 750 * MS, 10);
        assert_eq!(start, [2, 3]);
        assert_eq!(slots.next_due(), None, "all four are running");
    }

    #[test]
    fn a_running_agent_is_not_started_again_and_its_missed_slot_is_skipped() {
        let t0 = Instant::now();
        let mut slots = Slots::new(&[SEC], t0);
        assert_eq!(take(&mut slots, t0, 8).0, [0]);
        // Its next slot (1 s) comes while it still runs: not started, not queued.
        assert_eq!(take(&mut slots, t0 + 1500 * MS, 8), (vec![], vec![]));
        // It is still running at 2.5 s: the slot of 1 s is missed by a whole period.
        let (start, notes) = take(&mut slots, t0 + 2500 * MS, 8);
        assert!(start.is_empty());
        assert_eq!(
            notes,
            [Note::Behind {
                agent: 0,
                skipped: 1
            }]
        );
        slots.finished(0);
        // It ends at 2.6 s: its slot of 2 s is due now, once, and it is back on schedule.
        let (start, notes) = take(&mut slots, t0 + 2600 * MS, 8);
        assert_eq!(start, [0]);
        assert_eq!(
            notes,
            [Note::Caught {
                agent: 0,
                skipped: 1
            }]
        );
        assert_eq!(slots.skipped(), 1);
        slots.finished(0);
        assert_eq!(slots.next_due(), Some(t0 + 3 * SEC), "fixed rate: 3 s");
    }

    #[test]
    fn the_longest_due_go_first_and_the_bound_holds_the_rest() {
        let t0 = Instant::now();
        let mut slots = Slots::new(&[SEC; 10], t0);
        let (start, _) = take(&mut slots, t0 + 950 * MS, 3);
        assert_eq!(
            start,
            [0, 1, 2],
            "due at 0, 100 and 200 ms: the oldest first"
        );
        slots.finished(1);
        let (start, _) = take(&mut slots, t0 + 960 * MS, 2);
        assert_eq!(
            start,
            [3, 4],
            "agent 1 is next due at 1.1 s, later than 3 and 4"
        );
        let (start, _) = take(&mut slots, t0 + 1150 * MS, 3);
        assert_eq!(start, [5, 6, 7], "still older than agent 1's second slot");
    }

    #[test]
    fn an_agent_starts_at_most_once_in_a_wall_clock_second() {
        let t0 = Instant::now();
        let mut slots = Slots::new(&[SEC], t0);
        // Its slot of 0 s starts late, at 0.9 s, in the wall-clock second that ends at 1.2 s.
        assert_eq!(slots.take_due(t0 + 900 * MS, t0 + 1200 * MS, 8).0, [0]);
        slots.finished(0);
        // Its slot of 1 s is due at 1.0 s but waits for the next second.
        assert_eq!(slots.next_due(), Some(t0 + 1200 * MS));
        let (start, notes) = slots.take_due(t0 + 1100 * MS, t0 + 1200 * MS, 8);
        assert!(start.is_empty() && notes.is_empty());
        assert_eq!(slots.take_due(t0 + 1200 * MS, t0 + 2200 * MS, 8).0, [0]);
        assert_eq!(slots.skipped(), 0, "late, not missed");
    }

    #[test]
    fn a_backlog_is_skipped_and_counted_not_queued() {
        let t0 = Instant::now();
        let mut slots = Slots::new(&[SEC; 2], t0);
        // Nothing ran for 5.2 s (e.g. the process was stopped): agent 0 missed its slots at
        // 0..=4 s but the last, agent 1 those at 0.5..=3.5 s.
        let (start, notes) = take(&mut slots, t0 + 5200 * MS, 8);
        // Each starts once, not once per missed slot; agent 1's current slot (4.5 s) is older
        // than agent 0's (5 s), so it goes first.
        assert_eq!(start, [1, 0]);
        assert_eq!(
            notes,
            [
                Note::Behind {
                    agent: 0,
                    skipped: 5
                },
                Note::Behind {
                    agent: 1,
                    skipped: 4
                },
                Note::Caught {
                    agent: 1,
                    skipped: 4
                },
                Note::Caught {
                    agent: 0,
                    skipped: 5
                },
            ]
        );
        assert_eq!(slots.skipped(), 9);
        slots.finished(0);
        slots.finished(1);
        assert_eq!(slots.next_due(), Some(t0 + 5500 * MS));
    }
}
