//! EVM transactions of live actions, one row each, written before broadcast: what a restart
//! needs to know about every transaction that may be in flight (`docs/orchestrator.md`,
//! "Nonces on EVM chains"). A row moves `sent` → `pending` → `mined`, or to `dropped` when
//! another transaction used its nonce; `mined` and `dropped` are final.

use rusqlite::{OptionalExtension, params};

use super::{Store, StoreError, from_sql_u64, to_sql_ts};

/// The state of one EVM transaction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EvmTxState {
    /// Handed to the node (or about to be), no receipt yet.
    Sent,
    /// In the node's pool (its pending nonce covers it), no receipt yet.
    Pending,
    /// A receipt exists: executed or reverted, its nonce used.
    Mined,
    /// Its nonce was used by another transaction (or it was never accepted): it moved nothing.
    Dropped,
}

impl EvmTxState {
    /// The stored name.
    pub const fn as_str(self) -> &'static str {
        match self {
            EvmTxState::Sent => "sent",
            EvmTxState::Pending => "pending",
            EvmTxState::Mined => "mined",
            EvmTxState::Dropped => "dropped",
        }
    }

    fn parse(s: &str) -> Result<Self, StoreError> {
        Ok(match s {
            "sent" => EvmTxState::Sent,
            "pending" => EvmTxState::Pending,
            "mined" => EvmTxState::Mined,
            "dropped" => EvmTxState::Dropped,
            other => {
                return Err(StoreError::Corrupt(format!(
                    "evm_transactions.state is {other:?}"
                )));
            }
        })
    }
}

/// A signed EVM transaction about to be broadcast.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewEvmTx {
    /// `0x` and 64 hex digits.
    pub hash: String,
    /// The agent whose key signed it.
    pub agent: String,
    /// `evm:devnet`.
    pub network: String,
    /// The sender (EIP-55).
    pub address: String,
    pub nonce: u64,
    /// The signed EIP-2718 bytes, base64 (as the signer answered).
    pub raw: String,
    /// The action's idempotency key, and the transaction's place in its answer (0 first).
    pub idempotency_key: String,
    pub position: u32,
    /// The signer's summary of the whole action.
    pub summary: String,
    pub sent_at: u64,
}

/// A stored EVM transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EvmTxRow {
    pub tx: NewEvmTx,
    pub state: EvmTxState,
    /// `(block number, block hash, succeeded)` once mined.
    pub mined: Option<(u64, String, bool)>,
}

const COLUMNS: &str = "hash, agent, network, address, nonce, raw, idempotency_key, position, \
                       summary, sent_at, state, block_number, block_hash, succeeded";

impl Store {
    /// Records a signed transaction as `sent`, durably, before it is broadcast. The same hash
    /// twice is refused (a transaction is recorded once).
    pub fn record_evm_sent(&self, tx: &NewEvmTx) -> Result<(), StoreError> {
        self.ensure_agent(&tx.agent, tx.sent_at)?;
        let nonce = to_sql_ts(tx.nonce, "nonce")?;
        let sent_at = to_sql_ts(tx.sent_at, "sent time")?;
        self.conn
            .execute(
                "INSERT INTO evm_transactions (hash, agent, network, address, nonce, raw,
                     idempotency_key, position, summary, sent_at, state)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, 'sent')",
                params![
                    tx.hash,
                    tx.agent,
                    tx.network,
                    tx.address,
                    nonce,
                    tx.raw,
                    tx.idempotency_key,
                    tx.position,
                    tx.summary,
                    sent_at
                ],
            )
            .map_err(|e| {
                if super::is_unique_violation(&e) {
                    StoreError::DuplicateIdempotencyKey(tx.hash.clone())
                } else {
                    e.into()
                }
            })?;
        Ok(())
    }

    /// Moves an in-flight transaction to `state` (`Pending`, or `Dropped`). A final row
    /// (mined or dropped) is never changed: `false` then.
    pub fn set_evm_state(
        &self,
        hash: &str,
        state: EvmTxState,
        now: u64,
    ) -> Result<bool, StoreError> {
        if state == EvmTxState::Mined {
            return Err(StoreError::InvalidInput {
                what: "EVM transaction state",
                why: "a mined transaction is recorded with its receipt (record_evm_mined)".into(),
            });
        }
        let now = to_sql_ts(now, "settle time")?;
        let settled = (state == EvmTxState::Dropped).then_some(now);
        let n = self.conn.execute(
            "UPDATE evm_transactions SET state = ?2, settled_at = ?3
             WHERE hash = ?1 AND state IN ('sent', 'pending')",
            params![hash, state.as_str(), settled],
        )?;
        Ok(n == 1)
    }

    /// Records the receipt of an in-flight transaction: `mined`, final. `false` if it was
    /// already final.
    pub fn record_evm_mined(
        &self,
        hash: &str,
        block_number: u64,
        block_hash: &str,
        succeeded: bool,
        now: u64,
    ) -> Result<bool, StoreError> {
        let n = self.conn.execute(
            "UPDATE evm_transactions SET state = 'mined', settled_at = ?2, block_number = ?3,
                 block_hash = ?4, succeeded = ?5
             WHERE hash = ?1 AND state IN ('sent', 'pending')",
            params![
                hash,
                to_sql_ts(now, "settle time")?,
                to_sql_ts(block_number, "block number")?,
                block_hash,
                succeeded
            ],
        )?;
        Ok(n == 1)
    }

    /// Transactions still in flight (`sent` or `pending`), by network, sender and nonce; all
    /// of them when `address` is `None`.
    pub fn evm_in_flight(
        &self,
        network: Option<&str>,
        address: Option<&str>,
    ) -> Result<Vec<EvmTxRow>, StoreError> {
        self.evm_rows(
            "WHERE state IN ('sent', 'pending') AND (?1 IS NULL OR network = ?1)
             AND (?2 IS NULL OR address = ?2) ORDER BY network, address, nonce, position",
            params![network, address],
        )
    }

    /// The transactions of one action (its idempotency key), in the order they were sent.
    pub fn evm_transactions_of(&self, idempotency_key: &str) -> Result<Vec<EvmTxRow>, StoreError> {
        self.evm_rows(
            "WHERE idempotency_key = ?1 ORDER BY position",
            params![idempotency_key],
        )
    }

    /// The stored transaction with this hash.
    pub fn evm_transaction(&self, hash: &str) -> Result<Option<EvmTxRow>, StoreError> {
        Ok(self.evm_rows("WHERE hash = ?1", params![hash])?.pop())
    }

    /// The highest nonce of a transaction `address` sent on `network` that was not dropped
    /// (the next one handed to the signer is above it).
    pub fn evm_highest_nonce(
        &self,
        network: &str,
        address: &str,
    ) -> Result<Option<u64>, StoreError> {
        let max: Option<i64> = self
            .conn
            .query_row(
                "SELECT max(nonce) FROM evm_transactions
                 WHERE network = ?1 AND address = ?2 AND state != 'dropped'",
                params![network, address],
                |r| r.get(0),
            )
            .optional()?
            .flatten();
        max.map(|n| from_sql_u64(n, "nonce")).transpose()
    }

    fn evm_rows(
        &self,
        filter: &str,
        params: impl rusqlite::Params,
    ) -> Result<Vec<EvmTxRow>, StoreError> {
        let mut stmt = self
            .conn
            .prepare(&format!("SELECT {COLUMNS} FROM evm_transactions {filter}"))?;
        let mut rows = stmt.query(params)?;
        let mut out = Vec::new();
        while let Some(r) = rows.next()? {
            let state = EvmTxState::parse(&r.get::<_, String>(10)?)?;
            let mined = match (
                r.get::<_, Option<i64>>(11)?,
                r.get::<_, Option<String>>(12)?,
            ) {
                (Some(number), Some(hash)) => Some((
                    from_sql_u64(number, "block_number")?,
                    hash,
                    r.get::<_, Option<bool>>(13)?.unwrap_or(false),
                )),
                _ => None,
            };
            out.push(EvmTxRow {
                tx: NewEvmTx {
                    hash: r.get(0)?,
                    agent: r.get(1)?,
                    network: r.get(2)?,
                    address: r.get(3)?,
                    nonce: from_sql_u64(r.get(4)?, "nonce")?,
                    raw: r.get(5)?,
                    idempotency_key: r.get(6)?,
                    position: r.get(7)?,
                    summary: r.get(8)?,
                    sent_at: from_sql_u64(r.get(9)?, "sent_at")?,
                },
                state,
                mined,
            });
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tx(hash: &str, nonce: u64, position: u32) -> NewEvmTx {
        NewEvmTx {
            hash: hash.into(),
            agent: "trader".into(),
            network: "evm:devnet".into(),
            address: "0xA".into(),
            nonce,
            raw: "AQ==".into(),
            idempotency_key: "k".into(),
            position,
            summary: "approve; then supply".into(),
            sent_at: 10,
        }
    }

    #[test]
    fn a_transaction_goes_from_sent_to_mined_or_dropped_and_stays_final() {
        let s = Store::open_in_memory().unwrap();
        assert_eq!(s.evm_highest_nonce("evm:devnet", "0xA").unwrap(), None);
        s.record_evm_sent(&tx("0x1", 3, 0)).unwrap();
        s.record_evm_sent(&tx("0x2", 4, 1)).unwrap();
        assert!(matches!(
            s.record_evm_sent(&tx("0x1", 3, 2)),
            Err(StoreError::DuplicateIdempotencyKey(_))
        ));
        assert_eq!(s.evm_highest_nonce("evm:devnet", "0xA").unwrap(), Some(4));
        assert_eq!(s.evm_highest_nonce("evm:devnet", "0xB").unwrap(), None);
        let flying = s.evm_in_flight(Some("evm:devnet"), Some("0xA")).unwrap();
        assert_eq!(
            flying.iter().map(|r| r.tx.nonce).collect::<Vec<_>>(),
            [3, 4]
        );
        assert!(s.set_evm_state("0x1", EvmTxState::Pending, 11).unwrap());
        assert!(s.record_evm_mined("0x1", 7, "0xb7", true, 12).unwrap());
        assert!(
            !s.set_evm_state("0x1", EvmTxState::Dropped, 13).unwrap(),
            "mined is final"
        );
        assert!(s.set_evm_state("0x2", EvmTxState::Dropped, 13).unwrap());
        assert!(!s.record_evm_mined("0x2", 8, "0xb8", true, 14).unwrap());
        assert!(s.evm_in_flight(None, None).unwrap().is_empty());
        // A dropped transaction does not hold its nonce.
        assert_eq!(s.evm_highest_nonce("evm:devnet", "0xA").unwrap(), Some(3));
        let rows = s.evm_transactions_of("k").unwrap();
        assert_eq!(rows[0].state, EvmTxState::Mined);
        assert_eq!(rows[0].mined, Some((7, "0xb7".into(), true)));
        assert_eq!(rows[1].state, EvmTxState::Dropped);
        assert!(matches!(
            s.set_evm_state("0x2", EvmTxState::Mined, 1),
            Err(StoreError::InvalidInput { .. })
        ));
    }
}
