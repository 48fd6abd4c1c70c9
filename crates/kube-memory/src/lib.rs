//! An in-memory Kubernetes API for tests, served as a `tower::Service` over HTTP requests, so
//! any version of any client can talk to it (`kube::Client::new(api.service(), "default")`).
//!
//! It does what a controller's tests need from an API server: get, list and watch with label
//! and field selectors; create, replace, merge and JSON patches, server-side apply per field
//! manager (a field the manager stops applying is removed); status subresources; resource
//! versions, generations and optimistic concurrency; finalizers and deletion timestamps;
//! namespace teardown and garbage collection by owner reference. It also records every request
//! (to count what a reconcile costs) and fails chosen requests on demand.
//!
//! It does not validate objects against schemas, apply defaults, or run admission.
#![forbid(unsafe_code)]

mod apply;
mod path;
mod registry;
mod selector;
mod store;

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};

use bytes::Bytes;
use futures::StreamExt;
use http::{Method, Request, Response, StatusCode};
use http_body::{Body, Frame};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use serde_json::{Value, json};
use tokio_stream::wrappers::UnboundedReceiverStream;

pub use registry::{Registry, ResourceType};
pub use selector::{FieldSelector, LabelSelector};
use store::{ApiError, Store, Watch};

/// One request the API received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub query: String,
    /// As RBAC names it: get, list, watch, create, update, patch, delete.
    pub verb: String,
    /// `group/plural[/subresource]` (`""` group for the core API), empty when unknown.
    pub resource: String,
}

impl Recorded {
    /// Whether the request changes state.
    pub fn is_write(&self) -> bool {
        matches!(self.verb.as_str(), "create" | "update" | "patch" | "delete" | "deletecollection")
    }
}

type Matcher = Box<dyn Fn(&Recorded) -> bool + Send>;

struct Fault {
    matches: Matcher,
    status: u16,
    remaining: usize,
}

struct Inner {
    store: Store,
    requests: Vec<Recorded>,
    faults: Vec<Fault>,
    /// Requests answered by a fault so far.
    injected: usize,
}

/// The API. Clones share one state.
#[derive(Clone)]
pub struct MemoryApi {
    inner: Arc<Mutex<Inner>>,
}

impl std::fmt::Debug for MemoryApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryApi").finish_non_exhaustive()
    }
}

impl Default for MemoryApi {
    fn default() -> Self {
        MemoryApi::new(Registry::core())
    }
}

fn lock(inner: &Mutex<Inner>) -> MutexGuard<'_, Inner> {
    // A panicking test thread must not poison the API for the others.
    inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A response body: a whole document, or a watch's stream of lines.
pub type ApiBody = BoxBody<Bytes, Infallible>;

fn respond(status: u16, body: &Value) -> Response<ApiBody> {
    let mut response = Response::new(Full::new(Bytes::from(body.to_string())).boxed());
    *response.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    response.headers_mut().insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("application/json"));
    response
}

fn error(err: &ApiError) -> Response<ApiBody> {
    respond(err.code, &err.status())
}

fn query_param(query: &str, name: &str) -> Option<String> {
    form_pairs(query).into_iter().find(|(k, _)| k == name).map(|(_, v)| v)
}

fn form_pairs(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (decode(k), decode(v))
        })
        .collect()
}

/// Percent-decoding of a query component (`+` is a space).
fn decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok().and_then(|h| u8::from_str_radix(h, 16).ok());
                match hex {
                    Some(b) => {
                        out.push(b);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl MemoryApi {
    /// An empty API serving `registry`'s resource types.
    pub fn new(registry: Registry) -> MemoryApi {
        MemoryApi {
            inner: Arc::new(Mutex::new(Inner {
                store: Store::new(registry),
                requests: Vec::new(),
                faults: Vec::new(),
                injected: 0,
            })),
        }
    }

    /// Serves one more resource type (e.g. a custom resource).
    pub fn with_resource(self, resource: ResourceType) -> MemoryApi {
        lock(&self.inner).store.registry.add(resource);
        self
    }

    /// The service a client sends its requests to.
    pub fn service(&self) -> MemoryService {
        MemoryService { api: self.clone() }
    }

    /// Every request received so far, oldest first.
    pub fn requests(&self) -> Vec<Recorded> {
        lock(&self.inner).requests.clone()
    }

    /// Forgets the recorded requests.
    pub fn clear_requests(&self) {
        lock(&self.inner).requests.clear();
    }

    /// Answers the next `times` requests that `matches` selects with `status` (a `Status` body).
    pub fn fail(&self, matches: impl Fn(&Recorded) -> bool + Send + 'static, status: u16, times: usize) {
        lock(&self.inner).faults.push(Fault { matches: Box::new(matches), status, remaining: times });
    }

    /// Stops every failure set with [`MemoryApi::fail`].
    pub fn heal(&self) {
        lock(&self.inner).faults.clear();
    }

    /// How many requests were answered by a failure so far.
    pub fn injected(&self) -> usize {
        lock(&self.inner).injected
    }

    /// Reads an object directly (no request is recorded).
    pub fn object(&self, group: &str, plural: &str, namespace: Option<&str>, name: &str) -> Option<Value> {
        let inner = lock(&self.inner);
        let resource = inner.store.registry.find_any(group, plural)?.clone();
        inner.store.get(&resource, namespace, name).ok()
    }

    /// Creates or replaces an object directly, as another controller would (no request is
    /// recorded). Its `apiVersion` and `kind` choose the resource type.
    pub fn put(&self, object: Value) -> Result<Value, String> {
        let mut inner = lock(&self.inner);
        let api_version = object["apiVersion"].as_str().unwrap_or("");
        let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
        let kind = object["kind"].as_str().unwrap_or("");
        let resource = inner
            .store
            .registry
            .by_kind(group, version, kind)
            .cloned()
            .ok_or_else(|| format!("unknown kind {kind}"))?;
        let namespace = object["metadata"]["namespace"].as_str().map(str::to_owned);
        let name = object["metadata"]["name"].as_str().unwrap_or("").to_owned();
        let store = &mut inner.store;
        let result = match store.get(&resource, namespace.as_deref(), &name) {
            Ok(live) => {
                let mut next = object.clone();
                next["metadata"]["resourceVersion"] = live["metadata"]["resourceVersion"].clone();
                store.replace(&resource, namespace.as_deref(), &name, next.clone(), false).and_then(|written| {
                    if resource.status_subresource && object.get("status").is_some() {
                        store.replace(&resource, namespace.as_deref(), &name, next, true)
                    } else {
                        Ok(written)
                    }
                })
            }
            Err(_) => store.create(&resource, namespace.as_deref(), object.clone()).and_then(|created| {
                if resource.status_subresource && object.get("status").is_some() {
                    store.replace(&resource, namespace.as_deref(), &name, object.clone(), true)
                } else {
                    Ok(created)
                }
            }),
        };
        result.map_err(|e| e.message)
    }

    /// Deletes an object directly, as a user or another controller would.
    pub fn remove(&self, group: &str, plural: &str, namespace: Option<&str>, name: &str) -> Result<Value, String> {
        let mut inner = lock(&self.inner);
        let resource = inner.store.registry.find_any(group, plural).cloned().ok_or("unknown resource")?;
        inner.store.delete(&resource, namespace, name).map_err(|e| e.message)
    }

    fn handle(&self, method: &Method, uri: &http::Uri, content_type: &str, body: &[u8]) -> Response<ApiBody> {
        let query = uri.query().unwrap_or("").to_owned();
        let mut inner = lock(&self.inner);
        let target = path::parse(&inner.store.registry, uri.path());
        let watching = matches!(query_param(&query, "watch").as_deref(), Some("true" | "1"));
        let verb = match (method.as_str(), target.as_ref().and_then(|t| t.name.as_ref())) {
            ("GET", Some(_)) => "get",
            ("GET", None) if watching => "watch",
            ("GET", None) => "list",
            ("POST", _) => "create",
            ("PUT", _) => "update",
            ("PATCH", _) => "patch",
            ("DELETE", Some(_)) => "delete",
            ("DELETE", None) => "deletecollection",
            _ => "unknown",
        };
        let resource = target.as_ref().map_or(String::new(), |t| {
            let base = format!("{}/{}", t.resource.group, t.resource.plural);
            match &t.subresource {
                Some(sub) => format!("{base}/{sub}"),
                None => base,
            }
        });
        let recorded = Recorded {
            method: method.to_string(),
            path: uri.path().to_owned(),
            query: query.clone(),
            verb: verb.to_owned(),
            resource,
        };
        inner.requests.push(recorded.clone());
        if let Some(fault) = inner.faults.iter_mut().find(|f| f.remaining > 0 && (f.matches)(&recorded)) {
            fault.remaining -= 1;
            let status = fault.status;
            inner.injected += 1;
            let reason = match status {
                409 => "Conflict",
                429 => "TooManyRequests",
                _ => "InternalError",
            };
            return error(&ApiError::new(status, reason, format!("injected {status} for {}", uri.path())));
        }
        // The version endpoint, as health checks and `kubectl version` ask it.
        if target.is_none() && method == Method::GET && uri.path() == "/version" {
            let version = serde_json::json!({
                "major": "1", "minor": "33", "gitVersion": "v1.33.0-kube-memory", "gitCommit": "",
                "gitTreeState": "clean", "buildDate": "2025-04-23T00:00:00Z", "goVersion": "go1.24",
                "compiler": "gc", "platform": "linux/amd64"
            });
            return respond(200, &version);
        }
        let Some(target) = target else {
            return error(&ApiError::new(
                404,
                "NotFound",
                format!("the server could not find the requested resource: {}", uri.path()),
            ));
        };
        let status = target.subresource.as_deref() == Some("status");
        if target.subresource.as_deref().is_some_and(|s| s != "status") {
            return error(&ApiError::new(404, "NotFound", "subresource not served"));
        }
        let ns = target.namespace.as_deref();
        let parsed: Result<Value, ApiError> = if body.is_empty() {
            Ok(Value::Null)
        } else {
            serde_json::from_slice(body).map_err(|e| ApiError::new(400, "BadRequest", format!("body: {e}")))
        };
        let store = &mut inner.store;
        let result = match (verb, target.name.as_deref()) {
            ("get", Some(name)) => store.get(&target.resource, ns, name),
            ("list", _) | ("watch", _) => {
                let labels = LabelSelector::parse(&query_param(&query, "labelSelector").unwrap_or_default());
                let fields = FieldSelector::parse(&query_param(&query, "fieldSelector").unwrap_or_default());
                let (labels, fields) = match (labels, fields) {
                    (Ok(l), Ok(f)) => (l, f),
                    (Err(e), _) | (_, Err(e)) => return error(&ApiError::new(400, "BadRequest", e)),
                };
                if verb == "watch" {
                    let (sender, receiver) = tokio::sync::mpsc::unbounded_channel();
                    let since = query_param(&query, "resourceVersion")
                        .and_then(|rv| rv.parse::<u64>().ok())
                        .filter(|rv| *rv > 0);
                    let watch = Watch {
                        group: target.resource.group.clone(),
                        plural: target.resource.plural.clone(),
                        namespace: ns.map(str::to_owned),
                        labels,
                        fields,
                        sender,
                    };
                    store.watch(watch, since);
                    let lines =
                        UnboundedReceiverStream::new(receiver).map(|line| Ok::<_, Infallible>(Frame::data(line)));
                    let mut response = Response::new(BodyExt::boxed(StreamBody::new(lines)));
                    response
                        .headers_mut()
                        .insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("application/json"));
                    return response;
                }
                let items = store.list(&target.resource, ns, &labels, &fields);
                Ok(json!({
                    "apiVersion": target.resource.api_version(),
                    "kind": format!("{}List", target.resource.kind),
                    "metadata": {"resourceVersion": store.revision().to_string()},
                    "items": items,
                }))
            }
            ("create", None) => parsed.and_then(|object| store.create(&target.resource, ns, object)),
            ("update", Some(name)) => {
                parsed.and_then(|object| store.replace(&target.resource, ns, name, object, status))
            }
            ("patch", Some(name)) => parsed.and_then(|patch| {
                if content_type.starts_with("application/apply-patch") {
                    let manager = query_param(&query, "fieldManager").unwrap_or_default();
                    if manager.is_empty() {
                        return Err(ApiError::new(422, "Invalid", "fieldManager is required for apply requests"));
                    }
                    store.apply(&target.resource, ns, name, &manager, &patch, status)
                } else {
                    store.patch(&target.resource, ns, name, content_type, &patch, status)
                }
            }),
            ("delete", Some(name)) => store.delete(&target.resource, ns, name),
            _ => Err(ApiError::new(405, "MethodNotAllowed", format!("{method} is not supported here"))),
        };
        match result {
            Ok(object) => respond(if verb == "create" { 201 } else { 200 }, &object),
            Err(err) => error(&err),
        }
    }
}

/// The `tower::Service` face of a [`MemoryApi`].
#[derive(Clone)]
pub struct MemoryService {
    api: MemoryApi,
}

impl std::fmt::Debug for MemoryService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryService").finish_non_exhaustive()
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl<B> tower_service::Service<Request<B>> for MemoryService
where
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    type Response = Response<ApiBody>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Response<ApiBody>, BoxError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let api = self.api.clone();
        Box::pin(async move {
            let (parts, body) = request.into_parts();
            let bytes = body.collect().await.map_err(Into::into)?.to_bytes();
            let content_type =
                parts.headers.get(http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
            Ok(api.handle(&parts.method, &parts.uri, &content_type, &bytes))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_components_are_decoded() {
        assert_eq!(decode("a%3Db%2Cc+d"), "a=b,c d");
        assert_eq!(decode("100%"), "100%");
        assert_eq!(query_param("labelSelector=app%3Dweb&watch=true", "labelSelector").as_deref(), Some("app=web"));
    }
}
