//! Go: the packages a service's main packages import, across the modules of the repository
//! (`go.mod` with local `replace`s, `go.work`), with their `go.mod`/`go.sum` and `//go:embed`
//! files. Test files (`_test.go`) are not followed.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use super::graph::{Reach, ServiceGraph};
use super::tree::{SourceTree, ancestors, file_name, is_within, join, parent};

/// `module` path and local `replace` targets of a go.mod.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct GoMod {
    pub module: String,
    /// Module path -> folder (repository-relative), for `replace x => ./local`.
    pub replaces: BTreeMap<String, String>,
}

/// The arguments of every `keyword` directive in a go.mod or go.work, in both the one-line
/// form (`replace a => ./b`) and the block form (`replace ( ... )`); comments removed.
fn directives<'a>(text: &'a str, keyword: &str) -> Vec<&'a str> {
    let mut out = Vec::new();
    let mut in_block = false;
    for line in text.lines() {
        let line = line.split("//").next().unwrap_or("").trim();
        if in_block {
            if line == ")" {
                in_block = false;
            } else if !line.is_empty() {
                out.push(line);
            }
        } else if let Some(rest) = line.strip_prefix(keyword) {
            match rest.trim_start() {
                "(" => in_block = true,
                args if rest.starts_with(char::is_whitespace) && !args.is_empty() => out.push(args),
                _ => {}
            }
        }
    }
    out
}

pub fn parse_go_mod(text: &str, dir: &str) -> GoMod {
    let mut out = GoMod::default();
    if let Some(module) = directives(text, "module").first() {
        out.module = module.trim_matches('"').to_owned();
    }
    for spec in directives(text, "replace") {
        if let Some((from, to)) = spec.split_once("=>") {
            let from = from.split_whitespace().next().unwrap_or("");
            let to = to.split_whitespace().next().unwrap_or("");
            if (to.starts_with("./") || to.starts_with("../"))
                && let Some(path) = join(dir, to)
            {
                out.replaces.insert(from.to_owned(), path);
            }
        }
    }
    out
}

/// The `use` folders of a go.work.
pub fn parse_go_work(text: &str, dir: &str) -> Vec<String> {
    directives(text, "use").into_iter().filter_map(|target| join(dir, target.trim_matches('"'))).collect()
}

/// The import paths of a Go source file, and its `//go:embed` patterns.
pub fn imports(text: &str) -> (Vec<String>, Vec<String>) {
    let (mut imports, mut embeds) = (Vec::new(), Vec::new());
    let mut in_block = false;
    for line in text.lines() {
        let trimmed = line.trim();
        if let Some(patterns) = trimmed.strip_prefix("//go:embed ") {
            embeds.extend(patterns.split_whitespace().map(|p| p.trim_matches('"').to_owned()));
            continue;
        }
        let code = trimmed.split("//").next().unwrap_or("").trim();
        let quoted = || code.split('"').nth(1).map(str::to_owned);
        if in_block {
            if code.starts_with(')') {
                in_block = false;
            } else if let Some(path) = quoted() {
                imports.push(path);
            }
        } else if code.starts_with("import (") || code == "import(" {
            in_block = true;
        } else if code.starts_with("import ") {
            imports.extend(quoted());
        }
    }
    (imports, embeds)
}

/// The module whose folder holds `dir`: the nearest go.mod at or above it.
fn module_dir(tree: &dyn SourceTree, dir: &str) -> Option<String> {
    ancestors(dir).find(|at| join(at, "go.mod").is_some_and(|p| tree.exists(&p))).map(str::to_owned)
}

fn go_files<'a>(tree: &'a dyn SourceTree, dir: &str) -> Vec<&'a str> {
    tree.files_under(dir)
        .into_iter()
        .filter(|f| parent(f) == dir && f.ends_with(".go") && !f.ends_with("_test.go"))
        .collect()
}

/// Whether `dir` holds Go source (non-test) directly.
pub fn is_package(tree: &dyn SourceTree, dir: &str) -> bool {
    !go_files(tree, dir).is_empty()
}

/// Every Go package at or under `dir` (for a service whose main packages are not named).
pub fn packages_under(tree: &dyn SourceTree, dir: &str) -> Vec<String> {
    let dirs: BTreeSet<&str> = tree
        .files_under(dir)
        .into_iter()
        .filter(|f| f.ends_with(".go") && !f.ends_with("_test.go") && super::graph::not_deployed(f).is_none())
        .map(parent)
        .collect();
    dirs.into_iter().map(str::to_owned).collect()
}

/// Follows the imports from `seeds` (package folders) and adds every local package reached.
pub fn read(tree: &dyn SourceTree, seeds: &[String], graph: &mut ServiceGraph, origin: &str) {
    graph.follow(&[".go"]);
    // Module path -> folder, for every module the repository holds that the build can see.
    let mut modules: BTreeMap<String, String> = BTreeMap::new();
    let add_module = |dir: &str, modules: &mut BTreeMap<String, String>, graph: &mut ServiceGraph| {
        let go_mod = join(dir, "go.mod").unwrap_or_default();
        let text = tree.read(&go_mod)?;
        let parsed = parse_go_mod(&text, dir);
        graph.add(Reach::File(go_mod), format!("go.mod of a module {origin} builds"));
        if let Some(sum) = join(dir, "go.sum").filter(|s| tree.exists(s)) {
            graph.add(Reach::File(sum), format!("go.sum of a module {origin} builds"));
        }
        modules.entry(parsed.module.clone()).or_insert_with(|| dir.to_owned());
        Some(parsed)
    };
    for seed in seeds {
        let Some(dir) = module_dir(tree, seed) else { continue };
        if modules.values().any(|d| d == &dir) {
            continue;
        }
        if let Some(parsed) = add_module(&dir, &mut modules, graph) {
            for (path, target) in parsed.replaces {
                if add_module(&target, &mut modules, graph).is_some() {
                    modules.insert(path, target);
                }
            }
        }
        // A go.work above the module puts its other modules in the build.
        let work = ancestors(&dir).find_map(|at| {
            let path = join(at, "go.work")?;
            tree.read(&path).map(|text| (at.to_owned(), path, text))
        });
        if let Some((at, path, text)) = work {
            graph.add(Reach::File(path.clone()), format!("{path} of a module {origin} builds"));
            for used in parse_go_work(&text, &at) {
                add_module(&used, &mut modules, graph);
            }
        }
    }
    let mut seen: BTreeSet<String> = BTreeSet::new();
    let mut queue: VecDeque<(String, String)> =
        seeds.iter().map(|s| (s.clone(), format!("Go package {s} built for {origin}"))).collect();
    while let Some((dir, why)) = queue.pop_front() {
        if !seen.insert(dir.clone()) {
            continue;
        }
        graph.add(Reach::Package { dir: dir.clone(), extensions: vec![".go", ".s", ".c", ".h"] }, why);
        for file in go_files(tree, &dir) {
            let Some(text) = tree.read(file) else { continue };
            let (imported, embeds) = imports(&text);
            for pattern in embeds {
                let Some(path) = join(&dir, &pattern) else { continue };
                let why = format!("//go:embed in {file}");
                if tree.is_dir(&path) {
                    graph.add(Reach::Tree(path), why);
                } else if let Ok(glob) = globset::Glob::new(&path) {
                    let matcher = glob.compile_matcher();
                    for hit in tree.files_under(&dir).into_iter().filter(|f| matcher.is_match(f)) {
                        graph.add(Reach::File(hit.to_owned()), why.clone());
                    }
                }
            }
            for import in imported {
                let Some((module, module_dir)) = modules
                    .iter()
                    .filter(|(m, _)| {
                        import == **m || import.strip_prefix(m.as_str()).is_some_and(|r| r.starts_with('/'))
                    })
                    .max_by_key(|(m, _)| m.len())
                else {
                    continue;
                };
                let rest = import[module.len()..].trim_start_matches('/');
                let Some(target) = join(module_dir, rest) else { continue };
                if !seen.contains(&target) && is_within(&target, module_dir) && is_package(tree, &target) {
                    queue.push_back((target.clone(), format!("Go package {target} imported by {}", file_name(&dir))));
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
    fn go_mod_and_work_name_the_local_modules() {
        let m = parse_go_mod(
            "module example.com/shop // c\n\nreplace example.com/lib => ../lib\nreplace (\n  x => ./x v1\n  y => y.io/y v1\n)\n",
            "svc",
        );
        assert_eq!(m.module, "example.com/shop");
        assert_eq!(m.replaces.get("example.com/lib").map(String::as_str), Some("lib"));
        assert_eq!(m.replaces.get("x").map(String::as_str), Some("svc/x"));
        assert_eq!(m.replaces.len(), 2);
        assert_eq!(parse_go_work("go 1.22\nuse (\n ./a\n ./b // c\n)\nuse ./c\n", ""), vec!["a", "b", "c"]);
    }

    #[test]
    fn imports_are_followed_across_a_replaced_module() {
        let tree = MemoryTree::from_files([
            ("svc/go.mod", "module example.com/svc\nreplace example.com/lib => ../lib\n"),
            ("svc/go.sum", ""),
            (
                "svc/main.go",
                "package main\nimport (\n  \"fmt\"\n  m \"example.com/lib/money\" // money\n  \"example.com/svc/internal/db\"\n)\n",
            ),
            ("svc/main_test.go", "package main\nimport \"example.com/svc/internal/testonly\"\n"),
            ("svc/internal/db/db.go", "package db\n//go:embed schema.sql\nvar s string\n"),
            ("svc/internal/db/schema.sql", ""),
            ("svc/internal/testonly/x.go", "package testonly\n"),
            ("lib/go.mod", "module example.com/lib\n"),
            ("lib/money/money.go", "package money\nimport \"example.com/lib/round\"\n"),
            ("lib/round/round.go", "package round\n"),
            ("lib/unused/u.go", "package unused\n"),
        ]);
        let mut graph = ServiceGraph::default();
        read(&tree, &["svc".to_owned()], &mut graph, "svc");
        let hit = |f: &str| graph.reason(f, &NoDetail).is_some();
        for f in ["svc/main.go", "svc/go.mod", "svc/go.sum", "lib/go.mod", "lib/money/money.go", "lib/round/round.go"] {
            assert!(hit(f), "{f}");
        }
        assert!(hit("svc/internal/db/schema.sql"), "embedded");
        for f in ["svc/main_test.go", "svc/internal/testonly/x.go", "lib/unused/u.go"] {
            assert!(!hit(f), "{f}");
        }
    }
}
