//! Solana: the signer builds a legacy transaction with one System Program transfer from a
//! transfer intent, renders the operator's one-line summary by decoding the compiled message
//! back (never from the intent), and signs that message with the agent's key. There is no
//! way in here to sign bytes that were not built here: `sign` re-decodes the message and
//! refuses anything but a single System transfer paid by the signing key.
//!
//! Addresses travel as [`Address`]: a key with its base58 text, made together (decoded from
//! canonical text, or encoded from a key) so that each address is encoded once per
//! transaction and the summary shows exactly the text of the keys the message holds.

use bincode::Options;
use solana_hash::Hash;
use solana_message::Message;
use solana_pubkey::Pubkey;
use solana_signature::Signature;
use solana_system_interface::instruction::{SystemInstruction, transfer};
use solana_system_interface::program::ID as SYSTEM_PROGRAM;
use solana_transaction::Transaction;
use vigil_protocol::{AgentId, Amount, Network, truncate};

use crate::keys::Ed25519Key;

/// Lamports in one SOL.
const LAMPORTS_PER_SOL: u64 = 1_000_000_000;
/// The longest base58 string worth decoding: 32 bytes take at most 44 characters.
const MAX_BASE58_LEN: usize = 64;
/// The bincode encoding of a System instruction is a few dozen bytes; anything longer is refused.
const MAX_INSTRUCTION_DATA: u64 = 1_232;

/// Why a Solana transfer could not be built, summarised or signed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SolanaError {
    /// An address is not base58 of exactly 32 bytes.
    #[error(
        "{input:?} is not a valid Solana address (base58 of 32 bytes): {reason}; send the recipient's base58 address, e.g. as shown by `solana address`"
    )]
    InvalidAddress { input: String, reason: String },
    /// The context carried no recent blockhash.
    #[error(
        "a Solana transfer needs a recent blockhash: send context.recent_blockhash (base58 of 32 bytes, from the RPC's getLatestBlockhash)"
    )]
    MissingBlockhash,
    /// The recent blockhash is not base58 of exactly 32 bytes.
    #[error(
        "recent blockhash {input:?} is not valid (base58 of 32 bytes): {reason}; send the `blockhash` field of the RPC's getLatestBlockhash"
    )]
    InvalidBlockhash { input: String, reason: String },
    /// The amount does not fit in a u64 of lamports.
    #[error(
        "amount {0} lamports is more than a Solana transfer can carry (at most 18446744073709551615 lamports); send a smaller amount"
    )]
    AmountTooLarge(u128),
    /// A transfer of nothing.
    #[error("amount is zero: a transfer must move at least 1 lamport; send a positive amount")]
    ZeroAmount,
    /// The recipient is the sender.
    #[error(
        "recipient {0} is the agent's own address: sending to itself moves nothing but the fee; send another recipient"
    )]
    SendToSelf(String),
    /// The recipient is the System Program itself.
    #[error(
        "recipient {0} is the System Program, not an account that can hold funds; send a wallet address"
    )]
    SendToSystemProgram(String),
    /// The message does not hold exactly one instruction.
    #[error(
        "the message holds {0} instructions, not one System Program transfer; the signer only signs transfers it built"
    )]
    NotOneInstruction(usize),
    /// The instruction calls another program.
    #[error(
        "the instruction calls program {0}, not the System Program; the signer only signs System Program transfers"
    )]
    NotSystemProgram(String),
    /// The instruction is a System instruction other than Transfer, or its data is malformed.
    #[error(
        "the System instruction is not a transfer ({0}); the signer only signs System Program transfers"
    )]
    NotTransfer(String),
    /// The message's accounts are not laid out as `[payer = from, to, System Program]`.
    #[error(
        "the message is not a plain transfer: {0}; the signer only signs messages it compiled itself"
    )]
    UnexpectedLayout(String),
    /// The compiled message says something else than the transfer it was built from.
    #[error(
        "the compiled message does not match the transfer it was built from ({0}); this is a bug, nothing was signed"
    )]
    BuildMismatch(String),
    /// An address is valid base58 but not the canonical encoding of its key.
    #[error("{input:?} is not in canonical base58: send {canonical}")]
    NonCanonical { input: String, canonical: String },
    /// The signing key is not the fee payer of the message.
    #[error(
        "the agent key {key} is not the fee payer {fee_payer} of the message; nothing was signed"
    )]
    WrongSigner { key: String, fee_payer: String },
    /// The summary handed to `sign` does not name what the message does.
    #[error(
        "the summary does not describe the message ({0}); build the transfer again and show its summary"
    )]
    SummaryMismatch(String),
    /// The transaction could not be encoded for the wire.
    #[error("could not encode the signed transaction: {0}")]
    Encode(#[source] bincode::Error),
}

/// A Solana address and its canonical base58 text, always made together.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Address {
    key: Pubkey,
    text: String,
}

impl Address {
    /// Parses `s`, which must be the canonical base58 of a 32-byte key.
    pub(crate) fn parse(s: &str) -> Result<Address, SolanaError> {
        let key = parse_address(s)?;
        let text = key.to_string();
        if text != s {
            return Err(SolanaError::NonCanonical {
                input: truncate(s),
                canonical: text,
            });
        }
        Ok(Address { key, text })
    }

    /// The address of `key` (one base58 encoding).
    pub(crate) fn of(key: Pubkey) -> Address {
        Address {
            key,
            text: key.to_string(),
        }
    }

    /// The key.
    pub(crate) fn key(&self) -> Pubkey {
        self.key
    }

    /// The base58 text.
    pub(crate) fn as_str(&self) -> &str {
        &self.text
    }
}

/// Parses a base58 address into a 32-byte pubkey; errors say "not a valid Solana address (base58 of 32 bytes)".
pub(crate) fn parse_address(s: &str) -> Result<Pubkey, SolanaError> {
    decode32(s)
        .map(Pubkey::new_from_array)
        .map_err(|reason| SolanaError::InvalidAddress {
            input: truncate(s),
            reason,
        })
}

/// base58 of an ed25519 public key.
pub fn address_of(public: &[u8; 32]) -> String {
    Pubkey::new_from_array(*public).to_string()
}

/// Parses the context's recent blockhash (required for Solana; missing → clear error).
pub(crate) fn parse_blockhash(s: Option<&str>) -> Result<Hash, SolanaError> {
    let s = s.ok_or(SolanaError::MissingBlockhash)?;
    decode32(s)
        .map(Hash::new_from_array)
        .map_err(|reason| SolanaError::InvalidBlockhash {
            input: truncate(s),
            reason,
        })
}

/// Decodes base58 that must hold exactly 32 bytes; the error is the reason, for a message.
fn decode32(s: &str) -> Result<[u8; 32], String> {
    if s.is_empty() {
        return Err("it is empty".into());
    }
    if s.len() > MAX_BASE58_LEN {
        return Err(format!(
            "it is {} characters long, at most 44 expected",
            s.len()
        ));
    }
    let bytes = bs58::decode(s)
        .into_vec()
        .map_err(|e| format!("it is not base58 ({e})"))?;
    <[u8; 32]>::try_from(bytes.as_slice())
        .map_err(|_| format!("it decodes to {} bytes", bytes.len()))
}

/// A transfer the signer is about to build.
#[derive(Clone, Debug)]
pub(crate) struct Transfer {
    pub agent: AgentId,
    pub network: Network,
    pub from: Address,
    pub to: Address,
    pub lamports: u64,
    pub blockhash: Hash,
}

/// Converts an intent amount (u128) to lamports; > u64::MAX is an error.
pub(crate) fn lamports(amount: Amount) -> Result<u64, SolanaError> {
    let units = amount.base_units();
    u64::try_from(units).map_err(|_| SolanaError::AmountTooLarge(units))
}

/// What was built: the legacy message, the one-line summary rendered from the compiled
/// message, and the addresses whose text the summary shows.
#[derive(Clone, Debug)]
pub(crate) struct Built {
    pub message: Message,
    pub summary: String,
    from: Address,
    to: Address,
}

/// Builds the legacy message for one System transfer paid by the sender, and its summary.
pub(crate) fn build_transfer(t: &Transfer) -> Result<Built, SolanaError> {
    if t.lamports == 0 {
        return Err(SolanaError::ZeroAmount);
    }
    let (from, to) = (t.from.key(), t.to.key());
    if from == to {
        return Err(SolanaError::SendToSelf(t.to.as_str().to_owned()));
    }
    if to == SYSTEM_PROGRAM {
        return Err(SolanaError::SendToSystemProgram(t.to.as_str().to_owned()));
    }
    let ix = transfer(&from, &to, t.lamports);
    let message = Message::new_with_blockhash(&[ix], Some(&from), &t.blockhash);
    // Read back what was compiled: the summary and the checks below describe the message.
    let decoded = decode(&message)?;
    let expected = Decoded {
        from,
        to,
        lamports: t.lamports,
    };
    if decoded != expected {
        return Err(SolanaError::BuildMismatch(format!(
            "built {expected:?}, compiled {decoded:?}"
        )));
    }
    if message.recent_blockhash != t.blockhash {
        return Err(SolanaError::BuildMismatch(
            "recent blockhash differs".into(),
        ));
    }
    // `decoded` equals `expected`, whose keys are those of `t.from` and `t.to`: their text is
    // the text of the message's keys.
    let summary = render(
        decoded.lamports,
        &t.agent,
        t.network,
        t.from.as_str(),
        t.to.as_str(),
    );
    Ok(Built {
        message,
        summary,
        from: t.from.clone(),
        to: t.to.clone(),
    })
}

/// The one-line summary of a message, decoded from its System transfer instruction:
/// `transfer 0.25 SOL (250000000 lamports) from trader <from> to <to> on solana devnet, fee payer trader`.
/// Addresses are printed in full: shortened ones invite address poisoning. (The signer renders
/// the summary while building; the tests decode messages they altered with this.)
#[cfg(test)]
pub(crate) fn summary_of(
    message: &Message,
    agent: &AgentId,
    network: Network,
) -> Result<String, SolanaError> {
    decode(message).map(|d| {
        render(
            d.lamports,
            agent,
            network,
            &d.from.to_string(),
            &d.to.to_string(),
        )
    })
}

/// A signed transaction ready to broadcast.
#[derive(Clone, Debug)]
pub(crate) struct SignedTx {
    /// The legacy `Transaction` in wire format (bincode), as `sendTransaction` takes it.
    pub wire: Vec<u8>,
    /// The transaction's signature in base58 (its id on chain).
    pub signature: String,
}

/// Signs the message with the agent key over `message.serialize()` and returns the wire
/// transaction. Refuses unless the message is a single System transfer whose fee payer and
/// sender is this key, and the summary names its amount, sender and recipient.
pub(crate) fn sign(built: &Built, key: &Ed25519Key) -> Result<SignedTx, SolanaError> {
    let decoded = decode(&built.message)?;
    let signer = Pubkey::new_from_array(key.public_bytes());
    if decoded.from != signer {
        return Err(SolanaError::WrongSigner {
            key: signer.to_string(),
            fee_payer: decoded.from.to_string(),
        });
    }
    // The summary shows the text of `built`'s addresses: they must be the message's keys.
    if decoded.from != built.from.key() || decoded.to != built.to.key() {
        return Err(SolanaError::SummaryMismatch(
            "it names other accounts than the message holds".into(),
        ));
    }
    check_summary(
        &built.summary,
        &decoded,
        built.from.as_str(),
        built.to.as_str(),
    )?;
    // `serialize` unwraps inside solana-message; it cannot fail here: `decode` has pinned the
    // message to 3 keys and one instruction with 12 bytes of data (all far below short_vec limits).
    let bytes = key.sign(&built.message.serialize());
    let signature = Signature::from(bytes);
    let tx = Transaction {
        signatures: vec![signature],
        message: built.message.clone(),
    };
    let wire = bincode::serialize(&tx).map_err(SolanaError::Encode)?;
    Ok(SignedTx {
        wire,
        signature: signature.to_string(),
    })
}

/// A transfer as read back from a compiled message.
#[derive(Debug, PartialEq, Eq)]
struct Decoded {
    from: Pubkey,
    to: Pubkey,
    lamports: u64,
}

/// Reads a compiled message back into a transfer, refusing anything but the exact layout
/// `Message::new` gives one System transfer: accounts `[from (signer, payer), to, System
/// Program]`, one instruction calling account 2 with accounts `[0, 1]` and Transfer data.
fn decode(message: &Message) -> Result<Decoded, SolanaError> {
    let ix = match message.instructions.as_slice() {
        [ix] => ix,
        ixs => return Err(SolanaError::NotOneInstruction(ixs.len())),
    };
    let keys = &message.account_keys;
    let program = keys.get(usize::from(ix.program_id_index)).ok_or_else(|| {
        SolanaError::UnexpectedLayout(format!(
            "program index {} is out of range",
            ix.program_id_index
        ))
    })?;
    if *program != SYSTEM_PROGRAM {
        return Err(SolanaError::NotSystemProgram(program.to_string()));
    }
    let lamports = match transfer_data(&ix.data)? {
        SystemInstruction::Transfer { lamports } => lamports,
        other => return Err(SolanaError::NotTransfer(truncate(&format!("{other:?}")))),
    };
    let header = &message.header;
    let layout = (
        keys.len(),
        header.num_required_signatures,
        header.num_readonly_signed_accounts,
        header.num_readonly_unsigned_accounts,
        ix.program_id_index,
        ix.accounts.as_slice(),
    );
    let (from, to) = match (layout, keys.as_slice()) {
        ((3, 1, 0, 1, 2, [0, 1]), [from, to, _program]) => (*from, *to),
        _ => {
            return Err(SolanaError::UnexpectedLayout(format!(
                "{} accounts, header {}/{}/{}, program index {}, instruction accounts {:?}; expected 3 accounts, header 1/0/1, program index 2, accounts [0, 1]",
                keys.len(),
                header.num_required_signatures,
                header.num_readonly_signed_accounts,
                header.num_readonly_unsigned_accounts,
                ix.program_id_index,
                truncate(&format!("{:?}", ix.accounts)),
            )));
        }
    };
    if from == to {
        return Err(SolanaError::SendToSelf(to.to_string()));
    }
    if to == SYSTEM_PROGRAM {
        return Err(SolanaError::SendToSystemProgram(to.to_string()));
    }
    if lamports == 0 {
        return Err(SolanaError::ZeroAmount);
    }
    Ok(Decoded { from, to, lamports })
}

/// Decodes System instruction data exactly as the System Program does (bincode, fixed-width
/// integers), refusing trailing bytes.
fn transfer_data(data: &[u8]) -> Result<SystemInstruction, SolanaError> {
    bincode::DefaultOptions::new()
        .with_fixint_encoding()
        .with_little_endian()
        .with_limit(MAX_INSTRUCTION_DATA)
        .reject_trailing_bytes()
        .deserialize(data)
        .map_err(|e| SolanaError::NotTransfer(format!("instruction data does not decode: {e}")))
}

/// The summary of a transfer of `lamports` from `from` to `to` (base58 text of the message's keys).
fn render(lamports: u64, agent: &AgentId, network: Network, from: &str, to: &str) -> String {
    format!(
        "transfer {} SOL ({lamports} lamports) from {agent} {from} to {to} on solana {network}, fee payer {agent}",
        format_sol(lamports),
    )
}

/// Checks that a summary states the decoded amount, sender and recipient (`from` and `to`
/// are the base58 text of the decoded keys) in the order `render` writes them, so what the
/// operator read is what gets signed.
fn check_summary(summary: &str, d: &Decoded, from: &str, to: &str) -> Result<(), SolanaError> {
    let amount = format!(
        "transfer {} SOL ({} lamports) from ",
        format_sol(d.lamports),
        d.lamports
    );
    let accounts = format!(" {from} to {to} on solana ");
    if !summary.starts_with(&amount) {
        return Err(SolanaError::SummaryMismatch(format!(
            "it does not start with {amount:?}"
        )));
    }
    if !summary.contains(&accounts) {
        return Err(SolanaError::SummaryMismatch(format!(
            "it does not name {accounts:?}"
        )));
    }
    Ok(())
}

/// Formats lamports as SOL, exactly: up to 9 decimals, trailing zeros trimmed, no floats.
pub(crate) fn format_sol(lamports: u64) -> String {
    let whole = lamports / LAMPORTS_PER_SOL;
    let frac = lamports % LAMPORTS_PER_SOL;
    if frac == 0 {
        return whole.to_string();
    }
    let digits = format!("{frac:09}");
    format!("{whole}.{}", digits.trim_end_matches('0'))
}

#[cfg(test)]
mod tests;
