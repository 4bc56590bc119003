//! Each module call in a real confined child (`target/<profile>/vigil-orchestrator
//! module-run`, built beside this test binary): what ends the child ends as a reason, and
//! the next call runs as before.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use super::super::{
    HostView, ModuleLimits, Stopped, StrategyModule, decide, parse_source, run_tests,
};

fn module(source: &str, limits: ModuleLimits) -> StrategyModule {
    StrategyModule {
        name: "probe".into(),
        source: Arc::from(source),
        limits,
    }
}

fn stopped(source: &str, limits: ModuleLimits) -> Stopped {
    let e = decide(&module(source, limits), HostView::default()).unwrap_err();
    // The next call, in a fresh child, runs as before.
    let good = decide(
        &module(
            "def decide(ctx):\n    return {'action': 'hold'}\n",
            ModuleLimits::DEFAULT,
        ),
        HostView::default(),
    );
    assert!(matches!(good, Ok(Some(_))), "after {e}: {good:?}");
    e
}

const WIDE: ModuleLimits = ModuleLimits {
    max_steps: 100_000_000,
    max_heap_bytes: 32 << 20,
    max_wall_ms: 5_000,
};

#[test]
fn one_huge_string_fails_its_allocation_at_the_address_space_limit() {
    let e = stopped("def decide(ctx):\n    return \"x\" * 100000000\n", WIDE);
    assert_eq!(e.kind(), "heap_limit", "{e}");
    let text = e.to_string();
    assert!(
        text.contains("100000000") && text.contains(&(32u64 << 20).to_string()),
        "{text}"
    );
}

#[test]
fn a_string_doubled_40_times_is_stopped_by_the_heap_limit() {
    let source = "def decide(ctx):\n    s = \"x\"\n    for i in range(40):\n        s = s + s\n    return None\n";
    let e = stopped(source, WIDE);
    assert_eq!(e.kind(), "heap_limit", "{e}");
}

#[test]
fn deep_recursion_is_an_error_not_a_crash() {
    let e = stopped(
        "def f(n):\n    return f(n + 1)\ndef decide(ctx):\n    return f(0)\n",
        WIDE,
    );
    assert_eq!(e.kind(), "error", "{e}");
}

#[test]
fn an_infinite_loop_is_stopped_by_steps_and_by_the_wall_time() {
    let source = "def decide(ctx):\n    for i in range(2000000000):\n        for j in range(2000000000):\n            pass\n";
    let steps = ModuleLimits {
        max_steps: 20_000,
        ..WIDE
    };
    assert_eq!(stopped(source, steps).kind(), "step_limit");
    let wall = ModuleLimits {
        max_wall_ms: 100,
        ..WIDE
    };
    let e = stopped(source, wall);
    assert_eq!(e.kind(), "wall_time_limit", "{e}");
}

#[test]
fn a_builtin_that_runs_past_the_wall_time_is_killed_by_the_parent() {
    // 1,000 steps of a long built-in call each: the interpreter's own deadline is checked
    // only every 1,000 steps, so the parent's kill stops it.
    let source = "def decide(ctx):\n    s = \"ab\" * 8000000\n    n = 0\n    for i in range(100000):\n        n += s.count(\"ba\")\n    return None\n";
    let limits = ModuleLimits {
        max_wall_ms: 50,
        ..WIDE
    };
    let started = std::time::Instant::now();
    let e = stopped(source, limits);
    assert_eq!(e.kind(), "wall_time_limit", "{e}");
    let Stopped::WallTime { elapsed_ms, .. } = e else {
        panic!("{e}")
    };
    assert!(
        elapsed_ms >= 50 && started.elapsed().as_secs() < 10,
        "{elapsed_ms} ms"
    );
}

#[test]
fn a_source_that_overflows_the_parsers_stack_ends_its_child_only() {
    let source = format!(
        "x = {}{}\ndef decide(ctx):\n    return None\n",
        "[".repeat(20_000),
        "]".repeat(20_000)
    );
    let e = parse_source("deep.star", &source, ModuleLimits::DEFAULT).unwrap_err();
    assert!(
        e.contains("crashed") && e.contains("overflowed its stack"),
        "{e}"
    );
    let e = stopped(&source, WIDE);
    assert_eq!(e.kind(), "crashed", "{e}");
    assert!(parse_source("ok.star", "x = 1\n", ModuleLimits::DEFAULT).is_ok());
}

#[test]
fn a_modules_tests_run_one_child_each() {
    // A test that exhausts its child fails alone; the others pass. (`+ len(marks())`: a
    // constant `"x" * 100000000` would be folded, and fail, when the files are compiled.)
    let outcomes = run_tests(
        "probe",
        "def decide(ctx):\n    return None\n",
        "def test_ok():\n    assert_eq(decide({}), None)\n\ndef test_hoards():\n    s = \"x\" * (100000000 + len(marks()))\n",
        WIDE,
    )
    .unwrap();
    assert_eq!(outcomes.len(), 2);
    let hoards = outcomes.iter().find(|o| o.name == "test_hoards").unwrap();
    assert!(
        hoards
            .failure
            .as_deref()
            .is_some_and(|f| f.contains("heap_limit")),
        "{hoards:?}"
    );
    let ok = outcomes.iter().find(|o| o.name == "test_ok").unwrap();
    assert_eq!(ok.failure, None);
}
