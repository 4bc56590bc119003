//! The engine's pause ops: `pause_agent` (either role: a tightening, idempotent),
//! `request_resume` (asker: a clearing that waits for the operator, bound to the pause in
//! force) and `resume_agent` (the approver's: the operator's code clears it). The code is
//! checked by the one path every code takes (`operator_code`: single-use steps, lockout,
//! refusals audited). The rule the pause applies to intents is `crate::pause`.

use vigil_protocol::{
    AgentId, AwaitingKind, ErrorKind, NewResume, PauseAgentRequest, PauseId, PauseResult,
    RequestCreated, RequestState, ResumeAgentRequest, ResumeResult,
};

use super::requests::purpose_text;
use super::{Engine, Refusal};
use crate::ledger::Event;
use crate::pause::Pause;
use crate::requests::RequestBody;

impl Engine {
    /// `pause_agent`: paused at once, in memory and then durably; a second call while paused
    /// returns the pause in force and records nothing.
    pub(super) async fn pause_agent(&self, r: PauseAgentRequest) -> Result<PauseResult, Refusal> {
        self.known_agent(&r.agent)?;
        let now = (self.clock)();
        let pause = Pause {
            id: new_pause_id().map_err(Refusal::internal)?,
            since: now,
            reason: r.reason,
        };
        {
            let mut inner = self.lock();
            if let Some(p) = inner.pauses.get(&r.agent) {
                return Ok(PauseResult {
                    agent: r.agent,
                    pause: p.report(),
                    already_paused: true,
                    ledger_seq: 0,
                });
            }
            // Paused before the entry is written: no signature for this agent can slip in
            // between. If the entry cannot be written the pause stays in memory (failing
            // closed); the journal is then poisoned and nothing is signed anyway.
            inner.pauses.set(&r.agent, pause.clone());
        }
        let event = Event::AgentPaused {
            agent: r.agent.clone(),
            pause_id: pause.id.clone(),
            reason: pause.reason,
        };
        match self.journal(now, vec![event]).await {
            Ok(appended) => Ok(PauseResult {
                agent: r.agent,
                pause: pause.report(),
                already_paused: false,
                ledger_seq: appended.last().map_or(0, |a| a.seq),
            }),
            Err(e) => Err(Refusal::internal(format!(
                "the pause could not be recorded durably ({e}); the agent stays paused until the signer \
                 restarts, and nothing is signed until its state disk is fixed"
            ))),
        }
    }

    /// `request_resume`: a clearing of the pause in force now, for the operator to answer.
    pub(super) async fn request_resume(&self, r: NewResume) -> Result<RequestCreated, Refusal> {
        self.known_agent(&r.agent)?;
        let pause = self.lock().pauses.get(&r.agent).cloned().ok_or_else(|| {
            Refusal::bad_request(format!(
                "agent {} is not paused: there is nothing to resume",
                r.agent
            ))
        })?;
        let summary = format!(
            "RESUME: agent {}: clear the pause {} (pause {}); the agent may then open positions and move funds again within the signed policy",
            r.agent,
            pause.describe(),
            pause.id
        );
        let body = RequestBody::Resume {
            agent: r.agent,
            pause_id: pause.id,
        };
        self.open_request(body, r.idempotency_key, summary).await
    }

    /// `resume_agent`: the operator's code clears the pause the request names, if it is still
    /// the one in force (an old request never clears a later pause).
    pub(super) async fn resume_agent(
        &self,
        r: ResumeAgentRequest,
    ) -> Result<ResumeResult, Refusal> {
        let now = (self.clock)();
        let (body, purpose, summary) = {
            let inner = self.lock();
            let p = inner
                .requests
                .answerable(&r.request_id, AwaitingKind::Resume, now)
                .map_err(|n| Refusal::new(n.kind, n.message))?;
            (
                p.body.clone(),
                purpose_text(&r.request_id, &p.body)?,
                p.summary.clone(),
            )
        };
        let RequestBody::Resume { agent, pause_id } = body else {
            return Err(Refusal::internal("a resume request holds no pause"));
        };
        let current = self.lock().pauses.get(&agent).map(|p| p.id.clone());
        if current.as_ref() != Some(&pause_id) {
            let now_state = match current {
                Some(id) => format!("it is paused again under pause {id}"),
                None => "it is not paused any more".to_owned(),
            };
            let refusal = Refusal::new(
                ErrorKind::ApprovalExpired,
                format!(
                    "request {} clears pause {pause_id} of agent {agent}, which was cleared since ({now_state}); \
                     no code was used: ask for a new resume if one is needed",
                    r.request_id
                ),
            );
            return Err(self.refuse_answer(&r.request_id, refusal, now).await);
        }
        let step = self.operator_code(purpose.as_str(), &r.code).await?;
        self.claim_request(&r.request_id, RequestState::Granted, now)?;
        let event = Event::AgentResumed {
            agent: agent.clone(),
            pause_id: pause_id.clone(),
            totp_step: step,
            request_id: r.request_id.clone(),
        };
        let seq = self
            .record_answer(&r.request_id, event, RequestState::Granted)
            .await?;
        // Cleared only once the clearing is durable.
        self.lock().pauses.clear(&agent, &pause_id);
        Ok(ResumeResult {
            agent,
            pause_id,
            request_id: r.request_id,
            summary,
            ledger_seq: seq,
        })
    }

    /// `unknown_agent` for an agent the signed policy does not name.
    fn known_agent(&self, agent: &AgentId) -> Result<(), Refusal> {
        if self.policy.agents.contains_key(agent) {
            Ok(())
        } else {
            Err(Refusal::new(
                ErrorKind::UnknownAgent,
                format!("agent {agent} is not in the signed policy"),
            ))
        }
    }
}

/// A fresh pause id: `pz-` and 16 random bytes, hex.
fn new_pause_id() -> Result<PauseId, String> {
    let mut raw = [0u8; 16];
    getrandom::getrandom(&mut raw).map_err(|e| format!("the OS random source failed: {e}"))?;
    PauseId::try_from(format!("pz-{}", hex::encode(raw)))
}
