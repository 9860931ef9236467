//! The telemetry HTTP server: `/metrics`, `/healthz`, `/readyz` and `/-/reload`.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

use crate::pipeline::{ReloadError, ReloadRequest, ReloadSource};

use phoenix_telemetry::process::OwnUsage;
use phoenix_telemetry::registry::Registry;

/// What `/healthz` and `/readyz` report.
#[derive(Debug)]
pub struct Health {
    started: Instant,
    /// Set once every receiver has completed a scrape.
    ready: AtomicBool,
    /// Hash and Unix time of the applied config.
    config: Mutex<(String, u64)>,
}

impl Health {
    pub fn new() -> Arc<Self> {
        Arc::new(Health {
            started: Instant::now(),
            ready: AtomicBool::new(false),
            config: Mutex::new((String::new(), 0)),
        })
    }

    pub fn set_config(&self, hash: &str, applied_at_unix_seconds: u64) {
        *self.config.lock().unwrap_or_else(|e| e.into_inner()) =
            (hash.to_string(), applied_at_unix_seconds);
    }

    pub fn set_ready(&self) {
        self.ready.store(true, Ordering::Relaxed);
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }
}

/// Where `POST /-/reload` hands its requests, and who may make them.
#[derive(Clone)]
pub struct ReloadEndpoint {
    pub requests: mpsc::Sender<ReloadRequest>,
    /// Accept reloads from other hosts than localhost.
    pub allow_remote: bool,
    /// Accept a config in the request body (not only "re-read the file").
    pub accept_body: bool,
}

#[derive(Clone)]
struct ServerState {
    registry: Registry,
    health: Arc<Health>,
    reload: Option<ReloadEndpoint>,
}

/// Bind the telemetry address (an error names it) and serve until
/// `shutdown` resolves.
pub async fn serve(
    address: SocketAddr,
    registry: Registry,
    health: Arc<Health>,
    reload: Option<ReloadEndpoint>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let listener = TcpListener::bind(address)
        .await
        .map_err(|e| anyhow::anyhow!("cannot serve telemetry on {address}: {e}"))?;
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/-/reload", post(reload_config))
        .with_state(ServerState {
            registry,
            health,
            reload,
        });
    Ok(tokio::spawn(async move {
        if let Err(e) = axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(shutdown)
        .await
        {
            tracing::error!(error = %e, "telemetry server failed");
        }
    }))
}

async fn metrics(State(s): State<ServerState>) -> impl IntoResponse {
    let mut body = s.registry.render();
    if let Some(usage) = OwnUsage::read() {
        usage.render(&mut body);
    }
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        body,
    )
}

async fn healthz(State(s): State<ServerState>) -> impl IntoResponse {
    let (hash, applied_at) = s
        .health
        .config
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    let body = serde_json::json!({
        "status": "ok",
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_seconds": s.health.started.elapsed().as_secs_f64(),
        "config": { "hash": hash, "applied_at_unix_seconds": applied_at },
    });
    (
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
}

async fn readyz(State(s): State<ServerState>) -> impl IntoResponse {
    if s.health.is_ready() {
        (StatusCode::OK, "ready\n")
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: no scrape has completed yet\n",
        )
    }
}

/// `POST /-/reload`: an empty body re-reads the config file; a body is a
/// whole YAML config to apply. 200 applied or unchanged, 400 invalid (every
/// error listed), 422 valid but not buildable, 403 from another host unless
/// allowed. A refused reload changes nothing.
async fn reload_config(
    State(s): State<ServerState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let json = |status: StatusCode, value: serde_json::Value| {
        (
            status,
            [(header::CONTENT_TYPE, "application/json")],
            value.to_string(),
        )
            .into_response()
    };
    let Some(endpoint) = s.reload else {
        return json(
            StatusCode::SERVICE_UNAVAILABLE,
            serde_json::json!({"status": "unavailable", "error": "reloads are not enabled"}),
        );
    };
    let forbidden = |why: &str| {
        json(
            StatusCode::FORBIDDEN,
            serde_json::json!({"status": "forbidden", "error": why}),
        )
    };
    // A browser adds Origin to cross-site requests: no page may reload the
    // agent, whatever address the telemetry server listens on.
    if headers.contains_key(header::ORIGIN) {
        return forbidden("reloads from web pages are refused");
    }
    if !endpoint.allow_remote {
        if !peer.ip().is_loopback() {
            return forbidden(
                "reloads are accepted from localhost only (set service.telemetry.remote_reload: true to allow others)",
            );
        }
        // A name that resolves to 127.0.0.1 (DNS rebinding) is not localhost.
        if !headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .is_some_and(is_loopback_host)
        {
            return forbidden("reloads must be addressed to localhost, 127.0.0.1 or [::1]");
        }
    }
    let text = if body.iter().all(u8::is_ascii_whitespace) {
        None
    } else if !endpoint.accept_body {
        return forbidden(
            "a config in the request body is refused (set service.telemetry.accept_config_body: true to allow it); an empty body re-reads the config file",
        );
    } else {
        match String::from_utf8(body.to_vec()) {
            Ok(t) => Some(t),
            Err(_) => {
                return json(
                    StatusCode::BAD_REQUEST,
                    serde_json::json!({"status": "rejected", "error": "the body is not UTF-8 text"}),
                );
            }
        }
    };
    let (reply, answer) = tokio::sync::oneshot::channel();
    let request = ReloadRequest {
        text,
        source: ReloadSource::Http,
        reply,
    };
    if endpoint.requests.send(request).await.is_err() {
        return json(
            StatusCode::SERVICE_UNAVAILABLE,
            serde_json::json!({"status": "unavailable", "error": "the agent is shutting down"}),
        );
    }
    match answer.await {
        Ok(Ok(outcome)) => json(
            StatusCode::OK,
            serde_json::json!({
                "status": if outcome.changed { "applied" } else { "unchanged" },
                "hash": outcome.hash,
                "summary": outcome.summary,
            }),
        ),
        Ok(Err(ReloadError::Invalid(errors))) => json(
            StatusCode::BAD_REQUEST,
            serde_json::json!({
                "status": "rejected",
                "errors": errors.0.iter().map(|e| serde_json::json!({
                    "component": e.component,
                    "field": e.field,
                    "message": e.message,
                    "line": e.location.map(|l| l.0),
                    "column": e.location.map(|l| l.1),
                })).collect::<Vec<_>>(),
            }),
        ),
        Ok(Err(e @ ReloadError::Build(_))) => json(
            StatusCode::UNPROCESSABLE_ENTITY,
            serde_json::json!({"status": "rejected", "error": e.to_string()}),
        ),
        Ok(Err(e @ ReloadError::Source(_))) => json(
            StatusCode::CONFLICT,
            serde_json::json!({"status": "rejected", "error": e.to_string()}),
        ),
        Err(_) => json(
            StatusCode::SERVICE_UNAVAILABLE,
            serde_json::json!({"status": "unavailable", "error": "the agent is shutting down"}),
        ),
    }
}

/// `localhost`, `127.0.0.1` or `[::1]`, with or without a port.
fn is_loopback_host(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or(""),
        None => host.rsplit_once(':').map_or(host, |(h, _)| h),
    };
    name.eq_ignore_ascii_case("localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::is_loopback_host;

    #[test]
    fn only_loopback_names_are_loopback_hosts() {
        for ok in [
            "localhost",
            "localhost:8888",
            "127.0.0.1:8888",
            "127.0.0.2",
            "[::1]:8888",
            "[::1]",
        ] {
            assert!(is_loopback_host(ok), "{ok}");
        }
        for bad in [
            "evil.example:8888",
            "10.0.0.1:8888",
            "",
            "localhost.evil.example",
            "[::2]:1",
        ] {
            assert!(!is_loopback_host(bad), "{bad}");
        }
    }
}
