//! The approver peer of a test's signer: the uid the signer serves as the **approver**, the
//! one that may carry the operator's codes (`docs/protocol.md`, "Roles"). Where a test used to
//! type a code into the orchestrator's bot, it now answers as `vigil-approver` does: it lists
//! what awaits the operator (`awaiting`) and answers the item it was shown, by its id, over a
//! connection made as the approver's uid ([`vigil_devnet::approver`]). Part of the kit so the
//! end-to-end tests of the real approver daemon and these share one view of the protocol.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use vigil_protocol::{
    ApproveRequest, AwaitingItem, AwaitingResult, Client, EventsRequest, EventsResult, Op,
    OperatorCode, Response,
};

use crate::operator::Operator;

/// A signer's approver peer.
#[derive(Clone, Debug)]
pub struct Approver {
    socket: PathBuf,
    uid: u32,
}

impl Approver {
    /// The approver of the signer on `socket`, whose `--approver-user` is `uid`.
    pub fn new(socket: PathBuf, uid: u32) -> Approver {
        Approver { socket, uid }
    }

    /// Its uid.
    pub fn uid(&self) -> u32 {
        self.uid
    }

    /// A connection made as the approver's uid.
    pub fn client(&self) -> Client {
        vigil_devnet::approver::connect_as(&self.socket, self.uid, Duration::from_secs(30))
            .unwrap_or_else(|e| {
                panic!(
                    "connecting to the signer as the approver (uid {}): {e}",
                    self.uid
                )
            })
    }

    /// Sends `op` as the approver; the response.
    pub fn call(&self, op: Op) -> Response {
        self.client()
            .call(op)
            .unwrap_or_else(|e| panic!("the signer did not answer the approver: {e}"))
    }

    /// Everything waiting for the operator's code.
    pub fn awaiting(&self) -> Vec<AwaitingItem> {
        let listed: AwaitingResult = self
            .call(Op::Awaiting)
            .into_result()
            .unwrap_or_else(|e| panic!("awaiting refused to the approver: {e:?}"));
        listed.items
    }

    /// The awaiting item `id`, waiting up to 10 s for it to appear.
    pub fn item(&self, id: &str) -> AwaitingItem {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(item) = self.awaiting().into_iter().find(|i| i.id == id) {
                return item;
            }
            assert!(
                Instant::now() < deadline,
                "{id} is not among what awaits the operator: {:?}",
                self.awaiting()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The only awaiting item, waiting up to 10 s for exactly one.
    pub fn only_item(&self) -> AwaitingItem {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let mut items = self.awaiting();
            if items.len() == 1 {
                return items.remove(0);
            }
            assert!(
                Instant::now() < deadline,
                "expected one item awaiting the operator, found {items:?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Answers awaiting item `id` with `code` (the op `awaiting` says answers it).
    pub fn answer(&self, id: &str, code: OperatorCode) -> Response {
        self.answer_item(&self.item(id), code, None)
    }

    /// Answers `item` with `code` (and `current`, today's code, for an import replacing keys).
    pub fn answer_item(
        &self,
        item: &AwaitingItem,
        code: OperatorCode,
        current: Option<OperatorCode>,
    ) -> Response {
        let op = item
            .answer(code, current)
            .unwrap_or_else(|e| panic!("cannot answer {}: {e}", item.id));
        self.call(op)
    }

    /// `approve` of `approval_id` with `code`, sent directly.
    pub fn approve(&self, approval_id: &str, code: OperatorCode) -> Response {
        self.call(Op::Approve(ApproveRequest {
            approval_id: approval_id.parse().expect("an approval id"),
            code,
        }))
    }

    /// The operator events after `since_seq` (at most 100).
    pub fn events(&self, since_seq: u64) -> EventsResult {
        self.call(Op::Events(EventsRequest {
            since_seq,
            limit: 100,
        }))
        .into_result()
        .unwrap_or_else(|e| panic!("events refused to the approver: {e:?}"))
    }
}

/// The signer's id (`approval_id`, or a confirmation's `request_id`) of what the
/// orchestrator's pending confirmation `id` waits for at the approver.
pub fn signer_id_of(
    store: &vigil_orchestrator::Store,
    id: vigil_orchestrator::ConfirmationId,
) -> String {
    let row = store
        .confirmation(id)
        .unwrap_or_else(|e| panic!("confirmation {id}: {e}"));
    let payload: serde_json::Value =
        serde_json::from_str(&row.confirmation.payload_json).expect("a stored payload is JSON");
    payload["approval_id"]
        .as_str()
        .or_else(|| payload["request_id"].as_str())
        .unwrap_or_else(|| panic!("confirmation {id} waits for nothing at the signer: {payload}"))
        .to_owned()
}

impl Operator {
    /// The operator answers awaiting item `id` in the approver's chat with the current code:
    /// the approver carries it to the signer for exactly that item.
    pub fn approve_at_signer(&self, approver: &Approver, id: &str) -> Response {
        approver.answer(id, self.code())
    }
}
