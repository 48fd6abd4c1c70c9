//! `infra/create_resources.py` (what `infra/stack.sh up` runs) creates in the emulator exactly
//! what `infra/local-resources.json` describes — which `template.rs` checks against
//! `sam-template.yaml`. Read back through the real AWS SDK.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::Command;

use aws_sdk_sqs::types::QueueAttributeName;
use previewd_testkit::{endpoint, resource_spec, sdk_config, workspace_root};

#[tokio::test]
async fn create_resources_script_builds_what_the_spec_says() {
    let prefix = format!("script{}-", std::process::id());
    let root = workspace_root();
    let output = Command::new(root.join(".venv/bin/python"))
        .arg(root.join("infra/create_resources.py"))
        .args(["--prefix", &prefix, "--env"])
        .env("AWS_ENDPOINT_URL", endpoint())
        .output()
        .expect("the project's .venv (infra/setup.sh) is needed");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let exports = String::from_utf8(output.stdout).unwrap();
    let export = |name: &str| {
        exports
            .lines()
            .find_map(|l| l.strip_prefix(&format!("export {name}=")))
            .unwrap_or_else(|| panic!("{name} not printed: {exports}"))
            .to_owned()
    };

    let sdk = sdk_config(&endpoint()).await;
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let ddb = aws_sdk_dynamodb::Client::new(&sdk);
    let spec = resource_spec();

    for (url, local) in
        [(export("PREVIEWD_QUEUE_URL"), &spec["queue"]), (export("PREVIEWD_DLQ_URL"), &spec["dead_letter_queue"])]
    {
        assert!(url.ends_with(&format!("{prefix}{}", local["name"].as_str().unwrap())), "{url}");
        let attrs = sqs
            .get_queue_attributes()
            .queue_url(&url)
            .attribute_names(QueueAttributeName::All)
            .send()
            .await
            .unwrap()
            .attributes
            .unwrap();
        for (name, expected) in local["attributes"].as_object().unwrap() {
            let actual = attrs.get(&QueueAttributeName::from(name.as_str()));
            assert_eq!(actual.map(String::as_str), expected.as_str(), "{url}: {name}");
        }
        if local == &spec["queue"] {
            let redrive: serde_json::Value = serde_json::from_str(&attrs[&QueueAttributeName::RedrivePolicy]).unwrap();
            assert_eq!(
                redrive["maxReceiveCount"].to_string().trim_matches('"'),
                local["max_receive_count"].to_string()
            );
            assert!(
                redrive["deadLetterTargetArn"]
                    .as_str()
                    .unwrap()
                    .ends_with(spec["dead_letter_queue"]["name"].as_str().unwrap())
            );
        }
    }

    let table = export("PREVIEWD_TABLE_NAME");
    let description = ddb.describe_table().table_name(&table).send().await.unwrap().table.unwrap();
    let key = &description.key_schema()[0];
    assert_eq!(key.attribute_name(), spec["table"]["partition_key"].as_str().unwrap());
    assert_eq!(key.key_type().as_str(), "HASH");
    assert_eq!(
        description.billing_mode_summary().and_then(|b| b.billing_mode()).map(|m| m.as_str()),
        spec["table"]["billing_mode"].as_str()
    );
    let ttl = ddb.describe_time_to_live().table_name(&table).send().await.unwrap().time_to_live_description.unwrap();
    assert_eq!(ttl.attribute_name(), spec["table"]["ttl_attribute"].as_str());
    assert_eq!(ttl.time_to_live_status().map(|s| s.as_str()), Some("ENABLED"));
}
