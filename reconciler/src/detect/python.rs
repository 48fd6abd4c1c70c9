//! Python: a project's folder, its requirement files and `pyproject.toml` path dependencies
//! (Poetry, uv, PEP 508 `file:` URLs, `-e ../lib` lines), and the local packages its modules
//! import (a folder with `__init__.py`, or a module file, found from the project or the root).

use std::collections::{BTreeSet, VecDeque};

use super::graph::{Reach, ServiceGraph, not_deployed};
use super::tree::{SourceTree, file_name, join, parent};

/// Top-level module names imported by a Python file.
pub fn imports(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for line in text.lines() {
        let line = line.trim();
        let names: Vec<&str> = if let Some(rest) = line.strip_prefix("import ") {
            rest.split(',').filter_map(|p| p.split_whitespace().next()).collect()
        } else if let Some(rest) = line.strip_prefix("from ") {
            rest.split_whitespace().next().into_iter().filter(|m| !m.starts_with('.')).collect()
        } else {
            continue;
        };
        out.extend(names.into_iter().filter_map(|n| n.split('.').next()).map(str::to_owned));
    }
    out
}

/// Local paths a pyproject or requirements file depends on.
pub fn path_dependencies(text: &str, file: &str) -> Vec<String> {
    let dir = parent(file);
    let mut out = Vec::new();
    if file.ends_with(".toml") {
        if let Ok(value) = toml::from_str::<toml::Value>(text) {
            let tables = [
                value.get("tool").and_then(|t| t.get("poetry")).and_then(|p| p.get("dependencies")),
                value.get("tool").and_then(|t| t.get("uv")).and_then(|p| p.get("sources")),
            ];
            for table in tables.into_iter().flatten().filter_map(toml::Value::as_table) {
                out.extend(table.values().filter_map(|v| v.get("path")?.as_str()).filter_map(|p| join(dir, p)));
            }
            let pep621 = value.get("project").and_then(|p| p.get("dependencies")).and_then(toml::Value::as_array);
            for spec in pep621.into_iter().flatten().filter_map(toml::Value::as_str) {
                if let Some(path) = spec.split("file://").nth(1) {
                    out.extend(join(dir, path.trim_start_matches("${PROJECT_ROOT}/").trim()));
                }
            }
        }
        return out;
    }
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or("").trim();
        let target = line.strip_prefix("-e ").unwrap_or(line).trim();
        if target.starts_with("./") || target.starts_with("../") {
            out.extend(join(dir, target));
        }
    }
    out
}

const PROJECT_FILES: [&str; 6] =
    ["pyproject.toml", "requirements.txt", "setup.py", "setup.cfg", "poetry.lock", "uv.lock"];

/// Whether `dir` looks like a Python project.
pub fn is_project(tree: &dyn SourceTree, dir: &str) -> bool {
    PROJECT_FILES.iter().any(|f| join(dir, f).is_some_and(|p| tree.exists(&p)))
}

/// The folder (package) or file (module) a top-level import resolves to, if local.
fn local_module(tree: &dyn SourceTree, roots: &[String], name: &str) -> Option<(String, bool)> {
    roots.iter().find_map(|root| {
        let package = join(root, name)?;
        if join(&package, "__init__.py").is_some_and(|p| tree.exists(&p)) {
            return Some((package, true));
        }
        let module = format!("{package}.py");
        tree.exists(&module).then_some((module, false))
    })
}

pub fn read(tree: &dyn SourceTree, dir: &str, graph: &mut ServiceGraph, origin: &str) {
    graph.follow(&[".py"]);
    let roots: Vec<String> = [dir.to_owned(), String::new(), "src".to_owned(), "libs".to_owned()].into_iter().collect();
    let mut seen = BTreeSet::new();
    let mut queue = VecDeque::from([(dir.to_owned(), true, format!("Python project {dir} built for {origin}"))]);
    while let Some((path, is_dir, why)) = queue.pop_front() {
        if !seen.insert(path.clone()) {
            continue;
        }
        let sources: Vec<String> = if is_dir {
            graph.add(Reach::Tree(path.clone()), why);
            tree.files_under(&path)
                .into_iter()
                .filter(|f| f.ends_with(".py") && not_deployed(f).is_none())
                .map(str::to_owned)
                .collect()
        } else {
            graph.add(Reach::File(path.clone()), why);
            vec![path.clone()]
        };
        for file in PROJECT_FILES.iter().filter_map(|f| join(&path, f)).filter(|_| is_dir) {
            let Some(text) = tree.read(&file) else { continue };
            for dependency in path_dependencies(&text, &file) {
                queue.push_back((dependency, true, format!("path dependency of {file}")));
            }
        }
        for source in sources {
            let Some(text) = tree.read(&source) else { continue };
            for name in imports(&text) {
                if let Some((target, is_dir)) = local_module(tree, &roots, &name)
                    && !seen.contains(&target)
                    && !super::tree::is_within(&target, dir)
                {
                    queue.push_back((
                        target,
                        is_dir,
                        format!("local package {name}, imported by {}", file_name(&source)),
                    ));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::graph::NoDetail;
    use crate::detect::tree::MemoryTree;

    #[test]
    fn imports_and_path_dependencies_reach_local_packages() {
        let tree = MemoryTree::from_files([
            (
                "svc/recs/pyproject.toml",
                "[project]\nname = \"recs\"\ndependencies = [\"flask\"]\n[tool.uv.sources]\nmodels = { path = \"../../libs/models\" }\n",
            ),
            ("svc/recs/app.py", "import os, json\nfrom shared.logging import setup\nfrom . import local\n"),
            ("svc/recs/tests/test_app.py", "import testutils\n"),
            ("shared/__init__.py", ""),
            ("shared/logging.py", ""),
            ("libs/models/model.py", ""),
            ("testutils.py", ""),
            ("other/x.py", ""),
        ]);
        let mut graph = ServiceGraph::default();
        read(&tree, "svc/recs", &mut graph, "recs");
        let hit = |f: &str| graph.reason(f, &NoDetail).is_some();
        for f in ["svc/recs/app.py", "shared/logging.py", "libs/models/model.py", "svc/recs/pyproject.toml"] {
            assert!(hit(f), "{f}");
        }
        for f in ["testutils.py", "other/x.py", "svc/recs/tests/test_app.py"] {
            assert!(!hit(f), "{f}");
        }
        assert_eq!(
            path_dependencies("-e ../lib\nrequests==2\n./vendored # local\n", "a/requirements.txt"),
            vec!["lib", "a/vendored"]
        );
    }
}
