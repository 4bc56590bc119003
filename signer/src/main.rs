//! The `vigil-signer` command: `serve`, `dev-init`, `dev-sign-policy`, `audit-verify`,
//! `import`, `import-status`, `import-confirm`, `import-discard`, `unlock-codes`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use vigil_protocol::{AgentId, OperatorCode};
use vigil_signer::{console, daemon, devinit, import};

/// The Vigil signer: keys, policy, ledger and audit, behind one Unix socket.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// The state dir of an installed signer: a flag, then the environment, then the default.
#[derive(Debug, Args)]
struct StateDir {
    /// The signer's state dir (keystore/, policy/, ledger/).
    #[arg(
        long = "state-dir",
        env = "VIGIL_SIGNER_STATE_DIR",
        default_value = "/var/lib/vigil-signer"
    )]
    path: PathBuf,
}

/// Where a key-ceremony stick is staged: a flag, then the environment, then the default (the
/// importer's own state dir, outside the signer's).
#[derive(Debug, Args)]
struct StagingDir {
    /// The staged copy of a ceremony stick (the importer writes it, the signer reads it).
    #[arg(
        id = "staging_dir",
        long = "staging-dir",
        env = "VIGIL_IMPORT_STAGING_DIR",
        default_value = import::DEFAULT_STAGING_DIR
    )]
    path: PathBuf,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the signer protocol on a Unix socket.
    Serve {
        #[command(flatten)]
        state: StateDir,
        #[command(flatten)]
        staging: StagingDir,
        /// Socket path to bind; omit under systemd socket activation (LISTEN_FDS).
        #[arg(long)]
        socket: Option<PathBuf>,
        /// Keystore passphrase file; default: the systemd credential vigil-keystore-passphrase.
        #[arg(long)]
        passphrase_file: Option<PathBuf>,
        /// Also allow this peer uid to connect (repeatable); the signer's own uid is always allowed.
        #[arg(long = "allow-peer-uid")]
        allow_peer_uid: Vec<u32>,
        /// Also allow this user's uid to connect (repeatable; resolved at start), e.g. vigil.
        #[arg(long = "allow-peer-user")]
        allow_peer_user: Vec<String>,
        /// The approver: the one peer (a user name or a numeric uid) that may carry operator
        /// codes (approve, confirm, set_limit, import_confirm) and read awaiting/events. It must
        /// not also be an asker. Without it nothing can be approved over the socket.
        #[arg(long = "approver-user")]
        approver_user: Option<String>,
        /// Seconds an approval waits for the operator (at most 86400: a journal checkpoint
        /// carries every entry of the last 49 hours, so nothing still open is left behind).
        #[arg(long, default_value_t = vigil_signer::DEFAULT_TTL_SECS, value_parser = ttl_secs)]
        approval_ttl: u64,
        /// Seconds a granted approval can be collected by the asker's `sign` (one signature;
        /// at most 86400).
        #[arg(long, default_value_t = vigil_signer::DEFAULT_GRANT_TTL_SECS, value_parser = ttl_secs)]
        grant_ttl: u64,
        /// Seconds a recorded key-ceremony import confirmation may wait to be applied (at the
        /// restart right after it); an older one expires and must be confirmed again (at most
        /// 86400).
        #[arg(long, default_value_t = import::live::CONFIRMATION_TTL_SECS, value_parser = ttl_secs)]
        import_confirmation_ttl: u64,
        /// Seal the journal's live segment (`audit.jsonl`) once this many bytes were written
        /// after its checkpoint, and start the next one (docs/audit.md, "Segments"). The three
        /// journal flags may also come from the environment (the NixOS module's
        /// services.vigil.journal sets them so).
        #[arg(long, env = "VIGIL_JOURNAL_ROTATE_BYTES", default_value_t = vigil_signer::audit::segment::DEFAULT_ROTATE_BYTES)]
        journal_rotate_bytes: u64,
        /// Keep at least this many sealed journal segments.
        #[arg(long, env = "VIGIL_JOURNAL_KEEP_SEGMENTS", default_value_t = vigil_signer::audit::segment::DEFAULT_KEEP_SEGMENTS)]
        journal_keep_segments: usize,
        /// Keep every sealed journal segment sealed less than this many days ago (0..=36500);
        /// older ones beyond --journal-keep-segments are deleted (the backups hold them).
        #[arg(long, env = "VIGIL_JOURNAL_KEEP_DAYS", default_value_t = vigil_signer::audit::segment::DEFAULT_KEEP_DAYS)]
        journal_keep_days: u64,
        /// USER:GROUP to switch to when started as root (the signer never keeps running as root).
        #[arg(long, value_parser = parse_user_group)]
        run_as: Option<(String, String)>,
        /// INSECURE: run without landlock if the kernel lacks it (logged loudly). Not for money.
        #[arg(long)]
        insecure_no_landlock: bool,
        /// INSECURE: start even if secret memory cannot be locked (logged, with the reason);
        /// the unlocked keys may then be written to swap. For dev and tests as a user, not money.
        #[arg(long)]
        insecure_allow_unlocked_memory: bool,
    },
    /// INSECURE development setup: keys, passphrase, policy key and TOTP secret in plain files.
    DevInit {
        /// State dir to create.
        #[arg(long)]
        state_dir: PathBuf,
        /// Comma-separated agent ids.
        #[arg(long, value_delimiter = ',', required = true)]
        agents: Vec<AgentId>,
        /// Policy TOML to sign instead of the default dev policy.
        #[arg(long)]
        policy: Option<PathBuf>,
        /// With the default policy: also a key per agent on `evm:devnet`, a paper network
        /// (its genesis pin matches no chain, so nothing is ever broadcast there), with the
        /// EVM actions and caps, for showing EVM actions through `dry_run`.
        #[arg(long, conflicts_with = "policy")]
        evm_paper: bool,
        /// With the default policy: also each agent's two Hyperliquid keys (API wallet and
        /// master) on `hyperliquid:testnet`, with a perpetuals table, the perp actions and caps.
        #[arg(long, conflicts_with = "policy")]
        hyperliquid_paper: bool,
    },
    /// INSECURE: sign and install a policy with the dev policy key of a dev-init state dir.
    DevSignPolicy {
        /// A state dir made by dev-init.
        #[arg(long)]
        state_dir: PathBuf,
        /// The policy TOML.
        #[arg(long)]
        policy: PathBuf,
    },
    /// Verify the hash chain of the audit log; exits non-zero naming the first bad entry.
    AuditVerify {
        #[command(flatten)]
        state: StateDir,
        /// The audit head (hex) you recorded earlier; detects truncation of the log's tail.
        #[arg(long)]
        expect_head: Option<String>,
        /// Also check the entries' MACs with the keystore's journal key (unlocked with the
        /// passphrase of --passphrase-file, or the systemd credential): detects a consistent
        /// rewrite of the chain by someone without the passphrase.
        #[arg(long)]
        keyed: bool,
        /// Keystore passphrase file (implies --keyed).
        #[arg(long)]
        passphrase_file: Option<PathBuf>,
    },
    /// At the appliance's console, the signer stopped: lift the lock on operator codes (after
    /// the daily budget of wrong codes was spent, codes are refused until this runs). Recorded
    /// in the audit log.
    UnlockCodes {
        #[command(flatten)]
        state: StateDir,
        /// Keystore passphrase file; default: the systemd credential vigil-keystore-passphrase.
        #[arg(long)]
        passphrase_file: Option<PathBuf>,
    },
    /// At the console, the signer stopped, once after upgrading from a release whose journal
    /// had no MACs: verify the chain and append its first keyed entry (with the passphrase).
    AuditKey {
        #[command(flatten)]
        state: StateDir,
        /// Keystore passphrase file; default: the systemd credential vigil-keystore-passphrase.
        #[arg(long)]
        passphrase_file: Option<PathBuf>,
    },
    /// Check a key-ceremony stick and STAGE it; nothing is installed until it is confirmed.
    /// A staged copy is never overwritten: confirm or discard it first.
    Import {
        /// The stick's root (the directory vigil-ceremony wrote to).
        dir: PathBuf,
        #[command(flatten)]
        state: StateDir,
        #[command(flatten)]
        staging: StagingDir,
        /// It is meant to replace the appliance's keys (confirming then also needs a code of the
        /// CURRENT authenticator; the old keys are kept under imports/).
        #[arg(long)]
        replace: bool,
        /// INSECURE: accept a stick encrypted with development KDF parameters
        /// (`vigil-ceremony --insecure-test-kdf`). Development appliances only.
        #[arg(long)]
        insecure_allow_dev_kdf: bool,
    },
    /// Show the staged import: manifest digest, agents, addresses and fingerprints.
    ImportStatus {
        #[command(flatten)]
        staging: StagingDir,
    },
    /// Confirm a staged import at the appliance's console, after comparing its fingerprints
    /// with the ceremony's printout, and install it; recorded in the audit log. Stop the signer
    /// first; start it again afterwards (it then runs on the new keys). A first install is
    /// confirmed only this way.
    ImportConfirm {
        #[command(flatten)]
        state: StateDir,
        #[command(flatten)]
        staging: StagingDir,
        /// The staged manifest digest, as shown by `import` / `import-status`.
        #[arg(long)]
        manifest_digest: String,
        /// A current code from the authenticator enrolled at THIS ceremony (6 digits).
        #[arg(long)]
        code: OperatorCode,
        /// Replacing keys: a current code from the authenticator the appliance runs on NOW.
        #[arg(long)]
        current_code: Option<OperatorCode>,
        /// The keystore passphrase (the same the signer's credential holds).
        #[arg(long)]
        passphrase_file: Option<PathBuf>,
    },
    /// Remove the staged import whose manifest digest is given (to stage another stick).
    ImportDiscard {
        #[command(flatten)]
        staging: StagingDir,
        /// The staged manifest digest, as shown by `import-status`.
        #[arg(long)]
        manifest_digest: String,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Step 1 of the signer's start-up: before anything else (even logging) can open an fd
    // or read the environment.
    if matches!(cli.command, Command::Serve { .. })
        && let Err(e) = daemon::sanitize()
    {
        eprintln!("vigil-signer: {e}");
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
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("vigil-signer: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Serve {
            state: StateDir { path: state_dir },
            staging: StagingDir { path: staging_dir },
            socket,
            passphrase_file,
            allow_peer_uid,
            allow_peer_user,
            approver_user,
            approval_ttl,
            grant_ttl,
            import_confirmation_ttl,
            journal_rotate_bytes,
            journal_keep_segments,
            journal_keep_days,
            run_as,
            insecure_no_landlock,
            insecure_allow_unlocked_memory,
        } => {
            let retention = vigil_signer::audit::Retention::new(
                journal_rotate_bytes,
                journal_keep_segments,
                journal_keep_days,
            )
            .map_err(anyhow::Error::msg)?;
            let cfg = daemon::ServeConfig {
                retention,
                state_dir,
                staging_dir,
                socket,
                passphrase_file,
                allowed_uids: allow_peer_uid,
                allowed_users: allow_peer_user,
                approval_ttl_secs: approval_ttl,
                grant_ttl_secs: grant_ttl,
                approver_user,
                import_confirmation_ttl_secs: import_confirmation_ttl,
                run_as,
                insecure_no_landlock,
                insecure_allow_unlocked_memory,
            };
            match daemon::run(&cfg)? {
                daemon::Stopped::RestartForImport => Ok(ExitCode::from(daemon::EXIT_RESTART)),
            }
        }
        Command::DevInit {
            state_dir,
            agents,
            policy,
            evm_paper,
            hyperliquid_paper,
        } => {
            eprintln!(
                "WARNING: dev-init makes an INSECURE development state dir. Never use it for real funds."
            );
            let out = devinit::run(&devinit::DevInit {
                state_dir,
                agents,
                policy,
                evm_paper,
                hyperliquid_paper,
            })?;
            println!("{}", serde_json::to_string_pretty(&out)?);
            Ok(ExitCode::SUCCESS)
        }
        Command::DevSignPolicy { state_dir, policy } => {
            let bytes =
                std::fs::read(&policy).with_context(|| format!("reading {}", policy.display()))?;
            let digest = devinit::resign_policy(&state_dir, &bytes)?;
            println!("{{\"policy_digest\": \"{digest}\"}}");
            Ok(ExitCode::SUCCESS)
        }
        Command::UnlockCodes {
            state: StateDir { path: state_dir },
            passphrase_file,
        } => {
            let done = console::unlock_codes(&state_dir, passphrase_file.as_deref())?;
            println!(
                "operator codes unlocked (the lock was: {}; {} wrong codes within 24 hours); recorded as audit entry {}. Start the signer again.",
                done.was, done.wrong_codes_in_window, done.seq
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::AuditKey {
            state: StateDir { path: state_dir },
            passphrase_file,
        } => {
            match console::key_journal(&state_dir, passphrase_file.as_deref())? {
                console::Keyed::Already => {
                    println!(
                        "the journal is keyed already (its MACs vouch for it): nothing written"
                    );
                }
                console::Keyed::Now {
                    entries_before,
                    head,
                    seq,
                } => println!(
                    "journal keyed: its {entries_before} earlier entries (head {head}) are now vouched for by the MAC of entry {seq}. Start the signer again."
                ),
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::AuditVerify {
            state: StateDir { path: state_dir },
            expect_head,
            keyed,
            passphrase_file,
        } => {
            let key = if keyed || passphrase_file.is_some() {
                Some(
                    console::journal_key(&state_dir, passphrase_file.as_deref())?.context(
                        "this keystore (format 1) has no journal key: only the hash chain can be verified (omit --keyed)",
                    )?,
                )
            } else {
                None
            };
            let dir = devinit::layout::ledger(&state_dir);
            let expected = match expect_head {
                None => None,
                Some(h) => {
                    let mut head = [0u8; 32];
                    hex::decode_to_slice(h.trim(), &mut head)
                        .context("--expect-head must be 64 hex characters")?;
                    Some(head)
                }
            };
            match console::verify_journal(&dir, expected, key.as_ref()) {
                Ok(found) => {
                    let (report, keyed) = (found.report, found.keyed);
                    if let Some((before, at)) = found.rotated_away {
                        eprintln!(
                            "vigil-signer: history before seq {} was rotated away at {} (retention); the backups hold it. Verified from that checkpoint on.",
                            before + 1,
                            console::utc(at)
                        );
                    }
                    let macs = match keyed {
                        None => "\"macs_checked\": false".to_string(),
                        Some(k) => format!(
                            "\"macs_checked\": true, \"keyed\": {}, \"under_earlier_keys\": {}, \"unkeyed\": {}",
                            k.keyed, k.other_key, k.unkeyed
                        ),
                    };
                    let rotated = match found.rotated_away {
                        Some((before, at)) => format!(
                            "\"rotated_away_through_seq\": {before}, \"rotated_away_at\": {at}"
                        ),
                        None => "\"rotated_away_through_seq\": 0".to_string(),
                    };
                    println!(
                        "{{\"ok\": true, \"entries\": {}, \"head_seq\": {}, \"head\": \"{}\", \"segments\": {}, \"checkpoints_checked\": {}, {rotated}, {macs}}}",
                        report.entries,
                        report.head_seq,
                        hex::encode(report.head_hash),
                        found.segments,
                        found.checkpoints_checked,
                    );
                    Ok(ExitCode::SUCCESS)
                }
                Err(failure) => {
                    eprintln!("vigil-signer: audit chain BROKEN: {failure}");
                    Ok(ExitCode::from(2))
                }
            }
        }
        Command::Import {
            dir,
            state: StateDir { path: state_dir },
            staging: StagingDir { path: staging_dir },
            replace,
            insecure_allow_dev_kdf,
        } => {
            let options = import::StageOptions {
                replace,
                insecure_allow_dev_kdf,
            };
            let staged = import::stage(&dir, &staging_dir, &state_dir, options)?;
            println!("{}", serde_json::to_string_pretty(&staged)?);
            eprintln!(
                "vigil-signer: the stick checks out and is STAGED, not installed. Compare the manifest digest and every \
                 fingerprint above with the ceremony's printout, then confirm with a code from the NEW authenticator entry \
                 (and, to replace keys, one from the CURRENT entry); a first install is confirmed at this console \
                 with `vigil-signer import-confirm`."
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::ImportStatus {
            staging: StagingDir { path: staging_dir },
        } => {
            println!(
                "{}",
                serde_json::to_string_pretty(&import::status(&staging_dir)?)?
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::ImportConfirm {
            state: StateDir { path: state_dir },
            staging: StagingDir { path: staging_dir },
            manifest_digest,
            code,
            current_code,
            passphrase_file,
        } => {
            let installed = import::console::confirm(&import::console::ConsoleConfirm {
                state_dir,
                staging_dir,
                passphrase_file,
                manifest_digest,
                code,
                current_code,
            })?;
            println!(
                "{}",
                serde_json::json!({
                    "imported": true,
                    "manifest_digest": installed.manifest_digest,
                    "policy_digest": installed.policy_digest,
                    "record": installed.record,
                    "ledger_seq": installed.confirmed_seq,
                })
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::ImportDiscard {
            staging: StagingDir { path: staging_dir },
            manifest_digest,
        } => {
            import::discard(&staging_dir, &manifest_digest)?;
            println!("{}", serde_json::json!({"discarded": true}));
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// A time limit in seconds, at most `MAX_TTL_SECS` (one day).
fn ttl_secs(s: &str) -> Result<u64, String> {
    let secs: u64 = s
        .parse()
        .map_err(|e| format!("{s:?} is not a number of seconds: {e}"))?;
    if secs > vigil_signer::MAX_TTL_SECS {
        return Err(format!(
            "{secs} s is more than {} s (one day): a longer time limit could outlast what a journal checkpoint carries",
            vigil_signer::MAX_TTL_SECS
        ));
    }
    Ok(secs)
}

fn parse_user_group(s: &str) -> Result<(String, String), String> {
    match s.split_once(':') {
        Some((u, g)) if !u.is_empty() && !g.is_empty() => Ok((u.to_string(), g.to_string())),
        _ => Err(format!(
            "{s:?} is not USER:GROUP (e.g. vigil-signer:vigil-signer)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_is_consistent() {
        <Cli as clap::CommandFactory>::command().debug_assert();
    }
}
