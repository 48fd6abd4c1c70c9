//! A preview cluster's connection, read from the Secret that registers it: an Argo CD cluster
//! Secret (`server`, and `config` with a bearer token or client certificate), or a kubeconfig.
//!
//! Only credentials written inline are accepted. Whoever can write such a Secret could
//! otherwise make Previewd run a command (`exec`, `auth-provider`) or read a file of its own
//! pod (`tokenFile`, certificate paths: its service account token) and send it to any server.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use kube::config::Kubeconfig;
use serde::Deserialize;
use serde_json::{Value, json};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegistrationError {
    #[error("the Secret has no {0:?}")]
    Missing(String),
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
    #[error("{0} is not accepted: Previewd takes only inline credentials (a token or a client certificate)")]
    NotInline(String),
}

fn invalid(field: &str, message: impl ToString) -> RegistrationError {
    RegistrationError::Invalid { field: field.to_owned(), message: message.to_string() }
}

/// How to reach a registered cluster.
#[derive(Debug, Clone)]
pub struct Registration {
    /// One cluster, one user, one context.
    pub kubeconfig: Kubeconfig,
    /// The API server's URL.
    pub server: String,
}

fn text<'a>(data: &'a BTreeMap<String, ByteString>, key: &str) -> Result<&'a str, RegistrationError> {
    let bytes = data.get(key).ok_or_else(|| RegistrationError::Missing(key.to_owned()))?;
    std::str::from_utf8(&bytes.0).map_err(|_| invalid(key, "not UTF-8"))
}

/// The `config` of an Argo CD cluster Secret (argo-cd `ClusterConfig`).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ArgoClusterConfig {
    username: Option<String>,
    password: Option<String>,
    bearer_token: Option<String>,
    #[serde(default)]
    tls_client_config: ArgoTls,
    aws_auth_config: Option<Value>,
    exec_provider_config: Option<Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ArgoTls {
    #[serde(default)]
    insecure: bool,
    server_name: Option<String>,
    /// Base64 PEM, as a kubeconfig's `*-data` fields.
    ca_data: Option<String>,
    cert_data: Option<String>,
    key_data: Option<String>,
}

/// Reads an Argo CD cluster Secret's data.
pub fn from_argocd_secret(data: &BTreeMap<String, ByteString>) -> Result<Registration, RegistrationError> {
    let server = text(data, "server")?.trim().to_owned();
    let config: ArgoClusterConfig = match data.get("config") {
        Some(_) => serde_json::from_str(text(data, "config")?).map_err(|e| invalid("config", e))?,
        None => ArgoClusterConfig::default(),
    };
    if config.aws_auth_config.is_some() {
        return Err(RegistrationError::NotInline("config.awsAuthConfig".into()));
    }
    if config.exec_provider_config.is_some() {
        return Err(RegistrationError::NotInline("config.execProviderConfig".into()));
    }
    let tls = &config.tls_client_config;
    let kubeconfig = json!({
        "clusters": [{"name": "preview", "cluster": {
            "server": server,
            "insecure-skip-tls-verify": tls.insecure.then_some(true),
            "certificate-authority-data": tls.ca_data,
            "tls-server-name": tls.server_name,
        }}],
        "users": [{"name": "previewd", "user": {
            "token": config.bearer_token,
            "username": config.username,
            "password": config.password,
            "client-certificate-data": tls.cert_data,
            "client-key-data": tls.key_data,
        }}],
        "contexts": [{"name": "preview", "context": {"cluster": "preview", "user": "previewd"}}],
        "current-context": "preview",
    });
    let kubeconfig: Kubeconfig = serde_json::from_value(without_nulls(kubeconfig)).map_err(|e| invalid("config", e))?;
    checked(kubeconfig, "server")
}

/// Reads a kubeconfig (its current context).
pub fn from_kubeconfig(text: &str) -> Result<Registration, RegistrationError> {
    let kubeconfig = Kubeconfig::from_yaml(text).map_err(|e| invalid("kubeconfig", e))?;
    checked(kubeconfig, "kubeconfig")
}

/// The current context's cluster and user, with nothing read from a file or a command.
fn checked(kubeconfig: Kubeconfig, field: &str) -> Result<Registration, RegistrationError> {
    let current = kubeconfig.current_context.clone().ok_or_else(|| invalid(field, "no current-context"))?;
    let context = kubeconfig
        .contexts
        .iter()
        .find(|c| c.name == current)
        .and_then(|c| c.context.clone())
        .ok_or_else(|| invalid(field, format!("no context {current:?}")))?;
    let cluster = kubeconfig
        .clusters
        .iter()
        .find(|c| c.name == context.cluster)
        .and_then(|c| c.cluster.clone())
        .ok_or_else(|| invalid(field, format!("no cluster {:?}", context.cluster)))?;
    let server = cluster.server.clone().unwrap_or_default();
    match server.parse::<http::Uri>() {
        Ok(uri) if matches!(uri.scheme_str(), Some("https" | "http")) && uri.host().is_some() => {}
        _ => return Err(invalid(field, format!("{server:?} is not an http(s) URL"))),
    }
    if cluster.certificate_authority.is_some() {
        return Err(RegistrationError::NotInline("certificate-authority (a file)".into()));
    }
    if let Some(user) = &context.user {
        let user = kubeconfig.auth_infos.iter().find(|u| &u.name == user).and_then(|u| u.auth_info.as_ref());
        if let Some(user) = user {
            for (set, what) in [
                (user.exec.is_some(), "exec (a command)"),
                (user.auth_provider.is_some(), "auth-provider"),
                (user.token_file.is_some(), "tokenFile (a file)"),
                (user.client_certificate.is_some(), "client-certificate (a file)"),
                (user.client_key.is_some(), "client-key (a file)"),
            ] {
                if set {
                    return Err(RegistrationError::NotInline(what.to_owned()));
                }
            }
        }
    }
    Ok(Registration { kubeconfig, server })
}

/// Drops `null` members (absent fields stay absent in the kubeconfig).
fn without_nulls(value: Value) -> Value {
    match value {
        Value::Object(map) => {
            Value::Object(map.into_iter().filter(|(_, v)| !v.is_null()).map(|(k, v)| (k, without_nulls(v))).collect())
        }
        Value::Array(items) => Value::Array(items.into_iter().map(without_nulls).collect()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(pairs: &[(&str, &str)]) -> BTreeMap<String, ByteString> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), ByteString(v.as_bytes().to_vec()))).collect()
    }

    #[test]
    fn an_argocd_cluster_secret_gives_its_server_token_and_ca() {
        let config = r#"{"bearerToken":"t0k3n","tlsClientConfig":{"insecure":false,"caData":"Q0E="}}"#;
        let got =
            from_argocd_secret(&data(&[("name", "east"), ("server", "https://east.example.com"), ("config", config)]))
                .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(got.server, "https://east.example.com");
        let cluster = got.kubeconfig.clusters[0].cluster.clone().unwrap_or_default();
        assert_eq!(cluster.certificate_authority_data.as_deref(), Some("Q0E="));
        assert_eq!(cluster.insecure_skip_tls_verify, None);
        let user = got.kubeconfig.auth_infos[0].auth_info.clone().unwrap_or_default();
        assert!(user.token.is_some() && user.exec.is_none());
    }

    #[test]
    fn commands_files_and_cloud_plugins_are_refused() {
        let aws = r#"{"awsAuthConfig":{"clusterName":"x"}}"#;
        let exec = r#"{"execProviderConfig":{"command":"sh"}}"#;
        for config in [aws, exec] {
            let got = from_argocd_secret(&data(&[("server", "https://east.example.com"), ("config", config)]));
            assert!(matches!(got, Err(RegistrationError::NotInline(_))), "{got:?}");
        }
        let kubeconfig = |user: &str| {
            format!(
                "apiVersion: v1\nkind: Config\ncurrent-context: c\nclusters:\n- name: k\n  cluster: {{server: https://k.example.com}}\n\
                 contexts:\n- name: c\n  context: {{cluster: k, user: u}}\nusers:\n- name: u\n  user: {user}\n"
            )
        };
        for user in [
            "{exec: {command: sh, apiVersion: client.authentication.k8s.io/v1}}",
            "{tokenFile: /var/run/secrets/kubernetes.io/serviceaccount/token}",
            "{client-certificate: /etc/cert, client-key: /etc/key}",
        ] {
            let got = from_kubeconfig(&kubeconfig(user));
            assert!(matches!(got, Err(RegistrationError::NotInline(_))), "{user}: {got:?}");
        }
        let fine = from_kubeconfig(&kubeconfig("{token: abc}")).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(fine.server, "https://k.example.com");
    }

    #[test]
    fn a_secret_without_a_server_or_with_a_bad_one_says_so() {
        assert_eq!(from_argocd_secret(&data(&[])).err(), Some(RegistrationError::Missing("server".into())));
        let got = from_argocd_secret(&data(&[("server", "east.example.com")]));
        assert!(matches!(got, Err(RegistrationError::Invalid { .. })), "{got:?}");
        let got = from_argocd_secret(&data(&[("server", "https://e.example.com"), ("config", "{not json")]));
        assert!(matches!(got, Err(RegistrationError::Invalid { .. })), "{got:?}");
        assert!(from_kubeconfig("clusters: [").is_err());
    }
}
