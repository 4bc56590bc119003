//! The import watcher: the signer is asked whether a key-ceremony stick is staged, and the
//! operator is told once per stick, with every fingerprint, that it waits in the approver's
//! chat (the approver shows it from the signer's `awaiting` and carries the codes; the
//! orchestrator never does).

use super::Orchestrator;

impl Orchestrator {
    /// Asks the signer whether a key-ceremony stick is staged and, if one is that the
    /// operator has not been told about, returns a line for them: what is staged and where
    /// to confirm it. Also when the staged copy is unusable; `None` otherwise.
    pub async fn check_import(&self) -> Option<String> {
        let status = match self.signer.lock().await.import_status().await {
            Ok(status) => status,
            Err(e) => return Some(format!("could not ask the signer about staged keys: {e}")),
        };
        if !status.staged {
            return None;
        }
        if let Some(error) = &status.error {
            return Some(format!(
                "a staged key-ceremony stick cannot be confirmed: {error}"
            ));
        }
        let digest = status.manifest_digest.as_ref()?.as_str().to_string();
        let key = format!("import-{}", &digest[..32]);
        let summary = import_summary(&status, &digest);
        let store = self.store.lock().ok()?;
        if status.awaiting_keys {
            // A first install is confirmed at the appliance's console, never from here: say so
            // once per staged stick.
            let told = format!("told-{key}");
            if matches!(store.setting(&told), Ok(Some(_))) {
                return None;
            }
            if let Err(e) = store.set_setting(&told, "1") {
                return Some(format!("staged keys not announced: {e}"));
            }
            return Some(format!(
                "keys from a ceremony stick are staged on an appliance without keys: {summary}. A first install is confirmed at the appliance's console: vigil-signer import-confirm --manifest-digest {digest} --code <code> (docs/key-ceremony.md)"
            ));
        }
        let told = format!("told-{key}");
        match store.setting(&told) {
            Ok(Some(_)) => return None,
            Ok(None) => {}
            Err(e) => return Some(format!("staged keys not announced: {e}")),
        }
        if let Err(e) = store.set_setting(&told, "1") {
            return Some(format!("staged keys not announced: {e}"));
        }
        Some(format!(
            "keys from a ceremony stick wait for you: {summary}. Compare every fingerprint with the ceremony's printout, then confirm it in the approver bot's chat with a code of THAT ceremony's authenticator{}; nothing is confirmed here.",
            if status.current_code_required {
                " and one of the authenticator you use today"
            } else {
                ""
            }
        ))
    }
}

/// The longest "+N more (see the ceremony printout)" note.
const MORE_NOTE_CHARS: usize = 48;

/// One line (at most the store's summary limit) naming a staged import: the manifest digest,
/// each agent's address and key fingerprint, the policy digest.
fn import_summary(status: &vigil_protocol::ImportStatusResult, digest: &str) -> String {
    let short = |s: &str| s.get(..16).unwrap_or(s).to_string();
    let head = format!("ceremony stick {}", short(digest));
    let tail = format!(
        "policy {}{}",
        short(status.policy_digest.as_deref().unwrap_or("?")),
        if status.replace {
            ", REPLACES the current keys"
        } else {
            ""
        }
    );
    let mut agents = Vec::new();
    for (i, a) in status.agents.iter().enumerate() {
        let next = format!("{} {} fp {}", a.agent, a.address, a.fingerprint);
        let line = format!("{head}: {}; {next}; {tail}", agents.join("; "));
        // Room is kept for the "+N more" note that replaces the agents that do not fit.
        if line.chars().count() > crate::store::MAX_SUMMARY_CHARS - MORE_NOTE_CHARS {
            agents.push(format!(
                "+{} more (see the ceremony printout)",
                status.agents.len() - i
            ));
            break;
        }
        agents.push(next);
    }
    format!("{head}: {}; {tail}", agents.join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use vigil_protocol::{ImportAgent, ImportStatusResult};

    fn staged(n: usize) -> ImportStatusResult {
        ImportStatusResult {
            staged: true,
            manifest_digest: Some("ab".repeat(32).try_into().unwrap()),
            agents: (0..n)
                .map(|i| ImportAgent {
                    agent: format!("agent{i}").parse().unwrap(),
                    chain: vigil_protocol::Chain::Solana,
                    network: Some(vigil_protocol::Network::Devnet),
                    address: "7xKXtg2CW87d97TXJSDpbD5jBkheTqA83TZRuJosgAsU".into(),
                    fingerprint: "1a2b-3c4d-5e6f-7a8b-9c0d".into(),
                })
                .collect(),
            policy_digest: Some("cd".repeat(32)),
            policy_key_fingerprint: None,
            created_at: None,
            online_override: false,
            insecure_dev_kdf: false,
            replace: true,
            current_code_required: true,
            error: None,
            awaiting_keys: false,
        }
    }

    #[test]
    fn import_summary_names_every_fingerprint_that_fits_and_stays_one_short_line() {
        let one = import_summary(&staged(1), &"ab".repeat(32));
        assert!(
            one.contains(
                "agent0 7xKXtg2CW87d97TXJSDpbD5jBkheTqA83TZRuJosgAsU fp 1a2b-3c4d-5e6f-7a8b-9c0d"
            ),
            "{one}"
        );
        assert!(
            one.contains("ceremony stick abababababababab")
                && one.contains("policy cdcdcdcdcdcdcdcd"),
            "{one}"
        );
        assert!(one.contains("REPLACES the current keys"), "{one}");
        let many = import_summary(&staged(9), &"ab".repeat(32));
        assert!(
            many.chars().count() <= crate::store::MAX_SUMMARY_CHARS,
            "{}",
            many.len()
        );
        assert!(many.contains("more (see the ceremony printout)"), "{many}");
        assert!(!many.contains('\n'));
    }
}
