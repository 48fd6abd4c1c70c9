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
pub struct ApplicationStatus {
    #[serde(default)]
    pub health: Option<StatusField>,
    #[serde(default)]
    pub sync: Option<StatusField>,
    #[serde(flatten)]
    pub rest: Map<String, Value>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
pub struct StatusField {
    #[serde(default)]
    pub status: Option<String>,
    #[serde(flatten)]
    pub rest: Map<String, Value>,
}
