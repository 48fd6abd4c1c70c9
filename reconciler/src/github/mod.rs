//! GitHub in the loop (issue 5, in progress): which services a PR's changed files touch, and
//! the one sticky PR comment. Both are pure; the API client comes next.

pub mod comment;
pub mod detect;
