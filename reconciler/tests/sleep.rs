//! Sleeping previews (`ttl.sleepAfter`): the controller scales an idle preview's services to
//! zero through its Helm values and sends its visitors to Previewd's sleep page; the page's
//! signed link (served by `previewd::wake::router`) wakes it, and so does a push.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::sync::Arc;

use axum::body::Body;
use chrono::{DateTime, Duration, Utc};
use http::{Request, StatusCode};
use k8s_openapi::api::networking::v1::Ingress;
use kube::Client;
use kube::api::{Api, Patch, PatchParams, PostParams};
use previewd::argo::ApplicationSet;
use previewd::config::Config;
use previewd::controller::{Context, reconcile_at};
use previewd::crd::{FINALIZER, PreviewEnvironment};
use previewd::policy::{Decision, decide_offline};
use tower::ServiceExt;

const NAME: &str = "preview-shop-pr-42";
const KEY: &[u8] = b"a-test-key-of-32-bytes-for-links";

fn config() -> Config {
    let mut value = support::chart::example_config();
    value["ttl"]["sleepAfter"] = serde_json::json!("1h");
    value["ttl"]["wakeUrl"] = serde_json::json!("https://previewd.preview.example.com");
    Config::from_yaml(&serde_norway::to_string(&value).unwrap()).unwrap()
}

async fn preview(client: &Client) -> PreviewEnvironment {
    Api::<PreviewEnvironment>::all(client.clone()).get(NAME).await.unwrap()
}

/// Each service's `replicaCount` in the ApplicationSet's elements.
async fn replicas(client: &Client) -> Vec<i64> {
    let set = Api::<ApplicationSet>::namespaced(client.clone(), "argocd").get(NAME).await.unwrap();
    let spec = serde_json::to_value(&set.spec).unwrap();
    spec["generators"][0]["list"]["elements"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["values"]["replicaCount"].as_i64().unwrap())
        .collect()
}

async fn ingress_annotations(client: &Client) -> std::collections::BTreeMap<String, String> {
    Api::<Ingress>::namespaced(client.clone(), NAME).get("preview").await.unwrap().metadata.annotations.unwrap()
}

fn condition(pe: &PreviewEnvironment, kind: &str) -> (String, String) {
    let c = pe.status.as_ref().unwrap().conditions.iter().find(|c| c.type_ == kind).unwrap();
    (c.status.clone(), c.reason.clone())
}

async fn call(router: &axum::Router, method: &str, uri: &str) -> (StatusCode, String) {
    let request = Request::builder().method(method).uri(uri).body(Body::empty()).unwrap();
    let response = router.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let body = axum::body::to_bytes(response.into_body(), 1 << 20).await.unwrap();
    (status, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test]
async fn an_idle_preview_sleeps_and_wakes() {
    let api = support::memory_api();
    let client = support::client_of(&api);
    let config = config();
    let now = Utc::now();
    // The PR was last active two hours ago: past `sleepAfter` (1h), within `idle` (4h).
    let active: DateTime<Utc> = now - Duration::hours(2);
    let mut event = support::event("opened.json");
    event.pull_request.updated_at = active;
    let Decision::Upsert(spec) = decide_offline(&event, &config) else { panic!("expected an upsert") };
    let mut pe = previewd::render::as_applied(&config, *spec).unwrap();
    pe.status = None;
    pe.metadata.finalizers = Some(vec![FINALIZER.to_owned()]);
    Api::<PreviewEnvironment>::all(client.clone()).create(&PostParams::default(), &pe).await.unwrap();
    let ctx = Context::new(client.clone(), Arc::new(config.clone())).with_wake_key(KEY.to_vec());
    let pass = |at: DateTime<Utc>| {
        let (ctx, client) = (&ctx, client.clone());
        async move { reconcile_at(&preview(&client).await, ctx, at).await.unwrap() }
    };

    // Asleep: zero replicas, visitors sent to the signed page, no compute in the cost.
    pass(now).await;
    assert_eq!(replicas(&client).await, [0, 0, 0]);
    let page = previewd::sleep::page_url(&config, KEY, NAME).unwrap();
    assert!(page.starts_with("https://previewd.preview.example.com/asleep/preview-shop-pr-42?sig="), "{page}");
    let annotations = ingress_annotations(&client).await;
    assert_eq!(annotations.get("nginx.ingress.kubernetes.io/temporal-redirect"), Some(&page));
    let asleep = preview(&client).await;
    assert_eq!(condition(&asleep, "Asleep"), ("True".into(), "Idle".into()));
    let status = asleep.status.clone().unwrap();
    assert_eq!(status.asleep_since, Some(active + Duration::hours(1)));
    let cost = status.cost_estimate.unwrap();
    assert_eq!(cost.cpu, "0", "no compute while asleep: {cost:?}");
    let awake_cost =
        previewd::cost::for_services(&config, config.repositories[0].services.iter(), None, false, now, now);
    assert!(cost.hourly_usd < awake_cost.hourly_usd, "{} vs {}", cost.hourly_usd, awake_cost.hourly_usd);

    // The PR comment says so.
    let update = previewd::github::view::live(&config, &asleep, asleep.status.as_ref().unwrap());
    let body = update.comment.unwrap().body;
    assert!(body.contains("😴 Asleep since") && body.contains("`/preview wake`"), "{body}");

    // The page: only with this preview's signature.
    let router = previewd::wake::router(client.clone(), KEY.to_vec());
    let sig = page.rsplit_once("sig=").unwrap().1.to_owned();
    assert_eq!(call(&router, "GET", &format!("/asleep/{NAME}?sig=00")).await.0, StatusCode::FORBIDDEN);
    assert_eq!(call(&router, "GET", &format!("/asleep/preview-shop-pr-43?sig={sig}")).await.0, StatusCode::FORBIDDEN);
    assert_eq!(call(&router, "POST", &format!("/wake/{NAME}?sig=00")).await.0, StatusCode::FORBIDDEN);
    let (status, body) = call(&router, "GET", &format!("/asleep/{NAME}?sig={sig}")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        body.contains("This preview is asleep") && body.contains(&format!("action=\"/wake/{NAME}?sig={sig}\"")),
        "{body}"
    );
    assert!(preview(&client).await.spec.requested.and_then(|r| r.woken_at).is_none(), "reading the page wakes nothing");

    // Its link wakes it: the replicas come back, the redirect goes.
    let (status, body) = call(&router, "POST", &format!("/wake/{NAME}?sig={sig}")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body.contains("https://shop-pr-42.preview.example.com"), "{body}");
    let woken = preview(&client).await.spec.requested.and_then(|r| r.woken_at).unwrap();
    pass(now).await;
    assert_eq!(replicas(&client).await, [1, 1, 1]);
    let annotations = ingress_annotations(&client).await;
    assert!(!annotations.contains_key("nginx.ingress.kubernetes.io/temporal-redirect"), "{annotations:?}");
    assert_eq!(annotations.get("preview.previewd.io/asleep").map(String::as_str), Some("false"));
    let awake = preview(&client).await;
    assert_eq!(condition(&awake, "Asleep"), ("False".into(), "Active".into()));
    assert_eq!(awake.status.as_ref().unwrap().asleep_since, None);
    // Waking counts as activity: it sleeps again an hour after the wake, and expires 4h after.
    assert_eq!(previewd::sleep::falls_asleep_at(&config, &awake.spec), Some(woken + Duration::hours(1)));
    assert_eq!(awake.status.as_ref().unwrap().expires_at, Some(woken + Duration::hours(4)));

    // Idle again, an hour later: asleep. Then a push (new activity): awake.
    let later = woken + Duration::minutes(90);
    pass(later).await;
    assert_eq!(replicas(&client).await, [0, 0, 0]);
    let mut pushed = preview(&client).await;
    pushed.spec.last_activity = later;
    pushed.spec.head_sha = "2222222222222222222222222222222222222222".into();
    pushed.metadata.managed_fields = None;
    Api::<PreviewEnvironment>::all(client.clone())
        .patch(NAME, &PatchParams::apply("previewd-consumer").force(), &Patch::Apply(&pushed))
        .await
        .unwrap();
    pass(later).await;
    assert_eq!(replicas(&client).await, [1, 1, 1]);
    assert_eq!(condition(&preview(&client).await, "Asleep").0, "False");
}
