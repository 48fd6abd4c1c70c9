//! `previewd detect`: the service detector offline, on checkouts of a PR's commits.

use std::path::{Path, PathBuf};

use crate::config::Config;
use crate::detect::tree::{DirTree, SourceTree};
use crate::detect::{self, Detection};

/// The command's inputs, as given on the command line.
#[derive(Debug, Clone)]
pub struct DetectArgs {
    pub config: PathBuf,
    pub repository: String,
    /// One changed path per line.
    pub files: PathBuf,
    pub diff: Option<PathBuf>,
    pub repo_dir: Option<PathBuf>,
    pub base_dir: Option<PathBuf>,
}

fn read(path: &Path, what: &str) -> Result<String, String> {
    std::fs::read_to_string(path).map_err(|e| format!("{what} {}: {e}", path.display()))
}

fn open(path: &Path, what: &str) -> Result<DirTree, String> {
    if !path.is_dir() {
        return Err(format!("{what} {}: not a directory", path.display()));
    }
    DirTree::open(path).map_err(|e| format!("{what} {}: {e}", path.display()))
}

/// Runs the detector; the JSON line it prints.
pub fn detect(args: &DetectArgs) -> Result<String, String> {
    let config = Config::load(&args.config).map_err(|e| e.to_string())?;
    let repo = config
        .repositories
        .iter()
        .find(|r| r.name.eq_ignore_ascii_case(&args.repository))
        .ok_or_else(|| format!("{} is not configured in {}", args.repository, args.config.display()))?;
    let changed: Vec<String> = read(&args.files, "--files")?
        .lines()
        .map(|l| l.trim().trim_start_matches("./").to_owned())
        .filter(|l| !l.is_empty())
        .collect();
    let patch = args.diff.as_deref().map(|p| read(p, "--diff")).transpose()?;
    let head = args.repo_dir.as_deref().map(|p| open(p, "--repo-dir")).transpose()?;
    let base = args.base_dir.as_deref().map(|p| open(p, "--base-dir")).transpose()?;
    let detection: Detection = detect::detect(
        repo,
        &changed,
        head.as_ref().map(|t| t as &dyn SourceTree),
        base.as_ref().map(|t| t as &dyn SourceTree),
        patch.as_deref(),
    );
    serde_json::to_string(&detection).map(|json| format!("{json}\n")).map_err(|e| e.to_string())
}
