//! `vigil-approver`: the daemon. Loads the config (flag, then `VIGIL_APPROVER_CONFIG`, then
//! `/etc/vigil/approver.toml`), reads the bot token from its systemd credential (refusing to
//! start without it), opens its state, and runs the bot and the poll loop until SIGTERM or
//! Ctrl-C.

#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use vigil_approver::{Config, Store, read_token};

/// The Vigil approver: carries the operator's codes to the signer.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    /// The approver's TOML config.
    #[arg(
        long,
        env = "VIGIL_APPROVER_CONFIG",
        default_value = "/etc/vigil/approver.toml"
    )]
    config: PathBuf,
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
            tracing::error!("{e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let config = Config::load(&cli.config)?;
    let token = read_token(&config.token_credential)?;
    let store = Store::open(&config.state_dir)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async {
        tokio::select! {
            r = vigil_approver::telegram::run(config, token, store) => r.map_err(anyhow::Error::from),
            _ = shutdown() => {
                tracing::info!("stopping");
                Ok(())
            }
        }
    })
}

async fn shutdown() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = term => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
