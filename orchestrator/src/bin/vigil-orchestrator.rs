//! `vigil-orchestrator`: the daemon. Loads the config (flag, then `VIGIL_ORCHESTRATOR_CONFIG`,
//! then `/etc/vigil/orchestrator.toml`), opens the state, reconciles what a crash may have
//! left half-done, and runs the agents on their schedules until SIGTERM or Ctrl-C. With a
//! `[telegram]` table and the bot token credential, the Telegram bot runs beside them and
//! receives the alerts; without the token the bot does not start (the log says why) and
//! alerts go to standard output and the log. `vigil-orchestrator snapshot` copies the state
//! consistently for the backup (`vigil_orchestrator::snapshot`). `vigil-orchestrator proposal
//! check <bundle-dir> --recording <file>` checks a self-written module's proposal (parse, its
//! own tests, a paper replay, the digest) with nothing but those two paths: no config, no
//! state, no secret, no network; exit status 0 when it passes, 1 when it is refused.

#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use clap::Parser;
use sd_notify::NotifyState;
use vigil_orchestrator::{
    Alert, Config, Orchestrator, SIGNER_TIMEOUT, SignerClient, Store, unix_now,
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
    let config =
        Config::load(&cli.config).with_context(|| format!("config {}", cli.config.display()))?;
    let store = Store::open(&config.state_db)
        .with_context(|| format!("state {}", config.state_db.display()))?;
    let signer = SignerClient::new(&config.signer_socket, SIGNER_TIMEOUT);
    let telegram_config = config.telegram.clone();
    let mut orchestrator = Orchestrator::new(config, store, signer)?;
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
    runtime.block_on(async {
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
        tokio::select! {
            () = Arc::clone(&orchestrator).run() => {}
            stopped = bot => match stopped {
                Ok(()) => tracing::info!("Telegram bot stopped; stopping"),
                Err(e) => return Err(e).context("Telegram bot"),
            },
            _ = tokio::signal::ctrl_c() => tracing::info!("interrupted; stopping"),
            _ = term.recv() => tracing::info!("SIGTERM; stopping"),
        }
        // Best effort: the process exits right after anyway.
        let _ = sd_notify::notify(&[NotifyState::Stopping]);
        Ok::<(), anyhow::Error>(())
    })
}
