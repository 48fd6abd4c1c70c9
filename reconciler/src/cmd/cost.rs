//! `previewd cost`: what every preview in the cluster costs, with totals per repository and
//! team, and the projection against the budget.

use std::path::Path;

use crate::config::Config;
use crate::crd::PreviewEnvironment;

pub async fn cost_report(config: &Path) -> Result<String, String> {
    let config = Config::load(config).map_err(|e| e.to_string())?;
    let client = kube::Client::try_default().await.map_err(|e| format!("Kubernetes: {e}"))?;
    let api: kube::Api<PreviewEnvironment> = kube::Api::all(client);
    let previews = api.list(&Default::default()).await.map_err(|e| format!("listing previews: {e}"))?;
    Ok(crate::cost::report(&config, &previews.items, chrono::Utc::now()))
}
