//! The CPU floor of the AWS SDK for one delivery's requests, with nothing else around them: the
//! boto3 front's three requests (conditional PutItem, UpdateItem ADD, SendMessage) issued
//! back to back through the SDK clients the webhook builds, on one thread, against the same
//! emulator. Prints this process's CPU per iteration (user + system, from /proc/self/stat):
//! no front built on these clients can spend less per delivery than this.
//!
//! AWS_ENDPOINT_URL=http://127.0.0.1:5000 AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing \
//!   AWS_REGION=us-east-1 cargo run --release -p previewd-webhook --example sdk_floor -- 500
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout, missing_docs)]

use std::time::Instant;

use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
};

fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    let fields: Vec<&str> = stat.rsplit_once(')').unwrap().1.split_whitespace().collect();
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    ticks / 100.0 // USER_HZ: 100 on Linux
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let n: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(500);
    let sdk = previewd_lambda_common::aws_config().await;
    let ddb = aws_sdk_dynamodb::Client::new(&sdk);
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let table = format!("floor-{}", uuid::Uuid::new_v4().simple());
    ddb.create_table()
        .table_name(&table)
        .key_schema(KeySchemaElement::builder().attribute_name("pk").key_type(KeyType::Hash).build().unwrap())
        .attribute_definitions(
            AttributeDefinition::builder().attribute_name("pk").attribute_type(ScalarAttributeType::S).build().unwrap(),
        )
        .billing_mode(BillingMode::PayPerRequest)
        .send()
        .await
        .unwrap();
    let queue = sqs
        .create_queue()
        .queue_name(format!("{table}.fifo"))
        .attributes(aws_sdk_sqs::types::QueueAttributeName::FifoQueue, "true")
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap();
    let body = "x".repeat(400);
    let one = |i: usize| {
        let (ddb, sqs, table, queue, body) = (&ddb, &sqs, &table, &queue, &body);
        async move {
            let id = format!("{i}-{}", uuid::Uuid::new_v4());
            ddb.put_item()
                .table_name(table)
                .item("pk", AttributeValue::S(format!("delivery#{id}")))
                .item("expires_at", AttributeValue::N("1".into()))
                .condition_expression("attribute_not_exists(pk)")
                .send()
                .await
                .unwrap();
            ddb.update_item()
                .table_name(table)
                .key("pk", AttributeValue::S("rate#x#1".into()))
                .update_expression("ADD hits :one SET expires_at = :exp")
                .condition_expression("attribute_not_exists(hits) OR hits < :limit")
                .expression_attribute_values(":one", AttributeValue::N("1".into()))
                .expression_attribute_values(":limit", AttributeValue::N("100000000".into()))
                .expression_attribute_values(":exp", AttributeValue::N("1".into()))
                .send()
                .await
                .unwrap();
            sqs.send_message()
                .queue_url(queue)
                .message_body(body.as_str())
                .message_group_id(format!("g{i}"))
                .message_deduplication_id(id)
                .send()
                .await
                .unwrap();
        }
    };
    for i in 0..20 {
        one(i).await;
    }
    let (c0, t0) = (cpu_seconds(), Instant::now());
    for i in 0..n {
        one(1000 + i).await;
    }
    let (cpu, wall) = (cpu_seconds() - c0, t0.elapsed());
    println!(
        "{{\"n\": {n}, \"sdk_cpu_ms_per_iteration\": {:.3}, \"sdk_wall_ms_per_iteration\": {:.3}}}",
        cpu * 1000.0 / n as f64,
        wall.as_secs_f64() * 1000.0 / n as f64
    );
}
