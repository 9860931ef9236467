//! Error bodies and the probes' answers.

use serde::{Deserialize, Serialize};

use crate::configs::ConfigProblem;
use crate::experiments::FieldError;

/// Every refusal: `{"error": "..."}`, and for an invalid config or
/// experiment definition every problem found, listed in `errors`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<ListedError>,
    /// A 403: the permission the principal's role lacks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub missing_permission: Option<String>,
}

impl ErrorBody {
    pub fn new(error: impl Into<String>) -> ErrorBody {
        ErrorBody {
            error: error.into(),
            errors: Vec::new(),
            missing_permission: None,
        }
    }
}

/// One listed problem: an agent config error (it has a `text`) or an
/// experiment definition error (it has a `field`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ListedError {
    Config(ConfigProblem),
    Field(FieldError),
}

impl std::fmt::Display for ListedError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ListedError::Config(c) => f.write_str(&c.text),
            ListedError::Field(e) => e.fmt(f),
        }
    }
}

/// `GET /healthz`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Health {
    pub status: String,
    pub version: String,
}

/// `GET /readyz`: `ready`, or `not ready` with the reason.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Readiness {
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn listed_errors_are_told_apart_by_their_fields() {
        let body: ErrorBody = serde_json::from_value(json!({
            "error": "the config is invalid: 2 error(s)",
            "errors": [
                {"component": "processors::topk", "message": "k must be at least 1",
                 "line": 3, "column": 5, "text": "processors::topk: k must be at least 1"},
                {"field": "criteria", "message": "set at least one criterion"}
            ]
        }))
        .unwrap();
        assert!(matches!(&body.errors[0], ListedError::Config(c) if c.line == Some(3)));
        assert_eq!(
            body.errors[1].to_string(),
            "criteria: set at least one criterion"
        );
        // A plain refusal has no `errors` key at all.
        assert_eq!(
            serde_json::to_value(ErrorBody::new("no push")).unwrap(),
            json!({"error": "no push"})
        );
    }
}
