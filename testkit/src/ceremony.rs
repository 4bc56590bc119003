//! A key ceremony's inputs as an operator prepares them (the ceremony config, the policy to
//! sign, the passphrase file, an empty stick, a fake sysfs with the network interfaces and
//! radios the machine should appear to have), and `vigil-ceremony new` driven over its
//! terminal (a pseudo-terminal: it shows secrets on nothing else) as the operator drives it:
//! approve the policy, read the `otpauth://` URI, type the code. Then the appliance's side as
//! the operator types it: [`import`], [`import_status`], [`confirm_at_console`], [`discard`]
//! (the staged copy beside the state dir, where the dev signer looks for it).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde::Serialize;

use vigil_protocol::OperatorCode;

use crate::host::{SOL, binary};
use crate::operator::Operator;
use crate::policy::{AgentRules, Policy};
use crate::pty::PtyChild;

/// The keystore passphrase of the tests' ceremonies.
pub const PASSPHRASE: &str = "velvet-otter-quarry-lantern-9";

/// The ceremony config file (`ceremony/src/config.rs`): who runs it, which agents on which
/// chains.
#[derive(Clone, Debug, Serialize)]
pub struct CeremonyPlan {
    #[serde(skip_serializing_if = "Option::is_none")]
    operator: Option<String>,
    agents: std::collections::BTreeMap<String, AgentChains>,
}

#[derive(Clone, Debug, Serialize)]
struct AgentChains {
    chains: Vec<String>,
}

impl CeremonyPlan {
    /// Solana keys for each of `agents`, no operator name.
    pub fn solana(agents: &[&str]) -> CeremonyPlan {
        CeremonyPlan {
            operator: None,
            agents: agents
                .iter()
                .map(|a| {
                    (
                        (*a).to_owned(),
                        AgentChains {
                            chains: vec!["solana".into()],
                        },
                    )
                })
                .collect(),
        }
    }

    /// Names the operator on the record.
    pub fn operator(mut self, name: &str) -> CeremonyPlan {
        self.operator = Some(name.to_owned());
        self
    }

    /// The file's text.
    pub fn to_toml(&self) -> String {
        toml::to_string(self).expect("a ceremony plan always serialises")
    }
}

/// The policy the tests' ceremonies sign: Trader may pay `recipients` on devnet, 2 SOL a
/// transfer, 10 SOL a day, the operator above 0.5 SOL, 30 requests a minute.
pub fn ceremony_policy(recipients: &[&str]) -> Policy {
    Policy::new().agent(
        "trader",
        AgentRules::sol(2 * SOL, 10 * SOL, SOL / 2).recipients(recipients),
    )
}

/// The files a ceremony reads, in one directory, and the stick it writes to.
#[derive(Clone, Debug)]
pub struct CeremonyInputs {
    /// `ceremony.toml`.
    pub config: PathBuf,
    /// `policy.toml`.
    pub policy: PathBuf,
    /// `pass` (mode 0600).
    pub passphrase_file: PathBuf,
    /// `stick/`, empty.
    pub stick: PathBuf,
    /// `sys/`: a fake `/sys` (`class/net`, `class/rfkill`): loopback only, no radios
    /// (air-gapped) until changed.
    pub sys: PathBuf,
}

impl CeremonyInputs {
    /// Writes Alice's plan for Trader, [`ceremony_policy`] with no recipients, the passphrase
    /// and an air-gapped machine into `dir`.
    pub fn write(dir: &Path) -> CeremonyInputs {
        let inputs = CeremonyInputs {
            config: dir.join("ceremony.toml"),
            policy: dir.join("policy.toml"),
            passphrase_file: dir.join("pass"),
            stick: dir.join("stick"),
            sys: dir.join("sys"),
        };
        let write = |path: &Path, text: &str| {
            std::fs::write(path, text)
                .unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
        };
        write(
            &inputs.config,
            &CeremonyPlan::solana(&["trader"])
                .operator("alice")
                .to_toml(),
        );
        write(&inputs.policy, &ceremony_policy(&[]).to_toml());
        write(&inputs.passphrase_file, &format!("{PASSPHRASE}\n"));
        std::fs::set_permissions(
            &inputs.passphrase_file,
            std::fs::Permissions::from_mode(0o600),
        )
        .expect("chmod 600 on the passphrase file");
        std::fs::create_dir(&inputs.stick).expect("the stick dir");
        inputs.interfaces(&[("lo", "unknown", "0x9")]);
        inputs
    }

    /// Adds network interfaces `(name, operstate, flags)` to the fake `/sys/class/net`.
    pub fn interfaces(&self, ifaces: &[(&str, &str, &str)]) {
        for (name, state, flags) in ifaces {
            let d = self.sys.join("class/net").join(name);
            std::fs::create_dir_all(&d).expect("an interface dir");
            std::fs::write(d.join("operstate"), format!("{state}\n")).expect("operstate");
            std::fs::write(d.join("flags"), format!("{flags}\n")).expect("flags");
        }
    }

    /// Adds a radio `(id, type, blocked)` to the fake `/sys/class/rfkill`.
    pub fn radio(&self, id: &str, kind: &str, blocked: bool) {
        let d = self.sys.join("class/rfkill").join(id);
        std::fs::create_dir_all(&d).expect("a radio dir");
        let soft = if blocked { "1" } else { "0" };
        for (file, text) in [
            ("type", kind),
            ("name", "phy0"),
            ("soft", soft),
            ("hard", "0"),
        ] {
            std::fs::write(d.join(file), format!("{text}\n")).expect("an rfkill file");
        }
    }

    /// `vigil-ceremony new` on these inputs (test-cost KDF, the fake sysfs), not started.
    pub fn command(&self, bin: &Path) -> Command {
        let mut cmd = Command::new(bin);
        cmd.args(["new", "--insecure-test-kdf"]);
        for (flag, path) in [
            ("--out", &self.stick),
            ("--config", &self.config),
            ("--policy", &self.policy),
            ("--passphrase-file", &self.passphrase_file),
            ("--insecure-test-sysfs", &self.sys),
        ] {
            cmd.arg(flag).arg(path);
        }
        cmd
    }

    /// Runs the ceremony at `bin` to the end on a terminal, as the operator would; the
    /// authenticator it enrolled.
    pub fn run_as_operator(&self, bin: &Path) -> Operator {
        self.run_as_operator_with(bin, &[])
    }

    /// [`run_as_operator`](Self::run_as_operator) with more `new` flags, e.g.
    /// `--keep-policy-key`.
    pub fn run_as_operator_with(&self, bin: &Path, extra: &[&std::ffi::OsStr]) -> Operator {
        let mut cmd = self.command(bin);
        cmd.args(extra);
        let mut terminal = PtyChild::spawn(cmd);
        let (operator, _) = enrol_on(&mut terminal);
        let (status, rest, err) = terminal.finish();
        assert!(status.success(), "ceremony failed: {err}\n{rest}");
        operator
    }
}

/// Approves the policy on `terminal` and enrols an authenticator from the `otpauth://` URI it
/// shows; the authenticator and everything shown up to the URI.
pub fn enrol_on(terminal: &mut PtyChild) -> (Operator, String) {
    terminal.read_until("Type yes to sign");
    terminal.type_line("yes");
    let line = terminal.read_until("otpauth://");
    let at = line.rfind("otpauth://").expect("the URI");
    let operator = Operator::from_uri(line[at..].trim());
    let seen = terminal.everything().to_owned();
    terminal.read_until("Type the 6-digit code");
    terminal.type_line(operator.code().expose_digits());
    (operator, seen)
}

/// Where the dev signer on `state` looks for a staged stick (`import-staged` beside it).
pub fn staging_dir(state: &Path) -> PathBuf {
    vigil_devnet::signer::staging_dir(state)
}

/// `vigil-signer import <stick>` onto the appliance at `state`, test-cost KDF allowed
/// (`--insecure-allow-dev-kdf`: the tests' ceremonies use it), with `extra` flags (e.g.
/// `--replace`).
pub fn import(stick: &Path, state: &Path, extra: &[&str]) -> Output {
    Command::new(binary("vigil-signer"))
        .arg("import")
        .arg(stick)
        .arg("--state-dir")
        .arg(state)
        .arg("--staging-dir")
        .arg(staging_dir(state))
        .arg("--insecure-allow-dev-kdf")
        .args(extra)
        .output()
        .expect("running vigil-signer import")
}

/// `vigil-signer import-status` of the appliance at `state`.
pub fn import_status(state: &Path) -> Output {
    Command::new(binary("vigil-signer"))
        .arg("import-status")
        .arg("--staging-dir")
        .arg(staging_dir(state))
        .output()
        .expect("running vigil-signer import-status")
}

/// `vigil-signer import-confirm` at the appliance's console (the signer stopped): the digest
/// the operator compared, the new ceremony's `code`, the `current` authenticator's code when
/// replacing keys, and the keystore passphrase file.
pub fn confirm_at_console(
    state: &Path,
    digest: &str,
    code: &OperatorCode,
    current: Option<&OperatorCode>,
    passphrase_file: &Path,
) -> Output {
    let mut cmd = Command::new(binary("vigil-signer"));
    cmd.arg("import-confirm")
        .arg("--state-dir")
        .arg(state)
        .arg("--staging-dir")
        .arg(staging_dir(state))
        .args(["--manifest-digest", digest, "--code", code.expose_digits()])
        .arg("--passphrase-file")
        .arg(passphrase_file);
    if let Some(current) = current {
        cmd.args(["--current-code", current.expose_digits()]);
    }
    cmd.output().expect("running vigil-signer import-confirm")
}

/// `vigil-signer import-discard` of the staged copy whose manifest digest is `digest`.
pub fn discard(state: &Path, digest: &str) -> Output {
    Command::new(binary("vigil-signer"))
        .arg("import-discard")
        .arg("--staging-dir")
        .arg(staging_dir(state))
        .args(["--manifest-digest", digest])
        .output()
        .expect("running vigil-signer import-discard")
}
