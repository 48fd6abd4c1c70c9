//! What must hold for any input, shared by the fuzz test (`tests/fuzz.rs`) and the cargo-fuzz
//! targets (`fuzz/`), which include this file by path. Pure: no I/O, no emulator.
#![allow(dead_code, unreachable_pub)]

use chrono::{DateTime, Utc};
use previewd_events::Message;
use previewd_webhook::config::Config;
use previewd_webhook::signature::{Secrets, sign};
use previewd_webhook::{Delivery, Prepared, prepare};

pub const FUZZ_SECRET: &str = "fuzz-secret";
/// SQS's message size limit.
const MAX_MESSAGE_BYTES: usize = 256 * 1024;

pub fn fuzz_config() -> Config {
    Config::from_lookup(|k| {
        match k {
            "PREVIEWD_WEBHOOK_SECRET" => Some(FUZZ_SECRET),
            "PREVIEWD_QUEUE_URL" => Some("http://127.0.0.1:4566/000000000000/q.fifo"),
            "PREVIEWD_TABLE_NAME" => Some("t"),
            _ => None,
        }
        .map(str::to_owned)
    })
    .unwrap_or_else(|e| panic!("{e}"))
}

pub fn fuzz_secrets() -> Secrets {
    Secrets::parse(FUZZ_SECRET).unwrap_or_else(|e| panic!("{e}"))
}

/// How a fuzzed body is sent.
#[derive(Debug, Clone, Copy)]
pub struct Framing {
    /// 0: JSON, 1: form-encoded `payload=`, 2: an unsupported content type.
    pub encoding: u8,
    /// 0: `pull_request`, 1: `ping`, 2: another event.
    pub event: u8,
    /// Signed with the secret, or carrying the signature of `original` (a forgery).
    pub signed: bool,
}

/// Frames `body` as a request and checks the pure pipeline's answer:
/// - never a panic and never a 5xx (nothing in the pure stage is the server's fault);
/// - a forged body is 401 and nothing else; a signed one never 401;
/// - every refusal of a signed body is a 4xx with a JSON reply body;
/// - an enqueued message fits SQS and survives the contract's encode/decode unchanged.
///
/// Returns whether the delivery would be enqueued.
pub fn check_delivery(
    config: &Config,
    secrets: &Secrets,
    original: &[u8],
    body: &[u8],
    framing: Framing,
    now: DateTime<Utc>,
) -> Result<bool, String> {
    let (content_type, wire): (&str, Vec<u8>) = match framing.encoding % 3 {
        0 => ("application/json", body.to_vec()),
        1 => (
            "application/x-www-form-urlencoded",
            form_urlencoded::Serializer::new(String::new())
                .append_pair("payload", &String::from_utf8_lossy(body))
                .finish()
                .into_bytes(),
        ),
        _ => ("text/plain", body.to_vec()),
    };
    let event = ["pull_request", "ping", "issues"][usize::from(framing.event % 3)];
    let forged = !framing.signed && wire != original;
    let signature =
        if framing.signed { sign(FUZZ_SECRET.as_bytes(), &wire) } else { sign(FUZZ_SECRET.as_bytes(), original) };
    let delivery = Delivery {
        event: Some(event),
        delivery_id: Some("72d3162e-cc78-11e3-81ab-4c9367dc0958"),
        signature: Some(&signature),
        content_type: Some(content_type),
        body: &wire,
    };
    match prepare(config, secrets, &delivery, now).0 {
        Prepared::Respond(reply) => {
            let status = reply.status();
            if status >= 500 {
                return Err(format!("5xx for client input: {reply:?}"));
            }
            if forged && status != 401 {
                return Err(format!("forged body answered {status}, not 401: {reply:?}"));
            }
            if !forged && framing.signed && status == 401 {
                return Err(format!("correctly signed body refused as unauthorized: {reply:?}"));
            }
            serde_json::from_str::<serde_json::Value>(&reply.body())
                .map_err(|e| format!("reply body is not JSON: {e}"))?;
            Ok(false)
        }
        Prepared::Enqueue(message) => {
            if forged {
                return Err("forged body enqueued".to_owned());
            }
            let json = message.to_json().map_err(|e| format!("message does not encode: {e}"))?;
            if json.len() > MAX_MESSAGE_BYTES {
                return Err(format!("message of {} bytes exceeds SQS's limit", json.len()));
            }
            let back = Message::from_json(&json).map_err(|e| format!("message does not decode: {e}"))?;
            if back != *message {
                return Err("message changed through encode/decode".to_owned());
            }
            if message.message_group_id().len() > previewd_events::MAX_GROUP_ID_LEN {
                return Err("group id over SQS's limit".to_owned());
            }
            Ok(true)
        }
    }
}

/// The queue-message decoder: no panic; what decodes re-encodes to the same message.
pub fn check_queue_message(bytes: &[u8]) -> Result<(), String> {
    let text = String::from_utf8_lossy(bytes);
    match Message::from_json(&text) {
        Err(err) => {
            if err.to_string().is_empty() {
                return Err("an error without a reason".to_owned());
            }
            Ok(())
        }
        Ok(message) => {
            let json = message.to_json().map_err(|e| format!("decoded message does not encode: {e}"))?;
            let back = Message::from_json(&json).map_err(|e| format!("re-encoded message does not decode: {e}"))?;
            if back != message {
                return Err("message changed through decode/encode/decode".to_owned());
            }
            Ok(())
        }
    }
}
