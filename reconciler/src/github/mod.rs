//! GitHub in the loop (issue 5, in progress): the shared API client (App installation tokens,
//! rate-limit discipline, a PR's changed files), which services those files touch, and the one
//! sticky PR comment.

pub mod client;
pub mod comment;
pub mod detect;
