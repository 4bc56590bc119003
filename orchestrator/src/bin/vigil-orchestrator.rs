//! `vigil-orchestrator`: the daemon. Loads the config (flag, then `VIGIL_ORCHESTRATOR_CONFIG`,
//! then `/etc/vigil/orchestrator.toml`), opens the state, reconciles what a crash may have
//! left half-done, and runs the agents on their schedules until SIGTERM or Ctrl-C. With a
//! `[telegram]` table and the bot token credential, the Telegram bot runs beside them and
//! receives the alerts; without the token the bot does not start (the log says why) and
//! alerts go to standard output and the log. `vigil-orchestrator snapshot` copies the state
//! consistently for the backup (`vigil_orchestrator::snapshot`).

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
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("VIGIL_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .init();
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vigil-orchestrator: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
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
