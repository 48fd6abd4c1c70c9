//! Secrets for previews, end to end with a canary: a PR event through the real webhook front
//! onto the queue, the consumer (with the GitHub and OpenAI stand-ins), the controller copying
//! Secrets into the preview and rendering ExternalSecrets, all in an in-memory Kubernetes API.
//! The canary values must reach the preview's Secrets and nothing else: not the queue message,
//! the PreviewEnvironment, the PR comment or any GitHub request, the AI prompt, or a log line.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::io::Write;
use std::sync::{Arc, Mutex};

use chrono::Utc;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::api::{Api, DynamicObject, PostParams};
use kube::discovery::ApiResource;
use previewd::ai::engine::AiEngine;
use previewd::config::{Config, ExternalSecretsConfig, SecretRef, SecretsConfig};
use previewd::consumer::{Consumer, Outcome};
use previewd::controller::{Context, reconcile_named};
use previewd::crd::PreviewEnvironment;
use previewd::github::notify::Notifier;
use previewd_events::Message;
use previewd_testkit::Stack;
use previewd_webhook::signature::sign;
use previewd_webhook::{Delivery, Outcome as Answer};
use serde_json::json;
use support::github::FakeGitHub;
use support::openai::FakeOpenAi;

const CANARY_DB: &str = "canary-db-7f3a9c41e2";
const CANARY_SESSION: &str = "canary-session-0be5d6";
const NAME: &str = "preview-shop-pr-42";
const SECRET: &str = "front-secret";

/// Every log line of the test, at every level.
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn reference(name: &str, from: Option<&str>, remote_key: Option<&str>) -> SecretRef {
    SecretRef { name: name.into(), from: from.map(str::to_owned), remote_key: remote_key.map(str::to_owned) }
}

fn config(ai_url: &str) -> Config {
    let mut config = support::config();
    config.secrets = SecretsConfig {
        source_namespaces: vec!["preview-secrets".into()],
        external_secrets: Some(ExternalSecretsConfig {
            store_kind: "ClusterSecretStore".into(),
            store_name: "vault".into(),
            refresh_interval: "1h".into(),
        }),
    };
    config.repositories[0].secrets = vec![
        reference("shop-test-db", Some("preview-secrets"), None),
        reference("stripe-test", None, Some("previews/shop/stripe")),
    ];
    config.repositories[0].services[0].secrets = vec![reference("web-session", Some("preview-secrets"), None)];
    // A service the PR does not deploy: its secret is not copied.
    config.repositories[0].services[1].secrets = vec![reference("api-admin", Some("preview-secrets"), None)];
    config.ai.enabled = true;
    config.ai.base_url = ai_url.to_owned();
    config.ai.model = "test-model".into();
    config
}

async fn source_secret(kube: &kube::Client, name: &str, key: &str, value: &str) {
    let secret = Secret {
        metadata: kube::api::ObjectMeta { name: Some(name.into()), ..Default::default() },
        data: Some([(key.to_owned(), ByteString(value.as_bytes().to_vec()))].into()),
        type_: Some("Opaque".into()),
        ..Default::default()
    };
    Api::<Secret>::namespaced(kube.clone(), "preview-secrets").create(&PostParams::default(), &secret).await.unwrap();
}

/// A cluster with the source namespace and its Secrets.
async fn cluster_with_sources(sources: &[(&str, &str, &str)]) -> kube::Client {
    let kube = support::fake_cluster().await;
    let ns = Namespace {
        metadata: kube::api::ObjectMeta { name: Some("preview-secrets".into()), ..Default::default() },
        ..Default::default()
    };
    Api::<Namespace>::all(kube.clone()).create(&PostParams::default(), &ns).await.unwrap();
    for (name, key, value) in sources {
        source_secret(&kube, name, key, value).await;
    }
    kube
}

#[tokio::test]
async fn secrets_are_copied_and_never_leave_the_cluster() {
    let logs = Logs::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let _logging = tracing::subscriber::set_default(subscriber);

    let ai = FakeOpenAi::start(r#"{"services": [], "tests": []}"#).await;
    let config = Arc::new(config(&ai.base_url));
    let kube = cluster_with_sources(&[
        ("shop-test-db", "password", CANARY_DB),
        ("web-session", "key", CANARY_SESSION),
        ("api-admin", "token", "not-for-a-web-only-pr"),
    ])
    .await;

    let github = FakeGitHub::start().await;
    github.lock().files = vec![json!({"filename": "web/src/cart.ts", "status": "modified", "patch": "+cart"})];
    let notifier = Arc::new(Notifier::new(Arc::new(github.client()), config.github.clone()));
    let consumer = Consumer::new(support::unused_sqs(), "unused".into(), kube.clone(), Arc::clone(&config))
        .with_github(Arc::clone(&notifier))
        .with_ai(Arc::new(AiEngine::new(&config.ai, "").unwrap()));
    let ctx = Context::new(kube.clone(), Arc::clone(&config)).with_github(Arc::clone(&notifier));

    // The PR event through the front, and the queue message as SQS holds it.
    let stack = Stack::new("secrets-canary").await;
    let mut payload: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(support::root().join("infra/samples/pull_request.opened.json")).unwrap(),
    )
    .unwrap();
    payload["pull_request"]["updated_at"] = json!(Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string());
    let body = payload.to_string().into_bytes();
    let signature = sign(SECRET.as_bytes(), &body);
    let delivery = Delivery {
        event: Some("pull_request"),
        delivery_id: Some("canary-delivery"),
        signature: Some(&signature),
        content_type: Some("application/json"),
        body: &body,
    };
    assert_eq!(Box::pin(support::front(&stack, SECRET).handle(&delivery)).await.outcome, Answer::Accepted);
    let messages = stack.drain().await;
    assert_eq!(messages.len(), 1);
    let queued = messages[0].body().unwrap().to_owned();
    let message = Message::from_json(&queued).unwrap();

    assert_eq!(Box::pin(consumer.handle_message(&message)).await, Outcome::Applied { name: NAME.into() });
    for _ in 0..3 {
        Box::pin(reconcile_named(&ctx, NAME, Utc::now())).await.unwrap();
    }
    notifier.flush(true).await;

    // In the preview: the repository's and the deployed service's Secrets, with their values.
    let copies = Api::<Secret>::namespaced(kube.clone(), NAME);
    let db = copies.get("shop-test-db").await.unwrap();
    assert_eq!(db.data.unwrap()["password"].0, CANARY_DB.as_bytes());
    let session = copies.get("web-session").await.unwrap();
    assert_eq!(session.data.unwrap()["key"].0, CANARY_SESSION.as_bytes());
    assert_eq!(session.metadata.labels.unwrap()["app.kubernetes.io/managed-by"], "previewd");
    assert!(copies.get_opt("api-admin").await.unwrap().is_none(), "api is not deployed");
    // The remote key becomes an ExternalSecret for the operator; Previewd never sees its value.
    let resource = previewd::controller::observe::resource_of(previewd::render::Kind::ExternalSecret);
    let external: Api<DynamicObject> = Api::namespaced_with(kube.clone(), NAME, &resource);
    let stripe = serde_json::to_value(external.get("stripe-test").await.unwrap()).unwrap();
    assert_eq!(stripe["spec"]["dataFrom"][0]["extract"]["key"], "previews/shop/stripe");
    assert_eq!(stripe["spec"]["secretStoreRef"], json!({"kind": "ClusterSecretStore", "name": "vault"}));
    assert_eq!(resource, ApiResource { plural: "externalsecrets".into(), ..resource.clone() });

    // A changed source is copied again on the next pass.
    let mut changed = Api::<Secret>::namespaced(kube.clone(), "preview-secrets").get("shop-test-db").await.unwrap();
    changed.data = Some([("password".to_owned(), ByteString(b"rotated-canary-db".to_vec()))].into());
    Api::<Secret>::namespaced(kube.clone(), "preview-secrets")
        .replace("shop-test-db", &PostParams::default(), &changed)
        .await
        .unwrap();
    Box::pin(reconcile_named(&ctx, NAME, Utc::now())).await.unwrap();
    assert_eq!(copies.get("shop-test-db").await.unwrap().data.unwrap()["password"].0, b"rotated-canary-db");

    // And nowhere else.
    let canaries = [CANARY_DB, CANARY_SESSION, "rotated-canary-db"];
    let pe = Api::<PreviewEnvironment>::all(kube.clone()).get(NAME).await.unwrap();
    // (Each read on its own: a guard held to the end of a statement would deadlock the next.)
    let requests =
        serde_json::to_string(&github.lock().exchanges.iter().map(|e| e.body.clone()).collect::<Vec<_>>()).unwrap();
    let comments = github.lock().comments.iter().map(|c| c.body.clone()).collect::<Vec<_>>().join("\n");
    let prompts = serde_json::to_string(&ai.lock().requests).unwrap();
    let logged = String::from_utf8_lossy(&logs.0.lock().unwrap()).into_owned();
    let places = [
        ("queue message", queued),
        ("PreviewEnvironment", serde_json::to_string(&pe).unwrap()),
        ("GitHub requests", requests),
        ("PR comments", comments),
        ("AI prompts", prompts),
        ("logs", logged),
    ];
    assert!(ai.requests() >= 1, "the AI was asked");
    assert!(places[5].1.contains("canary-delivery"), "the logs are captured: {}", places[5].1);
    assert!(!github.lock().comments.is_empty(), "the comment was written");
    for (place, text) in &places {
        for canary in canaries {
            assert!(!text.contains(canary), "{canary} leaked into the {place}");
        }
    }
}

/// A fork's preview gets no secrets unless the repository says so.
#[tokio::test]
async fn a_fork_gets_no_secrets_unless_the_repository_allows_it() {
    let ai = FakeOpenAi::start(r#"{"services": [], "tests": []}"#).await;
    let mut config = config(&ai.base_url);
    config.ai.enabled = false;
    // Basic auth guards every preview, a fork's too: its htpasswd Secret is always copied.
    config.repositories[0].protect = Some(previewd::config::Protection {
        external_auth: None,
        basic_auth: Some(previewd::config::BasicAuth {
            secret: reference("preview-htpasswd", Some("preview-secrets"), None),
            realm: None,
        }),
    });
    for allowed in [false, true] {
        config.repositories[0].secrets_for_forks = allowed;
        let shared = Arc::new(config.clone());
        let kube = cluster_with_sources(&[
            ("shop-test-db", "password", CANARY_DB),
            ("web-session", "key", CANARY_SESSION),
            ("preview-htpasswd", "auth", "reviewer:$apr1$hash"),
        ])
        .await;
        let mut spec = match previewd::policy::decide_offline(&support::event("fork-labeled.json"), &shared) {
            previewd::policy::Decision::Upsert(spec) => *spec,
            other => panic!("{other:?}"),
        };
        spec.services = vec!["web".into()];
        spec.last_activity = Utc::now();
        let name = "preview-shop-pr-77";
        Api::<PreviewEnvironment>::all(kube.clone())
            .create(&PostParams::default(), &PreviewEnvironment::new(name, spec))
            .await
            .unwrap();
        let ctx = Context::new(kube.clone(), Arc::clone(&shared));
        for _ in 0..2 {
            Box::pin(reconcile_named(&ctx, name, Utc::now())).await.unwrap();
        }
        let copied = Api::<Secret>::namespaced(kube.clone(), name).get_opt("shop-test-db").await.unwrap().is_some();
        assert_eq!(copied, allowed, "secretsForForks: {allowed}");
        let htpasswd = Api::<Secret>::namespaced(kube.clone(), name).get("preview-htpasswd").await.unwrap();
        assert_eq!(htpasswd.data.unwrap()["auth"].0, b"reviewer:$apr1$hash");
        let objects =
            previewd::render::render(&shared, &Api::<PreviewEnvironment>::all(kube).get(name).await.unwrap()).unwrap();
        assert_eq!(objects.iter().any(|o| o["kind"] == "ExternalSecret"), allowed);
    }
}
