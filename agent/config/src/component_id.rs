//! Component ids as the OpenTelemetry Collector writes them: `type[/name]`.

use std::fmt;

/// `otlp_grpc/primary` → type `otlp_grpc`, name `primary`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ComponentId {
    kind: String,
    name: Option<String>,
}

impl ComponentId {
    pub fn parse(text: &str) -> Result<Self, String> {
        let (kind, name) = match text.split_once('/') {
            Some((k, n)) => (k, Some(n)),
            None => (text, None),
        };
        if kind.is_empty() {
            return Err(format!(
                "invalid component id {text:?}: the type part is empty"
            ));
        }
        if !kind
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        {
            return Err(format!(
                "invalid component id {text:?}: the type may only hold a-z, 0-9 and _"
            ));
        }
        if let Some(n) = name
            && (n.is_empty() || n.contains('/') || n.chars().any(char::is_whitespace))
        {
            return Err(format!(
                "invalid component id {text:?}: the name after '/' must be non-empty, without '/' or spaces"
            ));
        }
        Ok(ComponentId {
            kind: kind.to_string(),
            name: name.map(str::to_string),
        })
    }

    /// The type part (`otlp_grpc`).
    pub fn kind(&self) -> &str {
        &self.kind
    }

    /// The name part (`primary`), if any.
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }
}

impl fmt::Display for ComponentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.name {
            Some(n) => write!(f, "{}/{}", self.kind, n),
            None => f.write_str(&self.kind),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_type_and_name() {
        let id = ComponentId::parse("otlp_grpc/primary").unwrap();
        assert_eq!(id.kind(), "otlp_grpc");
        assert_eq!(id.name(), Some("primary"));
        assert_eq!(id.to_string(), "otlp_grpc/primary");
        assert_eq!(ComponentId::parse("console").unwrap().name(), None);
    }

    #[test]
    fn rejects_malformed_ids() {
        for bad in ["", "/x", "Otlp", "a/", "a/b/c", "a/b c"] {
            assert!(
                ComponentId::parse(bad).is_err(),
                "{bad:?} should be rejected"
            );
        }
    }
}
