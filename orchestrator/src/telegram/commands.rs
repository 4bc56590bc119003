//! The bot's commands (their doc comments are the /help text) and the read-only answers:
//! /status, /agents, /pending, /caps, /audit. Everything here reads; changes are in `confirmations`.

use std::fmt::Write as _;

use teloxide::utils::command::BotCommands;
use vigil_protocol::{AssetSymbol, StatusResult};

use super::Ctx;
use crate::config::{AgentConfig, Mode, TelegramConfig};
use crate::cost::format_usd;
use crate::operator;
use crate::store::{ConfirmationKind, ConfirmationRow, Store};

/// Vigil operator commands:
#[derive(BotCommands, Clone, Debug, PartialEq, Eq)]
#[command(rename_rule = "lowercase")]
pub(super) enum Command {
    /// agents, modes, spend today vs caps, LLM cost vs cap, signer, pending items
    Status,
    /// each agent's provider, model, schedule, mode and whether it is paused
    Agents,
    /// <agent>: stop the agent's decisions (e.g. /pause trader)
    Pause(String),
    /// <agent>: let a paused agent decide again; a deputy halted by its loss floor resumes only with your code in the approver bot's chat
    Resume(String),
    /// each deputy's perpetual positions: side, size, entry, mark, ≈ USD, leverage
    Positions,
    /// each deputy's PnL today and since start, per perpetual: realised, unrealised, fees
    Pnl,
    /// each deputy's risk state, caps, equity, the day's baseline and the distance to its loss floor
    Risk,
    /// <agent>: accept the Hyperliquid differences last reported, so its opening orders go again
    Reconciled(String),
    /// open confirmations and how to answer each
    Pending,
    /// <id>: start the phrase of a phrase confirmation (e.g. /approve 12); codes go to the approver bot's chat
    Approve(String),
    /// <id>: refuse a pending confirmation (e.g. /deny 12)
    Deny(String),
    /// <agent>: simulate only, broadcast nothing (e.g. /paper trader)
    Paper(String),
    /// <agent> [asset]: go live for one asset, default SOL; the phrase here, a code in the approver bot's chat
    Live(String),
    /// <agent> <asset> <per_tx|velocity_24h> <amount>: set a cap within the signed ceiling; phrase here, code at the approver
    Setcap(String),
    /// the signer's limits per agent and asset
    Caps,
    /// signer ledger and audit head, latest decisions, how to verify the chain
    Audit,
    /// [N]: back to the previous configuration generation (or generation N) and the state from before the next one; needs your code in the approver bot's chat
    Rollback(String),
    /// <agent> <what you want>: the self-modification agent writes a module with its tests, checked in a sandbox; you get the diff, the results and the diff's SHA-256 (e.g. /build trader buy ETH dips)
    Build(String),
    /// <id>: apply a proposal that passed its check; needs your code for its diff's SHA-256 in the approver bot's chat
    Apply(String),
    /// this list
    Help,
}

/// What free text and unknown commands get.
pub const HINT: &str = "I only understand commands: send /help for the list. \
Approvals and codes go to the approver bot's chat, never here; /deny <id> refuses a request.";

/// The /help text.
pub(super) fn help() -> String {
    format!(
        "{}\n\nAmounts are base units (1 SOL = 1000000000 lamports). Codes come from the \
         authenticator you enrolled at the key ceremony; you send them only to the approver \
         bot's chat (a second bot, vigil-approver), which carries them to the signer. This bot \
         never takes a code.",
        Command::descriptions()
    )
}

/// /status.
pub(super) async fn status(ctx: &Ctx) -> String {
    let now = super::unix_now();
    let mut out = String::from("Vigil status\n");
    let signer = ctx.orch.signer().lock().await.status().await;
    let (paused, pending, cost, compacted) = match ctx.orch.store().lock() {
        Ok(store) => {
            let paused: Vec<&str> = ctx
                .orch
                .agents()
                .iter()
                .map(|a| pause_text(&store, a))
                .collect();
            let agents: Vec<_> = ctx
                .orch
                .agents()
                .iter()
                .map(|a| operator::with_mode_override(&store, a))
                .collect();
            (
                paused.into_iter().zip(agents).collect::<Vec<_>>(),
                store.open_confirmations(now).map(|p| p.len()),
                store.cost_spent_since(now - now % 86_400).and_then(|all| {
                    let build = match crate::proposal::flow::BUILDER_AGENT.parse() {
                        Ok(builder) => store.cost_spent_since_by(&builder, now - now % 86_400)?,
                        Err(_) => 0,
                    };
                    Ok((all, build))
                }),
                store.last_compacted(),
            )
        }
        Err(_) => return "state unavailable: check the orchestrator's log".into(),
    };
    let size = crate::store::state_file_bytes(&ctx.orch.config().state_db);
    for (pause, agent) in &paused {
        let _ = write!(out, "\n• {}: {}", agent.id, mode_text(agent));
        if *pause != RUNNING {
            let _ = write!(out, ", {pause}");
        }
        if agent.hyperliquid_network.is_some() {
            out.push_str(&risk_state_text(ctx, agent));
        }
        if let Ok(s) = &signer {
            out.push_str(&spend_text(s, agent.id.as_str()));
        }
    }
    let cap = ctx.orch.config().daily_llm_usd_cap_micros;
    match cost {
        Ok((spent, build)) => {
            let _ = write!(out, "\n\n{}", cost_text(spent, build, cap));
        }
        Err(e) => {
            let _ = write!(out, "\n\nLLM cost today: unreadable ({e})");
        }
    }
    match &signer {
        Ok(s) => {
            let _ = write!(
                out,
                "\nSigner: up, ledger #{}, audit head {}",
                s.ledger_seq,
                short(&s.audit_head)
            );
            if let Some(problem) = &s.journal_problem {
                let _ = write!(out, "\n⚠️ Signer journal: {problem}");
            }
        }
        Err(e) => {
            let _ = write!(out, "\nSigner: UNREACHABLE ({e})");
        }
    }
    out.push('\n');
    out.push_str(&state_text(size, compacted, now));
    match pending {
        Ok(0) => out.push_str("\nPending: none"),
        Ok(n) => {
            let _ = write!(out, "\nPending: {n} (see /pending)");
        }
        Err(e) => {
            let _ = write!(out, "\nPending: unreadable ({e})");
        }
    }
    out
}

/// The /status line of the state: its size on disk (the SQLite file and its WAL) and when
/// the retention chore last compacted it.
fn state_text(
    size: std::io::Result<u64>,
    compacted: Result<Option<u64>, crate::store::StoreError>,
    now: u64,
) -> String {
    let size = match size {
        Ok(bytes) => format!("{} (file + WAL)", human_bytes(bytes)),
        Err(e) => format!("size unreadable ({e})"),
    };
    let compacted = match compacted {
        Ok(None) => "never compacted".to_string(),
        Ok(Some(at)) => format!("compacted {} ago", human_age(now.saturating_sub(at))),
        Err(e) => format!("last compaction unreadable ({e})"),
    };
    format!("State: {size}, {compacted}")
}

/// `bytes` in B, KiB, MiB or GiB with one decimal.
fn human_bytes(bytes: u64) -> String {
    const UNITS: [(&str, u32); 3] = [("GiB", 30), ("MiB", 20), ("KiB", 10)];
    for (unit, shift) in UNITS {
        if bytes >= 1u64 << shift {
            let tenths = u128::from(bytes) * 10 / (1u128 << shift);
            return format!("{}.{} {unit}", tenths / 10, tenths % 10);
        }
    }
    format!("{bytes} B")
}

/// A duration in seconds as minutes, hours or days.
fn human_age(secs: u64) -> String {
    match secs {
        0..120 => format!("{secs} s"),
        120..7_200 => format!("{} min", secs / 60),
        7_200..172_800 => format!("{} h", secs / 3_600),
        _ => format!("{} d", secs / 86_400),
    }
}

/// /agents.
pub(super) fn agents(ctx: &Ctx) -> String {
    let Ok(store) = ctx.orch.store().lock() else {
        return "state unavailable: check the orchestrator's log".into();
    };
    let mut out = String::from("Agents");
    for configured in ctx.orch.agents() {
        let a = operator::with_mode_override(&store, configured);
        let _ = write!(
            out,
            "\n• {}: {} via {}/{}, every {} s, {}{}",
            a.id,
            mode_text(&a),
            a.provider,
            a.model,
            a.schedule_secs,
            pause_text(&store, &a),
            a.fallback_provider
                .as_ref()
                .map(|f| format!(", fallback {f}"))
                .unwrap_or_default()
        );
    }
    out
}

/// /pending.
pub(super) fn pending(ctx: &Ctx) -> String {
    let now = super::unix_now();
    let rows = match ctx.orch.store().lock() {
        Ok(store) => store.open_confirmations(now),
        Err(_) => return "state unavailable: check the orchestrator's log".into(),
    };
    match rows {
        Ok(rows) if rows.is_empty() => "Nothing is waiting for you.".into(),
        Ok(rows) => {
            let mut out = String::from("Waiting for you:");
            for row in &rows {
                let _ = write!(out, "\n\n{}", announcement(row, &ctx.config, now));
            }
            out
        }
        Err(e) => format!("cannot read pending confirmations: {e}"),
    }
}

/// The one message that asks the operator about `row`, with how to answer it.
pub(super) fn announcement(row: &ConfirmationRow, config: &TelegramConfig, now: u64) -> String {
    let phrase = &config.phrase;
    let approver = config.approver_chat();
    let agent = row
        .confirmation
        .agent
        .as_ref()
        .map(|a| format!("{a}: "))
        .unwrap_or_default();
    let minutes = row.confirmation.expires_at.saturating_sub(now).div_ceil(60);
    let how = match row.confirmation.kind {
        ConfirmationKind::SignerApproval | ConfirmationKind::ApplyChange => format!(
            "Approve or refuse it in {approver}: reply there to the message that shows it, with your code. /deny {} drops it here.",
            row.id
        ),
        ConfirmationKind::ImportKeys => format!(
            "Compare every fingerprint with the ceremony's printout, then confirm it in {approver}. /deny {} drops it here.",
            row.id
        ),
        k if k.needs_phrase() => format!(
            "To confirm, send /approve {}, type exactly: {phrase} — then answer with your code in {approver}. /deny {} cancels.",
            row.id, row.id
        ),
        _ => "Answer with the buttons below (or /deny <id>).".to_string(),
    };
    let what = match row.confirmation.kind {
        ConfirmationKind::SignerApproval => "waits for your approval at the approver",
        ConfirmationKind::ImportKeys => "import keys from a ceremony stick",
        ConfirmationKind::GoLive => "go live",
        ConfirmationKind::SetCap => "change a cap",
        ConfirmationKind::Destructive => "destructive action",
        ConfirmationKind::MoveFunds => "move funds",
        ConfirmationKind::SendMessage => "send a message",
        ConfirmationKind::PostPublic => "post publicly",
        ConfirmationKind::WriteFile => "write a file",
        ConfirmationKind::ApplyChange => "apply a change (needs your code at the approver)",
    };
    format!(
        "#{} {what} — {agent}{} (expires in {minutes} min)\n{how}",
        row.id, row.confirmation.summary
    )
}

/// /caps.
pub(super) async fn caps(ctx: &Ctx) -> String {
    let status = match ctx.orch.signer().lock().await.status().await {
        Ok(s) => s,
        Err(e) => return format!("cannot ask the signer: {e}"),
    };
    let mut out = String::from("Caps (signed policy; /setcap adjusts within the ceiling)");
    for a in &status.agents {
        let _ = write!(out, "\n• {}", a.agent);
        let assets = a.limits["assets"].as_object().cloned().unwrap_or_default();
        if assets.is_empty() {
            out.push_str(": no assets allowed");
        }
        for (asset, l) in &assets {
            let _ = write!(
                out,
                "\n   {asset}: per tx {}, 24 h {}, approval above {}, spent 24 h {}",
                l["per_tx_cap"].as_str().unwrap_or("?"),
                l["velocity_24h"].as_str().unwrap_or("?"),
                l["approval_threshold"].as_str().unwrap_or("?"),
                a.spent_24h.get(asset).map_or("0", String::as_str)
            );
        }
    }
    out
}

/// /audit: the signer verifies its own hash chain and shows its latest entries.
pub(super) async fn audit(ctx: &Ctx) -> String {
    let mut out = String::from("Audit");
    match ctx.orch.signer().lock().await.audit(AUDIT_LINES).await {
        Ok(a) if a.verified => {
            let _ = write!(
                out,
                "\n✔ the chain verifies: {} entries, head #{} {}",
                a.entries, a.head_seq, a.head
            );
            for e in &a.latest {
                let _ = write!(out, "\n• #{} {} {}", e.seq, e.ts, audit_line(&e.event));
            }
            out.push_str(
                "\nNote the head: `vigil-signer audit-verify --expect-head <head>` later proves no entry up to it was removed.",
            );
        }
        Ok(a) => {
            let _ = write!(
                out,
                "\n🚨 the chain does NOT verify: {}. Stop the agents (/pause each) and inspect the signer's state disk.",
                a.error.unwrap_or_default()
            );
        }
        Err(e) => {
            let _ = write!(out, "\nSigner unreachable: {e}");
        }
    }
    out
}

/// How many audit entries /audit shows.
const AUDIT_LINES: u32 = 8;

/// One audit event in a line: its type, then the fields an operator reads first.
fn audit_line(event: &serde_json::Value) -> String {
    let mut line = event["type"].as_str().unwrap_or("?").to_string();
    for key in [
        "agent", "asset", "amount", "rule", "kind", "purpose", "summary",
    ] {
        if let Some(v) = event.get(key).filter(|v| !v.is_null()) {
            let text = v.as_str().map_or_else(|| v.to_string(), str::to_string);
            let _ = write!(line, " {key}={text}");
        }
    }
    line
}

/// A deputy's risk state for /status (`, risk: active`).
fn risk_state_text(ctx: &Ctx, agent: &AgentConfig) -> String {
    let row = match ctx.orch.store().lock() {
        Ok(store) => store.agent(&agent.id).deputy(),
        Err(_) => return ", risk: unknown (state unavailable)".into(),
    };
    match row {
        Ok(r) if r.state == crate::deputy::RiskState::Active => ", risk: active".into(),
        Ok(r) => format!(", risk: {} ({}); see /risk", r.state, r.detail),
        Err(e) => format!(", risk: unknown ({e}); it holds"),
    }
}

/// What /agents says of an agent that is not paused.
const RUNNING: &str = "running";

/// `running`, `PAUSED`, or, when the flag cannot be read, that the agent holds (the scheduler
/// treats an unreadable flag as paused).
fn pause_text(store: &Store, agent: &AgentConfig) -> &'static str {
    match operator::is_paused(store, &agent.id) {
        Ok(false) => RUNNING,
        Ok(true) => "PAUSED",
        Err(e) => {
            tracing::error!(agent = %agent.id, error = %e, "cannot read the pause flag");
            "HOLDING (pause flag unreadable: see the log)"
        }
    }
}

fn mode_text(agent: &AgentConfig) -> String {
    match agent.mode {
        Mode::Paper => "paper".into(),
        Mode::Live => format!(
            "LIVE for {}",
            agent
                .live_assets
                .iter()
                .map(AssetSymbol::as_str)
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

fn spend_text(status: &StatusResult, agent: &str) -> String {
    let Some(a) = status.agents.iter().find(|a| a.agent.as_str() == agent) else {
        return ", unknown to the signer".into();
    };
    let assets = a.limits["assets"].as_object().cloned().unwrap_or_default();
    let mut out = String::new();
    for (asset, l) in &assets {
        let _ = write!(
            out,
            ", {asset} spent 24 h {} of {}",
            a.spent_24h.get(asset).map_or("0", String::as_str),
            l["velocity_24h"].as_str().unwrap_or("?")
        );
    }
    out
}

fn short(hex: &str) -> &str {
    hex.get(..16).unwrap_or(hex)
}

/// /status's LLM cost line: today's spend of all agents and `/build` against the cap, and
/// `/build`'s share when it spent anything.
fn cost_text(spent: u64, build: u64, cap: u64) -> String {
    let mut out = format!(
        "LLM cost today: {} of {} USD",
        format_usd(spent),
        format_usd(cap)
    );
    if build > 0 {
        let _ = write!(
            out,
            " ({} of it the self-modification agent's /build calls)",
            format_usd(build)
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{ConfirmationId, ConfirmationStatus, NewConfirmation};

    #[test]
    fn the_cost_line_shows_builds_share_only_when_it_spent() {
        assert_eq!(
            cost_text(19_000, 17_000, 20_000),
            "LLM cost today: $0.019000 of $0.020000 USD ($0.017000 of it the self-modification agent's /build calls)"
        );
        assert_eq!(
            cost_text(2_000, 0, 20_000),
            "LLM cost today: $0.002000 of $0.020000 USD"
        );
    }

    #[test]
    fn the_status_line_of_the_state_gives_its_size_and_last_compaction() {
        let now = 1_800_000_000;
        assert_eq!(
            state_text(
                Ok(5 * 1024 * 1024 + 300 * 1024),
                Ok(Some(now - 5 * 3_600)),
                now
            ),
            "State: 5.2 MiB (file + WAL), compacted 5 h ago"
        );
        assert_eq!(
            state_text(Ok(900), Ok(None), now),
            "State: 900 B (file + WAL), never compacted"
        );
        assert_eq!(human_bytes(3 * 1024 * 1024 * 1024 / 2), "1.5 GiB");
        assert_eq!(human_bytes(2048), "2.0 KiB");
        assert_eq!(human_age(59), "59 s");
        assert_eq!(human_age(3 * 86_400), "3 d");
        let unreadable = state_text(
            Err(std::io::Error::from(std::io::ErrorKind::NotFound)),
            Err(crate::store::StoreError::Corrupt("x".into())),
            now,
        );
        assert!(
            unreadable.starts_with("State: size unreadable ("),
            "{unreadable}"
        );
        assert!(
            unreadable.contains("last compaction unreadable ("),
            "{unreadable}"
        );
    }

    #[test]
    fn help_lists_every_command() {
        let text = help();
        for cmd in [
            "/status",
            "/agents",
            "/pause",
            "/resume",
            "/pending",
            "/approve",
            "/deny",
            "/paper",
            "/live",
            "/setcap",
            "/caps",
            "/audit",
            "/help",
            "/positions",
            "/pnl",
            "/risk",
            "/rollback",
            "/build",
            "/apply",
        ] {
            assert!(text.contains(cmd), "{cmd} missing from {text}");
        }
    }

    #[test]
    fn commands_parse_with_their_arguments() {
        let parse = |t: &str| Command::parse(t, "VigilBot").map_err(|e| e.to_string());
        assert_eq!(parse("/status"), Ok(Command::Status));
        assert_eq!(
            parse("/approve 12 123456"),
            Ok(Command::Approve("12 123456".into()))
        );
        assert_eq!(parse("/live trader"), Ok(Command::Live("trader".into())));
        assert_eq!(parse("/rollback"), Ok(Command::Rollback(String::new())));
        assert_eq!(parse("/rollback 3"), Ok(Command::Rollback("3".into())));
        assert_eq!(
            parse("/build trader buy ETH dips"),
            Ok(Command::Build("trader buy ETH dips".into()))
        );
        assert_eq!(parse("/apply 4"), Ok(Command::Apply("4".into())));
        assert_eq!(parse("/status@VigilBot"), Ok(Command::Status));
        assert!(parse("/transfer everything").is_err());
        assert!(parse("hello").is_err());
    }

    #[test]
    fn announcements_say_how_to_answer() {
        let row = |kind| ConfirmationRow {
            id: ConfirmationId(7),
            confirmation: NewConfirmation {
                kind,
                agent: Some("trader".parse().unwrap()),
                summary: "send 0.8 SOL".into(),
                payload_json: "{}".into(),
                idempotency_key: "k".into(),
                created_at: 0,
                expires_at: 600,
            },
            status: ConfirmationStatus::Open,
            resolved_by: None,
            resolved_at: None,
            button_token: "00".repeat(16),
        };
        let config = TelegramConfig {
            operators: vec![5],
            api_url: "https://api.telegram.org".into(),
            token_credential: "t".into(),
            pending_expiry_secs: 600,
            phrase: "I accept the risk".into(),
            destructive_commands: Vec::new(),
            approver_bot: Some("@vigil_approver_bot".into()),
        };
        let a = announcement(&row(ConfirmationKind::SignerApproval), &config, 0);
        assert!(a.starts_with("#7 "), "{a}");
        // Approvals are answered in the approver's chat, by name; never with a code here.
        assert!(a.contains("@vigil_approver_bot"), "{a}");
        assert!(!a.contains("<code>"), "{a}");
        assert!(a.contains("expires in 10 min"), "{a}");
        let b = announcement(&row(ConfirmationKind::GoLive), &config, 0);
        assert!(b.contains("type exactly: I accept the risk"), "{b}");
        assert!(b.contains("@vigil_approver_bot"), "{b}");
        let c = announcement(&row(ConfirmationKind::MoveFunds), &config, 0);
        assert!(c.contains("buttons"), "{c}");
    }
}
