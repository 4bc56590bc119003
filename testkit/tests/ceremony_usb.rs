//! The key ceremony's USB stick, end to end, on real FAT32 images (`mkfs.vfat`, read and
//! written with `mtools`, no mount): a ceremony's output is written onto an image, copied
//! off it on the "appliance", staged, confirmed at the appliance's console with the new
//! authenticator's code (a first install), and a real confined signer then signs for the
//! imported agents. Bad sticks (tampered manifest, swapped keystore file, policy signed by
//! another key, truncated file, empty stick) are each refused with their own message and the
//! appliance's state dir stays byte-identical. A stick of the release before keys were per
//! network still imports. (Confirming over the socket, replacing keys, expiry and the staged
//! copy's rules: `import_authority.rs`.)

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Output;

use secrecy::SecretString;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use vigil_ceremony::CeremonyError;
use vigil_ceremony::backup::Backup;
use vigil_ceremony::config::CeremonyConfig;
use vigil_ceremony::network::AirGap;
use vigil_ceremony::new::{NewCeremony, Outcome, run};
use vigil_signer::Ed25519Key;
use vigil_signer::import::manifest::{self, FileInfo, Manifest};
use vigil_signer::keystore::{self, KdfParams};
use vigil_signer::policy;
use vigil_testkit::ceremony::{
    CeremonyPlan, PASSPHRASE, ceremony_policy, confirm_at_console, import, import_status,
    staging_dir,
};
use vigil_testkit::host::check;
use vigil_testkit::policy::AgentRules;
use vigil_testkit::requests::{ok, pay};
use vigil_testkit::stick::Stick;
use vigil_testkit::{Operator, SOL, Signer, unix_now};

/// A recipient the test policy allows.
fn recipient() -> String {
    bs58::encode([9u8; 32]).into_string()
}

/// Trader may pay the recipient; Sentinel has rules too, so both get a devnet key.
fn policy_text() -> String {
    ceremony_policy(&[&recipient()])
        .agent("sentinel", AgentRules::sol(SOL, SOL, SOL))
        .to_toml()
}

/// The operator at the ceremony: approves the policy and types the authenticator's code.
struct Operator1 {
    uri: Option<String>,
}

impl vigil_ceremony::new::Operator for Operator1 {
    fn show(&mut self, _: &str) {}
    fn approve_policy(&mut self, _: &str) -> Result<bool, CeremonyError> {
        Ok(true)
    }
    fn enrol(&mut self, uri: &str, _: &str, _: u32) -> Result<String, CeremonyError> {
        self.uri = Some(uri.to_owned());
        Ok(Operator::from_uri(uri).code().expose_digits().to_owned())
    }
    fn forget_secret(&mut self) {}
    fn progress(&mut self, _: usize, _: usize, _: &str) {}
    fn progress_done(&mut self) {}
    fn now(&self) -> u64 {
        unix_now()
    }
}

/// Runs a ceremony into `<dir>/made` (the ceremony machine's view of the stick).
fn ceremony(dir: &Path) -> (PathBuf, Outcome, Operator) {
    let made = dir.join("made");
    std::fs::create_dir_all(&made).unwrap();
    // The ceremony machine, air-gapped: loopback only, no radios.
    let sys = dir.join("sys");
    std::fs::create_dir_all(sys.join("class/net/lo")).unwrap();
    std::fs::write(sys.join("class/net/lo/flags"), "0x9\n").unwrap();
    let c = NewCeremony {
        out: made.clone(),
        config: CeremonyConfig::parse(&CeremonyPlan::solana(&["trader", "sentinel"]).to_toml())
            .unwrap(),
        policy_bytes: policy_text().into_bytes(),
        keep_policy_key: true,
        air_gap: AirGap::insecure_test_reading(&sys, false),
        kdf: KdfParams::INSECURE_DEV,
        insecure_weak_kdf: true,
        backup: Backup::None,
        reuse_policy_key: None,
    };
    let mut op = Operator1 { uri: None };
    let outcome = run(&c, &SecretString::from(PASSPHRASE.to_owned()), &mut op).unwrap();
    (made, outcome, Operator::from_uri(&op.uri.unwrap()))
}

/// An appliance with an empty state dir and the keystore passphrase, and the stick made
/// from `made` (a FAT image in `dir`) as the appliance copies it off.
struct Appliance {
    dir: tempfile::TempDir,
    state: PathBuf,
    pass: PathBuf,
    mounted: PathBuf,
}

impl Appliance {
    fn with_stick(dir: &Path, made: &Path) -> (Appliance, Stick) {
        let stick = Stick::blank(dir, "stick.img");
        stick.write_tree(made);
        let mounted = stick.copy_out(&dir.join("mounted"));
        let appliance = tempfile::tempdir().unwrap();
        let state = appliance.path().join("state");
        std::fs::create_dir(&state).unwrap();
        let pass = passphrase_file(appliance.path());
        (
            Appliance {
                dir: appliance,
                state,
                pass,
                mounted,
            },
            stick,
        )
    }
}

/// (address, fingerprint) of each agent in an import report (`import`, `import_status`).
fn shown_fingerprints(report: &Value) -> Vec<(String, String)> {
    report["agents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["address"].as_str().unwrap().to_owned(),
                a["fingerprint"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// (address, fingerprint) of each agent of the ceremony's manifest.
fn ceremony_fingerprints(outcome: &Outcome) -> Vec<(String, String)> {
    outcome
        .manifest
        .agents
        .iter()
        .map(|a| (a.address.clone(), a.fingerprint.clone()))
        .collect()
}

/// The address the ceremony gave `agent`.
fn ceremony_address(outcome: &Outcome, agent: &str) -> String {
    outcome
        .manifest
        .agents
        .iter()
        .find(|a| a.agent.as_str() == agent)
        .unwrap()
        .address
        .clone()
}

/// Trader sends 0.1 SOL to the policy's recipient; the fee payer (who signed) of the signed
/// transaction, whose signatures verify.
fn trader_signs(s: &Signer, key: &str) -> String {
    let signed = ok(s
        .client()
        .call(pay("trader", &recipient(), SOL / 10, key))
        .unwrap());
    assert_eq!(signed["status"], "signed");
    let wire = base64::Engine::decode(
        &base64::engine::general_purpose::STANDARD,
        signed["tx"].as_str().unwrap(),
    )
    .unwrap();
    let tx: solana_transaction::Transaction = bincode::deserialize(&wire).unwrap();
    assert!(tx.verify().is_ok(), "signed by the fee payer's key");
    tx.message.account_keys[0].to_string()
}

fn passphrase_file(dir: &Path) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let p = dir.join("passphrase");
    std::fs::write(&p, format!("{PASSPHRASE}\n")).unwrap();
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
    let (made, outcome, operator) = ceremony(dir.path());
    let (appliance, stick) = Appliance::with_stick(dir.path(), &made);
    assert_eq!(
        stick.get("manifest.json"),
        std::fs::read(made.join("manifest.json")).unwrap()
    );
    let Appliance {
        dir: appliance,
        state,
        pass,
        mounted,
    } = appliance;

    // Import stages (outside the state dir); nothing is live yet.
    let out = check(import(&mounted, &state, &[]), "import");
    let staged: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(staged["staged"], true);
    assert_eq!(staged["manifest_digest"], outcome.manifest_digest.as_str());
    assert_eq!(
        shown_fingerprints(&staged),
        ceremony_fingerprints(&outcome),
        "the fingerprints shown are the ceremony's"
    );
    assert!(!state.join("keystore").exists());
    let status = check(import_status(&state), "status");
    assert_eq!(
        serde_json::from_slice::<Value>(&status.stdout).unwrap(),
        staged
    );

    // Confirmation at the console: the digest the operator compared, and the NEW
    // authenticator's code. Refusals install nothing and leave the staged copy as it was.
    let code = operator.code();
    let staged_before = tree_hash(&staging_dir(&state));
    let wrong_digest = confirm_at_console(&state, &"ab".repeat(32), &code, None, &pass);
    assert!(
        stderr(&wrong_digest).contains("not those of the staged stick"),
        "{}",
        stderr(&wrong_digest)
    );
    let refused = confirm_at_console(
        &state,
        &outcome.manifest_digest,
        &operator.wrong_code(),
        None,
        &pass,
    );
    assert!(
        stderr(&refused).contains("wrong code") && stderr(&refused).contains("THIS ceremony"),
        "{}",
        stderr(&refused)
    );
    assert_eq!(tree_hash(&staging_dir(&state)), staged_before);
    assert!(!state.join("keystore").exists() && !state.join("policy").exists());
    let confirmed = check(
        confirm_at_console(
            &state,
            &manifest::group(&outcome.manifest_digest),
            &code,
            None,
            &pass,
        ),
        "confirm",
    );
    let confirmed: Value = serde_json::from_slice(&confirmed.stdout).unwrap();
    assert_eq!(confirmed["imported"], true);
    assert!(
        state
            .join("keystore/agent.trader.solana.devnet.key")
            .exists()
    );
    assert!(!staging_dir(&state).exists());
    assert!(!state.join("keystore/policy-signing.key").exists());

    // A real confined signer on the imported state signs for the imported agents.
    let s = Signer::serve_existing(appliance, &pass);
    let hello = ok(s.client().call(vigil_protocol::Op::Hello).unwrap());
    assert_eq!(
        hello["policy_digest"],
        outcome.manifest.policy_digest.as_str()
    );
    assert_eq!(
        trader_signs(&s, "usb1"),
        ceremony_address(&outcome, "trader"),
        "signed by the imported trader key"
    );
    // The console's confirmation is in the audit log, as the socket's would be: the refused
    // code, the confirmation (a first install, at the console), the import applied.
    let verified = s.audit_verify(&[]);
    assert!(verified.status.success(), "{}", stderr(&verified));
    let story: Vec<Value> = s
        .audit()
        .iter()
        .map(|e| e["event"].clone())
        .filter(|e| {
            let t = e["type"].as_str().unwrap_or_default();
            t.starts_with("import") || t == "operator_code_refused"
        })
        .collect();
    let types: Vec<&str> = story.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(
        types,
        [
            "operator_code_refused",
            "import_confirmed",
            "import_applied"
        ]
    );
    assert_eq!(story[1]["via"], "console");
    assert_eq!(story[1]["authority"], "first_install");
}

/// A stick written by the release before keys were per network (manifest agents without a
/// network, keystore format 1) still imports; its key serves the one network its policy names.
#[test]
fn an_old_ceremony_stick_still_imports_and_its_key_serves_its_policys_network() {
    let appliance = tempfile::tempdir().unwrap();
    let (state, stick) = (
        appliance.path().join("state"),
        appliance.path().join("stick"),
    );
    std::fs::create_dir(&state).unwrap();
    let operator = vigil_testkit::legacy::format1_stick(&stick);
    let pass = passphrase_file(appliance.path());
    let out = check(import(&stick, &state, &[]), "import of the old stick");
    let staged: Value = serde_json::from_slice(&out.stdout).unwrap();
    let trader = staged["agents"][0].clone();
    assert!(trader.get("network").is_none(), "{trader}");
    check(
        confirm_at_console(
            &state,
            staged["manifest_digest"].as_str().unwrap(),
            &operator.code(),
            None,
            &pass,
        ),
        "confirm",
    );
    assert!(state.join("keystore/agent.trader.solana.key").exists());
    let s = Signer::serve_existing(appliance, &pass);
    let hello = ok(s.client().call(vigil_protocol::Op::Hello).unwrap());
    assert_eq!(
        hello["agents"][0]["network_addresses"],
        json!({"solana:devnet": trader["address"]})
    );
    let signed = ok(s
        .client()
        .call(pay(
            "trader",
            "cW9yLCnYPj8ktJXQMb4DeWx7X2DAiZXs8GBUUgW3SNK",
            SOL / 10,
            "old1",
        ))
        .unwrap());
    assert_eq!(signed["status"], "signed");
}

/// The manifest re-signed by the ceremony's (kept) policy key after `edit`.
fn resign_manifest(made: &Path, stick: &Stick, edit: impl FnOnce(&mut Manifest)) {
    let entry = keystore::read_entry(
        &made.join("policy-key/policy-signing.key"),
        &SecretString::from(PASSPHRASE.to_owned()),
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
    let (made, outcome, operator) = ceremony(&dir.path().join("a"));
    let (other, _, _) = ceremony(&dir.path().join("b"));

    // An appliance that already runs on ceremony A.
    let (appliance, _good) = Appliance::with_stick(dir.path(), &made);
    let state = &appliance.state;
    check(import(&appliance.mounted, state, &[]), "import");
    check(
        confirm_at_console(
            state,
            &outcome.manifest_digest,
            &operator.code(),
            None,
            &appliance.pass,
        ),
        "confirm",
    );
    let before = tree_hash(state);

    // The same, good stick again without --replace: refused, the keys are never overwritten.
    let again = import(&appliance.mounted, state, &[]);
    assert!(
        stderr(&again).contains("already holds a keystore") && stderr(&again).contains("--replace"),
        "{}",
        stderr(&again)
    );
    assert_eq!(tree_hash(state), before);

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
                let theirs =
                    std::fs::read(other.join("keystore/agent.trader.solana.devnet.key")).unwrap();
                s.put("keystore/agent.trader.solana.devnet.key", &theirs);
            }),
            "keystore/agent.trader.solana.devnet.key was swapped",
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
            // Issue 15, finding 6: the fingerprints shown come from the keys, and a manifest
            // whose fingerprint is not its key's is refused (before, it was staged and shown).
            "made-up fingerprint",
            Box::new({
                let made = made.clone();
                move |s: &Stick| {
                    resign_manifest(&made, s, |m| {
                        m.agents[0].fingerprint = "0000 1111 2222 3333 4444".into();
                    });
                }
            }),
            "the fingerprints on this stick were made up",
        ),
        (
            // Issue 15, finding 5: a stick listing far more files than a ceremony writes is
            // refused before any of them is read (before, each was read, up to 1 MiB).
            "hundreds of listed files",
            Box::new({
                let made = made.clone();
                move |s: &Stick| {
                    resign_manifest(&made, s, |m| {
                        for i in 0..400 {
                            m.files.insert(
                                format!("keystore/junk{i}.key"),
                                FileInfo {
                                    sha256: "00".repeat(32),
                                    size: 1024,
                                },
                            );
                        }
                    });
                }
            }),
            "this stick was not written by vigil-ceremony",
        ),
        (
            "a listed file larger than its kind",
            Box::new({
                let made = made.clone();
                move |s: &Stick| {
                    resign_manifest(&made, s, |m| {
                        if let Some(f) = m.files.get_mut("keystore/approval.key") {
                            f.size = 1024 * 1024;
                        }
                    });
                }
            }),
            "keystore/approval.key 1048576 bytes, more than the 16384",
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
        let out = import(&mounted, state, &["--replace"]);
        assert!(!out.status.success(), "{name}: accepted");
        let msg = stderr(&out);
        assert!(msg.contains(want), "{name}: {msg}");
        assert_eq!(tree_hash(state), before, "{name}: the state dir changed");
        messages.push(msg);
    }
    let empty = Stick::blank(dir.path(), "empty.img");
    let out = import(
        &empty.copy_out(&dir.path().join("empty")),
        state,
        &["--replace"],
    );
    let msg = stderr(&out);
    assert!(
        msg.contains("this is not a Vigil ceremony stick"),
        "empty: {msg}"
    );
    assert_eq!(tree_hash(state), before);
    messages.push(msg);
    messages.sort();
    messages.dedup();
    assert_eq!(messages.len(), 8, "eight different messages");
}
