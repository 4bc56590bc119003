//! The interpreter: a module evaluated under its limits, with a fresh heap for every call.
//!
//! The dialect is standard Starlark without `load()` (a module is one file and can import
//! nothing); the globals are the standard ones plus the `struct`, `json` (encode/decode of
//! values, no I/O), `map`, `filter` and `partial` extensions and the host functions. Left out
//! on purpose: `print` (stdout is the daemon's log), `debug`, `breakpoint` (a console REPL),
//! `call_stack` and the internal extensions. Starlark itself has no file, network, clock,
//! environment or randomness built-ins, so nothing a module writes can reach them.
//!
//! Limits: `max_steps` is the evaluator's tick limit (a tick is a function call or a loop
//! iteration), `max_heap_bytes` its heap limit (the peak of the call's heap), `max_wall_ms`
//! a deadline polled through its cancellation hook; the evaluator checks all three every
//! 1,000 ticks, so a stop comes at most that many steps late. The call stack is capped at
//! [`MAX_CALL_DEPTH`] frames. Which limit stopped a call is read from the numbers measured
//! here, not from the error's text.

use std::cell::Cell;
use std::rc::Rc;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::Value as Json;
use starlark::environment::{Globals, GlobalsBuilder, LibraryExtension, Module};
use starlark::eval::Evaluator;
use starlark::syntax::{AstModule, Dialect};

use super::host::{Host, HostView, Installed, host_functions, intent_to_decision, record_proposal};
use super::{ModuleLimits, Stopped, StrategyModule};
use crate::firewall::schema::AgentDecision;

/// Frames a module's calls may nest.
pub(super) const MAX_CALL_DEPTH: usize = 64;
/// The longest error text kept from the interpreter.
const MAX_ERROR_CHARS: usize = 600;

fn dialect() -> Dialect {
    Dialect {
        enable_load: false,
        ..Dialect::Standard
    }
}

fn globals() -> &'static Globals {
    static GLOBALS: OnceLock<Globals> = OnceLock::new();
    GLOBALS.get_or_init(|| {
        GlobalsBuilder::extended_by(&[
            LibraryExtension::StructType,
            LibraryExtension::Json,
            LibraryExtension::Map,
            LibraryExtension::Filter,
            LibraryExtension::Partial,
        ])
        .with(host_functions)
        .build()
    })
}

/// Parses a source file (`file` names it in errors) in this process; the error says where
/// and what. Only the confined child calls it (a deeply nested source overflows the
/// parser's stack): the daemon parses through [`super::parse_source`].
pub(super) fn parse_source_here(file: &str, source: &str) -> Result<(), String> {
    AstModule::parse(file, source.to_owned(), &dialect())
        .map(|_| ())
        .map_err(|e| short(&e.to_string()))
}

/// The last, most telling part of an interpreter error, at most [`MAX_ERROR_CHARS`].
fn short(text: &str) -> String {
    let tail = text.rfind("error:").map_or(text, |i| &text[i..]);
    let tail = tail.trim();
    if tail.chars().count() <= MAX_ERROR_CHARS {
        tail.to_owned()
    } else {
        let cut: String = tail.chars().take(MAX_ERROR_CHARS).collect();
        format!("{cut}…")
    }
}

/// What to do after the files are evaluated.
enum Then<'a> {
    /// List the module's top-level names.
    Names,
    /// Call `decide(ctx)`: its return must be `None` or a dict.
    Decide(Json),
    /// Call a test function without arguments (its return is ignored).
    Test(&'a str),
}

/// What an evaluation came to.
enum Evaluated {
    Names(Vec<String>),
    /// The call's return as JSON (`Null` for `None`, and for a test).
    Returned(Json),
    /// The function to call is not defined.
    Missing,
}

/// Evaluates `files` (name, source) in one fresh module under `limits` with `host` as the
/// host functions' data, then does `then`; or why it stopped.
fn evaluate(
    limits: ModuleLimits,
    host: &Rc<Host>,
    files: &[(&str, &str)],
    then: Then<'_>,
) -> Result<Evaluated, Stopped> {
    let mut asts = Vec::with_capacity(files.len());
    for (file, source) in files {
        asts.push(
            AstModule::parse(file, (*source).to_owned(), &dialect())
                .map_err(|e| Stopped::Parse(short(&e.to_string())))?,
        );
    }
    let heap_limit = usize::try_from(limits.max_heap_bytes).unwrap_or(usize::MAX);
    let started = Instant::now();
    let deadline = started + Duration::from_millis(limits.max_wall_ms);
    let cancelled = Cell::new(false);
    Module::with_temp_heap(|module| {
        let mut eval = Evaluator::new(&module);
        let set = eval
            .set_max_tick_count(limits.max_steps)
            .and_then(|()| eval.set_max_heap_size(heap_limit))
            .and_then(|()| eval.set_max_callstack_size(MAX_CALL_DEPTH));
        if let Err(e) = set {
            return Err(Stopped::Crashed(format!(
                "the limits could not be set: {e}"
            )));
        }
        eval.set_check_cancelled(Box::new(|| {
            let late = Instant::now() >= deadline;
            if late {
                cancelled.set(true);
            }
            late
        }));
        let _installed = Installed::new(host);
        let stopped = |eval: &mut Evaluator<'_, '_, '_>, e: starlark::Error| {
            let elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
            let used = eval.get_total_tick_count();
            // As the evaluator counts it: the call's heap at its peak plus the frozen heap
            // (the compiled code).
            let peak = u64::try_from(
                eval.heap()
                    .peak_allocated_bytes()
                    .saturating_add(eval.frozen_heap().allocated_bytes()),
            )
            .unwrap_or(u64::MAX);
            if cancelled.get() {
                Stopped::WallTime {
                    limit_ms: limits.max_wall_ms,
                    elapsed_ms,
                }
            } else if peak > limits.max_heap_bytes {
                Stopped::Heap {
                    limit: limits.max_heap_bytes,
                    peak,
                }
            } else if used > limits.max_steps {
                Stopped::Steps {
                    limit: limits.max_steps,
                    used,
                }
            } else {
                Stopped::Error(short(&e.to_string()))
            }
        };
        for ast in asts {
            if let Err(e) = eval.eval_module(ast, globals()) {
                return Err(stopped(&mut eval, e));
            }
        }
        let (name, ctx) = match &then {
            Then::Names => {
                return Ok(Evaluated::Names(
                    module.names().map(|n| n.as_str().to_owned()).collect(),
                ));
            }
            Then::Decide(ctx) => ("decide", Some(ctx)),
            Then::Test(name) => (*name, None),
        };
        let Some(function) = module.get(name) else {
            return Ok(Evaluated::Missing);
        };
        let args = match ctx {
            Some(ctx) => vec![eval.heap().alloc(ctx)],
            None => Vec::new(),
        };
        let value = match eval.eval_function(function, &args, &[]) {
            Ok(v) => v,
            Err(e) => return Err(stopped(&mut eval, e)),
        };
        if value.is_none() || matches!(then, Then::Test(_)) {
            return Ok(Evaluated::Returned(Json::Null));
        }
        match value.to_json_value() {
            Ok(json @ Json::Object(_)) => Ok(Evaluated::Returned(json)),
            Ok(_) | Err(_) => Err(Stopped::BadReturn(format!(
                "a value of type {}",
                value.get_type()
            ))),
        }
    })
}

/// One call of `module`'s `decide(ctx)` for the agent whose data `view` holds, in this
/// process: the intent it proposed (as it gave it) and layer 1's reading of it, `None` to
/// hold, or why it was stopped. Only the confined child (`child.rs`) calls this; the daemon
/// runs it through [`super::decide`], in a child process.
pub(super) fn decide_here(
    module: &StrategyModule,
    view: HostView,
) -> Result<Option<(Json, AgentDecision)>, Stopped> {
    let ctx = view.ctx();
    let host = Rc::new(Host::new(&module.name, view, false));
    let file = format!("{}.star", module.name);
    let returned = match evaluate(
        module.limits,
        &host,
        &[(&file, &module.source)],
        Then::Decide(ctx),
    )? {
        Evaluated::Returned(json) => json,
        Evaluated::Missing | Evaluated::Names(_) => return Err(Stopped::NoDecide),
    };
    if !returned.is_null() {
        let decision = intent_to_decision(&module.name, &returned).map_err(Stopped::BadIntent)?;
        record_proposal(&host, returned, decision)
            .map_err(|e| Stopped::BadReturn(e.to_string()))?;
    }
    let proposed = host.proposed.borrow_mut().take();
    Ok(proposed)
}

/// The result of one of a module's tests.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TestOutcome {
    /// The test function's name.
    pub name: String,
    /// `None`: passed; otherwise why it failed (an assertion, an error, a limit).
    pub failure: Option<String>,
}

/// The `test_*` functions of `tests` (the module's `<name>_test.star`, evaluated after the
/// module in the same namespace), sorted, in this process (the child's side of
/// [`super::run_tests`]). An error before any test runs (a parse error, a top-level failure)
/// is `Err`.
pub(super) fn test_names_here(
    name: &str,
    source: &str,
    tests: &str,
    limits: ModuleLimits,
) -> Result<Vec<String>, Stopped> {
    let module_file = format!("{name}.star");
    let test_file = format!("{name}_test.star");
    let files = [(module_file.as_str(), source), (test_file.as_str(), tests)];
    let host = Rc::new(Host::new(name, HostView::default(), true));
    let mut names: Vec<String> = match evaluate(limits, &host, &files, Then::Names)? {
        Evaluated::Names(names) => names,
        Evaluated::Returned(_) | Evaluated::Missing => Vec::new(),
    };
    names.retain(|n| n.starts_with("test_"));
    names.sort();
    Ok(names)
}

/// Runs the test function `test` in a fresh heap under `limits`, in this process: `None`
/// when it passed, else why it failed.
pub(super) fn run_test_here(
    name: &str,
    source: &str,
    tests: &str,
    limits: ModuleLimits,
    test: &str,
) -> Option<String> {
    let module_file = format!("{name}.star");
    let test_file = format!("{name}_test.star");
    let files = [(module_file.as_str(), source), (test_file.as_str(), tests)];
    let host = Rc::new(Host::new(name, HostView::default(), true));
    match evaluate(limits, &host, &files, Then::Test(test)) {
        Ok(Evaluated::Returned(_) | Evaluated::Names(_)) => None,
        Ok(Evaluated::Missing) => Some(format!("{test} is not defined")),
        Err(e) => Some(e.to_string()),
    }
}

#[cfg(test)]
mod tests;
