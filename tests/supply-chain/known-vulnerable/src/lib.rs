//! Empty on purpose: this crate exists only for its `Cargo.toml` and `Cargo.lock`, which hold a
//! dependency with a known advisory. See `Cargo.toml`.
