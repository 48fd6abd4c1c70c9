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
    #[error("the matching files weigh {0} bytes, more than {MAX_MATCHING_BYTES}")]
    TooLarge(u64),
    #[error("{0} is not UTF-8 text")]
    NotText(String),
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

/// A commit's tree, as listed: its paths, and each path's blob SHA and size.
struct Listed {
    tree: MemoryTree,
    blobs: HashMap<String, (String, u64)>,
}

async fn list(
    github: &GitHubClient,
    installation: Option<u64>,
    repository: &str,
    sha: &str,
) -> Result<Listed, SourceError> {
    let url = format!("/repos/{repository}/git/trees/{sha}?recursive=1");
    let (_, listing): (_, TreeListing) = github.get_json(installation, &url, "get a tree").await?;
    if listing.truncated {
        return Err(SourceError::Truncated);
    }
    let blobs: HashMap<String, (String, u64)> =
        listing.tree.into_iter().filter(|e| e.kind == "blob").map(|e| (e.path, (e.sha, e.size.unwrap_or(0)))).collect();
    Ok(Listed { tree: MemoryTree::new(blobs.keys().cloned()), blobs })
}

/// The commits to read, and what an event may spend on them.
#[derive(Debug, Clone, Copy)]
pub struct Commits<'a> {
    pub installation: Option<u64>,
    pub head: &'a str,
    /// The PR's base commit, when known: it places deleted files and tells what changed in a
    /// lockfile or package manifest.
    pub base: Option<&'a str>,
    pub budget: u32,
}

/// Reads the trees at the head (and base) commit and the blobs the detector needs, then
/// detects.
pub async fn detect_from_github(
    github: &GitHubClient,
    cache: &BlobCache,
    repo: &RepositoryConfig,
    commits: Commits<'_>,
    changed: &[String],
    patch: Option<&str>,
) -> Result<(Detection, Cost), SourceError> {
    let repository = repo.name.as_str();
    let installation = commits.installation;
    let mut cost = Cost { requests: 1, cached: 0 };
    let mut head = list(github, installation, repository, commits.head).await?;
    let mut base = match commits.base {
        Some(sha) => {
            cost.requests += 1;
            Some(list(github, installation, repository, sha).await?)
        }
        None => None,
    };
    for _ in 0..MAX_ROUNDS {
        let detection = detect::detect(
            repo,
            changed,
            Some(&head.tree as &dyn SourceTree),
            base.as_ref().map(|b| &b.tree as &dyn SourceTree),
            patch,
        );
        let mut fetch: Vec<(bool, String, String)> = Vec::new();
        let mut wanted_any = false;
        for (is_head, listed) in std::iter::once((true, &mut head)).chain(base.as_mut().map(|b| (false, b))) {
            for path in listed.tree.take_wanted() {
                wanted_any = true;
                let Some((blob, size)) = listed.blobs.get(&path).cloned() else { continue };
                if size > MAX_PARSED_BYTES as u64 {
                    listed.tree.mark_unreadable(path);
                } else if let Some(text) = cache.get(&blob) {
                    cost.cached += 1;
                    listed.tree.insert_contents(path, text.to_string());
                } else {
                    fetch.push((is_head, path, blob));
                }
            }
        }
        if !wanted_any {
            return Ok((detection, cost));
        }
        if fetch.is_empty() {
            continue; // all from the cache: read again with them
        }
        // One request per distinct blob: base and head mostly share their build files.
        let mut distinct: Vec<String> = fetch.iter().map(|(_, _, blob)| blob.clone()).collect();
        distinct.sort();
        distinct.dedup();
        let room = budget_room(commits.budget, cost.requests);
        if distinct.len() > room {
            return Err(SourceError::Budget(commits.budget));
        }
        cost.requests += u32::try_from(distinct.len()).unwrap_or(u32::MAX);
        let answers = futures::future::join_all(distinct.iter().map(|blob| async move {
            let url = format!("/repos/{repository}/git/blobs/{blob}");
            github.get_json::<Blob>(installation, &url, "get a blob").await
        }))
        .await;
        let mut texts: HashMap<String, Option<Arc<str>>> = HashMap::new();
        for (blob, answer) in distinct.into_iter().zip(answers) {
            let (_, answer) = answer?;
            let text = decode_blob(&answer).map(Arc::<str>::from);
            if let Some(text) = &text {
                cache.put(blob.clone(), Arc::clone(text));
            }
            texts.insert(blob, text);
        }
        for (is_head, path, blob) in fetch {
            let Some(listed) = (if is_head { Some(&mut head) } else { base.as_mut() }) else { continue };
            match texts.get(&blob).cloned().flatten() {
                Some(text) => listed.tree.insert_contents(path, text.to_string()),
                // Not UTF-8: nothing a build file reader could use.
                None => listed.tree.mark_unreadable(path),
            }
        }
    }
    Err(SourceError::TooDeep)
}

fn budget_room(budget: u32, spent: u32) -> usize {
    usize::try_from(budget.saturating_sub(spent)).unwrap_or(usize::MAX)
}

/// The PR's base commit, as GitHub reports it now.
pub async fn base_sha(
    github: &GitHubClient,
    installation: Option<u64>,
    repository: &str,
    number: u64,
) -> Result<String, GitHubError> {
    #[derive(Deserialize)]
    struct Base {
        sha: String,
    }
    #[derive(Deserialize)]
    struct Pull {
        base: Base,
    }
    let url = format!("/repos/{repository}/pulls/{number}");
    let (_, pull): (_, Pull) = github.get_json(installation, &url, "get pull request").await?;
    Ok(pull.base.sha)
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

/// The most bytes of files one `read_matching` reads (schema files are small).
const MAX_MATCHING_BYTES: u64 = 4 * 1024 * 1024;

/// The texts of the files at commit `sha` whose paths match `globs`, in path order (a seed's
/// schema files). Blobs come from `cache` when they can.
pub async fn read_matching(
    github: &GitHubClient,
    cache: &BlobCache,
    installation: Option<u64>,
    repository: &str,
    sha: &str,
    globs: &crate::config::types::Globs,
) -> Result<Vec<(String, Arc<str>)>, SourceError> {
    let listed = list(github, installation, repository, sha).await?;
    let mut matching: Vec<(&String, &(String, u64))> = listed.blobs.iter().filter(|(p, _)| globs.is_match(p)).collect();
    matching.sort();
    let total: u64 = matching.iter().map(|(_, (_, size))| size).sum();
    if total > MAX_MATCHING_BYTES {
        return Err(SourceError::TooLarge(total));
    }
    let mut out = Vec::with_capacity(matching.len());
    for (path, (blob, _)) in matching {
        let text = match cache.get(blob) {
            Some(text) => text,
            None => {
                let url = format!("/repos/{repository}/git/blobs/{blob}");
                let (_, answer) = github.get_json::<Blob>(installation, &url, "get a blob").await?;
                let Some(text) = decode_blob(&answer).map(Arc::<str>::from) else {
                    return Err(SourceError::NotText(path.clone()));
                };
                cache.put(blob.clone(), Arc::clone(&text));
                text
            }
        };
        out.push((path.clone(), text));
    }
    Ok(out)
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
