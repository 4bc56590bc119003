//! Tests of the entry format: round trips, tampering, bounds, permissions, and the fixture
//! keystore (two agents, approval secret, policy pin) that the `unlock` tests share.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use serde_json::Value;
use tempfile::TempDir;

use super::*;

/// A change made to an entry's JSON.
type Edit = Box<dyn FnOnce(&mut Value)>;
/// A file name and its bytes.
type NamedFile = (String, Vec<u8>);

/// The passphrase of every fixture.
pub(in crate::keystore) fn pass() -> SecretString {
    SecretString::from("correct horse battery staple".to_owned())
}

/// What the fixture keystore holds, to compare against.
#[derive(Clone)]
pub(in crate::keystore) struct Fixture {
    pub seeds: BTreeMap<&'static str, [u8; 32]>,
    pub addresses: BTreeMap<&'static str, String>,
    pub approval: [u8; 20],
    pub policy_key: [u8; 32],
}

fn agent_purpose(name: &str) -> Purpose {
    Purpose::AgentKey {
        agent: name.parse().unwrap(),
        chain: Chain::Solana,
    }
}

fn address_of(seed: &[u8; 32]) -> String {
    chain_address(Chain::Solana, &Zeroizing::new(*seed))
}

/// A keystore with agents "trader" and "saver" on Solana, an approval secret and a policy pin,
/// in a fresh directory. The files are encrypted once per test run and copied (scrypt is slow
/// in a debug build), so every fixture directory holds the same salts and nonces.
pub(in crate::keystore) fn fixture_dir() -> (TempDir, Fixture) {
    static TEMPLATE: std::sync::OnceLock<(Vec<NamedFile>, Fixture)> = std::sync::OnceLock::new();
    let (files, fixture) = TEMPLATE.get_or_init(|| {
        let (dir, fixture) = build_fixture_dir();
        let files = names_in(dir.path())
            .into_iter()
            .map(|n| (n.clone(), std::fs::read(dir.path().join(n)).unwrap()))
            .collect();
        (files, fixture)
    });
    let dir = tempfile::tempdir().unwrap();
    for (name, bytes) in files {
        write_atomic(&dir.path().join(name), bytes, Replace::No).unwrap();
    }
    (dir, fixture.clone())
}

/// Builds the fixture keystore with `write_entry`.
fn build_fixture_dir() -> (TempDir, Fixture) {
    let dir = tempfile::tempdir().unwrap();
    let mut fixture = Fixture {
        seeds: BTreeMap::new(),
        addresses: BTreeMap::new(),
        approval: [7u8; 20],
        policy_key: SigningKey::from_bytes(&[5u8; 32])
            .verifying_key()
            .to_bytes(),
    };
    for (name, byte) in [("trader", 1u8), ("saver", 2u8)] {
        let seed = [byte; 32];
        let address = address_of(&seed);
        write_entry(
            dir.path(),
            &agent_purpose(name),
            &seed,
            &address,
            KdfParams::INSECURE_DEV,
            true,
            &pass(),
        )
        .unwrap();
        fixture.seeds.insert(name, seed);
        fixture.addresses.insert(name, address);
    }
    write_entry(
        dir.path(),
        &Purpose::ApprovalSecret,
        &fixture.approval,
        "",
        KdfParams::INSECURE_DEV,
        true,
        &pass(),
    )
    .unwrap();
    let key = fixture.policy_key;
    write_entry(
        dir.path(),
        &Purpose::PolicyPin,
        &key,
        &hex::encode(key),
        KdfParams::INSECURE_DEV,
        true,
        &pass(),
    )
    .unwrap();
    (dir, fixture)
}

/// Writes a correctly encrypted entry without `write_entry`'s consistency checks.
pub(in crate::keystore) fn write_unchecked(
    dir: &Path,
    purpose: &Purpose,
    secret: &[u8],
    public: &str,
) -> PathBuf {
    let path = dir.join(entry_file_name(purpose));
    let sealed = seal(
        &path,
        purpose.clone(),
        public.to_owned(),
        secret,
        KdfParams::INSECURE_DEV,
        &pass(),
    )
    .unwrap();
    write_atomic(
        &path,
        sealed.to_json(&path).unwrap().as_bytes(),
        Replace::No,
    )
    .unwrap();
    path
}

/// Reading the entry at `path` fails to decrypt (its associated data or bytes were changed).
fn assert_decrypt_fails(path: &Path, what: &str) {
    let read = read_entry(path, &pass());
    assert!(
        matches!(read, Err(KeystoreError::Decrypt(_))),
        "{what}: {read:?}"
    );
}

/// Rewrites an entry's JSON with `change` applied (keeping it 0600).
fn edit(path: &Path, change: impl FnOnce(&mut Value)) {
    let mut json: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    change(&mut json);
    std::fs::write(path, serde_json::to_string(&json).unwrap()).unwrap();
}

/// The names of the files in `dir`, sorted.
pub(in crate::keystore) fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn round_trip_each_purpose() {
    let dir = tempfile::tempdir().unwrap();
    let seed = [3u8; 32];
    let policy = SigningKey::from_bytes(&[4u8; 32])
        .verifying_key()
        .to_bytes();
    let cases: [(Purpose, &[u8], String); 3] = [
        (agent_purpose("trader"), &seed, address_of(&seed)),
        (Purpose::ApprovalSecret, &[0xa5; 32], String::new()),
        (Purpose::PolicyPin, &policy, hex::encode(policy)),
    ];
    for (purpose, secret, public) in cases {
        let path = write_entry(
            dir.path(),
            &purpose,
            secret,
            &public,
            KdfParams::INSECURE_DEV,
            true,
            &pass(),
        )
        .unwrap();
        assert_eq!(path, dir.path().join(entry_file_name(&purpose)));
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o7777,
            0o600
        );
        let entry = read_entry(&path, &pass()).unwrap();
        assert_eq!(entry.purpose, purpose);
        assert_eq!(entry.public, public);
        assert_eq!(entry.params, KdfParams::INSECURE_DEV);
        assert_eq!(entry.secret.as_slice(), secret);
        // Nothing secret in the file or in Debug.
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            !text.contains(&hex::encode(secret)) || purpose == Purpose::PolicyPin,
            "{text}"
        );
        assert!(!format!("{entry:?}").contains(&format!("{:?}", entry.secret.as_slice())));
    }
    // No temp file left behind.
    assert_eq!(
        names_in(dir.path()),
        ["agent.trader.solana.key", "approval.key", "policy.pin"]
    );
}

#[test]
fn file_layout_is_the_documented_one() {
    let (dir, fixture) = fixture_dir();
    let json: Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("agent.trader.solana.key")).unwrap(),
    )
    .unwrap();
    assert_eq!(json["vigil_keystore"], 1);
    assert_eq!(json["purpose"], "agent_key");
    assert_eq!(json["agent"], "trader");
    assert_eq!(json["chain"], "solana");
    assert_eq!(json["public"], fixture.addresses["trader"].as_str());
    assert_eq!(json["kdf"]["name"], "scrypt");
    assert_eq!(json["kdf"]["log_n"], 10);
    assert_eq!(json["kdf"]["salt"].as_str().unwrap().len(), 64);
    assert_eq!(json["cipher"]["name"], "aes-256-gcm");
    assert_eq!(json["cipher"]["nonce"].as_str().unwrap().len(), 24);
    assert_eq!(json["ciphertext"].as_str().unwrap().len(), 2 * (32 + 16));
    let approval: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("approval.key")).unwrap())
            .unwrap();
    assert!(approval.get("agent").is_none() && approval.get("chain").is_none());
    assert_eq!(approval["purpose"], "approval_secret");
}

#[test]
fn fresh_salt_and_nonce_per_file() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let write = |d: &TempDir| -> Value {
        let path = write_entry(
            d.path(),
            &Purpose::ApprovalSecret,
            &[1; 20],
            "",
            KdfParams::INSECURE_DEV,
            true,
            &pass(),
        )
        .unwrap();
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    };
    let (ja, jb) = (write(&a), write(&b));
    assert_ne!(ja["kdf"]["salt"], jb["kdf"]["salt"]);
    assert_ne!(ja["cipher"]["nonce"], jb["cipher"]["nonce"]);
    assert_ne!(ja["ciphertext"], jb["ciphertext"]);
}

#[test]
fn wrong_passphrase_is_one_clear_error() {
    let (dir, _) = fixture_dir();
    let path = dir.path().join("approval.key");
    let err = read_entry(
        &path,
        &SecretString::from("Correct horse battery staple".to_owned()),
    )
    .unwrap_err();
    assert!(matches!(err, KeystoreError::Decrypt(_)), "{err}");
    assert_eq!(
        err.to_string(),
        format!(
            "could not decrypt {}: wrong passphrase, or the file was altered or belongs to another agent",
            path.display()
        )
    );
}

#[test]
fn edited_metadata_fails_decryption() {
    let (dir, fixture) = fixture_dir();
    let saver_address = fixture.addresses["saver"].clone();
    let edits: Vec<(&str, Edit)> = vec![
        ("agent", Box::new(|v| v["agent"] = "saver".into())),
        ("public", Box::new(|v| v["public"] = saver_address.into())),
        ("kdf r", Box::new(|v| v["kdf"]["r"] = 9.into())),
        (
            "kdf salt",
            Box::new(|v| v["kdf"]["salt"] = hex::encode([0u8; 32]).into()),
        ),
        (
            "nonce",
            Box::new(|v| v["cipher"]["nonce"] = hex::encode([0u8; 12]).into()),
        ),
    ];
    for (what, change) in edits {
        let (dir2, _) = fixture_dir();
        let path = dir2.path().join("agent.trader.solana.key");
        edit(&path, change);
        let err = read_entry(&path, &pass()).unwrap_err();
        assert!(matches!(err, KeystoreError::Decrypt(_)), "{what}: {err}");
    }
    // An approval secret relabelled as the policy pin.
    let path = dir.path().join("approval.key");
    edit(&path, |v| v["purpose"] = "policy_pin".into());
    assert_decrypt_fails(&path, "an approval secret relabelled as the pin");
}

#[test]
fn another_agents_file_under_this_name_fails() {
    let (dir, _) = fixture_dir();
    let trader = dir.path().join("agent.trader.solana.key");
    std::fs::copy(dir.path().join("agent.saver.solana.key"), &trader).unwrap();
    // It still says "saver" inside: read_entry returns saver's entry, which unlock refuses by
    // name; and if the inside is edited to say "trader", the tag no longer matches.
    assert_eq!(
        read_entry(&trader, &pass()).unwrap().purpose,
        agent_purpose("saver")
    );
    edit(&trader, |v| v["agent"] = "trader".into());
    assert_decrypt_fails(&trader, "saver's key renamed to trader inside");
}

#[test]
fn flipped_ciphertext_or_tag_byte_fails() {
    for index in [0usize, 47] {
        let (dir, _) = fixture_dir();
        let path = dir.path().join("agent.trader.solana.key");
        edit(&path, |v| {
            let mut bytes = hex::decode(v["ciphertext"].as_str().unwrap()).unwrap();
            bytes[index] ^= 0x01;
            v["ciphertext"] = hex::encode(bytes).into();
        });
        assert!(
            matches!(read_entry(&path, &pass()), Err(KeystoreError::Decrypt(_))),
            "byte {index}"
        );
    }
}

#[test]
fn out_of_bounds_kdf_is_refused_before_scrypt() {
    let cases: [(&str, Value, &str); 5] = [
        ("log_n", 23.into(), "log_n must be between 10 and 22"),
        ("log_n", 63.into(), "log_n must be between 10 and 22"),
        ("log_n", 9.into(), "log_n must be between 10 and 22"),
        ("r", 0.into(), "r must be between 1 and 32"),
        ("p", 0.into(), "p must be between 1 and 16"),
    ];
    for (field, value, bound) in cases {
        let (dir, _) = fixture_dir();
        let path = dir.path().join("approval.key");
        edit(&path, |v| v["kdf"][field] = value);
        let start = Instant::now();
        let err = read_entry(&path, &pass()).unwrap_err();
        assert!(
            start.elapsed() < Duration::from_millis(200),
            "{field}: took {:?}",
            start.elapsed()
        );
        assert!(matches!(err, KeystoreError::KdfOutOfBounds { .. }), "{err}");
        let msg = err.to_string();
        assert!(msg.contains(bound) && msg.contains("approval.key"), "{msg}");
    }
}

#[test]
fn malformed_files_name_the_problem() {
    let cases: Vec<(Edit, &str)> = vec![
        (
            Box::new(|v| v["vigil_keystore"] = 2.into()),
            "format version 2",
        ),
        (
            Box::new(|v| v["vigil_keystore"] = "1".into()),
            "not a version number",
        ),
        (
            Box::new(|v| _ = v.as_object_mut().unwrap().remove("vigil_keystore")),
            "no \"vigil_keystore\"",
        ),
        (
            Box::new(|v| v["kdf"]["name"] = "argon2id".into()),
            "kdf \"argon2id\"",
        ),
        (
            Box::new(|v| v["cipher"]["name"] = "chacha20-poly1305".into()),
            "cipher \"chacha20-poly1305\"",
        ),
        (Box::new(|v| v["extra"] = 1.into()), "unknown field"),
        (
            Box::new(|v| v["kdf"]["salt"] = "zz".into()),
            "kdf.salt is not hex",
        ),
        (
            Box::new(|v| v["kdf"]["salt"] = "00".repeat(31).into()),
            "kdf.salt must be 32 bytes",
        ),
        (
            Box::new(|v| v["cipher"]["nonce"] = "00".repeat(16).into()),
            "cipher.nonce must be 12 bytes",
        ),
        (
            Box::new(|v| v["ciphertext"] = "abc".into()),
            "ciphertext is not hex",
        ),
        (
            Box::new(|v| v["ciphertext"] = "00".repeat(15).into()),
            "shorter than the 16-byte tag",
        ),
        (
            Box::new(|v| v["purpose"] = "wallet".into()),
            "unknown variant",
        ),
        (
            Box::new(|v| v["agent"] = "trader".into()),
            "only agent_key entries",
        ),
        (
            Box::new(|v| v["public"] = "a\nkdf=x".into()),
            "letters and digits",
        ),
        (
            Box::new(|v| v["kdf"]["log_n"] = 300.into()),
            "invalid value",
        ),
    ];
    for (change, expected) in cases {
        let (dir, _) = fixture_dir();
        let path = dir.path().join("approval.key");
        edit(&path, change);
        let msg = read_entry(&path, &pass()).unwrap_err().to_string();
        assert!(
            msg.contains(expected) && msg.contains("approval.key"),
            "want {expected:?}: {msg}"
        );
    }
    let (dir, _) = fixture_dir();
    let path = dir.path().join("approval.key");
    std::fs::write(&path, "not json").unwrap();
    assert!(matches!(
        read_entry(&path, &pass()),
        Err(KeystoreError::Malformed { .. })
    ));
    let path = dir.path().join("agent.trader.solana.key");
    edit(&path, |v| _ = v.as_object_mut().unwrap().remove("chain"));
    assert!(
        read_entry(&path, &pass())
            .unwrap_err()
            .to_string()
            .contains("needs \"agent\" and \"chain\"")
    );
}

#[test]
fn group_readable_entry_is_refused_before_decryption() {
    let (dir, _) = fixture_dir();
    let path = dir.path().join("approval.key");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
    // Even with a wrong passphrase, the permission error comes first.
    let err = read_entry(&path, &SecretString::from("wrong".to_owned())).unwrap_err();
    let fix = format!("chmod 600 {}", path.display());
    assert!(
        matches!(err, KeystoreError::InsecurePermissions { mode: 0o640, .. })
            && err.to_string().contains(&fix),
        "{err}"
    );
}

#[test]
fn weak_params_are_refused_unless_allowed() {
    let dir = tempfile::tempdir().unwrap();
    let err = write_entry(
        dir.path(),
        &Purpose::ApprovalSecret,
        &[1; 20],
        "",
        KdfParams::INSECURE_DEV,
        false,
        &pass(),
    )
    .unwrap_err();
    assert!(matches!(err, KeystoreError::WeakKdf { .. }), "{err}");
    assert!(err.to_string().contains("insecure_allow_weak_kdf"), "{err}");
    assert!(names_in(dir.path()).is_empty());
    // The gate itself, without running scrypt at production cost.
    let path = dir.path().join("approval.key");
    check_writable(&path, KdfParams::PRODUCTION, false).unwrap();
    check_writable(&path, KdfParams::INSECURE_DEV, true).unwrap();
    assert!(matches!(
        check_writable(
            &path,
            KdfParams {
                log_n: 17,
                r: 8,
                p: 1
            },
            false
        ),
        Err(KeystoreError::WeakKdf { .. })
    ));
    let too_big = KdfParams {
        log_n: 23,
        r: 8,
        p: 1,
    };
    assert!(matches!(
        check_writable(&path, too_big, true),
        Err(KeystoreError::KdfOutOfBounds { .. })
    ));
}

#[test]
fn secrets_that_do_not_fit_their_purpose_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let seed = [3u8; 32];
    let other = address_of(&[4u8; 32]);
    let policy = SigningKey::from_bytes(&[4u8; 32])
        .verifying_key()
        .to_bytes();
    let cases: Vec<(Purpose, Vec<u8>, String, &str)> = vec![
        (
            agent_purpose("trader"),
            seed[..31].to_vec(),
            address_of(&seed),
            "32 bytes, not 31",
        ),
        (
            agent_purpose("trader"),
            seed.to_vec(),
            other,
            "is not the address of the seed",
        ),
        (
            agent_purpose("trader"),
            seed.to_vec(),
            format!("{}\n", address_of(&seed)),
            "letters and digits",
        ),
        (
            Purpose::ApprovalSecret,
            vec![1; 19],
            String::new(),
            "20 to 128 bytes, not 19",
        ),
        (
            Purpose::ApprovalSecret,
            vec![1; 20],
            "abc".to_owned(),
            "public must be",
        ),
        (
            Purpose::PolicyPin,
            policy.to_vec(),
            hex::encode([0u8; 32]),
            "not the hex of the pinned key",
        ),
        (
            Purpose::PolicyPin,
            policy[..16].to_vec(),
            hex::encode(&policy[..16]),
            "not 16 bytes",
        ),
    ];
    for (purpose, secret, public, expected) in cases {
        let err = write_entry(
            dir.path(),
            &purpose,
            &secret,
            &public,
            KdfParams::INSECURE_DEV,
            true,
            &pass(),
        )
        .unwrap_err();
        assert!(matches!(err, KeystoreError::BadSecret { .. }), "{err}");
        assert!(
            err.to_string().contains(expected),
            "want {expected:?}: {err}"
        );
    }
    assert!(names_in(dir.path()).is_empty());
}

#[test]
fn an_existing_entry_is_never_overwritten() {
    let (dir, fixture) = fixture_dir();
    let before = std::fs::read(dir.path().join("approval.key")).unwrap();
    let err = write_entry(
        dir.path(),
        &Purpose::ApprovalSecret,
        &[9; 20],
        "",
        KdfParams::INSECURE_DEV,
        true,
        &pass(),
    )
    .unwrap_err();
    assert!(matches!(err, KeystoreError::EntryExists(_)), "{err}");
    assert_eq!(
        std::fs::read(dir.path().join("approval.key")).unwrap(),
        before
    );
    assert_eq!(
        *read_entry(&dir.path().join("approval.key"), &pass())
            .unwrap()
            .secret,
        fixture.approval
    );
    assert_eq!(names_in(dir.path()).len(), 4);
}

#[test]
fn decrypted_entry_debug_hides_the_secret() {
    let (dir, fixture) = fixture_dir();
    let entry = read_entry(&dir.path().join("approval.key"), &pass()).unwrap();
    let shown = format!("{entry:?}");
    assert!(shown.contains("ApprovalSecret"), "{shown}");
    assert!(
        !shown.contains("secret:") && !shown.contains(&format!("{:?}", fixture.approval)),
        "{shown}"
    );
}

#[test]
fn aes_key_schedule_zeroizes_on_drop() {
    // Fails to compile if the `zeroize` feature of `aes` is lost.
    fn zeroize_on_drop<T: zeroize::ZeroizeOnDrop>() {}
    zeroize_on_drop::<aes::Aes256>();
}
