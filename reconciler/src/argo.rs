//! Typed handles for the Argo CD resources Previewd writes and reads. Only the API identity is
//! typed (Argo CD's own CRDs define the schema): the content stays JSON.

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(group = "argoproj.io", version = "v1alpha1", kind = "ApplicationSet", namespaced)]
pub struct ApplicationSetSpec {
    #[serde(flatten)]
    pub fields: Map<String, Value>,
}

#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(group = "argoproj.io", version = "v1alpha1", kind = "Application", namespaced, status = "ApplicationStatus")]
pub struct ApplicationSpec {
    #[serde(flatten)]
    pub fields: Map<String, Value>,
}

/// The parts of an Application's status Previewd reads.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApplicationStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<StatusField>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sync: Option<StatusField>,
    /// The last sync operation: whether it failed, and at which revision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation_state: Option<OperationState>,
    #[serde(flatten)]
    pub rest: Map<String, Value>,
}

/// `status.health` (`status`, `message`) and `status.sync` (`status`, `revision`: the commit
/// Argo CD compared against and synced).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
pub struct StatusField {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
    #[serde(flatten)]
    pub rest: Map<String, Value>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct OperationState {
    /// `Running`, `Succeeded`, `Failed`, `Error`, `Terminating`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sync_result: Option<SyncResult>,
    #[serde(flatten)]
    pub rest: Map<String, Value>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
pub struct SyncResult {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
    #[serde(flatten)]
    pub rest: Map<String, Value>,
}

impl ApplicationStatus {
    pub fn health(&self) -> Option<&str> {
        self.health.as_ref().and_then(|h| h.status.as_deref())
    }

    pub fn sync(&self) -> Option<&str> {
        self.sync.as_ref().and_then(|s| s.status.as_deref())
    }

    /// The commit Argo CD last synced (or compared, while out of sync).
    pub fn revision(&self) -> Option<&str> {
        self.sync.as_ref().and_then(|s| s.revision.as_deref())
    }

    /// Why it is not healthy, or why its last sync at `revision` failed.
    pub fn failure_at(&self, revision: &str) -> Option<String> {
        let op = self.operation_state.as_ref();
        let op_revision = op.and_then(|o| o.sync_result.as_ref()).and_then(|r| r.revision.as_deref());
        let op_failed = op.and_then(|o| o.phase.as_deref()).is_some_and(|p| matches!(p, "Failed" | "Error"));
        if op_failed && op_revision == Some(revision) {
            return Some(op.and_then(|o| o.message.clone()).unwrap_or_else(|| "sync failed".to_owned()));
        }
        if self.health() == Some("Degraded") && self.revision() == Some(revision) {
            let message = self.health.as_ref().and_then(|h| h.message.clone());
            return Some(message.unwrap_or_else(|| "degraded".to_owned()));
        }
        None
    }
}
