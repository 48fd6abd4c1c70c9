//! The reconciler's queue-message decoder (`PreviewEvent::from_json`).
#![no_main]

#[path = "../../functions/webhook/tests/support/oracle.rs"]
mod oracle;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(error) = oracle::check_queue_message(data) {
        panic!("{error}");
    }
});
