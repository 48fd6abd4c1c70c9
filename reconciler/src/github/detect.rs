//! Static service detection: a service deploys when one of the PR's changed files matches one
//! of its `paths` globs. A service without `paths` always deploys (a database, a gateway).
//! When AI detection is off or fails, this decides.

use crate::config::RepositoryConfig;
use crate::config::types::Globs;

#[derive(Debug, Clone)]
pub struct ServiceMatcher {
    services: Vec<(String, Option<Globs>)>,
}

impl ServiceMatcher {
    /// The repository's services with their globs (compiled when the config was loaded).
    pub fn new(repo: &RepositoryConfig) -> ServiceMatcher {
        let services = repo
            .services
            .iter()
            .map(|service| (service.name.clone(), (!service.paths.is_empty()).then(|| service.paths.clone())))
            .collect();
        ServiceMatcher { services }
    }

    /// Whether any service has `paths`: without any, every service always deploys and the
    /// PR's files need not be read.
    pub fn has_paths(&self) -> bool {
        self.services.iter().any(|(_, globs)| globs.is_some())
    }

    /// The services the changed `files` touch, in configuration order. Empty when only files
    /// no service claims changed (docs, CI settings): such a PR needs no preview.
    pub fn services_for<'a>(&self, files: impl IntoIterator<Item = &'a str> + Clone) -> Vec<String> {
        let touched: Vec<&str> = self
            .services
            .iter()
            .filter(|(_, globs)| globs.as_ref().is_some_and(|g| files.clone().into_iter().any(|f| g.is_match(f))))
            .map(|(name, _)| name.as_str())
            .collect();
        if touched.is_empty() {
            return Vec::new();
        }
        // Services without paths come along with any touched service.
        self.services
            .iter()
            .filter(|(name, globs)| globs.is_none() || touched.contains(&name.as_str()))
            .map(|(name, _)| name.clone())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn matcher() -> ServiceMatcher {
        let yaml = r#"
domain: example.com
repositories:
  - name: acme/monorepo
    services:
      - {name: web, paths: ["web/**", "shared/ui/**", "package.json"], chartPath: deploy/web, resources: {requests: {cpu: 100m, memory: 128Mi}}}
      - {name: api, paths: ["api/**", "shared/**", "go.mod", "go.sum"], chartPath: deploy/api, resources: {requests: {cpu: 100m, memory: 128Mi}}}
      - {name: worker, paths: ["worker/**", "shared/**", "go.mod", "go.sum"], chartPath: deploy/worker, resources: {requests: {cpu: 100m, memory: 128Mi}}}
      - {name: postgres, chartPath: deploy/postgres, resources: {requests: {cpu: 100m, memory: 256Mi}}}
"#;
        let config = Config::from_yaml(yaml).unwrap();
        ServiceMatcher::new(&config.repositories[0])
    }

    #[test]
    fn realistic_monorepo_changes() {
        let m = matcher();
        let cases: &[(&[&str], &[&str])] = &[
            (&["web/src/cart.tsx"], &["web", "postgres"]),
            (&["api/handlers/cart.go", "api/handlers/cart_test.go"], &["api", "postgres"]),
            // A shared library change reaches everything built from it.
            (&["shared/money/money.go"], &["api", "worker", "postgres"]),
            (&["shared/ui/button.tsx"], &["web", "api", "worker", "postgres"]),
            // Root build files.
            (&["go.sum"], &["api", "worker", "postgres"]),
            (&["package.json"], &["web", "postgres"]),
            // Docs and CI only: no preview.
            (&["README.md", "docs/setup.md", ".github/workflows/ci.yml"], &[]),
            (&[], &[]),
        ];
        for (files, expected) in cases {
            assert_eq!(m.services_for(files.iter().copied()), *expected, "{files:?}");
        }
    }

    #[test]
    fn invalid_globs_are_named_at_config_load() {
        let yaml = r#"
domain: example.com
repositories:
  - name: acme/shop
    services:
      - {name: web, paths: ["web/[oops"], chartPath: chart, resources: {requests: {cpu: 100m, memory: 128Mi}}}
"#;
        let err = Config::from_yaml(yaml).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains("repositories[0].services[0].paths") && err.contains("[0] \"web/[oops\""), "{err}");
    }
}
