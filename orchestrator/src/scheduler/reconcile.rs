//! Reconciliation at start (and on demand): what this state says was begun and not
//! finished, and whether the live spends it recorded agree with the signer's ledger and the
//! chain. Every difference is one line for the operator.

use std::collections::BTreeMap;

use super::{Orchestrator, unix_now};
use crate::chains::solana_rpc::SigStatus;

impl Orchestrator {
    /// Reconciles the state with the signer at start (and on demand): executions claimed and
    /// never finished (a crash in between) are reported, and the live spends this state
    /// recorded over the last 24 h are compared with the signer's own totals. Every difference
    /// is one line; an empty list means the two agree.
    pub async fn reconcile(&self) -> Vec<String> {
        let now = unix_now();
        let (unfinished, finished) = match self.store.lock() {
            Ok(store) => (
                store.unfinished_executions(),
                store.finished_executions_since(now.saturating_sub(86_400)),
            ),
            Err(_) => return vec!["state unavailable".into()],
        };
        let mut report = Vec::new();
        // EVM transactions in flight: receipts read, states moved, before anything new.
        for (network, rpc) in &self.evm_rpcs {
            let name = vigil_protocol::network_name(vigil_protocol::Chain::Evm, *network);
            let settled = crate::pipeline::evm_settle(rpc, &self.store, &name, None, now).await;
            report.extend(settled.lines);
            report.extend(settled.in_flight);
        }
        // Live Hyperliquid accounts: the venue's positions and open orders against the store.
        report.extend(self.reconcile_perps_at_start().await);
        match unfinished {
            Ok(rows) => report.extend(rows.iter().map(|r| {
                format!(
                    "execution {} was started and not finished: check the signer's audit log for this idempotency key before retrying",
                    r.idempotency_key
                )
            })),
            Err(e) => report.push(format!("cannot read executions: {e}")),
        }
        // Live spends this state recorded, per agent and asset; and each one's fate on chain.
        let mut recorded: BTreeMap<(String, String), u128> = BTreeMap::new();
        for (key, json) in finished.unwrap_or_default() {
            let Ok(v) = serde_json::from_str::<serde_json::Value>(&json) else {
                continue;
            };
            if v["result"]["outcome"] != "signed" {
                continue;
            }
            if v["chain"] == "evm" || v["chain"] == "hyperliquid" {
                // What the signer counts: each asset of the answer, fees included (on
                // Hyperliquid an opening order's notional). Whether EVM transactions landed is
                // the EVM settlement's report above; a Hyperliquid order's fate is the venue
                // reconciliation's.
                for spend in v["spends"].as_array().into_iter().flatten() {
                    let (Some(asset), Some(amount)) = (
                        spend[0].as_str(),
                        spend[1].as_str().and_then(|a| a.parse::<u128>().ok()),
                    ) else {
                        continue;
                    };
                    let key = (
                        v["agent"].as_str().unwrap_or("").to_string(),
                        asset.to_string(),
                    );
                    *recorded.entry(key).or_default() += amount;
                }
                continue;
            }
            if let (Some(rpc), Some(signature)) = (&self.rpc, v["result"]["signature"].as_str()) {
                match rpc.signature_status(signature).await {
                    Ok(SigStatus::Confirmed | SigStatus::Finalized | SigStatus::Processed) => {}
                    Ok(other) => report.push(format!(
                        "execution {key}: transaction {signature} was signed but the chain says {other:?}; \
                         it did not land, and its spend still counts at the signer until the 24 h window passes"
                    )),
                    Err(e) => report.push(format!(
                        "execution {key}: cannot check transaction {signature} on chain: {e}"
                    )),
                }
            }
            let amount = v["amount"]
                .as_str()
                .and_then(|a| a.parse::<u128>().ok())
                .unwrap_or(0);
            let key = (
                v["agent"].as_str().unwrap_or("").to_string(),
                v["asset"].as_str().unwrap_or("").to_string(),
            );
            *recorded.entry(key).or_default() += amount;
        }
        let status = match self.signer.lock().await.status().await {
            Ok(s) => s,
            Err(e) => {
                report.push(format!("signer unreachable, cannot reconcile spends: {e}"));
                return report;
            }
        };
        let mut signer_totals: BTreeMap<(String, String), u128> = BTreeMap::new();
        for a in &status.agents {
            for (asset, amount) in &a.spent_24h {
                signer_totals.insert(
                    (a.agent.to_string(), asset.clone()),
                    amount.parse().unwrap_or(0),
                );
            }
        }
        let keys: std::collections::BTreeSet<_> = recorded
            .keys()
            .chain(signer_totals.keys())
            .cloned()
            .collect();
        for key in keys {
            let ours = recorded.get(&key).copied().unwrap_or(0);
            let theirs = signer_totals.get(&key).copied().unwrap_or(0);
            if ours != theirs {
                report.push(format!(
                    "{} {}: the signer counts {theirs} base units spent in 24 h, this orchestrator recorded {ours}; \
                     something signed outside this orchestrator or a record was lost: check the signer's audit log",
                    key.0, key.1
                ));
            }
        }
        report
    }
}
