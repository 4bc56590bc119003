//! Live Hyperliquid actions the orchestrator posted, one row each, written BEFORE the post:
//! the exact body the signer answered (base64), its nonce, and then what the venue said.
//!
//! A row starts `posting`. The venue's answer moves it to `resting` (with the order's id),
//! `filled`, `done` (leverage, a cancel), or `refused` (with the venue's reason, clipped).
//! A post whose answer never arrived (the transport failed after every retry of the same
//! bytes) is `unknown` until reconciliation finds the order among the venue's open orders
//! or fills; a resting order later seen filled or gone becomes `filled` or `closed`. The body
//! is kept so that a retry posts the same bytes (the exchange refuses a used nonce: a retry
//! can never place a second order); nothing is ever signed again for a row.
//!
//! The `updateLeverage` rows are also the record that an agent's leverage on a perpetual was
//! set, so a restart does not set it again needlessly.

use rusqlite::params;
use vigil_protocol::{AssetSymbol, Network};

use super::{Store, StoreError, from_sql_u64, to_sql_ts};

/// Version 5: the live Hyperliquid actions (`docs/orchestrator.md`, "Live").
pub(super) const V5: &str = r#"
CREATE TABLE hl_actions (
    id               INTEGER PRIMARY KEY,
    agent            TEXT NOT NULL REFERENCES agents(id),
    network          TEXT NOT NULL,
    kind             TEXT NOT NULL CHECK (kind IN ('order', 'cancel', 'updateLeverage')),
    coin             TEXT NOT NULL,
    leverage         INTEGER CHECK (leverage IS NULL OR leverage > 0),
    nonce            INTEGER NOT NULL CHECK (nonce >= 0),
    body             TEXT NOT NULL,
    idempotency_key  TEXT NOT NULL UNIQUE,
    summary          TEXT NOT NULL,
    posted_at        INTEGER NOT NULL CHECK (posted_at >= 0),
    state            TEXT NOT NULL DEFAULT 'posting'
                     CHECK (state IN ('posting', 'resting', 'filled', 'done', 'refused',
                                      'unknown', 'closed')),
    oid              INTEGER CHECK (oid IS NULL OR oid >= 0),
    answer           TEXT,
    settled_at       INTEGER
) STRICT;
CREATE INDEX hl_actions_by_agent ON hl_actions (agent, network, kind, state);
"#;

/// Back from version 5: the Hyperliquid action journal goes.
pub(super) const V5_DOWN: &str = "DROP INDEX hl_actions_by_agent; DROP TABLE hl_actions;";

/// The longest venue answer kept in a row.
const MAX_ANSWER_CHARS: usize = 300;

/// The state of one posted action (module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HlState {
    Posting,
    Resting,
    Filled,
    Done,
    Refused,
    Unknown,
    Closed,
}

impl HlState {
    /// The stored name.
    pub const fn as_str(self) -> &'static str {
        match self {
            HlState::Posting => "posting",
            HlState::Resting => "resting",
            HlState::Filled => "filled",
            HlState::Done => "done",
            HlState::Refused => "refused",
            HlState::Unknown => "unknown",
            HlState::Closed => "closed",
        }
    }

    fn parse(s: &str) -> Result<HlState, StoreError> {
        Ok(match s {
            "posting" => HlState::Posting,
            "resting" => HlState::Resting,
            "filled" => HlState::Filled,
            "done" => HlState::Done,
            "refused" => HlState::Refused,
            "unknown" => HlState::Unknown,
            "closed" => HlState::Closed,
            other => {
                return Err(StoreError::Corrupt(format!(
                    "hl_actions.state is {other:?}"
                )));
            }
        })
    }
}

/// A signed action about to be posted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewHlAction<'a> {
    pub agent: &'a str,
    pub network: Network,
    /// `order`, `cancel` or `updateLeverage`.
    pub kind: &'a str,
    pub coin: AssetSymbol,
    /// The leverage an `updateLeverage` sets.
    pub leverage: Option<u32>,
    pub nonce: u64,
    /// The exact body, base64 (the signer's `Signed.tx`).
    pub body: &'a str,
    pub key: &'a str,
    pub summary: &'a str,
    pub posted_at: u64,
}

/// A stored action.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HlActionRow {
    pub agent: String,
    pub network: String,
    pub kind: String,
    pub coin: String,
    pub nonce: u64,
    pub body: String,
    pub key: String,
    pub summary: String,
    pub state: HlState,
    pub oid: Option<u64>,
    pub answer: Option<String>,
}

const COLUMNS: &str =
    "agent, network, kind, coin, nonce, body, idempotency_key, summary, state, oid, answer";

impl Store {
    /// Records a signed action as `posting`, durably, before it is posted. The same key twice
    /// is refused (an action is recorded once).
    pub fn record_hl_posting(&self, a: &NewHlAction<'_>) -> Result<(), StoreError> {
        self.ensure_agent(a.agent, a.posted_at)?;
        self.conn
            .execute(
                "INSERT INTO hl_actions (agent, network, kind, coin, leverage, nonce, body,
                     idempotency_key, summary, posted_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                params![
                    a.agent,
                    a.network.as_str(),
                    a.kind,
                    a.coin.as_str(),
                    a.leverage,
                    to_sql_ts(a.nonce, "nonce")?,
                    a.body,
                    a.key,
                    vigil_protocol::truncate(a.summary),
                    to_sql_ts(a.posted_at, "post time")?
                ],
            )
            .map_err(|e| {
                if super::is_unique_violation(&e) {
                    StoreError::DuplicateIdempotencyKey(a.key.to_owned())
                } else {
                    e.into()
                }
            })?;
        Ok(())
    }

    /// Records what the venue said of the action `key`: its new state, the order's id, the
    /// answer (clipped). A `refused` or `closed` row is final and never changes: `false` then.
    pub fn record_hl_answer(
        &self,
        key: &str,
        state: HlState,
        oid: Option<u64>,
        answer: &str,
        now: u64,
    ) -> Result<bool, StoreError> {
        let clipped: String = answer.chars().take(MAX_ANSWER_CHARS).collect();
        let oid = oid.map(|o| to_sql_ts(o, "order id")).transpose()?;
        let n = self.conn.execute(
            "UPDATE hl_actions SET state = ?2, oid = coalesce(?3, oid), answer = ?4, settled_at = ?5
             WHERE idempotency_key = ?1 AND state NOT IN ('refused', 'closed')",
            params![key, state.as_str(), oid, clipped, to_sql_ts(now, "answer time")?],
        )?;
        Ok(n == 1)
    }

    /// The leverage last set (accepted by the venue) for `agent` on `coin`, if any.
    pub fn hl_leverage(
        &self,
        agent: &str,
        network: Network,
        coin: AssetSymbol,
    ) -> Result<Option<u32>, StoreError> {
        let mut stmt = self.conn.prepare(
            "SELECT leverage FROM hl_actions WHERE agent = ?1 AND network = ?2 AND coin = ?3
                 AND kind = 'updateLeverage' AND state = 'done' ORDER BY id DESC LIMIT 1",
        )?;
        let mut rows = stmt.query(params![agent, network.as_str(), coin.as_str()])?;
        match rows.next()? {
            Some(r) => Ok(r.get::<_, Option<u32>>(0)?),
            None => Ok(None),
        }
    }

    /// The agent's orders on `network` in any of `states`, oldest first.
    pub fn hl_orders(
        &self,
        agent: &str,
        network: Network,
        states: &[HlState],
    ) -> Result<Vec<HlActionRow>, StoreError> {
        let rows = self.hl_rows(
            "WHERE agent = ?1 AND network = ?2 AND kind = 'order' ORDER BY id",
            params![agent, network.as_str()],
        )?;
        Ok(rows
            .into_iter()
            .filter(|r| states.contains(&r.state))
            .collect())
    }

    /// The action recorded under `key`.
    pub fn hl_action(&self, key: &str) -> Result<Option<HlActionRow>, StoreError> {
        Ok(self
            .hl_rows("WHERE idempotency_key = ?1", params![key])?
            .pop())
    }

    /// Whether a perpetual fill with this key is booked already.
    pub fn perp_fill_booked(&self, key: &str) -> Result<bool, StoreError> {
        let n: i64 = self.conn.query_row(
            "SELECT count(*) FROM perp_fills WHERE idempotency_key = ?1",
            params![key],
            |r| r.get(0),
        )?;
        Ok(n > 0)
    }

    fn hl_rows(
        &self,
        filter: &str,
        args: impl rusqlite::Params,
    ) -> Result<Vec<HlActionRow>, StoreError> {
        let mut stmt = self
            .conn
            .prepare(&format!("SELECT {COLUMNS} FROM hl_actions {filter}"))?;
        let rows = stmt.query_map(args, |r| {
            Ok((
                [
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                ],
                r.get::<_, i64>(4)?,
                [
                    r.get::<_, String>(5)?,
                    r.get::<_, String>(6)?,
                    r.get::<_, String>(7)?,
                    r.get::<_, String>(8)?,
                ],
                r.get::<_, Option<i64>>(9)?,
                r.get::<_, Option<String>>(10)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let ([agent, network, kind, coin], nonce, [body, key, summary, state], oid, answer) =
                row?;
            out.push(HlActionRow {
                agent,
                network,
                kind,
                coin,
                nonce: from_sql_u64(nonce, "hl_actions.nonce")?,
                body,
                key,
                summary,
                state: HlState::parse(&state)?,
                oid: oid.map(|o| from_sql_u64(o, "hl_actions.oid")).transpose()?,
                answer,
            });
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn action<'a>(key: &'a str, kind: &'a str, leverage: Option<u32>) -> NewHlAction<'a> {
        NewHlAction {
            agent: "trader",
            network: Network::Testnet,
            kind,
            coin: "ETH".parse().unwrap(),
            leverage,
            nonce: 1_700_000_000_000,
            body: "eyJ9",
            key,
            summary: "BUY 0.1 ETH",
            posted_at: 10,
        }
    }

    #[test]
    fn a_row_is_recorded_before_its_answer_and_a_final_state_never_changes() {
        let store = Store::open_in_memory().unwrap();
        store
            .record_hl_posting(&action("k1", "order", None))
            .unwrap();
        assert!(matches!(
            store.record_hl_posting(&action("k1", "order", None)),
            Err(StoreError::DuplicateIdempotencyKey(_))
        ));
        let row = store.hl_action("k1").unwrap().unwrap();
        assert_eq!(
            (row.state, row.oid, row.body.as_str()),
            (HlState::Posting, None, "eyJ9")
        );
        assert!(
            store
                .record_hl_answer("k1", HlState::Resting, Some(1001), "resting", 11)
                .unwrap()
        );
        let resting = store
            .hl_orders("trader", Network::Testnet, &[HlState::Resting])
            .unwrap();
        assert_eq!(resting.len(), 1);
        assert_eq!(resting[0].oid, Some(1001));
        // Filled later: the oid is kept when none is given.
        assert!(
            store
                .record_hl_answer("k1", HlState::Filled, None, "seen filled", 12)
                .unwrap()
        );
        assert_eq!(store.hl_action("k1").unwrap().unwrap().oid, Some(1001));
        store
            .record_hl_posting(&action("k2", "order", None))
            .unwrap();
        let long = "x".repeat(1000);
        assert!(
            store
                .record_hl_answer("k2", HlState::Refused, None, &long, 12)
                .unwrap()
        );
        let refused = store.hl_action("k2").unwrap().unwrap();
        assert_eq!(refused.answer.unwrap().len(), MAX_ANSWER_CHARS);
        assert!(
            !store
                .record_hl_answer("k2", HlState::Resting, Some(5), "late", 13)
                .unwrap()
        );
        assert_eq!(
            store.hl_action("k2").unwrap().unwrap().state,
            HlState::Refused
        );
    }

    #[test]
    fn the_leverage_set_is_the_last_one_the_venue_accepted() {
        let store = Store::open_in_memory().unwrap();
        let eth = "ETH".parse().unwrap();
        assert_eq!(
            store.hl_leverage("trader", Network::Testnet, eth).unwrap(),
            None
        );
        store
            .record_hl_posting(&action("l1", "updateLeverage", Some(3)))
            .unwrap();
        assert_eq!(
            store.hl_leverage("trader", Network::Testnet, eth).unwrap(),
            None,
            "posted, not yet accepted"
        );
        store
            .record_hl_answer("l1", HlState::Done, None, "ok", 11)
            .unwrap();
        store
            .record_hl_posting(&action("l2", "updateLeverage", Some(5)))
            .unwrap();
        store
            .record_hl_answer("l2", HlState::Refused, None, "no", 12)
            .unwrap();
        assert_eq!(
            store.hl_leverage("trader", Network::Testnet, eth).unwrap(),
            Some(3)
        );
        assert_eq!(
            store.hl_leverage("trader", Network::Mainnet, eth).unwrap(),
            None
        );
        assert_eq!(
            store.hl_leverage("other", Network::Testnet, eth).unwrap(),
            None
        );
    }
}
