//! Tests of the policy decision: tables of intents and ledgers, each with the verdict and the rule that must decide it.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use vigil_protocol::{Amount, Chain, Network};

use super::*;
use crate::policy::parse;
use vigil_protocol::TransferIntent;

/// What a Solana transfer spends: its amount of its asset.
fn spends_of(intent: &Intent) -> Vec<Spend> {
    match intent {
        Intent::Transfer(t) => vec![Spend {
            asset: t.asset,
            amount: t.amount.base_units(),
        }],
        _ => Vec::new(),
    }
}

const NOW: u64 = 1_700_000_000;

fn addr(b: u8) -> String {
    bs58::encode([b; 32]).into_string()
}

/// `trader`: devnet + testnet, recipients 1 and 2, 3 requests/min, SOL cap 1000,
/// 24 h 5000, threshold 500. `whale`: mainnet only, recipient 1, huge caps.
fn policy() -> Policy {
    let toml = format!(
        r#"
version = 1
[agents.trader]
actions = ["transfer"]
networks = ["solana:devnet", "solana:testnet"]
recipients = ["{r1}", "{r2}"]
rate_limit_per_minute = 3
[agents.trader.assets.SOL]
chain = "solana"
per_tx_cap = "1000"
velocity_24h = "5000"
approval_threshold = "500"

[agents.whale]
actions = ["transfer"]
networks = ["solana:mainnet"]
recipients = ["{r1}"]
rate_limit_per_minute = 1
[agents.whale.assets.SOL]
chain = "solana"
per_tx_cap = "340282366920938463463374607431768211455"
velocity_24h = "340282366920938463463374607431768211455"
approval_threshold = "1000"
"#,
        r1 = addr(1),
        r2 = addr(2)
    );
    parse(toml.as_bytes()).unwrap()
}

/// A ledger as plain data: spends `(agent, asset, unix time, amount)`, request times
/// and operator-set caps.
#[derive(Default)]
struct FakeHistory {
    spends: Vec<(String, String, u64, u128)>,
    requests: Vec<(String, u64)>,
    overrides: Vec<(String, String, CapOverride)>,
}

impl History for FakeHistory {
    fn spent_since(&self, agent: &AgentId, asset: AssetSymbol, since: u64) -> u128 {
        self.spends
            .iter()
            .filter(|(a, s, t, _)| a == agent.as_str() && s == asset.as_str() && *t >= since)
            .fold(0u128, |acc, (_, _, _, v)| acc.saturating_add(*v))
    }
    fn requests_since(&self, agent: &AgentId, since: u64) -> u32 {
        let n = self
            .requests
            .iter()
            .filter(|(a, t)| a == agent.as_str() && *t >= since)
            .count();
        u32::try_from(n).unwrap()
    }
    fn cap_override(&self, agent: &AgentId, asset: AssetSymbol) -> CapOverride {
        self.overrides
            .iter()
            .find(|(a, s, _)| a == agent.as_str() && s == asset.as_str())
            .map_or_else(CapOverride::default, |(_, _, o)| *o)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Expect {
    Allow,
    Approval,
    Deny(Rule),
}

fn outcome(v: &Verdict) -> Expect {
    match v {
        Verdict::Allow => Expect::Allow,
        Verdict::NeedsApproval { .. } => Expect::Approval,
        Verdict::Deny { rule, .. } => Expect::Deny(*rule),
    }
}

/// One request against [`policy`]; spends and requests are given as seconds before NOW
/// and are recorded for `agent` and `SOL`.
#[derive(Clone, Copy)]
struct Row {
    agent: &'static str,
    network: Network,
    asset: &'static str,
    to: u8,
    amount: u128,
    spends_ago: &'static [(u64, u128)],
    requests_ago: &'static [u64],
    tweak: fn(&mut Policy),
}

fn keep(_: &mut Policy) {}
fn no_actions(p: &mut Policy) {
    for a in p.agents.values_mut() {
        a.actions.clear();
    }
}

const OK: Row = Row {
    agent: "trader",
    network: Network::Devnet,
    asset: "SOL",
    to: 1,
    amount: 100,
    spends_ago: &[],
    requests_ago: &[],
    tweak: keep,
};

fn setup(row: &Row) -> (Policy, FakeHistory, AgentId, Intent) {
    let mut policy = policy();
    (row.tweak)(&mut policy);
    let history = FakeHistory {
        spends: row
            .spends_ago
            .iter()
            .map(|&(ago, v)| (row.agent.into(), "SOL".into(), NOW - ago, v))
            .collect(),
        requests: row
            .requests_ago
            .iter()
            .map(|&ago| (row.agent.into(), NOW - ago))
            .collect(),
        overrides: Vec::new(),
    };
    let intent = Intent::Transfer(TransferIntent {
        chain: Chain::Solana,
        network: row.network,
        asset: row.asset.parse().unwrap(),
        to: addr(row.to),
        amount: Amount::from_base_units(row.amount),
    });
    (policy, history, row.agent.parse().unwrap(), intent)
}

/// Runs `decide` and checks the verdict; then checks that `decide_approved` gives the
/// same verdict except that `NeedsApproval` becomes `Allow` (it skips only the threshold).
fn run(row: Row, expect: Expect) {
    let (policy, history, agent, intent) = setup(&row);
    let verdict = decide(&policy, &history, &agent, &intent, &spends_of(&intent), NOW);
    assert_eq!(outcome(&verdict), expect, "decide: {verdict:?}");
    let approved = decide_approved(&policy, &history, &agent, &intent, &spends_of(&intent), NOW);
    let want = if expect == Expect::Approval {
        Expect::Allow
    } else {
        expect
    };
    assert_eq!(outcome(&approved), want, "decide_approved: {approved:?}");
    if let Verdict::Deny { message, .. } | Verdict::NeedsApproval { message } = &verdict {
        assert!(
            message.contains(row.agent),
            "message should name the agent: {message}"
        );
    }
}

macro_rules! decide_test {
        ($($name:ident: $row:expr => $expect:expr;)+) => {
            $(
                #[test]
                fn $name() {
                    run($row, $expect);
                }
            )+
        };
    }

use Expect::{Allow, Approval, Deny};

decide_test! {
    allows_a_small_transfer: OK => Allow;
    unknown_agent_refused: Row { agent: "ghost", ..OK } => Deny(Rule::ActionNotAllowed);
    action_not_listed_refused: Row { tweak: no_actions, ..OK } => Deny(Rule::ActionNotAllowed);
    second_network_allowed: Row { network: Network::Testnet, ..OK } => Allow;
    mainnet_refused_unless_named: Row { network: Network::Mainnet, ..OK } => Deny(Rule::NetworkNotAllowed);
    mainnet_allowed_when_named: Row { agent: "whale", network: Network::Mainnet, ..OK } => Allow;
    devnet_refused_when_only_mainnet_named: Row { agent: "whale", ..OK } => Deny(Rule::NetworkNotAllowed);
    asset_not_listed_refused: Row { asset: "USDC", ..OK } => Deny(Rule::AssetNotAllowed);
    asset_symbol_is_exact: Row { asset: "SOLX", ..OK } => Deny(Rule::AssetNotAllowed);
    recipient_not_listed_refused: Row { to: 3, ..OK } => Deny(Rule::RecipientNotAllowed);
    second_recipient_allowed: Row { to: 2, ..OK } => Allow;
    rate_limit_minus_one_allowed: Row { requests_ago: &[0, 30], ..OK } => Allow;
    rate_limit_reached_refused: Row { requests_ago: &[0, 30, 59], ..OK } => Deny(Rule::RateLimit);
    rate_limit_counts_60s_ago: Row { requests_ago: &[0, 30, 60], ..OK } => Deny(Rule::RateLimit);
    rate_limit_forgets_61s_ago: Row { requests_ago: &[0, 30, 61], ..OK } => Allow;
    per_tx_cap_exact_passes: Row { amount: 1000, ..OK } => Approval;
    per_tx_cap_plus_one_refused: Row { amount: 1001, ..OK } => Deny(Rule::PerTxCap);
    velocity_reaching_cap_allowed: Row { amount: 500, spends_ago: &[(3600, 4000), (10, 500)], ..OK } => Allow;
    velocity_one_over_refused: Row { amount: 500, spends_ago: &[(3600, 4001), (10, 500)], ..OK } => Deny(Rule::VelocityCap24h);
    velocity_counts_spend_24h_ago: Row { amount: 500, spends_ago: &[(86_400, 4501)], ..OK } => Deny(Rule::VelocityCap24h);
    velocity_forgets_older_spend: Row { amount: 500, spends_ago: &[(86_401, 4501)], ..OK } => Allow;
    velocity_overflow_refused: Row {
        agent: "whale", network: Network::Mainnet, amount: 1, spends_ago: &[(10, u128::MAX)], ..OK
    } => Deny(Rule::VelocityCap24h);
    threshold_exact_allowed: Row { amount: 500, ..OK } => Allow;
    threshold_plus_one_needs_approval: Row { amount: 501, ..OK } => Approval;
    order_agent_before_network: Row { agent: "ghost", network: Network::Mainnet, ..OK } => Deny(Rule::ActionNotAllowed);
    order_action_before_network: Row { tweak: no_actions, network: Network::Mainnet, ..OK } => Deny(Rule::ActionNotAllowed);
    order_network_before_asset: Row { network: Network::Mainnet, asset: "USDC", ..OK } => Deny(Rule::NetworkNotAllowed);
    order_asset_before_recipient: Row { asset: "USDC", to: 3, ..OK } => Deny(Rule::AssetNotAllowed);
    order_recipient_before_rate: Row { to: 3, requests_ago: &[1, 2, 3], ..OK } => Deny(Rule::RecipientNotAllowed);
    order_rate_before_per_tx_cap: Row { amount: 1001, requests_ago: &[1, 2, 3], ..OK } => Deny(Rule::RateLimit);
    order_per_tx_cap_before_velocity: Row { amount: 1001, spends_ago: &[(10, 4900)], ..OK } => Deny(Rule::PerTxCap);
    order_velocity_before_threshold: Row { amount: 600, spends_ago: &[(10, 4500)], ..OK } => Deny(Rule::VelocityCap24h);
}

#[test]
fn other_agents_and_assets_do_not_count() {
    let (policy, _, agent, intent) = setup(&Row { amount: 500, ..OK });
    let history = FakeHistory {
        spends: vec![
            ("whale".into(), "SOL".into(), NOW, 5000),
            ("trader".into(), "USDC".into(), NOW, 5000),
        ],
        requests: vec![
            ("whale".into(), NOW),
            ("whale".into(), NOW),
            ("whale".into(), NOW),
        ],
        overrides: vec![(
            "whale".into(),
            "SOL".into(),
            CapOverride {
                per_tx: Some(1),
                velocity_24h: Some(1),
            },
        )],
    };
    assert_eq!(
        decide(&policy, &history, &agent, &intent, &spends_of(&intent), NOW),
        Verdict::Allow
    );
}

#[test]
fn messages_carry_the_numbers_and_the_next_step() {
    let message = |row: Row| {
        let (policy, history, agent, intent) = setup(&row);
        match decide(&policy, &history, &agent, &intent, &spends_of(&intent), NOW) {
            Verdict::Deny { message, .. } | Verdict::NeedsApproval { message } => message,
            Verdict::Allow => panic!("expected a refusal"),
        }
    };
    let m = message(Row { amount: 1001, ..OK });
    for part in [
        "1001",
        "SOL",
        "trader",
        "cap of 1000",
        "not a workaround",
        "new signed policy",
    ] {
        assert!(m.contains(part), "{part:?} missing from {m}");
    }
    let m = message(Row { to: 3, ..OK });
    assert!(m.contains(&addr(3)) && m.contains("next ceremony"), "{m}");
    let m = message(Row {
        network: Network::Mainnet,
        ..OK
    });
    assert!(
        m.contains("solana:mainnet") && m.contains("solana:devnet, solana:testnet"),
        "{m}"
    );
    let m = message(Row {
        agent: "ghost",
        ..OK
    });
    assert!(m.contains("agent ghost is not in the signed policy"), "{m}");
    let m = message(Row {
        requests_ago: &[1, 2, 3],
        ..OK
    });
    assert!(
        m.contains("3 sign requests") && m.contains("limit 3 per minute"),
        "{m}"
    );
    let m = message(Row { amount: 501, ..OK });
    assert!(m.contains("501") && m.contains("threshold of 500"), "{m}");
}

#[test]
fn velocity_refusal_names_the_time_it_fits_again() {
    // 3000 spent 86 000 s ago leaves the window at NOW + 401; 1500 spent 1000 s ago stays.
    let row = Row {
        amount: 1000,
        spends_ago: &[(86_000, 3000), (1000, 1500)],
        ..OK
    };
    let (policy, history, agent, intent) = setup(&row);
    let Verdict::Deny {
        rule: Rule::VelocityCap24h,
        message,
    } = decide(&policy, &history, &agent, &intent, &spends_of(&intent), NOW)
    else {
        panic!("expected a velocity refusal");
    };
    let at = NOW + 401;
    for part in [
        format!("unix time {at}"),
        "in about 7 min".into(),
        "total to 5500".into(),
        "at most 500".into(),
    ] {
        assert!(message.contains(&part), "{part:?} missing from {message}");
    }
    // The named time is exact: one second earlier still refuses, at it the cap no longer does.
    assert_eq!(
        decide(
            &policy,
            &history,
            &agent,
            &intent,
            &spends_of(&intent),
            at - 1
        )
        .rule(),
        Some(Rule::VelocityCap24h)
    );
    assert_eq!(
        decide(&policy, &history, &agent, &intent, &spends_of(&intent), at).rule(),
        Some(Rule::ApprovalThreshold)
    );
    assert_eq!(
        decide_approved(&policy, &history, &agent, &intent, &spends_of(&intent), at),
        Verdict::Allow
    );
}

#[test]
fn operator_caps_apply_below_the_ceiling_and_never_above() {
    let decide_with = |amount: u128, spent: u128, o: CapOverride| {
        let (policy, mut history, agent, intent) = setup(&Row { amount, ..OK });
        history
            .spends
            .push(("trader".into(), "SOL".into(), NOW - 10, spent));
        history.overrides.push(("trader".into(), "SOL".into(), o));
        decide_approved(&policy, &history, &agent, &intent, &spends_of(&intent), NOW)
    };
    let per_tx = |v| CapOverride {
        per_tx: Some(v),
        velocity_24h: None,
    };
    let velocity = |v| CapOverride {
        per_tx: None,
        velocity_24h: Some(v),
    };
    // Lowered per-tx cap (ceiling 1000): 300 passes, 301 is refused and says it can go back up.
    assert_eq!(decide_with(300, 0, per_tx(300)), Verdict::Allow);
    let Verdict::Deny { rule, message } = decide_with(301, 0, per_tx(300)) else {
        panic!("expected a refusal");
    };
    assert_eq!(rule, Rule::PerTxCap);
    assert!(
        message.contains("cap of 300") && message.contains("up to the signed 1000"),
        "{message}"
    );
    // An override above the ceiling (a newer policy lowered it) cannot lift the cap.
    assert_eq!(decide_with(1000, 0, per_tx(9000)).rule(), None);
    assert_eq!(
        decide_with(1001, 0, per_tx(9000)).rule(),
        Some(Rule::PerTxCap)
    );
    // Lowered 24 h cap (ceiling 5000): 1800 spent, 200 fits, 201 does not.
    assert_eq!(decide_with(200, 1800, velocity(2000)), Verdict::Allow);
    let Verdict::Deny { rule, message } = decide_with(201, 1800, velocity(2000)) else {
        panic!("expected a refusal");
    };
    assert_eq!(rule, Rule::VelocityCap24h);
    assert!(
        message.contains("cap 2000") && message.contains("signed ceiling 5000"),
        "{message}"
    );
    assert_eq!(
        decide_with(1000, 4001, velocity(u128::MAX)).rule(),
        Some(Rule::VelocityCap24h)
    );
}

#[test]
fn verdict_rule_maps_each_outcome() {
    assert_eq!(Verdict::Allow.rule(), None);
    assert_eq!(
        Verdict::NeedsApproval {
            message: String::new()
        }
        .rule(),
        Some(Rule::ApprovalThreshold)
    );
    let deny = Verdict::Deny {
        rule: Rule::PerTxCap,
        message: String::new(),
    };
    assert_eq!(deny.rule(), Some(Rule::PerTxCap));
}

#[test]
fn durations_read_naturally() {
    assert_eq!(in_about(40), "in about 40 s");
    assert_eq!(in_about(401), "in about 7 min");
    assert_eq!(in_about(7199), "in about 2 h 0 min");
    assert_eq!(in_about(3 * 3600 + 12 * 60), "in about 3 h 12 min");
}

/// An EVM agent: ETH caps 100/1000 (threshold 50), USDC caps 10/100 (threshold 5); `saver`
/// has USDC caps but none for ETH, so it cannot pay fees.
fn evm_policy() -> Policy {
    let table = "[networks.\"evm:devnet\"]\nchain_id = 31337\ngenesis_hash = \"0x0707070707070707070707070707070707070707070707070707070707070707\"\n\
                 max_gas_limit = 500000\nmax_fee_per_gas = \"100\"\naave_pool = \"0x1111111111111111111111111111111111111111\"\n\
                 [networks.\"evm:devnet\".tokens.USDC]\naddress = \"0x2222222222222222222222222222222222222222\"\ndecimals = 6\n";
    let caps = |agent: &str, asset: &str, cap: u32| {
        format!(
            "[agents.{agent}.assets.{asset}]\nchain = \"evm\"\nper_tx_cap = \"{cap}\"\nvelocity_24h = \"{}\"\napproval_threshold = \"{}\"\n",
            cap * 10,
            cap / 2
        )
    };
    let agent = |name: &str| {
        format!(
            "[agents.{name}]\nactions = [\"aave_supply\"]\nnetworks = [\"evm:devnet\"]\nrecipients = []\nrate_limit_per_minute = 10\n"
        )
    };
    let text = format!(
        "version = 1\n{}{}{}{}{}{table}",
        agent("trader"),
        caps("trader", "ETH", 100),
        caps("trader", "USDC", 10),
        agent("saver"),
        caps("saver", "USDC", 10),
    );
    parse(text.as_bytes()).unwrap()
}

#[test]
fn every_spend_of_an_evm_request_is_capped_fees_included() {
    let policy = evm_policy();
    let history = FakeHistory::default();
    let supply: Intent = serde_json::from_str(
        r#"{"kind":"aave_supply","chain":"evm","network":"devnet","asset":"USDC","amount":"4"}"#,
    )
    .unwrap();
    let spend = |asset: &str, amount| Spend {
        asset: asset.parse().unwrap(),
        amount,
    };
    let trader: AgentId = "trader".parse().unwrap();
    let rule = |agent: &AgentId, spends: &[Spend]| {
        decide(&policy, &history, agent, &supply, spends, NOW).rule()
    };
    assert_eq!(rule(&trader, &[spend("USDC", 4), spend("ETH", 40)]), None);
    // A fee that would drain the balance is refused by the native asset's cap.
    assert_eq!(
        rule(&trader, &[spend("USDC", 4), spend("ETH", 101)]),
        Some(Rule::PerTxCap)
    );
    assert_eq!(
        rule(&trader, &[spend("USDC", 11), spend("ETH", 1)]),
        Some(Rule::PerTxCap)
    );
    // Either asset above its threshold sends it to the operator; a cap refusal comes first.
    assert_eq!(
        rule(&trader, &[spend("USDC", 4), spend("ETH", 60)]),
        Some(Rule::ApprovalThreshold)
    );
    assert_eq!(
        rule(&trader, &[spend("USDC", 6), spend("ETH", 1)]),
        Some(Rule::ApprovalThreshold)
    );
    assert_eq!(
        rule(&trader, &[spend("USDC", 6), spend("ETH", 101)]),
        Some(Rule::PerTxCap)
    );
    // The fees are in an asset the agent has no caps for: refused, never uncounted.
    let saver: AgentId = "saver".parse().unwrap();
    assert_eq!(
        rule(&saver, &[spend("USDC", 1), spend("ETH", 1)]),
        Some(Rule::AssetNotAllowed)
    );
}
