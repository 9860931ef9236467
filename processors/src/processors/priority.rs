//! `priority`: tag every resource with `phoenix.priority` = critical | high |
//! medium | low. Processors after it never drop or merge critical ones.
//!
//! ```yaml
//! priority:
//!   critical: ["^(postgres|mysqld|redis-server|nginx|kubelet|containerd|dockerd)$"]
//!   high: ["^java$"]
//!   rules:
//!     - { priority: critical, executable_name: "^java$", command_line: "kafka\\.Kafka" }
//!     - { priority: high, min_cpu_utilization: 0.5 }
//!     - { priority: medium, owner: "^root$", min_memory: 1GiB }
//!     - { priority: critical, attributes: { k8s.namespace.name: "^kube-system$" } }
//!   default: low
//! ```
//!
//! Order: `rules` first (the first whose every condition holds wins), then
//! the shorthand lists `critical`, `high`, `medium` (regexes on
//! `process.executable.name`), then `default`.
//!
//! `attributes` matches regexes on any string resource attributes (a
//! missing one fails the rule), e.g. the namespace or workload that
//! `k8sattributes` added before this processor.
//!
//! The regex part of the decision depends only on name, command line,
//! owner and the attributes rules name, which a process keeps for life (an
//! `exec` changes them, a late pod lookup adds them; both are noticed), so
//! it is computed once per process identity and cached; thresholds are
//! checked every interval.

use std::collections::BTreeMap;
use std::sync::Arc;

use regex::{Regex, RegexSet};
use serde::Deserialize;

use super::{compile_regex, compile_regexes, into_result, metric_total};
use crate::hash::IdMap;
use crate::model::{Batch, KeyValue, Resource, Str, Value};
use crate::problem::Problem;
use crate::processor::Processor;
use crate::semconv;
use crate::units::opt_bytes;
use smallvec::SmallVec;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Priority {
    Critical,
    High,
    Medium,
    Low,
}

impl Priority {
    pub const ALL: [Priority; 4] = [
        Priority::Critical,
        Priority::High,
        Priority::Medium,
        Priority::Low,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Priority::Critical => semconv::PRIORITY_CRITICAL,
            Priority::High => semconv::PRIORITY_HIGH,
            Priority::Medium => semconv::PRIORITY_MEDIUM,
            Priority::Low => semconv::PRIORITY_LOW,
        }
    }

    pub fn parse(text: &str) -> Option<Priority> {
        Priority::ALL.into_iter().find(|p| p.as_str() == text)
    }
}

/// One ordered rule: every condition given must hold.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PriorityRule {
    pub priority: Priority,
    /// Regex on `process.executable.name`.
    #[serde(default)]
    pub executable_name: Option<String>,
    /// Regex on `process.command_line`.
    #[serde(default)]
    pub command_line: Option<String>,
    /// Regex on `process.owner`.
    #[serde(default)]
    pub owner: Option<String>,
    /// Regexes on other string resource attributes, by key
    /// (`k8s.namespace.name: "^kube-system$"`).
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
    /// `process.cpu.utilization` (summed over points) at least this.
    #[serde(default)]
    pub min_cpu_utilization: Option<f64>,
    /// `process.memory.usage` at least this (e.g. `1GiB`).
    #[serde(default, deserialize_with = "opt_bytes")]
    pub min_memory: Option<u64>,
}

fn default_priority() -> Priority {
    Priority::Low
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PriorityConfig {
    /// Regexes on `process.executable.name` that make a process critical.
    #[serde(default)]
    pub critical: Vec<String>,
    #[serde(default)]
    pub high: Vec<String>,
    #[serde(default)]
    pub medium: Vec<String>,
    /// Checked before the lists above, in order; the first match wins.
    #[serde(default)]
    pub rules: Vec<PriorityRule>,
    /// Priority of what nothing matched (default low).
    #[serde(default = "default_priority")]
    pub default: Priority,
}

impl Default for PriorityConfig {
    fn default() -> Self {
        PriorityConfig {
            critical: Vec::new(),
            high: Vec::new(),
            medium: Vec::new(),
            rules: Vec::new(),
            default: Priority::Low,
        }
    }
}

/// Rules are remembered per process as a bitmask of which rules' regexes
/// matched, so at most this many.
const MAX_RULES: usize = 64;

impl PriorityConfig {
    pub fn validate(&self) -> Vec<Problem> {
        let mut problems = Vec::new();
        self.compile(&mut problems);
        problems
    }

    /// The rules compiled, the shorthand lists, and the distinct attribute
    /// keys the rules' `attributes` name (rules refer to them by index).
    fn compile(
        &self,
        problems: &mut Vec<Problem>,
    ) -> (Vec<CompiledRule>, Vec<(Priority, RegexSet)>, Vec<Str>) {
        let mut attr_keys: Vec<Str> = Vec::new();
        if self.rules.len() > MAX_RULES {
            problems.push(Problem::new(
                "rules",
                format!("at most {MAX_RULES} rules (got {})", self.rules.len()),
            ));
        }
        let mut rules = Vec::with_capacity(self.rules.len());
        for (i, rule) in self.rules.iter().enumerate() {
            let field = |name: &str| format!("rules[{i}].{name}");
            let mut attributes = Vec::with_capacity(rule.attributes.len());
            for (key, pattern) in &rule.attributes {
                if key.is_empty() {
                    problems.push(Problem::new(field("attributes"), "empty attribute key"));
                    continue;
                }
                let Some(re) =
                    compile_regex(&field(&format!("attributes.{key}")), pattern, problems)
                else {
                    continue;
                };
                let slot = match attr_keys.iter().position(|k| **k == **key) {
                    Some(slot) => slot,
                    None => {
                        attr_keys.push(Str::from(key.as_str()));
                        attr_keys.len() - 1
                    }
                };
                attributes.push((slot, re));
            }
            let mut regex = |name: &str, pattern: &Option<String>| {
                pattern
                    .as_ref()
                    .and_then(|p| compile_regex(&field(name), p, problems))
            };
            let compiled = CompiledRule {
                priority: rule.priority,
                executable_name: regex("executable_name", &rule.executable_name),
                command_line: regex("command_line", &rule.command_line),
                owner: regex("owner", &rule.owner),
                attributes,
                min_cpu: rule.min_cpu_utilization,
                min_memory: rule.min_memory.map(|b| b as f64),
            };
            if rule.executable_name.is_none()
                && rule.command_line.is_none()
                && rule.owner.is_none()
                && rule.attributes.is_empty()
                && rule.min_cpu_utilization.is_none()
                && rule.min_memory.is_none()
            {
                problems.push(Problem::sentence(
                    format!("rules[{i}]"),
                    "has no condition (it would match every process; use `default` for that)",
                ));
            }
            if let Some(cpu) = rule.min_cpu_utilization
                && !(cpu.is_finite() && cpu >= 0.0)
            {
                problems.push(Problem::sentence(
                    field("min_cpu_utilization"),
                    format!("must be a non-negative number (got {cpu})"),
                ));
            }
            rules.push(compiled);
        }
        let mut lists = Vec::new();
        for (priority, patterns) in [
            (Priority::Critical, &self.critical),
            (Priority::High, &self.high),
            (Priority::Medium, &self.medium),
        ] {
            let before = problems.len();
            compile_regexes(priority.as_str(), patterns, problems);
            if patterns.is_empty() || problems.len() != before {
                continue;
            }
            match RegexSet::new(patterns) {
                Ok(set) => lists.push((priority, set)),
                Err(e) => problems.push(Problem::new(priority.as_str(), e.to_string())),
            }
        }
        (rules, lists, attr_keys)
    }
}

#[derive(Debug)]
struct CompiledRule {
    priority: Priority,
    executable_name: Option<Regex>,
    command_line: Option<Regex>,
    owner: Option<Regex>,
    /// (index into the tagger's `attr_keys`, regex on that attribute).
    attributes: Vec<(usize, Regex)>,
    min_cpu: Option<f64>,
    min_memory: Option<f64>,
}

impl CompiledRule {
    fn text_matches(&self, text: &Cached) -> bool {
        let ok = |re: &Option<Regex>, v: &Option<Str>| match re {
            None => true,
            Some(re) => v.as_deref().is_some_and(|v| re.is_match(v)),
        };
        ok(&self.executable_name, &text.name)
            && ok(&self.command_line, &text.command_line)
            && ok(&self.owner, &text.owner)
            && self.attributes.iter().all(|(slot, re)| {
                text.attributes
                    .get(*slot)
                    .and_then(|v| v.as_deref())
                    .is_some_and(|v| re.is_match(v))
            })
    }

    /// Thresholds: a missing metric fails the condition (an unknown value
    /// never raises a priority).
    fn thresholds_hold(&self, resource: &Resource) -> bool {
        let at_least = |min: Option<f64>, metric: &str| match min {
            None => true,
            Some(min) => metric_total(resource, metric).is_some_and(|v| v >= min),
        };
        at_least(self.min_cpu, semconv::PROCESS_CPU_UTILIZATION)
            && at_least(self.min_memory, semconv::PROCESS_MEMORY_USAGE)
    }
}

/// The text-only part of one process's decision.
#[derive(Debug)]
struct Cached {
    /// The strings it was computed from: an `exec` keeps pid and start time
    /// (so the identity) but changes them. `==` on `Arc<str>` compares
    /// pointers first, so with interned strings this check is nearly free.
    name: Option<Str>,
    command_line: Option<Str>,
    owner: Option<Str>,
    /// The values of the tagger's `attr_keys`, in order.
    attributes: SmallVec<[Option<Str>; 2]>,
    /// Bit i: the regexes of rule i match.
    rule_mask: u64,
    /// What the shorthand lists and `default` say.
    fallback: Priority,
    generation: u64,
}

/// The `priority` processor.
#[derive(Debug)]
pub struct PriorityTagger {
    rules: Vec<CompiledRule>,
    lists: Vec<(Priority, RegexSet)>,
    default: Priority,
    /// Attribute keys the rules' `attributes` conditions read.
    attr_keys: Vec<Str>,
    key: Str,
    values: [Value; 4],
    cache: IdMap<Cached>,
    generation: u64,
    scratch: Vec<KeyValue>,
}

fn str_attr(resource: &Resource, key: &str) -> Option<Str> {
    match resource.attributes.get(key)? {
        Value::Str(s) => Some(s.clone()),
        _ => None,
    }
}

impl PriorityTagger {
    pub fn new(config: &PriorityConfig) -> Result<PriorityTagger, String> {
        let mut problems = Vec::new();
        let (rules, lists, attr_keys) = config.compile(&mut problems);
        let tagger = PriorityTagger {
            rules,
            lists,
            default: config.default,
            attr_keys,
            key: semconv::PHOENIX_PRIORITY.into(),
            values: Priority::ALL.map(|p| Value::Str(Arc::from(p.as_str()))),
            cache: IdMap::default(),
            generation: 0,
            scratch: Vec::new(),
        };
        into_result(tagger, problems)
    }

    fn text_decision(&self, resource: &Resource) -> Cached {
        let name = str_attr(resource, semconv::PROCESS_EXECUTABLE_NAME);
        let command_line = str_attr(resource, semconv::PROCESS_COMMAND_LINE);
        let owner = str_attr(resource, semconv::PROCESS_OWNER);
        let attributes = self
            .attr_keys
            .iter()
            .map(|k| str_attr(resource, k))
            .collect();
        let mut text = Cached {
            name,
            command_line,
            owner,
            attributes,
            rule_mask: 0,
            fallback: self.default,
            generation: self.generation,
        };
        for (i, rule) in self.rules.iter().enumerate().take(MAX_RULES) {
            if rule.text_matches(&text) {
                text.rule_mask |= 1 << i;
            }
        }
        text.fallback = text
            .name
            .as_deref()
            .and_then(|n| {
                self.lists
                    .iter()
                    .find(|(_, set)| set.is_match(n))
                    .map(|(p, _)| *p)
            })
            .unwrap_or(self.default);
        text
    }

    fn priority_of(&mut self, resource: &Resource) -> Priority {
        let Some(identity) = resource.identity else {
            return decide(&self.rules, &self.text_decision(resource), resource);
        };
        let stale = self.cache.get(&identity).is_none_or(|c| {
            !same_str(resource, semconv::PROCESS_EXECUTABLE_NAME, &c.name)
                || !same_str(resource, semconv::PROCESS_COMMAND_LINE, &c.command_line)
                || !same_str(resource, semconv::PROCESS_OWNER, &c.owner)
                || !self
                    .attr_keys
                    .iter()
                    .zip(&c.attributes)
                    .all(|(k, v)| same_str(resource, k, v))
        });
        if stale {
            let cached = self.text_decision(resource);
            self.cache.insert(identity, cached);
        }
        match self.cache.get_mut(&identity) {
            Some(cached) => {
                cached.generation = self.generation;
                decide(&self.rules, cached, resource)
            }
            None => self.default,
        }
    }
}

/// The first rule whose regexes matched (cached) and whose thresholds hold
/// now; else what the lists and `default` said.
fn decide(rules: &[CompiledRule], cached: &Cached, resource: &Resource) -> Priority {
    let mut mask = cached.rule_mask;
    while mask != 0 {
        let i = mask.trailing_zeros() as usize;
        mask &= mask - 1;
        if let Some(rule) = rules.get(i)
            && rule.thresholds_hold(resource)
        {
            return rule.priority;
        }
    }
    cached.fallback
}

/// Whether the resource's string attribute `key` is the cached one (a
/// non-string value counts as absent, as `text_decision` reads it).
fn same_str(resource: &Resource, key: &str, cached: &Option<Str>) -> bool {
    match (resource.attributes.get(key), cached) {
        (Some(Value::Str(s)), Some(c)) => s == c,
        (Some(Value::Str(_)), None) => false,
        (_, c) => c.is_none(),
    }
}

impl Processor for PriorityTagger {
    fn process(&mut self, batch: &mut Batch) {
        self.generation += 1;
        for i in 0..batch.resources.len() {
            let priority = self.priority_of(&batch.resources[i]);
            let value = &self.values[priority as usize];
            let resource = &mut batch.resources[i];
            if resource.attributes.get(&self.key) == Some(value) {
                continue;
            }
            // One allocation for the new set: the scratch Vec's drain is
            // exact-sized, so it collects straight into the shared slice.
            self.scratch.clear();
            let mut replaced = false;
            for kv in resource.attributes.iter() {
                if kv.key == self.key {
                    self.scratch
                        .push(KeyValue::new(kv.key.clone(), value.clone()));
                    replaced = true;
                } else {
                    self.scratch.push(kv.clone());
                }
            }
            if !replaced {
                self.scratch
                    .push(KeyValue::new(self.key.clone(), value.clone()));
            }
            resource.attributes = self.scratch.drain(..).collect();
        }
        if self.cache.len() > 2 * batch.resources.len() + 64 {
            let generation = self.generation;
            self.cache.retain(|_, c| c.generation == generation);
        }
    }
}
