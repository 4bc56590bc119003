//! Tests of approvals and operator codes: RFC 6238 vectors, single use, expiry, lockout, and
//! codes of a staged secret under the live verifier.

use super::*;
use vigil_protocol::{Amount, Chain, Network, TransferIntent};

const SECRET: &[u8] = b"12345678901234567890"; // RFC 6238 Appendix B SHA-1 secret

fn approvals() -> Approvals {
    Approvals::new(&Zeroizing::new(SECRET.to_vec()), DEFAULT_TTL_SECS).unwrap()
}

fn request() -> ApprovalRequest {
    ApprovalRequest {
        agent: "trader".parse().unwrap(),
        idempotency_key: "k1".parse().unwrap(),
        intent: Intent::Transfer(TransferIntent {
            chain: Chain::Solana,
            network: Network::Devnet,
            asset: vigil_protocol::AssetSymbol::SOL,
            to: "x".into(),
            amount: Amount::from_base_units(1),
        }),
        context: Context::default(),
        summary: "s".into(),
        expires_at: 0,
    }
}

fn code_at(t: u64) -> OperatorCode {
    c(&approvals().totp.generate(t))
}

fn c(digits: &str) -> OperatorCode {
    digits.parse().unwrap()
}

#[test]
fn rfc6238_vector() {
    // RFC 6238 Appendix B, SHA-1, T = 59 s: 94287082 (8 digits); the 6-digit code is its last 6.
    assert_eq!(code_at(59), c("287082"));
    assert_eq!(code_at(1_111_111_109), c("081804"));
}

#[test]
fn code_is_single_use_and_bound_to_one_approval() {
    let mut a = approvals();
    let now = 1_700_000_000;
    let (id1, id2) = ("ap-1".parse().unwrap(), "ap-2".parse().unwrap());
    a.open(id1, request(), now).unwrap();
    a.open(id2, request(), now).unwrap();
    let code = code_at(now);
    let id1: ApprovalId = "ap-1".parse().unwrap();
    let id2: ApprovalId = "ap-2".parse().unwrap();
    assert!(a.verify(&id1, &code, now).is_ok());
    // Same code for another approval: refused (its step is spent).
    assert_eq!(
        a.verify(&id2, &code, now).unwrap_err().kind,
        ErrorKind::ApprovalInvalidCode
    );
    // Same approval again: used.
    assert_eq!(
        a.verify(&id1, &code, now).unwrap_err().kind,
        ErrorKind::ApprovalUsed
    );
    // The next step's code works for the second approval.
    assert!(a.verify(&id2, &code_at(now + 30), now + 30).is_ok());
}

#[test]
fn operator_codes_share_single_use_and_lockout_with_approvals() {
    let mut a = approvals();
    let now = 1_700_000_000;
    let id: ApprovalId = "ap-1".parse().unwrap();
    a.open(id.clone(), request(), now).unwrap();
    let step = a.verify_code(&code_at(now), now).unwrap();
    assert_eq!(step, now / STEP_SECS);
    // The step is spent for `confirm` and for `approve` alike.
    let again = a.verify_code(&code_at(now), now).unwrap_err();
    assert_eq!(again.kind, ErrorKind::OperatorCodeInvalid);
    assert!(again.message.contains("already used"), "{}", again.message);
    assert_eq!(
        a.verify(&id, &code_at(now), now).unwrap_err().kind,
        ErrorKind::ApprovalInvalidCode
    );
    // That was two failures; a third wrong code locks both paths.
    let third = a.verify_code(&c("000000"), now).unwrap_err();
    assert!(third.message.contains("locked"), "{}", third.message);
    let later = now + 60;
    assert_eq!(
        a.verify_code(&code_at(later), later).unwrap_err().kind,
        ErrorKind::RateLimited
    );
    assert_eq!(
        a.verify(&id, &code_at(later), later).unwrap_err().kind,
        ErrorKind::RateLimited
    );
    // A replayed record restores the spent step.
    let mut b = approvals();
    b.restore_step(now / STEP_SECS);
    assert!(b.verify_code(&code_at(now), now).is_err());
    assert!(b.verify_code(&code_at(now + 30), now + 30).is_ok());
}

#[test]
fn replacing_keys_needs_both_authenticators_codes_for_one_step() {
    let mut live = approvals();
    let staged = Approvals::new(&Zeroizing::new(b"another-secret-of-20b".to_vec()), 600).unwrap();
    let now = 1_700_000_000;
    let new = |t: u64| c(&staged.totp.generate(t));
    // Either code alone (the other wrong), or the two swapped: refused, one failure each.
    for (n, cur, which) in [
        (new(now), c("000000"), "current authenticator"),
        (code_at(now), code_at(now), "new authenticator"),
    ] {
        let err = live.verify_code_pair(&staged, &n, &cur, now).unwrap_err();
        assert_eq!(err.kind, ErrorKind::OperatorCodeInvalid);
        assert!(err.message.contains(which), "{}", err.message);
    }
    // Both right, shown at the same step: accepted, and that step is spent once for both.
    let step = now / STEP_SECS;
    assert_eq!(
        live.verify_code_pair(&staged, &new(now), &code_at(now), now),
        Ok((step, step))
    );
    assert!(live.verify_code(&code_at(now), now).is_err(), "spent");
    // A third failure in a row would have locked: the success reset the count.
    assert!(
        live.verify_code_pair(&staged, &new(now + 30), &c("000000"), now + 30)
            .is_err()
    );
    assert!(
        live.verify_code_pair(&staged, &new(now + 30), &c("000000"), now + 30)
            .is_err()
    );
    let third = live
        .verify_code_pair(&staged, &new(now + 30), &c("000000"), now + 30)
        .unwrap_err();
    assert!(third.message.contains("locked"), "{}", third.message);
    assert_eq!(
        live.verify_code_pair(&staged, &new(now + 60), &code_at(now + 60), now + 60)
            .unwrap_err()
            .kind,
        ErrorKind::RateLimited
    );
}

#[test]
fn staged_secret_codes_count_against_the_live_lockout() {
    let mut live = approvals();
    let staged = Approvals::new(&Zeroizing::new(b"another-secret-of-20b".to_vec()), 600).unwrap();
    let now = 1_700_000_000;
    let staged_code = |t: u64| c(&staged.totp.generate(t));
    // The LIVE secret's code is not the staged one's: a wrong code, counted.
    assert_eq!(
        live.verify_code_with(&staged, &code_at(now), now)
            .unwrap_err()
            .kind,
        ErrorKind::OperatorCodeInvalid
    );
    assert_eq!(
        live.verify_code_with(&staged, &staged_code(now), now),
        Ok(now / STEP_SECS)
    );
    // Its step is spent for everything the live verifier checks.
    assert!(live.verify_code(&code_at(now), now).is_err());
    // That was one failure; two more wrong staged codes lock both paths.
    assert!(live.verify_code_with(&staged, &c("000000"), now).is_err());
    let third = live
        .verify_code_with(&staged, &c("111111"), now)
        .unwrap_err();
    assert!(third.message.contains("locked"), "{}", third.message);
    let locked = live.verify_code_with(&staged, &staged_code(now + 30), now + 30);
    assert_eq!(locked.unwrap_err().kind, ErrorKind::RateLimited);
    assert_eq!(
        live.verify_code(&code_at(now + 30), now + 30)
            .unwrap_err()
            .kind,
        ErrorKind::RateLimited
    );
    // An applied import closes what was pending under the previous keys.
    let id: ApprovalId = "ap-9".parse().unwrap();
    let mut fresh = approvals();
    fresh.open(id.clone(), request(), now).unwrap();
    fresh.close_all_waiting();
    assert_eq!(fresh.waiting_count(), 0);
    assert_eq!(
        fresh.verify(&id, &code_at(now), now).unwrap_err().kind,
        ErrorKind::ApprovalExpired
    );
}

#[test]
fn expiry_unknown_and_lockout() {
    let mut a = approvals();
    let now = 1_700_000_000;
    let id: ApprovalId = "ap-1".parse().unwrap();
    let exp = a.open(id.clone(), request(), now).unwrap();
    assert_eq!(exp, now + DEFAULT_TTL_SECS);
    let late = exp + 1;
    assert_eq!(
        a.verify(&id, &code_at(late), late).unwrap_err().kind,
        ErrorKind::ApprovalExpired
    );
    assert_eq!(
        a.verify(&"ap-9".parse().unwrap(), &c("123456"), now)
            .unwrap_err()
            .kind,
        ErrorKind::ApprovalUnknown
    );

    let id: ApprovalId = "ap-2".parse().unwrap();
    a.open(id.clone(), request(), now).unwrap();
    let good = code_at(now);
    let wrong = &c(if good.expose_digits() == "000000" {
        "111111"
    } else {
        "000000"
    });
    for _ in 0..MAX_CONSECUTIVE_FAILURES - 1 {
        assert_eq!(
            a.verify(&id, wrong, now).unwrap_err().kind,
            ErrorKind::ApprovalInvalidCode
        );
    }
    assert!(
        a.verify(&id, wrong, now)
            .unwrap_err()
            .message
            .contains("locked")
    );
    // Even the right code is refused while locked.
    assert_eq!(
        a.verify(&id, &good, now + 1).unwrap_err().kind,
        ErrorKind::RateLimited
    );
    let after = now + LOCKOUT_SECS + 1;
    a.waiting.get_mut(&id).unwrap().expires_at = after + 100;
    assert!(a.verify(&id, &code_at(after), after).is_ok());
}

#[test]
fn restored_steps_are_not_reusable() {
    let mut a = approvals();
    let now = 1_700_000_000;
    a.restore_closed("ap-old".parse().unwrap(), Some(now / STEP_SECS));
    let id: ApprovalId = "ap-1".parse().unwrap();
    a.open(id.clone(), request(), now).unwrap();
    assert_eq!(
        a.verify(&id, &code_at(now), now).unwrap_err().kind,
        ErrorKind::ApprovalInvalidCode
    );
}
