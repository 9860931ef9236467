//! The agent's configuration: YAML in the OpenTelemetry Collector's shape.
//!
//! Loading is pure (text in, typed config or every error out) so it can be
//! tested without an environment and shared by the agent (startup,
//! `validate`, reloads) and the controller (pushed configs), which links
//! this crate and not the agent's runtime. Every receiver's and exporter's
//! config struct lives here, beside the others, with its own `validate`.
//! Errors name the component and, where the YAML has one, the line and
//! column.

pub mod component_id;
pub mod duration;
mod env;
pub mod exporter;
mod hash;
mod locate;
pub mod policy;
pub mod receiver;
pub mod yaml;

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_norway::Value;

pub use component_id::ComponentId;
pub use hash::{config_hash, short_hash};

use phoenix_processors::{Problem, ProcessorConfig};

pub use crate::exporter::ExporterConfig;
pub use crate::policy::RemotePolicy;
pub use crate::receiver::ReceiverConfig;
use crate::receiver::procfs::ProcfsConfig;

/// The configuration the agent runs when started without `--config`.
pub const EMBEDDED_DEFAULT: &str = include_str!("default.yaml");

/// One problem in a config, with where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The section and component (`exporters::otlp_grpc/x`), when it is about one.
    pub component: Option<String>,
    /// The field inside the component (`rotation.max_megabytes`), when the
    /// component's own validation named one.
    pub field: Option<String>,
    /// The problem as users read it, field included
    /// (`rotation.max_megabytes: must be at least 1`): `field` is there for
    /// tools, so the text stays what it always was.
    pub message: String,
    /// 1-based line and column in the YAML, when known.
    pub location: Option<(usize, usize)>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(c) = &self.component {
            write!(f, "{c}: ")?;
        }
        f.write_str(&self.message)?;
        if let Some((line, column)) = self.location {
            write!(f, " (line {line}, column {column})")?;
        }
        Ok(())
    }
}

/// Every problem found in a config; never empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// Whether a pipeline's output leaves the agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PipelineMode {
    /// Processed, measured and exported.
    #[default]
    Export,
    /// Processed and measured, never exported: a candidate on trial.
    Shadow,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPipeline {
    receivers: Vec<String>,
    #[serde(default)]
    processors: Vec<String>,
    #[serde(default)]
    exporters: Vec<String>,
    #[serde(default)]
    mode: PipelineMode,
}

/// A pipeline: receivers → processors → exporters, by component id.
#[derive(Debug, Clone, PartialEq)]
pub struct PipelineConfig {
    pub receivers: Vec<ComponentId>,
    pub processors: Vec<ComponentId>,
    pub exporters: Vec<ComponentId>,
    pub mode: PipelineMode,
}

/// Log output settings (`service.telemetry.logs`).
#[derive(Debug, Clone, PartialEq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogsConfig {
    /// `trace`, `debug`, `info`, `warn`, `error`, or a `tracing` filter.
    pub level: String,
    pub format: LogFormat,
}

impl Default for LogsConfig {
    fn default() -> Self {
        LogsConfig {
            level: "info".into(),
            format: LogFormat::Text,
        }
    }
}

/// How log lines are written (`service.telemetry.logs.format`, and the
/// binaries' `--log-format`, whose help lists the values).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, serde::Serialize, clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object a line, for log pipelines.
    Json,
}

/// The agent's own telemetry (`service.telemetry`).
#[derive(Debug, Clone, PartialEq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct TelemetryConfig {
    /// Where `/metrics`, `/healthz`, `/readyz` and `/-/reload` are served.
    pub address: SocketAddr,
    /// Accept `POST /-/reload` from other hosts than localhost.
    pub remote_reload: bool,
    /// Accept a whole config in the body of `POST /-/reload`. Off by
    /// default: the agent often runs as root, and a config can point a file
    /// exporter at any path, so who may send one is an explicit choice.
    pub accept_config_body: bool,
    pub logs: LogsConfig,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        TelemetryConfig {
            address: SocketAddr::from(([127, 0, 0, 1], 8888)),
            remote_reload: false,
            accept_config_body: false,
            logs: LogsConfig::default(),
        }
    }
}

/// The optional `experiment:` block: the pipelines as variants of one trial.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExperimentConfig {
    pub id: String,
    /// The pipeline the others are compared with (`metrics/baseline`).
    /// Without one, no pipeline is a candidate and nothing is compared: the
    /// block names the experiment (stamped on resources and stats) and its
    /// critical processes, whose coverage every pipeline still reports (a
    /// promoted config, watched as it rolls out).
    #[serde(default)]
    pub baseline: Option<String>,
    /// Regexes on the executable name of processes that must stay visible.
    #[serde(default)]
    pub critical_processes: Vec<String>,
}

/// A loaded, checked agent config.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentConfig {
    pub receivers: BTreeMap<ComponentId, ReceiverConfig>,
    pub processors: BTreeMap<ComponentId, ProcessorConfig>,
    pub exporters: BTreeMap<ComponentId, ExporterConfig>,
    pub pipelines: BTreeMap<ComponentId, PipelineConfig>,
    pub telemetry: TelemetryConfig,
    /// What a remote config may do (`service.remote_config`): read from the
    /// local config only; a remote config carries the local one's.
    pub remote_policy: RemotePolicy,
    pub experiment: Option<ExperimentConfig>,
}

/// How a remote config (pushed, posted to `/-/reload`, or kept from one of
/// those) is loaded: within the local config's policy.
#[derive(Debug, Clone, Copy)]
pub struct RemoteRules<'a> {
    pub policy: &'a RemotePolicy,
    /// The local `service.telemetry`: a remote config may repeat it, never
    /// change it. None (the controller, which does not know it): a remote
    /// config must leave `service.telemetry` out.
    pub telemetry: Option<&'a TelemetryConfig>,
    /// The local `procfs.root_path` (see [`RemotePolicy::check`]).
    pub root_path: Option<&'a Path>,
    /// Whether the environment is the agent's own. False for the
    /// controller: values read from `${env:...}` are then unknown, and only
    /// the literal ones are checked (the agent checks the rest).
    pub env_known: bool,
}

impl AgentConfig {
    /// Parse and check `text`, substituting `${env:NAME}` from the process
    /// environment. Returns every error found, not just the first.
    pub fn load(text: &str) -> Result<AgentConfig, ConfigErrors> {
        Self::load_with_env(text, &|name| std::env::var(name).ok())
    }

    /// [`AgentConfig::load`] with an explicit environment (for tests).
    pub fn load_with_env(
        text: &str,
        lookup: &dyn Fn(&str) -> Option<String>,
    ) -> Result<AgentConfig, ConfigErrors> {
        Loader::new(text, None).load(lookup)
    }

    /// Load a remote config within the policy of `local` (the config of the
    /// node's own `--config` file): variables the policy does not list are
    /// never read, `service.telemetry` and the policy stay the local ones,
    /// and every rule is checked. A breach refuses the whole config.
    pub fn load_remote(text: &str, local: &AgentConfig) -> Result<AgentConfig, ConfigErrors> {
        let root_path = local.procfs_root_path();
        let rules = RemoteRules {
            policy: &local.remote_policy,
            telemetry: Some(&local.telemetry),
            root_path: Some(&root_path),
            env_known: true,
        };
        Self::load_with_rules(text, &|name| std::env::var(name).ok(), rules)
    }

    /// [`AgentConfig::load_remote`] with explicit rules and environment:
    /// the controller checks a push against each target's reported policy
    /// with an empty environment.
    pub fn load_with_rules(
        text: &str,
        lookup: &dyn Fn(&str) -> Option<String>,
        rules: RemoteRules,
    ) -> Result<AgentConfig, ConfigErrors> {
        Loader::new(text, Some(rules)).load(lookup)
    }

    /// The `procfs.root_path` of the first procfs receiver (`/` without one):
    /// what a remote config must keep unless the policy allows otherwise.
    pub fn procfs_root_path(&self) -> PathBuf {
        self.receivers
            .values()
            .map(|ReceiverConfig::Procfs(p)| p.root_path.clone())
            .next()
            .unwrap_or_else(|| PathBuf::from("/"))
    }

    /// The embedded default config (procfs every 10s, console, Prometheus on
    /// 127.0.0.1:9464).
    pub fn embedded_default() -> AgentConfig {
        AgentConfig::load(EMBEDDED_DEFAULT).expect("the embedded default config is valid")
    }
}

/// Collects errors while walking one config text.
struct Loader<'a> {
    text: &'a str,
    /// Set for a remote config: the local policy it is loaded within.
    remote: Option<RemoteRules<'a>>,
    errors: Vec<ConfigError>,
    /// Every component id declared, valid or not, by section: a pipeline
    /// naming an invalid component gets that component's error, not a
    /// second "not defined" one.
    declared: BTreeMap<&'static str, std::collections::BTreeSet<ComponentId>>,
}

/// The `service` section, parsed.
#[derive(Default)]
struct ServiceSection {
    pipelines: BTreeMap<ComponentId, PipelineConfig>,
    telemetry: Option<TelemetryConfig>,
    remote_policy: Option<RemotePolicy>,
    given: Given,
}

/// Which local-only keys a config sets.
#[derive(Debug, Default, Clone, Copy)]
struct Given {
    telemetry: bool,
    remote_config: bool,
}

const SECTIONS: &[&str] = &[
    "receivers",
    "processors",
    "exporters",
    "service",
    "experiment",
];

impl<'a> Loader<'a> {
    fn new(text: &'a str, remote: Option<RemoteRules<'a>>) -> Self {
        Loader {
            text,
            remote,
            errors: Vec::new(),
            declared: BTreeMap::new(),
        }
    }

    fn error(&mut self, component: Option<String>, path: &[&str], message: impl Into<String>) {
        self.errors.push(ConfigError {
            component,
            field: None,
            message: message.into(),
            location: locate::locate(self.text, path),
        });
    }

    /// A problem found by a component's own `validate`, located at its
    /// field's line where the YAML has one (else the nearest enclosing key,
    /// at worst the component's own line).
    fn problem(&mut self, component: &Option<String>, section: &str, key: &str, problem: Problem) {
        let path: Vec<&str> = [section, key]
            .into_iter()
            .chain(field_keys(&problem.field))
            .collect();
        let location = locate::locate(self.text, &path);
        let message = problem.to_string();
        self.errors.push(ConfigError {
            component: component.clone(),
            field: Some(problem.field).filter(|f| !f.is_empty()),
            message,
            location,
        });
    }

    fn load(
        mut self,
        lookup: &dyn Fn(&str) -> Option<String>,
    ) -> Result<AgentConfig, ConfigErrors> {
        yaml::check_budget(self.text).map_err(|e| ConfigErrors(vec![e]))?;
        let mut root: Value = match serde_norway::from_str(self.text) {
            Ok(v) => v,
            Err(e) => {
                return Err(ConfigErrors(vec![ConfigError {
                    component: None,
                    field: None,
                    message: format!("invalid YAML: {}", strip_location(&e.to_string())),
                    location: e.location().map(|l| (l.line(), l.column())),
                }]));
            }
        };
        if root.is_null() {
            root = Value::Mapping(Default::default());
        }
        let policy = self.remote.map(|r| r.policy);
        let allowed = |name: &str| policy.is_none_or(|p| p.allows_env(name));
        let substitution = env::substitute(&mut root, lookup, &allowed);
        for name in &substitution.missing {
            self.error(None, &[], format!("environment variable {name} is not set (write ${{env:{name}:-default}} to give a default)"));
        }
        for (name, path) in &substitution.refused {
            let path: Vec<&str> = path.iter().map(String::as_str).collect();
            self.error(
                None,
                &path,
                format!(
                    "{}: policy env: a remote config may not read ${{env:{name}}} \
                     (service.remote_config.env of the local config lists what it may read)",
                    path.join(".")
                ),
            );
        }
        let result = self.load_substituted(root, &substitution.referenced);
        // No error text echoes a substituted value (a token read through
        // `${env:...}` into a field that then fails to parse, say).
        result.map_err(|ConfigErrors(errors)| {
            ConfigErrors(
                errors
                    .into_iter()
                    .map(|mut e| {
                        e.message = env::redact(&e.message, &substitution.values);
                        e
                    })
                    .collect(),
            )
        })
    }

    fn load_substituted(
        mut self,
        root: Value,
        referenced: &[Vec<String>],
    ) -> Result<AgentConfig, ConfigErrors> {
        let Value::Mapping(top) = root else {
            return Err(ConfigErrors(vec![ConfigError {
                component: None,
                field: None,
                message: "the config must be a YAML mapping with receivers, exporters and service"
                    .into(),
                location: Some((1, 1)),
            }]));
        };
        let mut sections: BTreeMap<String, Value> = BTreeMap::new();
        for (k, v) in top {
            match k.as_str() {
                Some(k) if SECTIONS.contains(&k) => {
                    sections.insert(k.to_string(), v);
                }
                _ => {
                    let key = yaml_key(&k);
                    self.error(
                        None,
                        &[&key],
                        format!(
                            "unknown top-level key {key:?} (expected one of: {})",
                            SECTIONS.join(", ")
                        ),
                    );
                }
            }
        }

        let receivers =
            self.components(
                "receivers",
                sections.remove("receivers"),
                |kind, v| match kind {
                    "procfs" => parse_typed::<ProcfsConfig>(v).map(|c| {
                        let problems = c.validate();
                        (ReceiverConfig::Procfs(c), problems)
                    }),
                    other => Err(format!("unknown receiver type {other:?} (known: procfs)")),
                },
            );
        let processors = self.components("processors", sections.remove("processors"), |kind, v| {
            ProcessorConfig::from_kind(kind, v).map(|c| {
                let problems = c.validate();
                (c, problems)
            })
        });
        let exporters = self.components("exporters", sections.remove("exporters"), |kind, v| {
            ExporterConfig::from_yaml(kind, v).map(|c| {
                let problems = c.validate();
                (c, problems)
            })
        });
        let service = self.service(sections.remove("service"));
        let experiment = self.experiment(sections.remove("experiment"), &service.pipelines);
        self.check_references(&service.pipelines);
        self.check_queue_directories(&exporters);
        let mut config = AgentConfig {
            receivers,
            processors,
            exporters,
            pipelines: service.pipelines,
            telemetry: service.telemetry.unwrap_or_default(),
            remote_policy: service.remote_policy.unwrap_or_default(),
            experiment,
        };
        if let Some(rules) = self.remote {
            self.local_only(rules, &mut config, service.given);
            for b in rules.policy.check(&config, rules.root_path) {
                if !rules.env_known && referenced.contains(&b.path) {
                    continue;
                }
                let path: Vec<&str> = b.path.iter().map(String::as_str).collect();
                self.error(b.component, &path, b.message);
            }
        }
        if !self.errors.is_empty() {
            self.errors
                .sort_by_key(|e| e.location.unwrap_or((usize::MAX, 0)));
            return Err(ConfigErrors(self.errors));
        }
        Ok(config)
    }

    /// `service.telemetry` and `service.remote_config` belong to the node:
    /// a remote config may leave them out (it gets the local ones) or repeat
    /// them, never change either.
    fn local_only(&mut self, rules: RemoteRules, config: &mut AgentConfig, given: Given) {
        if given.remote_config && config.remote_policy != *rules.policy {
            self.error(
                Some("service::remote_config".into()),
                &["service", "remote_config"],
                "service.remote_config is local-only: a remote config must leave it out or repeat the local policy",
            );
        }
        match rules.telemetry {
            Some(local) if !given.telemetry || config.telemetry == *local => {
                config.telemetry = local.clone()
            }
            _ if !given.telemetry => {}
            Some(_) => self.error(
                Some("service::telemetry".into()),
                &["service", "telemetry"],
                "service.telemetry is local-only: a remote config must leave it out or repeat the local settings \
                 (address, remote_reload, accept_config_body, logs)",
            ),
            None => self.error(
                Some("service::telemetry".into()),
                &["service", "telemetry"],
                "service.telemetry is local-only: a remote config must leave it out",
            ),
        }
        config.remote_policy = rules.policy.clone();
    }

    /// Parse one section (`receivers`, ...) of `id: config` entries.
    fn components<T>(
        &mut self,
        section: &'static str,
        value: Option<Value>,
        parse: impl Fn(&str, Value) -> Result<(T, Vec<Problem>), String>,
    ) -> BTreeMap<ComponentId, T> {
        let mut out = BTreeMap::new();
        let entries = match value {
            None | Some(Value::Null) => return out,
            Some(Value::Mapping(m)) => m,
            Some(_) => {
                self.error(
                    None,
                    &[section],
                    format!("{section} must be a mapping of component ids to their configs"),
                );
                return out;
            }
        };
        for (key, v) in entries {
            let key = yaml_key(&key);
            let component = Some(format!("{section}::{key}"));
            let id = match ComponentId::parse(&key) {
                Ok(id) => id,
                Err(e) => {
                    self.error(component, &[section, &key], e);
                    continue;
                }
            };
            self.declared.entry(section).or_default().insert(id.clone());
            match parse(id.kind(), v) {
                Ok((config, problems)) => {
                    for p in problems {
                        self.problem(&component, section, &key, p);
                    }
                    out.insert(id, config);
                }
                Err(e) => {
                    let field = unknown_field(&e);
                    let path: Vec<&str> = [section, key.as_str()]
                        .into_iter()
                        .chain(field.as_deref())
                        .collect();
                    self.error(component, &path, strip_location(&e));
                }
            }
        }
        out
    }

    fn service(&mut self, value: Option<Value>) -> ServiceSection {
        let mut out = ServiceSection::default();
        let Some(Value::Mapping(service)) = value else {
            self.error(None, &["service"], "service.pipelines is required: at least one pipeline wiring receivers to exporters");
            return out;
        };
        let pipelines = &mut out.pipelines;
        for (k, v) in service {
            match k.as_str() {
                Some("pipelines") => {
                    let Value::Mapping(entries) = v else {
                        self.error(
                            None,
                            &["service", "pipelines"],
                            "service.pipelines must be a mapping of pipeline ids",
                        );
                        continue;
                    };
                    for (key, v) in entries {
                        let key = yaml_key(&key);
                        let component = Some(format!("service::pipelines::{key}"));
                        let path = ["service", "pipelines", key.as_str()];
                        let id = match ComponentId::parse(&key) {
                            Ok(id) if id.kind() == "metrics" => id,
                            Ok(_) => {
                                self.error(component, &path, "pipeline ids are metrics[/name]: Phoenix pipelines carry metrics");
                                continue;
                            }
                            Err(e) => {
                                self.error(component, &path, e);
                                continue;
                            }
                        };
                        match parse_typed::<RawPipeline>(v) {
                            Ok(raw) => {
                                if let Some(p) = self.pipeline(&key, raw) {
                                    pipelines.insert(id, p);
                                }
                            }
                            Err(e) => self.error(component, &path, strip_location(&e)),
                        }
                    }
                }
                Some("telemetry") => {
                    out.given.telemetry = true;
                    match parse_typed::<TelemetryConfig>(v) {
                        Ok(t) => out.telemetry = Some(t),
                        Err(e) => self.error(
                            Some("service::telemetry".into()),
                            &["service", "telemetry"],
                            strip_location(&e),
                        ),
                    }
                }
                Some("remote_config") => {
                    out.given.remote_config = true;
                    let component = Some("service::remote_config".to_string());
                    match parse_typed::<RemotePolicy>(v) {
                        Ok(policy) => {
                            for p in policy.validate() {
                                self.problem(&component, "service", "remote_config", p);
                            }
                            out.remote_policy = Some(policy);
                        }
                        Err(e) => {
                            self.error(component, &["service", "remote_config"], strip_location(&e))
                        }
                    }
                }
                _ => {
                    let key = yaml_key(&k);
                    self.error(
                        None,
                        &["service", &key],
                        format!("unknown key service.{key} (expected pipelines, telemetry, remote_config)"),
                    );
                }
            }
        }
        if pipelines.is_empty()
            && !self.errors.iter().any(|e| {
                e.component
                    .as_deref()
                    .is_some_and(|c| c.starts_with("service::pipelines"))
            })
        {
            self.error(
                None,
                &["service"],
                "service.pipelines is empty: define at least one pipeline",
            );
        }
        out
    }

    fn pipeline(&mut self, key: &str, raw: RawPipeline) -> Option<PipelineConfig> {
        let component = Some(format!("service::pipelines::{key}"));
        let path = ["service", "pipelines", key];
        if raw.receivers.is_empty() {
            self.error(
                component.clone(),
                &path,
                "a pipeline needs at least one receiver",
            );
        }
        if raw.exporters.is_empty() && raw.mode == PipelineMode::Export {
            self.error(
                component.clone(),
                &path,
                "an exported pipeline needs at least one exporter (or mode: shadow)",
            );
        }
        let mut ids = |list: Vec<String>| -> Vec<ComponentId> {
            list.into_iter()
                .filter_map(|s| match ComponentId::parse(&s) {
                    Ok(id) => Some(id),
                    Err(e) => {
                        self.error(component.clone(), &path, e);
                        None
                    }
                })
                .collect()
        };
        Some(PipelineConfig {
            receivers: ids(raw.receivers),
            processors: ids(raw.processors),
            exporters: ids(raw.exporters),
            mode: raw.mode,
        })
    }

    fn experiment(
        &mut self,
        value: Option<Value>,
        pipelines: &BTreeMap<ComponentId, PipelineConfig>,
    ) -> Option<ExperimentConfig> {
        let value = value.filter(|v| !v.is_null())?;
        let component = Some("experiment".to_string());
        let experiment = match parse_typed::<ExperimentConfig>(value) {
            Ok(e) => e,
            Err(e) => {
                self.error(component, &["experiment"], strip_location(&e));
                return None;
            }
        };
        if experiment.id.trim().is_empty() {
            self.error(
                component.clone(),
                &["experiment", "id"],
                "experiment.id must not be empty",
            );
        }
        if let Some(baseline) = &experiment.baseline {
            let known = ComponentId::parse(baseline).is_ok_and(|id| pipelines.contains_key(&id));
            if !known {
                self.error(
                    component.clone(),
                    &["experiment", "baseline"],
                    format!("baseline {baseline:?} is not a pipeline under service.pipelines"),
                );
            }
        }
        for pattern in &experiment.critical_processes {
            if let Err(e) = regex::Regex::new(pattern) {
                self.error(
                    component.clone(),
                    &["experiment", "critical_processes"],
                    format!("invalid regex {pattern:?}: {e}"),
                );
            }
        }
        Some(experiment)
    }

    /// Two disk queues in one directory would replay and delete each
    /// other's batches, so each exporter needs its own.
    fn check_queue_directories(&mut self, exporters: &BTreeMap<ComponentId, ExporterConfig>) {
        // `Path` equality ignores `.` components and trailing slashes.
        let mut seen: BTreeMap<&Path, &ComponentId> = BTreeMap::new();
        for (id, exporter) in exporters {
            let Some(dir) = exporter.queue_directory() else {
                continue;
            };
            if dir.as_os_str().is_empty() {
                continue;
            }
            match seen.get(dir) {
                Some(first) => {
                    let key = id.to_string();
                    self.error(
                        Some(format!("exporters::{key}")),
                        &["exporters", &key, "sending_queue", "storage", "directory"],
                        format!(
                            "sending_queue.storage.directory: {} is also the queue directory of {first}; \
                             each exporter needs its own",
                            dir.display()
                        ),
                    );
                }
                None => {
                    seen.insert(dir, id);
                }
            }
        }
    }

    fn check_references(&mut self, pipelines: &BTreeMap<ComponentId, PipelineConfig>) {
        for (pid, p) in pipelines {
            let key = pid.to_string();
            let component = Some(format!("service::pipelines::{key}"));
            let sections: [(&str, &[ComponentId]); 3] = [
                ("receivers", &p.receivers),
                ("processors", &p.processors),
                ("exporters", &p.exporters),
            ];
            for (section, ids) in sections {
                for id in ids {
                    let declared = self.declared.get(section).is_some_and(|d| d.contains(id));
                    if !declared {
                        self.error(
                            component.clone(),
                            &["service", "pipelines", &key, section],
                            format!(
                                "references {section} {:?}, which is not defined under {section}:",
                                id.to_string()
                            ),
                        );
                    }
                }
            }
        }
    }
}

fn parse_typed<T: serde::de::DeserializeOwned>(v: Value) -> Result<T, String> {
    // `console:` with nothing after it means "all defaults".
    let v = if v.is_null() {
        Value::Mapping(Default::default())
    } else {
        v
    };
    serde_norway::from_value(v).map_err(|e| e.to_string())
}

fn yaml_key(k: &Value) -> String {
    match k {
        Value::String(s) => s.clone(),
        other => serde_norway::to_string(other)
            .unwrap_or_default()
            .trim()
            .to_string(),
    }
}

/// The keys leading to a problem's field (`rotation.max_megabytes` →
/// `rotation`, `max_megabytes`), up to the first list: `locate` finds keys,
/// not list items, so `actions[0].key` stops at `actions`.
fn field_keys(field: &str) -> Vec<&str> {
    let mut keys = Vec::new();
    for part in field.split('.').filter(|p| !p.is_empty()) {
        match part.split_once('[') {
            Some((key, _)) => {
                keys.push(key);
                break;
            }
            None => keys.push(part),
        }
    }
    keys
}

/// serde's "unknown field `x`" → `x`, to point the location at that field.
fn unknown_field(message: &str) -> Option<String> {
    let rest = message.split("unknown field `").nth(1)?;
    Some(rest.split('`').next()?.to_string())
}

/// Locations inside a re-parsed sub-value are meaningless for the user's
/// file (ours come from `locate`), so drop serde's own "at line X" suffix.
fn strip_location(message: &str) -> String {
    match message.find(" at line ") {
        Some(i) => message[..i].to_string(),
        None => message.to_string(),
    }
}

#[cfg(test)]
mod tests;
