//! A client of Hyperliquid's HTTP API: `/info` (the perpetuals' universe, mid prices, an
//! account's margin state and positions, its open orders and fills) and `/exchange` (posting
//! an action the signer signed).
//!
//! The orchestrator never signs: what it posts is the signer's answer, passed through byte
//! for byte ([`SignedAction`]). The venue is untrusted input like a chain's node: every
//! answer is parsed strictly (numbers are the exchange's decimal strings and must be plain,
//! finite and, where the field cannot be negative, non-negative; addresses and coins are
//! checked; unknown order statuses are errors), bodies are capped by the shared transport
//! ([`super::jsonrpc`]), and text quoted from the venue is cut short and stripped of control
//! characters.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde_json::{Value, json};

use super::jsonrpc::{JsonRpc, RpcError, malformed, quote, quote_str};

mod signed;
pub use signed::SignedAction;

/// A decimal as the exchange writes it (`"2500.5"`, `"-0.01"`), kept as text and as `f64`.
/// The text is what is compared and stored; the `f64` is for the risk layers' arithmetic.
#[derive(Clone, Debug, PartialEq)]
pub struct Dec {
    text: String,
    value: f64,
}

impl Dec {
    /// Parses a plain decimal: an optional `-`, digits, at most one point between digits.
    fn parse(what: &str, field: &str, v: &Value) -> Result<Dec, RpcError> {
        let bad = || {
            malformed(
                what,
                format!("{field} is {}, not a decimal string", quote(v)),
            )
        };
        let text = v.as_str().ok_or_else(bad)?;
        let digits = text.strip_prefix('-').unwrap_or(text);
        let (whole, frac) = digits.split_once('.').unwrap_or((digits, "0"));
        let plain =
            |s: &str| !s.is_empty() && s.len() <= 40 && s.bytes().all(|b| b.is_ascii_digit());
        if !plain(whole) || !plain(frac) {
            return Err(bad());
        }
        let value: f64 = text.parse().map_err(|_| bad())?;
        if !value.is_finite() {
            return Err(bad());
        }
        Ok(Dec {
            text: text.to_owned(),
            value,
        })
    }

    /// As [`Dec::parse`], refusing a negative value.
    fn non_negative(what: &str, field: &str, v: &Value) -> Result<Dec, RpcError> {
        let d = Dec::parse(what, field, v)?;
        if d.text.starts_with('-') {
            return Err(malformed(what, format!("{field} is negative ({})", d.text)));
        }
        Ok(d)
    }

    /// The exchange's text.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The value, for arithmetic.
    pub fn value(&self) -> f64 {
        self.value
    }
}

impl fmt::Display for Dec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// A perpetual of the universe: its index is the asset number orders carry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Perp {
    pub index: u32,
    pub name: String,
    pub sz_decimals: u32,
    pub max_leverage: u32,
}

/// One open position.
#[derive(Clone, Debug, PartialEq)]
pub struct Position {
    pub coin: String,
    /// Signed size: positive long, negative short.
    pub szi: Dec,
    pub entry_px: Dec,
    pub position_value: Dec,
    pub unrealized_pnl: Dec,
    pub leverage: u32,
    pub cross: bool,
}

/// An account's margin state (`clearinghouseState`).
#[derive(Clone, Debug, PartialEq)]
pub struct AccountState {
    pub account_value: Dec,
    pub total_notional: Dec,
    pub margin_used: Dec,
    pub withdrawable: Dec,
    pub positions: Vec<Position>,
}

/// A resting order.
#[derive(Clone, Debug, PartialEq)]
pub struct OpenOrder {
    pub coin: String,
    pub oid: u64,
    pub buy: bool,
    pub limit_px: Dec,
    pub sz: Dec,
    pub timestamp_ms: u64,
}

/// A fill of one of the account's orders.
#[derive(Clone, Debug, PartialEq)]
pub struct Fill {
    pub coin: String,
    pub oid: u64,
    pub buy: bool,
    pub px: Dec,
    pub sz: Dec,
    pub fee: Dec,
    pub closed_pnl: Dec,
    pub time_ms: u64,
}

/// One hourly funding payment on a position of the account (`userFunding`).
#[derive(Clone, Debug, PartialEq)]
pub struct FundingPayment {
    pub coin: String,
    /// USDC the account received (negative: it paid).
    pub usdc: Dec,
    /// The position's signed size when it was paid.
    pub szi: Dec,
    /// The hourly rate applied.
    pub rate: Dec,
    pub time_ms: u64,
}

/// What became of one order of an `order` action.
#[derive(Clone, Debug, PartialEq)]
pub enum OrderStatus {
    Resting {
        oid: u64,
    },
    Filled {
        oid: u64,
        total_sz: Dec,
        avg_px: Dec,
    },
    /// The exchange refused this order (its reason, sanitised).
    Refused(String),
}

/// The exchange's answer to an action it accepted.
#[derive(Clone, Debug, PartialEq)]
pub enum Accepted {
    Orders(Vec<OrderStatus>),
    /// Per cancel: `None` cancelled, `Some(reason)` not.
    Cancels(Vec<Option<String>>),
    /// Leverage, the dead-man switch, transfers: nothing more to say.
    Done,
}

/// Hyperliquid's API at one base URL.
#[derive(Debug)]
pub struct HyperliquidApi {
    http: JsonRpc,
}

impl HyperliquidApi {
    /// The API at `base` (`https://api.hyperliquid.xyz`, the testnet's, or a loopback peer).
    pub fn new(base: &str, timeout: Duration) -> Result<HyperliquidApi, RpcError> {
        Ok(HyperliquidApi {
            http: JsonRpc::new(base, timeout)?,
        })
    }

    async fn info(&self, what: &'static str, request: Value) -> Result<Value, RpcError> {
        let body = self.http.post(Some("info"), what, &request).await?;
        let answer: Value = serde_json::from_slice(&body)
            .map_err(|e| malformed(what, format!("the answer is not JSON ({e})")))?;
        if answer.get("status").and_then(Value::as_str) == Some("err") {
            return Err(RpcError::Rpc {
                code: 0,
                message: quote_opt_str(answer.get("response")),
            });
        }
        Ok(answer)
    }

    /// The perpetuals' universe, in asset-index order.
    pub async fn meta(&self) -> Result<Vec<Perp>, RpcError> {
        const W: &str = "info meta";
        let answer = self.info(W, json!({"type": "meta"})).await?;
        let universe = answer
            .get("universe")
            .and_then(Value::as_array)
            .ok_or_else(|| malformed(W, "no \"universe\" list"))?;
        universe
            .iter()
            .enumerate()
            .map(|(i, p)| {
                Ok(Perp {
                    index: u32::try_from(i).map_err(|_| malformed(W, "too many assets"))?,
                    name: coin(W, p.get("name"))?,
                    sz_decimals: small_u32(W, "szDecimals", p.get("szDecimals"), 8)?,
                    max_leverage: small_u32(W, "maxLeverage", p.get("maxLeverage"), 200)?,
                })
            })
            .collect()
    }

    /// Mid prices by coin.
    pub async fn mids(&self) -> Result<BTreeMap<String, Dec>, RpcError> {
        const W: &str = "info allMids";
        let answer = self.info(W, json!({"type": "allMids"})).await?;
        let map = answer
            .as_object()
            .ok_or_else(|| malformed(W, "the answer is not an object of prices"))?;
        map.iter()
            .map(|(k, v)| {
                let name = coin(W, Some(&Value::String(k.clone())))?;
                Ok((name, Dec::non_negative(W, k, v)?))
            })
            .collect()
    }

    /// The margin state and positions of `user` (a master address).
    pub async fn account(&self, user: &str) -> Result<AccountState, RpcError> {
        const W: &str = "info clearinghouseState";
        let answer = self
            .info(
                W,
                json!({"type": "clearinghouseState", "user": address(user)?}),
            )
            .await?;
        let summary = answer
            .get("marginSummary")
            .ok_or_else(|| malformed(W, "no marginSummary"))?;
        let field = |v: &Value, name: &str| v.get(name).cloned().unwrap_or(Value::Null);
        let positions = answer
            .get("assetPositions")
            .and_then(Value::as_array)
            .ok_or_else(|| malformed(W, "no assetPositions list"))?
            .iter()
            .map(|entry| {
                let p = entry
                    .get("position")
                    .ok_or_else(|| malformed(W, "an asset position without \"position\""))?;
                let lev = p
                    .get("leverage")
                    .ok_or_else(|| malformed(W, "a position without leverage"))?;
                Ok(Position {
                    coin: coin(W, p.get("coin"))?,
                    szi: Dec::parse(W, "szi", &field(p, "szi"))?,
                    entry_px: Dec::non_negative(W, "entryPx", &field(p, "entryPx"))?,
                    position_value: Dec::non_negative(
                        W,
                        "positionValue",
                        &field(p, "positionValue"),
                    )?,
                    unrealized_pnl: Dec::parse(W, "unrealizedPnl", &field(p, "unrealizedPnl"))?,
                    leverage: small_u32(W, "leverage.value", lev.get("value"), 200)?,
                    cross: match lev.get("type").and_then(Value::as_str) {
                        Some("cross") => true,
                        Some("isolated") => false,
                        _ => {
                            return Err(malformed(
                                W,
                                "leverage type is neither cross nor isolated",
                            ));
                        }
                    },
                })
            })
            .collect::<Result<_, RpcError>>()?;
        Ok(AccountState {
            account_value: Dec::parse(W, "accountValue", &field(summary, "accountValue"))?,
            total_notional: Dec::non_negative(W, "totalNtlPos", &field(summary, "totalNtlPos"))?,
            margin_used: Dec::non_negative(
                W,
                "totalMarginUsed",
                &field(summary, "totalMarginUsed"),
            )?,
            withdrawable: Dec::non_negative(W, "withdrawable", &field(&answer, "withdrawable"))?,
            positions,
        })
    }

    /// The resting orders of `user`.
    pub async fn open_orders(&self, user: &str) -> Result<Vec<OpenOrder>, RpcError> {
        const W: &str = "info openOrders";
        let answer = self
            .info(W, json!({"type": "openOrders", "user": address(user)?}))
            .await?;
        list(W, &answer)?
            .iter()
            .map(|o| {
                Ok(OpenOrder {
                    coin: coin(W, o.get("coin"))?,
                    oid: u64_of(W, "oid", o.get("oid"))?,
                    buy: side(W, o.get("side"))?,
                    limit_px: Dec::non_negative(
                        W,
                        "limitPx",
                        o.get("limitPx").unwrap_or(&Value::Null),
                    )?,
                    sz: Dec::non_negative(W, "sz", o.get("sz").unwrap_or(&Value::Null))?,
                    timestamp_ms: u64_of(W, "timestamp", o.get("timestamp"))?,
                })
            })
            .collect()
    }

    /// The fills of `user`'s orders, newest first (as the exchange lists them).
    pub async fn fills(&self, user: &str) -> Result<Vec<Fill>, RpcError> {
        const W: &str = "info userFills";
        let answer = self
            .info(W, json!({"type": "userFills", "user": address(user)?}))
            .await?;
        let null = Value::Null;
        list(W, &answer)?
            .iter()
            .map(|f| {
                let get = |k: &str| f.get(k).unwrap_or(&null);
                Ok(Fill {
                    coin: coin(W, f.get("coin"))?,
                    oid: u64_of(W, "oid", f.get("oid"))?,
                    buy: side(W, f.get("side"))?,
                    px: Dec::non_negative(W, "px", get("px"))?,
                    sz: Dec::non_negative(W, "sz", get("sz"))?,
                    fee: Dec::parse(W, "fee", get("fee"))?,
                    closed_pnl: Dec::parse(W, "closedPnl", get("closedPnl"))?,
                    time_ms: u64_of(W, "time", f.get("time"))?,
                })
            })
            .collect()
    }

    /// The funding `user` received or paid since `start_ms` (`userFunding`), oldest first.
    pub async fn funding(
        &self,
        user: &str,
        start_ms: u64,
    ) -> Result<Vec<FundingPayment>, RpcError> {
        const W: &str = "info userFunding";
        let answer = self
            .info(
                W,
                json!({"type": "userFunding", "user": address(user)?, "startTime": start_ms}),
            )
            .await?;
        let null = Value::Null;
        list(W, &answer)?
            .iter()
            .map(|f| {
                let delta = f.get("delta").unwrap_or(&null);
                let get = |k: &str| delta.get(k).unwrap_or(&null);
                if get("type").as_str() != Some("funding") {
                    return Err(malformed(
                        W,
                        format!("delta.type is {}, not \"funding\"", quote(get("type"))),
                    ));
                }
                Ok(FundingPayment {
                    coin: coin(W, delta.get("coin"))?,
                    usdc: Dec::parse(W, "delta.usdc", get("usdc"))?,
                    szi: Dec::parse(W, "delta.szi", get("szi"))?,
                    rate: Dec::parse(W, "delta.fundingRate", get("fundingRate"))?,
                    time_ms: u64_of(W, "time", f.get("time"))?,
                })
            })
            .collect()
    }

    /// The venue's hourly funding rates of `coin` from `start_ms` on (`fundingHistory`):
    /// `(time_ms, rate)`, as listed. Paper mode accrues funding from them.
    pub async fn funding_history(
        &self,
        coin_name: &str,
        start_ms: u64,
    ) -> Result<Vec<(u64, Dec)>, RpcError> {
        const W: &str = "info fundingHistory";
        let answer = self
            .info(
                W,
                json!({"type": "fundingHistory", "coin": coin_name, "startTime": start_ms}),
            )
            .await?;
        list(W, &answer)?
            .iter()
            .map(|f| {
                Ok((
                    u64_of(W, "time", f.get("time"))?,
                    Dec::parse(
                        W,
                        "fundingRate",
                        f.get("fundingRate").unwrap_or(&Value::Null),
                    )?,
                ))
            })
            .collect()
    }

    /// Posts a signed action, its body byte for byte as the signer wrote it;
    /// `Err(RpcError::Rpc)` carries the exchange's refusal.
    pub async fn exchange(&self, signed: &SignedAction) -> Result<Accepted, RpcError> {
        const W: &str = "exchange";
        let body = self
            .http
            .post_bytes(Some("exchange"), W, signed.body().to_vec())
            .await?;
        let answer: Value = serde_json::from_slice(&body)
            .map_err(|e| malformed(W, format!("the answer is not JSON ({e})")))?;
        parse_exchange_answer(&answer)
    }
}

/// `{"status": "ok", "response": {...}}` or `{"status": "err", "response": "<why>"}`.
fn parse_exchange_answer(answer: &Value) -> Result<Accepted, RpcError> {
    const W: &str = "exchange";
    match answer.get("status").and_then(Value::as_str) {
        Some("ok") => {}
        Some("err") => {
            return Err(RpcError::Rpc {
                code: 0,
                message: quote_opt_str(answer.get("response")),
            });
        }
        _ => {
            return Err(malformed(
                W,
                format!("the status of {} is neither ok nor err", quote(answer)),
            ));
        }
    }
    let response = answer
        .get("response")
        .ok_or_else(|| malformed(W, "an ok answer without a response"))?;
    let statuses = || {
        response
            .get("data")
            .and_then(|d| d.get("statuses"))
            .and_then(Value::as_array)
            .ok_or_else(|| malformed(W, "no data.statuses list"))
    };
    match response.get("type").and_then(Value::as_str) {
        Some("order") => statuses()?
            .iter()
            .map(|s| {
                if let Some(r) = s.get("resting") {
                    return Ok(OrderStatus::Resting {
                        oid: u64_of(W, "resting.oid", r.get("oid"))?,
                    });
                }
                if let Some(f) = s.get("filled") {
                    let null = Value::Null;
                    return Ok(OrderStatus::Filled {
                        oid: u64_of(W, "filled.oid", f.get("oid"))?,
                        total_sz: Dec::non_negative(
                            W,
                            "totalSz",
                            f.get("totalSz").unwrap_or(&null),
                        )?,
                        avg_px: Dec::non_negative(W, "avgPx", f.get("avgPx").unwrap_or(&null))?,
                    });
                }
                if let Some(e) = s.get("error") {
                    return Ok(OrderStatus::Refused(quote_opt_str(Some(e))));
                }
                Err(malformed(
                    W,
                    format!("an order status {} of no known kind", quote(s)),
                ))
            })
            .collect::<Result<_, _>>()
            .map(Accepted::Orders),
        Some("cancel") => statuses()?
            .iter()
            .map(|s| match s {
                Value::String(t) if t == "success" => Ok(None),
                _ => match s.get("error") {
                    Some(e) => Ok(Some(quote_opt_str(Some(e)))),
                    None => Err(malformed(
                        W,
                        format!("a cancel status {} of no known kind", quote(s)),
                    )),
                },
            })
            .collect::<Result<_, _>>()
            .map(Accepted::Cancels),
        Some("default") => Ok(Accepted::Done),
        _ => Err(malformed(
            W,
            format!("a response {} of no known type", quote(response)),
        )),
    }
}

fn quote_opt_str(v: Option<&Value>) -> String {
    match v {
        Some(Value::String(s)) => quote_str(s),
        Some(other) => quote(other),
        None => "no reason given".to_owned(),
    }
}

fn list<'a>(what: &str, v: &'a Value) -> Result<&'a Vec<Value>, RpcError> {
    v.as_array()
        .ok_or_else(|| malformed(what, format!("the answer {} is not a list", quote(v))))
}

/// A coin name: 1 to 20 ASCII letters, digits or `-`/`@`/`:` (spot and builder-deployed names).
fn coin(what: &str, v: Option<&Value>) -> Result<String, RpcError> {
    match v.and_then(Value::as_str) {
        Some(s)
            if !s.is_empty()
                && s.len() <= 20
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-@:".contains(&b)) =>
        {
            Ok(s.to_owned())
        }
        _ => Err(malformed(
            what,
            format!(
                "coin {} is not a coin name",
                v.map_or_else(|| "missing".into(), quote)
            ),
        )),
    }
}

fn u64_of(what: &str, field: &str, v: Option<&Value>) -> Result<u64, RpcError> {
    v.and_then(Value::as_u64).ok_or_else(|| {
        malformed(
            what,
            format!(
                "{field} is {}, not a whole number",
                v.map_or_else(|| "missing".into(), quote)
            ),
        )
    })
}

fn small_u32(what: &str, field: &str, v: Option<&Value>, max: u32) -> Result<u32, RpcError> {
    let n = u64_of(what, field, v)?;
    u32::try_from(n)
        .ok()
        .filter(|n| *n <= max)
        .ok_or_else(|| malformed(what, format!("{field} is {n}, above {max}")))
}

fn side(what: &str, v: Option<&Value>) -> Result<bool, RpcError> {
    match v.and_then(Value::as_str) {
        Some("B") => Ok(true),
        Some("A") => Ok(false),
        _ => Err(malformed(what, "side is neither B nor A")),
    }
}

/// `0x` + 40 hex digits, sent lowercase (the exchange's form).
fn address(user: &str) -> Result<String, RpcError> {
    let hex = user.strip_prefix("0x").unwrap_or("");
    if hex.len() == 40 && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(user.to_ascii_lowercase())
    } else {
        Err(RpcError::BadInput(format!(
            "{} is not an account address: give 0x and 40 hex digits",
            quote_str(user)
        )))
    }
}

#[cfg(test)]
mod tests;
