//! The per-agent pause: a flag any peer may set (`pause_agent`, a tightening) and only the
//! operator's code clears (`request_resume` answered by `resume_agent` through the approver).
//! This module holds the flags, rebuilt from the journal at start (`agent_paused`,
//! `agent_resumed`), and the rule `agent_paused`: what the signer still signs for a paused
//! agent. The ops are in `engine/pause.rs`.
//!
//! While an agent is paused, every intent that can add exposure or move funds out is refused:
//!
//! | intent                                   | while paused                                  |
//! |------------------------------------------|-----------------------------------------------|
//! | `transfer` (Solana, EVM)                 | refused: moves funds out                      |
//! | `aave_supply`                            | refused: moves funds into the Pool            |
//! | `aave_borrow`                            | refused: adds debt                            |
//! | `aave_repay`                             | signed: reduces debt                          |
//! | `aave_withdraw`                          | signed: the funds come back to the agent's own address (the signer builds `withdraw(…, to = agent)`); the Pool refuses one that would leave the health factor below 1 |
//! | `perp_order`, `reduce_only: true`        | signed: can only shrink a position            |
//! | `perp_order`, opening                    | refused: adds exposure                        |
//! | `perp_cancel`, `perp_schedule_cancel`    | signed: can only take orders off the book     |
//! | `perp_leverage`                          | signed only below the leverage this agent last set for that perp through the signer, in the same margin mode; else refused |
//! | `perp_withdraw`, `perp_register_api_key` | refused: moves funds out / hands out a key    |
//!
//! The rule is applied after the policy's decision and before anything is signed or an
//! approval opened, in `sign` (for a new request and for the collection of a granted
//! approval: a grant made before the pause is not collected while it lasts) and in `dry_run`.

use std::collections::BTreeMap;

use vigil_protocol::{AgentId, AgentPause, Intent, Network, PauseId, PauseReason, Rule};

use crate::audit::Entry;
use crate::ledger::{Event, Ledger};
use crate::policy::Verdict;

/// One agent's pause.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Pause {
    /// Its id (a resume request names it).
    pub(crate) id: PauseId,
    /// Unix seconds when it was set.
    pub(crate) since: u64,
    /// Why.
    pub(crate) reason: PauseReason,
}

impl Pause {
    /// As the protocol reports it.
    pub(crate) fn report(&self) -> AgentPause {
        AgentPause {
            pause_id: self.id.clone(),
            since: self.since,
            reason: self.reason,
        }
    }

    /// How the operator reads it: "set at 2026-05-01 12:00:00 UTC for loss_floor".
    pub(crate) fn describe(&self) -> String {
        format!("set at {} for {}", utc(self.since), self.reason)
    }
}

/// The agents that are paused.
#[derive(Debug, Default)]
pub(crate) struct Pauses {
    by_agent: BTreeMap<AgentId, Pause>,
}

impl Pauses {
    /// Applies one replayed journal entry, exactly as serving applied it.
    pub(crate) fn replay_entry(&mut self, e: &Entry<Event>) {
        match &e.event {
            Event::AgentPaused {
                agent,
                pause_id,
                reason,
            } => {
                self.set(
                    agent,
                    Pause {
                        id: pause_id.clone(),
                        since: e.ts,
                        reason: *reason,
                    },
                );
            }
            Event::AgentResumed {
                agent, pause_id, ..
            } => {
                self.clear(agent, pause_id);
            }
            _ => {}
        }
    }

    /// The agent's pause, if it is paused.
    pub(crate) fn get(&self, agent: &AgentId) -> Option<&Pause> {
        self.by_agent.get(agent)
    }

    /// Pauses `agent`; false (and nothing changes) if it is paused already.
    pub(crate) fn set(&mut self, agent: &AgentId, pause: Pause) -> bool {
        if self.by_agent.contains_key(agent) {
            return false;
        }
        self.by_agent.insert(agent.clone(), pause);
        true
    }

    /// Clears `agent`'s pause if it is the pause `id`; false otherwise (a later pause stays).
    pub(crate) fn clear(&mut self, agent: &AgentId, id: &PauseId) -> bool {
        if self.by_agent.get(agent).is_some_and(|p| &p.id == id) {
            self.by_agent.remove(agent);
            true
        } else {
            false
        }
    }
}

/// What the pause does to one intent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum WhilePaused {
    /// Signed as if there were no pause (it cannot add exposure or move funds out).
    Allowed,
    /// Refused; the words say why.
    Refused(&'static str),
    /// A leverage change: signed only below the leverage last set for that perp.
    LowerLeverage {
        network: Network,
        perp: vigil_protocol::AssetSymbol,
        leverage: u32,
        cross: bool,
    },
}

/// The class of an intent while its agent is paused (the table at the top of this file).
pub(crate) fn while_paused(intent: &Intent) -> WhilePaused {
    match intent {
        Intent::Transfer(_) => WhilePaused::Refused("a transfer moves funds out"),
        Intent::AaveSupply(_) => WhilePaused::Refused("a supply moves funds into the pool"),
        Intent::AaveBorrow(_) => WhilePaused::Refused("a borrow adds debt"),
        // Both take exposure off the Pool: a repayment lowers the debt; a withdrawal returns
        // the agent's own supply to the agent's own address (never elsewhere), the loss floor's
        // closing flow needs it once the debt is repaid.
        Intent::AaveRepay(_) | Intent::AaveWithdraw(_) => WhilePaused::Allowed,
        Intent::PerpOrder(o) if o.reduce_only => WhilePaused::Allowed,
        Intent::PerpOrder(_) => {
            WhilePaused::Refused("an order that is not reduce-only adds exposure")
        }
        Intent::PerpCancel(_) | Intent::PerpScheduleCancel(_) => WhilePaused::Allowed,
        Intent::PerpLeverage(l) => WhilePaused::LowerLeverage {
            network: l.network,
            perp: l.asset,
            leverage: l.leverage,
            cross: l.cross,
        },
        Intent::PerpWithdraw(_) => WhilePaused::Refused("a withdrawal moves funds out"),
        Intent::PerpRegisterApiKey(_) => {
            WhilePaused::Refused("registering an API wallet hands out a trading key")
        }
    }
}

/// The decision with the pause applied: for a paused agent, an intent the pause refuses is
/// `agent_paused` whatever the policy said; anything else keeps the policy's verdict.
/// `ledger` is read for the leverage this agent last set (under the engine's lock).
pub(crate) fn with_pause(
    verdict: Verdict,
    pause: Option<&Pause>,
    ledger: &Ledger,
    agent: &AgentId,
    intent: &Intent,
) -> Verdict {
    let Some(pause) = pause else {
        return verdict;
    };
    let why = match while_paused(intent) {
        WhilePaused::Allowed => return verdict,
        WhilePaused::Refused(why) => why.to_owned(),
        WhilePaused::LowerLeverage {
            network,
            perp,
            leverage,
            cross,
        } => match ledger.hl_leverage_of(agent, network, perp) {
            Some((last, last_cross)) if leverage < last && cross == last_cross => return verdict,
            Some((last, last_cross)) => format!(
                "a leverage change is signed only if it lowers the leverage last set ({last}x {}) in the same margin mode; {leverage}x {} does not",
                margin(last_cross),
                margin(cross)
            ),
            None => format!(
                "the signer knows no leverage this agent set for {perp} on hyperliquid:{network}, so it cannot tell that {leverage}x lowers it"
            ),
        },
    };
    Verdict::Deny {
        rule: Rule::AgentPaused,
        message: format!(
            "agent {agent} is paused (pause {}, {}): {why}. While paused the signer signs only \
             reduce-only orders, cancels, the dead-man switch, a lower leverage, Aave \
             repayments and withdrawals to the agent itself; the operator clears the pause \
             with a code (request_resume, answered through the approver)",
            pause.id,
            pause.describe()
        ),
    }
}

fn margin(cross: bool) -> &'static str {
    if cross { "cross" } else { "isolated" }
}

/// A Unix time as `YYYY-MM-DD HH:MM:SS UTC` (the proleptic Gregorian calendar).
pub(crate) fn utc(ts: u64) -> String {
    let days = ts / 86_400;
    let secs = ts % 86_400;
    // Days since 1970-01-01 to a civil date (H. Hinnant's algorithm), in unsigned arithmetic:
    // shifted to the era starting 0000-03-01, 719_468 days before the epoch.
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        secs / 3600,
        (secs % 3600) / 60,
        secs % 60
    )
}

#[cfg(test)]
mod tests;
