//! npm, pnpm and yarn workspaces: the workspace packages a service's package depends on
//! (transitively), the workspace's root manifest and lockfile, and `tsconfig` `extends` chains.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use serde_json::Value;

use super::graph::{Reach, ServiceGraph};
use super::tree::{SourceTree, ancestors, join, parent};

const LOCKFILES: [&str; 4] = ["package-lock.json", "npm-shrinkwrap.json", "yarn.lock", "pnpm-lock.yaml"];
const DEPENDENCY_FIELDS: [&str; 4] = ["dependencies", "devDependencies", "peerDependencies", "optionalDependencies"];

fn manifest(tree: &dyn SourceTree, dir: &str) -> Option<Value> {
    serde_json::from_str(&tree.read(&join(dir, "package.json")?)?).ok()
}

/// The workspace globs of a root manifest (`workspaces` as a list or `{packages}`), or of a
/// `pnpm-workspace.yaml` beside it.
fn workspace_globs(tree: &dyn SourceTree, dir: &str, root: &Value) -> Vec<String> {
    let from_manifest = match root.get("workspaces") {
        Some(Value::Array(list)) => list.iter().filter_map(Value::as_str).map(str::to_owned).collect(),
        Some(Value::Object(map)) => map
            .get("packages")
            .and_then(Value::as_array)
            .map(|l| l.iter().filter_map(Value::as_str).map(str::to_owned).collect())
            .unwrap_or_default(),
        _ => Vec::new(),
    };
    if !from_manifest.is_empty() {
        return from_manifest;
    }
    let pnpm = join(dir, "pnpm-workspace.yaml").and_then(|p| tree.read(&p));
    pnpm.and_then(|text| serde_norway::from_str::<serde_norway::Value>(&text).ok())
        .and_then(|v| {
            v.get("packages").and_then(serde_norway::Value::as_sequence).map(|l| {
                l.iter()
                    .filter_map(serde_norway::Value::as_str)
                    .filter(|g| !g.starts_with('!'))
                    .map(str::to_owned)
                    .collect()
            })
        })
        .unwrap_or_default()
}

/// The workspace that holds `dir`: its root folder and its packages by name.
fn workspace(tree: &dyn SourceTree, dir: &str) -> Option<(String, BTreeMap<String, String>)> {
    let (at, globs) = ancestors(dir).find_map(|at| {
        let globs = workspace_globs(tree, at, &manifest(tree, at)?);
        (!globs.is_empty()).then(|| (at.to_owned(), globs))
    })?;
    let mut builder = globset::GlobSetBuilder::new();
    for glob in &globs {
        let pattern = join(&at, glob.trim_end_matches('/')).unwrap_or_default();
        if let Ok(g) = globset::GlobBuilder::new(&pattern).literal_separator(true).build() {
            builder.add(g);
        }
    }
    let set = builder.build().ok()?;
    let mut packages = BTreeMap::new();
    for file in tree.files_under(&at) {
        if super::tree::file_name(file) != "package.json" || file.contains("node_modules/") {
            continue;
        }
        let package = parent(file);
        if set.is_match(package)
            && let Some(name) =
                manifest(tree, package).and_then(|m| m.get("name").and_then(Value::as_str).map(str::to_owned))
        {
            packages.insert(name, package.to_owned());
        }
    }
    Some((at, packages))
}

/// Lint and format configuration packages (`@acme/eslint-config`, `prettier-config`): they
/// check the code and never change what a build produces.
fn lint_tooling(name: &str) -> bool {
    let last = name.rsplit('/').next().unwrap_or(name);
    last.contains("eslint") || last.contains("prettier")
}

/// Whether `dir` holds a package.json.
pub fn is_package(tree: &dyn SourceTree, dir: &str) -> bool {
    join(dir, "package.json").is_some_and(|p| tree.exists(&p))
}

/// A workspace package's folder by its name (`npm -w @shop/web`, `pnpm --filter web`).
pub fn package_named(tree: &dyn SourceTree, from_dir: &str, name: &str) -> Option<String> {
    let (_, packages) = workspace(tree, from_dir)?;
    packages.get(name).cloned().or_else(|| {
        // `--filter web` also matches `@scope/web`.
        packages.iter().find(|(n, _)| n.rsplit('/').next() == Some(name)).map(|(_, d)| d.clone())
    })
}

/// Adds the package in `dir`, the workspace packages it depends on, and the workspace's root
/// files to `graph`.
pub fn read(tree: &dyn SourceTree, dir: &str, graph: &mut ServiceGraph, origin: &str) {
    graph.follow(&[".js", ".jsx", ".ts", ".tsx", ".mjs", ".cjs"]);
    let workspace = workspace(tree, dir);
    let packages = workspace.as_ref().map(|(_, p)| p.clone()).unwrap_or_default();
    let mut seen = BTreeSet::new();
    let mut queue = VecDeque::from([(dir.to_owned(), format!("package {dir} built for {origin}"))]);
    while let Some((package, why)) = queue.pop_front() {
        if !seen.insert(package.clone()) {
            continue;
        }
        graph.add(Reach::Tree(package.clone()), why);
        let Some(manifest) = manifest(tree, &package) else { continue };
        if let Some(path) = join(&package, "package.json") {
            graph.add(Reach::PackageManifest(path), format!("manifest of package {package}"));
        }
        tsconfig_chain(tree, &package, graph);
        for field in DEPENDENCY_FIELDS {
            for (name, spec) in manifest.get(field).and_then(Value::as_object).into_iter().flatten() {
                if lint_tooling(name) {
                    continue;
                }
                let local = spec.as_str().and_then(|s| s.strip_prefix("file:").or_else(|| s.strip_prefix("link:")));
                let target = match local {
                    Some(path) => join(&package, path),
                    None => packages.get(name).cloned(),
                };
                if let Some(target) = target {
                    queue.push_back((target, format!("workspace package {name}, a dependency of {package}")));
                }
            }
        }
    }
    let root = workspace.map_or_else(|| dir.to_owned(), |(root, _)| root);
    for name in ["package.json", "pnpm-workspace.yaml", ".npmrc", ".yarnrc.yml"].iter().chain(LOCKFILES.iter()) {
        let Some(path) = join(&root, name).filter(|p| tree.exists(p)) else { continue };
        let why = format!("workspace root of {origin}");
        if *name == "pnpm-lock.yaml" {
            // The lockfile names each workspace folder relative to itself.
            let importers = seen
                .iter()
                .map(|p| p.strip_prefix(&root).map_or(p.as_str(), |r| r.trim_start_matches('/')))
                .map(|p| if p.is_empty() { ".".to_owned() } else { p.to_owned() })
                .collect();
            graph.add(Reach::Lockfile { file: path, importers }, why);
        } else {
            graph.add(Reach::File(path), why);
        }
    }
}

/// `tsconfig.json` and the files it `extends`, relative paths only.
fn tsconfig_chain(tree: &dyn SourceTree, dir: &str, graph: &mut ServiceGraph) {
    let mut next = join(dir, "tsconfig.json");
    let mut hops = 0;
    while let Some(path) = next.take().filter(|p| tree.exists(p)) {
        hops += 1;
        graph.add(Reach::File(path.clone()), format!("TypeScript config of {dir}"));
        let Some(text) = tree.read(&path) else { break };
        // tsconfig allows comments and trailing commas: look for "extends" by hand.
        let extends = text.split("\"extends\"").nth(1).and_then(|rest| rest.split('"').nth(1)).map(str::to_owned);
        next = extends.filter(|e| e.starts_with('.') && hops < 8).and_then(|e| join(parent(&path), &e));
        if let Some(candidate) = &next
            && !candidate.ends_with(".json")
        {
            next = Some(format!("{candidate}.json"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::graph::NoDetail;
    use crate::detect::tree::MemoryTree;

    #[test]
    fn workspace_dependencies_are_followed() {
        let tree = MemoryTree::from_files([
            ("package.json", r#"{"private": true, "workspaces": ["apps/*", "packages/*"]}"#),
            ("package-lock.json", "{}"),
            ("tsconfig.base.json", "{}"),
            ("apps/web/package.json", r#"{"name": "web", "dependencies": {"@shop/ui": "*", "react": "^18"}}"#),
            ("apps/web/tsconfig.json", r#"{ "extends": "../../tsconfig.base.json", }"#),
            ("apps/web/src/index.tsx", ""),
            ("apps/admin/package.json", r#"{"name": "admin"}"#),
            ("packages/ui/package.json", r#"{"name": "@shop/ui", "dependencies": {"@shop/tokens": "workspace:*"}}"#),
            ("packages/ui/button.tsx", ""),
            ("packages/ui/button.test.tsx", ""),
            ("packages/tokens/package.json", r#"{"name": "@shop/tokens"}"#),
            ("packages/tokens/colors.ts", ""),
            ("packages/unused/package.json", r#"{"name": "unused"}"#),
            ("packages/unused/x.ts", ""),
        ]);
        let mut graph = ServiceGraph::default();
        read(&tree, "apps/web", &mut graph, "web");
        let hit = |f: &str| graph.reason(f, &NoDetail).is_some();
        for f in [
            "apps/web/src/index.tsx",
            "packages/ui/button.tsx",
            "packages/tokens/colors.ts",
            "package.json",
            "package-lock.json",
            "tsconfig.base.json",
        ] {
            assert!(hit(f), "{f}");
        }
        for f in ["packages/ui/button.test.tsx", "packages/unused/x.ts", "apps/admin/package.json"] {
            assert!(!hit(f), "{f}");
        }
        assert_eq!(package_named(&tree, "apps/web", "ui").as_deref(), Some("packages/ui"));
    }

    #[test]
    fn pnpm_workspaces_are_read_from_their_yaml() {
        let tree = MemoryTree::from_files([
            ("package.json", r#"{"name": "root"}"#),
            ("pnpm-workspace.yaml", "packages:\n  - 'libs/*'\n  - 'svc/*'\n  - '!**/test/**'\n"),
            ("pnpm-lock.yaml", ""),
            ("svc/api/package.json", r#"{"name": "api", "dependencies": {"shared": "workspace:^"}}"#),
            ("libs/shared/package.json", r#"{"name": "shared"}"#),
            ("libs/shared/index.js", ""),
        ]);
        let mut graph = ServiceGraph::default();
        read(&tree, "svc/api", &mut graph, "api");
        assert!(graph.reason("libs/shared/index.js", &NoDetail).is_some());
        assert!(graph.reason("pnpm-lock.yaml", &NoDetail).is_some());
    }
}
