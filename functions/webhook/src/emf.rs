//! CloudWatch Embedded Metric Format: one JSON line per request on stdout, which CloudWatch
//! Logs turns into metrics without any API call from the function.

use serde_json::json;

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
    json!({
        "_aws": {
            "Timestamp": timestamp_ms,
            "CloudWatchMetrics": [{
                "Namespace": NAMESPACE,
                "Dimensions": [["Event", "Action", "Outcome"], ["Outcome"]],
                "Metrics": [
                    {"Name": "Requests", "Unit": "Count"},
                    {"Name": "Latency", "Unit": "Milliseconds"}
                ]
            }]
        },
        "Event": event,
        "Action": action,
        "Outcome": outcome,
        "Requests": 1,
        "Latency": latency_ms,
        // Not a dimension: searchable in Logs Insights without multiplying metric series.
        "DeliveryId": delivery,
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_is_valid_emf() -> Result<(), serde_json::Error> {
        let line = request_line("pull_request", "opened", "accepted", 12.5, "d-1", 1_700_000_000_000);
        let v: serde_json::Value = serde_json::from_str(&line)?;
        let directive = &v["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(directive["Namespace"], NAMESPACE);
        // Every dimension and metric named in the directive is a top-level member.
        for dims in directive["Dimensions"].as_array().into_iter().flatten() {
            for d in dims.as_array().into_iter().flatten() {
                assert!(v.get(d.as_str().unwrap_or("?")).is_some(), "{d}");
            }
        }
        for m in directive["Metrics"].as_array().into_iter().flatten() {
            assert!(v[m["Name"].as_str().unwrap_or("?")].is_number());
        }
        assert!(!line.contains('\n'));
        Ok(())
    }
}
