//! A local Hyperliquid market for paper mode: a loopback HTTP server answering the `/info`
//! reads a paper deputy makes (`meta`, `allMids`, `fundingHistory`), driven by a seeded market
//! path that the demo or the test advances explicitly ([`LocalMarket::step`],
//! [`LocalMarket::set_step`]), never by wall time.
//!
//! It is a market-data source, not an exchange: `/exchange` answers HTTP 400 saying so, and
//! account reads (`clearinghouseState`, `openOrders`) are refused the same way, since paper
//! keeps its book in the orchestrator's database.
//!
//! The path ([`MarketPath`]): each coin starts at its price and, every step, moves by a
//! uniform random number of basis points in `[-vol_bps, vol_bps]` drawn from a seeded
//! splitmix64 generator, rounded to the cent. A scripted [`Event`] replaces that step's walk
//! with an exact move (`move_bps`: a gap, or a crash of −2000 for −20 %) or sets the coin's
//! hourly funding rate from that step on. Prices are integers of micro-USD, so the same seed
//! gives the same path on every machine and a crash moves the mark by exactly its percentage.
//! Step `n` is at `start_ms + n × step_ms` (one hour by default: one funding payment a step).

use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};

/// Micro-units in one USD.
const MICROS: i128 = 1_000_000;
/// An hour, in milliseconds: the default step and Hyperliquid's funding interval.
pub const HOUR_MS: u64 = 3_600_000;
/// The largest request body read (a market-data query is a few dozen bytes).
const MAX_BODY: usize = 64 * 1024;

/// One perpetual of the market.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Coin {
    /// The venue's name (`ETH`).
    pub name: String,
    /// The price at step 0, micro-USD.
    pub start_micros: u64,
    /// The size grid's decimals (`meta`'s `szDecimals`).
    pub sz_decimals: u32,
    /// The venue's maximum leverage.
    pub max_leverage: u32,
    /// The hourly funding rate at step 0, a decimal text as the venue writes it
    /// (`"0.0000125"`; positive: longs pay shorts).
    pub funding_rate: String,
}

/// What happens at one step of the path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// The coin's mark moves by exactly `move_bps` basis points at `step` instead of walking.
    Move {
        step: u64,
        coin: String,
        move_bps: i32,
    },
    /// The coin's hourly funding rate is `rate` (a decimal text) from `step` on.
    Funding {
        step: u64,
        coin: String,
        rate: String,
    },
}

/// A seeded market path (module docs).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MarketPath {
    pub seed: u64,
    /// The walk's largest move per step, basis points.
    pub vol_bps: u32,
    pub start_ms: u64,
    pub step_ms: u64,
    pub coins: Vec<Coin>,
    pub events: Vec<Event>,
}

/// The marks and funding rates at one step.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Snapshot {
    pub step: u64,
    pub time_ms: u64,
    /// Per coin, in the order of [`MarketPath::coins`]: the mark in micro-USD.
    pub marks: Vec<u64>,
    /// Per coin: the hourly funding rate in force.
    pub rates: Vec<String>,
}

impl MarketPath {
    /// BTC at 60 000 USD and ETH at 2 000 USD (indices 0 and 1, as on Hyperliquid's testnet
    /// and in `vigil-signer dev-init --hyperliquid-paper`'s policy), hourly steps, the funding
    /// rate 0.00001.
    pub fn btc_eth(seed: u64, vol_bps: u32, start_ms: u64) -> MarketPath {
        let coin = |name: &str, usd: u64, sz_decimals, max_leverage| Coin {
            name: name.to_owned(),
            start_micros: usd * 1_000_000,
            sz_decimals,
            max_leverage,
            funding_rate: "0.00001".to_owned(),
        };
        MarketPath {
            seed,
            vol_bps,
            start_ms,
            step_ms: HOUR_MS,
            coins: vec![coin("BTC", 60_000, 5, 40), coin("ETH", 2_000, 4, 25)],
            events: Vec::new(),
        }
    }

    /// The path with `event` added.
    #[must_use]
    pub fn with(mut self, event: Event) -> MarketPath {
        self.events.push(event);
        self
    }

    /// Steps `0..steps` of the path as a recorded window, the JSON the proposal check replays
    /// (`vigil-orchestrator proposal check --recording`): the network, the coins' grids (each
    /// coin's index is its place in [`coins`](Self::coins)) and each step's time (Unix
    /// seconds) and marks (decimal USD).
    pub fn recording(&self, network: &str, steps: u64) -> serde_json::Value {
        let perps: serde_json::Map<String, serde_json::Value> = self
            .coins
            .iter()
            .enumerate()
            .map(|(i, c)| {
                (
                    c.name.clone(),
                    serde_json::json!({"index": i, "sz_decimals": c.sz_decimals,
                        "max_leverage": c.max_leverage}),
                )
            })
            .collect();
        let steps: Vec<serde_json::Value> = (0..steps)
            .map(|step| {
                let snap = self.at(step);
                let marks: serde_json::Map<String, serde_json::Value> = self
                    .coins
                    .iter()
                    .zip(&snap.marks)
                    .map(|(c, m)| (c.name.clone(), usd_text(*m).into()))
                    .collect();
                serde_json::json!({"time": snap.time_ms / 1000, "marks": marks})
            })
            .collect();
        serde_json::json!({"network": network, "perps": perps, "steps": steps})
    }

    /// The marks and rates at `step` (walked from step 0: the same seed, the same answer).
    pub fn at(&self, step: u64) -> Snapshot {
        let mut rng = SplitMix(self.seed);
        let mut marks: Vec<i128> = self
            .coins
            .iter()
            .map(|c| i128::from(c.start_micros))
            .collect();
        let mut rates: Vec<String> = self.coins.iter().map(|c| c.funding_rate.clone()).collect();
        for s in 0..=step {
            for (i, coin) in self.coins.iter().enumerate() {
                // The draw happens every step, event or not, so an event never shifts the
                // walk of the steps after it.
                let span = i128::from(self.vol_bps) * 2 + 1;
                let walk = i128::from(rng.next() % u64::try_from(span).unwrap_or(1))
                    - i128::from(self.vol_bps);
                let moved = self.events.iter().find_map(|e| match e {
                    Event::Move {
                        step: at,
                        coin: c,
                        move_bps,
                    } if *at == s && *c == coin.name => Some(i128::from(*move_bps)),
                    _ => None,
                });
                for e in &self.events {
                    if let Event::Funding {
                        step: at,
                        coin: c,
                        rate,
                    } = e
                        && *at == s
                        && *c == coin.name
                    {
                        rates[i] = rate.clone();
                    }
                }
                if s == 0 {
                    continue;
                }
                marks[i] = match moved {
                    // Exact: micro-USD times (10 000 + bps) / 10 000; a cent price always divides.
                    Some(bps) => marks[i] * (10_000 + bps) / 10_000,
                    None => {
                        let next = marks[i] * (10_000 + walk) / 10_000;
                        let cent = MICROS / 100;
                        (next + cent / 2) / cent * cent
                    }
                }
                .max(MICROS / 100);
            }
        }
        Snapshot {
            step,
            time_ms: self.start_ms + step * self.step_ms,
            marks: marks
                .into_iter()
                .map(|m| u64::try_from(m).unwrap_or(0))
                .collect(),
            rates,
        }
    }
}

/// `micros` as the venue's decimal text (`2013.75`, no trailing zeros).
pub fn usd_text(micros: u64) -> String {
    let whole = micros / 1_000_000;
    let frac = micros % 1_000_000;
    if frac == 0 {
        return whole.to_string();
    }
    let text = format!("{whole}.{frac:06}");
    text.trim_end_matches('0').to_owned()
}

/// splitmix64: a small, well-known generator; enough for a test path, never for keys.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// A running local market; stops accepting connections when dropped.
#[derive(Debug)]
pub struct LocalMarket {
    /// `http://127.0.0.1:<port>` (the orchestrator's `hyperliquid_urls` entry).
    pub url: String,
    state: Arc<Market>,
    accept: tokio::task::JoinHandle<()>,
}

#[derive(Debug)]
struct Market {
    path: MarketPath,
    step: Mutex<u64>,
}

impl LocalMarket {
    /// Serves `path` at step 0 on 127.0.0.1 at a free port (inside a tokio runtime).
    pub async fn start(path: MarketPath) -> std::io::Result<LocalMarket> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        let state = Arc::new(Market {
            path,
            step: Mutex::new(0),
        });
        let shared = state.clone();
        let accept = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let state = shared.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req| handle(state.clone(), req));
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Ok(LocalMarket { url, state, accept })
    }

    /// Moves the market one step on; the snapshot it now serves.
    pub fn step(&self) -> Snapshot {
        let mut step = lock(&self.state.step);
        *step += 1;
        self.state.path.at(*step)
    }

    /// Moves the market to `step`; the snapshot it now serves.
    pub fn set_step(&self, step: u64) -> Snapshot {
        *lock(&self.state.step) = step;
        self.state.path.at(step)
    }

    /// What the market serves now.
    pub fn now(&self) -> Snapshot {
        self.state.path.at(*lock(&self.state.step))
    }

    /// The path it follows.
    pub fn path(&self) -> &MarketPath {
        &self.state.path
    }
}

impl Drop for LocalMarket {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding the lock leaves a plain integer: still usable.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

async fn handle(
    state: Arc<Market>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = req.uri().path().to_owned();
    let body = req.into_body().collect().await.map(|b| b.to_bytes());
    let (status, answer) = match (path.as_str(), body) {
        ("/info", Ok(b)) if b.len() <= MAX_BODY => match serde_json::from_slice::<Value>(&b) {
            Ok(request) => state.info(&request),
            Err(e) => bad(format!(
                "the /info body is not JSON ({e}); send {{\"type\": \"allMids\"}}"
            )),
        },
        ("/info", Ok(_)) => bad(format!("the /info body is larger than {MAX_BODY} bytes")),
        ("/info", Err(e)) => bad(format!("the /info body could not be read ({e})")),
        ("/exchange", _) => bad(
            "this is a local market-data source for paper mode, not an exchange: /exchange takes \
             no orders (paper fills are the orchestrator's)"
                .to_owned(),
        ),
        (other, _) => (
            StatusCode::NOT_FOUND,
            json!({"status": "err", "response": format!("no route {other}: use /info")}),
        ),
    };
    let mut response = Response::new(Full::new(Bytes::from(answer.to_string())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    Ok(response)
}

fn bad(message: String) -> (StatusCode, Value) {
    (
        StatusCode::BAD_REQUEST,
        json!({"status": "err", "response": message}),
    )
}

impl Market {
    fn info(&self, request: &Value) -> (StatusCode, Value) {
        let step = *lock(&self.step);
        let now = self.path.at(step);
        match request.get("type").and_then(Value::as_str) {
            Some("meta") => (
                StatusCode::OK,
                json!({"universe": self.path.coins.iter().map(|c| json!({
                    "name": c.name, "szDecimals": c.sz_decimals, "maxLeverage": c.max_leverage
                })).collect::<Vec<_>>()}),
            ),
            Some("allMids") => (
                StatusCode::OK,
                Value::Object(
                    self.path
                        .coins
                        .iter()
                        .zip(&now.marks)
                        .map(|(c, m)| (c.name.clone(), Value::String(usd_text(*m))))
                        .collect(),
                ),
            ),
            Some("fundingHistory") => self.funding_history(request, step),
            Some(t @ ("clearinghouseState" | "openOrders" | "userFills" | "userFunding")) => {
                bad(format!(
                    "{t}: a local market has no accounts; paper keeps its book in the orchestrator"
                ))
            }
            Some(other) => bad(format!(
                "unknown /info type {:?}: this market answers meta, allMids, fundingHistory",
                other.chars().take(40).collect::<String>()
            )),
            None => {
                bad("the /info body has no \"type\" string (e.g. {\"type\": \"allMids\"})".into())
            }
        }
    }

    /// `{"type": "fundingHistory", "coin": "ETH", "startTime": ms}`: one entry per step from
    /// `startTime` up to the current step, as Hyperliquid lists them.
    fn funding_history(&self, request: &Value, step: u64) -> (StatusCode, Value) {
        let Some(coin) = request.get("coin").and_then(Value::as_str) else {
            return bad("fundingHistory needs a \"coin\" string".into());
        };
        let Some(index) = self.path.coins.iter().position(|c| c.name == coin) else {
            return bad(format!(
                "fundingHistory: no perpetual {:?} in this market",
                coin.chars().take(20).collect::<String>()
            ));
        };
        let Some(start) = request.get("startTime").and_then(Value::as_u64) else {
            return bad("fundingHistory needs \"startTime\" in milliseconds".into());
        };
        let list: Vec<Value> = (0..=step)
            .map(|s| self.path.at(s))
            .filter(|snap| snap.time_ms >= start)
            .map(|snap| {
                json!({"coin": coin, "fundingRate": snap.rates[index], "premium": "0",
                       "time": snap.time_ms})
            })
            .collect();
        (StatusCode::OK, Value::Array(list))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_path_and_another_seed_another() {
        let a = MarketPath::btc_eth(7, 50, 0);
        let walk = |p: &MarketPath| (0..30).map(|s| p.at(s).marks).collect::<Vec<_>>();
        assert_eq!(walk(&a), walk(&MarketPath::btc_eth(7, 50, 0)));
        assert_ne!(walk(&a), walk(&MarketPath::btc_eth(8, 50, 0)));
        // It walks, within the bound, on the cent.
        let (p0, p1) = (a.at(0).marks[1], a.at(1).marks[1]);
        assert_eq!(p0, 2_000_000_000);
        assert!(
            p1.abs_diff(p0) <= 2_000_000_000 / 10_000 * 50 + 5_000,
            "{p0} → {p1}"
        );
        assert_eq!(p1 % 10_000, 0);
    }

    #[test]
    fn a_scripted_crash_moves_the_mark_by_exactly_its_percentage() {
        let path = MarketPath::btc_eth(19, 30, 0).with(Event::Move {
            step: 5,
            coin: "ETH".into(),
            move_bps: -2000,
        });
        let (before, after) = (path.at(4).marks[1], path.at(5).marks[1]);
        assert_eq!(u128::from(after) * 10_000, u128::from(before) * 8_000);
        // The walk after the crash is the walk without it, from the new level: BTC unchanged.
        let plain = MarketPath::btc_eth(19, 30, 0);
        assert_eq!(path.at(9).marks[0], plain.at(9).marks[0]);
        assert_ne!(path.at(5).marks[1], plain.at(5).marks[1]);
    }

    #[test]
    fn prices_print_as_the_venue_writes_them() {
        assert_eq!(usd_text(2_000_000_000), "2000");
        assert_eq!(usd_text(2_013_750_000), "2013.75");
        assert_eq!(usd_text(1_610_960_000), "1610.96");
        assert_eq!(usd_text(5), "0.000005");
    }

    async fn post(url: &str, path: &str, body: &str) -> (u16, Value) {
        let r = http_post(url, path, body).await;
        (r.0, serde_json::from_str(&r.1).unwrap())
    }

    /// A bare HTTP/1.1 POST over a TCP stream (the crate has no HTTP client of its own).
    async fn http_post(url: &str, path: &str, body: &str) -> (u16, String) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let host = url.trim_start_matches("http://");
        let mut s = tokio::net::TcpStream::connect(host).await.unwrap();
        let req = format!(
            "POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        s.write_all(req.as_bytes()).await.unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        let status = out[9..12].parse().unwrap();
        let body = out.split("\r\n\r\n").nth(1).unwrap().to_owned();
        (status, body)
    }

    #[tokio::test]
    async fn it_serves_the_step_it_is_told_and_refuses_what_it_is_not() {
        let path = MarketPath::btc_eth(3, 20, 1_000).with(Event::Funding {
            step: 2,
            coin: "ETH".into(),
            rate: "-0.00005".into(),
        });
        let market = LocalMarket::start(path.clone()).await.unwrap();
        let (status, meta) = post(&market.url, "/info", r#"{"type":"meta"}"#).await;
        assert_eq!(status, 200);
        assert_eq!(meta["universe"][1]["name"], "ETH");
        assert_eq!(meta["universe"][0]["maxLeverage"], 40);
        let (_, mids) = post(&market.url, "/info", r#"{"type":"allMids"}"#).await;
        assert_eq!(mids["ETH"], "2000");
        let snap = market.set_step(3);
        let (_, mids) = post(&market.url, "/info", r#"{"type":"allMids"}"#).await;
        assert_eq!(mids["ETH"], usd_text(snap.marks[1]).as_str());
        assert_eq!(market.step().step, 4);
        let (_, history) = post(
            &market.url,
            "/info",
            &format!(
                r#"{{"type":"fundingHistory","coin":"ETH","startTime":{}}}"#,
                1_000 + HOUR_MS
            ),
        )
        .await;
        let rates: Vec<&str> = history
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["fundingRate"].as_str().unwrap())
            .collect();
        assert_eq!(rates, ["0.00001", "-0.00005", "-0.00005", "-0.00005"]);
        for (body, says) in [
            ("{not json", "not JSON"),
            (r#"{"kind":"meta"}"#, "no \"type\""),
            (r#"{"type":"l2Book"}"#, "unknown /info type"),
            (
                r#"{"type":"fundingHistory","coin":"DOGE","startTime":0}"#,
                "no perpetual",
            ),
            (r#"{"type":"fundingHistory","coin":"ETH"}"#, "startTime"),
            (
                r#"{"type":"clearinghouseState","user":"0x00"}"#,
                "no accounts",
            ),
        ] {
            let (status, answer) = post(&market.url, "/info", body).await;
            assert_eq!(status, 400, "{body}");
            assert!(
                answer["response"].as_str().unwrap().contains(says),
                "{body}: {answer}"
            );
        }
        let (status, answer) = post(&market.url, "/exchange", "{}").await;
        assert_eq!(status, 400);
        assert!(
            answer["response"]
                .as_str()
                .unwrap()
                .contains("not an exchange")
        );
    }
}
