//! Tests of the entry format: round trips, tampering, bounds, permissions, and the fixture
//! keystore (two agents, approval secret, policy pin) that the `unlock` tests share.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use serde_json::Value;
use tempfile::TempDir;
use vigil_protocol::Network;

use super::*;

/// A change made to an entry's JSON.
type Edit = Box<dyn FnOnce(&mut Value)>;
/// A file name and its bytes.
type NamedFile = (String, Vec<u8>);

/// The passphrase of every fixture.
pub(in crate::keystore) fn pass() -> SecretString {
    SecretString::from("correct horse battery staple".to_owned())
}

/// A master key for a new fixture keystore (test-cost scrypt).
pub(in crate::keystore) fn master() -> MasterKey {
    MasterKey::create(&pass(), KdfParams::INSECURE_DEV, true).unwrap()
}

/// What the fixture keystore holds, to compare against.
#[derive(Clone)]
pub(in crate::keystore) struct Fixture {
    pub seeds: BTreeMap<&'static str, [u8; 32]>,
    pub addresses: BTreeMap<&'static str, String>,
    pub approval: [u8; 20],
    pub policy_key: [u8; 32],
}

/// `name`'s Solana devnet key.
pub(in crate::keystore) fn agent_purpose(name: &str) -> Purpose {
    Purpose::agent_key(name.parse().unwrap(), Chain::Solana, Network::Devnet)
}

fn address_of(seed: &[u8; 32]) -> String {
    chain_address(Chain::Solana, &Zeroizing::new(*seed)).unwrap()
}

/// The format 1 keystore `vigil-signer dev-init` wrote before keys were per network (agents
/// trader and sentinel; kept in the test kit's fixtures, made by that release), copied into a
/// fresh directory with private modes; and its passphrase.
pub(in crate::keystore) fn format1_dir() -> (TempDir, SecretString) {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("../testkit/fixtures/state-v1");
    let dir = tempfile::tempdir().unwrap();
    for name in names_in(&fixture.join("keystore")) {
        let bytes = std::fs::read(fixture.join("keystore").join(&name)).unwrap();
        write_atomic(&dir.path().join(name), &bytes, Replace::No).unwrap();
    }
    let text = std::fs::read_to_string(fixture.join("dev/passphrase")).unwrap();
    (dir, SecretString::from(text.trim_end().to_owned()))
}

/// A keystore with agents "trader" and "saver" on Solana devnet, an approval secret and a
/// policy pin, in a fresh directory, all under one master key. The files are encrypted once per
/// test run and copied (scrypt is slow in a debug build), so every fixture directory holds the
/// same salts and nonces.
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
    let master = master();
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
        write_entry(dir.path(), &agent_purpose(name), &seed, &address, &master).unwrap();
        fixture.seeds.insert(name, seed);
        fixture.addresses.insert(name, address);
    }
    write_entry(
        dir.path(),
        &Purpose::ApprovalSecret,
        &fixture.approval,
        "",
        &master,
    )
    .unwrap();
    let key = fixture.policy_key;
    write_entry(
        dir.path(),
        &Purpose::PolicyPin,
        &key,
        &hex::encode(key),
        &master,
    )
    .unwrap();
    (dir, fixture)
}

/// Writes a correctly encrypted entry (under `master`) without `write_entry`'s checks.
pub(in crate::keystore) fn write_unchecked(
    dir: &Path,
    purpose: &Purpose,
    secret: &[u8],
    public: &str,
    master: &MasterKey,
) -> PathBuf {
    let path = dir.join(entry_file_name(purpose));
    let sealed = seal(&path, purpose.clone(), public.to_owned(), secret, master).unwrap();
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
    let master = master();
    let seed = [3u8; 32];
    let policy = SigningKey::from_bytes(&[4u8; 32])
        .verifying_key()
        .to_bytes();
    let cases: [(Purpose, &[u8], String); 4] = [
        (agent_purpose("trader"), &seed, address_of(&seed)),
        (
            Purpose::agent_key("trader".parse().unwrap(), Chain::Solana, Network::Mainnet),
            &[8u8; 32],
            address_of(&[8u8; 32]),
        ),
        (Purpose::ApprovalSecret, &[0xa5; 32], String::new()),
        (Purpose::PolicyPin, &policy, hex::encode(policy)),
    ];
    for (purpose, secret, public) in cases {
        let path = write_entry(dir.path(), &purpose, secret, &public, &master).unwrap();
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
        [
            "agent.trader.solana.devnet.key",
            "agent.trader.solana.mainnet.key",
            "approval.key",
            "policy.pin"
        ]
    );
}

#[test]
fn file_layout_is_the_documented_one() {
    let (dir, fixture) = fixture_dir();
    let read = |name: &str| -> Value {
        serde_json::from_str(&std::fs::read_to_string(dir.path().join(name)).unwrap()).unwrap()
    };
    let json = read("agent.trader.solana.devnet.key");
    assert_eq!(json["vigil_keystore"], 2);
    assert_eq!(json["purpose"], "agent_key");
    assert_eq!(json["agent"], "trader");
    assert_eq!(json["chain"], "solana");
    assert_eq!(json["network"], "devnet");
    assert_eq!(json["public"], fixture.addresses["trader"].as_str());
    assert_eq!(json["kdf"]["name"], "scrypt");
    assert_eq!(json["kdf"]["log_n"], 10);
    assert_eq!(json["kdf"]["salt"].as_str().unwrap().len(), 64);
    assert_eq!(json["key"]["name"], "hkdf-sha256");
    assert_eq!(json["key"]["salt"].as_str().unwrap().len(), 64);
    assert_eq!(json["cipher"]["name"], "aes-256-gcm");
    assert_eq!(json["cipher"]["nonce"].as_str().unwrap().len(), 24);
    assert_eq!(json["ciphertext"].as_str().unwrap().len(), 2 * (32 + 16));
    let approval = read("approval.key");
    assert!(
        approval.get("agent").is_none()
            && approval.get("chain").is_none()
            && approval.get("network").is_none()
    );
    assert_eq!(approval["purpose"], "approval_secret");
    // One master salt for the keystore, one key salt and one nonce per entry.
    assert_eq!(approval["kdf"], json["kdf"]);
    assert_ne!(approval["key"]["salt"], json["key"]["salt"]);
    assert_ne!(approval["cipher"]["nonce"], json["cipher"]["nonce"]);
}

#[test]
fn fresh_salts_and_nonce_per_keystore_and_entry() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let write = |d: &TempDir, master: &MasterKey| -> Value {
        let path = write_entry(d.path(), &Purpose::ApprovalSecret, &[1; 20], "", master).unwrap();
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    };
    let (ja, jb) = (write(&a, &master()), write(&b, &master()));
    assert_ne!(
        ja["kdf"]["salt"], jb["kdf"]["salt"],
        "a master salt per keystore"
    );
    assert_ne!(ja["key"]["salt"], jb["key"]["salt"]);
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
            "could not decrypt {}: wrong passphrase, or the file was altered or belongs to another agent or network",
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
        ("network", Box::new(|v| v["network"] = "mainnet".into())),
        ("public", Box::new(|v| v["public"] = saver_address.into())),
        ("kdf r", Box::new(|v| v["kdf"]["r"] = 9.into())),
        (
            "kdf salt",
            Box::new(|v| v["kdf"]["salt"] = hex::encode([0u8; 32]).into()),
        ),
        (
            "key salt",
            Box::new(|v| v["key"]["salt"] = hex::encode([0u8; 32]).into()),
        ),
        (
            "nonce",
            Box::new(|v| v["cipher"]["nonce"] = hex::encode([0u8; 12]).into()),
        ),
    ];
    for (what, change) in edits {
        let (dir2, _) = fixture_dir();
        let path = dir2.path().join("agent.trader.solana.devnet.key");
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
fn a_devnet_key_relabelled_mainnet_does_not_open() {
    // The attack of issue 13 at rest: the devnet key's file renamed and edited to say mainnet.
    let (dir, _) = fixture_dir();
    let devnet = dir.path().join("agent.trader.solana.devnet.key");
    let mainnet = dir.path().join("agent.trader.solana.mainnet.key");
    std::fs::rename(&devnet, &mainnet).unwrap();
    edit(&mainnet, |v| v["network"] = "mainnet".into());
    assert_decrypt_fails(&mainnet, "a devnet key labelled mainnet");
}

#[test]
fn another_agents_file_under_this_name_fails() {
    let (dir, _) = fixture_dir();
    let trader = dir.path().join("agent.trader.solana.devnet.key");
    std::fs::copy(dir.path().join("agent.saver.solana.devnet.key"), &trader).unwrap();
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
        let path = dir.path().join("agent.trader.solana.devnet.key");
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
            Box::new(|v| v["vigil_keystore"] = 3.into()),
            "format version 3",
        ),
        (
            Box::new(|v| v["vigil_keystore"] = "2".into()),
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
            Box::new(|v| v["key"]["name"] = "pbkdf2".into()),
            "key \"pbkdf2\"",
        ),
        (
            Box::new(|v| _ = v.as_object_mut().unwrap().remove("key")),
            "needs \"key\"",
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
            Box::new(|v| v["key"]["salt"] = "00".repeat(33).into()),
            "key.salt must be 32 bytes",
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
            Box::new(|v| v["network"] = "devnet".into()),
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
    for field in ["chain", "network"] {
        let (dir, _) = fixture_dir();
        let path = dir.path().join("agent.trader.solana.devnet.key");
        edit(&path, |v| _ = v.as_object_mut().unwrap().remove(field));
        let msg = read_entry(&path, &pass()).unwrap_err().to_string();
        assert!(
            msg.contains("needs \"agent\", \"chain\" and \"network\""),
            "{field}: {msg}"
        );
    }
}

#[test]
fn format_1_entries_made_before_keys_were_per_network_still_open() {
    let (dir, passphrase) = format1_dir();
    let report: Value = serde_json::from_str(
        &std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../testkit/fixtures/state-v1/dev-init-report.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let path = dir.path().join("agent.trader.solana.key");
    let entry = read_entry(&path, &passphrase).unwrap();
    assert_eq!(
        entry.purpose,
        Purpose::AgentKey {
            agent: "trader".parse().unwrap(),
            chain: Chain::Solana,
            network: None,
            role: None,
        }
    );
    assert_eq!(entry.public, report["agents"][0]["addresses"]["solana"]);
    assert_eq!(
        inspect_entry(&path, &std::fs::read_to_string(&path).unwrap())
            .unwrap()
            .version,
        1
    );
    // Its associated data still binds its metadata.
    edit(&path, |v| v["agent"] = "sentinel".into());
    assert!(matches!(
        read_entry(&path, &passphrase),
        Err(KeystoreError::Decrypt(_))
    ));
    // A format 1 file cannot be given a network or a format 2 key derivation.
    let (dir, passphrase) = format1_dir();
    let path = dir.path().join("agent.trader.solana.key");
    edit(&path, |v| v["network"] = "devnet".into());
    let msg = read_entry(&path, &passphrase).unwrap_err().to_string();
    assert!(msg.contains("format 1 agent_key entry names no"), "{msg}");
    let path = dir.path().join("approval.key");
    edit(
        &path,
        |v| v["key"] = serde_json::json!({"name": "hkdf-sha256", "salt": "00".repeat(32)}),
    );
    let msg = read_entry(&path, &passphrase).unwrap_err().to_string();
    assert!(msg.contains("a format 1 entry has no \"key\""), "{msg}");
    // And a format 2 agent key may not drop its network to pass as format 1.
    let (dir, _) = fixture_dir();
    let path = dir.path().join("agent.trader.solana.devnet.key");
    edit(&path, |v| {
        let o = v.as_object_mut().unwrap();
        o.remove("network");
        o.remove("key");
        o.insert("vigil_keystore".into(), 1.into());
    });
    assert_decrypt_fails(&path, "a format 2 key dressed as format 1");
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
fn secrets_that_do_not_fit_their_purpose_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let master = master();
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
            Purpose::AgentKey {
                agent: "trader".parse().unwrap(),
                chain: Chain::Solana,
                network: None,
                role: None,
            },
            seed.to_vec(),
            address_of(&seed),
            "must name the network it serves",
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
        let err = write_entry(dir.path(), &purpose, &secret, &public, &master).unwrap_err();
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
        &master(),
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
