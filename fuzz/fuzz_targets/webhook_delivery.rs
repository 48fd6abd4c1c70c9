//! Signature verification + body decoding + payload parsing, as the webhook runs them on a
//! request. The first byte frames the rest (encoding, event header, signed or forged).
#![no_main]

#[path = "../../functions/webhook/tests/support/oracle.rs"]
mod oracle;

use libfuzzer_sys::fuzz_target;
use oracle::{Framing, check_delivery, fuzz_config, fuzz_secrets};

fuzz_target!(|data: &[u8]| {
    let Some((&frame, body)) = data.split_first() else { return };
    let framing = Framing { encoding: frame & 3, event: (frame >> 2) & 3, signed: (frame >> 4) & 7 != 0 };
    // A forgery carries the signature of a different body.
    let mut original = body.to_vec();
    if !framing.signed {
        original.push(b' ');
    }
    if let Err(error) = check_delivery(&fuzz_config(), &fuzz_secrets(), &original, body, framing, chrono::Utc::now()) {
        panic!("{error}");
    }
});
