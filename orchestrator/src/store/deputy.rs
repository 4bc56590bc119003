//! The deputies' risk engine in the state database (`deputy/mod.rs`): each agent's risk state
//! (Active / Reducing / Halted, why, since when), the day's equity baseline, whether the loss
//! floor's alert went out, the resume asked at the signer; the orders that passed layer 2 (the
//! order rate cap counts them); and the reads of the perpetuals' book the figures need (every
//! coin, flat ones too, and the fills of a period).
//!
//! No row means Active with no baseline yet. A stored name this code never writes is
//! corruption, not Active: the engine fails closed on it.

use rusqlite::{OptionalExtension, params};
use vigil_protocol::Network;

use super::perps::{POSITION_COLUMNS, fx, mode, position_row};
use super::{AgentStore, StoreError, from_sql_u64, migrations, to_sql_ts};
use crate::deputy::{RiskState, StateCause};
use crate::firewall::risk_perp::fixed::Fx;
use crate::store::PerpPositionRow;

/// Version 6: the deputies' risk state and their orders (`docs/deputies.md`).
pub(super) const V6: &str = r#"
CREATE TABLE deputy_risk (
    agent            TEXT PRIMARY KEY NOT NULL REFERENCES agents(id),
    state            TEXT NOT NULL CHECK (state IN ('active', 'reducing', 'halted')),
    cause            TEXT CHECK (cause IS NULL OR cause IN ('loss_floor', 'reconciliation')),
    detail           TEXT NOT NULL,
    since            INTEGER NOT NULL CHECK (since >= 0),
    baseline_day     INTEGER CHECK (baseline_day IS NULL OR baseline_day >= 0),
    baseline_equity  TEXT,
    floor_alerted    INTEGER NOT NULL DEFAULT 0 CHECK (floor_alerted IN (0, 1)),
    resume_request   TEXT,
    CHECK ((state = 'active') = (cause IS NULL))
) STRICT;

CREATE TABLE deputy_orders (
    id     INTEGER PRIMARY KEY,
    agent  TEXT NOT NULL REFERENCES agents(id),
    ts     INTEGER NOT NULL CHECK (ts >= 0)
) STRICT;
CREATE INDEX deputy_orders_by_agent ON deputy_orders (agent, ts);
"#;

/// Back from version 6: the deputies' risk state and order log go.
pub(super) const V6_DOWN: &str =
    "DROP INDEX deputy_orders_by_agent; DROP TABLE deputy_orders; DROP TABLE deputy_risk;";

/// A deputy's stored risk state.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeputyRow {
    pub state: RiskState,
    pub cause: Option<StateCause>,
    pub detail: String,
    pub since: u64,
    /// The UTC day (its first second) the baseline was taken, and the equity then.
    pub baseline: Option<(u64, Fx)>,
    /// The loss floor's alert went out for this halt.
    pub floor_alerted: bool,
    /// The `request_resume` asked at the signer for this halt (its request id).
    pub resume_request: Option<String>,
}

/// Realised PnL and fees of a coin's fills over a period.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FillTotals {
    pub realized_pnl: Fx,
    pub fees: Fx,
}

fn corrupt(what: &str, text: &str) -> StoreError {
    StoreError::Corrupt(format!(
        "deputy_risk: {what} {text:?} is not one this code writes"
    ))
}

impl AgentStore<'_> {
    /// The deputy's risk state (Active with no baseline when never written).
    pub fn deputy(&self) -> Result<DeputyRow, StoreError> {
        type Raw = (
            String,
            Option<String>,
            String,
            i64,
            Option<i64>,
            Option<String>,
            i64,
            Option<String>,
        );
        let raw: Option<Raw> = self
            .store
            .conn
            .query_row(
                "SELECT state, cause, detail, since, baseline_day, baseline_equity, floor_alerted,
                        resume_request FROM deputy_risk WHERE agent = ?1",
                [self.agent.as_str()],
                |r| {
                    Ok((
                        r.get(0)?,
                        r.get(1)?,
                        r.get(2)?,
                        r.get(3)?,
                        r.get(4)?,
                        r.get(5)?,
                        r.get(6)?,
                        r.get(7)?,
                    ))
                },
            )
            .optional()?;
        let Some((state, cause, detail, since, day, equity, alerted, resume)) = raw else {
            return Ok(DeputyRow::default());
        };
        let state = RiskState::parse(&state).ok_or_else(|| corrupt("state", &state))?;
        let cause = match cause {
            Some(c) => Some(StateCause::parse(&c).ok_or_else(|| corrupt("cause", &c))?),
            None => None,
        };
        let baseline = match (day, equity) {
            (Some(day), Some(e)) => Some((
                from_sql_u64(day, "deputy_risk.baseline_day")?,
                Fx::parse(&e).ok_or_else(|| corrupt("baseline_equity", &e))?,
            )),
            _ => None,
        };
        Ok(DeputyRow {
            state,
            cause,
            detail,
            since: from_sql_u64(since, "deputy_risk.since")?,
            baseline,
            floor_alerted: alerted == 1,
            resume_request: resume,
        })
    }

    /// Sets the deputy's state (durable when it returns); Active clears the cause, the
    /// floor's alert and the resume request.
    pub fn set_deputy_state(
        &self,
        state: RiskState,
        cause: Option<StateCause>,
        detail: &str,
        now: u64,
    ) -> Result<(), StoreError> {
        if (state == RiskState::Active) != cause.is_none() {
            return Err(StoreError::InvalidInput {
                what: "deputy state",
                why: format!("{state} with cause {cause:?}: only Active has no cause"),
            });
        }
        let ts = to_sql_ts(now, "deputy state time")?;
        let tx = migrations::begin_immediate(&self.store.conn)?;
        self.store.ensure_agent(self.agent.as_str(), now)?;
        tx.execute(
            "INSERT INTO deputy_risk (agent, state, cause, detail, since) VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT(agent) DO UPDATE SET state = excluded.state, cause = excluded.cause,
                 detail = excluded.detail, since = excluded.since,
                 floor_alerted = CASE WHEN excluded.state = 'active' THEN 0 ELSE floor_alerted END,
                 resume_request = CASE WHEN excluded.state = 'active' THEN NULL
                                       ELSE resume_request END",
            params![
                self.agent.as_str(),
                state.as_str(),
                cause.map(StateCause::as_str),
                detail,
                ts
            ],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// Records the day's baseline (the deputy's row made Active if it had none).
    pub fn set_baseline(&self, day: u64, equity: Fx, now: u64) -> Result<(), StoreError> {
        self.ensure_deputy(now)?;
        self.store.conn.execute(
            "UPDATE deputy_risk SET baseline_day = ?2, baseline_equity = ?3 WHERE agent = ?1",
            params![
                self.agent.as_str(),
                to_sql_ts(day, "baseline day")?,
                equity.to_string()
            ],
        )?;
        Ok(())
    }

    /// Marks the loss floor's alert as sent for this halt.
    pub fn set_floor_alerted(&self) -> Result<(), StoreError> {
        self.store.conn.execute(
            "UPDATE deputy_risk SET floor_alerted = 1 WHERE agent = ?1",
            [self.agent.as_str()],
        )?;
        Ok(())
    }

    /// Records the resume request asked at the signer.
    pub fn set_resume_request(&self, request_id: &str) -> Result<(), StoreError> {
        self.store.conn.execute(
            "UPDATE deputy_risk SET resume_request = ?2 WHERE agent = ?1",
            params![self.agent.as_str(), request_id],
        )?;
        Ok(())
    }

    fn ensure_deputy(&self, now: u64) -> Result<(), StoreError> {
        self.store.ensure_agent(self.agent.as_str(), now)?;
        self.store.conn.execute(
            "INSERT OR IGNORE INTO deputy_risk (agent, state, detail, since)
             VALUES (?1, 'active', '', ?2)",
            params![self.agent.as_str(), to_sql_ts(now, "deputy state time")?],
        )?;
        Ok(())
    }

    /// Records one order that passed layer 2 (the rate cap counts them).
    pub fn record_deputy_order(&self, now: u64) -> Result<(), StoreError> {
        let ts = to_sql_ts(now, "order time")?;
        self.store.ensure_agent(self.agent.as_str(), now)?;
        self.store.conn.execute(
            "INSERT INTO deputy_orders (agent, ts) VALUES (?1, ?2)",
            params![self.agent.as_str(), ts],
        )?;
        self.store.conn.execute(
            "DELETE FROM deputy_orders WHERE agent = ?1 AND ts < ?2",
            params![self.agent.as_str(), ts.saturating_sub(3600)],
        )?;
        Ok(())
    }

    /// How many orders passed layer 2 at or after `since`.
    pub fn deputy_orders_since(&self, since: u64) -> Result<u32, StoreError> {
        let n: i64 = self.store.conn.query_row(
            "SELECT count(*) FROM deputy_orders WHERE agent = ?1 AND ts >= ?2",
            params![self.agent.as_str(), to_sql_ts(since, "since")?],
            |r| r.get(0),
        )?;
        Ok(u32::try_from(n).unwrap_or(u32::MAX))
    }

    /// Every coin the agent ever traded on `network` in this mode, flat ones included.
    pub fn perp_book(
        &self,
        paper: bool,
        network: Network,
    ) -> Result<Vec<(String, PerpPositionRow)>, StoreError> {
        let mut stmt = self.store.conn.prepare(&format!(
            "SELECT coin, {POSITION_COLUMNS} FROM perp_positions
             WHERE agent = ?1 AND mode = ?2 AND network = ?3 ORDER BY coin"
        ))?;
        let rows = stmt.query_map(
            params![self.agent.as_str(), mode(paper), network.as_str()],
            |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    [r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?],
                ))
            },
        )?;
        let mut out = Vec::new();
        for row in rows {
            let (coin, columns): (String, [String; 5]) = row?;
            out.push((coin, position_row(&columns)?));
        }
        Ok(out)
    }

    /// Realised PnL and fees per coin of the fills at or after `since`.
    pub fn perp_fill_totals(
        &self,
        paper: bool,
        network: Network,
        since: u64,
    ) -> Result<Vec<(String, FillTotals)>, StoreError> {
        let mut stmt = self.store.conn.prepare(
            "SELECT coin, realized_pnl, fee FROM perp_fills
             WHERE agent = ?1 AND mode = ?2 AND network = ?3 AND ts >= ?4 ORDER BY coin, id",
        )?;
        let rows = stmt.query_map(
            params![
                self.agent.as_str(),
                mode(paper),
                network.as_str(),
                to_sql_ts(since, "since")?
            ],
            |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                ))
            },
        )?;
        let mut out: Vec<(String, FillTotals)> = Vec::new();
        for row in rows {
            let (coin, pnl, fee) = row?;
            let (pnl, fee) = (fx("realized_pnl", &pnl)?, fx("fee", &fee)?);
            let overflow = || StoreError::Corrupt(format!("perp_fills of {coin} overflow"));
            match out.last_mut() {
                Some((c, t)) if *c == coin => {
                    t.realized_pnl = t.realized_pnl.add(pnl).ok_or_else(overflow)?;
                    t.fees = t.fees.add(fee).ok_or_else(overflow)?;
                }
                _ => out.push((
                    coin,
                    FillTotals {
                        realized_pnl: pnl,
                        fees: fee,
                    },
                )),
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::store::Store;

    #[test]
    fn the_state_is_durable_and_active_clears_the_halt() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        let agent = "perps".parse().unwrap();
        {
            let store = Store::open(&path).unwrap();
            let a = store.agent(&agent);
            assert_eq!(a.deputy().unwrap(), DeputyRow::default());
            a.set_baseline(86_400, Fx::parse("10000").unwrap(), 86_401)
                .unwrap();
            a.set_deputy_state(
                RiskState::Halted,
                Some(StateCause::LossFloor),
                "floor",
                86_500,
            )
            .unwrap();
            a.set_floor_alerted().unwrap();
            a.set_resume_request("r-1").unwrap();
            // Only Active has no cause.
            assert!(
                a.set_deputy_state(RiskState::Reducing, None, "x", 1)
                    .is_err()
            );
            assert!(
                a.set_deputy_state(RiskState::Active, Some(StateCause::LossFloor), "x", 1)
                    .is_err()
            );
        }
        let store = Store::open(&path).unwrap();
        let a = store.agent(&agent);
        let row = a.deputy().unwrap();
        assert_eq!(
            (row.state, row.cause, row.since, row.floor_alerted),
            (RiskState::Halted, Some(StateCause::LossFloor), 86_500, true)
        );
        assert_eq!(row.baseline, Some((86_400, Fx::parse("10000").unwrap())));
        assert_eq!(row.resume_request.as_deref(), Some("r-1"));
        a.set_deputy_state(RiskState::Active, None, "", 90_000)
            .unwrap();
        let row = a.deputy().unwrap();
        assert_eq!(
            (row.state, row.floor_alerted, row.resume_request),
            (RiskState::Active, false, None)
        );
        // A name this code never writes is corruption, not Active.
        store
            .conn
            .execute("UPDATE deputy_risk SET state = 'paused'", [])
            .unwrap_err();
    }

    #[test]
    fn orders_are_counted_in_their_window() {
        let store = Store::open_in_memory().unwrap();
        let a = store.agent(&"perps".parse().unwrap());
        for ts in [100, 130, 159, 160] {
            a.record_deputy_order(ts).unwrap();
        }
        assert_eq!(a.deputy_orders_since(100).unwrap(), 4);
        assert_eq!(a.deputy_orders_since(101).unwrap(), 3);
        assert_eq!(a.deputy_orders_since(161).unwrap(), 0);
        // Another agent's orders are not counted.
        assert_eq!(
            store
                .agent(&"other".parse().unwrap())
                .deputy_orders_since(0)
                .unwrap(),
            0
        );
    }
}
