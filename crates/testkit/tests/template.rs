//! `sam-template.yaml` and the local stack (`infra/local-resources.json`) describe the same
//! queue, dead-letter queue and table; and the template uses the fixed names of DESIGN.md.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use previewd_testkit::{resource_spec, workspace_root};
use serde_json::Value as Json;
use serde_norway::Value as Yaml;

fn template() -> Yaml {
    let text = std::fs::read_to_string(workspace_root().join("sam-template.yaml")).unwrap();
    serde_norway::from_str(&text).unwrap()
}

fn resource<'a>(template: &'a Yaml, name: &str) -> &'a Yaml {
    let resource = &template["Resources"][name];
    assert!(!resource.is_null(), "sam-template.yaml has no resource {name}");
    resource
}

/// A scalar as SQS attributes spell it (`true`, `1209600`).
fn scalar(value: &Yaml) -> String {
    match value {
        Yaml::Bool(b) => b.to_string(),
        Yaml::Number(n) => n.to_string(),
        Yaml::String(s) => s.clone(),
        other => panic!("not a scalar: {other:?}"),
    }
}

/// `!Sub "${AWS::StackName}-events.fifo"` with the stack named `previewd`, as in the docs.
fn stack_named(value: &Yaml) -> String {
    let Yaml::Tagged(tagged) = value else { panic!("expected !Sub, got {value:?}") };
    assert_eq!(tagged.tag, "!Sub");
    scalar(&tagged.value).replace("${AWS::StackName}", "previewd")
}

fn assert_queue_matches(template: &Yaml, logical: &str, local: &Json) {
    let props = &resource(template, logical)["Properties"];
    assert_eq!(stack_named(&props["QueueName"]), local["name"].as_str().unwrap(), "{logical} name");
    for (attribute, expected) in local["attributes"].as_object().unwrap() {
        let actual = &props[attribute.as_str()];
        assert!(!actual.is_null(), "{logical}: the template does not set {attribute}");
        assert_eq!(scalar(actual), expected.as_str().unwrap(), "{logical}.{attribute}");
    }
}

#[test]
fn queues_match_the_local_stack() {
    let (template, local) = (template(), resource_spec());
    assert_queue_matches(&template, "EventsQueue", &local["queue"]);
    assert_queue_matches(&template, "EventsDeadLetterQueue", &local["dead_letter_queue"]);
    let redrive = &resource(&template, "EventsQueue")["Properties"]["RedrivePolicy"];
    assert_eq!(scalar(&redrive["maxReceiveCount"]), local["queue"]["max_receive_count"].to_string());
    let Yaml::Tagged(target) = &redrive["deadLetterTargetArn"] else { panic!("deadLetterTargetArn") };
    assert_eq!(scalar(&target.value), "EventsDeadLetterQueue.Arn");
}

#[test]
fn table_matches_the_local_stack() {
    let (template, local) = (template(), resource_spec());
    let props = &resource(&template, "DeliveriesTable")["Properties"];
    let table = &local["table"];
    assert_eq!(stack_named(&props["TableName"]), table["name"].as_str().unwrap());
    assert_eq!(scalar(&props["BillingMode"]), table["billing_mode"].as_str().unwrap());
    let key = table["partition_key"].as_str().unwrap();
    let schema = props["KeySchema"].as_sequence().unwrap();
    assert_eq!(schema.len(), 1);
    assert_eq!((scalar(&schema[0]["AttributeName"]).as_str(), scalar(&schema[0]["KeyType"]).as_str()), (key, "HASH"));
    let definitions = props["AttributeDefinitions"].as_sequence().unwrap();
    assert_eq!(definitions.len(), 1);
    assert_eq!(scalar(&definitions[0]["AttributeName"]), key);
    assert_eq!(scalar(&definitions[0]["AttributeType"]), "S");
    let ttl = &props["TimeToLiveSpecification"];
    assert_eq!(scalar(&ttl["AttributeName"]), table["ttl_attribute"].as_str().unwrap());
    assert_eq!(scalar(&ttl["Enabled"]), "true");
    assert_eq!(scalar(&props["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"]), "true");
}

#[test]
fn functions_use_the_fixed_names() {
    let template = template();
    let globals = &template["Globals"]["Function"];
    assert_eq!(scalar(&globals["Runtime"]), "provided.al2023");
    assert_eq!(globals["Architectures"].as_sequence().map(|a| scalar(&a[0])), Some("arm64".to_owned()));
    assert!(!globals["Environment"]["Variables"]["PREVIEWD_TABLE_NAME"].is_null());
    for (logical, binary, variables) in [
        (
            "WebhookFunction",
            "webhook",
            &["PREVIEWD_WEBHOOK_SECRET_ARN", "PREVIEWD_QUEUE_URL", "PREVIEWD_RATE_LIMIT_PER_MINUTE"][..],
        ),
        ("RedeliverFunction", "redeliver", &["PREVIEWD_GITHUB_HOOK", "PREVIEWD_GITHUB_CREDENTIALS_SECRET_ARN"][..]),
    ] {
        let function = resource(&template, logical);
        assert_eq!(scalar(&function["Metadata"]["BuildMethod"]), "rust-cargolambda");
        assert_eq!(scalar(&function["Metadata"]["BuildProperties"]["Binary"]), binary);
        let env = &function["Properties"]["Environment"]["Variables"];
        for variable in variables {
            assert!(!env[*variable].is_null(), "{logical} lacks {variable}");
        }
    }
}

#[test]
fn every_output_the_helm_values_need_is_there() {
    let template = template();
    for output in ["WebhookUrl", "QueueUrl", "QueueArn", "DeadLetterQueueUrl", "TableName", "ReconcilerQueuePolicyArn"]
    {
        assert!(!template["Outputs"][output]["Value"].is_null(), "output {output}");
    }
}
