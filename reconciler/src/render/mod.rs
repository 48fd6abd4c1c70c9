//! Everything a preview consists of, as plain values (no client): the controller applies these
//! with server-side apply, `previewd render` prints them, tests snapshot and validate them.

mod argocd;
pub mod baseline;
mod ingress;
mod namespace;
mod network;
pub mod secrets;
pub mod seed;

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{LimitRange, Namespace, ResourceQuota, Service};
use k8s_openapi::api::networking::v1::{Ingress, NetworkPolicy};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::Resource;
use serde_json::Value;

use crate::argo::ApplicationSet;
use crate::config::{Config, RepositoryConfig, ServiceConfig};
use crate::crd::{PreviewEnvironment, PreviewEnvironmentSpec, PreviewEnvironmentStatus};
use crate::names;

pub const MANAGED_BY: &str = "previewd";
pub const LABEL_PREVIEW: &str = "preview.previewd.io/name";
pub const LABEL_REPOSITORY: &str = "preview.previewd.io/repository";
pub const LABEL_PR: &str = "preview.previewd.io/pr";
pub const ANNOTATION_REPOSITORY: &str = "preview.previewd.io/repository";
pub const ANNOTATION_HEAD_SHA: &str = "preview.previewd.io/head-sha";
/// On the objects of a preview in another cluster, which cannot have an owner reference to
/// it: the PreviewEnvironment's uid (cleanup deletes only what carries it).
pub const ANNOTATION_OWNER_UID: &str = "preview.previewd.io/owner-uid";

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
    /// Asleep (`ttl.sleepAfter`): the page its visitors are sent to. Set by the controller,
    /// which knows the time and the link's key.
    pub asleep: Option<String>,
    /// The preview cluster its namespace is in, when not Previewd's own (`placed_in`).
    pub cluster: Option<Placed>,
}

/// A preview cluster, as rendering needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placed {
    pub name: String,
    /// The destination of its Applications, as Argo CD knows the cluster.
    pub server: String,
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
            asleep: None,
            cluster: None,
        })
    }

    /// The preview in cluster `name` (Argo CD's `server`), whose hosts may be in a `zone` of
    /// its own. `in-cluster` changes nothing.
    pub fn placed_in(mut self, name: &str, server: &str, zone: Option<&str>) -> Preview<'a> {
        if name == crate::config::IN_CLUSTER {
            return self;
        }
        self.cluster = Some(Placed { name: name.to_owned(), server: server.to_owned() });
        if let Some(zone) = zone {
            self.host = names::preview_host(&self.repo.slug(), self.resource.spec.pr_number, zone);
        }
        self
    }

    /// Where its Applications deploy to.
    pub fn destination_server(&self) -> &str {
        self.cluster.as_ref().map_or(self.config.argocd.destination_server.as_str(), |c| c.server.as_str())
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

    /// Annotations every object carries. The head commit is not among them: only what deploys
    /// it (the ApplicationSet) changes with a push, so a push rewrites one object, not seven.
    pub fn annotations(&self) -> BTreeMap<String, String> {
        BTreeMap::from([(ANNOTATION_REPOSITORY.to_owned(), self.repo.name.clone())])
    }

    /// The ApplicationSet's and its Applications' annotations: also the commit they deploy.
    pub fn deploy_annotations(&self) -> BTreeMap<String, String> {
        let mut annotations = self.annotations();
        annotations.insert(ANNOTATION_HEAD_SHA.to_owned(), self.resource.spec.head_sha.clone());
        annotations
    }

    /// Metadata of an object in the preview namespace (or `namespace`), in the preview's
    /// cluster. Owned by the PreviewEnvironment there when that is Previewd's own cluster; in
    /// another, an owner reference would point at nothing and garbage collection would delete
    /// the object at once, so it carries the owner's uid instead.
    pub fn meta(&self, name: &str, namespace: Option<&str>) -> ObjectMeta {
        let mut meta = self.control_meta(name, namespace);
        if self.cluster.is_some() {
            meta.owner_references = None;
            if let (Some(annotations), Some(owner)) = (meta.annotations.as_mut(), &self.owner) {
                annotations.insert(ANNOTATION_OWNER_UID.to_owned(), owner.uid.clone());
            }
        }
        meta
    }

    /// Metadata of an object in Previewd's own cluster (the ApplicationSet), owned by the
    /// PreviewEnvironment.
    pub fn control_meta(&self, name: &str, namespace: Option<&str>) -> ObjectMeta {
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

/// The kinds of object a preview consists of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    Namespace,
    ResourceQuota,
    LimitRange,
    NetworkPolicy,
    Ingress,
    /// A baseline service's stand-in (`unchangedServices: baseline`).
    Service,
    /// A secret the External Secrets Operator fetches into the preview.
    ExternalSecret,
    ApplicationSet,
}

impl Kind {
    /// Lives in Previewd's own cluster, where Argo CD runs, wherever the preview is.
    pub fn is_argocd(self) -> bool {
        self == Kind::ApplicationSet
    }
}

/// One object to apply: its kind, name, namespace, and its content as JSON.
#[derive(Debug, Clone, PartialEq)]
pub struct Desired {
    pub kind: Kind,
    pub name: String,
    pub namespace: Option<String>,
    pub object: Value,
}

/// Everything a preview consists of, typed.
#[derive(Debug, Clone)]
pub struct Rendered {
    pub namespace: Namespace,
    pub quota: ResourceQuota,
    pub limits: LimitRange,
    pub policies: Vec<NetworkPolicy>,
    /// `None` when no service is exposed.
    pub ingress: Option<Ingress>,
    /// ExternalName Services to the baseline namespace.
    pub baseline: Vec<Service>,
    /// Services of the repository that must not have a baseline stand-in.
    pub withdrawn: Vec<String>,
    /// ExternalSecret objects (JSON: the operator's CRDs are not Previewd's).
    pub external_secrets: Vec<Value>,
    pub application_set: ApplicationSet,
}

impl Rendered {
    pub fn of(preview: &Preview<'_>) -> Rendered {
        Rendered {
            namespace: namespace::namespace(preview),
            quota: namespace::resource_quota(preview),
            limits: namespace::limit_range(preview),
            policies: network::network_policies(preview),
            ingress: ingress::ingress(preview),
            baseline: baseline::services(preview),
            withdrawn: baseline::withdrawn(preview),
            external_secrets: secrets::external_secrets(preview),
            application_set: argocd::application_set(preview),
        }
    }

    /// Baseline stand-ins that must go if they exist (only Previewd's: a chart's own Service of
    /// that name is not touched).
    pub fn withdrawn(&self) -> Vec<Desired> {
        let namespace = self.namespace.metadata.name.clone();
        self.withdrawn
            .iter()
            .map(|name| Desired {
                kind: Kind::Service,
                name: name.clone(),
                namespace: namespace.clone(),
                object: Value::Null,
            })
            .collect()
    }

    /// Every object, in the order they are applied (the namespace first).
    pub fn desired(&self) -> Vec<Desired> {
        let mut all = vec![
            desired(Kind::Namespace, &self.namespace),
            desired(Kind::ResourceQuota, &self.quota),
            desired(Kind::LimitRange, &self.limits),
        ];
        all.extend(self.policies.iter().map(|p| desired(Kind::NetworkPolicy, p)));
        all.extend(self.ingress.iter().map(|i| desired(Kind::Ingress, i)));
        all.extend(self.baseline.iter().map(|s| desired(Kind::Service, s)));
        // Before the ApplicationSet: the pods that mount them come after.
        all.extend(self.external_secrets.iter().map(|object| Desired {
            kind: Kind::ExternalSecret,
            name: object["metadata"]["name"].as_str().unwrap_or_default().to_owned(),
            namespace: object["metadata"]["namespace"].as_str().map(str::to_owned),
            object: object.clone(),
        }));
        all.push(desired(Kind::ApplicationSet, &self.application_set));
        all
    }
}

fn desired<K: serde::Serialize + Resource<DynamicType = ()>>(kind: Kind, object: &K) -> Desired {
    Desired {
        kind,
        name: object.meta().name.clone().unwrap_or_default(),
        namespace: object.meta().namespace.clone(),
        object: to_value(object),
    }
}

/// Every object of the preview as JSON, in the order they are applied.
pub fn render(config: &Config, resource: &PreviewEnvironment) -> Result<Vec<Value>, RenderError> {
    let preview = Preview::resolve(config, resource)?;
    Ok(Rendered::of(&preview).desired().into_iter().map(|d| d.object).collect())
}

/// `apiVersion` and `kind` first, for readers (k8s-openapi serialises them, custom resources
/// too, but not always in front).
fn to_value<K: serde::Serialize + Resource<DynamicType = ()>>(object: &K) -> Value {
    let mut value = serde_json::to_value(object).unwrap_or(Value::Null);
    if let Value::Object(map) = &mut value {
        let mut ordered = serde_json::Map::new();
        ordered.insert("apiVersion".into(), Value::from(K::api_version(&()).into_owned()));
        ordered.insert("kind".into(), Value::from(K::kind(&()).into_owned()));
        for (k, v) in std::mem::take(map) {
            if k != "apiVersion" && k != "kind" {
                ordered.insert(k, v);
            }
        }
        *map = ordered;
    }
    value
}

/// The PreviewEnvironment of `spec` as the controller shows it once applied (created now):
/// named, with its URL, namespace, cost and expiry in the status.
pub fn as_applied(config: &Config, spec: PreviewEnvironmentSpec) -> Result<PreviewEnvironment, RenderError> {
    let mut resource = PreviewEnvironment::new("", spec);
    let preview = Preview::resolve(config, &resource)?;
    let (name, url) = (preview.name.clone(), preview.url());
    let created = chrono::Utc::now();
    let cost = crate::cost::for_services(
        config,
        preview.services.iter().copied(),
        preview.resource.spec.sizing.as_ref(),
        false,
        created,
        created,
    );
    let expires_at = crate::ttl::expiry(config, &resource.spec, created);
    resource.metadata = ObjectMeta { name: Some(name.clone()), ..ObjectMeta::default() };
    resource.status = Some(PreviewEnvironmentStatus {
        cost_estimate: Some(cost),
        url: Some(url),
        namespace: Some(name),
        expires_at: Some(expires_at),
        ..PreviewEnvironmentStatus::default()
    });
    Ok(resource)
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
