//! The controller client against a fake controller: the real agent binary,
//! a real gRPC server built from the protocol's generated code, real files.
//!
//! Each fake controller runs on its own runtime so that stopping it drops
//! every connection at once, as a crashed controller would.

use std::collections::HashMap;
use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, mpsc as std_mpsc};
use std::time::{Duration, Instant};

use phoenix_proto::v1::agent_control_server::{AgentControl, AgentControlServer};
use phoenix_proto::v1::agent_message::Body as FromAgent;
use phoenix_proto::v1::controller_message::Body as ToAgent;
use phoenix_proto::v1::{
    AgentMessage, ConfigPush, ConfigState, ConfigStatus, ControllerMessage, Hello, ReportRequest,
};
use phoenix_tests::lines_with;
use tonic::codegen::tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

const TOKEN: &str = "t";
/// Generous: the machine runs other builds and tests at the same time.
const WAIT: Duration = Duration::from_secs(20);

// ---------------------------------------------------------------- fake controller

/// What the fake controller saw.
#[derive(Debug)]
enum Event {
    /// A session was refused (wrong or missing token).
    Refused(Option<String>),
    /// Boxed: messages are large, refusals small.
    Message(Box<AgentMessage>),
}

/// What an agent message carries, if the event is one.
fn body(event: Event) -> Option<FromAgent> {
    match event {
        Event::Message(m) => m.body,
        Event::Refused(_) => None,
    }
}

type Outbound = tokio::sync::mpsc::Sender<Result<ControllerMessage, Status>>;

#[derive(Clone)]
struct FakeService {
    token: String,
    events: std_mpsc::Sender<Event>,
    /// The latest session's way back to the agent.
    outbound: Arc<Mutex<Option<Outbound>>>,
}

#[tonic::async_trait]
impl AgentControl for FakeService {
    type SessionStream = ReceiverStream<Result<ControllerMessage, Status>>;

    async fn session(
        &self,
        request: Request<Streaming<AgentMessage>>,
    ) -> Result<Response<Self::SessionStream>, Status> {
        let presented = request
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        if presented.as_deref() != Some(&format!("Bearer {}", self.token)) {
            let _ = self.events.send(Event::Refused(presented));
            return Err(Status::unauthenticated("unknown token"));
        }
        let mut inbound = request.into_inner();
        let (tx, rx) = tokio::sync::mpsc::channel(16);
        *self.outbound.lock().unwrap() = Some(tx);
        let events = self.events.clone();
        tokio::spawn(async move {
            while let Ok(Some(message)) = inbound.message().await {
                if events.send(Event::Message(Box::new(message))).is_err() {
                    break;
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

struct FakeController {
    addr: SocketAddr,
    runtime: Option<tokio::runtime::Runtime>,
    events: std_mpsc::Receiver<Event>,
    outbound: Arc<Mutex<Option<Outbound>>>,
}

impl FakeController {
    /// On `port` (0: any free one), accepting `token`.
    fn start(port: u16, token: &str) -> FakeController {
        Self::start_with(port, token, None)
    }

    /// Over TLS with the test server certificate, requiring a client
    /// certificate signed by the test client CA.
    fn start_mtls(token: &str) -> FakeController {
        let tls = tonic::transport::ServerTlsConfig::new()
            .identity(tonic::transport::Identity::from_pem(
                include_str!("tls/server.pem"),
                include_str!("tls/server-key.pem"),
            ))
            .client_ca_root(tonic::transport::Certificate::from_pem(include_str!(
                "tls/client-ca.pem"
            )));
        Self::start_with(0, token, Some(tls))
    }

    fn start_with(
        port: u16,
        token: &str,
        tls: Option<tonic::transport::ServerTlsConfig>,
    ) -> FakeController {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        // The agent was connected to this port a moment ago: binding it
        // again may need a few tries while the old sockets close.
        let deadline = Instant::now() + WAIT;
        let listener = loop {
            match runtime.block_on(tokio::net::TcpListener::bind(("127.0.0.1", port))) {
                Ok(l) => break l,
                Err(e) if Instant::now() < deadline => {
                    eprintln!("bind 127.0.0.1:{port}: {e}; retrying");
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(e) => panic!("bind 127.0.0.1:{port}: {e}"),
            }
        };
        let addr = listener.local_addr().unwrap();
        let (events_tx, events) = std_mpsc::channel();
        let outbound = Arc::new(Mutex::new(None));
        let service = FakeService {
            token: token.to_string(),
            events: events_tx,
            outbound: outbound.clone(),
        };
        let mut server = tonic::transport::Server::builder();
        if let Some(tls) = tls {
            server = server.tls_config(tls).unwrap();
        }
        runtime.spawn(
            server
                .add_service(AgentControlServer::new(service))
                .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
        );
        FakeController {
            addr,
            runtime: Some(runtime),
            events,
            outbound,
        }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Gone at once, connections and all, like a crashed controller.
    fn stop(mut self) -> u16 {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
        self.addr.port()
    }

    fn send(&self, body: ToAgent) {
        let tx = self
            .outbound
            .lock()
            .unwrap()
            .clone()
            .expect("an open session");
        tx.try_send(Ok(ControllerMessage { body: Some(body) }))
            .expect("room in the session's queue");
    }

    fn push(&self, push_id: &str, yaml: &str, hash: &str) {
        self.send(ToAgent::ConfigPush(ConfigPush {
            push_id: push_id.into(),
            hash: hash.into(),
            yaml: yaml.into(),
            experiment_id: String::new(),
            revert_to_local: false,
        }));
    }

    /// The next event `pick` accepts, skipping the others (stats,
    /// heartbeats), or None after `timeout`.
    fn next<T>(&self, timeout: Duration, mut pick: impl FnMut(Event) -> Option<T>) -> Option<T> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.checked_duration_since(Instant::now())?;
            match self.events.recv_timeout(left) {
                Ok(event) => {
                    if let Some(t) = pick(event) {
                        return Some(t);
                    }
                }
                Err(_) => return None,
            }
        }
    }

    fn next_hello(&self) -> Hello {
        self.next(WAIT, |e| match body(e)? {
            FromAgent::Hello(h) => Some(h),
            _ => None,
        })
        .expect("a Hello from the agent")
    }

    /// The next config status answering `push_id`.
    fn next_status(&self, push_id: &str) -> ConfigStatus {
        self.next(WAIT, |e| match body(e)? {
            FromAgent::ConfigStatus(s) if s.push_id == push_id => Some(s),
            _ => None,
        })
        .unwrap_or_else(|| panic!("a config status for push {push_id}"))
    }
}

impl Drop for FakeController {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

// ---------------------------------------------------------------- the agent

struct Agent {
    child: Child,
    telemetry: SocketAddr,
    log: PathBuf,
}

impl Agent {
    fn start(dir: &Path, config: &Path, controller: &str, telemetry: SocketAddr) -> Agent {
        Self::start_with(dir, config, controller, telemetry, &[])
    }

    fn start_with(
        dir: &Path,
        config: &Path,
        controller: &str,
        telemetry: SocketAddr,
        extra: &[&Path],
    ) -> Agent {
        let log = dir.join(format!(
            "agent-{}.log",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        let child = Command::new(env!("CARGO_BIN_EXE_phoenix-agent"))
            .arg("--config")
            .arg(config)
            .args(["--controller", controller, "--label", "env=test"])
            .arg("--state-dir")
            .arg(dir.join("state"))
            .args(["--log-level", "debug,h2=info,hyper=info,tower=info"])
            .args(extra)
            .env("PHOENIX_CONTROLLER_TOKEN", TOKEN)
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("start phoenix-agent");
        Agent {
            child,
            telemetry,
            log,
        }
    }

    fn get(&self, path: &str) -> Option<String> {
        let mut s = TcpStream::connect_timeout(&self.telemetry, Duration::from_secs(2)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
        )
        .ok()?;
        let mut body = String::new();
        s.read_to_string(&mut body).ok()?;
        body.split_once("\r\n\r\n").map(|(_, b)| b.to_string())
    }

    /// The running config's hash, from `/healthz`.
    fn hash(&self) -> Option<String> {
        let body = self.get("/healthz")?;
        let v: serde_json::Value = serde_json::from_str(&body).ok()?;
        v["config"]["hash"].as_str().map(str::to_string)
    }

    fn metric(&self, line_start: &str) -> Option<f64> {
        self.get("/metrics")?
            .lines()
            .find_map(|l| l.strip_prefix(line_start)?.trim().parse().ok())
    }

    fn assert_running(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!("the agent exited ({status}):\n{}", self.logs());
        }
    }

    fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM, as a service manager stops it.
    fn stop(mut self) {
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + WAIT;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("the agent did not stop on SIGTERM:\n{}", self.logs());
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------- helpers

struct TempDir(PathBuf);

impl TempDir {
    fn new(label: &str) -> TempDir {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let path = std::env::temp_dir().join(format!(
            "phoenix-controller-client-{label}-{}-{nanos}",
            std::process::id()
        ));
        std::fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn free_addr() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// A 1 s procfs scrape into `out`, with the named pipelines.
fn config(out: &Path, telemetry: SocketAddr, pipelines: &[&str]) -> String {
    let mut yaml = format!(
        "receivers:\n  procfs:\n    collection_interval: 1s\n\
         exporters:\n  file: {{ path: {} }}\n\
         service:\n  telemetry: {{ address: \"{telemetry}\" }}\n\
         \x20 remote_config: {{ file_export_dirs: [\"{}\"] }}\n  pipelines:\n",
        out.display(),
        out.parent().unwrap_or(Path::new("/")).display()
    );
    for p in pipelines {
        yaml.push_str(&format!(
            "    {p}: {{ receivers: [procfs], processors: [], exporters: [file] }}\n"
        ));
    }
    yaml
}

fn sha256(text: &str) -> String {
    phoenix_config::config_hash(text)
}

fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while Instant::now() < deadline {
        if cond() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("timed out waiting for {what}");
}

fn file_len(path: &Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

fn state(s: &ConfigStatus) -> ConfigState {
    ConfigState::try_from(s.state).unwrap_or(ConfigState::Unspecified)
}

// ---------------------------------------------------------------- tests

#[test]
fn hello_stats_and_every_kind_of_push() {
    let dir = TempDir::new("push");
    let out = dir.0.join("metrics.jsonl");
    let telemetry = free_addr();
    let first = config(&out, telemetry, &["metrics/baseline"]);
    let config_file = dir.0.join("agent.yaml");
    std::fs::write(&config_file, &first).unwrap();
    let controller = FakeController::start(0, TOKEN);
    let mut agent = Agent::start(&dir.0, &config_file, &controller.url(), telemetry);

    // Hello: who the agent is and what it runs.
    let hello = controller.next_hello();
    assert!(!hello.instance_id.is_empty());
    assert!(!hello.host_name.is_empty());
    assert_eq!(hello.version, env!("CARGO_PKG_VERSION"));
    assert_eq!(
        hello.labels,
        HashMap::from([("env".to_string(), "test".to_string())])
    );
    assert!(hello.capabilities.contains(&"config.push".to_string()));
    assert!(hello.capabilities.contains(&"stats.pipelines".to_string()));
    let status = hello.config_status.clone().expect("a config status");
    assert_eq!(status.hash, sha256(&first));
    assert_eq!(status.effective_hash, sha256(&first));
    assert_eq!(state(&status), ConfigState::Applied);
    assert!(status.applied_at_unix_seconds > 0);

    // Stats every interval, per pipeline.
    let stats = controller
        .next(WAIT, |e| match body(e)? {
            FromAgent::Stats(s) => Some(s),
            _ => None,
        })
        .expect("interval stats");
    assert_eq!(stats.receiver, "procfs");
    assert!(stats.scraped_resources > 0);
    assert_eq!(stats.pipelines.len(), 1);
    assert_eq!(stats.pipelines[0].pipeline, "metrics/baseline");
    assert_eq!(stats.pipelines[0].mode, "export");
    assert!(stats.pipelines[0].series > 0 && stats.pipelines[0].bytes_raw > 0);

    // A valid push: APPLYING, then APPLIED with its hash; the agent runs it.
    let second = config(&out, telemetry, &["metrics/baseline", "metrics/pushed"]);
    let second_hash = sha256(&second);
    controller.push("p1", &second, &second_hash);
    let applying = controller.next_status("p1");
    assert_eq!(state(&applying), ConfigState::Applying);
    assert_eq!(applying.hash, second_hash);
    let applied = controller.next_status("p1");
    assert_eq!(state(&applied), ConfigState::Applied, "{applied:?}");
    assert_eq!(applied.hash, second_hash);
    assert_eq!(applied.effective_hash, second_hash);
    assert_eq!(agent.hash().as_deref(), Some(second_hash.as_str()));
    wait_until("the pushed pipeline's output", || {
        lines_with(&out, "metrics/pushed") > 0
    });
    let kept = std::fs::read_to_string(dir.0.join("state/remote-config.yaml")).unwrap();
    assert_eq!(kept, second, "the push is kept in --state-dir");

    // An invalid push: FAILED with every error; the running config stays.
    let invalid = second
        .replace("collection_interval: 1s", "collection_interval: soon")
        .replace("exporters: [file] }\n", "exporters: [file/missing] }\n");
    controller.push("p2", &invalid, &sha256(&invalid));
    let applying = controller.next_status("p2");
    assert_eq!(state(&applying), ConfigState::Applying);
    let failed = controller.next_status("p2");
    assert_eq!(state(&failed), ConfigState::Failed);
    assert_eq!(failed.hash, sha256(&invalid));
    assert_eq!(
        failed.effective_hash, second_hash,
        "still running the last good config"
    );
    assert!(
        failed.error.starts_with("invalid config: "),
        "{}",
        failed.error
    );
    assert!(failed.error.contains("soon"), "{}", failed.error);
    assert!(failed.error.contains("file/missing"), "{}", failed.error);
    assert!(
        failed.error.lines().count() >= 3,
        "one line per error: {}",
        failed.error
    );
    assert_eq!(agent.hash().as_deref(), Some(second_hash.as_str()));

    // A push whose hash is not its YAML's: refused before anything else.
    let third = config(&out, telemetry, &["metrics/third"]);
    controller.push("p3", &third, &second_hash);
    let refused = controller.next_status("p3");
    assert_eq!(state(&refused), ConfigState::Failed, "no APPLYING first");
    assert!(refused.error.contains("hash mismatch"), "{}", refused.error);
    assert_eq!(refused.effective_hash, second_hash);
    assert_eq!(agent.hash().as_deref(), Some(second_hash.as_str()));

    // The same config again: APPLIED, nothing redone.
    controller.push("p4", &second, &second_hash);
    assert_eq!(state(&controller.next_status("p4")), ConfigState::Applying);
    assert_eq!(state(&controller.next_status("p4")), ConfigState::Applied);

    // A report request: a full Hello with the new config.
    controller.send(ToAgent::ReportRequest(ReportRequest {}));
    let report = controller.next_hello();
    assert_eq!(report.instance_id, hello.instance_id);
    assert_eq!(report.config_status.unwrap().hash, second_hash);

    wait_until("the metrics to count the pushes", || {
        agent.metric("phoenix_controller_pushes_total{result=\"applied\"}") == Some(1.0)
            && agent.metric("phoenix_controller_pushes_total{result=\"failed\"}") == Some(2.0)
            && agent.metric("phoenix_controller_pushes_total{result=\"unchanged\"}") == Some(1.0)
            && agent.metric("phoenix_controller_connected") == Some(1.0)
            && agent
                .metric("phoenix_controller_stats_sent_total")
                .unwrap_or(0.0)
                >= 1.0
    });
    assert!(
        agent
            .metric("phoenix_controller_pushes_total{result=\"failed\"}")
            .is_some()
    );
    assert!(lines_with(&out, "metrics/third") == 0);
    agent.assert_running();

    // A restart with the same --state-dir comes back with the pushed config
    // and the same identity.
    agent.stop();
    let agent = Agent::start(&dir.0, &config_file, &controller.url(), telemetry);
    let again = controller.next_hello();
    assert_eq!(again.instance_id, hello.instance_id);
    let status = again.config_status.unwrap();
    assert_eq!(status.hash, second_hash);
    assert_eq!(state(&status), ConfigState::Applied);
    wait_until("/healthz after the restart", || {
        agent.hash().as_deref() == Some(second_hash.as_str())
    });

    // A revert (an experiment's rollback): back to the --config file, and
    // the kept copy is forgotten, so a restart starts from the file too.
    let first_hash = sha256(&first);
    controller.send(ToAgent::ConfigPush(ConfigPush {
        push_id: "p5".into(),
        hash: first_hash.clone(),
        yaml: String::new(),
        experiment_id: "exp-1".into(),
        revert_to_local: true,
    }));
    assert_eq!(state(&controller.next_status("p5")), ConfigState::Applying);
    let reverted = controller.next_status("p5");
    assert_eq!(state(&reverted), ConfigState::Applied, "{}", reverted.error);
    assert_eq!(reverted.hash, first_hash);
    assert_eq!(reverted.effective_hash, first_hash);
    assert_eq!(agent.hash().as_deref(), Some(first_hash.as_str()));
    assert!(!dir.0.join("state/remote-config.yaml").exists());
}

#[test]
fn the_agent_outlives_its_controller_and_reconnects() {
    let dir = TempDir::new("reconnect");
    let out = dir.0.join("metrics.jsonl");
    let telemetry = free_addr();
    let text = config(&out, telemetry, &["metrics/baseline"]);
    let config_file = dir.0.join("agent.yaml");
    std::fs::write(&config_file, &text).unwrap();
    let controller = FakeController::start(0, TOKEN);
    let url = controller.url();
    let mut agent = Agent::start(&dir.0, &config_file, &url, telemetry);
    let hello = controller.next_hello();
    wait_until("the session to count as connected", || {
        agent.metric("phoenix_controller_connected") == Some(1.0)
    });

    // The controller goes away: the agent keeps exporting.
    let port = controller.stop();
    wait_until("the agent to notice", || {
        agent.metric("phoenix_controller_connected") == Some(0.0)
    });
    let before = file_len(&out);
    wait_until("exports to continue", || file_len(&out) > before);
    let grown = file_len(&out);
    wait_until("exports to continue again", || file_len(&out) > grown);
    agent.assert_running();

    // Back on the same port: the agent reconnects on its own.
    let controller = FakeController::start(port, TOKEN);
    let again = controller.next_hello();
    assert_eq!(again.instance_id, hello.instance_id);
    assert_eq!(again.config_status.unwrap().hash, sha256(&text));
    wait_until("reconnected in the metrics", || {
        agent.metric("phoenix_controller_connected") == Some(1.0)
            && agent
                .metric("phoenix_controller_reconnects_total")
                .unwrap_or(0.0)
                >= 1.0
    });

    // A config changed another way (here the --config file) is reported
    // without being asked.
    let edited = config(&out, telemetry, &["metrics/baseline", "metrics/edited"]);
    std::fs::write(&config_file, &edited).unwrap();
    let told = controller.next_hello();
    assert_eq!(told.config_status.unwrap().hash, sha256(&edited));

    let logs = agent.logs();
    assert!(logs.contains("controller session lost"), "{logs}");
    assert_eq!(
        logs.matches("controller session lost").count(),
        1,
        "the loss is logged once, not once per attempt:\n{logs}"
    );
}

#[test]
fn a_wrong_token_is_refused_and_the_agent_carries_on() {
    let dir = TempDir::new("token");
    let out = dir.0.join("metrics.jsonl");
    let telemetry = free_addr();
    let text = config(&out, telemetry, &["metrics/baseline"]);
    let config_file = dir.0.join("agent.yaml");
    std::fs::write(&config_file, &text).unwrap();
    let controller = FakeController::start(0, "another-token");
    let mut agent = Agent::start(&dir.0, &config_file, &controller.url(), telemetry);

    // Refused, then retried (with backoff), never crashing.
    for _ in 0..2 {
        let presented = controller
            .next(WAIT, |e| match e {
                Event::Refused(token) => Some(token),
                Event::Message(m) => panic!("a refused agent got a session: {m:?}"),
            })
            .expect("a session attempt");
        assert_eq!(presented.as_deref(), Some("Bearer t"));
    }
    let before = file_len(&out);
    wait_until("exports to continue", || file_len(&out) > before);
    assert_eq!(agent.metric("phoenix_controller_connected"), Some(0.0));
    assert!(
        agent
            .metric("phoenix_controller_reconnects_total")
            .unwrap_or(0.0)
            >= 1.0
    );
    assert_eq!(agent.hash().as_deref(), Some(sha256(&text).as_str()));
    agent.assert_running();
    let logs = agent.logs();
    assert_eq!(
        logs.matches("the controller refused this agent").count(),
        1,
        "an error once, not per attempt:\n{logs}"
    );
}

#[test]
fn tls_with_a_private_ca_and_a_client_certificate() {
    let dir = TempDir::new("tls");
    let out = dir.0.join("metrics.jsonl");
    let telemetry = free_addr();
    let text = config(&out, telemetry, &["metrics/baseline"]);
    let config_file = dir.0.join("agent.yaml");
    std::fs::write(&config_file, &text).unwrap();
    let tls = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/tls");
    let controller = FakeController::start_mtls(TOKEN);
    let url = format!("https://{}", controller.addr);

    // Without a client certificate the handshake fails: no session, and
    // the agent carries on, retrying.
    let ca = tls.join("ca.pem");
    let args = [Path::new("--controller-ca"), ca.as_path()];
    let mut anonymous = Agent::start_with(&dir.0, &config_file, &url, telemetry, &args);
    wait_until("a retry after the refused handshake", || {
        anonymous
            .metric("phoenix_controller_reconnects_total")
            .unwrap_or(0.0)
            >= 1.0
    });
    assert!(
        controller.next(Duration::from_millis(200), body).is_none(),
        "a session without a client certificate"
    );
    assert_eq!(anonymous.metric("phoenix_controller_connected"), Some(0.0));
    anonymous.assert_running();
    anonymous.stop();

    // With one: the session opens and the Hello arrives.
    let (cert, key) = (tls.join("client.pem"), tls.join("client-key.pem"));
    let args = [
        Path::new("--controller-ca"),
        ca.as_path(),
        Path::new("--controller-cert"),
        cert.as_path(),
        Path::new("--controller-key"),
        key.as_path(),
    ];
    let _agent = Agent::start_with(&dir.0, &config_file, &url, telemetry, &args);
    let hello = controller.next_hello();
    assert_eq!(hello.config_status.unwrap().hash, sha256(&text));
}
