//! What reaches one service's deployed artifact: the edges the ecosystem readers find, and
//! which changed file they let through.

use std::collections::BTreeSet;

use super::tree::{file_name, is_within, parent};

/// How a path reaches the service.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Reach {
    /// Exactly this file (a Dockerfile, a `COPY` of one file, a lockfile).
    File(String),
    /// Every file under this folder that can deploy (see [`not_deployed`]).
    Tree(String),
    /// A folder a Dockerfile copies: like `Tree`, except that source files of a language whose
    /// build graph is followed ([`ServiceGraph::followed`]) count only through that graph.
    Copied(String),
    /// The source files directly in this folder with one of these extensions (a Go package).
    Package { dir: String, extensions: Vec<&'static str> },
    /// One variable of an env file: the file selects only when that key changed (if known).
    EnvKey { file: String, key: String },
    /// One package's version in a central version file (`Directory.Packages.props`).
    PackageVersion { file: String, package: String },
    /// One service's block of a compose file.
    ComposeService { file: String, service: String },
    /// A package.json: selects unless only keys that never reach a build changed (lint,
    /// format, test and dev scripts; lint and format settings). Decides over a folder edge.
    PackageManifest(String),
    /// A pnpm lockfile: selects when the resolved closure of one of these importers (workspace
    /// folders relative to the lockfile) changed.
    Lockfile { file: String, importers: Vec<String> },
}

/// package.json keys whose change never reaches a build's output.
pub const DEV_ONLY_MANIFEST_KEYS: [&str; 11] = [
    "scripts.lint",
    "scripts.format",
    "scripts.test",
    "scripts.typecheck",
    "scripts.dev",
    "scripts.clean",
    "scripts.lint:fix",
    "scripts.format:fix",
    "prettier",
    "eslintConfig",
    "lint-staged",
];

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Edge {
    pub reach: Reach,
    /// How it reaches the service, for the reasons (`"COPY in src/cart/Dockerfile"`).
    pub why: String,
}

/// A changed key that stands for "something else in the file changed": every key counts.
pub const ANY_KEY: &str = "*";

/// What is known about how a changed file changed, beyond its name: from the PR's diff or from
/// comparing the base and head trees. `None` means unknown, and every key counts as changed.
pub trait ChangeDetail {
    /// The keys changed in an env file, or the packages whose version changed in a central
    /// version file.
    fn changed_keys(&self, file: &str) -> Option<BTreeSet<String>>;
    /// The compose services whose block changed in a compose file.
    fn changed_compose_services(&self, file: &str) -> Option<BTreeSet<String>>;
    /// The importers whose resolved dependencies changed in a lockfile.
    fn changed_importers(&self, _file: &str) -> Option<BTreeSet<String>> {
        None
    }
}

/// Nothing known beyond the file names.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoDetail;

impl ChangeDetail for NoDetail {
    fn changed_keys(&self, _: &str) -> Option<BTreeSet<String>> {
        None
    }
    fn changed_compose_services(&self, _: &str) -> Option<BTreeSet<String>> {
        None
    }
}

/// The service graph: every edge found from its build roots.
#[derive(Debug, Clone, Default)]
pub struct ServiceGraph {
    pub edges: BTreeSet<Edge>,
    /// Source extensions of the languages whose build graph was read (`.go` once the Go
    /// imports were followed): an unimported package in a copied folder is not built.
    pub followed: BTreeSet<&'static str>,
}

impl ServiceGraph {
    pub fn add(&mut self, reach: Reach, why: impl Into<String>) {
        self.edges.insert(Edge { reach, why: why.into() });
    }

    /// Why `changed` reaches the service, if it does.
    pub fn reason(&self, changed: &str, detail: &dyn ChangeDetail) -> Option<String> {
        // A package manifest's own edge knows which keys count: a folder edge does not overrule it.
        if self.edges.iter().any(|e| matches!(&e.reach, Reach::PackageManifest(f) if f == changed)) {
            return self
                .edges
                .iter()
                .filter(|e| matches!(&e.reach, Reach::PackageManifest(_)))
                .find_map(|edge| edge_reason(edge, changed, detail, &self.followed));
        }
        self.edges.iter().find_map(|edge| edge_reason(edge, changed, detail, &self.followed))
    }

    pub fn follow(&mut self, extensions: &[&'static str]) {
        self.followed.extend(extensions.iter().copied());
    }

    /// Whether the graph reaches `path` through a folder (used to tell a blanket copy's files).
    pub fn covers_dir(&self, path: &str) -> bool {
        self.edges.iter().any(|e| match &e.reach {
            Reach::Tree(dir) | Reach::Copied(dir) => is_within(path, dir),
            Reach::Package { dir, .. } => parent(path) == dir,
            _ => false,
        })
    }
}

fn edge_reason(edge: &Edge, changed: &str, detail: &dyn ChangeDetail, followed: &BTreeSet<&str>) -> Option<String> {
    let hit = match &edge.reach {
        Reach::File(file) => file == changed,
        Reach::Tree(dir) => is_within(changed, dir) && not_deployed(changed).is_none(),
        Reach::Copied(dir) => {
            is_within(changed, dir)
                && not_deployed(changed).is_none()
                && !followed.iter().any(|ext| changed.ends_with(ext))
        }
        Reach::Package { dir, extensions } => {
            parent(changed) == dir
                && extensions.iter().any(|ext| changed.ends_with(ext))
                && not_deployed(changed).is_none()
        }
        Reach::EnvKey { file, key: name } | Reach::PackageVersion { file, package: name } => {
            file == changed
                && detail.changed_keys(file).is_none_or(|keys| keys.contains(name) || keys.contains(ANY_KEY))
        }
        Reach::ComposeService { file, service } => {
            file == changed && detail.changed_compose_services(file).is_none_or(|s| s.contains(service))
        }
        Reach::Lockfile { file, importers } => {
            file == changed && detail.changed_importers(file).is_none_or(|c| importers.iter().any(|i| c.contains(i)))
        }
        Reach::PackageManifest(file) => {
            file == changed
                && detail
                    .changed_keys(file)
                    .is_none_or(|keys| keys.iter().any(|k| !DEV_ONLY_MANIFEST_KEYS.contains(&k.as_str())))
        }
    };
    hit.then(|| format!("{changed} -> {}", edge.why))
}

/// Why a file reached only through a folder does not deploy: tests, docs, CI settings and
/// developer-only files. A file named by an explicit edge (`Reach::File`) deploys regardless.
pub fn not_deployed(path: &str) -> Option<&'static str> {
    let name = file_name(path);
    let lower = name.to_ascii_lowercase();
    let dirs: Vec<&str> = parent(path).split('/').collect();
    let in_dir = |names: &[&str]| dirs.iter().any(|d| names.iter().any(|n| d.eq_ignore_ascii_case(n)));
    if in_dir(&[".github", ".circleci", ".gitlab", ".buildkite", ".azure-pipelines"])
        || matches!(lower.as_str(), ".gitlab-ci.yml" | ".travis.yml" | "azure-pipelines.yml" | "jenkinsfile")
    {
        return Some("CI settings");
    }
    if in_dir(&["test", "tests", "__tests__", "testdata", "spec", "e2e", "integration-tests", "benchmarks"])
        || dirs.iter().any(|d| d.ends_with(".Tests") || d.ends_with(".UnitTests") || d.ends_with(".FunctionalTests"))
        || lower.ends_with("_test.go")
        || lower.starts_with("test_") && lower.ends_with(".py")
        || lower.ends_with("_test.py")
        || lower == "conftest.py"
        || [".test.", ".spec."].iter().any(|m| lower.contains(m))
        || lower.ends_with("tests.cs")
        || lower.ends_with("test.java")
        || lower.ends_with("_test.rs")
    {
        return Some("test");
    }
    if in_dir(&["docs", "doc", "documentation"])
        || [".md", ".markdown", ".rst", ".adoc"].iter().any(|ext| lower.ends_with(ext))
        || lower.starts_with("license")
        || lower.starts_with("changelog")
        || lower == "owners"
        || lower == "codeowners"
    {
        return Some("docs");
    }
    if in_dir(&[".vscode", ".idea", ".devcontainer", ".husky"])
        || matches!(
            lower.as_str(),
            ".gitignore"
                | ".gitattributes"
                | ".editorconfig"
                | ".dockerignore"
                | ".prettierrc"
                | ".eslintrc"
                | ".eslintrc.js"
                | ".eslintrc.json"
                | ".golangci.yml"
                | ".golangci.yaml"
                | "skaffold.yaml"
                | "tiltfile"
                // The shadcn/ui CLI's settings: read when adding components, never by a build.
                | "components.json"
                | ".pre-commit-config.yaml"
        )
        || lower.starts_with("docker-compose") && !lower.ends_with(".env")
        || lower.starts_with("compose.")
    {
        return Some("developer-only");
    }
    None
}

/// A [`ChangeDetail`] for tests: these keys changed in every file.
#[cfg(test)]
pub(crate) struct ChangedKeys(pub &'static [&'static str]);

#[cfg(test)]
impl ChangeDetail for ChangedKeys {
    fn changed_keys(&self, _: &str) -> Option<BTreeSet<String>> {
        Some(self.0.iter().map(|s| (*s).to_owned()).collect())
    }
    fn changed_compose_services(&self, _: &str) -> Option<BTreeSet<String>> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tests_docs_ci_and_dev_files_are_not_deployed() {
        for (path, kind) in [
            ("src/cart/cart_test.go", "test"),
            ("src/web/src/cart.test.tsx", "test"),
            ("src/Ordering.UnitTests/OrderTests.cs", "test"),
            ("src/py/tests/test_app.py", "test"),
            ("src/cart/README.md", "docs"),
            ("docs/setup.txt", "docs"),
            (".github/workflows/ci.yml", "CI settings"),
            ("src/cart/.gitignore", "developer-only"),
            ("docker-compose.override.yml", "developer-only"),
        ] {
            assert_eq!(not_deployed(path), Some(kind), "{path}");
        }
        for path in ["src/cart/main.go", "src/web/package.json", "src/Ordering.API/Program.cs", "config/app.yaml"] {
            assert_eq!(not_deployed(path), None, "{path}");
        }
    }

    #[test]
    fn a_folder_lets_deployable_files_through_and_a_file_edge_lets_anything() {
        let mut graph = ServiceGraph::default();
        graph.add(Reach::Tree("src/cart".into()), "COPY . . in src/cart/Dockerfile");
        graph.add(Reach::File("src/cart/README.md".into()), "COPY README.md in src/cart/Dockerfile");
        graph.add(Reach::Package { dir: "lib/money".into(), extensions: vec![".go"] }, "Go package lib/money");
        let reason = |f: &str| graph.reason(f, &NoDetail);
        assert!(reason("src/cart/main.go").is_some_and(|r| r.contains("COPY . .")));
        assert_eq!(reason("src/cart/main_test.go"), None);
        assert!(reason("src/cart/README.md").is_some());
        assert!(reason("lib/money/money.go").is_some());
        assert_eq!(reason("lib/money/sub/x.go"), None);
        assert_eq!(reason("lib/money/money_test.go"), None);
    }
}
