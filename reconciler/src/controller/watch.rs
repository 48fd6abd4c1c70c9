//! The controller's watches: one reflector per kind it reads (PreviewEnvironments, the kinds it
//! applies, Argo CD's Applications), each feeding a cache and triggering the preview it belongs
//! to (by the `preview.previewd.io/name` label every such object carries). An Application's
//! change reconciles its preview at once; a periodic resync of every preview is the safety net
//! (expiry of previews whose exact requeue was lost, previews whose spec became invalid).

use std::time::Duration;

use futures::{Stream, StreamExt};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{LimitRange, Namespace, ResourceQuota, Secret, Service};
use k8s_openapi::api::networking::v1::{Ingress, NetworkPolicy};
use kube::core::PartialObjectMeta;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{Controller, WatchStreamExt, watcher};
use kube::{Api, Client, Resource};
use serde::de::DeserializeOwned;

use super::observe::Caches;
use crate::argo::{Application, ApplicationSet};
use crate::config::Config;
use crate::crd::PreviewEnvironment;
use crate::render::{LABEL_PREVIEW, MANAGED_BY};

type Objects<K> = std::pin::Pin<Box<dyn Stream<Item = Result<K, watcher::Error>> + Send>>;

/// A reflector on `api` (objects selected by `labels`, `managedFields` dropped): its cache, and
/// the stream of objects that changed.
fn reflect<K>(api: Api<K>, labels: Option<&str>) -> (Store<K>, Objects<K>)
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
{
    let (reader, writer) = reflector::store();
    let mut config = watcher::Config::default();
    if let Some(labels) = labels {
        config = config.labels(labels);
    }
    let stream = reflector::reflector(
        writer,
        watcher(api, config).default_backoff().modify(|o: &mut K| o.meta_mut().managed_fields = None),
    )
    .touched_objects()
    .boxed();
    (reader, stream)
}

/// The preview an object belongs to, by its label.
fn preview_of<K: Resource>(object: K) -> Option<ObjectRef<PreviewEnvironment>> {
    object.meta().labels.as_ref()?.get(LABEL_PREVIEW).map(|name| ObjectRef::new(name))
}

/// The caches, and the controller that keeps them and reconciles on their changes (and on a
/// resync every `ttl.sweepInterval`).
pub fn controller(client: &Client, config: &Config) -> (Caches, Controller<PreviewEnvironment>) {
    let managed = format!("app.kubernetes.io/managed-by={MANAGED_BY}");
    let argocd = &config.argocd.namespace;
    let (previews, preview_events) = reflect(Api::<PreviewEnvironment>::all(client.clone()), None);
    let (namespaces, namespace_events) = reflect(Api::<Namespace>::all(client.clone()), Some(&managed));
    let (quotas, quota_events) = reflect(Api::<ResourceQuota>::all(client.clone()), Some(&managed));
    let (limits, limit_events) = reflect(Api::<LimitRange>::all(client.clone()), Some(&managed));
    let (policies, policy_events) = reflect(Api::<NetworkPolicy>::all(client.clone()), Some(&managed));
    let (ingresses, ingress_events) = reflect(Api::<Ingress>::all(client.clone()), Some(&managed));
    let (services, service_events) = reflect(Api::<Service>::all(client.clone()), Some(&managed));
    let (application_sets, app_set_events) =
        reflect(Api::<ApplicationSet>::namespaced(client.clone(), argocd), Some(&managed));
    let (applications, app_events) =
        reflect(Api::<Application>::namespaced(client.clone(), argocd), Some(LABEL_PREVIEW));
    let every = resync_every(config);
    let first = tokio::time::Instant::now() + every;
    let resync = tokio_stream::wrappers::IntervalStream::new(tokio::time::interval_at(first, every)).map(|_| ());
    let secret_changes = source_secret_changes(client, config, previews.clone());
    let loader_events = loader_changes(client, config, &managed);
    let controller = Controller::for_stream(preview_events, previews.clone())
        .watches_stream(loader_events, preview_of)
        .watches_stream(namespace_events, preview_of)
        .watches_stream(quota_events, preview_of)
        .watches_stream(limit_events, preview_of)
        .watches_stream(policy_events, preview_of)
        .watches_stream(ingress_events, preview_of)
        .watches_stream(service_events, preview_of)
        .watches_stream(app_set_events, preview_of)
        .watches_stream(app_events, preview_of)
        .watches_stream(secret_changes.0, secret_changes.1)
        .reconcile_all_on(resync);
    let caches =
        Caches { previews, namespaces, quotas, limits, policies, ingresses, services, application_sets, applications };
    (caches, controller)
}

/// The seed loader Jobs, by metadata (a status change bumps it): one that ends reconciles its
/// preview. Watched only when a repository seeds its previews (the chart grants Jobs then).
fn loader_changes(client: &Client, config: &Config, managed: &str) -> Objects<PartialObjectMeta<Job>> {
    if !config.repositories.iter().any(|r| r.seed.is_some()) {
        return futures::stream::empty().boxed();
    }
    watcher(Api::<PartialObjectMeta<Job>>::all(client.clone()), watcher::Config::default().labels(managed))
        .default_backoff()
        .touched_objects()
        .boxed()
}

type SecretMapper = Box<dyn Fn(PartialObjectMeta<Secret>) -> Vec<ObjectRef<PreviewEnvironment>> + Send + Sync>;

/// The Secrets previews copy, watched by their metadata only (their values are never held
/// here), in the allow-listed source namespaces: a change re-copies them into every preview
/// that gets them.
fn source_secret_changes(
    client: &Client,
    config: &Config,
    previews: Store<PreviewEnvironment>,
) -> (Objects<PartialObjectMeta<Secret>>, SecretMapper) {
    let streams: Vec<Objects<PartialObjectMeta<Secret>>> = config
        .secrets
        .source_namespaces
        .iter()
        .map(|ns| {
            watcher(Api::<PartialObjectMeta<Secret>>::namespaced(client.clone(), ns), watcher::Config::default())
                .default_backoff()
                .touched_objects()
                .boxed()
        })
        .collect();
    let config = config.clone();
    let mapper: SecretMapper = Box::new(move |secret: PartialObjectMeta<Secret>| {
        let (Some(ns), Some(name)) = (secret.metadata.namespace.as_deref(), secret.metadata.name.as_deref()) else {
            return Vec::new();
        };
        previews
            .state()
            .iter()
            .filter(|pe| {
                config.repository(&pe.spec.repository).is_some_and(|repo| {
                    repo.secrets_for(&pe.spec.services)
                        .into_iter()
                        .chain(repo.basic_auth_secret())
                        .any(|s| s.name == name && s.from.as_deref() == Some(ns))
                })
            })
            .map(|pe| ObjectRef::from_obj(pe.as_ref()))
            .collect()
    });
    (futures::stream::select_all(streams).boxed(), mapper)
}

fn resync_every(config: &Config) -> Duration {
    config.ttl.sweep_interval.max(Duration::from_secs(10))
}
