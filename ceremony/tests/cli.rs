//! The `vigil-ceremony` binary end to end, as an operator drives it on a terminal (a
//! pseudo-terminal): the air-gap refusals, a full `new` (policy approved, the code computed
//! from the URI the ceremony showed, the screen and scrollback cleared right after), the
//! record it prints matching the manifest on the stick, and the refusal to show any secret
//! when its output is a pipe or a file.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::Stdio;

use vigil_testkit::ceremony::{CeremonyInputs, enrol_on};
use vigil_testkit::pty::PtyChild;

const BIN: &str = env!("CARGO_BIN_EXE_vigil-ceremony");
/// Clear the screen, then its scrollback (what the ceremony sends after enrolment).
const CLEAR: &str = "\x1b[2J\x1b[3J";

/// Runs the ceremony on `inputs` with stdin closed and stdout piped; (success, stdout, stderr).
fn run_piped(inputs: &CeremonyInputs) -> (bool, String, String) {
    let out = inputs
        .command(Path::new(BIN))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn refuses_to_run_online_and_writes_nothing() {
    // (interface, radio, what the refusal names): each alone makes the machine online.
    type Interface<'a> = (&'a str, &'a str, &'a str);
    type Case<'a> = (Option<Interface<'a>>, Option<(&'a str, &'a str)>, &'a str);
    let cases: &[Case<'_>] = &[
        (Some(("eth0", "up", "0x1003")), None, "eth0 (up, up)"),
        // Wi-Fi on but not associated: up without a carrier is online (issue 15, finding 9).
        (Some(("wlan0", "down", "0x1003")), None, "wlan0 (up, down)"),
        (
            Some(("wlan0", "dormant", "0x1003")),
            None,
            "wlan0 (up, dormant)",
        ),
        // A radio rfkill does not block.
        (
            None,
            Some(("rfkill0", "wlan")),
            "wlan radio phy0 (rfkill0, not blocked)",
        ),
    ];
    for (iface, radio, named) in cases {
        let dir = tempfile::tempdir().unwrap();
        let inputs = CeremonyInputs::write(dir.path());
        if let Some(i) = iface {
            inputs.interfaces(&[*i]);
        }
        if let Some((id, kind)) = radio {
            inputs.radio(id, kind, false);
        }
        let (ok, _, err) = run_piped(&inputs);
        assert!(!ok);
        assert!(
            err.contains(named) && err.contains("--i-know-this-is-online"),
            "{named}: {err}"
        );
        assert_eq!(std::fs::read_dir(&inputs.stick).unwrap().count(), 0);
    }
}

/// Issue 15, finding 3: with its output going to a pipe or a file, the ceremony shows no
/// secret (no QR code, no URI, no backup) and makes nothing. (The old one wrote the
/// `otpauth://…secret=` URI into the pipe.)
#[test]
fn no_secret_is_shown_to_a_pipe_or_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let inputs = CeremonyInputs::write(dir.path());
    let (ok, out, err) = run_piped(&inputs);
    assert!(!ok, "{out}");
    assert!(err.contains("not a terminal"), "{err}");
    for secret in ["otpauth", "secret=", "█"] {
        assert!(!out.contains(secret) && !err.contains(secret), "{out}{err}");
    }
    assert_eq!(std::fs::read_dir(&inputs.stick).unwrap().count(), 0);

    let file = dir.path().join("screen.txt");
    let status = inputs
        .command(Path::new(BIN))
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&file).unwrap())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(!status.success());
    let kept = std::fs::read_to_string(&file).unwrap();
    assert!(
        !kept.contains("otpauth") && !kept.contains("secret="),
        "{kept}"
    );
    assert_eq!(std::fs::read_dir(&inputs.stick).unwrap().count(), 0);
}

#[test]
fn an_operator_runs_the_ceremony_over_the_terminal() {
    let dir = tempfile::tempdir().unwrap();
    let inputs = CeremonyInputs::write(dir.path());
    inputs.interfaces(&[("eth0", "down", "0x1002")]);
    inputs.radio("rfkill0", "wlan", true);
    let mut terminal = PtyChild::spawn(inputs.command(Path::new(BIN)));
    let (_, seen) = enrol_on(&mut terminal);
    assert!(
        seen.contains("agent trader"),
        "the policy was shown: {seen}"
    );
    assert!(seen.contains('█'), "a QR code was drawn");
    assert!(seen.contains("never photograph it"), "{seen}");
    assert!(!seen.contains(CLEAR), "nothing cleared before the code");
    // Issue 15, finding 3: the screen and its scrollback are cleared right after the code,
    // before anything else is shown. (The old ceremony never cleared them without a backup.)
    let enrolled = terminal.read_until("The authenticator is enrolled");
    assert!(enrolled.contains(CLEAR), "{enrolled:?}");
    let (status, rest, err) = terminal.finish();
    assert!(status.success(), "{err}\n{rest}");
    assert!(
        err.contains("[1/4] deriving the keystore's master key")
            && err.contains("[2/4] encrypting the solana:devnet key of agent trader"),
        "progress shown: {err}"
    );
    assert_eq!(
        terminal_uris(&seen) + terminal_uris(&enrolled) + terminal_uris(&rest),
        1,
        "the secret was shown once: {seen}{enrolled}{rest}"
    );

    let stick = &inputs.stick;
    let manifest_bytes = std::fs::read(stick.join("manifest.json")).unwrap();
    let m: serde_json::Value = serde_json::from_slice(&manifest_bytes).unwrap();
    let digest = vigil_signer::import::manifest::sha256_hex(&manifest_bytes);
    let grouped = vigil_signer::import::manifest::group(&digest);
    assert!(
        rest.contains(&format!("manifest digest: {grouped}")),
        "{rest}"
    );
    let fp = m["agents"][0]["fingerprint"].as_str().unwrap();
    assert!(rest.contains(fp), "{rest}");
    assert_eq!(m["online_override"], false);
    assert!(!stick.join("policy-key").exists());
    vigil_signer::import::verify(stick).unwrap();
}

/// With `--backup bip39` the words are shown on the terminal, and cleared (scrollback too)
/// once the operator presses Enter.
#[test]
fn the_paper_backup_is_cleared_after_it_is_written_down() {
    let dir = tempfile::tempdir().unwrap();
    let inputs = CeremonyInputs::write(dir.path());
    let mut cmd = inputs.command(Path::new(BIN));
    cmd.args(["--backup", "bip39"]);
    let mut terminal = PtyChild::spawn(cmd);
    enrol_on(&mut terminal);
    let backup = terminal.read_until("Press Enter when it is written down");
    assert!(backup.contains("PAPER BACKUP"), "{backup}");
    assert!(backup.contains("never photograph"), "{backup}");
    terminal.type_line("");
    let (status, rest, err) = terminal.finish();
    assert!(status.success(), "{err}\n{rest}");
    assert!(rest.contains(CLEAR), "{rest:?}");
}

/// How many `otpauth://` URIs `text` holds.
fn terminal_uris(text: &str) -> usize {
    text.matches("otpauth://").count()
}
