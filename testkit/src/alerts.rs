//! The operator's side of the orchestrator's alerts, recorded: a test hands [`Alerts`] to the
//! orchestrator (`set_operator`) and reads what the operator was told.

use std::sync::{Arc, Mutex};

use vigil_orchestrator::Alert;

/// Every alert sent, as the operator reads it.
#[derive(Clone, Debug, Default)]
pub struct Alerts {
    seen: Arc<Mutex<Vec<String>>>,
}

impl Alerts {
    /// The alerts so far, in order.
    pub fn all(&self) -> Vec<String> {
        self.seen.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

impl vigil_orchestrator::Operator for Alerts {
    fn alert(&self, alert: Alert) {
        self.seen
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(alert.to_string());
    }
}
