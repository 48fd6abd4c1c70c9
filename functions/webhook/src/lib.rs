//! The Previewd webhook front: verify a GitHub delivery, dedupe and rate-limit it in DynamoDB,
//! put the small contract message on SQS FIFO. See `docs/webhook.md`. The same pipeline runs
//! in the cluster on NATS JetStream (`backing.rs`, `nats.rs` with the `nats` feature;
//! `docs/in-cluster-front.md`).
#![forbid(unsafe_code)]

pub mod backing;
pub mod body;
pub mod budget;
pub mod checks;
pub mod config;
pub mod emf;
pub mod github;
pub mod handler;
pub mod lambda;
pub mod ledger;
#[cfg(feature = "nats")]
pub mod nats;
pub mod queue;
pub mod reply;
pub mod secrets;
pub mod signature;

pub use handler::{Delivery, Prepared, Webhook, prepare};
pub use reply::{Outcome, Reply};
