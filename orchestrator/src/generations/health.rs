//! The health check after an apply (`docs/operations.md`, "Rollback"): for
//! `[generations] health_window_secs` after a generation becomes current, the orchestrator
//! watches it; at the end of the window (or at start, if the daemon was down when it ended)
//! three checks decide. During the window it probes every [`probe_interval`]: a signer that
//! fails its self-check at two probes in a row, or an error spike in the decisions so far,
//! fails the generation at once ([`judge_early`]); whether every agent decided is only judged
//! at the end. The checks:
//! 1. the signer's self-check: its `status` op answers;
//! 2. decisions flow: every agent that is scheduled and not paused made at least one;
//! 3. no error spike: the share of errors (refusals, and holds caused by a failing provider,
//!    an invalid reply, a chain, venue or signer failure) among the window's decisions is not
//!    above `error_spike_multiple` times the share in the window of the same length before
//!    the apply, once there are at least `min_errors` of them.
//!
//! The first check that fails is the verdict, with its numbers; the caller rolls back.

use std::collections::BTreeMap;

use crate::config::GenerationSettings;
use crate::store::WindowCounts;

/// What the checks read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Observed {
    /// Whether the signer's `status` answered, or why not.
    pub signer: Result<(), String>,
    /// The agents expected to decide (scheduled, not paused).
    pub expected: Vec<String>,
    /// Per agent, the decisions in the window after the apply.
    pub window: BTreeMap<String, WindowCounts>,
    /// Per agent, the decisions in the window of the same length before it.
    pub before: BTreeMap<String, WindowCounts>,
}

/// How often the window is probed: a twentieth of it, between 1 and 30 seconds.
pub fn probe_interval(settings: &GenerationSettings) -> u64 {
    u64::from(settings.health_window_secs / 20).clamp(1, 30)
}

/// A probe during the window: the signer's self-check (`signer_failed_before`: it failed at
/// the previous probe too) and the error spike over the decisions so far; Ok while neither
/// fails (agents that have not decided yet are judged at the end only).
pub fn judge_early(
    settings: &GenerationSettings,
    seen: &Observed,
    signer_failed_before: bool,
) -> Result<(), String> {
    if let Err(why) = &seen.signer {
        if signer_failed_before {
            return Err(format!(
                "signer self-check failed at two probes in a row during the window: its status op did not answer ({why})"
            ));
        }
        return Ok(());
    }
    spike(settings, seen, "so far in the")
}

/// Ok, or which check failed and its numbers.
pub fn judge(settings: &GenerationSettings, seen: &Observed) -> Result<(), String> {
    if let Err(why) = &seen.signer {
        return Err(format!(
            "signer self-check failed: its status op did not answer ({why})"
        ));
    }
    let silent: Vec<&str> = seen
        .expected
        .iter()
        .filter(|a| seen.window.get(*a).is_none_or(|c| c.decisions == 0))
        .map(String::as_str)
        .collect();
    if !silent.is_empty() {
        return Err(format!(
            "decisions stopped: {} made no decision in the {} s window",
            silent.join(", "),
            settings.health_window_secs
        ));
    }
    spike(settings, seen, "in the")
}

/// The error-spike check over `seen`'s windows (`when` words the window in the message).
fn spike(settings: &GenerationSettings, seen: &Observed, when: &str) -> Result<(), String> {
    let sum = |m: &BTreeMap<String, WindowCounts>| {
        m.values()
            .fold((0u64, 0u64), |(d, e), c| (d + c.decisions, e + c.errors))
    };
    let (decisions, errors) = sum(&seen.window);
    let (before_decisions, before_errors) = sum(&seen.before);
    if errors >= u64::from(settings.min_errors) && decisions > 0 {
        // errors/decisions > multiple × before_errors/before_decisions, in integers; with no
        // decisions before, any share at or above min_errors is a spike.
        let spike = before_decisions == 0
            || u128::from(errors) * u128::from(before_decisions)
                > u128::from(settings.error_spike_multiple)
                    * u128::from(before_errors)
                    * u128::from(decisions);
        if spike {
            return Err(format!(
                "error spike: {errors} of {decisions} decisions were errors {when} {} s window, against {before_errors} of {before_decisions} in the window before (limit: {}x that rate, at least {} errors)",
                settings.health_window_secs, settings.error_spike_multiple, settings.min_errors
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> GenerationSettings {
        GenerationSettings {
            dir: "/nowhere".into(),
            keep: 20,
            health_window_secs: 60,
            error_spike_multiple: 3,
            min_errors: 3,
            proposal_sandbox: "bubblewrap".into(),
        }
    }

    fn counts(pairs: &[(&str, u64, u64)]) -> BTreeMap<String, WindowCounts> {
        pairs
            .iter()
            .map(|(a, d, e)| {
                (
                    (*a).to_owned(),
                    WindowCounts {
                        decisions: *d,
                        errors: *e,
                    },
                )
            })
            .collect()
    }

    fn seen(window: &[(&str, u64, u64)], before: &[(&str, u64, u64)]) -> Observed {
        Observed {
            signer: Ok(()),
            expected: vec!["a".into(), "b".into()],
            window: counts(window),
            before: counts(before),
        }
    }

    #[test]
    fn the_checks_decide_in_order_with_their_numbers() {
        let s = settings();
        // Healthy: both decide, errors at the old rate.
        assert_eq!(
            judge(
                &s,
                &seen(&[("a", 10, 1), ("b", 10, 1)], &[("a", 10, 1), ("b", 10, 1)])
            ),
            Ok(())
        );
        // Errors below min_errors never spike, even from zero.
        assert_eq!(judge(&s, &seen(&[("a", 10, 2), ("b", 10, 0)], &[])), Ok(()));
        // Exactly 3x the old rate is not above it; more is.
        assert_eq!(
            judge(
                &s,
                &seen(&[("a", 10, 3), ("b", 10, 3)], &[("a", 10, 1), ("b", 10, 1)])
            ),
            Ok(())
        );
        let err = judge(
            &s,
            &seen(&[("a", 10, 4), ("b", 10, 3)], &[("a", 10, 1), ("b", 10, 1)]),
        )
        .unwrap_err();
        assert!(
            err.contains("error spike: 7 of 20") && err.contains("2 of 20"),
            "{err}"
        );
        // Every decision an error, none before.
        let err = judge(
            &s,
            &seen(&[("a", 5, 5), ("b", 5, 5)], &[("a", 5, 0), ("b", 5, 0)]),
        )
        .unwrap_err();
        assert!(err.starts_with("error spike"), "{err}");
        // An agent that stopped deciding.
        let err = judge(&s, &seen(&[("a", 10, 0)], &[])).unwrap_err();
        assert_eq!(
            err,
            "decisions stopped: b made no decision in the 60 s window"
        );
        // The signer first.
        let mut down = seen(&[("a", 10, 0)], &[]);
        down.signer = Err("connection refused".into());
        let err = judge(&s, &down).unwrap_err();
        assert!(err.starts_with("signer self-check failed"), "{err}");
    }

    #[test]
    fn a_probe_fails_early_on_a_spike_or_a_signer_down_twice_but_waits_for_silent_agents() {
        let s = settings();
        assert_eq!(probe_interval(&s), 3);
        assert_eq!(
            probe_interval(&GenerationSettings {
                health_window_secs: 5,
                ..s.clone()
            }),
            1
        );
        assert_eq!(
            probe_interval(&GenerationSettings {
                health_window_secs: 86_400,
                ..s.clone()
            }),
            30
        );
        // b has not decided yet: not a verdict before the window ends.
        assert_eq!(judge_early(&s, &seen(&[("a", 3, 0)], &[]), false), Ok(()));
        // The spike so far is.
        let err = judge_early(
            &s,
            &seen(&[("a", 4, 4)], &[("a", 10, 0), ("b", 10, 0)]),
            false,
        )
        .unwrap_err();
        assert!(
            err.starts_with("error spike: 4 of 4 decisions were errors so far in the 60 s window"),
            "{err}"
        );
        // The signer down once is not yet a verdict (a restart); twice in a row is.
        let mut down = seen(&[("a", 3, 0)], &[]);
        down.signer = Err("connection refused".into());
        assert_eq!(judge_early(&s, &down, false), Ok(()));
        let err = judge_early(&s, &down, true).unwrap_err();
        assert!(err.contains("two probes in a row"), "{err}");
    }
}
