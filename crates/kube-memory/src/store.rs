//! The objects, their versions and history, and the rules of writing them: resource versions,
//! generations, status subresources, finalizers and deletion timestamps, namespace teardown and
//! garbage collection by owner reference. Watches are fed from here.

use std::collections::{BTreeMap, HashMap};

use bytes::Bytes;
use serde_json::{Value, json};
use tokio::sync::mpsc::UnboundedSender;

use crate::apply;
use crate::registry::{Registry, ResourceType};
use crate::selector::{FieldSelector, LabelSelector};

/// (group, plural, namespace or "", name).
pub(crate) type Key = (String, String, String, String);

fn key(resource: &ResourceType, namespace: Option<&str>, name: &str) -> Key {
    (resource.group.clone(), resource.plural.clone(), namespace.unwrap_or("").to_owned(), name.to_owned())
}

/// An API error, answered as a `Status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ApiError {
    pub(crate) code: u16,
    pub(crate) reason: &'static str,
    pub(crate) message: String,
}

impl ApiError {
    pub(crate) fn new(code: u16, reason: &'static str, message: impl Into<String>) -> ApiError {
        ApiError { code, reason, message: message.into() }
    }

    fn not_found(resource: &ResourceType, name: &str) -> ApiError {
        ApiError::new(404, "NotFound", format!("{}.{} \"{name}\" not found", resource.plural, resource.group))
    }

    pub(crate) fn status(&self) -> Value {
        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
               "message": self.message, "reason": self.reason, "code": self.code})
    }
}

/// A change, as a watch reports it.
#[derive(Debug, Clone)]
struct Change {
    revision: u64,
    kind: &'static str,
    key: Key,
    object: Value,
}

/// An open watch: what it selects, and where its events go (one JSON document per line).
#[derive(Debug)]
pub(crate) struct Watch {
    pub(crate) group: String,
    pub(crate) plural: String,
    pub(crate) namespace: Option<String>,
    pub(crate) labels: LabelSelector,
    pub(crate) fields: FieldSelector,
    pub(crate) sender: UnboundedSender<Bytes>,
}

impl Watch {
    fn selects(&self, key: &Key, object: &Value) -> bool {
        self.group == key.0
            && self.plural == key.1
            && self.namespace.as_ref().is_none_or(|ns| *ns == key.2)
            && self.labels.matches(object)
            && self.fields.matches(object)
    }

    fn send(&self, kind: &str, object: &Value) -> bool {
        let mut line = json!({"type": kind, "object": object}).to_string();
        line.push('\n');
        self.sender.send(Bytes::from(line)).is_ok()
    }
}

#[derive(Debug, Default)]
pub(crate) struct Store {
    pub(crate) registry: Registry,
    objects: BTreeMap<Key, Value>,
    /// The last configuration each field manager applied: (object, manager, status?).
    applied: HashMap<(Key, String, bool), Value>,
    revision: u64,
    uids: u64,
    history: Vec<Change>,
    watches: Vec<Watch>,
}

fn now() -> String {
    chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// The object without what never counts as a change of its desired state.
fn spec_part(object: &Value) -> Value {
    let mut part = object.clone();
    if let Some(map) = part.as_object_mut() {
        map.remove("metadata");
        map.remove("status");
    }
    part
}

/// The object without the fields the server changes on every write.
fn comparable(object: &Value) -> Value {
    let mut part = object.clone();
    if let Some(meta) = part.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("resourceVersion");
        meta.remove("managedFields");
    }
    part
}

fn finalizers(object: &Value) -> bool {
    object["metadata"]["finalizers"].as_array().is_some_and(|f| !f.is_empty())
}

fn deleting(object: &Value) -> bool {
    !object["metadata"]["deletionTimestamp"].is_null()
}

impl Store {
    pub(crate) fn new(registry: Registry) -> Store {
        Store { registry, ..Store::default() }
    }

    pub(crate) fn revision(&self) -> u64 {
        self.revision
    }

    pub(crate) fn get(&self, resource: &ResourceType, namespace: Option<&str>, name: &str) -> Result<Value, ApiError> {
        self.objects.get(&key(resource, namespace, name)).cloned().ok_or_else(|| ApiError::not_found(resource, name))
    }

    pub(crate) fn list(
        &self,
        resource: &ResourceType,
        namespace: Option<&str>,
        labels: &LabelSelector,
        fields: &FieldSelector,
    ) -> Vec<Value> {
        self.objects
            .iter()
            .filter(|(k, _)| k.0 == resource.group && k.1 == resource.plural)
            .filter(|(k, _)| namespace.is_none_or(|ns| k.2 == ns))
            .filter(|(_, o)| labels.matches(o) && fields.matches(o))
            .map(|(_, o)| o.clone())
            .collect()
    }

    /// Opens a watch from `since` (a resource version: changes after it are replayed; `None`
    /// replays the current objects as ADDED).
    pub(crate) fn watch(&mut self, watch: Watch, since: Option<u64>) {
        match since {
            Some(revision) => {
                for change in self.history.iter().filter(|c| c.revision > revision) {
                    if watch.selects(&change.key, &change.object) {
                        watch.send(change.kind, &change.object);
                    }
                }
            }
            None => {
                for (k, object) in &self.objects {
                    if watch.selects(k, object) {
                        watch.send("ADDED", object);
                    }
                }
            }
        }
        self.watches.push(watch);
    }

    fn record(&mut self, kind: &'static str, key: Key, object: Value) {
        self.watches.retain(|w| !w.selects(&key, &object) || w.send(kind, &object));
        self.history.push(Change { revision: self.revision, kind, key, object });
    }

    fn next_revision(&mut self, object: &mut Value) {
        self.revision += 1;
        object["metadata"]["resourceVersion"] = Value::from(self.revision.to_string());
    }

    /// Stores `object` as the new state of `key` (ADDED or MODIFIED), then removes it if it is
    /// being deleted and nothing holds it any more.
    fn commit(&mut self, key: Key, mut object: Value) -> Value {
        let kind = if self.objects.contains_key(&key) { "MODIFIED" } else { "ADDED" };
        self.next_revision(&mut object);
        self.objects.insert(key.clone(), object.clone());
        self.record(kind, key.clone(), object.clone());
        if deleting(&object) && !self.held(&key, &object) {
            self.remove(&key);
        }
        object
    }

    /// Whether a deleted object must stay: finalizers, or a namespace's remaining content.
    fn held(&self, k: &Key, object: &Value) -> bool {
        let is_namespace = k.0.is_empty() && k.1 == "namespaces";
        finalizers(object) || (is_namespace && self.objects.keys().any(|c| c.2 == k.3))
    }

    fn typed(resource: &ResourceType, mut object: Value) -> Value {
        if let Some(map) = object.as_object_mut() {
            map.insert("apiVersion".into(), Value::from(resource.api_version()));
            map.insert("kind".into(), Value::from(resource.kind.clone()));
        }
        object
    }

    pub(crate) fn create(
        &mut self,
        resource: &ResourceType,
        namespace: Option<&str>,
        object: Value,
    ) -> Result<Value, ApiError> {
        let mut object = Store::typed(resource, apply::intent(&object));
        if !object["metadata"].is_object() {
            object["metadata"] = json!({});
        }
        let name = match object["metadata"]["name"].as_str() {
            Some(name) if !name.is_empty() => name.to_owned(),
            _ => match object["metadata"]["generateName"].as_str() {
                Some(prefix) => {
                    self.uids += 1;
                    format!("{prefix}{:05x}", self.uids)
                }
                None => return Err(ApiError::new(422, "Invalid", "metadata.name: Required value")),
            },
        };
        let k = key(resource, namespace, &name);
        if self.objects.contains_key(&k) {
            return Err(ApiError::new(409, "AlreadyExists", format!("{} \"{name}\" already exists", resource.plural)));
        }
        if let Some(ns) = namespace {
            let namespaces = ResourceType::new("", "v1", "namespaces", "Namespace", false);
            if self.objects.get(&key(&namespaces, None, ns)).is_some_and(deleting) {
                return Err(ApiError::new(
                    403,
                    "Forbidden",
                    format!("unable to create new content in namespace {ns} because it is being terminated"),
                ));
            }
        }
        self.uids += 1;
        let meta = &mut object["metadata"];
        meta["name"] = Value::from(name);
        if let Some(ns) = namespace {
            meta["namespace"] = Value::from(ns);
        }
        meta["uid"] = Value::from(format!("00000000-0000-4000-8000-{:012x}", self.uids));
        meta["creationTimestamp"] = Value::from(now());
        meta["generation"] = Value::from(1);
        if let Some(map) = meta.as_object_mut() {
            map.remove("deletionTimestamp");
        }
        if resource.status_subresource
            && let Some(map) = object.as_object_mut()
        {
            map.remove("status");
        }
        Ok(self.commit(k, object))
    }

    /// Writes `next` over the live object, as the main resource or its status subresource.
    fn write(&mut self, resource: &ResourceType, k: Key, live: &Value, next: Value, status: bool) -> Value {
        let mut next = Store::typed(resource, next);
        // Server-owned metadata stays the server's.
        for field in ["uid", "creationTimestamp", "deletionTimestamp", "generation", "name", "namespace"] {
            match live["metadata"].get(field) {
                Some(value) => next["metadata"][field] = value.clone(),
                None => {
                    if let Some(meta) = next["metadata"].as_object_mut() {
                        meta.remove(field);
                    }
                }
            }
        }
        if resource.status_subresource {
            if status {
                let new_status = next.get("status").cloned();
                next = live.clone();
                match new_status {
                    Some(s) => next["status"] = s,
                    None => {
                        if let Some(map) = next.as_object_mut() {
                            map.remove("status");
                        }
                    }
                }
            } else {
                match live.get("status") {
                    Some(s) => next["status"] = s.clone(),
                    None => {
                        if let Some(map) = next.as_object_mut() {
                            map.remove("status");
                        }
                    }
                }
            }
        }
        if deleting(live) {
            // Only finalizers may shrink while an object is being deleted; nothing may be added.
            let before: Vec<Value> = live["metadata"]["finalizers"].as_array().cloned().unwrap_or_default();
            let after: Vec<Value> = next["metadata"]["finalizers"].as_array().cloned().unwrap_or_default();
            next["metadata"]["finalizers"] =
                Value::from(after.into_iter().filter(|f| before.contains(f)).collect::<Vec<_>>());
        }
        if comparable(&next) == comparable(live) {
            return live.clone(); // a no-op write changes nothing, not even the resource version
        }
        if spec_part(&next) != spec_part(live) {
            let generation = live["metadata"]["generation"].as_i64().unwrap_or(1);
            next["metadata"]["generation"] = Value::from(generation + 1);
        }
        self.commit(k, next)
    }

    fn precondition(live: &Value, wanted: &Value) -> Result<(), ApiError> {
        match wanted["metadata"]["resourceVersion"].as_str() {
            Some(rv) if !rv.is_empty() && Some(rv) != live["metadata"]["resourceVersion"].as_str() => {
                Err(ApiError::new(
                    409,
                    "Conflict",
                    "Operation cannot be fulfilled: the object has been modified; please apply your changes to the latest version and try again",
                ))
            }
            _ => Ok(()),
        }
    }

    pub(crate) fn replace(
        &mut self,
        resource: &ResourceType,
        namespace: Option<&str>,
        name: &str,
        object: Value,
        status: bool,
    ) -> Result<Value, ApiError> {
        let k = key(resource, namespace, name);
        let live = self.objects.get(&k).cloned().ok_or_else(|| ApiError::not_found(resource, name))?;
        Store::precondition(&live, &object)?;
        Ok(self.write(resource, k, &live, apply::intent(&object), status))
    }

    /// A merge, strategic-merge (treated as merge) or JSON patch.
    pub(crate) fn patch(
        &mut self,
        resource: &ResourceType,
        namespace: Option<&str>,
        name: &str,
        content_type: &str,
        body: &Value,
        status: bool,
    ) -> Result<Value, ApiError> {
        let k = key(resource, namespace, name);
        let live = self.objects.get(&k).cloned().ok_or_else(|| ApiError::not_found(resource, name))?;
        let mut next = live.clone();
        if content_type.starts_with("application/json-patch+json") {
            // As the API server's JSON patch does: `test` that a missing path is null passes.
            let operations: Vec<Value> = body
                .as_array()
                .into_iter()
                .flatten()
                .filter(|op| {
                    let missing = op["path"].as_str().is_some_and(|path| next.pointer(path).is_none());
                    !(op["op"] == "test" && op["value"].is_null() && missing)
                })
                .cloned()
                .collect();
            let patch: json_patch::Patch = serde_json::from_value(Value::Array(operations))
                .map_err(|e| ApiError::new(400, "BadRequest", format!("invalid JSON patch: {e}")))?;
            json_patch::patch(&mut next, &patch).map_err(|e| ApiError::new(422, "Invalid", e.to_string()))?;
        } else {
            Store::precondition(&live, body)?;
            json_patch::merge(&mut next, body);
        }
        Ok(self.write(resource, k, &live, apply::intent(&next), status))
    }

    /// Server-side apply by `manager` (creating the object if it does not exist).
    pub(crate) fn apply(
        &mut self,
        resource: &ResourceType,
        namespace: Option<&str>,
        name: &str,
        manager: &str,
        applied: &Value,
        status: bool,
    ) -> Result<Value, ApiError> {
        let k = key(resource, namespace, name);
        let intent = apply::intent(applied);
        let slot = (k.clone(), manager.to_owned(), status);
        let Some(live) = self.objects.get(&k).cloned() else {
            if status {
                return Err(ApiError::not_found(resource, name));
            }
            let mut object = intent.clone();
            object["metadata"]["name"] = Value::from(name);
            let created = self.create(resource, namespace, object)?;
            self.applied.insert(slot, intent);
            return Ok(created);
        };
        Store::precondition(&live, applied)?;
        let next = apply::apply(&live, self.applied.get(&slot), &intent);
        self.applied.insert(slot, intent);
        Ok(self.write(resource, k, &live, next, status))
    }

    pub(crate) fn delete(
        &mut self,
        resource: &ResourceType,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<Value, ApiError> {
        let k = key(resource, namespace, name);
        let live = self.objects.get(&k).cloned().ok_or_else(|| ApiError::not_found(resource, name))?;
        Ok(self.delete_key(&k, live))
    }

    /// Marks an object deleted: gone at once, or (with finalizers, or a namespace that still
    /// has content) given a deletion timestamp until they are done.
    fn delete_key(&mut self, k: &Key, live: Value) -> Value {
        let is_namespace = k.0.is_empty() && k.1 == "namespaces";
        if is_namespace {
            let content: Vec<(Key, Value)> =
                self.objects.iter().filter(|(c, _)| c.2 == k.3).map(|(c, o)| (c.clone(), o.clone())).collect();
            for (child, object) in content {
                if !deleting(&object) {
                    self.delete_key(&child, object);
                }
            }
        }
        if !self.held(k, &live) {
            self.remove(k);
            return live;
        }
        if deleting(&live) {
            return live;
        }
        let mut marked = live;
        marked["metadata"]["deletionTimestamp"] = Value::from(now());
        marked["metadata"]["deletionGracePeriodSeconds"] = Value::from(0);
        if is_namespace {
            marked["status"] = json!({"phase": "Terminating"});
        }
        let object = marked.clone();
        self.commit(k.clone(), marked);
        object
    }

    /// Removes an object for good, then what it owned (garbage collection) and, when it was
    /// the last thing in a terminating namespace, the namespace.
    fn remove(&mut self, k: &Key) {
        let Some(mut object) = self.objects.remove(k) else { return };
        self.applied.retain(|(o, _, _), _| o != k);
        self.next_revision(&mut object);
        self.record("DELETED", k.clone(), object.clone());
        let uid = object["metadata"]["uid"].clone();
        let dependents: Vec<(Key, Value)> = self
            .objects
            .iter()
            .filter(|(_, o)| {
                o["metadata"]["ownerReferences"].as_array().is_some_and(|owners| owners.iter().any(|r| r["uid"] == uid))
            })
            .map(|(c, o)| (c.clone(), o.clone()))
            .collect();
        for (dependent, live) in dependents {
            if !deleting(&live) {
                self.delete_key(&dependent, live);
            }
        }
        if !k.2.is_empty() && !self.objects.keys().any(|c| c.2 == k.2) {
            let namespace = (String::new(), "namespaces".to_owned(), String::new(), k.2.clone());
            if let Some(ns) = self.objects.get(&namespace).cloned()
                && deleting(&ns)
                && !self.held(&namespace, &ns)
            {
                self.remove(&namespace);
            }
        }
    }
}
