//! How each changed file changed, beyond its name: the keys of an env file, the packages of a
//! central version file, the services of a compose file. From the PR's unified diff, or from
//! the base and head trees when both are at hand.

use std::collections::{BTreeMap, BTreeSet};

use super::compose::{env_file, service_block};
use super::dotnet::package_versions;
use super::graph::{ANY_KEY, ChangeDetail};
use super::tree::{SourceTree, file_name};

/// The changed lines (added and removed) of each file in a unified diff.
pub fn diff_lines(patch: &str) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut current: Option<String> = None;
    for line in patch.lines() {
        if let Some(path) = line.strip_prefix("+++ ") {
            let path = path.trim();
            current = (path != "/dev/null").then(|| path.strip_prefix("b/").unwrap_or(path).to_owned());
            continue;
        }
        if let Some(path) = line.strip_prefix("--- ") {
            let path = path.trim();
            // A deleted file's name comes from here.
            current = (path != "/dev/null").then(|| path.strip_prefix("a/").unwrap_or(path).to_owned());
            continue;
        }
        if line.starts_with("diff ") || line.starts_with("@@") {
            continue;
        }
        let Some(file) = &current else { continue };
        if let Some(changed) = line.strip_prefix('+').or_else(|| line.strip_prefix('-')) {
            out.entry(file.clone()).or_default().push(changed.to_owned());
        }
    }
    out
}

fn is_env_file(path: &str) -> bool {
    let name = file_name(path);
    name == ".env" || name.starts_with(".env.") || name.ends_with(".env")
}

fn is_version_file(path: &str) -> bool {
    file_name(path) == "Directory.Packages.props"
}

fn is_package_manifest(path: &str) -> bool {
    file_name(path) == "package.json"
}

/// Scripts a changed line's key most likely belongs to (a diff line has no parent key).
const SCRIPT_NAMES: [&str; 8] = ["lint", "format", "test", "typecheck", "dev", "clean", "lint:fix", "format:fix"];

/// The keys a package.json's changed lines set (`scripts.<name>` for script names).
fn manifest_keys_from_lines(lines: &[String]) -> BTreeSet<String> {
    lines
        .iter()
        .map(|line| line.trim())
        .filter(|line| !line.is_empty())
        .map(|line| {
            let key = line
                .strip_prefix('"')
                .and_then(|rest| rest.split_once('"'))
                .filter(|(_, after)| after.trim_start().starts_with(':'));
            match key {
                Some((key, _)) if SCRIPT_NAMES.contains(&key) => format!("scripts.{key}"),
                Some((key, _)) => key.to_owned(),
                None => ANY_KEY.to_owned(),
            }
        })
        .collect()
}

/// The keys whose value differs between two versions of a package.json (`scripts.<name>` per
/// script).
fn manifest_keys_between(base: Option<&str>, head: Option<&str>) -> BTreeSet<String> {
    let parse = |t: Option<&str>| serde_json::from_str::<serde_json::Value>(t.unwrap_or("{}")).ok();
    let (Some(serde_json::Value::Object(a)), Some(serde_json::Value::Object(b))) = (parse(base), parse(head)) else {
        return BTreeSet::from([ANY_KEY.to_owned()]);
    };
    let mut keys = BTreeSet::new();
    for key in a.keys().chain(b.keys()) {
        if a.get(key) == b.get(key) {
            continue;
        }
        let scripts = |m: &serde_json::Map<String, serde_json::Value>| m.get(key).and_then(|v| v.as_object()).cloned();
        match (key.as_str(), scripts(&a), scripts(&b)) {
            ("scripts", Some(x), Some(y)) => {
                keys.extend(
                    x.keys().chain(y.keys()).filter(|k| x.get(*k) != y.get(*k)).map(|k| format!("scripts.{k}")),
                );
            }
            _ => {
                keys.insert(key.clone());
            }
        }
    }
    keys
}

fn is_compose_file(path: &str) -> bool {
    let name = file_name(path);
    (name.starts_with("docker-compose") || name.starts_with("compose"))
        && (name.ends_with(".yml") || name.ends_with(".yaml"))
}

/// Keys named by changed lines: `KEY=…` in an env file, `<PackageVersion Include="X"` in a
/// version file (any other changed line there counts as [`ANY_KEY`]).
fn keys_from_lines(path: &str, lines: &[String]) -> BTreeSet<String> {
    let mut keys = BTreeSet::new();
    for line in lines {
        let line = line.trim();
        if is_env_file(path) {
            let line = line.strip_prefix("export ").unwrap_or(line);
            if let Some((key, _)) = line.split_once('=').filter(|_| !line.starts_with('#')) {
                keys.insert(key.trim().to_owned());
            }
        } else if let Some(rest) = line.split("PackageVersion Include=\"").nth(1) {
            keys.extend(rest.split('"').next().map(str::to_owned));
        } else if !line.is_empty() {
            keys.insert(ANY_KEY.to_owned());
        }
    }
    keys
}

/// Keys whose value differs between two versions of a file.
fn keys_between(path: &str, base: Option<&str>, head: Option<&str>) -> BTreeSet<String> {
    let parse = |text: Option<&str>| -> BTreeMap<String, String> {
        let text = text.unwrap_or("");
        if is_env_file(path) { env_file(text) } else { package_versions(text).into_iter().collect() }
    };
    let (a, b) = (parse(base), parse(head));
    let mut keys: BTreeSet<String> = a.keys().chain(b.keys()).filter(|k| a.get(*k) != b.get(*k)).cloned().collect();
    if is_version_file(path) {
        // Anything else in the file (a property, an import) may change every package.
        let rest = |t: Option<&str>| -> String {
            t.unwrap_or("").lines().filter(|l| !l.contains("<PackageVersion")).map(str::trim).collect()
        };
        if rest(base) != rest(head) {
            keys.insert(ANY_KEY.to_owned());
        }
    }
    keys
}

/// What is known about the PR's changed files.
#[derive(Debug, Clone, Default)]
pub struct Changes {
    keys: BTreeMap<String, BTreeSet<String>>,
    compose: BTreeMap<String, BTreeSet<String>>,
    importers: BTreeMap<String, BTreeSet<String>>,
}

impl Changes {
    /// From the diff where it covers a file, else from the base and head trees.
    pub fn new(
        changed: &[String],
        patch: Option<&str>,
        head: &dyn SourceTree,
        base: Option<&dyn SourceTree>,
    ) -> Changes {
        let lines = patch.map(diff_lines).unwrap_or_default();
        let mut out = Changes::default();
        for path in changed {
            // Base against head is exact; the diff's lines are the fallback.
            if is_env_file(path) || is_version_file(path) {
                if let Some(base) = base {
                    let keys = keys_between(path, base.read(path).as_deref(), head.read(path).as_deref());
                    out.keys.insert(path.clone(), keys);
                } else if let Some(lines) = lines.get(path) {
                    out.keys.insert(path.clone(), keys_from_lines(path, lines));
                }
            }
            if file_name(path) == "pnpm-lock.yaml"
                && let Some(base) = base
                && let Some(changed) = super::lockfile::changed_importers(
                    &base.read(path).unwrap_or_default(),
                    &head.read(path).unwrap_or_default(),
                )
            {
                out.importers.insert(path.clone(), changed);
            }
            if is_package_manifest(path) {
                if let Some(base) = base {
                    let keys = manifest_keys_between(base.read(path).as_deref(), head.read(path).as_deref());
                    out.keys.insert(path.clone(), keys);
                } else if let Some(lines) = lines.get(path) {
                    out.keys.insert(path.clone(), manifest_keys_from_lines(lines));
                }
            }
            if is_compose_file(path)
                && let Some(base) = base
            {
                let (a, b) = (base.read(path).unwrap_or_default(), head.read(path).unwrap_or_default());
                let names = |text: &str| -> BTreeSet<String> {
                    serde_norway::from_str::<serde_norway::Value>(text)
                        .ok()
                        .and_then(|v| v.get("services")?.as_mapping().cloned())
                        .map(|m| m.keys().filter_map(|k| k.as_str().map(str::to_owned)).collect())
                        .unwrap_or_default()
                };
                let changed: BTreeSet<String> = names(&a)
                    .union(&names(&b))
                    .filter(|s| service_block(&a, s) != service_block(&b, s))
                    .cloned()
                    .collect();
                // A change outside every service block (networks, volumes, x- anchors) may
                // reach any of them: unknown.
                let outside = |t: &str| {
                    serde_norway::from_str::<serde_norway::Value>(t).ok().map(|mut v| {
                        if let Some(m) = v.as_mapping_mut() {
                            m.remove("services");
                        }
                        serde_norway::to_string(&v).unwrap_or_default()
                    })
                };
                if outside(&a) == outside(&b) {
                    out.compose.insert(path.clone(), changed);
                }
            }
        }
        out
    }
}

impl ChangeDetail for Changes {
    fn changed_keys(&self, file: &str) -> Option<BTreeSet<String>> {
        self.keys.get(file).cloned()
    }
    fn changed_compose_services(&self, file: &str) -> Option<BTreeSet<String>> {
        self.compose.get(file).cloned()
    }
    fn changed_importers(&self, file: &str) -> Option<BTreeSet<String>> {
        self.importers.get(file).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::tree::MemoryTree;

    #[test]
    fn a_diff_names_the_changed_keys() {
        let patch = "diff --git a/.env b/.env\n--- a/.env\n+++ b/.env\n@@ -1,2 +1,2 @@\n A=1\n-GO_VERSION=1.22\n+GO_VERSION=1.23\n\
                     diff --git a/Directory.Packages.props b/Directory.Packages.props\n--- a/Directory.Packages.props\n+++ b/Directory.Packages.props\n\
                     @@ -3 +3 @@\n-    <PackageVersion Include=\"Npgsql\" Version=\"8.0.1\" />\n+    <PackageVersion Include=\"Npgsql\" Version=\"8.0.2\" />\n";
        let changed = vec![".env".to_owned(), "Directory.Packages.props".to_owned()];
        let tree = MemoryTree::default();
        let changes = Changes::new(&changed, Some(patch), &tree, None);
        assert_eq!(changes.changed_keys(".env"), Some(BTreeSet::from(["GO_VERSION".to_owned()])));
        assert_eq!(changes.changed_keys("Directory.Packages.props"), Some(BTreeSet::from(["Npgsql".to_owned()])));
        assert_eq!(changes.changed_keys("other"), None);
    }

    #[test]
    fn a_package_manifest_names_the_keys_that_changed() {
        let lines = |l: &[&str]| l.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        assert_eq!(
            manifest_keys_from_lines(&lines(&["    \"lint\": \"eslint\",", "    \"lint\": \"eslint --flag x\","])),
            BTreeSet::from(["scripts.lint".to_owned()])
        );
        assert!(manifest_keys_from_lines(&lines(&["    \"next\": \"^16\","])).contains("next"));
        assert!(manifest_keys_from_lines(&lines(&["  },"])).contains(ANY_KEY));
        let base = r#"{"name": "db", "scripts": {"lint": "eslint", "build": "tsc"}, "dependencies": {"a": "1"}}"#;
        let lint = r#"{"name": "db", "scripts": {"lint": "eslint --fix", "build": "tsc"}, "dependencies": {"a": "1"}}"#;
        let deps = r#"{"name": "db", "scripts": {"lint": "eslint", "build": "tsc"}, "dependencies": {"a": "2"}}"#;
        assert_eq!(manifest_keys_between(Some(base), Some(lint)), BTreeSet::from(["scripts.lint".to_owned()]));
        assert_eq!(manifest_keys_between(Some(base), Some(deps)), BTreeSet::from(["dependencies".to_owned()]));
        assert!(manifest_keys_between(Some(base), Some("not json")).contains(ANY_KEY));
    }

    #[test]
    fn base_and_head_name_the_changed_compose_services_and_keys() {
        let base = MemoryTree::from_files([
            ("compose.yaml", "services:\n  a: {image: a:1}\n  b: {image: b:1}\n"),
            (".env", "A=1\nB=2\n"),
        ]);
        let head = MemoryTree::from_files([
            ("compose.yaml", "services:\n  a: {image: a:2}\n  b: {image: b:1}\n"),
            (".env", "A=1\nB=3\nC=4\n"),
        ]);
        let changed = vec!["compose.yaml".to_owned(), ".env".to_owned()];
        let changes = Changes::new(&changed, None, &head, Some(&base));
        assert_eq!(changes.changed_compose_services("compose.yaml"), Some(BTreeSet::from(["a".to_owned()])));
        assert_eq!(changes.changed_keys(".env"), Some(BTreeSet::from(["B".to_owned(), "C".to_owned()])));
    }
}
