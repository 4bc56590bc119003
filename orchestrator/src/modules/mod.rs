//! Self-written strategy modules (issue 20, "Self-modification"): a deputy's decision source
//! written in Starlark instead of asked of an LLM.
//!
//! A module is one `<name>.star` file defining `decide(ctx)`; its tests are `test_*`
//! functions in `<name>_test.star`. The orchestrator interprets it with the `starlark` crate
//! (`runtime.rs`): a fresh heap for every call, no `load()`, no `print`, no file, network,
//! clock or environment access — the language has none and the globals add none. What a
//! module can see and do is only the host functions of `host.rs`, bound to the calling agent
//! (none takes an agent argument): the marks the deputy already read, its own positions and
//! PnL, its balance and risk state, and `propose(intent)`, which turns a dict into the same
//! [`AgentDecision`](crate::firewall::schema::AgentDecision) layer 1 makes of an LLM's reply
//! (through the same parser). From there the proposal goes through layer 2 and the signer
//! exactly like an LLM's (`pipeline`).
//!
//! Every call runs in a fresh confined child process (`runner.rs` starts it, `child.rs` is
//! the child: `vigil-orchestrator module-run`): rlimits on its address space, CPU time,
//! files and processes, landlock with no file system and no network, a seccomp allowlist
//! of read, write, memory and exit. The daemon never evaluates a module in its own address
//! space; a module that exhausts memory or makes the interpreter panic ends its child, and
//! the agent holds with the reason.
//!
//! Inside the child every call runs under three limits from `[modules]` ([`ModuleLimits`]): interpreter steps
//! (function calls and loop iterations), heap bytes and wall time. A module that exceeds one,
//! raises an error or returns anything but `None` or one intent dict is stopped
//! ([`Stopped`]): the deputy holds for that tick and the decision record names the limit and
//! the numbers.
//!
//! `bundle.rs`, `replay.rs` and `check.rs` are the in-process part of a proposal's check
//! (`vigil-orchestrator proposal check <bundle-dir>`): parse, the module's own tests, a paper
//! replay of the deputy over a recorded window, and the bundle's digest.

mod bundle;
mod check;
mod child;
mod host;
pub(crate) mod replay;
mod runner;
mod runtime;

use std::fmt;
use std::sync::Arc;

pub use bundle::{Bundle, BundleError, bundle_digest};
pub use check::{CheckReport, ReplaySummary, StepResult, check_bundle, default_config};
pub use child::serve as serve_module_call;
pub(crate) use host::HostView;
pub use replay::{Recording, ReplayReport};
pub use runner::{
    SUBCOMMAND as MODULE_RUN_SUBCOMMAND, WALL_GRACE_MS, set_runner as set_module_runner,
};
pub use runtime::TestOutcome;

use crate::firewall::schema::AgentDecision;
use child::{Reply, Request};
use serde::{Deserialize, Serialize};

/// The largest module or test file read, bytes.
pub(crate) const MAX_SOURCE_BYTES: usize = 256 * 1024;

/// The limits every module call runs under (`[modules]` in the config).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModuleLimits {
    /// Interpreter steps (a function call or a loop iteration) one call may take.
    pub max_steps: u64,
    /// Bytes the call's heap may reach.
    pub max_heap_bytes: u64,
    /// Milliseconds of wall time one call may take.
    pub max_wall_ms: u64,
}

impl ModuleLimits {
    /// Defaults: a million steps, 32 MiB, 250 ms.
    pub const DEFAULT: ModuleLimits = ModuleLimits {
        max_steps: 1_000_000,
        max_heap_bytes: 32 * 1024 * 1024,
        max_wall_ms: 250,
    };
    /// Bounds of `max_steps`.
    pub const STEPS: std::ops::RangeInclusive<u64> = 1_000..=100_000_000;
    /// Bounds of `max_heap_bytes` (1 MiB to 1 GiB).
    pub const HEAP: std::ops::RangeInclusive<u64> = (1 << 20)..=(1 << 30);
    /// Bounds of `max_wall_ms`.
    pub const WALL_MS: std::ops::RangeInclusive<u64> = 10..=10_000;
}

impl Default for ModuleLimits {
    fn default() -> Self {
        ModuleLimits::DEFAULT
    }
}

/// An agent's strategy module, read and parsed when the config was loaded.
#[derive(Clone, PartialEq, Eq)]
pub struct StrategyModule {
    /// Its name (`strategy_module` in the agent's table; the file is `<name>.star`).
    pub name: String,
    /// Its source text.
    pub source: Arc<str>,
    /// The limits of each call.
    pub limits: ModuleLimits,
}

impl fmt::Debug for StrategyModule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StrategyModule")
            .field("name", &self.name)
            .field("source_bytes", &self.source.len())
            .field("limits", &self.limits)
            .finish()
    }
}

/// Whether `name` is a module name: 1 to 64 of `a-z`, `0-9`, `_`, starting with a letter.
pub(crate) fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && name.len() <= 64
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// Why a module call was stopped: the deputy holds, and this is the decision's reason.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Stopped {
    /// The source does not parse.
    Parse(String),
    /// More interpreter steps than the limit.
    Steps {
        /// The limit.
        limit: u64,
        /// Steps counted when it was stopped.
        used: u64,
    },
    /// The heap grew past the limit.
    Heap {
        /// The limit, bytes.
        limit: u64,
        /// The heap's peak, bytes.
        peak: u64,
    },
    /// The call ran past its wall time.
    WallTime {
        /// The limit, ms.
        limit_ms: u64,
        /// How long it ran, ms.
        elapsed_ms: u64,
    },
    /// The module raised an error (a Starlark error, `fail()`, a refused host call).
    Error(String),
    /// The module has no `decide(ctx)` function.
    NoDecide,
    /// `decide` returned something other than `None` or one intent dict.
    BadReturn(String),
    /// The intent did not pass layer 1 (the schema an LLM's reply passes).
    BadIntent(String),
    /// An allocation failed at the child's address-space limit (`max_heap_bytes` plus its
    /// baseline): one built-in call asked for more than the heap limit allows.
    Memory {
        /// `max_heap_bytes`.
        limit: u64,
        /// What the child said (the allocation's size).
        detail: String,
    },
    /// The child used up its CPU-time limit (`RLIMIT_CPU`).
    CpuTime {
        /// The limit, seconds.
        limit_s: u64,
    },
    /// The module's process failed: a panic, a forbidden system call, a signal, a bad
    /// reply (the orchestrator carries on).
    Crashed(String),
}

impl Stopped {
    /// The short name recorded as the decision's rule: which limit or failure.
    pub const fn kind(&self) -> &'static str {
        match self {
            Stopped::Parse(_) => "parse",
            Stopped::Steps { .. } => "step_limit",
            Stopped::Heap { .. } => "heap_limit",
            Stopped::WallTime { .. } => "wall_time_limit",
            Stopped::Error(_) => "error",
            Stopped::NoDecide => "no_decide",
            Stopped::BadReturn(_) => "bad_return",
            Stopped::BadIntent(_) => "bad_intent",
            Stopped::Memory { .. } => "heap_limit",
            Stopped::CpuTime { .. } => "cpu_time_limit",
            Stopped::Crashed(_) => "crashed",
        }
    }
}

impl fmt::Display for Stopped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Stopped::Parse(e) => write!(f, "parse: the module does not parse: {e}"),
            Stopped::Steps { limit, used } => write!(
                f,
                "step_limit: stopped after {used} interpreter steps, over the limit of {limit} \
                 ([modules] max_steps)"
            ),
            Stopped::Heap { limit, peak } => write!(
                f,
                "heap_limit: its heap reached {peak} bytes, over the limit of {limit} \
                 ([modules] max_heap_bytes)"
            ),
            Stopped::WallTime {
                limit_ms,
                elapsed_ms,
            } => write!(
                f,
                "wall_time_limit: stopped after {elapsed_ms} ms, over the limit of {limit_ms} ms \
                 ([modules] max_wall_ms)"
            ),
            Stopped::Error(e) => write!(f, "error: the module raised: {e}"),
            Stopped::NoDecide => f.write_str(
                "no_decide: the module defines no decide(ctx) function; define one that returns \
                 None or one intent dict",
            ),
            Stopped::BadReturn(e) => write!(
                f,
                "bad_return: decide(ctx) must return None or one intent dict, and returned {e}"
            ),
            Stopped::BadIntent(e) => write!(f, "bad_intent: layer 1 refused the intent: {e}"),
            Stopped::Memory { limit, detail } => write!(
                f,
                "heap_limit: an allocation failed at the module process's address-space limit \
                 (the heap limit of {limit} bytes ([modules] max_heap_bytes) plus the process's \
                 own baseline): {detail}"
            ),
            Stopped::CpuTime { limit_s } => write!(
                f,
                "cpu_time_limit: the module's process used its CPU-time limit of {limit_s} s \
                 ([modules] max_wall_ms rounded up, plus 1 s)"
            ),
            Stopped::Crashed(e) => write!(f, "crashed: the interpreter failed: {e}"),
        }
    }
}

/// Parses the source file `file` in a fresh confined child under `limits` (a source nested
/// deep enough overflows the parser's stack: that ends the child, not the orchestrator);
/// the error says where and what.
pub(crate) fn parse_source(file: &str, source: &str, limits: ModuleLimits) -> Result<(), String> {
    match runner::call(&Request::Parse {
        file: file.to_owned(),
        source: source.to_owned(),
        limits,
    }) {
        Ok(Reply::Parsed { error: None }) => Ok(()),
        Ok(Reply::Parsed { error: Some(e) }) => Err(e),
        Ok(Reply::Stopped(stopped)) | Err(stopped) => Err(stopped.to_string()),
        Ok(other) => Err(unexpected(&other).to_string()),
    }
}

/// One call of `module`'s `decide(ctx)` for the agent whose data `view` holds, in a fresh
/// confined child: its proposal checked (here, again) by layer 1's parser, `None` to hold, or
/// why it was stopped. Blocks for up to the wall-time limit plus
/// [`runner::WALL_GRACE_MS`].
pub(crate) fn decide(
    module: &StrategyModule,
    view: HostView,
) -> Result<Option<AgentDecision>, Stopped> {
    let request = Request::Decide {
        name: module.name.clone(),
        source: module.source.to_string(),
        limits: module.limits,
        view,
    };
    match runner::call(&request)? {
        Reply::Decided { proposed: None } => Ok(None),
        Reply::Decided {
            proposed: Some(intent),
        } => host::intent_to_decision(&module.name, &intent)
            .map(Some)
            .map_err(Stopped::BadIntent),
        Reply::Stopped(stopped) => Err(stopped),
        other => Err(unexpected(&other)),
    }
}

/// Runs every `test_*` function of `tests` (the module's `<name>_test.star`, evaluated after
/// the module in the same namespace), each in a fresh confined child under `limits`. An error
/// before any test runs (a parse error, a top-level failure) is `Err`.
pub fn run_tests(
    name: &str,
    source: &str,
    tests: &str,
    limits: ModuleLimits,
) -> Result<Vec<TestOutcome>, Stopped> {
    let names = match runner::call(&Request::TestNames {
        name: name.to_owned(),
        source: source.to_owned(),
        tests: tests.to_owned(),
        limits,
    })? {
        Reply::TestNames { names } => names,
        Reply::Stopped(stopped) => return Err(stopped),
        other => return Err(unexpected(&other)),
    };
    Ok(names
        .into_iter()
        .map(|test| {
            let failure = match runner::call(&Request::Test {
                name: name.to_owned(),
                source: source.to_owned(),
                tests: tests.to_owned(),
                limits,
                test: test.clone(),
            }) {
                Ok(Reply::Tested { failure }) => failure,
                Ok(Reply::Stopped(stopped)) | Err(stopped) => Some(stopped.to_string()),
                Ok(other) => Some(unexpected(&other).to_string()),
            };
            TestOutcome {
                name: test,
                failure,
            }
        })
        .collect())
}

fn unexpected(reply: &Reply) -> Stopped {
    Stopped::Crashed(format!(
        "the module's process answered another request: {reply:?}"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn module_names_are_checked() {
        for ok in ["trend", "a", "mean_revert_2"] {
            assert!(valid_name(ok), "{ok}");
        }
        for bad in ["", "Trend", "2x", "../x", "a-b", "a.star", &"a".repeat(65)] {
            assert!(!valid_name(bad), "{bad}");
        }
    }

    #[test]
    fn a_stop_names_the_limit_and_the_numbers() {
        let s = Stopped::Steps {
            limit: 1000,
            used: 1200,
        };
        assert_eq!(s.kind(), "step_limit");
        assert!(s.to_string().contains("1200") && s.to_string().contains("1000"));
        let h = Stopped::Heap {
            limit: 1 << 20,
            peak: 3 << 20,
        };
        assert!(h.to_string().contains(&(3u64 << 20).to_string()));
    }
}
