//! `vigil-ceremony restore` end to end: a real ceremony prints its paper backup on a terminal
//! (a pseudo-terminal), the operator copies it, and `restore` rebuilds a keystore from it that
//! the signer's own `keystore::unlock` opens to the manifest's addresses and policy pin, with a
//! new approval secret enrolled on the restore's terminal. Refused, with nothing written: one
//! share of a 2-of-3 backup (naming how many are needed), a misspelt word (naming it), the
//! words of another ceremony, and a machine that is online.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use secrecy::SecretString;
use vigil_signer::import::manifest::Manifest;
use vigil_testkit::ceremony::{CeremonyInputs, PASSPHRASE, enrol_on};
use vigil_testkit::operator::Operator;
use vigil_testkit::pty::PtyChild;

const BIN: &str = env!("CARGO_BIN_EXE_vigil-ceremony");

/// Runs a ceremony with `--backup <backup>` on a terminal; the paper backup it showed.
fn ceremony_printing(inputs: &CeremonyInputs, backup: &str) -> String {
    let mut cmd = inputs.command(Path::new(BIN));
    cmd.args(["--backup", backup]);
    let mut terminal = PtyChild::spawn(cmd);
    enrol_on(&mut terminal);
    terminal.read_until("PAPER BACKUP");
    let text = terminal.read_until("Press Enter when it is written down");
    terminal.type_line("");
    let (status, rest, err) = terminal.finish();
    assert!(status.success(), "{err}\n{rest}");
    text.replace('\r', "")
}

/// The shares of a printed Shamir backup, each as its lines of hex.
fn shares_of(text: &str) -> Vec<String> {
    text.split("share ")
        .skip(1)
        .map(|block| {
            block
                .lines()
                .skip(1)
                .take_while(|l| !l.trim().is_empty())
                .collect::<Vec<_>>()
                .join("\n")
        })
        .collect()
}

/// The 24 words of each key of a printed BIP39 backup.
fn phrases_of(text: &str) -> Vec<String> {
    text.lines()
        .map(str::trim)
        .filter(|l| l.split_whitespace().count() == 24)
        .map(str::to_owned)
        .collect()
}

/// Writes `text` to a 0600 file `name` in `dir`.
fn private_file(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    path
}

/// `vigil-ceremony restore` on `inputs`' machine and manifest, into `out`, with `args`.
fn restore_command(
    inputs: &CeremonyInputs,
    out: &Path,
    args: &[&str],
    papers: &[PathBuf],
) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.args(["restore", "--insecure-test-kdf"]).args(args);
    cmd.arg("--manifest")
        .arg(inputs.stick.join("manifest.json"));
    cmd.arg("--out").arg(out);
    cmd.arg("--passphrase-file").arg(&inputs.passphrase_file);
    cmd.arg("--insecure-test-sysfs").arg(&inputs.sys);
    for p in papers {
        cmd.arg("--paper-file").arg(p);
    }
    cmd
}

/// Runs a restore expected to be refused (before any terminal is needed); its stderr.
fn refused(cmd: &mut Command, out: &Path) -> String {
    let done = cmd.stdin(Stdio::null()).output().unwrap();
    assert!(!done.status.success());
    assert!(!out.join("keystore").exists(), "nothing written");
    String::from_utf8_lossy(&done.stderr).into_owned()
}

/// Runs a restore to the end on a terminal, enrolling the new approval secret; the new
/// authenticator.
fn restore_on_terminal(cmd: Command) -> (Operator, String) {
    let mut terminal = PtyChild::spawn(cmd);
    let line = terminal.read_until("otpauth://");
    let at = line.rfind("otpauth://").unwrap();
    let operator = Operator::from_uri(line[at..].trim());
    terminal.read_until("Type the 6-digit code");
    terminal.type_line(operator.code().expose_digits());
    let (status, rest, err) = terminal.finish();
    assert!(status.success(), "{err}\n{rest}");
    (operator, rest)
}

/// The restored keystore opens (with the signer's reader) to the manifest's agent addresses
/// and policy pin, and holds the approval secret the new authenticator was enrolled with.
fn assert_restored(inputs: &CeremonyInputs, keystore: &Path, operator: &Operator) {
    let manifest =
        Manifest::parse(&std::fs::read(inputs.stick.join("manifest.json")).unwrap()).unwrap();
    let unlocked =
        vigil_signer::keystore::unlock(keystore, &SecretString::from(PASSPHRASE.to_owned()))
            .unwrap();
    let mut got: Vec<String> = unlocked.agent_public.values().cloned().collect();
    let mut want: Vec<String> = manifest.agents.iter().map(|a| a.address.clone()).collect();
    got.sort();
    want.sort();
    assert!(!want.is_empty());
    assert_eq!(got, want);
    assert_eq!(
        hex::encode(unlocked.policy_public_key),
        manifest.policy_key.public
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(
        vigil_signer::code_matches(&unlocked.approval_secret, &operator.code(), now).unwrap(),
        "the new authenticator's code opens the restored approval secret"
    );
}

#[test]
fn two_of_three_shares_restore_the_keystore_and_one_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let inputs = CeremonyInputs::write(dir.path());
    let printed = ceremony_printing(&inputs, "shamir:2-of-3");
    let shares = shares_of(&printed);
    assert_eq!(shares.len(), 3, "{printed}");
    let files: Vec<PathBuf> = shares
        .iter()
        .enumerate()
        .map(|(i, s)| private_file(dir.path(), &format!("share{}", i + 1), s))
        .collect();
    let out = dir.path().join("restored");
    std::fs::create_dir(&out).unwrap();

    // One share says nothing about the keys: refused, naming how many are needed.
    let err = refused(
        &mut restore_command(
            &inputs,
            &out,
            &["--from", "shamir", "--threshold", "2"],
            &files[..1],
        ),
        &out,
    );
    assert!(
        err.contains("1 share(s) given, this backup needs 2"),
        "{err}"
    );
    // Without the threshold: refused, saying where to read it.
    let err = refused(
        &mut restore_command(&inputs, &out, &["--from", "shamir"], &files[..2]),
        &out,
    );
    assert!(err.contains("--threshold K"), "{err}");

    // Shares 1 and 3, as the operator copied them.
    let cmd = restore_command(
        &inputs,
        &out,
        &["--from", "shamir", "--threshold", "2"],
        &[files[0].clone(), files[2].clone()],
    );
    let (operator, rest) = restore_on_terminal(cmd);
    assert!(
        rest.contains("every address matches the manifest"),
        "{rest}"
    );
    assert_restored(&inputs, &out.join("keystore"), &operator);

    // A second restore into the same place is refused: it never overwrites a keystore.
    let err = refused(
        &mut restore_command(
            &inputs,
            &out,
            &["--from", "shamir", "--threshold", "2"],
            &files[1..],
        ),
        &out.join("elsewhere"),
    );
    assert!(err.contains("already holds keystore"), "{err}");
}

#[test]
fn bip39_words_restore_and_a_wrong_word_or_another_ceremony_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let inputs = CeremonyInputs::write(dir.path());
    let printed = ceremony_printing(&inputs, "bip39");
    let phrases = phrases_of(&printed);
    assert_eq!(phrases.len(), 1, "{printed}");
    let out = dir.path().join("restored");
    std::fs::create_dir(&out).unwrap();

    // Word 5 misspelt: refused, naming it.
    let mut words: Vec<&str> = phrases[0].split_whitespace().collect();
    words[4] = "zebraa";
    let typo = private_file(dir.path(), "typo", &words.join(" "));
    let err = refused(
        &mut restore_command(&inputs, &out, &["--from", "bip39"], &[typo]),
        &out,
    );
    assert!(
        err.contains("word 5 (\"zebraa\") is not a BIP39 word"),
        "{err}"
    );

    // The words of another ceremony's key do not give this manifest's key.
    let other_dir = tempfile::tempdir().unwrap();
    let other = CeremonyInputs::write(other_dir.path());
    let other_words = phrases_of(&ceremony_printing(&other, "bip39"));
    let foreign = private_file(dir.path(), "foreign", &other_words[0]);
    let err = refused(
        &mut restore_command(&inputs, &out, &["--from", "bip39"], &[foreign]),
        &out,
    );
    assert!(
        err.contains("no seed of the paper backup gives the solana:devnet key of agent trader"),
        "{err}"
    );

    let good = private_file(dir.path(), "words", &phrases[0]);
    let (operator, _) = restore_on_terminal(restore_command(
        &inputs,
        &out,
        &["--from", "bip39"],
        &[good],
    ));
    assert_restored(&inputs, &out.join("keystore"), &operator);
}

#[test]
fn restore_refuses_to_run_online() {
    let dir = tempfile::tempdir().unwrap();
    let inputs = CeremonyInputs::write(dir.path());
    inputs.interfaces(&[("eth0", "up", "0x1003")]);
    let out = dir.path().join("restored");
    std::fs::create_dir(&out).unwrap();
    let err = refused(
        &mut restore_command(&inputs, &out, &["--from", "bip39"], &[]),
        &out,
    );
    assert!(
        err.contains("eth0 (up, up)") && err.contains("--i-know-this-is-online"),
        "{err}"
    );
}
