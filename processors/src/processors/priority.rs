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
//!   default: low
//! ```
//!
//! Order: `rules` first (the first whose every condition holds wins), then
//! the shorthand lists `critical`, `high`, `medium` (regexes on
//! `process.executable.name`), then `default`.
//!
//! The regex part of the decision depends only on name, command line and
//! owner, which a process keeps for life (an `exec` changes them and is
//! noticed), so it is computed once per process identity and cached;
//! thresholds are checked every interval.

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

    fn compile(
        &self,
        problems: &mut Vec<Problem>,
    ) -> (Vec<CompiledRule>, Vec<(Priority, RegexSet)>) {
        if self.rules.len() > MAX_RULES {
            problems.push(Problem::new(
                "rules",
                format!("at most {MAX_RULES} rules (got {})", self.rules.len()),
            ));
        }
        let mut rules = Vec::with_capacity(self.rules.len());
        for (i, rule) in self.rules.iter().enumerate() {
            let field = |name: &str| format!("rules[{i}].{name}");
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
                min_cpu: rule.min_cpu_utilization,
                min_memory: rule.min_memory.map(|b| b as f64),
            };
            if rule.executable_name.is_none()
                && rule.command_line.is_none()
                && rule.owner.is_none()
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
        (rules, lists)
    }
}

#[derive(Debug)]
struct CompiledRule {
    priority: Priority,
    executable_name: Option<Regex>,
    command_line: Option<Regex>,
    owner: Option<Regex>,
    min_cpu: Option<f64>,
    min_memory: Option<f64>,
}

impl CompiledRule {
    fn text_matches(&self, name: Option<&str>, cmd: Option<&str>, owner: Option<&str>) -> bool {
        let ok = |re: &Option<Regex>, v: Option<&str>| match re {
            None => true,
            Some(re) => v.is_some_and(|v| re.is_match(v)),
        };
        ok(&self.executable_name, name) && ok(&self.command_line, cmd) && ok(&self.owner, owner)
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
        let (rules, lists) = config.compile(&mut problems);
        let tagger = PriorityTagger {
            rules,
            lists,
            default: config.default,
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
        let mut rule_mask = 0u64;
        for (i, rule) in self.rules.iter().enumerate().take(MAX_RULES) {
            if rule.text_matches(name.as_deref(), command_line.as_deref(), owner.as_deref()) {
                rule_mask |= 1 << i;
            }
        }
        let fallback = name
            .as_deref()
            .and_then(|n| {
                self.lists
                    .iter()
                    .find(|(_, set)| set.is_match(n))
                    .map(|(p, _)| *p)
            })
            .unwrap_or(self.default);
        Cached {
            name,
            command_line,
            owner,
            rule_mask,
            fallback,
            generation: self.generation,
        }
    }

    fn priority_of(&mut self, resource: &Resource) -> Priority {
        let Some(identity) = resource.identity else {
            return decide(&self.rules, &self.text_decision(resource), resource);
        };
        let stale = self.cache.get(&identity).is_none_or(|c| {
            !same_str(resource, semconv::PROCESS_EXECUTABLE_NAME, &c.name)
                || !same_str(resource, semconv::PROCESS_COMMAND_LINE, &c.command_line)
                || !same_str(resource, semconv::PROCESS_OWNER, &c.owner)
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
