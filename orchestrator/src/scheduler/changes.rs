//! Changes to what the orchestrator runs (`docs/operations.md`, "Generations" and
//! "Rollback"): applying a new generation, asking the operator's code for a change bound to
//! its digest (`ConfirmationPurpose::ApplyChange`, through the signer and the approver), the
//! rollback that code allows, and the health check that rolls a new generation back on its
//! own. A switch takes effect by restarting the daemon on the new generation (the binary
//! re-executes itself, see `bin/vigil-orchestrator.rs`); a state restore is finished at that
//! start, before the state is opened.

use std::sync::Arc;

use serde_json::{Value, json};
use vigil_protocol::{
    ChangeDigest, ChangeKind, ChangeSummary, ConfirmationPurpose, IdempotencyKey, NewConfirmation,
    RequestCreated,
};

use super::{Orchestrator, unix_now};
use crate::config::GenerationSettings;
use crate::generations::health::{Observed, judge, judge_early, probe_interval};
use crate::generations::{self, Files, GenerationError, Generations, Health};
use crate::operator::{self, Alert};
use crate::store::{ConfirmationId, ConfirmationKind, ConfirmationRow, NewConfirmation as NewRow};

/// How long the operator has to answer an apply request (the signer bounds it too).
const APPLY_TTL_SECS: u64 = 600;

impl Orchestrator {
    /// Runs with configuration generations (the daemon sets this before it starts).
    pub fn set_generations(&mut self, generations: Generations, settings: GenerationSettings) {
        self.generations = Some((generations, settings));
    }

    /// The generations, if the config has a `[generations]` table.
    pub fn generations(&self) -> Option<&Generations> {
        self.generations.as_ref().map(|(g, _)| g)
    }

    /// Resolves once a switch of generation asked for the daemon to restart on it.
    pub async fn restart_requested(&self) {
        self.restart.notified().await;
    }

    fn request_restart(&self) {
        self.restart.notify_one();
    }

    /// Applies `files` as a new generation (the state snapshotted into it first), watched by
    /// the health check from now; the daemon then restarts on it. Its number. What the
    /// proposal flow calls once the operator's code for its digest was accepted.
    pub fn apply_generation(&self, files: &Files, reason: &str) -> Result<u32, GenerationError> {
        let Some((generations, settings)) = &self.generations else {
            return Err(GenerationError::Rollback(
                "this orchestrator runs without [generations] in its config: nothing can be applied".into(),
            ));
        };
        let now = unix_now();
        let n = generations.apply(files, reason, &self.config.state_db, now)?;
        watch_from(generations, settings, n, now)?;
        self.alert(Alert::Generation(format!(
            "generation {n} applied ({}); the orchestrator restarts on it and watches its health for {} s",
            generations::bounded_text(reason),
            settings.health_window_secs
        )));
        self.request_restart();
        Ok(n)
    }

    /// Asks the signer to put a change to the operator: `kind`, the generation that becomes
    /// current, the SHA-256 of its files and a one-line summary. The operator answers in the
    /// approver's chat with a code; [`Self::follow_operator_requests`] then runs the change
    /// recorded in `payload` (its `change` field names it). The confirmation's id and what the
    /// signer rendered.
    pub async fn request_apply(
        &self,
        kind: ChangeKind,
        generation: u32,
        digest: ChangeDigest,
        summary: ChangeSummary,
        payload: Value,
    ) -> Result<(ConfirmationId, RequestCreated), String> {
        let now = unix_now();
        let key = format!(
            "apply-{kind}-{generation}-{}-{now}",
            digest.as_str().get(..16).unwrap_or_default()
        );
        let mut payload = payload;
        payload["change"] = json!(kind.as_str());
        payload["generation"] = json!(generation);
        payload["digest"] = json!(digest.as_str());
        let row = NewRow {
            kind: ConfirmationKind::ApplyChange,
            agent: None,
            summary: summary.as_str().to_owned(),
            payload_json: payload.to_string(),
            idempotency_key: key.clone(),
            created_at: now,
            expires_at: now + APPLY_TTL_SECS,
        };
        let id = self
            .store
            .lock()
            .map_err(|_| "state unavailable".to_string())?
            .create_confirmation(&row)
            .map_err(|e| e.to_string())?;
        let idempotency_key: IdempotencyKey = format!("op-{key}")
            .parse()
            .map_err(|e: String| format!("no key for the signer ({e})"))?;
        let request = NewConfirmation {
            purpose: ConfirmationPurpose::ApplyChange {
                kind,
                generation,
                digest,
                summary,
            },
            idempotency_key,
        };
        let created = self.signer.lock().await.request_confirmation(request).await;
        let created = match created {
            Ok(created) => created,
            Err(e) => {
                let _ = self.close(id, "the signer did not take the request");
                return Err(format!("the signer did not take it: {e}"));
            }
        };
        self.store
            .lock()
            .map_err(|_| "state unavailable".to_string())?
            .attach_request(id, created.request_id.as_str())
            .map_err(|e| e.to_string())?;
        Ok((id, created))
    }

    /// `/rollback [N]`: asks for the operator's code to go back to generation `N` (default:
    /// the current one's parent); the answer for the chat.
    pub async fn ask_rollback(&self, target: Option<u32>) -> String {
        let Some((generations, _)) = &self.generations else {
            return "This orchestrator runs without [generations] in its config: there is nothing to roll back to.".into();
        };
        let planned = (|| {
            let to = match target {
                Some(n) => n,
                None => generations.default_target()?,
            };
            let plan = generations.plan_rollback(to, "rollback asked in the bot")?;
            let files = generations.files(to)?;
            let meta = generations.meta(to)?;
            Ok::<_, GenerationError>((plan, generations::digest(&files), meta))
        })();
        let (plan, digest, meta) = match planned {
            Ok(p) => p,
            Err(e) => return format!("Nothing to do: {e}."),
        };
        let summary = format!(
            "back from generation {} to {} ({}), state as before {} was applied",
            plan.from,
            plan.to,
            meta.reason,
            plan.snapshot
                .parent()
                .and_then(|p| p.file_name())
                .map_or_else(String::new, |n| n.to_string_lossy().into_owned())
        );
        let Some((digest, summary)) = change_fields(&digest, &summary) else {
            return "Nothing to do: the generation's digest or summary could not be sent.".into();
        };
        let payload = json!({"from": plan.from});
        match self
            .request_apply(
                ChangeKind::Rollback,
                plan.to,
                digest.clone(),
                summary,
                payload,
            )
            .await
        {
            Ok((id, created)) => {
                let minutes = created.expires_at.saturating_sub(unix_now()).div_ceil(60);
                format!(
                    "#{id}: rolling back from generation {} to {} needs your code. The signer puts it to you as:\n{}\nConfirm it in the approver's chat with your authenticator code (within {minutes} min). Files SHA-256 {digest}. /deny {id} cancels.",
                    plan.from, plan.to, created.summary
                )
            }
            Err(e) => format!("The rollback was not asked: {e}. Nothing changed."),
        }
    }

    /// Asks the operator's code for applying `files` as the next generation (a configuration
    /// change; the proposal flow does the same with `ChangeKind::Proposal`): the files are
    /// staged under their digest, the signer puts `APPLY CHANGE (<kind>)` with that digest to
    /// the operator, and once the code is accepted exactly those bytes become the generation.
    /// The answer for the operator.
    pub async fn ask_apply(&self, kind: ChangeKind, files: &Files, reason: &str) -> String {
        let Some((generations, _)) = &self.generations else {
            return "This orchestrator runs without [generations] in its config: nothing can be applied.".into();
        };
        let staged = generations
            .stage(files)
            .and_then(|d| generations.next_number().map(|n| (d, n)));
        let (digest, next) = match staged {
            Ok(s) => s,
            Err(e) => return format!("Nothing was asked: {e}."),
        };
        let Some((digest_t, summary)) = change_fields(&digest, &generations::bounded_text(reason))
        else {
            return "Nothing was asked: the change needs a one-line reason.".into();
        };
        let payload = json!({"reason": generations::bounded_text(reason)});
        match self
            .request_apply(kind, next, digest_t, summary, payload)
            .await
        {
            Ok((id, created)) => format!(
                "#{id}: applying generation {next} needs your code. The signer puts it to you as:\n{}\nConfirm it in the approver's chat. /deny {id} cancels.",
                created.summary
            ),
            Err(e) => format!("The change was not asked: {e}. Nothing changed."),
        }
    }

    /// What a confirmed `apply_change` does here (called once the signer says granted).
    pub(super) fn apply_change_effect(&self, row: &ConfirmationRow, payload: &Value) -> String {
        let Some((generations, _)) = &self.generations else {
            return "this orchestrator runs without [generations]: nothing changed".into();
        };
        match payload["change"].as_str() {
            Some("rollback") => {}
            Some("config" | "proposal") => return self.apply_staged(generations, row, payload),
            _ => return "its stored request is unreadable: nothing changed".into(),
        }
        let (Some(from), Some(to), Some(digest)) = (
            payload["from"].as_u64().and_then(|n| u32::try_from(n).ok()),
            payload["generation"]
                .as_u64()
                .and_then(|n| u32::try_from(n).ok()),
            payload["digest"].as_str(),
        ) else {
            return "its stored request is unreadable: nothing changed".into();
        };
        let done = (|| {
            let current = generations.require_current()?;
            if current != from {
                return Err(GenerationError::Rollback(format!(
                    "generation {current} is current now, not {from} as when it was asked: nothing changed; ask again"
                )));
            }
            let files = generations.files(to)?;
            if generations::digest(&files) != digest {
                return Err(GenerationError::Rollback(format!(
                    "generation {to}'s files no longer hash to the digest you approved: nothing changed"
                )));
            }
            let plan = generations.plan_rollback(
                to,
                &format!(
                    "the operator rolled back with /rollback (confirmation #{})",
                    row.id
                ),
            )?;
            generations.set_health(from, &Health::RolledBack { at: unix_now() })?;
            generations.begin_rollback(&plan)
        })();
        match done {
            Ok(()) => {
                self.request_restart();
                format!(
                    "rolling back from generation {from} to {to}: the orchestrator restarts on generation {to}'s files and restores the state from before {from} (facts since are kept); it reports when done."
                )
            }
            Err(e) => format!("the rollback did not happen: {e}"),
        }
    }

    /// A granted configuration or proposal: the staged files of the approved digest become the
    /// generation number that was approved, or nothing happens.
    fn apply_staged(
        &self,
        generations: &Generations,
        row: &ConfirmationRow,
        payload: &Value,
    ) -> String {
        let (Some(n), Some(digest)) = (
            payload["generation"]
                .as_u64()
                .and_then(|n| u32::try_from(n).ok()),
            payload["digest"].as_str(),
        ) else {
            return "its stored request is unreadable: nothing changed".into();
        };
        let reason = payload["reason"]
            .as_str()
            .unwrap_or("a change approved with your code");
        let done = (|| {
            let next = generations.next_number()?;
            if next != n {
                return Err(GenerationError::Rollback(format!(
                    "another generation was applied since (the next is {next}, you approved {n}): nothing changed; ask again"
                )));
            }
            let files = match payload["change"].as_str() {
                // A proposal: the operator approved the SHA-256 of the diff they received; the
                // staged files must give exactly that diff from the generation it was made on.
                Some("proposal") => {
                    let (Some(files_digest), Some(base)) = (
                        payload["files_digest"].as_str(),
                        payload["base"].as_u64().and_then(|n| u32::try_from(n).ok()),
                    ) else {
                        return Err(GenerationError::Rollback(
                            "its stored request is unreadable: nothing changed".into(),
                        ));
                    };
                    let current = generations.require_current()?;
                    if current != base {
                        return Err(GenerationError::Rollback(format!(
                            "generation {current} is current now, not {base} the diff starts from: nothing changed; /build again"
                        )));
                    }
                    let files = generations.staged(files_digest)?;
                    let diff = generations::unified_diff(&generations.files(current)?, &files)
                        .map_err(GenerationError::Rollback)?;
                    if crate::proposal::flow::sha256_hex(diff.as_bytes()) != digest {
                        return Err(GenerationError::Rollback(format!(
                            "the staged files no longer give the diff whose SHA-256 {digest} you approved: nothing changed"
                        )));
                    }
                    files
                }
                _ => generations.staged(digest)?,
            };
            self.apply_generation(&files, &format!("{reason} (confirmation #{})", row.id))
        })();
        match done {
            Ok(applied) => format!(
                "generation {applied} applied ({} SHA-256 {digest}); the orchestrator restarts on it and watches its health",
                if payload["change"] == "proposal" {
                    "diff"
                } else {
                    "files"
                }
            ),
            Err(e) => format!("the change was not applied: {e}"),
        }
    }

    /// Watches the current generation while its health window runs; when a check fails,
    /// rolls back to its parent (files and state) and tells the operator why.
    pub async fn watch_generation(self: Arc<Self>) {
        let Some((generations, settings)) = &self.generations else {
            return;
        };
        let Ok(Some(n)) = generations.current() else {
            return;
        };
        let Ok(Some(Health::Watching { since, until })) = generations.health(n) else {
            return;
        };
        // Probes during the window: a clear failure rolls back at once.
        let step = probe_interval(settings);
        let mut signer_failed = false;
        let mut early = None;
        loop {
            let now = unix_now();
            if now >= until {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_secs(step.min(until - now))).await;
            let now = unix_now();
            if now >= until {
                break;
            }
            // The decisions so far, against the whole window's length before the apply (a
            // share of errors is compared, so the lengths need not match).
            let seen = self.observe(since, now, until - since).await;
            if let Err(why) = judge_early(settings, &seen, signer_failed) {
                early = Some((seen, Err(why)));
                break;
            }
            signer_failed = seen.signer.is_err();
        }
        let (seen, verdict) = match early {
            Some(early) => early,
            None => {
                let seen = self.observe(since, until, until - since).await;
                let verdict = judge(settings, &seen);
                (seen, verdict)
            }
        };
        let now = unix_now();
        match verdict {
            Ok(()) => {
                let _ = generations.set_health(n, &Health::Passed { at: now });
                let total: u64 = seen.window.values().map(|c| c.decisions).sum();
                self.alert(Alert::Generation(format!(
                    "generation {n} passed its health check ({total} decisions in {} s, signer answering)",
                    until - since
                )));
            }
            Err(why) => {
                let _ = generations.set_health(
                    n,
                    &Health::Failed {
                        at: now,
                        why: why.clone(),
                    },
                );
                let rolled = generations
                    .default_target()
                    .and_then(|to| {
                        generations.plan_rollback(
                            to,
                            &format!("generation {n} failed its health check: {why}"),
                        )
                    })
                    .and_then(|plan| generations.begin_rollback(&plan).map(|()| plan.to));
                match rolled {
                    Ok(to) => {
                        self.alert(Alert::Generation(format!(
                            "generation {n} FAILED its health check: {why}. Rolling back to generation {to} (its files, and the state from before {n} with every fact since kept); the orchestrator restarts."
                        )));
                        self.request_restart();
                    }
                    Err(e) => self.alert(Alert::Generation(format!(
                        "generation {n} FAILED its health check: {why}. It could not be rolled back: {e}. Use /rollback."
                    ))),
                }
            }
        }
    }

    /// What the health check reads for the window `since..until`, and the `before_len`
    /// seconds before `since`.
    async fn observe(&self, since: u64, until: u64, before_len: u64) -> Observed {
        let signer = self
            .signer
            .lock()
            .await
            .status()
            .await
            .map(|_| ())
            .map_err(|e| e.to_string());
        let read = self
            .store
            .lock()
            .map_err(|_| "state unavailable".to_string())
            .and_then(|s| {
                let expected = self
                    .config
                    .agents
                    .iter()
                    .filter(|a| !operator::is_paused(&s, &a.id).unwrap_or(true))
                    .map(|a| a.id.as_str().to_owned())
                    .collect();
                let window = s.window_counts(since, until).map_err(|e| e.to_string())?;
                let before = s
                    .window_counts(since.saturating_sub(before_len), since)
                    .map_err(|e| e.to_string())?;
                Ok((expected, window, before))
            });
        match read {
            Ok((expected, window, before)) => Observed {
                signer,
                expected,
                window,
                before,
            },
            // Unreadable state: nothing shows the agents deciding.
            Err(e) => Observed {
                signer,
                expected: vec![format!("(all agents: the state could not be read: {e})")],
                window: std::collections::BTreeMap::new(),
                before: std::collections::BTreeMap::new(),
            },
        }
    }
}

/// The typed digest and summary of an `apply_change` request: the summary cut to
/// [`vigil_protocol::MAX_CHANGE_SUMMARY_CHARS`] characters, then both checked as the
/// protocol checks them. None when either is refused.
fn change_fields(digest: &str, summary: &str) -> Option<(ChangeDigest, ChangeSummary)> {
    let summary: String = summary
        .chars()
        .take(vigil_protocol::MAX_CHANGE_SUMMARY_CHARS)
        .collect();
    Some((digest.parse().ok()?, summary.parse().ok()?))
}

/// Marks generation `n` as watched from `now` for the window (not the first generation: it
/// has nothing to roll back to).
pub fn watch_from(
    generations: &Generations,
    settings: &GenerationSettings,
    n: u32,
    now: u64,
) -> Result<(), GenerationError> {
    if generations.meta(n)?.parent.is_none() {
        return Ok(());
    }
    generations.set_health(
        n,
        &Health::Watching {
            since: now,
            until: now + u64::from(settings.health_window_secs),
        },
    )
}
