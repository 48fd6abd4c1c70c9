//! The public Function URL is bounded: the webhook has reserved concurrency (a template
//! parameter), and its time budget (`budget.rs`) fits both the function's timeout in
//! `sam-template.yaml` and GitHub's 10 s deadline.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use previewd_testkit::workspace_root;
use previewd_webhook::budget::{self, Budget};
use serde_norway::Value;

fn template() -> Value {
    let text = std::fs::read_to_string(workspace_root().join("sam-template.yaml")).unwrap();
    serde_norway::from_str(&text).unwrap()
}

fn number(value: &Value) -> u64 {
    value.as_u64().unwrap_or_else(|| panic!("not a number: {value:?}"))
}

#[test]
fn the_webhook_has_reserved_concurrency_from_a_parameter() {
    let template = template();
    let properties = &template["Resources"]["WebhookFunction"]["Properties"];
    let Value::Tagged(reserved) = &properties["ReservedConcurrentExecutions"] else {
        panic!("WebhookFunction has no ReservedConcurrentExecutions: {properties:?}")
    };
    assert_eq!(
        (reserved.tag.to_string(), reserved.value.as_str()),
        ("!Ref".to_owned(), Some("WebhookReservedConcurrency"))
    );
    let parameter = &template["Parameters"]["WebhookReservedConcurrency"];
    let (default, min, max) =
        (number(&parameter["Default"]), number(&parameter["MinValue"]), number(&parameter["MaxValue"]));
    assert!(min >= 1 && (min..=max).contains(&default), "{parameter:?}");
    // AWS keeps 100 of an account's default 1,000 unreserved: the default must fit beside them.
    assert!(default <= 100, "a default of {default} takes a tenth of a default account");
}

#[test]
fn the_time_budget_fits_the_timeout_and_github_deadline() {
    let template = template();
    let timeout = Duration::from_secs(number(&template["Resources"]["WebhookFunction"]["Properties"]["Timeout"]));
    let budget = Budget::LAMBDA;
    assert_eq!(Budget::default(), budget, "the function runs with this budget");
    let worst = budget.worst_case();
    assert!(worst < timeout, "stages take up to {worst:?}; the function stops at {timeout:?}");
    let github = budget::GITHUB_DEADLINE;
    assert!(timeout < github, "GitHub gives up at {github:?}, before the function does");
    // Each AWS stage leaves the SDK room for a full attempt (connect 1 s, attempt 2 s).
    for stage in [budget.ledger, budget.enqueue] {
        assert!(stage >= Duration::from_secs(2), "{stage:?}");
    }
}
