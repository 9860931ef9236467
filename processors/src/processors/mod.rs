//! Every processor, one module each, with its config struct.
//!
//! "Lossy" processors (filter, aggregate, topk, sample, budget) never drop,
//! merge or modify a resource whose `phoenix.priority` is `critical`: the
//! `priority` processor decides what is critical, and everything after it
//! must keep those processes individually visible.
//!
//! Each lossy config also takes `protect: [high, ...]`, further priorities
//! that processor leaves alone in the same way, e.g. "critical and high
//! individually, the rest aggregated by name":
//!
//! ```yaml
//! aggregate/by_name: { group_by: [process.executable.name], protect: [high] }
//! ```
//!
//! `critical` is always protected, listed or not (listing it, or a priority
//! twice, is harmless). A resource without `phoenix.priority`, or with a
//! value that is no priority, is never protected. Every lossy processor
//! decides through one [`Protection`], built from its config in `new()`.

pub mod aggregate;
pub mod attributes;
pub mod budget;
pub mod filter;
pub mod k8s;
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
pub use k8s::{K8sAttributes, K8sAttributesConfig, PodMetadata};
pub use priority::{Priority, PriorityConfig, PriorityRule, PriorityTagger};
pub use sample::{Sample, SampleConfig};
pub use topk::{TopK, TopKConfig};

use regex::Regex;

use crate::model::{Attributes, Resource, Value};
use crate::problem::Problem;
use crate::semconv;

/// The resources a lossy processor must leave alone: those whose
/// `phoenix.priority` is `critical` (always) or one of the priorities of its
/// config's `protect` list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Protection {
    /// Bit `p as u8` set: priority `p` is protected. The critical bit is
    /// always set.
    mask: u8,
}

impl Protection {
    /// Critical plus every priority in `protect` (duplicates are harmless).
    pub fn new(protect: &[Priority]) -> Protection {
        let mask = protect
            .iter()
            .fold(Self::bit(Priority::Critical), |m, &p| m | Self::bit(p));
        Protection { mask }
    }

    fn bit(priority: Priority) -> u8 {
        1 << priority as u8
    }

    /// Whether resources of this priority are protected.
    pub fn protects(&self, priority: Priority) -> bool {
        self.mask & Self::bit(priority) != 0
    }

    /// Whether the processor must pass this resource through untouched.
    pub fn covers(&self, resource: &Resource) -> bool {
        let Some(tag) = resource.attributes.get_str(semconv::PHOENIX_PRIORITY) else {
            return false;
        };
        // Compare against the protected priorities only: with the default
        // (critical alone) this is the single string comparison it always was.
        Priority::ALL
            .into_iter()
            .any(|p| self.protects(p) && tag == p.as_str())
    }
}

impl Default for Protection {
    /// Critical only.
    fn default() -> Self {
        Protection::new(&[])
    }
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
    problems: &mut Vec<Problem>,
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
    problems: &mut Vec<Problem>,
) -> Option<Regex> {
    match Regex::new(pattern) {
        Ok(re) => Some(re),
        Err(e) => {
            problems.push(Problem::new(
                field,
                format!("invalid regex {pattern:?}: {}", regex_error_summary(&e)),
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
pub(crate) fn check_fraction(field: &str, value: f64, problems: &mut Vec<Problem>) {
    if !(0.0..=1.0).contains(&value) {
        problems.push(Problem::sentence(
            field,
            format!("must be between 0 and 1 (got {value})"),
        ));
    }
}

/// Turn a list of problems into `build`'s error.
pub(crate) fn into_result<T>(value: T, problems: Vec<Problem>) -> Result<T, String> {
    if problems.is_empty() {
        Ok(value)
    } else {
        Err(Problem::join(&problems))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::KeyValue;

    fn tagged(priority: Option<&str>) -> Resource {
        let attributes = priority
            .map(|p| {
                vec![KeyValue::new(
                    semconv::PHOENIX_PRIORITY.into(),
                    Value::Str(p.into()),
                )]
            })
            .unwrap_or_default();
        Resource {
            attributes: Attributes::new(attributes),
            metrics: Vec::new(),
            identity: Some(1),
        }
    }

    #[test]
    fn protection_always_covers_critical_and_adds_the_listed_priorities() {
        let cases: &[(&[Priority], &[&str])] = &[
            (&[], &["critical"]),
            (&[Priority::Critical], &["critical"]),
            (&[Priority::High], &["critical", "high"]),
            (
                &[Priority::Low, Priority::High, Priority::Low],
                &["critical", "high", "low"],
            ),
        ];
        for (protect, covered) in cases {
            let protection = Protection::new(protect);
            for p in Priority::ALL {
                let want = covered.contains(&p.as_str());
                assert_eq!(protection.protects(p), want, "{protect:?} {p:?}");
                assert_eq!(
                    protection.covers(&tagged(Some(p.as_str()))),
                    want,
                    "{protect:?} {p:?}"
                );
            }
            assert!(!protection.covers(&tagged(None)), "{protect:?} untagged");
            assert!(!protection.covers(&tagged(Some("bogus"))), "{protect:?}");
            assert!(!protection.covers(&tagged(Some("Critical"))), "{protect:?}");
        }
        assert_eq!(
            Protection::default(),
            Protection::new(&[Priority::Critical])
        );
    }
}
