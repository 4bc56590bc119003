//! The `[modules]` table and an agent's `strategy_module`: where strategy modules are read
//! from and the limits every module call runs under (`orchestrator/src/modules`).
//!
//! `dir` is the directory of the current configuration generation's modules; an agent with
//! `strategy_module = "<name>"` decides with `<dir>/<name>.star` instead of its LLM. The file
//! is read and parsed when the config is loaded, so a missing or broken module is a config
//! error naming the agent, the file and the line, never a failure at the first tick.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;

use super::{ConfigError, invalid};
use crate::modules::{self, MAX_SOURCE_BYTES, ModuleLimits, StrategyModule};

/// The `[modules]` settings, checked.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ModulesConfig {
    /// Where `<name>.star` files are read from; none: no agent may name a module.
    pub dir: Option<PathBuf>,
    /// The limits of each call.
    pub limits: ModuleLimits,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawModules {
    dir: Option<PathBuf>,
    max_steps: Option<i64>,
    max_heap_bytes: Option<i64>,
    max_wall_ms: Option<i64>,
}

impl RawModules {
    pub(super) fn check(self) -> Result<ModulesConfig, ConfigError> {
        let d = ModuleLimits::DEFAULT;
        let limits = ModuleLimits {
            max_steps: bounded(
                self.max_steps,
                d.max_steps,
                ModuleLimits::STEPS,
                "modules.max_steps",
                "interpreter steps one module call may take",
            )?,
            max_heap_bytes: bounded(
                self.max_heap_bytes,
                d.max_heap_bytes,
                ModuleLimits::HEAP,
                "modules.max_heap_bytes",
                "bytes one module call's heap may reach",
            )?,
            max_wall_ms: bounded(
                self.max_wall_ms,
                d.max_wall_ms,
                ModuleLimits::WALL_MS,
                "modules.max_wall_ms",
                "milliseconds one module call may run",
            )?,
        };
        if let Some(dir) = &self.dir
            && !dir.is_absolute()
        {
            return Err(invalid(
                "modules.dir",
                format!(
                    "{} is relative: give the absolute path of the generation's modules directory",
                    dir.display()
                ),
            ));
        }
        Ok(ModulesConfig {
            dir: self.dir,
            limits,
        })
    }
}

fn bounded(
    value: Option<i64>,
    default: u64,
    range: std::ops::RangeInclusive<u64>,
    key: &str,
    what: &str,
) -> Result<u64, ConfigError> {
    let Some(n) = value else {
        return Ok(default);
    };
    u64::try_from(n)
        .ok()
        .filter(|n| range.contains(n))
        .ok_or_else(|| {
            invalid(
                key,
                format!(
                    "is {n}: give the {what}, {} to {} (default {default})",
                    range.start(),
                    range.end()
                ),
            )
        })
}

/// Where an agent's module comes from: the configured directory, or (the proposal check) one
/// module given by name with its source.
#[derive(Clone, Copy, Debug)]
pub(super) enum Source<'a> {
    Dir,
    Given(&'a str, &'a Arc<str>),
    /// A generation's files (`modules/<name>.star` among them): the generation's config is
    /// checked against its own modules, not the current generation's directory.
    Files(&'a crate::generations::Files),
}

/// The module `name` for the agent at `key`: read from `config.dir` (or the given source),
/// size-checked and parsed.
pub(super) fn load(
    key: &str,
    name: &str,
    config: &ModulesConfig,
    source: Source<'_>,
) -> Result<StrategyModule, ConfigError> {
    if !modules::valid_name(name) {
        return Err(invalid(
            key,
            format!(
                "{:?} is not a module name: use 1-64 of a-z, 0-9 and _, starting with a letter",
                vigil_protocol::truncate(name)
            ),
        ));
    }
    let text: Arc<str> = match source {
        Source::Given(given, text) if given == name => Arc::clone(text),
        Source::Files(files) => {
            let path = format!("{}/{name}.star", crate::generations::MODULES_DIR);
            let Some(bytes) = files.get(&path) else {
                return Err(invalid(
                    key,
                    format!("names module {name:?}, but the generation has no {path}"),
                ));
            };
            let text = std::str::from_utf8(bytes)
                .map_err(|_| invalid(key, format!("{path} is not UTF-8 text")))?;
            Arc::from(text)
        }
        _ => {
            let Some(dir) = &config.dir else {
                return Err(invalid(
                    key,
                    format!(
                        "names module {name:?}, but [modules] has no dir: set modules.dir to the \
                         directory holding {name}.star"
                    ),
                ));
            };
            Arc::from(read(&dir.join(format!("{name}.star"))).map_err(|e| invalid(key, e))?)
        }
    };
    if text.len() > MAX_SOURCE_BYTES {
        return Err(invalid(
            key,
            format!(
                "module {name} is {} bytes, more than the {MAX_SOURCE_BYTES}-byte limit",
                text.len()
            ),
        ));
    }
    modules::parse_source(&format!("{name}.star"), &text, config.limits)
        .map_err(|e| invalid(key, format!("module {name} does not parse: {e}")))?;
    Ok(StrategyModule {
        name: name.to_owned(),
        source: text,
        limits: config.limits,
    })
}

/// A module file's text, at most [`MAX_SOURCE_BYTES`]; the error names the file.
pub(crate) fn read(path: &Path) -> Result<String, String> {
    let len = std::fs::metadata(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?
        .len();
    if len > MAX_SOURCE_BYTES as u64 {
        return Err(format!(
            "{} is {len} bytes, more than the {MAX_SOURCE_BYTES}-byte limit",
            path.display()
        ));
    }
    std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
}
