//! The journal's key: every entry the signer writes carries `mac = HMAC-SHA256(K, "vigil-audit
//! mac v1\n" || hash)`, where `hash` is the entry's chain hash (which commits to the entry and,
//! through `prev`, to every entry before it) and `K` is the keystore's subkey `audit-mac.v1`
//! (`keystore::MasterKey::subkey`). Whoever can write the journal but does not hold the
//! passphrase can still rewrite a consistent hash chain, but not its MACs.
//!
//! What a verifier holding `K` accepts ([`KeyCheck`]): entries without a MAC (written before
//! journals were keyed) only before the first entry with one; then entries with a MAC, those
//! under an earlier keystore's key (before a key ceremony replaced the keystore) only before
//! the first under `K`; and the LAST entry must be under `K`. Its MAC then vouches for the
//! whole chain before it, so a rewrite anywhere (dropping a spend, re-chaining the rest) is
//! refused, whatever the entries under older keys or none. What a MAC cannot show: entries
//! removed from the END (what is left is a shorter chain, still ending in a good MAC); a head
//! recorded elsewhere (`audit-verify --expect-head`) shows that.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::keystore::{KeystoreError, MasterKey};

/// The subkey label of the journal's MAC key.
pub const MAC_KEY_LABEL: &str = "audit-mac.v1";

/// Domain separation of the MAC input.
const MAC_DOMAIN: &[u8] = b"vigil-audit mac v1\n";

/// The journal's MAC key. Its `Debug` prints nothing secret.
pub struct JournalKey(Zeroizing<[u8; 32]>);

impl std::fmt::Debug for JournalKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("JournalKey(..)")
    }
}

impl JournalKey {
    /// The journal key of the keystore whose master key is `master`.
    pub fn from_master(master: &MasterKey) -> Result<JournalKey, KeystoreError> {
        let subkey = master.subkey(MAC_KEY_LABEL)?;
        Ok(JournalKey(Zeroizing::new(*subkey.expose())))
    }

    /// A key from raw bytes (tests).
    #[cfg(test)]
    pub(crate) fn from_bytes(bytes: [u8; 32]) -> JournalKey {
        JournalKey(Zeroizing::new(bytes))
    }

    /// The MAC of the entry whose chain hash is `hash`.
    pub fn mac(&self, hash: &[u8; 32]) -> [u8; 32] {
        let mut mac = self.hmac();
        mac.update(MAC_DOMAIN);
        mac.update(hash);
        mac.finalize().into_bytes().into()
    }

    /// Whether `tag` is the MAC of `hash` (compared in constant time).
    pub fn verifies(&self, hash: &[u8; 32], tag: &[u8; 32]) -> bool {
        let mut mac = self.hmac();
        mac.update(MAC_DOMAIN);
        mac.update(hash);
        mac.verify_slice(tag).is_ok()
    }

    fn hmac(&self) -> Hmac<Sha256> {
        // Invariant: HMAC accepts keys of any length, so this cannot fail.
        match <Hmac<Sha256> as Mac>::new_from_slice(&self.0[..]) {
            Ok(mac) => mac,
            Err(_) => unreachable!("HMAC-SHA256 takes a 32-byte key"),
        }
    }
}

/// What a keyed verification counted, and where the chain's key stands.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KeyReport {
    /// Entries without a MAC (written before journals were keyed).
    pub unkeyed: u64,
    /// Entries whose MAC is not under this key (an earlier keystore's, before a key ceremony).
    pub other_key: u64,
    /// Entries under this key.
    pub keyed: u64,
    /// Whether the last entry is under this key (or the journal is empty).
    pub tail_keyed: bool,
}

/// Why a journal's MACs do not vouch for it under a key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyProblem {
    /// No entry has a MAC: a journal of an earlier release, to be keyed once at the console
    /// (`vigil-signer audit-key`), or a rewrite in the earlier format.
    NeverKeyed {
        /// Its entries.
        entries: u64,
    },
    /// The last entry is not under the key: the chain was rewritten after its last good MAC
    /// (or, at the start that applies a key ceremony, written under the previous keystore).
    TailNotUnderKey {
        /// Seq of the last entry under the key, if any.
        last_good: Option<u64>,
        /// The last entry's seq.
        last: u64,
    },
    /// An entry breaks the order (no MAC after one with a MAC, another key's MAC after one
    /// under this key): a splice.
    OutOfOrder {
        /// Its seq.
        seq: u64,
        /// What is wrong.
        what: &'static str,
    },
}

impl std::fmt::Display for KeyProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeyProblem::NeverKeyed { entries } => write!(
                f,
                "none of its {entries} entries carries a MAC: it was written by a release before journals were keyed, \
                 or rewritten in that format. If this appliance was just upgraded and you trust the journal \
                 (compare its head with one you recorded), key it once with `vigil-signer audit-key` at the console"
            ),
            KeyProblem::TailNotUnderKey { last_good, last } => match last_good {
                Some(good) => write!(
                    f,
                    "entries {}..={last} are not under this keystore's journal key (the last one under it is seq {good}): \
                     they were written by someone without the key — the journal was rewritten; restore it from a backup",
                    good + 1
                ),
                None => write!(
                    f,
                    "no entry is under this keystore's journal key (the last one is seq {last}): the journal was \
                     rewritten, or it belongs to another keystore; restore it from a backup"
                ),
            },
            KeyProblem::OutOfOrder { seq, what } => write!(
                f,
                "entry seq {seq} {what}: entries were spliced in; restore the journal from a backup"
            ),
        }
    }
}

/// The keyed verification, fed one verified entry at a time (see the module docs).
#[derive(Debug)]
pub(super) struct KeyCheck<'k> {
    key: &'k JournalKey,
    report: KeyReport,
    last_good: Option<u64>,
    last: u64,
    problem: Option<KeyProblem>,
}

impl<'k> KeyCheck<'k> {
    pub(super) fn new(key: &'k JournalKey) -> Self {
        KeyCheck {
            key,
            report: KeyReport {
                tail_keyed: true,
                ..KeyReport::default()
            },
            last_good: None,
            last: 0,
            problem: None,
        }
    }

    /// Takes the next entry (already verified by the chain).
    pub(super) fn see(&mut self, seq: u64, hash: &[u8; 32], mac: Option<&[u8; 32]>) {
        self.last = seq;
        let keyed_before = self.report.keyed + self.report.other_key > 0;
        match mac {
            None => {
                self.report.unkeyed += 1;
                self.report.tail_keyed = false;
                if keyed_before {
                    self.out_of_order(seq, "has no MAC, after entries with one");
                }
            }
            Some(tag) if self.key.verifies(hash, tag) => {
                self.report.keyed += 1;
                self.report.tail_keyed = true;
                self.last_good = Some(seq);
            }
            Some(_) => {
                self.report.other_key += 1;
                self.report.tail_keyed = false;
                if self.report.keyed > 0 {
                    self.out_of_order(
                        seq,
                        "has a MAC that is not under this key, after entries under it",
                    );
                }
            }
        }
    }

    fn out_of_order(&mut self, seq: u64, what: &'static str) {
        if self.problem.is_none() {
            self.problem = Some(KeyProblem::OutOfOrder { seq, what });
        }
    }

    /// The verdict once every entry was seen.
    pub(super) fn finish(self) -> (KeyReport, Option<KeyProblem>) {
        let problem = self.problem.or(if self.report.tail_keyed {
            None
        } else if self.report.keyed + self.report.other_key == 0 {
            Some(KeyProblem::NeverKeyed {
                entries: self.report.unkeyed,
            })
        } else {
            Some(KeyProblem::TailNotUnderKey {
                last_good: self.last_good,
                last: self.last,
            })
        });
        (self.report, problem)
    }
}
