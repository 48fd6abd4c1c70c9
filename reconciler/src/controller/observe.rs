//! What a preview's objects look like now: from the reflector caches the controller keeps
//! (`previewd run`: no request per reconcile), or read from the API (one-off reconciles, such as
//! `previewd consume`, and tests that drive `reconcile_at` directly).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{LimitRange, Namespace, ResourceQuota, Service};
use k8s_openapi::api::networking::v1::{Ingress, NetworkPolicy};
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, ListParams};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Client, Resource};
use serde::Serialize;
use serde_json::Value;

use crate::argo::{Application, ApplicationSet, ApplicationStatus};
use crate::crd::PreviewEnvironment;
use crate::render::{Desired, Kind, LABEL_PREVIEW};

/// The live state of a preview's objects.
#[derive(Debug, Clone, Default)]
pub struct Observed {
    /// Each object Previewd applies, as the API serves it, by (kind, namespace, name).
    objects: BTreeMap<(Kind, Option<String>, String), Value>,
    /// The preview's Argo CD Applications' status, by Application name.
    applications: BTreeMap<String, ApplicationStatus>,
}

impl Observed {
    pub fn object(&self, desired: &Desired) -> Option<&Value> {
        self.objects.get(&(desired.kind, desired.namespace.clone(), desired.name.clone()))
    }

    pub fn application(&self, name: &str) -> Option<&ApplicationStatus> {
        self.applications.get(name)
    }

    pub(super) fn insert(&mut self, desired: &Desired, object: Value) {
        self.objects.insert((desired.kind, desired.namespace.clone(), desired.name.clone()), object);
    }
}

/// The controller's caches: one reflector store per kind it reads, each holding only what
/// carries Previewd's labels, with `managedFields` stripped.
#[derive(Clone)]
pub struct Caches {
    pub previews: Store<PreviewEnvironment>,
    pub namespaces: Store<Namespace>,
    pub quotas: Store<ResourceQuota>,
    pub limits: Store<LimitRange>,
    pub policies: Store<NetworkPolicy>,
    pub ingresses: Store<Ingress>,
    /// Only Previewd's own Services (baseline stand-ins), by the managed-by label.
    pub services: Store<Service>,
    pub application_sets: Store<ApplicationSet>,
    pub applications: Store<Application>,
}

impl std::fmt::Debug for Caches {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Caches").field("previews", &self.previews.state().len()).finish_non_exhaustive()
    }
}

fn cached<K>(store: &Store<K>, namespace: Option<&str>, name: &str) -> Option<Value>
where
    K: Resource<DynamicType = ()> + Clone + Serialize + 'static,
{
    let mut reference = ObjectRef::<K>::new(name);
    if let Some(ns) = namespace {
        reference = reference.within(ns);
    }
    store.get(&reference).and_then(|o| serde_json::to_value(&*o).ok())
}

impl Caches {
    /// Waits until every store has its first full list (a reconcile before that would see
    /// objects missing that exist).
    pub async fn ready(&self) -> bool {
        self.previews.wait_until_ready().await.is_ok()
            && self.namespaces.wait_until_ready().await.is_ok()
            && self.quotas.wait_until_ready().await.is_ok()
            && self.limits.wait_until_ready().await.is_ok()
            && self.policies.wait_until_ready().await.is_ok()
            && self.ingresses.wait_until_ready().await.is_ok()
            && self.services.wait_until_ready().await.is_ok()
            && self.application_sets.wait_until_ready().await.is_ok()
            && self.applications.wait_until_ready().await.is_ok()
    }

    fn object(&self, desired: &Desired) -> Option<Value> {
        let (ns, name) = (desired.namespace.as_deref(), desired.name.as_str());
        match desired.kind {
            Kind::Namespace => cached(&self.namespaces, None, name),
            Kind::ResourceQuota => cached(&self.quotas, ns, name),
            Kind::LimitRange => cached(&self.limits, ns, name),
            Kind::NetworkPolicy => cached(&self.policies, ns, name),
            Kind::Ingress => cached(&self.ingresses, ns, name),
            Kind::Service => cached(&self.services, ns, name),
            // Not watched (the operator's CRDs may not be installed): applied on each pass,
            // which changes nothing when nothing changed.
            Kind::ExternalSecret => None,
            Kind::ApplicationSet => cached(&self.application_sets, ns, name),
        }
    }
}

/// Where a reconcile reads the live state from.
#[derive(Clone)]
pub enum Observer {
    Caches(Box<Caches>),
    Api(Client),
}

impl std::fmt::Debug for Observer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Observer::Caches(_) => "Observer::Caches",
            Observer::Api(_) => "Observer::Api",
        })
    }
}

/// The API resource of a kind Previewd applies.
pub fn resource_of(kind: Kind) -> ApiResource {
    let gvk = |g: &str, v: &str, k: &str| ApiResource::from_gvk(&GroupVersionKind::gvk(g, v, k));
    match kind {
        Kind::Namespace => gvk("", "v1", "Namespace"),
        Kind::ResourceQuota => gvk("", "v1", "ResourceQuota"),
        Kind::LimitRange => gvk("", "v1", "LimitRange"),
        Kind::NetworkPolicy => gvk("networking.k8s.io", "v1", "NetworkPolicy"),
        Kind::Ingress => gvk("networking.k8s.io", "v1", "Ingress"),
        Kind::Service => gvk("", "v1", "Service"),
        Kind::ExternalSecret => {
            ApiResource::from_gvk(&GroupVersionKind::gvk("external-secrets.io", "v1", "ExternalSecret"))
        }
        Kind::ApplicationSet => ApiResource::erase::<ApplicationSet>(&()),
    }
}

/// An API for `desired`'s kind and namespace.
pub fn api_for(client: &Client, desired: &Desired) -> Api<DynamicObject> {
    let resource = resource_of(desired.kind);
    match &desired.namespace {
        Some(ns) => Api::namespaced_with(client.clone(), ns, &resource),
        None => Api::all_with(client.clone(), &resource),
    }
}

impl Observer {
    /// The live state of `desired`'s objects and of preview `name`'s Applications (in
    /// `argocd_namespace`). With `remote` (a preview in another cluster), the objects that are
    /// not Argo CD's are read from there: the caches watch Previewd's own cluster only.
    pub async fn observe(
        &self,
        desired: &[Desired],
        name: &str,
        argocd_namespace: &str,
        remote: Option<&Client>,
    ) -> Result<Observed, kube::Error> {
        let (desired, there): (Vec<&Desired>, Vec<&Desired>) =
            desired.iter().partition(|d| remote.is_none() || d.kind.is_argocd());
        let mut observed = Observed::default();
        if let Some(client) = remote {
            read_each(client, &there, &mut observed).await?;
        }
        match self {
            Observer::Caches(caches) => {
                caches.ready().await;
                for d in desired {
                    if let Some(object) = caches.object(d) {
                        observed.insert(d, object);
                    }
                }
                for app in caches.applications.state() {
                    let mine = app.metadata.labels.as_ref().and_then(|l| l.get(LABEL_PREVIEW)).map(String::as_str);
                    if mine == Some(name) && app.metadata.namespace.as_deref() == Some(argocd_namespace) {
                        observed.applications.insert(
                            app.metadata.name.clone().unwrap_or_default(),
                            app.status.clone().unwrap_or_default(),
                        );
                    }
                }
            }
            Observer::Api(client) => {
                read_each(client, &desired, &mut observed).await?;
                let apps: Api<Application> = Api::namespaced(client.clone(), argocd_namespace);
                let listed = apps.list(&ListParams::default().labels(&format!("{LABEL_PREVIEW}={name}"))).await?;
                for app in listed.items {
                    observed
                        .applications
                        .insert(app.metadata.name.clone().unwrap_or_default(), app.status.unwrap_or_default());
                }
            }
        }
        Ok(observed)
    }

    /// Every PreviewEnvironment (to count what each cluster holds).
    pub async fn previews(&self) -> Result<Vec<PreviewEnvironment>, kube::Error> {
        match self {
            Observer::Caches(caches) => {
                caches.ready().await;
                Ok(caches.previews.state().iter().map(|pe| (**pe).clone()).collect())
            }
            Observer::Api(client) => {
                Ok(Api::<PreviewEnvironment>::all(client.clone()).list(&ListParams::default()).await?.items)
            }
        }
    }
}

/// Reads each of `desired` from the API.
async fn read_each(client: &Client, desired: &[&Desired], observed: &mut Observed) -> Result<(), kube::Error> {
    for d in desired {
        if let Some(object) = api_for(client, d).get_opt(&d.name).await? {
            observed.insert(d, serde_json::to_value(object).unwrap_or_default());
        }
    }
    Ok(())
}
