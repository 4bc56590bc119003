//! Every signing vector of the official Python SDK's `tests/signing_test.py`
//! (hyperliquid-python-sdk), reproduced byte for byte: the same key, actions, nonces and
//! networks give the same `connectionId`, `r`, `s` and `v` strings.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use alloy_primitives::B256;
use k256::ecdsa::{RecoveryId, Signature, SigningKey, VerifyingKey};
use serde::Serialize;

use super::signing::{HlSignature, UserSigned, action_hash, address_of, l1_signing_hash, sign_l1};
use super::wire::{
    CancelAction, CancelWire, Cloid, HlAddress, OrderAction, OrderType, OrderWire,
    ScheduleCancelAction, Tif, Tpsl, UpdateLeverageAction, WireDecimal, pack,
};
use super::{HlNetwork, HyperliquidError};

const SDK_TEST_KEY: &str = "0123456789012345678901234567890123456789012345678901234567890123";

fn key() -> SigningKey {
    SigningKey::from_slice(&hex::decode(SDK_TEST_KEY).unwrap()).unwrap()
}

fn dec(s: &str) -> WireDecimal {
    WireDecimal::parse(s).unwrap()
}

/// Asserts the signature equals the SDK's `{"r", "s", "v"}` as the SDK prints them.
fn assert_sig(sig: HlSignature, r: &str, s: &str, v: u8) {
    let json = sig.to_json();
    assert_eq!(json["r"], r, "r");
    assert_eq!(json["s"], s, "s");
    assert_eq!(json["v"], v, "v");
}

/// Signs `action` on both networks with nonce 0 and checks the SDK's vectors.
fn assert_l1<A: Serialize>(
    action: &A,
    vault: Option<&HlAddress>,
    mainnet: (&str, &str, u8),
    testnet: (&str, &str, u8),
) {
    let packed = pack(action).unwrap();
    let m = sign_l1(&key(), &packed, vault, 0, None, HlNetwork::Mainnet).unwrap();
    assert_sig(m, mainnet.0, mainnet.1, mainnet.2);
    let t = sign_l1(&key(), &packed, vault, 0, None, HlNetwork::Testnet).unwrap();
    assert_sig(t, testnet.0, testnet.1, testnet.2);
    // And the exchange's check: the signature recovers the key's address.
    let hash = l1_signing_hash(action_hash(&packed, vault, 0, None), HlNetwork::Mainnet);
    assert_eq!(recover(&hash, m), address_of(key().verifying_key()));
}

fn recover(hash: &B256, sig: HlSignature) -> HlAddress {
    let mut bytes = [0u8; 64];
    bytes[..32].copy_from_slice(&sig.r.to_be_bytes::<32>());
    bytes[32..].copy_from_slice(&sig.s.to_be_bytes::<32>());
    let signature = Signature::from_slice(&bytes).unwrap();
    let recid = RecoveryId::from_byte(sig.v - 27).unwrap();
    let vk = VerifyingKey::recover_from_prehash(hash.as_slice(), &signature, recid).unwrap();
    address_of(&vk)
}

fn eth_order(sz: &str, px: &str, asset: u32, t: OrderType, c: Option<Cloid>) -> OrderAction {
    OrderAction::new(vec![OrderWire {
        a: asset,
        b: true,
        p: dec(px),
        s: dec(sz),
        r: false,
        t,
        c,
    }])
}

#[derive(Serialize)]
struct Dummy {
    #[serde(rename = "type")]
    kind: &'static str,
    num: u64,
}

/// `{"type": "dummy", "num": float_to_int_for_hashing(1000)}`.
fn dummy() -> Dummy {
    Dummy {
        kind: "dummy",
        num: u64::try_from(dec("1000").units()).unwrap(),
    }
}

#[test]
fn phantom_agent_creation_matches_production() {
    let action = eth_order(
        "0.0147",
        "1670.1",
        4,
        OrderType::Limit { tif: Tif::Ioc },
        None,
    );
    let hash = action_hash(&pack(&action).unwrap(), None, 1_677_777_606_040, None);
    assert_eq!(
        format!("{hash:#x}"),
        "0x0fcbeda5ae3c4950a548021552a4fea2226858c4453571bf3f24ba017eac2908"
    );
}

#[test]
fn l1_action_signing_matches() {
    assert_l1(
        &dummy(),
        None,
        (
            "0x53749d5b30552aeb2fca34b530185976545bb22d0b3ce6f62e31be961a59298",
            "0x755c40ba9bf05223521753995abb2f73ab3229be8ec921f350cb447e384d8ed8",
            27,
        ),
        (
            "0x542af61ef1f429707e3c76c5293c80d01f74ef853e34b76efffcb57e574f9510",
            "0x17b8b32f086e8cdede991f1e2c529f5dd5297cbe8128500e00cbaf766204a613",
            28,
        ),
    );
}

#[test]
fn l1_action_signing_order_matches() {
    // The ETH order vector of the issue: mainnet r = 0xd653…d78e, v = 28.
    let action = eth_order("100", "100", 1, OrderType::Limit { tif: Tif::Gtc }, None);
    assert_l1(
        &action,
        None,
        (
            "0xd65369825a9df5d80099e513cce430311d7d26ddf477f5b3a33d2806b100d78e",
            "0x2b54116ff64054968aa237c20ca9ff68000f977c93289157748a3162b6ea940e",
            28,
        ),
        (
            "0x82b2ba28e76b3d761093aaded1b1cdad4960b3af30212b343fb2e6cdfa4e3d54",
            "0x6b53878fc99d26047f4d7e8c90eb98955a109f44209163f52d8dc4278cbbd9f5",
            27,
        ),
    );
}

#[test]
fn l1_action_signing_order_with_cloid_matches() {
    let cloid = Cloid::parse("0x00000000000000000000000000000001").unwrap();
    let action = eth_order(
        "100",
        "100",
        1,
        OrderType::Limit { tif: Tif::Gtc },
        Some(cloid),
    );
    assert_l1(
        &action,
        None,
        (
            "0x41ae18e8239a56cacbc5dad94d45d0b747e5da11ad564077fcac71277a946e3",
            "0x3c61f667e747404fe7eea8f90ab0e76cc12ce60270438b2058324681a00116da",
            27,
        ),
        (
            "0xeba0664bed2676fc4e5a743bf89e5c7501aa6d870bdb9446e122c9466c5cd16d",
            "0x7f3e74825c9114bc59086f1eebea2928c190fdfbfde144827cb02b85bbe90988",
            28,
        ),
    );
}

#[test]
fn l1_action_signing_matches_with_vault() {
    let vault = HlAddress::parse("0x1719884eb866cb12b2287399b15f7db5e7d775ea").unwrap();
    assert_l1(
        &dummy(),
        Some(&vault),
        (
            "0x3c548db75e479f8012acf3000ca3a6b05606bc2ec0c29c50c515066a326239",
            "0x4d402be7396ce74fbba3795769cda45aec00dc3125a984f2a9f23177b190da2c",
            28,
        ),
        (
            "0xe281d2fb5c6e25ca01601f878e4d69c965bb598b88fac58e475dd1f5e56c362b",
            "0x7ddad27e9a238d045c035bc606349d075d5c5cd00a6cd1da23ab5c39d4ef0f60",
            27,
        ),
    );
}

#[test]
fn l1_action_signing_tpsl_order_matches() {
    let trigger = OrderType::Trigger {
        is_market: true,
        trigger_px: dec("103"),
        tpsl: Tpsl::Sl,
    };
    assert_l1(
        &eth_order("100", "100", 1, trigger, None),
        None,
        (
            "0x98343f2b5ae8e26bb2587daad3863bc70d8792b09af1841b6fdd530a2065a3f9",
            "0x6b5bb6bb0633b710aa22b721dd9dee6d083646a5f8e581a20b545be6c1feb405",
            27,
        ),
        (
            "0x971c554d917c44e0e1b6cc45d8f9404f32172a9d3b3566262347d0302896a2e4",
            "0x206257b104788f80450f8e786c329daa589aa0b32ba96948201ae556d5637eac",
            28,
        ),
    );
}

#[test]
fn float_to_int_for_hashing() {
    assert_eq!(dec("123123123123").units(), 12_312_312_312_300_000_000);
    assert_eq!(dec("0.00001231").units(), 1231);
    assert_eq!(dec("1.033").units(), 103_300_000);
    assert!(matches!(
        WireDecimal::parse("0.000012312312"),
        Err(HyperliquidError::BadDecimal { .. })
    ));
}

#[test]
fn wire_decimals_are_the_sdks_float_to_wire() {
    for (text, wire) in [
        ("100", "100"),
        ("100.00000000", "100"),
        ("0.0147", "0.0147"),
        ("1670.10", "1670.1"),
        ("0.0", "0"),
        ("007.50", "7.5"),
    ] {
        assert_eq!(dec(text).to_wire(), wire, "{text}");
    }
    for bad in ["", "-1", "1e5", ".5", "5.", "1.2.3", " 1", "0x10", "١"] {
        assert!(WireDecimal::parse(bad).is_err(), "{bad:?} accepted");
    }
    assert!(WireDecimal::parse(&"9".repeat(31)).is_err());
    assert!(WireDecimal::parse(&"9".repeat(21)).is_err(), "above 10^20");
}

#[test]
fn sign_usd_transfer_action() {
    let action = UserSigned::UsdSend {
        destination: HlAddress::parse("0x5e9ee1089755c3435139848e47e6635505d5a13a").unwrap(),
        amount: dec("1"),
        time: 1_687_816_341_423,
    };
    let sig = super::signing::sign_hash(&key(), &action.signing_hash(HlNetwork::Testnet)).unwrap();
    assert_sig(
        sig,
        "0x637b37dd731507cdd24f46532ca8ba6eec616952c56218baeff04144e4a77073",
        "0x11a6a24900e6e314136d2592e2f8d502cd89b7c15b198e1bee043c9589f9fad7",
        27,
    );
}

#[test]
fn sign_withdraw_from_bridge_action() {
    let action = UserSigned::Withdraw {
        destination: HlAddress::parse("0x5e9ee1089755c3435139848e47e6635505d5a13a").unwrap(),
        amount: dec("1"),
        time: 1_687_816_341_423,
    };
    let hash = action.signing_hash(HlNetwork::Testnet);
    let sig = super::signing::sign_hash(&key(), &hash).unwrap();
    assert_sig(
        sig,
        "0x8363524c799e90ce9bc41022f7c39b4e9bdba786e5f9c72b20e43e1462c37cf9",
        "0x58b1411a775938b83e29182e8ef74975f9054c8e97ebf5ec2dc8d51bfc893881",
        28,
    );
    assert_eq!(recover(&hash, sig), address_of(key().verifying_key()));
    // The network is part of what is signed: mainnet gives another hash.
    assert_ne!(hash, action.signing_hash(HlNetwork::Mainnet));
}

#[test]
fn create_sub_account_action() {
    #[derive(Serialize)]
    struct CreateSubAccount {
        #[serde(rename = "type")]
        kind: &'static str,
        name: &'static str,
    }
    assert_l1(
        &CreateSubAccount {
            kind: "createSubAccount",
            name: "example",
        },
        None,
        (
            "0x51096fe3239421d16b671e192f574ae24ae14329099b6db28e479b86cdd6caa7",
            "0xb71f7d293af92d3772572afb8b102d167a7cef7473388286bc01f52a5c5b423",
            27,
        ),
        (
            "0xa699e3ed5c2b89628c746d3298b5dc1cca604694c2c855da8bb8250ec8014a5b",
            "0x53f1b8153a301c72ecc655b1c315d64e1dcea3ee58921fd7507e35818fcc1584",
            28,
        ),
    );
}

#[test]
fn sub_account_transfer_action() {
    #[derive(Serialize)]
    struct SubAccountTransfer {
        #[serde(rename = "type")]
        kind: &'static str,
        #[serde(rename = "subAccountUser")]
        sub_account_user: HlAddress,
        #[serde(rename = "isDeposit")]
        is_deposit: bool,
        usd: u64,
    }
    assert_l1(
        &SubAccountTransfer {
            kind: "subAccountTransfer",
            sub_account_user: HlAddress::parse("0x1d9470d4b963f552e6f671a81619d395877bf409")
                .unwrap(),
            is_deposit: true,
            usd: 10,
        },
        None,
        (
            "0x43592d7c6c7d816ece2e206f174be61249d651944932b13343f4d13f306ae602",
            "0x71a926cb5c9a7c01c3359ec4c4c34c16ff8107d610994d4de0e6430e5cc0f4c9",
            28,
        ),
        (
            "0xe26574013395ad55ee2f4e0575310f003c5bb3351b5425482e2969fa51543927",
            "0xefb08999196366871f919fd0e138b3a7f30ee33e678df7cfaf203e25f0a4278",
            28,
        ),
    );
}

#[test]
fn schedule_cancel_action() {
    assert_l1(
        &ScheduleCancelAction::new(None),
        None,
        (
            "0x6cdfb286702f5917e76cd9b3b8bf678fcc49aec194c02a73e6d4f16891195df9",
            "0x6557ac307fa05d25b8d61f21fb8a938e703b3d9bf575f6717ba21ec61261b2a0",
            27,
        ),
        (
            "0xc75bb195c3f6a4e06b7d395acc20bbb224f6d23ccff7c6a26d327304e6efaeed",
            "0x342f8ede109a29f2c0723bd5efb9e9100e3bbb493f8fb5164ee3d385908233df",
            28,
        ),
    );
    assert_l1(
        &ScheduleCancelAction::new(Some(123_456_789)),
        None,
        (
            "0x609cb20c737945d070716dcc696ba030e9976fcf5edad87afa7d877493109d55",
            "0x16c685d63b5c7a04512d73f183b3d7a00da5406ff1f8aad33f8ae2163bab758b",
            28,
        ),
        (
            "0x4e4f2dbd4107c69783e251b7e1057d9f2b9d11cee213441ccfa2be63516dc5bc",
            "0x706c656b23428c8ba356d68db207e11139ede1670481a9e01ae2dfcdb0e1a678",
            27,
        ),
    );
}

#[test]
fn addresses_and_cloids_parse_strictly() {
    let a = HlAddress::parse("0x1719884EB866cb12b2287399b15f7db5e7d775ea").unwrap();
    assert_eq!(a.to_wire(), "0x1719884eb866cb12b2287399b15f7db5e7d775ea");
    for bad in [
        "1719884eb866cb12b2287399b15f7db5e7d775ea",
        "0x1719",
        "0xzz19884eb866cb12b2287399b15f7db5e7d775ea",
    ] {
        assert!(HlAddress::parse(bad).is_err(), "{bad}");
    }
    assert!(Cloid::parse("0x0000000000000000000000000000001").is_err());
}

#[test]
fn enum_wire_names_are_the_sdks() {
    // `{"limit": {"tif": "Alo"}}` and `{"trigger": {..., "tpsl": "tp"}}`, as MessagePack maps.
    let alo = pack(&OrderType::Limit { tif: Tif::Alo }).unwrap();
    assert_eq!(alo, b"\x81\xa5limit\x81\xa3tif\xa3Alo");
    let tp = pack(&OrderType::Trigger {
        is_market: false,
        trigger_px: dec("1.5"),
        tpsl: Tpsl::Tp,
    })
    .unwrap();
    assert_eq!(
        tp,
        b"\x81\xa7trigger\x83\xa8isMarket\xc2\xa9triggerPx\xa31.5\xa4tpsl\xa2tp"
    );
    let send = UserSigned::UsdSend {
        destination: HlAddress::parse("0x5e9ee1089755c3435139848e47e6635505d5a13a").unwrap(),
        amount: dec("1"),
        time: 1,
    };
    assert_eq!(send.wire_type(), "usdSend");
}

#[test]
fn cancel_and_leverage_pack_in_the_sdks_dict_order() {
    // exchange.py: {"type": "cancel", "cancels": [{"a": asset, "o": oid}]}
    let cancel = pack(&CancelAction::new(vec![CancelWire { a: 1, o: 42 }])).unwrap();
    assert_eq!(
        cancel,
        b"\x82\xa4type\xa6cancel\xa7cancels\x91\x82\xa1a\x01\xa1o\x2a"
    );
    // exchange.py: {"type": "updateLeverage", "asset", "isCross", "leverage"}
    let leverage = pack(&UpdateLeverageAction::new(1, true, 5)).unwrap();
    assert_eq!(
        leverage,
        b"\x84\xa4type\xaeupdateLeverage\xa5asset\x01\xa7isCross\xc3\xa8leverage\x05"
    );
}
