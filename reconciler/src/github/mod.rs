//! GitHub in the loop: the shared API client (App installation tokens, rate-limit discipline),
//! the REST operations Previewd uses, which services a PR's files touch, who may opt a fork in,
//! and what the PR shows (deployment statuses and the one sticky comment), delivered in the
//! background so GitHub never holds up the cluster.

pub mod api;
pub mod client;
pub mod comment;
pub mod detect;
pub mod notify;
pub mod pulls;
pub mod source;
pub mod view;
