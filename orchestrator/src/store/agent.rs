//! One agent's own state: its decision log, its memory, its paper fills and positions.
//!
//! [`AgentStore`] is the only way to reach these tables. It is bound to one agent at
//! construction and every statement it runs has `agent = ?` bound to that id, so code
//! holding the view for `trader` cannot read or write `sentinel`'s rows.

use rusqlite::{OptionalExtension, Row, params};
use vigil_protocol::{AgentId, AssetSymbol};

use super::{Store, StoreError, from_sql_u64, is_unique_violation, migrations, to_sql_ts};

/// Replies longer than this many bytes are stored cut (at a character boundary) and flagged.
pub(super) const MAX_REPLY_BYTES: usize = 16 * 1024;
/// Memory entries longer than this many bytes are stored cut at a character boundary.
pub(super) const MAX_MEMORY_BYTES: usize = 4 * 1024;

/// What became of a decision.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecisionOutcome {
    /// Passed every layer (and is about to run or ran live).
    Allowed,
    /// The agent holds: its choice, an invalid reply, a provider failure, the cost cap.
    Held,
    /// A firewall layer refused it (see `layer` and `rule`).
    Refused,
    /// Paper mode: a simulated fill was recorded.
    PaperFilled,
    /// Live mode: the signer signed it.
    Signed,
}

impl DecisionOutcome {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            DecisionOutcome::Allowed => "allowed",
            DecisionOutcome::Held => "held",
            DecisionOutcome::Refused => "refused",
            DecisionOutcome::PaperFilled => "paper_filled",
            DecisionOutcome::Signed => "signed",
        }
    }

    fn parse(s: &str) -> Result<Self, StoreError> {
        Ok(match s {
            "allowed" => DecisionOutcome::Allowed,
            "held" => DecisionOutcome::Held,
            "refused" => DecisionOutcome::Refused,
            "paper_filled" => DecisionOutcome::PaperFilled,
            "signed" => DecisionOutcome::Signed,
            other => return Err(StoreError::Corrupt(format!("decision outcome {other:?}"))),
        })
    }
}

/// The firewall layer that decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layer {
    /// Layer 1: the strict reply schema.
    Schema = 1,
    /// Layer 2: the agent's risk profile.
    RiskProfile = 2,
    /// Layer 3: the signer's policy.
    Signer = 3,
}

impl Layer {
    fn from_sql(v: i64) -> Result<Self, StoreError> {
        Ok(match v {
            1 => Layer::Schema,
            2 => Layer::RiskProfile,
            3 => Layer::Signer,
            other => return Err(StoreError::Corrupt(format!("decision layer {other}"))),
        })
    }
}

/// A decision to append to an agent's log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewDecision {
    /// When (Unix seconds).
    pub ts: u64,
    /// A digest of the prompt sent (e.g. hex SHA-256), not the prompt itself.
    pub prompt_digest: String,
    /// The model's raw reply; cut to [`MAX_REPLY_BYTES`].
    pub reply: String,
    /// The reply as parsed by layer 1, if it parsed.
    pub parsed_json: Option<String>,
    /// What became of it.
    pub outcome: DecisionOutcome,
    /// The layer that refused or allowed it, if one did.
    pub layer: Option<Layer>,
    /// The rule that decided (a `vigil_protocol::Rule` wire name or a layer-2 rule).
    pub rule: Option<String>,
    /// The key of the action it led to; unique across all decisions.
    pub idempotency_key: Option<String>,
}

/// A decision as stored: what was recorded, with its row id and agent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DecisionRow {
    /// Row id, increasing with time of insertion.
    pub id: i64,
    /// Whose decision.
    pub agent: AgentId,
    /// The decision as recorded; its `reply` is the stored one (maybe cut).
    pub decision: NewDecision,
    /// Whether `decision.reply` was cut to [`MAX_REPLY_BYTES`].
    pub reply_truncated: bool,
}

/// A simulated fill as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PaperFillRow {
    /// When (Unix seconds).
    pub ts: u64,
    /// The asset (e.g. `SOL`).
    pub asset: AssetSymbol,
    /// Signed change in base units.
    pub delta_base_units: i128,
    /// Free text (the decision it came from, the simulated price).
    pub note: String,
}

/// The state of one agent, and nothing of any other agent.
#[derive(Debug)]
pub struct AgentStore<'s> {
    pub(super) store: &'s Store,
    pub(super) agent: AgentId,
}

impl<'s> AgentStore<'s> {
    pub(super) fn new(store: &'s Store, agent: AgentId) -> Self {
        AgentStore { store, agent }
    }

    /// The agent this view is bound to.
    pub fn id(&self) -> &AgentId {
        &self.agent
    }

    /// Appends a decision; returns its row id. A reused idempotency key is refused with
    /// [`StoreError::DuplicateIdempotencyKey`].
    pub fn record_decision(&self, d: &NewDecision) -> Result<i64, StoreError> {
        let tx = migrations::begin_immediate(&self.store.conn)?;
        self.store.ensure_agent(self.agent.as_str(), d.ts)?;
        let id = self.insert_decision(&tx, d)?;
        tx.commit()?;
        Ok(id)
    }

    /// The decision's row, inside the caller's transaction.
    pub(super) fn insert_decision(
        &self,
        conn: &rusqlite::Connection,
        d: &NewDecision,
    ) -> Result<i64, StoreError> {
        let (reply, truncated) = cut_utf8(&d.reply, MAX_REPLY_BYTES);
        let ts = to_sql_ts(d.ts, "decision timestamp")?;
        let inserted = conn
            .prepare_cached(
                "INSERT INTO decisions (agent, ts, prompt_digest, reply, reply_truncated,
                                    parsed_json, outcome, layer, rule, idempotency_key)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
            )?
            .execute(params![
                self.agent.as_str(),
                ts,
                d.prompt_digest,
                reply,
                truncated,
                d.parsed_json,
                d.outcome.as_str(),
                d.layer.map(|l| l as i64),
                d.rule,
                d.idempotency_key,
            ]);
        match inserted {
            Ok(_) => Ok(conn.last_insert_rowid()),
            Err(e) if is_unique_violation(&e) => Err(StoreError::DuplicateIdempotencyKey(
                d.idempotency_key.clone().unwrap_or_default(),
            )),
            Err(e) => Err(e.into()),
        }
    }

    /// This agent's latest `limit` decisions, newest first.
    pub fn decisions(&self, limit: u32) -> Result<Vec<DecisionRow>, StoreError> {
        let mut stmt = self.store.conn.prepare(
            "SELECT id, ts, prompt_digest, reply, reply_truncated, parsed_json, outcome,
                    layer, rule, idempotency_key
             FROM decisions WHERE agent = ?1 ORDER BY id DESC LIMIT ?2",
        )?;
        let mut rows = stmt.query(params![self.agent.as_str(), limit])?;
        let mut out = Vec::new();
        while let Some(row) = rows.next()? {
            out.push(self.decision_row(row)?);
        }
        Ok(out)
    }

    /// Appends a line to the agent's memory (cut to [`MAX_MEMORY_BYTES`]).
    pub fn append_memory(&self, ts: u64, text: &str) -> Result<(), StoreError> {
        let tx = migrations::begin_immediate(&self.store.conn)?;
        self.store.ensure_agent(self.agent.as_str(), ts)?;
        self.insert_memory(&tx, ts, text)?;
        tx.commit()?;
        Ok(())
    }

    /// The memory line, inside the caller's transaction.
    pub(super) fn insert_memory(
        &self,
        conn: &rusqlite::Connection,
        ts: u64,
        text: &str,
    ) -> Result<(), StoreError> {
        let (text, _) = cut_utf8(text, MAX_MEMORY_BYTES);
        let sql_ts = to_sql_ts(ts, "memory timestamp")?;
        conn.prepare_cached("INSERT INTO memory (agent, ts, text) VALUES (?1, ?2, ?3)")?
            .execute(params![self.agent.as_str(), sql_ts, text])?;
        Ok(())
    }

    /// The agent's latest `limit` memory entries, oldest first (ready to go into a prompt).
    pub fn memory(&self, limit: u32) -> Result<Vec<String>, StoreError> {
        let mut stmt = self.store.conn.prepare(
            "SELECT text FROM (SELECT id, text FROM memory WHERE agent = ?1
                               ORDER BY id DESC LIMIT ?2)
             ORDER BY id ASC",
        )?;
        let out = stmt
            .query_map(params![self.agent.as_str(), limit], |r| r.get(0))?
            .collect::<Result<Vec<String>, _>>()?;
        Ok(out)
    }

    /// Records a simulated fill and moves the agent's paper position in `asset` by
    /// `delta_base_units`, in one transaction. An overflow records nothing.
    pub fn record_paper_fill(
        &self,
        ts: u64,
        asset: AssetSymbol,
        delta_base_units: i128,
        note: &str,
    ) -> Result<(), StoreError> {
        let tx = migrations::begin_immediate(&self.store.conn)?;
        self.store.ensure_agent(self.agent.as_str(), ts)?;
        self.apply_paper_fill(&tx, ts, asset, delta_base_units, note)?;
        tx.commit()?;
        Ok(())
    }

    /// The fill and the position it moves, inside the caller's transaction; an overflow
    /// writes nothing.
    pub(super) fn apply_paper_fill(
        &self,
        conn: &rusqlite::Connection,
        ts: u64,
        asset: AssetSymbol,
        delta_base_units: i128,
        note: &str,
    ) -> Result<(), StoreError> {
        let sql_ts = to_sql_ts(ts, "paper fill timestamp")?;
        let current = self.position_in(conn, asset)?;
        let next =
            current
                .checked_add(delta_base_units)
                .ok_or_else(|| StoreError::PositionOverflow {
                    agent: self.agent.to_string(),
                    asset: asset.to_string(),
                })?;
        conn.prepare_cached(
            "INSERT INTO paper_fills (agent, ts, asset, delta, note) VALUES (?1, ?2, ?3, ?4, ?5)",
        )?
        .execute(params![
            self.agent.as_str(),
            sql_ts,
            asset.as_str(),
            delta_base_units.to_string(),
            note
        ])?;
        conn.prepare_cached(
            "INSERT INTO paper_positions (agent, asset, position) VALUES (?1, ?2, ?3)
             ON CONFLICT(agent, asset) DO UPDATE SET position = excluded.position",
        )?
        .execute(params![
            self.agent.as_str(),
            asset.as_str(),
            next.to_string()
        ])?;
        Ok(())
    }

    /// The agent's paper position in `asset` (base units, 0 if it never traded it).
    pub fn paper_position(&self, asset: AssetSymbol) -> Result<i128, StoreError> {
        self.position_in(&self.store.conn, asset)
    }

    /// All of the agent's paper positions, by asset name.
    pub fn paper_positions(&self) -> Result<Vec<(AssetSymbol, i128)>, StoreError> {
        let mut stmt = self.store.conn.prepare(
            "SELECT asset, position FROM paper_positions WHERE agent = ?1 ORDER BY asset",
        )?;
        let mut rows = stmt.query([self.agent.as_str()])?;
        let mut out = Vec::new();
        while let Some(row) = rows.next()? {
            let asset = parse_asset(&row.get::<_, String>(0)?)?;
            let pos = parse_i128(&row.get::<_, String>(1)?, "paper position")?;
            out.push((asset, pos));
        }
        Ok(out)
    }

    /// The agent's latest `limit` paper fills, newest first.
    pub fn paper_fills(&self, limit: u32) -> Result<Vec<PaperFillRow>, StoreError> {
        let mut stmt = self.store.conn.prepare(
            "SELECT ts, asset, delta, note FROM paper_fills WHERE agent = ?1
             ORDER BY id DESC LIMIT ?2",
        )?;
        let mut rows = stmt.query(params![self.agent.as_str(), limit])?;
        let mut out = Vec::new();
        while let Some(row) = rows.next()? {
            out.push(PaperFillRow {
                ts: from_sql_u64(row.get(0)?, "paper fill timestamp")?,
                asset: parse_asset(&row.get::<_, String>(1)?)?,
                delta_base_units: parse_i128(&row.get::<_, String>(2)?, "paper fill delta")?,
                note: row.get(3)?,
            });
        }
        Ok(out)
    }

    fn position_in(
        &self,
        conn: &rusqlite::Connection,
        asset: AssetSymbol,
    ) -> Result<i128, StoreError> {
        let text: Option<String> = conn
            .query_row(
                "SELECT position FROM paper_positions WHERE agent = ?1 AND asset = ?2",
                params![self.agent.as_str(), asset.as_str()],
                |r| r.get(0),
            )
            .optional()?;
        match text {
            None => Ok(0),
            Some(t) => parse_i128(&t, "paper position"),
        }
    }

    fn decision_row(&self, row: &Row<'_>) -> Result<DecisionRow, StoreError> {
        Ok(DecisionRow {
            id: row.get(0)?,
            agent: self.agent.clone(),
            decision: NewDecision {
                ts: from_sql_u64(row.get(1)?, "decision timestamp")?,
                prompt_digest: row.get(2)?,
                reply: row.get(3)?,
                parsed_json: row.get(5)?,
                outcome: DecisionOutcome::parse(&row.get::<_, String>(6)?)?,
                layer: row
                    .get::<_, Option<i64>>(7)?
                    .map(Layer::from_sql)
                    .transpose()?,
                rule: row.get(8)?,
                idempotency_key: row.get(9)?,
            },
            reply_truncated: row.get(4)?,
        })
    }
}

/// The longest prefix of `s` of at most `max` bytes that ends on a character boundary,
/// and whether anything was cut.
fn cut_utf8(s: &str, max: usize) -> (&str, bool) {
    if s.len() <= max {
        return (s, false);
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    (&s[..end], true)
}

/// A stored asset symbol; one that does not parse is corruption (only symbols are written).
fn parse_asset(text: &str) -> Result<AssetSymbol, StoreError> {
    text.parse()
        .map_err(|e| StoreError::Corrupt(format!("paper asset: {e}")))
}

fn parse_i128(text: &str, what: &str) -> Result<i128, StoreError> {
    text.parse()
        .map_err(|_| StoreError::Corrupt(format!("{what} {text:?} is not an integer")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sym(s: &str) -> AssetSymbol {
        s.parse().unwrap()
    }

    fn id(s: &str) -> AgentId {
        AgentId::try_from(s.to_string()).unwrap()
    }

    fn decision(ts: u64, reply: &str, key: Option<&str>) -> NewDecision {
        NewDecision {
            ts,
            prompt_digest: format!("digest-{ts}"),
            reply: reply.into(),
            parsed_json: Some(r#"{"action":"hold"}"#.into()),
            outcome: DecisionOutcome::Refused,
            layer: Some(Layer::RiskProfile),
            rule: Some("peer_allowlist".into()),
            idempotency_key: key.map(str::to_owned),
        }
    }

    #[test]
    fn decisions_round_trip_newest_first() {
        let s = Store::open_in_memory().unwrap();
        let a = s.agent(&id("trader"));
        let first = a.record_decision(&decision(10, "one", Some("k1"))).unwrap();
        let second = a.record_decision(&decision(20, "two", None)).unwrap();
        assert!(second > first);
        let rows = a.decisions(10).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].decision.reply, "two");
        assert_eq!(rows[1].decision.reply, "one");
        assert_eq!(rows[1].decision.idempotency_key.as_deref(), Some("k1"));
        assert_eq!(rows[1].decision.layer, Some(Layer::RiskProfile));
        assert_eq!(rows[1].decision.outcome, DecisionOutcome::Refused);
        assert_eq!(rows[1].agent, id("trader"));
        assert_eq!(a.decisions(1).unwrap().len(), 1);
    }

    #[test]
    fn every_outcome_and_layer_round_trips() {
        let s = Store::open_in_memory().unwrap();
        let a = s.agent(&id("sentinel"));
        let outcomes = [
            DecisionOutcome::Allowed,
            DecisionOutcome::Held,
            DecisionOutcome::Refused,
            DecisionOutcome::PaperFilled,
            DecisionOutcome::Signed,
        ];
        let layers = [
            None,
            Some(Layer::Schema),
            Some(Layer::RiskProfile),
            Some(Layer::Signer),
        ];
        for (i, outcome) in outcomes.iter().enumerate() {
            let mut d = decision(1, "r", None);
            d.outcome = *outcome;
            d.layer = layers[i % layers.len()];
            a.record_decision(&d).unwrap();
        }
        let rows = a.decisions(100).unwrap();
        for (i, row) in rows.iter().rev().enumerate() {
            assert_eq!(row.decision.outcome, outcomes[i]);
            assert_eq!(row.decision.layer, layers[i % layers.len()]);
        }
    }

    #[test]
    fn a_reused_decision_key_is_refused_across_agents() {
        let s = Store::open_in_memory().unwrap();
        s.agent(&id("a"))
            .record_decision(&decision(1, "x", Some("same")))
            .unwrap();
        let err = s
            .agent(&id("b"))
            .record_decision(&decision(2, "y", Some("same")))
            .unwrap_err();
        assert!(matches!(err, StoreError::DuplicateIdempotencyKey(k) if k == "same"));
        assert!(s.agent(&id("b")).decisions(10).unwrap().is_empty());
    }

    #[test]
    fn long_replies_are_cut_on_a_char_boundary_and_flagged() {
        let s = Store::open_in_memory().unwrap();
        let a = s.agent(&id("x"));
        // 'é' is two bytes: an odd cap would split one without the boundary check.
        let long = "é".repeat(MAX_REPLY_BYTES);
        a.record_decision(&decision(1, &long, None)).unwrap();
        a.record_decision(&decision(2, "short", None)).unwrap();
        let rows = a.decisions(2).unwrap();
        assert!(!rows[0].reply_truncated);
        assert!(rows[1].reply_truncated);
        assert!(rows[1].decision.reply.len() <= MAX_REPLY_BYTES);
        assert!(rows[1].decision.reply.chars().all(|c| c == 'é'));
        assert_eq!(cut_utf8("aé", 2), ("a", true));
    }

    #[test]
    fn memory_returns_the_latest_entries_oldest_first() {
        let s = Store::open_in_memory().unwrap();
        let a = s.agent(&id("m"));
        for i in 0..5 {
            a.append_memory(i, &format!("note {i}")).unwrap();
        }
        assert_eq!(a.memory(3).unwrap(), ["note 2", "note 3", "note 4"]);
        assert_eq!(a.memory(0).unwrap(), Vec::<String>::new());
    }

    #[test]
    fn paper_positions_add_up_and_extreme_values_round_trip() {
        let s = Store::open_in_memory().unwrap();
        let a = s.agent(&id("p"));
        assert_eq!(a.paper_position(sym("SOL")).unwrap(), 0);
        a.record_paper_fill(1, sym("SOL"), 500, "buy").unwrap();
        a.record_paper_fill(2, sym("SOL"), -200, "sell").unwrap();
        assert_eq!(a.paper_position(sym("SOL")).unwrap(), 300);

        let big = i128::MAX - 7;
        a.record_paper_fill(3, sym("BIG"), big, "huge").unwrap();
        assert_eq!(a.paper_position(sym("BIG")).unwrap(), big);
        a.record_paper_fill(4, sym("NEG"), i128::MIN, "min")
            .unwrap();
        assert_eq!(a.paper_position(sym("NEG")).unwrap(), i128::MIN);

        let fills = a.paper_fills(10).unwrap();
        assert_eq!(fills[0].delta_base_units, i128::MIN);
        assert_eq!(fills[1].delta_base_units, big);
        assert_eq!(
            a.paper_positions().unwrap(),
            [
                (sym("BIG"), big),
                (sym("NEG"), i128::MIN),
                (sym("SOL"), 300)
            ]
        );
    }

    #[test]
    fn an_overflowing_fill_records_nothing() {
        let s = Store::open_in_memory().unwrap();
        let a = s.agent(&id("p"));
        a.record_paper_fill(1, sym("SOL"), i128::MAX, "max")
            .unwrap();
        let err = a
            .record_paper_fill(2, sym("SOL"), 1, "one more")
            .unwrap_err();
        assert!(matches!(err, StoreError::PositionOverflow { .. }));
        assert_eq!(a.paper_position(sym("SOL")).unwrap(), i128::MAX);
        assert_eq!(a.paper_fills(10).unwrap().len(), 1);
    }

    #[test]
    fn bad_timestamps_are_refused() {
        let s = Store::open_in_memory().unwrap();
        let a = s.agent(&id("p"));
        assert!(matches!(
            a.record_paper_fill(u64::MAX, sym("SOL"), 1, "n"),
            Err(StoreError::InvalidInput { .. })
        ));
        assert!(matches!(
            a.append_memory(u64::MAX, "t"),
            Err(StoreError::InvalidInput { .. })
        ));
    }
}
