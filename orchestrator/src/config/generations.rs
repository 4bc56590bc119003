//! The `[generations]` table: where the orchestrator keeps its configuration generations,
//! how many it keeps, and how a new one is checked after it is applied (`generations/`,
//! `docs/operations.md`, "Generations" and "Rollback").
//!
//! Without the table the daemon runs the file it was given, as before; with it, that file
//! only seeds (and, when it changes, feeds) the generations, and the daemon runs the current
//! generation's copy.

use std::path::PathBuf;

use serde::Deserialize;

use super::retention::bounded;
use super::{ConfigError, invalid};

/// Generations kept when the config does not say.
pub(crate) const DEFAULT_KEEP: u32 = 20;
/// Seconds a new generation is watched when the config does not say.
pub(crate) const DEFAULT_HEALTH_WINDOW_SECS: u32 = 600;
/// How many times the previous window's error rate counts as a spike, by default.
pub(crate) const DEFAULT_ERROR_SPIKE_MULTIPLE: u32 = 3;
/// Errors in the window below which no spike is called, by default.
pub(crate) const DEFAULT_MIN_ERRORS: u32 = 3;

/// The `[generations]` settings, checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GenerationSettings {
    /// The directory of the generations (absent: `generations/` beside `state_db`).
    pub dir: PathBuf,
    /// How many generations are kept (2 to 1000, default 20); the current one and its parent
    /// are never removed.
    pub keep: u32,
    /// Seconds after an apply during which the health check runs (1 to 86,400, default 600).
    pub health_window_secs: u32,
    /// The error rate in the window that fails the check, as a multiple of the rate in the
    /// window before the apply (1 to 1000, default 3).
    pub error_spike_multiple: u32,
    /// Errors in the window below which no spike is called (1 to 100,000, default 3).
    pub min_errors: u32,
    /// Where a proposal is checked (`proposal_sandbox`): `"bubblewrap"` (CI, development; the
    /// default) or `"systemd"` (the appliance's `vigil-proposal@.service`).
    pub proposal_sandbox: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawGenerations {
    dir: Option<PathBuf>,
    keep: Option<i64>,
    health_window_secs: Option<i64>,
    error_spike_multiple: Option<i64>,
    min_errors: Option<i64>,
    proposal_sandbox: Option<String>,
}

impl RawGenerations {
    pub(super) fn check(
        self,
        state_db: &std::path::Path,
    ) -> Result<GenerationSettings, ConfigError> {
        let dir = match self.dir {
            Some(dir) if dir.as_os_str().is_empty() => {
                return Err(invalid(
                    "generations.dir",
                    "is empty: give a directory, or leave it out for generations/ beside state_db",
                ));
            }
            Some(dir) => dir,
            None => state_db
                .parent()
                .map(|p| p.join("generations"))
                .unwrap_or_else(|| PathBuf::from("generations")),
        };
        Ok(GenerationSettings {
            dir,
            keep: bounded(
                self.keep,
                DEFAULT_KEEP,
                2,
                1000,
                "generations.keep",
                "number of generations kept",
            )?,
            health_window_secs: bounded(
                self.health_window_secs,
                DEFAULT_HEALTH_WINDOW_SECS,
                1,
                86_400,
                "generations.health_window_secs",
                "seconds a new generation is watched",
            )?,
            error_spike_multiple: bounded(
                self.error_spike_multiple,
                DEFAULT_ERROR_SPIKE_MULTIPLE,
                1,
                1000,
                "generations.error_spike_multiple",
                "multiple of the previous error rate that fails the health check",
            )?,
            min_errors: bounded(
                self.min_errors,
                DEFAULT_MIN_ERRORS,
                1,
                100_000,
                "generations.min_errors",
                "errors below which no spike is called",
            )?,
            proposal_sandbox: match self.proposal_sandbox.as_deref() {
                None | Some("bubblewrap") => "bubblewrap".into(),
                Some("systemd") => "systemd".into(),
                Some(other) => {
                    return Err(invalid(
                        "generations.proposal_sandbox",
                        format!(
                            "{:?} is not \"bubblewrap\" (CI, development) or \"systemd\" (the appliance)",
                            vigil_protocol::truncate(other)
                        ),
                    ));
                }
            },
        })
    }
}
