//! One agent config from an experiment: the base's receivers and
//! exporters, and one pipeline per variant on the same scrape, each
//! with its own processors (renamed `type/<variant>.<name>` so variants
//! never share processor state), plus the `experiment` block that makes the
//! agent compare every candidate with the baseline.
//!
//! The same function builds the promoted config: the winner's pipeline
//! alone, exported, with no experiment block.

use std::path::Path;

use serde_norway::{Mapping, Value};

use super::spec::{ExperimentSpec, Mode, SpecError, VariantSpec, variant_mode, variant_name};
use crate::templates;

/// A composed agent config.
#[derive(Debug, Clone)]
pub struct Composed {
    pub yaml: String,
    pub hash: String,
}

/// What to compose.
pub enum Shape<'a> {
    /// Every variant side by side, compared with the baseline.
    Experiment { id: &'a str },
    /// One variant, exported, as the targets' new config, with the
    /// experiment's critical processes (no baseline: nothing is compared,
    /// each pipeline counts the critical processes it keeps visible, which
    /// a promotion in waves watches).
    Promoted { id: &'a str, variant: &'a str },
}

/// The processors of one variant, in chain order: (id, settings).
type Chain = Vec<(String, Value)>;

fn load_template(dir: &Path, name: &str, field: &str) -> Result<Value, SpecError> {
    let t = templates::get(dir, name)
        .and_then(|t| t.content)
        .ok_or_else(|| {
            SpecError::new(
                field,
                format!("no template {name:?} (GET /api/v1/templates lists them)"),
            )
        })?;
    parse_yaml(&t, field)
}

fn parse_yaml(text: &str, field: &str) -> Result<Value, SpecError> {
    phoenix_config::yaml::check_budget(text).map_err(|e| SpecError::new(field, e.to_string()))?;
    let v: Value = serde_norway::from_str(text)
        .map_err(|e| SpecError::new(field, format!("not a YAML document: {e}")))?;
    if v.is_mapping() {
        Ok(v)
    } else {
        Err(SpecError::new(
            field,
            "must be a YAML mapping (an agent config)",
        ))
    }
}

fn section<'v>(config: &'v Value, key: &str) -> Option<&'v Mapping> {
    config.get(key).and_then(Value::as_mapping)
}

/// The processor chain of a template: its one pipeline's processors.
fn template_chain(dir: &Path, name: &str, field: &str) -> Result<Chain, SpecError> {
    let t = load_template(dir, name, &format!("{field}.template"))?;
    let pipelines = t
        .get("service")
        .and_then(|s| s.get("pipelines"))
        .and_then(Value::as_mapping)
        .ok_or_else(|| {
            SpecError::new(
                format!("{field}.template"),
                format!("template {name:?} has no service.pipelines"),
            )
        })?;
    if pipelines.len() != 1 {
        return Err(SpecError::new(
            format!("{field}.template"),
            format!(
                "template {name:?} has {} pipelines: a variant takes a template with exactly one",
                pipelines.len()
            ),
        ));
    }
    let (_, pipeline) = pipelines.iter().next().expect("one pipeline");
    let processors = section(&t, "processors");
    let mut chain = Chain::new();
    for id in pipeline
        .get("processors")
        .and_then(Value::as_sequence)
        .into_iter()
        .flatten()
    {
        let id = id.as_str().unwrap_or_default().to_string();
        let settings = processors
            .and_then(|p| p.get(id.as_str()))
            .cloned()
            .unwrap_or(Value::Mapping(Mapping::new()));
        chain.push((id, settings));
    }
    Ok(chain)
}

fn variant_chain(dir: &Path, v: &VariantSpec, field: &str) -> Result<Chain, SpecError> {
    if let Some(t) = &v.template {
        return template_chain(dir, t, field);
    }
    let mut chain = Chain::new();
    for entry in v.processors.iter().flatten() {
        for (id, settings) in entry {
            let settings = serde_norway::to_value(settings)
                .map_err(|e| SpecError::new(format!("{field}.processors"), format!("{id}: {e}")))?;
            chain.push((id.clone(), settings));
        }
    }
    Ok(chain)
}

/// `filter/idle` in variant `lean` → `filter/lean.idle`; `topk` → `topk/lean`.
fn rename(id: &str, variant: &str) -> String {
    match id.split_once('/') {
        Some((kind, name)) => format!("{kind}/{variant}.{name}"),
        None => format!("{id}/{variant}"),
    }
}

/// The base config: receivers and exporters.
fn base_config(dir: &Path, spec: &ExperimentSpec) -> Result<Value, SpecError> {
    if let Some(base) = &spec.base {
        if let Some(t) = &base.template {
            return load_template(dir, t, "base.template");
        }
        if let Some(y) = &base.yaml {
            return parse_yaml(y, "base.yaml");
        }
    }
    if let Some(t) = &spec.baseline.template {
        return load_template(dir, t, "baseline.template");
    }
    parse_yaml(phoenix_config::EMBEDDED_DEFAULT, "base")
}

fn key(s: &str) -> Value {
    Value::String(s.to_string())
}

fn strings(items: &[String]) -> Value {
    Value::Sequence(items.iter().map(|s| key(s)).collect())
}

/// Compose the agent config for `shape`. Errors name the definition's field.
pub fn compose(
    dir: &Path,
    spec: &ExperimentSpec,
    shape: Shape<'_>,
) -> Result<Composed, Vec<SpecError>> {
    let base = base_config(dir, spec).map_err(|e| vec![e])?;
    let timing = spec.timing()?;
    let mut errors = Vec::new();

    // Receivers: the base's, every procfs one scraping at the experiment's
    // interval (the analysis and the cost estimate count on it).
    let mut receivers = section(&base, "receivers").cloned().unwrap_or_default();
    if receivers.is_empty() {
        errors.push(SpecError::new("base", "the base config has no receivers"));
    }
    let interval = format!("{}ms", timing.interval_ms);
    // The promoted config keeps the base's own interval: an experiment run
    // at 1 s for quick answers must not leave production scraping at 1 s.
    let set_interval = matches!(shape, Shape::Experiment { .. });
    for (id, settings) in receivers.iter_mut().filter(|_| set_interval) {
        let is_procfs = id
            .as_str()
            .is_some_and(|i| i.split('/').next() == Some("procfs"));
        if is_procfs {
            if !settings.is_mapping() {
                *settings = Value::Mapping(Mapping::new());
            }
            if let Some(m) = settings.as_mapping_mut() {
                m.insert(key("collection_interval"), key(&interval));
            }
        }
    }
    let receiver_ids: Vec<String> = receivers
        .keys()
        .filter_map(|k| k.as_str().map(str::to_string))
        .collect();
    let exporters = section(&base, "exporters").cloned().unwrap_or_default();
    let exporter_ids: Vec<String> = exporters
        .keys()
        .filter_map(|k| k.as_str().map(str::to_string))
        .collect();

    let mut processors = Mapping::new();
    let mut pipelines = Mapping::new();
    let mut used_exporters = false;
    for (field, variant, is_baseline) in spec.variants_with_fields() {
        let name = variant_name(variant, is_baseline);
        let mode = match shape {
            Shape::Experiment { .. } => variant_mode(variant, is_baseline),
            Shape::Promoted {
                variant: winner, ..
            } if winner == name => Mode::Export,
            Shape::Promoted { .. } => continue,
        };
        let chain = match variant_chain(dir, variant, &field) {
            Ok(c) => c,
            Err(e) => {
                errors.push(e);
                continue;
            }
        };
        let mut ids = Vec::with_capacity(chain.len());
        for (id, settings) in chain {
            let renamed = rename(&id, &name);
            processors.insert(key(&renamed), settings);
            ids.push(renamed);
        }
        let mut pipeline = Mapping::new();
        pipeline.insert(key("receivers"), strings(&receiver_ids));
        if !ids.is_empty() {
            pipeline.insert(key("processors"), strings(&ids));
        }
        match mode {
            Mode::Export => {
                if exporter_ids.is_empty() {
                    errors.push(SpecError::new(
                        format!("{field}.mode"),
                        "export needs exporters, and the base config has none (set `base`, or mode: shadow)",
                    ));
                }
                used_exporters = true;
                pipeline.insert(key("exporters"), strings(&exporter_ids));
            }
            Mode::Shadow => {
                pipeline.insert(key("mode"), key("shadow"));
            }
        }
        pipelines.insert(key(&format!("metrics/{name}")), Value::Mapping(pipeline));
    }
    if !errors.is_empty() {
        return Err(errors);
    }

    let mut service = Mapping::new();
    service.insert(key("pipelines"), Value::Mapping(pipelines));
    // No `service.telemetry`: it is local-only on every agent (a remote
    // config that changes it is refused), and each agent keeps its own.
    let mut config = Mapping::new();
    config.insert(key("receivers"), Value::Mapping(receivers));
    if !processors.is_empty() {
        config.insert(key("processors"), Value::Mapping(processors));
    }
    if used_exporters {
        config.insert(key("exporters"), Value::Mapping(exporters));
    }
    config.insert(key("service"), Value::Mapping(service));
    let (id, baseline, header) = match shape {
        Shape::Experiment { id } => (
            id,
            Some(format!("metrics/{}", spec.baseline_name())),
            format!(
                "# Composed by phoenix-controller for experiment {id} ({}).\n",
                one_line(&spec.name)
            ),
        ),
        Shape::Promoted { id, variant } => (
            id,
            None,
            format!(
                "# Promoted by phoenix-controller: variant {variant} of experiment {id} ({}).\n",
                one_line(&spec.name)
            ),
        ),
    };
    let mut experiment = Mapping::new();
    experiment.insert(key("id"), key(id));
    if let Some(b) = baseline {
        experiment.insert(key("baseline"), key(&b));
    }
    experiment.insert(key("critical_processes"), strings(&spec.critical_processes));
    config.insert(key("experiment"), Value::Mapping(experiment));
    let body = serde_norway::to_string(&Value::Mapping(config)).map_err(|e| {
        vec![SpecError::new(
            "",
            format!("cannot write the composed config: {e}"),
        )]
    })?;
    let yaml = header + &body;
    let hash = phoenix_config::config_hash(&yaml);
    Ok(Composed { yaml, hash })
}

/// The experiment's composed config `config` without the pipelines of
/// `variants` (disqualified candidates), their processors (renamed for
/// their variant, so no other pipeline uses them), and the exporters when
/// no pipeline left exports. Reduced from the stored config, never composed
/// again from the templates: one edited since must not change what the
/// other variants run. The same config and variants give the same text.
pub fn without(
    config: &str,
    experiment_id: &str,
    variants: &[String],
) -> Result<Composed, SpecError> {
    let mut value = parse_yaml(config, "config")?;
    let Some(root) = value.as_mapping_mut() else {
        return Err(SpecError::new("config", "must be a YAML mapping"));
    };
    let pipelines = root
        .get_mut("service")
        .and_then(|s| s.get_mut("pipelines"))
        .and_then(Value::as_mapping_mut)
        .ok_or_else(|| SpecError::new("config", "has no service.pipelines"))?;
    let mut dropped_processors = Vec::new();
    for variant in variants {
        if let Some(pipeline) = pipelines.remove(format!("metrics/{variant}").as_str()) {
            dropped_processors.extend(
                pipeline
                    .get("processors")
                    .and_then(Value::as_sequence)
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                    .map(str::to_string),
            );
        }
    }
    let exports = pipelines.values().any(|p| {
        p.get("exporters")
            .and_then(Value::as_sequence)
            .is_some_and(|e| !e.is_empty())
    });
    let no_processors = match root.get_mut("processors").and_then(Value::as_mapping_mut) {
        Some(processors) => {
            for id in &dropped_processors {
                processors.remove(id.as_str());
            }
            processors.is_empty()
        }
        None => false,
    };
    // As `compose` writes them: no empty sections.
    if no_processors {
        root.remove("processors");
    }
    if !exports {
        root.remove("exporters");
    }
    let body = serde_norway::to_string(&value)
        .map_err(|e| SpecError::new("config", format!("cannot write the reduced config: {e}")))?;
    let header = format!(
        "# Composed by phoenix-controller for experiment {experiment_id}, without the \
         disqualified {}.\n",
        one_line(&variants.join(", "))
    );
    let yaml = header + &body;
    let hash = phoenix_config::config_hash(&yaml);
    Ok(Composed { yaml, hash })
}

fn one_line(s: &str) -> String {
    s.chars()
        .map(|c| {
            if super::spec::breaks_a_line(c) {
                ' '
            } else {
                c
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use phoenix_config::AgentConfig;

    fn templates_dir() -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs/templates")
    }

    const SPEC: &str = "
name: test
targets: { labels: { env: test } }
base:
  yaml: |
    receivers: { procfs: { collection_interval: 10s } }
    exporters: { file: { path: /tmp/x.jsonl } }
    service: { pipelines: { metrics: { receivers: [procfs], exporters: [file] } } }
candidates:
  - template: process-aggressive-v1
  - name: no-sshd
    mode: export
    processors:
      - filter/drop: { exclude: { attributes: [ { key: process.executable.name, value: sshd } ] } }
critical_processes: ['^sshd$']
interval: 1s
duration: 10s
";

    #[test]
    fn the_experiment_config_runs_every_variant_on_one_scrape() {
        let spec = ExperimentSpec::parse(SPEC).unwrap();
        let c = compose(&templates_dir(), &spec, Shape::Experiment { id: "exp-1" }).unwrap();
        let config = AgentConfig::load_with_env(&c.yaml, &|_| None)
            .unwrap_or_else(|e| panic!("{e:?}\n{}", c.yaml));
        let names: Vec<String> = config.pipelines.keys().map(|k| k.to_string()).collect();
        assert_eq!(
            names,
            vec!["metrics/aggressive", "metrics/baseline", "metrics/no-sshd"]
        );
        let e = config.experiment.unwrap();
        assert_eq!(
            (e.id.as_str(), e.baseline.as_deref()),
            ("exp-1", Some("metrics/baseline"))
        );
        // Each variant has its own processors, in the template's order.
        let aggressive =
            &config.pipelines[&phoenix_config::ComponentId::parse("metrics/aggressive").unwrap()];
        let chain: Vec<String> = aggressive
            .processors
            .iter()
            .map(|p| p.to_string())
            .collect();
        assert_eq!(
            chain,
            vec![
                "priority/aggressive",
                "topk/aggressive.score",
                "attributes/aggressive.slim"
            ]
        );
        assert!(c.yaml.contains("collection_interval: 1000ms"), "{}", c.yaml);
        assert_eq!(c.hash, phoenix_config::config_hash(&c.yaml));
    }

    #[test]
    fn the_promoted_config_is_the_winner_alone() {
        let spec = ExperimentSpec::parse(SPEC).unwrap();
        let c = compose(
            &templates_dir(),
            &spec,
            Shape::Promoted {
                id: "exp-1",
                variant: "aggressive",
            },
        )
        .unwrap();
        let config = AgentConfig::load_with_env(&c.yaml, &|_| None).unwrap();
        assert_eq!(config.pipelines.len(), 1);
        assert!(c.yaml.contains("collection_interval: 10s"), "{}", c.yaml);
        // The critical processes to count, and nothing to compare.
        let experiment = config.experiment.expect("the critical processes");
        assert_eq!(experiment.baseline, None);
        assert_eq!(experiment.critical_processes, ["^sshd$"]);
        assert!(
            !config
                .pipelines
                .values()
                .next()
                .unwrap()
                .exporters
                .is_empty()
        );
    }

    #[test]
    fn without_a_disqualified_candidate_the_others_run_as_composed() {
        let spec = ExperimentSpec::parse(SPEC).unwrap();
        let c = compose(&templates_dir(), &spec, Shape::Experiment { id: "exp-1" }).unwrap();
        let reduced = without(&c.yaml, "exp-1", &["aggressive".to_string()]).unwrap();
        assert!(
            reduced.yaml.starts_with(
                "# Composed by phoenix-controller for experiment exp-1, without the \
                 disqualified aggressive.\n"
            ),
            "{}",
            reduced.yaml
        );
        assert_eq!(reduced.hash, phoenix_config::config_hash(&reduced.yaml));
        let config = AgentConfig::load_with_env(&reduced.yaml, &|_| None)
            .unwrap_or_else(|e| panic!("{e:?}\n{}", reduced.yaml));
        let names: Vec<String> = config.pipelines.keys().map(|k| k.to_string()).collect();
        assert_eq!(names, vec!["metrics/baseline", "metrics/no-sshd"]);
        assert!(config.experiment.is_some(), "still an experiment");
        // Its processors went with it; the others' are untouched.
        let body: String = reduced.yaml.lines().skip(1).collect();
        assert!(!body.contains("aggressive"), "{}", reduced.yaml);
        let full = AgentConfig::load_with_env(&c.yaml, &|_| None).unwrap();
        let id = |p: &str| phoenix_config::ComponentId::parse(p).unwrap();
        assert_eq!(
            format!("{:?}", config.pipelines[&id("metrics/no-sshd")]),
            format!("{:?}", full.pipelines[&id("metrics/no-sshd")])
        );
        assert!(
            reduced.yaml.contains("filter/no-sshd.drop"),
            "{}",
            reduced.yaml
        );
        // The same reduction, the same config.
        let again = without(&c.yaml, "exp-1", &["aggressive".to_string()]).unwrap();
        assert_eq!(again.hash, reduced.hash);
    }

    #[test]
    fn without_the_only_exporting_candidate_the_exporters_go_too() {
        // The baseline in shadow: only `no-sshd` exports.
        let text = SPEC.replace(
            "critical_processes:",
            "baseline: { mode: shadow }\ncritical_processes:",
        );
        let spec = ExperimentSpec::parse(&text).unwrap();
        let c = compose(&templates_dir(), &spec, Shape::Experiment { id: "exp-2" }).unwrap();
        assert!(c.yaml.contains("exporters:"), "{}", c.yaml);
        let gone = ["no-sshd".to_string(), "aggressive".to_string()];
        let reduced = without(&c.yaml, "exp-2", &gone).unwrap();
        assert!(!reduced.yaml.contains("exporters:"), "{}", reduced.yaml);
        assert!(!reduced.yaml.contains("processors:"), "{}", reduced.yaml);
        let config = AgentConfig::load_with_env(&reduced.yaml, &|_| None)
            .unwrap_or_else(|e| panic!("{e:?}\n{}", reduced.yaml));
        assert_eq!(config.pipelines.len(), 1);
        // Not a config at all: an error, not a panic.
        assert!(without("- a list", "exp-2", &gone).is_err());
        assert!(without("receivers: {}", "exp-2", &gone).is_err());
    }

    #[test]
    fn every_example_experiment_composes_into_a_valid_agent_config() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs/experiments");
        let mut seen = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let text = std::fs::read_to_string(&path).unwrap();
            let spec = ExperimentSpec::parse(&text)
                .unwrap_or_else(|e| panic!("{}: {e:?}", path.display()));
            let c = compose(
                &templates_dir(),
                &spec,
                Shape::Experiment { id: "exp-example" },
            )
            .unwrap_or_else(|e| panic!("{}: {e:?}", path.display()));
            AgentConfig::load_with_env(&c.yaml, &|_| None)
                .unwrap_or_else(|e| panic!("{}: {e:?}\n{}", path.display(), c.yaml));
            seen += 1;
        }
        assert!(seen >= 4, "examples in {}", dir.display());
    }

    #[test]
    fn an_inline_base_over_the_yaml_budget_is_refused_by_its_field() {
        // Nine levels of nine aliases inside the definition's `base.yaml`:
        // one harmless scalar in the definition, a bomb once read as YAML.
        let mut bomb = String::from("    l0: &l0 [x, x, x, x, x, x, x, x, x]\n");
        for i in 1..9 {
            let aliases = vec![format!("*l{}", i - 1); 9].join(", ");
            bomb.push_str(&format!("    l{i}: &l{i} [{aliases}]\n"));
        }
        let base = "    receivers: { procfs: { collection_interval: 10s } }\n";
        let spec = ExperimentSpec::parse(&SPEC.replace(base, &bomb)).unwrap();
        let e = compose(&templates_dir(), &spec, Shape::Experiment { id: "x" }).unwrap_err();
        assert_eq!(e[0].field, "base.yaml", "{e:?}");
        let budget = format!(
            "YAML budget: more than {} nodes once aliases are expanded",
            phoenix_config::yaml::MAX_NODES
        );
        assert!(e[0].message.starts_with(&budget), "{e:?}");
    }

    #[test]
    fn an_unknown_template_names_its_field() {
        let spec = ExperimentSpec::parse(&SPEC.replace("process-aggressive-v1", "nope")).unwrap();
        let e = compose(&templates_dir(), &spec, Shape::Experiment { id: "x" }).unwrap_err();
        assert_eq!(e[0].field, "candidates[0].template", "{e:?}");
    }
}
