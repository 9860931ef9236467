//! The controller as an OpAMP server. HTTP transport here (the WebSocket
//! one is [`websocket`], through the same [`exchange`]): an OpAMP agent
//! (a Collector's OpAMP extension, a supervisor, an SDK's client) `POST`s
//! an `AgentToServer` to `/v1/opamp` on `--opamp-listen` and gets a
//! `ServerToAgent` back; it polls, so it is online while its requests keep
//! coming (`--opamp-timeout`). Its reports land in the same `agents` table
//! as Phoenix agents (`kind = opamp`), see [`convert`] for the mapping.
//!
//! Why a port of its own: the gRPC port is tonic's HTTP/2 server with
//! tonic's TLS, which offers only `h2` in ALPN; OpAMP's HTTP clients speak
//! HTTP/1.1 (a TLS client offering `http/1.1` alone would fail the
//! handshake there). This port has the same certificate, key and
//! `--client-ca` rule, with HTTP/1.1.
//!
//! Authentication is the native protocol's ([`crate::grpc::admit`]): the
//! enrollment token in `authorization: Bearer <token>` or an agent
//! credential in `x-phoenix-agent-credential`, checked before the body is
//! read; then the same per-instance rules (an enrolled id needs its own
//! credential, a revoked id is refused, with `--client-ca` the certificate's
//! Common Name must be the instance id).
//!
//! Per-agent credentials: an agent that comes with the enrollment token and
//! declares `AcceptsOpAMPConnectionSettings` is issued its own credential
//! as a native agent is ([`crate::grpc::issue`]: 256 random bits, only the
//! hash kept, pending), offered in `connection_settings.opamp.headers` as
//! `x-phoenix-agent-credential` (same endpoint). Its first request that
//! presents it confirms it; from then on the token no longer speaks for
//! that instance uid. Until then every request with the token gets a fresh
//! credential that replaces the pending one (the native rule: a lost
//! offer costs nothing, and only the latest credential works). An agent
//! without the capability keeps using the token.
//!
//! Remote config: the agent's desired push (its latest push target, as for
//! a native agent) is offered in `remote_config` while the
//! `last_remote_config_hash` it reports differs from the push's hash
//! ([`pending_offer`]); the remote config statuses it reports for that hash
//! move the push target (applying, applied, failed).
//!
//! What a bad request gets, and it changes nothing:
//! - no token or credential: 401; a credential or id it may not use
//!   (another's, enrolled, revoked, a Phoenix agent's): 403;
//! - a body over [`MAX_BODY_BYTES`] (or over [`MAX_DECODED_BYTES`] once
//!   gunzipped): 413; a content type or encoding other than protobuf and
//!   gzip/identity: 415 (plain-text message);
//! - a body that is not an `AgentToServer`, or one whose uid is not 16
//!   bytes or whose parts break the limits: 400 with a `ServerToAgent`
//!   carrying a `ServerErrorResponse` of type `BadRequest` (OpAMP's way to
//!   say "malformed, do not retry");
//! - the store unavailable: 503 with `Retry-After` and an `Unavailable`
//!   `ServerErrorResponse`.

pub mod convert;
pub mod websocket;

use std::collections::HashMap;
use std::io::Read as _;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use phoenix_proto::opamp as pb;
use prost::Message as _;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::fleet::rollout;
use crate::grpc::{Admission, AdmitError, Refusal, identity};
use crate::store::{CredentialState, Desired, OpampRefusal};
use crate::tls::TlsListener;
use crate::{Shared, blocking, now_ms};

/// Where OpAMP agents post (the path OpAMP's examples and the Collector's
/// extension use).
pub const PATH: &str = "/v1/opamp";
/// Largest body accepted as sent. A status report is a few KiB; the
/// effective config is the large part.
pub const MAX_BODY_BYTES: usize = 1 << 20;
/// Largest body once gunzipped.
pub const MAX_DECODED_BYTES: usize = 4 << 20;
const PROTOBUF: &str = "application/x-protobuf";
/// What this server does, as `ServerCapabilities` bits.
pub const SERVER_CAPABILITIES: u64 = pb::ServerCapabilities::AcceptsStatus as u64
    | pb::ServerCapabilities::AcceptsEffectiveConfig as u64
    | pb::ServerCapabilities::OffersRemoteConfig as u64
    | pb::ServerCapabilities::OffersConnectionSettings as u64;

/// The sequence number of each agent's last message, while it is online:
/// what tells a missed message (or a restarted controller) apart.
#[derive(Default)]
pub struct Sequences(Mutex<HashMap<String, u64>>);

impl Sequences {
    /// Remember `seq` for `id`; returns the one before, if known.
    fn swap(&self, id: &str, seq: u64) -> Option<u64> {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        map.insert(id.to_string(), seq)
    }

    fn forget(&self, id: &str) {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        map.remove(id);
    }
}

/// The connecting client: its address and, when client certificates are
/// required, the Common Name of the one it presented (verified by the
/// handshake).
#[derive(Clone, Debug)]
pub struct Peer {
    pub addr: SocketAddr,
    pub common_name: Option<String>,
}

impl axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, TcpListener>> for Peer {
    fn connect_info(stream: axum::serve::IncomingStream<'_, TcpListener>) -> Self {
        Peer {
            addr: *stream.remote_addr(),
            common_name: None,
        }
    }
}

impl axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, TlsListener>> for Peer {
    fn connect_info(stream: axum::serve::IncomingStream<'_, TlsListener>) -> Self {
        let (_, session) = stream.io().get_ref();
        Peer {
            addr: *stream.remote_addr(),
            common_name: session
                .peer_certificates()
                .and_then(|certs| certs.first())
                .and_then(|der| identity::certificate_common_name(der)),
        }
    }
}

/// Serve OpAMP on `listener` until `stop` turns true.
pub fn serve(
    shared: Arc<Shared>,
    listener: TcpListener,
    stop: watch::Receiver<bool>,
) -> JoinHandle<anyhow::Result<()>> {
    let tls = shared.settings.tls.clone();
    let app = router(shared, stop.clone());
    let stopped = {
        let mut stop = stop.clone();
        async move { crate::stopped(&mut stop).await }
    };
    tokio::spawn(async move {
        let result = match tls {
            Some(tls) => {
                axum::serve(
                    tls.opamp_listener(listener, stop),
                    app.into_make_service_with_connect_info::<Peer>(),
                )
                .with_graceful_shutdown(stopped)
                .await
            }
            None => {
                axum::serve(listener, app.into_make_service_with_connect_info::<Peer>())
                    .with_graceful_shutdown(stopped)
                    .await
            }
        };
        result.map_err(|e| anyhow::anyhow!("OpAMP server: {e}"))
    })
}

/// The OpAMP routes: `POST` for the HTTP transport, `GET` with an upgrade
/// for the WebSocket one (whose connections end when `stop` turns true).
pub fn router(shared: Arc<Shared>, stop: watch::Receiver<bool>) -> Router {
    Router::new()
        .route(PATH, post(receive).get(websocket::upgrade))
        .layer(axum::Extension(stop))
        .with_state(shared)
}

fn text(status: StatusCode, message: impl Into<String>) -> Response {
    let mut message = message.into();
    message.push('\n');
    (status, message).into_response()
}

fn answer(status: StatusCode, message: &pb::ServerToAgent) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, HeaderValue::from_static(PROTOBUF))],
        message.encode_to_vec(),
    )
        .into_response()
}

/// OpAMP's "malformed: do not retry".
fn bad_request_message(uid: Vec<u8>, message: String) -> pb::ServerToAgent {
    pb::ServerToAgent {
        instance_uid: uid,
        error_response: Some(pb::ServerErrorResponse {
            r#type: pb::ServerErrorResponseType::BadRequest as i32,
            error_message: message,
            details: None,
        }),
        ..Default::default()
    }
}

fn bad_request(uid: Vec<u8>, message: String) -> Response {
    answer(StatusCode::BAD_REQUEST, &bad_request_message(uid, message))
}

/// How long an agent told to retry later should wait.
const RETRY_AFTER_S: u64 = 5;

/// OpAMP's "retry later".
fn unavailable_message(uid: Vec<u8>) -> pb::ServerToAgent {
    pb::ServerToAgent {
        instance_uid: uid,
        error_response: Some(pb::ServerErrorResponse {
            r#type: pb::ServerErrorResponseType::Unavailable as i32,
            error_message: "the controller cannot record the report now; retry".into(),
            details: Some(pb::server_error_response::Details::RetryInfo(
                pb::RetryInfo {
                    retry_after_nanoseconds: RETRY_AFTER_S * 1_000_000_000,
                },
            )),
        }),
        ..Default::default()
    }
}

fn unavailable(uid: Vec<u8>) -> Response {
    let mut response = answer(StatusCode::SERVICE_UNAVAILABLE, &unavailable_message(uid));
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_S));
    response
}

fn refused(shared: &Shared, refusal: Refusal, id: Option<&str>, peer: &Peer) -> Response {
    let message = crate::grpc::note_refusal(shared, refusal, id, Some(peer.addr));
    let status = if refusal.unauthenticated() {
        StatusCode::UNAUTHORIZED
    } else {
        StatusCode::FORBIDDEN
    };
    text(status, message)
}

/// The body as an `AgentToServer`'s bytes: unzipped if it says gzip, and
/// bounded either way.
pub fn decode_body(headers: &HeaderMap, body: &[u8]) -> Result<Vec<u8>, (StatusCode, String)> {
    let media = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase());
    if media.as_deref() != Some(PROTOBUF) {
        return Err((
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("OpAMP over HTTP takes Content-Type: {PROTOBUF}"),
        ));
    }
    let encoding = headers
        .get(header::CONTENT_ENCODING)
        .map(|v| v.to_str().unwrap_or("?").trim().to_ascii_lowercase());
    match encoding.as_deref() {
        None | Some("" | "identity") => Ok(body.to_vec()),
        Some("gzip") => {
            let mut out = Vec::new();
            let limit = u64::try_from(MAX_DECODED_BYTES).unwrap_or(u64::MAX) + 1;
            flate2::read::GzDecoder::new(body)
                .take(limit)
                .read_to_end(&mut out)
                .map_err(|e| {
                    (
                        StatusCode::BAD_REQUEST,
                        format!("the body is not valid gzip: {e}"),
                    )
                })?;
            if out.len() > MAX_DECODED_BYTES {
                return Err((
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!("the body is larger than {MAX_DECODED_BYTES} bytes once gunzipped"),
                ));
            }
            Ok(out)
        }
        Some(other) => Err((
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("Content-Encoding {other:?} is not supported (gzip or none)"),
        )),
    }
}

async fn receive(
    State(shared): State<Arc<Shared>>,
    ConnectInfo(peer): ConnectInfo<Peer>,
    request: axum::extract::Request,
) -> Response {
    let response = handle(&shared, &peer, request).await;
    shared.metrics.opamp_response(response.status().as_u16());
    response
}

async fn handle(shared: &Arc<Shared>, peer: &Peer, request: axum::extract::Request) -> Response {
    let (parts, body) = request.into_parts();
    let headers = &parts.headers;
    // Who, before the body is even read.
    let admission = match admit(shared, headers).await {
        Ok(a) => a,
        Err(AdmitError::Refused(r)) => return refused(shared, r, None, peer),
        Err(AdmitError::Unavailable) => return unavailable(Vec::new()),
    };

    let Ok(body) = axum::body::to_bytes(body, MAX_BODY_BYTES).await else {
        return text(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the body is larger than {MAX_BODY_BYTES} bytes (or was cut short)"),
        );
    };
    let bytes = match decode_body(headers, &body) {
        Ok(b) => b,
        Err((StatusCode::BAD_REQUEST, message)) => return bad_request(Vec::new(), message),
        Err((status, message)) => return text(status, message),
    };
    let message = match pb::AgentToServer::decode(bytes.as_slice()) {
        Ok(m) => m,
        Err(e) => {
            return bad_request(
                Vec::new(),
                format!("the body is not an OpAMP AgentToServer message: {e}"),
            );
        }
    };
    match exchange(shared, peer, &admission, message).await {
        Ok(reply) => answer(StatusCode::OK, &reply),
        Err(Failure::BadRequest(uid, message)) => bad_request(uid, message),
        Err(Failure::Refused(refusal, id)) => refused(shared, refusal, id.as_deref(), peer),
        Err(Failure::Unavailable(uid)) => unavailable(uid),
    }
}

/// Who is calling, from the request's headers (the upgrade request's, for
/// a WebSocket): the enrollment token or an agent credential.
pub(crate) async fn admit(
    shared: &Arc<Shared>,
    headers: &HeaderMap,
) -> Result<Admission, AdmitError> {
    let enrollment_token = shared.settings.agent_token.matches_bearer(
        headers
            .get(header::AUTHORIZATION)
            .map(HeaderValue::as_bytes),
    );
    let presented = headers
        .get(identity::CREDENTIAL_METADATA)
        .map(|v| identity::credential_hash(v.as_bytes()));
    crate::grpc::admit(shared, enrollment_token, presented).await
}

/// Why an `AgentToServer` was not processed; nothing was recorded.
#[derive(Debug)]
pub(crate) enum Failure {
    /// Malformed: do not retry (the uid, when it was read, and why).
    BadRequest(Vec<u8>, String),
    /// The caller may not speak for this instance (and its id, if known).
    Refused(Refusal, Option<String>),
    /// The store failed: retry later.
    Unavailable(Vec<u8>),
}

/// Process one `AgentToServer` of an admitted caller, whatever carried it:
/// check that the caller may speak for its instance uid, record the
/// report, and build the answer.
pub(crate) async fn exchange(
    shared: &Arc<Shared>,
    peer: &Peer,
    admission: &Admission,
    message: pb::AgentToServer,
) -> Result<pb::ServerToAgent, Failure> {
    let uid = message.instance_uid.clone();
    let report = match convert::report(&message) {
        Ok(r) => r,
        Err(e) => {
            return Err(Failure::BadRequest(
                uid,
                format!("invalid AgentToServer: {e}"),
            ));
        }
    };
    let id = report.id.clone();

    // May this caller speak for this instance id?
    if shared
        .settings
        .tls
        .as_ref()
        .is_some_and(|t| t.requires_client_cert())
        && peer.common_name.as_deref() != Some(id.as_str())
    {
        return Err(Failure::Refused(Refusal::CertificateMismatch, Some(id)));
    }
    match admission {
        Admission::Credential { id: owner, .. } if *owner != id => {
            return Err(Failure::Refused(Refusal::OtherCredential, Some(id)));
        }
        Admission::Credential { hash, pending, .. } => {
            if *pending {
                crate::grpc::confirm(shared, &id, hash.clone()).await;
            }
        }
        Admission::Enrollment => {
            let store = shared.store.clone();
            let lookup = id.clone();
            match blocking(move || store.credential_state(&lookup)).await {
                Ok(Ok(Some(CredentialState::Enrolled))) => {
                    return Err(Failure::Refused(Refusal::Claimed, Some(id)));
                }
                Ok(Ok(Some(CredentialState::Revoked))) => {
                    return Err(Failure::Refused(Refusal::Revoked, Some(id)));
                }
                Ok(Ok(_)) => {}
                _ => {
                    shared.metrics.store_errors.inc();
                    return Err(Failure::Unavailable(uid));
                }
            }
        }
    }

    // Record it: the agent is online while it polls.
    let now = now_ms();
    let online = shared.fleet.connected_ms(&id);
    let connected = online.unwrap_or(now);
    let store = shared.store.clone();
    let stored = report.clone();
    match blocking(move || store.opamp_report(&stored, connected, now)).await {
        Ok(Ok(Ok(changes))) => rollout::count_outcomes(shared, &changes),
        Ok(Ok(Err(OpampRefusal::OtherKind))) => {
            return Err(Failure::Refused(Refusal::OtherKind, Some(id)));
        }
        _ => {
            shared.metrics.store_errors.inc();
            return Err(Failure::Unavailable(uid));
        }
    }
    // Only once the report is stored: a store that cannot record the
    // report issues nothing either. A refusal here is a race (the id was
    // enrolled or revoked since the check above) and the report stays.
    let accepts_settings =
        message.capabilities & pb::AgentCapabilities::AcceptsOpAmpConnectionSettings as u64 != 0;
    let connection_settings = match admission {
        Admission::Enrollment if accepts_settings && message.agent_disconnect.is_none() => {
            match crate::grpc::issue(shared, &id).await {
                Ok((credential, hash)) => Some(credential_offer(credential, &hash)),
                Err(AdmitError::Refused(r)) => return Err(Failure::Refused(r, Some(id))),
                Err(AdmitError::Unavailable) => return Err(Failure::Unavailable(uid)),
            }
        }
        _ => None,
    };
    // What was remembered of an agent that went offline meanwhile is no
    // state to build on.
    let previous = online.and(shared.opamp.swap(&id, message.sequence_num));
    let full_state =
        convert::needs_full_state(previous, message.sequence_num, report.description.is_some());
    if full_state {
        shared.metrics.opamp_full_state_requested.inc();
    }
    if message.agent_disconnect.is_some() {
        shared.fleet.forget(&id);
        shared.opamp.forget(&id);
        let store = shared.store.clone();
        let offline = id.clone();
        if !matches!(
            blocking(move || store.set_offline(&offline, connected)).await,
            Ok(Ok(()))
        ) {
            shared.metrics.store_errors.inc();
        }
        tracing::info!(agent = %id, "OpAMP agent disconnected");
    }
    let remote_config = if message.agent_disconnect.is_some() {
        None
    } else {
        let (_, new) = shared
            .fleet
            .poll(&id, connected, shared.settings.opamp_timeout);
        if new {
            tracing::info!(agent = %id, peer = %peer.addr, "OpAMP agent online");
        }
        pending_offer(shared, &id).await
    };
    shared.changes.bump();
    Ok(pb::ServerToAgent {
        instance_uid: uid,
        flags: if full_state {
            pb::ServerToAgentFlags::ReportFullState as u64
        } else {
            0
        },
        capabilities: SERVER_CAPABILITIES,
        remote_config,
        connection_settings,
        ..Default::default()
    })
}

/// The remote config to offer the OpAMP agent `id` now: its desired push,
/// unless the last remote config it reported on is that push (by hash).
/// A target offered for the first time becomes `applying`. `exchange`
/// puts it in every reply; a transport that can send unasked (WebSocket)
/// calls it when `shared.changes` moves, to deliver a new push at once.
/// It does not bump `shared.changes` itself, so such a caller never wakes
/// itself. `None` also when the store cannot be read: the next message
/// tries again.
pub(crate) async fn pending_offer(shared: &Arc<Shared>, id: &str) -> Option<pb::AgentRemoteConfig> {
    let store = shared.store.clone();
    let agent = id.to_string();
    let desired = match blocking(move || store.opamp_offer(&agent, now_ms())).await {
        Ok(Ok(d)) => d?,
        _ => {
            shared.metrics.store_errors.inc();
            return None;
        }
    };
    let Some(config_hash) = hex_bytes(&desired.hash) else {
        // Every hash the controller makes is lowercase hex; another could
        // never be matched against what the agent reports.
        tracing::error!(agent = id, push = %desired.push_id, "the push's hash is not hex: not offered");
        return None;
    };
    tracing::info!(agent = id, push = %desired.push_id, hash = %desired.hash, "offering the desired config to an OpAMP agent");
    Some(remote_config(desired, config_hash))
}

/// A desired config as OpAMP's remote config. A revert (to a Phoenix
/// agent's local config) is an empty config map with the local config's
/// hash: the Phoenix agent's client reads that as "back to your own".
fn remote_config(desired: Desired, config_hash: Vec<u8>) -> pb::AgentRemoteConfig {
    let config_map = if desired.revert_to_local {
        Default::default()
    } else {
        [(
            desired.file,
            pb::AgentConfigFile {
                body: desired.yaml.into_bytes(),
                content_type: desired.content_type,
            },
        )]
        .into()
    };
    pb::AgentRemoteConfig {
        config: Some(pb::AgentConfigMap { config_map }),
        config_hash,
    }
}

/// A credential as OpAMP's connection settings: the header to present,
/// same endpoint. The offer's hash is the credential's (what the store
/// keeps): stable for this offer, new with every credential, and no
/// secret.
fn credential_offer(credential: String, hash: &str) -> pb::ConnectionSettingsOffers {
    pb::ConnectionSettingsOffers {
        hash: hex_bytes(hash).unwrap_or_default(),
        opamp: Some(pb::OpAmpConnectionSettings {
            headers: Some(pb::Headers {
                headers: vec![pb::Header {
                    key: identity::CREDENTIAL_METADATA.into(),
                    value: credential,
                }],
            }),
            ..Default::default()
        }),
    }
}

/// Lowercase hex as bytes; `None` for anything else.
fn hex_bytes(hex: &str) -> Option<Vec<u8>> {
    let digit = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    if !hex.len().is_multiple_of(2) {
        return None;
    }
    hex.as_bytes()
        .chunks(2)
        .map(|pair| Some(digit(pair[0])? << 4 | digit(pair[1])?))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_travel_as_the_bytes_their_hex_names() {
        assert_eq!(hex_bytes("00ab10ff"), Some(vec![0x00, 0xab, 0x10, 0xff]));
        assert_eq!(hex_bytes(""), Some(vec![]));
        assert_eq!(hex_bytes("abc"), None);
        assert_eq!(hex_bytes("AB"), None);
        assert_eq!(hex_bytes("zz"), None);
        let hash = phoenix_config::config_hash("x");
        assert_eq!(
            phoenix_processors::hash::hex(&hex_bytes(&hash).unwrap()),
            hash
        );
    }

    fn desired(revert_to_local: bool) -> Desired {
        Desired {
            push_id: "p1".into(),
            hash: "abcd".into(),
            yaml: if revert_to_local { "" } else { "a: 1\n" }.into(),
            revert_to_local,
            experiment_id: String::new(),
            content_type: "text/yaml".into(),
            file: "collector.yaml".into(),
        }
    }

    #[test]
    fn a_push_is_one_file_and_a_revert_an_empty_map() {
        let offer = remote_config(desired(false), vec![0xab, 0xcd]);
        assert_eq!(offer.config_hash, vec![0xab, 0xcd]);
        let map = offer.config.unwrap().config_map;
        assert_eq!(map.len(), 1);
        assert_eq!(map["collector.yaml"].body, b"a: 1\n");
        assert_eq!(map["collector.yaml"].content_type, "text/yaml");
        let revert = remote_config(desired(true), vec![0xab, 0xcd]);
        assert!(revert.config.unwrap().config_map.is_empty());
        assert_eq!(revert.config_hash, vec![0xab, 0xcd]);
    }

    #[test]
    fn a_credential_offer_names_only_the_credential_header() {
        let offer = credential_offer("secret".into(), "0a0b");
        assert_eq!(offer.hash, vec![0x0a, 0x0b]);
        let settings = offer.opamp.unwrap();
        assert!(settings.destination_endpoint.is_empty());
        let headers = settings.headers.unwrap().headers;
        assert_eq!(headers.len(), 1);
        assert_eq!(
            (headers[0].key.as_str(), headers[0].value.as_str()),
            ("x-phoenix-agent-credential", "secret")
        );
    }
}
