//! The agents' side: `phoenix.agent.v1.AgentControl/Session`, one
//! bidirectional stream per agent. A thin layer: it authenticates, checks
//! and converts messages, and hands them to the rollout and the store.
//!
//! A session is refused before anything is stored when the agent's token
//! is missing or wrong (`UNAUTHENTICATED`) or its first message is not a
//! valid Hello (`INVALID_ARGUMENT`).

mod convert;

use std::sync::Arc;
use std::time::Duration;

use phoenix_proto::v1::agent_control_server::{AgentControl, AgentControlServer};
use phoenix_proto::v1::{AgentMessage, ControllerMessage, agent_message};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use crate::fleet::rollout;
use crate::fleet::{OUTBOUND_CAPACITY, SessionHandle};
use crate::{Shared, StartError, blocking, now_ms};

pub use convert::{hello_from_proto, stats_to_json, status_from_proto};

/// The Hello must come this soon after the stream opens.
pub const HELLO_TIMEOUT: Duration = Duration::from_secs(10);
/// Agent messages are small (the largest is a stats report); this bounds
/// what one message can make the controller allocate.
pub const MAX_MESSAGE_BYTES: usize = 1 << 20;

/// The tonic service.
pub struct AgentControlService {
    shared: Arc<Shared>,
}

/// Serve the agents' port until `stop` turns true.
pub fn serve(
    shared: Arc<Shared>,
    listener: TcpListener,
    mut stop: watch::Receiver<bool>,
) -> Result<JoinHandle<anyhow::Result<()>>, StartError> {
    let mut builder = tonic::transport::Server::builder()
        // Find dead peers (a host that vanished without a FIN) well before
        // the heartbeat timeout would.
        .http2_keepalive_interval(Some(Duration::from_secs(30)))
        .http2_keepalive_timeout(Some(Duration::from_secs(10)));
    if let Some(tls) = &shared.settings.tls {
        builder = builder
            .tls_config(tls.grpc())
            .map_err(|e| StartError::Tls(e.to_string()))?;
    }
    let service = AgentControlServer::new(AgentControlService { shared })
        .max_decoding_message_size(MAX_MESSAGE_BYTES);
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    Ok(tokio::spawn(async move {
        builder
            .add_service(service)
            .serve_with_incoming_shutdown(incoming, async move { crate::stopped(&mut stop).await })
            .await
            .map_err(|e| anyhow::anyhow!("gRPC server: {e}"))
    }))
}

#[tonic::async_trait]
impl AgentControl for AgentControlService {
    type SessionStream = ReceiverStream<Result<ControllerMessage, Status>>;

    async fn session(
        &self,
        request: Request<Streaming<AgentMessage>>,
    ) -> Result<Response<Self::SessionStream>, Status> {
        let shared = &self.shared;
        let presented = request
            .metadata()
            .get("authorization")
            .map(|v| v.as_bytes());
        if !shared.settings.agent_token.matches_bearer(presented) {
            shared.metrics.sessions_unauthenticated.inc();
            tracing::warn!(peer = ?request.remote_addr(), "agent session refused: missing or wrong token");
            return Err(Status::unauthenticated(
                "missing or wrong agent token (send `authorization: Bearer <token>`)",
            ));
        }
        let mut inbound = request.into_inner();
        let hello = match tokio::time::timeout(HELLO_TIMEOUT, inbound.message()).await {
            Err(_) => {
                shared.metrics.sessions_invalid.inc();
                return Err(Status::invalid_argument(format!(
                    "no Hello within {HELLO_TIMEOUT:?} of opening the session"
                )));
            }
            Ok(Err(status)) => return Err(status),
            Ok(Ok(None)) => {
                shared.metrics.sessions_invalid.inc();
                return Err(Status::invalid_argument("the stream ended before a Hello"));
            }
            Ok(Ok(Some(AgentMessage {
                body: Some(agent_message::Body::Hello(hello)),
            }))) => hello,
            Ok(Ok(Some(_))) => {
                shared.metrics.sessions_invalid.inc();
                return Err(Status::invalid_argument(
                    "the first message of a session must be a Hello",
                ));
            }
        };
        let hello = hello_from_proto(hello).map_err(|e| {
            shared.metrics.sessions_invalid.inc();
            Status::invalid_argument(format!("invalid Hello: {e}"))
        })?;
        shared.metrics.agent_messages_hello.inc();

        let (tx, rx) = mpsc::channel(OUTBOUND_CAPACITY);
        let now = now_ms();
        let agent_id = hello.id.clone();
        // Registered before the store learns of it: a push created meanwhile
        // either sees the session and sends, or is seen by this Hello.
        let session = shared.fleet.register(&agent_id, tx, now);
        if let Err(e) = rollout::on_hello(shared, hello, now, true).await {
            shared.fleet.remove_if_current(&agent_id, session.id);
            tracing::error!(agent = %agent_id, error = %e, "cannot record the agent's Hello");
            return Err(Status::unavailable(
                "the controller cannot record the session now; retry",
            ));
        }
        tracing::info!(agent = %agent_id, "agent connected");
        tokio::spawn(read_session(shared.clone(), agent_id, session, inbound));
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

/// Read an agent's messages until it leaves, the session is replaced or
/// timed out, or the controller stops.
async fn read_session(
    shared: Arc<Shared>,
    agent_id: String,
    session: SessionHandle,
    mut inbound: Streaming<AgentMessage>,
) {
    loop {
        let message = tokio::select! {
            _ = session.close.notified() => break,
            m = inbound.message() => m,
        };
        let body = match message {
            Ok(Some(AgentMessage { body: Some(body) })) => body,
            Ok(Some(AgentMessage { body: None })) => continue,
            Ok(None) => {
                tracing::info!(agent = %agent_id, "agent closed its session");
                break;
            }
            Err(status) => {
                tracing::info!(agent = %agent_id, error = %status, "agent session ended");
                break;
            }
        };
        shared.fleet.touch(&agent_id, session.id);
        handle(&shared, &agent_id, &session, body).await;
        shared.changes.bump();
    }
    if shared.fleet.remove_if_current(&agent_id, session.id) {
        let store = shared.store.clone();
        let id = agent_id.clone();
        let connected = session.connected_ms;
        if !matches!(
            blocking(move || store.set_offline(&id, connected)).await,
            Ok(Ok(()))
        ) {
            shared.metrics.store_errors.inc();
        }
        shared.changes.bump();
        tracing::info!(agent = %agent_id, "agent offline");
    }
}

async fn handle(
    shared: &Arc<Shared>,
    agent_id: &str,
    session: &SessionHandle,
    body: agent_message::Body,
) {
    match body {
        agent_message::Body::Hello(hello) => {
            // A full state report (after a ReportRequest, or unprompted).
            shared.metrics.agent_messages_hello.inc();
            match hello_from_proto(hello) {
                Ok(h) if h.id == agent_id => {
                    if let Err(e) = rollout::on_hello(shared, h, session.connected_ms, false).await
                    {
                        tracing::error!(agent = agent_id, error = %e, "cannot record a state report");
                    }
                }
                Ok(h) => tracing::warn!(
                    agent = agent_id,
                    other = %h.id,
                    "ignoring a Hello for another instance id within a session"
                ),
                Err(e) => tracing::warn!(agent = agent_id, error = %e, "ignoring an invalid Hello"),
            }
        }
        agent_message::Body::ConfigStatus(status) => {
            shared.metrics.agent_messages_status.inc();
            match status_from_proto(status) {
                Ok(report) => rollout::on_status(shared, agent_id, report).await,
                Err(e) => {
                    tracing::warn!(agent = agent_id, error = %e, "ignoring an invalid ConfigStatus")
                }
            }
        }
        agent_message::Body::Stats(stats) => {
            shared.metrics.agent_messages_stats.inc();
            let json = stats_to_json(&stats).to_string();
            let store = shared.store.clone();
            let id = agent_id.to_string();
            if !matches!(
                blocking(move || store.save_stats(&id, &json, now_ms())).await,
                Ok(Ok(()))
            ) {
                shared.metrics.store_errors.inc();
            }
            crate::experiment::ingest(shared, agent_id, &stats).await;
        }
        agent_message::Body::Heartbeat(hb) => {
            shared.metrics.agent_messages_heartbeat.inc();
            let store = shared.store.clone();
            let id = agent_id.to_string();
            let result = blocking(move || {
                store.heartbeat(
                    &id,
                    now_ms(),
                    hb.cpu_seconds_total,
                    hb.resident_memory_bytes,
                )
            })
            .await;
            if !matches!(result, Ok(Ok(()))) {
                shared.metrics.store_errors.inc();
            }
        }
    }
}
