//! Everything a preview consists of, as plain values (no client): the controller applies these
//! with server-side apply, `previewd render` prints them, tests snapshot and validate them.

mod argocd;
mod ingress;
mod namespace;
mod network;

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::Resource;
use serde_json::Value;

use crate::config::{Config, RepositoryConfig, ServiceConfig};
use crate::crd::PreviewEnvironment;
use crate::names;

pub const MANAGED_BY: &str = "previewd";
pub const LABEL_PREVIEW: &str = "preview.previewd.io/name";
pub const LABEL_REPOSITORY: &str = "preview.previewd.io/repository";
pub const LABEL_PR: &str = "preview.previewd.io/pr";
pub const ANNOTATION_REPOSITORY: &str = "preview.previewd.io/repository";
pub const ANNOTATION_HEAD_SHA: &str = "preview.previewd.io/head-sha";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RenderError {
    #[error("repository {0} is not in the configuration")]
    UnknownRepository(String),
    #[error("service {service} is not configured for {repository}")]
    UnknownService { repository: String, service: String },
    #[error("the preview has no services to deploy")]
    NoServices,
}

/// The resolved facts every object is rendered from.
#[derive(Debug, Clone)]
pub struct Preview<'a> {
    pub config: &'a Config,
    pub repo: &'a RepositoryConfig,
    pub resource: &'a PreviewEnvironment,
    pub services: Vec<&'a ServiceConfig>,
    /// The namespace, and the name of the ApplicationSet.
    pub name: String,
    pub host: String,
    /// Set when the PreviewEnvironment exists in the cluster (it has a uid).
    pub owner: Option<OwnerReference>,
}

impl<'a> Preview<'a> {
    pub fn resolve(config: &'a Config, resource: &'a PreviewEnvironment) -> Result<Preview<'a>, RenderError> {
        let spec = &resource.spec;
        let repo = config
            .repository(&spec.repository)
            .ok_or_else(|| RenderError::UnknownRepository(spec.repository.clone()))?;
        let services = spec
            .services
            .iter()
            .map(|name| {
                repo.service(name)
                    .ok_or_else(|| RenderError::UnknownService { repository: repo.name.clone(), service: name.clone() })
            })
            .collect::<Result<Vec<_>, _>>()?;
        if services.is_empty() {
            return Err(RenderError::NoServices);
        }
        let slug = repo.slug();
        Ok(Preview {
            config,
            repo,
            resource,
            services,
            name: names::preview_name(&config.namespace_prefix, &slug, spec.pr_number),
            host: names::preview_host(&slug, spec.pr_number, &config.preview_zone()),
            owner: resource.controller_owner_ref(&()),
        })
    }

    pub fn url(&self) -> String {
        format!("https://{}", self.host)
    }

    /// Labels every object of the preview carries (selectors, cleanup, cost reports).
    pub fn labels(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            ("app.kubernetes.io/managed-by".to_owned(), MANAGED_BY.to_owned()),
            (LABEL_PREVIEW.to_owned(), self.name.clone()),
            (LABEL_REPOSITORY.to_owned(), names::fit(&names::sanitize_label(&self.repo.name), names::MAX_LABEL)),
            (LABEL_PR.to_owned(), self.resource.spec.pr_number.to_string()),
        ])
    }

    pub fn annotations(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            (ANNOTATION_REPOSITORY.to_owned(), self.repo.name.clone()),
            (ANNOTATION_HEAD_SHA.to_owned(), self.resource.spec.head_sha.clone()),
        ])
    }

    /// Metadata of an object in the preview namespace (or `namespace`).
    pub fn meta(&self, name: &str, namespace: Option<&str>) -> ObjectMeta {
        ObjectMeta {
            name: Some(name.to_owned()),
            namespace: namespace.map(str::to_owned),
            labels: Some(self.labels()),
            annotations: Some(self.annotations()),
            owner_references: self.owner.clone().map(|o| vec![o]),
            ..ObjectMeta::default()
        }
    }
}

/// Every object of the preview, in the order they are applied.
pub fn render(config: &Config, resource: &PreviewEnvironment) -> Result<Vec<Value>, RenderError> {
    let preview = Preview::resolve(config, resource)?;
    let mut objects = vec![
        to_value(&namespace::namespace(&preview)),
        to_value(&namespace::resource_quota(&preview)),
        to_value(&namespace::limit_range(&preview)),
    ];
    objects.extend(network::network_policies(&preview).iter().map(to_value));
    if let Some(ingress) = ingress::ingress(&preview) {
        objects.push(to_value(&ingress));
    }
    objects.push(argocd::application_set(&preview));
    Ok(objects)
}

fn to_value<K: serde::Serialize + k8s_openapi::Resource>(object: &K) -> Value {
    // k8s-openapi objects serialise without apiVersion/kind; put them first for readers.
    let mut value = serde_json::to_value(object).unwrap_or(Value::Null);
    if let Value::Object(map) = &mut value {
        let mut ordered = serde_json::Map::new();
        ordered.insert("apiVersion".into(), Value::from(K::API_VERSION));
        ordered.insert("kind".into(), Value::from(K::KIND));
        for (k, v) in std::mem::take(map) {
            if k != "apiVersion" && k != "kind" {
                ordered.insert(k, v);
            }
        }
        *map = ordered;
    }
    value
}

/// Multi-document YAML, as `previewd render` prints it.
pub fn to_yaml(objects: &[Value]) -> Result<String, serde_norway::Error> {
    let mut out = String::new();
    for object in objects {
        out.push_str("---\n");
        out.push_str(&serde_norway::to_string(object)?);
    }
    Ok(out)
}
