//! What each subcommand of `previewd` does, one module each (`main.rs` only parses and wires).

pub mod consume;
pub mod cost;
pub mod detect;
pub mod experiments;
pub mod render;
pub mod run;
pub mod seed;
pub mod webhook_server;
