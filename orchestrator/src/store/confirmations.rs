//! Operator confirmations: an action that needs the operator waits here until it
//! is approved, denied or expires. Rows survive restarts; each is resolved at most once.
//!
//! A confirmation is `open` until `expires_at` (exclusive: at `now >= expires_at` it is
//! expired). Resolution runs in a `BEGIN IMMEDIATE` transaction, so two operators pressing
//! "Yes" at once, or two processes, get one success and one `ConfirmationAlreadyResolved`.
//!
//! Names: a *confirmation* is what waits here for the operator (Yes/No, or the phrase and a
//! code, or a code for a signer approval); an *approval* is the signer's own request that
//! waits for the operator's code. The table keeps its first name, `pending_confirmations`.

use std::fmt;
use std::str::FromStr;

use rusqlite::{OptionalExtension, Row, params};
use vigil_protocol::{AgentId, IdempotencyKey};

use super::{Store, StoreError, from_sql_u64, is_unique_violation, migrations, to_sql_ts};

/// The longest summary the store accepts, in characters (one line in a chat message).
pub(crate) const MAX_SUMMARY_CHARS: usize = 300;

/// A confirmation's id (the row id; shown to the operator, e.g. `/approve 12`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConfirmationId(pub i64);

impl fmt::Display for ConfirmationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl FromStr for ConfirmationId {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        s.parse::<i64>()
            .ok()
            .filter(|v| *v > 0)
            .map(ConfirmationId)
            .ok_or_else(|| {
                format!(
                    "{:?} is not a confirmation id: use the number shown with the request",
                    vigil_protocol::truncate(s)
                )
            })
    }
}

/// What the operator is asked to confirm (issue 5, "Confirmation gates").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConfirmationKind {
    /// An action that moves funds.
    MoveFunds,
    /// Sending a message on the operator's behalf.
    SendMessage,
    /// Posting publicly.
    PostPublic,
    /// Writing a file.
    WriteFile,
    /// The signer answered `needs_approval` (or a paper action reached the threshold): the
    /// operator answers in the approver's chat; the orchestrator follows the signer's status.
    SignerApproval,
    /// Phrase confirmation: taking an agent or asset live.
    GoLive,
    /// Phrase confirmation: lifting a cap within the signed ceiling.
    SetCap,
    /// Phrase confirmation: anything the config marks destructive.
    Destructive,
    /// A key-ceremony stick staged on the appliance (rows of releases before issue 14: the
    /// approver now shows a staged import itself, and nothing new is recorded as this kind).
    ImportKeys,
    /// A change to what the orchestrator runs (a rollback; later a configuration or a
    /// proposal), waiting at the signer for the operator's code bound to its digest.
    ApplyChange,
}

impl ConfirmationKind {
    const ALL: [ConfirmationKind; 10] = [
        ConfirmationKind::MoveFunds,
        ConfirmationKind::SendMessage,
        ConfirmationKind::PostPublic,
        ConfirmationKind::WriteFile,
        ConfirmationKind::SignerApproval,
        ConfirmationKind::GoLive,
        ConfirmationKind::SetCap,
        ConfirmationKind::Destructive,
        ConfirmationKind::ImportKeys,
        ConfirmationKind::ApplyChange,
    ];

    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            ConfirmationKind::MoveFunds => "move_funds",
            ConfirmationKind::SendMessage => "send_message",
            ConfirmationKind::PostPublic => "post_public",
            ConfirmationKind::WriteFile => "write_file",
            ConfirmationKind::SignerApproval => "signer_approval",
            ConfirmationKind::GoLive => "go_live",
            ConfirmationKind::SetCap => "raise_cap",
            ConfirmationKind::Destructive => "destructive",
            ConfirmationKind::ImportKeys => "import_keys",
            ConfirmationKind::ApplyChange => "apply_change",
        }
    }

    /// Whether the operator must type the exact phrase (and then a code) to approve.
    pub fn needs_phrase(self) -> bool {
        matches!(
            self,
            ConfirmationKind::GoLive | ConfirmationKind::SetCap | ConfirmationKind::Destructive
        )
    }

    fn parse(s: &str) -> Result<Self, StoreError> {
        Self::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| StoreError::Corrupt(format!("confirmation kind {s:?}")))
    }
}

/// How the operator answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resolution {
    /// Yes.
    Approved,
    /// No.
    Denied,
}

impl fmt::Display for Resolution {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Resolution::Approved => "approved",
            Resolution::Denied => "denied",
        })
    }
}

/// Where a confirmation stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConfirmationStatus {
    /// Waiting for the operator (unless past `expires_at`).
    Open,
    /// Approved by the operator.
    Approved,
    /// Denied by the operator.
    Denied,
    /// Expired unanswered.
    Expired,
}

impl ConfirmationStatus {
    fn as_str(self) -> &'static str {
        match self {
            ConfirmationStatus::Open => "open",
            ConfirmationStatus::Approved => "approved",
            ConfirmationStatus::Denied => "denied",
            ConfirmationStatus::Expired => "expired",
        }
    }

    fn parse(s: &str) -> Result<Self, StoreError> {
        Ok(match s {
            "open" => ConfirmationStatus::Open,
            "approved" => ConfirmationStatus::Approved,
            "denied" => ConfirmationStatus::Denied,
            "expired" => ConfirmationStatus::Expired,
            other => {
                return Err(StoreError::Corrupt(format!(
                    "confirmation status {other:?}"
                )));
            }
        })
    }
}

/// A confirmation to ask the operator for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewConfirmation {
    /// What kind of action.
    pub kind: ConfirmationKind,
    /// The agent it is for, if any.
    pub agent: Option<AgentId>,
    /// One line shown to the operator ("send 0.5 SOL to 7xKX…q2 for trader — approve?").
    pub summary: String,
    /// Everything needed to run the action once approved (JSON).
    pub payload_json: String,
    /// The action's idempotency key (unique; the same key is later claimed for execution).
    pub idempotency_key: String,
    /// When it was created (Unix seconds).
    pub created_at: u64,
    /// When it expires (Unix seconds, after `created_at`).
    pub expires_at: u64,
}

/// A confirmation as stored: what was asked, its id, and where it stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfirmationRow {
    /// Its id.
    pub id: ConfirmationId,
    /// What the operator is asked, as it was recorded.
    pub confirmation: NewConfirmation,
    /// Where it stands.
    pub status: ConfirmationStatus,
    /// The Telegram user id of the operator who answered.
    pub resolved_by: Option<i64>,
    /// When it was answered or marked expired.
    pub resolved_at: Option<u64>,
    /// The random value its Yes/No buttons carry (32 hex digits): a press is matched against
    /// it, not only against the row number, which a database restore can give another item.
    pub button_token: String,
}

const COLUMNS: &str = "id, kind, agent, summary, payload_json, idempotency_key, created_at, \
                       expires_at, status, resolved_by, resolved_at, button_token";

impl Store {
    /// Records a confirmation to ask for. The summary must be one line of at most
    /// [`MAX_SUMMARY_CHARS`] characters, the payload valid JSON, the key a valid
    /// idempotency key never used by another confirmation.
    pub fn create_confirmation(&self, p: &NewConfirmation) -> Result<ConfirmationId, StoreError> {
        check_summary(&p.summary)?;
        serde_json::from_str::<serde::de::IgnoredAny>(&p.payload_json).map_err(|e| {
            StoreError::InvalidInput {
                what: "confirmation payload",
                why: format!("not JSON: {e}"),
            }
        })?;
        check_key(&p.idempotency_key)?;
        if p.expires_at <= p.created_at {
            return Err(StoreError::InvalidInput {
                what: "confirmation expiry",
                why: format!(
                    "expires_at {} is not after created_at {}",
                    p.expires_at, p.created_at
                ),
            });
        }
        let created = to_sql_ts(p.created_at, "confirmation created_at")?;
        let expires = to_sql_ts(p.expires_at, "confirmation expires_at")?;
        let tx = migrations::begin_immediate(&self.conn)?;
        if let Some(agent) = &p.agent {
            self.ensure_agent(agent.as_str(), p.created_at)?;
        }
        let inserted = tx.execute(
            "INSERT INTO pending_confirmations
                 (kind, agent, summary, payload_json, idempotency_key, created_at, expires_at,
                  button_token)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, lower(hex(randomblob(16))))",
            params![
                p.kind.as_str(),
                p.agent.as_ref().map(AgentId::as_str),
                p.summary,
                p.payload_json,
                p.idempotency_key,
                created,
                expires,
            ],
        );
        match inserted {
            Ok(_) => {}
            Err(e) if is_unique_violation(&e) => {
                return Err(StoreError::DuplicateIdempotencyKey(
                    p.idempotency_key.clone(),
                ));
            }
            Err(e) => return Err(e.into()),
        }
        let id = ConfirmationId(tx.last_insert_rowid());
        tx.commit()?;
        Ok(id)
    }

    /// The confirmations still open and not expired at `now`, oldest first.
    pub fn open_confirmations(&self, now: u64) -> Result<Vec<ConfirmationRow>, StoreError> {
        let now = to_sql_ts(now, "now")?;
        let mut stmt = self.conn.prepare(&format!(
            "SELECT {COLUMNS} FROM pending_confirmations
             WHERE status = 'open' AND expires_at > ?1 ORDER BY id"
        ))?;
        let mut rows = stmt.query([now])?;
        let mut out = Vec::new();
        while let Some(row) = rows.next()? {
            out.push(confirmation_row(row)?);
        }
        Ok(out)
    }

    /// Confirmations of `kind` the operator approved whose action (named by the payload's
    /// `idempotency_key`) has never been claimed for execution, nor recorded as not run:
    /// approved, then a crash before it ran. Oldest first. Whether each may still run is the
    /// caller's decision (its `expires_at`).
    pub fn approved_unexecuted(
        &self,
        kind: ConfirmationKind,
    ) -> Result<Vec<ConfirmationRow>, StoreError> {
        let mut stmt = self.conn.prepare(&format!(
            "SELECT {COLUMNS} FROM pending_confirmations p
             WHERE kind = ?1 AND status = 'approved'
               AND NOT EXISTS (SELECT 1 FROM executions e
                   WHERE e.idempotency_key = json_extract(p.payload_json, '$.idempotency_key'))
             ORDER BY id"
        ))?;
        let mut rows = stmt.query(params![kind.as_str()])?;
        let mut out = Vec::new();
        while let Some(row) = rows.next()? {
            out.push(confirmation_row(row)?);
        }
        Ok(out)
    }

    /// One confirmation by id, whatever its status.
    pub fn confirmation(&self, id: ConfirmationId) -> Result<ConfirmationRow, StoreError> {
        self.conn
            .query_row(
                &format!("SELECT {COLUMNS} FROM pending_confirmations WHERE id = ?1"),
                [id.0],
                |r| Ok(confirmation_row(r)),
            )
            .optional()?
            .ok_or(StoreError::ConfirmationNotFound(id))?
    }

    /// The confirmation created for `idempotency_key`, if any (e.g. to avoid asking twice
    /// for the same action after a restart).
    pub fn confirmation_by_key(
        &self,
        idempotency_key: &str,
    ) -> Result<Option<ConfirmationRow>, StoreError> {
        self.conn
            .query_row(
                &format!("SELECT {COLUMNS} FROM pending_confirmations WHERE idempotency_key = ?1"),
                [idempotency_key],
                |r| Ok(confirmation_row(r)),
            )
            .optional()?
            .transpose()
    }

    /// Records the operator's answer, once. A second answer is
    /// [`StoreError::ConfirmationAlreadyResolved`]; an answer at or after `expires_at` is
    /// [`StoreError::ConfirmationExpired`] (and the row is marked expired).
    pub fn resolve_confirmation(
        &self,
        id: ConfirmationId,
        resolution: Resolution,
        by_operator: i64,
        now: u64,
    ) -> Result<ConfirmationRow, StoreError> {
        let sql_now = to_sql_ts(now, "now")?;
        let tx = migrations::begin_immediate(&self.conn)?;
        let row = self.confirmation(id)?;
        match row.status {
            ConfirmationStatus::Approved => {
                return Err(StoreError::ConfirmationAlreadyResolved {
                    id,
                    resolution: Resolution::Approved,
                });
            }
            ConfirmationStatus::Denied => {
                return Err(StoreError::ConfirmationAlreadyResolved {
                    id,
                    resolution: Resolution::Denied,
                });
            }
            ConfirmationStatus::Expired => return Err(StoreError::ConfirmationExpired(id)),
            ConfirmationStatus::Open if now >= row.confirmation.expires_at => {
                tx.execute(
                    "UPDATE pending_confirmations SET status = 'expired', resolved_at = ?2
                     WHERE id = ?1",
                    params![id.0, sql_now],
                )?;
                tx.commit()?;
                return Err(StoreError::ConfirmationExpired(id));
            }
            ConfirmationStatus::Open => {}
        }
        let status = match resolution {
            Resolution::Approved => ConfirmationStatus::Approved,
            Resolution::Denied => ConfirmationStatus::Denied,
        };
        tx.execute(
            "UPDATE pending_confirmations SET status = ?2, resolved_by = ?3, resolved_at = ?4
             WHERE id = ?1 AND status = 'open'",
            params![id.0, status.as_str(), by_operator, sql_now],
        )?;
        tx.commit()?;
        Ok(ConfirmationRow {
            status,
            resolved_by: Some(by_operator),
            resolved_at: Some(now),
            ..row
        })
    }

    /// Marks every open confirmation whose `expires_at <= now` as expired; returns how many.
    /// Records, on an open confirmation, the id of the signer request that now waits for the
    /// operator's code in the approver's chat (`payload.request_id`). False if the row is no
    /// longer open.
    pub fn attach_request(&self, id: ConfirmationId, request_id: &str) -> Result<bool, StoreError> {
        let changed = self.conn.execute(
            "UPDATE pending_confirmations
             SET payload_json = json_set(payload_json, '$.request_id', ?2)
             WHERE id = ?1 AND status = 'open'",
            params![id.0, request_id],
        )?;
        Ok(changed == 1)
    }

    pub fn expire_confirmations(&self, now: u64) -> Result<usize, StoreError> {
        let now = to_sql_ts(now, "now")?;
        Ok(self.conn.execute(
            "UPDATE pending_confirmations SET status = 'expired', resolved_at = ?1
             WHERE status = 'open' AND expires_at <= ?1",
            [now],
        )?)
    }
}

fn check_summary(summary: &str) -> Result<(), StoreError> {
    let why = if summary.trim().is_empty() {
        "it is empty".to_string()
    } else if summary.chars().any(char::is_control) {
        "it must be one line without control characters".to_string()
    } else if summary.chars().count() > MAX_SUMMARY_CHARS {
        format!("it is longer than {MAX_SUMMARY_CHARS} characters")
    } else {
        return Ok(());
    };
    Err(StoreError::InvalidInput {
        what: "confirmation summary",
        why,
    })
}

/// Idempotency keys go to the signer, so they must be valid protocol keys.
pub(super) fn check_key(key: &str) -> Result<(), StoreError> {
    IdempotencyKey::try_from(key.to_owned())
        .map(|_| ())
        .map_err(|why| StoreError::InvalidInput {
            what: "idempotency key",
            why,
        })
}

fn confirmation_row(row: &Row<'_>) -> Result<ConfirmationRow, StoreError> {
    let agent = row
        .get::<_, Option<String>>(2)?
        .map(|a| {
            AgentId::try_from(a)
                .map_err(|e| StoreError::Corrupt(format!("confirmation agent: {e}")))
        })
        .transpose()?;
    Ok(ConfirmationRow {
        id: ConfirmationId(row.get(0)?),
        confirmation: NewConfirmation {
            kind: ConfirmationKind::parse(&row.get::<_, String>(1)?)?,
            agent,
            summary: row.get(3)?,
            payload_json: row.get(4)?,
            idempotency_key: row.get(5)?,
            created_at: from_sql_u64(row.get(6)?, "confirmation created_at")?,
            expires_at: from_sql_u64(row.get(7)?, "confirmation expires_at")?,
        },
        status: ConfirmationStatus::parse(&row.get::<_, String>(8)?)?,
        resolved_by: row.get(9)?,
        resolved_at: row
            .get::<_, Option<i64>>(10)?
            .map(|v| from_sql_u64(v, "confirmation resolved_at"))
            .transpose()?,
        button_token: row.get(11)?,
    })
}

#[cfg(test)]
mod tests;
