//! Kubernetes REST paths: `/api/v1/...` and `/apis/{group}/{version}/...`, namespaced or not,
//! with an optional name and subresource.

use crate::registry::{Registry, ResourceType};

/// What a request path addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Target {
    pub(crate) resource: ResourceType,
    /// `None`: cluster-scoped, or a list across every namespace.
    pub(crate) namespace: Option<String>,
    pub(crate) name: Option<String>,
    pub(crate) subresource: Option<String>,
}

/// Parses `path` against the registered resources; `None` for anything unknown.
pub(crate) fn parse(registry: &Registry, path: &str) -> Option<Target> {
    let segments: Vec<&str> = path.trim_matches('/').split('/').filter(|s| !s.is_empty()).collect();
    let (group, version, rest) = match segments.as_slice() {
        ["api", version, rest @ ..] => ("", *version, rest),
        ["apis", group, version, rest @ ..] => (*group, *version, rest),
        _ => return None,
    };
    // `namespaces/{ns}/{resource}/...` when {resource} is a namespaced kind of this group;
    // otherwise the path is a cluster-scoped resource (the Namespace object itself included).
    if let ["namespaces", namespace, plural, tail @ ..] = rest
        && let Some(resource) = registry.find(group, version, plural).filter(|r| r.namespaced)
    {
        return Some(Target {
            resource: resource.clone(),
            namespace: Some((*namespace).to_owned()),
            name: tail.first().map(|s| (*s).to_owned()),
            subresource: tail.get(1).map(|s| (*s).to_owned()),
        });
    }
    let (plural, tail) = rest.split_first()?;
    let resource = registry.find(group, version, plural)?.clone();
    if resource.namespaced && !tail.is_empty() {
        return None; // a namespaced kind addressed without its namespace
    }
    Some(Target {
        resource,
        namespace: None,
        name: tail.first().map(|s| (*s).to_owned()),
        subresource: tail.get(1).map(|s| (*s).to_owned()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registry() -> Registry {
        let mut r = Registry::default();
        r.add(ResourceType::new("", "v1", "namespaces", "Namespace", false));
        r.add(ResourceType::new("", "v1", "resourcequotas", "ResourceQuota", true));
        r.add(ResourceType::new("example.com", "v1", "widgets", "Widget", false).with_status());
        r
    }

    #[test]
    fn paths_address_what_kube_addresses() {
        let r = registry();
        let t = parse(&r, "/api/v1/namespaces/preview-a").unwrap();
        assert_eq!(
            (t.resource.plural.as_str(), t.namespace, t.name.as_deref()),
            ("namespaces", None, Some("preview-a"))
        );
        let t = parse(&r, "/api/v1/namespaces/preview-a/resourcequotas/q").unwrap();
        assert_eq!(
            (t.resource.plural.as_str(), t.namespace.as_deref(), t.name.as_deref()),
            ("resourcequotas", Some("preview-a"), Some("q"))
        );
        let t = parse(&r, "/api/v1/resourcequotas").unwrap();
        assert_eq!((t.namespace, t.name), (None, None), "a list across namespaces");
        let t = parse(&r, "/api/v1/namespaces/preview-a/status").unwrap();
        assert_eq!((t.name.as_deref(), t.subresource.as_deref()), (Some("preview-a"), Some("status")));
        let t = parse(&r, "/apis/example.com/v1/widgets/w/status").unwrap();
        assert_eq!((t.name.as_deref(), t.subresource.as_deref()), (Some("w"), Some("status")));
        assert!(parse(&r, "/apis/example.com/v1/gadgets").is_none());
        assert!(parse(&r, "/healthz").is_none());
    }
}
