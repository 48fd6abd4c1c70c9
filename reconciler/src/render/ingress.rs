//! The preview's Ingress: one host (one label under the preview zone), a path per exposed
//! service, TLS from the wildcard certificate or cert-manager, DNS from the wildcard record or
//! external-dns.

use std::collections::BTreeMap;

use k8s_openapi::api::networking::v1::{
    HTTPIngressPath, HTTPIngressRuleValue, Ingress, IngressBackend, IngressRule, IngressServiceBackend, IngressSpec,
    IngressTLS, ServiceBackendPort,
};

use super::Preview;
use crate::config::{DnsMode, TlsMode};

/// `None` when no service is exposed.
pub(super) fn ingress(p: &Preview<'_>) -> Option<Ingress> {
    let paths: Vec<HTTPIngressPath> = p
        .services
        .iter()
        .filter_map(|s| s.expose.as_ref().map(|e| (s, e)))
        .map(|(service, expose)| HTTPIngressPath {
            path: Some(expose.path.clone()),
            path_type: "Prefix".to_owned(),
            backend: IngressBackend {
                service: Some(IngressServiceBackend {
                    name: expose.service.clone().unwrap_or_else(|| service.name.clone()),
                    port: Some(ServiceBackendPort { number: Some(i32::from(expose.port)), name: None }),
                }),
                resource: None,
            },
        })
        .collect();
    if paths.is_empty() {
        return None;
    }
    let ingress_config = &p.config.ingress;
    let mut meta = p.meta("preview", Some(&p.name));
    let annotations = meta.annotations.get_or_insert_with(BTreeMap::new);
    annotations.extend(ingress_config.annotations.clone());
    let secret_name = match ingress_config.tls {
        // No secret: the ingress controller's default certificate (the wildcard) serves the
        // host, and its key never enters a namespace that runs PR code.
        TlsMode::Wildcard => None,
        TlsMode::CertManager => {
            if let Some(issuer) = &ingress_config.cluster_issuer {
                annotations.insert("cert-manager.io/cluster-issuer".to_owned(), issuer.clone());
            }
            Some("preview-tls".to_owned())
        }
    };
    if let Some(protect) = &p.repo.protect {
        // ingress-nginx's external or basic auth (the only ingress controller supported here;
        // see docs/security.md).
        if let Some(auth) = &protect.external_auth {
            // Every request is asked of `url` first.
            annotations.insert("nginx.ingress.kubernetes.io/auth-url".to_owned(), auth.url.clone());
            if let Some(signin) = &auth.signin {
                annotations.insert("nginx.ingress.kubernetes.io/auth-signin".to_owned(), signin.clone());
            }
            if !auth.response_headers.is_empty() {
                annotations.insert(
                    "nginx.ingress.kubernetes.io/auth-response-headers".to_owned(),
                    auth.response_headers.join(","),
                );
            }
        }
        if let Some(basic) = &protect.basic_auth {
            // The htpasswd Secret, copied into the preview namespace by the controller.
            annotations.insert("nginx.ingress.kubernetes.io/auth-type".to_owned(), "basic".to_owned());
            annotations.insert("nginx.ingress.kubernetes.io/auth-secret".to_owned(), basic.secret.name.clone());
            annotations.insert("nginx.ingress.kubernetes.io/auth-secret-type".to_owned(), "auth-file".to_owned());
            let realm = basic.realm.clone().unwrap_or_else(|| "Preview".to_owned());
            annotations.insert("nginx.ingress.kubernetes.io/auth-realm".to_owned(), realm);
        }
    }
    if p.config.ttl.sleep_after.is_some() {
        // The marker changes with the state, so the object is applied again and server-side
        // apply drops the redirect once the preview wakes.
        annotations.insert("preview.previewd.io/asleep".to_owned(), p.asleep.is_some().to_string());
        if let Some(page) = &p.asleep {
            // ingress-nginx: visitors of a sleeping preview go to its page (and its wake link).
            annotations.insert("nginx.ingress.kubernetes.io/temporal-redirect".to_owned(), page.clone());
        }
    }
    if ingress_config.dns == DnsMode::ExternalDns {
        annotations.insert("external-dns.alpha.kubernetes.io/hostname".to_owned(), p.host.clone());
    }
    Some(Ingress {
        metadata: meta,
        spec: Some(IngressSpec {
            ingress_class_name: ingress_config.class_name.clone(),
            tls: Some(vec![IngressTLS { hosts: Some(vec![p.host.clone()]), secret_name }]),
            rules: Some(vec![IngressRule { host: Some(p.host.clone()), http: Some(HTTPIngressRuleValue { paths }) }]),
            ..IngressSpec::default()
        }),
        ..Ingress::default()
    })
}
