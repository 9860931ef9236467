//! The experiment definition a user writes (YAML or JSON), and its checks.
//!
//! A definition names the agents (by labels or host names), a baseline and
//! candidates (a template or an inline processor chain each), the window
//! (interval, warm-up, duration), the success criteria, the guardrails and
//! the prices the cost estimate uses. [`ExperimentSpec::parse`] returns
//! every problem at once, each naming the field it is about.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::auth::Scope;

use phoenix_api::WavePercent;
use phoenix_config::duration::parse_duration;

/// One problem with a definition, as the API lists it.
pub use phoenix_api::FieldError as SpecError;

/// Every problem on one line, `; `-separated.
pub fn join(errors: &[SpecError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// An experiment as written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExperimentSpec {
    pub name: String,
    #[serde(default)]
    pub description: String,
    pub targets: Targets,
    /// Where receivers and exporters come from: a
    /// template or an inline agent config. Default: the baseline's template,
    /// else the agent's embedded default config.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base: Option<ConfigRef>,
    #[serde(default)]
    pub baseline: VariantSpec,
    pub candidates: Vec<VariantSpec>,
    /// Regexes on executable names that must stay visible.
    #[serde(default)]
    pub critical_processes: Vec<String>,
    /// The agents' scrape interval for the experiment.
    #[serde(default = "default_interval")]
    pub interval: String,
    /// How long to measure, after the warm-up.
    pub duration: String,
    /// Intervals in this first stretch are not measured.
    #[serde(default = "default_warmup")]
    pub warmup: String,
    /// When to deploy (RFC 3339). Default: as soon as it is started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_at: Option<String>,
    /// Every target must apply the config within this, or the experiment fails.
    #[serde(default = "default_deploy_timeout")]
    pub deploy_timeout: String,
    #[serde(default)]
    pub criteria: Criteria,
    #[serde(default)]
    pub guardrails: Guardrails,
    /// Promote the winner as soon as the verdict is a success.
    #[serde(default)]
    pub auto_promote: bool,
    /// How a promotion rolls out (default: to every target at once).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub promotion: Option<PromotionSpec>,
    #[serde(default)]
    pub pricing: Pricing,
    #[serde(default)]
    pub analysis: AnalysisSettings,
}

/// Which agents: every online agent with all these labels, or on these hosts.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Targets {
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<String>,
}

impl ExperimentSpec {
    /// Whether every agent the targets can match is inside `scope` (its
    /// labels are demanded by the targets): what a scoped principal sees.
    pub fn targets_within(&self, scope: &Scope) -> bool {
        scope.covers_selector(&self.targets.labels)
    }

    /// Why a principal limited to `scope` may not create or act on this
    /// experiment: targets that could reach agents outside it, or, with a
    /// templates scope, a config that is not one of its templates.
    pub fn outside(&self, scope: &Scope) -> Option<String> {
        if !self.targets_within(scope) {
            return Some(format!(
                "targets.labels must include the scope's labels ({}): these targets could reach agents outside it",
                scope.describe_labels()
            ));
        }
        // Without a templates limit, any config will do.
        scope.templates.as_ref()?;
        if self.base.as_ref().is_some_and(|b| b.yaml.is_some()) {
            return Some("base.yaml: the scope allows only its templates".into());
        }
        let variants = std::iter::once(("baseline", &self.baseline))
            .chain(self.candidates.iter().map(|c| ("candidates", c)));
        for (at, v) in variants {
            if v.processors.is_some() {
                return Some(format!(
                    "{at}: inline processors; the scope allows only its templates"
                ));
            }
        }
        let templates = self
            .base
            .iter()
            .filter_map(|b| b.template.as_deref())
            .chain(self.baseline.template.as_deref())
            .chain(self.candidates.iter().filter_map(|c| c.template.as_deref()));
        for t in templates {
            if !scope.allows_template(t) {
                return Some(format!("the template {t:?} is outside the scope"));
            }
        }
        None
    }
}

/// A config by template name or inline.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigRef {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub yaml: Option<String>,
}

/// Export or only measure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Processed and measured, sent nowhere.
    Shadow,
    /// Also sent to the base config's exporters.
    Export,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Shadow => "shadow",
            Mode::Export => "export",
        }
    }
}

/// A variant: the processors of a template, an inline chain, or nothing
/// (everything passes: the usual baseline).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VariantSpec {
    /// Default: `baseline` for the baseline, the template name (without a
    /// `process-` prefix and `-v1` suffix) for a candidate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<String>,
    /// In order: `[{ "filter/idle": {...} }, { "topk": {...} }]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub processors: Option<Vec<BTreeMap<String, serde_json::Value>>>,
    /// Default: export for the baseline, shadow for candidates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<Mode>,
}

/// What a candidate must show to pass, each judged on its confidence
/// interval. Fractions: 0.5 is 50%.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Criteria {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_series_reduction: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_bytes_reduction: Option<f64>,
    /// Share of critical processes kept individually visible.
    // Written as `null` when turned off: a missing field reads back as 1.0.
    #[serde(default = "one")]
    pub min_critical_coverage: Option<f64>,
    /// Share of the baseline's top consumers kept individually.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_topn_fidelity: Option<f64>,
    /// The candidate's own processing CPU, in percent of one core.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_cpu_overhead_percent: Option<f64>,
    /// Share of the baseline's process CPU the candidate still accounts
    /// for (individually or in a rollup): a candidate that drops a busy
    /// process fails it. On by default (docs/EXPERIMENTS.md says why 0.75).
    // Written as `null` when turned off: a missing field reads back as the default.
    #[serde(default = "default_min_cpu_conservation")]
    pub min_cpu_conservation: Option<f64>,
    /// The same for memory; off by default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_memory_conservation: Option<f64>,
}

/// Dropping idle processes keeps well above this (0.8 at worst in an
/// interval on an idle 15-process container, 0.99 typically); dropping a
/// process that burns most of the host's process CPU falls far below it.
pub const DEFAULT_MIN_CPU_CONSERVATION: f64 = 0.75;

fn default_min_cpu_conservation() -> Option<f64> {
    Some(DEFAULT_MIN_CPU_CONSERVATION)
}

impl Default for Criteria {
    fn default() -> Self {
        Criteria {
            min_series_reduction: None,
            min_bytes_reduction: None,
            min_critical_coverage: one(),
            min_topn_fidelity: None,
            max_cpu_overhead_percent: None,
            min_cpu_conservation: default_min_cpu_conservation(),
            min_memory_conservation: None,
        }
    }
}

/// What aborts a running experiment before its window ends (and rolls it
/// back).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Guardrails {
    /// Abort when a candidate's critical coverage on an agent stays below
    /// this for `intervals` intervals in a row.
    // Written as `null` when turned off: a missing field reads back as 1.0.
    #[serde(default = "one")]
    pub min_critical_coverage: Option<f64>,
    /// Abort when a candidate's processing CPU on an agent stays above this
    /// (percent of one core) for `intervals` intervals in a row.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_cpu_overhead_percent: Option<f64>,
    #[serde(default = "default_guardrail_intervals")]
    pub intervals: u32,
    /// Abort when a target fails to run the experiment's config (it
    /// reports a failure, or runs another config).
    #[serde(default = "yes")]
    pub agent_errors: bool,
}

impl Default for Guardrails {
    fn default() -> Self {
        Guardrails {
            min_critical_coverage: one(),
            max_cpu_overhead_percent: None,
            intervals: default_guardrail_intervals(),
            agent_errors: true,
        }
    }
}

/// A promotion in waves, each watched before the next.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PromotionSpec {
    /// The share of the targets promoted once each wave is out
    /// (`[10%, 50%, 100%]`); empty: all at once.
    #[serde(default)]
    pub waves: Vec<WavePercent>,
    /// How long each wave is watched before the next goes out.
    #[serde(default = "default_watch")]
    pub watch: String,
    /// How far below the lowest the experiment measured on an agent its
    /// exported series may fall before the rollout stops (0.2: 20%).
    #[serde(default = "default_max_series_drop")]
    pub max_series_drop: f64,
}

impl Default for PromotionSpec {
    fn default() -> Self {
        PromotionSpec {
            waves: Vec::new(),
            watch: default_watch(),
            max_series_drop: default_max_series_drop(),
        }
    }
}

/// The shortest and longest watch of a wave.
const MIN_WATCH_MS: i64 = 1_000;
const MAX_WATCH_MS: i64 = 86_400_000;

/// A wave's watch time, checked.
pub fn watch_ms(text: &str) -> Result<i64, String> {
    let d = parse_duration(text)?;
    let ms = i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
    if (MIN_WATCH_MS..=MAX_WATCH_MS).contains(&ms) {
        Ok(ms)
    } else {
        Err(format!("{text:?} must be from 1s to 24h"))
    }
}

/// Backend prices for the monthly cost estimate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pricing {
    #[serde(default = "default_price_datapoints")]
    pub per_million_datapoints: f64,
    #[serde(default = "default_price_gb")]
    pub per_gb: f64,
    #[serde(default = "default_currency")]
    pub currency: String,
}

impl Default for Pricing {
    fn default() -> Self {
        Pricing {
            per_million_datapoints: default_price_datapoints(),
            per_gb: default_price_gb(),
            currency: default_currency(),
        }
    }
}

/// How the confidence intervals are computed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnalysisSettings {
    #[serde(default = "default_resamples")]
    pub resamples: u32,
    #[serde(default = "default_confidence")]
    pub confidence: f64,
}

impl Default for AnalysisSettings {
    fn default() -> Self {
        AnalysisSettings {
            resamples: default_resamples(),
            confidence: default_confidence(),
        }
    }
}

fn default_interval() -> String {
    "10s".into()
}
fn default_warmup() -> String {
    "30s".into()
}
fn default_deploy_timeout() -> String {
    "60s".into()
}
fn one() -> Option<f64> {
    Some(1.0)
}
fn yes() -> bool {
    true
}
fn default_watch() -> String {
    "1m".into()
}
fn default_max_series_drop() -> f64 {
    0.2
}
fn default_guardrail_intervals() -> u32 {
    3
}
fn default_price_datapoints() -> f64 {
    0.10
}
fn default_price_gb() -> f64 {
    0.50
}
fn default_currency() -> String {
    "USD".into()
}
fn default_resamples() -> u32 {
    1000
}
fn default_confidence() -> f64 {
    0.95
}

/// The checked timing of an experiment, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Timing {
    pub interval_ms: i64,
    pub duration_ms: i64,
    pub warmup_ms: i64,
    pub deploy_timeout_ms: i64,
    /// Unix ms, when scheduled.
    pub start_at_ms: Option<i64>,
}

/// Bounds that keep a definition sane.
const MAX_NAME: usize = 128;
const MAX_DESCRIPTION: usize = 4096;
const MAX_CANDIDATES: usize = 8;
const MAX_CRITICAL: usize = 64;
const MIN_INTERVAL_MS: i64 = 1_000;
const MAX_DURATION_MS: i64 = 90 * 86_400_000;

impl ExperimentSpec {
    /// Parse YAML or JSON (JSON is YAML) and check everything that can be
    /// checked without the templates.
    pub fn parse(text: &str) -> Result<ExperimentSpec, Vec<SpecError>> {
        if text.trim().is_empty() {
            return Err(vec![SpecError::new(
                "",
                "the experiment definition is empty",
            )]);
        }
        phoenix_config::yaml::check_budget(text)
            .map_err(|e| vec![SpecError::new("", e.to_string())])?;
        let spec: ExperimentSpec = serde_norway::from_str(text).map_err(|e| {
            vec![SpecError::new(
                "",
                format!("cannot parse the definition: {e}"),
            )]
        })?;
        spec.check()?;
        Ok(spec)
    }

    /// Every problem, each with its field.
    pub fn check(&self) -> Result<(), Vec<SpecError>> {
        let mut errors = Vec::new();
        let mut err = |field: &str, message: String| errors.push(SpecError::new(field, message));

        if self.name.trim().is_empty() {
            err("name", "must not be empty".into());
        } else if self.name.chars().count() > MAX_NAME || self.name.chars().any(breaks_a_line) {
            err(
                "name",
                format!("at most {MAX_NAME} characters, on one line"),
            );
        }
        if self.description.len() > MAX_DESCRIPTION {
            err("description", format!("at most {MAX_DESCRIPTION} bytes"));
        }
        match (
            self.targets.labels.is_empty(),
            self.targets.hosts.is_empty(),
        ) {
            (true, true) => err(
                "targets",
                "select agents by `labels: {key: value}` or `hosts: [name]`".into(),
            ),
            (false, false) => err("targets", "give labels or hosts, not both".into()),
            _ => {}
        }
        if let Some(base) = &self.base {
            check_config_ref(base, "base", &mut err);
        }
        if self.candidates.is_empty() {
            err("candidates", "name at least one candidate".into());
        }
        if self.candidates.len() > MAX_CANDIDATES {
            err("candidates", format!("at most {MAX_CANDIDATES}"));
        }
        let mut names = Vec::new();
        for (field, variant, is_baseline) in self.variants_with_fields() {
            check_variant(variant, &field, &mut err);
            let name = variant_name(variant, is_baseline);
            if !valid_variant_name(&name) {
                err(
                    &format!("{field}.name"),
                    format!("{name:?}: use 1 to 40 of a-z, 0-9, - and _"),
                );
            } else if names.contains(&name) {
                err(
                    &format!("{field}.name"),
                    format!("{name:?} is used twice: give each variant its own name"),
                );
            }
            names.push(name);
        }
        if self.critical_processes.is_empty() {
            err(
                "critical_processes",
                "name at least one process that must stay visible (a regex on the executable name)"
                    .into(),
            );
        }
        if self.critical_processes.len() > MAX_CRITICAL {
            err("critical_processes", format!("at most {MAX_CRITICAL}"));
        }
        for (i, re) in self.critical_processes.iter().enumerate() {
            if let Err(e) = regex_check(re) {
                err(&format!("critical_processes[{i}]"), e);
            }
        }
        if let Some(p) = &self.promotion {
            if !p.waves.is_empty()
                && let Err(e) = WavePercent::check(&p.waves)
            {
                err("promotion.waves", e);
            }
            if let Err(e) = watch_ms(&p.watch) {
                err("promotion.watch", e);
            }
            if !(0.0..1.0).contains(&p.max_series_drop) {
                err(
                    "promotion.max_series_drop",
                    format!(
                        "{} must be a fraction from 0 to below 1 (0.2 is 20%)",
                        p.max_series_drop
                    ),
                );
            }
        }
        if let Err(e) = self.timing() {
            errors.extend(e);
        }
        let mut errs2 = Vec::new();
        self.check_thresholds(&mut |f: &str, m: String| errs2.push(SpecError::new(f, m)));
        errors.extend(errs2);
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }

    fn check_thresholds(&self, err: &mut dyn FnMut(&str, String)) {
        let fraction = |err: &mut dyn FnMut(&str, String), field: &str, v: Option<f64>| {
            if let Some(v) = v
                && !(0.0..=1.0).contains(&v)
            {
                err(
                    field,
                    format!("{v} must be a fraction from 0 to 1 (0.5 is 50%)"),
                );
            }
        };
        let c = &self.criteria;
        if c.min_series_reduction.is_none()
            && c.min_bytes_reduction.is_none()
            && c.min_critical_coverage.is_none()
            && c.min_topn_fidelity.is_none()
            && c.max_cpu_overhead_percent.is_none()
            && c.min_cpu_conservation.is_none()
            && c.min_memory_conservation.is_none()
        {
            err(
                "criteria",
                "set at least one criterion: a candidate judged on nothing cannot win".into(),
            );
        }
        fraction(err, "criteria.min_series_reduction", c.min_series_reduction);
        fraction(err, "criteria.min_bytes_reduction", c.min_bytes_reduction);
        fraction(
            err,
            "criteria.min_critical_coverage",
            c.min_critical_coverage,
        );
        fraction(err, "criteria.min_topn_fidelity", c.min_topn_fidelity);
        fraction(err, "criteria.min_cpu_conservation", c.min_cpu_conservation);
        fraction(
            err,
            "criteria.min_memory_conservation",
            c.min_memory_conservation,
        );
        let percent = |err: &mut dyn FnMut(&str, String), field: &str, v: Option<f64>| {
            if let Some(v) = v
                && !(v > 0.0 && v <= 100.0)
            {
                err(
                    field,
                    format!("{v} must be a percentage of one core, above 0 and at most 100"),
                );
            }
        };
        percent(
            err,
            "criteria.max_cpu_overhead_percent",
            c.max_cpu_overhead_percent,
        );
        let g = &self.guardrails;
        fraction(
            err,
            "guardrails.min_critical_coverage",
            g.min_critical_coverage,
        );
        percent(
            err,
            "guardrails.max_cpu_overhead_percent",
            g.max_cpu_overhead_percent,
        );
        if !(1..=1000).contains(&g.intervals) {
            err(
                "guardrails.intervals",
                format!("{} must be from 1 to 1000", g.intervals),
            );
        }
        let p = &self.pricing;
        for (field, v) in [
            ("pricing.per_million_datapoints", p.per_million_datapoints),
            ("pricing.per_gb", p.per_gb),
        ] {
            if !(v.is_finite() && v >= 0.0) {
                err(field, format!("{v} must be a price of 0 or more"));
            }
        }
        if p.currency.is_empty() || p.currency.len() > 8 {
            err("pricing.currency", "1 to 8 characters, like USD".into());
        }
        let a = &self.analysis;
        if !(100..=20_000).contains(&a.resamples) {
            err(
                "analysis.resamples",
                format!("{} must be from 100 to 20000", a.resamples),
            );
        }
        if !(0.5..=0.999).contains(&a.confidence) {
            err(
                "analysis.confidence",
                format!("{} must be from 0.5 to 0.999 (0.95 is 95%)", a.confidence),
            );
        }
    }

    /// The checked durations.
    pub fn timing(&self) -> Result<Timing, Vec<SpecError>> {
        let mut errors = Vec::new();
        let mut ms = |field: &str, text: &str, min: i64| -> i64 {
            match parse_duration(text) {
                Ok(d) => {
                    let v = i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
                    if v < min || v > MAX_DURATION_MS {
                        errors.push(SpecError::new(
                            field,
                            format!("{text:?} must be from {min} ms to 90 days"),
                        ));
                    }
                    v
                }
                Err(e) => {
                    errors.push(SpecError::new(field, e));
                    0
                }
            }
        };
        let interval_ms = ms("interval", &self.interval, MIN_INTERVAL_MS);
        let duration_ms = ms("duration", &self.duration, MIN_INTERVAL_MS);
        let warmup_ms = ms("warmup", &self.warmup, 0);
        let deploy_timeout_ms = ms("deploy_timeout", &self.deploy_timeout, MIN_INTERVAL_MS);
        if errors.is_empty() && duration_ms < 2 * interval_ms {
            errors.push(SpecError::new(
                "duration",
                format!(
                    "{} is shorter than two intervals of {}: nothing could be compared",
                    self.duration, self.interval
                ),
            ));
        }
        let start_at_ms = match &self.start_at {
            None => None,
            Some(t) => match phoenix_processors::time::parse_rfc3339_nanos(t) {
                Some(ns) => Some(i64::try_from(ns / 1_000_000).unwrap_or(i64::MAX)),
                None => {
                    errors.push(SpecError::new(
                        "start_at",
                        format!("{t:?} is not an RFC 3339 time like 2026-12-01T09:00:00Z"),
                    ));
                    None
                }
            },
        };
        if errors.is_empty() {
            Ok(Timing {
                interval_ms,
                duration_ms,
                warmup_ms,
                deploy_timeout_ms,
                start_at_ms,
            })
        } else {
            Err(errors)
        }
    }

    /// The baseline then the candidates, with the field path of each.
    pub fn variants_with_fields(&self) -> Vec<(String, &VariantSpec, bool)> {
        let mut out = vec![("baseline".to_string(), &self.baseline, true)];
        out.extend(
            self.candidates
                .iter()
                .enumerate()
                .map(|(i, c)| (format!("candidates[{i}]"), c, false)),
        );
        out
    }

    /// The baseline's name.
    pub fn baseline_name(&self) -> String {
        variant_name(&self.baseline, true)
    }

    /// The candidates' names, in order.
    pub fn candidate_names(&self) -> Vec<String> {
        self.candidates
            .iter()
            .map(|c| variant_name(c, false))
            .collect()
    }
}

/// A variant's name, given or derived.
pub fn variant_name(v: &VariantSpec, is_baseline: bool) -> String {
    if let Some(n) = &v.name {
        return n.clone();
    }
    if is_baseline {
        return "baseline".into();
    }
    match &v.template {
        Some(t) => {
            let t = t.strip_prefix("process-").unwrap_or(t);
            let t = t.strip_suffix("-v1").unwrap_or(t);
            t.to_string()
        }
        None => "candidate".into(),
    }
}

/// The default mode of a variant.
pub fn variant_mode(v: &VariantSpec, is_baseline: bool) -> Mode {
    v.mode.unwrap_or(if is_baseline {
        Mode::Export
    } else {
        Mode::Shadow
    })
}

/// Control characters and the Unicode line and paragraph separators, which
/// YAML readers also take as line breaks.
pub fn breaks_a_line(c: char) -> bool {
    c.is_control() || matches!(c, '\u{2028}' | '\u{2029}')
}

fn valid_variant_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 40
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
}

fn check_config_ref(r: &ConfigRef, field: &str, err: &mut impl FnMut(&str, String)) {
    match (&r.template, &r.yaml) {
        (None, None) => err(field, "give a template name or inline yaml".into()),
        (Some(_), Some(_)) => err(field, "give a template or yaml, not both".into()),
        _ => {}
    }
}

fn check_variant(v: &VariantSpec, field: &str, err: &mut impl FnMut(&str, String)) {
    if v.template.is_some() && v.processors.is_some() {
        err(field, "give a template or processors, not both".into());
    }
    if let Some(list) = &v.processors {
        for (i, p) in list.iter().enumerate() {
            if p.len() != 1 {
                err(
                    &format!("{field}.processors[{i}]"),
                    "each entry is one `type/name: {settings}` pair".into(),
                );
            }
            for id in p.keys() {
                if let Err(e) = phoenix_config::ComponentId::parse(id) {
                    err(&format!("{field}.processors[{i}]"), e);
                }
            }
        }
    }
}

/// A regex as the agent will compile it (the agent compiles the same list
/// into a `RegexSet`).
fn regex_check(re: &str) -> Result<(), String> {
    regex::Regex::new(re)
        .map(|_| ())
        .map_err(|e| format!("not a valid regex: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = "
name: aggressive vs baseline
targets: { labels: { env: staging } }
candidates: [ { template: process-aggressive-v1 } ]
critical_processes: ['^sshd$']
duration: 10m
";

    #[test]
    fn a_minimal_definition_gets_defaults() {
        let spec = ExperimentSpec::parse(MINIMAL).unwrap();
        assert_eq!(spec.baseline_name(), "baseline");
        assert_eq!(spec.candidate_names(), vec!["aggressive"]);
        assert_eq!(variant_mode(&spec.candidates[0], false), Mode::Shadow);
        assert_eq!(variant_mode(&spec.baseline, true), Mode::Export);
        let t = spec.timing().unwrap();
        assert_eq!(
            (t.interval_ms, t.duration_ms, t.warmup_ms),
            (10_000, 600_000, 30_000)
        );
        assert_eq!(spec.criteria.min_critical_coverage, Some(1.0));
        assert_eq!(spec.analysis.resamples, 1000);
        // JSON is accepted as well, and round-trips.
        let json = serde_json::to_string(&spec).unwrap();
        assert_eq!(ExperimentSpec::parse(&json).unwrap(), spec);
    }

    #[test]
    fn every_problem_is_reported_with_its_field() {
        let text = "
name: ''
targets: {}
candidates:
  - { template: a, processors: [] }
  - { name: Bad Name }
critical_processes: ['(']
duration: 1s
interval: 5s
criteria: { min_series_reduction: 50 }
guardrails: { intervals: 0 }
analysis: { confidence: 2 }
";
        let errors = ExperimentSpec::parse(text).unwrap_err();
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        for f in [
            "name",
            "targets",
            "candidates[0]",
            "candidates[1].name",
            "critical_processes[0]",
            "duration",
            "criteria.min_series_reduction",
            "guardrails.intervals",
            "analysis.confidence",
        ] {
            assert!(fields.contains(&f), "{f} missing from {errors:?}");
        }
    }

    #[test]
    fn unknown_fields_and_garbage_are_refused() {
        assert!(ExperimentSpec::parse("").is_err());
        assert!(ExperimentSpec::parse("[1, 2").is_err());
        let typo = MINIMAL.replace("duration:", "duraton:");
        let e = ExperimentSpec::parse(&typo).unwrap_err();
        assert!(e[0].message.contains("duraton"), "{e:?}");
    }

    #[test]
    fn a_definition_over_the_yaml_budget_is_refused_before_it_is_parsed() {
        let nested = format!("{MINIMAL}extra: {}1{}\n", "[".repeat(40), "]".repeat(40));
        let e = ExperimentSpec::parse(&nested).unwrap_err();
        assert_eq!(e.len(), 1);
        assert!(
            e[0].message
                .starts_with("YAML budget: nesting deeper than 32 levels (line 7,"),
            "{e:?}"
        );
    }

    #[test]
    fn a_threshold_turned_off_stays_off_once_stored() {
        let text = format!(
            "{MINIMAL}criteria: {{ min_series_reduction: 0.5, min_critical_coverage: null }}\n\
             guardrails: {{ min_critical_coverage: ~ }}\n"
        );
        let spec = ExperimentSpec::parse(&text).unwrap();
        assert_eq!(spec.criteria.min_critical_coverage, None);
        let stored = serde_json::to_string(&spec).unwrap();
        let back = ExperimentSpec::parse(&stored).unwrap();
        assert_eq!(back.criteria.min_critical_coverage, None);
        assert_eq!(back.guardrails.min_critical_coverage, None);
        // The same for conservation, on by default.
        assert_eq!(
            spec.criteria.min_cpu_conservation,
            Some(DEFAULT_MIN_CPU_CONSERVATION)
        );
        let off = format!("{MINIMAL}criteria: {{ min_cpu_conservation: null }}\n");
        let stored = serde_json::to_string(&ExperimentSpec::parse(&off).unwrap()).unwrap();
        assert_eq!(
            ExperimentSpec::parse(&stored)
                .unwrap()
                .criteria
                .min_cpu_conservation,
            None
        );
        // Nothing to judge on is refused.
        let none = format!(
            "{MINIMAL}criteria: {{ min_critical_coverage: null, min_cpu_conservation: null }}\n"
        );
        let e = ExperimentSpec::parse(&none).unwrap_err();
        assert_eq!(e[0].field, "criteria", "{e:?}");
        // A line separator cannot sneak a line into the composed config.
        let mut sneaky = ExperimentSpec::parse(MINIMAL).unwrap();
        sneaky.name = "x\u{2028}bogus: 1".into();
        assert_eq!(sneaky.check().unwrap_err()[0].field, "name");
    }

    #[test]
    fn variant_names_must_be_unique() {
        let text = MINIMAL.replace(
            "candidates: [ { template: process-aggressive-v1 } ]",
            "candidates: [ { template: process-aggressive-v1 }, { template: process-aggressive-v1 } ]",
        );
        let e = ExperimentSpec::parse(&text).unwrap_err();
        assert!(e.iter().any(|e| e.message.contains("used twice")), "{e:?}");
    }
}
