//! The OpAMP client (`--opamp`) against an in-test OpAMP server, over both
//! transports: the real agent binary, a real HTTP server (axum) and a real
//! WebSocket server (tokio-tungstenite), real files. The server records
//! every message with its headers; the tests check the specification's
//! sequences and what the agent does with what the server offers.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc as std_mpsc};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse as _;
use axum::serve::Listener as _;
use futures_util::{SinkExt as _, StreamExt as _};
use phoenix_proto::opamp as pb;
use phoenix_tests::fleet::agent_config;
use phoenix_tests::{Running, TempDir, free_port, http_get, lines_with, sample, wait_for};
use prost::Message as _;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::tungstenite::Message;

const TOKEN: &str = "opamp-enrollment-token";
/// Generous: the machine runs other builds and tests at the same time.
const WAIT: Duration = Duration::from_secs(20);
const CAPABILITIES: u64 = 0x1 | 0x2 | 0x4 | 0x100 | 0x800 | 0x1000 | 0x2000;

// ---------------------------------------------------------------- the server

#[derive(Clone, Copy, Debug, PartialEq)]
enum Transport {
    Http,
    WebSocket,
}

/// One message from the agent, with the headers of its request (HTTP) or
/// of its connection's handshake (WebSocket).
#[derive(Debug, Clone)]
struct Seen {
    message: pb::AgentToServer,
    headers: HashMap<String, String>,
    at: Instant,
}

/// An HTTP error status for the next request, and its `Retry-After`.
type Failure = (StatusCode, Option<u64>);

#[derive(Clone)]
struct Shared {
    seen: std_mpsc::Sender<Seen>,
    /// What the server sends next: with the next answer over HTTP, at once
    /// over WebSocket.
    outbox: Arc<Mutex<VecDeque<pb::ServerToAgent>>>,
    /// HTTP only: the next requests are answered with these.
    failures: Arc<Mutex<VecDeque<Failure>>>,
}

struct Server {
    transport: Transport,
    secure: bool,
    /// TLS handshakes that failed (no or a wrong client certificate).
    refused: Arc<AtomicUsize>,
    addr: SocketAddr,
    seen: std_mpsc::Receiver<Seen>,
    outbox: Arc<Mutex<VecDeque<pb::ServerToAgent>>>,
    failures: Arc<Mutex<VecDeque<Failure>>>,
    /// The server runs as long as this: dropped, it stops.
    _runtime: tokio::runtime::Runtime,
}

fn headers_of(map: &HeaderMap) -> HashMap<String, String> {
    map.iter()
        .map(|(k, v)| (k.as_str().to_string(), v.to_str().unwrap_or("").to_string()))
        .collect()
}

async fn http_handler(
    axum::extract::State(shared): axum::extract::State<Shared>,
    headers: HeaderMap,
    body: Bytes,
) -> axum::response::Response {
    assert_eq!(
        headers.get("content-type").and_then(|v| v.to_str().ok()),
        Some("application/x-protobuf")
    );
    let message = pb::AgentToServer::decode(body).expect("an AgentToServer");
    let seen = Seen {
        message: message.clone(),
        headers: headers_of(&headers),
        at: Instant::now(),
    };
    let failure = shared.failures.lock().unwrap().pop_front();
    if let Some((status, retry_after)) = failure {
        let _ = shared.seen.send(seen);
        // As OpAMP servers answer: the status, and an error response.
        let r#type = if status == StatusCode::SERVICE_UNAVAILABLE {
            pb::ServerErrorResponseType::Unavailable
        } else {
            pb::ServerErrorResponseType::BadRequest
        };
        let error = pb::ServerToAgent {
            instance_uid: message.instance_uid,
            error_response: Some(pb::ServerErrorResponse {
                r#type: r#type as i32,
                error_message: "as the test wants".into(),
                details: None,
            }),
            ..Default::default()
        };
        let mut response = (status, error.encode_to_vec()).into_response();
        if let Some(seconds) = retry_after {
            response
                .headers_mut()
                .insert("retry-after", seconds.to_string().parse().unwrap());
        }
        return response;
    }
    let mut reply = shared
        .outbox
        .lock()
        .unwrap()
        .pop_front()
        .unwrap_or_default();
    reply.instance_uid = message.instance_uid;
    let _ = shared.seen.send(seen);
    (StatusCode::OK, reply.encode_to_vec()).into_response()
}

async fn websocket_connection(stream: Box<dyn Io>, shared: Shared) {
    let handshake = Arc::new(Mutex::new(HashMap::new()));
    let keep = handshake.clone();
    // The signature is tokio-tungstenite's (its error is an HTTP response).
    #[allow(clippy::result_large_err)]
    let callback = move |request: &tokio_tungstenite::tungstenite::handshake::server::Request,
                         response| {
        *keep.lock().unwrap() = headers_of(request.headers());
        Ok(response)
    };
    let Ok(mut socket) = tokio_tungstenite::accept_hdr_async(stream, callback).await else {
        return;
    };
    let headers = handshake.lock().unwrap().clone();
    let mut tick = tokio::time::interval(Duration::from_millis(50));
    loop {
        tokio::select! {
            message = socket.next() => match message {
                Some(Ok(Message::Binary(bytes))) => {
                    assert_eq!(bytes[0], 0, "OpAMP's WebSocket header");
                    let message = pb::AgentToServer::decode(&bytes[1..]).expect("an AgentToServer");
                    let _ = shared.seen.send(Seen { message, headers: headers.clone(), at: Instant::now() });
                }
                Some(Ok(_)) => {}
                Some(Err(_)) | None => return,
            },
            // Unprompted: the server speaks when it has something to say.
            _ = tick.tick() => {
                let next = shared.outbox.lock().unwrap().pop_front();
                if let Some(reply) = next {
                    let mut frame = vec![0u8];
                    reply.encode(&mut frame).unwrap();
                    if socket.send(Message::Binary(frame.into())).await.is_err() {
                        return;
                    }
                }
            }
        }
    }
}

/// What a connection runs over: TCP, or TLS over TCP.
trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// The server's connections, with TLS when given (a failed handshake is
/// counted and the connection dropped).
struct Incoming {
    tcp: tokio::net::TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    refused: Arc<AtomicUsize>,
}

impl axum::serve::Listener for Incoming {
    type Io = Box<dyn Io>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Box<dyn Io>, SocketAddr) {
        loop {
            let Ok((tcp, addr)) = self.tcp.accept().await else {
                continue;
            };
            let Some(tls) = &self.tls else {
                return (Box::new(tcp), addr);
            };
            match tls.accept(tcp).await {
                Ok(stream) => return (Box::new(stream), addr),
                Err(_) => {
                    self.refused.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.tcp.local_addr()
    }
}

/// The test server certificate (localhost, 127.0.0.1), requiring a client
/// certificate signed by the test client CA.
fn mtls() -> Arc<rustls::ServerConfig> {
    use rustls::pki_types::pem::PemObject as _;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let tls = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/tls");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(tls.join("client-ca.pem")).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let verifier =
        rustls::server::WebPkiClientVerifier::builder_with_provider(roots.into(), provider.clone())
            .build()
            .unwrap();
    let chain = CertificateDer::pem_file_iter(tls.join("server.pem"))
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_file(tls.join("server-key.pem")).unwrap();
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .unwrap();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(config)
}

impl Server {
    fn start(transport: Transport) -> Server {
        Self::start_with(transport, None)
    }

    fn start_with(transport: Transport, tls: Option<Arc<rustls::ServerConfig>>) -> Server {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let secure = tls.is_some();
        let refused = Arc::new(AtomicUsize::new(0));
        let mut incoming = Incoming {
            tcp: listener,
            tls: tls.map(tokio_rustls::TlsAcceptor::from),
            refused: refused.clone(),
        };
        let (tx, seen) = std_mpsc::channel();
        let outbox = Arc::new(Mutex::new(VecDeque::new()));
        let failures = Arc::new(Mutex::new(VecDeque::new()));
        let shared = Shared {
            seen: tx,
            outbox: outbox.clone(),
            failures: failures.clone(),
        };
        match transport {
            Transport::Http => {
                let app = axum::Router::new()
                    .route("/v1/opamp", axum::routing::post(http_handler))
                    .with_state(shared);
                runtime.spawn(async move { axum::serve(incoming, app).await });
            }
            Transport::WebSocket => {
                runtime.spawn(async move {
                    loop {
                        let (stream, _) = incoming.accept().await;
                        tokio::spawn(websocket_connection(stream, shared.clone()));
                    }
                });
            }
        }
        Server {
            transport,
            secure,
            refused,
            addr,
            seen,
            outbox,
            failures,
            _runtime: runtime,
        }
    }

    fn url(&self) -> String {
        let scheme = match (self.transport, self.secure) {
            (Transport::Http, false) => "http",
            (Transport::Http, true) => "https",
            (Transport::WebSocket, false) => "ws",
            (Transport::WebSocket, true) => "wss",
        };
        format!("{scheme}://{}/v1/opamp", self.addr)
    }

    /// Answer the next HTTP request with `status` (and `Retry-After`).
    fn fail_next(&self, status: StatusCode, retry_after: Option<u64>) {
        self.failures
            .lock()
            .unwrap()
            .push_back((status, retry_after));
    }

    fn offer(&self, reply: pb::ServerToAgent) {
        self.outbox.lock().unwrap().push_back(reply);
    }

    fn next(&self) -> Seen {
        self.seen
            .recv_timeout(WAIT)
            .expect("a message from the agent")
    }

    /// The next message whose request carried `header`.
    fn next_with_header(&self, header: &str) -> Seen {
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline
                .checked_duration_since(Instant::now())
                .unwrap_or_else(|| panic!("a message with {header} in time"));
            let seen = self.seen.recv_timeout(left).expect("a message");
            if seen.headers.contains_key(header) {
                return seen;
            }
        }
    }

    /// The next message `pick` accepts.
    fn next_where(&self, mut pick: impl FnMut(&pb::AgentToServer) -> bool) -> Seen {
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline
                .checked_duration_since(Instant::now())
                .expect("the awaited message in time");
            let seen = self.seen.recv_timeout(left).expect("the awaited message");
            if pick(&seen.message) {
                return seen;
            }
        }
    }
}

// ---------------------------------------------------------------- the agent

/// The real agent binary, its stderr in a file for the failure messages.
struct Agent {
    running: Running,
    telemetry: u16,
    log: PathBuf,
}

impl Agent {
    fn start(dir: &Path, config: &Path, url: &str, telemetry: u16) -> Agent {
        Self::start_with(dir, config, url, telemetry, &[])
    }

    /// [`Agent::start`] with more flags.
    fn start_with(dir: &Path, config: &Path, url: &str, telemetry: u16, extra: &[&str]) -> Agent {
        let log = dir.join(format!("agent-{}.log", unique()));
        let (config, state) = (config.display().to_string(), dir.join("state"));
        let args = [
            "--config",
            &config,
            "--opamp",
            url,
            "--opamp-heartbeat",
            "1s",
            "--label",
            "env=test",
            "--label",
            "team=metrics",
            "--state-dir",
            state.to_str().unwrap(),
            "--log-level",
            "debug,hyper=info,reqwest=info,tungstenite=info",
        ];
        let args = [&args[..], extra].concat();
        let env = [("PHOENIX_CONTROLLER_TOKEN", TOKEN)];
        let running = Running::start_logging_to(
            Path::new(env!("CARGO_BIN_EXE_phoenix-agent")),
            &args,
            &env,
            &log,
        );
        Agent {
            running,
            telemetry,
            log,
        }
    }

    /// The running config's hash, from `/healthz`.
    fn hash(&self) -> Option<String> {
        let (_, body) = http_get(self.telemetry, "/healthz")?;
        let v: serde_json::Value = serde_json::from_str(&body).ok()?;
        v["config"]["hash"].as_str().map(str::to_string)
    }

    fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM, as a service manager stops it; waits for a clean exit.
    fn stop(self) {
        let Agent { running, log, .. } = self;
        let status = running.stop(WAIT).status;
        let logs = std::fs::read_to_string(&log).unwrap_or_default();
        assert!(
            status.success(),
            "the agent did not stop cleanly ({status}):\n{logs}"
        );
    }
}

fn unique() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

fn attributes(list: &[pb::KeyValue]) -> HashMap<String, String> {
    list.iter()
        .map(|kv| {
            let value = match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                Some(pb::any_value::Value::StringValue(s)) => s.clone(),
                other => format!("{other:?}"),
            };
            (kv.key.clone(), value)
        })
        .collect()
}

/// The one file of an effective config, as text.
fn effective_text(m: &pb::AgentToServer) -> Option<String> {
    let map = &m.effective_config.as_ref()?.config_map.as_ref()?.config_map;
    assert_eq!(map.len(), 1, "one file: {:?}", map.keys());
    let file = map.get("")?;
    assert_eq!(file.content_type, "text/yaml");
    Some(String::from_utf8(file.body.clone()).unwrap())
}

fn is_full(m: &pb::AgentToServer) -> bool {
    m.agent_description.is_some()
        && m.health.is_some()
        && m.effective_config.is_some()
        && m.remote_config_status.is_some()
}

fn remote_offer(files: &[(&str, &str)], hash: &[u8]) -> pb::ServerToAgent {
    pb::ServerToAgent {
        remote_config: Some(pb::AgentRemoteConfig {
            config: Some(pb::AgentConfigMap {
                config_map: files
                    .iter()
                    .map(|(name, body)| {
                        let file = pb::AgentConfigFile {
                            body: body.as_bytes().to_vec(),
                            content_type: "text/yaml".into(),
                        };
                        (name.to_string(), file)
                    })
                    .collect(),
            }),
            config_hash: hash.to_vec(),
        }),
        ..Default::default()
    }
}

fn remote_status(m: &pb::AgentToServer, hash: &[u8]) -> Option<(pb::RemoteConfigStatuses, String)> {
    let s = m.remote_config_status.as_ref()?;
    if s.last_remote_config_hash != hash {
        return None;
    }
    Some((
        pb::RemoteConfigStatuses::try_from(s.status).unwrap(),
        s.error_message.clone(),
    ))
}

/// Messages until the one answering the offer of `hash` settles (APPLIED
/// or FAILED); the statuses seen on the way, in order, and the last one.
fn until_settled(server: &Server, hash: &[u8]) -> (Vec<pb::RemoteConfigStatuses>, Seen) {
    let mut states = Vec::new();
    let settled = server.next_where(|m| match remote_status(m, hash) {
        Some((state, _)) => {
            states.push(state);
            state != pb::RemoteConfigStatuses::Applying
        }
        None => false,
    });
    (states, settled)
}

/// Checks every message of a connection: the same uid, sequence numbers
/// one apart, the capabilities, the token.
struct Sequence {
    uid: Vec<u8>,
    last: u64,
}

impl Sequence {
    fn check(&mut self, seen: &Seen) {
        let m = &seen.message;
        assert_eq!(m.instance_uid, self.uid, "the same uid in every message");
        assert_eq!(
            m.sequence_num,
            self.last + 1,
            "sequence numbers go up by one"
        );
        self.last = m.sequence_num;
        assert_eq!(
            m.capabilities, CAPABILITIES,
            "capabilities in every message"
        );
        assert_eq!(
            seen.headers.get("authorization").map(String::as_str),
            Some(format!("Bearer {TOKEN}").as_str())
        );
    }
}

/// A scratch directory and the agent's local config in it: a 1 s procfs
/// scrape into `metrics.jsonl` there (remote configs may write there too),
/// its telemetry on a free port.
struct Scene {
    dir: TempDir,
    out: PathBuf,
    telemetry: u16,
    config_file: PathBuf,
    local: String,
}

impl Scene {
    fn new(label: &str) -> Scene {
        let dir = TempDir::new(label);
        let out = dir.path().join("metrics.jsonl");
        let telemetry = free_port();
        let local = agent_config(&out, telemetry, "metrics/baseline", None);
        let config_file = dir.path().join("agent.yaml");
        std::fs::write(&config_file, &local).unwrap();
        Scene {
            dir,
            out,
            telemetry,
            config_file,
            local,
        }
    }
}

// ---------------------------------------------------------------- the conversation

/// Everything, in one agent's life, over `transport`.
fn conversation(transport: Transport) {
    let Scene {
        dir,
        out,
        telemetry,
        config_file,
        local,
    } = Scene::new("opamp-client");
    let server = Server::start(transport);
    let agent = Agent::start(dir.path(), &config_file, &server.url(), telemetry);

    // The first message: the full state.
    let first = server.next();
    let m = &first.message;
    assert_eq!(m.instance_uid.len(), 16, "{:?}", agent.logs());
    assert!(is_full(m), "the first message carries everything: {m:?}");
    let mut sequence = Sequence {
        uid: m.instance_uid.clone(),
        last: m.sequence_num - 1,
    };
    sequence.check(&first);
    let description = m.agent_description.as_ref().unwrap();
    let identifying = attributes(&description.identifying_attributes);
    assert_eq!(identifying["service.name"], "phoenix-agent");
    assert_eq!(identifying["service.version"], env!("CARGO_PKG_VERSION"));
    let uid_text = identifying["service.instance.id"].clone();
    assert_eq!(uid_text.replace('-', "").len(), 32, "{uid_text}");
    let instance_id = std::fs::read_to_string(dir.path().join("state/instance-id")).unwrap();
    assert_eq!(
        uid_text,
        instance_id.trim(),
        "the uid is the instance id's bytes"
    );
    let others = attributes(&description.non_identifying_attributes);
    assert_eq!(others["env"], "test");
    assert_eq!(others["team"], "metrics");
    assert_eq!(others["os.type"], "linux");
    assert!(!others["host.name"].is_empty());
    let health = m.health.as_ref().unwrap();
    assert!(health.healthy);
    assert!(health.start_time_unix_nano > 0);
    assert!(health.component_health_map["pipeline:metrics/baseline"].healthy);
    assert_eq!(effective_text(m).as_deref(), Some(local.as_str()));
    let status = m.remote_config_status.as_ref().unwrap();
    assert_eq!(status.status, pb::RemoteConfigStatuses::Unset as i32);

    // Heartbeats: nothing else in them.
    for _ in 0..2 {
        let beat = server.next();
        sequence.check(&beat);
        let m = &beat.message;
        assert!(
            m.agent_description.is_none()
                && m.health.is_none()
                && m.effective_config.is_none()
                && m.remote_config_status.is_none()
                && m.agent_disconnect.is_none(),
            "a heartbeat carries only what changed (nothing): {m:?}"
        );
    }

    // ReportFullState: the next message carries everything again.
    server.offer(pb::ServerToAgent {
        flags: pb::ServerToAgentFlags::ReportFullState as u64,
        ..Default::default()
    });
    let full = server.next_where(|m| m.agent_description.is_some());
    assert!(is_full(&full.message), "{:?}", full.message);

    // A remote config: APPLYING, then APPLIED; it runs, and the effective
    // config in the next message is the new one.
    let pushed = agent_config(&out, telemetry, "metrics/pushed", None);
    let pushed_hash = phoenix_config::config_hash(&pushed);
    server.offer(remote_offer(&[("agent.yaml", &pushed)], b"hash-1"));
    let (states, applied) = until_settled(&server, b"hash-1");
    assert_eq!(
        states,
        [
            pb::RemoteConfigStatuses::Applying,
            pb::RemoteConfigStatuses::Applied
        ],
        "{}",
        agent.logs()
    );
    assert_eq!(
        effective_text(&applied.message).as_deref(),
        Some(pushed.as_str())
    );
    assert_eq!(agent.hash().as_deref(), Some(pushed_hash.as_str()));
    assert!(
        wait_for(WAIT, || (lines_with(&out, "metrics/pushed") > 0)
            .then_some(()))
        .is_some()
    );
    let kept = std::fs::read_to_string(dir.path().join("state/remote-config.yaml")).unwrap();
    assert_eq!(kept, pushed, "kept in --state-dir as a native push is");

    // The same hash again: reported, not applied again.
    server.offer(remote_offer(&[("agent.yaml", &pushed)], b"hash-1"));
    let again = server.next_where(|m| m.remote_config_status.is_some());
    assert_eq!(
        remote_status(&again.message, b"hash-1").map(|s| s.0),
        Some(pb::RemoteConfigStatuses::Applied)
    );

    // An invalid config: FAILED with the loader's error; the running
    // config stays and keeps exporting.
    let invalid = pushed.replace("collection_interval: 1s", "collection_interval: soon");
    server.offer(remote_offer(&[("", &invalid)], b"hash-2"));
    let (states, failed) = until_settled(&server, b"hash-2");
    assert_eq!(states.last(), Some(&pb::RemoteConfigStatuses::Failed));
    let (_, error) = remote_status(&failed.message, b"hash-2").unwrap();
    assert!(error.starts_with("invalid config: "), "{error}");
    assert!(error.contains("soon"), "{error}");
    assert_eq!(agent.hash().as_deref(), Some(pushed_hash.as_str()));
    let before = lines_with(&out, "metrics/pushed");
    assert!(
        wait_for(WAIT, || (lines_with(&out, "metrics/pushed") > before)
            .then_some(()))
        .is_some(),
        "the running config keeps exporting"
    );

    // A config the local policy refuses (a file outside the allowed
    // directory): FAILED.
    let outside = pushed.replace(
        &out.display().to_string(),
        &std::env::temp_dir()
            .join("elsewhere/x.jsonl")
            .display()
            .to_string(),
    );
    server.offer(remote_offer(&[("", &outside)], b"hash-3"));
    let (_, failed) = until_settled(&server, b"hash-3");
    let (state, error) = remote_status(&failed.message, b"hash-3").unwrap();
    assert_eq!(state, pb::RemoteConfigStatuses::Failed);
    assert!(error.contains("file_export_dirs"), "{error}");
    assert_eq!(agent.hash().as_deref(), Some(pushed_hash.as_str()));

    // Two files: Phoenix takes one.
    server.offer(remote_offer(
        &[("a.yaml", &pushed), ("b.yaml", &local)],
        b"hash-4",
    ));
    let (states, failed) = until_settled(&server, b"hash-4");
    assert_eq!(states, [pb::RemoteConfigStatuses::Failed]);
    let (_, error) = remote_status(&failed.message, b"hash-4").unwrap();
    assert!(error.contains("one file"), "{error}");

    // An empty config map: back to the local config.
    server.offer(remote_offer(&[], b"hash-5"));
    let (states, reverted) = until_settled(&server, b"hash-5");
    assert_eq!(states.last(), Some(&pb::RemoteConfigStatuses::Applied));
    assert_eq!(
        effective_text(&reverted.message).as_deref(),
        Some(local.as_str())
    );
    assert_eq!(
        agent.hash().as_deref(),
        Some(phoenix_config::config_hash(&local).as_str())
    );
    assert!(!dir.path().join("state/remote-config.yaml").exists());

    // Connection settings: the offered headers go with every later
    // request; the credential is kept in --state-dir.
    let headers = |hash: &str, credential: &str| pb::ServerToAgent {
        connection_settings: Some(pb::ConnectionSettingsOffers {
            hash: hash.as_bytes().to_vec(),
            opamp: Some(pb::OpAmpConnectionSettings {
                headers: Some(pb::Headers {
                    headers: vec![
                        pb::Header {
                            key: "x-phoenix-agent-credential".into(),
                            value: credential.into(),
                        },
                        pb::Header {
                            key: "x-team".into(),
                            value: "metrics".into(),
                        },
                    ],
                }),
                ..Default::default()
            }),
        }),
        ..Default::default()
    };
    server.offer(headers("offer-1", "c0ffee"));
    let with = server.next_with_header("x-phoenix-agent-credential");
    assert_eq!(with.headers["x-phoenix-agent-credential"], "c0ffee");
    assert_eq!(with.headers["x-team"], "metrics");
    let kept = std::fs::read_to_string(dir.path().join("state/agent-credential")).unwrap();
    assert_eq!(kept.trim(), format!("{uid_text} c0ffee"));

    // An offer with the hash of the one applied changes nothing.
    server.offer(headers("offer-1", "beef"));
    wait_for(WAIT, || {
        server.outbox.lock().unwrap().is_empty().then_some(())
    })
    .expect("the offer was delivered");
    for _ in 0..2 {
        let later = server.next();
        assert_eq!(later.headers["x-phoenix-agent-credential"], "c0ffee");
    }
    let kept = std::fs::read_to_string(dir.path().join("state/agent-credential")).unwrap();
    assert_eq!(kept.trim(), format!("{uid_text} c0ffee"));

    // An offered heartbeat interval replaces --opamp-heartbeat (1 s).
    server.offer(pb::ServerToAgent {
        connection_settings: Some(pb::ConnectionSettingsOffers {
            hash: b"offer-2".to_vec(),
            opamp: Some(pb::OpAmpConnectionSettings {
                heartbeat_interval_seconds: 3,
                ..Default::default()
            }),
        }),
        ..Default::default()
    });
    wait_for(WAIT, || {
        server.outbox.lock().unwrap().is_empty().then_some(())
    })
    .expect("the offer was delivered");
    let _in_flight = server.next();
    let (a, b) = (server.next(), server.next());
    let every = b.at - a.at;
    assert!(
        every >= Duration::from_millis(2700),
        "heartbeats every {every:?}"
    );
    assert_eq!(b.headers["x-phoenix-agent-credential"], "c0ffee");

    // What happened is on /metrics.
    let (_, page) = http_get(telemetry, "/metrics").expect("/metrics");
    let metric = |series: &str| sample(&page, series).unwrap_or(-1.0);
    assert_eq!(metric("phoenix_opamp_connected"), 1.0, "{page}");
    assert_eq!(
        metric("phoenix_opamp_remote_configs_total{result=\"applied\"}"),
        2.0
    );
    assert_eq!(
        metric("phoenix_opamp_remote_configs_total{result=\"failed\"}"),
        3.0
    );
    assert_eq!(
        metric("phoenix_opamp_remote_configs_total{result=\"repeated\"}"),
        1.0
    );
    assert!(
        metric("phoenix_opamp_messages_total{result=\"sent\"}") >= 10.0,
        "{page}"
    );

    // SIGTERM: the last message says goodbye.
    agent.stop();
    let mut last = None;
    while let Ok(seen) = server.seen.recv_timeout(Duration::from_secs(2)) {
        last = Some(seen);
    }
    let last = last.expect("a last message");
    assert!(
        last.message.agent_disconnect.is_some(),
        "{:?}",
        last.message
    );

    // A restart: the same uid, the kept credential presented at once.
    let agent = Agent::start(dir.path(), &config_file, &server.url(), telemetry);
    let first = server.next();
    assert_eq!(first.message.instance_uid, sequence.uid);
    assert!(is_full(&first.message));
    assert_eq!(
        first
            .headers
            .get("x-phoenix-agent-credential")
            .map(String::as_str),
        Some("c0ffee"),
        "{}",
        agent.logs()
    );
    agent.stop();
}

#[test]
fn over_http() {
    conversation(Transport::Http);
}

#[test]
fn over_websocket() {
    conversation(Transport::WebSocket);
}

/// A message the server refuses (400, `BadRequest`) is not sent again: the
/// next is the following heartbeat. A 503 with `Retry-After` keeps the
/// agent quiet that long; then it sends its full state again.
#[test]
fn over_http_refusals_and_retry_after_are_honoured() {
    let Scene {
        dir,
        telemetry,
        config_file,
        ..
    } = Scene::new("opamp-client-errors");
    let server = Server::start(Transport::Http);
    server.fail_next(StatusCode::BAD_REQUEST, None);
    let agent = Agent::start(dir.path(), &config_file, &server.url(), telemetry);

    let refused = server.next();
    assert!(is_full(&refused.message));
    let next = server.next();
    assert_eq!(
        next.message.sequence_num,
        refused.message.sequence_num + 1,
        "a new message, not the refused one again"
    );
    assert!(!is_full(&next.message), "not resent: {:?}", next.message);
    let waited = next.at - refused.at;
    assert!(
        waited >= Duration::from_millis(800),
        "the next heartbeat, not a retry loop: {waited:?}"
    );

    server.fail_next(StatusCode::SERVICE_UNAVAILABLE, Some(3));
    let unavailable = server.next();
    let after = server.next();
    let waited = after.at - unavailable.at;
    assert!(
        waited >= Duration::from_millis(2900),
        "Retry-After: 3 was not honoured: {waited:?}\n{}",
        agent.logs()
    );
    assert!(is_full(&after.message), "everything again after a failure");
    agent.stop();
}

/// `https://` and `wss://` with `--controller-ca` and a client certificate:
/// without the certificate the server refuses the handshake and hears
/// nothing; with it the agent reports.
fn over_tls(transport: Transport) {
    let Scene {
        dir,
        telemetry,
        config_file,
        ..
    } = Scene::new("opamp-client-tls");
    let server = Server::start_with(transport, Some(mtls()));
    let tls = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/tls");
    let path = |name: &str| tls.join(name).display().to_string();
    let (ca, cert, key) = (path("ca.pem"), path("client.pem"), path("client-key.pem"));

    let anonymous = Agent::start_with(
        dir.path(),
        &config_file,
        &server.url(),
        telemetry,
        &["--controller-ca", &ca],
    );
    let refused = wait_for(WAIT, || {
        (server.refused.load(Ordering::Relaxed) > 0).then_some(())
    });
    assert!(
        refused.is_some(),
        "no handshake was refused:\n{}",
        anonymous.logs()
    );
    assert!(
        server.seen.try_recv().is_err(),
        "a message without a client certificate"
    );
    anonymous.stop();

    let agent = Agent::start_with(
        dir.path(),
        &config_file,
        &server.url(),
        telemetry,
        &[
            "--controller-ca",
            &ca,
            "--controller-cert",
            &cert,
            "--controller-key",
            &key,
        ],
    );
    let first = server.seen.recv_timeout(WAIT).unwrap_or_else(|_| {
        panic!("no message over TLS:\n{}", agent.logs());
    });
    assert!(is_full(&first.message));
    agent.stop();
}

#[test]
fn over_https_with_a_client_certificate() {
    over_tls(Transport::Http);
}

#[test]
fn over_wss_with_a_client_certificate() {
    over_tls(Transport::WebSocket);
}
