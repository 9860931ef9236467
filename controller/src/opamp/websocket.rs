//! OpAMP's WebSocket transport: an agent opens `GET /v1/opamp` with an
//! upgrade on the OpAMP port and keeps the connection; each binary message
//! either way is OpAMP's header (a varint, 0 today) followed by one
//! `AgentToServer` or `ServerToAgent`. Unlike polling over HTTP, the
//! controller can speak first: a push created while the agent is connected
//! is sent at once ([`Shared::pushes`](crate::Shared::pushes) wakes every
//! connection, which asks [`pending_offer`](super::pending_offer) for its
//! agent) instead of at its next heartbeat.
//!
//! Every message goes through the same [`exchange`](super::exchange) as an
//! HTTP request, and the caller is admitted again for every message (with
//! the headers of its upgrade request), so that a credential revoked while
//! the connection is open stops working at the next message, as a native
//! session is closed on revocation.
//!
//! What a bad peer gets, and it changes nothing:
//! - refused at the upgrade (no token, a wrong credential): 401/403 as over
//!   HTTP, no connection;
//! - a text message, or a header other than 0: closed with 1003/1002;
//! - a message over [`MAX_DECODED_BYTES`](super::MAX_DECODED_BYTES): closed
//!   by the WebSocket layer (1009), before it is buffered whole;
//! - a message that is not an `AgentToServer`, or breaks the limits: a
//!   `ServerToAgent` with a `BadRequest` error, the connection stays;
//! - another instance uid than the connection's first: refused and closed
//!   with 1008 (one connection speaks for one agent);
//! - refused per message (revoked meanwhile, another's uid): closed with
//!   1008 and the reason.
//!
//! The agent is online while its messages keep coming within
//! `--opamp-timeout` (its heartbeats), as over HTTP, and offline as soon
//! as its last connection closes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade, close_code};
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use phoenix_proto::opamp as pb;
use prost::Message as _;
use tokio::sync::watch;

use super::{Failure, MAX_DECODED_BYTES, Peer, convert};
use crate::grpc::{AdmitError, Refusal};
use crate::{Shared, blocking};

/// The only header OpAMP defines today.
const HEADER: u64 = 0;
/// A close reason must fit a control frame (125 bytes with its code).
const MAX_CLOSE_REASON: usize = 120;
/// What one read from a connection's socket takes at most.
const READ_BUFFER_BYTES: usize = 4 * 1024;
/// Bytes waiting to be written to one agent at most: a remote config (its
/// body at most 1 MiB, within a message of at most 4 MiB) and then some.
const MAX_QUEUED_BYTES: usize = 2 * MAX_DECODED_BYTES;

/// How many WebSocket connections each agent has open: the agent goes
/// offline when its last one closes (a reconnect may overlap the end of
/// the connection it replaces).
#[derive(Default)]
pub struct Sockets(Mutex<HashMap<String, usize>>);

impl Sockets {
    fn open(&self, id: &str) {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        *map.entry(id.to_string()).or_default() += 1;
    }

    /// One connection closed; true when it was the agent's last.
    fn close(&self, id: &str) -> bool {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        match map.get_mut(id) {
            Some(n) if *n > 1 => {
                *n -= 1;
                false
            }
            _ => {
                map.remove(id);
                true
            }
        }
    }
}

/// `GET /v1/opamp` with an upgrade: admit the caller, then hold the
/// connection.
pub async fn upgrade(
    State(shared): State<Arc<Shared>>,
    ConnectInfo(peer): ConnectInfo<Peer>,
    axum::Extension(stop): axum::Extension<watch::Receiver<bool>>,
    headers: HeaderMap,
    upgrade: WebSocketUpgrade,
) -> Response {
    let response = match super::admit(&shared, &headers).await {
        Ok(_) => upgrade
            .max_message_size(MAX_DECODED_BYTES)
            .max_frame_size(MAX_DECODED_BYTES)
            // The library's 128 KiB read buffer per connection was most of
            // a connection's memory (the fan-out bench: ~140 KiB each); a
            // heartbeat is a few dozen bytes and a larger message only
            // takes more reads.
            .read_buffer_size(READ_BUFFER_BYTES)
            // Each message is written out at once; what an agent that stops
            // reading leaves queued is bounded, and ends its connection.
            .write_buffer_size(0)
            .max_write_buffer_size(MAX_QUEUED_BYTES)
            .on_upgrade({
                let shared = shared.clone();
                move |socket| connection(shared, peer, headers, socket, stop)
            }),
        Err(AdmitError::Refused(r)) => super::refused(&shared, r, None, &peer),
        Err(AdmitError::Unavailable) => super::unavailable(Vec::new()),
    };
    shared.metrics.opamp_response(response.status().as_u16());
    response
}

/// What one received message leads to, with the HTTP status an HTTP
/// request in its place would have got (for the requests metric).
enum Next {
    Reply(StatusCode, Box<pb::ServerToAgent>),
    Close(StatusCode, u16, String),
}

async fn connection(
    shared: Arc<Shared>,
    peer: Peer,
    headers: HeaderMap,
    mut socket: WebSocket,
    mut stop: watch::Receiver<bool>,
) {
    // The agent this connection speaks for, from its first valid message.
    let mut agent: Option<String> = None;
    let mut uid = Vec::new();
    // The hash of the remote config last sent on this connection: a push
    // is sent unasked once, then with every answer until the agent reports
    // on it (as over HTTP).
    let mut offered: Option<Vec<u8>> = None;
    let mut pushes = shared.pushes.subscribe();
    loop {
        let received = tokio::select! {
            _ = crate::stopped(&mut stop) => {
                close(&mut socket, close_code::AWAY, "the controller is shutting down").await;
                break;
            }
            Ok(()) = pushes.changed(), if agent.is_some() => {
                let Some(id) = agent.as_deref() else { continue };
                let Some(remote) = super::pending_offer(&shared, id).await else { continue };
                if offered.as_ref() == Some(&remote.config_hash) {
                    continue;
                }
                offered = Some(remote.config_hash.clone());
                let unasked = pb::ServerToAgent {
                    instance_uid: uid.clone(),
                    remote_config: Some(remote),
                    capabilities: super::SERVER_CAPABILITIES,
                    ..Default::default()
                };
                if socket.send(Message::Binary(encode(&unasked))).await.is_err() {
                    break;
                }
                shared.changes.bump();
                continue;
            }
            received = socket.recv() => received,
        };
        let next = match received {
            None | Some(Err(_)) | Some(Ok(Message::Close(_))) => break,
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            Some(Ok(Message::Text(_))) => Next::Close(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                close_code::UNSUPPORTED,
                "OpAMP over WebSocket takes binary messages".into(),
            ),
            Some(Ok(Message::Binary(frame))) => {
                receive(&shared, &peer, &headers, &mut agent, frame).await
            }
        };
        match next {
            Next::Reply(status, reply) => {
                shared.metrics.opamp_response(status.as_u16());
                if uid.is_empty() && agent.is_some() {
                    uid = reply.instance_uid.clone();
                }
                if let Some(remote) = &reply.remote_config {
                    offered = Some(remote.config_hash.clone());
                }
                if socket.send(Message::Binary(encode(&reply))).await.is_err() {
                    break;
                }
            }
            Next::Close(status, code, reason) => {
                shared.metrics.opamp_response(status.as_u16());
                close(&mut socket, code, &reason).await;
                break;
            }
        }
    }
    if let Some(id) = agent {
        gone(&shared, &id).await;
    }
}

/// One binary message: its header, its `AgentToServer`, the exchange.
async fn receive(
    shared: &Arc<Shared>,
    peer: &Peer,
    headers: &HeaderMap,
    agent: &mut Option<String>,
    frame: Bytes,
) -> Next {
    let mut body = frame.as_ref();
    match prost::encoding::decode_varint(&mut body) {
        Ok(HEADER) => {}
        Ok(other) => {
            return Next::Close(
                StatusCode::BAD_REQUEST,
                close_code::PROTOCOL,
                format!("unknown OpAMP message header {other}"),
            );
        }
        Err(_) => {
            return Next::Close(
                StatusCode::BAD_REQUEST,
                close_code::PROTOCOL,
                "no OpAMP message header".into(),
            );
        }
    }
    let message = match pb::AgentToServer::decode(body) {
        Ok(m) => m,
        Err(e) => {
            return Next::Reply(
                StatusCode::BAD_REQUEST,
                Box::new(super::bad_request_message(
                    Vec::new(),
                    format!("the message is not an OpAMP AgentToServer: {e}"),
                )),
            );
        }
    };
    if let Ok(id) = convert::uid_string(&message.instance_uid) {
        match agent {
            Some(bound) if *bound != id => {
                return Next::Close(
                    StatusCode::FORBIDDEN,
                    close_code::POLICY,
                    "one connection speaks for one instance uid".into(),
                );
            }
            Some(_) => {}
            None => {
                shared.opamp_sockets.open(&id);
                *agent = Some(id);
            }
        }
    }
    let admission = match super::admit(shared, headers).await {
        Ok(a) => a,
        Err(AdmitError::Refused(r)) => {
            return refused(shared, peer, r, agent.as_deref());
        }
        Err(AdmitError::Unavailable) => {
            return Next::Reply(
                StatusCode::SERVICE_UNAVAILABLE,
                Box::new(super::unavailable_message(Vec::new())),
            );
        }
    };
    match super::exchange(shared, peer, &admission, message).await {
        Ok(reply) => Next::Reply(StatusCode::OK, Box::new(reply)),
        Err(Failure::BadRequest(uid, why)) => Next::Reply(
            StatusCode::BAD_REQUEST,
            Box::new(super::bad_request_message(uid, why)),
        ),
        Err(Failure::Refused(refusal, id)) => refused(shared, peer, refusal, id.as_deref()),
        Err(Failure::Unavailable(uid)) => Next::Reply(
            StatusCode::SERVICE_UNAVAILABLE,
            Box::new(super::unavailable_message(uid)),
        ),
    }
}

fn refused(shared: &Shared, peer: &Peer, refusal: Refusal, id: Option<&str>) -> Next {
    let why = crate::grpc::note_refusal(shared, refusal, id, Some(peer.addr));
    let status = if refusal.unauthenticated() {
        StatusCode::UNAUTHORIZED
    } else {
        StatusCode::FORBIDDEN
    };
    Next::Close(status, close_code::POLICY, why)
}

/// OpAMP's framing: the header, then the message.
fn encode(message: &pb::ServerToAgent) -> Bytes {
    let mut out = Vec::with_capacity(1 + message.encoded_len());
    prost::encoding::encode_varint(HEADER, &mut out);
    // Encoding into a growable buffer cannot run out of room.
    let _ = message.encode(&mut out);
    out.into()
}

async fn close(socket: &mut WebSocket, code: u16, reason: &str) {
    let mut end = reason.len().min(MAX_CLOSE_REASON);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    let _ = socket
        .send(Message::Close(Some(CloseFrame {
            code,
            reason: reason[..end].into(),
        })))
        .await;
}

/// The connection closed: the agent is offline unless another of its
/// connections is still open (or it already said goodbye).
async fn gone(shared: &Arc<Shared>, id: &str) {
    if !shared.opamp_sockets.close(id) {
        return;
    }
    let Some(connected) = shared.fleet.forget(id) else {
        return;
    };
    shared.opamp.forget(id);
    let store = shared.store.clone();
    let offline = id.to_string();
    if !matches!(
        blocking(move || store.set_offline(&offline, connected)).await,
        Ok(Ok(()))
    ) {
        shared.metrics.store_errors.inc();
    }
    shared.changes.bump();
    tracing::info!(agent = %id, "OpAMP agent's WebSocket closed: offline");
}
