//! The orchestrator's configuration generations as the tests read them (`generations/` beside
//! the state, as the daemon keeps them without a `dir` setting).

use std::path::{Path, PathBuf};

use vigil_orchestrator::GenerationSettings;
use vigil_orchestrator::generations::Generations;

/// Settings for the generations in `dir` (the other values are the daemon's defaults; reading
/// does not use them).
pub fn settings(dir: PathBuf) -> GenerationSettings {
    GenerationSettings {
        dir,
        keep: 20,
        health_window_secs: 600,
        error_spike_multiple: 3,
        min_errors: 3,
        proposal_sandbox: "bubblewrap".into(),
    }
}

/// The generations beside the state file `state`.
pub fn beside(state: &Path) -> Generations {
    let dir = state
        .parent()
        .expect("a state file has a directory")
        .join("generations");
    Generations::open(&settings(dir)).expect("the generations open")
}
