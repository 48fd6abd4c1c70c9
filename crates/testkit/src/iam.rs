//! The IAM contract check: the AWS requests a principal's code makes (recorded by
//! [`crate::fault::FaultProxy`]) are turned into the authorizations IAM would make for them,
//! and evaluated against the policies `sam-template.yaml` gives that principal, with
//! `@cloud-copilot/iam-simulate` (IAM's evaluation logic, incl. condition operators such as
//! `ForAllValues:StringLike` on `dynamodb:LeadingKeys`). The emulator enforces no IAM, so
//! this is what stands between a test suite that passes and a deployment that is AccessDenied.

use std::io::Write;
use std::process::{Command, Stdio};

use serde::Serialize;
use serde_json::{Value, json};

use crate::workspace_root;

/// The account, region and stack name the template is resolved for.
pub const ACCOUNT: &str = "123456789012";
pub const REGION: &str = "us-east-1";
pub const STACK: &str = "previewd";

/// One request as the proxy saw it: `X-Amz-Target` and the JSON body.
#[derive(Debug, Clone, PartialEq)]
pub struct AwsCall {
    pub target: String,
    pub body: Value,
}

/// One authorization IAM makes for a request (a transaction or batch makes one per item).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Authorization {
    pub action: String,
    pub resource: String,
    /// `dynamodb:LeadingKeys`: the partition keys the request touches.
    pub leading_keys: Vec<String>,
    /// `dynamodb:EnclosingOperation` for items of a transaction.
    pub enclosing_operation: Option<String>,
}

/// The test's resources (named uniquely per test) and the template resources they stand for.
#[derive(Debug, Clone, Default)]
pub struct Names {
    /// (table name, template ARN)
    pub tables: Vec<(String, String)>,
    /// (queue URL, template ARN)
    pub queues: Vec<(String, String)>,
    /// (secret id as the code sends it, template ARN)
    pub secrets: Vec<(String, String)>,
    /// The tables' partition key attribute.
    pub partition_key: String,
}

impl Names {
    fn lookup(pairs: &[(String, String)], actual: &str, kind: &str) -> Result<String, String> {
        pairs.iter().find(|(a, _)| a == actual).map(|(_, arn)| arn.clone()).ok_or_else(|| {
            format!("{kind} {actual:?} is none of the template's resources (the test must map it in `Names`)")
        })
    }
}

fn field<'a>(body: &'a Value, name: &str, target: &str) -> Result<&'a str, String> {
    body[name].as_str().ok_or_else(|| format!("{target}: no {name} in the request"))
}

fn key_of(item: &Value, partition_key: &str, target: &str) -> Result<String, String> {
    item[partition_key]["S"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| format!("{target}: no string partition key {partition_key:?}"))
}

/// The authorizations IAM makes for `call` (pure). An operation this does not know is an
/// error: the check must not pass by not looking.
pub fn authorizations(call: &AwsCall, names: &Names) -> Result<Vec<Authorization>, String> {
    let target = call.target.as_str();
    let body = &call.body;
    let (service, operation) = target.split_once('.').ok_or_else(|| format!("not an AWS JSON target: {target:?}"))?;
    let pk = names.partition_key.as_str();
    let table = |name: &str| Names::lookup(&names.tables, name, "table");
    let item =
        |action: &str, table_name: &str, key: String, enclosing: Option<&str>| -> Result<Authorization, String> {
            Ok(Authorization {
                action: format!("dynamodb:{action}"),
                resource: table(table_name)?,
                leading_keys: vec![key],
                enclosing_operation: enclosing.map(str::to_owned),
            })
        };
    match (service, operation) {
        ("DynamoDB_20120810", "PutItem") => {
            Ok(vec![item("PutItem", field(body, "TableName", target)?, key_of(&body["Item"], pk, target)?, None)?])
        }
        ("DynamoDB_20120810", op @ ("UpdateItem" | "DeleteItem" | "GetItem")) => {
            Ok(vec![item(op, field(body, "TableName", target)?, key_of(&body["Key"], pk, target)?, None)?])
        }
        ("DynamoDB_20120810", "TransactWriteItems") => {
            let items = body["TransactItems"].as_array().ok_or_else(|| format!("{target}: no TransactItems"))?;
            items
                .iter()
                .map(|entry| {
                    let (kind, op) = entry
                        .as_object()
                        .and_then(|o| o.iter().next())
                        .ok_or_else(|| format!("{target}: an empty transaction item"))?;
                    let (action, key) = match kind.as_str() {
                        "Put" => ("PutItem", key_of(&op["Item"], pk, target)?),
                        "Update" => ("UpdateItem", key_of(&op["Key"], pk, target)?),
                        "Delete" => ("DeleteItem", key_of(&op["Key"], pk, target)?),
                        "ConditionCheck" => ("ConditionCheckItem", key_of(&op["Key"], pk, target)?),
                        other => return Err(format!("{target}: unknown transaction item {other}")),
                    };
                    item(action, field(op, "TableName", target)?, key, Some("TransactWriteItems"))
                })
                .collect()
        }
        ("DynamoDB_20120810", "BatchWriteItem") => {
            let tables = body["RequestItems"].as_object().ok_or_else(|| format!("{target}: no RequestItems"))?;
            let mut out = Vec::new();
            for (table_name, requests) in tables {
                for request in requests.as_array().into_iter().flatten() {
                    if let Some(put) = request.get("PutRequest") {
                        out.push(item("PutItem", table_name, key_of(&put["Item"], pk, target)?, None)?);
                    } else if let Some(delete) = request.get("DeleteRequest") {
                        out.push(item("DeleteItem", table_name, key_of(&delete["Key"], pk, target)?, None)?);
                    } else {
                        return Err(format!("{target}: unknown batch request"));
                    }
                }
            }
            Ok(out)
        }
        ("AmazonSQS", op) => {
            let action = match op {
                "SendMessage" | "SendMessageBatch" => "SendMessage",
                "ReceiveMessage" => "ReceiveMessage",
                "DeleteMessage" | "DeleteMessageBatch" => "DeleteMessage",
                "ChangeMessageVisibility" | "ChangeMessageVisibilityBatch" => "ChangeMessageVisibility",
                "GetQueueAttributes" => "GetQueueAttributes",
                other => return Err(format!("{target}: SQS operation {other} is not mapped")),
            };
            let queue = Names::lookup(&names.queues, field(body, "QueueUrl", target)?, "queue")?;
            Ok(vec![Authorization {
                action: format!("sqs:{action}"),
                resource: queue,
                leading_keys: Vec::new(),
                enclosing_operation: None,
            }])
        }
        ("secretsmanager", "GetSecretValue") => {
            let secret = Names::lookup(&names.secrets, field(body, "SecretId", target)?, "secret")?;
            Ok(vec![Authorization {
                action: "secretsmanager:GetSecretValue".into(),
                resource: secret,
                leading_keys: Vec::new(),
                enclosing_operation: None,
            }])
        }
        _ => Err(format!("{target}: not mapped to IAM actions")),
    }
}

/// The template, parsed (CloudFormation's short-form intrinsics kept as YAML tags).
pub fn template() -> serde_norway::Value {
    let text = std::fs::read_to_string(workspace_root().join("sam-template.yaml")).unwrap();
    serde_norway::from_str(&text).unwrap()
}

/// The ARN the template gives its resource `logical` (`!GetAtt X.Arn`, `!Ref` of a secret).
pub fn arn_of(template: &serde_norway::Value, logical: &str) -> Result<String, String> {
    let resource = &template["Resources"][logical];
    let props = &resource["Properties"];
    let name = |field: &str| resolve(template, &props[field]).map(|v| v.as_str().unwrap_or_default().to_owned());
    match resource["Type"].as_str() {
        Some("AWS::SQS::Queue") => Ok(format!("arn:aws:sqs:{REGION}:{ACCOUNT}:{}", name("QueueName")?)),
        Some("AWS::DynamoDB::Table") => Ok(format!("arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{}", name("TableName")?)),
        // Secrets Manager appends six random characters to a secret's name in its ARN.
        Some("AWS::SecretsManager::Secret") => {
            Ok(format!("arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:{}-AbCdEf", name("Name")?))
        }
        other => Err(format!("no ARN for {logical} ({other:?})")),
    }
}

/// `value` with CloudFormation's intrinsics (`!Ref`, `!GetAtt`, `!Sub`) resolved, as JSON.
pub fn resolve(template: &serde_norway::Value, value: &serde_norway::Value) -> Result<Value, String> {
    use serde_norway::Value as Y;
    Ok(match value {
        Y::Null => Value::Null,
        Y::Bool(b) => json!(b),
        Y::Number(n) => serde_json::to_value(n).map_err(|e| e.to_string())?,
        Y::String(s) => json!(s),
        Y::Sequence(items) => Value::Array(items.iter().map(|v| resolve(template, v)).collect::<Result<_, _>>()?),
        Y::Mapping(map) => {
            let mut out = serde_json::Map::new();
            for (k, v) in map {
                out.insert(k.as_str().unwrap_or_default().to_owned(), resolve(template, v)?);
            }
            Value::Object(out)
        }
        Y::Tagged(tagged) => {
            let arg = tagged.value.as_str().unwrap_or_default();
            match tagged.tag.to_string().as_str() {
                "!GetAtt" => json!(arn_of(template, arg.trim_end_matches(".Arn"))?),
                "!Ref" => json!(arn_of(template, arg)?),
                "!Sub" => {
                    let mut text = arg.replace("${AWS::StackName}", STACK);
                    text = text.replace("${AWS::Region}", REGION).replace("${AWS::AccountId}", ACCOUNT);
                    json!(text)
                }
                other => return Err(format!("intrinsic {other} is not resolved by the check")),
            }
        }
    })
}

/// The policy documents the template gives `principal` (a function's inline `Policies`, or a
/// managed policy's document).
pub fn policies_of(template: &serde_norway::Value, principal: &str) -> Result<Vec<Value>, String> {
    let props = &template["Resources"][principal]["Properties"];
    if let Some(document) = props.get("PolicyDocument") {
        return Ok(vec![resolve(template, document)?]);
    }
    let policies = props["Policies"].as_sequence().ok_or_else(|| format!("{principal} has no Policies"))?;
    policies
        .iter()
        .map(|policy| {
            let statement = policy.get("Statement").ok_or_else(|| {
                format!("{principal}: only inline statements are checked, not {policy:?} (a SAM policy template?)")
            })?;
            Ok(json!({"Version": "2012-10-17", "Statement": resolve(template, statement)?}))
        })
        .collect()
}

/// iam-simulate's answer for one authorization.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Verdict {
    /// `Allowed`, `ImplicitlyDenied`, `ExplicitlyDenied` or `Error`.
    pub decision: String,
    /// The statements (Sid) that allowed it.
    pub allowed_by: Vec<String>,
    pub errors: Option<Value>,
}

/// Evaluates `requests` against `policies` for a principal, with iam-simulate (node).
pub fn evaluate(policies: &[Value], requests: &[Authorization]) -> Vec<Verdict> {
    let script = workspace_root().join("infra/npm/iam-simulate.mjs");
    let module = workspace_root().join("infra/npm/node_modules/@cloud-copilot/iam-simulate");
    assert!(module.exists(), "{} is missing: `infra/setup.sh` installs the test-only npm packages", module.display());
    let input = json!({
        "principal": format!("arn:aws:iam::{ACCOUNT}:role/{STACK}-principal"),
        "account": ACCOUNT,
        "policies": policies.iter().enumerate().map(|(i, p)| json!({"name": format!("policy{i}"), "policy": p})).collect::<Vec<_>>(),
        "requests": requests.iter().map(|r| {
            let mut context = serde_json::Map::new();
            if !r.leading_keys.is_empty() {
                context.insert("dynamodb:LeadingKeys".into(), json!(r.leading_keys));
            }
            if let Some(op) = &r.enclosing_operation {
                context.insert("dynamodb:EnclosingOperation".into(), json!([op]));
            }
            json!({"action": r.action, "resource": r.resource, "context": context})
        }).collect::<Vec<_>>(),
    });
    let mut child = Command::new("node")
        .arg(&script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("node: {e} (needed for the IAM contract check)"));
    child.stdin.take().unwrap().write_all(input.to_string().as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "iam-simulate failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The statements of `policies` that name `action` (for saying what a denial lacks).
fn statements_naming(policies: &[Value], action: &str) -> Vec<String> {
    let mut out = Vec::new();
    for policy in policies {
        for statement in policy["Statement"].as_array().into_iter().flatten() {
            let actions: Vec<&str> = match &statement["Action"] {
                Value::String(a) => vec![a.as_str()],
                Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
                _ => Vec::new(),
            };
            if actions
                .iter()
                .any(|a| *a == action || *a == "*" || a.strip_suffix('*').is_some_and(|p| action.starts_with(p)))
            {
                out.push(statement["Sid"].as_str().unwrap_or("(no Sid)").to_owned());
            }
        }
    }
    out
}

/// Every call of `principal` (a template logical id) checked: the denials, each saying which
/// request and what its policies lack. Empty when every call is allowed.
pub fn denials(principal: &str, calls: &[AwsCall], names: &Names) -> Vec<String> {
    let template = template();
    let policies = match policies_of(&template, principal) {
        Ok(p) => p,
        Err(e) => return vec![e],
    };
    let mut problems = Vec::new();
    let mut requests: Vec<Authorization> = Vec::new();
    for call in calls {
        match authorizations(call, names) {
            Ok(r) => requests.extend(r),
            Err(e) => problems.push(format!("{principal}: {e}")),
        }
    }
    requests.sort_by(|a, b| (&a.action, &a.resource, &a.leading_keys).cmp(&(&b.action, &b.resource, &b.leading_keys)));
    requests.dedup();
    for (request, verdict) in requests.iter().zip(evaluate(&policies, &requests)) {
        if verdict.decision == "Allowed" {
            continue;
        }
        let naming = statements_naming(&policies, &request.action);
        let lacking = if naming.is_empty() {
            format!("no statement of {principal} allows {}", request.action)
        } else {
            format!(
                "statement(s) {} allow {} but not on this resource and these keys",
                naming.join(", "),
                request.action
            )
        };
        problems.push(format!(
            "{principal}: {} on {} (leading keys {:?}) is {}: {lacking}{}",
            request.action,
            request.resource,
            request.leading_keys,
            verdict.decision,
            verdict.errors.map(|e| format!(" ({e})")).unwrap_or_default(),
        ));
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names() -> Names {
        Names {
            tables: vec![("t1".into(), "arn:aws:dynamodb:us-east-1:123456789012:table/previewd-webhook".into())],
            queues: vec![("http://q/1".into(), "arn:aws:sqs:us-east-1:123456789012:previewd-events.fifo".into())],
            secrets: vec![],
            partition_key: "pk".into(),
        }
    }

    #[test]
    fn a_transaction_is_one_authorization_per_item() {
        let call = AwsCall {
            target: "DynamoDB_20120810.TransactWriteItems".into(),
            body: json!({"TransactItems": [
                {"Put": {"TableName": "t1", "Item": {"pk": {"S": "delivery#a"}}}},
                {"ConditionCheck": {"TableName": "t1", "Key": {"pk": {"S": "pr#o/r#1"}}}},
            ]}),
        };
        let auth = authorizations(&call, &names()).unwrap();
        let actions: Vec<(&str, &str)> = auth.iter().map(|a| (a.action.as_str(), a.leading_keys[0].as_str())).collect();
        assert_eq!(actions, [("dynamodb:PutItem", "delivery#a"), ("dynamodb:ConditionCheckItem", "pr#o/r#1")]);
        assert!(auth.iter().all(|a| a.enclosing_operation.as_deref() == Some("TransactWriteItems")));
    }

    #[test]
    fn batches_map_to_their_single_actions_and_unknown_resources_are_errors() {
        let call = AwsCall {
            target: "AmazonSQS.DeleteMessageBatch".into(),
            body: json!({"QueueUrl": "http://q/1", "Entries": []}),
        };
        assert_eq!(authorizations(&call, &names()).unwrap()[0].action, "sqs:DeleteMessage");
        let elsewhere = AwsCall { target: "AmazonSQS.SendMessage".into(), body: json!({"QueueUrl": "http://other"}) };
        assert!(authorizations(&elsewhere, &names()).is_err());
        let unknown = AwsCall { target: "DynamoDB_20120810.Scan".into(), body: json!({"TableName": "t1"}) };
        assert!(authorizations(&unknown, &names()).is_err(), "an unmapped operation is never passed");
    }
}
