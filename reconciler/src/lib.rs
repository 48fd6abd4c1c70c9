//! The in-cluster half of Previewd. See `docs/reconciler.md`.
#![forbid(unsafe_code)]

pub mod ai;
pub mod argo;
pub mod config;
pub mod consumer;
pub mod controller;
pub mod cost;
pub mod crd;
pub mod github;
pub mod leader;
pub mod local;
pub mod metrics;
pub mod names;
pub mod offline;
pub mod policy;
pub mod render;
pub mod run;
pub mod serve;
pub mod telemetry;
pub mod ttl;
