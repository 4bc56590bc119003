//! The key ceremony's USB stick, end to end, on real FAT32 images (`mkfs.vfat`, read and
//! written with `mtools`, no mount): a ceremony's output is written onto an image, copied
//! off it on the "appliance", imported, confirmed with the new authenticator's code, and a
//! real confined signer then signs for the imported agents. Bad sticks (tampered manifest,
//! swapped keystore file, policy signed by another key, truncated file, empty stick) are
//! each refused with their own message and the appliance's state dir stays byte-identical.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::*;
use secrecy::SecretString;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use totp_rs::TOTP;
use vigil_ceremony::CeremonyError;
use vigil_ceremony::backup::Backup;
use vigil_ceremony::config::CeremonyConfig;
use vigil_ceremony::new::{NewCeremony, Operator, Outcome, run};
use vigil_protocol::Network;
use vigil_signer::Ed25519Key;
use vigil_signer::import::manifest::{self, FileInfo, Manifest};
use vigil_signer::keystore::{self, KdfParams};
use vigil_signer::policy;

const PASS: &str = "velvet-otter-quarry-lantern-9";

/// A recipient the test policy allows.
fn recipient() -> String {
    bs58::encode([9u8; 32]).into_string()
}

fn policy_text() -> String {
    format!(
        "version = 1\n[agents.trader]\nactions = [\"transfer\"]\nnetworks = [\"solana:devnet\"]\nrecipients = [\"{}\"]\nrate_limit_per_minute = 30\n[agents.trader.assets.SOL]\nchain = \"solana\"\nper_tx_cap = \"2000000000\"\nvelocity_24h = \"10000000000\"\napproval_threshold = \"500000000\"\n",
        recipient()
    )
}

/// The operator at the ceremony: approves the policy and types the authenticator's code.
struct Operator1 {
    uri: Option<String>,
}

impl Operator for Operator1 {
    fn show(&mut self, _: &str) {}
    fn approve_policy(&mut self, _: &str) -> Result<bool, CeremonyError> {
        Ok(true)
    }
    fn enrol(&mut self, uri: &str, _: &str, _: u32) -> Result<String, CeremonyError> {
        self.uri = Some(uri.to_owned());
        Ok(TOTP::from_url(uri).unwrap().generate(now()))
    }
    fn progress(&mut self, _: usize, _: usize, _: &str) {}
    fn progress_done(&mut self) {}
    fn now(&self) -> u64 {
        now()
    }
}

/// Runs a ceremony into `<dir>/made` (the ceremony machine's view of the stick).
fn ceremony(dir: &Path) -> (PathBuf, Outcome, String) {
    let made = dir.join("made");
    std::fs::create_dir_all(&made).unwrap();
    let c = NewCeremony {
        out: made.clone(),
        config: CeremonyConfig::parse(
            "[agents.trader]\nchains = [\"solana\"]\n[agents.sentinel]\nchains = [\"solana\"]\n",
        )
        .unwrap(),
        policy_bytes: policy_text().into_bytes(),
        keep_policy_key: true,
        online_interfaces: vec![],
        online_override: false,
        kdf: KdfParams::INSECURE_DEV,
        insecure_weak_kdf: true,
        backup: Backup::None,
    };
    let mut op = Operator1 { uri: None };
    let outcome = run(&c, &SecretString::from(PASS.to_owned()), &mut op).unwrap();
    (made, outcome, op.uri.unwrap())
}

/// A FAT32 image standing in for the USB stick.
struct Stick {
    img: PathBuf,
}

/// A system tool by name (PATH, then /usr/sbin and /sbin, where mkfs.vfat lives); a
/// missing one FAILS the test with what to do.
fn tool(name: &str) -> Command {
    let dirs = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default();
    let found = dirs
        .into_iter()
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
        .map(|d| d.join(name))
        .find(|p| p.is_file());
    let Some(path) = found else {
        panic!(
            "{name} is missing: these tests need real FAT images; install dosfstools and mtools (tests/run does: run tests/run)"
        );
    };
    let mut cmd = Command::new(path);
    cmd.env("MTOOLS_SKIP_CHECK", "1");
    cmd
}

fn check(out: Output, what: &str) -> Output {
    assert!(
        out.status.success(),
        "{what}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

impl Stick {
    /// A freshly formatted FAT32 image labelled VIGIL-KEYS.
    fn blank(dir: &Path, name: &str) -> Stick {
        let img = dir.join(name);
        check(
            tool("mkfs.vfat")
                .args(["-F", "32", "-n", "VIGIL-KEYS", "-C"])
                .arg(&img)
                .arg("34000")
                .output()
                .unwrap(),
            "mkfs.vfat",
        );
        Stick { img }
    }

    /// Copies the tree under `src` onto the stick's root.
    fn write_tree(&self, src: &Path) {
        let mut cmd = tool("mcopy");
        cmd.arg("-i").arg(&self.img).args(["-s", "-Q"]);
        for e in std::fs::read_dir(src).unwrap() {
            cmd.arg(e.unwrap().path());
        }
        check(cmd.arg("::/").output().unwrap(), "mcopy onto the stick");
    }

    /// Overwrites one file on the stick.
    fn put(&self, rel: &str, bytes: &[u8]) {
        let tmp = self.img.with_extension("put");
        std::fs::write(&tmp, bytes).unwrap();
        check(
            tool("mcopy")
                .arg("-o")
                .arg("-i")
                .arg(&self.img)
                .arg(&tmp)
                .arg(format!("::/{rel}"))
                .output()
                .unwrap(),
            "mcopy -o",
        );
    }

    /// Reads one file off the stick.
    fn get(&self, rel: &str) -> Vec<u8> {
        check(
            tool("mcopy")
                .arg("-i")
                .arg(&self.img)
                .arg(format!("::/{rel}"))
                .arg("-")
                .output()
                .unwrap(),
            "mcopy to stdout",
        )
        .stdout
    }

    /// The appliance's view: the stick's files copied into a fresh directory.
    fn copy_out(&self, dest: &Path) -> PathBuf {
        std::fs::create_dir_all(dest).unwrap();
        check(
            tool("mcopy")
                .arg("-i")
                .arg(&self.img)
                .args(["-s", "-n", "::/"])
                .arg(dest)
                .output()
                .unwrap(),
            "mcopy off the stick",
        );
        dest.to_path_buf()
    }
}

fn signer(args: &[&str], paths: &[&Path]) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.args(args);
    for p in paths {
        cmd.arg(p);
    }
    cmd.output().unwrap()
}

fn import(stick: &Path, state: &Path, replace: bool) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.arg("import").arg(stick).arg("--state-dir").arg(state);
    if replace {
        cmd.arg("--replace");
    }
    cmd.output().unwrap()
}

fn confirm(state: &Path, digest: &str, code: &str, pass: &Path) -> Output {
    Command::new(BIN)
        .arg("import-confirm")
        .arg("--state-dir")
        .arg(state)
        .args(["--manifest-digest", digest, "--code", code])
        .arg("--passphrase-file")
        .arg(pass)
        .output()
        .unwrap()
}

fn passphrase_file(dir: &Path) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let p = dir.join("passphrase");
    std::fs::write(&p, format!("{PASS}\n")).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
    p
}

/// SHA-256 over every path, mode, owner and file content under `dir`.
fn tree_hash(dir: &Path) -> String {
    use std::os::unix::fs::MetadataExt;
    fn walk(base: &Path, p: &Path, h: &mut Sha256) {
        let mut entries: Vec<_> = std::fs::read_dir(p)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        entries.sort();
        for e in entries {
            let m = std::fs::symlink_metadata(&e).unwrap();
            h.update(e.strip_prefix(base).unwrap().to_string_lossy().as_bytes());
            h.update(format!(":{:o}:{}:{}\n", m.mode(), m.uid(), m.gid()).as_bytes());
            if m.is_dir() {
                walk(base, &e, h);
            } else {
                h.update(std::fs::read(&e).unwrap());
            }
        }
    }
    let mut h = Sha256::new();
    walk(dir, dir, &mut h);
    hex::encode(h.finalize())
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn a_ceremony_stick_imports_and_the_signer_signs_for_its_agents() {
    let dir = tempfile::tempdir().unwrap();
    let (made, outcome, uri) = ceremony(dir.path());
    let stick = Stick::blank(dir.path(), "stick.img");
    stick.write_tree(&made);
    assert_eq!(
        stick.get("manifest.json"),
        std::fs::read(made.join("manifest.json")).unwrap()
    );
    let mounted = stick.copy_out(&dir.path().join("mounted"));

    let appliance = tempfile::tempdir().unwrap();
    let state = appliance.path().join("state");
    std::fs::create_dir(&state).unwrap();
    let pass = passphrase_file(appliance.path());

    // Import stages; nothing is live yet.
    let out = check(import(&mounted, &state, false), "import");
    let staged: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(staged["staged"], true);
    assert_eq!(staged["manifest_digest"], outcome.manifest_digest.as_str());
    let shown: Vec<(String, String)> = staged["agents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["address"].as_str().unwrap().to_owned(),
                a["fingerprint"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let want: Vec<(String, String)> = outcome
        .manifest
        .agents
        .iter()
        .map(|a| (a.address.clone(), a.fingerprint.clone()))
        .collect();
    assert_eq!(shown, want, "the fingerprints shown are the ceremony's");
    assert!(!state.join("keystore").exists());
    let status = check(
        signer(&["import-status", "--state-dir"], &[&state]),
        "status",
    );
    assert_eq!(
        serde_json::from_slice::<Value>(&status.stdout).unwrap(),
        staged
    );

    // Confirmation: the digest the operator compared, and the NEW authenticator's code.
    let code = TOTP::from_url(&uri).unwrap().generate(now());
    let before = tree_hash(&state);
    let wrong_digest = confirm(&state, &"ab".repeat(32), &code, &pass);
    assert!(
        stderr(&wrong_digest).contains("not those of the staged stick"),
        "{}",
        stderr(&wrong_digest)
    );
    let wrong_code = if code == "123456" { "654321" } else { "123456" };
    let refused = confirm(&state, &outcome.manifest_digest, wrong_code, &pass);
    assert!(
        stderr(&refused).contains("wrong code"),
        "{}",
        stderr(&refused)
    );
    assert_eq!(
        tree_hash(&state),
        before,
        "refused confirmations change nothing"
    );
    check(
        confirm(
            &state,
            &manifest::group(&outcome.manifest_digest),
            &code,
            &pass,
        ),
        "confirm",
    );
    assert!(state.join("keystore/agent.trader.solana.key").exists());
    assert!(!state.join("import-staged").exists());
    assert!(!state.join("keystore/policy-signing.key").exists());

    // A real confined signer on the imported state signs for the imported agents.
    let init = json!({"agents": outcome.manifest.agents.iter().map(|a| json!({"agent": a.agent, "addresses": {"solana": a.address}})).collect::<Vec<_>>()});
    let s = Signer::serve_existing(appliance, pass, init);
    let hello = ok(s.client().call(vigil_protocol::Op::Hello).unwrap());
    assert_eq!(
        hello["policy_digest"],
        outcome.manifest.policy_digest.as_str()
    );
    let signed = ok(s
        .client()
        .call(sign_op(
            "trader",
            transfer(&recipient(), SOL / 10, Network::Devnet),
            "usb1",
            SOME_BLOCKHASH,
        ))
        .unwrap());
    assert_eq!(signed["status"], "signed");
    let wire = base64::Engine::decode(
        &base64::engine::general_purpose::STANDARD,
        signed["tx"].as_str().unwrap(),
    )
    .unwrap();
    let tx: solana_transaction::Transaction = bincode::deserialize(&wire).unwrap();
    assert_eq!(tx.message.account_keys[0].to_string(), s.address("trader"));
    assert!(tx.verify().is_ok(), "signed by the imported trader key");
}

/// `import_status` / `import_confirm` over the socket of a real confined signer: a first
/// install waits for its keys, a wrong digest or code changes nothing, the right code makes
/// the signer exit 75, and the restart applies the import; then a second ceremony replaces
/// the keys of the running signer the same way (a code of the CURRENT authenticator is refused).
#[test]
fn an_import_is_confirmed_over_the_socket_and_applied_at_restart() {
    use std::time::Duration;
    use vigil_protocol::{ImportConfirmRequest, Op};

    let dir = tempfile::tempdir().unwrap();
    let (made, outcome, uri) = ceremony(dir.path());
    let stick = Stick::blank(dir.path(), "stick.img");
    stick.write_tree(&made);
    let mounted = stick.copy_out(&dir.path().join("mounted"));
    let appliance = tempfile::tempdir().unwrap();
    let state = appliance.path().join("state");
    std::fs::create_dir(&state).unwrap();
    let pass = passphrase_file(appliance.path());
    check(import(&mounted, &state, false), "import");

    // First install: the signer serves without keys, waiting for the staged import.
    let mut s = Signer::serve_existing(appliance, pass, json!({"agents": []}));
    let hello = ok(s.client().call(Op::Hello).unwrap());
    assert_eq!(hello["agents"], json!([]));
    let status = ok(s.client().call(Op::ImportStatus).unwrap());
    assert_eq!(
        (&status["staged"], &status["awaiting_keys"]),
        (&json!(true), &json!(true))
    );
    assert_eq!(status["manifest_digest"], outcome.manifest_digest.as_str());
    let shown: Vec<(String, String)> = status["agents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["address"].as_str().unwrap().into(),
                a["fingerprint"].as_str().unwrap().into(),
            )
        })
        .collect();
    let want: Vec<(String, String)> = outcome
        .manifest
        .agents
        .iter()
        .map(|a| (a.address.clone(), a.fingerprint.clone()))
        .collect();
    assert_eq!(
        shown, want,
        "import_status shows the ceremony's fingerprints"
    );
    let (kind, _, msg) = err(s
        .client()
        .call(sign_op(
            "trader",
            transfer(&recipient(), SOL / 10, Network::Devnet),
            "k0",
            SOME_BLOCKHASH,
        ))
        .unwrap());
    assert_eq!(kind, "unknown_agent");
    assert!(msg.contains("no keys yet"), "{msg}");

    let confirm_op = |digest: &str, code: &str| {
        Op::ImportConfirm(ImportConfirmRequest {
            manifest_digest: digest.parse().unwrap(),
            code: code.parse().unwrap(),
        })
    };
    let totp = TOTP::from_url(&uri).unwrap();
    let staged_before = tree_hash(&s.state().join("import-staged"));
    let (kind, _, msg) = err(s
        .client()
        .call(confirm_op(&"ab".repeat(32), &totp.generate(now())))
        .unwrap());
    assert_eq!(kind, "bad_request");
    assert!(msg.contains("not those of the staged stick"), "{msg}");
    let code = totp.generate(now());
    let wrong = if code == "123456" { "654321" } else { "123456" };
    let (kind, _, msg) = err(s
        .client()
        .call(confirm_op(&outcome.manifest_digest, wrong))
        .unwrap());
    assert_eq!(kind, "operator_code_invalid");
    assert!(msg.contains("THIS ceremony"), "{msg}");
    assert_eq!(tree_hash(&s.state().join("import-staged")), staged_before);
    assert!(
        !s.state().join("keystore").exists(),
        "a refused confirmation installs nothing"
    );

    let confirmed = ok(s
        .client()
        .call(confirm_op(&outcome.manifest_digest, &code))
        .unwrap());
    assert_eq!(confirmed["status"], "confirmed");
    assert_eq!(
        confirmed["manifest_digest"],
        outcome.manifest_digest.as_str()
    );
    assert_eq!(s.wait_exit(Duration::from_secs(10)).code(), Some(75));

    // The restart applies it: the imported agents, the ceremony's policy, signing works.
    s.init = json!({"agents": outcome.manifest.agents.iter().map(|a| json!({"agent": a.agent, "addresses": {"solana": a.address}})).collect::<Vec<_>>()});
    s.spawn();
    assert!(!s.state().join("import-staged").exists());
    let hello = ok(s.client().call(Op::Hello).unwrap());
    assert_eq!(
        hello["policy_digest"],
        outcome.manifest.policy_digest.as_str()
    );
    assert_eq!(hello["agents"].as_array().unwrap().len(), 2);
    let status = ok(s.client().call(Op::ImportStatus).unwrap());
    assert_eq!(
        (&status["staged"], &status["awaiting_keys"]),
        (&json!(false), &json!(false))
    );
    let signed = ok(s
        .client()
        .call(sign_op(
            "trader",
            transfer(&recipient(), SOL / 10, Network::Devnet),
            "usb2",
            SOME_BLOCKHASH,
        ))
        .unwrap());
    assert_eq!(signed["status"], "signed");
    let wire = base64::Engine::decode(
        &base64::engine::general_purpose::STANDARD,
        signed["tx"].as_str().unwrap(),
    )
    .unwrap();
    let tx: solana_transaction::Transaction = bincode::deserialize(&wire).unwrap();
    assert_eq!(tx.message.account_keys[0].to_string(), s.address("trader"));
    assert!(tx.verify().is_ok());

    // A second ceremony replaces the running signer's keys: staged with --replace, seen at
    // the next start; the CURRENT authenticator's code is not the new one's.
    let dir2 = tempfile::tempdir().unwrap();
    let (made2, outcome2, uri2) = ceremony(dir2.path());
    check(import(&made2, &s.state(), true), "import --replace");
    hand_to_service_user(&s.state());
    s.restart();
    let status = ok(s.client().call(Op::ImportStatus).unwrap());
    assert_eq!(status["manifest_digest"], outcome2.manifest_digest.as_str());
    assert_eq!(
        (&status["replace"], &status["awaiting_keys"]),
        (&json!(true), &json!(false))
    );
    let current = totp.generate(now() + 30);
    let (kind, _, _) = err(s
        .client()
        .call(confirm_op(&outcome2.manifest_digest, &current))
        .unwrap());
    assert_eq!(kind, "operator_code_invalid");
    let hello = ok(s.client().call(Op::Hello).unwrap());
    assert_eq!(
        hello["policy_digest"],
        outcome.manifest.policy_digest.as_str(),
        "nothing changed"
    );
    // One step later than the first confirmation: a code is used once across secrets.
    let code2 = TOTP::from_url(&uri2).unwrap().generate(now() + 30);
    ok(s.client()
        .call(confirm_op(&outcome2.manifest_digest, &code2))
        .unwrap());
    assert_eq!(s.wait_exit(Duration::from_secs(10)).code(), Some(75));
    s.init = json!({"agents": outcome2.manifest.agents.iter().map(|a| json!({"agent": a.agent, "addresses": {"solana": a.address}})).collect::<Vec<_>>()});
    s.spawn();
    let hello = ok(s.client().call(Op::Hello).unwrap());
    let trader = hello["agents"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["agent"] == "trader")
        .unwrap();
    assert_eq!(trader["addresses"]["solana"], s.address("trader").as_str());
    assert_ne!(
        s.address("trader"),
        outcome
            .manifest
            .agents
            .iter()
            .find(|a| a.agent.as_str() == "trader")
            .unwrap()
            .address
    );
    // The previous keys are kept under imports/; the audit log verifies and tells the story.
    assert_eq!(
        std::fs::read_dir(s.state().join("imports"))
            .unwrap()
            .count(),
        2
    );
    let verified = s.audit_verify(&[]);
    assert!(verified.status.success(), "{}", stderr(&verified));
    let types: Vec<String> = read_audit(&s.audit_path())
        .iter()
        .map(|e| e["event"]["type"].as_str().unwrap_or_default().to_owned())
        .collect();
    let story: Vec<&str> = types
        .iter()
        .map(String::as_str)
        .filter(|t| t.starts_with("import") || *t == "operator_code_refused")
        .collect();
    assert_eq!(
        story,
        [
            "operator_code_refused",
            "import_confirmed",
            "import_applied",
            "operator_code_refused",
            "import_confirmed",
            "import_applied"
        ]
    );
}

/// The manifest re-signed by the ceremony's (kept) policy key after `edit`.
fn resign_manifest(made: &Path, stick: &Stick, edit: impl FnOnce(&mut Manifest)) {
    let entry = keystore::read_entry(
        &made.join("policy-key/policy-signing.key"),
        &SecretString::from(PASS.to_owned()),
    )
    .unwrap();
    let mut seed = zeroize::Zeroizing::new([0u8; 32]);
    seed.copy_from_slice(&entry.secret);
    let key = Ed25519Key::from_seed(&seed);
    let mut m = Manifest::parse(&std::fs::read(made.join("manifest.json")).unwrap()).unwrap();
    edit(&mut m);
    let bytes = m.to_bytes().unwrap();
    let sig = key.sign(&manifest::signing_message(&bytes));
    stick.put("manifest.json", &bytes);
    stick.put(
        "manifest.json.sig",
        policy::signature_file_contents(&sig).as_bytes(),
    );
}

#[test]
fn bad_sticks_are_refused_each_with_its_own_message_and_nothing_changes() {
    let dir = tempfile::tempdir().unwrap();
    let (made, outcome, uri) = ceremony(&dir.path().join("a"));
    let (other, _, _) = ceremony(&dir.path().join("b"));

    // An appliance that already runs on ceremony A.
    let appliance = tempfile::tempdir().unwrap();
    let state = appliance.path().join("state");
    std::fs::create_dir(&state).unwrap();
    let pass = passphrase_file(appliance.path());
    let good = Stick::blank(dir.path(), "good.img");
    good.write_tree(&made);
    check(
        import(&good.copy_out(&dir.path().join("good")), &state, false),
        "import",
    );
    let code = TOTP::from_url(&uri).unwrap().generate(now());
    check(
        confirm(&state, &outcome.manifest_digest, &code, &pass),
        "confirm",
    );
    let before = tree_hash(&state);

    // The same, good stick again without --replace: refused, the keys are never overwritten.
    let again = import(&dir.path().join("good"), &state, false);
    assert!(
        stderr(&again).contains("already holds a keystore") && stderr(&again).contains("--replace"),
        "{}",
        stderr(&again)
    );
    assert_eq!(tree_hash(&state), before);

    type Tamper<'a> = Box<dyn Fn(&Stick) + 'a>;
    let made2 = made.clone();
    let cases: Vec<(&str, Tamper<'_>, &str)> = vec![
        (
            "tampered manifest",
            Box::new(|s: &Stick| {
                let text = String::from_utf8(s.get("manifest.json")).unwrap();
                let addr = &outcome.manifest.agents[1].address;
                s.put(
                    "manifest.json",
                    text.replace(addr.as_str(), &recipient()).as_bytes(),
                );
            }),
            "does not verify over manifest.json",
        ),
        (
            "swapped keystore file",
            Box::new(move |s: &Stick| {
                let theirs = std::fs::read(other.join("keystore/agent.trader.solana.key")).unwrap();
                s.put("keystore/agent.trader.solana.key", &theirs);
            }),
            "keystore/agent.trader.solana.key was swapped",
        ),
        (
            "policy signed by another key",
            Box::new(move |s: &Stick| {
                let (stranger, _) = Ed25519Key::generate().unwrap();
                let sig = stranger.sign(&policy::signing_message(policy_text().as_bytes()));
                let sig_file = policy::signature_file_contents(&sig);
                s.put("policy/policy.toml.sig", sig_file.as_bytes());
                resign_manifest(&made2, s, |m| {
                    m.files.insert(
                        "policy/policy.toml.sig".into(),
                        FileInfo {
                            sha256: manifest::sha256_hex(sig_file.as_bytes()),
                            size: sig_file.len() as u64,
                        },
                    );
                });
            }),
            "the policy is not signed by the manifest's policy key",
        ),
        (
            "truncated file",
            Box::new(|s: &Stick| {
                let full = s.get("keystore/approval.key");
                s.put("keystore/approval.key", &full[..full.len() / 2]);
            }),
            "keystore/approval.key is truncated",
        ),
    ];
    let mut messages = Vec::new();
    for (i, (name, tamper, want)) in cases.iter().enumerate() {
        let stick = Stick::blank(dir.path(), &format!("bad{i}.img"));
        stick.write_tree(&made);
        tamper(&stick);
        let mounted = stick.copy_out(&dir.path().join(format!("bad{i}")));
        let out = import(&mounted, &state, true);
        assert!(!out.status.success(), "{name}: accepted");
        let msg = stderr(&out);
        assert!(msg.contains(want), "{name}: {msg}");
        assert_eq!(tree_hash(&state), before, "{name}: the state dir changed");
        messages.push(msg);
    }
    let empty = Stick::blank(dir.path(), "empty.img");
    let out = import(&empty.copy_out(&dir.path().join("empty")), &state, true);
    let msg = stderr(&out);
    assert!(
        msg.contains("this is not a Vigil ceremony stick"),
        "empty: {msg}"
    );
    assert_eq!(tree_hash(&state), before);
    messages.push(msg);
    messages.sort();
    messages.dedup();
    assert_eq!(messages.len(), 5, "five different messages");
}
