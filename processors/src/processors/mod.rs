//! Every processor, one module each, with its config struct.
//!
//! "Lossy" processors (filter, aggregate, topk, sample, budget) never drop,
//! merge or modify a resource whose `phoenix.priority` is `critical`: the
//! `priority` processor decides what is critical, and everything after it
//! must keep those processes individually visible.

pub mod aggregate;
pub mod attributes;
pub mod budget;
pub mod filter;
pub mod priority;
mod rank;
mod rollup;
pub mod sample;
pub mod topk;

pub use aggregate::{Aggregate, AggregateConfig, AggregateFunction};
pub use attributes::{AttributeAction, AttributeActions, AttributesConfig, InsertValue};
pub use budget::{Budget, BudgetConfig};
pub use filter::{
    AttributeMatch, AttributePattern, Filter, FilterConfig, MatchType, MetricFilter, NameMatch,
};
pub use priority::{Priority, PriorityConfig, PriorityRule, PriorityTagger};
pub use sample::{Sample, SampleConfig};
pub use topk::{TopK, TopKConfig};

use regex::Regex;

use crate::model::{Attributes, Resource, Value};
use crate::semconv;

/// Whether a lossy processor must leave this resource alone.
pub(crate) fn is_critical(resource: &Resource) -> bool {
    resource.attributes.get_str(semconv::PHOENIX_PRIORITY) == Some(semconv::PRIORITY_CRITICAL)
}

/// Whether the resource already stands for several processes (an aggregate
/// group or an `others` rollup): its process count travels with it.
pub(crate) fn is_rollup(resource: &Resource) -> bool {
    resource.identity.is_none()
        && (resource.attributes.get(semconv::PHOENIX_ROLLUP).is_some()
            || resource.metric(semconv::PHOENIX_PROCESS_COUNT).is_some())
}

/// Sum of a metric's points on a resource, `None` when it has no such metric.
pub(crate) fn metric_total(resource: &Resource, name: &str) -> Option<f64> {
    resource.metric(name).map(|m| m.total())
}

/// An attribute of a resource, falling back to the batch's common attributes
/// (`host.name` lives there), as an exporter would merge them.
pub(crate) fn attribute<'a>(
    resource: &'a Resource,
    common: &'a Attributes,
    key: &str,
) -> Option<&'a Value> {
    resource.attributes.get(key).or_else(|| common.get(key))
}

/// The key processors follow a resource by from one interval to the next:
/// its process identity, or for resources without one (aggregate groups) a
/// hash of their attributes, which stay the same between intervals.
pub(crate) fn resource_key(resource: &Resource) -> u64 {
    resource
        .identity
        .unwrap_or_else(|| crate::hash::hash_attributes(&resource.attributes))
}

/// Compile each pattern, reporting every bad one as `field[i]: ...`.
pub(crate) fn compile_regexes(
    field: &str,
    patterns: &[String],
    problems: &mut Vec<String>,
) -> Vec<Regex> {
    patterns
        .iter()
        .enumerate()
        .filter_map(|(i, p)| compile_regex(&format!("{field}[{i}]"), p, problems))
        .collect()
}

pub(crate) fn compile_regex(
    field: &str,
    pattern: &str,
    problems: &mut Vec<String>,
) -> Option<Regex> {
    match Regex::new(pattern) {
        Ok(re) => Some(re),
        Err(e) => {
            problems.push(format!(
                "{field}: invalid regex {pattern:?}: {}",
                regex_error_summary(&e)
            ));
            None
        }
    }
}

/// regex's own message draws a caret diagram over several lines; the last
/// line ("error: unclosed group") is the part that fits in a one-line report.
fn regex_error_summary(e: &regex::Error) -> String {
    let text = e.to_string();
    text.lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .map(|l| l.trim().to_owned())
        .unwrap_or(text)
}

/// Report a fraction outside `0..=1` (or not a number).
pub(crate) fn check_fraction(field: &str, value: f64, problems: &mut Vec<String>) {
    if !(0.0..=1.0).contains(&value) {
        problems.push(format!("{field} must be between 0 and 1 (got {value})"));
    }
}

/// Turn a list of problems into `build`'s error.
pub(crate) fn into_result<T>(value: T, problems: Vec<String>) -> Result<T, String> {
    if problems.is_empty() {
        Ok(value)
    } else {
        Err(problems.join("; "))
    }
}
