//! Cargo workspaces: a crate's path dependencies (directly or through
//! `[workspace.dependencies]`), transitively, with the workspace's manifest, lockfile and
//! toolchain files. Dev-dependencies only build tests and are not followed.

use std::collections::{BTreeSet, VecDeque};

use toml::Value;

use super::graph::{Reach, ServiceGraph};
use super::tree::{SourceTree, ancestors, join};

const FIELDS: [&str; 2] = ["dependencies", "build-dependencies"];

fn manifest(tree: &dyn SourceTree, dir: &str) -> Option<Value> {
    toml::from_str(&tree.read(&join(dir, "Cargo.toml")?)?).ok()
}

/// The workspace root above `dir` (the nearest manifest with `[workspace]`).
fn workspace_root(tree: &dyn SourceTree, dir: &str) -> Option<(String, Value)> {
    ancestors(dir).find_map(|at| Some((at.to_owned(), manifest(tree, at).filter(|m| m.get("workspace").is_some())?)))
}

/// Every dependency table of a manifest, target-specific ones included.
fn dependency_tables(manifest: &Value) -> Vec<&toml::Table> {
    let mut tables: Vec<&toml::Table> = FIELDS.iter().filter_map(|f| manifest.get(*f)?.as_table()).collect();
    for target in manifest.get("target").and_then(Value::as_table).into_iter().flat_map(|t| t.values()) {
        tables.extend(FIELDS.iter().filter_map(|f| target.get(*f)?.as_table()));
    }
    tables
}

pub fn read(tree: &dyn SourceTree, dir: &str, graph: &mut ServiceGraph, origin: &str) {
    graph.follow(&[".rs"]);
    let workspace = workspace_root(tree, dir);
    let shared = workspace
        .as_ref()
        .and_then(|(_, m)| m.get("workspace")?.get("dependencies")?.as_table().cloned())
        .unwrap_or_default();
    let root = workspace.as_ref().map_or_else(|| dir.to_owned(), |(r, _)| r.clone());
    let mut seen = BTreeSet::new();
    let mut queue = VecDeque::from([(dir.to_owned(), format!("crate {dir} built for {origin}"))]);
    while let Some((krate, why)) = queue.pop_front() {
        if !seen.insert(krate.clone()) {
            continue;
        }
        let Some(manifest) = manifest(tree, &krate) else { continue };
        // A virtual workspace manifest is no crate: its folder holds every member.
        if manifest.get("package").is_some() {
            graph.add(Reach::Tree(krate.clone()), why);
        }
        for table in dependency_tables(&manifest) {
            for (name, spec) in table {
                let target = match spec.get("path").and_then(Value::as_str) {
                    Some(path) => join(&krate, path),
                    None if spec.get("workspace").and_then(Value::as_bool) == Some(true) => shared
                        .get(name)
                        .and_then(|s| s.get("path"))
                        .and_then(Value::as_str)
                        .and_then(|p| join(&root, p)),
                    None => None,
                };
                if let Some(target) = target {
                    queue.push_back((target, format!("crate {name}, a dependency of {krate}")));
                }
            }
        }
    }
    for name in ["Cargo.toml", "Cargo.lock", "rust-toolchain", "rust-toolchain.toml", ".cargo/config.toml"] {
        if let Some(path) = join(&root, name).filter(|p| tree.exists(p)) {
            graph.add(Reach::File(path), format!("Cargo workspace of {origin}"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::graph::NoDetail;
    use crate::detect::tree::MemoryTree;

    #[test]
    fn path_dependencies_are_followed_through_the_workspace() {
        let tree = MemoryTree::from_files([
            (
                "Cargo.toml",
                "[workspace]\nmembers = [\"svc/*\", \"crates/*\"]\n[workspace.dependencies]\nmodel = { path = \"crates/model\" }\n",
            ),
            ("Cargo.lock", ""),
            (
                "svc/api/Cargo.toml",
                "[package]\nname = \"api\"\n[dependencies]\nmodel.workspace = true\nserde = \"1\"\n[dev-dependencies]\nfixtures = { path = \"../../crates/fixtures\" }\n",
            ),
            ("svc/api/src/main.rs", ""),
            (
                "crates/model/Cargo.toml",
                "[package]\nname = \"model\"\n[target.'cfg(unix)'.dependencies]\nsys = { path = \"../sys\" }\n",
            ),
            ("crates/model/src/lib.rs", ""),
            ("crates/sys/Cargo.toml", "[package]\nname = \"sys\"\n"),
            ("crates/sys/src/lib.rs", ""),
            ("crates/fixtures/Cargo.toml", "[package]\nname = \"fixtures\"\n"),
            ("crates/fixtures/src/lib.rs", ""),
        ]);
        let mut graph = ServiceGraph::default();
        read(&tree, "svc/api", &mut graph, "api");
        let hit = |f: &str| graph.reason(f, &NoDetail).is_some();
        for f in ["svc/api/src/main.rs", "crates/model/src/lib.rs", "crates/sys/src/lib.rs", "Cargo.lock", "Cargo.toml"]
        {
            assert!(hit(f), "{f}");
        }
        assert!(!hit("crates/fixtures/src/lib.rs"), "dev-dependencies build tests only");
    }
}
