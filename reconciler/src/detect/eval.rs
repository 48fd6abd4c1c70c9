//! The labelled development set (`docs/eval/detection/*.yaml`: real commits of public
//! monorepos, each labelled with the services it affects) and its scoring: micro precision,
//! recall and F1 over (commit, service) pairs, and exact-set matches.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Deserialize;

use super::tree::SourceTree;
use crate::config::{Config, RepositoryConfig};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LabelledRepository {
    /// `owner/name`.
    pub repository: String,
    /// The Previewd configuration a team would write for it (YAML).
    pub config: String,
    pub cases: Vec<LabelledCommit>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LabelledCommit {
    pub commit: String,
    #[serde(default)]
    pub note: Option<String>,
    /// The services the commit affects, each with the reason read from the code.
    pub services: BTreeMap<String, String>,
}

impl LabelledRepository {
    pub fn load(path: &Path) -> Result<LabelledRepository, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        serde_norway::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// The repository's configuration, and every label checked against its services.
    pub fn repository_config(&self) -> Result<RepositoryConfig, String> {
        let config = Config::from_yaml(&self.config).map_err(|e| format!("{}: config: {e}", self.repository))?;
        let repo = config
            .repositories
            .into_iter()
            .find(|r| r.name.eq_ignore_ascii_case(&self.repository))
            .ok_or_else(|| format!("{}: the config does not configure it", self.repository))?;
        for case in &self.cases {
            if let Some(unknown) = case.services.keys().find(|s| !repo.services.iter().any(|c| &c.name == *s)) {
                return Err(format!("{} {}: {unknown} is not a configured service", self.repository, case.commit));
            }
        }
        Ok(repo)
    }
}

/// Counts over (commit, service) pairs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Score {
    pub true_positives: usize,
    pub false_positives: usize,
    pub false_negatives: usize,
    pub exact: usize,
    pub cases: usize,
}

impl Score {
    pub fn add(&mut self, predicted: &BTreeSet<String>, labelled: &BTreeSet<String>) {
        self.true_positives += predicted.intersection(labelled).count();
        self.false_positives += predicted.difference(labelled).count();
        self.false_negatives += labelled.difference(predicted).count();
        self.exact += usize::from(predicted == labelled);
        self.cases += 1;
    }

    pub fn merge(&mut self, other: &Score) {
        self.true_positives += other.true_positives;
        self.false_positives += other.false_positives;
        self.false_negatives += other.false_negatives;
        self.exact += other.exact;
        self.cases += other.cases;
    }

    fn ratio(num: usize, den: usize) -> f64 {
        if den == 0 { 1.0 } else { num as f64 / den as f64 }
    }

    pub fn precision(&self) -> f64 {
        Score::ratio(self.true_positives, self.true_positives + self.false_positives)
    }

    pub fn recall(&self) -> f64 {
        Score::ratio(self.true_positives, self.true_positives + self.false_negatives)
    }

    pub fn f1(&self) -> f64 {
        let (p, r) = (self.precision(), self.recall());
        if p + r == 0.0 { 0.0 } else { 2.0 * p * r / (p + r) }
    }
}

/// A commit of a local Git repository (a bare mirror works), read with `git`.
#[derive(Debug)]
pub struct GitTree {
    git_dir: PathBuf,
    commit: String,
    paths: BTreeSet<String>,
}

fn git(git_dir: &Path, args: &[&str]) -> Result<String, String> {
    let out = Command::new("git")
        .arg("--git-dir")
        .arg(git_dir)
        .args(args)
        .output()
        .map_err(|e| format!("git {}: {e}", args.join(" ")))?;
    if !out.status.success() {
        return Err(format!("git {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim()));
    }
    String::from_utf8(out.stdout).map_err(|e| format!("git {}: {e}", args.join(" ")))
}

impl GitTree {
    pub fn open(git_dir: &Path, commit: &str) -> Result<GitTree, String> {
        let listing = git(git_dir, &["ls-tree", "-r", "--name-only", "-z", commit])?;
        let paths = listing.split('\0').filter(|p| !p.is_empty()).map(str::to_owned).collect();
        Ok(GitTree { git_dir: git_dir.to_path_buf(), commit: commit.to_owned(), paths })
    }
}

impl SourceTree for GitTree {
    fn paths(&self) -> &BTreeSet<String> {
        &self.paths
    }

    fn read(&self, path: &str) -> Option<String> {
        if !self.paths.contains(path) {
            return None;
        }
        let object = format!("{}:{path}", self.commit);
        let size: usize = git(&self.git_dir, &["cat-file", "-s", &object]).ok()?.trim().parse().ok()?;
        if size > super::tree::MAX_PARSED_BYTES {
            return None;
        }
        git(&self.git_dir, &["cat-file", "blob", &object]).ok()
    }
}

/// What a commit changed against its first parent: the paths (both sides of a rename) and the
/// unified diff.
pub fn commit_changes(git_dir: &Path, commit: &str) -> Result<(Vec<String>, String), String> {
    let parent = format!("{commit}^");
    let names = git(git_dir, &["diff", "--no-renames", "--name-only", "-z", &parent, commit])?;
    let patch = git(git_dir, &["diff", "--no-renames", &parent, commit])?;
    Ok((names.split('\0').filter(|p| !p.is_empty()).map(str::to_owned).collect(), patch))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(items: &[&str]) -> BTreeSet<String> {
        items.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn micro_scores_count_pairs_and_exact_sets() {
        let mut score = Score::default();
        score.add(&set(&["a", "b"]), &set(&["a"]));
        score.add(&set(&[]), &set(&[]));
        score.add(&set(&["c"]), &set(&["c", "d"]));
        assert_eq!((score.true_positives, score.false_positives, score.false_negatives), (2, 1, 1));
        assert_eq!((score.exact, score.cases), (1, 3));
        assert!((score.precision() - 2.0 / 3.0).abs() < 1e-9);
        assert!((score.recall() - 2.0 / 3.0).abs() < 1e-9);
        assert!((score.f1() - 2.0 / 3.0).abs() < 1e-9);
    }

    #[test]
    fn the_development_set_loads_and_names_only_configured_services() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/eval/detection");
        let mut commits = 0;
        let mut repositories = 0;
        for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{e}")) {
            let path = entry.unwrap_or_else(|e| panic!("{e}")).path();
            let set = LabelledRepository::load(&path).unwrap_or_else(|e| panic!("{e}"));
            set.repository_config().unwrap_or_else(|e| panic!("{e}"));
            assert!(set.cases.iter().all(|c| c.commit.len() == 40), "{}: full commit SHAs", path.display());
            commits += set.cases.len();
            repositories += 1;
        }
        assert!(repositories >= 3 && commits >= 45, "{repositories} repositories, {commits} commits");
    }
}
