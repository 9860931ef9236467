//! `filter`: drop resources by their attributes, by how little they use, or
//! by how young they are, and drop metrics by name. Protected resources
//! (critical, and the priorities in `protect`) are never touched (neither
//! dropped nor trimmed of metrics).
//!
//! ```yaml
//! filter/idle:
//!   exclude:
//!     match_type: regexp
//!     attributes: [{ key: process.executable.name, value: "^(kworker|ksoftirqd).*" }]
//!   metrics:
//!     exclude: { match_type: strict, names: [process.memory.virtual] }
//!   min_cpu_utilization: 0.005
//!   min_memory: 50MiB
//!   min_age: 30s
//!   protect: [high]
//! ```
//!
//! Thresholds: a process is dropped when every configured usage threshold
//! says it is idle (CPU below `min_cpu_utilization` AND memory below
//! `min_memory`), or when it is younger than `min_age`. A process whose
//! metric is missing is not judged by that threshold: an unknown value never
//! causes a drop. CPU is read from `process.cpu.utilization` only (enable it
//! in the receiver to use `min_cpu_utilization`).

use std::fmt::Write as _;
use std::time::Duration;

use regex::{Regex, RegexSet};
use serde::Deserialize;

use super::priority::Priority;
use super::{Protection, attribute, compile_regex, into_result, metric_total};
use crate::model::{Attributes, Batch, Resource, Str, Value};
use crate::problem::Problem;
use crate::processor::Processor;
use crate::semconv;
use crate::time::parse_rfc3339_nanos;
use crate::units::{opt_bytes, opt_duration, scalar_string};

/// How configured values are compared with actual ones.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MatchType {
    /// Equal strings (numbers compare by their decimal text).
    #[default]
    Strict,
    /// The value matches the regular expression anywhere (anchor with
    /// `^...$` for a whole-value match).
    Regexp,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttributePattern {
    pub key: String,
    #[serde(deserialize_with = "scalar_string")]
    pub value: String,
}

/// A resource matches when EVERY listed attribute matches (as in the
/// OpenTelemetry Collector's filter processor); use a regexp alternative
/// (`^(a|b)$`) for "any of".
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttributeMatch {
    #[serde(default)]
    pub match_type: MatchType,
    pub attributes: Vec<AttributePattern>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NameMatch {
    #[serde(default)]
    pub match_type: MatchType,
    pub names: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricFilter {
    /// Keep only metrics whose name matches.
    #[serde(default)]
    pub include: Option<NameMatch>,
    /// Remove metrics whose name matches (applied after `include`).
    #[serde(default)]
    pub exclude: Option<NameMatch>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilterConfig {
    /// Keep only resources matching this.
    #[serde(default)]
    pub include: Option<AttributeMatch>,
    /// Drop resources matching this.
    #[serde(default)]
    pub exclude: Option<AttributeMatch>,
    /// Remove metrics by name; a resource left without metrics is dropped.
    #[serde(default)]
    pub metrics: MetricFilter,
    /// Idle below this `process.cpu.utilization` (summed over its points).
    #[serde(default)]
    pub min_cpu_utilization: Option<f64>,
    /// Idle below this `process.memory.usage` (e.g. `50MiB`).
    #[serde(default, deserialize_with = "opt_bytes")]
    pub min_memory: Option<u64>,
    /// Drop processes younger than this (e.g. `30s`): `process.uptime` if
    /// scraped, else the batch time minus `process.creation.time`.
    #[serde(default, deserialize_with = "opt_duration")]
    pub min_age: Option<Duration>,
    /// Priorities to leave alone besides `critical`, which is always
    /// protected whether listed or not (see [`Protection`]).
    #[serde(default)]
    pub protect: Vec<Priority>,
}

impl FilterConfig {
    pub fn validate(&self) -> Vec<Problem> {
        let mut problems = Vec::new();
        for (field, m) in [("include", &self.include), ("exclude", &self.exclude)] {
            if let Some(m) = m {
                CompiledAttributeMatch::new(field, m, &mut problems);
            }
        }
        for (field, m) in [
            ("metrics.include", &self.metrics.include),
            ("metrics.exclude", &self.metrics.exclude),
        ] {
            if let Some(m) = m {
                CompiledNameMatch::new(field, m, &mut problems);
            }
        }
        if let Some(cpu) = self.min_cpu_utilization
            && !(cpu.is_finite() && cpu >= 0.0)
        {
            problems.push(Problem::sentence(
                "min_cpu_utilization",
                format!("must be a non-negative number (got {cpu})"),
            ));
        }
        problems
    }
}

enum ValueMatcher {
    Strict(String),
    Regexp(Regex),
}

struct CompiledAttributeMatch {
    patterns: Vec<(String, ValueMatcher)>,
}

impl CompiledAttributeMatch {
    fn new(field: &str, m: &AttributeMatch, problems: &mut Vec<Problem>) -> Option<Self> {
        let before = problems.len();
        if m.attributes.is_empty() {
            problems.push(Problem::sentence(
                format!("{field}.attributes"),
                "is empty (it would match every resource)",
            ));
        }
        let mut patterns = Vec::with_capacity(m.attributes.len());
        for (i, p) in m.attributes.iter().enumerate() {
            if p.key.is_empty() {
                problems.push(Problem::sentence(
                    format!("{field}.attributes[{i}].key"),
                    "is empty",
                ));
            }
            let matcher = match m.match_type {
                MatchType::Strict => Some(ValueMatcher::Strict(p.value.clone())),
                MatchType::Regexp => compile_regex(
                    &format!("{field}.attributes[{i}].value"),
                    &p.value,
                    problems,
                )
                .map(ValueMatcher::Regexp),
            };
            if let Some(matcher) = matcher {
                patterns.push((p.key.clone(), matcher));
            }
        }
        (problems.len() == before).then_some(CompiledAttributeMatch { patterns })
    }

    fn matches(&self, resource: &Resource, common: &Attributes, text: &mut String) -> bool {
        self.patterns.iter().all(|(key, matcher)| {
            let Some(value) = attribute(resource, common, key) else {
                return false;
            };
            // Non-string values are compared by their text, written into a
            // reused buffer rather than a fresh String per comparison.
            let s: &str = match value {
                Value::Str(s) => s,
                other => {
                    text.clear();
                    let _ = write!(text, "{other}");
                    text
                }
            };
            match matcher {
                ValueMatcher::Strict(want) => s == want,
                ValueMatcher::Regexp(re) => re.is_match(s),
            }
        })
    }
}

enum CompiledNameMatch {
    Strict(Vec<String>),
    Regexp(RegexSet),
}

impl CompiledNameMatch {
    fn new(field: &str, m: &NameMatch, problems: &mut Vec<Problem>) -> Option<Self> {
        if m.names.is_empty() {
            problems.push(Problem::sentence(format!("{field}.names"), "is empty"));
            return None;
        }
        match m.match_type {
            MatchType::Strict => Some(CompiledNameMatch::Strict(m.names.clone())),
            MatchType::Regexp => {
                let before = problems.len();
                for (i, name) in m.names.iter().enumerate() {
                    compile_regex(&format!("{field}.names[{i}]"), name, problems);
                }
                if problems.len() != before {
                    return None;
                }
                match RegexSet::new(&m.names) {
                    Ok(set) => Some(CompiledNameMatch::Regexp(set)),
                    Err(e) => {
                        problems.push(Problem::new(format!("{field}.names"), e.to_string()));
                        None
                    }
                }
            }
        }
    }

    fn matches(&self, name: &str) -> bool {
        match self {
            CompiledNameMatch::Strict(names) => names.iter().any(|n| n == name),
            CompiledNameMatch::Regexp(set) => set.is_match(name),
        }
    }
}

/// The `filter` processor.
pub struct Filter {
    protection: Protection,
    include: Option<CompiledAttributeMatch>,
    exclude: Option<CompiledAttributeMatch>,
    metrics_include: Option<CompiledNameMatch>,
    metrics_exclude: Option<CompiledNameMatch>,
    min_cpu: Option<f64>,
    min_memory: Option<f64>,
    min_age_nanos: Option<u64>,
    /// Metric name → keep? Metric names are few and repeat in every
    /// resource, so each is matched once, not once per resource.
    name_decisions: Vec<(Str, bool)>,
    text: String,
}

impl std::fmt::Debug for Filter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Filter").finish_non_exhaustive()
    }
}

impl Filter {
    pub fn new(config: &FilterConfig) -> Result<Filter, String> {
        let mut problems = config.validate();
        if !problems.is_empty() {
            return Err(Problem::join(&problems));
        }
        let filter = Filter {
            protection: Protection::new(&config.protect),
            include: config
                .include
                .as_ref()
                .and_then(|m| CompiledAttributeMatch::new("include", m, &mut problems)),
            exclude: config
                .exclude
                .as_ref()
                .and_then(|m| CompiledAttributeMatch::new("exclude", m, &mut problems)),
            metrics_include: config
                .metrics
                .include
                .as_ref()
                .and_then(|m| CompiledNameMatch::new("metrics.include", m, &mut problems)),
            metrics_exclude: config
                .metrics
                .exclude
                .as_ref()
                .and_then(|m| CompiledNameMatch::new("metrics.exclude", m, &mut problems)),
            min_cpu: config.min_cpu_utilization,
            min_memory: config.min_memory.map(|b| b as f64),
            min_age_nanos: config
                .min_age
                .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)),
            name_decisions: Vec::new(),
            text: String::new(),
        };
        into_result(filter, problems)
    }

    fn filters_metrics(&self) -> bool {
        self.metrics_include.is_some() || self.metrics_exclude.is_some()
    }

    fn keep_metric(&mut self, name: &Str) -> bool {
        if let Some((_, keep)) = self.name_decisions.iter().find(|(n, _)| n == name) {
            return *keep;
        }
        let keep = self
            .metrics_include
            .as_ref()
            .is_none_or(|m| m.matches(name))
            && !self
                .metrics_exclude
                .as_ref()
                .is_some_and(|m| m.matches(name));
        // Bounded: a stream of ever-new metric names cannot grow it forever.
        if self.name_decisions.len() >= 256 {
            self.name_decisions.clear();
        }
        self.name_decisions.push((name.clone(), keep));
        keep
    }

    /// Whether every configured usage threshold says the process is idle.
    fn is_idle(&self, resource: &Resource) -> bool {
        if self.min_cpu.is_none() && self.min_memory.is_none() {
            return false;
        }
        let below = |min: Option<f64>, metric: &str| match min {
            None => true,
            Some(min) => metric_total(resource, metric).is_some_and(|v| v < min),
        };
        below(self.min_cpu, semconv::PROCESS_CPU_UTILIZATION)
            && below(self.min_memory, semconv::PROCESS_MEMORY_USAGE)
    }

    fn is_too_young(&self, resource: &Resource, now: u64) -> bool {
        let Some(min_age) = self.min_age_nanos else {
            return false;
        };
        let age = match metric_total(resource, semconv::PROCESS_UPTIME) {
            Some(seconds) if seconds.is_finite() => Some((seconds.max(0.0) * 1e9) as u64),
            _ => resource
                .attributes
                .get_str(semconv::PROCESS_CREATION_TIME)
                .and_then(parse_rfc3339_nanos)
                .map(|created| now.saturating_sub(created)),
        };
        age.is_some_and(|age| age < min_age)
    }

    fn keeps(&mut self, resource: &mut Resource, common: &Attributes, now: u64) -> bool {
        if self.protection.covers(resource) {
            return true;
        }
        if let Some(m) = &self.include
            && !m.matches(resource, common, &mut self.text)
        {
            return false;
        }
        if let Some(m) = &self.exclude
            && m.matches(resource, common, &mut self.text)
        {
            return false;
        }
        if self.is_idle(resource) || self.is_too_young(resource, now) {
            return false;
        }
        if self.filters_metrics() && !resource.metrics.is_empty() {
            resource.metrics.retain(|m| self.keep_metric(&m.desc.name));
            if resource.metrics.is_empty() {
                return false;
            }
        }
        true
    }
}

impl Processor for Filter {
    fn process(&mut self, batch: &mut Batch) {
        let common = batch.common_attributes.clone();
        let now = batch.time_unix_nano;
        batch
            .resources
            .retain_mut(|resource| self.keeps(resource, &common, now));
    }
}
