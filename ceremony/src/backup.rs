//! The paper backup of the agents' keys, printed to the terminal and never written anywhere:
//! either Shamir shares (any k of n rebuild every agent seed; one share per paper, each
//! kept in a different place) or BIP39 words (24 per agent seed). The approval secret is
//! not backed up (re-enrol at a new ceremony) and neither is the policy key (keep it with
//! `--keep-policy-key`, or make a new one at a new ceremony).

use std::fmt::Write as _;
use std::str::FromStr;

use sharks::{Share, Sharks};
use vigil_protocol::{AgentId, Chain};
use zeroize::Zeroizing;

use crate::error::CeremonyError;

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
                    "{} ({} {}):\n  {}\n",
                    s.agent, s.chain, s.address, *words
                );
            }
        }
        Backup::Shamir { k, n } => {
            let mut secret = Zeroizing::new(Vec::with_capacity(32 * seeds.len()));
            for s in seeds {
                secret.extend_from_slice(&s.seed[..]);
            }
            let order: Vec<String> = seeds
                .iter()
                .map(|s| format!("{}/{}", s.agent, s.chain))
                .collect();
            let _ = writeln!(
                out,
                "Shamir shares, any {k} of {n} rebuild the seeds of: {}\nWrite each one on its own paper and keep the papers in different places.\n",
                order.join(", ")
            );
            for (i, share) in Sharks(k).dealer(&secret).take(usize::from(n)).enumerate() {
                let bytes = Zeroizing::new(Vec::from(&share));
                let _ = writeln!(
                    out,
                    "share {} of {n}:\n{}\n",
                    i + 1,
                    grouped(&hex::encode(&*bytes))
                );
            }
        }
    }
    Ok(out)
}

/// Rebuilds the concatenated seeds from `k` shares written as [`render`] prints them (for the
/// recovery step of the guide, and tests).
pub fn recover_shamir(k: u8, shares: &[&str]) -> Result<Zeroizing<Vec<u8>>, String> {
    let parsed: Vec<Share> = shares
        .iter()
        .map(|s| {
            let hex_text: String = s.chars().filter(|c| !c.is_whitespace()).collect();
            let bytes = Zeroizing::new(
                hex::decode(hex_text).map_err(|e| format!("a share is not hex: {e}"))?,
            );
            Share::try_from(bytes.as_slice()).map_err(|e| format!("not a share: {e}"))
        })
        .collect::<Result<_, _>>()?;
    Sharks(k)
        .recover(&parsed)
        .map(Zeroizing::new)
        .map_err(|e| format!("cannot rebuild the seeds: {e}"))
}

/// Hex in groups of 4, 8 groups a line.
fn grouped(hex_text: &str) -> String {
    hex_text
        .as_bytes()
        .chunks(32)
        .map(|line| {
            line.chunks(4)
                .map(|g| String::from_utf8_lossy(g).into_owned())
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;

    fn seeds() -> (Vec<AgentId>, Vec<Zeroizing<[u8; 32]>>) {
        (
            vec!["sentinel".parse().unwrap(), "trader".parse().unwrap()],
            vec![Zeroizing::new([1u8; 32]), Zeroizing::new([2u8; 32])],
        )
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
        let list: Vec<SeedToBackUp<'_>> = agents
            .iter()
            .zip(&s)
            .map(|(agent, seed)| SeedToBackUp {
                agent,
                chain: Chain::Solana,
                address: "addr",
                seed,
            })
            .collect();
        let text = render(Backup::Shamir { k: 2, n: 3 }, &list).unwrap();
        let shares: Vec<String> = text
            .split("share ")
            .skip(1)
            .map(|block| {
                block
                    .lines()
                    .skip(1)
                    .take_while(|l| !l.is_empty())
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .collect();
        assert_eq!(shares.len(), 3);
        let mut want = vec![1u8; 32];
        want.extend([2u8; 32]);
        for pair in [[0, 1], [0, 2], [1, 2]] {
            let got = recover_shamir(2, &[&shares[pair[0]], &shares[pair[1]]]).unwrap();
            assert_eq!(*got, want, "{pair:?}");
        }
        assert!(text.contains("sentinel/solana, trader/solana"));
        // One share alone does not give the seeds.
        let one = recover_shamir(2, &[&shares[0]]);
        assert!(one.is_err() || *one.unwrap() != want);
    }

    #[test]
    fn bip39_words_round_trip() {
        let (agents, s) = seeds();
        let list = [SeedToBackUp {
            agent: &agents[1],
            chain: Chain::Solana,
            address: "addrT",
            seed: &s[1],
        }];
        let text = render(Backup::Bip39, &list).unwrap();
        assert!(text.starts_with("trader (solana addrT):"));
        let words = text.lines().nth(1).unwrap().trim();
        assert_eq!(words.split(' ').count(), 24);
        let m = bip39::Mnemonic::parse(words).unwrap();
        assert_eq!(m.to_entropy(), vec![2u8; 32]);
        assert!(render(Backup::None, &list).unwrap().is_empty());
    }
}
