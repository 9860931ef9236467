//! The API's gate: every `/api/v1` request is given a request id, its
//! caller authenticated ([`crate::auth::Authenticator`]) and checked for
//! the permission its route needs. Refusals are 401 (no or a bad
//! credential), 429 (too many failures from the address) or 403 (the role
//! lacks the permission, named in the body). A state-changing request that
//! is refused, here or by its handler (400, 404, 409, 422), is written to
//! the audit log with the caller, the address and the request id.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

use axum::body::Body;
use axum::extract::connect_info::Connected;
use axum::extract::{ConnectInfo, OriginalUri, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::serve::IncomingStream;
use phoenix_api::ErrorBody;

use super::ApiError;
use crate::Shared;
use crate::auth::{Failure, Method as AuthMethod, Permission, Principal, Role, Scope, system};
use crate::store::{Actor, RequestInfo};
use crate::tls::TlsListener;

/// Longest note kept with an action.
const MAX_NOTE: usize = 512;
/// A client's `X-Request-Id` is kept when it is this short and plain.
const MAX_REQUEST_ID: usize = 64;
/// Longest error text kept in the audit entry of a refused request.
const MAX_AUDITED_ERROR: usize = 1024;
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// The peer address of a connection, plain or TLS.
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub SocketAddr);

impl Connected<IncomingStream<'_, tokio::net::TcpListener>> for ClientAddr {
    fn connect_info(stream: IncomingStream<'_, tokio::net::TcpListener>) -> Self {
        ClientAddr(*stream.remote_addr())
    }
}

impl Connected<IncomingStream<'_, TlsListener>> for ClientAddr {
    fn connect_info(stream: IncomingStream<'_, TlsListener>) -> Self {
        ClientAddr(*stream.remote_addr())
    }
}

/// The authenticated caller of a request, for the handlers.
#[derive(Debug, Clone)]
pub struct Caller {
    pub principal: Arc<Principal>,
    pub request_id: String,
    pub client: IpAddr,
}

impl Caller {
    /// The audit log's actor for an action of this request, with the
    /// caller's free-text note (checked: short, no control characters).
    pub fn actor(&self, note: Option<String>) -> Result<Actor, ApiError> {
        let note = note.map(|n| n.trim().to_string()).filter(|n| !n.is_empty());
        if let Some(n) = &note
            && (n.len() > MAX_NOTE || n.chars().any(char::is_control))
        {
            return Err(ApiError::bad_request(format!(
                "note must be at most {MAX_NOTE} bytes without control characters"
            )));
        }
        Ok(self.actor_with(note))
    }

    fn actor_with(&self, note: Option<String>) -> Actor {
        Actor {
            name: self.principal.name.clone(),
            request: Some(RequestInfo {
                id: self.request_id.clone(),
                client: self.client.to_string(),
                note,
            }),
        }
    }

    /// An agent's error text as this caller may see it: an anonymous
    /// reader (`--api-read-open`) gets a placeholder, since errors can
    /// quote paths and values of the node.
    pub fn error_text(&self, text: String) -> String {
        if self.principal.method == AuthMethod::Open && !text.is_empty() {
            "(withheld from anonymous readers: sign in to see it)".into()
        } else {
            text
        }
    }

    /// The caller's scope; `None` is the whole fleet.
    pub fn scope(&self) -> Option<&Scope> {
        self.principal.scope.as_ref()
    }
}

/// The permission a route needs. Unknown routes need `read` (and then
/// answer 404), so probing paths tells nothing without a credential.
pub fn permission_for(method: &Method, route: &str) -> Permission {
    let write = method != Method::GET && method != Method::HEAD;
    match route {
        "/api/v1/audit" | "/api/v1/audit/verify" => Permission::AuditRead,
        "/api/v1/pushes" if write => Permission::PushCreate,
        "/api/v1/experiments" | "/api/v1/experiments/{id}/{action}" if write => {
            Permission::ExperimentWrite
        }
        "/api/v1/agents/{id}/revoke" if write => Permission::AgentRevoke,
        _ => Permission::Read,
    }
}

/// Whether a request changes state (and so is audited when refused).
/// Validation is a POST that changes nothing.
fn changes_state(method: &Method, route: &str) -> bool {
    method == Method::POST && !route.ends_with("/validate")
}

fn request_id(request: &Request) -> String {
    let given = request
        .headers()
        .get(REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|v| {
            !v.is_empty()
                && v.len() <= MAX_REQUEST_ID
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        });
    match given {
        Some(id) => id.to_string(),
        None => new_request_id(),
    }
}

/// 16 random hex digits: unique enough to find one request in the logs.
fn new_request_id() -> String {
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; 8];
    if ring::rand::SystemRandom::new().fill(&mut bytes).is_err() {
        // Still distinct per request on a machine whose generator failed.
        bytes = crate::now_ms().to_be_bytes();
    }
    phoenix_processors::hash::hex(&bytes)
}

/// The middleware on `/api/v1`.
pub async fn authorize(
    State(shared): State<Arc<Shared>>,
    mut request: Request,
    next: Next,
) -> Response {
    let request_id = request_id(&request);
    let client = request
        .extensions()
        .get::<ConnectInfo<ClientAddr>>()
        .map(|c| c.0.0.ip())
        .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    let method = request.method().clone();
    // Inside the nested `/api/v1` router the URI has lost its prefix: the
    // permission table and the audit log want the path the client sent
    // (without it, no route would match and everything would need `read`).
    let path = request
        .extensions()
        .get::<OriginalUri>()
        .map(|u| u.0.path().to_string())
        .unwrap_or_else(|| format!("{}{}", super::API_PREFIX, request.uri().path()));
    let route = super::route_of(&path);
    let needed = permission_for(&method, route);
    let audited = changes_state(&method, route);

    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .map(|v| v.as_bytes().to_vec());
    let principal = match shared.auth.authenticate(presented.as_deref(), client).await {
        Ok(p) => Ok(p),
        Err(Failure::Missing) if shared.settings.api_read_open && needed == Permission::Read => {
            Ok(Arc::new(Principal {
                name: system::ANONYMOUS.into(),
                role: Role::Viewer,
                scope: None,
                method: AuthMethod::Open,
            }))
        }
        Err(f) => Err(f),
    };
    let (caller_name, response) = match principal {
        Err(failure) => (
            system::UNAUTHENTICATED.to_string(),
            unauthenticated(&shared, &failure, client, &request_id),
        ),
        // Anonymous callers are told to sign in, not that a role lacks
        // something.
        Ok(p) if !p.allows(needed) && p.method == AuthMethod::Open => (
            p.name.clone(),
            unauthenticated(&shared, &Failure::Missing, client, &request_id),
        ),
        Ok(p) if !p.allows(needed) => (p.name.clone(), forbidden(&p, needed)),
        Ok(principal) => {
            let name = principal.name.clone();
            request.extensions_mut().insert(Caller {
                principal,
                request_id: request_id.clone(),
                client,
            });
            (name, next.run(request).await)
        }
    };
    let status = response.status();
    // A rate-limited flood is counted, not audited: it would write the
    // audit log at the attacker's pace.
    let response = if audited && status.is_client_error() && status != StatusCode::TOO_MANY_REQUESTS
    {
        audit_refusal(
            &shared,
            response,
            &caller_name,
            &method,
            &path,
            client,
            &request_id,
        )
        .await
    } else {
        response
    };
    with_request_id(response, &request_id)
}

fn with_request_id(mut response: Response, id: &str) -> Response {
    if let Ok(v) = HeaderValue::from_str(id) {
        response.headers_mut().insert(REQUEST_ID_HEADER, v);
    }
    response
}

/// 401 or 429, counted and logged (never with the credential).
fn unauthenticated(
    shared: &Shared,
    failure: &Failure,
    client: IpAddr,
    request_id: &str,
) -> Response {
    shared.metrics.auth_failure(failure.reason());
    match failure {
        Failure::Missing => {}
        Failure::Invalid { reason, detail } => {
            tracing::warn!(%client, request_id, reason, detail = %detail, "API authentication failed");
        }
        Failure::Limited(_) => {
            tracing::debug!(%client, request_id, "API request refused: too many failed sign-ins");
        }
    }
    let (status, message) = match failure {
        Failure::Missing => (
            StatusCode::UNAUTHORIZED,
            "missing credential: send `Authorization: Bearer <token>`".to_string(),
        ),
        Failure::Invalid { detail, .. } => (
            StatusCode::UNAUTHORIZED,
            format!("invalid credential: {detail}"),
        ),
        Failure::Limited(retry) => (
            StatusCode::TOO_MANY_REQUESTS,
            format!(
                "too many failed sign-ins from {client}: retry in {} s",
                retry.as_secs().max(1)
            ),
        ),
    };
    let mut response = ApiError::new(status, message).into_response();
    let headers = response.headers_mut();
    match failure {
        Failure::Limited(retry) => {
            if let Ok(v) = HeaderValue::from_str(&retry.as_secs().max(1).to_string()) {
                headers.insert(header::RETRY_AFTER, v);
            }
        }
        _ => {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
    }
    response
}

/// 403 naming the missing permission.
fn forbidden(principal: &Principal, needed: Permission) -> Response {
    ApiError::Refused {
        status: StatusCode::FORBIDDEN,
        body: ErrorBody {
            missing_permission: Some(needed.as_str().into()),
            ..ErrorBody::new(format!(
                "{} ({}) lacks the permission {needed}",
                principal.name, principal.role
            ))
        },
    }
    .into_response()
}

/// Write a refused state-changing request to the audit log, with the error
/// the client got. The response is passed on unchanged.
async fn audit_refusal(
    shared: &Arc<Shared>,
    response: Response,
    caller: &str,
    method: &Method,
    path: &str,
    client: IpAddr,
    request_id: &str,
) -> Response {
    let (parts, body) = response.into_parts();
    // Error bodies are small JSON; anything bigger is not read whole.
    let bytes = axum::body::to_bytes(body, 64 * 1024)
        .await
        .unwrap_or_default();
    let error = serde_json::from_slice::<ErrorBody>(&bytes)
        .map(|b| b.error)
        .unwrap_or_default();
    let actor = Actor {
        name: caller.to_string(),
        request: Some(RequestInfo {
            id: request_id.to_string(),
            client: client.to_string(),
            note: None,
        }),
    };
    let detail = serde_json::json!({
        "method": method.as_str(),
        "path": truncate(path, 256),
        "status": parts.status.as_u16(),
        "error": truncate(&error, MAX_AUDITED_ERROR),
    });
    let store = shared.store.clone();
    let now = crate::now_ms();
    match crate::blocking(move || store.audit_refusal(&actor, detail, now)).await {
        Ok(Ok(())) => {}
        _ => {
            shared.metrics.store_errors.inc();
            tracing::error!(
                request_id,
                "could not write a refused request to the audit log"
            );
        }
    }
    Response::from_parts(parts, Body::from(bytes))
}

fn truncate(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_need_their_permission() {
        let post = Method::POST;
        let get = Method::GET;
        for (method, route, wanted) in [
            (&get, "/api/v1/pushes", Permission::Read),
            (&post, "/api/v1/pushes", Permission::PushCreate),
            (&get, "/api/v1/audit", Permission::AuditRead),
            (&get, "/api/v1/audit/verify", Permission::AuditRead),
            (&post, "/api/v1/experiments", Permission::ExperimentWrite),
            (
                &post,
                "/api/v1/experiments/{id}/{action}",
                Permission::ExperimentWrite,
            ),
            (&post, "/api/v1/experiments/validate", Permission::Read),
            (&post, "/api/v1/configs/validate", Permission::Read),
            (&post, "/api/v1/agents/{id}/revoke", Permission::AgentRevoke),
            (&post, "other", Permission::Read),
        ] {
            assert_eq!(permission_for(method, route), wanted, "{method} {route}");
        }
        assert!(changes_state(&post, "/api/v1/pushes"));
        assert!(!changes_state(&post, "/api/v1/configs/validate"));
        assert!(!changes_state(&get, "/api/v1/pushes"));
    }

    #[test]
    fn notes_are_checked() {
        let caller = Caller {
            principal: Arc::new(Principal {
                name: "ana".into(),
                role: Role::Admin,
                scope: None,
                method: AuthMethod::Token,
            }),
            request_id: "r1".into(),
            client: IpAddr::V4(Ipv4Addr::LOCALHOST),
        };
        let actor = caller.actor(Some("  ticket 42 ".into())).unwrap();
        assert_eq!(actor.name, "ana");
        let request = actor.request.unwrap();
        assert_eq!(request.note.as_deref(), Some("ticket 42"));
        assert_eq!(request.client, "127.0.0.1");
        assert!(caller.actor(Some("a\u{7}b".into())).is_err());
        assert!(caller.actor(Some("x".repeat(MAX_NOTE + 1))).is_err());
        assert_eq!(
            caller
                .actor(Some("  ".into()))
                .unwrap()
                .request
                .unwrap()
                .note,
            None
        );
    }

    #[test]
    fn request_ids_are_kept_only_when_plain() {
        let with = |v: &str| {
            Request::builder()
                .header(REQUEST_ID_HEADER, v)
                .body(Body::empty())
                .unwrap()
        };
        assert_eq!(request_id(&with("abc-123")), "abc-123");
        assert_ne!(request_id(&with("a b")), "a b");
        assert_eq!(request_id(&with(&"x".repeat(65))).len(), 16);
        let a = request_id(&Request::new(Body::empty()));
        let b = request_id(&Request::new(Body::empty()));
        assert_ne!(a, b);
    }
}
