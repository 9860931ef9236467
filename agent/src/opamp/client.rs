//! The OpAMP conversation, following the specification's sequences: the
//! first message of a connection carries the full state; later ones only
//! what changed (with the uid, the next sequence number and the
//! capabilities, always); a server's `ReportFullState` makes the next one
//! full again; a heartbeat is a message with nothing else in it; the last
//! one, when the agent stops, carries `agent_disconnect`.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use phoenix_proto::opamp as pb;
use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderName, HeaderValue};
use tokio::sync::{broadcast, mpsc, watch};
use tokio::time::Instant;

use super::transport::{self, Failure, Link};
use super::{Endpoint, MAX_HEARTBEAT, MIN_HEARTBEAT, Transport};
use crate::controller::{
    BACKOFF_MAX, CREDENTIAL_METADATA, STABLE_SESSION, error_text, identity, reconnect_backoff,
    reported_host_name, request_reload, round,
};
use crate::exporter::otlp::retry::XorShift;
use crate::exporter::otlp::sanitize;
use crate::pipeline::{ReloadRequest, Service};
use phoenix_telemetry::registry::{Counter, Gauge, Registry};

/// What the agent does, declared in every message. Nothing more: a
/// server may rely on each bit.
pub const CAPABILITIES: u64 = pb::AgentCapabilities::ReportsStatus as u64
    | pb::AgentCapabilities::AcceptsRemoteConfig as u64
    | pb::AgentCapabilities::ReportsEffectiveConfig as u64
    | pb::AgentCapabilities::ReportsHealth as u64
    | pb::AgentCapabilities::ReportsRemoteConfig as u64
    | pb::AgentCapabilities::ReportsHeartbeat as u64
    | pb::AgentCapabilities::AcceptsOpAmpConnectionSettings as u64;

/// The `service.name` the Phoenix controller recognizes its own agents by.
pub const SERVICE_NAME: &str = "phoenix-agent";
/// The key of the one file of the effective config: OpAMP's convention
/// for an agent with a single config file.
pub const CONFIG_FILE_KEY: &str = "";
const YAML: &str = "text/yaml";
/// Server answers handled in a row before the client waits for its next
/// heartbeat: a server that asks for the full state in every answer must
/// not keep the agent sending in a loop.
const MAX_REPLIES_IN_A_ROW: usize = 8;
/// How long the last message (`agent_disconnect`) may take at shutdown.
const GOODBYE_TIMEOUT: Duration = Duration::from_secs(3);
/// Bounds on an offered header set: a hostile server must not make every
/// request carry megabytes.
const MAX_OFFERED_HEADERS: usize = 32;
const MAX_HEADER_VALUE: usize = 4096;
/// Headers a server may not set: they belong to the transport.
const TRANSPORT_HEADERS: [&str; 7] = [
    "host",
    "content-type",
    "content-length",
    "content-encoding",
    "transfer-encoding",
    "connection",
    "upgrade",
];

/// `phoenix_opamp_*` on the agent's `/metrics`.
pub(super) struct OpampMetrics {
    connected: Arc<Gauge>,
    sent: Arc<Counter>,
    failed: Arc<Counter>,
    rejected: Arc<Counter>,
    applied: Arc<Counter>,
    refused: Arc<Counter>,
    repeated: Arc<Counter>,
}

impl OpampMetrics {
    pub(super) fn new(registry: &Registry) -> OpampMetrics {
        let message = |result: &str| {
            registry.counter(
                "phoenix_opamp_messages_total",
                "AgentToServer messages by result: sent (delivered), failed (not delivered: unreachable, 5xx, refused credentials; retried with backoff), rejected (the server would not take it: not sent again).",
                &["result"],
                &[result],
            )
        };
        let remote = |result: &str| {
            registry.counter(
                "phoenix_opamp_remote_configs_total",
                "Remote configs offered by the OpAMP server, by result: applied (reverts included), failed (invalid, against the local policy, not one file; the running config stays), repeated (an offer already handled, reported again).",
                &["result"],
                &[result],
            )
        };
        OpampMetrics {
            connected: registry.gauge(
                "phoenix_opamp_connected",
                "1 while the OpAMP server answers (the last exchange or the WebSocket is up), else 0.",
                &[],
                &[],
            ),
            sent: message("sent"),
            failed: message("failed"),
            rejected: message("rejected"),
            applied: remote("applied"),
            refused: remote("failed"),
            repeated: remote("repeated"),
        }
    }
}

pub(super) struct Parts {
    pub endpoint: Endpoint,
    pub uid: [u8; 16],
    pub host_name: String,
    pub labels: BTreeMap<String, String>,
    pub credential: Option<String>,
    pub keep_in: Option<PathBuf>,
    pub service: Service,
    pub reloads: mpsc::Sender<ReloadRequest>,
    pub metrics: OpampMetrics,
}

/// What the server was last told of each part, so that later messages
/// carry only what changed.
#[derive(Default)]
struct Reported {
    description: Option<pb::AgentDescription>,
    health: Option<pb::ComponentHealth>,
    config_hash: Option<String>,
    remote: Option<pb::RemoteConfigStatus>,
}

pub(super) struct Client {
    endpoint: Endpoint,
    uid: [u8; 16],
    uid_text: String,
    host_name: String,
    labels: BTreeMap<String, String>,
    keep_in: Option<PathBuf>,
    service: Service,
    reloads: mpsc::Sender<ReloadRequest>,
    metrics: OpampMetrics,
    started_unix_nano: u64,
    heartbeat: Duration,
    /// The agent's credential (kept, or offered by the server).
    credential: Option<String>,
    /// The other headers of the last connection settings offer applied.
    offered: HeaderMap,
    offer_hash: Option<Vec<u8>>,
    sequence: u64,
    reported: Reported,
    /// The next message carries every part.
    full: bool,
    remote: pb::RemoteConfigStatus,
    /// Answers (over HTTP) not handled yet.
    replies: VecDeque<pb::ServerToAgent>,
    /// A new header set that a WebSocket only presents on a new connection.
    reconnect: bool,
}

/// What woke a session up.
enum Event {
    Stop,
    Heartbeat,
    Interval,
    /// Boxed: an answer is large, the other events empty.
    Reply(Box<Result<pb::ServerToAgent, Failure>>),
}

/// How a session ended.
enum End {
    Stopped,
    /// New connection settings: connect again at once. The connection it
    /// replaces stays open until the new one has spoken, so the server
    /// never sees the agent without one (it would mark it offline).
    Reconnect(Link),
    Failed {
        failure: Failure,
        lasted: Duration,
    },
}

impl Client {
    pub(super) fn new(parts: Parts) -> Client {
        Client {
            heartbeat: parts.endpoint.heartbeat,
            endpoint: parts.endpoint,
            uid: parts.uid,
            uid_text: identity::uuid_string(&parts.uid),
            host_name: parts.host_name,
            labels: parts.labels,
            keep_in: parts.keep_in,
            service: parts.service,
            reloads: parts.reloads,
            metrics: parts.metrics,
            started_unix_nano: unix_nanos(SystemTime::now()),
            credential: parts.credential,
            offered: HeaderMap::new(),
            offer_hash: None,
            sequence: 0,
            reported: Reported::default(),
            full: true,
            remote: pb::RemoteConfigStatus::default(),
            replies: VecDeque::new(),
            reconnect: false,
        }
    }

    /// Talk to the server until `stop` turns true; reconnect with backoff
    /// and jitter whenever it is away. The agent keeps running its current
    /// config meanwhile.
    pub(super) async fn run(mut self, mut stop: watch::Receiver<bool>) {
        let mut backoff = reconnect_backoff();
        let mut rng = XorShift::from_entropy();
        // Failure kinds logged during this outage: a server that stays
        // down is logged once, not at every retry.
        let mut logged = BTreeSet::new();
        let url = self.endpoint.url().to_string();
        let mut replaced = None;
        loop {
            if *stop.borrow() {
                return;
            }
            let (failure, lasted) = match self.session(&mut stop, &mut replaced).await {
                End::Stopped => return,
                End::Reconnect(old) => {
                    replaced = Some(old);
                    continue;
                }
                End::Failed { failure, lasted } => (failure, lasted),
            };
            // A connection being replaced ends with the attempt.
            replaced = None;
            self.metrics.connected.set(0.0);
            // Whatever the server got of the last messages, the next
            // connection starts with everything.
            self.full = true;
            if lasted >= STABLE_SESSION {
                backoff.reset();
                logged.clear();
            }
            let mut delay = backoff.next_delay(&mut rng);
            if let Failure::Unavailable(_, Some(after)) = &failure {
                delay = delay.max(*after);
            }
            let kind = std::mem::discriminant(&failure);
            let reason = failure.reason();
            if !logged.insert(format!("{kind:?}")) {
                tracing::debug!(opamp = %url, reason, retry_in = ?round(delay), "OpAMP server still not reachable");
            } else if matches!(failure, Failure::Refused(_)) {
                tracing::error!(opamp = %url, instance_uid = %self.uid_text, reason,
                    "the OpAMP server refused this agent (check the enrollment token, the client certificate, and whether the agent was revoked); retrying with backoff up to {BACKOFF_MAX:?}");
            } else {
                tracing::warn!(opamp = %url, reason, retry_in = ?round(delay),
                    "OpAMP exchange failed; the agent keeps running its current config and retries");
            }
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                _ = stop.changed() => return,
            }
        }
    }

    /// One connection, from its first message to its end. `replaced`: the
    /// connection this one replaces, closed once this one has spoken.
    async fn session(
        &mut self,
        stop: &mut watch::Receiver<bool>,
        replaced: &mut Option<Link>,
    ) -> End {
        let opened = Instant::now();
        let failed = |failure| End::Failed {
            failure,
            lasted: opened.elapsed(),
        };
        self.reconnect = false;
        // Answers to the last connection's messages are moot now.
        self.replies.clear();
        let mut link = match transport::connect(&self.endpoint, &self.headers()).await {
            Ok(link) => link,
            Err(failure) => return failed(failure),
        };
        self.full = true;
        if let Err(failure) = self.send(&mut link).await {
            return failed(failure);
        }
        if let Some(old) = replaced.take() {
            old.close().await;
        }
        tracing::info!(opamp = %self.endpoint.url(), instance_uid = %self.uid_text, "OpAMP connection open");
        let mut reports = self.service.subscribe_reports();
        let mut reports_open = true;
        let mut heartbeat_every = self.heartbeat;
        let mut heartbeat = ticker(heartbeat_every);
        loop {
            if let Err(failure) = self.settle(&mut link).await {
                return failed(failure);
            }
            if self.reconnect {
                return End::Reconnect(link);
            }
            if self.heartbeat != heartbeat_every {
                heartbeat_every = self.heartbeat;
                heartbeat = ticker(heartbeat_every);
            }
            let event = tokio::select! {
                _ = stop.changed() => Event::Stop,
                _ = heartbeat.tick() => Event::Heartbeat,
                report = reports.recv(), if reports_open => match report {
                    Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => Event::Interval,
                    // The service outlives this task; should the channel
                    // close anyway, heartbeats still go.
                    Err(broadcast::error::RecvError::Closed) => {
                        reports_open = false;
                        Event::Interval
                    }
                },
                reply = link.recv() => Event::Reply(Box::new(reply)),
            };
            let result = match event {
                Event::Stop => {
                    self.goodbye(link).await;
                    return End::Stopped;
                }
                Event::Heartbeat => self.send(&mut link).await,
                // Once an interval: a reload by another trigger (the file,
                // SIGHUP, `POST /-/reload`) is reported without waiting for
                // the heartbeat.
                Event::Interval if self.has_news() => self.send(&mut link).await,
                Event::Interval => Ok(()),
                Event::Reply(reply) => reply.map(|r| self.replies.push_back(r)),
            };
            if let Err(failure) = result {
                return failed(failure);
            }
        }
    }

    /// Send the next message. A message the server will not take
    /// (`BadRequest`) is not sent again: it is logged, and the next
    /// heartbeat goes on.
    async fn send(&mut self, link: &mut Link) -> Result<(), Failure> {
        let message = self.message();
        let result = link.send(&message, &self.headers()).await;
        if result.is_ok() {
            self.metrics.sent.inc();
            self.metrics.connected.set(1.0);
        }
        match result {
            Ok(Some(reply)) => {
                self.replies.push_back(reply);
                Ok(())
            }
            Ok(None) => Ok(()),
            Err(Failure::Rejected(reason)) => {
                self.metrics.rejected.inc();
                tracing::error!(opamp = %self.endpoint.url(), sequence_num = message.sequence_num, reason = %reason,
                    "the OpAMP server refused a message; it is not sent again");
                Ok(())
            }
            Err(failure) => {
                self.metrics.failed.inc();
                Err(failure)
            }
        }
    }

    /// Handle the answers received, within [`MAX_REPLIES_IN_A_ROW`].
    async fn settle(&mut self, link: &mut Link) -> Result<(), Failure> {
        for _ in 0..MAX_REPLIES_IN_A_ROW {
            let Some(reply) = self.replies.pop_front() else {
                return Ok(());
            };
            self.handle(reply, link).await?;
        }
        // The rest waits for the next heartbeat's answer.
        self.replies.clear();
        Ok(())
    }

    async fn handle(&mut self, reply: pb::ServerToAgent, link: &mut Link) -> Result<(), Failure> {
        let full = reply.flags & pb::ServerToAgentFlags::ReportFullState as u64 != 0;
        if full {
            self.full = true;
        }
        if let Some(offers) = reply.connection_settings {
            self.offer(offers).await;
        }
        if reply.agent_identification.is_some() {
            // Only an agent that asked for a uid adopts one; this one keeps
            // the uid derived from its instance id.
            tracing::debug!("ignoring an instance uid this agent did not ask for");
        }
        match reply.remote_config {
            Some(offer) => self.remote_config(offer, link).await,
            None if full => self.send(link).await,
            None => Ok(()),
        }
    }

    /// Apply an offered config through the agent's reload path, reporting
    /// APPLYING, then APPLIED or FAILED.
    async fn remote_config(
        &mut self,
        offer: pb::AgentRemoteConfig,
        link: &mut Link,
    ) -> Result<(), Failure> {
        let hash = offer.config_hash;
        let settled = [
            pb::RemoteConfigStatuses::Applied as i32,
            pb::RemoteConfigStatuses::Failed as i32,
        ];
        if hash == self.remote.last_remote_config_hash && settled.contains(&self.remote.status) {
            // Already applied (or refused): say so again, change nothing.
            self.metrics.repeated.inc();
            self.reported.remote = None;
            return self.send(link).await;
        }
        let files = offer.config.map(|c| c.config_map).unwrap_or_default();
        let short = phoenix_processors::hash::hex(&hash[..hash.len().min(8)]);
        let text = match files.len() {
            // What a native revert push does: back to the local config.
            0 => Ok(None),
            1 => {
                let (name, file) = files.into_iter().next().unwrap_or_default();
                String::from_utf8(file.body).map(Some).map_err(|_| {
                    format!(
                        "the config file {:?} is not UTF-8 text",
                        sanitize(&name, 128)
                    )
                })
            }
            n => Err(format!(
                "the remote config has {n} files; Phoenix takes one file, the agent config (YAML)"
            )),
        };
        tracing::info!(hash = %short, revert = matches!(text, Ok(None)), "remote config offered by the OpAMP server");
        let mut applying = Ok(());
        let outcome = match text {
            Err(message) => Err(message),
            Ok(text) => {
                self.remote = status(&hash, pb::RemoteConfigStatuses::Applying, "");
                // Applied even when APPLYING could not be delivered: the
                // outcome then goes with the next connection's full state,
                // rather than APPLYING standing for good.
                applying = self.send(link).await;
                request_reload(&self.reloads, text)
                    .await
                    .map_err(|e| error_text(&e))
            }
        };
        self.remote = match outcome {
            Ok(outcome) => {
                self.metrics.applied.inc();
                tracing::info!(hash = %short, changed = outcome.changed, "remote config applied");
                status(&hash, pb::RemoteConfigStatuses::Applied, "")
            }
            Err(message) => {
                self.metrics.refused.inc();
                // The reload path has logged a loader error itself.
                tracing::warn!(hash = %short, "remote config refused, the running config stays");
                status(&hash, pb::RemoteConfigStatuses::Failed, &message)
            }
        };
        applying?;
        self.send(link).await
    }

    /// Apply a connection settings offer: its headers go on every later
    /// request (the agent's credential among them, kept in `--state-dir`
    /// like the native one), its heartbeat interval replaces ours. A
    /// repeated offer (same hash) changes nothing.
    async fn offer(&mut self, offers: pb::ConnectionSettingsOffers) {
        if self.offer_hash.as_ref() == Some(&offers.hash) {
            return;
        }
        let Some(settings) = offers.opamp else {
            self.offer_hash = Some(offers.hash);
            return;
        };
        let destination = settings.destination_endpoint.trim();
        if !destination.is_empty() && destination != self.endpoint.url() {
            tracing::warn!(offered = %sanitize(destination, 256),
                "the OpAMP server offers another endpoint: not supported, this one stays (--opamp)");
        }
        if settings.certificate.is_some() {
            tracing::warn!(
                "the OpAMP server offers a client certificate: not supported, the --controller-cert one stays"
            );
        }
        if settings.heartbeat_interval_seconds > 0 {
            self.heartbeat = Duration::from_secs(settings.heartbeat_interval_seconds)
                .clamp(MIN_HEARTBEAT, MAX_HEARTBEAT);
            tracing::info!(heartbeat = ?self.heartbeat, "heartbeat interval set by the OpAMP server");
        }
        if let Some(headers) = settings.headers {
            let mut offered = match offered_headers(&headers) {
                Ok(h) => h,
                Err(e) => {
                    tracing::warn!(error = %e, "ignoring the headers the OpAMP server offers");
                    self.offer_hash = Some(offers.hash);
                    return;
                }
            };
            if let Some(value) = offered.remove(CREDENTIAL_METADATA) {
                self.adopt_credential(value.to_str().unwrap_or_default())
                    .await;
            }
            self.offered = offered;
            // A WebSocket presents headers in its handshake only (HTTP
            // sends them with each request).
            self.reconnect = self.endpoint.transport() == Transport::WebSocket;
            tracing::info!(
                headers = self.offered.len() + usize::from(self.credential.is_some()),
                "connection settings from the OpAMP server applied: its headers go with every request"
            );
        }
        self.offer_hash = Some(offers.hash);
    }

    /// Use the credential the server offers from now on, once kept in
    /// `--state-dir` (when the instance id is kept there): one that could
    /// not be kept is not presented, so the enrollment token still admits
    /// this agent after a restart, as with the native client.
    async fn adopt_credential(&mut self, credential: &str) {
        if !identity::is_valid_credential(credential) {
            tracing::warn!("ignoring an offered credential that is not printable ASCII");
            return;
        }
        if self.credential.as_deref() == Some(credential) {
            return;
        }
        if let Some(dir) = &self.keep_in
            && let Err(error) = identity::keep_credential(dir, &self.uid_text, credential).await
        {
            tracing::warn!(file = identity::CREDENTIAL_FILE, error = %error,
                "cannot keep the credential the OpAMP server offered in --state-dir; not using it");
            return;
        }
        self.credential = Some(credential.to_string());
        tracing::info!(instance_uid = %self.uid_text, kept = self.keep_in.is_some(),
            "the OpAMP server issued this agent its own credential");
    }

    /// Every request's headers: the enrollment token, the credential, and
    /// the other offered headers.
    fn headers(&self) -> HeaderMap {
        let mut headers = self.offered.clone();
        if let Some(token) = &self.endpoint.authorization {
            headers.insert(AUTHORIZATION, token.clone());
        }
        if let Some(mut value) = self
            .credential
            .as_deref()
            .and_then(|c| HeaderValue::from_str(c).ok())
        {
            value.set_sensitive(true);
            headers.insert(CREDENTIAL_METADATA, value);
        }
        headers
    }

    /// Whether anything changed since it was last reported.
    fn has_news(&self) -> bool {
        let r = &self.reported;
        self.full
            || r.description.as_ref() != Some(&self.description())
            || r.health.as_ref() != Some(&self.health())
            || r.config_hash.as_deref() != Some(self.service.applied().hash.as_str())
            || r.remote.as_ref() != Some(&self.remote)
    }

    /// The next message: what changed (everything when full), and what
    /// every message carries.
    fn message(&mut self) -> pb::AgentToServer {
        let full = std::mem::take(&mut self.full);
        self.sequence += 1;
        let mut m = pb::AgentToServer {
            instance_uid: self.uid.to_vec(),
            sequence_num: self.sequence,
            capabilities: CAPABILITIES,
            ..Default::default()
        };
        let description = self.description();
        if full || self.reported.description.as_ref() != Some(&description) {
            m.agent_description = Some(description.clone());
            self.reported.description = Some(description);
        }
        let health = self.health();
        if full || self.reported.health.as_ref() != Some(&health) {
            m.health = Some(health.clone());
            self.reported.health = Some(health);
        }
        // The hash names the text: read together, in this order, a reload
        // in between at worst reports the new text once more.
        let hash = self.service.applied().hash;
        if full || self.reported.config_hash.as_deref() != Some(hash.as_str()) {
            m.effective_config = Some(effective_config(&self.service.config_text()));
            self.reported.config_hash = Some(hash);
        }
        if full || self.reported.remote.as_ref() != Some(&self.remote) {
            m.remote_config_status = Some(self.remote.clone());
            self.reported.remote = Some(self.remote.clone());
        }
        m
    }

    /// Who the agent is: identifying `service.name`, `service.instance.id`
    /// and `service.version`; then the host, the OS, and the `--label`s
    /// under their own keys (as a native Hello has them).
    fn description(&self) -> pb::AgentDescription {
        let host_name = reported_host_name(&self.service.config(), &self.host_name);
        let mut non_identifying = vec![
            attribute("host.name", &host_name),
            attribute("os.type", std::env::consts::OS),
        ];
        for (key, value) in &self.labels {
            // A label cannot pass for one of the attributes above.
            if key != "host.name" && key != "os.type" && !key.starts_with("service.") {
                non_identifying.push(attribute(key, value));
            }
        }
        pb::AgentDescription {
            identifying_attributes: vec![
                attribute("service.name", SERVICE_NAME),
                attribute("service.instance.id", &self.uid_text),
                attribute("service.version", env!("CARGO_PKG_VERSION")),
            ],
            non_identifying_attributes: non_identifying,
        }
    }

    /// Healthy while pipelines run (a refused remote config leaves the
    /// running one in place: its error is the last error, the agent stays
    /// healthy); one component per pipeline.
    fn health(&self) -> pb::ComponentHealth {
        let applied = self.service.applied();
        let since = applied
            .applied_at_unix_seconds
            .saturating_mul(1_000_000_000);
        let pipelines: BTreeMap<String, pb::ComponentHealth> = self
            .service
            .pipeline_names()
            .into_iter()
            .map(|name| {
                let health = pb::ComponentHealth {
                    healthy: true,
                    status: "StatusOK".into(),
                    status_time_unix_nano: since,
                    ..Default::default()
                };
                (format!("pipeline:{name}"), health)
            })
            .collect();
        let healthy = !pipelines.is_empty();
        let last_error = if self.remote.status == pb::RemoteConfigStatuses::Failed as i32 {
            self.remote.error_message.clone()
        } else {
            String::new()
        };
        pb::ComponentHealth {
            healthy,
            start_time_unix_nano: self.started_unix_nano,
            last_error,
            status: if healthy {
                "StatusOK"
            } else {
                "no pipeline runs"
            }
            .into(),
            status_time_unix_nano: since,
            component_health_map: pipelines.into_iter().collect(),
        }
    }

    /// The last message: what changed, and `agent_disconnect`.
    async fn goodbye(&mut self, mut link: Link) {
        let mut message = self.message();
        message.agent_disconnect = Some(pb::AgentDisconnect {});
        let headers = self.headers();
        match tokio::time::timeout(GOODBYE_TIMEOUT, link.send(&message, &headers)).await {
            Ok(Ok(_)) => {
                tracing::info!(opamp = %self.endpoint.url(), "disconnected from the OpAMP server")
            }
            Ok(Err(failure)) => tracing::debug!(
                reason = failure.reason(),
                "the OpAMP goodbye was not delivered"
            ),
            Err(_) => tracing::debug!("the OpAMP goodbye timed out"),
        }
        link.close().await;
    }
}

fn ticker(every: Duration) -> tokio::time::Interval {
    let mut t = tokio::time::interval_at(Instant::now() + every, every);
    t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    t
}

fn status(hash: &[u8], state: pb::RemoteConfigStatuses, error: &str) -> pb::RemoteConfigStatus {
    pb::RemoteConfigStatus {
        last_remote_config_hash: hash.to_vec(),
        status: state as i32,
        error_message: error.to_string(),
    }
}

fn effective_config(text: &str) -> pb::EffectiveConfig {
    let file = pb::AgentConfigFile {
        body: text.as_bytes().to_vec(),
        content_type: YAML.into(),
    };
    pb::EffectiveConfig {
        config_map: Some(pb::AgentConfigMap {
            config_map: [(CONFIG_FILE_KEY.to_string(), file)].into_iter().collect(),
        }),
    }
}

fn attribute(key: &str, value: &str) -> pb::KeyValue {
    pb::KeyValue {
        key: key.into(),
        value: Some(pb::AnyValue {
            value: Some(pb::any_value::Value::StringValue(value.into())),
        }),
    }
}

/// An offered header set, checked: valid names and values, none of the
/// transport's own, bounded.
fn offered_headers(headers: &pb::Headers) -> Result<HeaderMap, String> {
    if headers.headers.len() > MAX_OFFERED_HEADERS {
        return Err(format!(
            "{} headers offered, at most {MAX_OFFERED_HEADERS} taken",
            headers.headers.len()
        ));
    }
    let mut out = HeaderMap::new();
    for header in &headers.headers {
        let key = sanitize(&header.key, 64);
        let name = HeaderName::from_bytes(header.key.trim().as_bytes())
            .map_err(|_| format!("{key:?} is not a header name"))?;
        if TRANSPORT_HEADERS.contains(&name.as_str()) || name.as_str().starts_with("sec-websocket-")
        {
            return Err(format!("{key:?} is the transport's to set"));
        }
        if header.value.len() > MAX_HEADER_VALUE {
            return Err(format!(
                "the value of {key:?} is over {MAX_HEADER_VALUE} bytes"
            ));
        }
        let mut value = HeaderValue::from_str(&header.value)
            .map_err(|_| format!("the value of {key:?} is not a header value"))?;
        // Offered headers are credentials, as a rule: never in debug output.
        value.set_sensitive(true);
        out.insert(name, value);
    }
    Ok(out)
}

fn unix_nanos(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(key: &str, value: &str) -> pb::Header {
        pb::Header {
            key: key.into(),
            value: value.into(),
        }
    }

    #[test]
    fn offered_headers_are_checked() {
        let ok = pb::Headers {
            headers: vec![
                header("X-Phoenix-Agent-Credential", "c0ffee"),
                header("x-team", "a"),
            ],
        };
        let map = offered_headers(&ok).unwrap();
        assert_eq!(map.len(), 2);
        assert!(map[CREDENTIAL_METADATA].is_sensitive());
        for bad in [
            header("bad name", "x"),
            header("host", "elsewhere"),
            header("Sec-WebSocket-Key", "x"),
            header("x-a", "line\nbreak"),
            header("x-a", &"v".repeat(MAX_HEADER_VALUE + 1)),
        ] {
            let set = pb::Headers { headers: vec![bad] };
            assert!(offered_headers(&set).is_err(), "{set:?}");
        }
        let many = pb::Headers {
            headers: vec![header("x-a", "b"); MAX_OFFERED_HEADERS + 1],
        };
        assert!(offered_headers(&many).is_err());
    }

    #[test]
    fn capabilities_are_the_ones_implemented() {
        use pb::AgentCapabilities as C;
        let implemented = [
            C::ReportsStatus,
            C::AcceptsRemoteConfig,
            C::ReportsEffectiveConfig,
            C::ReportsHealth,
            C::ReportsRemoteConfig,
            C::ReportsHeartbeat,
            C::AcceptsOpAmpConnectionSettings,
        ];
        let bits = implemented.iter().fold(0, |all, c| all | *c as u64);
        assert_eq!(CAPABILITIES, bits, "{CAPABILITIES:#x}");
    }
}
