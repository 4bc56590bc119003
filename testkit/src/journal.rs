//! A dev helper that grows a signer's journal fast: it appends valid, hash-chained entries
//! (`denied` refusals of an agent the policy does not name) in the format of `docs/audit.md`,
//! written here independently of the signer's own writer, with one write and no fsync per
//! megabyte. For tests of what a long journal costs (memory and time at start, the `audit` op).
//! The signer must be stopped.

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
        let body = format!(
            "{{\"seq\":{seq},\"ts\":{ts},\"prev\":\"{}\",\"event\":{event}}}",
            hex::encode(prev)
        );
        let mut h = Sha256::new();
        h.update(prev);
        h.update(body.as_bytes());
        prev = h.finalize().into();
        let line = format!(
            "{},\"hash\":\"{}\"}}\n",
            &body[..body.len() - 1],
            hex::encode(prev)
        );
        out.write_all(line.as_bytes()).expect("appending to the journal");
        size += line.len() as u64;
        appended += 1;
    }
    out.flush().expect("writing the journal");
    appended
}
