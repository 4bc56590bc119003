//! The host functions a strategy module can call, and nothing else.
//!
//! Each reads the [`HostView`] the pipeline built for the calling agent before the call: the
//! view holds only that agent's data, and no function takes an agent (or any other name)
//! argument, so there is no way to ask for another agent's. Calling one with an argument it
//! does not take is a Starlark error, and the module is stopped.
//!
//! - `marks()`: `{coin: price}` in USD (floats): the perpetuals' marks the deputy read from
//!   its venue, and `SOL` when the orchestrator has a SOL price.
//! - `positions()`: `{coin: {"size", "entry_px", "realized_pnl", "fees", "funding",
//!   "unrealized_pnl"}}` of the agent's own book (size signed: negative is short).
//! - `pnl()`: `{"realized", "fees", "funding", "unrealized", "total", "equity"}` of its book
//!   (`equity` None when unknown).
//! - `balance()`: its wallet balance in base units of the asset it trades (an int).
//! - `risk_state()`: `"active"`, `"reducing"` or `"halted"`.
//! - `propose(intent)`: checks a dict as layer 1 checks an LLM's reply (the same parser and
//!   schema; `size`, `limit_px` may be floats, written as decimal text here; `confidence`
//!   defaults to 1 and `reasoning` to a line naming the module), records it as this call's
//!   proposal and returns it. A bad intent is an error that names what is wrong.
//! - `decimal(x, places)`: `x` as decimal text with at most `places` decimals (0 to 8).
//!
//! In a module's tests two more exist: `fixture(marks=, positions=, pnl=, balance=,
//! risk_state=)` replaces the view the next calls read, and `assert_eq(a, b)`.

use std::cell::RefCell;
use std::rc::Rc;

use serde_json::{Map, Value as Json, json};
use starlark::environment::GlobalsBuilder;
use starlark::eval::Evaluator;
use starlark::starlark_module;
use starlark::values::Value;
use starlark::values::none::NoneType;

use crate::firewall::schema::{self, AgentDecision};

/// What one agent's module may read, built before the call (and sent to the module's child
/// process as JSON).
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct HostView {
    /// Unix seconds of the tick.
    pub now: u64,
    /// `{coin: price}`.
    pub marks: Map<String, Json>,
    /// `{coin: {...}}` of the agent's own book.
    pub positions: Map<String, Json>,
    /// The book's PnL.
    pub pnl: Map<String, Json>,
    /// The wallet balance, base units.
    pub balance: u128,
    /// The risk state's name.
    pub risk_state: String,
}

impl HostView {
    /// The `ctx` argument of `decide`: the tick's time.
    pub(crate) fn ctx(&self) -> Json {
        json!({ "now": self.now })
    }
}

/// What the host functions of the running call read: the view, the module's name and what it
/// proposed. Installed for the calling thread by [`Installed`] (the evaluator's own `extra`
/// slot needs an `unsafe` trait impl, which this crate forbids).
#[derive(Debug)]
pub(crate) struct Host {
    pub module: String,
    pub view: RefCell<HostView>,
    pub proposed: RefCell<Option<(Json, AgentDecision)>>,
    /// Whether `fixture` and `assert_eq` are available (the module's tests).
    pub testing: bool,
}

impl Host {
    pub(crate) fn new(module: &str, view: HostView, testing: bool) -> Host {
        Host {
            module: module.to_owned(),
            view: RefCell::new(view),
            proposed: RefCell::new(None),
            testing,
        }
    }
}

thread_local! {
    /// The host of the call running on this thread (a call runs start to end on one thread).
    static CURRENT: RefCell<Option<Rc<Host>>> = const { RefCell::new(None) };
}

/// `host` installed as the calling thread's until dropped.
pub(crate) struct Installed;

impl Installed {
    pub(crate) fn new(host: &Rc<Host>) -> Installed {
        CURRENT.with(|c| *c.borrow_mut() = Some(Rc::clone(host)));
        Installed
    }
}

impl Drop for Installed {
    fn drop(&mut self) {
        CURRENT.with(|c| c.borrow_mut().take());
    }
}

fn host(_: &Evaluator<'_, '_, '_>) -> anyhow::Result<Rc<Host>> {
    CURRENT
        .with(|c| c.borrow().clone())
        .ok_or_else(|| anyhow::anyhow!("host functions are not available here"))
}

/// A module's intent dict (as JSON) checked into a decision, as layer 1 checks an LLM's
/// reply: the defaults filled in, floats written as decimal text, then the schema's parser.
pub(crate) fn intent_to_decision(module: &str, intent: &Json) -> Result<AgentDecision, String> {
    let Json::Object(fields) = intent else {
        return Err(format!(
            "an intent is a dict like {{\"action\": \"perp_order\", ...}}, not {}",
            kind_of(intent)
        ));
    };
    let mut fields = fields.clone();
    let action = match fields.get("action") {
        Some(Json::String(a)) => a.clone(),
        _ => return Err("the intent has no \"action\" string (e.g. \"perp_order\")".into()),
    };
    for key in ["size", "limit_px"] {
        if let Some(Json::Number(n)) = fields.get(key) {
            let text = n
                .as_f64()
                .and_then(|x| decimal_text(x, 8))
                .ok_or_else(|| format!("{key} {n} is not a finite number"))?;
            fields.insert(key.into(), Json::String(text));
        }
    }
    if let Some(Json::Number(n)) = fields.get("amount")
        && let Some(units) = n.as_u64()
    {
        fields.insert("amount".into(), Json::String(units.to_string()));
    }
    fields
        .entry("confidence")
        .or_insert_with(|| Json::from(1.0));
    fields
        .entry("reasoning")
        .or_insert_with(|| Json::String(format!("strategy module {module} decides: {action}")));
    let text = Json::Object(fields).to_string();
    schema::parse_decision(&text).map_err(|e| e.to_string())
}

/// `x` as decimal text with at most `places` decimals, trailing zeros dropped; `None` for a
/// non-finite or absurdly large number.
pub(crate) fn decimal_text(x: f64, places: u32) -> Option<String> {
    if !x.is_finite() || x.abs() > 1e15 || places > 8 {
        return None;
    }
    let places = usize::try_from(places).ok()?;
    let text = format!("{x:.places$}");
    let text = if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.').to_owned()
    } else {
        text
    };
    Some(if text == "-0" { "0".into() } else { text })
}

fn kind_of(v: &Json) -> &'static str {
    match v {
        Json::Null => "None",
        Json::Bool(_) => "a bool",
        Json::Number(_) => "a number",
        Json::String(_) => "a string",
        Json::Array(_) => "a list",
        Json::Object(_) => "a dict",
    }
}

/// Records `decision` as the call's proposal; a second, different one is an error.
pub(crate) fn record_proposal(
    host: &Host,
    json: Json,
    decision: AgentDecision,
) -> anyhow::Result<()> {
    let mut proposed = host.proposed.borrow_mut();
    match &*proposed {
        Some((_, earlier)) if *earlier != decision => Err(anyhow::anyhow!(
            "propose() was already called with another intent in this call: a module proposes \
             at most one intent per tick"
        )),
        _ => {
            *proposed = Some((json, decision));
            Ok(())
        }
    }
}

#[starlark_module]
pub(crate) fn host_functions(builder: &mut GlobalsBuilder) {
    /// The marks the deputy read, `{coin: price}` in USD.
    fn marks<'v>(eval: &mut Evaluator<'v, '_, '_>) -> anyhow::Result<Value<'v>> {
        let marks = Json::Object(host(eval)?.view.borrow().marks.clone());
        Ok(eval.heap().alloc(&marks))
    }

    /// The calling agent's own positions, `{coin: {...}}`.
    fn positions<'v>(eval: &mut Evaluator<'v, '_, '_>) -> anyhow::Result<Value<'v>> {
        let positions = Json::Object(host(eval)?.view.borrow().positions.clone());
        Ok(eval.heap().alloc(&positions))
    }

    /// The calling agent's own PnL.
    fn pnl<'v>(eval: &mut Evaluator<'v, '_, '_>) -> anyhow::Result<Value<'v>> {
        let pnl = Json::Object(host(eval)?.view.borrow().pnl.clone());
        Ok(eval.heap().alloc(&pnl))
    }

    /// The calling agent's wallet balance, base units.
    fn balance<'v>(eval: &mut Evaluator<'v, '_, '_>) -> anyhow::Result<Value<'v>> {
        let balance = host(eval)?.view.borrow().balance;
        let balance = u64::try_from(balance).map_err(|_| anyhow::anyhow!("balance too large"))?;
        Ok(eval.heap().alloc(balance))
    }

    /// The deputy's risk state.
    fn risk_state<'v>(eval: &mut Evaluator<'v, '_, '_>) -> anyhow::Result<Value<'v>> {
        let state = host(eval)?.view.borrow().risk_state.clone();
        Ok(eval.heap().alloc(state.as_str()))
    }

    /// Checks and records one intent; returns it.
    fn propose<'v>(
        #[starlark(require = pos)] intent: Value<'v>,
        eval: &mut Evaluator<'v, '_, '_>,
    ) -> anyhow::Result<Value<'v>> {
        let host = host(eval)?;
        let json = intent
            .to_json_value()
            .map_err(|e| anyhow::anyhow!("propose(): the intent is not plain data: {e}"))?;
        let decision = intent_to_decision(&host.module, &json)
            .map_err(|e| anyhow::anyhow!("propose(): {e}"))?;
        record_proposal(&host, json, decision)?;
        Ok(intent)
    }

    /// `x` as decimal text with at most `places` decimals.
    fn decimal<'v>(
        #[starlark(require = pos)] x: Value<'v>,
        #[starlark(require = pos)] places: i32,
    ) -> anyhow::Result<String> {
        let x = x
            .to_json_value()
            .ok()
            .and_then(|j| j.as_f64())
            .ok_or_else(|| anyhow::anyhow!("decimal(): {x} is not a number"))?;
        u32::try_from(places)
            .ok()
            .and_then(|p| decimal_text(x, p))
            .ok_or_else(|| anyhow::anyhow!("decimal(): give a finite number and 0 to 8 places"))
    }

    /// Tests only: replaces the view the next host calls read.
    fn fixture<'v>(
        #[starlark(require = named)] marks: Option<Value<'v>>,
        #[starlark(require = named)] positions: Option<Value<'v>>,
        #[starlark(require = named)] pnl: Option<Value<'v>>,
        #[starlark(require = named)] balance: Option<u32>,
        #[starlark(require = named)] risk_state: Option<&str>,
        eval: &mut Evaluator<'v, '_, '_>,
    ) -> anyhow::Result<NoneType> {
        let host = host(eval)?;
        if !host.testing {
            return Err(anyhow::anyhow!("fixture() exists only in a module's tests"));
        }
        let object =
            |v: Option<Value<'v>>, what: &str| -> anyhow::Result<Option<Map<String, Json>>> {
                match v.map(|v| v.to_json_value()).transpose()? {
                    None => Ok(None),
                    Some(Json::Object(m)) => Ok(Some(m)),
                    Some(_) => Err(anyhow::anyhow!("fixture(): {what} must be a dict")),
                }
            };
        let mut view = host.view.borrow_mut();
        if let Some(m) = object(marks, "marks")? {
            view.marks = m;
        }
        if let Some(m) = object(positions, "positions")? {
            view.positions = m;
        }
        if let Some(m) = object(pnl, "pnl")? {
            view.pnl = m;
        }
        if let Some(b) = balance {
            view.balance = u128::from(b);
        }
        if let Some(s) = risk_state {
            view.risk_state = s.to_owned();
        }
        host.proposed.borrow_mut().take();
        Ok(NoneType)
    }

    /// Tests only: fails unless `a == b`.
    fn assert_eq<'v>(
        #[starlark(require = pos)] a: Value<'v>,
        #[starlark(require = pos)] b: Value<'v>,
        eval: &mut Evaluator<'v, '_, '_>,
    ) -> anyhow::Result<NoneType> {
        if !host(eval)?.testing {
            return Err(anyhow::anyhow!(
                "assert_eq() exists only in a module's tests"
            ));
        }
        if a.equals(b).map_err(|e| anyhow::anyhow!("assert_eq: {e}"))? {
            Ok(NoneType)
        } else {
            Err(anyhow::anyhow!("assert_eq: {a} != {b}"))
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn decimals_are_plain_text() {
        assert_eq!(decimal_text(2500.5, 2).unwrap(), "2500.5");
        assert_eq!(decimal_text(0.123456789, 4).unwrap(), "0.1235");
        assert_eq!(decimal_text(3.0, 8).unwrap(), "3");
        assert_eq!(decimal_text(-0.0, 2).unwrap(), "0");
        assert_eq!(decimal_text(f64::NAN, 2), None);
        assert_eq!(decimal_text(1.0, 9), None);
    }

    #[test]
    fn an_intent_passes_layer_1_or_says_why_not() {
        let order = json!({"action": "perp_order", "asset": "ETH", "side": "buy",
            "size": 0.25, "limit_px": 2001.5, "tif": "ioc"});
        let d = intent_to_decision("trend", &order).unwrap();
        assert_eq!(d.action, schema::Action::PerpOrder);
        assert!(d.reasoning.contains("strategy module trend"));
        let e = intent_to_decision("trend", &json!({"action": "launch_rockets"})).unwrap_err();
        assert!(e.contains("launch_rockets"), "{e}");
        let e = intent_to_decision("trend", &json!([1, 2])).unwrap_err();
        assert!(e.contains("a list"), "{e}");
        let e = intent_to_decision(
            "trend",
            &json!({"action": "perp_order", "asset": "ETH", "side": "buy", "size": 0.1,
                "limit_px": 2000, "tif": "ioc", "agent": "bob"}),
        )
        .unwrap_err();
        assert!(e.contains("agent"), "{e}");
    }
}
