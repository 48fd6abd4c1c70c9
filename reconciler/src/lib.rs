//! The in-cluster half of Previewd. See `docs/reconciler.md`.
#![forbid(unsafe_code)]

pub mod ai;
pub mod argo;
pub mod clusters;
pub mod cmd;
pub mod command;
pub mod config;
pub mod consumer;
pub mod controller;
pub mod cost;
pub mod crd;
pub mod detect;
pub mod experiment;
pub mod gate;
pub mod github;
pub mod intake;
pub mod leader;
pub mod limiter;
pub mod metrics;
pub mod names;
pub mod policy;
pub mod render;
pub mod seed;
pub mod serve;
pub mod sizing;
pub mod sleep;
pub mod telemetry;
pub mod ttl;
pub mod wake;
