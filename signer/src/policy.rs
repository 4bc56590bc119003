//! (being written)

/// Placeholder until the module lands.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {}
