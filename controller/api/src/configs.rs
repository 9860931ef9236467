//! `POST /api/v1/configs/validate`, and agent config errors wherever they
//! are listed (a refused push too).

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ValidateConfigRequest {
    pub yaml: String,
}

/// The verdict of the agent's own validator on a config.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConfigValidation {
    pub valid: bool,
    /// What an agent running it would report.
    pub hash: String,
    pub errors: Vec<ConfigProblem>,
}

/// One config error, shaped like the agent's `/-/reload` answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConfigProblem {
    /// The section and component (`exporters::otlp_grpc/x`), when it is about one.
    pub component: Option<String>,
    /// The field inside the component (`rotation.max_megabytes`), when its
    /// validation named one; `null` otherwise (and when an older
    /// controller leaves it out).
    pub field: Option<String>,
    /// The problem, field included, without the component.
    pub message: String,
    /// 1-based, when the YAML locates it.
    pub line: Option<usize>,
    pub column: Option<usize>,
    /// The whole error as one line of text.
    pub text: String,
}
