//! The Argo CD ApplicationSet: a list generator with one element per service, each becoming an
//! Application that deploys the service's chart at the PR's head commit into the preview
//! namespace, synced automatically with pruning.

use serde_json::{Value, json};

use super::Preview;
use crate::argo::{ApplicationSet, ApplicationSetSpec};
use crate::names;

pub(super) fn application_set(p: &Preview<'_>) -> ApplicationSet {
    let pr = &p.resource.spec;
    // No commit has passed the build gate yet: nothing to deploy.
    let deployable = if pr.head_sha.is_empty() { &[][..] } else { &p.services[..] };
    let elements: Vec<Value> = deployable
        .iter()
        .map(|service| {
            json!({
                "service": service.name,
                "app": names::application_name(&p.name, &service.name),
                "chartPath": service.chart_path,
                "valueFiles": service.value_files,
                "values": helm_values(p, service),
            })
        })
        .collect();
    let mut labels = p.labels();
    labels.insert("preview.previewd.io/service".to_owned(), "{{.service}}".to_owned());
    let spec = json!({
            "goTemplate": true,
            "goTemplateOptions": ["missingkey=error"],
            "generators": [{"list": {"elements": elements}}],
            // Deleting the ApplicationSet (with its PreviewEnvironment) deletes the Applications,
            // and their finalizer deletes what they deployed.
            "syncPolicy": {"preserveResourcesOnDeletion": false},
            "template": {
                "metadata": {
                    "name": "{{.app}}",
                    "labels": labels,
                    "annotations": p.deploy_annotations(),
                    "finalizers": ["resources-finalizer.argocd.argoproj.io"]
                },
                "spec": {
                    "project": p.config.argocd.project,
                    "source": {
                        "repoURL": p.repo.repo_url(),
                        "targetRevision": pr.head_sha,
                        "path": "{{.chartPath}}",
                        "helm": {"releaseName": "{{.service}}"}
                    },
                    "destination": {"server": p.destination_server(), "namespace": p.name},
                    "syncPolicy": {
                        "automated": {"prune": true, "selfHeal": true},
                        "syncOptions": ["CreateNamespace=false", "ServerSideApply=true"],
                        "retry": {"limit": 5, "backoff": {"duration": "10s", "factor": 2, "maxDuration": "3m"}}
                    }
                }
            },
            // Per-service value files and values: objects cannot be templated into fields.
            "templatePatch": "spec:\n  source:\n    helm:\n      valueFiles: {{ .valueFiles | toJson }}\n      valuesObject: {{ .values | toJson }}\n"
    });
    // An object literal, so always an object.
    let fields = if let Value::Object(fields) = spec { fields } else { serde_json::Map::new() };
    ApplicationSet {
        metadata: p.control_meta(&p.name, Some(&p.config.argocd.namespace)),
        spec: ApplicationSetSpec { fields },
    }
}

/// The Helm values Previewd passes to every service chart: its resources, where it runs, the
/// preview's URL, and (when enabled) a preference for spot capacity. The service's own configured
/// values are applied last and win.
fn helm_values(p: &Preview<'_>, service: &crate::config::ServiceConfig) -> Value {
    let r = &service.resources;
    let as_helm = |set: &crate::config::Resources| {
        let mut out = json!({"cpu": set.cpu.as_str(), "memory": set.memory.as_str()});
        if let Some(scratch) = &set.ephemeral_storage {
            out["ephemeral-storage"] = json!(scratch.as_str());
        }
        out
    };
    let mut resources = json!({"requests": as_helm(&r.requests)});
    // `sizing: auto`: the right-sized requests (limits stay as configured).
    if let Some(size) = crate::cost::applied(p.resource.spec.sizing.as_ref(), &service.name) {
        resources["requests"]["cpu"] = json!(crate::sizing::cpu_text(size.cpu_millis));
        resources["requests"]["memory"] = json!(crate::sizing::memory_text(size.memory_bytes));
    }
    if let Some(limits) = &r.limits {
        resources["limits"] = as_helm(limits);
    }
    let mut values = json!({
        "replicaCount": r.replicas,
        "resources": resources,
        "previewd": {
            "host": p.host,
            "url": p.url(),
            "namespace": p.name,
            "repository": p.repo.name,
            "pr": p.resource.spec.pr_number,
            "sha": p.resource.spec.head_sha,
        }
    });
    // `/preview redeploy`: a new value rolls the pods of charts that put it in an annotation,
    // and makes Argo CD sync the Application again.
    if let Some(at) = p.resource.spec.requested.as_ref().and_then(|r| r.redeployed_at) {
        values["previewd"]["redeployedAt"] = json!(at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
    }
    let spot = &p.config.spot;
    if spot.enabled {
        values["affinity"] = json!({"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{
            "weight": 100,
            "preference": {"matchExpressions": [{"key": spot.node_label_key, "operator": "In", "values": [spot.node_label_value]}]}
        }]}});
        if let Some(key) = &spot.toleration_key {
            values["tolerations"] = json!([{"key": key, "operator": "Exists", "effect": "NoSchedule"}]);
        }
    }
    if let Value::Object(map) = &mut values {
        for (k, v) in &service.values {
            map.insert(k.clone(), v.clone());
        }
    }
    // Asleep: every workload of the chart at zero replicas; this wins over `values`.
    if p.asleep.is_some() {
        values["replicaCount"] = json!(0);
    }
    // The image setting names exactly these two values: it wins over `values`.
    if let Some(image) = &service.image {
        let spec = &p.resource.spec;
        let tag =
            image.tag_for(crate::config::TagInputs { sha: &spec.head_sha, pr: spec.pr_number, branch: &spec.head_ref });
        set_path(&mut values, &image.values.repository, json!(p.config.images.rewrite(&image.repository)));
        set_path(&mut values, &image.values.tag, json!(tag));
    }
    values
}

/// Sets a dotted path (`image.tag`) in a values object, creating the objects on the way (and
/// replacing a non-object found there).
fn set_path(values: &mut Value, path: &str, value: Value) {
    let mut at = values;
    let mut parts = path.split('.').peekable();
    while let Some(part) = parts.next() {
        if !at.is_object() {
            *at = json!({});
        }
        let Value::Object(map) = at else { return };
        if parts.peek().is_none() {
            map.insert(part.to_owned(), value);
            return;
        }
        at = map.entry(part.to_owned()).or_insert_with(|| json!({}));
    }
}
