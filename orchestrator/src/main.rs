//! `vigil`: placeholder until the orchestrator issue lands.
fn main() {}
