//! `vigil-ceremony new`: the ceremony itself, in a fixed order where nothing touches the
//! stick until the operator has approved the policy and proved the authenticator works:
//!
//! 1. refuse a stick that already holds a ceremony; check the air gap;
//! 2. check the policy against the config and show it for a last look;
//! 3. check the air gap again, then generate every key and the approval secret from the OS
//!    CSPRNG: one key per agent, chain and network the policy names for it (a devnet key never
//!    serves mainnet);
//! 4. show the approval secret's QR code, require a current code back, and clear the screen
//!    and its scrollback (whatever the outcome);
//! 5. check the air gap again, then write the keystore (one scrypt for its master key, with
//!    progress, then every entry under it), the signed policy, the kept policy key (only if
//!    asked, only encrypted, under the same master key) and the signed manifest into a temp
//!    dir on the stick;
//! 6. check the result with the signer's own import verifier;
//! 7. rename it into place, `manifest.json` last;
//! 8. hand back the paper backup text for the terminal.

use std::collections::BTreeMap;
use std::path::PathBuf;

use secrecy::SecretString;
use vigil_protocol::{AgentId, AssetSymbol, Chain, Network, OperatorCode};
use vigil_signer::Ed25519Key;
use vigil_signer::import::manifest::{
    AgentInfo, FileInfo, KEYSTORE_DIR, MANIFEST_FILE, MANIFEST_SIG_FILE, Manifest, POLICY_DIR,
    POLICY_KEY_DIR, PolicyKeyInfo,
};
use vigil_signer::import::{self, manifest};
use vigil_signer::keystore::{self, KdfParams, KeyRole, MasterKey, Purpose};
use vigil_signer::policy;
use zeroize::Zeroizing;

use crate::backup::{self, Backup, SeedToBackUp};
use crate::config::CeremonyConfig;
use crate::error::CeremonyError;
use crate::network::AirGap;
use crate::output::Staging;
use crate::qr;

/// How many wrong enrolment codes are tolerated before the ceremony stops.
pub const ENROL_ATTEMPTS: u32 = 3;
/// Bytes of the approval secret (160 bits, as RFC 4226 recommends; every app accepts it).
const APPROVAL_SECRET_LEN: usize = 20;
/// What goes on the stick, in the order it is renamed into place (`manifest.json` last).
pub const STICK_ITEMS: &[&str] = &[
    KEYSTORE_DIR,
    POLICY_DIR,
    POLICY_KEY_DIR,
    MANIFEST_SIG_FILE,
    MANIFEST_FILE,
];

/// Everything the ceremony needs, from the command line.
#[derive(Debug)]
pub struct NewCeremony {
    /// The stick's directory.
    pub out: PathBuf,
    /// Agents and chains.
    pub config: CeremonyConfig,
    /// The policy file's exact bytes.
    pub policy_bytes: Vec<u8>,
    /// Write the policy signing key (encrypted) to `policy-key/`.
    pub keep_policy_key: bool,
    /// The air-gap check (run three times) and whether `--i-know-this-is-online` overrides it.
    pub air_gap: AirGap,
    /// scrypt parameters of every entry.
    pub kdf: KdfParams,
    /// Allow `kdf` weaker than production (tests only).
    pub insecure_weak_kdf: bool,
    /// The paper backup to print.
    pub backup: Backup,
    /// Sign with this policy key (kept from an earlier ceremony, `--policy-key-from`) instead
    /// of a new one: an appliance that pins it then accepts this stick's keys on the new
    /// authenticator's code alone (the policy key is the current authority), e.g. after the
    /// operator's phone was lost.
    pub reuse_policy_key: Option<Zeroizing<[u8; 32]>>,
}

/// The person at the ceremony machine: how the ceremony shows things and asks.
pub trait Operator {
    /// Shows a line of information.
    fn show(&mut self, text: &str);
    /// Shows the policy summary; true to sign it.
    fn approve_policy(&mut self, summary: &str) -> Result<bool, CeremonyError>;
    /// Shows the QR code and URI; returns the code the operator's authenticator shows now.
    fn enrol(&mut self, uri: &str, qr: &str, attempt: u32) -> Result<String, CeremonyError>;
    /// Enrolment is over (matched or not): take the approval secret off the screen, its
    /// scrollback included.
    fn forget_secret(&mut self);
    /// Step `step` of `total` of writing the keystore starts (`what` says what it does).
    fn progress(&mut self, step: usize, total: usize, what: &str);
    /// The slow part is over.
    fn progress_done(&mut self);
    /// Unix seconds now (the TOTP check and the manifest's time).
    fn now(&self) -> u64;
}

/// What the ceremony made.
#[derive(Debug)]
pub struct Outcome {
    /// The signed manifest.
    pub manifest: Manifest,
    /// SHA-256 of `manifest.json` (hex): what the operator confirms on the appliance.
    pub manifest_digest: String,
    /// The paper backup text (secret): print it to the terminal, never store it.
    pub backup: Zeroizing<String>,
}

/// A generated agent key, kept until it is encrypted.
struct AgentKey {
    agent: AgentId,
    chain: Chain,
    network: Network,
    /// Hyperliquid: the API wallet or the master account; `None` on one-key chains.
    role: Option<KeyRole>,
    address: String,
    fingerprint: String,
    seed: Zeroizing<[u8; 32]>,
}

/// Runs the ceremony (see the module docs).
pub fn run(
    c: &NewCeremony,
    passphrase: &SecretString,
    op: &mut dyn Operator,
) -> Result<Outcome, CeremonyError> {
    // 1. A used stick is refused before anything else happens; then the air gap (checked
    // again at 3 and 5: what was seen online with the override goes into the manifest).
    let staging = Staging::new(&c.out, STICK_ITEMS)?;
    let mut seen_online = Vec::new();
    recheck(&c.air_gap, &mut seen_online)?;

    // 2. The policy: valid, about the ceremony's agents, and approved by the operator.
    let parsed =
        policy::parse(&c.policy_bytes).map_err(|e| CeremonyError::Policy(e.to_string()))?;
    for agent in parsed.agents.keys() {
        if !c.config.agents.contains_key(agent) {
            return Err(CeremonyError::Policy(format!(
                "it names agent {agent}, which the ceremony config does not: add [agents.{agent}] to the config or remove it from the policy"
            )));
        }
    }
    for agent in c.config.agents.keys() {
        if !parsed.agents.contains_key(agent) {
            op.show(&format!("note: the policy names no rules for agent {agent}: it gets no key (keys are made per network the policy names), and a later policy cannot give it one without a new ceremony"));
        }
    }
    if !op.approve_policy(&summarize_policy(&parsed))? {
        return Err(CeremonyError::Aborted(
            "the policy was not approved; nothing was written".into(),
        ));
    }

    // 3. Keys and the approval secret, from the OS CSPRNG, on a machine still offline.
    recheck(&c.air_gap, &mut seen_online)?;
    let random_err =
        |e: getrandom::Error| CeremonyError::Other(format!("the OS random source failed: {e}"));
    let mut agents = Vec::new();
    for (agent, chains) in &c.config.agents {
        for chain in chains {
            for network in parsed.agent_networks(agent, *chain) {
                // Hyperliquid: two unrelated keys, the API wallet and the master account.
                for &role in KeyRole::for_chain(*chain) {
                    let made = vigil_signer::new_agent_key(*chain).map_err(random_err)?;
                    agents.push(AgentKey {
                        agent: agent.clone(),
                        chain: *chain,
                        network,
                        role,
                        address: made.address,
                        fingerprint: manifest::fingerprint(&made.fingerprint_bytes),
                        seed: made.secret,
                    });
                }
            }
        }
    }
    if agents.is_empty() {
        return Err(CeremonyError::Policy(
            "it gives no agent of the config a network of the agent's chains, so no key would be made: name e.g. networks = [\"solana:devnet\"] for an agent".into(),
        ));
    }
    let (policy_key, policy_seed) = match &c.reuse_policy_key {
        Some(seed) => (Ed25519Key::from_seed(seed), seed.clone()),
        None => Ed25519Key::generate().map_err(random_err)?,
    };
    let mut approval_secret = Zeroizing::new(vec![0u8; APPROVAL_SECRET_LEN]);
    getrandom::getrandom(&mut approval_secret).map_err(random_err)?;

    // 4. Enrol the approval secret: QR on the screen, a current code typed back, then the
    // screen cleared.
    enrol(&approval_secret, &c.config.operator, op)?;

    // 5. Write everything into the temp dir on the stick, from a machine still offline:
    //    scrypt once (the slow part), then every entry under that master key.
    recheck(&c.air_gap, &mut seen_online)?;
    let ks = staging.dir(KEYSTORE_DIR)?;
    let total = agents.len() + 3 + usize::from(c.keep_policy_key);
    op.progress(
        1,
        total,
        "deriving the keystore's master key from the passphrase (scrypt)",
    );
    let master = MasterKey::create(passphrase, c.kdf, c.insecure_weak_kdf)?;
    let mut step = 1;
    let mut entry = |purpose: &Purpose,
                     secret: &[u8],
                     public: &str,
                     dir: &std::path::Path,
                     op: &mut dyn Operator| {
        step += 1;
        op.progress(step, total, &format!("encrypting {purpose}"));
        keystore::write_entry(dir, purpose, secret, public, &master)
    };
    for a in &agents {
        let purpose = match a.role {
            Some(role) => Purpose::hyperliquid_key(a.agent.clone(), a.network, role),
            None => Purpose::agent_key(a.agent.clone(), a.chain, a.network),
        };
        entry(&purpose, &a.seed[..], &a.address, &ks, op)?;
    }
    entry(&Purpose::ApprovalSecret, &approval_secret, "", &ks, op)?;
    let policy_public = policy_key.public_bytes();
    entry(
        &Purpose::PolicyPin,
        &policy_public,
        &hex::encode(policy_public),
        &ks,
        op,
    )?;
    if c.keep_policy_key {
        let dir = staging.dir(POLICY_KEY_DIR)?;
        entry(
            &Purpose::PolicyKey,
            &policy_seed[..],
            &hex::encode(policy_public),
            &dir,
            op,
        )?;
    }
    op.progress_done();
    drop(approval_secret);
    drop(policy_seed);

    staging.dir(POLICY_DIR)?;
    let sig = policy_key.sign(&policy::signing_message(&c.policy_bytes));
    staging.file(
        &format!("{POLICY_DIR}/{}", policy::POLICY_FILE),
        &c.policy_bytes,
    )?;
    staging.file(
        &format!("{POLICY_DIR}/{}", policy::SIGNATURE_FILE),
        policy::signature_file_contents(&sig).as_bytes(),
    )?;

    let mut infos: Vec<AgentInfo> = agents
        .iter()
        .map(|a| AgentInfo {
            agent: a.agent.clone(),
            chain: a.chain,
            network: Some(a.network),
            role: a.role,
            address: a.address.clone(),
            fingerprint: a.fingerprint.clone(),
        })
        .collect();
    infos.sort();
    let manifest = Manifest {
        vigil_manifest: manifest::MANIFEST_VERSION,
        tool: format!("vigil-ceremony {}", env!("CARGO_PKG_VERSION")),
        created_at: op.now(),
        online_override: !seen_online.is_empty(),
        online_interfaces: seen_online,
        kdf: c.kdf,
        policy_key: PolicyKeyInfo {
            public: hex::encode(policy_public),
            fingerprint: manifest::fingerprint(&policy_public),
        },
        policy_key_kept: c.keep_policy_key,
        policy_digest: parsed.digest_hex(),
        agents: infos,
        files: digests_of(&staging)?,
    };
    let manifest_bytes = manifest.to_bytes().map_err(CeremonyError::Other)?;
    let manifest_sig = policy_key.sign(&manifest::signing_message(&manifest_bytes));
    staging.file(
        MANIFEST_SIG_FILE,
        policy::signature_file_contents(&manifest_sig).as_bytes(),
    )?;
    staging.file(MANIFEST_FILE, &manifest_bytes)?;

    // 6. The appliance's own checks, run here: a stick that leaves the ceremony imports.
    let verified = import::verify(staging.path()).map_err(|e| {
        CeremonyError::Other(format!(
            "the written stick does not verify ({e}); nothing was kept, run again"
        ))
    })?;

    // 7. Into place, manifest last.
    staging.commit(STICK_ITEMS)?;

    // 8. The paper backup, for the terminal only.
    let seeds: Vec<SeedToBackUp<'_>> = agents
        .iter()
        .map(|a| SeedToBackUp {
            agent: &a.agent,
            chain: a.chain,
            network: a.network,
            address: &a.address,
            seed: &a.seed,
        })
        .collect();
    let backup = backup::render(c.backup, &seeds)?;
    Ok(Outcome {
        manifest,
        manifest_digest: verified.manifest_digest,
        backup,
    })
}

/// The air gap, checked again: refused if online (unless overridden); with the override,
/// what was online is added to `seen` (once each).
fn recheck(air_gap: &AirGap, seen: &mut Vec<String>) -> Result<(), CeremonyError> {
    for line in air_gap.check()? {
        if !seen.contains(&line) {
            seen.push(line);
        }
    }
    Ok(())
}

/// Shows the QR code and asks for a current code, up to [`ENROL_ATTEMPTS`] times; then the
/// secret goes off the screen, whatever the outcome. Also `restore`'s enrolment.
pub fn enrol(
    secret: &Zeroizing<Vec<u8>>,
    account: &str,
    op: &mut dyn Operator,
) -> Result<(), CeremonyError> {
    let uri = qr::otpauth_uri(secret, account)?;
    let picture = qr::render(&uri)?;
    let enrolled = ask_for_code(secret, &uri, &picture, op);
    op.forget_secret();
    if enrolled.is_ok() {
        op.show("The authenticator is enrolled: its code matches. The secret is off the screen.");
    }
    enrolled
}

/// The enrolment dialogue: a matching code within [`ENROL_ATTEMPTS`], or an error.
fn ask_for_code(
    secret: &Zeroizing<Vec<u8>>,
    uri: &str,
    picture: &str,
    op: &mut dyn Operator,
) -> Result<(), CeremonyError> {
    for attempt in 1..=ENROL_ATTEMPTS {
        let typed = Zeroizing::new(op.enrol(uri, picture, attempt)?);
        let code: OperatorCode = match typed.trim().parse() {
            Ok(code) => code,
            Err(why) => {
                op.show(&format!("That is not a code: {why}."));
                continue;
            }
        };
        if vigil_signer::code_matches(secret, &code, op.now()).map_err(CeremonyError::Other)? {
            return Ok(());
        }
        op.show("That code does not match. Check that you scanned THIS QR code and that both clocks are right.");
    }
    Err(CeremonyError::Aborted(format!(
        "no matching code after {ENROL_ATTEMPTS} tries: nothing was written; run the ceremony again"
    )))
}

/// Size and SHA-256 of every file under `keystore/` and `policy/` in the staging dir, read
/// back from the stick (so the manifest describes what was actually written).
fn digests_of(staging: &Staging) -> Result<BTreeMap<String, FileInfo>, CeremonyError> {
    let mut files = BTreeMap::new();
    for sub in [KEYSTORE_DIR, POLICY_DIR] {
        let dir = staging.path().join(sub);
        for e in std::fs::read_dir(&dir).map_err(|e| CeremonyError::Read(dir.clone(), e))? {
            let e = e.map_err(|e| CeremonyError::Read(dir.clone(), e))?;
            let bytes =
                std::fs::read(e.path()).map_err(|err| CeremonyError::Read(e.path(), err))?;
            files.insert(
                format!("{sub}/{}", e.file_name().to_string_lossy()),
                FileInfo {
                    sha256: manifest::sha256_hex(&bytes),
                    size: bytes.len() as u64,
                },
            );
        }
    }
    Ok(files)
}

/// The policy for a last look: one block per agent, amounts in SOL and base units.
pub fn summarize_policy(p: &policy::Policy) -> String {
    let mut out = format!("Policy (digest {}):\n", manifest::group(&p.digest_hex()));
    for (agent, a) in &p.agents {
        let list = |v: Vec<String>| {
            if v.is_empty() {
                "(none)".to_owned()
            } else {
                v.join(", ")
            }
        };
        out.push_str(&format!(
            "\n  agent {agent}\n    actions:    {}\n    networks:   {}\n    recipients: {}\n    rate limit: {} requests/minute\n",
            list(a.actions.iter().map(|x| x.to_string()).collect()),
            list(a.networks.iter().map(|&(c, n)| policy::network_name(c, n)).collect()),
            list(a.recipients.iter().cloned().collect()),
            a.rate_limit_per_minute,
        ));
        for (symbol, l) in &a.assets {
            if l.chain == vigil_protocol::Chain::Hyperliquid {
                // Micro-USD: of notional for a perpetual, of USDC for transfers and withdrawals.
                let what = if *symbol == AssetSymbol::USDC {
                    "USDC on hyperliquid (master key, always the operator's approval)"
                } else {
                    "perpetual on hyperliquid, notional"
                };
                out.push_str(&format!(
                    "    {symbol} {what}: at most {} per order or transfer, {} opened per 24 h; operator approval above {}\n",
                    usd(l.per_tx_cap),
                    usd(l.velocity_24h),
                    usd(l.approval_threshold),
                ));
                continue;
            }
            out.push_str(&format!(
                "    {symbol} on {}: at most {} per transfer, {} per 24 h; operator approval above {}\n",
                l.chain,
                amount(l.per_tx_cap, symbol),
                amount(l.velocity_24h, symbol),
                amount(l.approval_threshold, symbol),
            ));
        }
        if a.networks
            .iter()
            .any(|&(_, n)| n == vigil_protocol::Network::Mainnet)
        {
            out.push_str("    !! MAINNET is allowed: real funds can move\n");
        }
    }
    for (&(chain, network), pin) in &p.networks {
        match pin {
            policy::NetworkPin::Evm(n) => out.push_str(&evm_network_summary(
                &policy::network_name(chain, network),
                n,
            )),
            policy::NetworkPin::Hyperliquid(n) => {
                out.push_str(&format!(
                    "\n  network {}: signs for the Hyperliquid {} exchange\n",
                    policy::network_name(chain, network),
                    if network == vigil_protocol::Network::Mainnet {
                        "MAINNET (real funds)"
                    } else {
                        "testnet"
                    }
                ));
                for (symbol, perp) in &n.perps {
                    out.push_str(&format!(
                        "    perp {symbol}: coin {}, asset index {}, {} size decimals, leverage at most {}x, position at most {}\n",
                        perp.coin,
                        perp.index,
                        perp.sz_decimals,
                        perp.max_leverage,
                        usd(perp.max_position_notional),
                    ));
                }
            }
            policy::NetworkPin::SolanaGenesis(_) => {}
        }
    }
    out
}

/// An EVM network's table: what the operator approves the signer will call and sign for.
fn evm_network_summary(name: &str, n: &policy::EvmNetwork) -> String {
    let mut out = format!(
        "\n  network {name}: chain id {}, genesis {}\n    fees: at most {} gas at {} wei/gas per transaction ({} wei of {})\n    Aave Pool: {}\n",
        n.chain_id,
        n.genesis_hash,
        n.max_gas_limit,
        n.max_fee_per_gas,
        u128::from(n.max_gas_limit).saturating_mul(n.max_fee_per_gas),
        n.native,
        n.aave_pool
            .map_or_else(|| "(none: no Aave)".to_owned(), |a| a.to_checksum(None)),
    );
    for (symbol, t) in &n.tokens {
        out.push_str(&format!(
            "    token {symbol}: {} ({} decimals){}{}\n",
            t.address.to_checksum(None),
            t.decimals,
            if t.approve_zero_first {
                ", approve(0) first"
            } else {
                ""
            },
            if t.allow_all {
                ", withdraw/repay \"all\" allowed"
            } else {
                ""
            },
        ));
    }
    out
}

/// `2.5 SOL (2500000000)` for SOL (9 decimals), base units otherwise.
/// Micro-USD as dollars and cents (rounded down), with the exact figure.
fn usd(micro: u128) -> String {
    format!(
        "{}.{:02} USD ({micro} micro-USD)",
        micro / 1_000_000,
        micro % 1_000_000 / 10_000
    )
}

fn amount(base: u128, symbol: &AssetSymbol) -> String {
    if *symbol == AssetSymbol::SOL {
        let whole = base / 1_000_000_000;
        let frac = base % 1_000_000_000;
        let frac = format!("{frac:09}");
        let frac = frac.trim_end_matches('0');
        if frac.is_empty() {
            format!("{whole} SOL ({base} lamports)")
        } else {
            format!("{whole}.{frac} SOL ({base} lamports)")
        }
    } else {
        format!("{base} base units")
    }
}

#[cfg(test)]
mod tests;
