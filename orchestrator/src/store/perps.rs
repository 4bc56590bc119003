//! Hyperliquid perpetuals in the state database: the agent's fills and its position per
//! coin (signed size, average entry, realised PnL, fees paid), per mode (`paper`, `live`)
//! and network. A fill and the position it moves are written in one transaction.
//!
//! The position arithmetic is exact ([`Fx`]): a fill in the position's direction moves the
//! average entry (size-weighted); a fill against it realises `closed × (price − entry)` (long)
//! or `closed × (entry − price)` (short) on the part it closes, and what is left of the fill
//! past a flat position opens the other way at the fill's price. Fees are booked separately
//! and are not part of the realised PnL.

use rusqlite::{OptionalExtension, params};
use vigil_protocol::{AssetSymbol, Network, Side};

use super::{AgentStore, StoreError, migrations, to_sql_ts};
use crate::firewall::risk_perp::fixed::Fx;

/// Version 4: the perpetuals' fills and positions (`docs/orchestrator.md`, "Hyperliquid").
pub(super) const V4: &str = r#"
CREATE TABLE perp_positions (
    agent         TEXT NOT NULL REFERENCES agents(id),
    mode          TEXT NOT NULL CHECK (mode IN ('paper', 'live')),
    network       TEXT NOT NULL,
    coin          TEXT NOT NULL,
    size          TEXT NOT NULL,
    entry_px      TEXT NOT NULL,
    realized_pnl  TEXT NOT NULL,
    fees          TEXT NOT NULL,
    PRIMARY KEY (agent, mode, network, coin)
) STRICT;

CREATE TABLE perp_fills (
    id               INTEGER PRIMARY KEY,
    agent            TEXT NOT NULL REFERENCES agents(id),
    mode             TEXT NOT NULL CHECK (mode IN ('paper', 'live')),
    network          TEXT NOT NULL,
    coin             TEXT NOT NULL,
    ts               INTEGER NOT NULL CHECK (ts >= 0),
    side             TEXT NOT NULL CHECK (side IN ('buy', 'sell')),
    size             TEXT NOT NULL,
    px               TEXT NOT NULL,
    fee              TEXT NOT NULL,
    realized_pnl     TEXT NOT NULL,
    idempotency_key  TEXT NOT NULL UNIQUE
) STRICT;
CREATE INDEX perp_fills_by_agent ON perp_fills (agent, mode, network, coin, id);
"#;

/// Back from version 4: the perpetual positions and fills go (`migrate --down-to 3`).
pub(super) const V4_DOWN: &str =
    "DROP INDEX perp_fills_by_agent; DROP TABLE perp_fills; DROP TABLE perp_positions;";

/// One fill to record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewPerpFill<'a> {
    /// `paper` or `live`.
    pub paper: bool,
    pub network: Network,
    pub coin: AssetSymbol,
    pub ts: u64,
    pub side: Side,
    /// Positive size.
    pub size: Fx,
    pub px: Fx,
    /// Fee paid, USD.
    pub fee: Fx,
    /// The decision's idempotency key: the same fill is never booked twice.
    pub key: &'a str,
}

/// An agent's position in one coin.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PerpPositionRow {
    /// Signed size: positive long, negative short.
    pub size: Fx,
    /// Average entry price (zero when flat).
    pub entry_px: Fx,
    /// Realised PnL, USD, fees not included.
    pub realized_pnl: Fx,
    /// Fees paid, USD.
    pub fees: Fx,
    /// Funding received, USD (negative: paid); paper accrues it (`funding.rs`), live funding
    /// is inside the venue's account value.
    pub funding: Fx,
}

pub(super) fn mode(paper: bool) -> &'static str {
    if paper { "paper" } else { "live" }
}

fn corrupt(what: &str, text: &str) -> StoreError {
    StoreError::Corrupt(format!("perpetuals: {what} {text:?} is not a decimal"))
}

pub(super) fn fx(what: &str, text: &str) -> Result<Fx, StoreError> {
    Fx::parse(text).ok_or_else(|| corrupt(what, text))
}

/// The position after `fill` (signed size `delta` at `px`), and the PnL it realised.
fn apply(pos: PerpPositionRow, delta: Fx, px: Fx) -> Option<(PerpPositionRow, Fx)> {
    let old = pos.size;
    let same_way = old.is_zero() || old.is_negative() == delta.is_negative();
    if same_way {
        let size = old.add(delta)?;
        // Size-weighted entry: (|old| × entry + |delta| × px) / |size|.
        let cost = old.abs().mul(pos.entry_px)?.add(delta.abs().mul(px)?)?;
        let entry_px = cost.div(size.abs())?;
        return Some((
            PerpPositionRow {
                size,
                entry_px,
                ..pos
            },
            Fx::ZERO,
        ));
    }
    let closed = if delta.abs() < old.abs() {
        delta.abs()
    } else {
        old.abs()
    };
    let per_unit = if old.is_negative() {
        pos.entry_px.sub(px)?
    } else {
        px.sub(pos.entry_px)?
    };
    let pnl = closed.mul(per_unit)?;
    let size = old.add(delta)?;
    let entry_px = if size.is_zero() {
        Fx::ZERO
    } else if size.is_negative() == old.is_negative() {
        pos.entry_px
    } else {
        px
    };
    Some((
        PerpPositionRow {
            size,
            entry_px,
            realized_pnl: pos.realized_pnl.add(pnl)?,
            ..pos
        },
        pnl,
    ))
}

impl AgentStore<'_> {
    /// The agent's position in `coin` (all zero if it never traded it).
    pub fn perp_position(
        &self,
        paper: bool,
        network: Network,
        coin: AssetSymbol,
    ) -> Result<PerpPositionRow, StoreError> {
        position_in(&self.store.conn, self.agent.as_str(), paper, network, coin)
    }

    /// Every non-flat position of the agent on `network`, by coin.
    pub fn perp_positions(
        &self,
        paper: bool,
        network: Network,
    ) -> Result<Vec<(String, PerpPositionRow)>, StoreError> {
        let mut book = self.perp_book(paper, network)?;
        book.retain(|(_, p)| !p.size.is_zero());
        Ok(book)
    }

    /// Books a fill and moves the position, in one transaction; the position after it. A
    /// fill whose key was booked already is an error, and nothing changes.
    pub fn record_perp_fill(&self, fill: &NewPerpFill<'_>) -> Result<PerpPositionRow, StoreError> {
        let sql_ts = to_sql_ts(fill.ts, "perp fill timestamp")?;
        let tx = migrations::begin_immediate(&self.store.conn)?;
        self.store.ensure_agent(self.agent.as_str(), fill.ts)?;
        let agent = self.agent.as_str();
        let pos = position_in(&tx, agent, fill.paper, fill.network, fill.coin)?;
        let delta = match fill.side {
            Side::Buy => fill.size,
            Side::Sell => fill.size.neg(),
        };
        let overflow = || StoreError::PositionOverflow {
            agent: agent.to_owned(),
            asset: fill.coin.to_string(),
        };
        let (mut next, pnl) = apply(pos, delta, fill.px).ok_or_else(overflow)?;
        next.fees = next.fees.add(fill.fee).ok_or_else(overflow)?;
        // The position's open (funding hours count from it): set when it leaves flat or flips,
        // kept while it only grows or shrinks, cleared when flat.
        let reopened = !next.size.is_zero()
            && (pos.size.is_zero() || next.size.is_negative() != pos.size.is_negative());
        let keep_open = !next.size.is_zero() && !reopened;
        let opened_at = reopened.then_some(sql_ts);
        tx.execute(
            "INSERT INTO perp_fills (agent, mode, network, coin, ts, side, size, px, fee,
                                     realized_pnl, idempotency_key)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
            params![
                agent,
                mode(fill.paper),
                fill.network.as_str(),
                fill.coin.as_str(),
                sql_ts,
                fill.side.as_str(),
                fill.size.to_string(),
                fill.px.to_string(),
                fill.fee.to_string(),
                pnl.to_string(),
                fill.key
            ],
        )?;
        tx.execute(
            "INSERT INTO perp_positions (agent, mode, network, coin, size, entry_px, realized_pnl,
                                         fees, opened_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
             ON CONFLICT(agent, mode, network, coin) DO UPDATE SET size = excluded.size,
                 entry_px = excluded.entry_px, realized_pnl = excluded.realized_pnl,
                 fees = excluded.fees,
                 opened_at = CASE WHEN ?10 THEN perp_positions.opened_at ELSE ?9 END",
            params![
                agent,
                mode(fill.paper),
                fill.network.as_str(),
                fill.coin.as_str(),
                next.size.to_string(),
                next.entry_px.to_string(),
                next.realized_pnl.to_string(),
                next.fees.to_string(),
                opened_at,
                keep_open
            ],
        )?;
        tx.commit()?;
        Ok(next)
    }
}

fn position_in(
    conn: &rusqlite::Connection,
    agent: &str,
    paper: bool,
    network: Network,
    coin: AssetSymbol,
) -> Result<PerpPositionRow, StoreError> {
    let row: Option<[String; 5]> = conn
        .query_row(
            &format!(
                "SELECT {POSITION_COLUMNS} FROM perp_positions
                 WHERE agent = ?1 AND mode = ?2 AND network = ?3 AND coin = ?4"
            ),
            params![agent, mode(paper), network.as_str(), coin.as_str()],
            |r| Ok([r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?]),
        )
        .optional()?;
    row.map_or(Ok(PerpPositionRow::default()), |r| position_row(&r))
}

/// The columns [`position_row`] reads, in its order.
pub(super) const POSITION_COLUMNS: &str = "size, entry_px, realized_pnl, fees, funding";

/// A row of [`POSITION_COLUMNS`] as a position.
pub(super) fn position_row(
    [size, entry, pnl, fees, funding]: &[String; 5],
) -> Result<PerpPositionRow, StoreError> {
    Ok(PerpPositionRow {
        size: fx("size", size)?,
        entry_px: fx("entry_px", entry)?,
        realized_pnl: fx("realized_pnl", pnl)?,
        fees: fx("fees", fees)?,
        funding: fx("funding", funding)?,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use crate::store::Store;

    fn f(s: &str) -> Fx {
        Fx::parse(s).unwrap()
    }

    #[test]
    fn fills_move_the_position_and_realise_pnl_exactly() {
        let store = Store::open_in_memory().unwrap();
        let agent = "perps".parse().unwrap();
        let a = store.agent(&agent);
        let eth: AssetSymbol = "ETH".parse().unwrap();
        let fill = |side, size: &str, px: &str, key: &'static str| NewPerpFill {
            paper: true,
            network: Network::Testnet,
            coin: eth,
            ts: 1,
            side,
            size: f(size),
            px: f(px),
            fee: f("0.1"),
            key,
        };
        // Buy 1 at 2000, buy 1 at 3000: long 2 at 2500.
        a.record_perp_fill(&fill(Side::Buy, "1", "2000", "k1"))
            .unwrap();
        let p = a
            .record_perp_fill(&fill(Side::Buy, "1", "3000", "k2"))
            .unwrap();
        assert_eq!((p.size, p.entry_px), (f("2"), f("2500")));
        // Sell 0.5 at 2600: +50 realised, long 1.5 at 2500.
        let p = a
            .record_perp_fill(&fill(Side::Sell, "0.5", "2600", "k3"))
            .unwrap();
        assert_eq!(
            (p.size, p.entry_px, p.realized_pnl),
            (f("1.5"), f("2500"), f("50"))
        );
        // Sell 2.5 at 2400: closes 1.5 for -150, opens short 1 at 2400.
        let p = a
            .record_perp_fill(&fill(Side::Sell, "2.5", "2400", "k4"))
            .unwrap();
        assert_eq!(
            (p.size, p.entry_px, p.realized_pnl, p.fees),
            (f("-1"), f("2400"), f("-100"), f("0.4"))
        );
        // Buy 1 at 2300: a short closed for +100, flat.
        let p = a
            .record_perp_fill(&fill(Side::Buy, "1", "2300", "k5"))
            .unwrap();
        assert_eq!(
            (p.size, p.entry_px, p.realized_pnl),
            (Fx::ZERO, Fx::ZERO, Fx::ZERO)
        );
        assert!(a.perp_positions(true, Network::Testnet).unwrap().is_empty());
        // The same key twice books nothing.
        assert!(
            a.record_perp_fill(&fill(Side::Buy, "1", "2300", "k5"))
                .is_err()
        );
        assert_eq!(
            a.perp_position(true, Network::Testnet, eth).unwrap().size,
            Fx::ZERO
        );
        // Live and paper positions are apart.
        assert_eq!(
            a.perp_position(false, Network::Testnet, eth).unwrap(),
            PerpPositionRow::default()
        );
    }
}
