//! `vigil-orchestrator`: the daemon. Loads the config (flag, then `VIGIL_ORCHESTRATOR_CONFIG`,
//! then `/etc/vigil/orchestrator.toml`), opens the state, reconciles what a crash may have
//! left half-done, and runs the agents on their schedules until SIGTERM or Ctrl-C. With a
//! `[telegram]` table and the bot token credential, the Telegram bot runs beside them and
//! receives the alerts; without the token the bot does not start (the log says why) and
//! alerts go to standard output and the log. `vigil-orchestrator snapshot` copies the state
//! consistently for the backup (`vigil_orchestrator::snapshot`).
//!
//! With a `[generations]` table the file given is the system configuration: on first start it
//! seeds generation 1, when it changed (a NixOS switch) it becomes a new generation, and the
//! daemon runs the current generation's copy (`vigil_orchestrator::generations`). A switch of
//! generation (an apply, `/rollback`, a failed health check) restarts the daemon in place: it
//! re-executes itself with the same arguments, and a pending state restore is finished
//! before the state is opened. `vigil-orchestrator generations list|show N|diff A B` shows
//! them to the operator.
//!
//! `vigil-orchestrator proposal check <bundle-dir> --recording <file>` checks a self-written module's proposal (parse, its
//! own tests, a paper replay, the digest) with nothing but those two paths: no config, no
//! state, no secret, no network; exit status 0 when it passes, 1 when it is refused.
//! `vigil-orchestrator proposal submit <bundle-dir> --recording <file>` runs the same check in
//! the appliance's sandbox (vigil-proposal.socket), as `/build` does there.

#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use clap::Parser;
use sd_notify::NotifyState;
use vigil_orchestrator::generations::{self, Generations, Health, restore};
use vigil_orchestrator::{
    Alert, Config, Orchestrator, SIGNER_TIMEOUT, SignerClient, Store, unix_now, watch_from,
};

/// The Vigil orchestrator daemon: agents, LLM firewall, state.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    /// The orchestrator's TOML config.
    #[arg(
        long,
        env = "VIGIL_ORCHESTRATOR_CONFIG",
        default_value = "/etc/vigil/orchestrator.toml"
    )]
    config: PathBuf,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Copy the SQLite state consistently (safe while the daemon runs), checked with
    /// `PRAGMA integrity_check`, written atomically; prints the rows per table as JSON.
    Snapshot {
        /// The state file (the config's `state_db`).
        #[arg(long)]
        state: PathBuf,
        /// Where the copy goes (must not exist).
        #[arg(long)]
        out: PathBuf,
    },
    /// Takes the state down to an older schema, so an older orchestrator can start on it.
    /// Names what each step drops first; refuses to drop rows unless `--drop-data` is given.
    Migrate {
        /// The schema version to go down to (1 to the file's).
        #[arg(long)]
        down_to: u32,
        /// The state file (the config's `state_db`); stop the daemon first.
        #[arg(long)]
        state: PathBuf,
        /// Drop the rows the steps name (take a snapshot first: `vigil-orchestrator snapshot`).
        #[arg(long)]
        drop_data: bool,
    },
    /// The configuration generations of `[generations]` in the config.
    Generations {
        #[command(subcommand)]
        what: GenerationsCommand,
    },
    /// Self-written modules' proposals (docs/operations.md, "Self-written modules").
    Proposal {
        #[command(subcommand)]
        command: ProposalCommand,
    },
    /// One strategy-module call in a confined child (started by the orchestrator itself, one
    /// per call; not for operators): confines itself, reads the call as JSON on stdin,
    /// writes the reply as JSON on stdout.
    #[command(name = "module-run", hide = true)]
    ModuleRun {
        /// The interpreter's step limit.
        #[arg(long)]
        max_steps: u64,
        /// The heap limit, bytes (the address-space limit is this plus the baseline).
        #[arg(long)]
        max_heap_bytes: u64,
        /// The wall-time limit, ms (the CPU-time limit follows from it).
        #[arg(long)]
        max_wall_ms: u64,
    },
}

#[derive(Debug, clap::Subcommand)]
enum GenerationsCommand {
    /// Every generation kept: number, parent, when, why, digest, health; `*` marks the current.
    List,
    /// One generation: its meta.json, health and files.
    Show {
        /// The generation's number.
        n: u32,
    },
    /// What changed from generation A to generation B, file by file.
    Diff {
        /// The older generation.
        a: u32,
        /// The newer generation.
        b: u32,
    },
}

#[derive(Debug, clap::Subcommand)]
enum ProposalCommand {
    /// Check a proposal bundle: it parses, its own tests pass under the module limits, the
    /// deputy replays the recorded window on paper with it; prints the report and the
    /// bundle's SHA-256. Exit status 0: passed; 1: refused.
    Check {
        /// The bundle directory (<name>.star, <name>_test.star, rationale.md, config.toml).
        bundle: PathBuf,
        /// The recorded market window (JSON) the deputy replays.
        #[arg(long)]
        recording: PathBuf,
        /// Also write the report as JSON to this file (written atomically).
        #[arg(long)]
        output: Option<PathBuf>,
    },
    /// Check a proposal bundle in the appliance's sandbox: sends the bundle and the window to
    /// vigil-proposal.socket (one vigil-proposal@.service per connection) and prints its
    /// report. Exit status 0: passed; 1: refused; 2: the sandbox could not be reached or
    /// gave no report.
    Submit {
        /// The bundle directory.
        bundle: PathBuf,
        /// The recorded market window (JSON) the deputy replays.
        #[arg(long)]
        recording: PathBuf,
        /// The sandbox's socket.
        #[arg(long, default_value = vigil_orchestrator::proposal::socket::SOCKET)]
        socket: PathBuf,
    },
    /// The sandbox's side (vigil-proposal@.service, not for operators): reads one request on
    /// stdin, checks it in $TMPDIR, writes the report as JSON on stdout.
    #[command(hide = true)]
    Serve,
}

/// Writes `bytes` to `path` through a temp file beside it: written, fsynced, renamed over
/// `path`, the directory fsynced.
fn write_atomically(path: &std::path::Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write as _;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .with_context(|| format!("{} names no file", path.display()))?;
    let tmp = dir.join(format!(".{}.tmp", name.to_string_lossy()));
    let mut f =
        std::fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming to {}", path.display()))?;
    std::fs::File::open(&dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("syncing {}", dir.display()))?;
    Ok(())
}

fn proposal_check(
    bundle: &std::path::Path,
    recording: &std::path::Path,
    output: Option<&std::path::Path>,
) -> anyhow::Result<ExitCode> {
    let report = vigil_orchestrator::check_bundle(bundle, recording);
    print!("{}", report.render());
    if let Some(out) = output {
        let json = serde_json::to_vec_pretty(&report).context("the report as JSON")?;
        write_atomically(out, &json)?;
    }
    Ok(if report.passed {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn proposal_submit(
    bundle: &std::path::Path,
    recording: &std::path::Path,
    socket: &std::path::Path,
) -> ExitCode {
    use vigil_orchestrator::proposal::{flow, socket as sandbox_socket};
    let report = sandbox_socket::Request::from_files(bundle, recording)
        .and_then(|request| sandbox_socket::submit(socket, &request, sandbox_socket::TIMEOUT));
    match report {
        Ok(report) => {
            print!("{}", flow::render_report(&report));
            if let Some(digest) = report["digest"].as_str() {
                println!("bundle SHA-256: {digest}");
            }
            if report["passed"] == true {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("vigil-orchestrator: {e}");
            ExitCode::from(2)
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // A module call confines itself before anything else runs (no logger, no runtime).
    if let Some(Command::ModuleRun {
        max_steps,
        max_heap_bytes,
        max_wall_ms,
    }) = cli.command
    {
        return vigil_orchestrator::serve_module_call(vigil_orchestrator::ModuleLimits {
            max_steps,
            max_heap_bytes,
            max_wall_ms,
        });
    }
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("VIGIL_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .init();
    if let Some(Command::Proposal {
        command:
            ProposalCommand::Check {
                bundle,
                recording,
                output,
            },
    }) = &cli.command
    {
        return match proposal_check(bundle, recording, output.as_deref()) {
            Ok(code) => code,
            Err(e) => {
                eprintln!("vigil-orchestrator: {e:#}");
                ExitCode::from(2)
            }
        };
    }
    if let Some(Command::Proposal {
        command:
            ProposalCommand::Submit {
                bundle,
                recording,
                socket,
            },
    }) = &cli.command
    {
        return proposal_submit(bundle, recording, socket);
    }
    if let Some(Command::Proposal {
        command: ProposalCommand::Serve,
    }) = &cli.command
    {
        let scratch = std::env::temp_dir();
        return match vigil_orchestrator::proposal::socket::serve(
            std::io::stdin().lock(),
            std::io::stdout().lock(),
            &scratch,
        ) {
            Ok(true) => ExitCode::SUCCESS,
            Ok(false) => {
                eprintln!(
                    "vigil-orchestrator: the proposal request was refused (the error went back on the connection)"
                );
                ExitCode::from(2)
            }
            Err(e) => {
                eprintln!("vigil-orchestrator: writing the report: {e}");
                ExitCode::from(2)
            }
        };
    }
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vigil-orchestrator: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    if let Some(Command::Proposal { .. }) = &cli.command {
        // Handled in main, before anything is loaded.
        return Ok(());
    }
    if let Some(Command::Snapshot { state, out }) = &cli.command {
        let snap = vigil_orchestrator::snapshot::snapshot(state, out)?;
        let tables: serde_json::Map<String, serde_json::Value> = snap
            .tables
            .iter()
            .map(|(name, rows)| (name.clone(), (*rows).into()))
            .collect();
        println!(
            "{}",
            serde_json::json!({"ok": true, "out": snap.path, "bytes": snap.bytes, "tables": tables})
        );
        return Ok(());
    }
    if let Some(Command::Migrate {
        down_to,
        state,
        drop_data,
    }) = &cli.command
    {
        return migrate_down(state, *down_to, *drop_data);
    }
    if let Some(Command::Generations { what }) = &cli.command {
        return generations_command(&cli.config, what);
    }
    let system =
        Config::load(&cli.config).with_context(|| format!("config {}", cli.config.display()))?;
    // Lines for the operator once the bot runs (what happened to the generations at start).
    let mut notes = Vec::new();
    let (config, generations) = match system.generations.clone() {
        None => (system, None),
        Some(settings) => {
            let (config, g, lines) = current_generation(&cli.config, &system, &settings)?;
            notes = lines;
            (config, Some((g, settings)))
        }
    };
    let store = Store::open(&config.state_db)
        .with_context(|| format!("state {}", config.state_db.display()))?;
    let signer = SignerClient::new(&config.signer_socket, SIGNER_TIMEOUT);
    let telegram_config = config.telegram.clone();
    let mut orchestrator = match Orchestrator::new(config, store, signer) {
        Ok(o) => o,
        Err(e) => {
            if let Some((g, _)) = &generations {
                fall_back_if_watched(g, &e.to_string())
                    .context("rolling back the generation that did not start")?;
            }
            return Err(e.into());
        }
    };
    if let Some((g, settings)) = generations {
        orchestrator.set_generations(g, settings);
    }
    // The bot starts only with its token; otherwise the terminal (stdout and the log) is the
    // operator interface, as in the demo.
    let bot = match telegram_config {
        None => {
            tracing::info!("no [telegram] table in the config: alerts go to standard output");
            None
        }
        Some(tg) => match vigil_orchestrator::read_token(&tg) {
            Ok(token) => {
                let (alerts, queue) = vigil_orchestrator::alert_channel();
                orchestrator.set_operator(Arc::new(alerts));
                Some((tg, token, queue))
            }
            Err(e) => {
                tracing::warn!("Telegram bot not started: {e}");
                None
            }
        },
    };
    let orchestrator = Arc::new(orchestrator);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let restarted = runtime.block_on(async {
        // The chain node must serve the networks the signed policy pins (genesis hash); a
        // mismatch is alerted and every decision on the chain holds until it is fixed.
        for line in orchestrator.check_networks().await {
            tracing::error!("network check: {line}");
        }
        for line in orchestrator.reconcile().await {
            tracing::warn!("reconciliation: {line}");
            orchestrator.alert(Alert::Reconciliation(line));
        }
        // Transfers the operator approved that a crash or restart kept from running: run if
        // still inside their time-to-live, asked again otherwise.
        for line in orchestrator.resume_confirmed(unix_now()).await {
            tracing::warn!("{line}");
            orchestrator.alert(Alert::Reconciliation(line));
        }
        for line in notes {
            tracing::warn!("generations: {line}");
            orchestrator.alert(Alert::Generation(line));
        }
        // A new generation is watched for its health window; a failed check rolls it back.
        tokio::spawn(Arc::clone(&orchestrator).watch_generation());
        let bot = async {
            match bot {
                Some((tg, token, queue)) => {
                    vigil_orchestrator::run_bot(orchestrator.clone(), tg, token, queue).await
                }
                None => std::future::pending().await,
            }
        };
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .context("installing the SIGTERM handler")?;
        // Type=notify: systemd counts the unit as started only now (config, state and
        // reconciliation done). Without $NOTIFY_SOCKET this does nothing.
        let status = format!("running {} agents", orchestrator.agents().len());
        sd_notify::notify(&[NotifyState::Ready, NotifyState::Status(&status)])
            .context("telling systemd the orchestrator is ready ($NOTIFY_SOCKET)")?;
        tracing::info!(
            agents = orchestrator.agents().len(),
            "vigil-orchestrator running"
        );
        let mut restart = false;
        tokio::select! {
            () = Arc::clone(&orchestrator).run() => {}
            // The agents, the chores and the bot keep running for a moment, so that what the
            // switch told the operator (why, and what comes back) is sent before the restart.
            () = async {
                orchestrator.restart_requested().await;
                tokio::time::sleep(std::time::Duration::from_secs(2)).await;
            } => {
                tracing::info!("switching generation: restarting on the current one");
                restart = true;
            }
            stopped = bot => match stopped {
                Ok(()) => tracing::info!("Telegram bot stopped; stopping"),
                Err(e) => return Err(e).context("Telegram bot"),
            },
            _ = tokio::signal::ctrl_c() => tracing::info!("interrupted; stopping"),
            _ = term.recv() => tracing::info!("SIGTERM; stopping"),
        }
        // The market marks recorded since the last flush, so the window a proposal replays
        // is whole after the restart (or the next start).
        if let Err(line) = orchestrator.flush_recorded_marks() {
            tracing::warn!("{line}");
        }
        if restart {
            // The same pid sends READY=1 again once the new generation runs.
            let _ = sd_notify::notify(&[NotifyState::Status("switching generation: restarting")]);
            return Ok(true);
        }
        // Best effort: the process exits right after anyway.
        let _ = sd_notify::notify(&[NotifyState::Stopping]);
        Ok::<bool, anyhow::Error>(false)
    })?;
    if restarted {
        // Same binary, same arguments, same pid (systemd keeps tracking it): it starts on the
        // generation now current. `exec` returns only on failure.
        return Err(reexec());
    }
    Ok(())
}

/// Re-executes this binary with the same arguments (same pid); returns only on failure.
fn reexec() -> anyhow::Error {
    use std::os::unix::process::CommandExt as _;
    let exe = match std::env::current_exe() {
        Ok(exe) => exe,
        Err(e) => return anyhow::Error::new(e).context("finding this binary to restart it"),
    };
    let err = std::process::Command::new(&exe)
        .args(std::env::args_os().skip(1))
        .exec();
    anyhow::Error::new(err).context(format!(
        "restarting {} on the new generation",
        exe.display()
    ))
}

/// A generation still in its health window that does not even start (its configuration does
/// not load, a provider cannot be built) fails its check at once: its parent and the state
/// from before it come back, and the daemon restarts on them (this does not return then).
/// Nothing happens for a generation that is not watched: the caller reports its own error.
fn fall_back_if_watched(g: &Generations, why: &str) -> anyhow::Result<()> {
    let Some(n) = g.current()? else {
        return Ok(());
    };
    if !matches!(g.health(n)?, Some(Health::Watching { .. })) {
        return Ok(());
    }
    let why = format!("it did not start: {why}");
    let to = g.default_target()?;
    let plan = g.plan_rollback(
        to,
        &format!("generation {n} failed its health check: {why}"),
    )?;
    g.set_health(
        n,
        &Health::Failed {
            at: unix_now(),
            why: why.clone(),
        },
    )?;
    g.begin_rollback(&plan)?;
    tracing::error!("generation {n} {why}; rolling back to generation {to} and restarting");
    Err(reexec())
}

/// Finishes a pending rollback, takes in a changed system configuration, and loads the
/// current generation's configuration; lines for the operator.
fn current_generation(
    system_path: &std::path::Path,
    system: &Config,
    settings: &vigil_orchestrator::GenerationSettings,
) -> anyhow::Result<(Config, Generations, Vec<String>)> {
    let now = unix_now();
    let g = Generations::open(settings)
        .with_context(|| format!("generations in {}", settings.dir.display()))?;
    let mut lines = Vec::new();
    // A rollback decided before the restart: its state restore comes before the state opens.
    if let Some(done) = restore::finish_pending(&g, &system.state_db, now)
        .context("finishing the pending rollback")?
    {
        lines.push(format!(
            "rolled back from generation {} to {}: {}. Generation {}'s files run now; the state is back as it was before generation {} was applied, with {} fact rows (fills, executions, confirmations, transactions, settings) from after it kept. The replaced state is kept at {}.",
            done.plan.from,
            done.plan.to,
            done.plan.reason,
            done.plan.to,
            done.plan
                .snapshot
                .parent()
                .and_then(|p| p.file_name())
                .map_or_else(String::new, |n| n.to_string_lossy().into_owned()),
            done.carried,
            done.replaced.display()
        ));
    }
    if let Some(n) = g
        .adopt_system_config(system_path, &system.state_db, now)
        .context("taking in the system configuration")?
    {
        watch_from(&g, settings, n, now).context("watching the new generation")?;
        lines.push(match n {
            1 => format!("generation 1 seeded from {}", system_path.display()),
            n => format!(
                "generation {n} made from the changed system configuration {}; its health is watched for {} s",
                system_path.display(),
                settings.health_window_secs
            ),
        });
    }
    let path = g.current_config_path();
    let config = match Config::load(&path) {
        Ok(c) => c,
        Err(e) => {
            fall_back_if_watched(&g, &e.to_string())
                .context("rolling back the generation that did not start")?;
            return Err(e).with_context(|| format!("config {}", path.display()));
        }
    };
    if config.state_db != system.state_db {
        anyhow::bail!(
            "the current generation's state_db ({}) is not the system configuration's ({}): a generation may not move the state; roll back with `/rollback` or fix {}",
            config.state_db.display(),
            system.state_db.display(),
            path.display()
        );
    }
    Ok((config, g, lines))
}

/// `vigil-orchestrator migrate --down-to K --state FILE [--drop-data]`.
fn migrate_down(state: &std::path::Path, to: u32, drop_data: bool) -> anyhow::Result<()> {
    let from =
        Store::file_schema_version(state).with_context(|| format!("state {}", state.display()))?;
    let plan = Store::down_plan(state, to).with_context(|| format!("state {}", state.display()))?;
    for line in &plan {
        println!(
            "schema {} -> {}: drops {} ({} rows)",
            line.from_version,
            line.from_version - 1,
            line.what,
            line.rows
        );
    }
    let losing: Vec<String> = plan
        .iter()
        .filter(|l| l.rows > 0)
        .map(|l| format!("{} ({} rows)", l.what, l.rows))
        .collect();
    if !losing.is_empty() && !drop_data {
        anyhow::bail!(
            "going down from schema {from} to {to} would drop data: {}. Nothing was changed. Take a snapshot first (vigil-orchestrator snapshot --state {} --out <file>), then run again with --drop-data",
            losing.join(", "),
            state.display()
        );
    }
    Store::migrate_down(state, to).with_context(|| format!("state {}", state.display()))?;
    println!(
        "the state {} is at schema {to} (was {from})",
        state.display()
    );
    Ok(())
}

/// `vigil-orchestrator generations ...`.
fn generations_command(config: &std::path::Path, what: &GenerationsCommand) -> anyhow::Result<()> {
    let system = Config::load(config).with_context(|| format!("config {}", config.display()))?;
    let Some(settings) = system.generations else {
        anyhow::bail!(
            "{} has no [generations] table: this orchestrator runs its file as is, without generations",
            config.display()
        );
    };
    let g = Generations::open(&settings)?;
    let current = g.current()?;
    match what {
        GenerationsCommand::List => {
            for n in g.numbers()? {
                let mark = if Some(n) == current { "*" } else { " " };
                match g.meta(n) {
                    Ok(m) => {
                        let health = match g.health(n) {
                            Ok(Some(h)) => serde_json::to_value(&h)
                                .ok()
                                .and_then(|v| v["state"].as_str().map(str::to_owned))
                                .unwrap_or_default(),
                            Ok(None) => "-".into(),
                            Err(e) => format!("unreadable ({e})"),
                        };
                        println!(
                            "{mark}{n:>4}  parent {:>4}  {}  {}  {health:<11} {}",
                            m.parent.map_or_else(|| "-".to_owned(), |p| p.to_string()),
                            m.created_at,
                            m.digest.get(..16).unwrap_or_default(),
                            m.reason
                        );
                    }
                    Err(e) => println!("{mark}{n:>4}  {e}"),
                }
            }
        }
        GenerationsCommand::Show { n } => {
            let meta = g.meta(*n)?;
            let files = g.files(*n)?;
            let health = g.health(*n)?;
            println!(
                "{}",
                serde_json::to_string_pretty(&serde_json::json!({
                    "current": Some(*n) == current,
                    "meta": meta,
                    "health": health,
                    "files": files.iter().map(|(p, b)| serde_json::json!({"path": p, "bytes": b.len()})).collect::<Vec<_>>(),
                }))?
            );
        }
        GenerationsCommand::Diff { a, b } => {
            let (fa, fb) = (g.files(*a)?, g.files(*b)?);
            let d = generations::diff(&fa, &fb);
            if d.is_empty() {
                println!("generations {a} and {b} have the same files");
            } else {
                print!("{d}");
            }
        }
    }
    Ok(())
}
