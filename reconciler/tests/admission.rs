//! The chart's ValidatingAdmissionPolicies, evaluated as the API server evaluates them: their
//! CEL expressions run in a CEL interpreter over admission requests built from every write
//! Previewd makes during a preview's whole life (each must be allowed), and over hostile
//! requests (each must be denied): deleting `kube-system`, labelling a foreign namespace,
//! writing a NetworkPolicy into `default`, an ApplicationSet outside the preview project.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use serde_json::{Value, json};
use support::{Call, access_of, recording};

const PREVIEWD: &str = "system:serviceaccount:previewd:pd-previewd";

/// What a ValidatingAdmissionPolicy sees of one request.
#[derive(Debug, Clone)]
struct Admission {
    user: String,
    operation: &'static str,
    group: String,
    resource: String,
    namespace: Option<String>,
    object: Value,
    old_object: Value,
    namespace_object: Value,
}

impl Admission {
    fn request(&self) -> Value {
        let name = self.object["metadata"]["name"].as_str().or(self.old_object["metadata"]["name"].as_str());
        json!({
            "operation": self.operation,
            "resource": {"group": self.group, "version": "v1", "resource": self.resource},
            "namespace": self.namespace.clone().unwrap_or_default(),
            "name": name.unwrap_or_default(),
            "userInfo": {"username": self.user},
        })
    }
}

fn evaluate(expression: &str, context: &cel::Context<'_, '_>) -> bool {
    let program = cel::Program::compile(expression).unwrap_or_else(|e| panic!("{expression}: {e:?}"));
    match program.execute(context) {
        Ok(cel::Value::Bool(b)) => b,
        // The API server treats an error as a failed check (failurePolicy: Fail).
        other => panic!("{expression} gave {other:?}"),
    }
}

fn selects(selector: &Value, labels: &Value) -> bool {
    selector["matchLabels"].as_object().into_iter().flatten().all(|(k, v)| &labels[k] == v)
}

/// `None`: the policy does not apply; `Some(Ok)`: allowed; `Some(Err(message))`: denied.
fn admit(policy: &Value, admission: &Admission) -> Option<Result<(), String>> {
    let spec = &policy["spec"];
    let constraints = &spec["matchConstraints"];
    let rule_matches = constraints["resourceRules"].as_array().unwrap().iter().any(|rule| {
        let has = |key: &str, value: &str| rule[key].as_array().unwrap().iter().any(|v| v == value || v == "*");
        has("apiGroups", &admission.group)
            && has("resources", &admission.resource)
            && has("operations", admission.operation)
    });
    if !rule_matches {
        return None;
    }
    if let Some(selector) = constraints.get("namespaceSelector")
        && !selects(selector, &admission.namespace_object["metadata"]["labels"])
    {
        return None;
    }
    let mut context = cel::Context::default();
    context.add_variable("request", admission.request()).unwrap();
    context.add_variable("object", admission.object.clone()).unwrap();
    context.add_variable("oldObject", admission.old_object.clone()).unwrap();
    context.add_variable("namespaceObject", admission.namespace_object.clone()).unwrap();
    context.add_variable("params", Value::Null).unwrap();
    for condition in spec["matchConditions"].as_array().into_iter().flatten() {
        if !evaluate(condition["expression"].as_str().unwrap(), &context) {
            return None;
        }
    }
    let mut variables = serde_json::Map::new();
    for variable in spec["variables"].as_array().into_iter().flatten() {
        context.add_variable("variables", Value::Object(variables.clone())).unwrap();
        let value = evaluate(variable["expression"].as_str().unwrap(), &context);
        variables.insert(variable["name"].as_str().unwrap().to_owned(), Value::Bool(value));
    }
    context.add_variable("variables", Value::Object(variables)).unwrap();
    for validation in spec["validations"].as_array().unwrap() {
        if !evaluate(validation["expression"].as_str().unwrap(), &context) {
            return Some(Err(validation["message"].as_str().unwrap_or_default().to_owned()));
        }
    }
    Some(Ok(()))
}

/// The admission request of a recorded write (None for reads and subresources, which these
/// policies do not match).
fn admission_of(call: &Call) -> Option<Admission> {
    let (group, resource, _) = access_of(&call.method, &call.path, &call.query)?;
    if resource.contains('/') {
        return None;
    }
    let operation = match call.method.as_str() {
        "POST" => "CREATE",
        "PUT" => "UPDATE",
        "PATCH" if call.before.is_none() => "CREATE",
        "PATCH" => "UPDATE",
        "DELETE" => "DELETE",
        _ => return None,
    };
    let object = if operation == "DELETE" { Value::Null } else { call.answer.clone().unwrap_or(Value::Null) };
    let namespace = support::namespace_of(&call.path).map(str::to_owned);
    Some(Admission {
        user: PREVIEWD.to_owned(),
        operation,
        group,
        resource,
        namespace,
        object,
        old_object: call.before.clone().unwrap_or(Value::Null),
        namespace_object: call.namespace.clone().unwrap_or(Value::Null),
    })
}

/// The policies of the chart installed with the example configuration, its shop routing
/// unchanged services to the `shop-staging` baseline and getting secrets (as the preview's
/// life does in part).
fn policies() -> (Value, Value) {
    let objects = support::chart::template_config(&support::whole_app_config_value(), &[]);
    let find = |suffix: &str| {
        objects
            .iter()
            .find(|o| {
                o["kind"] == "ValidatingAdmissionPolicy" && o["metadata"]["name"].as_str().unwrap().ends_with(suffix)
            })
            .unwrap_or_else(|| panic!("no policy *{suffix}"))
            .clone()
    };
    let confine = find("-confine");
    // The binding denies (it does not only warn or audit).
    let binding = objects
        .iter()
        .find(|o| {
            o["kind"] == "ValidatingAdmissionPolicyBinding" && o["spec"]["policyName"] == confine["metadata"]["name"]
        })
        .unwrap();
    assert_eq!(binding["spec"]["validationActions"], json!(["Deny"]));
    (confine, find("-previews"))
}

fn namespace_named(name: &str, managed: bool) -> Value {
    let mut labels = json!({"kubernetes.io/metadata.name": name});
    if managed {
        labels["app.kubernetes.io/managed-by"] = json!("previewd");
    }
    json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}})
}

fn hostile(
    operation: &'static str,
    group: &str,
    resource: &str,
    namespace: Option<&str>,
    object: Value,
    old: Value,
) -> Admission {
    Admission {
        user: PREVIEWD.to_owned(),
        operation,
        group: group.to_owned(),
        resource: resource.to_owned(),
        namespace: namespace.map(str::to_owned),
        namespace_object: namespace.map(|ns| namespace_named(ns, ns.starts_with("preview-"))).unwrap_or(Value::Null),
        object,
        old_object: old,
    }
}

#[tokio::test]
async fn the_admission_policy_confines_previewd() {
    let (confine, _) = policies();
    assert_eq!(
        confine["spec"]["matchConditions"][0]["expression"],
        format!("request.userInfo.username == '{PREVIEWD}'")
    );

    // Every write of a preview's whole life is allowed.
    let unrecorded = support::fake_cluster().await;
    let (kube, calls) = recording(unrecorded.clone());
    support::a_preview_life(kube, unrecorded).await;
    let calls = calls.lock().unwrap().clone();
    let mut seen = std::collections::BTreeSet::new();
    for call in &calls {
        let Some(admission) = admission_of(call) else { continue };
        if let Some(verdict) = admit(&confine, &admission) {
            assert_eq!(verdict, Ok(()), "Previewd's own {} {} was denied: {admission:#?}", call.method, call.path);
            seen.insert((admission.resource.clone(), admission.operation));
        }
    }
    for must in [
        ("namespaces", "CREATE"),
        ("namespaces", "UPDATE"),
        ("namespaces", "DELETE"),
        ("resourcequotas", "CREATE"),
        ("limitranges", "CREATE"),
        ("networkpolicies", "CREATE"),
        ("ingresses", "CREATE"),
        ("applicationsets", "CREATE"),
        ("applicationsets", "DELETE"),
    ] {
        assert!(seen.contains(&(must.0.to_owned(), must.1)), "{must:?} never evaluated; seen {seen:?}");
    }

    // Hostile requests in Previewd's name are denied.
    let managed_ns = namespace_named("preview-shop-pr-1", true);
    let mut labelled_default = namespace_named("default", false);
    labelled_default["metadata"]["labels"]["app.kubernetes.io/managed-by"] = json!("previewd");
    let policy = json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": {"name": "allow-all"}, "spec": {}});
    let app_set = |project: &str| {
        json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "ApplicationSet",
               "metadata": {"name": "evil", "labels": {"app.kubernetes.io/managed-by": "previewd"}},
               "spec": {"template": {"spec": {"project": project}}}})
    };
    let cases = [
        (
            "delete kube-system",
            hostile("DELETE", "", "namespaces", None, Value::Null, namespace_named("kube-system", false)),
        ),
        (
            "label a foreign namespace",
            hostile("UPDATE", "", "namespaces", None, labelled_default, namespace_named("default", false)),
        ),
        (
            "create an unprefixed namespace",
            hostile("CREATE", "", "namespaces", None, namespace_named("kube-evil", true), Value::Null),
        ),
        (
            "create an unlabelled namespace",
            hostile("CREATE", "", "namespaces", None, namespace_named("preview-x", false), Value::Null),
        ),
        (
            "unlabel a preview namespace",
            hostile("UPDATE", "", "namespaces", None, namespace_named("preview-shop-pr-1", false), managed_ns.clone()),
        ),
        (
            "a NetworkPolicy in default",
            hostile("CREATE", "networking.k8s.io", "networkpolicies", Some("default"), policy.clone(), Value::Null),
        ),
        (
            "delete kube-system's quota",
            hostile(
                "DELETE",
                "",
                "resourcequotas",
                Some("kube-system"),
                Value::Null,
                json!({"metadata": {"name": "q"}}),
            ),
        ),
        (
            "an Ingress in another team's namespace",
            hostile(
                "CREATE",
                "networking.k8s.io",
                "ingresses",
                Some("shop-prod"),
                json!({"metadata": {"name": "i"}}),
                Value::Null,
            ),
        ),
        (
            "an ApplicationSet in the default project",
            hostile("CREATE", "argoproj.io", "applicationsets", Some("argocd"), app_set("default"), Value::Null),
        ),
        (
            "an ApplicationSet outside Argo CD's namespace",
            hostile("CREATE", "argoproj.io", "applicationsets", Some("shop-prod"), app_set("previews"), Value::Null),
        ),
        (
            "delete someone's ApplicationSet",
            hostile(
                "DELETE",
                "argoproj.io",
                "applicationsets",
                Some("argocd"),
                Value::Null,
                json!({"metadata": {"name": "prod"}}),
            ),
        ),
    ];
    for (what, admission) in &cases {
        let verdict = admit(&confine, admission);
        assert!(matches!(verdict, Some(Err(_))), "{what}: {verdict:?}");
    }
    // The policy confines Previewd, not cluster administrators.
    for (what, admission) in cases {
        let admin = Admission { user: "kubernetes-admin".into(), ..admission };
        assert_eq!(admit(&confine, &admin), None, "{what} by an administrator");
    }
    // The evaluator is not vacuous: the same shapes inside a preview namespace pass.
    let allowed =
        hostile("CREATE", "networking.k8s.io", "networkpolicies", Some("preview-shop-pr-1"), policy, Value::Null);
    assert_eq!(admit(&confine, &allowed), Some(Ok(())));
    let own = hostile("CREATE", "argoproj.io", "applicationsets", Some("argocd"), app_set("previews"), Value::Null);
    assert_eq!(admit(&confine, &own), Some(Ok(())));
}

#[test]
fn services_in_previews_cannot_route_out_of_them() {
    let (_, previews) = policies();
    let service =
        |spec: Value| json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"}, "spec": spec});
    let in_preview = |spec: Value, user: &str| Admission {
        user: user.to_owned(),
        ..hostile("CREATE", "", "services", Some("preview-shop-pr-1"), service(spec), Value::Null)
    };
    // Anyone (Argo CD deploying a PR's chart): ExternalName and externalIPs are refused.
    let argo = "system:serviceaccount:argocd:argocd-application-controller";
    let external_name = in_preview(json!({"type": "ExternalName", "externalName": "admin.kube-system.svc"}), argo);
    assert!(matches!(admit(&previews, &external_name), Some(Err(_))));
    let external_ips = in_preview(json!({"ports": [{"port": 80}], "externalIPs": ["10.0.0.1"]}), argo);
    assert!(matches!(admit(&previews, &external_ips), Some(Err(_))));
    assert_eq!(admit(&previews, &in_preview(json!({"ports": [{"port": 80}]}), argo)), Some(Ok(())));
    // Previewd's own baseline stand-in, to a configured baseline namespace, is the one exception.
    let stand_in = |external: &str, user: &str, labelled: bool| {
        let mut admission = in_preview(json!({"type": "ExternalName", "externalName": external}), user);
        if labelled {
            admission.object["metadata"]["labels"] = json!({"app.kubernetes.io/managed-by": "previewd"});
        }
        admission
    };
    assert_eq!(admit(&previews, &stand_in("api.shop-staging.svc.cluster.local", PREVIEWD, true)), Some(Ok(())));
    for (external, user, labelled) in [
        ("api.kube-system.svc.cluster.local", PREVIEWD, true),
        ("api.shop-staging.svc.cluster.local.evil.example.com", PREVIEWD, true),
        ("api.shop-staging-x.svc.cluster.local", PREVIEWD, true),
        ("evil.example.com", PREVIEWD, true),
        ("api.shop-staging.svc.cluster.local", argo, true),
        ("api.shop-staging.svc.cluster.local", PREVIEWD, false),
    ] {
        let verdict = admit(&previews, &stand_in(external, user, labelled));
        assert!(matches!(verdict, Some(Err(_))), "{external} by {user} (labelled: {labelled}): {verdict:?}");
    }
    // Outside preview namespaces the policy does not apply.
    let elsewhere = Admission {
        namespace: Some("shop-prod".into()),
        namespace_object: namespace_named("shop-prod", false),
        ..external_name
    };
    assert_eq!(admit(&previews, &elsewhere), None);
}
