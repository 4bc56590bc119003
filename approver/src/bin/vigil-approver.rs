//! `vigil-approver`: the daemon. In this order: sanitizes the process (no inherited fds,
//! an environment of `VIGIL_LOG` and `CREDENTIALS_DIRECTORY` only); loads the config (flag,
//! then `VIGIL_APPROVER_CONFIG`, then `/etc/vigil/approver.toml`); reads the bot token from
//! its systemd credential (refusing to start without it); opens its state; confines itself
//! (`vigil_approver::confine`, before any thread); then runs the bot and the poll loop until
//! SIGTERM or Ctrl-C.

#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use vigil_approver::{Config, Store, confine, read_token};

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
    /// USER:GROUP (names or numeric ids) to switch to when started as root; under systemd
    /// (User=vigil-approver) it is not needed.
    #[arg(long, value_parser = confine::parse_run_as)]
    run_as: Option<(u32, u32)>,
}

/// The environment kept by the sanitizer.
const KEEP_ENV: &[&str] = &[
    "VIGIL_LOG",
    "CREDENTIALS_DIRECTORY",
    "VIGIL_APPROVER_CONFIG",
    vigil_sandbox::notify::NOTIFY_ENV,
];

fn main() -> ExitCode {
    // First, while single threaded: no inherited fd, a known environment.
    if let Err(e) = vigil_sandbox::sanitize_process(&[], KEEP_ENV) {
        eprintln!("vigil-approver: {e}");
        return ExitCode::FAILURE;
    }
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
    let api_port = config.api_url.port_or_known_default().unwrap_or(443);
    if let Some(host) = config.api_url.host_str() {
        confine::warm_up_resolver(host, api_port);
    }
    // systemd's notify socket, connected while it still may be (Type=notify).
    let readiness =
        vigil_sandbox::notify::Readiness::connect_from_env().map_err(anyhow::Error::msg)?;
    let confined = confine::confine(&confine::Walls {
        run_as: cli.run_as,
        state_dir: config.state_dir.clone(),
        api_port,
    })
    .map_err(vigil_approver::ApproverError::from)?;
    tracing::info!(
        dropped_to = ?confined.dropped_to,
        landlock = %confined.landlock,
        seccomp_syscalls = confined.seccomp_syscalls,
        "confined"
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async {
        readiness
            .send_ready("confined; showing what the signer awaits")
            .map_err(anyhow::Error::msg)?;
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
