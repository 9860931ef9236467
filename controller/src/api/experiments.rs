//! `/api/v1/experiments`: create (from YAML or JSON), list, get, start,
//! stop, promote, rollback, results (the KPI time series) and report (the
//! verdict). Every refusal is a 4xx naming the problem and changes nothing;
//! an action the experiment's state does not allow is a 409.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Extension, Path, Query, State};
use axum::http::StatusCode;
use phoenix_api::{
    ActionRequest, DefinitionRequest, DisqualificationEntry, ExperimentAction, ExperimentDetail,
    ExperimentList, ExperimentResults, ExperimentSummary, ExperimentTarget, Headline,
    PreviousSource, RawMeasurement, ResultPoint, TransitionEntry, ValidationReport, VariantInfo,
    VariantRole,
};
use serde::Deserialize;

use super::auth::Caller;
use super::views::opt_time;
use super::{ApiError, ApiResult, created, db, reply};
use crate::experiment::analysis::Measurement;
use crate::experiment::spec::{self, ExperimentSpec, VariantSpec};
use crate::experiment::state::{Lifecycle, State as ExperimentState};
use crate::experiment::{self, ExperimentError};
use crate::store::{ExperimentRecord, StoreError};
use crate::{Shared, rfc3339_ms};

/// The body of a create or validate: the definition itself (YAML or JSON),
/// or `{"definition": "<yaml>", "author": "..."}`.
fn definition(body: Result<Bytes, BytesRejection>) -> Result<DefinitionRequest, ApiError> {
    let body = body?;
    let text = std::str::from_utf8(&body)
        .map_err(|_| ApiError::bad_request("the definition is not UTF-8 text"))?;
    match serde_json::from_str::<DefinitionRequest>(text) {
        Ok(request) => Ok(request),
        // A wrapper with a wrong field (an `author` that is not text) is
        // refused as such, not judged as a definition it is not.
        Err(e)
            if serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(text)
                .is_ok_and(|o| o.contains_key("definition")) =>
        {
            Err(ApiError::bad_request(format!("invalid request: {e}")))
        }
        Err(_) => Ok(DefinitionRequest {
            definition: text.to_string(),
            note: None,
        }),
    }
}

/// An experiment in lists: state, what it allows, and headline numbers.
pub fn summary(e: &ExperimentRecord) -> ExperimentSummary {
    let spec: Option<ExperimentSpec> = serde_json::from_str(&e.spec).ok();
    let mut variants = Vec::new();
    if let Some(spec) = &spec {
        variants.push(variant(&spec.baseline, VariantRole::Baseline));
        variants.extend(
            spec.candidates
                .iter()
                .map(|c| variant(c, VariantRole::Candidate)),
        );
    }
    ExperimentSummary {
        id: e.id.clone(),
        name: e.name.clone(),
        description: spec.map(|s| s.description).unwrap_or_default(),
        state: e.state,
        reason: e.reason.clone(),
        author: e.author.clone(),
        config_hash: e.config_hash.clone(),
        variants,
        actions: e.state.actions(),
        created_at: rfc3339_ms(e.created_at),
        updated_at: rfc3339_ms(e.updated_at),
        start_at: opt_time(e.start_at),
        running_at: opt_time(e.running_at),
        measure_from: opt_time(e.measure_from),
        ends_at: opt_time(e.ends_at),
        finished_at: opt_time(e.finished_at),
        headline: experiment::stored_verdict(e).map(|a| Headline::of(&a)),
    }
}

fn variant(v: &VariantSpec, role: VariantRole) -> VariantInfo {
    let is_baseline = role == VariantRole::Baseline;
    VariantInfo {
        name: spec::variant_name(v, is_baseline),
        role,
        template: v.template.clone(),
        mode: spec::variant_mode(v, is_baseline).as_str().to_string(),
    }
}

pub async fn create(
    State(shared): State<Arc<Shared>>,
    Extension(caller): Extension<Caller>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult {
    let request = definition(body)?;
    let actor = caller.actor(request.note)?;
    let record = experiment::create(&shared, request.definition, actor, caller.scope()).await?;
    let location = format!("/api/v1/experiments/{}", record.id);
    created(StatusCode::CREATED, &location, &summary(&record))
}

/// Check a definition without storing it: the errors by field, or the
/// config it would deploy.
pub async fn validate(
    State(shared): State<Arc<Shared>>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult {
    let request = definition(body)?;
    let report = match experiment::check(&shared, request.definition, "exp-preview").await {
        Ok(experiment::Checked { spec, composed, .. }) => {
            let store = shared.store.clone();
            let (labels, hosts) = (spec.targets.labels.clone(), spec.targets.hosts.clone());
            let matching = db(move || store.online_agents(&labels, &hosts)).await?;
            ValidationReport {
                valid: true,
                errors: Vec::new(),
                matching_agents: Some(matching),
                variants: Some(
                    std::iter::once(spec.baseline_name())
                        .chain(spec.candidate_names())
                        .collect(),
                ),
                config: Some(composed.yaml),
            }
        }
        Err(errors) => ValidationReport {
            valid: false,
            errors,
            matching_agents: None,
            variants: None,
            config: None,
        },
    };
    reply(StatusCode::OK, &report)
}

#[derive(Deserialize)]
pub struct ListQuery {
    limit: Option<u32>,
    state: Option<String>,
}

/// Whether the caller may see an experiment: its targets stay inside the
/// caller's scope. To anyone else it does not exist.
fn visible(caller: &Caller, e: &ExperimentRecord) -> bool {
    caller.scope().is_none_or(|scope| {
        serde_json::from_str::<ExperimentSpec>(&e.spec).is_ok_and(|s| s.targets_within(scope))
    })
}

/// Refuse, as not found, an experiment the caller may not see; and with
/// `act`, one it may see but not act on.
async fn check_scope(
    shared: &Arc<Shared>,
    caller: &Caller,
    id: &str,
    act: bool,
) -> Result<(), ApiError> {
    let Some(scope) = caller.scope() else {
        return Ok(());
    };
    let store = shared.store.clone();
    let lookup = id.to_string();
    let not_found = || ApiError::not_found(format!("no experiment {id:?}"));
    let record = db(move || store.experiment(&lookup))
        .await?
        .ok_or_else(not_found)?;
    if !visible(caller, &record) {
        return Err(not_found());
    }
    if act {
        let spec: ExperimentSpec = serde_json::from_str(&record.spec)?;
        if let Some(why) = spec.outside(scope) {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                format!("outside the scope of {}: {why}", caller.principal.name),
            ));
        }
    }
    Ok(())
}

pub async fn list(
    State(shared): State<Arc<Shared>>,
    Extension(caller): Extension<Caller>,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> ApiResult {
    let Query(q) = query.map_err(ApiError::bad_query)?;
    let state = match q.state.as_deref() {
        None | Some("") | Some("all") => None,
        Some(s) => Some(ExperimentState::parse(s).ok_or_else(|| {
            ApiError::bad_request(format!("state {s:?} is not an experiment state"))
        })?),
    };
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    let store = shared.store.clone();
    let list = db(move || store.list_experiments(limit, state)).await?;
    reply(
        StatusCode::OK,
        &ExperimentList {
            experiments: list
                .iter()
                .filter(|e| visible(&caller, e))
                .map(summary)
                .collect(),
        },
    )
}

pub async fn get(
    State(shared): State<Arc<Shared>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> ApiResult {
    check_scope(&shared, &caller, &id, false).await?;
    let store = shared.store.clone();
    let lookup = id.clone();
    let found = db(move || {
        let Some(e) = store.experiment(&lookup)? else {
            return Ok(None);
        };
        let transitions = store.transitions(&lookup)?;
        let targets = store.experiment_targets(&lookup)?;
        let promotion = store.promotion(&lookup)?;
        let disqualified = store.disqualifications(&lookup)?;
        Ok::<_, StoreError>(Some((e, transitions, targets, promotion, disqualified)))
    })
    .await?;
    let Some((e, transitions, targets, promotion, disqualified)) = found else {
        return Err(ApiError::not_found(format!("no experiment {id:?}")));
    };
    // A target runs the experiment when it runs its composed config, or
    // one reduced since by a disqualification.
    let experiment_configs: Vec<&str> = std::iter::once(e.config_hash.as_str())
        .chain(disqualified.iter().filter_map(|d| d.config_hash.as_deref()))
        .collect();
    let detail = ExperimentDetail {
        summary: summary(&e),
        spec: serde_json::from_str(&e.spec).unwrap_or(serde_json::Value::Null),
        config: e.config.clone(),
        deploy_push: e.deploy_push.clone(),
        promoted_push: e.promoted_push.clone(),
        breach: e
            .breach
            .as_deref()
            .and_then(|b| serde_json::from_str(b).ok()),
        disqualified: disqualified
            .iter()
            .map(|d| DisqualificationEntry {
                variant: d.variant.clone(),
                disqualification: experiment::disqualification(d),
                push: d.push_id.clone(),
            })
            .collect(),
        transitions: transitions
            .into_iter()
            .map(|t| TransitionEntry {
                at: rfc3339_ms(t.at),
                from: t.from,
                to: t.to,
                actor: t.actor,
                reason: t.reason,
            })
            .collect(),
        targets: targets
            .into_iter()
            .map(|t| ExperimentTarget {
                // What a rollback restores: the config pushed again by the
                // controller, or a revert to the agent's local file.
                previous_source: match (t.previous_hash.is_empty(), &t.previous_content) {
                    (true, _) => PreviousSource::None,
                    (false, Some(_)) => PreviousSource::Controller,
                    (false, None) => PreviousSource::Local,
                },
                runs_experiment: experiment_configs.contains(&t.effective_hash.as_str()),
                agent_id: t.agent_id,
                status: t.status,
                previous_hash: t.previous_hash,
                effective_hash: t.effective_hash,
                config_state: t.config_state.as_str().into(),
                config_error: caller.error_text(t.config_error),
            })
            .collect(),
        promotion: promotion.map(experiment::promotion::view),
    };
    reply(StatusCode::OK, &detail)
}

fn action_body(body: Result<Bytes, BytesRejection>) -> Result<ActionRequest, ApiError> {
    let body = body?;
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(ActionRequest::default());
    }
    serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))
}

pub async fn action(
    State(shared): State<Arc<Shared>>,
    Extension(caller): Extension<Caller>,
    Path((id, action)): Path<(String, String)>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult {
    let body = action_body(body)?;
    let actor = caller.actor(body.note)?;
    check_scope(&shared, &caller, &id, true).await?;
    let Some(action) = ExperimentAction::parse(&action) else {
        return Err(ApiError::not_found(format!(
            "no action {action:?}: use start, stop, promote or rollback"
        )));
    };
    let result: Result<ExperimentRecord, ExperimentError> = match action {
        ExperimentAction::Start => experiment::start(&shared, &id, &actor).await,
        ExperimentAction::Stop => experiment::stop(&shared, &id, &actor).await,
        ExperimentAction::Promote => {
            let request = experiment::PromoteRequest {
                variant: body.variant,
                waves: body.waves,
                watch: body.watch,
            };
            experiment::promote(&shared, &id, request, &actor).await
        }
        ExperimentAction::Rollback => {
            let reason = body
                .reason
                .filter(|r| !r.trim().is_empty())
                .unwrap_or_else(|| format!("rolled back by {}", actor.name));
            if reason.len() > 1024 || reason.chars().any(char::is_control) {
                return Err(ApiError::bad_request(
                    "reason must be at most 1024 bytes without control characters",
                ));
            }
            experiment::rollback(&shared, &id, &actor, &reason).await
        }
    };
    let record = result?;
    // Scheduled work (deploying a started experiment) happens at once.
    shared.scheduler_wake.notify_one();
    reply(StatusCode::OK, &summary(&record))
}

pub async fn report(
    State(shared): State<Arc<Shared>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> ApiResult {
    check_scope(&shared, &caller, &id, false).await?;
    reply(StatusCode::OK, &experiment::report(&shared, &id).await?)
}

#[derive(Deserialize)]
pub struct ResultsQuery {
    agent: Option<String>,
    /// Also return every stored measurement.
    raw: Option<bool>,
}

/// One point of a variant's time series: the fleet in one interval.
#[derive(Default)]
struct Point {
    agents: u64,
    series: u64,
    datapoints: u64,
    bytes: u64,
    bytes_gzip: u64,
    cpu_seconds: f64,
    critical_total: u64,
    critical_visible: u64,
    fidelity_sum: f64,
    fidelity_n: u64,
}

/// The KPI time series: per variant, per interval, summed over the agents.
pub async fn results(
    State(shared): State<Arc<Shared>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    query: Result<Query<ResultsQuery>, QueryRejection>,
) -> ApiResult {
    check_scope(&shared, &caller, &id, false).await?;
    let Query(q) = query.map_err(ApiError::bad_query)?;
    let store = shared.store.clone();
    let lookup = id.clone();
    let agent = q.agent.clone();
    let found = db(move || {
        let Some(e) = store.experiment(&lookup)? else {
            return Ok(None);
        };
        let rows = store.measurements(&lookup, agent.as_deref())?;
        Ok::<_, StoreError>(Some((e, rows)))
    })
    .await?;
    let Some((e, rows)) = found else {
        return Err(ApiError::not_found(format!("no experiment {id:?}")));
    };
    let spec: ExperimentSpec = serde_json::from_str(&e.spec)?;
    let timing = spec.timing().map_err(ApiError::StoredSpec)?;
    let bucket_ns = timing.interval_ms.max(1) * 1_000_000;
    let interval_s = timing.interval_ms as f64 / 1000.0;
    let mut series: BTreeMap<&str, BTreeMap<i64, Point>> = BTreeMap::new();
    for r in &rows {
        let p = series
            .entry(&r.variant)
            .or_default()
            .entry(r.interval_ns / bucket_ns)
            .or_default();
        // Agent-supplied counts: saturate rather than overflow.
        p.agents += 1;
        p.series = p.series.saturating_add(r.series);
        p.datapoints = p.datapoints.saturating_add(r.datapoints);
        p.bytes = p.bytes.saturating_add(r.bytes);
        p.bytes_gzip = p.bytes_gzip.saturating_add(r.bytes_gzip);
        p.cpu_seconds += r.cpu_seconds;
        p.critical_total = p.critical_total.saturating_add(r.critical_total);
        p.critical_visible = p.critical_visible.saturating_add(r.critical_visible);
        if let Some(f) = r.topn_fidelity {
            p.fidelity_sum += f;
            p.fidelity_n += 1;
        }
    }
    let variants = series
        .into_iter()
        .map(|(name, points)| {
            let points = points
                .into_iter()
                .map(|(bucket, p)| ResultPoint {
                    time: rfc3339_ms(bucket * bucket_ns / 1_000_000),
                    agents: p.agents,
                    series: p.series,
                    datapoints: p.datapoints,
                    bytes: p.bytes,
                    bytes_gzip: p.bytes_gzip,
                    critical_coverage: (p.critical_total > 0)
                        .then(|| p.critical_visible as f64 / p.critical_total as f64),
                    topn_fidelity: (p.fidelity_n > 0).then(|| p.fidelity_sum / p.fidelity_n as f64),
                    // JSON has no infinity: null rather than a number
                    // a zero interval would make up.
                    cpu_overhead_percent: Some(
                        100.0 * p.cpu_seconds / (p.agents as f64 * interval_s),
                    )
                    .filter(|v| v.is_finite()),
                })
                .collect();
            (name.to_string(), points)
        })
        .collect();
    reply(
        StatusCode::OK,
        &ExperimentResults {
            id: e.id.clone(),
            state: e.state,
            interval_ms: timing.interval_ms,
            baseline: spec.baseline_name(),
            variants,
            measurements: q
                .raw
                .unwrap_or(false)
                .then(|| rows.iter().map(raw).collect()),
        },
    )
}

fn raw(m: &Measurement) -> RawMeasurement {
    RawMeasurement {
        variant: m.variant.clone(),
        agent_id: m.agent_id.clone(),
        interval_unix_nano: m.interval_ns,
        series: m.series,
        datapoints: m.datapoints,
        bytes: m.bytes,
        bytes_gzip: m.bytes_gzip,
        cpu_seconds: m.cpu_seconds,
        critical_total: m.critical_total,
        critical_visible: m.critical_visible,
        topn_fidelity: m.topn_fidelity,
    }
}
