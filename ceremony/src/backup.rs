//! The paper backup of the agents' keys, printed to the terminal and never written anywhere:
//! either Shamir shares (any k of n rebuild every agent seed; one share per paper, each
//! kept in a different place) or BIP39 words (24 per agent seed). The approval secret is
//! not backed up (re-enrol at a new ceremony) and neither is the policy key (keep it with
//! `--keep-policy-key`, or make a new one at a new ceremony).
//!
//! Shamir runs over GF(256) with the `blahaj` crate, each coefficient drawn uniformly from
//! 0..=255 by the OS. Its predecessor here, `sharks` 0.5, drew them from 1..=255
//! (RUSTSEC-2024-0398); the share encoding is the same, so shares printed then still restore
//! (the test vectors in `ceremony/tests/vectors/`).

use std::fmt::Write as _;
use std::str::FromStr;

use blahaj::{Share, Sharks};
use rand::rand_core::UnwrapErr;
use rand::rngs::SysRng;
use vigil_protocol::{AgentId, Chain, Network};
use zeroize::Zeroizing;

use crate::error::CeremonyError;

/// Bytes of one agent seed inside the shared secret.
const SEED_LEN: usize = 32;

/// How to back up the agent keys on paper.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backup {
    /// No paper backup (the encrypted keystore on the stick is the only copy).
    None,
    /// Shamir shares: any `k` of `n` rebuild all agent seeds.
    Shamir { k: u8, n: u8 },
    /// 24 BIP39 words per agent seed.
    Bip39,
}

impl FromStr for Backup {
    type Err = String;
    /// `none`, `bip39`, or `shamir:K-of-N` (2 <= K <= N <= 16).
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "none" => return Ok(Backup::None),
            "bip39" => return Ok(Backup::Bip39),
            _ => {}
        }
        let parsed = s
            .strip_prefix("shamir:")
            .and_then(|kn| kn.split_once("-of-"))
            .and_then(|(k, n)| Some((k.parse::<u8>().ok()?, n.parse::<u8>().ok()?)));
        match parsed {
            Some((k, n)) if (2..=n).contains(&k) && n <= 16 => Ok(Backup::Shamir { k, n }),
            _ => Err(format!(
                "{s:?}: use none, bip39, or shamir:K-of-N with 2 <= K <= N <= 16 (e.g. shamir:2-of-3)"
            )),
        }
    }
}

/// One agent seed to back up, in manifest order.
pub struct SeedToBackUp<'a> {
    /// The agent.
    pub agent: &'a AgentId,
    /// The chain of the key.
    pub chain: Chain,
    /// The network the key serves.
    pub network: Network,
    /// Its address, printed so the restored key can be checked.
    pub address: &'a str,
    /// The seed.
    pub seed: &'a Zeroizing<[u8; 32]>,
}

impl std::fmt::Debug for SeedToBackUp<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SeedToBackUp")
            .field("agent", self.agent)
            .field("address", &self.address)
            .finish_non_exhaustive()
    }
}

/// The text to print for `backup` (empty for `Backup::None`). Holds secrets: print it, drop it.
pub fn render(
    backup: Backup,
    seeds: &[SeedToBackUp<'_>],
) -> Result<Zeroizing<String>, CeremonyError> {
    let mut out = Zeroizing::new(String::new());
    match backup {
        Backup::None => {}
        Backup::Bip39 => {
            for s in seeds {
                let words = Zeroizing::new(
                    bip39::Mnemonic::from_entropy(&s.seed[..])
                        .map_err(|e| CeremonyError::Other(format!("BIP39 encoding failed: {e}")))?
                        .to_string(),
                );
                let _ = writeln!(
                    out,
                    "{} ({}:{} {}):\n  {}\n",
                    s.agent, s.chain, s.network, s.address, *words
                );
            }
        }
        Backup::Shamir { k, n } => {
            let mut secret = Zeroizing::new(Vec::with_capacity(SEED_LEN * seeds.len()));
            for s in seeds {
                secret.extend_from_slice(&s.seed[..]);
            }
            let order: Vec<String> = seeds
                .iter()
                .map(|s| format!("{}/{}:{}", s.agent, s.chain, s.network))
                .collect();
            let _ = writeln!(
                out,
                "Shamir shares, any {k} of {n} rebuild the seeds of: {}\nWrite each one on its own paper and keep the papers in different places.\n",
                order.join(", ")
            );
            // Every coefficient comes straight from getrandom(2), with no generator state left
            // in this process. UnwrapErr would panic only if getrandom(2) failed, which it does
            // not on Linux: without flags it blocks until the pool is initialised and then
            // serves every request (the getrandom crate retries EINTR). The ceremony has drawn
            // the keys from the same call before it gets here. blahaj does not wipe its
            // polynomials (they hold the seeds) when the dealer drops: the ceremony machine is
            // air-gapped and powered off after.
            let mut os_random = UnwrapErr(SysRng);
            let dealer = Sharks(k).dealer_rng(&secret, &mut os_random);
            for (i, share) in dealer.take(usize::from(n)).enumerate() {
                let bytes = Zeroizing::new(Vec::from(&share));
                let _ = writeln!(out, "share {} of {n}:", i + 1);
                write_grouped(&mut out, &bytes);
                out.push_str("\n\n");
            }
        }
    }
    Ok(out)
}

/// Rebuilds the concatenated seeds from at least `k` shares written as [`render`] prints
/// them (the recovery step of the guide, and tests). Whitespace inside a share is ignored.
/// Shares printed by every earlier ceremony restore: the encoding (share number, then one
/// byte per secret byte, in hex) has not changed since the first one.
pub fn recover_shamir(k: u8, shares: &[&str]) -> Result<Zeroizing<Vec<u8>>, CeremonyError> {
    let bad = |what: String| CeremonyError::Other(format!("cannot rebuild the seeds: {what}"));
    let mut parsed: Vec<Share> = Vec::with_capacity(shares.len());
    let mut numbers: Vec<u8> = Vec::with_capacity(shares.len());
    for (i, text) in shares.iter().enumerate() {
        let hex_text = Zeroizing::new(
            text.chars()
                .filter(|c| !c.is_whitespace())
                .collect::<String>(),
        );
        let bytes = Zeroizing::new(hex::decode(&*hex_text).map_err(|e| {
            bad(format!(
                "share {} as typed is not hex ({e}); copy it again from its paper",
                i + 1
            ))
        })?);
        let number = bytes.first().copied().unwrap_or(0);
        if number == 0 || bytes.len() < 1 + SEED_LEN {
            return Err(bad(format!(
                "share {} as typed is not a share printed by vigil-ceremony (too short, or its first byte is 00); copy it again from its paper",
                i + 1
            )));
        }
        if numbers.contains(&number) {
            return Err(bad(format!(
                "share number {number} was given twice; use {k} different shares"
            )));
        }
        let share = Share::try_from(bytes.as_slice())
            .map_err(|e| bad(format!("share {} as typed: {e}", i + 1)))?;
        parsed.push(share);
        numbers.push(number);
    }
    if parsed.len() < usize::from(k) {
        return Err(bad(format!(
            "{} share(s) given, this backup needs {k}",
            parsed.len()
        )));
    }
    let secret = Sharks(k).recover(&parsed).map_err(|e| {
        bad(format!(
            "{e}; the shares must all come from the same ceremony"
        ))
    })?;
    let secret = Zeroizing::new(secret);
    if !secret.len().is_multiple_of(SEED_LEN) {
        return Err(bad(format!(
            "the shares hold {} bytes, not whole {SEED_LEN}-byte seeds; check that every share was copied completely",
            secret.len()
        )));
    }
    Ok(secret)
}

/// Appends `bytes` to `out` as hex in groups of 4 digits, 8 groups a line, with no copy
/// outside `out` (which the caller wipes).
fn write_grouped(out: &mut String, bytes: &[u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for (i, b) in bytes.iter().enumerate() {
        if i > 0 && i % 16 == 0 {
            out.push('\n');
        } else if i > 0 && i % 2 == 0 {
            out.push(' ');
        }
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;

    /// Shares printed by ceremonies that still used sharks 0.5.0, with the seeds they encode.
    const SHARKS_0_5_VECTORS: &str = include_str!("../tests/vectors/sharks-0.5-shares.txt");

    fn seeds() -> (Vec<AgentId>, Vec<Zeroizing<[u8; 32]>>) {
        (
            vec!["sentinel".parse().unwrap(), "trader".parse().unwrap()],
            vec![Zeroizing::new([1u8; 32]), Zeroizing::new([2u8; 32])],
        )
    }

    fn to_back_up<'a>(
        agents: &'a [AgentId],
        seeds: &'a [Zeroizing<[u8; 32]>],
    ) -> Vec<SeedToBackUp<'a>> {
        agents
            .iter()
            .zip(seeds)
            .map(|(agent, seed)| SeedToBackUp {
                agent,
                chain: Chain::Solana,
                network: Network::Devnet,
                address: "addr",
                seed,
            })
            .collect()
    }

    /// The shares of a printed backup, each as the operator would type it from its paper.
    fn printed_shares(text: &str) -> Vec<String> {
        text.split("share ")
            .skip(1)
            .map(|block| {
                block
                    .lines()
                    .skip(1)
                    .take_while(|l| !l.trim().is_empty())
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .collect()
    }

    /// Every way to pick `k` of `n` indices.
    fn subsets(n: usize, k: usize) -> Vec<Vec<usize>> {
        (0u32..1 << n)
            .filter(|mask| mask.count_ones() as usize == k)
            .map(|mask| (0..n).filter(|i| mask & (1 << i) != 0).collect())
            .collect()
    }

    #[test]
    fn parses_choices() {
        assert_eq!("none".parse::<Backup>().unwrap(), Backup::None);
        assert_eq!("bip39".parse::<Backup>().unwrap(), Backup::Bip39);
        assert_eq!(
            "shamir:2-of-3".parse::<Backup>().unwrap(),
            Backup::Shamir { k: 2, n: 3 }
        );
        for bad in [
            "shamir:1-of-3",
            "shamir:4-of-3",
            "shamir:2-of-17",
            "shamir:2of3",
            "paper",
        ] {
            assert!(bad.parse::<Backup>().is_err(), "{bad}");
        }
    }

    #[test]
    fn any_k_shamir_shares_rebuild_every_seed() {
        let (agents, s) = seeds();
        let text = render(Backup::Shamir { k: 2, n: 3 }, &to_back_up(&agents, &s)).unwrap();
        let shares = printed_shares(&text);
        assert_eq!(shares.len(), 3);
        let mut want = vec![1u8; 32];
        want.extend([2u8; 32]);
        for pair in subsets(3, 2) {
            let got = recover_shamir(2, &[&shares[pair[0]], &shares[pair[1]]]).unwrap();
            assert_eq!(*got, want, "{pair:?}");
        }
        assert!(text.contains("sentinel/solana:devnet, trader/solana:devnet"));
        // One share alone is refused: it says nothing about the seeds.
        let one = recover_shamir(2, &[&shares[0]]).unwrap_err().to_string();
        assert!(
            one.contains("1 share(s) given, this backup needs 2"),
            "{one}"
        );
    }

    /// RUSTSEC-2024-0398: sharks 0.5 drew the polynomial coefficients from 1..=255, never 0.
    /// With k = 2 share number 1 is `coefficient XOR secret` byte by byte, so under that bias
    /// share 1 never equals the secret byte, and every new split of the same seeds rules out
    /// one more candidate per byte. Over 256 splits of the same two seeds (16 384
    /// coefficients) every value 0..=255 must occur; a uniform draw misses one with
    /// probability below 2^-80, the biased one always misses 0.
    #[test]
    fn coefficients_take_every_byte_value_including_zero() {
        let (agents, s) = seeds();
        let list = to_back_up(&agents, &s);
        let mut secret = Vec::new();
        for seed in &s {
            secret.extend_from_slice(&seed[..]);
        }
        let mut seen = [0u32; 256];
        for _ in 0..256 {
            let text = render(Backup::Shamir { k: 2, n: 2 }, &list).unwrap();
            let first = hex::decode(printed_shares(&text)[0].replace(' ', "")).unwrap();
            assert_eq!(first[0], 1, "share 1 is evaluated at x = 1");
            for (y, secret_byte) in first[1..].iter().zip(&secret) {
                seen[usize::from(y ^ secret_byte)] += 1;
            }
        }
        let missing: Vec<usize> = (0..256).filter(|&v| seen[v] == 0).collect();
        assert!(
            missing.is_empty(),
            "coefficient values never drawn: {missing:?} (0 missing is the sharks 0.5 bias)"
        );
    }

    /// Shares printed before the switch from sharks 0.5 to blahaj restore unchanged: every
    /// k-subset of every committed set gives back exactly the seeds it was made from, and
    /// k - 1 shares are refused.
    #[test]
    fn shares_printed_by_sharks_ceremonies_still_restore() {
        let text: String = SHARKS_0_5_VECTORS
            .lines()
            .filter(|l| !l.starts_with('#'))
            .map(|l| format!("{l}\n"))
            .collect();
        let mut sets = 0;
        for block in text.split("=== ").skip(1) {
            let header = block.lines().next().unwrap();
            let (k, n) = header
                .strip_prefix("k=")
                .and_then(|rest| rest.split_once(" n="))
                .unwrap();
            let (k, n): (u8, usize) = (k.parse().unwrap(), n.parse().unwrap());
            let want: Vec<u8> = block
                .lines()
                .filter_map(|l| l.strip_prefix("seed "))
                .flat_map(|l| hex::decode(l.split_once(' ').unwrap().1).unwrap())
                .collect();
            assert!(
                !want.is_empty() && want.len().is_multiple_of(SEED_LEN),
                "{header}"
            );
            let shares = printed_shares(block);
            assert_eq!(shares.len(), n, "{header}");
            for pick in subsets(n, usize::from(k)) {
                let chosen: Vec<&str> = pick.iter().map(|&i| shares[i].as_str()).collect();
                let got = recover_shamir(k, &chosen).unwrap();
                assert_eq!(*got, want, "{header}, shares {pick:?}");
            }
            let too_few: Vec<&str> = shares[..usize::from(k) - 1]
                .iter()
                .map(String::as_str)
                .collect();
            assert!(recover_shamir(k, &too_few).is_err(), "{header}");
            sets += 1;
        }
        assert_eq!(sets, 2, "the vector file holds a 2-of-3 and a 3-of-5 set");
    }

    /// The printed layout has not changed either: every share of the old vectors, decoded and
    /// printed again, gives the very same lines.
    #[test]
    fn shares_print_exactly_as_before() {
        let mut checked = 0;
        for block in SHARKS_0_5_VECTORS.split("\nshare ").skip(1) {
            let lines: Vec<&str> = block
                .lines()
                .skip(1)
                .take_while(|l| !l.trim().is_empty())
                .collect();
            let printed = lines.join("\n");
            let bytes = hex::decode(printed.replace([' ', '\n'], "")).unwrap();
            let mut again = String::new();
            write_grouped(&mut again, &bytes);
            assert_eq!(again, printed);
            checked += 1;
        }
        assert_eq!(checked, 3 + 5);
    }

    #[test]
    fn bad_shares_are_refused_with_what_to_do() {
        let (agents, s) = seeds();
        let text = render(Backup::Shamir { k: 2, n: 3 }, &to_back_up(&agents, &s)).unwrap();
        let shares = printed_shares(&text);
        let refused = |given: &[&str]| recover_shamir(2, given).unwrap_err().to_string();

        let twice = refused(&[&shares[0], &shares[0]]);
        assert!(twice.contains("share number 1 was given twice"), "{twice}");
        let typo = format!("{}g", &shares[1][..shares[1].len() - 1]);
        let not_hex = refused(&[&shares[0], &typo]);
        assert!(not_hex.contains("share 2 as typed is not hex"), "{not_hex}");
        let not_a_share = refused(&[&shares[0], "00 0102"]);
        assert!(
            not_a_share.contains("not a share printed by vigil-ceremony"),
            "{not_a_share}"
        );
        let whole = shares[1].replace(' ', "");
        let one_byte_short = refused(&[&shares[0], &whole[..whole.len() - 2]]);
        assert!(one_byte_short.contains("same ceremony"), "{one_byte_short}");
    }

    #[test]
    fn bip39_words_round_trip() {
        let (agents, s) = seeds();
        let list = [SeedToBackUp {
            agent: &agents[1],
            chain: Chain::Solana,
            network: Network::Devnet,
            address: "addrT",
            seed: &s[1],
        }];
        let text = render(Backup::Bip39, &list).unwrap();
        assert!(
            text.starts_with("trader (solana:devnet addrT):"),
            "{}",
            *text
        );
        let words = text.lines().nth(1).unwrap().trim();
        assert_eq!(words.split(' ').count(), 24);
        let m = bip39::Mnemonic::parse(words).unwrap();
        assert_eq!(m.to_entropy(), vec![2u8; 32]);
        assert!(render(Backup::None, &list).unwrap().is_empty());
    }
}
