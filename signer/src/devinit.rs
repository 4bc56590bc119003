//! `dev-init`: an INSECURE development setup for demos and tests. It does in one step what
//! the offline key ceremony does (agent keys, approval secret, policy key, signed policy),
//! but on this machine, with cheap scrypt costs and with the passphrase, the policy key seed
//! and the TOTP secret left in plain files under `STATE/dev/`. Never use it for money.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use ed25519_dalek::SigningKey;
use totp_rs::{Algorithm, Secret, TOTP};
use vigil_protocol::{
    AgentId, AgentInfo, Chain, DevInitReport, InsecureDevSecret, Network, network_name,
};
use zeroize::Zeroizing;

use crate::chains::solana;
use crate::error::Error;
use crate::keys::{self, Ed25519Key};
use crate::keystore::{self, KdfParams, KeyRole, MasterKey, Purpose};
use crate::policy;

/// Subdirectories of the signer's state dir.
pub mod layout {
    use std::path::{Path, PathBuf};
    /// Encrypted key files (read-only to the running signer).
    pub fn keystore(state: &Path) -> PathBuf {
        state.join("keystore")
    }
    /// `policy.toml` and its signature (read-only to the running signer).
    pub fn policy(state: &Path) -> PathBuf {
        state.join("policy")
    }
    /// The audit log / ledger (the only place the running signer writes).
    pub fn ledger(state: &Path) -> PathBuf {
        state.join("ledger")
    }
    /// Development-only secrets written by `dev-init`.
    pub fn dev(state: &Path) -> PathBuf {
        state.join("dev")
    }
    /// The dev passphrase file.
    pub fn dev_passphrase(state: &Path) -> PathBuf {
        dev(state).join("passphrase")
    }
    /// The dev policy key seed (hex).
    pub fn dev_policy_key(state: &Path) -> PathBuf {
        dev(state).join("policy-key.seed")
    }
}

/// What `dev-init` should make.
#[derive(Debug)]
pub struct DevInit {
    /// The state dir to create (must not already hold a keystore).
    pub state_dir: PathBuf,
    /// The agents, each with a Solana key per network its policy names (devnet for an agent
    /// the policy does not name, so that it has an address to be paid at).
    pub agents: Vec<AgentId>,
    /// A policy file to sign instead of the default one.
    pub policy: Option<PathBuf>,
    /// With the default policy: every agent also gets a key and caps on `evm:devnet`, a paper
    /// network (see [`EVM_PAPER_TABLE`]) for showing EVM actions through `dry_run`.
    pub evm_paper: bool,
    /// With the default policy: every agent also gets its two keys (API wallet and master) on
    /// `hyperliquid:testnet`, with the perpetuals of [`HYPERLIQUID_PAPER_TABLE`] and caps.
    pub hyperliquid_paper: bool,
}

/// Creates the dev state dir and returns the report printed to the user.
pub fn run(opts: &DevInit) -> Result<DevInitReport, Error> {
    let state = &opts.state_dir;
    if opts.agents.is_empty() {
        return Err(Error::Other("name at least one agent with --agents".into()));
    }
    let ks_dir = layout::keystore(state);
    if ks_dir.exists()
        && fs::read_dir(&ks_dir)
            .map_err(|e| Error::Io(ks_dir.clone(), e))?
            .next()
            .is_some()
    {
        return Err(Error::Other(format!(
            "{} already holds a keystore; dev-init never overwrites keys. Use a new --state-dir",
            ks_dir.display()
        )));
    }
    for dir in [
        state.clone(),
        ks_dir.clone(),
        layout::policy(state),
        layout::ledger(state),
        layout::dev(state),
    ] {
        make_private_dir(&dir)?;
    }

    let mut pass_bytes = Zeroizing::new([0u8; 24]);
    random(&mut *pass_bytes)?;
    let passphrase_text = Zeroizing::new(hex::encode(*pass_bytes));
    let passphrase = secrecy::SecretString::from(passphrase_text.to_string());
    write_private(
        &layout::dev_passphrase(state),
        format!("{}\n", &*passphrase_text).as_bytes(),
    )?;

    // One scrypt for the whole keystore (format 2): every entry's key comes from it by HKDF.
    let master = MasterKey::create(&passphrase, KdfParams::INSECURE_DEV, true)?;
    let custom_policy = match &opts.policy {
        Some(path) => Some(fs::read_to_string(path).map_err(|e| Error::Io(path.clone(), e))?),
        None => None,
    };
    // The (chain, network) pairs a custom policy names for the agent; the default dev policy
    // (and an agent a custom policy gives no network) gets a key for solana:devnet.
    let networks_of = |agent: &AgentId| -> Result<Vec<(Chain, Network)>, Error> {
        let named: Vec<(Chain, Network)> = match &custom_policy {
            Some(text) => {
                let parsed = policy::parse(text.as_bytes())?;
                [Chain::Solana, Chain::Evm, Chain::Hyperliquid]
                    .into_iter()
                    .flat_map(|c| {
                        parsed
                            .agent_networks(agent, c)
                            .into_iter()
                            .map(move |n| (c, n))
                    })
                    .collect()
            }
            None => {
                let mut out = vec![(Chain::Solana, DEFAULT_NETWORK)];
                if opts.evm_paper {
                    out.push((Chain::Evm, DEFAULT_NETWORK));
                }
                if opts.hyperliquid_paper {
                    out.push((Chain::Hyperliquid, Network::Testnet));
                }
                out
            }
        };
        Ok(if named.is_empty() {
            vec![(Chain::Solana, DEFAULT_NETWORK)]
        } else {
            named
        })
    };
    let mut agents = Vec::new();
    let mut addresses = Vec::new();
    let mut evm_addresses = Vec::new();
    for agent in &opts.agents {
        let mut info = AgentInfo {
            agent: agent.clone(),
            addresses: BTreeMap::new(),
            network_addresses: BTreeMap::new(),
            hyperliquid_masters: BTreeMap::new(),
            paused: None,
        };
        let mut per_chain: BTreeMap<Chain, Vec<String>> = BTreeMap::new();
        for (chain, network) in networks_of(agent)? {
            let made = keys::new_agent_key(chain)
                .map_err(|e| Error::Other(format!("OS random source failed: {e}")))?;
            let purpose = if chain == Chain::Hyperliquid {
                let master_key = keys::new_agent_key(chain)
                    .map_err(|e| Error::Other(format!("OS random source failed: {e}")))?;
                let purpose = Purpose::hyperliquid_key(agent.clone(), network, KeyRole::Master);
                keystore::write_entry(
                    &ks_dir,
                    &purpose,
                    &*master_key.secret,
                    &master_key.address,
                    &master,
                )?;
                info.hyperliquid_masters.insert(
                    network_name(chain, network),
                    master_key.address.to_lowercase(),
                );
                Purpose::hyperliquid_key(agent.clone(), network, KeyRole::ApiWallet)
            } else {
                Purpose::agent_key(agent.clone(), chain, network)
            };
            keystore::write_entry(&ks_dir, &purpose, &*made.secret, &made.address, &master)?;
            let made = keys::NewAgentKey {
                address: if chain == Chain::Hyperliquid {
                    made.address.to_lowercase()
                } else {
                    made.address
                },
                ..made
            };
            info.network_addresses
                .insert(network_name(chain, network), made.address.clone());
            if (chain, network) == (Chain::Solana, DEFAULT_NETWORK) {
                addresses.push((agent.clone(), made.address.clone()));
            }
            if (chain, network) == (Chain::Evm, DEFAULT_NETWORK) {
                evm_addresses.push((agent.clone(), made.address.clone()));
            }
            per_chain.entry(chain).or_default().push(made.address);
        }
        for (chain, list) in per_chain {
            if let [only] = list.as_slice() {
                info.addresses
                    .insert(chain.as_str().to_owned(), only.clone());
            }
        }
        agents.push(info);
    }

    let mut totp_secret = Zeroizing::new(vec![0u8; 20]);
    random(&mut totp_secret)?;
    keystore::write_entry(&ks_dir, &Purpose::ApprovalSecret, &totp_secret, "", &master)?;
    let encoded = match &Secret::Raw(totp_secret.to_vec()).to_encoded() {
        Secret::Encoded(s) => Zeroizing::new(s.clone()),
        Secret::Raw(_) => {
            return Err(Error::Other(
                "could not base32-encode the TOTP secret".into(),
            ));
        }
    };
    let otpauth = TOTP::new(
        Algorithm::SHA1,
        6,
        1,
        30,
        totp_secret.to_vec(),
        Some("Vigil-dev".into()),
        "operator".into(),
    )
    .map(|t| t.get_url())
    .map_err(|e| Error::Other(format!("TOTP setup failed: {e}")))?;
    write_private(
        &layout::dev(state).join("totp-secret.base32"),
        format!("{}\n", &*encoded).as_bytes(),
    )?;

    let (policy_key, policy_seed) = Ed25519Key::generate()
        .map_err(|e| Error::Other(format!("OS random source failed: {e}")))?;
    let policy_public = policy_key.public_bytes();
    keystore::write_entry(
        &ks_dir,
        &Purpose::PolicyPin,
        &policy_public,
        &hex::encode(policy_public),
        &master,
    )?;
    drop(master);
    write_private(
        &layout::dev_policy_key(state),
        format!("{}\n", hex::encode(*policy_seed)).as_bytes(),
    )?;

    let dev_peer = dev_peer_address()?;
    let policy_text = match custom_policy {
        Some(text) => text,
        None => {
            let mut text = default_policy(&addresses, &dev_peer, &evm_addresses);
            if opts.hyperliquid_paper {
                text = with_hyperliquid_paper(&text, &opts.agents);
            }
            text
        }
    };
    let digest = sign_policy_with(&policy_key, state, policy_text.as_bytes())?;

    Ok(DevInitReport {
        warning: "DEVELOPMENT ONLY: keys, passphrase, policy key and TOTP secret are on this machine in plain files. Never put money behind this state dir.".into(),
        state_dir: state.clone(),
        passphrase_file: layout::dev_passphrase(state),
        agents,
        dev_peer,
        totp_secret_base32: InsecureDevSecret::new(encoded.to_string()),
        otpauth_uri: InsecureDevSecret::new(otpauth),
        policy_digest: digest,
    })
}

/// Signs `policy_bytes` with the dev policy key of `state` and installs it (dev only).
pub fn resign_policy(state: &Path, policy_bytes: &[u8]) -> Result<String, Error> {
    let path = layout::dev_policy_key(state);
    let text = Zeroizing::new(fs::read_to_string(&path).map_err(|e| Error::Io(path.clone(), e))?);
    let mut seed = Zeroizing::new([0u8; 32]);
    hex::decode_to_slice(text.trim(), &mut *seed)
        .map_err(|e| Error::Other(format!("{}: not a hex 32-byte seed ({e})", path.display())))?;
    let key = Ed25519Key::from_seed(&seed);
    sign_policy_with(&key, state, policy_bytes)
}

fn sign_policy_with(key: &Ed25519Key, state: &Path, policy_bytes: &[u8]) -> Result<String, Error> {
    let parsed = policy::parse(policy_bytes)?;
    let sig = key.sign(&policy::signing_message(policy_bytes));
    let dir = layout::policy(state);
    write_private(&dir.join(policy::POLICY_FILE), policy_bytes)?;
    write_private(
        &dir.join(policy::SIGNATURE_FILE),
        policy::signature_file_contents(&sig).as_bytes(),
    )?;
    Ok(hex::encode(parsed.digest))
}

/// The network of the default dev policy, and of the key of an agent a custom policy does not
/// name.
pub const DEFAULT_NETWORK: Network = Network::Devnet;

/// The `evm:devnet` table of `dev-init --evm-paper`: the addresses of the local Aave v3 "Test"
/// market the test suite deploys on anvil (deterministic: the deployer is anvil's first dev
/// account), and a genesis hash no chain has. The orchestrator checks its node's genesis
/// against the policy before any live work, so on this network nothing is ever broadcast:
/// EVM actions here are paper, through `dry_run`.
pub const EVM_PAPER_TABLE: &str = r#"
[networks."evm:devnet"]
# A paper network: no chain has this genesis hash, so no live work is ever done on it.
chain_id = 31337
genesis_hash = "0x7669676c2d70617065722d6e6574776f726b2d6e6f2d636861696e2d68617321"
max_gas_limit = 500000
max_fee_per_gas = "100000000000"
aave_pool = "0xCe85503De9399D4dECa3c0b2bb3e9e7CFCBf9C6B"

[networks."evm:devnet".tokens.USDC]
address = "0x68B1D87F95878fE05B998F19b66F4baba5De1aed"
decimals = 6
"#;

/// The `hyperliquid:testnet` table of `dev-init --hyperliquid-paper`: a few perpetuals with the
/// exchange's testnet indices and size decimals (check them against `meta` before live work).
pub const HYPERLIQUID_PAPER_TABLE: &str = r#"
[networks."hyperliquid:testnet"]
perps.BTC = { coin = "BTC", index = 0, sz_decimals = 5, max_leverage = 5, max_position_notional = "10000000000" }
perps.ETH = { coin = "ETH", index = 1, sz_decimals = 4, max_leverage = 5, max_position_notional = "10000000000" }
"#;

/// The default dev policy with every agent also on `hyperliquid:testnet`: the perp actions,
/// 2000 USD per order and 10000 USD of opened notional per 24 h on BTC and ETH (approval above
/// 1000 USD), and USDC withdrawals up to 100 USDC (always approved by the operator). (The SOL
/// perpetual is left out: an agent's `SOL` caps are Solana's, and one symbol has one chain.)
fn with_hyperliquid_paper(policy: &str, agents: &[AgentId]) -> String {
    let mut out = String::new();
    for line in policy.lines() {
        if let Some(rest) = line.strip_prefix("networks = [") {
            out.push_str(&format!("networks = [\"hyperliquid:testnet\", {rest}\n"));
        } else if let Some(rest) = line.strip_prefix("actions = [") {
            out.push_str(&format!(
                "actions = [\"perp_order\", \"perp_cancel\", \"perp_leverage\", \"perp_schedule_cancel\", \"perp_withdraw\", \"perp_register_api_key\", {rest}\n"
            ));
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    for agent in agents {
        for perp in ["BTC", "ETH"] {
            out.push_str(&format!(
                "\n[agents.{agent}.assets.{perp}]\nchain = \"hyperliquid\"\nper_tx_cap = \"2000000000\"\n\
                 velocity_24h = \"10000000000\"\napproval_threshold = \"1000000000\"\n"
            ));
        }
    }
    out.push_str(HYPERLIQUID_PAPER_TABLE);
    out
}

/// The default dev policy: every agent may send devnet SOL to the other agents (their devnet
/// addresses) and to one dev peer; 1 SOL per transaction, 5 SOL per 24 h, approval above
/// 0.5 SOL. It pins devnet's public genesis hash (the dev chain answers with it).
///
/// With `evm_agents` (their `evm:devnet` addresses, from `--evm-paper`), every agent may also
/// send ETH and USDC to the other agents and supply, withdraw and borrow on the paper network's
/// Aave Pool ([`EVM_PAPER_TABLE`]): 0.1 ETH and 1000 USDC per request, 1 ETH and 5000 USDC per
/// 24 h, approval above 0.05 ETH and 500 USDC.
pub fn default_policy(
    agents: &[(AgentId, String)],
    dev_peer: &str,
    evm_agents: &[(AgentId, String)],
) -> String {
    let mut out = String::from(
        "# Vigil policy (development). Signed by the dev policy key made by `vigil-signer dev-init`.\nversion = 1\n",
    );
    let evm = !evm_agents.is_empty();
    for (agent, _) in agents {
        let mut recipients: Vec<String> = agents
            .iter()
            .chain(evm_agents)
            .filter(|(a, _)| a != agent)
            .map(|(_, addr)| format!("\"{addr}\""))
            .collect();
        recipients.push(format!("\"{dev_peer}\""));
        let (actions, networks) = if evm {
            (
                r#"["transfer", "aave_supply", "aave_withdraw", "aave_borrow"]"#,
                r#"["solana:devnet", "evm:devnet"]"#,
            )
        } else {
            (r#"["transfer"]"#, r#"["solana:devnet"]"#)
        };
        out.push_str(&format!(
            "\n[agents.{agent}]\nactions = {actions}\nnetworks = {networks}\n\
             recipients = [{}]\nrate_limit_per_minute = 60\n\n[agents.{agent}.assets.SOL]\nchain = \"solana\"\n\
             per_tx_cap = \"1000000000\"\nvelocity_24h = \"5000000000\"\napproval_threshold = \"500000000\"\n",
            recipients.join(", ")
        ));
        if evm {
            out.push_str(&format!(
                "\n[agents.{agent}.assets.ETH]\nchain = \"evm\"\nper_tx_cap = \"100000000000000000\"\n\
                 velocity_24h = \"1000000000000000000\"\napproval_threshold = \"50000000000000000\"\n\
                 \n[agents.{agent}.assets.USDC]\nchain = \"evm\"\nper_tx_cap = \"1000000000\"\n\
                 velocity_24h = \"5000000000\"\napproval_threshold = \"500000000\"\n"
            ));
        }
    }
    out.push_str(&format!(
        "\n[networks.\"solana:devnet\"]\ngenesis_hash = \"{}\"\n",
        vigil_protocol::SOLANA_DEVNET_GENESIS_HASH
    ));
    if evm {
        out.push_str(EVM_PAPER_TABLE);
    }
    out
}

fn dev_peer_address() -> Result<String, Error> {
    let mut seed = Zeroizing::new([0u8; 32]);
    random(&mut *seed)?;
    Ok(solana::address_of(
        &SigningKey::from_bytes(&seed).verifying_key().to_bytes(),
    ))
}

fn random(buf: &mut [u8]) -> Result<(), Error> {
    getrandom::getrandom(buf).map_err(|e| Error::Other(format!("the OS random source failed: {e}")))
}

fn write_private(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    keystore::write_private_file(path, bytes).map_err(|e| Error::Io(path.to_path_buf(), e))
}

fn make_private_dir(dir: &Path) -> Result<(), Error> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| Error::Io(dir.to_path_buf(), e))?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
        .map_err(|e| Error::Io(dir.to_path_buf(), e))
}
