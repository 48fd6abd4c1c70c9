//! GitHub's published REST description (`@octokit/openapi`, `api.github.com.json`) as a test
//! oracle: a request's method and path must be an operation, its query parameters that
//! operation's, its body the operation's request schema; a stand-in's answer must match the
//! operation's response schema. Stand-ins build their answers from the description's own
//! examples ([`shaped`]), overriding what they control.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

use serde_json::{Value, json};

use crate::workspace_root;

/// One request a stand-in received and what it answered.
#[derive(Debug, Clone, PartialEq)]
pub struct Exchange {
    pub method: String,
    pub path: String,
    pub query: String,
    pub body: Value,
    pub status: u16,
    pub response: Value,
}

struct Description {
    doc: Value,
    /// (method, path template split by `/`)
    operations: Vec<(String, Vec<String>, String)>,
    validators: Mutex<HashMap<String, std::sync::Arc<jsonschema::Validator>>>,
}

fn description() -> &'static Description {
    static DESCRIPTION: OnceLock<Description> = OnceLock::new();
    DESCRIPTION.get_or_init(|| {
        let path = workspace_root().join("infra/npm/node_modules/@octokit/openapi/generated/api.github.com.json");
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{}: {e} (`infra/setup.sh` installs the npm packages)", path.display()));
        let doc: Value = serde_json::from_str(&text).unwrap();
        let mut operations = Vec::new();
        for (template, item) in doc["paths"].as_object().unwrap() {
            for method in ["get", "put", "post", "patch", "delete"] {
                if item.get(method).is_some() {
                    let segments = template.trim_start_matches('/').split('/').map(str::to_owned).collect();
                    operations.push((method.to_uppercase(), segments, template.clone()));
                }
            }
        }
        Description { doc, operations, validators: Mutex::default() }
    })
}

/// The path template of the operation `method path` is, if any. A literal segment beats a
/// parameter (`/issues/comments/{id}` over `/issues/{number}/...`).
pub fn operation(method: &str, path: &str) -> Option<String> {
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    description()
        .operations
        .iter()
        .filter(|(m, template, _)| {
            m == method
                && template.len() == segments.len()
                && template.iter().zip(&segments).all(|(t, s)| (t.starts_with('{') && !s.is_empty()) || t == s)
        })
        .max_by_key(|(_, template, _)| template.iter().filter(|t| !t.starts_with('{')).count())
        .map(|(_, _, template)| template.clone())
}

fn op<'a>(method: &str, template: &str) -> &'a Value {
    &description().doc["paths"][template][method.to_lowercase()]
}

/// Follows `#/components/...` references.
fn follow(value: &Value) -> &Value {
    let mut value = value;
    for _ in 0..8 {
        let Some(reference) = value.get("$ref").and_then(Value::as_str) else { break };
        value = description().doc.pointer(reference.trim_start_matches('#')).unwrap_or(&Value::Null);
    }
    value
}

/// `schema` with its references inlined (recursion cut at a depth: beyond it anything goes)
/// and OpenAPI 3.0's `nullable` turned into JSON Schema.
fn inline(schema: &Value, depth: usize) -> Value {
    match schema {
        Value::Object(map) => {
            if let Some(reference) = map.get("$ref").and_then(Value::as_str) {
                if depth > 24 {
                    return json!({});
                }
                let target =
                    description().doc.pointer(reference.trim_start_matches('#')).cloned().unwrap_or(Value::Null);
                return inline(&target, depth + 1);
            }
            let mut out = serde_json::Map::new();
            for (k, v) in map {
                if k == "nullable" || k == "example" || k == "examples" {
                    continue;
                }
                out.insert(k.clone(), inline(v, depth));
            }
            if map.get("nullable") == Some(&Value::Bool(true)) {
                return json!({"anyOf": [Value::Object(out), {"type": "null"}]});
            }
            Value::Object(out)
        }
        Value::Array(items) => Value::Array(items.iter().map(|v| inline(v, depth)).collect()),
        other => other.clone(),
    }
}

fn validate(key: String, schema: impl FnOnce() -> Value, instance: &Value) -> Result<(), String> {
    let validator = {
        let mut cache = description().validators.lock().unwrap();
        match cache.get(&key) {
            Some(v) => std::sync::Arc::clone(v),
            None => {
                let validator = jsonschema::options()
                    .with_draft(jsonschema::Draft::Draft7)
                    .should_validate_formats(true)
                    .build(&schema())
                    .map_err(|e| format!("{key}: the description's schema does not compile: {e}"))?;
                let validator = std::sync::Arc::new(validator);
                cache.insert(key.clone(), std::sync::Arc::clone(&validator));
                validator
            }
        }
    };
    let errors: Vec<String> =
        validator.iter_errors(instance).take(5).map(|e| format!("{} at {}", e, e.instance_path())).collect();
    if errors.is_empty() { Ok(()) } else { Err(errors.join("; ")) }
}

/// What GitHub would refuse in a request, or `Ok`.
pub fn check_request(method: &str, path: &str, query: &str, body: &Value) -> Result<(), String> {
    let template = operation(method, path).ok_or_else(|| format!("{method} {path}: no such operation"))?;
    let operation = op(method, &template);
    let parameters: Vec<&Value> = operation["parameters"].as_array().into_iter().flatten().map(follow).collect();
    for (name, _) in form_urlencoded_pairs(query) {
        let known = parameters.iter().any(|p| p["in"] == "query" && p["name"] == name.as_str());
        if !known {
            return Err(format!("{method} {template}: unknown query parameter {name:?}"));
        }
    }
    let request_body = follow(&operation["requestBody"]);
    match (&request_body["content"]["application/json"]["schema"], body) {
        (Value::Null, Value::Null) => Ok(()),
        (Value::Null, _) => Err(format!("{method} {template}: takes no body, got {body}")),
        (_, Value::Null) if request_body["required"] == true => Err(format!("{method} {template}: body required")),
        (_, Value::Null) => Ok(()),
        (schema, body) => validate(format!("{method} {template} request"), || inline(schema, 0), body)
            .map_err(|e| format!("{method} {template}: request body: {e}")),
    }
}

/// Whether GitHub could send `response` with `status` for this request, or why not.
pub fn check_response(method: &str, path: &str, status: u16, response: &Value) -> Result<(), String> {
    let template = operation(method, path).ok_or_else(|| format!("{method} {path}: no such operation"))?;
    let responses = &op(method, &template)["responses"];
    let declared = follow(&responses[status.to_string()]);
    let declared = if declared.is_null() && status >= 400 {
        // Any endpoint can answer an error GitHub's description leaves out (401, 403, 5xx):
        // it then has GitHub's error shape.
        follow(&json!({"$ref": "#/components/responses/not_found"})).clone()
    } else {
        declared.clone()
    };
    if declared.is_null() {
        return Err(format!("{method} {template}: GitHub never answers {status}"));
    }
    match &declared["content"]["application/json"]["schema"] {
        Value::Null if response.is_null() || response == &json!({}) => Ok(()),
        Value::Null => Err(format!("{method} {template} {status}: GitHub sends no JSON body here, got {response}")),
        schema => validate(format!("{method} {template} {status}"), || inline(schema, 0), response)
            .map_err(|e| format!("{method} {template} {status}: response: {e}")),
    }
}

fn form_urlencoded_pairs(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (k.to_owned(), v.to_owned())
        })
        .collect()
}

/// The description's example answer for `method path` with `status` (for a list, its first
/// item), with `overrides` merged in (objects deeply): what a stand-in answers.
pub fn shaped(method: &str, path: &str, status: u16, overrides: Value) -> Value {
    let template = operation(method, path).unwrap_or_else(|| panic!("{method} {path}: no such operation"));
    let content = &follow(&op(method, &template)["responses"][status.to_string()])["content"]["application/json"];
    let example = content["examples"]
        .as_object()
        .and_then(|examples| examples.values().next())
        .map(|e| follow(e)["value"].clone())
        .unwrap_or_else(|| panic!("{method} {template} {status}: the description has no example"));
    let mut base = match example {
        Value::Array(mut items) if !items.is_empty() => items.swap_remove(0),
        other => other,
    };
    merge(&mut base, overrides);
    base
}

fn merge(base: &mut Value, overrides: Value) {
    match (base, overrides) {
        (Value::Object(base), Value::Object(overrides)) => {
            for (k, v) in overrides {
                match base.get_mut(&k) {
                    Some(existing) if existing.is_object() && v.is_object() => merge(existing, v),
                    _ => {
                        base.insert(k, v);
                    }
                }
            }
        }
        (base, overrides) => *base = overrides,
    }
}

/// The operations (`METHOD /path/{template}`) the exchanges exercised.
pub fn operations(exchanges: &[Exchange]) -> std::collections::BTreeSet<String> {
    exchanges.iter().filter_map(|e| operation(&e.method, &e.path).map(|o| format!("{} {o}", e.method))).collect()
}

/// Panics unless the exchanges exercised every operation in `exercised` (so the check cannot
/// pass by seeing little) and GitHub would accept each request and could send each answer.
pub fn assert_contract(exchanges: &[Exchange], exercised: &[&str]) {
    let operations = operations(exchanges);
    for expected in exercised {
        assert!(operations.contains(*expected), "{expected} not exercised: {operations:#?}");
    }
    let problems = problems(exchanges);
    assert!(problems.is_empty(), "GitHub contract:\n{}", problems.join("\n"));
}

/// Every exchange checked; the problems found, one line each.
pub fn problems(exchanges: &[Exchange]) -> Vec<String> {
    let mut out = Vec::new();
    for e in exchanges {
        if let Err(problem) = check_request(&e.method, &e.path, &e.query, &e.body) {
            out.push(format!("request GitHub would refuse: {problem}"));
            continue;
        }
        if let Err(problem) = check_response(&e.method, &e.path, e.status, &e.response) {
            out.push(format!("answer GitHub would never send: {problem}"));
        }
    }
    out.sort();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_resolve_to_operations_literal_segments_first() {
        assert_eq!(
            operation("PATCH", "/repos/o/r/issues/comments/7").as_deref(),
            Some("/repos/{owner}/{repo}/issues/comments/{comment_id}")
        );
        assert_eq!(
            operation("GET", "/repos/o/r/issues/7/comments").as_deref(),
            Some("/repos/{owner}/{repo}/issues/{issue_number}/comments")
        );
        assert_eq!(operation("GET", "/repos/o/r/pulls/7/nope"), None);
    }

    #[test]
    fn requests_and_answers_are_held_to_the_description() {
        let deployment = json!({"ref": "abc", "environment": "preview", "auto_merge": false, "required_contexts": []});
        assert_eq!(check_request("POST", "/repos/o/r/deployments", "", &deployment), Ok(()));
        let wrong = json!({"ref": 7});
        assert!(check_request("POST", "/repos/o/r/deployments", "", &wrong).is_err());
        assert!(check_request("GET", "/repos/o/r/pulls/1/files", "per_page=100&colour=red", &Value::Null).is_err());
        let answer = shaped("POST", "/repos/o/r/deployments", 201, json!({"id": 7, "sha": "abc"}));
        assert_eq!(check_response("POST", "/repos/o/r/deployments", 201, &answer), Ok(()));
        assert!(check_response("POST", "/repos/o/r/deployments", 201, &json!({"id": 7})).is_err(), "fields missing");
    }
}
