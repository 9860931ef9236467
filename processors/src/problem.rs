//! One problem a component config's `validate` found, with the field it is
//! about, so the loader can point at that field's line and the controller
//! can hand the field to API clients apart from the text.

use std::fmt;

/// One problem with a component's config.
///
/// It prints as users have always read it: `field: message`
/// (`rotation.max_megabytes: must be at least 1`), or, for a problem stated
/// as a sentence about the field, `field message` (`k must be at least 1
/// (got 0)`); a problem about the whole component prints its message alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Dotted path inside the component (`rotation.max_megabytes`,
    /// `actions[0].key`); empty when it is about the whole component.
    pub field: String,
    /// What is wrong, without the field.
    pub message: String,
    /// Whether `message` continues a sentence whose subject is `field`.
    sentence: bool,
}

impl Problem {
    /// A problem noted on a field: prints `field: message`.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Problem {
        Problem {
            field: field.into(),
            message: message.into(),
            sentence: false,
        }
    }

    /// A sentence about a field, which is its subject: prints
    /// `field message` (`Problem::sentence("k", "must be at least 1")`).
    pub fn sentence(field: impl Into<String>, message: impl Into<String>) -> Problem {
        Problem {
            sentence: true,
            ..Problem::new(field, message)
        }
    }

    /// A problem about the whole component (no field).
    pub fn component(message: impl Into<String>) -> Problem {
        Problem::new("", message)
    }

    /// Every problem on one line, as builders report what validation missed.
    pub fn join(problems: &[Problem]) -> String {
        problems
            .iter()
            .map(Problem::to_string)
            .collect::<Vec<_>>()
            .join("; ")
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.field.is_empty(), self.sentence) {
            (true, _) => f.write_str(&self.message),
            (false, true) => write!(f, "{} {}", self.field, self.message),
            (false, false) => write!(f, "{}: {}", self.field, self.message),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prints_like_the_messages_it_replaced() {
        assert_eq!(
            Problem::new("rotation.max_megabytes", "must be at least 1").to_string(),
            "rotation.max_megabytes: must be at least 1"
        );
        assert_eq!(
            Problem::sentence("k", "must be at least 1 (got 0)").to_string(),
            "k must be at least 1 (got 0)"
        );
        assert_eq!(
            Problem::component("give either `by` or `score`, not both").to_string(),
            "give either `by` or `score`, not both"
        );
        assert_eq!(
            Problem::join(&[Problem::new("a", "x"), Problem::sentence("b", "is empty")]),
            "a: x; b is empty"
        );
    }
}
