//! pnpm lockfiles: which workspace projects (importers) a lockfile change reaches. Renovate
//! and friends rewrite `pnpm-lock.yaml` constantly; a change selects a service only if the
//! resolved dependency closure of one of its workspace packages differs between base and head.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use serde_norway::Value;

const SECTIONS: [&str; 3] = ["dependencies", "devDependencies", "optionalDependencies"];

fn entries(map: Option<&Value>) -> Vec<(String, String)> {
    map.and_then(Value::as_mapping)
        .into_iter()
        .flatten()
        .filter_map(|(name, spec)| {
            let name = name.as_str()?.to_owned();
            // Importers say `{specifier, version}`; snapshots give the version directly.
            let version = spec.get("version").and_then(Value::as_str).or_else(|| spec.as_str())?.to_owned();
            Some((name, version))
        })
        .collect()
}

/// Per importer (its folder relative to the lockfile, `.` for the root), every resolved
/// package it depends on, transitively (`name@version` as the lockfile keys snapshots).
/// `None` when the text is not a pnpm lockfile.
pub fn pnpm_closures(text: &str) -> Option<BTreeMap<String, BTreeSet<String>>> {
    let lock: Value = serde_norway::from_str(text).ok()?;
    let importers = lock.get("importers")?.as_mapping()?;
    let snapshots = lock.get("snapshots").or_else(|| lock.get("packages")).and_then(Value::as_mapping);
    let mut out = BTreeMap::new();
    for (path, importer) in importers {
        let Some(path) = path.as_str() else { continue };
        let mut seen = BTreeSet::new();
        let mut queue: VecDeque<String> = SECTIONS
            .iter()
            .flat_map(|s| entries(importer.get(*s)))
            .filter(|(_, version)| !version.starts_with("link:"))
            .map(|(name, version)| format!("{name}@{version}"))
            .collect();
        while let Some(key) = queue.pop_front() {
            if !seen.insert(key.clone()) {
                continue;
            }
            let snapshot = snapshots.and_then(|s| s.get(Value::String(key.clone())));
            for (name, version) in
                ["dependencies", "optionalDependencies"].iter().flat_map(|s| entries(snapshot.and_then(|v| v.get(*s))))
            {
                queue.push_back(format!("{name}@{version}"));
            }
        }
        out.insert(path.to_owned(), seen);
    }
    Some(out)
}

/// The importers whose closure differs between two lockfiles. `None` when either is unreadable.
pub fn changed_importers(base: &str, head: &str) -> Option<BTreeSet<String>> {
    let (a, b) = (pnpm_closures(base)?, pnpm_closures(head)?);
    Some(a.keys().chain(b.keys()).filter(|k| a.get(*k) != b.get(*k)).cloned().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = "lockfileVersion: '9.0'\nimporters:\n  .:\n    devDependencies:\n      turbo: {specifier: ^2, version: 2.0.0}\n  apps/web:\n    dependencies:\n      '@acme/ui': {specifier: 'workspace:*', version: link:../../packages/ui}\n      next: {specifier: ^16, version: 16.0.0(react@19.1.1)}\n  apps/mobile:\n    dependencies:\n      expo: {specifier: ^54, version: 54.0.0}\n  packages/ui:\n    dependencies:\n      react: {specifier: 'catalog:', version: 19.1.1}\npackages:\n  next@16.0.0: {}\nsnapshots:\n  next@16.0.0(react@19.1.1):\n    dependencies:\n      react: 19.1.1\n  react@19.1.1: {}\n  expo@54.0.0:\n    dependencies:\n      lightningcss: 1.30.0\n  lightningcss@1.30.0: {}\n  turbo@2.0.0: {}\n";

    #[test]
    fn only_importers_whose_resolved_closure_changed_are_named() {
        let closures = pnpm_closures(BASE).unwrap_or_default();
        assert!(closures["apps/web"].contains("react@19.1.1"), "transitively, through next");
        let expo_only = BASE
            .replace("lightningcss: 1.30.0", "lightningcss: 1.30.1")
            .replace("lightningcss@1.30.0", "lightningcss@1.30.1");
        assert_eq!(changed_importers(BASE, &expo_only), Some(BTreeSet::from(["apps/mobile".to_owned()])));
        let react = BASE.replace("19.1.1", "19.1.2");
        assert_eq!(
            changed_importers(BASE, &react),
            Some(BTreeSet::from(["apps/web".to_owned(), "packages/ui".to_owned()]))
        );
        assert_eq!(changed_importers(BASE, "not: a lockfile"), None);
    }
}
