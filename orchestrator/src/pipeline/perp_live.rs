//! Layer 3 for a live perpetual's action: the signer signs it, the orchestrator records the
//! exact body and posts it to the venue's `/exchange`, and records what the venue said.
//!
//! In order, for one decision:
//! 1. An opening order on a perpetual whose leverage this orchestrator has not set (no
//!    accepted `updateLeverage` recorded at the agent's configured leverage) first gets one:
//!    `perp_leverage {leverage, cross: true}` signed, recorded, posted. The signer refuses an
//!    opening order without it (`leverage_set_first`); the record keeps a restart from setting
//!    it again. A refused or unanswered leverage stops the order here.
//! 2. The decision's idempotency key is claimed; the signer is asked to `sign` with
//!    `context.perp_position` (the venue's position layer 2 saw). `needs_approval` waits for
//!    the operator like any live action; a refusal is layer 3's, naming the signer's rule.
//! 3. The body is recorded (`hl_actions`, `posting`) BEFORE it is posted, byte for byte as the
//!    signer wrote it ([`SignedAction`]). A post that fails at the transport is retried with
//!    the SAME recorded bytes ([`POST_ATTEMPTS`] in all): the exchange refuses a used nonce, so
//!    a retry can never place a second order. When no answer ever came, the venue's open
//!    orders and fills are read to learn what happened; nothing is signed again.
//! 4. The venue's answer (resting with its order id, filled with size and average price,
//!    refused with its reason) is recorded on the row, and the account's fills are booked.

use std::time::Duration;

use vigil_protocol::{Context, Intent, PerpLeverageIntent, SignRequest, SignResult};

use super::execute::claim;
use super::layer3::{AtSigner, pending_approval, signer_failure};
use super::{Deps, Inputs, Outcome, idempotency_key};
use crate::chains::hyperliquid::{Accepted, HyperliquidApi, OrderStatus, SignedAction};
use crate::chains::jsonrpc::RpcError;
use crate::config::AgentConfig;
use crate::firewall::risk_perp::fixed::Fx;
use crate::firewall::risk_perp::{PerpChecked, PerpView};
use crate::store::{HlState, NewHlAction, Store};

/// How many times one recorded body is posted when the transport fails.
pub(crate) const POST_ATTEMPTS: u32 = 3;
const RETRY_PAUSE: Duration = Duration::from_millis(500);

/// A perpetual's action in live mode (see the module docs).
pub(super) async fn live(
    agent: &AgentConfig,
    checked: &PerpChecked,
    view: &PerpView,
    inputs: &Inputs,
    deps: &Deps<'_>,
) -> Outcome {
    let (Some(api), Some(master)) = (deps.hyperliquid, view.master.as_deref()) else {
        return Outcome::Held {
            layer: "venue".into(),
            reason: format!(
                "{} is live on hyperliquid:{} but its API (hyperliquid_urls) or the signer's \
                 master address for it is missing: nothing was signed",
                agent.id, view.network
            ),
        };
    };
    let intent = &checked.intent;
    let key = idempotency_key(&agent.id, inputs.now, intent);
    if let Intent::PerpOrder(order) = intent
        && !order.reduce_only
        && let Err(held) = ensure_leverage(agent, checked, view, &key, inputs.now, api, deps).await
    {
        return held;
    }
    if let Err(held) = claim(deps.store, &key, inputs.now) {
        return held;
    }
    let request = match key.parse() {
        Ok(idempotency_key) => SignRequest {
            agent: agent.id.clone(),
            intent: intent.clone(),
            context: Context {
                perp_position: Some(checked.position.clone()),
                usd_estimate: crate::deputy::usd::perp_checked(checked).map(Box::new),
                ..Context::default()
            },
            idempotency_key,
        },
        Err(e) => {
            return Outcome::Held {
                layer: "state".into(),
                reason: e,
            };
        }
    };
    let answer = deps.signer.lock().await.sign(request).await;
    let outcome = match answer {
        Ok(SignResult::Signed(s)) => {
            let posted = Posting {
                agent: agent.id.as_str(),
                view,
                master,
                key: &key,
                leverage: None,
                now: inputs.now,
            }
            .post(api, deps.store, intent, &s.tx, &s.summary)
            .await;
            Outcome::Signed {
                summary: s.summary,
                signature: s.signature,
                tx: s.tx,
                chain: posted.text,
            }
        }
        Ok(SignResult::NeedsApproval(n)) => pending_approval(
            &agent.id,
            deps.store,
            inputs.now,
            intent,
            "live",
            &n.summary,
            AtSigner {
                approval_id: Some(n.approval_id.as_str()),
                key: Some(&key),
                request_id: None,
            },
        ),
        Err(e) => signer_failure(e),
    };
    // As the signer counts it: an opening order's notional (size × limit, micro-USD) against
    // the perpetual's 24 h cap; nothing for a reduce-only order or a cancel.
    let spends: Vec<(String, String)> = match (intent, &outcome) {
        (Intent::PerpOrder(o), Outcome::Signed { .. }) if !o.reduce_only => {
            Fx::parse(o.size.as_str())
                .zip(Fx::parse(o.limit_px.as_str()))
                .and_then(|(s, p)| s.notional_micros(p))
                .map(|n| vec![(o.asset.to_string(), n.to_string())])
                .unwrap_or_default()
        }
        _ => Vec::new(),
    };
    let record = serde_json::json!({
        "agent": agent.id, "chain": "hyperliquid", "asset": intent.asset(), "spends": spends,
        "result": outcome,
    });
    let finished = deps
        .store
        .lock()
        .map_err(|_| "state unavailable".to_string())
        .and_then(|s| {
            s.finish_execution(&key, &record.to_string(), inputs.now)
                .map_err(|e| e.to_string())
        });
    if let Err(e) = finished {
        tracing::error!(error = %e, "could not record the execution's outcome");
    }
    outcome
}

/// Sets the agent's configured leverage on the order's perpetual unless this orchestrator
/// already did (an accepted `updateLeverage` at that leverage is recorded).
async fn ensure_leverage(
    agent: &AgentConfig,
    checked: &PerpChecked,
    view: &PerpView,
    key: &str,
    now: u64,
    api: &HyperliquidApi,
    deps: &Deps<'_>,
) -> Result<(), Outcome> {
    let Intent::PerpOrder(order) = &checked.intent else {
        return Ok(());
    };
    let want = checked.risk.leverage;
    let held = |reason: String| Outcome::Held {
        layer: "venue".into(),
        reason,
    };
    let set = deps
        .store
        .lock()
        .map_err(|_| held("state unavailable".into()))?
        .hl_leverage(agent.id.as_str(), view.network, order.asset)
        .map_err(|e| held(format!("cannot read the leverage set before: {e}")))?;
    if set == Some(want) {
        return Ok(());
    }
    let intent = Intent::PerpLeverage(PerpLeverageIntent {
        chain: order.chain,
        network: order.network,
        asset: order.asset,
        leverage: want,
        cross: true,
    });
    // The order's key with a prefix: a decision key is at most 60 characters.
    let lev_key = format!("l-{key}");
    let request = SignRequest {
        agent: agent.id.clone(),
        intent: intent.clone(),
        context: Context::default(),
        idempotency_key: lev_key.parse().map_err(held)?,
    };
    let signed = match deps.signer.lock().await.sign(request).await {
        Ok(SignResult::Signed(s)) => s,
        Ok(SignResult::NeedsApproval(_)) => {
            return Err(held(
                "the signer asks the operator's approval to set leverage: the order waits; \
                 nothing was posted"
                    .into(),
            ));
        }
        Err(e) => return Err(signer_failure(e)),
    };
    let master = view.master.as_deref().unwrap_or_default();
    let posted = Posting {
        agent: agent.id.as_str(),
        view,
        master,
        key: &lev_key,
        leverage: Some(want),
        now,
    }
    .post(api, deps.store, &intent, &signed.tx, &signed.summary)
    .await;
    if posted.state == HlState::Done {
        Ok(())
    } else {
        Err(held(format!(
            "leverage {want}x on {} must be set before the first order, and it was not: {}; \
             the order was not signed",
            order.asset, posted.text
        )))
    }
}

/// What a post came to: the row's state and one phrase for the outcome.
#[derive(Debug)]
pub(crate) struct Posted {
    pub state: HlState,
    pub text: String,
}

/// Whose signed action is posted, and under which key.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Posting<'a> {
    pub agent: &'a str,
    pub view: &'a PerpView,
    /// The account (master address) the venue files the action under.
    pub master: &'a str,
    pub key: &'a str,
    /// The leverage of an `updateLeverage`.
    pub leverage: Option<u32>,
    pub now: u64,
}

impl Posting<'_> {
    /// Records `tx` (the signer's base64 body) and posts it; records the venue's answer.
    pub(crate) async fn post(
        self,
        api: &HyperliquidApi,
        store: &std::sync::Mutex<Store>,
        intent: &Intent,
        tx: &str,
        summary: &str,
    ) -> Posted {
        let failed = |text: String| Posted {
            state: HlState::Refused,
            text,
        };
        let signed = match SignedAction::from_base64(tx) {
            Ok(s) => s,
            Err(e) => return failed(format!("not posted: {e}")),
        };
        let Some(coin) = intent.asset() else {
            return failed("not posted: the action names no perpetual".into());
        };
        let row = NewHlAction {
            agent: self.agent,
            network: self.view.network,
            kind: signed.action_type(),
            coin,
            leverage: self.leverage,
            nonce: signed.nonce(),
            body: tx,
            key: self.key,
            summary,
            posted_at: self.now,
        };
        let recorded = store
            .lock()
            .map_err(|_| "state unavailable".to_string())
            .and_then(|s| s.record_hl_posting(&row).map_err(|e| e.to_string()));
        if let Err(e) = recorded {
            return failed(format!("not posted: it could not be recorded first ({e})"));
        }
        let (state, oid, text) = match post_same_bytes(api, &signed).await {
            Ok(accepted) => answer_of(&accepted),
            Err(PostError::Refused(why)) => (
                HlState::Refused,
                None,
                format!("refused by the venue: {why}"),
            ),
            Err(PostError::NoAnswer(why)) => self.find_unanswered(api, store, intent, &why).await,
        };
        let saved = store
            .lock()
            .map_err(|_| "state unavailable".to_string())
            .and_then(|s| {
                s.record_hl_answer(self.key, state, oid, &text, self.now)
                    .map_err(|e| e.to_string())
            });
        if let Err(e) = saved {
            tracing::error!(key = self.key, error = %e, "could not record the venue's answer");
        }
        if matches!(state, HlState::Filled | HlState::Resting) {
            let booked = super::super::scheduler::book_fills(
                api,
                store,
                self.agent,
                self.view,
                self.master,
                self.now,
            )
            .await;
            if let Err(e) = booked {
                tracing::warn!(key = self.key, error = %e, "fills not booked yet");
            }
        }
        Posted { state, text }
    }

    /// No answer reached us: the venue's open orders and fills say whether the order arrived
    /// (an order of the same coin, side, price and size with an id this orchestrator does not
    /// know). Anything else stays `unknown` for reconciliation; nothing is signed again.
    async fn find_unanswered(
        self,
        api: &HyperliquidApi,
        store: &std::sync::Mutex<Store>,
        intent: &Intent,
        why: &str,
    ) -> (HlState, Option<u64>, String) {
        let unknown = |more: &str| {
            (
                HlState::Unknown,
                None,
                format!(
                    "no answer from the venue after {POST_ATTEMPTS} posts of the same body ({why}){more}; \
                     it is not signed again, and reconciliation looks for it"
                ),
            )
        };
        let Intent::PerpOrder(order) = intent else {
            return unknown("");
        };
        let known = match store.lock() {
            Ok(s) => s
                .hl_orders(self.agent, self.view.network, &ALL_STATES)
                .map(|rows| rows.into_iter().filter_map(|r| r.oid).collect::<Vec<_>>())
                .unwrap_or_default(),
            Err(_) => return unknown(""),
        };
        let same = |coin: &str, buy: bool, px: &str, sz: &str| {
            coin == order.asset.as_str()
                && buy == (order.side == vigil_protocol::Side::Buy)
                && Fx::parse(px) == Fx::parse(order.limit_px.as_str())
                && Fx::parse(sz) == Fx::parse(order.size.as_str())
        };
        if let Ok(open) = api.open_orders(self.master).await
            && let Some(o) = open.iter().find(|o| {
                !known.contains(&o.oid) && same(&o.coin, o.buy, o.limit_px.text(), o.sz.text())
            })
        {
            return (
                HlState::Resting,
                Some(o.oid),
                format!(
                    "resting as order {} (found among the open orders after no answer)",
                    o.oid
                ),
            );
        }
        if let Ok(fills) = api.fills(self.master).await
            && let Some(f) = fills.iter().find(|f| {
                !known.contains(&f.oid)
                    && f.time_ms.saturating_add(1000) >= self.now.saturating_mul(1000)
                    && f.coin == order.asset.as_str()
                    && f.buy == (order.side == vigil_protocol::Side::Buy)
            })
        {
            return (
                HlState::Filled,
                Some(f.oid),
                format!(
                    "filled as order {} (found among the fills after no answer)",
                    f.oid
                ),
            );
        }
        unknown(": it is not among the open orders or fills")
    }
}

/// Every state of a row (to list every order id this orchestrator knows).
pub(crate) const ALL_STATES: [HlState; 7] = [
    HlState::Posting,
    HlState::Resting,
    HlState::Filled,
    HlState::Done,
    HlState::Refused,
    HlState::Unknown,
    HlState::Closed,
];

enum PostError {
    /// The venue answered and refused (its reason).
    Refused(String),
    /// No answer after every attempt (the last transport error).
    NoAnswer(String),
}

/// Posts the same bytes up to [`POST_ATTEMPTS`] times while the transport fails. A refusal
/// of a retry because its nonce was used means an earlier attempt arrived: no answer then.
async fn post_same_bytes(
    api: &HyperliquidApi,
    signed: &SignedAction,
) -> Result<Accepted, PostError> {
    let mut last = String::new();
    for attempt in 0..POST_ATTEMPTS {
        if attempt > 0 {
            tokio::time::sleep(RETRY_PAUSE).await;
        }
        match api.exchange(signed).await {
            Ok(accepted) => return Ok(accepted),
            Err(RpcError::Rpc { message, .. }) if attempt > 0 && message.contains("nonce") => {
                return Err(PostError::NoAnswer(format!(
                    "{last}; a retry was refused for its used nonce, so an earlier post arrived"
                )));
            }
            Err(RpcError::Rpc { message, .. }) => return Err(PostError::Refused(message)),
            Err(e @ (RpcError::Transport(_) | RpcError::Timeout | RpcError::Http(_))) => {
                last = e.to_string();
            }
            Err(e) => return Err(PostError::Refused(e.to_string())),
        }
    }
    Err(PostError::NoAnswer(last))
}

/// The row's state, the order id and one phrase, from the venue's acceptance.
fn answer_of(accepted: &Accepted) -> (HlState, Option<u64>, String) {
    match accepted {
        Accepted::Orders(statuses) => match statuses.first() {
            Some(OrderStatus::Resting { oid }) => (
                HlState::Resting,
                Some(*oid),
                format!("resting as order {oid}"),
            ),
            Some(OrderStatus::Filled {
                oid,
                total_sz,
                avg_px,
            }) => (
                HlState::Filled,
                Some(*oid),
                format!("filled {total_sz} at {avg_px} (order {oid})"),
            ),
            Some(OrderStatus::Refused(why)) => (
                HlState::Refused,
                None,
                format!("refused by the venue: {why}"),
            ),
            None => (
                HlState::Refused,
                None,
                "the venue answered no order status".into(),
            ),
        },
        Accepted::Cancels(c) => match c.first() {
            Some(None) => (HlState::Done, None, "cancelled".into()),
            Some(Some(why)) => (HlState::Refused, None, format!("not cancelled: {why}")),
            None => (
                HlState::Refused,
                None,
                "the venue answered no cancel status".into(),
            ),
        },
        Accepted::Done => (HlState::Done, None, "accepted".into()),
    }
}
