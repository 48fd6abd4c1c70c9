//! `previewd render`: what a queue message would create, with no cluster.

use std::path::Path;

use chrono::Utc;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use previewd_events::PreviewEvent;

use crate::config::Config;
use crate::crd::{PreviewEnvironment, PreviewEnvironmentStatus};
use crate::policy::{Decision, decide_offline};
use crate::render::{Preview, render, to_yaml};
use crate::ttl;

#[derive(Debug, thiserror::Error)]
pub enum OfflineError {
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error("reading {path}: {message}")]
    Read { path: String, message: String },
    #[error("{path}: {message}")]
    Event { path: String, message: String },
    #[error(transparent)]
    Render(#[from] crate::render::RenderError),
    #[error("writing YAML: {0}")]
    Yaml(#[from] serde_norway::Error),
}

/// The PreviewEnvironment an upsert creates (name and status as the controller sets them).
pub fn preview_resource(
    config: &Config,
    spec: crate::crd::PreviewEnvironmentSpec,
) -> Result<PreviewEnvironment, OfflineError> {
    let mut resource = PreviewEnvironment::new("", spec);
    let preview = Preview::resolve(config, &resource)?;
    let (name, url) = (preview.name.clone(), preview.url());
    let do_not_expire = resource.spec.labels.iter().any(|l| l.eq_ignore_ascii_case(&config.policy.do_not_expire_label));
    let created = Utc::now();
    let cost = Some(crate::cost::for_services(config, preview.services.iter().copied(), created, created));
    resource.metadata = ObjectMeta { name: Some(name.clone()), ..ObjectMeta::default() };
    resource.status = Some(PreviewEnvironmentStatus {
        cost_estimate: cost,
        url: Some(url),
        namespace: Some(name),
        expires_at: Some(ttl::expires_at(
            &config.ttl,
            resource.spec.last_activity,
            created,
            do_not_expire,
            resource.spec.ttl_prediction.as_ref().map(|p| std::time::Duration::from_secs(p.idle_seconds)),
        )),
        ..PreviewEnvironmentStatus::default()
    });
    Ok(resource)
}

pub fn render_event(config_path: &Path, event_path: &Path) -> Result<String, OfflineError> {
    let config = Config::load(config_path)?;
    let path = event_path.display().to_string();
    let text = std::fs::read_to_string(event_path)
        .map_err(|e| OfflineError::Read { path: path.clone(), message: e.to_string() })?;
    let event = PreviewEvent::from_json(&text).map_err(|e| OfflineError::Event { path, message: e.to_string() })?;
    match decide_offline(&event, &config) {
        Decision::Upsert(spec) => {
            let resource = preview_resource(&config, *spec)?;
            let mut objects = vec![serde_json::to_value(&resource).unwrap_or_default()];
            objects.extend(render(&config, &resource)?);
            Ok(to_yaml(&objects)?)
        }
        Decision::Remove { reason } => Ok(format!(
            "# no objects: the preview of {}#{} is removed ({})\n",
            event.repository.full_name,
            event.pull_request.number,
            reason.as_str()
        )),
        Decision::Ignore { reason } => Ok(format!("# no objects: event ignored ({})\n", reason.as_str())),
    }
}
