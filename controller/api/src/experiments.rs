//! `/api/v1/experiments`: definitions, the lifecycle, the KPI time series
//! and the verdict.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::AgentStatus;

/// Where an experiment is in its lifecycle. Which state may follow which is
/// the controller's rule; [`ExperimentSummary::actions`] tells a client
/// what it may ask for now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExperimentState {
    Draft,
    Pending,
    Deploying,
    Running,
    Analyzing,
    Succeeded,
    Failed,
    /// The winner rolls out in waves, each watched before the next.
    Promoting,
    Promoted,
    RolledBack,
    Cancelled,
}

impl ExperimentState {
    pub const ALL: [ExperimentState; 11] = [
        ExperimentState::Draft,
        ExperimentState::Pending,
        ExperimentState::Deploying,
        ExperimentState::Running,
        ExperimentState::Analyzing,
        ExperimentState::Succeeded,
        ExperimentState::Failed,
        ExperimentState::Promoting,
        ExperimentState::Promoted,
        ExperimentState::RolledBack,
        ExperimentState::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ExperimentState::Draft => "draft",
            ExperimentState::Pending => "pending",
            ExperimentState::Deploying => "deploying",
            ExperimentState::Running => "running",
            ExperimentState::Analyzing => "analyzing",
            ExperimentState::Succeeded => "succeeded",
            ExperimentState::Failed => "failed",
            ExperimentState::Promoting => "promoting",
            ExperimentState::Promoted => "promoted",
            ExperimentState::RolledBack => "rolled_back",
            ExperimentState::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<ExperimentState> {
        ExperimentState::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// The controller works on it on its own (deploys, measures,
    /// analyses, rolls a promotion out): a client following it keeps
    /// waiting.
    pub fn is_active(self) -> bool {
        matches!(
            self,
            ExperimentState::Pending
                | ExperimentState::Deploying
                | ExperimentState::Running
                | ExperimentState::Analyzing
                | ExperimentState::Promoting
        )
    }
}

impl std::fmt::Display for ExperimentState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What an operator can ask of an experiment:
/// `POST /experiments/{id}/{action}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExperimentAction {
    Start,
    Stop,
    Promote,
    Rollback,
}

impl ExperimentAction {
    pub const ALL: [ExperimentAction; 4] = [
        ExperimentAction::Start,
        ExperimentAction::Stop,
        ExperimentAction::Promote,
        ExperimentAction::Rollback,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ExperimentAction::Start => "start",
            ExperimentAction::Stop => "stop",
            ExperimentAction::Promote => "promote",
            ExperimentAction::Rollback => "rollback",
        }
    }

    pub fn parse(s: &str) -> Option<ExperimentAction> {
        ExperimentAction::ALL.into_iter().find(|a| a.as_str() == s)
    }

    /// The state the action moves the experiment to (a stop or rollback
    /// restores the targets' previous configs on the way).
    pub fn target_state(self) -> ExperimentState {
        match self {
            ExperimentAction::Start => ExperimentState::Pending,
            ExperimentAction::Stop => ExperimentState::Cancelled,
            ExperimentAction::Promote => ExperimentState::Promoted,
            ExperimentAction::Rollback => ExperimentState::RolledBack,
        }
    }
}

/// `POST /experiments` and `/experiments/validate`, wrapped: the body may
/// also be the definition itself (YAML or JSON).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DefinitionRequest {
    /// The definition's YAML (or JSON) text.
    pub definition: String,
    /// A free-text note for the audit log (`author` is the old name).
    #[serde(default, alias = "author", skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// `POST /experiments/{id}/{action}`; an empty body is all defaults.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActionRequest {
    /// A free-text note for the audit log (`author` is the old name).
    #[serde(default, alias = "author", skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// promote: the variant (default: the verdict's winner).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    /// rollback: why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// promote: roll out in waves of the targets (`["10%", "50%", "100%"]`),
    /// each watched before the next. Default: the definition's
    /// `promotion.waves`, else every target at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waves: Option<Vec<WavePercent>>,
    /// promote: how long each wave is watched (`2m`). Default: the
    /// definition's `promotion.watch`, else 1m.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub watch: Option<String>,
}

/// A wave's reach: this percent of the targets have the promoted config
/// once the wave is out. Written `10%` (or `10`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct WavePercent(pub u8);

/// At most this many waves.
pub const MAX_WAVES: usize = 10;

impl WavePercent {
    /// `10%,50%,100%` as the waves it names, checked: each from 1 to 100
    /// percent, increasing, the last 100%.
    pub fn parse_list(text: &str) -> Result<Vec<WavePercent>, String> {
        let waves = text
            .split(',')
            .map(|w| w.trim().parse())
            .collect::<Result<Vec<WavePercent>, String>>()?;
        WavePercent::check(&waves)?;
        Ok(waves)
    }

    /// The rules a list of waves follows, in words when it does not.
    pub fn check(waves: &[WavePercent]) -> Result<(), String> {
        if waves.is_empty() || waves.len() > MAX_WAVES {
            return Err(format!("name from 1 to {MAX_WAVES} waves"));
        }
        if let Some(w) = waves.windows(2).find(|w| w[0] >= w[1]) {
            return Err(format!(
                "waves must grow: {} then {} (each is the share of the targets promoted once it is out)",
                w[0], w[1]
            ));
        }
        if waves.last() != Some(&WavePercent(100)) {
            return Err("the last wave must be 100%: every target gets the winner".into());
        }
        Ok(())
    }
}

impl std::str::FromStr for WavePercent {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let digits = s.strip_suffix('%').unwrap_or(s).trim();
        match digits.parse::<u8>() {
            Ok(p @ 1..=100) => Ok(WavePercent(p)),
            _ => Err(format!("wave {s:?} is not a percent from 1% to 100%")),
        }
    }
}

impl std::fmt::Display for WavePercent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}%", self.0)
    }
}

impl Serialize for WavePercent {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for WavePercent {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Written {
            Number(u64),
            Text(String),
        }
        let text = match Written::deserialize(d)? {
            Written::Number(n) => n.to_string(),
            Written::Text(t) => t,
        };
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// One problem with a definition: the field (`criteria.min_series_reduction`)
/// and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> FieldError {
        FieldError {
            field: field.into(),
            message: message.into(),
        }
    }
}

impl std::fmt::Display for FieldError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.field.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.field, self.message)
        }
    }
}

/// `POST /experiments/validate`: the errors by field, or what the
/// experiment would deploy to whom.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ValidationReport {
    pub valid: bool,
    pub errors: Vec<FieldError>,
    /// Online agents the targets select now (when valid).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub matching_agents: Option<Vec<String>>,
    /// Variant names, the baseline first (when valid).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variants: Option<Vec<String>>,
    /// The composed agent config (when valid).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<String>,
}

/// `GET /experiments`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExperimentList {
    pub experiments: Vec<ExperimentSummary>,
}

/// An experiment in lists (and the answer to create and actions): state,
/// times, variants and the verdict's headline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExperimentSummary {
    pub id: String,
    pub name: String,
    pub description: String,
    pub state: ExperimentState,
    /// Why it is in its state, in words.
    pub reason: String,
    pub author: String,
    /// The hash of the config the targets run during the experiment.
    pub config_hash: String,
    pub variants: Vec<VariantInfo>,
    /// What the state allows now, in the order of [`ExperimentAction::ALL`].
    pub actions: Vec<ExperimentAction>,
    pub created_at: String,
    pub updated_at: String,
    pub start_at: Option<String>,
    pub running_at: Option<String>,
    pub measure_from: Option<String>,
    pub ends_at: Option<String>,
    pub finished_at: Option<String>,
    /// Once there is a stored verdict.
    pub headline: Option<Headline>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VariantInfo {
    pub name: String,
    pub role: VariantRole,
    pub template: Option<String>,
    /// `export` or `shadow` (accounted, not exported).
    pub mode: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VariantRole {
    Baseline,
    Candidate,
}

impl VariantRole {
    pub fn as_str(self) -> &'static str {
        match self {
            VariantRole::Baseline => "baseline",
            VariantRole::Candidate => "candidate",
        }
    }
}

/// The verdict in one line: verdict, winner, and per candidate the
/// series and bytes reduction and the critical coverage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Headline {
    pub verdict: String,
    pub winner: Option<String>,
    pub candidates: Vec<HeadlineCandidate>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HeadlineCandidate {
    pub name: String,
    pub outcome: Outcome,
    pub series_reduction: Option<f64>,
    pub bytes_reduction: Option<f64>,
    pub critical_coverage: Option<f64>,
}

impl Headline {
    pub fn of(analysis: &Analysis) -> Headline {
        let value = |e: Option<Estimate>| e.map(|e| e.value);
        Headline {
            verdict: analysis.verdict.clone(),
            winner: analysis.winner.clone(),
            candidates: analysis
                .candidates
                .iter()
                .map(|c| HeadlineCandidate {
                    name: c.name.clone(),
                    outcome: c.outcome,
                    series_reduction: value(c.kpis.series_reduction),
                    bytes_reduction: value(c.kpis.bytes_reduction),
                    critical_coverage: value(c.kpis.critical_coverage),
                })
                .collect(),
        }
    }
}

/// `GET /experiments/{id}`: the summary, the definition, the timeline and
/// the targets.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExperimentDetail {
    #[serde(flatten)]
    pub summary: ExperimentSummary,
    /// The definition as stored (normalized JSON).
    pub spec: serde_json::Value,
    /// The agent config the targets run during the experiment.
    pub config: String,
    pub deploy_push: Option<String>,
    pub promoted_push: Option<String>,
    /// The guardrail breach that aborted it (`guardrail`, `message`, ...).
    pub breach: Option<serde_json::Value>,
    /// The candidates a guardrail disqualified, in the order it did.
    #[serde(default)]
    pub disqualified: Vec<DisqualificationEntry>,
    pub transitions: Vec<TransitionEntry>,
    pub targets: Vec<ExperimentTarget>,
    /// A promotion in waves, from its start (absent for one made at once).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub promotion: Option<Promotion>,
}

/// A promotion rolled out in waves.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Promotion {
    pub variant: String,
    /// The promoted config's hash.
    pub config_hash: String,
    /// How long each wave is watched, in milliseconds.
    pub watch_ms: i64,
    /// How far below the lowest the experiment measured on an agent its
    /// exported series may fall (0.2: 20%).
    pub max_series_drop: f64,
    pub waves: Vec<Wave>,
}

/// One wave: the agents it promotes and how it went.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Wave {
    /// From 1.
    pub number: u32,
    /// The share of the targets promoted once this wave is out.
    pub percent: WavePercent,
    pub agents: Vec<String>,
    pub state: WaveState,
    pub push: Option<String>,
    pub started_at: Option<String>,
    /// When its watch ends (once every agent of the wave applied).
    pub watch_until: Option<String>,
    pub finished_at: Option<String>,
    /// Why it passed or failed, in words.
    pub reason: String,
}

/// Where a wave stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WaveState {
    /// Not pushed yet.
    Pending,
    /// Pushed; waiting for its agents to apply.
    Deploying,
    /// Applied; the promoted agents are watched.
    Watching,
    Passed,
    /// It stopped the rollout (and every target was restored).
    Failed,
    /// The rollout stopped before it (a rollback, or an earlier wave failed).
    Skipped,
}

impl WaveState {
    pub const ALL: [WaveState; 6] = [
        WaveState::Pending,
        WaveState::Deploying,
        WaveState::Watching,
        WaveState::Passed,
        WaveState::Failed,
        WaveState::Skipped,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            WaveState::Pending => "pending",
            WaveState::Deploying => "deploying",
            WaveState::Watching => "watching",
            WaveState::Passed => "passed",
            WaveState::Failed => "failed",
            WaveState::Skipped => "skipped",
        }
    }

    pub fn parse(s: &str) -> Option<WaveState> {
        WaveState::ALL.into_iter().find(|w| w.as_str() == s)
    }
}

/// Why a candidate left a running experiment before its window ended: the
/// guardrail it breached. The experiment goes on with the others.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Disqualification {
    pub at: String,
    /// `critical_coverage` or `cpu_overhead`.
    pub guardrail: String,
    /// The breach in words, with its numbers, agent and intervals.
    pub reason: String,
}

/// A disqualified candidate in an experiment's detail.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DisqualificationEntry {
    pub variant: String,
    #[serde(flatten)]
    pub disqualification: Disqualification,
    /// The push of the config without it; null until the controller made
    /// it (or when no candidate was left and the experiment was aborted).
    pub push: Option<String>,
}

/// One state change in the timeline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TransitionEntry {
    pub at: String,
    /// Empty for the creation.
    pub from: String,
    pub to: String,
    pub actor: String,
    pub reason: String,
}

/// One target agent of an experiment and where it stands.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExperimentTarget {
    pub agent_id: String,
    pub status: AgentStatus,
    /// What it ran before the experiment.
    pub previous_hash: String,
    pub previous_source: PreviousSource,
    pub effective_hash: String,
    pub config_state: String,
    pub config_error: String,
    /// It runs the experiment's config now.
    pub runs_experiment: bool,
}

/// What a rollback restores on a target: the config pushed again by the
/// controller, a revert to the agent's local file, or nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PreviousSource {
    None,
    Controller,
    Local,
}

/// `GET /experiments/{id}/results`: per variant, per interval, summed over
/// the agents.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExperimentResults {
    pub id: String,
    pub state: ExperimentState,
    pub interval_ms: i64,
    /// The baseline variant's name.
    pub baseline: String,
    /// Variant name → its points, oldest first.
    pub variants: BTreeMap<String, Vec<ResultPoint>>,
    /// With `?raw=true`: every stored measurement.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub measurements: Option<Vec<RawMeasurement>>,
}

/// One variant over the fleet in one interval.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResultPoint {
    pub time: String,
    pub agents: u64,
    pub series: u64,
    pub datapoints: u64,
    pub bytes: u64,
    pub bytes_gzip: u64,
    /// Critical processes kept visible; null when none was seen.
    pub critical_coverage: Option<f64>,
    /// The baseline's top consumers kept; null when not measured.
    pub topn_fidelity: Option<f64>,
    /// Percent of one core, per agent.
    pub cpu_overhead_percent: Option<f64>,
}

/// One stored measurement: a variant on an agent in one interval.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RawMeasurement {
    pub variant: String,
    pub agent_id: String,
    pub interval_unix_nano: i64,
    pub series: u64,
    pub datapoints: u64,
    pub bytes: u64,
    pub bytes_gzip: u64,
    pub cpu_seconds: f64,
    pub critical_total: u64,
    pub critical_visible: u64,
    pub topn_fidelity: Option<f64>,
}

/// `GET /experiments/{id}/report`: the verdict, final once the experiment
/// was judged, else interim on the data so far.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExperimentReport {
    pub id: String,
    pub state: ExperimentState,
    pub reason: String,
    #[serde(rename = "final")]
    pub is_final: bool,
    #[serde(flatten)]
    pub analysis: Analysis,
}

/// The analysis: each candidate against the baseline, every KPI with its
/// confidence interval, each criterion judged, a monthly cost per variant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Analysis {
    /// `succeeded` when a candidate passed every criterion, else `failed`.
    pub verdict: String,
    pub winner: Option<String>,
    pub recommendation: String,
    #[serde(deserialize_with = "number_or_null")]
    pub confidence: f64,
    pub resamples: u32,
    pub target_agents: usize,
    pub currency: String,
    pub variants: Vec<VariantSummary>,
    pub candidates: Vec<CandidateReport>,
}

/// A value with its confidence interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Estimate {
    #[serde(deserialize_with = "number_or_null")]
    pub value: f64,
    #[serde(deserialize_with = "number_or_null")]
    pub low: f64,
    #[serde(deserialize_with = "number_or_null")]
    pub high: f64,
}

/// How one criterion, or a candidate, came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The whole confidence interval is on the right side.
    Pass,
    /// The measured value is on the wrong side.
    Fail,
    /// The value is on the right side, but the interval reaches across:
    /// more data would tell.
    Inconclusive,
    /// Nothing to judge (no paired interval, no critical process seen).
    NoData,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CriterionResult {
    /// As named in the definition (`min_series_reduction`).
    pub criterion: String,
    /// The KPI it judges (a field of [`Kpis`]).
    pub kpi: String,
    /// `>=` or `<=`.
    pub op: String,
    #[serde(deserialize_with = "number_or_null")]
    pub threshold: f64,
    pub estimate: Option<Estimate>,
    pub outcome: Outcome,
}

/// The KPIs of one candidate against the baseline: fractions, except the
/// CPU overhead in percent of one core.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Kpis {
    pub series_reduction: Option<Estimate>,
    pub datapoints_reduction: Option<Estimate>,
    pub bytes_reduction: Option<Estimate>,
    pub critical_coverage: Option<Estimate>,
    pub topn_fidelity: Option<Estimate>,
    pub cpu_overhead_percent: Option<Estimate>,
    /// Candidate total / baseline total of process CPU: what dropping
    /// processes loses (a rollup keeps it). Absent in reports made before
    /// it was measured.
    #[serde(default)]
    pub cpu_conservation: Option<Estimate>,
    /// The same for memory.
    #[serde(default)]
    pub memory_conservation: Option<Estimate>,
}

impl Kpis {
    /// Each KPI with its field name, in the names' order.
    pub fn named(&self) -> [(&'static str, Option<Estimate>); 8] {
        [
            ("bytes_reduction", self.bytes_reduction),
            ("cpu_conservation", self.cpu_conservation),
            ("cpu_overhead_percent", self.cpu_overhead_percent),
            ("critical_coverage", self.critical_coverage),
            ("datapoints_reduction", self.datapoints_reduction),
            ("memory_conservation", self.memory_conservation),
            ("series_reduction", self.series_reduction),
            ("topn_fidelity", self.topn_fidelity),
        ]
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CandidateReport {
    pub name: String,
    /// Agent intervals with both the baseline and this candidate.
    pub paired_intervals: usize,
    pub agents: usize,
    pub kpis: Kpis,
    pub criteria: Vec<CriterionResult>,
    pub outcome: Outcome,
    /// The baseline's executables this candidate does not show
    /// individually: dropped first, then folded into a rollup; the largest
    /// shares first, at most five of each.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub losses: Vec<CandidateLoss>,
    /// A guardrail disqualified it: it failed whatever its KPIs (measured
    /// up to the breach) say.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disqualified: Option<Disqualification>,
}

/// An executable a candidate loses, averaged over the intervals the
/// candidate was measured in (an interval that did not lose it counts as 0).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CandidateLoss {
    pub executable: String,
    /// True: folded into a rollup (visible only as part of a group); false:
    /// dropped (gone from the candidate's totals).
    pub folded: bool,
    /// Its share of the baseline's process CPU and memory.
    pub cpu_share: f64,
    pub memory_share: f64,
    /// Processes of that name lost, on average per interval that lost any.
    pub processes: f64,
}

/// Per-variant averages and the cost estimate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VariantSummary {
    pub name: String,
    pub intervals: usize,
    /// Means per agent and interval.
    #[serde(deserialize_with = "number_or_null")]
    pub series: f64,
    #[serde(deserialize_with = "number_or_null")]
    pub datapoints: f64,
    #[serde(deserialize_with = "number_or_null")]
    pub bytes: f64,
    #[serde(deserialize_with = "number_or_null")]
    pub bytes_gzip: f64,
    #[serde(deserialize_with = "number_or_null")]
    pub cpu_overhead_percent: f64,
    /// For the whole target fleet, at the experiment's interval.
    #[serde(deserialize_with = "number_or_null")]
    pub monthly_datapoints: f64,
    #[serde(deserialize_with = "number_or_null")]
    pub monthly_gb: f64,
    #[serde(deserialize_with = "number_or_null")]
    pub monthly_cost: f64,
}

/// JSON has no NaN or infinity: serde_json writes them as null. A stored
/// report whose figure overflowed (a huge price) reads back with NaN there
/// instead of failing to load as a whole.
fn number_or_null<'de, D: serde::Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_figure_stored_as_null_reads_back_as_nan() {
        let summary = VariantSummary {
            name: "standard".into(),
            intervals: 3,
            series: 10.0,
            datapoints: 10.0,
            bytes: 100.0,
            bytes_gzip: 20.0,
            cpu_overhead_percent: 0.1,
            monthly_datapoints: 1e9,
            monthly_gb: 1.0,
            monthly_cost: f64::INFINITY,
        };
        let text = serde_json::to_string(&summary).unwrap();
        assert!(text.contains("\"monthly_cost\":null"), "{text}");
        let back: VariantSummary = serde_json::from_str(&text).expect("loads");
        assert!(back.monthly_cost.is_nan());
        assert_eq!(back.series, 10.0);
    }

    #[test]
    fn state_and_action_names_round_trip() {
        for s in ExperimentState::ALL {
            assert_eq!(ExperimentState::parse(s.as_str()), Some(s));
            assert_eq!(serde_json::to_value(s).unwrap(), json!(s.as_str()));
        }
        for a in ExperimentAction::ALL {
            assert_eq!(ExperimentAction::parse(a.as_str()), Some(a));
            assert_eq!(serde_json::to_value(a).unwrap(), json!(a.as_str()));
        }
        assert_eq!(ExperimentState::parse("rolled-back"), None);
        for w in WaveState::ALL {
            assert_eq!(WaveState::parse(w.as_str()), Some(w));
            assert_eq!(serde_json::to_value(w).unwrap(), json!(w.as_str()));
        }
    }

    #[test]
    fn waves_read_as_percents_and_must_grow_to_all_targets() {
        let waves = WavePercent::parse_list("10%, 50%,100").unwrap();
        assert_eq!(waves, [WavePercent(10), WavePercent(50), WavePercent(100)]);
        assert_eq!(
            serde_json::to_value(waves).unwrap(),
            json!(["10%", "50%", "100%"])
        );
        let read: Vec<WavePercent> = serde_json::from_value(json!([25, "100%"])).unwrap();
        assert_eq!(read, [WavePercent(25), WavePercent(100)]);
        for (bad, says) in [
            ("0%,100%", "not a percent from 1% to 100%"),
            ("50%,101%", "not a percent"),
            ("ten,100%", "not a percent"),
            ("50%,50%,100%", "waves must grow: 50% then 50%"),
            ("10%,50%", "the last wave must be 100%"),
            ("", "not a percent"),
        ] {
            let e = WavePercent::parse_list(bad).unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
        }
        assert!(serde_json::from_value::<WavePercent>(json!(-5)).is_err());
        let many = ["1%"; MAX_WAVES + 1].join(",");
        assert!(WavePercent::parse_list(&many).is_err());
    }

    fn detail() -> ExperimentDetail {
        ExperimentDetail {
            summary: ExperimentSummary {
                id: "exp-1".into(),
                name: "topk".into(),
                description: String::new(),
                state: ExperimentState::Succeeded,
                reason: "every criterion passed".into(),
                author: "ana".into(),
                config_hash: "ab12".into(),
                variants: vec![VariantInfo {
                    name: "baseline".into(),
                    role: VariantRole::Baseline,
                    template: None,
                    mode: "export".into(),
                }],
                actions: vec![ExperimentAction::Promote, ExperimentAction::Rollback],
                created_at: "2026-01-01T00:00:00.000Z".into(),
                updated_at: "2026-01-01T00:10:00.000Z".into(),
                start_at: None,
                running_at: Some("2026-01-01T00:00:05.000Z".into()),
                measure_from: None,
                ends_at: None,
                finished_at: None,
                headline: Some(Headline {
                    verdict: "succeeded".into(),
                    winner: Some("topk".into()),
                    candidates: vec![HeadlineCandidate {
                        name: "topk".into(),
                        outcome: Outcome::Pass,
                        series_reduction: Some(0.75),
                        bytes_reduction: None,
                        critical_coverage: Some(1.0),
                    }],
                }),
            },
            spec: json!({ "name": "topk" }),
            config: "receivers: {}".into(),
            deploy_push: Some("push-1".into()),
            promoted_push: None,
            breach: None,
            disqualified: vec![DisqualificationEntry {
                variant: "hides-etcd".into(),
                disqualification: Disqualification {
                    at: "2026-01-01T00:01:00.000Z".into(),
                    guardrail: "critical_coverage".into(),
                    reason: "\"hides-etcd\" kept 0 of 2 critical processes visible".into(),
                },
                push: Some("push-2".into()),
            }],
            transitions: vec![TransitionEntry {
                at: "2026-01-01T00:00:00.000Z".into(),
                from: String::new(),
                to: "draft".into(),
                actor: "ana".into(),
                reason: "created".into(),
            }],
            targets: vec![ExperimentTarget {
                agent_id: "node-1".into(),
                status: AgentStatus::Online,
                previous_hash: String::new(),
                previous_source: PreviousSource::None,
                effective_hash: "ab12".into(),
                config_state: "applied".into(),
                config_error: String::new(),
                runs_experiment: true,
            }],
            promotion: None,
        }
    }

    #[test]
    fn an_experiment_round_trips_flat_with_its_actions_and_nulls() {
        let d = detail();
        let v = serde_json::to_value(&d).unwrap();
        // The summary's fields sit beside the detail's, not nested.
        assert_eq!(v["id"], "exp-1");
        assert_eq!(v["state"], "succeeded");
        assert_eq!(v["actions"], json!(["promote", "rollback"]));
        assert_eq!(v["deploy_push"], "push-1");
        // Absent values are explicit nulls, as the dashboard reads them.
        for key in ["start_at", "finished_at", "promoted_push", "breach"] {
            assert!(v.as_object().unwrap().contains_key(key), "{key}");
            assert!(v[key].is_null(), "{key}");
        }
        assert_eq!(
            v["headline"]["candidates"][0]["bytes_reduction"],
            json!(null)
        );
        assert_eq!(v["targets"][0]["previous_source"], "none");
        // A disqualification reads flat, as the dashboard shows it.
        assert_eq!(
            v["disqualified"][0],
            json!({
                "variant": "hides-etcd", "at": "2026-01-01T00:01:00.000Z",
                "guardrail": "critical_coverage",
                "reason": "\"hides-etcd\" kept 0 of 2 critical processes visible",
                "push": "push-2",
            })
        );
        let back: ExperimentDetail = serde_json::from_value(v.clone()).unwrap();
        assert_eq!(back, d);
        // From a controller before disqualifications: none.
        let mut old = v;
        old.as_object_mut().unwrap().remove("disqualified");
        let back: ExperimentDetail = serde_json::from_value(old).unwrap();
        assert!(back.disqualified.is_empty());
    }

    #[test]
    fn a_renamed_field_fails_to_parse() {
        let mut v = serde_json::to_value(detail().summary).unwrap();
        let state = v.as_object_mut().unwrap().remove("state").unwrap();
        v["status"] = state;
        assert!(serde_json::from_value::<ExperimentSummary>(v).is_err());
    }

    #[test]
    fn a_report_is_the_analysis_with_final_id_state_and_reason() {
        let report = ExperimentReport {
            id: "exp-1".into(),
            state: ExperimentState::Running,
            reason: String::new(),
            is_final: false,
            analysis: Analysis {
                verdict: "failed".into(),
                winner: None,
                recommendation: "Wait for more data.".into(),
                confidence: 0.95,
                resamples: 1000,
                target_agents: 2,
                currency: "USD".into(),
                variants: Vec::new(),
                candidates: vec![CandidateReport {
                    name: "topk".into(),
                    paired_intervals: 0,
                    agents: 0,
                    kpis: Kpis::default(),
                    criteria: vec![CriterionResult {
                        criterion: "min_series_reduction".into(),
                        kpi: "series_reduction".into(),
                        op: ">=".into(),
                        threshold: 0.5,
                        estimate: None,
                        outcome: Outcome::NoData,
                    }],
                    outcome: Outcome::NoData,
                    losses: Vec::new(),
                    disqualified: None,
                }],
            },
        };
        let v = serde_json::to_value(&report).unwrap();
        assert_eq!(v["final"], false);
        assert_eq!(v["verdict"], "failed");
        assert_eq!(v["candidates"][0]["outcome"], "no_data");
        // Not disqualified: no field at all, as in reports stored before.
        assert!(v["candidates"][0].get("disqualified").is_none(), "{v}");
        assert_eq!(
            serde_json::from_value::<ExperimentReport>(v).unwrap(),
            report
        );
    }
}
