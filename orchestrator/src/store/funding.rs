//! Paper funding on perpetual positions: one record per funding hour of a paper position,
//! and the position's running funding total, written in one transaction.
//!
//! A position opened at `t` pays or receives funding at `t + 1 h`, `t + 2 h`, … (hours counted
//! from its open, reset when it goes flat or flips). Each hour books
//! `−size × mark × rate` USD (a long pays when the rate is positive, a short receives), at the
//! rate the venue lists in force at that hour and at the mark when it is booked (the
//! orchestrator's estimate; an hour booked late uses the later mark). An hour is booked once:
//! the record's key is (agent, network, coin, the position's open, the hour), so a restart or
//! a second call books nothing twice. Hours whose rate the venue has not listed yet wait.

use rusqlite::{OptionalExtension, params};
use vigil_protocol::{AssetSymbol, Network};

use super::perps::{fx, mode};
use super::{AgentStore, StoreError, from_sql_u64, migrations, to_sql_ts};
use crate::firewall::risk_perp::fixed::Fx;

/// Version 7: paper funding (`docs/deputies.md`, "The paper model").
pub(super) const V7: &str = r#"
ALTER TABLE perp_positions ADD COLUMN funding TEXT NOT NULL DEFAULT '0';
ALTER TABLE perp_positions ADD COLUMN opened_at INTEGER CHECK (opened_at >= 0);

CREATE TABLE perp_funding (
    id         INTEGER PRIMARY KEY,
    agent      TEXT NOT NULL REFERENCES agents(id),
    mode       TEXT NOT NULL CHECK (mode IN ('paper', 'live')),
    network    TEXT NOT NULL,
    coin       TEXT NOT NULL,
    opened_at  INTEGER NOT NULL CHECK (opened_at >= 0),
    hour       INTEGER NOT NULL CHECK (hour > opened_at),
    size       TEXT NOT NULL,
    mark       TEXT NOT NULL,
    rate       TEXT NOT NULL,
    amount     TEXT NOT NULL,
    UNIQUE (agent, mode, network, coin, opened_at, hour)
) STRICT;
"#;

/// Back from version 7: the funding records and the positions' funding columns go.
pub(super) const V7_DOWN: &str = "DROP TABLE perp_funding;
ALTER TABLE perp_positions DROP COLUMN opened_at;
ALTER TABLE perp_positions DROP COLUMN funding;";

/// One funding hour in seconds.
pub(crate) const FUNDING_HOUR_SECS: u64 = 3_600;

/// One booked funding hour.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FundingRow {
    pub coin: String,
    /// Unix seconds of the funding hour.
    pub hour: u64,
    /// The position's signed size then.
    pub size: Fx,
    pub mark: Fx,
    pub rate: Fx,
    /// USD received (negative: paid).
    pub amount: Fx,
}

impl AgentStore<'_> {
    /// The first funding hour of `coin`'s paper position not booked yet, when it is at or
    /// before `now` (`None`: flat, or nothing due).
    pub fn paper_funding_due(
        &self,
        network: Network,
        coin: AssetSymbol,
        now: u64,
    ) -> Result<Option<u64>, StoreError> {
        let next = next_hour(&self.store.conn, self.agent.as_str(), network, coin)?;
        Ok(next.filter(|(_, hour)| *hour <= now).map(|(_, hour)| hour))
    }

    /// Books every funding hour of `coin`'s paper position due at `now` whose rate `rates`
    /// lists (`(unix seconds, hourly rate)`, the rate in force at an hour being the last one
    /// listed at or before it), at `mark`. The hours booked (none when flat or not due).
    pub fn accrue_paper_funding(
        &self,
        network: Network,
        coin: AssetSymbol,
        now: u64,
        mark: Fx,
        rates: &[(u64, Fx)],
    ) -> Result<Vec<FundingRow>, StoreError> {
        let agent = self.agent.as_str();
        let tx = migrations::begin_immediate(&self.store.conn)?;
        let Some((opened_at, mut hour)) = next_hour(&tx, agent, network, coin)? else {
            return Ok(Vec::new());
        };
        let pos = self.perp_position(true, network, coin)?;
        let overflow = || StoreError::PositionOverflow {
            agent: agent.to_owned(),
            asset: coin.to_string(),
        };
        let mut total = pos.funding;
        let mut booked = Vec::new();
        while hour <= now {
            let Some(rate) = rates
                .iter()
                .filter(|(t, _)| *t <= hour)
                .max_by_key(|(t, _)| *t)
                .map(|(_, r)| *r)
            else {
                break; // the venue has not listed a rate for this hour yet: it waits
            };
            let amount = pos
                .size
                .mul(mark)
                .and_then(|n| n.mul(rate))
                .ok_or_else(overflow)?
                .neg();
            tx.execute(
                "INSERT INTO perp_funding (agent, mode, network, coin, opened_at, hour, size,
                                           mark, rate, amount)
                 VALUES (?1, 'paper', ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                params![
                    agent,
                    network.as_str(),
                    coin.as_str(),
                    to_sql_ts(opened_at, "position open")?,
                    to_sql_ts(hour, "funding hour")?,
                    pos.size.to_string(),
                    mark.to_string(),
                    rate.to_string(),
                    amount.to_string()
                ],
            )?;
            total = total.add(amount).ok_or_else(overflow)?;
            booked.push(FundingRow {
                coin: coin.to_string(),
                hour,
                size: pos.size,
                mark,
                rate,
                amount,
            });
            hour += FUNDING_HOUR_SECS;
        }
        tx.execute(
            "UPDATE perp_positions SET funding = ?1
             WHERE agent = ?2 AND mode = 'paper' AND network = ?3 AND coin = ?4",
            params![total.to_string(), agent, network.as_str(), coin.as_str()],
        )?;
        tx.commit()?;
        Ok(booked)
    }

    /// The booked funding hours of the agent's paper positions on `network`, oldest first.
    pub fn paper_funding(&self, network: Network) -> Result<Vec<FundingRow>, StoreError> {
        let mut stmt = self.store.conn.prepare(
            "SELECT coin, hour, size, mark, rate, amount FROM perp_funding
             WHERE agent = ?1 AND mode = 'paper' AND network = ?2 ORDER BY id",
        )?;
        let rows = stmt.query_map(params![self.agent.as_str(), network.as_str()], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, i64>(1)?,
                [r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?],
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (coin, hour, [size, mark, rate, amount]): (String, i64, [String; 4]) = row?;
            out.push(FundingRow {
                coin,
                hour: from_sql_u64(hour, "funding hour")?,
                size: fx("size", &size)?,
                mark: fx("mark", &mark)?,
                rate: fx("rate", &rate)?,
                amount: fx("amount", &amount)?,
            });
        }
        Ok(out)
    }
}

/// The paper position's open and its first unbooked funding hour (`None` when flat).
fn next_hour(
    conn: &rusqlite::Connection,
    agent: &str,
    network: Network,
    coin: AssetSymbol,
) -> Result<Option<(u64, u64)>, StoreError> {
    let opened: Option<Option<i64>> = conn
        .query_row(
            "SELECT opened_at FROM perp_positions
             WHERE agent = ?1 AND mode = ?2 AND network = ?3 AND coin = ?4 AND size != '0'",
            params![agent, mode(true), network.as_str(), coin.as_str()],
            |r| r.get(0),
        )
        .optional()?;
    let Some(Some(opened)) = opened else {
        return Ok(None);
    };
    let last: Option<i64> = conn.query_row(
        "SELECT MAX(hour) FROM perp_funding
         WHERE agent = ?1 AND mode = 'paper' AND network = ?2 AND coin = ?3 AND opened_at = ?4",
        params![agent, network.as_str(), coin.as_str(), opened],
        |r| r.get(0),
    )?;
    let opened = from_sql_u64(opened, "position open")?;
    let next = match last {
        Some(h) => from_sql_u64(h, "funding hour")? + FUNDING_HOUR_SECS,
        None => opened + FUNDING_HOUR_SECS,
    };
    Ok(Some((opened, next)))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::collections::BTreeMap;

    use vigil_protocol::Side;

    use super::*;
    use crate::store::{NewPerpFill, Store};

    fn f(s: &str) -> Fx {
        Fx::parse(s).unwrap()
    }

    const T0: u64 = 1_700_000_000;

    fn open_half_eth(store: &Store) {
        let agent = "perps".parse().unwrap();
        store
            .agent(&agent)
            .record_perp_fill(&NewPerpFill {
                paper: true,
                network: Network::Testnet,
                coin: "ETH".parse().unwrap(),
                ts: T0,
                side: Side::Buy,
                size: f("0.5"),
                px: f("2000"),
                fee: Fx::ZERO,
                key: "open",
            })
            .unwrap();
    }

    /// Open 0.5 ETH at 2 000; hour 1 at +0.0001 with the mark at 2 010, hour 2 at −0.00005
    /// with the mark at 1 990. By hand: hour 1 pays 0.5 × 2010 × 0.0001 = 0.1005 USD
    /// (−100 500 µUSD); hour 2 receives 0.5 × 1990 × 0.00005 = 0.04975 USD (+49 750 µUSD);
    /// net −0.05075 USD (−50 750 µUSD). Equity at the mark 1 990: 10 000 + 0.5 × (1990 − 2000)
    /// − 0.05075 = 9 994.94925.
    #[test]
    fn paper_funding_over_two_hours_equals_the_hand_computation_and_books_once() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("state.sqlite");
        let eth: AssetSymbol = "ETH".parse().unwrap();
        let agent = "perps".parse().unwrap();
        let rates = [
            (T0 - 600, f("0.0001")),
            (T0 + 2 * FUNDING_HOUR_SECS, f("-0.00005")),
        ];
        {
            let store = Store::open(&file).unwrap();
            open_half_eth(&store);
            let a = store.agent(&agent);
            // Not an hour yet: nothing due, nothing booked.
            assert_eq!(
                a.paper_funding_due(Network::Testnet, eth, T0 + 3_599)
                    .unwrap(),
                None
            );
            let h1 = T0 + FUNDING_HOUR_SECS;
            assert_eq!(
                a.paper_funding_due(Network::Testnet, eth, h1).unwrap(),
                Some(h1)
            );
            let one = a
                .accrue_paper_funding(Network::Testnet, eth, h1 + 5, f("2010"), &rates)
                .unwrap();
            assert_eq!(one.len(), 1);
            assert_eq!(one[0].amount, f("-0.1005"));
            // The same hour again books nothing.
            assert!(
                a.accrue_paper_funding(Network::Testnet, eth, h1 + 60, f("2010"), &rates)
                    .unwrap()
                    .is_empty()
            );
        }
        // A restart: the same file, the second hour, and a repeat of the same call.
        let store = Store::open(&file).unwrap();
        let a = store.agent(&agent);
        let h2 = T0 + 2 * FUNDING_HOUR_SECS;
        let two = a
            .accrue_paper_funding(Network::Testnet, eth, h2, f("1990"), &rates)
            .unwrap();
        assert_eq!((two.len(), two[0].amount), (1, f("0.04975")));
        assert!(
            a.accrue_paper_funding(Network::Testnet, eth, h2, f("1990"), &rates)
                .unwrap()
                .is_empty()
        );
        let p = a.perp_position(true, Network::Testnet, eth).unwrap();
        assert_eq!(p.funding, f("-0.05075"));
        // In µUSD: −100 500 + 49 750 = −50 750.
        assert!(p.funding.is_negative());
        assert_eq!(p.funding.notional_micros(Fx::ONE), Some(50_750));
        let book = a.perp_book(true, Network::Testnet).unwrap();
        let marks = BTreeMap::from([(eth, f("1990"))]);
        assert_eq!(
            crate::deputy::paper_equity(f("10000"), &book, &marks),
            Some(f("9994.94925"))
        );
        assert_eq!(a.paper_funding(Network::Testnet).unwrap().len(), 2);
    }

    #[test]
    fn an_hour_without_a_listed_rate_waits_and_a_flat_position_pays_nothing() {
        let store = Store::open_in_memory().unwrap();
        open_half_eth(&store);
        let a = store.agent(&"perps".parse().unwrap());
        let eth: AssetSymbol = "ETH".parse().unwrap();
        let h1 = T0 + FUNDING_HOUR_SECS;
        let later = [(h1 + 1, f("0.0001"))];
        assert!(
            a.accrue_paper_funding(Network::Testnet, eth, h1, f("2000"), &later)
                .unwrap()
                .is_empty()
        );
        assert_eq!(
            a.paper_funding_due(Network::Testnet, eth, h1).unwrap(),
            Some(h1)
        );
        // A short receives at a positive rate.
        a.record_perp_fill(&NewPerpFill {
            paper: true,
            network: Network::Testnet,
            coin: eth,
            ts: T0 + 10,
            side: Side::Sell,
            size: f("1"),
            px: f("2000"),
            fee: Fx::ZERO,
            key: "flip",
        })
        .unwrap();
        let rates = [(0, f("0.0001"))];
        let booked = a
            .accrue_paper_funding(
                Network::Testnet,
                eth,
                T0 + 10 + FUNDING_HOUR_SECS,
                f("2000"),
                &rates,
            )
            .unwrap();
        assert_eq!(
            booked.len(),
            1,
            "hours count from the flip, not the first open"
        );
        assert_eq!((booked[0].size, booked[0].amount), (f("-0.5"), f("0.1")));
        a.record_perp_fill(&NewPerpFill {
            paper: true,
            network: Network::Testnet,
            coin: eth,
            ts: T0 + 20,
            side: Side::Buy,
            size: f("0.5"),
            px: f("2000"),
            fee: Fx::ZERO,
            key: "flat",
        })
        .unwrap();
        assert_eq!(
            a.paper_funding_due(Network::Testnet, eth, T0 + 100 * FUNDING_HOUR_SECS)
                .unwrap(),
            None
        );
    }
}
