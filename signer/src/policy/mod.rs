//! The signed policy of the signer: what each agent may do, on which networks, to whom,
//! and how much. Default deny: anything the policy does not name is refused.
//!
//! The policy is a TOML file (`policy.toml`, format in [`file`] and `docs/policy.md`)
//! written at the offline key ceremony and signed there with the policy key. The signer
//! pins that key (it comes from the encrypted keystore) and refuses to start on a policy
//! whose signature does not verify. Nothing online can loosen it.
//!
//! [`decide`] is the pure decision function over a loaded [`Policy`], a view of the
//! ledger ([`History`]) and one intent.

mod decide;
mod evm_table;
mod file;
mod hl_table;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};

use ed25519_dalek::{Signature, VerifyingKey};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use vigil_protocol::{AgentId, AssetSymbol, Chain, Intent, Network, NetworkIdentity};

pub use decide::{CapOverride, History, Spend, Verdict, decide, decide_approved};
pub(crate) use evm_table::parse_address as parse_evm_address;
pub use file::{POLICY_VERSION, parse};
pub(crate) use hl_table::USDC;
pub use vigil_protocol::network_name;

/// The policy file's name inside the signer's state directory.
pub const POLICY_FILE: &str = "policy.toml";
/// The detached signature's name: hex of the 64-byte Ed25519 signature plus `"\n"`.
pub const SIGNATURE_FILE: &str = "policy.toml.sig";
/// Domain separation prefix of the signed message.
pub const SIGNING_DOMAIN: &[u8] = b"vigil-policy-v1\n";
/// Largest policy file the signer reads (a real one is a few KiB).
pub const MAX_POLICY_LEN: u64 = 1024 * 1024;

/// Something an agent may ask for. A closed set: an intent kind the policy does not know
/// cannot be allowed by accident.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// `Intent::Transfer`: move an asset (native, or an ERC-20 token of the table) to a recipient.
    Transfer,
    /// `Intent::AaveSupply`.
    AaveSupply,
    /// `Intent::AaveWithdraw`.
    AaveWithdraw,
    /// `Intent::AaveBorrow`.
    AaveBorrow,
    /// `Intent::AaveRepay`.
    AaveRepay,
    /// `Intent::PerpOrder`.
    PerpOrder,
    /// `Intent::PerpCancel`.
    PerpCancel,
    /// `Intent::PerpLeverage`.
    PerpLeverage,
    /// `Intent::PerpScheduleCancel`.
    PerpScheduleCancel,
    /// `Intent::PerpWithdraw`.
    PerpWithdraw,
    /// `Intent::PerpRegisterApiKey`.
    PerpRegisterApiKey,
}

impl Action {
    /// Every action, in declaration order.
    pub const ALL: &'static [Action] = &[
        Action::Transfer,
        Action::AaveSupply,
        Action::AaveWithdraw,
        Action::AaveBorrow,
        Action::AaveRepay,
        Action::PerpOrder,
        Action::PerpCancel,
        Action::PerpLeverage,
        Action::PerpScheduleCancel,
        Action::PerpWithdraw,
        Action::PerpRegisterApiKey,
    ];

    /// The name used in the policy file and on the wire.
    pub const fn as_str(self) -> &'static str {
        match self {
            Action::Transfer => "transfer",
            Action::AaveSupply => "aave_supply",
            Action::AaveWithdraw => "aave_withdraw",
            Action::AaveBorrow => "aave_borrow",
            Action::AaveRepay => "aave_repay",
            Action::PerpOrder => "perp_order",
            Action::PerpCancel => "perp_cancel",
            Action::PerpLeverage => "perp_leverage",
            Action::PerpScheduleCancel => "perp_schedule_cancel",
            Action::PerpWithdraw => "perp_withdraw",
            Action::PerpRegisterApiKey => "perp_register_api_key",
        }
    }

    /// The action an intent performs.
    pub const fn of(intent: &Intent) -> Action {
        match intent {
            Intent::Transfer(_) => Action::Transfer,
            Intent::AaveSupply(_) => Action::AaveSupply,
            Intent::AaveWithdraw(_) => Action::AaveWithdraw,
            Intent::AaveBorrow(_) => Action::AaveBorrow,
            Intent::AaveRepay(_) => Action::AaveRepay,
            Intent::PerpOrder(_) => Action::PerpOrder,
            Intent::PerpCancel(_) => Action::PerpCancel,
            Intent::PerpLeverage(_) => Action::PerpLeverage,
            Intent::PerpScheduleCancel(_) => Action::PerpScheduleCancel,
            Intent::PerpWithdraw(_) => Action::PerpWithdraw,
            Intent::PerpRegisterApiKey(_) => Action::PerpRegisterApiKey,
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A loaded, validated policy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    /// The format version; always [`POLICY_VERSION`].
    pub version: u32,
    /// Every agent the policy allows anything to. Agents not here are refused everything.
    pub agents: BTreeMap<AgentId, AgentPolicy>,
    /// What identifies each (chain, network) any agent names: the `[networks]` table's pin,
    /// or the public network's own (Solana: the cluster's genesis hash).
    pub networks: BTreeMap<(Chain, Network), NetworkPin>,
    /// SHA-256 of the exact policy file bytes (reported by `hello`, recorded in the audit log).
    pub digest: [u8; 32],
}

/// What one agent may do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AgentPolicy {
    /// The intent kinds the agent may ask for.
    pub actions: BTreeSet<Action>,
    /// The (chain, network) pairs the agent may use; mainnet only if named.
    pub networks: BTreeSet<(Chain, Network)>,
    /// Recipients the agent may pay, in canonical form (base58 re-encoded for Solana).
    pub recipients: BTreeSet<String>,
    /// Sign requests allowed in any 60-second window; at least 1.
    pub rate_limit_per_minute: u32,
    /// Limits per asset symbol (`SOL`).
    pub assets: BTreeMap<AssetSymbol, AssetCaps>,
}

/// What identifies a network on its chain, as the signed policy pins it. The signer cannot
/// check it itself (it has no network); it reports it in `hello`, and whoever talks to a node
/// for the network (the orchestrator) checks that the node answers the same.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NetworkPin {
    /// A Solana cluster, by its genesis hash (canonical base58 of 32 bytes).
    SolanaGenesis(String),
    /// An EVM chain: its chain id and genesis block hash, and what the signer may do there.
    Evm(EvmNetwork),
    /// A Hyperliquid exchange: its network's name picks the signing chain; its perpetuals.
    Hyperliquid(HyperliquidNetwork),
}

impl NetworkPin {
    /// The pin as `hello` reports it.
    pub fn identity(&self) -> NetworkIdentity {
        match self {
            NetworkPin::SolanaGenesis(hash) => NetworkIdentity {
                genesis_hash: Some(hash.clone()),
                ..NetworkIdentity::default()
            },
            NetworkPin::Hyperliquid(n) => NetworkIdentity {
                hyperliquid: Some(vigil_protocol::HyperliquidNetworkInfo {
                    hyperliquid_chain: n.hl_network().chain_name().to_owned(),
                    perps: n
                        .perps
                        .iter()
                        .map(|(symbol, p)| {
                            (
                                *symbol,
                                vigil_protocol::PerpInfo {
                                    coin: p.coin.clone(),
                                    index: p.index,
                                    sz_decimals: p.sz_decimals,
                                    max_leverage: p.max_leverage,
                                    max_position_notional: vigil_protocol::Quantity::new(
                                        p.max_position_notional,
                                    ),
                                },
                            )
                        })
                        .collect(),
                }),
                ..NetworkIdentity::default()
            },
            NetworkPin::Evm(n) => NetworkIdentity {
                genesis_hash: Some(n.genesis_hash.to_string()),
                chain_id: Some(n.chain_id),
                hyperliquid: None,
                evm: Some(vigil_protocol::EvmNetworkInfo {
                    native: n.native,
                    native_decimals: n.native_decimals,
                    max_gas_limit: n.max_gas_limit,
                    max_fee_per_gas: vigil_protocol::Quantity::new(n.max_fee_per_gas),
                    aave_pool: n.aave_pool.map(|p| p.to_checksum(None)),
                    tokens: n
                        .tokens
                        .iter()
                        .map(|(symbol, t)| {
                            (
                                *symbol,
                                vigil_protocol::EvmTokenInfo {
                                    address: t.address.to_checksum(None),
                                    decimals: t.decimals,
                                },
                            )
                        })
                        .collect(),
                }),
            },
        }
    }
}

/// An EVM network of the signed policy (`[networks."evm:<network>"]`): the chain id every
/// transaction carries (never taken from a request), the genesis hash the orchestrator checks
/// its node against, the fee bounds, the tokens (the only ones the signer moves, with the
/// decimals it shows them in) and the Aave v3 Pool (the only spender an approval may name).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EvmNetwork {
    /// EIP-155 chain id.
    pub chain_id: u64,
    /// The hash of block 0.
    pub genesis_hash: alloy_primitives::B256,
    /// The native asset's symbol (`ETH`): fees and native transfers count against its caps.
    pub native: AssetSymbol,
    /// The native asset's decimals (18 on every EVM chain).
    pub native_decimals: u8,
    /// The largest gas limit of one transaction.
    pub max_gas_limit: u64,
    /// The largest EIP-1559 max fee per gas, wei.
    pub max_fee_per_gas: u128,
    /// The Aave v3 Pool, if Aave is used on this network.
    pub aave_pool: Option<alloy_primitives::Address>,
    /// The ERC-20 tokens by symbol.
    pub tokens: BTreeMap<AssetSymbol, EvmToken>,
}

/// A Hyperliquid exchange of the signed policy (`[networks."hyperliquid:<network>"]`): which
/// one is its network's name (testnet or mainnet), never a request; the perpetuals an agent may
/// trade, by the policy's symbol.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HyperliquidNetwork {
    /// `Testnet` or `Mainnet` (the loader refuses `devnet`).
    pub network: Network,
    /// The perpetuals by symbol.
    pub perps: BTreeMap<AssetSymbol, Perp>,
}

impl HyperliquidNetwork {
    /// The signing chain: L1 source and `hyperliquidChain` follow from it.
    pub(crate) fn hl_network(&self) -> crate::chains::hyperliquid::HlNetwork {
        match self.network {
            Network::Mainnet => crate::chains::hyperliquid::HlNetwork::Mainnet,
            // The loader refuses devnet; testnet is the only other name.
            Network::Testnet | Network::Devnet => crate::chains::hyperliquid::HlNetwork::Testnet,
        }
    }
}

/// One perpetual of a Hyperliquid table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Perp {
    /// The coin as the exchange names it (`ETH`, `kPEPE`).
    pub coin: String,
    /// Its asset index on the exchange (position in `meta.universe`).
    pub index: u32,
    /// The exchange's size decimals.
    pub sz_decimals: u32,
    /// The highest leverage the signer sets for it.
    pub max_leverage: u32,
    /// The largest |position| × limit price an opening order may reach, micro-USD.
    pub max_position_notional: u128,
}

/// An ERC-20 token of the policy's table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EvmToken {
    /// The token contract.
    pub address: alloy_primitives::Address,
    /// Its decimals, for display (amounts are always base units).
    pub decimals: u8,
    /// The token refuses to change a non-zero allowance (USDT): the signer sends
    /// `approve(pool, 0)` before the exact-amount approval.
    pub approve_zero_first: bool,
    /// `aave_withdraw` / `aave_repay` of `"all"` (uint256 max) are allowed for this token.
    pub allow_all: bool,
}

impl EvmNetwork {
    /// The token of `symbol`, if the table lists it.
    pub fn token(&self, symbol: AssetSymbol) -> Option<&EvmToken> {
        self.tokens.get(&symbol)
    }
}

/// The caps on one asset and its approval threshold, in base units. Invariant (checked at load):
/// `1 <= approval_threshold <= per_tx_cap <= velocity_24h`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AssetCaps {
    /// The chain the asset lives on.
    pub chain: Chain,
    /// Largest single transfer.
    pub per_tx_cap: u128,
    /// Largest total over any rolling 24 hours.
    pub velocity_24h: u128,
    /// Transfers above this need the operator's approval code.
    pub approval_threshold: u128,
}

/// Why a policy could not be loaded. Each message says what to do; a signature problem
/// always says the policy must be signed by the ceremony's policy key.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// The policy or signature file could not be read.
    #[error("cannot read {0}: {1}")]
    ReadFile(PathBuf, std::io::Error),
    /// The policy file is larger than [`MAX_POLICY_LEN`].
    #[error(
        "{0} is larger than {MAX_POLICY_LEN} bytes: this is not a Vigil policy; use the policy.toml written at the ceremony"
    )]
    TooLarge(PathBuf),
    /// There is no `policy.toml.sig` next to the policy.
    #[error(
        "{0} is missing: the policy must be signed by the ceremony's policy key; copy policy.toml together with its policy.toml.sig from the ceremony stick"
    )]
    MissingSignature(PathBuf),
    /// The signature file is not hex.
    #[error(
        "{0} is not hex ({1}): the policy must be signed by the ceremony's policy key; it should hold 128 hex digits and a newline, as the ceremony wrote it"
    )]
    SignatureNotHex(PathBuf, String),
    /// The signature file decodes to the wrong number of bytes.
    #[error(
        "{0} holds {1} bytes, not 64: the policy must be signed by the ceremony's policy key; copy the policy.toml.sig the ceremony wrote"
    )]
    SignatureLength(PathBuf, usize),
    /// The signature does not verify under the pinned policy key.
    #[error(
        "the signature in {0} does not verify over {POLICY_FILE} with the pinned policy key: the policy must be signed by the ceremony's policy key; the file was changed or signed by another key, so re-sign it at a ceremony"
    )]
    BadSignature(PathBuf),
    /// The policy file is not UTF-8.
    #[error(
        "{POLICY_FILE} is not UTF-8 (first bad byte at offset {0}): write it as plain UTF-8 TOML"
    )]
    NotUtf8(usize),
    /// The TOML is malformed or has the wrong shape (unknown field, wrong type, missing key).
    #[error("{POLICY_FILE}: {0}")]
    Toml(String),
    /// A value is well-formed TOML but not a valid policy.
    #[error("{POLICY_FILE}: `{key}`: {reason}")]
    Invalid {
        /// The key path, e.g. `agents.trader.assets.SOL.per_tx_cap`.
        key: String,
        /// What is wrong and what to write instead.
        reason: String,
    },
}

/// The exact message the policy key signs: `SIGNING_DOMAIN || policy bytes`.
pub fn signing_message(policy_bytes: &[u8]) -> Vec<u8> {
    let mut msg = Vec::with_capacity(SIGNING_DOMAIN.len() + policy_bytes.len());
    msg.extend_from_slice(SIGNING_DOMAIN);
    msg.extend_from_slice(policy_bytes);
    msg
}

/// Hex of the 64-byte signature plus `"\n"`: the content of `policy.toml.sig`.
pub fn signature_file_contents(sig: &[u8; 64]) -> String {
    let mut s = hex::encode(sig);
    s.push('\n');
    s
}

/// Reads `policy.toml` and `policy.toml.sig` from `dir`, verifies the signature with the
/// pinned key (`verify_strict`: no malleable or small-order signatures), then parses.
/// The signature is checked before a byte of TOML is interpreted.
pub fn load_signed(dir: &Path, policy_key: &VerifyingKey) -> Result<Policy, PolicyError> {
    let policy_path = dir.join(POLICY_FILE);
    let sig_path = dir.join(SIGNATURE_FILE);
    let bytes = read_bounded(&policy_path)?;
    let sig_text = match std::fs::read_to_string(&sig_path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(PolicyError::MissingSignature(sig_path));
        }
        Err(e) => return Err(PolicyError::ReadFile(sig_path, e)),
    };
    let sig_bytes = hex::decode(sig_text.trim_end_matches(['\n', '\r']))
        .map_err(|e| PolicyError::SignatureNotHex(sig_path.clone(), e.to_string()))?;
    let sig: [u8; 64] = sig_bytes
        .as_slice()
        .try_into()
        .map_err(|_| PolicyError::SignatureLength(sig_path.clone(), sig_bytes.len()))?;
    policy_key
        .verify_strict(&signing_message(&bytes), &Signature::from_bytes(&sig))
        .map_err(|_| PolicyError::BadSignature(sig_path))?;
    parse(&bytes)
}

fn read_bounded(path: &Path) -> Result<Vec<u8>, PolicyError> {
    let file = std::fs::File::open(path).map_err(|e| PolicyError::ReadFile(path.to_owned(), e))?;
    let mut bytes = Vec::new();
    file.take(MAX_POLICY_LEN + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| PolicyError::ReadFile(path.to_owned(), e))?;
    if bytes.len() as u64 > MAX_POLICY_LEN {
        return Err(PolicyError::TooLarge(path.to_owned()));
    }
    Ok(bytes)
}

impl Policy {
    /// `chain:network` strings allowed to any agent, sorted (for `hello`).
    pub fn networks(&self) -> Vec<String> {
        let all: BTreeSet<String> = self
            .agents
            .values()
            .flat_map(|a| a.networks.iter().map(|&(c, n)| network_name(c, n)))
            .collect();
        all.into_iter().collect()
    }

    /// `chain:network` → its pinned identity, for `hello`'s `network_ids`.
    pub fn network_ids(&self) -> BTreeMap<String, NetworkIdentity> {
        self.networks
            .iter()
            .map(|(&(c, n), pin)| (network_name(c, n), pin.identity()))
            .collect()
    }

    /// The networks of `chain` that `agent` may use (empty for an unknown agent).
    pub fn agent_networks(&self, agent: &AgentId, chain: Chain) -> Vec<Network> {
        self.agents
            .get(agent)
            .map(|a| {
                a.networks
                    .iter()
                    .filter(|(c, _)| *c == chain)
                    .map(|&(_, n)| n)
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The EVM network table of `network`, if the policy has one.
    pub fn evm_network(&self, network: Network) -> Option<&EvmNetwork> {
        match self.networks.get(&(Chain::Evm, network)) {
            Some(NetworkPin::Evm(n)) => Some(n),
            _ => None,
        }
    }

    /// The Hyperliquid table of `network`, if the policy has one.
    pub fn hyperliquid_network(&self, network: Network) -> Option<&HyperliquidNetwork> {
        match self.networks.get(&(Chain::Hyperliquid, network)) {
            Some(NetworkPin::Hyperliquid(n)) => Some(n),
            _ => None,
        }
    }

    /// The digest as lowercase hex (`hello`'s `policy_digest`).
    pub fn digest_hex(&self) -> String {
        hex::encode(self.digest)
    }
}

impl AgentPolicy {
    /// For the `status` op (its `limits` field): the agent's caps in force (`overrides`
    /// gives the operator's caps per asset), the signed ceilings beside them, amounts as
    /// decimal strings of base units.
    pub fn caps_json(&self, overrides: impl Fn(AssetSymbol) -> CapOverride) -> Value {
        let assets: serde_json::Map<String, Value> = self
            .assets
            .iter()
            .map(|(symbol, ceiling)| {
                let l = overrides(*symbol).apply(*ceiling);
                let caps = json!({
                    "chain": l.chain.as_str(),
                    "per_tx_cap": l.per_tx_cap.to_string(),
                    "velocity_24h": l.velocity_24h.to_string(),
                    "approval_threshold": l.approval_threshold.to_string(),
                    "per_tx_ceiling": ceiling.per_tx_cap.to_string(),
                    "velocity_24h_ceiling": ceiling.velocity_24h.to_string(),
                });
                (symbol.to_string(), caps)
            })
            .collect();
        json!({
            "actions": self.actions.iter().map(|a| a.as_str()).collect::<Vec<_>>(),
            "networks": self.networks.iter().map(|&(c, n)| network_name(c, n)).collect::<Vec<_>>(),
            "recipients": self.recipients.iter().collect::<Vec<_>>(),
            "rate_limit_per_minute": self.rate_limit_per_minute,
            "assets": assets,
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use std::path::Path;

    use ed25519_dalek::{Signer, SigningKey};

    use super::*;

    const POLICY: &str = r#"version = 1
[agents.trader]
actions = ["transfer"]
networks = ["solana:devnet", "solana:mainnet"]
recipients = ["4vJ9JU1bJJE96FWSJKvHsmmFADCg4gpZQff4P3bkLKi"]
rate_limit_per_minute = 30
[agents.trader.assets.SOL]
chain = "solana"
per_tx_cap = "2000000000"
velocity_24h = "10000000000"
approval_threshold = "500000000"

[agents.sentinel]
actions = ["transfer"]
networks = ["solana:testnet"]
recipients = []
rate_limit_per_minute = 1
[agents.sentinel.assets.SOL]
chain = "solana"
per_tx_cap = "1"
velocity_24h = "1"
approval_threshold = "1"
"#;

    fn fresh_key() -> SigningKey {
        let mut seed = [0u8; 32];
        getrandom::getrandom(&mut seed).unwrap();
        SigningKey::from_bytes(&seed)
    }

    /// Writes `policy` and, if given, `sig` (file contents) into a fresh directory.
    fn write(policy: &[u8], sig: Option<&str>) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(POLICY_FILE), policy).unwrap();
        if let Some(sig) = sig {
            std::fs::write(dir.path().join(SIGNATURE_FILE), sig).unwrap();
        }
        dir
    }

    fn sign(key: &SigningKey, message: &[u8]) -> [u8; 64] {
        key.sign(message).to_bytes()
    }

    fn load(dir: &Path, key: &SigningKey) -> Result<Policy, PolicyError> {
        load_signed(dir, &key.verifying_key())
    }

    #[test]
    fn signed_policy_loads() {
        let key = fresh_key();
        let sig = signature_file_contents(&sign(&key, &signing_message(POLICY.as_bytes())));
        assert_eq!(sig.len(), 129);
        assert!(sig.ends_with('\n'));
        let dir = write(POLICY.as_bytes(), Some(&sig));
        let policy = load(dir.path(), &key).unwrap();
        assert_eq!(policy, parse(POLICY.as_bytes()).unwrap());
        assert_eq!(policy.agents.len(), 2);
    }

    #[test]
    fn signing_message_is_domain_then_bytes() {
        assert_eq!(signing_message(b"abc"), b"vigil-policy-v1\nabc".to_vec());
    }

    #[test]
    fn tampered_or_foreign_signatures_are_refused() {
        let key = fresh_key();
        let good_sig = sign(&key, &signing_message(POLICY.as_bytes()));

        let mut flipped_policy = POLICY.as_bytes().to_vec();
        flipped_policy[POLICY.find("2000000000").unwrap()] = b'9';
        let dir = write(&flipped_policy, Some(&signature_file_contents(&good_sig)));
        assert!(matches!(
            load(dir.path(), &key),
            Err(PolicyError::BadSignature(_))
        ));

        for i in [0, 31, 32, 63] {
            let mut sig = good_sig;
            sig[i] ^= 0x01;
            let dir = write(POLICY.as_bytes(), Some(&signature_file_contents(&sig)));
            assert!(
                matches!(load(dir.path(), &key), Err(PolicyError::BadSignature(_))),
                "byte {i}"
            );
        }

        let other = fresh_key();
        let dir = write(
            POLICY.as_bytes(),
            Some(&signature_file_contents(&sign(
                &other,
                &signing_message(POLICY.as_bytes()),
            ))),
        );
        assert!(matches!(
            load(dir.path(), &key),
            Err(PolicyError::BadSignature(_))
        ));
        assert!(
            load(dir.path(), &other).is_ok(),
            "the same files load under the key that signed them"
        );

        let no_domain = sign(&key, POLICY.as_bytes());
        let dir = write(
            POLICY.as_bytes(),
            Some(&signature_file_contents(&no_domain)),
        );
        let err = load(dir.path(), &key).unwrap_err();
        assert!(matches!(err, PolicyError::BadSignature(_)));
        assert!(
            err.to_string()
                .contains("must be signed by the ceremony's policy key"),
            "{err}"
        );
    }

    #[test]
    fn malformed_signature_files_have_distinct_errors() {
        let key = fresh_key();
        let dir = write(POLICY.as_bytes(), None);
        let err = load(dir.path(), &key).unwrap_err();
        assert!(matches!(err, PolicyError::MissingSignature(_)));
        assert!(
            err.to_string()
                .contains("must be signed by the ceremony's policy key"),
            "{err}"
        );

        let dir = write(POLICY.as_bytes(), Some(&"zz".repeat(64)));
        assert!(matches!(
            load(dir.path(), &key),
            Err(PolicyError::SignatureNotHex(..))
        ));

        let dir = write(POLICY.as_bytes(), Some(&format!("{}\n", "ab".repeat(63))));
        assert!(matches!(
            load(dir.path(), &key),
            Err(PolicyError::SignatureLength(_, 63))
        ));

        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            load(dir.path(), &key),
            Err(PolicyError::ReadFile(..))
        ));
    }

    #[test]
    fn signature_is_checked_before_the_toml() {
        let key = fresh_key();
        let broken = b"version = 2\n";
        let dir = write(broken, Some(&signature_file_contents(&[0u8; 64])));
        assert!(matches!(
            load(dir.path(), &key),
            Err(PolicyError::BadSignature(_))
        ));
        let sig = signature_file_contents(&sign(&key, &signing_message(broken)));
        let dir = write(broken, Some(&sig));
        assert!(
            matches!(load(dir.path(), &key), Err(PolicyError::Invalid { key, .. }) if key == "version")
        );
    }

    #[test]
    fn oversized_policy_is_refused() {
        let key = fresh_key();
        let big = vec![b'#'; usize::try_from(MAX_POLICY_LEN).unwrap() + 1];
        let dir = write(
            &big,
            Some(&signature_file_contents(&sign(
                &key,
                &signing_message(&big),
            ))),
        );
        assert!(matches!(
            load(dir.path(), &key),
            Err(PolicyError::TooLarge(_))
        ));
    }

    #[test]
    fn networks_and_limits_for_hello_and_status() {
        let policy = parse(POLICY.as_bytes()).unwrap();
        assert_eq!(
            policy.networks(),
            vec!["solana:devnet", "solana:mainnet", "solana:testnet"]
        );
        assert_eq!(policy.digest_hex().len(), 64);
        let trader = &policy.agents[&"trader".parse::<AgentId>().unwrap()];
        let lowered = |_: AssetSymbol| CapOverride {
            per_tx: Some(7),
            velocity_24h: None,
        };
        assert_eq!(
            trader.caps_json(lowered),
            json!({
                "actions": ["transfer"],
                "networks": ["solana:devnet", "solana:mainnet"],
                "recipients": ["4vJ9JU1bJJE96FWSJKvHsmmFADCg4gpZQff4P3bkLKi"],
                "rate_limit_per_minute": 30,
                "assets": {"SOL": {
                    "chain": "solana",
                    "per_tx_cap": "7",
                    "velocity_24h": "10000000000",
                    "approval_threshold": "500000000",
                    "per_tx_ceiling": "2000000000",
                    "velocity_24h_ceiling": "10000000000"
                }}
            })
        );
    }

    #[test]
    fn action_names_match_intent_kinds() {
        for a in Action::ALL {
            assert_eq!(serde_json::to_value(a).unwrap(), json!(a.as_str()));
        }
        let intent: Intent = serde_json::from_str(
            r#"{"kind":"transfer","chain":"solana","network":"devnet","asset":"SOL","to":"x","amount":"5"}"#,
        )
        .unwrap();
        assert_eq!(Action::of(&intent).as_str(), intent.action());
    }
}
