//! The Previewd webhook front: verify a GitHub delivery, dedupe and rate-limit it in DynamoDB,
//! put the small contract message on SQS FIFO. See `docs/webhook.md`.
#![forbid(unsafe_code)]

pub mod body;
pub mod budget;
pub mod checks;
pub mod config;
pub mod emf;
pub mod github;
pub mod handler;
pub mod lambda;
pub mod ledger;
pub mod queue;
pub mod reply;
pub mod secrets;
pub mod signature;

pub use handler::{Delivery, Prepared, Webhook, prepare};
pub use reply::{Outcome, Reply};
