//! The repository at a PR's head commit, read from GitHub for the build-graph detector: one
//! recursive tree listing, then only the blobs the detector asks for, round by round. Blobs are
//! cached by their SHA across events and PRs (a blob SHA names its content), and each event has
//! a request budget: past it, or when GitHub fails, the caller falls back to the path globs.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use serde::Deserialize;

use super::client::{GitHubClient, GitHubError};
use crate::config::RepositoryConfig;
use crate::detect::tree::{MAX_PARSED_BYTES, MemoryTree, SourceTree};
use crate::detect::{self, Detection};

/// Rounds of "read, find what is missing, fetch it" before giving up (a graph deeper than this
/// is not one a build has).
const MAX_ROUNDS: usize = 32;

#[derive(Debug, Deserialize)]
struct TreeEntry {
    path: String,
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    sha: String,
    #[serde(default)]
    size: Option<u64>,
}

#[derive(Debug, Deserialize)]
struct TreeListing {
    #[serde(default)]
    truncated: bool,
    tree: Vec<TreeEntry>,
}

#[derive(Debug, Deserialize)]
struct Blob {
    content: String,
    encoding: String,
}

/// Why the build graph could not be read.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error(transparent)]
    GitHub(#[from] GitHubError),
    #[error("the request budget of {0} per event ran out")]
    Budget(u32),
    #[error("GitHub truncated the tree listing (the repository is too large to list at once)")]
    Truncated,
    #[error("the build graph was still growing after {MAX_ROUNDS} rounds")]
    TooDeep,
}

/// Blob texts by blob SHA, least recently inserted dropped first past `max_bytes`.
#[derive(Debug)]
pub struct BlobCache {
    inner: Mutex<CacheInner>,
    max_bytes: usize,
}

#[derive(Debug, Default)]
struct CacheInner {
    texts: HashMap<String, Arc<str>>,
    order: VecDeque<String>,
    bytes: usize,
    hits: u64,
}

impl BlobCache {
    pub fn new(max_bytes: usize) -> BlobCache {
        BlobCache { inner: Mutex::new(CacheInner::default()), max_bytes }
    }

    fn get(&self, sha: &str) -> Option<Arc<str>> {
        let mut inner = self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let hit = inner.texts.get(sha).cloned();
        inner.hits += u64::from(hit.is_some());
        hit
    }

    fn put(&self, sha: String, text: Arc<str>) {
        let mut inner = self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if text.len() > self.max_bytes || inner.texts.contains_key(&sha) {
            return;
        }
        inner.bytes += text.len();
        inner.order.push_back(sha.clone());
        inner.texts.insert(sha, text);
        while inner.bytes > self.max_bytes {
            let Some(old) = inner.order.pop_front() else { break };
            if let Some(gone) = inner.texts.remove(&old) {
                inner.bytes -= gone.len();
            }
        }
    }

    /// Lookups answered from the cache so far.
    pub fn hits(&self) -> u64 {
        self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner).hits
    }
}

/// What one detection cost.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Cost {
    pub requests: u32,
    pub cached: u32,
}

/// Reads the tree at `sha` and the blobs the detector needs, then detects.
#[allow(clippy::too_many_arguments)]
pub async fn detect_at_head(
    github: &GitHubClient,
    cache: &BlobCache,
    installation: Option<u64>,
    repo: &RepositoryConfig,
    sha: &str,
    changed: &[String],
    patch: Option<&str>,
    budget: u32,
) -> Result<(Detection, Cost), SourceError> {
    let repository = repo.name.as_str();
    let mut cost = Cost { requests: 1, cached: 0 };
    let url = format!("/repos/{repository}/git/trees/{sha}?recursive=1");
    let (_, listing): (_, TreeListing) = github.get_json(installation, &url, "get a tree").await?;
    if listing.truncated {
        return Err(SourceError::Truncated);
    }
    let blobs: HashMap<String, (String, u64)> =
        listing.tree.into_iter().filter(|e| e.kind == "blob").map(|e| (e.path, (e.sha, e.size.unwrap_or(0)))).collect();
    let mut tree = MemoryTree::new(blobs.keys().cloned());
    for _ in 0..MAX_ROUNDS {
        let detection = detect::detect(repo, changed, Some(&tree as &dyn SourceTree), None, patch);
        let wanted = tree.take_wanted();
        if wanted.is_empty() {
            return Ok((detection, cost));
        }
        let mut fetch = Vec::new();
        for path in wanted {
            let Some((blob, size)) = blobs.get(&path) else { continue };
            if *size > MAX_PARSED_BYTES as u64 {
                tree.mark_unreadable(path);
            } else if let Some(text) = cache.get(blob) {
                cost.cached += 1;
                tree.insert_contents(path, text.to_string());
            } else {
                fetch.push((path, blob.clone()));
            }
        }
        let room = budget.saturating_sub(cost.requests) as usize;
        if fetch.len() > room {
            return Err(SourceError::Budget(budget));
        }
        cost.requests += fetch.len() as u32;
        let answers = futures::future::join_all(fetch.iter().map(|(_, blob)| async move {
            let url = format!("/repos/{repository}/git/blobs/{blob}");
            github.get_json::<Blob>(installation, &url, "get a blob").await
        }))
        .await;
        for ((path, blob), answer) in fetch.into_iter().zip(answers) {
            let (_, answer) = answer?;
            match decode_blob(&answer) {
                Some(text) => {
                    let text: Arc<str> = Arc::from(text);
                    cache.put(blob, Arc::clone(&text));
                    tree.insert_contents(path, text.to_string());
                }
                // Not UTF-8: nothing a build file reader could use.
                None => tree.mark_unreadable(path),
            }
        }
    }
    Err(SourceError::TooDeep)
}

fn decode_blob(blob: &Blob) -> Option<String> {
    let bytes = match blob.encoding.as_str() {
        "base64" => {
            let compact: String = blob.content.chars().filter(|c| !c.is_whitespace()).collect();
            base64::engine::general_purpose::STANDARD.decode(compact).ok()?
        }
        _ => blob.content.clone().into_bytes(),
    };
    String::from_utf8(bytes).ok()
}

/// The PR's patches as one unified diff (what `detect` reads changed keys from).
pub fn unified_diff(changes: &[super::client::PrChange]) -> String {
    let mut out = String::new();
    for change in changes {
        if let Some(patch) = &change.patch {
            out.push_str(&format!("--- a/{0}\n+++ b/{0}\n{patch}\n", change.filename));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cache_keeps_within_its_size_dropping_the_oldest() {
        let cache = BlobCache::new(10);
        cache.put("a".into(), Arc::from("12345"));
        cache.put("b".into(), Arc::from("12345"));
        assert!(cache.get("a").is_some());
        cache.put("c".into(), Arc::from("123"));
        assert!(cache.get("a").is_none(), "the oldest went");
        assert!(cache.get("b").is_some() && cache.get("c").is_some());
        cache.put("huge".into(), Arc::from("12345678901"));
        assert!(cache.get("huge").is_none(), "larger than the whole cache");
        assert_eq!(cache.hits(), 3);
    }

    #[test]
    fn blobs_decode_from_githubs_wrapped_base64() {
        let blob = Blob { content: "aGVs\nbG8=\n".into(), encoding: "base64".into() };
        assert_eq!(decode_blob(&blob).as_deref(), Some("hello"));
        let binary = Blob { content: "/w==".into(), encoding: "base64".into() };
        assert_eq!(decode_blob(&binary), None);
    }
}
