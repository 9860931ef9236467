//! The controller's OpAMP server over WebSocket, in-process, with a real
//! WebSocket client: an agent connected this way is online while its
//! connection is open and offline when it closes, each message is framed
//! with OpAMP's header, and a bad peer is refused, answered with an error
//! or disconnected with a close code that names the problem, changing
//! nothing. A push is sent at once, unasked. Over TLS (`wss://`) the
//! `--client-ca` rule holds as over HTTP.

mod common;

use std::time::Duration;

use common::*;
use phoenix_api::{AgentDetail, AgentKind, AgentList, AgentStatus};
use phoenix_proto::opamp as pb;
use prost::Message as _;
use serde_json::json;
use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{self, Message};

const UID: [u8; 16] = [
    0x01, 0x93, 0x3e, 0x2a, 0x7b, 0x4c, 0x7d, 0x10, 0x8e, 0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xee,
];
const UID_STRING: &str = "01933e2a-7b4c-7d10-8e01-23456789abee";

type Socket = WebSocketStream<TcpStream>;

async fn start() -> TestController {
    let dir = temp_dir("opamp-ws");
    let mut settings = settings(&dir);
    settings.opamp_listen = Some("127.0.0.1:0".parse().unwrap());
    TestController::start(settings).await
}

/// Open a WebSocket to the OpAMP endpoint with these headers.
async fn connect(
    c: &TestController,
    headers: &[(&str, &str)],
) -> Result<Socket, tungstenite::Error> {
    let addr = c.running.opamp_addr.unwrap();
    let mut request = format!("ws://{addr}/v1/opamp")
        .into_client_request()
        .unwrap();
    for (k, v) in headers {
        request.headers_mut().insert(
            tungstenite::http::HeaderName::from_bytes(k.as_bytes()).expect("header name"),
            v.parse().expect("header value"),
        );
    }
    let tcp = TcpStream::connect(addr).await.unwrap();
    tokio_tungstenite::client_async(request, tcp)
        .await
        .map(|(socket, _)| socket)
}

async fn connect_agent(c: &TestController) -> Socket {
    let bearer = format!("Bearer {AGENT_TOKEN}");
    connect(c, &[("authorization", &bearer)]).await.unwrap()
}

/// OpAMP's framing: header 0, then the message.
fn frame(message: &pb::AgentToServer) -> Message {
    let mut bytes = vec![0u8];
    message.encode(&mut bytes).unwrap();
    Message::Binary(bytes.into())
}

/// ReportsStatus, AcceptsRemoteConfig, ReportsEffectiveConfig,
/// ReportsRemoteConfig.
const CAPABILITIES: u64 = 0x1 | 0x2 | 0x4 | 0x1000;

fn message(uid: &[u8], seq: u64) -> pb::AgentToServer {
    pb::AgentToServer {
        instance_uid: uid.to_vec(),
        sequence_num: seq,
        capabilities: CAPABILITIES,
        agent_description: (seq == 0).then(|| pb::AgentDescription {
            identifying_attributes: vec![pb::KeyValue {
                key: "service.name".into(),
                value: Some(pb::AnyValue {
                    value: Some(pb::any_value::Value::StringValue(
                        "io.opentelemetry.collector".into(),
                    )),
                }),
            }],
            non_identifying_attributes: Vec::new(),
        }),
        ..Default::default()
    }
}

/// The next message from the server: an answer (header stripped and
/// decoded) or how the connection ended.
enum Received {
    Answer(Box<pb::ServerToAgent>),
    Closed(Option<(CloseCode, String)>),
}

async fn receive(socket: &mut Socket) -> Received {
    use futures_util::StreamExt as _;
    loop {
        let next = tokio::time::timeout(Duration::from_secs(10), socket.next())
            .await
            .expect("the server answers within 10 s");
        match next {
            Some(Ok(Message::Binary(bytes))) => {
                assert_eq!(bytes[0], 0, "OpAMP header 0 before every message");
                return Received::Answer(Box::new(pb::ServerToAgent::decode(&bytes[1..]).unwrap()));
            }
            Some(Ok(Message::Close(frame))) => {
                return Received::Closed(frame.map(|f| (f.code, f.reason.to_string())));
            }
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            Some(Ok(other)) => panic!("unexpected message {other:?}"),
            Some(Err(_)) | None => return Received::Closed(None),
        }
    }
}

async fn send(socket: &mut Socket, message: Message) {
    use futures_util::SinkExt as _;
    socket.send(message).await.unwrap();
}

async fn answer(socket: &mut Socket, message: &pb::AgentToServer) -> pb::ServerToAgent {
    send(socket, frame(message)).await;
    match receive(socket).await {
        Received::Answer(a) => *a,
        Received::Closed(why) => panic!("closed instead of answered: {why:?}"),
    }
}

async fn closed_with(socket: &mut Socket) -> (CloseCode, String) {
    match receive(socket).await {
        Received::Closed(Some(why)) => why,
        Received::Closed(None) => panic!("closed without a close frame"),
        Received::Answer(a) => panic!("answered instead of closed: {a:?}"),
    }
}

async fn status(c: &TestController, id: &str) -> AgentStatus {
    let detail: AgentDetail = c.http.get_as(&format!("/api/v1/agents/{id}")).await;
    detail.agent.status
}

/// Wait (bounded) until the agent has `want`.
async fn wait_status(c: &TestController, id: &str, want: AgentStatus) {
    for _ in 0..200 {
        if status(c, id).await == want {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("agent {id} never became {want:?}");
}

#[tokio::test]
async fn a_websocket_agent_is_online_while_connected_and_offline_when_it_closes() {
    let c = start().await;
    let mut socket = connect_agent(&c).await;
    let first = answer(&mut socket, &message(&UID, 0)).await;
    assert_eq!(first.instance_uid, UID.to_vec());
    assert!(first.error_response.is_none(), "{first:?}");
    assert_ne!(first.capabilities & 0x1, 0, "AcceptsStatus is declared");
    let detail: AgentDetail = c.http.get_as(&format!("/api/v1/agents/{UID_STRING}")).await;
    assert_eq!(detail.agent.kind, AgentKind::Opamp);
    assert_eq!(detail.agent.status, AgentStatus::Online);
    assert_eq!(
        detail.agent.labels.get("service.name").map(String::as_str),
        Some("io.opentelemetry.collector")
    );

    // Heartbeats in sequence: no full state asked for.
    let beat = answer(&mut socket, &message(&UID, 1)).await;
    assert_eq!(
        beat.flags & pb::ServerToAgentFlags::ReportFullState as u64,
        0
    );
    // A gap: the server asks for everything again.
    let gap = answer(&mut socket, &message(&UID, 5)).await;
    assert_ne!(
        gap.flags & pb::ServerToAgentFlags::ReportFullState as u64,
        0
    );

    // Closing the connection (without AgentDisconnect) is going offline,
    // long before the poll timeout.
    drop(socket);
    wait_status(&c, UID_STRING, AgentStatus::Offline).await;
    c.stop().await;
}

fn unhex(hex: &str) -> Vec<u8> {
    (0..hex.len() / 2)
        .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap())
        .collect()
}

#[tokio::test]
async fn a_push_reaches_a_connected_agent_at_once_and_its_status_answers_it() {
    let c = start().await;
    let mut socket = connect_agent(&c).await;
    answer(&mut socket, &message(&UID, 0)).await;

    let body = "receivers:\n  hostmetrics: {}\n";
    let (status, created) = c
        .http
        .post(
            "/api/v1/pushes",
            json!({
                "selector": {"agents": [UID_STRING]},
                "yaml": body,
                "config_kind": "opaque",
                "file": "collector.yaml",
            }),
        )
        .await;
    assert_eq!(status, 202, "{created}");
    let hash = unhex(created["hash"].as_str().unwrap());
    let push = created["id"].as_str().unwrap().to_string();

    // Without a message from the agent: the server speaks first.
    let Received::Answer(offer) = receive(&mut socket).await else {
        panic!("closed instead of offered");
    };
    assert_eq!(offer.instance_uid, UID.to_vec());
    let remote = offer.remote_config.expect("the push, unasked");
    assert_eq!(remote.config_hash, hash);
    assert_eq!(
        remote.config.unwrap().config_map["collector.yaml"].body,
        body.as_bytes()
    );
    let targets = c
        .http
        .wait_push(&push, |p| p["counts"]["applying"] == 1)
        .await;
    assert_eq!(targets["total"], 1, "{targets}");

    // The agent's status answers it.
    let mut applied = message(&UID, 1);
    applied.remote_config_status = Some(pb::RemoteConfigStatus {
        last_remote_config_hash: hash.clone(),
        status: pb::RemoteConfigStatuses::Applied as i32,
        error_message: String::new(),
    });
    let reply = answer(&mut socket, &applied).await;
    assert!(
        reply.remote_config.is_none(),
        "not offered again once applied"
    );
    c.http
        .wait_push(&push, |p| p["counts"]["applied"] == 1)
        .await;
    c.stop().await;
}

/// A reconnect overlaps the connection it replaces (the agent presents new
/// headers on a new connection, then closes the old one): closing the old
/// one does not take the agent offline; closing its last one does.
#[tokio::test]
async fn an_agent_is_offline_only_when_its_last_connection_closes() {
    let c = start().await;
    let mut old = connect_agent(&c).await;
    answer(&mut old, &message(&UID, 0)).await;
    let mut new = connect_agent(&c).await;
    answer(&mut new, &message(&UID, 1)).await;
    drop(old);
    // The old connection's end is noticed at once; give it time to count.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(status(&c, UID_STRING).await, AgentStatus::Online);
    answer(&mut new, &message(&UID, 2)).await;
    drop(new);
    wait_status(&c, UID_STRING, AgentStatus::Offline).await;
    c.stop().await;
}

#[tokio::test]
async fn an_upgrade_without_a_token_or_with_a_wrong_one_is_refused() {
    let c = start().await;
    match connect(&c, &[]).await {
        Err(tungstenite::Error::Http(response)) => assert_eq!(response.status(), 401),
        other => panic!("expected 401, got {:?}", other.map(|_| ())),
    }
    match connect(&c, &[("authorization", "Bearer not-the-token")]).await {
        Err(tungstenite::Error::Http(response)) => assert_eq!(response.status(), 401),
        other => panic!("expected 401, got {:?}", other.map(|_| ())),
    }
    let list: AgentList = c.http.get_as("/api/v1/agents").await;
    assert!(list.agents.is_empty(), "{:?}", list.agents);
    c.stop().await;
}

#[tokio::test]
async fn malformed_messages_get_an_error_and_the_connection_goes_on() {
    let c = start().await;
    let mut socket = connect_agent(&c).await;
    send(
        &mut socket,
        Message::Binary(vec![0u8, 0xff, 0xff, 0xff].into()),
    )
    .await;
    let Received::Answer(error) = receive(&mut socket).await else {
        panic!("a malformed message is answered, not closed");
    };
    let error = error.error_response.expect("an error response");
    assert_eq!(error.r#type, pb::ServerErrorResponseType::BadRequest as i32);
    assert!(
        error.error_message.contains("AgentToServer"),
        "{}",
        error.error_message
    );
    // A uid of the wrong length: refused as over HTTP.
    let short = answer(&mut socket, &message(&[1, 2, 3], 0)).await;
    assert!(
        short
            .error_response
            .unwrap()
            .error_message
            .contains("16 bytes")
    );
    // The same connection still serves a good message.
    let good = answer(&mut socket, &message(&UID, 0)).await;
    assert!(good.error_response.is_none());
    c.stop().await;
}

#[tokio::test]
async fn protocol_breaches_close_the_connection_with_a_code_that_says_why() {
    let c = start().await;

    let mut socket = connect_agent(&c).await;
    send(&mut socket, Message::Text("hello".into())).await;
    let (code, reason) = closed_with(&mut socket).await;
    assert_eq!(code, CloseCode::Unsupported);
    assert!(reason.contains("binary"), "{reason}");

    let mut socket = connect_agent(&c).await;
    let mut bytes = vec![5u8];
    message(&UID, 0).encode(&mut bytes).unwrap();
    send(&mut socket, Message::Binary(bytes.into())).await;
    let (code, reason) = closed_with(&mut socket).await;
    assert_eq!(code, CloseCode::Protocol);
    assert!(reason.contains("header 5"), "{reason}");

    // One connection speaks for one agent.
    let mut socket = connect_agent(&c).await;
    answer(&mut socket, &message(&UID, 0)).await;
    let mut other = UID;
    other[15] = 0x01;
    send(&mut socket, frame(&message(&other, 0))).await;
    let (code, reason) = closed_with(&mut socket).await;
    assert_eq!(code, CloseCode::Policy);
    assert!(reason.contains("one instance uid"), "{reason}");
    let (status, _) = c
        .http
        .get("/api/v1/agents/01933e2a-7b4c-7d10-8e01-23456789ab01")
        .await;
    assert_eq!(status, 404, "the second uid was never recorded");

    // Larger than the limit: the WebSocket layer ends it before buffering.
    let mut socket = connect_agent(&c).await;
    let huge = vec![0u8; (4 << 20) + 16];
    use futures_util::SinkExt as _;
    let _ = socket.send(Message::Binary(huge.into())).await;
    match receive(&mut socket).await {
        Received::Closed(Some((code, _))) => assert_eq!(code, CloseCode::Size),
        Received::Closed(None) => {}
        Received::Answer(a) => panic!("an oversized message was answered: {a:?}"),
    }
    c.stop().await;
}

#[tokio::test]
async fn revoking_a_connected_agent_closes_its_connection_at_its_next_message() {
    let c = start().await;
    let mut socket = connect_agent(&c).await;
    answer(&mut socket, &message(&UID, 0)).await;
    c.http.revoke(UID_STRING).await;
    send(&mut socket, frame(&message(&UID, 1))).await;
    let (code, reason) = closed_with(&mut socket).await;
    assert_eq!(code, CloseCode::Policy);
    assert!(reason.contains("revoked"), "{reason}");
    wait_status(&c, UID_STRING, AgentStatus::Offline).await;
    c.stop().await;
}

#[tokio::test]
async fn stopping_the_controller_closes_open_connections() {
    let c = start().await;
    let mut socket = connect_agent(&c).await;
    answer(&mut socket, &message(&UID, 0)).await;
    let stopping = tokio::spawn(c.stop());
    let (code, _) = closed_with(&mut socket).await;
    assert_eq!(code, CloseCode::Away);
    tokio::time::timeout(Duration::from_secs(10), stopping)
        .await
        .expect("the controller stops with a WebSocket open")
        .unwrap();
}

/// A `wss://` connection to `port` trusting the test CA, presenting the
/// test agent's certificate (CN `test-agent`) if asked.
async fn connect_wss(
    port: u16,
    client_certificate: bool,
) -> Result<WebSocketStream<tokio_rustls::client::TlsStream<TcpStream>>, Box<dyn std::error::Error>>
{
    use rustls::pki_types::pem::PemObject as _;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
    let mut roots = rustls::RootCertStore::empty();
    for ca in CertificateDer::pem_file_iter(fixture("ca.pem"))? {
        roots.add(ca?)?;
    }
    let builder = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots);
    let mut config = if client_certificate {
        let certs =
            CertificateDer::pem_file_iter(fixture("agent.pem"))?.collect::<Result<Vec<_>, _>>()?;
        builder.with_client_auth_cert(certs, PrivateKeyDer::from_pem_file(fixture("agent.key"))?)?
    } else {
        builder.with_no_client_auth()
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let tcp = TcpStream::connect(("127.0.0.1", port)).await?;
    let tls = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config))
        .connect(ServerName::try_from("localhost")?, tcp)
        .await?;
    let mut request = format!("wss://localhost:{port}/v1/opamp").into_client_request()?;
    request
        .headers_mut()
        .insert("authorization", format!("Bearer {AGENT_TOKEN}").parse()?);
    let (socket, _) = tokio_tungstenite::client_async(request, tls).await?;
    Ok(socket)
}

#[tokio::test]
async fn websockets_over_tls_follow_the_client_certificate_rule() {
    use futures_util::{SinkExt as _, StreamExt as _};
    for mutual in [false, true] {
        let s = opamp_tls_settings(&temp_dir("opamp-wss"), mutual);
        // (The API is on TLS too: the test's plain HTTP client cannot ask
        // it; what the agent is answered tells.)
        let c = TestController::start(s).await;
        let port = c.running.opamp_addr.unwrap().port();
        if mutual {
            // No certificate: no connection.
            match connect_wss(port, false).await {
                Err(_) => {}
                Ok(mut socket) => assert!(
                    !matches!(socket.next().await, Some(Ok(Message::Binary(_)))),
                    "a connection without a client certificate was served"
                ),
            }
            // A certificate whose CN is not the instance uid: refused at
            // the first message, nothing recorded.
            let mut socket = connect_wss(port, true).await.unwrap();
            socket.send(frame(&message(&UID, 0))).await.unwrap();
            let (code, reason) = match socket.next().await {
                Some(Ok(Message::Close(Some(f)))) => (f.code, f.reason.to_string()),
                other => panic!("expected a close, got {other:?}"),
            };
            assert_eq!(code, CloseCode::Policy);
            assert!(reason.contains("certificate"), "{reason}");
        } else {
            let mut socket = connect_wss(port, false).await.unwrap();
            socket.send(frame(&message(&UID, 0))).await.unwrap();
            match socket.next().await {
                Some(Ok(Message::Binary(bytes))) => {
                    let answer = pb::ServerToAgent::decode(&bytes[1..]).unwrap();
                    assert!(answer.error_response.is_none(), "{answer:?}");
                    assert_eq!(answer.instance_uid, UID.to_vec());
                }
                other => panic!("expected an answer, got {other:?}"),
            }
        }
        c.stop().await;
    }
}
