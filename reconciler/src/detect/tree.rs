//! The repository at one commit, as the detector reads it: a list of paths and the text of the
//! few files it parses. A local checkout (`previewd detect --repo-dir`) and GitHub's tree plus
//! blobs (the consumer) both fit behind [`SourceTree`].

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Files above this size are not parsed (build files are small; a huge one is data).
pub const MAX_PARSED_BYTES: usize = 1024 * 1024;

/// A repository at one commit. Paths are relative, `/`-separated, without `./`.
pub trait SourceTree {
    /// Every file path in the tree.
    fn paths(&self) -> &BTreeSet<String>;
    /// The text of `path`, when it exists, is UTF-8 and within [`MAX_PARSED_BYTES`].
    fn read(&self, path: &str) -> Option<String>;

    fn exists(&self, path: &str) -> bool {
        self.paths().contains(path)
    }

    /// Whether any file lives under the folder `dir` ("" is the root).
    fn is_dir(&self, dir: &str) -> bool {
        if dir.is_empty() {
            return true;
        }
        let prefix = format!("{dir}/");
        self.paths().range(prefix.clone()..).next().is_some_and(|p| p.starts_with(&prefix))
    }

    /// The files under the folder `dir`, at any depth.
    fn files_under(&self, dir: &str) -> Vec<&str> {
        if dir.is_empty() {
            return self.paths().iter().map(String::as_str).collect();
        }
        let prefix = format!("{dir}/");
        self.paths().range(prefix.clone()..).take_while(|p| p.starts_with(&prefix)).map(String::as_str).collect()
    }
}

/// A tree held in memory: paths, and the contents known so far. The consumer fills it from
/// GitHub (paths from the tree, contents from blobs as the detector asks for them).
#[derive(Debug, Clone, Default)]
pub struct MemoryTree {
    paths: BTreeSet<String>,
    contents: BTreeMap<String, String>,
    /// Paths read that exist but whose contents were not loaded: what to fetch next.
    wanted: std::cell::RefCell<BTreeSet<String>>,
    /// Paths that exist but are not read (too large, not text).
    unreadable: BTreeSet<String>,
}

impl MemoryTree {
    pub fn new(paths: impl IntoIterator<Item = String>) -> MemoryTree {
        MemoryTree { paths: paths.into_iter().collect(), ..MemoryTree::default() }
    }

    /// A tree of exactly these files (tests and fixtures).
    pub fn from_files<'a>(files: impl IntoIterator<Item = (&'a str, &'a str)>) -> MemoryTree {
        let mut tree = MemoryTree::default();
        for (path, text) in files {
            tree.paths.insert(path.to_owned());
            tree.contents.insert(path.to_owned(), text.to_owned());
        }
        tree
    }

    /// A path that exists but reads as nothing (too large, not text): never wanted again.
    pub fn mark_unreadable(&mut self, path: String) {
        self.unreadable.insert(path);
    }

    pub fn insert_contents(&mut self, path: String, text: String) {
        self.contents.insert(path, text);
    }

    /// Files the detector read that exist but were not loaded, then forgets them.
    pub fn take_wanted(&self) -> BTreeSet<String> {
        std::mem::take(&mut *self.wanted.borrow_mut())
    }
}

impl SourceTree for MemoryTree {
    fn paths(&self) -> &BTreeSet<String> {
        &self.paths
    }

    fn read(&self, path: &str) -> Option<String> {
        match self.contents.get(path) {
            Some(text) => Some(text.clone()),
            None => {
                if self.paths.contains(path) && !self.unreadable.contains(path) {
                    self.wanted.borrow_mut().insert(path.to_owned());
                }
                None
            }
        }
    }
}

/// A checkout on disk. `.git` and other version-control folders are left out.
#[derive(Debug, Clone)]
pub struct DirTree {
    root: PathBuf,
    paths: BTreeSet<String>,
}

impl DirTree {
    pub fn open(root: &Path) -> std::io::Result<DirTree> {
        let mut paths = BTreeSet::new();
        let mut stack = vec![root.to_path_buf()];
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(&dir)? {
                let entry = entry?;
                let kind = entry.file_type()?;
                let name = entry.file_name();
                if matches!(name.to_str(), Some(".git" | ".hg" | ".svn")) {
                    continue;
                }
                let path = entry.path();
                if kind.is_dir() {
                    stack.push(path);
                } else if kind.is_file()
                    && let Ok(relative) = path.strip_prefix(root)
                    && let Some(text) = relative.to_str()
                {
                    paths.insert(text.replace('\\', "/"));
                }
            }
        }
        Ok(DirTree { root: root.to_path_buf(), paths })
    }
}

impl SourceTree for DirTree {
    fn paths(&self) -> &BTreeSet<String> {
        &self.paths
    }

    fn read(&self, path: &str) -> Option<String> {
        if !self.paths.contains(path) {
            return None;
        }
        let full = self.root.join(path);
        let size = std::fs::metadata(&full).ok()?.len();
        if size > MAX_PARSED_BYTES as u64 {
            return None;
        }
        std::fs::read_to_string(full).ok()
    }
}

/// `base` joined with `relative`, normalised (`.` and `..` resolved, no leading `./` or `/`).
/// `None` when it climbs out of the repository.
pub fn join(base: &str, relative: &str) -> Option<String> {
    let relative = relative.trim();
    let mut parts: Vec<&str> = Vec::new();
    let start = if relative.starts_with('/') { "" } else { base };
    for part in start.split('/').chain(relative.split(['/', '\\'])) {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            other => parts.push(other),
        }
    }
    Some(parts.join("/"))
}

/// The folder of `path` ("" for a file at the root).
pub fn parent(path: &str) -> &str {
    path.rsplit_once('/').map_or("", |(dir, _)| dir)
}

/// `dir` and every folder above it, up to and including the root ("").
pub fn ancestors(dir: &str) -> impl Iterator<Item = &str> {
    let mut next = Some(dir);
    std::iter::from_fn(move || {
        let at = next?;
        next = (!at.is_empty()).then(|| parent(at));
        Some(at)
    })
}

/// The last component of `path`.
pub fn file_name(path: &str) -> &str {
    path.rsplit_once('/').map_or(path, |(_, name)| name)
}

/// Whether `path` is `dir` itself or inside it ("" holds everything).
pub fn is_within(path: &str, dir: &str) -> bool {
    dir.is_empty() || path == dir || path.strip_prefix(dir).is_some_and(|rest| rest.starts_with('/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_join_and_stay_inside_the_repository() {
        assert_eq!(join("src/cart", "../shared/x.go").as_deref(), Some("src/shared/x.go"));
        assert_eq!(join("src/cart", "./").as_deref(), Some("src/cart"));
        assert_eq!(join("", "a\\b").as_deref(), Some("a/b"));
        assert_eq!(join("src", "/etc/x").as_deref(), Some("etc/x"));
        assert_eq!(join("src", "../../x"), None);
        assert_eq!(parent("a/b/c"), "a/b");
        assert_eq!(parent("c"), "");
        assert!(is_within("a/b/c", "a/b") && is_within("a", "") && !is_within("a/bc", "a/b"));
        assert_eq!(ancestors("a/b").collect::<Vec<_>>(), ["a/b", "a", ""]);
        assert_eq!(ancestors("").collect::<Vec<_>>(), [""]);
    }

    #[test]
    fn a_memory_tree_lists_folders_and_records_what_it_lacks() {
        let mut tree = MemoryTree::new(["a/x".to_owned(), "a/y/z".to_owned(), "ab".to_owned()]);
        assert!(tree.is_dir("a") && tree.is_dir("a/y") && !tree.is_dir("ab"));
        assert_eq!(tree.files_under("a"), vec!["a/x", "a/y/z"]);
        assert_eq!(tree.read("a/x"), None);
        assert_eq!(tree.read("missing"), None);
        assert_eq!(tree.take_wanted().into_iter().collect::<Vec<_>>(), vec!["a/x".to_owned()]);
        tree.insert_contents("a/x".into(), "text".into());
        assert_eq!(tree.read("a/x").as_deref(), Some("text"));
    }
}
