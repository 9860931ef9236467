//! Simulated OpAMP agents for the fan-out bench: each is its own WebSocket
//! connection to the controller's OpAMP port (a real handshake over TCP),
//! says who it is in a full first report (an opaque Collector-like agent
//! that accepts and reports remote config), answers every offered remote
//! config with `APPLIED` at once, and sends heartbeats when asked. Or, for
//! the HTTP transport, [`poll`] is one heartbeat request.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use futures_util::{SinkExt as _, StreamExt as _};
use phoenix_proto::opamp as pb;
use prost::Message as _;
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;

use super::AGENT_TOKEN;

/// ReportsStatus, AcceptsRemoteConfig, ReportsEffectiveConfig,
/// ReportsRemoteConfig, ReportsHeartbeat.
const CAPABILITIES: u64 = 0x1 | 0x2 | 0x4 | 0x1000 | 0x2000;

/// Agent `index`'s 16-byte instance uid.
pub fn uid(index: usize) -> Vec<u8> {
    let mut uid = vec![0x01, 0x93, 0x3e, 0x2a, 0x7b, 0x4c, 0x7d, 0x10, 0x8e, 0x01];
    uid.extend_from_slice(&(index as u64).to_be_bytes()[2..]);
    uid
}

fn attribute(key: &str, value: &str) -> pb::KeyValue {
    pb::KeyValue {
        key: key.into(),
        value: Some(pb::AnyValue {
            value: Some(pb::any_value::Value::StringValue(value.into())),
        }),
    }
}

/// The first message: everything a Collector's supervisor would report.
fn full_report(index: usize, label: (&str, &str)) -> pb::AgentToServer {
    pb::AgentToServer {
        instance_uid: uid(index),
        sequence_num: 0,
        capabilities: CAPABILITIES,
        agent_description: Some(pb::AgentDescription {
            identifying_attributes: vec![
                attribute("service.name", "io.opentelemetry.collector"),
                attribute("service.version", "0.120.0"),
            ],
            non_identifying_attributes: vec![
                attribute("host.name", &format!("bench-{index:04}.local")),
                attribute(label.0, label.1),
            ],
        }),
        health: Some(pb::ComponentHealth {
            healthy: true,
            status: "StatusOK".into(),
            ..Default::default()
        }),
        effective_config: Some(pb::EffectiveConfig {
            config_map: Some(pb::AgentConfigMap {
                config_map: [(
                    String::new(),
                    pb::AgentConfigFile {
                        body: b"receivers:\n  hostmetrics: {}\n".to_vec(),
                        content_type: "text/yaml".into(),
                    },
                )]
                .into(),
            }),
        }),
        ..Default::default()
    }
}

fn heartbeat(index: usize, seq: u64) -> pb::AgentToServer {
    pb::AgentToServer {
        instance_uid: uid(index),
        sequence_num: seq,
        capabilities: CAPABILITIES,
        ..Default::default()
    }
}

/// OpAMP's WebSocket framing: header 0, then the message.
fn frame(message: &pb::AgentToServer) -> Message {
    let mut bytes = vec![0u8];
    message.encode(&mut bytes).expect("a Vec grows as needed");
    Message::Binary(bytes.into())
}

/// What the bench tells its WebSocket agents and counts of them.
#[derive(Clone)]
pub struct Fleet {
    /// Each change: every agent sends one heartbeat.
    pub beat: Arc<watch::Sender<u64>>,
    /// Answers without a remote config received, over all agents: to
    /// heartbeats, and to the statuses that answer a push.
    pub beats_answered: Arc<AtomicU64>,
}

impl Default for Fleet {
    fn default() -> Self {
        Fleet {
            beat: Arc::new(watch::channel(0).0),
            beats_answered: Arc::default(),
        }
    }
}

/// Open agent `index`'s WebSocket and send its full report; returns once
/// it is answered (recorded), the agent then living in a spawned task.
pub async fn connect_ws(
    opamp: SocketAddr,
    index: usize,
    label: (&'static str, &'static str),
    fleet: Fleet,
) -> Result<(), String> {
    let mut request = format!("ws://{opamp}/v1/opamp")
        .into_client_request()
        .map_err(|e| e.to_string())?;
    request.headers_mut().insert(
        "authorization",
        format!("Bearer {AGENT_TOKEN}")
            .parse()
            .map_err(|_| "token")?,
    );
    let tcp = TcpStream::connect(opamp).await.map_err(|e| e.to_string())?;
    let (mut socket, _) = tokio_tungstenite::client_async(request, tcp)
        .await
        .map_err(|e| e.to_string())?;
    socket
        .send(frame(&full_report(index, label)))
        .await
        .map_err(|e| e.to_string())?;
    match socket.next().await {
        Some(Ok(Message::Binary(_))) => {}
        other => return Err(format!("agent {index}: no answer to its report: {other:?}")),
    }
    let mut beats = fleet.beat.subscribe();
    tokio::spawn(async move {
        let mut seq = 0u64;
        loop {
            tokio::select! {
                changed = beats.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    seq += 1;
                    if socket.send(frame(&heartbeat(index, seq))).await.is_err() {
                        return;
                    }
                }
                received = socket.next() => {
                    let Some(Ok(Message::Binary(bytes))) = received else { return };
                    let Ok(answer) = pb::ServerToAgent::decode(&bytes[1..]) else { return };
                    let Some(remote) = answer.remote_config else {
                        fleet.beats_answered.fetch_add(1, Ordering::Relaxed);
                        continue;
                    };
                    seq += 1;
                    let mut applied = heartbeat(index, seq);
                    applied.remote_config_status = Some(pb::RemoteConfigStatus {
                        last_remote_config_hash: remote.config_hash,
                        status: pb::RemoteConfigStatuses::Applied as i32,
                        error_message: String::new(),
                    });
                    if socket.send(frame(&applied)).await.is_err() {
                        return;
                    }
                }
            }
        }
    });
    Ok(())
}

/// One HTTP request of agent `index`: its full report when `seq` is 0,
/// else a heartbeat. Returns the status code.
pub async fn poll(
    http: &reqwest::Client,
    opamp: SocketAddr,
    index: usize,
    seq: u64,
    label: (&str, &str),
) -> Result<u16, String> {
    let message = if seq == 0 {
        full_report(index, label)
    } else {
        heartbeat(index, seq)
    };
    let response = http
        .post(format!("http://{opamp}/v1/opamp"))
        .bearer_auth(AGENT_TOKEN)
        .header("content-type", "application/x-protobuf")
        .body(message.encode_to_vec())
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let status = response.status().as_u16();
    response.bytes().await.map_err(|e| e.to_string())?;
    Ok(status)
}
