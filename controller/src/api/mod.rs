//! The HTTP API (JSON under `/api/v1`), health and metrics.
//!
//! Every `/api/v1` request needs `Authorization: Bearer <api token>`,
//! except reads (GET, and config validation, which changes nothing) when
//! the controller runs with `--api-read-open`. `/healthz`, `/readyz` and
//! `/metrics` are open: probes and Prometheus have no token, and none of
//! them tells more than counts. Every refusal is a 4xx with a JSON body
//! `{"error": "..."}` and changes nothing.

mod experiments;
mod views;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, Query, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::fleet::rollout::{self, ConfigSource, PushError, PushRequest};
use crate::store::{AgentStatus, Selector};
use crate::{Shared, StartError, blocking, templates};

/// Request bodies are configs of a few KiB; anything above this is refused
/// with 413 before it is read whole.
pub const MAX_BODY_BYTES: usize = 1 << 20;
/// Agent ids one push may name.
const MAX_SELECTED_AGENTS: usize = 10_000;
pub(crate) const MAX_AUTHOR: usize = 128;

/// Serve the API until `stop` turns true.
pub fn serve(
    shared: Arc<Shared>,
    listener: TcpListener,
    stop: watch::Receiver<bool>,
) -> Result<JoinHandle<anyhow::Result<()>>, StartError> {
    let tls = shared.settings.tls.clone();
    let app = router(shared).layer(axum::Extension(crate::ui::Stop(stop.clone())));
    let stopped = {
        let mut stop = stop.clone();
        async move { crate::stopped(&mut stop).await }
    };
    Ok(tokio::spawn(async move {
        let result = match tls {
            Some(tls) => {
                let listener = tls.http_listener(listener, stop.clone());
                axum::serve(listener, app)
                    .with_graceful_shutdown(stopped)
                    .await
            }
            None => {
                axum::serve(listener, app)
                    .with_graceful_shutdown(stopped)
                    .await
            }
        };
        result.map_err(|e| anyhow::anyhow!("HTTP server: {e}"))
    }))
}

/// The whole HTTP surface.
pub fn router(shared: Arc<Shared>) -> Router {
    let api = Router::new()
        .route("/agents", get(list_agents))
        .route("/agents/{id}", get(get_agent))
        .route("/pushes", post(create_push).get(list_pushes))
        .route("/pushes/{id}", get(get_push))
        .route("/configs/validate", post(validate_config))
        .route("/templates", get(list_templates))
        .route("/templates/{name}", get(get_template))
        .route("/audit", get(audit_log))
        .route(
            "/experiments",
            post(experiments::create).get(experiments::list),
        )
        .route("/experiments/validate", post(experiments::validate))
        .route("/experiments/{id}", get(experiments::get))
        .route("/experiments/{id}/results", get(experiments::results))
        .route("/experiments/{id}/report", get(experiments::report))
        .route("/experiments/{id}/{action}", post(experiments::action))
        .route("/events", get(crate::ui::events))
        .fallback(not_found)
        .route_layer(middleware::from_fn_with_state(
            shared.clone(),
            require_token,
        ));
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .nest("/api/v1", api)
        .merge(crate::ui::router())
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(middleware::from_fn_with_state(shared.clone(), observe))
        .with_state(shared)
}

/// A JSON error response.
pub struct ApiError {
    pub(crate) status: StatusCode,
    pub(crate) body: Value,
}

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            body: json!({ "error": message.into() }),
        }
    }
    fn bad_request(message: impl Into<String>) -> ApiError {
        Self::new(StatusCode::BAD_REQUEST, message)
    }
    fn not_found(message: impl Into<String>) -> ApiError {
        Self::new(StatusCode::NOT_FOUND, message)
    }
    fn internal(message: impl std::fmt::Display) -> ApiError {
        tracing::error!(error = %message, "API request failed");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal error (see the controller's log)",
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, json_body(&self.body)).into_response()
    }
}

impl From<BytesRejection> for ApiError {
    fn from(r: BytesRejection) -> Self {
        let status = r.status();
        if status == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                status,
                format!("the request body is larger than {MAX_BODY_BYTES} bytes"),
            )
        } else {
            ApiError::new(
                status,
                format!("cannot read the request body: {}", r.body_text()),
            )
        }
    }
}

type ApiResult = Result<Response, ApiError>;

fn json_body(v: &Value) -> ([(header::HeaderName, HeaderValue); 1], String) {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        v.to_string(),
    )
}

fn ok(status: StatusCode, v: Value) -> ApiResult {
    Ok((status, json_body(&v)).into_response())
}

fn parse_json<T: serde::de::DeserializeOwned>(
    body: Result<Bytes, BytesRejection>,
) -> Result<T, ApiError> {
    let body = body?;
    if body.is_empty() {
        return Err(ApiError::bad_request(
            "the request body is empty: expected a JSON object",
        ));
    }
    serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))
}

/// Reads that `--api-read-open` lets through without a token.
fn is_read(method: &Method, path: &str) -> bool {
    method == Method::GET
        || method == Method::HEAD
        || (method == Method::POST
            && (path.ends_with("/configs/validate") || path.ends_with("/experiments/validate")))
}

async fn require_token(
    State(shared): State<Arc<Shared>>,
    request: Request,
    next: Next,
) -> Response {
    let open = shared.settings.api_read_open && is_read(request.method(), request.uri().path());
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .map(|v| v.as_bytes());
    if open || shared.settings.api_token.matches_bearer(presented) {
        return next.run(request).await;
    }
    let mut response = ApiError::new(
        StatusCode::UNAUTHORIZED,
        "missing or wrong API token: send `Authorization: Bearer <token>`",
    )
    .into_response();
    response
        .headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    response
}

/// The route template of a path, for the latency metric: a bounded set of
/// label values whatever paths clients send.
fn route_of(path: &str) -> &'static str {
    let Some(rest) = path.strip_prefix("/api/v1/") else {
        return match path {
            "/healthz" => "/healthz",
            "/readyz" => "/readyz",
            "/metrics" => "/metrics",
            "/" | "/index.html" => "/",
            p if p.starts_with("/ui/") => "/ui/{asset}",
            _ => "other",
        };
    };
    let mut parts = rest.trim_end_matches('/').splitn(2, '/');
    match (parts.next(), parts.next()) {
        (Some("agents"), None) => "/api/v1/agents",
        (Some("agents"), Some(_)) => "/api/v1/agents/{id}",
        (Some("pushes"), None) => "/api/v1/pushes",
        (Some("pushes"), Some(_)) => "/api/v1/pushes/{id}",
        (Some("configs"), Some("validate")) => "/api/v1/configs/validate",
        (Some("templates"), None) => "/api/v1/templates",
        (Some("templates"), Some(_)) => "/api/v1/templates/{name}",
        (Some("audit"), None) => "/api/v1/audit",
        (Some("events"), None) => "/api/v1/events",
        (Some("experiments"), None) => "/api/v1/experiments",
        (Some("experiments"), Some("validate")) => "/api/v1/experiments/validate",
        (Some("experiments"), Some(rest)) => match rest.split_once('/') {
            None => "/api/v1/experiments/{id}",
            Some((_, "results")) => "/api/v1/experiments/{id}/results",
            Some((_, "report")) => "/api/v1/experiments/{id}/report",
            Some(_) => "/api/v1/experiments/{id}/{action}",
        },
        _ => "other",
    }
}

async fn observe(State(shared): State<Arc<Shared>>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let route = route_of(request.uri().path());
    let method = match *request.method() {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::HEAD => "HEAD",
        _ => "other",
    };
    let response = next.run(request).await;
    shared.metrics.http_request(
        route,
        method,
        response.status().as_u16(),
        started.elapsed().as_secs_f64(),
    );
    response
}

async fn not_found() -> ApiError {
    ApiError::not_found("no such endpoint (see docs/CONTROLLER.md)")
}

async fn healthz() -> ApiResult {
    ok(
        StatusCode::OK,
        json!({ "status": "ok", "version": env!("CARGO_PKG_VERSION") }),
    )
}

async fn readyz(State(shared): State<Arc<Shared>>) -> ApiResult {
    let store = shared.store.clone();
    match blocking(move || store.ping()).await {
        Ok(Ok(())) => ok(StatusCode::OK, json!({ "status": "ready" })),
        _ => ok(
            StatusCode::SERVICE_UNAVAILABLE,
            json!({ "status": "not ready", "error": "the store does not answer" }),
        ),
    }
}

async fn metrics(State(shared): State<Arc<Shared>>) -> Response {
    let store = shared.store.clone();
    let (online, offline) = match blocking(move || store.agent_counts()).await {
        Ok(Ok(c)) => c,
        _ => (0, 0),
    };
    let text = shared.metrics.render(online, offline, shared.fleet.len());
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        )],
        text,
    )
        .into_response()
}

/// `k=v[,k=v...]`, as in `?label=` and phoenixctl's `--selector`.
pub fn parse_labels(text: &str) -> Result<BTreeMap<String, String>, String> {
    let mut out = BTreeMap::new();
    for pair in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let Some((k, v)) = pair.split_once('=') else {
            return Err(format!("label selector {pair:?} must be key=value"));
        };
        let k = k.trim();
        if k.is_empty() {
            return Err(format!("label selector {pair:?} has an empty key"));
        }
        out.insert(k.to_string(), v.trim().to_string());
    }
    Ok(out)
}

#[derive(Deserialize)]
struct AgentsQuery {
    label: Option<String>,
    status: Option<String>,
}

async fn list_agents(
    State(shared): State<Arc<Shared>>,
    query: Result<Query<AgentsQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult {
    let Query(q) =
        query.map_err(|e| ApiError::bad_request(format!("invalid query: {}", e.body_text())))?;
    let labels = match &q.label {
        Some(l) => parse_labels(l).map_err(ApiError::bad_request)?,
        None => BTreeMap::new(),
    };
    let status = match q.status.as_deref() {
        None | Some("") | Some("all") => None,
        Some(s) => Some(AgentStatus::parse(s).ok_or_else(|| {
            ApiError::bad_request(format!("status {s:?} must be online, offline or all"))
        })?),
    };
    let store = shared.store.clone();
    let agents = blocking(move || store.list_agents(&labels, status))
        .await
        .map_err(ApiError::internal)?
        .map_err(ApiError::internal)?;
    let agents: Vec<Value> = agents.iter().map(|a| views::agent(a, None)).collect();
    ok(StatusCode::OK, json!({ "agents": agents }))
}

async fn get_agent(State(shared): State<Arc<Shared>>, Path(id): Path<String>) -> ApiResult {
    let store = shared.store.clone();
    let lookup = id.clone();
    match blocking(move || store.agent(&lookup))
        .await
        .map_err(ApiError::internal)?
        .map_err(ApiError::internal)?
    {
        Some((agent, stats)) => ok(StatusCode::OK, views::agent(&agent, Some(stats))),
        None => Err(ApiError::not_found(format!("no agent {id:?}"))),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SelectorBody {
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    agents: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PushBody {
    selector: SelectorBody,
    yaml: Option<String>,
    template: Option<String>,
    author: Option<String>,
}

fn push_request(body: PushBody) -> Result<PushRequest, ApiError> {
    let selector = match (
        body.selector.labels.is_empty(),
        body.selector.agents.is_empty(),
    ) {
        (false, true) => Selector::Labels(body.selector.labels),
        (true, false) => {
            if body.selector.agents.len() > MAX_SELECTED_AGENTS {
                return Err(ApiError::bad_request(format!(
                    "a push names at most {MAX_SELECTED_AGENTS} agents; select by label instead"
                )));
            }
            Selector::Agents(body.selector.agents)
        }
        (true, true) => {
            return Err(ApiError::bad_request(
                "the selector is empty: give {\"labels\": {\"k\": \"v\"}} or {\"agents\": [\"id\"]}",
            ));
        }
        (false, false) => {
            return Err(ApiError::bad_request(
                "give selector.labels or selector.agents, not both",
            ));
        }
    };
    let source = match (body.yaml, body.template) {
        (Some(y), None) => ConfigSource::Yaml(y),
        (None, Some(t)) => ConfigSource::Template(t),
        (None, None) => {
            return Err(ApiError::bad_request(
                "give the config as \"yaml\" or a \"template\" name",
            ));
        }
        (Some(_), Some(_)) => {
            return Err(ApiError::bad_request(
                "give \"yaml\" or \"template\", not both",
            ));
        }
    };
    let author = body.author.unwrap_or_default().trim().to_string();
    if author.len() > MAX_AUTHOR || author.chars().any(char::is_control) {
        return Err(ApiError::bad_request(format!(
            "author must be at most {MAX_AUTHOR} bytes without control characters"
        )));
    }
    Ok(PushRequest {
        selector,
        source,
        author: if author.is_empty() {
            "anonymous".into()
        } else {
            author
        },
        experiment_id: None,
        timeout: None,
    })
}

async fn create_push(
    State(shared): State<Arc<Shared>>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult {
    let result = async {
        let request = push_request(parse_json(body)?)?;
        rollout::create_push(&shared, request)
            .await
            .map_err(|e| match e {
                PushError::Invalid(errors) => ApiError {
                    status: StatusCode::BAD_REQUEST,
                    body: json!({
                        "error": format!("the config is invalid: {} error(s)", errors.len()),
                        "errors": views::config_errors(&errors),
                    }),
                },
                PushError::UnknownTemplate(name) => ApiError::not_found(format!(
                    "no template {name:?} (GET /api/v1/templates lists them)"
                )),
                PushError::NoTarget(message) => {
                    ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, message)
                }
                PushError::Internal(message) => ApiError::internal(message),
            })
    }
    .await;
    let created = match result {
        Ok(c) => c,
        Err(e) => {
            shared.metrics.pushes_rejected.inc();
            return Err(e);
        }
    };
    let location = format!("/api/v1/pushes/{}", created.id);
    let mut response = ok(
        StatusCode::ACCEPTED,
        views::push_created(&created, &location),
    )?;
    if let Ok(v) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, v);
    }
    Ok(response)
}

#[derive(Deserialize)]
struct LimitQuery {
    limit: Option<u32>,
    push: Option<String>,
}

async fn list_pushes(
    State(shared): State<Arc<Shared>>,
    query: Result<Query<LimitQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult {
    let Query(q) =
        query.map_err(|e| ApiError::bad_request(format!("invalid query: {}", e.body_text())))?;
    let limit = q.limit.unwrap_or(50).clamp(1, 1000);
    let store = shared.store.clone();
    let pushes = blocking(move || store.list_pushes(limit))
        .await
        .map_err(ApiError::internal)?
        .map_err(ApiError::internal)?;
    let pushes: Vec<Value> = pushes.iter().map(views::push).collect();
    ok(StatusCode::OK, json!({ "pushes": pushes }))
}

async fn get_push(State(shared): State<Arc<Shared>>, Path(id): Path<String>) -> ApiResult {
    let store = shared.store.clone();
    let lookup = id.clone();
    match blocking(move || store.push(&lookup))
        .await
        .map_err(ApiError::internal)?
        .map_err(ApiError::internal)?
    {
        Some(push) => ok(StatusCode::OK, views::push(&push)),
        None => Err(ApiError::not_found(format!("no push {id:?}"))),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ValidateBody {
    yaml: String,
}

async fn validate_config(body: Result<Bytes, BytesRejection>) -> ApiResult {
    let body: ValidateBody = parse_json(body)?;
    let hash = phoenix_config::config_hash(&body.yaml);
    match rollout::validate(body.yaml).await {
        Ok(()) => ok(
            StatusCode::OK,
            json!({ "valid": true, "hash": hash, "errors": [] }),
        ),
        Err(errors) => ok(
            StatusCode::OK,
            json!({ "valid": false, "hash": hash, "errors": views::config_errors(&errors) }),
        ),
    }
}

async fn list_templates(State(shared): State<Arc<Shared>>) -> ApiResult {
    let dir = shared.settings.templates_dir.clone();
    let list = blocking(move || templates::list(&dir))
        .await
        .map_err(ApiError::internal)?
        .map_err(ApiError::internal)?;
    let list: Vec<Value> = list
        .into_iter()
        .map(|t| json!({ "name": t.name, "description": t.description, "hash": t.hash }))
        .collect();
    ok(StatusCode::OK, json!({ "templates": list }))
}

async fn get_template(State(shared): State<Arc<Shared>>, Path(name): Path<String>) -> ApiResult {
    let dir = shared.settings.templates_dir.clone();
    let lookup = name.clone();
    match blocking(move || templates::get(&dir, &lookup))
        .await
        .map_err(ApiError::internal)?
    {
        Some(t) => ok(StatusCode::OK, serde_json::to_value(t).unwrap_or_default()),
        None => Err(ApiError::not_found(format!("no template {name:?}"))),
    }
}

async fn audit_log(
    State(shared): State<Arc<Shared>>,
    query: Result<Query<LimitQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult {
    let Query(q) =
        query.map_err(|e| ApiError::bad_request(format!("invalid query: {}", e.body_text())))?;
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    let store = shared.store.clone();
    let entries = blocking(move || store.audit_log(q.push.as_deref(), limit))
        .await
        .map_err(ApiError::internal)?
        .map_err(ApiError::internal)?;
    let entries: Vec<Value> = entries.iter().map(views::audit).collect();
    ok(StatusCode::OK, json!({ "entries": entries }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_are_bounded() {
        assert_eq!(route_of("/api/v1/agents/x-1"), "/api/v1/agents/{id}");
        assert_eq!(route_of("/api/v1/pushes"), "/api/v1/pushes");
        assert_eq!(
            route_of("/api/v1/configs/validate"),
            "/api/v1/configs/validate"
        );
        assert_eq!(route_of("/wp-admin/evil"), "other");
        assert_eq!(route_of("/metrics"), "/metrics");
        assert_eq!(route_of("/api/v1/events"), "/api/v1/events");
        assert_eq!(route_of("/ui/views/fleet.js"), "/ui/{asset}");
    }

    #[test]
    fn label_selectors() {
        let l = parse_labels("env=prod, zone=a").unwrap();
        assert_eq!(l.len(), 2);
        assert_eq!(l["zone"], "a");
        assert!(parse_labels("env").is_err());
        assert!(parse_labels("=x").is_err());
        assert!(parse_labels("").unwrap().is_empty());
    }
}
