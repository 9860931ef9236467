//! The agents' side: `phoenix.agent.v1.AgentControl/Session`, one
//! bidirectional stream per agent. A thin layer: it authenticates, checks
//! and converts messages, and hands them to the rollout and the store.
//!
//! A session is refused before anything is stored, and without touching
//! the session of the agent it claims to be, when:
//! - it presents neither the enrollment token nor a known credential
//!   (`UNAUTHENTICATED`);
//! - its first message is not a valid Hello (`INVALID_ARGUMENT`);
//! - its Hello names an instance id that is enrolled and it does not
//!   present that id's credential, or its credential belongs to another id
//!   (`PERMISSION_DENIED`);
//! - the instance id is revoked (`PERMISSION_DENIED`);
//! - with `--client-ca`, its certificate's Common Name is not the instance
//!   id (`PERMISSION_DENIED`).
//!
//! A session admitted by the enrollment token for an id without a
//! credential is sent one first ([`identity`]).

mod convert;
pub mod identity;

use std::sync::Arc;
use std::time::Duration;

use phoenix_proto::v1::agent_control_server::{AgentControl, AgentControlServer};
use phoenix_proto::v1::{
    AgentMessage, ControllerMessage, Enrollment, agent_message, controller_message,
};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use crate::fleet::rollout;
use crate::fleet::{OUTBOUND_CAPACITY, SessionHandle};
use crate::store::{AgentKind, CredentialState, Issue};
use crate::{Shared, StartError, blocking, now_ms};

pub use convert::{hello_from_proto, stats_to_json, status_from_proto};
pub(crate) use convert::{truncate, valid_label_key};

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
        let peer = request.remote_addr();
        let metadata = request.metadata();
        let enrollment_token = shared
            .settings
            .agent_token
            .matches_bearer(metadata.get("authorization").map(|v| v.as_bytes()));
        let presented = metadata
            .get(identity::CREDENTIAL_METADATA)
            .map(|v| identity::credential_hash(v.as_bytes()));
        // Read before anything else: only what the handshake verified.
        let certificate_name = shared
            .settings
            .tls
            .as_ref()
            .is_some_and(|t| t.requires_client_cert())
            .then(|| {
                request
                    .peer_certs()
                    .and_then(|certs| certs.first().map(|c| c.to_vec()))
                    .and_then(|der| identity::certificate_common_name(&der))
            });

        // Who the credential says this is, decided before the Hello is read
        // so that nobody without a credential or the token gets that far.
        let admission = match admit(shared, enrollment_token, presented).await {
            Ok(a) => a,
            Err(AdmitError::Refused(r)) => return Err(refuse(shared, r, None, peer)),
            Err(AdmitError::Unavailable) => {
                return Err(Status::unavailable(
                    "the controller cannot check the credential now; retry",
                ));
            }
        };

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
        let agent_id = hello.id.clone();

        if let Some(name) = certificate_name
            && name.as_deref() != Some(agent_id.as_str())
        {
            return Err(refuse(
                shared,
                Refusal::CertificateMismatch,
                Some(&agent_id),
                peer,
            ));
        }
        let store = shared.store.clone();
        let lookup = agent_id.clone();
        match blocking(move || store.agent_kind(&lookup)).await {
            Ok(Ok(None | Some(AgentKind::Phoenix))) => {}
            Ok(Ok(Some(_))) => {
                return Err(refuse(shared, Refusal::OtherKind, Some(&agent_id), peer));
            }
            _ => {
                shared.metrics.store_errors.inc();
                return Err(Status::unavailable(
                    "the controller cannot check the instance id now; retry",
                ));
            }
        }
        let (tx, rx) = mpsc::channel(OUTBOUND_CAPACITY);
        let issued = match admission {
            Admission::Credential { id, .. } if id != agent_id => {
                return Err(refuse(
                    shared,
                    Refusal::OtherCredential,
                    Some(&agent_id),
                    peer,
                ));
            }
            Admission::Credential { hash, pending, .. } => {
                // Presenting a pending credential proves it was kept.
                if pending {
                    confirm(shared, &agent_id, hash).await;
                }
                None
            }
            Admission::Enrollment => {
                let (credential, hash) = enroll(shared, &agent_id, peer).await?;
                // The channel is new and empty: the Enrollment goes first,
                // before any push the Hello may trigger.
                let _ = tx.try_send(Ok(ControllerMessage {
                    body: Some(controller_message::Body::Enrollment(Enrollment {
                        credential,
                    })),
                }));
                Some(hash)
            }
        };
        shared.metrics.agent_messages_hello.inc();

        let now = now_ms();
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
        tracing::info!(agent = %agent_id, enrolled_now = issued.is_some(), "agent connected");
        tokio::spawn(read_session(
            shared.clone(),
            agent_id,
            session,
            inbound,
            issued,
        ));
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

/// Why [`admit`] let nothing in.
pub(crate) enum AdmitError {
    Refused(Refusal),
    /// The store could not be asked; the agent should retry.
    Unavailable,
}

/// Who the presented secrets say the caller is, before its instance id is
/// known: `enrollment_token` tells whether `authorization` carried the
/// enrollment token, `presented` is the hash of the agent credential it
/// sent (`Some(None)`: a value no credential can be). The same rules for
/// the native protocol and OpAMP.
pub(crate) async fn admit(
    shared: &Arc<Shared>,
    enrollment_token: bool,
    presented: Option<Option<String>>,
) -> Result<Admission, AdmitError> {
    match presented {
        Some(Some(hash)) => {
            let store = shared.store.clone();
            let lookup = hash.clone();
            match blocking(move || store.credential_owner(&lookup)).await {
                Ok(Ok(Some((_, CredentialState::Revoked)))) => {
                    Err(AdmitError::Refused(Refusal::Revoked))
                }
                Ok(Ok(Some((id, state)))) => Ok(Admission::Credential {
                    id,
                    hash,
                    pending: state == CredentialState::Pending,
                }),
                // A credential this controller never issued (its store
                // was replaced, say): the token may enroll afresh.
                Ok(Ok(None)) if enrollment_token => Ok(Admission::Enrollment),
                Ok(Ok(None)) => Err(AdmitError::Refused(Refusal::Unknown)),
                _ => {
                    shared.metrics.store_errors.inc();
                    Err(AdmitError::Unavailable)
                }
            }
        }
        Some(None) | None if enrollment_token => Ok(Admission::Enrollment),
        Some(None) => Err(AdmitError::Refused(Refusal::Unknown)),
        None => Err(AdmitError::Refused(Refusal::Unauthenticated)),
    }
}

/// How a session got past the metadata check.
pub(crate) enum Admission {
    /// A credential issued to the instance id `id` (by its hash).
    Credential {
        id: String,
        hash: String,
        pending: bool,
    },
    /// The enrollment token alone.
    Enrollment,
}

/// Why a session was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// Neither the enrollment token nor a credential.
    Unauthenticated,
    /// A credential the controller does not know, without the token.
    Unknown,
    /// The instance id is enrolled; the session did not present its credential.
    Claimed,
    /// The credential belongs to another instance id.
    OtherCredential,
    Revoked,
    CertificateMismatch,
    /// The instance id is an agent's of the other protocol (a Phoenix
    /// agent's for an OpAMP report, an OpAMP agent's for a Hello).
    OtherKind,
}

impl Refusal {
    /// Whether the caller proved no identity at all (as opposed to one
    /// that may not have this instance id).
    pub(crate) fn unauthenticated(self) -> bool {
        matches!(self, Refusal::Unauthenticated | Refusal::Unknown)
    }
}

/// Count and log a refusal (never with a credential), and the status the
/// agent gets.
fn refuse(
    shared: &Shared,
    refusal: Refusal,
    claimed: Option<&str>,
    peer: Option<std::net::SocketAddr>,
) -> Status {
    let message = note_refusal(shared, refusal, claimed, peer);
    if refusal.unauthenticated() {
        Status::unauthenticated(message)
    } else {
        Status::permission_denied(message)
    }
}

/// Count and log a refusal (never with a credential); what the agent is
/// told.
pub(crate) fn note_refusal(
    shared: &Shared,
    refusal: Refusal,
    claimed: Option<&str>,
    peer: Option<std::net::SocketAddr>,
) -> String {
    let m = &shared.metrics;
    let id = claimed.unwrap_or("");
    let (counter, message) = match refusal {
        Refusal::Unauthenticated => (
            &m.sessions_unauthenticated,
            "missing or wrong agent token (send `authorization: Bearer <token>`)".to_string(),
        ),
        Refusal::Unknown => (
            &m.sessions_unauthenticated,
            "unknown agent credential, and no valid enrollment token to enroll again".to_string(),
        ),
        Refusal::Claimed => (
            &m.sessions_wrong_credential,
            format!(
                "instance id {id:?} is enrolled with its own credential and this session did not \
                 present it: another agent uses this id. An agent that lost its credential needs \
                 a new instance id (clear its --state-dir)"
            ),
        ),
        Refusal::OtherCredential => (
            &m.sessions_wrong_credential,
            format!("the credential presented belongs to another instance id than {id:?}"),
        ),
        Refusal::Revoked => (
            &m.sessions_revoked,
            "this agent was revoked: it needs a new instance id (clear its --state-dir) \
             to enroll again"
                .to_string(),
        ),
        Refusal::CertificateMismatch => (
            &m.sessions_certificate_mismatch,
            format!("the client certificate's Common Name is not the instance id {id:?}"),
        ),
        Refusal::OtherKind => (
            &m.sessions_other_kind,
            format!(
                "instance id {id:?} belongs to an agent that speaks the other protocol \
                 (Phoenix or OpAMP): each agent needs an id of its own"
            ),
        ),
    };
    counter.inc();
    tracing::warn!(
        ?peer,
        claimed_instance_id = id,
        reason = ?refusal,
        "agent session refused"
    );
    message
}

/// Issue a credential for `agent_id`: the credential for the agent, and the
/// hash its EnrollmentKept will confirm.
async fn enroll(
    shared: &Arc<Shared>,
    agent_id: &str,
    peer: Option<std::net::SocketAddr>,
) -> Result<(String, String), Status> {
    issue(shared, agent_id).await.map_err(|e| match e {
        AdmitError::Refused(r) => refuse(shared, r, Some(agent_id), peer),
        AdmitError::Unavailable => {
            Status::unavailable("the controller cannot enroll the agent now; retry")
        }
    })
}

/// A new credential for `agent_id`, stored as pending (replacing a pending
/// one): the credential, to hand to the agent once, and its hash, which
/// the agent's first use of it confirms. Whatever carries it (the native
/// `Enrollment`, OpAMP's connection settings) calls this.
pub(crate) async fn issue(
    shared: &Arc<Shared>,
    agent_id: &str,
) -> Result<(String, String), AdmitError> {
    let credential = identity::new_credential().ok_or_else(|| {
        tracing::error!("no randomness from the OS: cannot issue an agent credential");
        AdmitError::Unavailable
    })?;
    let hash = identity::credential_hash(credential.as_bytes()).ok_or(AdmitError::Unavailable)?;
    let store = shared.store.clone();
    let (id, stored) = (agent_id.to_string(), hash.clone());
    match blocking(move || store.issue_credential(&id, &stored, now_ms())).await {
        Ok(Ok(Issue::Issued)) => {
            shared.metrics.credentials_issued.inc();
            tracing::info!(agent = agent_id, "agent credential issued");
            Ok((credential, hash))
        }
        Ok(Ok(Issue::Refused(CredentialState::Revoked))) => {
            Err(AdmitError::Refused(Refusal::Revoked))
        }
        Ok(Ok(Issue::Refused(_))) => Err(AdmitError::Refused(Refusal::Claimed)),
        _ => {
            shared.metrics.store_errors.inc();
            Err(AdmitError::Unavailable)
        }
    }
}

/// The agent kept its credential: it is required from now on.
pub(crate) async fn confirm(shared: &Arc<Shared>, agent_id: &str, hash: String) {
    let store = shared.store.clone();
    let id = agent_id.to_string();
    match blocking(move || store.confirm_credential(&id, &hash, now_ms())).await {
        Ok(Ok(true)) => tracing::info!(agent = agent_id, "agent enrolled"),
        Ok(Ok(false)) => {}
        _ => {
            shared.metrics.store_errors.inc();
            tracing::error!(
                agent = agent_id,
                "cannot record that the agent kept its credential"
            );
        }
    }
}

/// Read an agent's messages until it leaves, the session is replaced or
/// timed out, or the controller stops.
async fn read_session(
    shared: Arc<Shared>,
    agent_id: String,
    session: SessionHandle,
    mut inbound: Streaming<AgentMessage>,
    mut issued: Option<String>,
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
        if let agent_message::Body::EnrollmentKept(_) = body {
            // Only for the credential this session issued, and only once.
            if let Some(hash) = issued.take() {
                confirm(&shared, &agent_id, hash).await;
            }
            continue;
        }
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
        // Handled by the session reader, which knows what it issued.
        agent_message::Body::EnrollmentKept(_) => {}
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
