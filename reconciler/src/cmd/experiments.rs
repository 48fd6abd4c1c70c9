//! `previewd experiments report`: each configured experiment's arms compared over the
//! cluster's PreviewEnvironments, and (with `--prometheus`) over the arms' counters, which
//! also remember previews that are gone.

use std::path::Path;

use crate::config::Config;
use crate::crd::PreviewEnvironment;

pub async fn report(config: &Path, prometheus: Option<&str>, window: std::time::Duration) -> Result<String, String> {
    let config = Config::load(config).map_err(|e| e.to_string())?;
    let client = kube::Client::try_default().await.map_err(|e| format!("Kubernetes: {e}"))?;
    let previews = kube::Api::<PreviewEnvironment>::all(client)
        .list(&Default::default())
        .await
        .map_err(|e| format!("listing previews: {e}"))?
        .items;
    let mut out = render(&config, &previews);
    if let Some(url) = prometheus {
        let totals = crate::sizing::prometheus::Prometheus::new(url)
            .map_err(|e| e.to_string())?
            .experiment_totals(window)
            .await
            .map_err(|e| e.to_string())?;
        out.push_str(&crate::experiment::render_totals(&totals, window));
    }
    Ok(out)
}

/// The report over `previews` (pure; also what the command prints first).
pub fn render(config: &Config, previews: &[PreviewEnvironment]) -> String {
    let mut out = String::new();
    for repo in &config.repositories {
        let Some(experiment) = &repo.experiment else { continue };
        let mine: Vec<PreviewEnvironment> =
            previews.iter().filter(|pe| pe.spec.repository.eq_ignore_ascii_case(&repo.name)).cloned().collect();
        out.push_str(&format!("{} ({} live previews)\n", repo.name, mine.len()));
        out.push_str(&crate::experiment::render(&crate::experiment::report(experiment, &mine)));
        out.push('\n');
    }
    if out.is_empty() {
        out.push_str("No repository runs an experiment (repositories[].experiment).\n");
    }
    out
}
