//! The resource types the API serves.

/// One resource type: where it lives in the API and how it behaves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceType {
    pub group: String,
    pub version: String,
    pub plural: String,
    pub kind: String,
    pub namespaced: bool,
    /// Has a `/status` subresource: writes to the object leave `status` alone, and `status` is
    /// written only through the subresource.
    pub status_subresource: bool,
}

impl ResourceType {
    pub fn new(group: &str, version: &str, plural: &str, kind: &str, namespaced: bool) -> ResourceType {
        ResourceType {
            group: group.to_owned(),
            version: version.to_owned(),
            plural: plural.to_owned(),
            kind: kind.to_owned(),
            namespaced,
            status_subresource: false,
        }
    }

    pub fn with_status(mut self) -> ResourceType {
        self.status_subresource = true;
        self
    }

    pub fn api_version(&self) -> String {
        if self.group.is_empty() { self.version.clone() } else { format!("{}/{}", self.group, self.version) }
    }
}

/// Every resource type the API knows.
#[derive(Debug, Clone, Default)]
pub struct Registry {
    types: Vec<ResourceType>,
}

impl Registry {
    pub fn add(&mut self, resource: ResourceType) {
        self.types.retain(|r| !(r.group == resource.group && r.plural == resource.plural));
        self.types.push(resource);
    }

    pub fn find(&self, group: &str, version: &str, plural: &str) -> Option<&ResourceType> {
        self.types.iter().find(|r| r.group == group && r.version == version && r.plural == plural)
    }

    /// The type of `plural` in `group`, whatever its version.
    pub fn find_any(&self, group: &str, plural: &str) -> Option<&ResourceType> {
        self.types.iter().find(|r| r.group == group && r.plural == plural)
    }

    pub fn by_kind(&self, group: &str, version: &str, kind: &str) -> Option<&ResourceType> {
        self.types.iter().find(|r| r.group == group && r.version == version && r.kind == kind)
    }

    /// The core kinds a controller commonly touches.
    pub fn core() -> Registry {
        let mut r = Registry::default();
        for (group, version, plural, kind, namespaced, status) in [
            ("", "v1", "namespaces", "Namespace", false, true),
            ("", "v1", "configmaps", "ConfigMap", true, false),
            ("", "v1", "secrets", "Secret", true, false),
            ("", "v1", "services", "Service", true, true),
            ("", "v1", "pods", "Pod", true, true),
            ("", "v1", "resourcequotas", "ResourceQuota", true, true),
            ("", "v1", "limitranges", "LimitRange", true, false),
            ("", "v1", "serviceaccounts", "ServiceAccount", true, false),
            ("", "v1", "events", "Event", true, false),
            ("events.k8s.io", "v1", "events", "Event", true, false),
            ("networking.k8s.io", "v1", "networkpolicies", "NetworkPolicy", true, false),
            ("networking.k8s.io", "v1", "ingresses", "Ingress", true, true),
            ("coordination.k8s.io", "v1", "leases", "Lease", true, false),
            ("apps", "v1", "deployments", "Deployment", true, true),
            ("batch", "v1", "jobs", "Job", true, true),
        ] {
            let resource = ResourceType::new(group, version, plural, kind, namespaced);
            r.add(if status { resource.with_status() } else { resource });
        }
        r
    }
}
