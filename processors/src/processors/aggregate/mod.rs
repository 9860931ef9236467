//! `aggregate`: collapse unprotected resources that share the values of
//! `group_by` into one resource per group, combining their metrics and
//! counting members in `phoenix.process.count`. Protected resources
//! (critical, and the priorities in `protect`) pass through individually.
//!
//! ```yaml
//! aggregate/by_name:
//!   group_by: [process.executable.name]
//!   functions: { process.memory.usage: max }
//!   protect: [high]        # critical and high stay individual
//! ```
//!
//! With `track_children` instead of `group_by`, a process is folded into
//! its nearest ancestor that matches a rule, and a matching process into
//! a matching ancestor of the same name (nginx workers into their master;
//! see [`children`]):
//!
//! ```yaml
//! aggregate/workers:
//!   track_children:
//!     - { executable_name: "^(nginx|gunicorn|postgres)$" }
//!     - { command_line: "^/bin/bash /opt/run\\.sh" }
//! ```

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Deserialize;
use smallvec::SmallVec;

use super::priority::Priority;
use super::rollup::{Rollup, process_count_desc};
use super::{Protection, attribute, into_result};
use crate::hash::{IdMap, hash_value};
use crate::model::{Attributes, Batch, KeyValue, MetricDesc, Str, Value};
use crate::problem::Problem;
use crate::processor::Processor;
use crate::semconv;
use children::Children;
pub use children::ChildrenRule;

pub mod children;

/// How the points of one metric are combined across a group's members.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AggregateFunction {
    Sum,
    Min,
    Max,
    Mean,
}

impl AggregateFunction {
    /// Sum conserves totals, so it is the default; `process.uptime` is an
    /// age, and the sum of ages means nothing: the group reports its oldest.
    pub fn default_for(metric: &str) -> AggregateFunction {
        if metric == semconv::PROCESS_UPTIME {
            AggregateFunction::Max
        } else {
            AggregateFunction::Sum
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AggregateConfig {
    /// Attribute keys whose values define a group. Default (`None`)
    /// `[process.executable.name]`. A key may name a common attribute
    /// (`host.name`). Members lacking a key form their own group, without
    /// that attribute. An `Option` so that giving it together with
    /// `track_children` can be told from leaving it out.
    #[serde(default)]
    pub group_by: Option<Vec<String>>,
    /// Per-metric combining function; metrics not listed use
    /// [`AggregateFunction::default_for`].
    #[serde(default)]
    pub functions: BTreeMap<String, AggregateFunction>,
    /// Priorities to leave alone besides `critical`, which is always
    /// protected whether listed or not (see [`Protection`]).
    #[serde(default)]
    pub protect: Vec<Priority>,
    /// Instead of `group_by`: fold every process into its nearest ancestor
    /// matching one of these rules (see [`children`]).
    #[serde(default)]
    pub track_children: Option<Vec<ChildrenRule>>,
}

const DEFAULT_GROUP_BY: &[&str] = &[semconv::PROCESS_EXECUTABLE_NAME];

impl AggregateConfig {
    /// The keys `group_by` mode groups by: the given ones or the default.
    pub fn group_by_keys(&self) -> Vec<&str> {
        match &self.group_by {
            Some(keys) => keys.iter().map(String::as_str).collect(),
            None => DEFAULT_GROUP_BY.to_vec(),
        }
    }

    pub fn validate(&self) -> Vec<Problem> {
        let mut problems = Vec::new();
        if self.group_by.is_some() && self.track_children.is_some() {
            problems.push(Problem::component(
                "give either `group_by` or `track_children`, not both",
            ));
        }
        if let Some(rules) = &self.track_children {
            children::compile(rules, &mut problems);
        }
        let group_by = self.group_by.as_deref().unwrap_or_default();
        for (i, key) in group_by.iter().enumerate() {
            if key.is_empty() {
                problems.push(Problem::sentence(format!("group_by[{i}]"), "is empty"));
            } else if group_by[..i].contains(key) {
                problems.push(Problem::sentence(
                    "group_by",
                    format!("lists {key:?} twice"),
                ));
            }
        }
        if self.functions.contains_key(semconv::PHOENIX_PROCESS_COUNT) {
            problems.push(Problem::new(
                "functions",
                format!(
                    "{} is computed by the processor and cannot be given a function",
                    semconv::PHOENIX_PROCESS_COUNT
                ),
            ));
        }
        if self.functions.keys().any(|k| k.is_empty()) {
            problems.push(Problem::new("functions", "empty metric name"));
        }
        problems
    }
}

/// One group of the current interval: the values that define it and its
/// accumulating rollup. Groups are pooled across intervals.
#[derive(Debug, Default)]
struct Group {
    values: SmallVec<[Option<Value>; 2]>,
    rollup: Rollup,
}

/// The `aggregate` processor.
#[derive(Debug)]
pub struct Aggregate {
    protection: Protection,
    keys: Vec<Str>,
    functions: Vec<(String, AggregateFunction)>,
    count_desc: Arc<MetricDesc>,
    /// Groups in order of first appearance; the first `live` are in use.
    groups: Vec<Group>,
    live: usize,
    /// Hash of a group's values → indices into `groups` with that hash.
    index: IdMap<SmallVec<[u32; 1]>>,
    /// Set in `track_children` mode, which then replaces `group_by`.
    children: Option<Children>,
}

impl Aggregate {
    pub fn new(config: &AggregateConfig) -> Result<Aggregate, String> {
        let problems = config.validate();
        let children = config
            .track_children
            .as_deref()
            .map(|rules| Children::new(children::compile(rules, &mut Vec::new())));
        let aggregate = Aggregate {
            protection: Protection::new(&config.protect),
            keys: config.group_by_keys().into_iter().map(Str::from).collect(),
            functions: config
                .functions
                .iter()
                .map(|(k, f)| (k.clone(), *f))
                .collect(),
            count_desc: process_count_desc(),
            groups: Vec::new(),
            live: 0,
            index: IdMap::default(),
            children,
        };
        into_result(aggregate, problems)
    }

    fn function_for(
        functions: &[(String, AggregateFunction)],
        desc: &MetricDesc,
    ) -> AggregateFunction {
        functions
            .iter()
            .find(|(name, _)| **name == *desc.name)
            .map(|(_, f)| *f)
            .unwrap_or_else(|| AggregateFunction::default_for(&desc.name))
    }
}

/// Whether a group's stored values are the ones a resource has.
fn same_values<'a>(
    stored: &[Option<Value>],
    mut actual: impl Iterator<Item = Option<&'a Value>>,
) -> bool {
    stored
        .iter()
        .all(|s| actual.next().is_some_and(|a| s.as_ref() == a))
        && actual.next().is_none()
}

impl Processor for Aggregate {
    fn process(&mut self, batch: &mut Batch) {
        if let Some(children) = &mut self.children {
            let functions = &self.functions;
            let function = |desc: &MetricDesc| Self::function_for(functions, desc);
            children.process(batch, &self.protection, &function, &self.count_desc);
            return;
        }
        self.live = 0;
        self.index.clear();
        let common = batch.common_attributes.clone();
        let Aggregate {
            protection,
            keys,
            functions,
            groups,
            live,
            index,
            ..
        } = self;
        let function = |desc: &MetricDesc| Self::function_for(functions, desc);

        batch.resources.retain_mut(|resource| {
            if protection.covers(resource) {
                return true;
            }
            let values = || keys.iter().map(|k| attribute(resource, &common, k));
            let hash = values().fold(0u64, |h, v| match v {
                Some(v) => hash_value(h.rotate_left(7), v),
                None => h.rotate_left(7) ^ 0x9e37,
            });
            let bucket = index.entry(hash).or_default();
            let found = bucket.iter().copied().find(|&g| {
                groups
                    .get(g as usize)
                    .is_some_and(|group| same_values(&group.values, values()))
            });
            let g = match found {
                Some(g) => g as usize,
                None => {
                    if groups.len() == *live {
                        groups.push(Group::default());
                    }
                    let group = &mut groups[*live];
                    group.values.clear();
                    group.values.extend(values().map(|v| v.cloned()));
                    bucket.push(*live as u32);
                    *live += 1;
                    *live - 1
                }
            };
            groups[g].rollup.add(resource, &function);
            false
        });

        for group in &mut self.groups[..self.live] {
            let attributes: Attributes = self
                .keys
                .iter()
                .zip(group.values.drain(..))
                .filter_map(|(k, v)| v.map(|v| KeyValue::new(k.clone(), v)))
                .collect();
            batch
                .resources
                .push(group.rollup.finish(attributes, &self.count_desc));
        }
        // Drop pooled groups beyond what this interval needed, so a one-off
        // burst of distinct names does not pin memory forever.
        self.groups.truncate(self.live.max(16));
    }
}
