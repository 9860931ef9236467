//! The session loop: connect, say Hello, stream stats and heartbeats, apply
//! pushes, and when the session ends, wait (backoff with jitter) and do it
//! all again, for as long as the agent runs.

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use phoenix_proto::v1;
use phoenix_proto::v1::agent_control_client::AgentControlClient;
use phoenix_proto::v1::agent_message::Body as Outbound;
use phoenix_proto::v1::controller_message::Body as Inbound;
use tokio::sync::{broadcast, mpsc};
use tokio::time::Instant;
use tonic::codegen::tokio_stream::wrappers::ReceiverStream;
use tonic::metadata::AsciiMetadataValue;

use super::convert::interval_stats;
use super::identity::{self, InstanceId};
use super::{
    BACKOFF_MAX, Connection, STABLE_SESSION, error_text, reconnect_backoff, reported_host_name,
    request_reload, round,
};
use crate::exporter::otlp::retry::XorShift;
use crate::exporter::otlp::{error_chain, sanitize};
use crate::pipeline::accounting::IntervalReport;
use crate::pipeline::{ReloadRequest, Service};
use phoenix_config::{config_hash, short_hash as short};
use phoenix_telemetry::process::OwnUsage;
use phoenix_telemetry::registry::{Counter, Gauge, Registry};

/// What the agent can do, as the controller may check before pushing.
pub const CAPABILITIES: [&str; 2] = ["config.push", "stats.pipelines"];

const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(10);
/// Until the controller answers the session request: one that accepted the
/// connection but never answers is treated like one that is down.
const OPEN_TIMEOUT: Duration = Duration::from_secs(15);
/// Messages waiting for the network. Stats beyond it are dropped (and
/// counted) rather than buffered without bound behind a slow controller.
const OUTBOUND_QUEUE: usize = 64;
/// Largest controller message accepted: a whole config with room to spare,
/// and a bound on what a hostile or broken peer can make the agent hold.
const MAX_MESSAGE_BYTES: usize = 4 * 1024 * 1024;
/// Push outcomes kept for the next session when the connection broke
/// before they could be sent.
const MAX_UNDELIVERED: usize = 16;

/// `phoenix_controller_*` on the agent's `/metrics`.
#[derive(Clone)]
pub struct ControllerMetrics {
    connected: Arc<Gauge>,
    reconnects: Arc<Counter>,
    pushes_applied: Arc<Counter>,
    pushes_failed: Arc<Counter>,
    pushes_unchanged: Arc<Counter>,
    stats_sent: Arc<Counter>,
    stats_dropped: Arc<Counter>,
}

impl ControllerMetrics {
    pub fn new(registry: &Registry) -> Self {
        let push = |result: &str| {
            registry.counter(
                "phoenix_controller_pushes_total",
                "Configs pushed by the controller, by result: applied, failed (hash mismatch, invalid or not buildable; the running config stays), unchanged (already running).",
                &["result"],
                &[result],
            )
        };
        ControllerMetrics {
            connected: registry.gauge(
                "phoenix_controller_connected",
                "1 while a session with the controller is open, else 0.",
                &[],
                &[],
            ),
            reconnects: registry.counter(
                "phoenix_controller_reconnects_total",
                "Connection attempts after the first: every retry after a failed attempt or a lost session.",
                &[],
                &[],
            ),
            pushes_applied: push("applied"),
            pushes_failed: push("failed"),
            pushes_unchanged: push("unchanged"),
            stats_sent: registry.counter(
                "phoenix_controller_stats_sent_total",
                "Interval stats handed to the controller session.",
                &[],
                &[],
            ),
            stats_dropped: registry.counter(
                "phoenix_controller_stats_dropped_total",
                "Interval stats not sent during a session: the outbound queue was full (a slow controller) or the forwarder fell behind.",
                &[],
                &[],
            ),
        }
    }
}

/// The gRPC metadata key carrying the agent's own credential.
pub const CREDENTIAL_METADATA: &str = "x-phoenix-agent-credential";

/// Who the agent is to the controller.
pub struct Credentials {
    pub instance_id: InstanceId,
    /// The credential the controller issued to this instance id, once it
    /// was kept (in `keep_in`, or in memory without it).
    pub credential: Option<String>,
    /// Where a credential is kept: `--state-dir`, when the instance id is
    /// kept there too.
    pub keep_in: Option<PathBuf>,
}

/// The controller client. [`Client::run`] is meant to be spawned and
/// aborted when the agent stops.
pub struct Client {
    connection: Connection,
    instance_id: InstanceId,
    /// Presented on every session once kept; replaced by a new Enrollment.
    credential: Mutex<Option<String>>,
    keep_in: Option<PathBuf>,
    /// `gethostname(2)`, unless the running config names the host.
    host_name: String,
    labels: HashMap<String, String>,
    service: Service,
    /// The reload dispatcher's queue (the one `POST /-/reload` uses).
    reloads: mpsc::Sender<ReloadRequest>,
    metrics: ControllerMetrics,
    /// The running config's hash as last told to the controller (in a
    /// Hello or an APPLIED status). When the config changes some other way
    /// (the --config file, SIGHUP, `POST /-/reload`) the next interval sends
    /// a Hello, so the controller never believes a stale hash for long.
    told: Mutex<String>,
}

/// How a session ended.
enum SessionEnd {
    /// It never opened: not reachable, refused, or no answer.
    NotOpened(Failure),
    /// It was open for `lasted`, then broke or was closed.
    Lost { reason: String, lasted: Duration },
}

struct Failure {
    reason: String,
    /// What kind of failure (`connect`, `timeout`, or the gRPC code): the
    /// text varies from one attempt to the next (a TLS alert or a closed
    /// connection, whichever is read first), the kind much less.
    kind: String,
}

impl Failure {
    fn status(status: &tonic::Status) -> Failure {
        Failure {
            reason: describe(status),
            kind: format!("{:?}", status.code()),
        }
    }

    /// The controller refused the credentials: retrying will not help
    /// until someone fixes them, which deserves an error, not a warning.
    fn refused(&self) -> bool {
        self.kind == "Unauthenticated" || self.kind == "PermissionDenied"
    }
}

impl Client {
    pub fn new(
        connection: Connection,
        credentials: Credentials,
        host_name: String,
        labels: impl IntoIterator<Item = (String, String)>,
        service: Service,
        reloads: mpsc::Sender<ReloadRequest>,
        metrics: ControllerMetrics,
    ) -> Client {
        Client {
            connection,
            instance_id: credentials.instance_id,
            credential: Mutex::new(credentials.credential),
            keep_in: credentials.keep_in,
            host_name,
            labels: labels.into_iter().collect(),
            service,
            reloads,
            metrics,
            told: Mutex::new(String::new()),
        }
    }

    /// Keep a session open, forever. Only the agent stopping (aborting the
    /// task) ends this; nothing the controller sends can.
    pub async fn run(self) {
        let mut backoff = reconnect_backoff();
        let mut rng = XorShift::from_entropy();
        let mut undelivered: Vec<v1::ConfigStatus> = Vec::new();
        // Kinds of failure already logged during this outage: a controller
        // that stays down is logged once (and again only if it starts
        // failing differently, e.g. refusing the token once it is back),
        // not at every retry.
        let mut logged = BTreeSet::new();
        let url = self.connection.url().to_string();
        loop {
            let end = self.session(&mut undelivered).await;
            self.metrics.connected.set(0.0);
            let delay;
            match end {
                SessionEnd::Lost { reason, lasted } => {
                    if lasted >= STABLE_SESSION {
                        backoff.reset();
                    }
                    delay = backoff.next_delay(&mut rng);
                    tracing::warn!(
                        controller = %url,
                        reason = %reason,
                        retry_in = ?round(delay),
                        "controller session lost; the agent keeps running its current config and reconnects"
                    );
                    logged.clear();
                }
                SessionEnd::NotOpened(failure) => {
                    delay = backoff.next_delay(&mut rng);
                    if logged.contains(&failure.kind) {
                        tracing::debug!(controller = %url, reason = %failure.reason, retry_in = ?round(delay), "controller session still not open");
                    } else if failure.refused() {
                        tracing::error!(
                            controller = %url,
                            instance_id = %self.instance_id.id,
                            reason = %failure.reason,
                            "the controller refused this agent (check the enrollment token, the client certificate, and whether the agent was revoked); retrying with backoff up to {BACKOFF_MAX:?}"
                        );
                    } else {
                        tracing::warn!(
                            controller = %url,
                            reason = %failure.reason,
                            retry_in = ?round(delay),
                            "cannot open a controller session; retrying with backoff up to {BACKOFF_MAX:?}, the agent keeps running its current config"
                        );
                    }
                    logged.insert(failure.kind);
                }
            }
            tokio::time::sleep(delay).await;
            self.metrics.reconnects.inc();
        }
    }

    /// One session, from connecting to its end.
    async fn session(&self, undelivered: &mut Vec<v1::ConfigStatus>) -> SessionEnd {
        tracing::debug!(controller = %self.connection.url, "connecting to the controller");
        let channel = match self.connection.endpoint.connect().await {
            Ok(c) => c,
            Err(e) => {
                return SessionEnd::NotOpened(Failure {
                    reason: error_chain(&e),
                    kind: "connect".into(),
                });
            }
        };
        let mut client =
            AgentControlClient::new(channel).max_decoding_message_size(MAX_MESSAGE_BYTES);
        let (tx, rx) = mpsc::channel(OUTBOUND_QUEUE);
        // The queue is empty: the Hello always fits, and goes first.
        let (hello, hash) = self.hello();
        let _ = tx.try_send(hello);
        self.set_told(hash);
        let mut request = tonic::Request::new(ReceiverStream::new(rx));
        if let Some(auth) = &self.connection.authorization {
            request.metadata_mut().insert("authorization", auth.clone());
        }
        if let Some(credential) = self.credential_value() {
            request
                .metadata_mut()
                .insert(CREDENTIAL_METADATA, credential);
        }
        let mut inbound = match tokio::time::timeout(OPEN_TIMEOUT, client.session(request)).await {
            Err(_) => {
                return SessionEnd::NotOpened(Failure {
                    reason: format!("no answer within {OPEN_TIMEOUT:?}"),
                    kind: "timeout".into(),
                });
            }
            Ok(Err(status)) => return SessionEnd::NotOpened(Failure::status(&status)),
            Ok(Ok(response)) => response.into_inner(),
        };
        let opened = Instant::now();
        self.metrics.connected.set(1.0);
        let applied = self.service.applied();
        tracing::info!(
            controller = %self.connection.url,
            instance_id = %self.instance_id.id,
            hash = %short(&applied.hash),
            "controller session open"
        );
        // Outcomes of pushes answered while the previous session broke
        // (kept again should this one break too).
        for status in std::mem::take(undelivered) {
            deliver(&tx, status, undelivered).await;
        }

        let forward = self.forward(self.service.subscribe_reports(), tx.clone());
        let receive = self.receive(&mut inbound, &tx, undelivered);
        // Only the receiving side ends a session: it sees the connection
        // break, and it must not be cut off while a push is being applied
        // (its outcome would be lost).
        let reason = tokio::select! {
            reason = receive => reason,
            // `forward` never returns; the arm only completes the types.
            () = forward => "the stats forwarder stopped".into(),
        };
        SessionEnd::Lost {
            reason,
            lasted: opened.elapsed(),
        }
    }

    /// Controller messages, one at a time, until the session ends: returns
    /// why it ended.
    async fn receive(
        &self,
        inbound: &mut tonic::Streaming<v1::ControllerMessage>,
        tx: &mpsc::Sender<v1::AgentMessage>,
        undelivered: &mut Vec<v1::ConfigStatus>,
    ) -> String {
        loop {
            let message = match inbound.message().await {
                Ok(Some(m)) => m,
                Ok(None) => return "the controller closed the session".into(),
                Err(status) => return describe(&status),
            };
            match message.body {
                Some(Inbound::ConfigPush(push)) => {
                    // Pushes are applied in the order they came, one at a
                    // time: later ones wait in the stream meanwhile.
                    self.apply(push, tx, undelivered).await;
                }
                Some(Inbound::ReportRequest(_)) => {
                    let (hello, hash) = self.hello();
                    if tx.send(hello).await.is_ok() {
                        self.set_told(hash);
                    }
                }
                Some(Inbound::Enrollment(enrollment)) => {
                    self.enrolled(enrollment.credential, tx).await;
                }
                // A message kind from a newer controller: ignoring it keeps
                // old agents working with new controllers.
                None => tracing::debug!("ignoring a controller message this agent does not know"),
            }
        }
    }

    /// The credential as metadata, marked sensitive so that it never shows
    /// in debug output.
    fn credential_value(&self) -> Option<AsciiMetadataValue> {
        let credential = self.credential.lock().unwrap_or_else(|e| e.into_inner());
        let mut value = AsciiMetadataValue::try_from(credential.as_deref()?).ok()?;
        value.set_sensitive(true);
        Some(value)
    }

    /// Keep the credential the controller issued, then tell it so: from
    /// then on it requires the credential for this instance id. When it
    /// cannot be kept the agent says nothing and presents none, so the
    /// controller still lets the enrollment token enroll this id again
    /// (after a restart, say) instead of locking the agent out.
    async fn enrolled(&self, credential: String, tx: &mpsc::Sender<v1::AgentMessage>) {
        if !identity::is_valid_credential(&credential) {
            tracing::warn!("ignoring an enrollment whose credential is not printable ASCII");
            return;
        }
        if let Some(dir) = &self.keep_in
            && let Err(error) =
                identity::keep_credential(dir, &self.instance_id.id, &credential).await
        {
            tracing::warn!(
                file = identity::CREDENTIAL_FILE,
                error = %error,
                "cannot keep the credential the controller issued in --state-dir; this agent enrolls again on its next session"
            );
            return;
        }
        *self.credential.lock().unwrap_or_else(|e| e.into_inner()) = Some(credential);
        tracing::info!(
            instance_id = %self.instance_id.id,
            kept = self.keep_in.is_some(),
            "enrolled: the controller issued this agent its own credential"
        );
        let _ = tx
            .send(v1::AgentMessage {
                body: Some(Outbound::EnrollmentKept(v1::EnrollmentKept {})),
            })
            .await;
    }

    /// Check, apply and answer one push.
    async fn apply(
        &self,
        push: v1::ConfigPush,
        tx: &mpsc::Sender<v1::AgentMessage>,
        undelivered: &mut Vec<v1::ConfigStatus>,
    ) {
        let push_id = sanitize(&push.push_id, 128);
        let before = self.service.applied();
        tracing::info!(
            push_id = %push_id,
            hash = %short(&sanitize(&push.hash, 64)),
            experiment_id = %sanitize(&push.experiment_id, 128),
            bytes = push.yaml.len(),
            "config pushed by the controller"
        );
        let failed = |hash: &str, error: String| v1::ConfigStatus {
            hash: hash.to_string(),
            state: v1::ConfigState::Failed as i32,
            error,
            push_id: push.push_id.clone(),
            applied_at_unix_seconds: before.applied_at_unix_seconds,
            effective_hash: before.hash.clone(),
        };

        // The hash is the config's identity on the controller: applying a
        // body that does not match it would make the controller record one
        // config while the agent runs another. Past this check every status
        // names the hash in its canonical form (lowercase hex). A revert
        // carries no body: its hash is what the controller expects the
        // local config to be, and the answer says what it really is.
        let actual = if push.revert_to_local {
            push.hash.trim().to_ascii_lowercase()
        } else {
            config_hash(&push.yaml)
        };
        if !push.revert_to_local && !push.hash.trim().eq_ignore_ascii_case(&actual) {
            self.metrics.pushes_failed.inc();
            tracing::error!(push_id = %push_id, actual = %short(&actual), "pushed config refused: its hash does not match its YAML");
            let status = failed(
                &push.hash,
                format!(
                    "hash mismatch: the push says {:?}, the SHA-256 of its YAML is {actual}; nothing was applied",
                    sanitize(&push.hash, 80)
                ),
            );
            deliver(tx, status, undelivered).await;
            return;
        }

        let applying = v1::ConfigStatus {
            hash: actual.clone(),
            state: v1::ConfigState::Applying as i32,
            error: String::new(),
            push_id: push.push_id.clone(),
            applied_at_unix_seconds: before.applied_at_unix_seconds,
            effective_hash: before.hash.clone(),
        };
        // Transient: not worth resending if the session breaks now.
        let _ = tx.send(config_status_message(applying)).await;

        let result =
            request_reload(&self.reloads, (!push.revert_to_local).then_some(push.yaml)).await;
        let status = match result {
            Ok(outcome) => {
                if outcome.changed {
                    self.metrics.pushes_applied.inc();
                } else {
                    self.metrics.pushes_unchanged.inc();
                }
                let now = self.service.applied();
                self.set_told(now.hash.clone());
                tracing::info!(push_id = %push_id, hash = %short(&outcome.hash), changed = outcome.changed, "pushed config applied");
                v1::ConfigStatus {
                    hash: outcome.hash.clone(),
                    state: v1::ConfigState::Applied as i32,
                    error: String::new(),
                    push_id: push.push_id.clone(),
                    applied_at_unix_seconds: now.applied_at_unix_seconds,
                    effective_hash: now.hash,
                }
            }
            Err(e) => {
                self.metrics.pushes_failed.inc();
                // The reload path has logged the error itself.
                failed(&actual, error_text(&e))
            }
        };
        deliver(tx, status, undelivered).await;
    }

    /// Every interval's stats, and a heartbeat, until the agent stops.
    async fn forward(
        &self,
        mut reports: broadcast::Receiver<Arc<IntervalReport>>,
        tx: mpsc::Sender<v1::AgentMessage>,
    ) {
        let mut heartbeat =
            tokio::time::interval_at(Instant::now() + HEARTBEAT_INTERVAL, HEARTBEAT_INTERVAL);
        heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let message = tokio::select! {
                report = reports.recv() => match report {
                    Ok(report) => {
                        self.tell_if_changed(&tx);
                        stats_message(&report)
                    }
                    Err(broadcast::error::RecvError::Lagged(missed)) => {
                        self.metrics.stats_dropped.add(missed);
                        continue;
                    }
                    // The service outlives this task (we hold a clone).
                    Err(broadcast::error::RecvError::Closed) => break,
                },
                _ = heartbeat.tick() => heartbeat_message(),
            };
            let is_stats = matches!(message.body, Some(Outbound::Stats(_)));
            match tx.try_send(message) {
                Ok(()) if is_stats => self.metrics.stats_sent.inc(),
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(_)) if is_stats => {
                    self.metrics.stats_dropped.inc()
                }
                // A heartbeat behind a full queue is redundant anyway.
                Err(mpsc::error::TrySendError::Full(_)) => {}
                // The connection is gone; `receive` notices and ends the
                // session. Nothing more to send until then.
                Err(mpsc::error::TrySendError::Closed(_)) => {
                    if is_stats {
                        self.metrics.stats_dropped.inc();
                    }
                    break;
                }
            }
        }
        std::future::pending::<()>().await;
    }

    /// A Hello when the running config is not the one the controller was
    /// last told about. Checked once an interval: a reload is rare, a hash
    /// comparison cheap.
    fn tell_if_changed(&self, tx: &mpsc::Sender<v1::AgentMessage>) {
        let running = self.service.applied().hash;
        if *self.told.lock().unwrap_or_else(|e| e.into_inner()) == running {
            return;
        }
        let (hello, hash) = self.hello();
        if tx.try_send(hello).is_ok() {
            self.set_told(hash);
        }
    }

    fn set_told(&self, hash: String) {
        *self.told.lock().unwrap_or_else(|e| e.into_inner()) = hash;
    }

    /// The full state report, and the hash it reports as running.
    fn hello(&self) -> (v1::AgentMessage, String) {
        let applied = self.service.applied();
        let config = self.service.config();
        let host_name = reported_host_name(&config, &self.host_name);
        let hash = applied.hash.clone();
        let local = self.service.local_config();
        let policy = &local.remote_policy;
        // Absolute: the controller compares them with paths of its own.
        let paths = |list: &[std::path::PathBuf]| -> Vec<String> {
            list.iter()
                .map(|p| phoenix_config::policy::normalise(p).display().to_string())
                .collect()
        };
        let message = v1::AgentMessage {
            body: Some(Outbound::Hello(v1::Hello {
                instance_id: self.instance_id.id.clone(),
                host_name,
                version: env!("CARGO_PKG_VERSION").to_string(),
                labels: self.labels.clone(),
                capabilities: CAPABILITIES.iter().map(|c| c.to_string()).collect(),
                config_status: Some(v1::ConfigStatus {
                    hash: applied.hash.clone(),
                    state: v1::ConfigState::Applied as i32,
                    error: String::new(),
                    push_id: String::new(),
                    applied_at_unix_seconds: applied.applied_at_unix_seconds,
                    effective_hash: applied.hash,
                }),
                policy: Some(v1::RemotePolicy {
                    file_export_dirs: paths(&policy.file_export_dirs),
                    env: policy.env.clone(),
                    otlp_endpoints: policy.otlp_endpoints.clone(),
                    allow_root_path: policy.allow_root_path,
                    ca_files: paths(&policy.ca_files),
                    root_path: local.procfs_root_path().display().to_string(),
                    telemetry_json: serde_json::to_string(&local.telemetry).unwrap_or_default(),
                }),
            })),
        };
        (message, hash)
    }
}

/// Send a final push outcome, or keep it for the next session when this
/// one broke meanwhile: the controller must learn how every push ended.
async fn deliver(
    tx: &mpsc::Sender<v1::AgentMessage>,
    status: v1::ConfigStatus,
    undelivered: &mut Vec<v1::ConfigStatus>,
) {
    if let Err(mpsc::error::SendError(message)) = tx.send(config_status_message(status)).await
        && let Some(Outbound::ConfigStatus(status)) = message.body
    {
        if undelivered.len() >= MAX_UNDELIVERED {
            undelivered.remove(0);
        }
        undelivered.push(status);
    }
}

fn config_status_message(status: v1::ConfigStatus) -> v1::AgentMessage {
    v1::AgentMessage {
        body: Some(Outbound::ConfigStatus(status)),
    }
}

fn stats_message(report: &IntervalReport) -> v1::AgentMessage {
    v1::AgentMessage {
        body: Some(Outbound::Stats(interval_stats(report))),
    }
}

fn heartbeat_message() -> v1::AgentMessage {
    let usage = OwnUsage::read().unwrap_or_default();
    v1::AgentMessage {
        body: Some(Outbound::Heartbeat(v1::Heartbeat {
            time_unix_nano: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
                .unwrap_or(0),
            cpu_seconds_total: usage.cpu_seconds,
            resident_memory_bytes: usage.resident_bytes,
        })),
    }
}

/// A gRPC status for a log line: the code and the server's message (made
/// printable and bounded), and for transport errors their cause.
fn describe(status: &tonic::Status) -> String {
    let mut out = format!("{:?}", status.code());
    let message = sanitize(status.message(), 256);
    if !message.is_empty() {
        out.push_str(": ");
        out.push_str(&message);
    }
    if let Some(source) = std::error::Error::source(status) {
        let cause = error_chain(source);
        if !out.contains(&cause) {
            out.push_str(": ");
            out.push_str(&cause);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heartbeats_carry_the_agents_own_cost() {
        let Some(Outbound::Heartbeat(h)) = heartbeat_message().body else {
            panic!("a heartbeat");
        };
        assert!(h.time_unix_nano > 0);
        assert!(h.resident_memory_bytes > 0);
        assert!(h.cpu_seconds_total >= 0.0);
    }

    #[test]
    fn statuses_describe_code_message_and_cause() {
        let s = tonic::Status::unauthenticated("bad token\u{1b}[2J");
        assert_eq!(describe(&s), "Unauthenticated: bad token [2J");
    }
}
