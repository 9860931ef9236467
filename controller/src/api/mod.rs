//! The HTTP API (JSON under `/api/v1`), health and metrics.
//!
//! Every `/api/v1` request is authenticated and authorized by [`auth`]: a
//! principal with the permission its route needs, acting inside its scope
//! (reads are filtered to it, writes outside it refused). With
//! `--api-read-open`, reads need no credential (the audit log still does).
//! `/healthz`, `/readyz` and `/metrics` are open: probes and Prometheus have
//! no token, and none of them tells more than counts. Every refusal is a
//! 4xx with a JSON body `{"error": "..."}` and changes nothing.

pub mod auth;
mod experiments;
mod views;

pub use views::audit as audit_view;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Extension, Path, Query, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use phoenix_api::{
    AgentDetail, AgentList, AgentRevoked, AgentStatus, AuditLog, AuditVerification, BrokenEntry,
    ConfigValidation, CreatePushRequest, ErrorBody, Health, ListedError, PushList, Readiness,
    RevokeAgentRequest, ScopeView, TemplateList, ValidateConfigRequest, WhoAmI, parse_labels,
};
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::experiment::ExperimentError;
use crate::fleet::rollout::{self, ConfigSource, Delivery, PushError, PushRequest};
use crate::store::{Selector, StoreError};
use crate::{Shared, StartError, blocking, templates};
use auth::Caller;

/// Request bodies are configs of a few KiB; anything above this is refused
/// with 413 before it is read whole.
pub const MAX_BODY_BYTES: usize = 1 << 20;
/// Agent ids one push may name.
const MAX_SELECTED_AGENTS: usize = 10_000;

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
                axum::serve(
                    listener,
                    app.into_make_service_with_connect_info::<auth::ClientAddr>(),
                )
                .with_graceful_shutdown(stopped)
                .await
            }
            None => {
                axum::serve(
                    listener,
                    app.into_make_service_with_connect_info::<auth::ClientAddr>(),
                )
                .with_graceful_shutdown(stopped)
                .await
            }
        };
        result.map_err(|e| anyhow::anyhow!("HTTP server: {e}"))
    }))
}

/// Where the JSON API is mounted.
pub(crate) const API_PREFIX: &str = "/api/v1";

/// The whole HTTP surface.
pub fn router(shared: Arc<Shared>) -> Router {
    let api = Router::new()
        .route("/agents", get(list_agents))
        .route("/agents/{id}", get(get_agent))
        .route("/agents/{id}/revoke", post(revoke_agent))
        .route("/pushes", post(create_push).get(list_pushes))
        .route("/pushes/{id}", get(get_push))
        .route("/configs/validate", post(validate_config))
        .route("/templates", get(list_templates))
        .route("/templates/{name}", get(get_template))
        .route("/audit", get(audit_log))
        .route("/audit/verify", get(verify_audit))
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
        .route("/whoami", get(whoami))
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(
            shared.clone(),
            auth::authorize,
        ));
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .nest(API_PREFIX, api)
        .merge(crate::ui::router())
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(middleware::from_fn_with_state(shared.clone(), observe))
        .with_state(shared)
}

/// Why a request got no answer but an error. A refusal says why to the
/// client; a failure on the controller's side keeps its cause for the log
/// (the whole chain) and tells the client only that it failed.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("refused with {status}: {}", .body.error)]
    Refused { status: StatusCode, body: ErrorBody },
    #[error("the store failed")]
    Store(#[from] StoreError),
    #[error("a blocking task failed")]
    Task(#[from] tokio::task::JoinError),
    #[error("listing the templates failed")]
    Templates(#[from] templates::ListError),
    #[error("stored JSON does not fit its type")]
    Json(#[from] serde_json::Error),
    #[error("the stored experiment definition is invalid: {}", crate::experiment::spec::join(.0))]
    StoredSpec(Vec<crate::experiment::spec::SpecError>),
    /// A failure inside a push or an experiment action, with its cause.
    #[error(transparent)]
    Internal(#[from] crate::fleet::rollout::InternalError),
}

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError::Refused {
            status,
            body: ErrorBody::new(message),
        }
    }
    fn bad_request(message: impl Into<String>) -> ApiError {
        Self::new(StatusCode::BAD_REQUEST, message)
    }
    fn not_found(message: impl Into<String>) -> ApiError {
        Self::new(StatusCode::NOT_FOUND, message)
    }
    /// 400 with every problem found.
    fn invalid(message: String, errors: Vec<ListedError>) -> ApiError {
        ApiError::Refused {
            status: StatusCode::BAD_REQUEST,
            body: ErrorBody {
                errors,
                ..ErrorBody::new(message)
            },
        }
    }
    fn bad_query(e: QueryRejection) -> ApiError {
        Self::bad_request(format!("invalid query: {}", e.body_text()))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, body) = match self {
            ApiError::Refused { status, body } => (status, body),
            failed => {
                let mut chain = failed.to_string();
                let mut cause = std::error::Error::source(&failed);
                while let Some(e) = cause {
                    chain.push_str(": ");
                    chain.push_str(&e.to_string());
                    cause = e.source();
                }
                tracing::error!(error = %chain, "API request failed");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    ErrorBody::new("internal error (see the controller's log)"),
                )
            }
        };
        // An ErrorBody is strings only: encoding it cannot fail.
        let text = serde_json::to_string(&body).unwrap_or_default();
        (status, json_content_type(), text).into_response()
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

impl From<PushError> for ApiError {
    fn from(e: PushError) -> Self {
        match e {
            PushError::Invalid(errors) => ApiError::invalid(
                format!("the config is invalid: {} error(s)", errors.len()),
                views::config_problems(&errors)
                    .into_iter()
                    .map(ListedError::Config)
                    .collect(),
            ),
            PushError::Policy(errors) => ApiError::invalid(
                format!(
                    "the config breaks the policy of its targets (docs/SECURITY.md): {} error(s)",
                    errors.len()
                ),
                views::config_problems(&errors)
                    .into_iter()
                    .map(ListedError::Config)
                    .collect(),
            ),
            PushError::UnknownTemplate(name) => ApiError::not_found(format!(
                "no template {name:?} (GET /api/v1/templates lists them)"
            )),
            PushError::NoTarget(message) => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, message)
            }
            PushError::OutOfScope(message) => ApiError::new(StatusCode::FORBIDDEN, message),
            PushError::Unfit(message) => ApiError::bad_request(message),
            PushError::Internal(e) => ApiError::Internal(e),
        }
    }
}

impl From<ExperimentError> for ApiError {
    fn from(e: ExperimentError) -> Self {
        match e {
            ExperimentError::Invalid(errors) => ApiError::invalid(
                format!("the experiment is invalid: {} error(s)", errors.len()),
                errors.into_iter().map(ListedError::Field).collect(),
            ),
            ExperimentError::NotFound(m) => ApiError::not_found(m),
            ExperimentError::Conflict(m) => ApiError::new(StatusCode::CONFLICT, m),
            ExperimentError::OutOfScope(m) => ApiError::new(StatusCode::FORBIDDEN, m),
            ExperimentError::Internal(e) => ApiError::Internal(e),
        }
    }
}

type ApiResult = Result<Response, ApiError>;

fn json_content_type() -> [(header::HeaderName, HeaderValue); 1] {
    [(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    )]
}

/// `body` as the JSON answer.
fn reply(status: StatusCode, body: &impl Serialize) -> ApiResult {
    let text = serde_json::to_string(body)?;
    Ok((status, json_content_type(), text).into_response())
}

/// `body` as a 2xx answer that names the new resource in `Location`.
fn created(status: StatusCode, location: &str, body: &impl Serialize) -> ApiResult {
    let mut response = reply(status, body)?;
    if let Ok(v) = HeaderValue::from_str(location) {
        response.headers_mut().insert(header::LOCATION, v);
    }
    Ok(response)
}

/// Run store (or other blocking) work off the async workers: a panic in it
/// and its own error both come back as an [`ApiError`].
async fn db<T, E>(f: impl FnOnce() -> Result<T, E> + Send + 'static) -> Result<T, ApiError>
where
    T: Send + 'static,
    E: Into<ApiError> + Send + 'static,
{
    blocking(f).await?.map_err(Into::into)
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

/// The route template of a path, for the latency metric: a bounded set of
/// label values whatever paths clients send.
pub(crate) fn route_of(path: &str) -> &'static str {
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
        (Some("agents"), Some(rest)) if rest.ends_with("/revoke") => "/api/v1/agents/{id}/revoke",
        (Some("agents"), Some(_)) => "/api/v1/agents/{id}",
        (Some("pushes"), None) => "/api/v1/pushes",
        (Some("pushes"), Some(_)) => "/api/v1/pushes/{id}",
        (Some("configs"), Some("validate")) => "/api/v1/configs/validate",
        (Some("templates"), None) => "/api/v1/templates",
        (Some("templates"), Some(_)) => "/api/v1/templates/{name}",
        (Some("audit"), None) => "/api/v1/audit",
        (Some("audit"), Some("verify")) => "/api/v1/audit/verify",
        (Some("events"), None) => "/api/v1/events",
        (Some("whoami"), None) => "/api/v1/whoami",
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
    reply(
        StatusCode::OK,
        &Health {
            status: "ok".into(),
            version: env!("CARGO_PKG_VERSION").into(),
        },
    )
}

async fn readyz(State(shared): State<Arc<Shared>>) -> ApiResult {
    let store = shared.store.clone();
    match db(move || store.ping()).await {
        Ok(()) => reply(
            StatusCode::OK,
            &Readiness {
                status: "ready".into(),
                error: None,
            },
        ),
        Err(_) => reply(
            StatusCode::SERVICE_UNAVAILABLE,
            &Readiness {
                status: "not ready".into(),
                error: Some("the store does not answer".into()),
            },
        ),
    }
}

async fn metrics(State(shared): State<Arc<Shared>>) -> Response {
    let store = shared.store.clone();
    let (online, offline) = db(move || store.agent_counts()).await.unwrap_or((0, 0));
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

#[derive(Deserialize)]
struct AgentsQuery {
    label: Option<String>,
    status: Option<String>,
}

async fn list_agents(
    State(shared): State<Arc<Shared>>,
    Extension(caller): Extension<Caller>,
    query: Result<Query<AgentsQuery>, QueryRejection>,
) -> ApiResult {
    let Query(q) = query.map_err(ApiError::bad_query)?;
    let mut labels = match &q.label {
        Some(l) => parse_labels(l).map_err(ApiError::bad_request)?,
        None => BTreeMap::new(),
    };
    // A scope adds its labels; a query asking for another value of one of
    // them can match nothing.
    if let Some(scope) = caller.scope() {
        for (k, v) in &scope.labels {
            if labels
                .insert(k.clone(), v.clone())
                .is_some_and(|asked| &asked != v)
            {
                return reply(StatusCode::OK, &AgentList { agents: Vec::new() });
            }
        }
    }
    let status = match q.status.as_deref() {
        None | Some("") | Some("all") => None,
        Some(s) => Some(AgentStatus::parse(s).ok_or_else(|| {
            ApiError::bad_request(format!("status {s:?} must be online, offline or all"))
        })?),
    };
    let store = shared.store.clone();
    let agents = db(move || store.list_agents(&labels, status)).await?;
    reply(
        StatusCode::OK,
        &AgentList {
            agents: agents.iter().map(|a| caller_view(&caller, a)).collect(),
        },
    )
}

async fn get_agent(
    State(shared): State<Arc<Shared>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> ApiResult {
    let store = shared.store.clone();
    let lookup = id.clone();
    // An agent outside the scope does not exist for the caller.
    let found = db(move || store.agent(&lookup))
        .await?
        .filter(|(agent, _)| caller.scope().is_none_or(|s| s.covers_agent(&agent.labels)));
    match found {
        Some((agent, stats)) => reply(
            StatusCode::OK,
            &AgentDetail {
                agent: caller_view(&caller, &agent),
                stats: stats.as_ref().and_then(views::stats),
            },
        ),
        None => Err(ApiError::not_found(format!("no agent {id:?}"))),
    }
}

/// An agent as `caller` may see it.
fn caller_view(caller: &Caller, agent: &crate::store::AgentRecord) -> phoenix_api::Agent {
    let mut view = views::agent(agent);
    view.config.error = caller.error_text(std::mem::take(&mut view.config.error));
    view
}

/// Longest revocation reason kept in the audit log.
const MAX_REASON: usize = 1024;

/// Revoke an agent: its session is closed with `PERMISSION_DENIED`, its
/// credential refused from now on, and its instance id can never enroll
/// again. Revoking twice is not an error (nothing changes).
async fn revoke_agent(
    State(shared): State<Arc<Shared>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult {
    let body = body?;
    let request: RevokeAgentRequest = if body.trim_ascii().is_empty() {
        RevokeAgentRequest::default()
    } else {
        parse_json(Ok(body))?
    };
    let actor = caller.actor(request.note)?;
    let reason = request.reason.unwrap_or_default().trim().to_string();
    if reason.len() > MAX_REASON {
        return Err(ApiError::bad_request(format!(
            "reason must be at most {MAX_REASON} bytes"
        )));
    }
    let store = shared.store.clone();
    let lookup = id.clone();
    let revocation = db(move || store.revoke_agent(&lookup, &actor, &reason, crate::now_ms()))
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no agent {id:?}")))?;
    // The store refuses the credential first, so the agent's reconnect
    // after this close is refused too.
    let closed = shared.fleet.close(
        &id,
        tonic::Status::permission_denied("this agent was revoked by the controller's operator"),
    );
    if let Some(connected) = closed {
        // The session's own end does not mark it offline: it is no longer
        // the current one. A state report that raced the revocation may
        // have marked it online again.
        let store = shared.store.clone();
        let offline = id.clone();
        db(move || store.set_offline(&offline, connected)).await?;
    }
    shared.changes.bump();
    tracing::info!(agent = %id, session_closed = closed.is_some(), "agent revoked");
    reply(
        StatusCode::OK,
        &AgentRevoked {
            id,
            revoked_at: crate::rfc3339_ms(revocation.revoked_at),
            session_closed: closed.is_some(),
            already_revoked: revocation.already,
        },
    )
}

/// Bounds of what OpAMP agents receive a push as (an `AgentConfigFile`'s
/// content type, its key in the config map): names, not documents.
const MAX_CONTENT_TYPE: usize = 256;
const MAX_FILE_NAME: usize = 1024;

fn push_request(body: CreatePushRequest, caller: &Caller) -> Result<PushRequest, ApiError> {
    // An empty list or map counts as not given.
    let labels = body.selector.labels.filter(|l| !l.is_empty());
    let agents = body.selector.agents.filter(|a| !a.is_empty());
    let selector = match (labels, agents) {
        (Some(labels), None) => Selector::Labels(labels),
        (None, Some(agents)) => {
            if agents.len() > MAX_SELECTED_AGENTS {
                return Err(ApiError::bad_request(format!(
                    "a push names at most {MAX_SELECTED_AGENTS} agents; select by label instead"
                )));
            }
            Selector::Agents(agents)
        }
        (None, None) => {
            return Err(ApiError::bad_request(
                "the selector is empty: give {\"labels\": {\"k\": \"v\"}} or {\"agents\": [\"id\"]}",
            ));
        }
        (Some(_), Some(_)) => {
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
    if let Some(scope) = caller.scope() {
        let refused = match &source {
            ConfigSource::Template(t) if !scope.allows_template(t) => Some(format!(
                "the template {t:?} is outside the scope of {} (templates: {})",
                caller.principal.name,
                scope
                    .templates
                    .iter()
                    .flatten()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
            ConfigSource::Yaml(_) if !scope.allows_yaml() => Some(format!(
                "{} may push only the templates of its scope, not raw YAML",
                caller.principal.name
            )),
            _ => None,
        };
        if let Some(message) = refused {
            return Err(ApiError::new(StatusCode::FORBIDDEN, message));
        }
    }
    let defaults = Delivery::default();
    for (field, value, max) in [
        ("content_type", &body.content_type, MAX_CONTENT_TYPE),
        ("file", &body.file, MAX_FILE_NAME),
    ] {
        if let Some(v) = value
            && (v.len() > max || v.chars().any(char::is_control))
        {
            return Err(ApiError::bad_request(format!(
                "\"{field}\" must be at most {max} bytes without control characters"
            )));
        }
    }
    Ok(PushRequest {
        selector,
        source,
        delivery: Delivery {
            config_kind: body.config_kind,
            content_type: body.content_type.unwrap_or(defaults.content_type),
            file: body.file.unwrap_or(defaults.file),
        },
        actor: caller.actor(body.note)?,
        experiment_id: None,
        timeout: None,
        within: caller.scope().map(|s| s.labels.clone()),
    })
}

async fn create_push(
    State(shared): State<Arc<Shared>>,
    Extension(caller): Extension<Caller>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult {
    let result = async {
        let request = push_request(parse_json(body)?, &caller)?;
        Ok::<_, ApiError>(rollout::create_push(&shared, request).await?)
    }
    .await;
    let pushed = match result {
        Ok(c) => c,
        Err(e) => {
            shared.metrics.pushes_rejected.inc();
            return Err(e);
        }
    };
    let location = format!("/api/v1/pushes/{}", pushed.id);
    created(
        StatusCode::ACCEPTED,
        &location,
        &views::push_created(&pushed, &location),
    )
}

#[derive(Deserialize)]
struct LimitQuery {
    limit: Option<u32>,
    push: Option<String>,
}

async fn list_pushes(
    State(shared): State<Arc<Shared>>,
    Extension(caller): Extension<Caller>,
    query: Result<Query<LimitQuery>, QueryRejection>,
) -> ApiResult {
    let Query(q) = query.map_err(ApiError::bad_query)?;
    let limit = q.limit.unwrap_or(50).clamp(1, 1000);
    let store = shared.store.clone();
    let within = caller.scope().map(|s| s.labels.clone());
    let pushes = db(move || store.list_pushes(limit, within.as_ref())).await?;
    reply(
        StatusCode::OK,
        &PushList {
            pushes: pushes.iter().map(views::push).collect(),
        },
    )
}

async fn get_push(
    State(shared): State<Arc<Shared>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> ApiResult {
    let store = shared.store.clone();
    let lookup = id.clone();
    let within = caller.scope().map(|s| s.labels.clone());
    match db(move || store.push(&lookup, within.as_ref())).await? {
        Some(push) => {
            let mut view = views::push(&push);
            for t in &mut view.targets {
                t.error = caller.error_text(std::mem::take(&mut t.error));
            }
            reply(StatusCode::OK, &view)
        }
        None => Err(ApiError::not_found(format!("no push {id:?}"))),
    }
}

async fn validate_config(body: Result<Bytes, BytesRejection>) -> ApiResult {
    let body: ValidateConfigRequest = parse_json(body)?;
    let hash = phoenix_config::config_hash(&body.yaml);
    let errors = match rollout::validate(body.yaml).await {
        Ok(()) => Vec::new(),
        Err(errors) => views::config_problems(&errors),
    };
    reply(
        StatusCode::OK,
        &ConfigValidation {
            valid: errors.is_empty(),
            hash,
            errors,
        },
    )
}

async fn list_templates(
    State(shared): State<Arc<Shared>>,
    Extension(caller): Extension<Caller>,
) -> ApiResult {
    let dir = shared.settings.templates_dir.clone();
    let mut templates = db(move || templates::list(&dir)).await?;
    if let Some(scope) = caller.scope() {
        templates.retain(|t| scope.allows_template(&t.name));
    }
    reply(StatusCode::OK, &TemplateList { templates })
}

async fn get_template(
    State(shared): State<Arc<Shared>>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> ApiResult {
    let dir = shared.settings.templates_dir.clone();
    let lookup = name.clone();
    let found = db(move || Ok::<_, ApiError>(templates::get(&dir, &lookup)))
        .await?
        .filter(|_| caller.scope().is_none_or(|s| s.allows_template(&name)));
    match found {
        Some(t) => reply(StatusCode::OK, &t),
        None => Err(ApiError::not_found(format!("no template {name:?}"))),
    }
}

/// `GET /whoami`: the caller, its role, permissions and scope.
async fn whoami(Extension(caller): Extension<Caller>) -> ApiResult {
    let p = &caller.principal;
    reply(
        StatusCode::OK,
        &WhoAmI {
            name: p.name.clone(),
            role: p.role.as_str().into(),
            method: p.method.as_str().into(),
            permissions: p
                .role
                .permissions()
                .into_iter()
                .map(|p| p.as_str().to_string())
                .collect(),
            scope: p.scope.as_ref().map(|s| ScopeView {
                labels: s.labels.clone(),
                templates: s.templates.as_ref().map(|t| t.iter().cloned().collect()),
            }),
        },
    )
}

async fn verify_audit(State(shared): State<Arc<Shared>>) -> ApiResult {
    let store = shared.store.clone();
    let v = db(move || store.verify_audit()).await?;
    reply(
        StatusCode::OK,
        &AuditVerification {
            intact: v.first_broken.is_none(),
            chained: v.chained,
            unchained: v.unchained,
            pruned_through: v.pruned_through,
            first_broken: v
                .first_broken
                .map(|(id, reason)| BrokenEntry { id, reason }),
        },
    )
}

async fn audit_log(
    State(shared): State<Arc<Shared>>,
    query: Result<Query<LimitQuery>, QueryRejection>,
) -> ApiResult {
    let Query(q) = query.map_err(ApiError::bad_query)?;
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    let store = shared.store.clone();
    let entries = db(move || store.audit_log(q.push.as_deref(), limit)).await?;
    reply(
        StatusCode::OK,
        &AuditLog {
            entries: entries.iter().map(views::audit).collect(),
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_are_bounded() {
        assert_eq!(route_of("/api/v1/agents/x-1"), "/api/v1/agents/{id}");
        assert_eq!(
            route_of("/api/v1/agents/x-1/revoke"),
            "/api/v1/agents/{id}/revoke"
        );
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
}
