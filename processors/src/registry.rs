//! From a processor's type name and YAML config to a running processor:
//! parse ([`ProcessorConfig::from_kind`]), check everything at once
//! ([`ProcessorConfig::validate`]), then [`ProcessorConfig::build`].

use serde::Deserialize;

use crate::problem::Problem;
use crate::processor::Processor;
use crate::processors::{
    Aggregate, AggregateConfig, AttributeActions, AttributesConfig, Budget, BudgetConfig, Filter,
    FilterConfig, K8sAttributesConfig, PriorityConfig, PriorityTagger, Sample, SampleConfig, TopK,
    TopKConfig,
};

/// Every processor type this build knows, as written before the `/` of an id.
pub const PROCESSOR_TYPES: &[&str] = &[
    "filter",
    "priority",
    "attributes",
    "aggregate",
    "topk",
    "sample",
    "budget",
    "k8sattributes",
];

#[derive(Debug, Clone, PartialEq)]
pub enum ProcessorConfig {
    Filter(FilterConfig),
    Priority(PriorityConfig),
    Attributes(AttributesConfig),
    Aggregate(AggregateConfig),
    TopK(TopKConfig),
    Sample(SampleConfig),
    Budget(BudgetConfig),
    /// Built by the agent, which owns the pod metadata source it reads
    /// ([`crate::processors::K8sAttributes::new`]); [`ProcessorConfig::build`] refuses it.
    K8sAttributes(K8sAttributesConfig),
}

/// A config that is null or absent (`filter:`) means "defaults" for types
/// that have them, and "missing field" for those that do not.
fn parse<'de, T, D>(d: D, on_null: impl FnOnce() -> Result<T, String>) -> Result<T, String>
where
    T: Deserialize<'de>,
    D: serde::Deserializer<'de>,
{
    match Option::<T>::deserialize(d) {
        Ok(Some(config)) => Ok(config),
        Ok(None) => on_null(),
        Err(e) => Err(e.to_string()),
    }
}

fn missing<T>(field: &str) -> Result<T, String> {
    Err(format!("missing field `{field}`"))
}

impl ProcessorConfig {
    /// Deserialize the config of a processor of type `kind` (the part of its id before '/'); null/empty = defaults where the type has them.
    pub fn from_kind<'de, D: serde::Deserializer<'de>>(kind: &str, d: D) -> Result<Self, String> {
        Ok(match kind {
            "filter" => ProcessorConfig::Filter(parse(d, || Ok(FilterConfig::default()))?),
            "priority" => ProcessorConfig::Priority(parse(d, || Ok(PriorityConfig::default()))?),
            "attributes" => {
                ProcessorConfig::Attributes(parse(d, || Ok(AttributesConfig::default()))?)
            }
            "aggregate" => ProcessorConfig::Aggregate(parse(d, || Ok(AggregateConfig::default()))?),
            "topk" => ProcessorConfig::TopK(parse(d, || missing("k"))?),
            "sample" => ProcessorConfig::Sample(parse(d, || missing("fraction"))?),
            "budget" => ProcessorConfig::Budget(parse(d, || missing("max_series"))?),
            "k8sattributes" => {
                ProcessorConfig::K8sAttributes(parse(d, || Ok(K8sAttributesConfig::default()))?)
            }
            other => {
                return Err(format!(
                    "unknown processor type {other:?} (known: {})",
                    PROCESSOR_TYPES.join(", ")
                ));
            }
        })
    }

    /// The type name, as in [`PROCESSOR_TYPES`].
    pub fn kind(&self) -> &'static str {
        match self {
            ProcessorConfig::Filter(_) => "filter",
            ProcessorConfig::Priority(_) => "priority",
            ProcessorConfig::Attributes(_) => "attributes",
            ProcessorConfig::Aggregate(_) => "aggregate",
            ProcessorConfig::TopK(_) => "topk",
            ProcessorConfig::Sample(_) => "sample",
            ProcessorConfig::Budget(_) => "budget",
            ProcessorConfig::K8sAttributes(_) => "k8sattributes",
        }
    }

    /// Whether the processor may drop or merge (unprotected) resources.
    pub fn is_lossy(&self) -> bool {
        !matches!(
            self,
            ProcessorConfig::Priority(_)
                | ProcessorConfig::Attributes(_)
                | ProcessorConfig::K8sAttributes(_)
        )
    }

    /// Every problem (empty = valid): k = 0, invalid regex (say which and why), unknown metric name to rank by, fraction outside 0..=1, ...
    pub fn validate(&self) -> Vec<Problem> {
        match self {
            ProcessorConfig::Filter(c) => c.validate(),
            ProcessorConfig::Priority(c) => c.validate(),
            ProcessorConfig::Attributes(c) => c.validate(),
            ProcessorConfig::Aggregate(c) => c.validate(),
            ProcessorConfig::TopK(c) => c.validate(),
            ProcessorConfig::Sample(c) => c.validate(),
            ProcessorConfig::Budget(c) => c.validate(),
            ProcessorConfig::K8sAttributes(c) => c.validate(),
        }
    }

    /// Build a fresh processor (regexes compiled here). Errors only for what validate missed.
    pub fn build(&self) -> Result<Box<dyn Processor>, String> {
        Ok(match self {
            ProcessorConfig::Filter(c) => Box::new(Filter::new(c)?),
            ProcessorConfig::Priority(c) => Box::new(PriorityTagger::new(c)?),
            ProcessorConfig::Attributes(c) => Box::new(AttributeActions::new(c)?),
            ProcessorConfig::Aggregate(c) => Box::new(Aggregate::new(c)?),
            ProcessorConfig::TopK(c) => Box::new(TopK::new(c)?),
            ProcessorConfig::Sample(c) => Box::new(Sample::new(c)?),
            ProcessorConfig::Budget(c) => Box::new(Budget::new(c)?),
            ProcessorConfig::K8sAttributes(_) => {
                return Err(
                    "k8sattributes reads pod metadata the agent fetches: build it with K8sAttributes::new".into(),
                );
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(kind: &str, yaml: &str) -> Vec<Problem> {
        let value: serde_norway::Value = serde_norway::from_str(yaml).expect("test YAML");
        let config = ProcessorConfig::from_kind(kind, value).expect("parses");
        config.validate()
    }

    fn fields(kind: &str, yaml: &str) -> Vec<String> {
        problems(kind, yaml).into_iter().map(|p| p.field).collect()
    }

    #[test]
    fn every_problem_names_its_field_apart_from_the_text() {
        let k = &problems("topk", "{ k: 0 }")[0];
        assert_eq!(k.field, "k");
        assert_eq!(k.message, "must be at least 1 (got 0)");
        assert_eq!(k.to_string(), "k must be at least 1 (got 0)");

        assert_eq!(
            fields("topk", "{ k: 0, by: nope, hysteresis: 3 }"),
            ["k", "by", "hysteresis"]
        );
        assert_eq!(
            fields(
                "priority",
                "{ critical: ['(x'], rules: [{ priority: high }] }"
            ),
            ["rules[0]", "critical[0]"]
        );
        assert_eq!(
            fields(
                "attributes",
                "{ actions: [{ action: truncate, key: '', max_length: 0 }] }"
            ),
            ["actions[0].key", "actions[0].max_length"]
        );
        assert_eq!(
            fields("filter", "{ exclude: { attributes: [] } }"),
            ["exclude.attributes"]
        );
        assert_eq!(
            fields("budget", "{ max_series: 10, min_k: 5, max_k: 2 }"),
            ["min_k"]
        );
        // Both ways of ranking given: the component as a whole is wrong.
        assert_eq!(
            fields(
                "topk",
                "{ k: 1, by: process.memory.usage, score: { process.memory.usage: 1 } }"
            ),
            [""]
        );
    }
}
