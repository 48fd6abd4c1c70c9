//! The detector end to end on a fixture monorepo (`tests/fixtures/detect/shop`: Go with a
//! go.work and a replaced module, compose with `.env`, a JS workspace, .NET with central package
//! versions, Python, a Cargo workspace, protos, a bind-mounted SQL file).

use std::path::PathBuf;

use super::tree::{DirTree, MemoryTree, SourceTree};
use super::*;
use crate::config::Config;

fn fixture() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/detect/shop")
}

fn shop() -> (RepositoryConfig, DirTree) {
    let config = Config::load(&fixture().join("previewd.yaml")).unwrap_or_else(|e| panic!("{e}"));
    let tree = DirTree::open(&fixture()).unwrap_or_else(|e| panic!("{e}"));
    (config.repositories[0].clone(), tree)
}

fn detect_with(changed: &[&str], patch: Option<&str>, base: Option<&dyn SourceTree>) -> Detection {
    let (repo, tree) = shop();
    let changed: Vec<String> = changed.iter().map(|s| (*s).to_owned()).collect();
    detect(&repo, &changed, Some(&tree), base, patch)
}

fn services(changed: &[&str]) -> Vec<String> {
    detect_with(changed, None, None).services
}

#[test]
fn each_build_graph_row_selects_exactly_the_services_it_reaches() {
    let cases: &[(&[&str], &[&str])] = &[
        // A shared library a service imports, across a replaced module and a go.work.
        (&["lib/go/money/money.go"], &["cart"]),
        (&["go.work"], &["cart"]),
        // Copied into the image, never built.
        (&["lib/go/unused/unused.go"], &[]),
        // A .proto the image copies, and one it imports.
        (&["protos/common/money.proto"], &["cart"]),
        (&["protos/recs.proto"], &[]),
        // The base image (the Dockerfile itself).
        (&["src/cart/Dockerfile"], &["cart"]),
        // JS workspace: a dependency package, the root manifest and lockfile; a package the
        // service does not depend on is copied by a blanket COPY . . and never built.
        (&["packages/ui/button.tsx"], &["web"]),
        (&["package-lock.json"], &["web"]),
        (&["packages/admin-kit/table.tsx"], &[]),
        (&["src/web/nginx.conf"], &["web"]),
        (&["deploy/web/values.yaml"], &["web"]),
        // .NET: a referenced project; a test project is not.
        (&["src/Ordering.Domain/Order.cs"], &["ordering"]),
        (&["tests/Ordering.UnitTests/OrderTests.cs"], &[]),
        (&["Directory.Build.props"], &["ordering"]),
        // Python: a local package the app imports, a template the image copies.
        (&["shared/tracing.py"], &["recs"]),
        (&["src/recs/templates/index.html"], &["recs"]),
        (&[".env.recs"], &["recs"]),
        // Compose: a bind-mounted file.
        (&["db/init.sql"], &["postgres"]),
        // Cargo: a path dependency; the configured Dockerfile that no longer exists is skipped.
        (&["crates/books/src/lib.rs"], &["ledger"]),
        // Tests, docs and CI files never select, even inside a service's folder or globs.
        (&["src/cart/main_test.go", "src/cart/README.md", "README.md", ".github/workflows/ci.yml"], &[]),
        (&["src/web/src/app.test.tsx", "src/recs/tests/test_app.py"], &[]),
    ];
    for (changed, expected) in cases {
        assert_eq!(services(changed), *expected, "{changed:?}");
    }
}

#[test]
fn an_env_value_selects_the_services_that_resolve_it() {
    let patch = |key: &str| format!("--- a/.env\n+++ b/.env\n@@ -1 +1 @@\n-{key}=1\n+{key}=2\n");
    assert_eq!(detect_with(&[".env"], Some(&patch("GO_VERSION")), None).services, ["cart"]);
    assert_eq!(detect_with(&[".env"], Some(&patch("PG_VERSION")), None).services, ["postgres"]);
    assert_eq!(detect_with(&[".env"], Some(&patch("DEFAULT_CURRENCY")), None).services, ["cart"]);
    assert_eq!(detect_with(&[".env"], Some(&patch("UNUSED")), None).services, Vec::<String>::new());
    // Without a diff or a base, every service that reads the file.
    assert_eq!(services(&[".env"]), ["cart", "postgres"]);
}

#[test]
fn a_central_package_version_selects_the_services_that_reference_the_package() {
    let patch = |package: &str| {
        format!(
            "--- a/Directory.Packages.props\n+++ b/Directory.Packages.props\n@@ -3 +3 @@\n-<PackageVersion Include=\"{package}\" Version=\"1\" />\n+<PackageVersion Include=\"{package}\" Version=\"2\" />\n"
        )
    };
    assert_eq!(detect_with(&["Directory.Packages.props"], Some(&patch("Npgsql")), None).services, ["ordering"]);
    assert_eq!(detect_with(&["Directory.Packages.props"], Some(&patch("xunit")), None).services, Vec::<String>::new());
}

fn base_with(edit: impl FnOnce(&mut Vec<(String, String)>)) -> MemoryTree {
    let (_, tree) = shop();
    let mut files: Vec<(String, String)> =
        tree.paths().iter().map(|p| (p.clone(), tree.read(p).unwrap_or_default())).collect();
    edit(&mut files);
    MemoryTree::from_files(files.iter().map(|(p, t)| (p.as_str(), t.as_str())))
}

#[test]
fn a_compose_change_selects_only_the_services_whose_block_changed() {
    let base = base_with(|files| {
        for (path, text) in files.iter_mut() {
            if path == "docker-compose.yml" {
                *text = text.replace("env_file: .env.recs", "env_file: .env.recs\n    restart: always");
            }
        }
    });
    assert_eq!(detect_with(&["docker-compose.yml"], None, Some(&base)).services, ["recs"]);
    // Without the base, every service the file defines.
    assert_eq!(services(&["docker-compose.yml"]), ["cart", "recs", "postgres"]);
}

#[test]
fn a_deleted_file_is_placed_by_the_base_commit() {
    let base = base_with(|files| files.push(("lib/go/money/round.go".into(), "package money\n".into())));
    let detection = detect_with(&["lib/go/money/round.go"], None, Some(&base));
    assert_eq!(detection.services, ["cart"]);
    assert!(
        detection.reasons["cart"][0].starts_with("lib/go/money/round.go -> Go package lib/go/money"),
        "{detection:?}"
    );
}

#[test]
fn reasons_name_the_path_from_the_file_to_the_service() {
    let detection = detect_with(&["lib/go/money/money.go", "packages/ui/button.tsx"], None, None);
    assert_eq!(detection.by, By::Graph);
    assert_eq!(detection.reasons["cart"], ["lib/go/money/money.go -> Go package lib/go/money imported by cart"]);
    assert_eq!(
        detection.reasons["web"],
        ["packages/ui/button.tsx -> workspace package @shop/ui, a dependency of src/web"]
    );
}

#[test]
fn without_a_tree_the_globs_decide() {
    let (repo, _) = shop();
    let changed = vec!["src/cart/main_test.go".to_owned(), "lib/go/money/money.go".to_owned()];
    let detection = detect(&repo, &changed, None, None, None);
    assert_eq!(detection.by, By::Paths);
    // The globs select a test-only edit and miss the shared library: what the graph fixes.
    assert_eq!(detection.services, ["cart", "postgres"]);
}

mod no_panics {
    use proptest::prelude::*;

    use super::super::tree::MemoryTree;
    use super::*;

    const BUILD_FILES: [&str; 10] = [
        "svc/Dockerfile",
        "docker-compose.yml",
        ".env",
        "svc/go.mod",
        "svc/main.go",
        "svc/package.json",
        "svc/Svc.csproj",
        "svc/Cargo.toml",
        "svc/app.py",
        "svc/a.proto",
    ];

    fn repo() -> RepositoryConfig {
        let yaml = "domain: example.com\nrepositories:\n  - name: acme/x\n    services:\n      - name: svc\n        chartPath: c\n        resources: {requests: {cpu: 100m, memory: 128Mi}}\n        build:\n          - {dockerfile: svc/Dockerfile, context: .}\n          - {compose: {files: [docker-compose.yml], service: svc}}\n          - {project: svc/go.mod}\n          - {project: svc/package.json}\n          - {project: svc/Svc.csproj}\n          - {project: svc/Cargo.toml}\n";
        Config::from_yaml(yaml).unwrap_or_else(|e| panic!("{e}")).repositories[0].clone()
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]
        /// Whatever the build files say, detection answers (it reads text a PR author wrote).
        #[test]
        fn detection_never_panics_on_any_build_file(
            texts in proptest::collection::vec("(\\PC|[\\n\\t${}\"'\\\\/.*:=<>-]){0,200}", BUILD_FILES.len()),
            patch in "(\\PC|[\\n+-]){0,200}",
        ) {
            let tree = MemoryTree::from_files(BUILD_FILES.iter().copied().zip(texts.iter().map(String::as_str)));
            let changed: Vec<String> = BUILD_FILES.iter().map(|s| (*s).to_owned()).collect();
            let detection = detect(&repo(), &changed, Some(&tree), Some(&tree), Some(&patch));
            prop_assert!(detection.services.iter().all(|s| s == "svc"));
        }
    }
}
