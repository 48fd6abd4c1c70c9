//! `previewd render`: what a queue message would create, with no cluster: the event takes the
//! one event path into memory, and what it wrote is printed with everything the controller
//! would apply for it.

use std::path::Path;
use std::sync::Arc;

use previewd_events::PreviewEvent;

use crate::config::Config;
use crate::intake::store::PreviewStore;
use crate::intake::{Approvals, Intake, Outcome};
use crate::render::{as_applied, render, to_yaml};

#[derive(Debug, thiserror::Error)]
pub enum RenderCommandError {
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error("reading {path}: {message}")]
    Read { path: String, message: String },
    #[error("{path}: {message}")]
    Event { path: String, message: String },
    #[error(transparent)]
    Render(#[from] crate::render::RenderError),
    #[error(transparent)]
    Store(#[from] crate::intake::store::StoreError),
    #[error("writing YAML: {0}")]
    Yaml(#[from] serde_norway::Error),
    #[error("{0}")]
    Failed(String),
}

pub async fn render_event(config_path: &Path, event_path: &Path) -> Result<String, RenderCommandError> {
    let config = Arc::new(Config::load(config_path)?);
    let path = event_path.display().to_string();
    let text = std::fs::read_to_string(event_path)
        .map_err(|e| RenderCommandError::Read { path: path.clone(), message: e.to_string() })?;
    let event =
        PreviewEvent::from_json(&text).map_err(|e| RenderCommandError::Event { path, message: e.to_string() })?;
    // Offline there is no GitHub to ask who added a fork's label: it counts.
    let intake = Intake::new(PreviewStore::memory(), Arc::clone(&config)).with_approvals(Approvals::Assumed);
    let (repo, number) = (&event.repository.full_name, event.pull_request.number);
    match intake.handle_event(&event).await {
        Outcome::Applied { name } => {
            let Some(written) = intake.store().get(&name).await? else {
                return Err(RenderCommandError::Failed(format!("{name} was not written")));
            };
            let resource = as_applied(&config, written.spec)?;
            let mut objects = vec![serde_json::to_value(&resource).unwrap_or_default()];
            objects.extend(render(&config, &resource)?);
            Ok(to_yaml(&objects)?)
        }
        Outcome::Removed { reason, .. } => {
            Ok(format!("# no objects: the preview of {repo}#{number} is removed ({})\n", reason.as_str()))
        }
        Outcome::Ignored { reason } => Ok(format!("# no objects: event ignored ({})\n", reason.as_str())),
        other => Err(RenderCommandError::Failed(format!("{other:?}"))),
    }
}
