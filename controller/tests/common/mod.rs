//! Test harness: a controller started in-process on free ports with its own
//! data directory, fake agents speaking the real protocol over real gRPC
//! (the client generated in phoenix-proto), and an HTTP client.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use phoenix_controller::auth::{AuthSource, Token};
use phoenix_controller::{Running, Settings};
use phoenix_proto::v1::agent_control_client::AgentControlClient;
use phoenix_proto::v1::{
    AgentMessage, ConfigPush, ConfigState, ConfigStatus, ControllerMessage, EnrollmentKept,
    Heartbeat, Hello, agent_message, controller_message,
};
use serde_json::Value;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Channel, Endpoint};

pub const API_TOKEN: &str = "test-api-token-0123456789";
pub const AGENT_TOKEN: &str = "test-agent-token-0123456789";

/// A fresh, empty directory under the system temp dir.
pub fn temp_dir(name: &str) -> PathBuf {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let dir = std::env::temp_dir().join(format!(
        "phoenix-controller-test-{name}-{}-{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The `phoenixctl` binary. It belongs to another package, so Cargo does
/// not build it for these tests: `cargo build --workspace` (the README's
/// test command) puts it next to this test's own profile directory.
pub fn phoenixctl_binary() -> PathBuf {
    // target/<profile>/deps/<test-exe> → target/<profile>/phoenixctl
    let exe = std::env::current_exe().expect("test executable path");
    let path = exe
        .parent()
        .and_then(Path::parent)
        .expect("test executable lives in target/<profile>/deps")
        .join("phoenixctl");
    assert!(
        path.exists(),
        "{} is missing: run `cargo build --workspace` (or `cargo build -p phoenixctl`) first",
        path.display()
    );
    path
}

pub fn templates_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs/templates")
}

pub fn template(name: &str) -> String {
    std::fs::read_to_string(templates_dir().join(format!("{name}.yaml"))).unwrap()
}

/// A file of `tests/fixtures` (the test CA, the server's and an agent's
/// certificates and keys; `generate.sh` makes them).
pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// [`settings`] with the OpAMP port on and TLS on every port from the
/// fixtures; with `client_ca`, agents must present a certificate of the
/// test CA.
pub fn opamp_tls_settings(data_dir: &Path, client_ca: bool) -> Settings {
    let mut s = settings(data_dir);
    s.opamp_listen = Some("127.0.0.1:0".parse().unwrap());
    s.tls = Some(
        phoenix_controller::tls::TlsMaterial::load(&phoenix_controller::tls::TlsFiles {
            cert: fixture("server.pem"),
            key: fixture("server.key"),
            client_ca: client_ca.then(|| fixture("ca.pem")),
        })
        .unwrap(),
    );
    s
}

pub fn settings(data_dir: &Path) -> Settings {
    Settings {
        grpc_listen: "127.0.0.1:0".parse().unwrap(),
        http_listen: "127.0.0.1:0".parse().unwrap(),
        opamp_listen: None,
        opamp_timeout: phoenix_controller::DEFAULT_OPAMP_TIMEOUT,
        data_dir: data_dir.to_path_buf(),
        templates_dir: templates_dir(),
        api_auth: AuthSource::SingleToken(Token::new(API_TOKEN).unwrap()),
        agent_token: Token::new(AGENT_TOKEN).unwrap(),
        api_read_open: false,
        tls: None,
        agent_timeout: Duration::from_secs(30),
        push_timeout: Duration::from_secs(60),
        experiment_retention: phoenix_controller::DEFAULT_EXPERIMENT_RETENTION,
        audit_export: None,
        audit_retention: None,
    }
}

/// A controller running in this process.
pub struct TestController {
    pub running: Running,
    pub http: Http,
}

impl TestController {
    pub async fn start(settings: Settings) -> TestController {
        let running = phoenix_controller::start(settings)
            .await
            .expect("controller starts");
        let http = Http::new(format!("http://{}", running.http_addr), Some(API_TOKEN));
        TestController { running, http }
    }

    pub fn grpc_addr(&self) -> SocketAddr {
        self.running.grpc_addr
    }

    pub async fn stop(self) {
        self.running.shutdown().await;
    }
}

/// A JSON answer as its API type.
pub fn typed<T: serde::de::DeserializeOwned>(body: Value) -> T {
    let text = body.to_string();
    serde_json::from_value(body).unwrap_or_else(|e| panic!("{e}: {text}"))
}

/// A small JSON client of the API.
#[derive(Clone)]
pub struct Http {
    pub base: String,
    pub token: Option<String>,
    client: reqwest::Client,
}

impl Http {
    pub fn new(base: String, token: Option<&str>) -> Http {
        Http {
            base,
            token: token.map(str::to_string),
            client: reqwest::Client::new(),
        }
    }

    pub fn with_client(mut self, client: reqwest::Client) -> Http {
        self.client = client;
        self
    }

    pub fn without_token(&self) -> Http {
        Http {
            token: None,
            ..self.clone()
        }
    }

    pub async fn request(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<String>,
    ) -> (u16, Value) {
        let mut r = self.client.request(method, format!("{}{path}", self.base));
        if let Some(t) = &self.token {
            r = r.bearer_auth(t);
        }
        if let Some(b) = body {
            r = r.header("content-type", "application/json").body(b);
        }
        let response = r.send().await.expect("request sent");
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        self.request(reqwest::Method::GET, path, None).await
    }

    /// A 200 answer read into its API type: a field the type does not
    /// have, or lacks, fails the test here.
    pub async fn get_as<T: serde::de::DeserializeOwned>(&self, path: &str) -> T {
        let (status, body) = self.get(path).await;
        assert_eq!(status, 200, "GET {path}: {body}");
        typed(body)
    }

    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.request(reqwest::Method::POST, path, Some(body.to_string()))
            .await
    }

    /// Revoke agent `id` through the API; the revocation must succeed.
    pub async fn revoke(&self, id: &str) {
        let (status, body) = self
            .post(
                &format!("/api/v1/agents/{id}/revoke"),
                serde_json::json!({"reason": "test"}),
            )
            .await;
        assert_eq!(status, 200, "revoke {id}: {body}");
    }

    /// Poll `GET /api/v1/pushes/{id}` until `done` holds (10 s at most).
    pub async fn wait_push(&self, id: &str, done: impl Fn(&Value) -> bool) -> Value {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let (status, push) = self.get(&format!("/api/v1/pushes/{id}")).await;
            assert_eq!(status, 200, "{push}");
            if done(&push) {
                return push;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "push never reached the state: {push}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Poll `GET /api/v1/agents/{id}` until `done` holds (10 s at most).
    pub async fn wait_agent(&self, id: &str, done: impl Fn(&Value) -> bool) -> Value {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let (_, agent) = self.get(&format!("/api/v1/agents/{id}")).await;
            if done(&agent) {
                return agent;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "agent never reached the state: {agent}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// What a fake agent answers to a ConfigPush.
#[derive(Clone, Debug)]
pub enum Answer {
    /// APPLYING, then APPLIED with the pushed hash.
    Apply,
    /// FAILED with this error; the old config stays effective.
    Fail(String),
    /// Nothing (a hung agent).
    Ignore,
}

/// An agent speaking phoenix.agent.v1 over a real gRPC stream.
pub struct FakeAgent {
    pub id: String,
    tx: mpsc::Sender<AgentMessage>,
    /// Every ConfigPush received, in order.
    pub pushes: mpsc::UnboundedReceiver<ConfigPush>,
    /// The credential of the Enrollment received, if one was.
    enrollment: watch::Receiver<Option<String>>,
    reader: JoinHandle<()>,
}

pub struct FakeAgentSpec<'a> {
    pub id: &'a str,
    pub labels: &'a [(&'a str, &'a str)],
    pub token: &'a str,
    pub answer: Answer,
    /// The status reported in the Hello.
    pub status: Option<ConfigStatus>,
    /// Presented as `x-phoenix-agent-credential`.
    pub credential: Option<String>,
    /// Answer an Enrollment with EnrollmentKept, as the real agent does
    /// once it stored the credential. Off by default: an agent that never
    /// says so (an older one) keeps being admitted by the token alone.
    pub keep_credential: bool,
}

impl<'a> FakeAgentSpec<'a> {
    pub fn new(id: &'a str, labels: &'a [(&'a str, &'a str)]) -> Self {
        FakeAgentSpec {
            id,
            labels,
            token: AGENT_TOKEN,
            answer: Answer::Apply,
            status: None,
            credential: None,
            keep_credential: false,
        }
    }
}

pub async fn channel(addr: SocketAddr) -> Channel {
    Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .expect("gRPC connects")
}

impl FakeAgent {
    pub async fn connect(
        addr: SocketAddr,
        spec: FakeAgentSpec<'_>,
    ) -> Result<FakeAgent, tonic::Status> {
        Self::connect_on(channel(addr).await, spec).await
    }

    pub async fn connect_on(
        channel: Channel,
        spec: FakeAgentSpec<'_>,
    ) -> Result<FakeAgent, tonic::Status> {
        let mut client = AgentControlClient::new(channel);
        let (tx, rx) = mpsc::channel(64);
        tx.send(AgentMessage {
            body: Some(agent_message::Body::Hello(Hello {
                instance_id: spec.id.to_string(),
                host_name: format!("{}.test", spec.id),
                version: "0.1.0-test".into(),
                labels: spec
                    .labels
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                capabilities: vec!["config.push".into()],
                config_status: spec.status.clone(),
                policy: None,
            })),
        })
        .await
        .unwrap();
        let mut request = tonic::Request::new(ReceiverStream::new(rx));
        if !spec.token.is_empty() {
            request.metadata_mut().insert(
                "authorization",
                format!("Bearer {}", spec.token).parse().unwrap(),
            );
        }
        if let Some(credential) = &spec.credential {
            request
                .metadata_mut()
                .insert("x-phoenix-agent-credential", credential.parse().unwrap());
        }
        let mut inbound = client.session(request).await?.into_inner();
        let (pushes_tx, pushes) = mpsc::unbounded_channel();
        let (enrolled_tx, enrollment) = watch::channel(None);
        let answer_tx = tx.clone();
        let answer = spec.answer.clone();
        let keep_credential = spec.keep_credential;
        let reader = tokio::spawn(async move {
            let mut effective = String::new();
            while let Ok(Some(ControllerMessage { body })) = inbound.message().await {
                let push = match body {
                    Some(controller_message::Body::ConfigPush(push)) => push,
                    Some(controller_message::Body::Enrollment(e)) => {
                        enrolled_tx.send_replace(Some(e.credential));
                        if keep_credential {
                            let _ = answer_tx
                                .send(AgentMessage {
                                    body: Some(agent_message::Body::EnrollmentKept(
                                        EnrollmentKept {},
                                    )),
                                })
                                .await;
                        }
                        continue;
                    }
                    _ => continue,
                };
                let status = |state: ConfigState, error: &str, effective: &str| AgentMessage {
                    body: Some(agent_message::Body::ConfigStatus(ConfigStatus {
                        hash: push.hash.clone(),
                        state: state as i32,
                        error: error.to_string(),
                        push_id: push.push_id.clone(),
                        applied_at_unix_seconds: 1,
                        effective_hash: effective.to_string(),
                    })),
                };
                match &answer {
                    Answer::Apply => {
                        let _ = answer_tx
                            .send(status(ConfigState::Applying, "", &effective))
                            .await;
                        effective = push.hash.clone();
                        let _ = answer_tx
                            .send(status(ConfigState::Applied, "", &effective))
                            .await;
                    }
                    Answer::Fail(e) => {
                        let _ = answer_tx
                            .send(status(ConfigState::Failed, e, &effective))
                            .await;
                    }
                    Answer::Ignore => {}
                }
                let _ = pushes_tx.send(push);
            }
        });
        Ok(FakeAgent {
            id: spec.id.to_string(),
            tx,
            pushes,
            enrollment,
            reader,
        })
    }

    /// The credential the controller issued on this session (5 s at most).
    pub async fn credential(&mut self) -> String {
        let issued = tokio::time::timeout(
            Duration::from_secs(5),
            self.enrollment.wait_for(Option::is_some),
        )
        .await
        .expect("an Enrollment arrives in time")
        .expect("the session is open");
        issued.clone().unwrap_or_default()
    }

    /// Whether this session received an Enrollment so far.
    pub fn was_enrolled(&self) -> bool {
        self.enrollment.borrow().is_some()
    }

    /// Wait until the controller ends the session (5 s at most).
    pub async fn wait_closed(&mut self) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            match tokio::time::timeout_at(deadline, self.pushes.recv()).await {
                Ok(Some(_)) => continue,
                Ok(None) => return,
                Err(_) => panic!("the session of {} is still open", self.id),
            }
        }
    }

    pub async fn heartbeat(&self) {
        let _ = self
            .tx
            .send(AgentMessage {
                body: Some(agent_message::Body::Heartbeat(Heartbeat {
                    time_unix_nano: 1,
                    cpu_seconds_total: 0.5,
                    resident_memory_bytes: 12 << 20,
                })),
            })
            .await;
    }

    pub async fn send(&self, message: AgentMessage) {
        let _ = self.tx.send(message).await;
    }

    /// The next ConfigPush (5 s at most).
    pub async fn next_push(&mut self) -> ConfigPush {
        tokio::time::timeout(Duration::from_secs(5), self.pushes.recv())
            .await
            .expect("a push arrives in time")
            .expect("the session is open")
    }

    /// Whether a push arrives within `wait`.
    pub async fn got_push_within(&mut self, wait: Duration) -> bool {
        matches!(
            tokio::time::timeout(wait, self.pushes.recv()).await,
            Ok(Some(_))
        )
    }

    /// Leave: end the request stream and stop reading.
    pub async fn disconnect(self) {
        drop(self.tx);
        self.reader.abort();
        let _ = self.reader.await;
    }
}
