//! The Helm chart: `helm lint`, `helm template` validated against the Kubernetes schemas, the
//! CRD it installs is the generated one, and the configuration it mounts is one the reconciler
//! accepts. Uses the project's helm (`infra/setup.sh` puts it in `.tools/bin`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::process::{Command, Stdio};

use kube::CustomResourceExt;
use previewd::config::Config;
use previewd::crd::PreviewEnvironment;
use serde_json::Value;
use support::chart::{self, QUEUE, example_config, helm, template_config, text, values_file};
use support::root;

/// `helm template` with the example configuration.
fn template() -> Vec<Value> {
    chart::template(&[])
}

#[test]
fn chart_lints() {
    let values = values_file(&example_config());
    let out = helm(&["lint", "charts/previewd", "--strict", "--set", QUEUE, "-f", values.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
}

#[test]
fn queue_url_is_required() {
    let values = values_file(&example_config());
    let out = helm(&["template", "pd", "charts/previewd", "-f", values.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(text(&out).contains("queue.url is required"), "{}", text(&out));
}

#[test]
fn rendered_chart_validates_against_the_kubernetes_schemas() {
    let objects = template();
    let kinds: Vec<&str> = objects.iter().filter_map(|o| o["kind"].as_str()).collect();
    for kind in [
        "CustomResourceDefinition",
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "ConfigMap",
        "Deployment",
        "Service",
        "PodDisruptionBudget",
        "AppProject",
        "ValidatingAdmissionPolicy",
        "ValidatingAdmissionPolicyBinding",
    ] {
        assert!(kinds.contains(&kind), "{kind} missing from {kinds:?}");
    }
    validate(&objects);
    // And with every option on. The Prometheus Operator's kinds have no schema here: their
    // contents are checked in tests/monitoring.rs (PromQL parsed, metrics exported).
    let all_on = chart::template(&[
        "github.existingSecret=gh",
        "github.apiUrl=https://ghe.example.com/api/v3",
        "monitoring.serviceMonitor.enabled=true",
        "monitoring.prometheusRule.enabled=true",
        "monitoring.dashboard.enabled=true",
        "tracing.otlpEndpoint=http://otel-collector.observability:4318",
        "ai.existingSecret=previewd-ai",
        "aws.existingSecret=previewd-aws",
        "extraEnv[0].name=OTEL_RESOURCE_ATTRIBUTES",
        "extraEnv[0].value=deployment.environment=prod",
    ]);
    let (operator, core): (Vec<Value>, Vec<Value>) =
        all_on.into_iter().partition(|o| o["apiVersion"] == "monitoring.coreos.com/v1");
    let operator_kinds: Vec<&str> = operator.iter().filter_map(|o| o["kind"].as_str()).collect();
    assert_eq!(operator_kinds, ["PrometheusRule", "ServiceMonitor"]);
    validate(&core);
    let rule = &operator[0];
    let shipped: Vec<Value> = ["alerts.yaml", "slo.yaml"]
        .iter()
        .flat_map(|file| {
            let text = std::fs::read_to_string(root().join("charts/previewd/files").join(file)).unwrap();
            serde_norway::from_str::<Value>(&text).unwrap().as_array().unwrap().clone()
        })
        .collect();
    assert_eq!(rule["spec"]["groups"], Value::Array(shipped), "the rules are shipped verbatim (Go templates kept)");
    let monitor = &operator[1];
    assert_eq!(monitor["spec"]["endpoints"][0]["port"], "http");
    let dashboard =
        core.iter().find(|o| o["kind"] == "ConfigMap" && o["metadata"]["labels"]["grafana_dashboard"] == "1");
    let json: Value = serde_json::from_str(dashboard.unwrap()["data"]["previewd.json"].as_str().unwrap()).unwrap();
    assert_eq!(json["uid"], "previewd");
    let deployment = core.iter().find(|o| o["kind"] == "Deployment").unwrap();
    let env = deployment["spec"]["template"]["spec"]["containers"][0]["env"].to_string();
    assert!(env.contains("OTEL_EXPORTER_OTLP_ENDPOINT") && env.contains("OTEL_RESOURCE_ATTRIBUTES"), "{env}");
    assert!(env.contains("PREVIEWD_AI_API_KEY") && env.contains("previewd-ai"), "{env}");
    assert!(env.contains("AWS_SECRET_ACCESS_KEY") && env.contains("previewd-aws"), "{env}");
}

/// Every object passes the Kubernetes 1.33 schemas (kubernetes-validate, strict). Argo CD's
/// kinds have no schema there: the AppProject is validated against Argo CD's own CRD in
/// `the_argo_project_confines_previews`.
fn validate(objects: &[Value]) {
    let objects: Vec<&Value> = objects.iter().filter(|o| o["apiVersion"] != "argoproj.io/v1alpha1").collect();
    let yaml: String = objects.iter().map(|o| format!("---\n{}", serde_norway::to_string(o).unwrap())).collect();
    let mut child = Command::new(root().join(".venv/bin/kubernetes-validate"))
        .args(["-k", "1.33.0", "--strict", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kubernetes-validate (infra/setup.sh)");
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), yaml.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(text(&out).matches("passed").count(), objects.len(), "{}", text(&out));
}

/// YAML round trips turn `0.0` into `0`; compare numbers by value.
fn numbers_as_floats(value: &Value) -> Value {
    match value {
        Value::Number(n) => Value::from(n.as_f64().unwrap_or_default()),
        Value::Array(items) => Value::Array(items.iter().map(numbers_as_floats).collect()),
        Value::Object(map) => Value::Object(map.iter().map(|(k, v)| (k.clone(), numbers_as_floats(v))).collect()),
        other => other.clone(),
    }
}

#[test]
fn chart_installs_the_generated_crd_and_keeps_it() {
    let objects = template();
    let crd = objects.iter().find(|o| o["kind"] == "CustomResourceDefinition").unwrap();
    assert_eq!(crd["metadata"]["annotations"]["helm.sh/resource-policy"], "keep");
    let generated = serde_json::to_value(PreviewEnvironment::crd()).unwrap();
    assert_eq!(numbers_as_floats(&crd["spec"]), numbers_as_floats(&generated["spec"]));
}

#[test]
fn mounted_configuration_is_accepted_by_the_reconciler() {
    let objects = template();
    let config_map = objects.iter().find(|o| o["kind"] == "ConfigMap").unwrap();
    let config = Config::from_yaml(config_map["data"]["config.yaml"].as_str().unwrap()).unwrap();
    assert_eq!(config.repositories.len(), 2);
    let deployment = objects.iter().find(|o| o["kind"] == "Deployment").unwrap();
    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(container["args"][0], "run");
    assert_eq!(container["securityContext"]["readOnlyRootFilesystem"], true);
}

#[test]
fn github_credentials_come_from_a_secret() {
    let objects =
        chart::template(&["github.existingSecret=previewd-github", "github.apiUrl=https://ghe.example.com/api/v3"]);
    let deployment = objects.iter().find(|o| o["kind"] == "Deployment").unwrap();
    let pod = &deployment["spec"]["template"]["spec"];
    let env = pod["containers"][0]["env"].as_array().unwrap();
    let var = |name: &str| env.iter().find(|e| e["name"] == name).cloned().unwrap_or(Value::Null);
    assert_eq!(var("PREVIEWD_GITHUB_APP_ID")["valueFrom"]["secretKeyRef"]["name"], "previewd-github");
    assert_eq!(var("PREVIEWD_GITHUB_TOKEN")["valueFrom"]["secretKeyRef"]["key"], "token");
    assert_eq!(var("PREVIEWD_GITHUB_API_URL")["value"], "https://ghe.example.com/api/v3");
    let key_file = var("PREVIEWD_GITHUB_APP_PRIVATE_KEY_FILE")["value"].as_str().unwrap().to_owned();
    let volume = pod["volumes"].as_array().unwrap().iter().find(|v| v["name"] == "github").unwrap();
    assert_eq!(volume["secret"]["secretName"], "previewd-github");
    assert!(key_file.starts_with("/var/run/secrets/previewd/github/"));
    // Nothing about GitHub without a Secret.
    let plain = template();
    let deployment = plain.iter().find(|o| o["kind"] == "Deployment").unwrap();
    assert!(!deployment.to_string().contains("PREVIEWD_GITHUB"));
}

#[test]
fn values_that_break_the_schema_are_refused_at_install() {
    for (value, field) in [
        ("replicaCount=0", "replicaCount"),
        ("consumers=100", "consumers"),
        ("queue.url=https://sqs.eu-west-1.amazonaws.com/1/not-fifo", "queue"),
        ("aws.roleArn=my-role", "roleArn"),
        ("monitoring.dashboard.enabled=yes", "enabled"),
        ("image.pullPolicy=Sometimes", "pullPolicy"),
        ("replicas=3", "replicas"),
    ] {
        let values = values_file(&example_config());
        let out = helm(&[
            "template",
            "pd",
            "charts/previewd",
            "--set",
            QUEUE,
            "-f",
            values.to_str().unwrap(),
            "--set",
            value,
        ]);
        let text = text(&out);
        assert!(!out.status.success(), "{value} was accepted");
        assert!(text.contains("schema") && text.contains(field), "{value}: {text}");
    }
    // Strings that happen to parse as numbers stay strings where a string is wanted.
    let values = values_file(&example_config());
    let out = helm(&[
        "template",
        "pd",
        "charts/previewd",
        "--set",
        QUEUE,
        "-f",
        values.to_str().unwrap(),
        "--set-string",
        "logLevel=debug",
    ]);
    assert!(out.status.success(), "{}", text(&out));
}

#[test]
fn the_image_matches_what_the_chart_runs() {
    let dockerfile = std::fs::read_to_string(root().join("Dockerfile")).unwrap();
    let objects = template();
    let deployment = objects.iter().find(|o| o["kind"] == "Deployment").unwrap();
    let pod = &deployment["spec"]["template"]["spec"];
    let uid = pod["securityContext"]["runAsUser"].as_i64().unwrap();
    assert!(dockerfile.contains(&format!("USER {uid}:{uid}")), "the image runs as the chart's user {uid}");
    assert!(dockerfile.contains("--bin previewd") && dockerfile.contains("ENTRYPOINT [\"/usr/local/bin/previewd\"]"));
    assert_eq!(pod["containers"][0]["args"][0], "run");
    let rust_version = std::fs::read_to_string(root().join("Cargo.toml")).unwrap();
    let msrv = rust_version.lines().find_map(|l| l.strip_prefix("rust-version = ")).unwrap().trim_matches('"');
    assert!(
        dockerfile.contains(&format!("FROM rust:{msrv}-")),
        "the build image is the workspace's rust-version {msrv}"
    );
}

fn crd_schema(file: &str) -> Value {
    let path = root().join("../shared/fixtures/argocd").join(file);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let crd: Value = serde_norway::from_str(&text).unwrap();
    let version = crd["spec"]["versions"].as_array().unwrap().iter().find(|v| v["name"] == "v1alpha1").unwrap();
    version["schema"]["openAPIV3Schema"].clone()
}

fn group_kinds(list: &Value) -> Vec<(String, String)> {
    list.as_array()
        .into_iter()
        .flatten()
        .map(|gk| (gk["group"].as_str().unwrap().to_owned(), gk["kind"].as_str().unwrap().to_owned()))
        .collect()
}

/// Argo CD's destination namespace glob (`preview-*`), as Argo CD matches it.
fn glob_matches(glob: &str, name: &str) -> bool {
    globset::Glob::new(glob).unwrap().compile_matcher().is_match(name)
}

#[test]
fn the_argo_project_confines_previews() {
    for config_values in [example_config(), {
        // Defaults only: the chart's defaults must agree with the reconciler's.
        let mut minimal = example_config();
        let map = minimal.as_object_mut().unwrap();
        map.remove("namespacePrefix");
        map.remove("argocd");
        for repo in map["repositories"].as_array_mut().unwrap() {
            repo.as_object_mut().unwrap().remove("repoUrl");
        }
        minimal
    }] {
        let objects = template_config(&config_values, &[]);
        let project = objects.iter().find(|o| o["kind"] == "AppProject").expect("the chart creates the AppProject");
        let config_map = objects.iter().find(|o| o["kind"] == "ConfigMap").unwrap();
        let config = Config::from_yaml(config_map["data"]["config.yaml"].as_str().unwrap()).unwrap();

        // The project is the one every preview names, in Argo CD's namespace, and valid for Argo CD.
        assert_eq!(project["metadata"]["name"], "previews");
        assert_eq!(config.argocd.project, "previews");
        assert_eq!(project["metadata"]["namespace"], config.argocd.namespace.as_str());
        let validator = jsonschema::validator_for(&crd_schema("appproject-crd.yaml")).unwrap();
        let errors: Vec<String> =
            validator.iter_errors(project).map(|e| format!("{e} at {}", e.instance_path())).collect();
        assert!(errors.is_empty(), "{errors:#?}");

        // Destinations: only preview namespaces on the configured server.
        let spec = &project["spec"];
        let destinations = spec["destinations"].as_array().unwrap();
        assert_eq!(destinations.len(), 1, "{destinations:?}");
        assert_eq!(destinations[0]["server"], config.argocd.destination_server.as_str());
        let glob = destinations[0]["namespace"].as_str().unwrap();
        assert_eq!(glob, format!("{}*", config.namespace_prefix));
        for foreign in ["default", "kube-system", "argocd", "previewd", "shop-prod"] {
            assert!(!glob_matches(glob, foreign), "{glob} admits {foreign}");
        }
        // Source repositories: exactly the configured ones.
        let mut repos: Vec<&str> =
            spec["sourceRepos"].as_array().unwrap().iter().map(|r| r.as_str().unwrap()).collect();
        let mut configured: Vec<String> = config.repositories.iter().map(|r| r.repo_url()).collect();
        repos.sort_unstable();
        configured.sort_unstable();
        assert_eq!(repos, configured);
        assert!(!repos.contains(&"*"));
        // No cluster-scoped kinds; none of Previewd's isolation objects, nor what reaches past them.
        assert_eq!(spec["clusterResourceWhitelist"], serde_json::json!([]));
        assert!(group_kinds(&spec["clusterResourceBlacklist"]).contains(&("*".into(), "*".into())));
        let blacklist = group_kinds(&spec["namespaceResourceBlacklist"]);
        for (group, kind) in [
            ("networking.k8s.io", "NetworkPolicy"),
            ("", "ResourceQuota"),
            ("", "LimitRange"),
            ("networking.k8s.io", "Ingress"),
            ("gateway.networking.k8s.io", "*"),
            ("", "Endpoints"),
            ("discovery.k8s.io", "EndpointSlice"),
            ("rbac.authorization.k8s.io", "*"),
            ("argoproj.io", "*"),
            ("cert-manager.io", "*"),
        ] {
            assert!(blacklist.contains(&(group.into(), kind.into())), "{group}/{kind} not blacklisted: {blacklist:?}");
        }

        // Every example event's ApplicationSet names this project and stays inside it.
        let app_set_validator = jsonschema::validator_for(&crd_schema("applicationset-crd.yaml")).unwrap();
        let mut rendered = 0;
        for entry in std::fs::read_dir(root().join("docs/examples/events")).unwrap() {
            let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
            let event = previewd_events::PreviewEvent::from_json(&text).unwrap();
            let previewd::policy::Decision::Upsert(spec) = previewd::policy::decide_offline(&event, &config) else {
                continue;
            };
            let resource = previewd::render::as_applied(&config, *spec).unwrap();
            let objects = previewd::render::render(&config, &resource).unwrap();
            let app_set = objects.iter().find(|o| o["kind"] == "ApplicationSet").unwrap();
            assert!(app_set_validator.is_valid(app_set));
            let template = &app_set["spec"]["template"]["spec"];
            assert_eq!(template["project"], project["metadata"]["name"]);
            assert!(repos.contains(&template["source"]["repoURL"].as_str().unwrap()), "{template}");
            assert_eq!(template["destination"]["server"], destinations[0]["server"]);
            let namespace = template["destination"]["namespace"].as_str().unwrap();
            assert!(glob_matches(glob, namespace), "{namespace} outside {glob}");
            rendered += 1;
        }
        assert!(rendered >= 3, "only {rendered} example events rendered");
    }
}

#[test]
fn the_chart_refuses_a_project_that_is_not_its_own() {
    let mut config = example_config();
    config["argocd"]["project"] = Value::from("default");
    let file = values_file(&config);
    let objects_or_error = helm(&["template", "pd", "charts/previewd", "--set", QUEUE, "-f", file.to_str().unwrap()]);
    assert!(!objects_or_error.status.success());
    assert!(text(&objects_or_error).contains("config.argocd.project (default) differs"), "{}", text(&objects_or_error));
    let values = values_file(&example_config());
    let out = helm(&[
        "template",
        "pd",
        "charts/previewd",
        "--set",
        QUEUE,
        "-f",
        values.to_str().unwrap(),
        "--set",
        "argocd.appProject.name=default",
    ]);
    assert!(!out.status.success() && text(&out).contains("schema"), "{}", text(&out));
}

#[test]
fn the_chart_refuses_a_bad_config_before_any_pod_starts() {
    // The schema under `config` is the one generated from the reconciler's types.
    let schema = std::fs::read_to_string(root().join("charts/previewd/values.schema.json")).unwrap();
    let values: Value = serde_json::from_str(&schema).unwrap();
    assert_eq!(
        values["properties"]["config"],
        Config::schema(),
        "the chart's config schema drifted: run `make generated`"
    );
    let file = values_file(&example_config());
    for (set, field) in [
        ("config.ttl.idle=forever", "idle"),
        ("config.quota.pods=0", "pods"),
        ("config.ingress.tls=selfSigned", "tls"),
        ("config.repositories[0].services[0].resources.requests.cpu=lots", "cpu"),
        ("config.namspacePrefix=preview-", "namspacePrefix"),
    ] {
        let out =
            helm(&["template", "pd", "charts/previewd", "--set", QUEUE, "-f", file.to_str().unwrap(), "--set", set]);
        assert!(!out.status.success(), "{set} was accepted");
        assert!(text(&out).contains("schema") && text(&out).contains(field), "{set}: {}", text(&out));
    }
    let out = helm(&["template", "pd", "charts/previewd", "--set", QUEUE, "-f", file.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
}

/// An air-gapped install: one list of prefix rewrites moves Previewd's own image, the images
/// of services and the seed loader to the mirror.
#[test]
fn images_follow_the_registry_rewrites() {
    let mut config = example_config();
    config["images"] = serde_json::json!({"rewrites": [
        {"from": "ghcr.io/previewd/", "to": "mirror.internal/previewd/"},
        {"from": "docker.io/", "to": "mirror.internal/hub/"}
    ]});
    let objects = chart::template_config(&config, &["image.tag=1.2.3"]);
    let deployment = objects.iter().find(|o| o["kind"] == "Deployment").unwrap();
    assert_eq!(
        deployment["spec"]["template"]["spec"]["containers"][0]["image"],
        "mirror.internal/previewd/previewd:1.2.3"
    );
    let untouched = chart::template_config(&example_config(), &["image.tag=1.2.3"]);
    let deployment = untouched.iter().find(|o| o["kind"] == "Deployment").unwrap();
    assert_eq!(deployment["spec"]["template"]["spec"]["containers"][0]["image"], "ghcr.io/previewd/previewd:1.2.3");
    // The reconciler reads the same list from its configuration.
    let loaded = previewd::config::Config::from_yaml(&serde_norway::to_string(&config).unwrap()).unwrap();
    assert_eq!(
        loaded.images.rewrite("docker.io/library/postgres:16-alpine"),
        "mirror.internal/hub/library/postgres:16-alpine"
    );
}

/// Sleeping previews: the key that signs wake links comes from a Secret, and an Ingress serves
/// only the sleep page's two routes at the wake URL's host.
#[test]
fn the_sleep_page_is_served_when_asked() {
    let mut config = example_config();
    config["ttl"]["sleepAfter"] = serde_json::json!("1h");
    config["ttl"]["wakeUrl"] = serde_json::json!("https://previewd.preview.example.com");
    let objects = chart::template_config(
        &config,
        &[
            "wake.existingSecret=previewd-wake",
            "wake.ingress.enabled=true",
            "wake.ingress.host=previewd.preview.example.com",
        ],
    );
    let deployment = objects.iter().find(|o| o["kind"] == "Deployment").unwrap();
    let env = deployment["spec"]["template"]["spec"]["containers"][0]["env"].as_array().unwrap();
    let key = env.iter().find(|e| e["name"] == "PREVIEWD_WAKE_KEY").unwrap();
    assert_eq!(key["valueFrom"]["secretKeyRef"], serde_json::json!({"name": "previewd-wake", "key": "key"}));
    let ingress = objects.iter().find(|o| o["kind"] == "Ingress").unwrap();
    let paths: Vec<&str> = ingress["spec"]["rules"][0]["http"]["paths"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["path"].as_str().unwrap())
        .collect();
    assert_eq!(paths, ["/asleep/", "/wake/"], "never /metrics");
    assert_eq!(ingress["spec"]["rules"][0]["host"], "previewd.preview.example.com");
    let off = chart::template_config(&example_config(), &[]);
    assert!(!off.iter().any(|o| o["kind"] == "Ingress"));
}

/// The in-cluster front: `previewd webhook-server` replicas with the webhook secret from a
/// Secret and no API token, a NATS with JetStream in the release (or one of the user's), and
/// the reconciler reading JetStream instead of SQS. No selector of one matches another's pods.
#[test]
fn the_in_cluster_front_deploys_with_its_own_nats() {
    let objects = chart::template(&[
        "queue.url=",
        "front.enabled=true",
        "front.existingSecret=previewd-webhook",
        "front.nats.enabled=true",
        "front.ingress.enabled=true",
        "front.ingress.host=hooks.example.com",
    ]);
    validate(&objects);
    let named = |kind: &str, name: &str| {
        objects
            .iter()
            .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
            .unwrap_or_else(|| panic!("{kind} {name}"))
    };
    let env_of = |o: &Value| o["spec"]["template"]["spec"]["containers"][0]["env"].as_array().unwrap().clone();
    let value = |env: &[Value], name: &str| env.iter().find(|e| e["name"] == name).map(|e| e["value"].clone());
    let nats_url = "nats://pd-previewd-nats.previewd.svc:4222";

    let front = named("Deployment", "pd-previewd-webhook");
    assert_eq!(front["spec"]["replicas"], 2);
    let pod = &front["spec"]["template"]["spec"];
    assert_eq!(pod["containers"][0]["args"], serde_json::json!(["webhook-server"]));
    assert_eq!(pod["automountServiceAccountToken"], false);
    let env = env_of(front);
    assert_eq!(value(&env, "PREVIEWD_NATS_URL").unwrap(), nats_url);
    let secret = env.iter().find(|e| e["name"] == "PREVIEWD_WEBHOOK_SECRET").unwrap();
    assert_eq!(secret["valueFrom"]["secretKeyRef"], serde_json::json!({"name": "previewd-webhook", "key": "secret"}));

    let reconciler = named("Deployment", "pd-previewd");
    let env = env_of(reconciler);
    assert_eq!(value(&env, "PREVIEWD_NATS_URL").unwrap(), nats_url);
    assert_eq!(value(&env, "PREVIEWD_QUEUE_URL"), None);

    let nats = named("StatefulSet", "pd-previewd-nats");
    let args = &nats["spec"]["template"]["spec"]["containers"][0]["args"];
    assert!(args.as_array().unwrap().iter().any(|a| a == "-js"), "{args}");
    assert_eq!(named("Ingress", "pd-previewd-webhook")["spec"]["rules"][0]["http"]["paths"][0]["path"], "/webhook");

    // Each workload's selector matches its own pods only.
    let workloads: Vec<&Value> =
        objects.iter().filter(|o| ["Deployment", "StatefulSet"].contains(&o["kind"].as_str().unwrap())).collect();
    for owner in &workloads {
        let selector = owner["spec"]["selector"]["matchLabels"].as_object().unwrap();
        for other in &workloads {
            let labels = &other["spec"]["template"]["metadata"]["labels"];
            let matches = selector.iter().all(|(k, v)| &labels[k] == v);
            assert_eq!(
                matches,
                owner["metadata"]["name"] == other["metadata"]["name"],
                "{} selects {}",
                owner["metadata"]["name"],
                other["metadata"]["name"]
            );
        }
    }
    for service in objects.iter().filter(|o| o["kind"] == "Service") {
        let selector = service["spec"]["selector"].as_object().unwrap();
        let selected: Vec<&Value> = workloads
            .iter()
            .filter(|w| selector.iter().all(|(k, v)| &w["spec"]["template"]["metadata"]["labels"][k] == v))
            .map(|w| &w["metadata"]["name"])
            .collect();
        assert_eq!(selected.len(), 1, "{} selects {selected:?}", service["metadata"]["name"]);
    }

    // An existing NATS instead; and both fronts at once are refused.
    let existing = chart::template(&[
        "queue.url=",
        "front.enabled=true",
        "front.existingSecret=previewd-webhook",
        "front.natsUrl=nats://nats.nats:4222",
    ]);
    assert!(!existing.iter().any(|o| o["kind"] == "StatefulSet"));
    let file = values_file(&example_config());
    let both = ["template", "pd", "charts/previewd", "-f", file.to_str().unwrap(), "--set", "front.enabled=true"];
    let out = helm(
        &[
            &both[..],
            &["--set", "front.existingSecret=s", "--set", "front.natsUrl=nats://n:4222", "--set", chart::QUEUE],
        ]
        .concat(),
    );
    assert!(!out.status.success() && text(&out).contains("choose one front"), "{}", text(&out));
}

#[test]
fn a_preview_cluster_gets_only_the_rbac_and_admission_policies_previewd_uses_there() {
    let mut config = example_config();
    config["clusters"] = serde_json::json!([
        {"name": "east", "argocdSecret": "cluster-east"},
        {"name": "west", "kubeconfigSecret": {"name": "west-kubeconfig"}, "destinationServer": "https://west.example.com"},
    ]);
    // The preview cluster's release: nothing runs there.
    let remote = template_config(&config, &["role=previewCluster"]);
    validate(&remote);
    let mut kinds: Vec<&str> = remote.iter().map(|o| o["kind"].as_str().unwrap()).collect();
    kinds.sort_unstable();
    assert_eq!(
        kinds,
        [
            "ClusterRole",
            "ClusterRoleBinding",
            "Secret",
            "ServiceAccount",
            "ValidatingAdmissionPolicy",
            "ValidatingAdmissionPolicy",
            "ValidatingAdmissionPolicyBinding",
            "ValidatingAdmissionPolicyBinding"
        ]
    );
    let token = remote.iter().find(|o| o["kind"] == "Secret").unwrap();
    assert_eq!(token["type"], "kubernetes.io/service-account-token");
    assert_eq!(token["metadata"]["annotations"]["kubernetes.io/service-account.name"], "pd-previewd");
    let role = remote.iter().find(|o| o["kind"] == "ClusterRole").unwrap();
    let all = |field: &str| -> Vec<String> {
        let rules = role["rules"].as_array().unwrap();
        rules.iter().flat_map(|r| r[field].as_array().unwrap()).map(|v| v.as_str().unwrap().to_owned()).collect()
    };
    let (groups, verbs) = (all("apiGroups"), all("verbs"));
    assert!(!groups.iter().any(|g| g == "argoproj.io" || g == "preview.previewd.io"), "{groups:?}");
    assert!(!verbs.iter().any(|v| v == "watch" || v == "list"), "no caches there: {verbs:?}");

    // The control cluster's release reads the registering Secrets by name, and Argo CD may
    // deploy previews to both clusters.
    let control = template_config(&config, &[]);
    let reads = |namespace: &str| {
        control
            .iter()
            .find(|o| {
                o["kind"] == "Role"
                    && o["metadata"]["namespace"] == namespace
                    && o["rules"][0]["resources"][0] == "secrets"
                    && o["rules"][0]["resourceNames"].is_array()
            })
            .map(|o| (o["rules"][0]["resourceNames"].clone(), o["rules"][0]["verbs"].clone()))
    };
    assert_eq!(reads("previewd"), Some((serde_json::json!(["west-kubeconfig"]), serde_json::json!(["get"]))));
    assert_eq!(reads("argocd"), Some((serde_json::json!(["cluster-east"]), serde_json::json!(["get"]))));
    let project = control.iter().find(|o| o["kind"] == "AppProject").unwrap();
    let destinations = project["spec"]["destinations"].as_array().unwrap();
    assert!(destinations.contains(&serde_json::json!({"name": "east", "namespace": "preview-*"})), "{destinations:?}");
    assert!(
        destinations.contains(&serde_json::json!({"server": "https://west.example.com", "namespace": "preview-*"}))
    );
    let refused = helm(&["template", "pd", "charts/previewd", "--set", QUEUE, "--set", "role=elsewhere"]);
    assert!(!refused.status.success());
}
