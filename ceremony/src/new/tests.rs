//! The ceremony against a scripted operator: what lands on the stick, what never does, and
//! that every early stop leaves the stick untouched.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

use std::path::Path;
use std::sync::OnceLock;

use secrecy::SecretString;
use totp_rs::TOTP;
use vigil_protocol::Network;
use vigil_signer::import;
use vigil_signer::keystore::{self, KdfParams, Purpose};

use super::*;

pub(crate) const PASS: &str = "velvet-otter-quarry-lantern-9";
const NOW: u64 = 1_750_000_000;

/// Answers like an operator with an authenticator app; `wrong_codes` wrong answers first.
/// `while_approving` / `while_enrolling` run when the policy is shown / the QR code is
/// (e.g. a cable plugged in meanwhile).
pub(crate) struct Scripted {
    pub approve: bool,
    pub wrong_codes: u32,
    pub shown: Vec<String>,
    pub uri: Option<String>,
    pub progress: Vec<(usize, usize)>,
    /// How often the secret was taken off the screen.
    pub forgotten: u32,
    pub while_approving: Option<Box<dyn FnMut()>>,
    pub while_enrolling: Option<Box<dyn FnMut()>>,
}

impl Scripted {
    fn new() -> Self {
        Self {
            approve: true,
            wrong_codes: 0,
            shown: vec![],
            uri: None,
            progress: vec![],
            forgotten: 0,
            while_approving: None,
            while_enrolling: None,
        }
    }
}

impl Operator for Scripted {
    fn show(&mut self, text: &str) {
        self.shown.push(text.to_owned());
    }
    fn approve_policy(&mut self, summary: &str) -> Result<bool, CeremonyError> {
        self.shown.push(summary.to_owned());
        if let Some(f) = &mut self.while_approving {
            f();
        }
        Ok(self.approve)
    }
    fn enrol(&mut self, uri: &str, _qr: &str, _attempt: u32) -> Result<String, CeremonyError> {
        self.uri = Some(uri.to_owned());
        if let Some(f) = &mut self.while_enrolling {
            f();
        }
        if self.wrong_codes > 0 {
            self.wrong_codes -= 1;
            return Ok("000000".into());
        }
        Ok(TOTP::from_url(uri).unwrap().generate(NOW))
    }
    fn forget_secret(&mut self) {
        self.forgotten += 1;
    }
    fn progress(&mut self, step: usize, total: usize, _what: &str) {
        self.progress.push((step, total));
    }
    fn progress_done(&mut self) {}
    fn now(&self) -> u64 {
        NOW
    }
}

pub(crate) fn policy_text() -> String {
    format!(
        "version = 1\n[agents.trader]\nactions = [\"transfer\"]\nnetworks = [\"solana:devnet\", \"solana:mainnet\"]\nrecipients = [\"{}\"]\nrate_limit_per_minute = 30\n[agents.trader.assets.SOL]\nchain = \"solana\"\nper_tx_cap = \"2000000000\"\nvelocity_24h = \"10000000000\"\napproval_threshold = \"500000000\"\n",
        bs58_of([9u8; 32])
    )
}

fn bs58_of(b: [u8; 32]) -> String {
    vigil_signer::solana_address_of(&b)
}

pub(crate) fn ceremony(out: &Path, keep: bool) -> NewCeremony {
    NewCeremony {
        out: out.to_path_buf(),
        config: CeremonyConfig::parse(
            "operator = \"alice\"\n[agents.trader]\nchains = [\"solana\"]\n[agents.sentinel]\nchains = [\"solana\"]\n",
        )
        .unwrap(),
        policy_bytes: policy_text().into_bytes(),
        keep_policy_key: keep,
        air_gap: AirGap::insecure_test_reading(offline_sysfs(), false),
        kdf: KdfParams::INSECURE_DEV,
        insecure_weak_kdf: true,
        backup: Backup::Shamir { k: 2, n: 3 },
        reuse_policy_key: None,
    }
}

/// A fake sysfs with loopback only and no radios, shared by the tests of this binary.
fn offline_sysfs() -> &'static Path {
    static SYS: OnceLock<tempfile::TempDir> = OnceLock::new();
    SYS.get_or_init(|| {
        let sys = tempfile::tempdir().unwrap();
        set_interface(sys.path(), "lo", "0x9");
        std::fs::create_dir_all(sys.path().join("class/rfkill")).unwrap();
        sys
    })
    .path()
}

/// Writes interface `name` with `flags` (and operstate `up`) into the fake sysfs at `sys`.
fn set_interface(sys: &Path, name: &str, flags: &str) {
    let d = sys.join("class/net").join(name);
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(d.join("operstate"), "up\n").unwrap();
    std::fs::write(d.join("flags"), format!("{flags}\n")).unwrap();
}

/// A ceremony into `out` reading its own fake sysfs (loopback only to begin with), which a
/// test can change during the ceremony.
fn ceremony_on_own_network(out: &Path, online_override: bool) -> (NewCeremony, tempfile::TempDir) {
    let sys = tempfile::tempdir().unwrap();
    set_interface(sys.path(), "lo", "0x9");
    let mut c = ceremony(out, false);
    c.air_gap = AirGap::insecure_test_reading(sys.path(), online_override);
    (c, sys)
}

fn pass() -> SecretString {
    SecretString::from(PASS.to_owned())
}

fn listing(dir: &Path) -> Vec<String> {
    let mut v = Vec::new();
    fn walk(base: &Path, p: &Path, v: &mut Vec<String>) {
        for e in std::fs::read_dir(p).unwrap() {
            let e = e.unwrap();
            let rel = e
                .path()
                .strip_prefix(base)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            if e.path().is_dir() {
                walk(base, &e.path(), v);
            }
            v.push(rel);
        }
    }
    walk(dir, dir, &mut v);
    v.sort();
    v
}

#[test]
fn a_full_ceremony_writes_a_stick_the_signer_accepts() {
    let out = tempfile::tempdir().unwrap();
    let mut op = Scripted::new();
    let outcome = run(&ceremony(out.path(), false), &pass(), &mut op).unwrap();

    assert_eq!(
        listing(out.path()),
        [
            "keystore",
            "keystore/agent.trader.solana.devnet.key",
            "keystore/agent.trader.solana.mainnet.key",
            "keystore/approval.key",
            "keystore/policy.pin",
            "manifest.json",
            "manifest.json.sig",
            "policy",
            "policy/policy.toml",
            "policy/policy.toml.sig",
        ]
    );
    // The import's verifier and the signer's unlock both accept it.
    let verified = import::verify(out.path()).unwrap();
    assert_eq!(verified.manifest_digest, outcome.manifest_digest);
    let unlocked = keystore::unlock(&out.path().join("keystore"), &pass()).unwrap();
    assert_eq!(unlocked.agent_seeds.len(), 2);
    assert_eq!(
        hex::encode(unlocked.policy_public_key),
        outcome.manifest.policy_key.public
    );
    let key = ed25519_dalek::VerifyingKey::from_bytes(&unlocked.policy_public_key).unwrap();
    let loaded = policy::load_signed(&out.path().join("policy"), &key).unwrap();
    assert_eq!(loaded.digest_hex(), outcome.manifest.policy_digest);

    // The manifest records the agents with the keystore's addresses, and no secret.
    let m = &outcome.manifest;
    assert_eq!(m.agents.len(), 2);
    for a in &m.agents {
        let id = keystore::AgentKeyId {
            agent: a.agent.clone(),
            chain: a.chain,
            network: a.network,
            role: a.role,
        };
        assert_eq!(unlocked.agent_public[&id], a.address);
    }
    // A key per network the policy names: trader's devnet and mainnet keys differ.
    let networks: Vec<_> = m.agents.iter().map(|a| a.network).collect();
    assert_eq!(networks, [Some(Network::Devnet), Some(Network::Mainnet)]);
    assert_ne!(m.agents[0].address, m.agents[1].address);
    assert_ne!(m.agents[0].fingerprint, m.agents[1].fingerprint);
    assert_eq!(
        unlocked.version(),
        2,
        "one master key for the whole keystore"
    );
    assert!(!m.online_override && !m.policy_key_kept);
    assert_eq!(m.created_at, NOW);
    let text = std::fs::read_to_string(out.path().join("manifest.json")).unwrap();
    for seed in unlocked.agent_seeds.values() {
        assert!(!text.contains(&hex::encode(**seed)));
    }
    let uri = op.uri.unwrap();
    let secret_b32 = uri
        .split("secret=")
        .nth(1)
        .unwrap()
        .split('&')
        .next()
        .unwrap();
    for f in listing(out.path()) {
        let p = out.path().join(&f);
        if p.is_file() {
            let body = std::fs::read_to_string(&p).unwrap();
            assert!(!body.contains(secret_b32), "{f} holds the TOTP secret");
        }
    }
    // The approval secret in the keystore is the one enrolled.
    assert!(
        vigil_signer::code_matches(
            &unlocked.approval_secret,
            &TOTP::from_url(&uri).unwrap().generate(NOW).parse().unwrap(),
            NOW
        )
        .unwrap()
    );
    // Progress was shown for the one scrypt and each of the 4 entries; the backup has 3 shares.
    assert_eq!(op.progress, [(1, 5), (2, 5), (3, 5), (4, 5), (5, 5)]);
    assert_eq!(outcome.backup.matches("share ").count(), 3);
    assert!(
        op.shown
            .iter()
            .any(|s| s.contains("no rules for agent sentinel: it gets no key"))
    );
    assert!(
        op.shown
            .iter()
            .any(|s| s.contains("at most 2 SOL (2000000000 lamports) per transfer"))
    );
}

#[test]
fn the_policy_key_is_kept_only_when_asked_and_only_encrypted() {
    let out = tempfile::tempdir().unwrap();
    let outcome = run(&ceremony(out.path(), true), &pass(), &mut Scripted::new()).unwrap();
    assert!(outcome.manifest.policy_key_kept);
    let path = out.path().join("policy-key/policy-signing.key");
    let entry = keystore::read_entry(&path, &pass()).unwrap();
    assert_eq!(entry.purpose, Purpose::PolicyKey);
    assert_eq!(entry.public, outcome.manifest.policy_key.public);
    let seed_hex = hex::encode(&*entry.secret);
    assert!(!std::fs::read_to_string(&path).unwrap().contains(&seed_hex));
    // The stick still imports (the kept key is not part of what is imported).
    import::verify(out.path()).unwrap();
}

#[test]
fn early_stops_write_nothing() {
    // Wrong codes every time.
    let out = tempfile::tempdir().unwrap();
    let mut op = Scripted::new();
    op.wrong_codes = ENROL_ATTEMPTS;
    let err = run(&ceremony(out.path(), false), &pass(), &mut op).unwrap_err();
    assert!(err.to_string().contains("no matching code"), "{err}");
    assert!(listing(out.path()).is_empty());

    // Two wrong codes, then right: goes on.
    let mut op = Scripted::new();
    op.wrong_codes = ENROL_ATTEMPTS - 1;
    run(&ceremony(out.path(), false), &pass(), &mut op).unwrap();
    assert_eq!(
        op.shown
            .iter()
            .filter(|s| s.contains("does not match"))
            .count(),
        2
    );

    // A used stick is refused, and left as it was.
    let before = listing(out.path());
    let err = run(&ceremony(out.path(), false), &pass(), &mut Scripted::new()).unwrap_err();
    assert!(matches!(err, CeremonyError::OutputNotEmpty(..)), "{err}");
    assert_eq!(listing(out.path()), before);

    // The policy declined.
    let out = tempfile::tempdir().unwrap();
    let mut op = Scripted::new();
    op.approve = false;
    let err = run(&ceremony(out.path(), false), &pass(), &mut op).unwrap_err();
    assert!(err.to_string().contains("not approved"), "{err}");
    assert!(op.uri.is_none(), "no secret was shown");
    assert!(listing(out.path()).is_empty());

    // A policy about an agent without a key.
    let mut c = ceremony(out.path(), false);
    c.config = CeremonyConfig::parse("[agents.sentinel]\nchains = [\"solana\"]\n").unwrap();
    let err = run(&c, &pass(), &mut Scripted::new()).unwrap_err();
    assert!(
        err.to_string()
            .contains("agent trader, which the ceremony config does not"),
        "{err}"
    );
    // An invalid policy.
    let mut c = ceremony(out.path(), false);
    c.policy_bytes = b"version = 2\n".to_vec();
    let err = run(&c, &pass(), &mut Scripted::new()).unwrap_err();
    assert!(err.to_string().contains("version"), "{err}");
    // Weak scrypt parameters without the test override: refused by the signer's writer.
    let mut c = ceremony(out.path(), false);
    c.insecure_weak_kdf = false;
    let err = run(&c, &pass(), &mut Scripted::new()).unwrap_err();
    assert!(err.to_string().contains("weaker than production"), "{err}");
    assert!(listing(out.path()).is_empty());
}

#[test]
fn online_override_is_recorded() {
    let out = tempfile::tempdir().unwrap();
    let (c, sys) = ceremony_on_own_network(out.path(), true);
    set_interface(sys.path(), "eth0", "0x1003");
    // A second interface comes up during the ceremony: recorded too.
    let later = sys.path().to_path_buf();
    let mut op = Scripted::new();
    op.while_enrolling = Some(Box::new(move || set_interface(&later, "wlan0", "0x1003")));
    let outcome = run(&c, &pass(), &mut op).unwrap();
    assert!(outcome.manifest.online_override);
    assert_eq!(
        outcome.manifest.online_interfaces,
        ["eth0 (up, up)", "wlan0 (up, up)"]
    );
    let shown = std::fs::read_to_string(out.path().join("manifest.json")).unwrap();
    assert!(shown.contains("\"online_override\": true"), "{shown}");
}

/// Issue 15, finding 9: the air gap is checked again before the keys are made and before
/// anything is written; a machine that comes online meanwhile stops the ceremony with
/// nothing written. (The old ceremony checked once, at the start.)
#[test]
fn going_online_during_the_ceremony_stops_it_before_keys_and_before_writing() {
    // Online while the policy is read: no key is made, no secret shown.
    let out = tempfile::tempdir().unwrap();
    let (c, sys) = ceremony_on_own_network(out.path(), false);
    let mut op = Scripted::new();
    let plug = sys.path().to_path_buf();
    op.while_approving = Some(Box::new(move || set_interface(&plug, "eth0", "0x1003")));
    let err = run(&c, &pass(), &mut op).unwrap_err();
    assert!(
        matches!(&err, CeremonyError::Online(up) if up == &["eth0 (up, up)"]),
        "{err}"
    );
    assert!(op.uri.is_none(), "no secret was made or shown");
    assert!(listing(out.path()).is_empty());

    // Online while the authenticator is enrolled: nothing is written, the screen is cleared.
    let out = tempfile::tempdir().unwrap();
    let (c, sys) = ceremony_on_own_network(out.path(), false);
    let mut op = Scripted::new();
    let radio = sys.path().join("class/rfkill/rfkill0");
    op.while_enrolling = Some(Box::new(move || {
        std::fs::create_dir_all(&radio).unwrap();
        std::fs::write(radio.join("type"), "wlan\n").unwrap();
        std::fs::write(radio.join("soft"), "0\n").unwrap();
        std::fs::write(radio.join("hard"), "0\n").unwrap();
    }));
    let err = run(&c, &pass(), &mut op).unwrap_err();
    assert!(matches!(err, CeremonyError::Online(_)), "{err}");
    assert!(op.uri.is_some(), "it got as far as enrolment");
    assert_eq!(op.forgotten, 1, "the secret left the screen");
    assert!(op.progress.is_empty(), "nothing was encrypted");
    assert!(listing(out.path()).is_empty());
}

/// Issue 15, finding 3: the approval secret leaves the screen right after enrolment, matched
/// or not.
#[test]
fn the_secret_leaves_the_screen_after_enrolment_whatever_the_outcome() {
    let out = tempfile::tempdir().unwrap();
    let mut op = Scripted::new();
    run(&ceremony(out.path(), false), &pass(), &mut op).unwrap();
    assert_eq!(op.forgotten, 1);
    let out = tempfile::tempdir().unwrap();
    let mut op = Scripted::new();
    op.wrong_codes = ENROL_ATTEMPTS;
    run(&ceremony(out.path(), false), &pass(), &mut op).unwrap_err();
    assert_eq!(op.forgotten, 1);
}

#[test]
fn policy_sign_uses_the_kept_key_and_refuses_without_one() {
    let out = tempfile::tempdir().unwrap();
    let outcome = run(&ceremony(out.path(), true), &pass(), &mut Scripted::new()).unwrap();
    let newer = policy_text().replace("rate_limit_per_minute = 30", "rate_limit_per_minute = 5");
    let dir = crate::policy_sign::sign(out.path(), newer.as_bytes(), &pass(), &mut Scripted::new())
        .unwrap();
    let key_bytes = outcome.manifest.policy_key_bytes().unwrap();
    let key = ed25519_dalek::VerifyingKey::from_bytes(&key_bytes).unwrap();
    let loaded = policy::load_signed(&dir, &key).unwrap();
    assert_eq!(
        loaded.agents.values().next().unwrap().rate_limit_per_minute,
        5
    );
    // Again: refused, the update is already there.
    let err = crate::policy_sign::sign(out.path(), newer.as_bytes(), &pass(), &mut Scripted::new())
        .unwrap_err();
    assert!(matches!(err, CeremonyError::OutputNotEmpty(..)), "{err}");
    // Wrong passphrase: cannot decrypt.
    std::fs::remove_dir_all(&dir).unwrap();
    let err = crate::policy_sign::sign(
        out.path(),
        newer.as_bytes(),
        &SecretString::from("another-long-passphrase".to_owned()),
        &mut Scripted::new(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("could not decrypt"), "{err}");
    assert!(!dir.exists());

    let out = tempfile::tempdir().unwrap();
    run(&ceremony(out.path(), false), &pass(), &mut Scripted::new()).unwrap();
    let err = crate::policy_sign::sign(out.path(), newer.as_bytes(), &pass(), &mut Scripted::new())
        .unwrap_err();
    assert!(err.to_string().contains("needs a new ceremony"), "{err}");
}

/// A ceremony whose trader also has `chain`, its policy moved from Solana mainnet to
/// `network` with `actions`, and `extra` (that network's assets and table) appended.
fn trader_also_on(
    out: &Path,
    chain: &str,
    network: &str,
    actions: &str,
    extra: &str,
) -> NewCeremony {
    let mut c = ceremony(out, false);
    c.config = CeremonyConfig::parse(&format!(
        "operator = \"alice\"\n[agents.trader]\nchains = [\"solana\", \"{chain}\"]\n[agents.sentinel]\nchains = [\"solana\"]\n"
    ))
    .unwrap();
    let policy = policy_text()
        .replace(
            "networks = [\"solana:devnet\", \"solana:mainnet\"]",
            &format!("networks = [\"solana:devnet\", \"{network}\"]"),
        )
        .replace(
            "actions = [\"transfer\"]",
            &format!("actions = [{actions}]"),
        )
        + extra;
    c.policy_bytes = policy.into_bytes();
    c
}

#[test]
fn an_evm_network_gets_secp256k1_keys_the_signer_accepts() {
    let out = tempfile::tempdir().unwrap();
    let c = trader_also_on(
        out.path(),
        "evm",
        "evm:devnet",
        "\"transfer\", \"aave_supply\"",
        "[agents.trader.assets.ETH]\nchain = \"evm\"\nper_tx_cap = \"10\"\nvelocity_24h = \"100\"\napproval_threshold = \"5\"\n\
           [networks.\"evm:devnet\"]\nchain_id = 31337\ngenesis_hash = \"0x0707070707070707070707070707070707070707070707070707070707070707\"\n\
           max_gas_limit = 500000\nmax_fee_per_gas = \"100000000000\"\naave_pool = \"0x1111111111111111111111111111111111111111\"\n\
           [networks.\"evm:devnet\".tokens.USDC]\naddress = \"0x2222222222222222222222222222222222222222\"\ndecimals = 6\napprove_zero_first = true\n",
    );
    let mut op = Scripted::new();
    let outcome = run(&c, &pass(), &mut op).unwrap();
    assert!(listing(out.path()).contains(&"keystore/agent.trader.evm.devnet.key".to_owned()));
    // The import's verifier (fingerprints of the 20 address bytes) and the unlock accept it.
    import::verify(out.path()).unwrap();
    let unlocked = keystore::unlock(&out.path().join("keystore"), &pass()).unwrap();
    let evm = outcome
        .manifest
        .agents
        .iter()
        .find(|a| a.chain == vigil_protocol::Chain::Evm)
        .unwrap();
    let id = keystore::AgentKeyId {
        agent: evm.agent.clone(),
        chain: evm.chain,
        network: evm.network,
        role: None,
    };
    assert_eq!(unlocked.agent_public[&id], evm.address);
    let key = vigil_signer::Secp256k1Key::from_secret(&unlocked.agent_seeds[&id]).unwrap();
    assert_eq!(
        key.address_text(),
        evm.address,
        "EIP-55 address of the stored secret"
    );
    // The operator approved the EVM table: the chain id, the Pool and the token.
    let summary = op
        .shown
        .iter()
        .find(|s| s.starts_with("Policy (digest"))
        .unwrap();
    for part in [
        "network evm:devnet: chain id 31337",
        "Aave Pool: 0x1111111111111111111111111111111111111111",
        "token USDC: 0x2222222222222222222222222222222222222222 (6 decimals), approve(0) first",
    ] {
        assert!(summary.contains(part), "{part}: {summary}");
    }
}

#[test]
fn a_hyperliquid_network_gets_an_api_wallet_and_a_master_key() {
    let out = tempfile::tempdir().unwrap();
    let c = trader_also_on(
        out.path(),
        "hyperliquid",
        "hyperliquid:testnet",
        "\"transfer\", \"perp_order\", \"perp_leverage\"",
        "[agents.trader.assets.ETH]\nchain = \"hyperliquid\"\nper_tx_cap = \"2000000000\"\nvelocity_24h = \"10000000000\"\napproval_threshold = \"1000000000\"\n\
           [networks.\"hyperliquid:testnet\"]\nperps.ETH = { coin = \"ETH\", index = 1, sz_decimals = 4, max_leverage = 5, max_position_notional = \"5000000000\" }\n",
    );
    let mut op = Scripted::new();
    let outcome = run(&c, &pass(), &mut op).unwrap();
    let files = listing(out.path());
    for role in ["api_wallet", "master"] {
        let name = format!("keystore/agent.trader.hyperliquid.testnet.{role}.key");
        assert!(files.contains(&name), "{name}: {files:?}");
    }
    import::verify(out.path()).unwrap();
    let unlocked = keystore::unlock(&out.path().join("keystore"), &pass()).unwrap();
    let hl: Vec<_> = outcome
        .manifest
        .agents
        .iter()
        .filter(|a| a.chain == vigil_protocol::Chain::Hyperliquid)
        .collect();
    assert_eq!(hl.len(), 2, "{hl:?}");
    assert_ne!(hl[0].address, hl[1].address, "two unrelated keys");
    let mut roles: Vec<_> = hl.iter().map(|a| a.role).collect();
    roles.sort();
    assert_eq!(
        roles,
        vec![
            Some(keystore::KeyRole::ApiWallet),
            Some(keystore::KeyRole::Master)
        ]
    );
    for a in &hl {
        let id = keystore::AgentKeyId {
            agent: a.agent.clone(),
            chain: a.chain,
            network: a.network,
            role: a.role,
        };
        assert_eq!(unlocked.agent_public[&id], a.address);
        let key = vigil_signer::Secp256k1Key::from_secret(&unlocked.agent_seeds[&id]).unwrap();
        assert_eq!(key.address_text(), a.address);
    }
    // The operator approved the perpetuals table and the caps in dollars.
    let summary = op
        .shown
        .iter()
        .find(|s| s.starts_with("Policy (digest"))
        .unwrap();
    for part in [
        "network hyperliquid:testnet: signs for the Hyperliquid testnet exchange",
        "perp ETH: coin ETH, asset index 1, 4 size decimals, leverage at most 5x, position at most 5000.00 USD",
        "ETH perpetual on hyperliquid, notional: at most 2000.00 USD (2000000000 micro-USD) per order",
    ] {
        assert!(summary.contains(part), "{part}: {summary}");
    }
}
