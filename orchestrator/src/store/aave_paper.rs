//! The paper Aave book: per agent, EVM network and reserve asset, what the agent supplied and
//! owes on paper, moved by each paper `aave_supply` / `aave_withdraw` / `aave_borrow` /
//! `aave_repay` fill (in the transaction that records the fill) and by the interest accrued
//! each tick.
//!
//! Interest (`docs/deputies.md`, "The paper model"): linear per second between two accruals,
//! at the reserve's rates read from the real Pool at the tick that books it (`getReserveData`:
//! `currentLiquidityRate` for what is supplied, `currentVariableBorrowRate` for what is owed;
//! both APR in ray, 10^27 = 100 % a year, over Aave's year of 31 536 000 s):
//!
//! ```text
//! supply interest = ⌊ supplied × liquidityRate × Δt / (31 536 000 × 10^27) ⌋
//! debt interest   = ⌈ borrowed × variableBorrowRate × Δt / (31 536 000 × 10^27) ⌉
//! ```
//!
//! in base units of the token, rounded against the agent (it earns less and owes more, never
//! the reverse). Each accrual adds its interest to the balances, so interest compounds at each
//! tick. Every accrual is one row of `paper_aave_interest` with the balances, the rates and
//! the interval it used, every fill one row of `paper_aave_fills`: the position is the sum of
//! the rows, and each row's interest is the formula above of its own stored figures.
//!
//! The book cannot go negative: a withdraw above what is supplied or a repay above what is
//! owed is refused, and nothing of its decision is written.

use std::collections::BTreeMap;

use alloy_primitives::U256;
use rusqlite::{OptionalExtension, params};
use vigil_protocol::{AssetSymbol, Network};

use super::{AgentStore, StoreError, from_sql_u64, migrations, to_sql_ts};

/// Version 8: the paper Aave book (`docs/deputies.md`, "The paper model").
pub(super) const V8: &str = r#"
CREATE TABLE paper_aave_positions (
    agent            TEXT NOT NULL REFERENCES agents(id),
    network          TEXT NOT NULL,
    asset            TEXT NOT NULL,
    supplied         TEXT NOT NULL,
    borrowed         TEXT NOT NULL,
    supply_interest  TEXT NOT NULL DEFAULT '0',
    borrow_interest  TEXT NOT NULL DEFAULT '0',
    accrued_at       INTEGER NOT NULL CHECK (accrued_at >= 0),
    PRIMARY KEY (agent, network, asset)
) STRICT;

CREATE TABLE paper_aave_fills (
    id       INTEGER PRIMARY KEY,
    agent    TEXT NOT NULL REFERENCES agents(id),
    network  TEXT NOT NULL,
    asset    TEXT NOT NULL,
    ts       INTEGER NOT NULL CHECK (ts >= 0),
    kind     TEXT NOT NULL CHECK (kind IN ('supply', 'withdraw', 'borrow', 'repay')),
    amount   TEXT NOT NULL,
    key      TEXT NOT NULL UNIQUE
) STRICT;

CREATE TABLE paper_aave_interest (
    id               INTEGER PRIMARY KEY,
    agent            TEXT NOT NULL REFERENCES agents(id),
    network          TEXT NOT NULL,
    asset            TEXT NOT NULL,
    from_ts          INTEGER NOT NULL CHECK (from_ts >= 0),
    to_ts            INTEGER NOT NULL CHECK (to_ts > from_ts),
    supplied         TEXT NOT NULL,
    borrowed         TEXT NOT NULL,
    liquidity_rate   TEXT NOT NULL,
    borrow_rate      TEXT NOT NULL,
    supply_interest  TEXT NOT NULL,
    borrow_interest  TEXT NOT NULL,
    UNIQUE (agent, network, asset, from_ts)
) STRICT;
"#;

/// Back from version 8: the paper Aave book goes.
pub(super) const V8_DOWN: &str =
    "DROP TABLE paper_aave_interest; DROP TABLE paper_aave_fills; DROP TABLE paper_aave_positions;";

/// Aave's year, seconds (`SECONDS_PER_YEAR` of its `MathUtils`).
pub const SECONDS_PER_YEAR: u64 = 31_536_000;
/// 10^27: a rate of one ray is 100 % a year.
pub const RAY: u128 = 1_000_000_000_000_000_000_000_000_000;

/// What a paper Aave fill does to the book.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AaveKind {
    Supply,
    Withdraw,
    Borrow,
    Repay,
}

impl AaveKind {
    /// The stored name (the intent's action without `aave_`).
    pub const fn as_str(self) -> &'static str {
        match self {
            AaveKind::Supply => "supply",
            AaveKind::Withdraw => "withdraw",
            AaveKind::Borrow => "borrow",
            AaveKind::Repay => "repay",
        }
    }
}

/// A paper Aave fill, booked with the paper wallet fill of the same decision.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PaperAaveFill {
    pub network: Network,
    pub asset: AssetSymbol,
    pub kind: AaveKind,
    /// Base units of the token.
    pub amount: u128,
}

/// One reserve of the paper book.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PaperAavePosition {
    /// Base units supplied, interest included.
    pub supplied: u128,
    /// Base units owed, interest included.
    pub borrowed: u128,
    /// Interest earned on what was supplied, since the start.
    pub supply_interest: u128,
    /// Interest accrued on what is owed, since the start.
    pub borrow_interest: u128,
    /// Unix seconds up to which interest is booked.
    pub accrued_at: u64,
}

/// The reserve's rates read at a tick, ray (10^27 = 100 % APR).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReserveRates {
    /// `currentLiquidityRate`: what a supply earns.
    pub liquidity: U256,
    /// `currentVariableBorrowRate`: what a variable-rate debt pays.
    pub variable_borrow: U256,
}

/// One booked accrual.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AaveInterestRow {
    pub asset: String,
    pub from_ts: u64,
    pub to_ts: u64,
    /// The balances the interval accrued on.
    pub supplied: u128,
    pub borrowed: u128,
    pub rates: ReserveRates,
    pub supply_interest: u128,
    pub borrow_interest: u128,
}

/// `amount × rate × seconds / (SECONDS_PER_YEAR × RAY)`, rounded down (`up`: up); `None` when
/// it does not fit 128 bits.
pub(crate) fn linear_interest(amount: u128, rate: U256, seconds: u64, up: bool) -> Option<u128> {
    let numerator = U256::from(amount)
        .checked_mul(rate)?
        .checked_mul(U256::from(seconds))?;
    let denominator = U256::from(SECONDS_PER_YEAR).checked_mul(U256::from(RAY))?;
    let interest = if up {
        numerator.div_ceil(denominator)
    } else {
        numerator / denominator
    };
    u128::try_from(interest).ok()
}

impl AgentStore<'_> {
    /// The fill's move of the book inside the caller's transaction (the decision's): a
    /// withdraw or repay above the position is refused, and writes nothing.
    pub(super) fn apply_paper_aave(
        &self,
        conn: &rusqlite::Connection,
        ts: u64,
        key: &str,
        fill: &PaperAaveFill,
    ) -> Result<(), StoreError> {
        let agent = self.agent.as_str();
        let current = position_in(conn, agent, fill.network, fill.asset)?;
        let mut next = current.unwrap_or(PaperAavePosition {
            accrued_at: ts,
            ..PaperAavePosition::default()
        });
        // A book with nothing in it starts accruing at its first fill.
        if next.supplied == 0 && next.borrowed == 0 {
            next.accrued_at = ts;
        }
        let refused = |what: &str, held: u128| StoreError::InvalidInput {
            what: "paper Aave fill",
            why: format!(
                "{} of {} base units of {} is more than the {held} base units {what} on paper \
                 on evm:{}; the paper book cannot go negative: propose at most {held}",
                fill.kind.as_str(),
                fill.amount,
                fill.asset,
                fill.network
            ),
        };
        let overflow = || StoreError::PositionOverflow {
            agent: agent.to_owned(),
            asset: fill.asset.to_string(),
        };
        match fill.kind {
            AaveKind::Supply => {
                next.supplied = next
                    .supplied
                    .checked_add(fill.amount)
                    .ok_or_else(overflow)?;
            }
            AaveKind::Borrow => {
                next.borrowed = next
                    .borrowed
                    .checked_add(fill.amount)
                    .ok_or_else(overflow)?;
            }
            AaveKind::Withdraw => {
                next.supplied = next
                    .supplied
                    .checked_sub(fill.amount)
                    .ok_or_else(|| refused("supplied", next.supplied))?;
            }
            AaveKind::Repay => {
                next.borrowed = next
                    .borrowed
                    .checked_sub(fill.amount)
                    .ok_or_else(|| refused("owed", next.borrowed))?;
            }
        }
        conn.execute(
            "INSERT INTO paper_aave_fills (agent, network, asset, ts, kind, amount, key)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![
                agent,
                fill.network.as_str(),
                fill.asset.as_str(),
                to_sql_ts(ts, "paper Aave fill timestamp")?,
                fill.kind.as_str(),
                fill.amount.to_string(),
                key
            ],
        )
        .map_err(|e| match e {
            rusqlite::Error::SqliteFailure(f, _)
                if f.code == rusqlite::ErrorCode::ConstraintViolation =>
            {
                StoreError::DuplicateIdempotencyKey(key.to_owned())
            }
            e => StoreError::Sqlite(e),
        })?;
        write_position(conn, agent, fill.network, fill.asset, &next)
    }

    /// Records a paper wallet fill and its Aave fill in one transaction (a paper action the
    /// operator approved with a code, outside a decision's batch).
    pub fn record_paper_aave_fill(
        &self,
        ts: u64,
        key: &str,
        wallet: (AssetSymbol, i128),
        fill: &PaperAaveFill,
        note: &str,
    ) -> Result<(), StoreError> {
        let tx = migrations::begin_immediate(&self.store.conn)?;
        self.store.ensure_agent(self.agent.as_str(), ts)?;
        self.apply_paper_fill(&tx, ts, wallet.0, wallet.1, note)?;
        self.apply_paper_aave(&tx, ts, key, fill)?;
        tx.commit()?;
        Ok(())
    }

    /// Books the interest of every paper Aave position of the agent on `network` from its last
    /// accrual to `now`, at `rates` (module docs); a position whose asset `rates` lacks waits.
    /// One transaction; the rows booked.
    pub fn accrue_paper_aave(
        &self,
        network: Network,
        now: u64,
        rates: &BTreeMap<AssetSymbol, ReserveRates>,
    ) -> Result<Vec<AaveInterestRow>, StoreError> {
        let agent = self.agent.as_str();
        let tx = migrations::begin_immediate(&self.store.conn)?;
        let mut booked = Vec::new();
        for (asset, mut p) in book_in(&tx, agent, network)? {
            if p.accrued_at >= now {
                continue;
            }
            let Some(parsed) = asset.parse::<AssetSymbol>().ok() else {
                return Err(StoreError::Corrupt(format!(
                    "paper Aave position of {agent} names asset {asset:?}"
                )));
            };
            let Some(r) = rates.get(&parsed) else {
                continue; // no rate read this tick: the interval waits for one
            };
            let seconds = now - p.accrued_at;
            let overflow = || StoreError::PositionOverflow {
                agent: agent.to_owned(),
                asset: asset.clone(),
            };
            let earned =
                linear_interest(p.supplied, r.liquidity, seconds, false).ok_or_else(overflow)?;
            let owed = linear_interest(p.borrowed, r.variable_borrow, seconds, true)
                .ok_or_else(overflow)?;
            if p.supplied > 0 || p.borrowed > 0 {
                tx.execute(
                    "INSERT INTO paper_aave_interest (agent, network, asset, from_ts, to_ts,
                         supplied, borrowed, liquidity_rate, borrow_rate, supply_interest,
                         borrow_interest)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
                    params![
                        agent,
                        network.as_str(),
                        asset,
                        to_sql_ts(p.accrued_at, "accrual start")?,
                        to_sql_ts(now, "accrual end")?,
                        p.supplied.to_string(),
                        p.borrowed.to_string(),
                        r.liquidity.to_string(),
                        r.variable_borrow.to_string(),
                        earned.to_string(),
                        owed.to_string()
                    ],
                )?;
                booked.push(AaveInterestRow {
                    asset: asset.clone(),
                    from_ts: p.accrued_at,
                    to_ts: now,
                    supplied: p.supplied,
                    borrowed: p.borrowed,
                    rates: *r,
                    supply_interest: earned,
                    borrow_interest: owed,
                });
            }
            let add = |a: u128, b: u128| a.checked_add(b).ok_or_else(overflow);
            p.supplied = add(p.supplied, earned)?;
            p.borrowed = add(p.borrowed, owed)?;
            p.supply_interest = add(p.supply_interest, earned)?;
            p.borrow_interest = add(p.borrow_interest, owed)?;
            p.accrued_at = now;
            write_position(&tx, agent, network, parsed, &p)?;
        }
        tx.commit()?;
        Ok(booked)
    }

    /// The agent's paper Aave book on `network`, by asset name.
    pub fn paper_aave_book(
        &self,
        network: Network,
    ) -> Result<Vec<(String, PaperAavePosition)>, StoreError> {
        book_in(&self.store.conn, self.agent.as_str(), network)
    }

    /// The booked accruals on `network`, oldest first.
    pub fn paper_aave_interest(
        &self,
        network: Network,
    ) -> Result<Vec<AaveInterestRow>, StoreError> {
        let mut stmt = self.store.conn.prepare(
            "SELECT asset, from_ts, to_ts, supplied, borrowed, liquidity_rate, borrow_rate,
                    supply_interest, borrow_interest
             FROM paper_aave_interest WHERE agent = ?1 AND network = ?2 ORDER BY id",
        )?;
        let rows = stmt.query_map(params![self.agent.as_str(), network.as_str()], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, i64>(2)?,
                [
                    r.get::<_, String>(3)?,
                    r.get(4)?,
                    r.get(5)?,
                    r.get(6)?,
                    r.get(7)?,
                    r.get(8)?,
                ],
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (asset, from_ts, to_ts, [s, b, lr, br, si, bi]) = row?;
            out.push(AaveInterestRow {
                asset,
                from_ts: from_sql_u64(from_ts, "accrual start")?,
                to_ts: from_sql_u64(to_ts, "accrual end")?,
                supplied: units("supplied", &s)?,
                borrowed: units("borrowed", &b)?,
                rates: ReserveRates {
                    liquidity: ray("liquidity_rate", &lr)?,
                    variable_borrow: ray("borrow_rate", &br)?,
                },
                supply_interest: units("supply_interest", &si)?,
                borrow_interest: units("borrow_interest", &bi)?,
            });
        }
        Ok(out)
    }

    /// The booked paper Aave fills on `network`, oldest first: (asset, ts, kind, amount).
    pub fn paper_aave_fills(
        &self,
        network: Network,
    ) -> Result<Vec<(String, u64, String, u128)>, StoreError> {
        let mut stmt = self.store.conn.prepare(
            "SELECT asset, ts, kind, amount FROM paper_aave_fills
             WHERE agent = ?1 AND network = ?2 ORDER BY id",
        )?;
        let rows = stmt.query_map(params![self.agent.as_str(), network.as_str()], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (asset, ts, kind, amount) = row?;
            out.push((
                asset,
                from_sql_u64(ts, "paper Aave fill timestamp")?,
                kind,
                units("amount", &amount)?,
            ));
        }
        Ok(out)
    }
}

fn units(what: &str, text: &str) -> Result<u128, StoreError> {
    text.parse()
        .map_err(|_| StoreError::Corrupt(format!("paper Aave {what} is {text:?}")))
}

fn ray(what: &str, text: &str) -> Result<U256, StoreError> {
    text.parse()
        .map_err(|_| StoreError::Corrupt(format!("paper Aave {what} is {text:?}")))
}

fn position_in(
    conn: &rusqlite::Connection,
    agent: &str,
    network: Network,
    asset: AssetSymbol,
) -> Result<Option<PaperAavePosition>, StoreError> {
    let row: Option<([String; 4], i64)> = conn
        .query_row(
            "SELECT supplied, borrowed, supply_interest, borrow_interest, accrued_at
             FROM paper_aave_positions WHERE agent = ?1 AND network = ?2 AND asset = ?3",
            params![agent, network.as_str(), asset.as_str()],
            |r| Ok(([r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?], r.get(4)?)),
        )
        .optional()?;
    row.map(|(texts, at)| parse_position(&texts, at))
        .transpose()
}

fn book_in(
    conn: &rusqlite::Connection,
    agent: &str,
    network: Network,
) -> Result<Vec<(String, PaperAavePosition)>, StoreError> {
    let mut stmt = conn.prepare(
        "SELECT asset, supplied, borrowed, supply_interest, borrow_interest, accrued_at
         FROM paper_aave_positions WHERE agent = ?1 AND network = ?2 ORDER BY asset",
    )?;
    let rows = stmt.query_map(params![agent, network.as_str()], |r| {
        Ok((
            r.get::<_, String>(0)?,
            [r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?],
            r.get::<_, i64>(5)?,
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (asset, texts, at): (String, [String; 4], i64) = row?;
        out.push((asset, parse_position(&texts, at)?));
    }
    Ok(out)
}

fn parse_position(texts: &[String; 4], at: i64) -> Result<PaperAavePosition, StoreError> {
    Ok(PaperAavePosition {
        supplied: units("supplied", &texts[0])?,
        borrowed: units("borrowed", &texts[1])?,
        supply_interest: units("supply_interest", &texts[2])?,
        borrow_interest: units("borrow_interest", &texts[3])?,
        accrued_at: from_sql_u64(at, "accrued_at")?,
    })
}

fn write_position(
    conn: &rusqlite::Connection,
    agent: &str,
    network: Network,
    asset: AssetSymbol,
    p: &PaperAavePosition,
) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO paper_aave_positions (agent, network, asset, supplied, borrowed,
             supply_interest, borrow_interest, accrued_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
         ON CONFLICT(agent, network, asset) DO UPDATE SET supplied = excluded.supplied,
             borrowed = excluded.borrowed, supply_interest = excluded.supply_interest,
             borrow_interest = excluded.borrow_interest, accrued_at = excluded.accrued_at",
        params![
            agent,
            network.as_str(),
            asset.as_str(),
            p.supplied.to_string(),
            p.borrowed.to_string(),
            p.supply_interest.to_string(),
            p.borrow_interest.to_string(),
            to_sql_ts(p.accrued_at, "accrued_at")?
        ],
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use vigil_protocol::AgentId;

    use super::*;
    use crate::store::{PaperFill, Store};

    const T0: u64 = 1_700_000_000;
    const DAY: u64 = 86_400;

    fn trader() -> AgentId {
        "trader".parse().unwrap()
    }

    fn sym(s: &str) -> AssetSymbol {
        s.parse().unwrap()
    }

    fn aave(asset: &str, kind: AaveKind, amount: u128) -> PaperAaveFill {
        PaperAaveFill {
            network: Network::Devnet,
            asset: sym(asset),
            kind,
            amount,
        }
    }

    /// A decision's batch with its paper fill and the Aave move, committed.
    fn fill(store: &Store, ts: u64, key: &str, a: &PaperAaveFill) -> Result<(), StoreError> {
        let out = matches!(a.kind, AaveKind::Supply | AaveKind::Repay);
        let amount = i128::try_from(a.amount).unwrap();
        let mut batch = store.decision_batch(&trader(), ts)?;
        batch.paper_fill_with(
            ts,
            &PaperFill {
                key,
                asset: a.asset,
                delta_base_units: if out { -amount } else { amount },
                note: "aave",
                outcome_json: "{}",
            },
            Some(a),
        )?;
        batch.commit()
    }

    /// 3 % and 5 % a year, ray.
    fn rates() -> BTreeMap<AssetSymbol, ReserveRates> {
        let pct = |p: u128| U256::from(p * RAY / 100);
        BTreeMap::from([
            (
                sym("USDC"),
                ReserveRates {
                    liquidity: pct(3),
                    variable_borrow: pct(4),
                },
            ),
            (
                sym("WETH"),
                ReserveRates {
                    liquidity: pct(1),
                    variable_borrow: pct(5),
                },
            ),
        ])
    }

    /// 1 000 USDC supplied (3 %) and 0.5 WETH borrowed (5 %) at T0, a day, then an hour. By
    /// hand (`supplied × rate × Δt / (31 536 000 × 10^27)`, supply down, debt up):
    /// day 1: 10^9 × 0.03 × 86 400 / 31 536 000 = 82 191.78… → 82 191 USDC units;
    ///        5·10^17 × 0.05 × 86 400 / 31 536 000 = 68 493 150 684 931.5… → 68 493 150 684 932;
    /// hour:  (10^9 + 82 191) × 0.03 × 3 600 / 31 536 000 = 3 424.1… → 3 424;
    ///        (5·10^17 + 68 493 150 684 932) × 0.05 × 3 600 / 31 536 000 → 2 854 272 221 180.
    #[test]
    fn paper_aave_interest_equals_the_hand_computation_and_replays_from_the_rows() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("state.sqlite");
        {
            let store = Store::open(&file).unwrap();
            fill(
                &store,
                T0,
                "s1",
                &aave("USDC", AaveKind::Supply, 1_000_000_000),
            )
            .unwrap();
            fill(
                &store,
                T0,
                "b1",
                &aave("WETH", AaveKind::Borrow, 500_000_000_000_000_000),
            )
            .unwrap();
            let a = store.agent(&trader());
            let day = a
                .accrue_paper_aave(Network::Devnet, T0 + DAY, &rates())
                .unwrap();
            assert_eq!(day.len(), 2);
            assert_eq!(
                (day[0].asset.as_str(), day[0].supply_interest),
                ("USDC", 82_191)
            );
            assert_eq!(day[0].borrow_interest, 0, "nothing owed in USDC");
            assert_eq!((day[1].asset.as_str(), day[1].supply_interest), ("WETH", 0));
            assert_eq!(day[1].borrow_interest, 68_493_150_684_932);
            // The same instant again books nothing.
            assert!(
                a.accrue_paper_aave(Network::Devnet, T0 + DAY, &rates())
                    .unwrap()
                    .is_empty()
            );
        }
        // A restart: the same file; the next hour accrues on the balances with interest.
        let store = Store::open(&file).unwrap();
        let a = store.agent(&trader());
        let hour = a
            .accrue_paper_aave(Network::Devnet, T0 + DAY + 3_600, &rates())
            .unwrap();
        assert_eq!(
            (hour[0].supply_interest, hour[1].borrow_interest),
            (3_424, 2_854_272_221_180)
        );
        let book: BTreeMap<String, PaperAavePosition> = a
            .paper_aave_book(Network::Devnet)
            .unwrap()
            .into_iter()
            .collect();
        assert_eq!(book["USDC"].supplied, 1_000_000_000 + 82_191 + 3_424);
        assert_eq!(book["USDC"].supply_interest, 82_191 + 3_424);
        assert_eq!(
            book["WETH"].borrowed,
            500_000_000_000_000_000 + 68_493_150_684_932 + 2_854_272_221_180
        );
        assert_eq!(book["WETH"].accrued_at, T0 + DAY + 3_600);

        // Every figure again from the stored rows alone: each row's interest is the formula
        // of its own balances, rates and interval, and the book is the fills plus the rows.
        let rows = a.paper_aave_interest(Network::Devnet).unwrap();
        assert_eq!(rows.len(), 4);
        let mut replay: BTreeMap<String, (u128, u128)> = BTreeMap::new();
        for (asset, _, kind, amount) in a.paper_aave_fills(Network::Devnet).unwrap() {
            let e = replay.entry(asset).or_default();
            match kind.as_str() {
                "supply" => e.0 += amount,
                "borrow" => e.1 += amount,
                other => panic!("unexpected {other}"),
            }
        }
        for r in &rows {
            let dt = r.to_ts - r.from_ts;
            assert_eq!(
                linear_interest(r.supplied, r.rates.liquidity, dt, false),
                Some(r.supply_interest)
            );
            assert_eq!(
                linear_interest(r.borrowed, r.rates.variable_borrow, dt, true),
                Some(r.borrow_interest)
            );
            let e = replay.get_mut(&r.asset).unwrap();
            assert_eq!(
                (e.0, e.1),
                (r.supplied, r.borrowed),
                "rows chain on the balances"
            );
            e.0 += r.supply_interest;
            e.1 += r.borrow_interest;
        }
        for (asset, p) in &book {
            assert_eq!(replay[asset], (p.supplied, p.borrowed), "{asset}");
        }
    }

    #[test]
    fn the_book_cannot_go_negative_and_books_in_one_commit_with_the_fill() {
        let store = Store::open_in_memory().unwrap();
        fill(&store, T0, "s1", &aave("USDC", AaveKind::Supply, 100)).unwrap();
        let count = |table: &str| -> i64 {
            store
                .conn
                .query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |r| r.get(0))
                .unwrap()
        };
        assert_eq!(
            [
                count("paper_fills"),
                count("executions"),
                count("paper_aave_fills")
            ],
            [1, 1, 1],
            "the wallet fill, its claim and the book's move: one commit"
        );
        let a = store.agent(&trader());
        assert_eq!(a.paper_position(sym("USDC")).unwrap(), -100);

        // More than supplied, and a repay of nothing owed: refused, naming what was wrong.
        for (key, f, held) in [
            (
                "w1",
                aave("USDC", AaveKind::Withdraw, 101),
                "100 base units supplied",
            ),
            ("r1", aave("USDC", AaveKind::Repay, 1), "0 base units owed"),
            (
                "w2",
                aave("WETH", AaveKind::Withdraw, 1),
                "0 base units supplied",
            ),
        ] {
            let err = fill(&store, T0 + 1, key, &f).unwrap_err();
            let text = err.to_string();
            assert!(matches!(err, StoreError::InvalidInput { .. }), "{err:?}");
            assert!(
                text.contains(held) && text.contains("cannot go negative"),
                "{text}"
            );
            assert!(
                store.claim_execution(key, T0 + 2).unwrap(),
                "a refused fill leaves no claim"
            );
        }
        assert_eq!(
            [count("paper_fills"), count("paper_aave_fills")],
            [1, 1],
            "nothing of a refused fill is written"
        );
        assert_eq!(a.paper_position(sym("USDC")).unwrap(), -100);

        // A batch dropped before its commit moves nothing; exactly what is supplied passes.
        {
            let mut batch = store.decision_batch(&trader(), T0 + 3).unwrap();
            batch
                .paper_fill_with(
                    T0 + 3,
                    &PaperFill {
                        key: "w3",
                        asset: sym("USDC"),
                        delta_base_units: 100,
                        note: "aave",
                        outcome_json: "{}",
                    },
                    Some(&aave("USDC", AaveKind::Withdraw, 100)),
                )
                .unwrap();
        }
        let book = a.paper_aave_book(Network::Devnet).unwrap();
        assert_eq!(book[0].1.supplied, 100);
        fill(&store, T0 + 4, "w4", &aave("USDC", AaveKind::Withdraw, 100)).unwrap();
        let book = a.paper_aave_book(Network::Devnet).unwrap();
        assert_eq!((book[0].1.supplied, book[0].1.borrowed), (0, 0));
        assert_eq!(a.paper_position(sym("USDC")).unwrap(), 0);

        // An empty position accrues nothing and a rate not read this tick waits.
        assert!(
            a.accrue_paper_aave(Network::Devnet, T0 + DAY, &rates())
                .unwrap()
                .is_empty()
        );
        fill(
            &store,
            T0 + DAY,
            "s2",
            &aave("USDC", AaveKind::Supply, 1_000),
        )
        .unwrap();
        assert!(
            a.accrue_paper_aave(Network::Devnet, T0 + 2 * DAY, &BTreeMap::new())
                .unwrap()
                .is_empty()
        );
        let at = a.paper_aave_book(Network::Devnet).unwrap()[0].1.accrued_at;
        assert_eq!(at, T0 + DAY, "the interval waits for a rate");

        // A paper action approved with the operator's code: the wallet and the book in one
        // transaction, and a refused one writes neither.
        let wallet_before = a.paper_position(sym("WETH")).unwrap();
        let err = a
            .record_paper_aave_fill(
                T0 + DAY,
                "p-approved-1",
                (sym("WETH"), 5),
                &aave("WETH", AaveKind::Withdraw, 5),
                "approved",
            )
            .unwrap_err();
        assert!(err.to_string().contains("cannot go negative"), "{err}");
        assert_eq!(a.paper_position(sym("WETH")).unwrap(), wallet_before);
        a.record_paper_aave_fill(
            T0 + DAY,
            "p-approved-2",
            (sym("WETH"), 5),
            &aave("WETH", AaveKind::Borrow, 5),
            "approved",
        )
        .unwrap();
        assert_eq!(a.paper_position(sym("WETH")).unwrap(), wallet_before + 5);
        let weth = a.paper_aave_book(Network::Devnet).unwrap();
        assert_eq!(
            weth.iter().find(|(s, _)| s == "WETH").unwrap().1.borrowed,
            5
        );
    }
}
