//! The `vigil-ceremony` command: `new` (the key ceremony), `restore` (a keystore rebuilt from
//! the paper backup) and `policy sign` (a new policy signed with a kept policy key). The terminal side lives here: prompts, the QR code, the
//! progress indicator while scrypt runs, and the paper backup, which is printed and never
//! written. Guide: `docs/key-ceremony.md`.
//!
//! Secrets (the approval secret's QR code and URI, the paper backup) go to a terminal only:
//! `new` refuses to start when standard output is a pipe or a file, where they would be
//! kept. Each leaves the screen, scrollback included, as soon as it has served (the QR code
//! right after enrolment, the backup when the operator has written it down).

#![forbid(unsafe_code)]

use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use secrecy::SecretString;
use vigil_ceremony::backup::Backup;
use vigil_ceremony::config::CeremonyConfig;
use vigil_ceremony::network::AirGap;
use vigil_ceremony::new::{self, NewCeremony, Operator};
use vigil_ceremony::{CeremonyError, output, passphrase, policy_sign, restore};
use vigil_signer::import::manifest;
use vigil_signer::keystore::KdfParams;
use zeroize::Zeroizing;

/// The Vigil key ceremony: run it on an air-gapped machine booted from the ceremony image.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Make agent keys, the policy key and the approval secret; write them to the stick.
    New {
        /// The mounted stick's directory (must not hold an earlier ceremony).
        #[arg(long)]
        out: PathBuf,
        /// The ceremony config: agents and their chains (ceremony.toml).
        #[arg(long)]
        config: PathBuf,
        /// The policy to sign (policy.toml, format in docs/policy.md).
        #[arg(long)]
        policy: PathBuf,
        /// Also write the policy signing key, encrypted, to the stick (for later `policy sign`).
        #[arg(long)]
        keep_policy_key: bool,
        /// Sign with the policy key kept on this earlier ceremony stick (its policy-key/,
        /// decrypted with the same passphrase) instead of a new one: the appliance that pins
        /// it accepts the new keys without the current authenticator's code.
        #[arg(long)]
        policy_key_from: Option<PathBuf>,
        /// Run even though a network interface is up (recorded in the manifest).
        #[arg(long)]
        i_know_this_is_online: bool,
        /// Paper backup of the agent keys: none, bip39, or shamir:K-of-N (printed, never written).
        #[arg(long, default_value = "none")]
        backup: Backup,
        /// FOR TESTS AND AUTOMATION ONLY: read the passphrase from this 0600 file, not the terminal.
        #[arg(long)]
        passphrase_file: Option<PathBuf>,
        /// INSECURE, TESTS ONLY: cheap scrypt parameters (log_n=10). Never for real keys.
        #[arg(long, hide = true)]
        insecure_test_kdf: bool,
        /// INSECURE, TESTS ONLY: read the network's state from this directory's `class/net` and
        /// `class/rfkill` instead of /sys. Exists only in test builds (feature
        /// `insecure-test-hooks`), never in the shipped binary.
        #[cfg(feature = "insecure-test-hooks")]
        #[arg(long, hide = true)]
        insecure_test_sysfs: Option<PathBuf>,
    },
    /// Rebuild a keystore from the paper backup (Shamir shares or BIP39 words), offline.
    Restore {
        /// What the ceremony printed (its `--backup`): shamir or bip39.
        #[arg(long)]
        from: PaperKind,
        /// The ceremony's manifest.json (public: the stick's, or the copy kept with the papers).
        #[arg(long)]
        manifest: PathBuf,
        /// The directory that receives keystore/ (must not hold one).
        #[arg(long)]
        out: PathBuf,
        /// Shamir: how many shares the backup needs (its first line: "any K of N").
        #[arg(long)]
        threshold: Option<u8>,
        /// FOR TESTS AND AUTOMATION ONLY: a share (shamir) or one key's 24 words (bip39) from
        /// this 0600 file instead of the terminal; repeat for each.
        #[arg(long = "paper-file")]
        paper_files: Vec<PathBuf>,
        /// Run even though a network interface is up.
        #[arg(long)]
        i_know_this_is_online: bool,
        /// FOR TESTS AND AUTOMATION ONLY: the new keystore passphrase from this 0600 file.
        #[arg(long)]
        passphrase_file: Option<PathBuf>,
        /// INSECURE, TESTS ONLY: cheap scrypt parameters (log_n=10). Never for real keys.
        #[arg(long, hide = true)]
        insecure_test_kdf: bool,
        /// INSECURE, TESTS ONLY: the network's state from this directory (as for `new`).
        #[cfg(feature = "insecure-test-hooks")]
        #[arg(long, hide = true)]
        insecure_test_sysfs: Option<PathBuf>,
    },
    /// Policy changes with a kept policy key.
    Policy {
        #[command(subcommand)]
        command: PolicyCommand,
    },
}

#[derive(Debug, Subcommand)]
enum PolicyCommand {
    /// Sign a new policy with the policy key kept on a ceremony stick.
    Sign {
        /// The mounted ceremony stick (holding policy-key/ and manifest.json).
        #[arg(long)]
        key_dir: PathBuf,
        /// The new policy TOML.
        #[arg(long)]
        policy: PathBuf,
        /// FOR TESTS AND AUTOMATION ONLY: read the passphrase from this 0600 file.
        #[arg(long)]
        passphrase_file: Option<PathBuf>,
    },
}

/// Which paper backup `restore` reads.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum PaperKind {
    /// Shamir shares (`--backup shamir:K-of-N`).
    Shamir,
    /// 24 BIP39 words per key (`--backup bip39`).
    Bip39,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vigil-ceremony: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::New {
            out,
            config,
            policy,
            keep_policy_key,
            policy_key_from,
            i_know_this_is_online,
            backup,
            passphrase_file,
            insecure_test_kdf,
            #[cfg(feature = "insecure-test-hooks")]
            insecure_test_sysfs,
        } => {
            // The air-gap check comes first: nothing secret exists yet. The ceremony checks
            // again before the keys are made and before anything is written.
            let air_gap = AirGap::new(i_know_this_is_online);
            #[cfg(feature = "insecure-test-hooks")]
            let air_gap = match insecure_test_sysfs {
                Some(sys) => {
                    eprintln!(
                        "WARNING: --insecure-test-sysfs: the network is read from {}, for tests only.",
                        sys.display()
                    );
                    AirGap::insecure_test_reading(&sys, i_know_this_is_online)
                }
                None => air_gap,
            };
            let up = air_gap.check()?;
            if !up.is_empty() {
                eprintln!(
                    "WARNING: running ONLINE ({}): recorded in the manifest.",
                    up.join(", ")
                );
            }
            // Secrets are shown on a terminal only, never into a pipe or a file.
            if !std::io::stdout().is_terminal() {
                return Err(not_a_terminal().into());
            }
            let config = CeremonyConfig::load(&config)?;
            let policy_bytes = output::read_bounded(&policy, vigil_signer::policy::MAX_POLICY_LEN)?;
            let context = context_words(&config);
            let context: Vec<&str> = context.iter().map(String::as_str).collect();
            let pass = read_passphrase(passphrase_file.as_deref(), &context)?;
            let (kdf, weak) = if insecure_test_kdf {
                eprintln!("WARNING: --insecure-test-kdf: cheap scrypt parameters, for tests only.");
                (KdfParams::INSECURE_DEV, true)
            } else {
                (KdfParams::PRODUCTION, false)
            };
            let reuse_policy_key = match &policy_key_from {
                Some(dir) => Some(policy_sign::kept_policy_seed(dir, &pass)?),
                None => None,
            };
            let ceremony = NewCeremony {
                out,
                config,
                policy_bytes,
                keep_policy_key,
                air_gap,
                kdf,
                insecure_weak_kdf: weak,
                backup,
                reuse_policy_key,
            };
            let mut op = Terminal::default();
            let outcome = new::run(&ceremony, &pass, &mut op)?;
            drop(pass);
            print_record(&outcome);
            if !outcome.backup.is_empty() {
                op.paper_backup(&outcome.backup);
            }
            Ok(())
        }
        Command::Restore {
            from,
            manifest,
            out,
            threshold,
            paper_files,
            i_know_this_is_online,
            passphrase_file,
            insecure_test_kdf,
            #[cfg(feature = "insecure-test-hooks")]
            insecure_test_sysfs,
        } => {
            let air_gap = AirGap::new(i_know_this_is_online);
            #[cfg(feature = "insecure-test-hooks")]
            let air_gap = match insecure_test_sysfs {
                Some(sys) => AirGap::insecure_test_reading(&sys, i_know_this_is_online),
                None => air_gap,
            };
            air_gap.check()?;
            restore::check_out(&out)?;
            let bytes = output::read_bounded(&manifest, vigil_signer::policy::MAX_POLICY_LEN)?;
            let (m, digest) = restore::read_manifest(&bytes)?;
            println!(
                "Manifest digest {}, policy key {}: compare them with the ceremony record.",
                manifest::group(&digest),
                m.policy_key.fingerprint
            );
            let paper = read_paper(from, threshold, &paper_files, &m)?;
            let keys = restore::rebuild(&m, &paper)?;
            drop(paper);
            println!(
                "The paper backup gives every key of the manifest ({}).",
                keys.len()
            );
            let mut context: Vec<String> = vec!["vigil".to_owned()];
            context.extend(keys.iter().map(|k| k.info.agent.to_string()));
            let context: Vec<&str> = context.iter().map(String::as_str).collect();
            let pass = read_passphrase(passphrase_file.as_deref(), &context)?;
            if !std::io::stdout().is_terminal() {
                return Err(not_a_terminal().into());
            }
            let (kdf, weak) = if insecure_test_kdf {
                eprintln!("WARNING: --insecure-test-kdf: cheap scrypt parameters, for tests only.");
                (KdfParams::INSECURE_DEV, true)
            } else {
                (KdfParams::PRODUCTION, false)
            };
            let job = restore::Restore {
                out,
                manifest: m,
                air_gap,
                kdf,
                insecure_weak_kdf: weak,
            };
            let dir = restore::run(&job, &keys, &pass, &mut Terminal::default())?;
            println!(
                "Keystore restored to {}: every address matches the manifest. Install it as docs/key-ceremony.md (Restore) says.",
                dir.display()
            );
            Ok(())
        }
        Command::Policy {
            command:
                PolicyCommand::Sign {
                    key_dir,
                    policy,
                    passphrase_file,
                },
        } => {
            let bytes = output::read_bounded(&policy, vigil_signer::policy::MAX_POLICY_LEN)
                .with_context(|| format!("reading {}", policy.display()))?;
            let pass = match passphrase_file {
                Some(p) => vigil_signer::keystore::read_passphrase_from(Some(&p), None)?,
                None => SecretString::from(rpassword::prompt_password("Keystore passphrase: ")?),
            };
            let dir = policy_sign::sign(&key_dir, &bytes, &pass, &mut Terminal::default())?;
            println!(
                "Signed policy written to {}. Install it on the appliance as described in docs/key-ceremony.md.",
                dir.display()
            );
            Ok(())
        }
    }
}

/// Why `new` does not run with its output redirected.
fn not_a_terminal() -> CeremonyError {
    CeremonyError::Aborted(
        "standard output is not a terminal: the ceremony shows the approval secret (and the paper \
         backup) on the screen only, never into a pipe or a file where they would be kept. Run it on \
         the ceremony machine's console, without `>`, `|` or `tee`; nothing was made"
            .into(),
    )
}

/// Clears the screen and its scrollback (`ESC [3J`, which the Linux console and xterm-like
/// terminals honour), and homes the cursor.
fn clear_screen() {
    print!("\x1b[H\x1b[2J\x1b[3J");
    let _ = std::io::stdout().flush();
}

/// The paper backup: from the files given (tests), else typed without echo: `threshold`
/// shares, or the words of each key of the manifest.
fn read_paper(
    from: PaperKind,
    threshold: Option<u8>,
    files: &[PathBuf],
    m: &manifest::Manifest,
) -> Result<restore::PaperBackup, CeremonyError> {
    let from_file = |path: &PathBuf| -> Result<Zeroizing<String>, CeremonyError> {
        vigil_signer::keystore::check_private_file(path)?;
        let bytes = Zeroizing::new(output::read_bounded(path, 64 * 1024)?);
        std::str::from_utf8(&bytes)
            .map(|s| Zeroizing::new(s.to_owned()))
            .map_err(|_| CeremonyError::Other(format!("{} is not text", path.display())))
    };
    let typed = |prompt: &str| -> Result<Zeroizing<String>, CeremonyError> {
        rpassword::prompt_password(prompt)
            .map(Zeroizing::new)
            .map_err(|e| CeremonyError::Other(format!("cannot read from the terminal: {e}")))
    };
    match from {
        PaperKind::Shamir => {
            let threshold = threshold.ok_or_else(|| {
                CeremonyError::Other(
                    "--from shamir needs --threshold K: the K of \"any K of N\" printed at the top of the backup".into(),
                )
            })?;
            let shares = if files.is_empty() {
                println!(
                    "Type each share as written on its paper (not shown; spaces and line breaks do not matter)."
                );
                (1..=threshold)
                    .map(|i| typed(&format!("Share {i} of the {threshold} needed: ")))
                    .collect::<Result<_, _>>()?
            } else {
                files.iter().map(from_file).collect::<Result<_, _>>()?
            };
            Ok(restore::PaperBackup::Shamir { threshold, shares })
        }
        PaperKind::Bip39 => {
            let phrases = if files.is_empty() {
                println!("Type the 24 words of each key as written on the paper (not shown).");
                m.agents
                    .iter()
                    .map(|a| {
                        typed(&format!(
                            "Words of agent {} ({} {}): ",
                            a.agent, a.chain, a.address
                        ))
                    })
                    .collect::<Result<_, _>>()?
            } else {
                files.iter().map(from_file).collect::<Result<_, _>>()?
            };
            Ok(restore::PaperBackup::Bip39 { phrases })
        }
    }
}

/// Words an attacker tries first: the operator's and the agents' names.
fn context_words(config: &CeremonyConfig) -> Vec<String> {
    let mut words = vec![config.operator.clone(), "vigil".to_owned()];
    words.extend(config.agents.keys().map(|a| a.to_string()));
    words
}

fn read_passphrase(file: Option<&Path>, context: &[&str]) -> Result<SecretString, CeremonyError> {
    match file {
        Some(path) => passphrase::from_file(path, context),
        None => {
            println!(
                "Choose the keystore passphrase: at least {} characters, e.g. six random words. It is asked twice and not shown.",
                passphrase::MIN_CHARS
            );
            passphrase::prompt_twice(context)
        }
    }
}

/// What the operator writes down or prints: the manifest digest and every fingerprint.
fn print_record(outcome: &new::Outcome) {
    let m = &outcome.manifest;
    println!(
        "\n=== Ceremony record: compare this on the appliance before confirming the import ==="
    );
    println!(
        "manifest digest: {}",
        manifest::group(&outcome.manifest_digest)
    );
    println!("policy key:      {}", m.policy_key.fingerprint);
    println!("policy digest:   {}", manifest::group(&m.policy_digest));
    for a in &m.agents {
        let network = a
            .network
            .map_or_else(|| a.chain.to_string(), |n| format!("{}:{n}", a.chain));
        println!(
            "agent {:<16} {network} {}  fingerprint {}",
            a.agent, a.address, a.fingerprint
        );
    }
    if m.online_override {
        println!("!! made ONLINE: {}", m.online_interfaces.join(", "));
    }
    println!(
        "The stick holds the ENCRYPTED keystore, the signed policy and this manifest{}.",
        if m.policy_key_kept {
            ", and the encrypted policy key"
        } else {
            ""
        }
    );
}

/// The terminal: stdout for what the operator reads, stdin for answers, a spinner on stderr.
#[derive(Default)]
struct Terminal {
    spinner: Option<Spinner>,
}

impl Terminal {
    fn line(&mut self, prompt: &str) -> Result<String, CeremonyError> {
        print!("{prompt}");
        let _ = std::io::stdout().flush();
        let mut answer = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut answer)
            .map_err(|e| CeremonyError::Other(format!("cannot read the answer: {e}")))?;
        Ok(answer.trim().to_owned())
    }

    fn paper_backup(&mut self, text: &str) {
        if !std::io::stdout().is_terminal() {
            eprintln!(
                "vigil-ceremony: the paper backup is not shown: {}",
                not_a_terminal()
            );
            return;
        }
        println!(
            "\n=== PAPER BACKUP of the agent keys: write it down by hand, never photograph it; it is not stored anywhere ===\n"
        );
        println!("{text}");
        // Cleared once the operator is done, or when the answer cannot be read.
        let _ = self.line("Press Enter when it is written down, to clear the screen: ");
        clear_screen();
    }
}

impl Operator for Terminal {
    fn show(&mut self, text: &str) {
        println!("{text}");
    }

    fn approve_policy(&mut self, summary: &str) -> Result<bool, CeremonyError> {
        println!("{summary}");
        Ok(self.line("Sign this policy? Type yes to sign: ")? == "yes")
    }

    fn enrol(&mut self, uri: &str, qr: &str, attempt: u32) -> Result<String, CeremonyError> {
        if !std::io::stdout().is_terminal() {
            return Err(not_a_terminal());
        }
        if attempt == 1 {
            println!(
                "\nScan this QR code with your authenticator app (it is the operator approval secret; \
                 scan it, never photograph it: a photo leaves this machine through the phone's sync):\n"
            );
            println!("{qr}");
            println!("If you cannot scan it, type this URI in by hand: {uri}\n");
        }
        self.line("Type the 6-digit code the app shows now: ")
    }

    fn forget_secret(&mut self) {
        clear_screen();
    }

    fn progress(&mut self, step: usize, total: usize, what: &str) {
        if let Some(s) = self.spinner.take() {
            s.stop();
        }
        self.spinner = Some(Spinner::start(format!("[{step}/{total}] {what}")));
    }

    fn progress_done(&mut self) {
        if let Some(s) = self.spinner.take() {
            s.stop();
        }
    }

    fn now(&self) -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0)
    }
}

/// A line on stderr that ticks while scrypt runs.
struct Spinner {
    stop: Arc<AtomicBool>,
    handle: JoinHandle<()>,
}

impl Spinner {
    fn start(label: String) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let handle = std::thread::spawn(move || {
            let started = Instant::now();
            let frames = ['|', '/', '-', '\\'];
            let mut i = 0;
            while !flag.load(Ordering::Relaxed) {
                eprint!(
                    "\r{label} {} {:.1}s ",
                    frames[i % frames.len()],
                    started.elapsed().as_secs_f32()
                );
                i += 1;
                std::thread::sleep(Duration::from_millis(100));
            }
            eprintln!(
                "\r{label} done ({:.1}s)   ",
                started.elapsed().as_secs_f32()
            );
        });
        Self { stop, handle }
    }

    fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.handle.join();
    }
}
