//! Benchmark (on demand, `tests/bench/run`): the cost of running a strategy-module call in a
//! confined child (`vigil-orchestrator module-run`, the binary of the same profile beside
//! this bench) instead of in the orchestrator's own address space: 200 calls of a trivial
//! module, each a fresh child that starts, confines itself (rlimits, landlock, seccomp),
//! reads its request, parses and evaluates the module and answers; p50 and p99 of the whole
//! call as the orchestrator makes it. Prints figures; asserts only that every call worked.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Instant;

use vigil_orchestrator::{ModuleLimits, run_tests, set_module_runner};
use vigil_testkit::measure::Samples;

const CALLS: usize = 200;

const MODULE: &str = "def decide(ctx):\n    return None\n";

fn main() {
    // `VIGIL_ORCHESTRATOR_BIN` (as the testkit names it): the child binary to measure, e.g. a
    // release build's, when this bench is a debug build.
    let runner = std::env::var_os("VIGIL_ORCHESTRATOR_BIN").map(std::path::PathBuf::from);
    if let Some(path) = &runner {
        set_module_runner(path.clone());
    }
    // One child per call: with no `test_*` function, `run_tests` makes exactly one (the
    // call that parses and evaluates the module and lists its tests).
    let mut samples = Vec::with_capacity(CALLS);
    let started = Instant::now();
    for _ in 0..CALLS {
        let t = Instant::now();
        let outcomes = run_tests("trivial", MODULE, "", ModuleLimits::DEFAULT).unwrap();
        samples.push(t.elapsed());
        assert!(outcomes.is_empty());
    }
    let s = Samples::new(samples, started.elapsed());
    println!(
        "module call in a confined child (this bench: {} profile; child: {}): {CALLS} calls, \
         p50 {:.2} ms, p99 {:.2} ms, {:.0} calls/s",
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        },
        runner
            .as_ref()
            .map_or_else(|| "beside this bench".into(), |p| p.display().to_string()),
        s.percentile_us(500) / 1000.0,
        s.percentile_us(990) / 1000.0,
        s.rate()
    );
}
