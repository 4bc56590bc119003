//! Tests of the Solana builder: address, blockhash and amount parsing, SOL formatting, the
//! summary read back from the compiled message, signing refusals, and the signed transaction
//! run in a real Solana runtime (litesvm, signature verification on).

use super::*;

/// The canonical (re-encoded) form of an address.
fn canonical(s: &str) -> Result<String, SolanaError> {
    parse_address(s).map(|key| key.to_string())
}
use litesvm::LiteSVM;
use solana_transaction::TransactionError;

const AGENT: &str = "trader";
const QUARTER_SOL: u64 = 250_000_000;

fn agent() -> AgentId {
    AGENT.parse().unwrap()
}

fn key() -> Ed25519Key {
    Ed25519Key::generate().unwrap().0
}

fn fresh_address() -> Pubkey {
    Pubkey::new_from_array(key().public_bytes())
}

fn transfer_of(from: Pubkey, to: Pubkey, lamports: u64, blockhash: Hash) -> Transfer {
    Transfer {
        agent: agent(),
        network: Network::Devnet,
        from: Address::of(from),
        to: Address::of(to),
        lamports,
        blockhash,
    }
}

/// A fresh agent key, its address, and a 0.25 SOL transfer from it to a fresh address, built.
fn quarter_sol_built() -> (Ed25519Key, Pubkey, Built) {
    let agent_key = key();
    let from = Pubkey::new_from_array(agent_key.public_bytes());
    let blockhash = Hash::new_from_array([3; 32]);
    let transfer = transfer_of(from, fresh_address(), QUARTER_SOL, blockhash);
    (agent_key, from, build_transfer(&transfer).unwrap())
}

/// Two fresh addresses and a blockhash.
fn two_addresses() -> (Pubkey, Pubkey, Hash) {
    (
        fresh_address(),
        fresh_address(),
        Hash::new_from_array([3; 32]),
    )
}

#[test]
fn format_sol_table() {
    let cases: &[(u64, &str)] = &[
        (0, "0"),
        (1, "0.000000001"),
        (10, "0.00000001"),
        (999_999_999, "0.999999999"),
        (1_000_000_000, "1"),
        (1_500_000_000, "1.5"),
        (QUARTER_SOL, "0.25"),
        (1_000_000_001, "1.000000001"),
        (12_340_000_000, "12.34"),
        (u64::MAX, "18446744073.709551615"),
    ];
    for (lamports, want) in cases {
        assert_eq!(format_sol(*lamports), *want, "{lamports} lamports");
    }
}

#[test]
fn bad_addresses_are_refused() {
    let b58_31 = bs58::encode([7u8; 31]).into_string();
    let b58_33 = bs58::encode([7u8; 33]).into_string();
    let too_long = "1".repeat(65);
    for bad in [
        "",
        "0OIl",
        "not an address",
        b58_31.as_str(),
        b58_33.as_str(),
        too_long.as_str(),
    ] {
        let err = parse_address(bad).unwrap_err();
        assert!(
            matches!(err, SolanaError::InvalidAddress { .. }),
            "{bad:?}: {err:?}"
        );
        assert!(
            err.to_string()
                .contains("not a valid Solana address (base58 of 32 bytes)"),
            "{err}"
        );
        assert!(canonical(bad).is_err());
    }
    assert!(
        parse_address(&b58_31)
            .unwrap_err()
            .to_string()
            .contains("31 bytes")
    );
    assert!(
        parse_address(&b58_33)
            .unwrap_err()
            .to_string()
            .contains("33 bytes")
    );
}

#[test]
fn addresses_round_trip_canonically() {
    let k = key();
    let addr = address_of(&k.public_bytes());
    assert_eq!(parse_address(&addr).unwrap().to_bytes(), k.public_bytes());
    assert_eq!(canonical(&addr).unwrap(), addr);
    assert_eq!(
        canonical("11111111111111111111111111111111").unwrap(),
        SYSTEM_PROGRAM.to_string()
    );
    // Leading '1's are leading zero bytes: a 32-byte key of zeros has exactly one spelling.
    assert!(parse_address("111111111111111111111111111111111").is_err());
    let parsed = Address::parse(&addr).unwrap();
    assert_eq!(parsed.as_str(), addr);
    assert_eq!(
        parsed,
        Address::of(Pubkey::new_from_array(k.public_bytes()))
    );
}

#[test]
fn blockhash_is_required_and_checked() {
    assert!(matches!(
        parse_blockhash(None),
        Err(SolanaError::MissingBlockhash)
    ));
    assert!(
        parse_blockhash(None)
            .unwrap_err()
            .to_string()
            .contains("context.recent_blockhash")
    );
    let short = bs58::encode([1u8; 31]).into_string();
    for bad in ["", "0OIl", short.as_str()] {
        assert!(
            matches!(
                parse_blockhash(Some(bad)),
                Err(SolanaError::InvalidBlockhash { .. })
            ),
            "{bad:?}"
        );
    }
    let good = bs58::encode([9u8; 32]).into_string();
    assert_eq!(parse_blockhash(Some(&good)).unwrap().to_bytes(), [9u8; 32]);
}

#[test]
fn lamports_must_fit_u64() {
    assert_eq!(
        lamports(Amount::from_base_units(u128::from(u64::MAX))).unwrap(),
        u64::MAX
    );
    assert_eq!(
        lamports(Amount::from_base_units(QUARTER_SOL.into())).unwrap(),
        QUARTER_SOL
    );
    let over = u128::from(u64::MAX) + 1;
    assert!(
        matches!(lamports(Amount::from_base_units(over)), Err(SolanaError::AmountTooLarge(v)) if v == over)
    );
    assert!(matches!(
        lamports(Amount::from_base_units(u128::MAX)),
        Err(SolanaError::AmountTooLarge(_))
    ));
}

#[test]
fn build_refuses_self_zero_and_system_program() {
    let (a, b, h) = two_addresses();
    assert!(matches!(
        build_transfer(&transfer_of(a, a, 1, h)),
        Err(SolanaError::SendToSelf(_))
    ));
    assert!(
        build_transfer(&transfer_of(a, a, 1, h))
            .unwrap_err()
            .to_string()
            .contains("sending to itself")
    );
    assert!(matches!(
        build_transfer(&transfer_of(a, b, 0, h)),
        Err(SolanaError::ZeroAmount)
    ));
    assert!(matches!(
        build_transfer(&transfer_of(a, SYSTEM_PROGRAM, 1, h)),
        Err(SolanaError::SendToSystemProgram(_))
    ));
}

#[test]
fn summary_names_full_addresses_and_fee_payer() {
    let (a, b, h) = two_addresses();
    let built = build_transfer(&transfer_of(a, b, QUARTER_SOL, h)).unwrap();
    assert_eq!(
        built.summary,
        format!(
            "transfer 0.25 SOL (250000000 lamports) from trader {a} to {b} on solana devnet, fee payer trader"
        )
    );
    assert_eq!(built.message.recent_blockhash, h);
    assert_eq!(built.message.account_keys, vec![a, b, SYSTEM_PROGRAM]);
    assert_eq!(
        summary_of(&built.message, &agent(), Network::Testnet).unwrap(),
        built.summary.replace("devnet", "testnet")
    );
}

#[test]
fn summary_is_rendered_from_the_message() {
    let (a, b, h) = two_addresses();
    let built = build_transfer(&transfer_of(a, b, QUARTER_SOL, h)).unwrap();
    let mut altered = built.message.clone();
    // System Transfer data: u32 LE tag 2, then u64 LE lamports.
    assert_eq!(altered.instructions[0].data[..4], [2, 0, 0, 0]);
    altered.instructions[0].data[4..12].copy_from_slice(&1_500_000_000u64.to_le_bytes());
    let summary = summary_of(&altered, &agent(), Network::Devnet).unwrap();
    assert!(
        summary.starts_with("transfer 1.5 SOL (1500000000 lamports) from trader "),
        "{summary}"
    );
    // Swapping the recipient key in the message changes the summary's recipient.
    let c = fresh_address();
    altered.account_keys[1] = c;
    let summary = summary_of(&altered, &agent(), Network::Devnet).unwrap();
    assert!(
        summary.contains(&format!(" to {c} on solana devnet")) && !summary.contains(&b.to_string())
    );
}

#[test]
fn summary_of_refuses_what_is_not_one_system_transfer() {
    let (a, b, h) = two_addresses();
    let built = build_transfer(&transfer_of(a, b, QUARTER_SOL, h)).unwrap();
    let refuse = |m: &Message| summary_of(m, &agent(), Network::Devnet).unwrap_err();

    let mut other_program = built.message.clone();
    other_program.account_keys[2] = fresh_address();
    assert!(matches!(
        refuse(&other_program),
        SolanaError::NotSystemProgram(_)
    ));

    let mut assign = built.message.clone();
    assign.instructions[0].data =
        bincode::serialize(&SystemInstruction::Assign { owner: b }).unwrap();
    assert!(
        matches!(refuse(&assign), SolanaError::NotTransfer(_)),
        "{:?}",
        refuse(&assign)
    );

    let mut trailing = built.message.clone();
    trailing.instructions[0].data.push(0);
    assert!(matches!(refuse(&trailing), SolanaError::NotTransfer(_)));

    let mut two = built.message.clone();
    two.instructions.push(two.instructions[0].clone());
    assert!(matches!(refuse(&two), SolanaError::NotOneInstruction(2)));

    let mut swapped = built.message.clone();
    swapped.instructions[0].accounts = vec![1, 0];
    assert!(matches!(refuse(&swapped), SolanaError::UnexpectedLayout(_)));

    let mut out_of_range = built.message.clone();
    out_of_range.instructions[0].program_id_index = 9;
    assert!(matches!(
        refuse(&out_of_range),
        SolanaError::UnexpectedLayout(_)
    ));

    let mut two_signers = built.message.clone();
    two_signers.header.num_required_signatures = 2;
    assert!(matches!(
        refuse(&two_signers),
        SolanaError::UnexpectedLayout(_)
    ));

    let mut to_self = built.message.clone();
    to_self.account_keys[1] = a;
    assert!(matches!(refuse(&to_self), SolanaError::SendToSelf(_)));
}

#[test]
fn sign_refuses_a_foreign_key_and_a_lying_summary() {
    let (agent_key, from, built) = quarter_sol_built();
    assert!(matches!(
        sign(&built, &key()),
        Err(SolanaError::WrongSigner { .. })
    ));

    let mut lying = built.clone();
    lying.summary = lying
        .summary
        .replace("0.25 SOL (250000000", "0.025 SOL (25000000");
    assert!(matches!(
        sign(&lying, &agent_key),
        Err(SolanaError::SummaryMismatch(_))
    ));
    let mut other_recipient = built.clone();
    other_recipient.summary = summary_of(&built.message, &agent(), Network::Devnet)
        .unwrap()
        .replace(
            &built.message.account_keys[1].to_string(),
            &fresh_address().to_string(),
        );
    assert!(matches!(
        sign(&other_recipient, &agent_key),
        Err(SolanaError::SummaryMismatch(_))
    ));

    // The message's recipient swapped under an unchanged summary: the summary's text no
    // longer names the message's keys.
    let mut swapped = built.clone();
    swapped.message.account_keys[1] = fresh_address();
    assert!(matches!(
        sign(&swapped, &agent_key),
        Err(SolanaError::SummaryMismatch(_))
    ));

    let mut not_transfer = built.clone();
    not_transfer.message.instructions[0].data =
        bincode::serialize(&SystemInstruction::Assign { owner: from }).unwrap();
    assert!(matches!(
        sign(&not_transfer, &agent_key),
        Err(SolanaError::NotTransfer(_))
    ));
}

#[test]
fn wire_round_trips_and_signature_verifies() {
    let (agent_key, _, built) = quarter_sol_built();
    let signed = sign(&built, &agent_key).unwrap();
    let tx: Transaction = bincode::deserialize(&signed.wire).unwrap();
    assert_eq!(tx.message, built.message);
    assert_eq!(tx.signatures.len(), 1);
    assert_eq!(tx.signatures[0].to_string(), signed.signature);
    tx.verify().unwrap();
    // Wire layout: short_vec(1 signature) ‖ signature ‖ the exact bytes that were signed.
    assert_eq!(signed.wire[0], 1);
    assert_eq!(signed.wire[65..], built.message.serialize()[..]);
    assert_eq!(
        bincode::serialize(&built.message).unwrap(),
        built.message.serialize()
    );
}

/// A LiteSVM with signature verification on (it is on by default; asserted, not assumed).
fn svm() -> LiteSVM {
    let svm = LiteSVM::new().with_sigverify(true);
    assert!(svm.get_sigverify());
    svm
}

/// A funded agent in `svm`, and a transfer of 0.25 SOL from it to a fresh recipient, signed.
fn funded_transfer(svm: &mut LiteSVM) -> (Pubkey, Pubkey, Built, SignedTx) {
    let agent_key = key();
    let from = Pubkey::new_from_array(agent_key.public_bytes());
    let to = fresh_address();
    svm.airdrop(&from, 2 * LAMPORTS_PER_SOL).unwrap();
    let built =
        build_transfer(&transfer_of(from, to, QUARTER_SOL, svm.latest_blockhash())).unwrap();
    let signed = sign(&built, &agent_key).unwrap();
    (from, to, built, signed)
}

fn balance(svm: &LiteSVM, who: &Pubkey) -> u64 {
    svm.get_balance(who).unwrap_or(0)
}

#[test]
fn litesvm_executes_the_signed_transfer_as_summarised() {
    let mut svm = svm();
    let (from, to, built, signed) = funded_transfer(&mut svm);
    let before = balance(&svm, &from);
    let tx: Transaction = bincode::deserialize(&signed.wire).unwrap();
    let meta = svm.send_transaction(tx).unwrap();
    println!(
        "litesvm: {} compute units, fee {} lamports",
        meta.compute_units_consumed, meta.fee
    );
    assert_eq!(meta.signature.to_string(), signed.signature);
    assert!(meta.fee > 0);
    // The summary says 250000000 lamports to `to` from `from`: the chain agrees.
    assert!(built.summary.contains(&format!(
        "({QUARTER_SOL} lamports) from trader {from} to {to} "
    )));
    assert_eq!(balance(&svm, &to), QUARTER_SOL);
    assert_eq!(balance(&svm, &from), before - QUARTER_SOL - meta.fee);
}

#[test]
fn litesvm_rejects_a_tampered_amount() {
    let mut svm = svm();
    let (from, to, built, signed) = funded_transfer(&mut svm);
    let mut wire = signed.wire.clone();
    let data = &built.message.instructions[0].data;
    // The lamports field is the last 8 bytes of the transaction (the instruction data ends it).
    assert_eq!(wire[wire.len() - 8..], data[4..12]);
    let at = wire.len() - 5;
    wire[at] ^= 0x01;
    let tampered: Transaction = bincode::deserialize(&wire).unwrap();
    assert_ne!(tampered.message, built.message);
    assert_rejected_for_signature(&mut svm, tampered, &from, &to);
}

#[test]
fn litesvm_rejects_a_swapped_recipient() {
    let mut svm = svm();
    let (from, to, _built, signed) = funded_transfer(&mut svm);
    let mut tampered: Transaction = bincode::deserialize(&signed.wire).unwrap();
    let thief = fresh_address();
    tampered.message.account_keys[1] = thief;
    assert_rejected_for_signature(&mut svm, tampered, &from, &to);
    assert_eq!(balance(&svm, &thief), 0);
}

/// The tampered transaction fails signature verification and moves nothing; the same
/// transaction does execute with sigverify off, so the rejection is the signature's doing.
fn assert_rejected_for_signature(
    svm: &mut LiteSVM,
    tampered: Transaction,
    from: &Pubkey,
    to: &Pubkey,
) {
    let (from_before, to_before) = (balance(svm, from), balance(svm, to));
    let failed = svm.send_transaction(tampered.clone()).unwrap_err();
    assert_eq!(failed.err, TransactionError::SignatureFailure);
    assert_eq!(
        (balance(svm, from), balance(svm, to)),
        (from_before, to_before)
    );

    let mut unchecked = svm.clone().with_sigverify(false);
    unchecked.send_transaction(tampered).unwrap();
    assert!(balance(&unchecked, from) < from_before);
}

#[test]
fn litesvm_rejects_an_expired_blockhash() {
    let mut svm = svm();
    let (from, to, _built, signed) = funded_transfer(&mut svm);
    let before = balance(&svm, &from);
    svm.expire_blockhash();
    let tx: Transaction = bincode::deserialize(&signed.wire).unwrap();
    let failed = svm.send_transaction(tx).unwrap_err();
    assert_eq!(failed.err, TransactionError::BlockhashNotFound);
    assert_eq!((balance(&svm, &from), balance(&svm, &to)), (before, 0));
}
