//! Tests of unlocking a whole keystore: the complete set, one scrypt for a format 2 keystore,
//! format 1 keystores, and every way a directory can be wrong.

use std::os::unix::fs::PermissionsExt;

use super::*;
use crate::keystore::entry::tests::{
    agent_purpose, fixture_dir, format1_dir, master, pass, write_unchecked,
};
use crate::keystore::master::SCRYPT_RUNS;
use crate::keystore::{MasterKey, read_entry, write_entry};

fn devnet(name: &str) -> AgentKeyId {
    AgentKeyId {
        agent: name.parse().unwrap(),
        chain: Chain::Solana,
        network: Some(Network::Devnet),
        role: None,
    }
}

/// Runs `f` and returns how many times it ran scrypt (on this thread).
fn scrypt_runs<T>(f: impl FnOnce() -> T) -> (T, u32) {
    let before = SCRYPT_RUNS.with(std::cell::Cell::get);
    let out = f();
    (out, SCRYPT_RUNS.with(std::cell::Cell::get) - before)
}

/// The master key the fixture keystore in `dir` was written under.
fn master_of(dir: &Path) -> MasterKey {
    let text = std::fs::read_to_string(dir.join("approval.key")).unwrap();
    let sealed = Sealed::parse(&dir.join("approval.key"), &text).unwrap();
    MasterKey::derive(&pass(), sealed.params, sealed.kdf_salt).unwrap()
}

#[test]
fn unlocks_two_agents_approval_and_pin_with_one_scrypt() {
    let (dir, fixture) = fixture_dir();
    let (unlocked, runs) = scrypt_runs(|| unlock(dir.path(), &pass()).unwrap());
    assert_eq!(
        runs, 1,
        "one scrypt for the whole keystore, not one per entry"
    );
    assert_eq!(unlocked.agent_seeds.len(), 2);
    for (name, seed) in &fixture.seeds {
        let id = devnet(name);
        assert_eq!(**unlocked.agent_seeds.get(&id).unwrap(), *seed);
        assert_eq!(unlocked.agent_public[&id], fixture.addresses[name]);
    }
    assert_eq!(*unlocked.approval_secret, fixture.approval);
    assert_eq!(unlocked.policy_public_key, fixture.policy_key);
    assert_eq!(unlocked.weakest_kdf, KdfParams::INSECURE_DEV);
    assert_eq!(unlocked.version(), 2);
    let master = unlocked.master.as_ref().unwrap();
    assert_eq!(
        master.subkey("audit-mac.v1").unwrap().expose(),
        master_of(dir.path())
            .subkey("audit-mac.v1")
            .unwrap()
            .expose(),
        "the master key a part of the signer derives its own keys from is stable"
    );
    let shown = format!("{unlocked:?}");
    assert!(!shown.contains(&hex::encode(fixture.approval)), "{shown}");
    assert!(shown.contains(&fixture.addresses["trader"]), "{shown}");
}

#[test]
fn many_entries_still_cost_one_scrypt() {
    let (dir, _) = fixture_dir();
    let master = master_of(dir.path());
    for i in 0..11u8 {
        let seed = [100 + i; 32];
        let address = chain_address(Chain::Solana, &Zeroizing::new(seed)).unwrap();
        write_entry(
            dir.path(),
            &agent_purpose(&format!("agent{i}")),
            &seed,
            &address,
            &master,
        )
        .unwrap();
    }
    let (unlocked, runs) = scrypt_runs(|| unlock(dir.path(), &pass()).unwrap());
    assert_eq!(unlocked.agent_seeds.len(), 13);
    assert_eq!(runs, 1, "15 entries, one scrypt");
}

#[test]
fn a_format_1_keystore_still_unlocks_its_keys_naming_no_network() {
    let (dir, passphrase) = format1_dir();
    let (unlocked, runs) = scrypt_runs(|| unlock(dir.path(), &passphrase).unwrap());
    assert_eq!(runs, 4, "format 1 ran scrypt per entry");
    assert_eq!(unlocked.version(), 1);
    assert!(unlocked.master.is_none());
    let ids: Vec<String> = unlocked.agent_seeds.keys().map(|k| k.to_string()).collect();
    assert_eq!(
        ids,
        ["sentinel solana (no network)", "trader solana (no network)"]
    );
}

#[test]
fn unlock_files_opens_the_same_bytes_and_checks_the_same_names() {
    let (dir, fixture) = fixture_dir();
    let files: Vec<(String, Vec<u8>)> = crate::keystore::entry::tests::names_in(dir.path())
        .into_iter()
        .map(|n| (n.clone(), std::fs::read(dir.path().join(&n)).unwrap()))
        .collect();
    let view = || files.iter().map(|(n, b)| (n.as_str(), b.as_slice()));
    let unlocked = unlock_files(Path::new("staged/keystore"), view(), &pass()).unwrap();
    assert_eq!(
        **unlocked.agent_seeds.get(&devnet("trader")).unwrap(),
        fixture.seeds["trader"]
    );
    let without_pin = files
        .iter()
        .filter(|(n, _)| n != "policy.pin")
        .map(|(n, b)| (n.as_str(), b.as_slice()));
    let err = unlock_files(Path::new("staged/keystore"), without_pin, &pass()).unwrap_err();
    assert!(matches!(err, KeystoreError::Incomplete { .. }), "{err}");
    let stray = view().chain([("notes.txt", &b"x"[..])]);
    let err = unlock_files(Path::new("staged/keystore"), stray, &pass()).unwrap_err();
    assert!(matches!(err, KeystoreError::UnexpectedFile(_)), "{err}");
}

#[test]
fn entries_under_another_master_key_or_format_are_refused() {
    // An entry of another ceremony (another master salt) slipped into the keystore.
    let (dir, _) = fixture_dir();
    let seed = [42u8; 32];
    let address = chain_address(Chain::Solana, &Zeroizing::new(seed)).unwrap();
    write_entry(
        dir.path(),
        &agent_purpose("intruder"),
        &seed,
        &address,
        &master(),
    )
    .unwrap();
    let err = unlock(dir.path(), &pass()).unwrap_err();
    assert!(matches!(err, KeystoreError::MixedKeys { .. }), "{err}");
    assert!(
        err.to_string().contains("agent.intruder.solana.devnet.key"),
        "{err}"
    );
    // A format 1 entry among format 2 ones.
    let (dir, _) = fixture_dir();
    let (old, _) = format1_dir();
    std::fs::copy(
        old.path().join("agent.trader.solana.key"),
        dir.path().join("agent.trader.solana.key"),
    )
    .unwrap();
    let err = unlock(dir.path(), &pass()).unwrap_err();
    assert!(matches!(err, KeystoreError::MixedKeys { .. }), "{err}");
    assert!(err.to_string().contains("format"), "{err}");
}

#[test]
fn wrong_passphrase_fails_to_unlock() {
    let (dir, _) = fixture_dir();
    let err = unlock(dir.path(), &SecretString::from("wrong".to_owned())).unwrap_err();
    assert!(matches!(err, KeystoreError::Decrypt(_)), "{err}");
}

#[test]
fn stray_file_is_named() {
    for stray in [
        "notes.txt",
        ".agent.trader.solana.devnet.key.tmp-0011223344556677",
    ] {
        let (dir, _) = fixture_dir();
        let path = dir.path().join(stray);
        std::fs::write(&path, b"x").unwrap();
        let err = unlock(dir.path(), &pass()).unwrap_err();
        assert!(matches!(err, KeystoreError::UnexpectedFile(_)), "{err}");
        assert!(err.to_string().contains(stray), "{err}");
    }
    let (dir, _) = fixture_dir();
    std::fs::create_dir(dir.path().join("sub.key")).unwrap();
    assert!(unlock(dir.path(), &pass()).is_err());
}

#[test]
fn public_key_mismatch_is_refused() {
    let (dir, fixture) = fixture_dir();
    // A correctly encrypted entry whose stored address belongs to another seed.
    let trader = agent_purpose("trader");
    std::fs::remove_file(dir.path().join(entry_file_name(&trader))).unwrap();
    write_unchecked(
        dir.path(),
        &trader,
        &fixture.seeds["trader"],
        &fixture.addresses["saver"],
        &master_of(dir.path()),
    );
    let err = unlock(dir.path(), &pass()).unwrap_err();
    assert!(matches!(err, KeystoreError::Inconsistent { .. }), "{err}");
    assert!(
        err.to_string().contains("agent.trader.solana.devnet.key"),
        "{err}"
    );
}

#[test]
fn renamed_agent_file_is_refused() {
    for copy in [
        "agent.other.solana.devnet.key",
        "agent.saver.solana.mainnet.key",
    ] {
        let (dir, _) = fixture_dir();
        // saver's devnet file copied under another agent's or another network's name: it
        // decrypts, but the name is wrong.
        std::fs::copy(
            dir.path().join("agent.saver.solana.devnet.key"),
            dir.path().join(copy),
        )
        .unwrap();
        let err = unlock(dir.path(), &pass()).unwrap_err();
        assert!(matches!(err, KeystoreError::WrongFileName { .. }), "{err}");
        assert!(err.to_string().contains(copy), "{err}");
    }
}

#[test]
fn incomplete_keystores_are_refused() {
    for (remove, missing) in [
        (&["approval.key"][..], "approval.key"),
        (&["policy.pin"][..], "policy.pin"),
        (
            &[
                "agent.trader.solana.devnet.key",
                "agent.saver.solana.devnet.key",
            ][..],
            "agent key",
        ),
    ] {
        let (dir, _) = fixture_dir();
        for name in remove {
            std::fs::remove_file(dir.path().join(name)).unwrap();
        }
        let err = unlock(dir.path(), &pass()).unwrap_err();
        assert!(matches!(err, KeystoreError::Incomplete { .. }), "{err}");
        assert!(err.to_string().contains(missing), "{err}");
    }
}

#[test]
fn group_readable_entry_is_refused() {
    let (dir, _) = fixture_dir();
    let path = dir.path().join("policy.pin");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
    let fix = format!("chmod 600 {}", path.display());
    let err = unlock(dir.path(), &pass()).unwrap_err();
    assert!(err.to_string().contains(&fix), "{err}");
}

#[test]
fn symlinked_entry_is_refused() {
    let (dir, _) = fixture_dir();
    let real = dir.path().join("policy.pin");
    let moved = tempfile::tempdir().unwrap();
    let target = moved.path().join("policy.pin");
    std::fs::rename(&real, &target).unwrap();
    std::os::unix::fs::symlink(&target, &real).unwrap();
    let err = unlock(dir.path(), &pass()).unwrap_err();
    assert!(matches!(err, KeystoreError::NotRegularFile(_)), "{err}");
}

#[test]
fn a_policy_signing_key_is_never_unlocked_and_inspect_reads_metadata() {
    let (dir, _) = fixture_dir();
    let master = master_of(dir.path());
    let (key, seed) = crate::keys::Ed25519Key::generate().unwrap();
    let public = hex::encode(key.public_bytes());
    let path = write_entry(dir.path(), &Purpose::PolicyKey, &seed[..], &public, &master).unwrap();
    assert!(path.ends_with("policy-signing.key"));
    let info =
        crate::keystore::inspect_entry(&path, &std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(info.purpose, Purpose::PolicyKey);
    assert_eq!(info.public, public);
    assert_eq!(info.version, 2);
    assert_eq!(
        read_entry(&path, &pass()).unwrap().secret.as_slice(),
        &seed[..]
    );
    let err = unlock(dir.path(), &pass()).unwrap_err();
    assert!(
        err.to_string().contains("must never be on the appliance"),
        "{err}"
    );
    // A seed that does not match its public part is refused when written.
    let (other, _) = crate::keys::Ed25519Key::generate().unwrap();
    let err = write_entry(
        tempfile::tempdir().unwrap().path(),
        &Purpose::PolicyKey,
        &seed[..],
        &hex::encode(other.public_bytes()),
        &master,
    )
    .unwrap_err();
    assert!(
        err.to_string().contains("not the public key of the seed"),
        "{err}"
    );
}
