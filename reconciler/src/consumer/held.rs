//! The messages of one receive that this consumer still has to finish: the heartbeat keeps
//! them invisible, and each leaves the set once it is deleted, deferred or given back.

use std::collections::BTreeMap;
use std::sync::Mutex;

#[derive(Debug, Default)]
pub(super) struct Held {
    /// SQS message id -> receipt handle.
    receipts: Mutex<BTreeMap<String, String>>,
}

impl Held {
    pub(super) fn new<'a>(messages: impl Iterator<Item = (&'a str, &'a str)>) -> Held {
        let receipts = messages.map(|(id, receipt)| (id.to_owned(), receipt.to_owned())).collect();
        Held { receipts: Mutex::new(receipts) }
    }

    /// This consumer no longer holds `id`.
    pub(super) fn release(&self, id: &str) {
        if let Ok(mut receipts) = self.receipts.lock() {
            receipts.remove(id);
        }
    }

    /// What is still held, as (message id, receipt handle).
    pub(super) fn held(&self) -> Vec<(String, String)> {
        self.receipts.lock().map(|r| r.iter().map(|(id, rh)| (id.clone(), rh.clone())).collect()).unwrap_or_default()
    }
}
