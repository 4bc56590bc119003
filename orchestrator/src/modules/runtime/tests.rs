//! The interpreter's limits and confinement, one module per way out.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use serde_json::json;

use super::*;
use crate::firewall::schema::Action;
use crate::firewall::schema::PerpDecision;

fn module(source: &str, limits: ModuleLimits) -> StrategyModule {
    StrategyModule {
        name: "probe".into(),
        source: Arc::from(source),
        limits,
    }
}

fn view() -> HostView {
    let mut view = HostView {
        now: 1_700_000_000,
        balance: 5,
        risk_state: "active".into(),
        ..HostView::default()
    };
    view.marks.insert("ETH".into(), json!(2000.0));
    view.positions
        .insert("ETH".into(), json!({"size": 0.5, "entry_px": 1900.0}));
    view
}

/// The in-process call the child makes, as the daemon sees its result.
fn decide(module: &StrategyModule, view: HostView) -> Result<Option<AgentDecision>, Stopped> {
    decide_here(module, view).map(|p| p.map(|(_, decision)| decision))
}

/// The in-process tests the children run, as [`super::super::run_tests`] puts them together.
fn run_tests(
    name: &str,
    source: &str,
    tests: &str,
    limits: ModuleLimits,
) -> Result<Vec<TestOutcome>, Stopped> {
    Ok(test_names_here(name, source, tests, limits)?
        .into_iter()
        .map(|test| TestOutcome {
            failure: run_test_here(name, source, tests, limits, &test),
            name: test,
        })
        .collect())
}

fn run(source: &str) -> Result<Option<AgentDecision>, Stopped> {
    decide(&module(source, ModuleLimits::DEFAULT), view())
}

const LOOP_FOREVER: &str = "
def decide(ctx):
    n = 0
    for i in range(2000000000):
        for j in range(2000000000):
            n += 1
    return None
";

#[test]
fn a_good_module_proposes_through_layer_1() {
    let d = run("
def decide(ctx):
    px = marks()['ETH']
    if positions()['ETH']['size'] < 1 and risk_state() == 'active':
        return propose({'action': 'perp_order', 'asset': 'ETH', 'side': 'buy',
                        'size': 0.1, 'limit_px': decimal(px * 1.001, 1), 'tif': 'ioc'})
    return None
")
    .unwrap()
    .unwrap();
    assert_eq!(d.action, Action::PerpOrder);
    let Some(PerpDecision::Order(order)) = d.perp else {
        panic!("{d:?}")
    };
    assert_eq!(order.limit_px.as_str(), "2002");
    assert_eq!(run("def decide(ctx):\n    return None\n").unwrap(), None);
}

#[test]
fn files_and_loads_do_not_exist() {
    let e = run("def decide(ctx):\n    return open('/etc/passwd').read()\n").unwrap_err();
    assert!(
        matches!(&e, Stopped::Error(m) if m.contains("`open` not found")),
        "{e}"
    );
    let e = run("load('other.star', 'x')\ndef decide(ctx):\n    return None\n").unwrap_err();
    assert!(
        matches!(&e, Stopped::Parse(m) if m.contains("`load` is not allowed")),
        "{e}"
    );
}

#[test]
fn there_is_no_socket_print_or_clock() {
    for call in [
        "socket('127.0.0.1', 80)",
        "print('x')",
        "time()",
        "getenv('HOME')",
        "breakpoint()",
    ] {
        let e = run(&format!("def decide(ctx):\n    return {call}\n")).unwrap_err();
        assert!(
            matches!(&e, Stopped::Error(m) if m.contains("not found")),
            "{call}: {e}"
        );
    }
}

#[test]
fn a_loop_forever_is_stopped_by_the_step_limit() {
    let limits = ModuleLimits {
        max_steps: 10_000,
        max_wall_ms: 10_000,
        ..ModuleLimits::DEFAULT
    };
    let e = decide(&module(LOOP_FOREVER, limits), view()).unwrap_err();
    let Stopped::Steps { limit, used } = e else {
        panic!("{e}")
    };
    assert_eq!(limit, 10_000);
    // Checked every 1,000 steps: stopped within one period of the limit.
    assert!((10_001..=11_000).contains(&used), "{used}");
}

#[test]
fn a_loop_forever_is_stopped_by_the_wall_time_limit() {
    let limits = ModuleLimits {
        max_steps: 100_000_000,
        max_wall_ms: 50,
        ..ModuleLimits::DEFAULT
    };
    let started = std::time::Instant::now();
    let e = decide(&module(LOOP_FOREVER, limits), view()).unwrap_err();
    let Stopped::WallTime {
        limit_ms,
        elapsed_ms,
    } = e
    else {
        panic!("{e}")
    };
    assert_eq!(limit_ms, 50);
    assert!(elapsed_ms >= 50, "{elapsed_ms}");
    assert!(
        started.elapsed().as_millis() < 2_000,
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn unbounded_allocation_is_stopped_by_the_heap_limit() {
    let limits = ModuleLimits {
        max_steps: 100_000_000,
        max_heap_bytes: 1 << 20,
        max_wall_ms: 10_000,
    };
    let source = "
def decide(ctx):
    keep = []
    for i in range(2000000000):
        keep.append('x' * 100 + str(i))
    return None
";
    let e = decide(&module(source, limits), view()).unwrap_err();
    let Stopped::Heap { limit, peak } = e else {
        panic!("{e}")
    };
    assert_eq!(limit, 1 << 20);
    assert!(peak > 1 << 20, "{peak}");
}

#[test]
fn deep_recursion_is_stopped() {
    let e = run("def f(n):\n    return f(n + 1)\ndef decide(ctx):\n    return f(0)\n").unwrap_err();
    assert!(
        matches!(&e, Stopped::Error(m) if m.contains("stack overflow")),
        "{e}"
    );
}

#[test]
fn another_agents_data_cannot_be_named() {
    // No host function takes an agent: naming one is refused by the call itself.
    for call in [
        "positions('bob')",
        "pnl(agent = 'bob')",
        "marks('bob')",
        "balance('bob')",
    ] {
        let e = run(&format!("def decide(ctx):\n    return {call}\n")).unwrap_err();
        assert!(
            matches!(&e, Stopped::Error(m) if m.contains("argument") || m.contains("parameter")),
            "{call}: {e}"
        );
    }
    // And an intent naming an agent does not pass layer 1.
    let e = run("def decide(ctx):\n    return {'action': 'hold', 'agent': 'bob'}\n").unwrap_err();
    assert!(
        matches!(&e, Stopped::BadIntent(m) if m.contains("agent")),
        "{e}"
    );
}

#[test]
fn garbage_is_stopped() {
    let e = run("def decide(ctx):\n    return [1, 2]\n").unwrap_err();
    assert!(
        matches!(&e, Stopped::BadReturn(m) if m.contains("list")),
        "{e}"
    );
    let e = run("def decide(ctx):\n    return {'action': 'perp_order'}\n").unwrap_err();
    assert_eq!(e.kind(), "bad_intent", "{e}");
    let e = run("def decide(ctx):\n    fail('no idea')\n").unwrap_err();
    assert!(
        matches!(&e, Stopped::Error(m) if m.contains("no idea")),
        "{e}"
    );
    assert_eq!(run("x = 1\n").unwrap_err(), Stopped::NoDecide);
    let e = run("def decide(ctx)\n    return None\n").unwrap_err();
    assert_eq!(e.kind(), "parse", "{e}");
    let e = run("
def decide(ctx):
    propose({'action': 'hold'})
    propose({'action': 'perp_cancel', 'asset': 'ETH', 'oid': 7})
    return None
")
    .unwrap_err();
    assert!(
        matches!(&e, Stopped::Error(m) if m.contains("at most one intent")),
        "{e}"
    );
}

#[test]
fn every_call_starts_from_a_fresh_heap() {
    // A global mutated by one call is not seen by the next: each call evaluates anew.
    let source = "
state = {'calls': 0}
def decide(ctx):
    state['calls'] += 1
    if state['calls'] > 1:
        fail('state leaked between calls')
    return None
";
    let m = module(source, ModuleLimits::DEFAULT);
    assert_eq!(decide(&m, view()).unwrap(), None);
    assert_eq!(decide(&m, view()).unwrap(), None);
}

#[test]
fn a_modules_tests_run_with_fixtures_and_fail_when_they_should() {
    let source = "
def decide(ctx):
    if marks()['ETH'] > 2000:
        return propose({'action': 'perp_order', 'asset': 'ETH', 'side': 'sell',
                        'size': 0.1, 'limit_px': 1990, 'tif': 'ioc', 'reduce_only': True})
    return None
";
    let tests = "
def test_sells_above_2000():
    fixture(marks = {'ETH': 2100.0})
    assert_eq(decide({'now': 0})['side'], 'sell')

def test_holds_below():
    fixture(marks = {'ETH': 1900.0})
    assert_eq(decide({'now': 0}), None)

def test_wrong_on_purpose():
    fixture(marks = {'ETH': 2100.0})
    assert_eq(decide({'now': 0}), None)

def helper():
    pass
";
    let outcomes = run_tests("probe", source, tests, ModuleLimits::DEFAULT).unwrap();
    let names: Vec<&str> = outcomes.iter().map(|o| o.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "test_holds_below",
            "test_sells_above_2000",
            "test_wrong_on_purpose"
        ]
    );
    assert_eq!(outcomes[0].failure, None);
    assert_eq!(outcomes[1].failure, None);
    let failure = outcomes[2].failure.as_deref().unwrap();
    assert!(failure.contains("assert_eq"), "{failure}");
    // fixture() does not exist for a live call.
    let e = run("def decide(ctx):\n    fixture(marks = {})\n    return None\n").unwrap_err();
    assert!(
        matches!(&e, Stopped::Error(m) if m.contains("only in a module's tests")),
        "{e}"
    );
    // A test file that does not parse stops before any test.
    let e = run_tests("probe", source, "def test_x(:\n", ModuleLimits::DEFAULT).unwrap_err();
    assert_eq!(e.kind(), "parse");
}
