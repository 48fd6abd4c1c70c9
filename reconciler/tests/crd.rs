//! The CRD in the chart is the one the Rust types generate (`previewd crd`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;

use kube::CustomResourceExt;
use previewd::crd::{PreviewEnvironment, crd_yaml};

#[test]
fn chart_crd_matches_the_rust_types() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../charts/previewd/files/previewenvironments.preview.previewd.io.yaml");
    let committed = std::fs::read_to_string(&path).unwrap();
    assert!(
        committed == crd_yaml().unwrap(),
        "{} is out of date: regenerate it with `cargo run -p previewd -- crd > {}`",
        path.display(),
        path.display()
    );
}

#[test]
fn crd_is_cluster_scoped_with_status_and_printer_columns() {
    let crd = PreviewEnvironment::crd();
    assert_eq!(crd.spec.group, "preview.previewd.io");
    assert_eq!(crd.spec.scope, "Cluster");
    let version = &crd.spec.versions[0];
    assert_eq!(version.name, "v1alpha1");
    assert!(version.subresources.as_ref().and_then(|s| s.status.as_ref()).is_some());
    let columns: Vec<&str> = version.additional_printer_columns.iter().flatten().map(|c| c.name.as_str()).collect();
    assert_eq!(columns, ["Repo", "PR", "Phase", "URL", "Cluster", "Cost/mo", "Expires", "Age"]);
}
