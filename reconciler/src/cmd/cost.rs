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
    let mut out = crate::cost::report(&config, &previews.items, chrono::Utc::now());
    // Right-sizing proposals beside the configured requests, when Prometheus is configured.
    if let Some(url) = config.sizing.prometheus_url.as_deref() {
        let prometheus = crate::sizing::prometheus::Prometheus::new(url).map_err(|e| e.to_string())?;
        match prometheus.usage(&config).await {
            Ok(usage) => {
                out.push_str(&format!("\n{}", crate::sizing::render(&config, &crate::sizing::propose(&config, &usage))))
            }
            Err(err) => out.push_str(&format!("\nright-sizing: {err}\n")),
        }
    }
    Ok(out)
}
