//! Differential tests against two independent implementations: a few hundred generated actions
//! of every kind the signer builds (orders of every type with and without client ids, cancels,
//! leverage, the dead-man switch, vaults, expiries, both networks, `usdSend` and `withdraw3`),
//! signed here, sent as the exchange receives them to the official Python SDK
//! (`tests/peers/hyperliquid/verify.py`) and to the npm package `@nktkas/hyperliquid`
//! (`nktkas_check.mjs`), each of which re-packs the action with its own code and recovers its
//! signer. Every one must recover this key's address: a field out of order, a number written
//! differently or a wrong type string recovers another address. nktkas also says whether the
//! keys are in its schema's order (the order the exchange's own structs serialise in).

#![allow(clippy::unwrap_used, clippy::expect_used)]
// Generated test values are small (below 300, below 10^8): the casts cannot truncate.
#![allow(clippy::cast_possible_truncation)]

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};

use k256::ecdsa::SigningKey;
use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::{Value, json};

use super::HlNetwork;
use super::signing::{USER_SIGNATURE_CHAIN_ID, UserSigned, address_of, sign_hash, sign_l1};
use super::wire::{
    CancelAction, CancelWire, Cloid, HlAddress, OrderAction, OrderType, OrderWire,
    ScheduleCancelAction, Tif, Tpsl, UpdateLeverageAction, WireDecimal, pack,
};

/// A small deterministic generator (xorshift64*): the same actions every run.
struct Gen(u64);

impl Gen {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn flip(&mut self) -> bool {
        self.next() & 1 == 1
    }
    /// A decimal with 0 to 8 decimals and up to 7 integer digits, as text.
    fn decimal(&mut self) -> WireDecimal {
        let whole = self.below(10_000_000);
        let decimals = self.below(9) as usize;
        let text = if decimals == 0 {
            whole.to_string()
        } else {
            let frac = self.below(10u64.pow(decimals as u32));
            format!("{whole}.{frac:0decimals$}")
        };
        WireDecimal::parse(&text).unwrap()
    }
    fn address(&mut self) -> HlAddress {
        let mut b = [0u8; 20];
        for chunk in b.chunks_mut(8) {
            chunk.copy_from_slice(&self.next().to_be_bytes()[..chunk.len()]);
        }
        HlAddress::from_bytes(b)
    }
    fn network(&mut self) -> HlNetwork {
        if self.flip() {
            HlNetwork::Mainnet
        } else {
            HlNetwork::Testnet
        }
    }
    fn order_type(&mut self) -> OrderType {
        match self.below(5) {
            0 => OrderType::Limit { tif: Tif::Alo },
            1 => OrderType::Limit { tif: Tif::Ioc },
            2 => OrderType::Limit { tif: Tif::Gtc },
            n => OrderType::Trigger {
                is_market: self.flip(),
                trigger_px: self.decimal(),
                tpsl: if n == 3 { Tpsl::Tp } else { Tpsl::Sl },
            },
        }
    }
    fn order(&mut self) -> OrderWire {
        let cloid = self
            .flip()
            .then(|| Cloid::parse(&format!("0x{:016x}{:016x}", self.next(), self.next())).unwrap());
        OrderWire {
            a: self.below(300) as u32,
            b: self.flip(),
            p: self.decimal(),
            s: self.decimal(),
            r: self.flip(),
            t: self.order_type(),
            c: cloid,
        }
    }
}

/// The SDK peer's script (in `tests/peers/hyperliquid`, beside the venv the test kit finds).
fn verify_script() -> PathBuf {
    vigil_testkit::host::repo_root().join("tests/peers/hyperliquid/verify.py")
}

/// One L1 request line as the exchange receives it. The action is written from its struct
/// (serde_json's `Value` would sort the keys; the exchange and the SDK keep their order).
#[derive(Serialize)]
struct L1Line<'a> {
    kind: &'static str,
    action: &'a RawValue,
    nonce: u64,
    vault: Option<String>,
    expires_after: Option<u64>,
    is_mainnet: bool,
    signature: Value,
}

/// The same L1 request as `@nktkas/hyperliquid`'s checker reads it.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct NktkasLine<'a> {
    network: &'static str,
    action: &'a RawValue,
    nonce: u64,
    vault_address: Option<String>,
    expires_after: Option<u64>,
    signature: Value,
}

fn network_name(network: HlNetwork) -> &'static str {
    match network {
        HlNetwork::Mainnet => "mainnet",
        HlNetwork::Testnet => "testnet",
    }
}

/// One generated action, as each verifier reads it.
struct Lines {
    sdk: String,
    nktkas: String,
}

fn l1<A: Serialize>(key: &SigningKey, g: &mut Gen, action: &A) -> Lines {
    let packed = pack(action).unwrap();
    let vault = g.flip().then(|| g.address());
    let expires = g.flip().then(|| 1_700_000_000_000 + g.below(1 << 40));
    let nonce = 1_700_000_000_000 + g.below(1 << 40);
    let network = g.network();
    let sig = sign_l1(key, &packed, vault.as_ref(), nonce, expires, network).unwrap();
    let action = RawValue::from_string(serde_json::to_string(action).unwrap()).unwrap();
    let vault = vault.map(HlAddress::to_wire);
    let sdk = serde_json::to_string(&L1Line {
        kind: "l1",
        action: &action,
        nonce,
        vault: vault.clone(),
        expires_after: expires,
        is_mainnet: network == HlNetwork::Mainnet,
        signature: sig.to_json(),
    })
    .unwrap();
    let nktkas = serde_json::to_string(&NktkasLine {
        network: network_name(network),
        action: &action,
        nonce,
        vault_address: vault,
        expires_after: expires,
        signature: sig.to_json(),
    })
    .unwrap();
    Lines { sdk, nktkas }
}

fn user(key: &SigningKey, g: &mut Gen) -> Lines {
    let (destination, amount, time) = (
        g.address(),
        g.decimal(),
        1_700_000_000_000 + g.below(1 << 40),
    );
    let action = if g.flip() {
        UserSigned::UsdSend {
            destination,
            amount,
            time,
        }
    } else {
        UserSigned::Withdraw {
            destination,
            amount,
            time,
        }
    };
    let network = g.network();
    let sig = sign_hash(key, &action.signing_hash(network)).unwrap();
    let primary = action.type_string().split('(').next().unwrap().to_owned();
    let wire = json!({
        "type": action.wire_type(),
        "signatureChainId": format!("{USER_SIGNATURE_CHAIN_ID:#x}"),
        "hyperliquidChain": network.chain_name(),
        "destination": destination.to_wire(),
        "amount": amount.to_wire(),
        "time": time,
    });
    let sdk = json!({
        "kind": "user",
        "primary_type": primary,
        "action": wire,
        "is_mainnet": network == HlNetwork::Mainnet,
        "signature": sig.to_json(),
    })
    .to_string();
    let nktkas = json!({
        "network": network_name(network),
        "action": wire,
        "nonce": time,
        "signature": sig.to_json(),
        "vaultAddress": null,
        "expiresAfter": null,
    })
    .to_string();
    Lines { sdk, nktkas }
}

fn requests(key: &SigningKey, n: usize) -> Vec<Lines> {
    let mut g = Gen(0x005e_ed0f_1e11);
    (0..n)
        .map(|i| match i % 5 {
            0 | 1 => {
                let orders = (0..1 + g.below(3)).map(|_| g.order()).collect();
                let a = OrderAction::new(orders);
                l1(key, &mut g, &a)
            }
            2 => {
                let cancels = (0..1 + g.below(3))
                    .map(|_| CancelWire {
                        a: g.below(300) as u32,
                        o: g.next() >> 11,
                    })
                    .collect();
                let a = CancelAction::new(cancels);
                l1(key, &mut g, &a)
            }
            3 => {
                if g.flip() {
                    let time = g.flip().then(|| 1_700_000_000_000 + g.below(1 << 40));
                    let a = ScheduleCancelAction::new(time);
                    l1(key, &mut g, &a)
                } else {
                    let a = UpdateLeverageAction::new(
                        g.below(300) as u32,
                        g.flip(),
                        1 + g.below(50) as u32,
                    );
                    l1(key, &mut g, &a)
                }
            }
            _ => user(key, &mut g),
        })
        .collect()
}

#[test]
fn the_official_sdk_recovers_this_key_from_every_action() {
    let key = SigningKey::from_slice(&[0x42; 32]).unwrap();
    let expected = address_of(key.verifying_key()).to_wire();
    let lines: Vec<String> = requests(&key, 400).into_iter().map(|l| l.sdk).collect();
    let mut child = Command::new(vigil_testkit::hyperliquid::python())
        .arg(verify_script())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let input: String = lines.iter().map(|l| format!("{l}\n")).collect();
    let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()).unwrap());
    let out = BufReader::new(child.stdout.take().unwrap());
    let answers: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(&l.unwrap()).unwrap())
        .collect();
    writer.join().unwrap();
    assert!(child.wait().unwrap().success());
    assert_eq!(answers.len(), lines.len(), "the peer answered every line");
    for (req, answer) in lines.iter().zip(&answers) {
        assert_eq!(
            answer["signer"],
            expected.as_str(),
            "the SDK recovered another signer for {req}: {answer}"
        );
    }
    // And the peer is not a yes-man: a changed price recovers someone else.
    let first: Value = serde_json::from_str(&lines[0]).unwrap();
    let price = first["action"]["orders"][0]["p"]
        .as_str()
        .unwrap()
        .to_owned();
    let tampered = lines[0].replacen(&format!("\"p\":\"{price}\""), "\"p\":\"1\"", 1);
    assert_ne!(tampered, lines[0]);
    let mut child = Command::new(vigil_testkit::hyperliquid::python())
        .arg(verify_script())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{tampered}\n").as_bytes())
        .unwrap();
    let answer: Value = serde_json::from_slice(&child.wait_with_output().unwrap().stdout).unwrap();
    assert_ne!(answer["signer"], expected.as_str());
}

#[test]
fn nktkas_recovers_this_key_from_every_action_in_its_canonical_order() {
    let key = SigningKey::from_slice(&[0x42; 32]).unwrap();
    let expected = address_of(key.verifying_key()).to_wire();
    let lines: Vec<String> = requests(&key, 400).into_iter().map(|l| l.nktkas).collect();
    let answers = vigil_testkit::hyperliquid::nktkas_check(&lines);
    let mut l1 = 0;
    for (req, answer) in lines.iter().zip(&answers) {
        assert_eq!(
            answer["signer"],
            expected.as_str(),
            "@nktkas/hyperliquid recovered another signer for {req}: {answer}"
        );
        // User-signed actions have no key order to check (EIP-712 names its fields).
        if !answer["canonical"].is_null() {
            assert_eq!(answer["canonical"], true, "keys out of order in {req}");
            l1 += 1;
        }
    }
    assert_eq!(l1, 320, "every L1 action had its key order checked");
    // Not a yes-man either: a changed price, a flipped s and a swapped key order are caught.
    let first: Value = serde_json::from_str(&lines[0]).unwrap();
    let price = first["action"]["orders"][0]["p"]
        .as_str()
        .unwrap()
        .to_owned();
    let repriced = lines[0].replacen(&format!("\"p\":\"{price}\""), "\"p\":\"1\"", 1);
    let s = first["signature"]["s"].as_str().unwrap();
    let flipped = if s.ends_with('1') { "0" } else { "1" };
    let forged = lines[0].replacen(s, &format!("{}{flipped}", &s[..s.len() - 1]), 1);
    let reordered = lines[0].replacen("{\"type\":\"order\",", "{", 1).replacen(
        "\"grouping\":\"na\"",
        "\"grouping\":\"na\",\"type\":\"order\"",
        1,
    );
    for tampered in [&repriced, &forged, &reordered] {
        assert_ne!(tampered, &lines[0]);
    }
    let answers = vigil_testkit::hyperliquid::nktkas_check(&[repriced, forged, reordered]);
    for answer in &answers {
        assert!(
            answer.get("error").is_some() || answer["signer"] != expected.as_str(),
            "{answer}"
        );
    }
    assert_eq!(answers[2]["canonical"], false, "{}", answers[2]);
}
