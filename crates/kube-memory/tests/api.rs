//! The API through its HTTP face: what a client sees.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use kube_memory::{MemoryApi, Registry, ResourceType};
use serde_json::{Value, json};
use tower_service::Service;

fn api() -> MemoryApi {
    MemoryApi::new(Registry::core())
        .with_resource(ResourceType::new("example.com", "v1", "widgets", "Widget", false).with_status())
}

async fn send(api: &MemoryApi, method: &str, uri: &str, content_type: &str, body: Value) -> (u16, Value) {
    let bytes = if body.is_null() { Bytes::new() } else { Bytes::from(body.to_string()) };
    let request = http::Request::builder()
        .method(method)
        .uri(uri)
        .header("content-type", content_type)
        .body(Full::new(bytes))
        .unwrap();
    let response = api.service().call(request).await.unwrap();
    let status = response.status().as_u16();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

const JSON: &str = "application/json";
const MERGE: &str = "application/merge-patch+json";
const APPLY: &str = "application/apply-patch+yaml";

#[tokio::test]
async fn objects_have_versions_generations_and_status_apart() {
    let api = api();
    let (code, created) = send(
        &api,
        "POST",
        "/apis/example.com/v1/widgets",
        JSON,
        json!({"metadata": {"name": "w"}, "spec": {"size": 1}, "status": {"ignored": true}}),
    )
    .await;
    assert_eq!(code, 201);
    assert_eq!(created["metadata"]["generation"], 1);
    assert!(created.get("status").is_none(), "status is written through its subresource only");
    let rv = created["metadata"]["resourceVersion"].clone();
    // A no-op patch changes nothing, not even the version.
    let (_, same) = send(&api, "PATCH", "/apis/example.com/v1/widgets/w", MERGE, json!({"spec": {"size": 1}})).await;
    assert_eq!(same["metadata"]["resourceVersion"], rv);
    let (_, bigger) = send(&api, "PATCH", "/apis/example.com/v1/widgets/w", MERGE, json!({"spec": {"size": 2}})).await;
    assert_eq!(bigger["metadata"]["generation"], 2);
    let (_, with_status) =
        send(&api, "PATCH", "/apis/example.com/v1/widgets/w/status", MERGE, json!({"status": {"ok": true}})).await;
    assert_eq!(
        (with_status["status"]["ok"].clone(), with_status["metadata"]["generation"].clone()),
        (json!(true), json!(2))
    );
    // Optimistic concurrency.
    let (code, _) = send(
        &api,
        "PATCH",
        "/apis/example.com/v1/widgets/w",
        MERGE,
        json!({"metadata": {"resourceVersion": rv}, "spec": {"size": 3}}),
    )
    .await;
    assert_eq!(code, 409);
    let (code, _) = send(&api, "GET", "/apis/example.com/v1/widgets/nope", JSON, Value::Null).await;
    assert_eq!(code, 404);
}

#[tokio::test]
async fn server_side_apply_removes_what_a_manager_stops_applying() {
    let api = api();
    let uri = "/api/v1/namespaces/a/configmaps/c?fieldManager=me&force=true";
    let (code, _) =
        send(&api, "PATCH", uri, APPLY, json!({"metadata": {"name": "c"}, "data": {"x": "1", "y": "2"}})).await;
    assert_eq!(code, 200);
    let (_, other) = send(
        &api,
        "PATCH",
        "/api/v1/namespaces/a/configmaps/c",
        MERGE,
        json!({"metadata": {"labels": {"theirs": "1"}}}),
    )
    .await;
    assert_eq!(other["data"], json!({"x": "1", "y": "2"}));
    let (_, after) = send(&api, "PATCH", uri, APPLY, json!({"metadata": {"name": "c"}, "data": {"x": "1"}})).await;
    assert_eq!(after["data"], json!({"x": "1"}));
    assert_eq!(after["metadata"]["labels"], json!({"theirs": "1"}), "another writer's field stays");
}

#[tokio::test]
async fn finalizers_hold_deletion_and_owners_take_their_dependents() {
    let api = api();
    let (_, owner) = send(
        &api,
        "POST",
        "/apis/example.com/v1/widgets",
        JSON,
        json!({"metadata": {"name": "owner", "finalizers": ["example.com/cleanup"]}}),
    )
    .await;
    let uid = owner["metadata"]["uid"].clone();
    send(&api, "POST", "/api/v1/namespaces", JSON,
        json!({"metadata": {"name": "ns", "ownerReferences": [{"apiVersion": "example.com/v1", "kind": "Widget", "name": "owner", "uid": uid}]}})).await;
    send(&api, "POST", "/api/v1/namespaces/ns/configmaps", JSON, json!({"metadata": {"name": "c"}})).await;
    let (code, deleting) = send(&api, "DELETE", "/apis/example.com/v1/widgets/owner", JSON, Value::Null).await;
    assert_eq!(code, 200);
    assert!(deleting["metadata"]["deletionTimestamp"].is_string(), "held by its finalizer");
    assert!(api.object("", "namespaces", None, "ns").is_some());
    // The finalizer goes with a JSON patch (as kube's finalizer helper sends it).
    let (code, _) = send(
        &api,
        "PATCH",
        "/apis/example.com/v1/widgets/owner",
        "application/json-patch+json",
        json!([{"op": "test", "path": "/metadata/finalizers/0", "value": "example.com/cleanup"},
               {"op": "remove", "path": "/metadata/finalizers/0"}]),
    )
    .await;
    assert_eq!(code, 200);
    assert!(api.object("example.com", "widgets", None, "owner").is_none());
    assert!(api.object("", "namespaces", None, "ns").is_none(), "garbage-collected with its owner");
    assert!(api.object("", "configmaps", Some("ns"), "c").is_none(), "and the namespace's content with it");
}

#[tokio::test]
async fn a_terminating_namespace_takes_no_new_content() {
    let api = api();
    send(&api, "POST", "/api/v1/namespaces", JSON, json!({"metadata": {"name": "ns"}})).await;
    send(
        &api,
        "POST",
        "/api/v1/namespaces/ns/configmaps",
        JSON,
        json!({"metadata": {"name": "held", "finalizers": ["x"]}}),
    )
    .await;
    send(&api, "DELETE", "/api/v1/namespaces/ns", JSON, Value::Null).await;
    assert_eq!(api.object("", "namespaces", None, "ns").unwrap()["status"]["phase"], "Terminating");
    let (code, _) =
        send(&api, "POST", "/api/v1/namespaces/ns/configmaps", JSON, json!({"metadata": {"name": "new"}})).await;
    assert_eq!(code, 403);
    send(&api, "PATCH", "/api/v1/namespaces/ns/configmaps/held", MERGE, json!({"metadata": {"finalizers": null}}))
        .await;
    assert!(api.object("", "namespaces", None, "ns").is_none(), "gone once empty");
}

#[tokio::test]
async fn lists_and_watches_select_and_stream_changes() {
    let api = api();
    for (name, app) in [("a", "web"), ("b", "api")] {
        send(
            &api,
            "POST",
            "/api/v1/namespaces/x/configmaps",
            JSON,
            json!({"metadata": {"name": name, "labels": {"app": app}}}),
        )
        .await;
    }
    let (_, list) =
        send(&api, "GET", "/api/v1/namespaces/x/configmaps?labelSelector=app%3Dweb", JSON, Value::Null).await;
    assert_eq!(list["items"].as_array().unwrap().len(), 1);
    let rv = list["metadata"]["resourceVersion"].as_str().unwrap().to_owned();
    let request =
        http::Request::get(format!("/api/v1/configmaps?watch=true&resourceVersion={rv}&labelSelector=app%3Dweb"))
            .body(Full::new(Bytes::new()))
            .unwrap();
    let mut body = api.service().call(request).await.unwrap().into_body();
    send(&api, "PATCH", "/api/v1/namespaces/x/configmaps/b", MERGE, json!({"data": {"ignored": "1"}})).await;
    send(&api, "PATCH", "/api/v1/namespaces/x/configmaps/a", MERGE, json!({"data": {"seen": "1"}})).await;
    send(&api, "DELETE", "/api/v1/namespaces/x/configmaps/a", JSON, Value::Null).await;
    let mut events = Vec::new();
    while events.len() < 2 {
        let frame = body.frame().await.unwrap().unwrap();
        let line: Value = serde_json::from_slice(frame.data_ref().unwrap()).unwrap();
        events.push((
            line["type"].as_str().unwrap().to_owned(),
            line["object"]["metadata"]["name"].as_str().unwrap().to_owned(),
        ));
    }
    assert_eq!(events, [("MODIFIED".to_owned(), "a".to_owned()), ("DELETED".to_owned(), "a".to_owned())]);
    assert_eq!(api.requests().iter().filter(|r| r.verb == "watch").count(), 1);
}

#[tokio::test]
async fn chosen_requests_fail_on_demand() {
    let api = api();
    api.fail(|r| r.verb == "create", 500, 1);
    let (code, status) = send(&api, "POST", "/api/v1/namespaces", JSON, json!({"metadata": {"name": "n"}})).await;
    assert_eq!((code, status["reason"].as_str()), (500, Some("InternalError")));
    let (code, _) = send(&api, "POST", "/api/v1/namespaces", JSON, json!({"metadata": {"name": "n"}})).await;
    assert_eq!(code, 201, "only the next one");
}
