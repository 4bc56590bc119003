//! Proposals of the self-modification agent (issue 20): where they are checked.
//!
//! [`sandbox`] runs a proposal's check in a process with no network, no secrets and no live
//! state: bubblewrap in CI and development, the systemd template unit `vigil-proposal@.service`
//! on the appliance, started per connection to `vigil-proposal.socket` ([`socket`]).

pub mod flow;
pub mod recorder;
pub mod sandbox;
pub mod socket;
