//! `/api/v1/templates`.

use serde::{Deserialize, Serialize};

/// A named config from the controller's templates directory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Template {
    /// The file name without `.yaml`.
    pub name: String,
    /// The first comment line of the file (`# name: what it keeps`).
    pub description: String,
    /// SHA-256 of the content: what an agent reports once it runs it.
    pub hash: String,
    /// The YAML: given by `GET /templates/{name}`, not in the list.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TemplateList {
    pub templates: Vec<Template>,
}
