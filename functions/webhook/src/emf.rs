//! The webhook's CloudWatch Embedded Metric Format line: one per request on stdout.

use previewd_lambda_common::{Emf, Unit};

pub const NAMESPACE: &str = "Previewd/Webhook";

/// The EMF document for one request. Dimensions are bounded: `event` is reduced to the
/// names the front knows (others become `other`), `action` to the PR actions it handles.
pub fn request_line(
    event: &str,
    action: &str,
    outcome: &str,
    latency_ms: f64,
    delivery: &str,
    timestamp_ms: i64,
) -> String {
    Emf::new(NAMESPACE)
        .dimension("Event", event)
        .dimension("Action", action)
        .dimension("Outcome", outcome)
        .dimension_set(&["Event", "Action", "Outcome"])
        .dimension_set(&["Outcome"])
        // No dimensions: the total, the denominator of the alarms' 5xx and 429 rates.
        .dimension_set(&[])
        .metric("Requests", Unit::Count, 1.0)
        .metric("Latency", Unit::Milliseconds, latency_ms)
        // Not a dimension: searchable in Logs Insights without multiplying metric series.
        .property("DeliveryId", delivery)
        .line(timestamp_ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_line_carries_the_dimensions_alarms_use() -> Result<(), serde_json::Error> {
        let line = request_line("pull_request", "opened", "rate_limited", 3.0, "d-1", 1);
        let v: serde_json::Value = serde_json::from_str(&line)?;
        assert_eq!(v["_aws"]["CloudWatchMetrics"][0]["Namespace"], NAMESPACE);
        assert_eq!(v["Outcome"], "rate_limited");
        assert_eq!(v["Requests"], 1.0);
        let dimensions = &v["_aws"]["CloudWatchMetrics"][0]["Dimensions"];
        assert_eq!(dimensions[1][0], "Outcome");
        assert_eq!(dimensions[2].as_array().map(Vec::len), Some(0), "the dimensionless total");
        Ok(())
    }
}
