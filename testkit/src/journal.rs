//! Dev helpers that write a signer's journal as someone without the keystore could: valid,
//! hash-chained entries WITHOUT MACs, in the format of `docs/audit.md`, written here
//! independently of the signer's own writer. [`fill_journal`] grows a journal fast (one write
//! per megabyte, no fsync) for tests of what a long journal costs; [`rechain`] rewrites one
//! consistently (an entry dropped, the chain recomputed), the attack the journal's MACs are
//! there to catch. The signer must be stopped.

use std::fs::OpenOptions;
use std::io::{BufWriter, Write};
use std::path::Path;

use serde_json::Value;
use sha2::{Digest, Sha256};

/// Appends entries of about `entry_bytes` each to the journal at `path` until it holds at least
/// `target_bytes`; returns the number of entries appended. The chain continues from the last
/// entry (or starts, if the file is empty).
pub fn fill_journal(path: &Path, target_bytes: u64, entry_bytes: usize) -> u64 {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let (mut seq, mut prev, ts) = match text.lines().last() {
        None => (0, [0u8; 32], crate::host::unix_now()),
        Some(last) => {
            let v: Value = serde_json::from_str(last).expect("the last journal line is JSON");
            let mut prev = [0u8; 32];
            hex::decode_to_slice(v["hash"].as_str().expect("a hash"), &mut prev)
                .expect("a hex hash");
            (
                v["seq"].as_u64().expect("a seq"),
                prev,
                v["ts"].as_u64().expect("a ts"),
            )
        }
    };
    let mut size = text.len() as u64;
    drop(text);
    let file = OpenOptions::new()
        .append(true)
        .open(path)
        .expect("opening the journal to append");
    let mut out = BufWriter::with_capacity(1 << 20, file);
    let message = format!(
        "agent nobody is not in the signed policy; agents are added at a key ceremony {}",
        "x".repeat(entry_bytes.saturating_sub(300))
    );
    let event = serde_json::json!({
        "type": "denied",
        "agent": "nobody",
        "kind": "unknown_agent",
        "rule": null,
        "message": message,
    })
    .to_string();
    let mut appended = 0;
    while size < target_bytes {
        seq += 1;
        let line;
        (line, prev) = chained_line(seq, ts, &prev, &event, None);
        out.write_all(line.as_bytes())
            .expect("appending to the journal");
        size += line.len() as u64;
        appended += 1;
    }
    out.flush().expect("writing the journal");
    appended
}

/// Appends one entry with `event` (JSON) at time `ts`, chained to the last entry, without a
/// MAC: what someone who can write the journal but has no passphrase can add.
pub fn append_unkeyed(path: &Path, event: &Value, ts: u64) {
    let text = std::fs::read_to_string(path).expect("reading the journal");
    let (seq, prev) = match text.lines().last() {
        None => (0, [0u8; 32]),
        Some(last) => {
            let v: Value = serde_json::from_str(last).expect("the last journal line is JSON");
            let mut prev = [0u8; 32];
            hex::decode_to_slice(v["hash"].as_str().expect("a hash"), &mut prev)
                .expect("a hex hash");
            (v["seq"].as_u64().expect("a seq"), prev)
        }
    };
    let (line, _) = chained_line(seq + 1, ts, &prev, &event.to_string(), None);
    let mut file = OpenOptions::new()
        .append(true)
        .open(path)
        .expect("opening the journal to append");
    file.write_all(line.as_bytes())
        .expect("appending to the journal");
}

/// Rewrites the journal at `path` without the entries `drop` picks, renumbered and re-chained
/// so that the hash chain is consistent again. With `keep_macs`, each kept entry keeps the MAC
/// it had (no longer its MAC: its hash changed); without, the lines have none, as in journals
/// of releases before they were keyed. Returns the number of entries dropped.
pub fn rechain(path: &Path, drop: impl Fn(&Value) -> bool, keep_macs: bool) -> usize {
    let text = std::fs::read_to_string(path).expect("reading the journal");
    let mut out = String::with_capacity(text.len());
    let (mut seq, mut prev, mut dropped) = (0u64, [0u8; 32], 0);
    for line in text.lines() {
        let v: Value = serde_json::from_str(line).expect("a journal line is JSON");
        if drop(&v) {
            dropped += 1;
            continue;
        }
        seq += 1;
        let mac = keep_macs
            .then(|| v["mac"].as_str().map(str::to_owned))
            .flatten();
        let ts = v["ts"].as_u64().expect("a ts");
        let line;
        (line, prev) = chained_line(seq, ts, &prev, &v["event"].to_string(), mac.as_deref());
        out.push_str(&line);
    }
    std::fs::write(path, out).expect("rewriting the journal");
    dropped
}

/// One canonical line and its hash: `hash = SHA-256(prev || body)`, `body` the line's object
/// without `hash` (and `mac`).
fn chained_line(
    seq: u64,
    ts: u64,
    prev: &[u8; 32],
    event: &str,
    mac: Option<&str>,
) -> (String, [u8; 32]) {
    let body = format!(
        "{{\"seq\":{seq},\"ts\":{ts},\"prev\":\"{}\",\"event\":{event}}}",
        hex::encode(prev)
    );
    let mut h = Sha256::new();
    h.update(prev);
    h.update(body.as_bytes());
    let hash: [u8; 32] = h.finalize().into();
    let mac = mac.map(|m| format!(",\"mac\":\"{m}\"")).unwrap_or_default();
    let line = format!(
        "{},\"hash\":\"{}\"{mac}}}\n",
        &body[..body.len() - 1],
        hex::encode(hash)
    );
    (line, hash)
}
