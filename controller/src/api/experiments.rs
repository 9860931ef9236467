//! `/api/v1/experiments`: create (from YAML or JSON), list, get, start,
//! stop, promote, rollback, results (the KPI time series) and report (the
//! verdict). Every refusal is a 4xx naming the problem and changes nothing;
//! an action the experiment's state does not allow is a 409.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{ApiError, ApiResult, MAX_AUTHOR, ok};
use crate::experiment::analysis::Measurement;
use crate::experiment::spec::{ExperimentSpec, SpecError};
use crate::experiment::{self, ExperimentError};
use crate::store::ExperimentRecord;
use crate::{Shared, blocking, rfc3339_ms};

fn error(e: ExperimentError) -> ApiError {
    match e {
        ExperimentError::Invalid(errors) => ApiError {
            status: StatusCode::BAD_REQUEST,
            body: json!({
                "error": format!("the experiment is invalid: {} error(s)", errors.len()),
                "errors": errors,
            }),
        },
        ExperimentError::NotFound(m) => ApiError::not_found(m),
        ExperimentError::Conflict(m) => ApiError::new(StatusCode::CONFLICT, m),
        ExperimentError::Internal(m) => ApiError::internal(m),
    }
}

/// The body of a create or validate: the definition itself (YAML or JSON),
/// or `{"definition": "<yaml>", "author": "..."}`.
fn definition(body: Result<Bytes, BytesRejection>) -> Result<(String, Option<String>), ApiError> {
    let body = body?;
    let text = std::str::from_utf8(&body)
        .map_err(|_| ApiError::bad_request("the definition is not UTF-8 text"))?;
    if let Ok(Value::Object(o)) = serde_json::from_str::<Value>(text)
        && let Some(Value::String(d)) = o.get("definition")
    {
        let author = o.get("author").and_then(Value::as_str).map(str::to_string);
        return Ok((d.clone(), author));
    }
    Ok((text.to_string(), None))
}

fn author(given: Option<String>) -> Result<String, ApiError> {
    let a = given.unwrap_or_default().trim().to_string();
    if a.len() > MAX_AUTHOR || a.chars().any(char::is_control) {
        return Err(ApiError::bad_request(format!(
            "author must be at most {MAX_AUTHOR} bytes without control characters"
        )));
    }
    Ok(if a.is_empty() { "anonymous".into() } else { a })
}

fn opt_time(ms: Option<i64>) -> Value {
    ms.map(|m| Value::String(rfc3339_ms(m)))
        .unwrap_or(Value::Null)
}

fn parse_json_field(text: Option<&str>) -> Value {
    text.and_then(|t| serde_json::from_str(t).ok())
        .unwrap_or(Value::Null)
}

/// The headline of a verdict: verdict, winner, and per candidate the
/// series and bytes reduction.
fn headline(analysis: &Value) -> Value {
    if analysis.is_null() {
        return Value::Null;
    }
    let candidates: Vec<Value> = analysis["candidates"]
        .as_array()
        .map(|list| {
            list.iter()
                .map(|c| {
                    json!({
                        "name": c["name"],
                        "outcome": c["outcome"],
                        "series_reduction": c["kpis"]["series_reduction"]["value"],
                        "bytes_reduction": c["kpis"]["bytes_reduction"]["value"],
                        "critical_coverage": c["kpis"]["critical_coverage"]["value"],
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    json!({ "verdict": analysis["verdict"], "winner": analysis["winner"], "candidates": candidates })
}

/// An experiment in lists: state and headline numbers.
pub fn summary(e: &ExperimentRecord) -> Value {
    let spec: Value = serde_json::from_str(&e.spec).unwrap_or(Value::Null);
    let mut variants = vec![experiment_variant(&spec["baseline"], true)];
    if let Some(list) = spec["candidates"].as_array() {
        variants.extend(list.iter().map(|c| experiment_variant(c, false)));
    }
    json!({
        "id": e.id,
        "name": e.name,
        "description": spec["description"],
        "state": e.state.as_str(),
        "reason": e.reason,
        "author": e.author,
        "config_hash": e.config_hash,
        "variants": variants,
        "created_at": rfc3339_ms(e.created_at),
        "updated_at": rfc3339_ms(e.updated_at),
        "start_at": opt_time(e.start_at),
        "running_at": opt_time(e.running_at),
        "measure_from": opt_time(e.measure_from),
        "ends_at": opt_time(e.ends_at),
        "finished_at": opt_time(e.finished_at),
        "headline": headline(&parse_json_field(e.analysis.as_deref())),
    })
}

/// `{name, source, mode}` of a variant in the stored spec.
fn experiment_variant(v: &Value, is_baseline: bool) -> Value {
    let spec: crate::experiment::spec::VariantSpec =
        serde_json::from_value(v.clone()).unwrap_or_default();
    json!({
        "name": crate::experiment::spec::variant_name(&spec, is_baseline),
        "role": if is_baseline { "baseline" } else { "candidate" },
        "template": spec.template,
        "mode": crate::experiment::spec::variant_mode(&spec, is_baseline).as_str(),
    })
}

pub async fn create(
    State(shared): State<Arc<Shared>>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult {
    let (text, given) = definition(body)?;
    let author = author(given)?;
    let record = experiment::create(&shared, text, author)
        .await
        .map_err(error)?;
    let location = format!("/api/v1/experiments/{}", record.id);
    let mut response = ok(StatusCode::CREATED, summary(&record))?;
    if let Ok(v) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, v);
    }
    Ok(response)
}

/// Check a definition without storing it: the errors by field, or the
/// config it would deploy.
pub async fn validate(
    State(shared): State<Arc<Shared>>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult {
    let (text, _) = definition(body)?;
    match experiment::check(&shared, text, "exp-preview").await {
        Ok(experiment::Checked { spec, composed, .. }) => {
            let store = shared.store.clone();
            let (labels, hosts) = (spec.targets.labels.clone(), spec.targets.hosts.clone());
            let matching = blocking(move || store.online_agents(&labels, &hosts))
                .await
                .map_err(ApiError::internal)?
                .map_err(ApiError::internal)?;
            ok(
                StatusCode::OK,
                json!({
                    "valid": true,
                    "errors": [],
                    "matching_agents": matching,
                    "variants": std::iter::once(spec.baseline_name()).chain(spec.candidate_names()).collect::<Vec<_>>(),
                    "config": composed.yaml,
                }),
            )
        }
        Err(errors) => ok(StatusCode::OK, json!({ "valid": false, "errors": errors })),
    }
}

#[derive(Deserialize)]
pub struct ListQuery {
    limit: Option<u32>,
    state: Option<String>,
}

pub async fn list(
    State(shared): State<Arc<Shared>>,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> ApiResult {
    let Query(q) =
        query.map_err(|e| ApiError::bad_request(format!("invalid query: {}", e.body_text())))?;
    let state = match q.state.as_deref() {
        None | Some("") | Some("all") => None,
        Some(s) => Some(crate::experiment::state::State::parse(s).ok_or_else(|| {
            ApiError::bad_request(format!("state {s:?} is not an experiment state"))
        })?),
    };
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    let store = shared.store.clone();
    let list = blocking(move || store.list_experiments(limit, state))
        .await
        .map_err(ApiError::internal)?
        .map_err(ApiError::internal)?;
    let list: Vec<Value> = list.iter().map(summary).collect();
    ok(StatusCode::OK, json!({ "experiments": list }))
}

pub async fn get(State(shared): State<Arc<Shared>>, Path(id): Path<String>) -> ApiResult {
    let store = shared.store.clone();
    let lookup = id.clone();
    let found = blocking(move || {
        let Some(e) = store.experiment(&lookup)? else {
            return Ok(None);
        };
        let transitions = store.transitions(&lookup)?;
        let targets = store.experiment_targets(&lookup)?;
        Ok::<_, crate::store::StoreError>(Some((e, transitions, targets)))
    })
    .await
    .map_err(ApiError::internal)?
    .map_err(ApiError::internal)?;
    let Some((e, transitions, targets)) = found else {
        return Err(ApiError::not_found(format!("no experiment {id:?}")));
    };
    let mut v = summary(&e);
    v["spec"] = serde_json::from_str(&e.spec).unwrap_or(Value::Null);
    v["config"] = Value::String(e.config.clone());
    v["deploy_push"] = json!(e.deploy_push);
    v["promoted_push"] = json!(e.promoted_push);
    v["breach"] = parse_json_field(e.breach.as_deref());
    v["transitions"] = transitions
        .iter()
        .map(|t| {
            json!({
                "at": rfc3339_ms(t.at),
                "from": t.from,
                "to": t.to,
                "actor": t.actor,
                "reason": t.reason,
            })
        })
        .collect();
    v["targets"] = targets
        .iter()
        .map(|t| {
            // What a rollback restores: the config pushed again by the
            // controller, or a revert to the agent's local file.
            let previous_source = match (t.previous_hash.is_empty(), &t.previous_content) {
                (true, _) => "none",
                (false, Some(_)) => "controller",
                (false, None) => "local",
            };
            json!({
                "agent_id": t.agent_id,
                "status": t.status,
                "previous_hash": t.previous_hash,
                "previous_source": previous_source,
                "effective_hash": t.effective_hash,
                "config_state": t.config_state,
                "config_error": t.config_error,
                "runs_experiment": t.effective_hash == e.config_hash,
            })
        })
        .collect();
    ok(StatusCode::OK, v)
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ActionBody {
    author: Option<String>,
    /// promote: the variant (default: the verdict's winner).
    variant: Option<String>,
    /// rollback: why.
    reason: Option<String>,
}

fn action_body(body: Result<Bytes, BytesRejection>) -> Result<ActionBody, ApiError> {
    let body = body?;
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(ActionBody::default());
    }
    serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))
}

pub async fn action(
    State(shared): State<Arc<Shared>>,
    Path((id, action)): Path<(String, String)>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult {
    let body = action_body(body)?;
    let actor = author(body.author)?;
    let result = match action.as_str() {
        "start" => experiment::start(&shared, &id, &actor).await,
        "stop" => experiment::stop(&shared, &id, &actor).await,
        "promote" => experiment::promote(&shared, &id, body.variant, &actor).await,
        "rollback" => {
            let reason = body
                .reason
                .filter(|r| !r.trim().is_empty())
                .unwrap_or_else(|| format!("rolled back by {actor}"));
            if reason.len() > 1024 || reason.chars().any(char::is_control) {
                return Err(ApiError::bad_request(
                    "reason must be at most 1024 bytes without control characters",
                ));
            }
            experiment::rollback(&shared, &id, &actor, &reason).await
        }
        other => {
            return Err(ApiError::not_found(format!(
                "no action {other:?}: use start, stop, promote or rollback"
            )));
        }
    };
    let record = result.map_err(error)?;
    // Scheduled work (deploying a started experiment) happens at once.
    shared.scheduler_wake.notify_one();
    ok(StatusCode::OK, summary(&record))
}

pub async fn report(State(shared): State<Arc<Shared>>, Path(id): Path<String>) -> ApiResult {
    let v = experiment::report(&shared, &id).await.map_err(error)?;
    ok(StatusCode::OK, v)
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
    Path(id): Path<String>,
    query: Result<Query<ResultsQuery>, QueryRejection>,
) -> ApiResult {
    let Query(q) =
        query.map_err(|e| ApiError::bad_request(format!("invalid query: {}", e.body_text())))?;
    let store = shared.store.clone();
    let lookup = id.clone();
    let agent = q.agent.clone();
    let found = blocking(move || {
        let Some(e) = store.experiment(&lookup)? else {
            return Ok(None);
        };
        let rows = store.measurements(&lookup, agent.as_deref())?;
        Ok::<_, crate::store::StoreError>(Some((e, rows)))
    })
    .await
    .map_err(ApiError::internal)?
    .map_err(ApiError::internal)?;
    let Some((e, rows)) = found else {
        return Err(ApiError::not_found(format!("no experiment {id:?}")));
    };
    let spec: ExperimentSpec = serde_json::from_str(&e.spec).map_err(ApiError::internal)?;
    let timing = spec
        .timing()
        .map_err(|errs: Vec<SpecError>| ApiError::internal(format!("{errs:?}")))?;
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
    let variants: serde_json::Map<String, Value> = series
        .into_iter()
        .map(|(name, points)| {
            let points: Vec<Value> = points
                .into_iter()
                .map(|(bucket, p)| {
                    json!({
                        "time": rfc3339_ms(bucket * bucket_ns / 1_000_000),
                        "agents": p.agents,
                        "series": p.series,
                        "datapoints": p.datapoints,
                        "bytes": p.bytes,
                        "bytes_gzip": p.bytes_gzip,
                        "critical_coverage": (p.critical_total > 0)
                            .then(|| p.critical_visible as f64 / p.critical_total as f64),
                        "topn_fidelity": (p.fidelity_n > 0).then(|| p.fidelity_sum / p.fidelity_n as f64),
                        "cpu_overhead_percent": 100.0 * p.cpu_seconds / (p.agents as f64 * interval_s),
                    })
                })
                .collect();
            (name.to_string(), Value::Array(points))
        })
        .collect();
    let mut v = json!({
        "id": e.id,
        "state": e.state.as_str(),
        "interval_ms": timing.interval_ms,
        "baseline": spec.baseline_name(),
        "variants": variants,
    });
    if q.raw.unwrap_or(false) {
        v["measurements"] = rows.iter().map(raw).collect();
    }
    ok(StatusCode::OK, v)
}

fn raw(m: &Measurement) -> Value {
    json!({
        "variant": m.variant,
        "agent_id": m.agent_id,
        "interval_unix_nano": m.interval_ns,
        "series": m.series,
        "datapoints": m.datapoints,
        "bytes": m.bytes,
        "bytes_gzip": m.bytes_gzip,
        "cpu_seconds": m.cpu_seconds,
        "critical_total": m.critical_total,
        "critical_visible": m.critical_visible,
        "topn_fidelity": m.topn_fidelity,
    })
}
