//! The controller's OpAMP server (HTTP transport) in-process: what an
//! OpAMP agent's reports make of it in the fleet, the sequence rules
//! (full state asked for when state is missing or a message was missed),
//! and that bad or unauthenticated requests are refused and change nothing.

mod common;

use std::io::Write as _;
use std::time::Duration;

use common::*;
use phoenix_api::{
    AgentDetail, AgentEnrollment, AgentKind, AgentStatus, ConfigKind, Push, PushCreated,
    PushTargetState,
};
use phoenix_proto::opamp as pb;
use prost::Message as _;
use serde_json::json;

const UID: [u8; 16] = [
    0x01, 0x93, 0x3e, 0x2a, 0x7b, 0x4c, 0x7d, 0x10, 0x8e, 0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd,
];
const UID_STRING: &str = "01933e2a-7b4c-7d10-8e01-23456789abcd";

async fn start() -> TestController {
    let dir = temp_dir("opamp");
    let mut settings = settings(&dir);
    settings.opamp_listen = Some("127.0.0.1:0".parse().unwrap());
    TestController::start(settings).await
}

fn url(c: &TestController) -> String {
    format!("http://{}/v1/opamp", c.running.opamp_addr.unwrap())
}

/// POST `body` with the agent token (unless `token` is None): status, body.
async fn post_raw(
    c: &TestController,
    token: Option<&str>,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> (u16, Vec<u8>) {
    let mut request = reqwest::Client::new().post(url(c)).body(body);
    if !headers.iter().any(|(k, _)| *k == "content-type") {
        request = request.header("content-type", "application/x-protobuf");
    }
    if let Some(t) = token {
        request = request.header("authorization", format!("Bearer {t}"));
    }
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.bytes().await.unwrap().to_vec())
}

async fn post(c: &TestController, message: &pb::AgentToServer) -> pb::ServerToAgent {
    let (status, body) = post_raw(c, Some(AGENT_TOKEN), &[], message.encode_to_vec()).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    pb::ServerToAgent::decode(body.as_slice()).unwrap()
}

fn attribute(key: &str, value: &str) -> pb::KeyValue {
    pb::KeyValue {
        key: key.into(),
        value: Some(pb::AnyValue {
            value: Some(pb::any_value::Value::StringValue(value.into())),
        }),
    }
}

fn full_state(seq: u64) -> pb::AgentToServer {
    pb::AgentToServer {
        instance_uid: UID.to_vec(),
        sequence_num: seq,
        capabilities: 0x1 | 0x4 | 0x800,
        agent_description: Some(pb::AgentDescription {
            identifying_attributes: vec![
                attribute("service.name", "io.opentelemetry.collector"),
                attribute("service.version", "0.120.0"),
            ],
            non_identifying_attributes: vec![
                attribute("host.name", "node-7"),
                attribute("env", "staging"),
            ],
        }),
        health: Some(pb::ComponentHealth {
            healthy: true,
            status: "StatusOK".into(),
            component_health_map: [(
                "pipeline:metrics".to_string(),
                pb::ComponentHealth {
                    healthy: false,
                    last_error: "exporter unreachable".into(),
                    ..Default::default()
                },
            )]
            .into(),
            ..Default::default()
        }),
        effective_config: Some(pb::EffectiveConfig {
            config_map: Some(pb::AgentConfigMap {
                config_map: [(
                    "collector.yaml".to_string(),
                    pb::AgentConfigFile {
                        body: b"receivers:\n  hostmetrics: {}\n".to_vec(),
                        content_type: "text/yaml".into(),
                    },
                )]
                .into(),
            }),
        }),
        remote_config_status: Some(pb::RemoteConfigStatus {
            last_remote_config_hash: vec![0xab, 0xcd],
            status: pb::RemoteConfigStatuses::Failed as i32,
            error_message: "unknown receiver".into(),
        }),
        ..Default::default()
    }
}

fn heartbeat(seq: u64) -> pb::AgentToServer {
    pb::AgentToServer {
        instance_uid: UID.to_vec(),
        sequence_num: seq,
        capabilities: 0x1 | 0x4 | 0x800,
        ..Default::default()
    }
}

const FULL: u64 = pb::ServerToAgentFlags::ReportFullState as u64;

#[tokio::test]
async fn an_opamp_agent_appears_in_the_fleet_with_everything_it_reported() {
    let c = start().await;
    let answer = post(&c, &full_state(0)).await;
    assert_eq!(answer.instance_uid, UID.to_vec());
    assert_eq!(answer.flags & FULL, 0);
    assert_eq!(answer.capabilities & 1, 1, "AcceptsStatus");
    assert!(answer.error_response.is_none());

    let detail: AgentDetail = c.http.get_as(&format!("/api/v1/agents/{UID_STRING}")).await;
    let a = &detail.agent;
    assert_eq!(a.kind, AgentKind::Opamp);
    assert_eq!(a.status, AgentStatus::Online);
    assert_eq!(a.host_name, "node-7");
    assert_eq!(a.version, "0.120.0");
    assert_eq!(a.labels["service.name"], "io.opentelemetry.collector");
    assert_eq!(a.labels["env"], "staging");
    assert_eq!(
        a.capabilities,
        vec!["ReportsStatus", "ReportsEffectiveConfig", "ReportsHealth"]
    );
    let o = a.opamp.as_ref().unwrap();
    assert_eq!(o.capability_bits, 0x805);
    let health = o.health.as_ref().unwrap();
    assert!(health.healthy);
    assert_eq!(
        health.components["pipeline:metrics"].last_error,
        "exporter unreachable"
    );
    let file = &o.effective_config.as_ref().unwrap().files["collector.yaml"];
    assert_eq!(file.body, "receivers:\n  hostmetrics: {}\n");
    assert_eq!(file.content_type, "text/yaml");
    let remote = o.remote_config_status.as_ref().unwrap();
    assert_eq!(
        (
            remote.last_remote_config_hash.as_str(),
            remote.status.as_str(),
            remote.error_message.as_str()
        ),
        ("abcd", "failed", "unknown receiver")
    );

    // Heartbeats in order keep what was reported.
    assert_eq!(post(&c, &heartbeat(1)).await.flags & FULL, 0);
    assert_eq!(post(&c, &heartbeat(2)).await.flags & FULL, 0);
    // A missed message: full state asked for, and given.
    assert_eq!(post(&c, &heartbeat(4)).await.flags & FULL, FULL);
    assert_eq!(post(&c, &full_state(5)).await.flags & FULL, 0);
    let detail: AgentDetail = c.http.get_as(&format!("/api/v1/agents/{UID_STRING}")).await;
    assert!(detail.agent.opamp.unwrap().effective_config.is_some());

    // A Collector takes opaque configs: a Phoenix push, by label or by
    // id, is refused.
    assert_eq!(a.config_kind, ConfigKind::Opaque);
    for selector in [
        json!({"labels": {"env": "staging"}}),
        json!({"agents": [UID_STRING]}),
    ] {
        let (status, body) = c
            .http
            .post(
                "/api/v1/pushes",
                json!({"selector": selector, "template": "process-basic-v1"}),
            )
            .await;
        assert_eq!(status, 400, "{body}");
        assert!(body.to_string().contains("take opaque configs"), "{body}");
    }

    // AgentDisconnect: offline at once.
    let mut bye = heartbeat(6);
    bye.agent_disconnect = Some(pb::AgentDisconnect {});
    post(&c, &bye).await;
    let detail: AgentDetail = c.http.get_as(&format!("/api/v1/agents/{UID_STRING}")).await;
    assert_eq!(detail.agent.status, AgentStatus::Offline);
    c.stop().await;
}

#[tokio::test]
async fn a_server_without_state_for_the_uid_asks_for_full_state() {
    let c = start().await;
    // As after a controller restart: a heartbeat from an agent never seen.
    let answer = post(&c, &heartbeat(41)).await;
    assert_eq!(answer.flags & FULL, FULL);
    // It is online meanwhile, known by its uid only.
    let detail: AgentDetail = c.http.get_as(&format!("/api/v1/agents/{UID_STRING}")).await;
    assert_eq!(detail.agent.status, AgentStatus::Online);
    assert!(detail.agent.opamp.unwrap().description.is_none());
    assert_eq!(post(&c, &full_state(42)).await.flags & FULL, 0);
    assert_eq!(post(&c, &heartbeat(43)).await.flags & FULL, 0);
    c.stop().await;
}

#[tokio::test]
async fn bad_and_unauthenticated_requests_are_refused_and_change_nothing() {
    let c = start().await;
    let good = full_state(0).encode_to_vec();

    // No token, a wrong one, an unknown credential: 401, body unread.
    assert_eq!(post_raw(&c, None, &[], good.clone()).await.0, 401);
    assert_eq!(post_raw(&c, Some("wrong"), &[], good.clone()).await.0, 401);
    let unknown = [("x-phoenix-agent-credential", "f".repeat(64))];
    let unknown: Vec<(&str, &str)> = unknown.iter().map(|(k, v)| (*k, v.as_str())).collect();
    assert_eq!(post_raw(&c, None, &unknown, good.clone()).await.0, 401);

    // Garbage: 400 with OpAMP's BadRequest.
    let (status, body) = post_raw(&c, Some(AGENT_TOKEN), &[], vec![0xff; 64]).await;
    assert_eq!(status, 400);
    let error = pb::ServerToAgent::decode(body.as_slice())
        .unwrap()
        .error_response
        .unwrap();
    assert_eq!(error.r#type, pb::ServerErrorResponseType::BadRequest as i32);
    assert!(error.error_message.contains("AgentToServer"));

    // A uid that is not 16 bytes: 400.
    let mut short = full_state(0);
    short.instance_uid = vec![1, 2, 3];
    let (status, body) = post_raw(&c, Some(AGENT_TOKEN), &[], short.encode_to_vec()).await;
    assert_eq!(status, 400);
    let error = pb::ServerToAgent::decode(body.as_slice())
        .unwrap()
        .error_response
        .unwrap();
    assert!(error.error_message.contains("16 bytes"));

    // Oversized as sent, and once gunzipped: 413.
    let (status, _) = post_raw(&c, Some(AGENT_TOKEN), &[], vec![0; 2 << 20]).await;
    assert_eq!(status, 413);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(&vec![0u8; 16 << 20]).unwrap();
    let bomb = gz.finish().unwrap();
    let gzip = [("content-encoding", "gzip")];
    assert_eq!(post_raw(&c, Some(AGENT_TOKEN), &gzip, bomb).await.0, 413);
    // Not gzip at all: 400.
    assert_eq!(
        post_raw(&c, Some(AGENT_TOKEN), &gzip, vec![1, 2, 3])
            .await
            .0,
        400
    );
    // Not protobuf: 415.
    let (status, _) = post_raw(
        &c,
        Some(AGENT_TOKEN),
        &[("content-type", "application/json")],
        b"{}".to_vec(),
    )
    .await;
    assert_eq!(status, 415);

    // None of it made an agent.
    let (status, body) = c.http.get("/api/v1/agents").await;
    assert_eq!(status, 200);
    assert_eq!(body["agents"], json!([]), "{body}");

    // Counted by status.
    let metrics = reqwest::get(format!("http://{}/metrics", c.running.http_addr))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for line in [
        "phoenix_controller_opamp_requests_total{code=\"401\"} 3",
        "phoenix_controller_opamp_requests_total{code=\"413\"} 2",
        "phoenix_controller_opamp_requests_total{code=\"415\"} 1",
    ] {
        assert!(metrics.contains(line), "{line} missing:\n{metrics}");
    }

    // A gzipped report is read like a plain one.
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&good).unwrap();
    let (status, _) = post_raw(&c, Some(AGENT_TOKEN), &gzip, gz.finish().unwrap()).await;
    assert_eq!(status, 200);
    c.stop().await;
}

#[tokio::test]
async fn a_revoked_opamp_agent_is_refused() {
    let c = start().await;
    post(&c, &full_state(0)).await;
    c.http.revoke(UID_STRING).await;
    let (status, body) = post_raw(&c, Some(AGENT_TOKEN), &[], heartbeat(1).encode_to_vec()).await;
    assert_eq!(status, 403, "{}", String::from_utf8_lossy(&body));
    tokio::time::sleep(Duration::from_millis(10)).await;
    let detail: AgentDetail = c.http.get_as(&format!("/api/v1/agents/{UID_STRING}")).await;
    assert_eq!(detail.agent.status, AgentStatus::Offline);
    c.stop().await;
}

/// HTTPS on the OpAMP port (HTTP/1.1 over the controller's certificate),
/// and with `--client-ca` the client certificate's Common Name must be the
/// instance uid: the fixture's `test-agent` is not, so it is refused.
#[tokio::test]
async fn opamp_over_tls_with_the_client_certificate_rule() {
    let ca = std::fs::read(fixture("ca.pem")).unwrap();
    let post_tls = |port: u16, identity: Option<reqwest::Identity>| {
        let ca = ca.clone();
        async move {
            let mut client = reqwest::Client::builder()
                .add_root_certificate(reqwest::Certificate::from_pem(&ca).unwrap())
                .http1_only();
            if let Some(i) = identity {
                client = client.identity(i);
            }
            client
                .build()
                .unwrap()
                .post(format!("https://localhost:{port}/v1/opamp"))
                .header("content-type", "application/x-protobuf")
                .header("authorization", format!("Bearer {AGENT_TOKEN}"))
                .body(full_state(0).encode_to_vec())
                .send()
                .await
                .map(|r| r.status().as_u16())
        }
    };
    for mutual in [false, true] {
        let s = opamp_tls_settings(&temp_dir("opamp-tls"), mutual);
        let c = TestController::start(s).await;
        let port = c.running.opamp_addr.unwrap().port();
        if mutual {
            // No certificate: no handshake.
            assert!(post_tls(port, None).await.is_err());
            let mut pem = std::fs::read(fixture("agent.pem")).unwrap();
            pem.extend(std::fs::read(fixture("agent.key")).unwrap());
            let identity = reqwest::Identity::from_pem(&pem).unwrap();
            assert_eq!(post_tls(port, Some(identity)).await.unwrap(), 403);
        } else {
            assert_eq!(post_tls(port, None).await.unwrap(), 200);
        }
        c.stop().await;
    }
}

/// An OpAMP report never takes over a Phoenix agent's id (403, whether its
/// credential is pending or enrolled), nor a Hello an OpAMP agent's.
/// Nothing changes either way.
#[tokio::test]
async fn a_phoenix_agents_id_is_not_an_opamp_agents() {
    let c = start().await;
    let _native = FakeAgent::connect(c.grpc_addr(), FakeAgentSpec::new(UID_STRING, &[]))
        .await
        .unwrap();
    let (status, body) = post_raw(&c, Some(AGENT_TOKEN), &[], full_state(0).encode_to_vec()).await;
    assert_eq!(status, 403, "{}", String::from_utf8_lossy(&body));
    assert!(String::from_utf8_lossy(&body).contains("other protocol"));
    let detail: AgentDetail = c.http.get_as(&format!("/api/v1/agents/{UID_STRING}")).await;
    assert_eq!(detail.agent.kind, AgentKind::Phoenix);
    assert!(detail.agent.opamp.is_none());

    // Enrolled with its own credential: the token alone is refused as a
    // native session would be.
    let enrolled_id = "01933e2a-7b4c-7d10-8e01-000000000001";
    let mut spec = FakeAgentSpec::new(enrolled_id, &[]);
    spec.keep_credential = true;
    let _enrolled = FakeAgent::connect(c.grpc_addr(), spec).await.unwrap();
    let path = format!("/api/v1/agents/{enrolled_id}");
    let mut enrolled = false;
    for _ in 0..100 {
        let detail: AgentDetail = c.http.get_as(&path).await;
        if detail.agent.enrollment == phoenix_api::AgentEnrollment::Enrolled {
            enrolled = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(enrolled);
    let mut claim = full_state(0);
    claim.instance_uid = uuid_bytes(enrolled_id);
    let (status, body) = post_raw(&c, Some(AGENT_TOKEN), &[], claim.encode_to_vec()).await;
    assert_eq!(status, 403, "{}", String::from_utf8_lossy(&body));

    // The other way round: a Hello for an OpAMP agent's id.
    let opamp_id = "01933e2a-7b4c-7d10-8e01-000000000002";
    let mut report = full_state(0);
    report.instance_uid = uuid_bytes(opamp_id);
    post(&c, &report).await;
    let refused = FakeAgent::connect(c.grpc_addr(), FakeAgentSpec::new(opamp_id, &[]))
        .await
        .err()
        .expect("a Hello for an OpAMP agent's id is refused");
    assert_eq!(refused.code(), tonic::Code::PermissionDenied, "{refused}");
    let detail: AgentDetail = c.http.get_as(&format!("/api/v1/agents/{opamp_id}")).await;
    assert_eq!(detail.agent.kind, AgentKind::Opamp);
    c.stop().await;
}

fn uuid_bytes(uuid: &str) -> Vec<u8> {
    let hex: String = uuid.chars().filter(|c| *c != '-').collect();
    (0..16)
        .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap())
        .collect()
}

/// After a controller restart the agent is offline until it polls again,
/// keeps what it reported, and is asked for its full state.
#[tokio::test]
async fn after_a_restart_the_agent_is_asked_for_its_full_state() {
    let dir = temp_dir("opamp-restart");
    let start_on = |dir: std::path::PathBuf| async move {
        let mut s = settings(&dir);
        s.opamp_listen = Some("127.0.0.1:0".parse().unwrap());
        TestController::start(s).await
    };
    let c = start_on(dir.clone()).await;
    post(&c, &full_state(0)).await;
    assert_eq!(post(&c, &heartbeat(1)).await.flags & FULL, 0);
    c.stop().await;

    let c = start_on(dir).await;
    let path = format!("/api/v1/agents/{UID_STRING}");
    let before: AgentDetail = c.http.get_as(&path).await;
    assert_eq!(before.agent.status, AgentStatus::Offline);
    assert_eq!(post(&c, &heartbeat(2)).await.flags & FULL, FULL);
    let after: AgentDetail = c.http.get_as(&path).await;
    assert_eq!(after.agent.status, AgentStatus::Online);
    // What it reported before the restart is still shown.
    assert_eq!(after.agent.labels["env"], "staging");
    assert!(after.agent.opamp.unwrap().effective_config.is_some());
    assert_eq!(post(&c, &full_state(3)).await.flags & FULL, 0);
    c.stop().await;
}

/// `AcceptsRemoteConfig`, `ReportsRemoteConfig`, `AcceptsOpAMPConnectionSettings`.
const ACCEPTS_REMOTE_CONFIG: u64 = pb::AgentCapabilities::AcceptsRemoteConfig as u64;
const REPORTS_REMOTE_CONFIG: u64 = pb::AgentCapabilities::ReportsRemoteConfig as u64;
const ACCEPTS_SETTINGS: u64 = pb::AgentCapabilities::AcceptsOpAmpConnectionSettings as u64;

/// An agent `uid` named `service_name` with `env=staging`, with these
/// capabilities besides ReportsStatus.
fn described(uid: &str, service_name: &str, capabilities: u64) -> pb::AgentToServer {
    pb::AgentToServer {
        instance_uid: uuid_bytes(uid),
        capabilities: 0x1 | capabilities,
        agent_description: Some(pb::AgentDescription {
            identifying_attributes: vec![attribute("service.name", service_name)],
            non_identifying_attributes: vec![attribute("env", "staging")],
        }),
        ..Default::default()
    }
}

fn reporting(
    uid: &str,
    seq: u64,
    hash: &[u8],
    status: pb::RemoteConfigStatuses,
    error: &str,
) -> pb::AgentToServer {
    pb::AgentToServer {
        instance_uid: uuid_bytes(uid),
        sequence_num: seq,
        capabilities: 0x1 | ACCEPTS_REMOTE_CONFIG | REPORTS_REMOTE_CONFIG,
        remote_config_status: Some(pb::RemoteConfigStatus {
            last_remote_config_hash: hash.to_vec(),
            status: status as i32,
            error_message: error.into(),
        }),
        ..Default::default()
    }
}

/// Create a push that is accepted (202).
async fn create_push(c: &TestController, request: serde_json::Value) -> PushCreated {
    let (status, created) = c.http.post("/api/v1/pushes", request).await;
    assert_eq!(status, 202, "{created}");
    serde_json::from_value(created).unwrap()
}

/// Ask for a push that is refused as a bad request (400): the answer.
async fn refused_push(c: &TestController, request: serde_json::Value) -> String {
    let (status, body) = c.http.post("/api/v1/pushes", request.clone()).await;
    assert_eq!(status, 400, "{request}: {body}");
    body.to_string()
}

async fn push_state(c: &TestController, id: &str) -> Push {
    c.http.get_as(&format!("/api/v1/pushes/{id}")).await
}

/// How many audit entries of `push` record `action`.
async fn audited(c: &TestController, push: &str, action: &str) -> usize {
    let (status, log) = c.http.get(&format!("/api/v1/audit?push={push}")).await;
    assert_eq!(status, 200, "{log}");
    log["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == action)
        .count()
}

fn unhex(hex: &str) -> Vec<u8> {
    (0..hex.len() / 2)
        .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap())
        .collect()
}

const COLLECTOR: &str = "01933e2a-7b4c-7d10-8e01-00000000c011";

#[tokio::test]
async fn an_opaque_push_is_offered_on_the_next_poll_and_its_statuses_move_the_target() {
    let c = start().await;
    collector_reports(&c).await;
    let body = "receivers:\n  hostmetrics: {}\n";
    let created = create_push(
        &c,
        json!({
            "selector": {"labels": {"env": "staging"}},
            "yaml": body,
            "config_kind": "opaque",
            "content_type": "application/x-collector+yaml",
            "file": "collector.yaml",
        }),
    )
    .await;
    // An HTTP agent is not connected: it gets the push when it polls.
    assert_eq!(created.targets[0].state, PushTargetState::Pending);
    let hash = unhex(&created.hash);

    let answer = post(&c, &heartbeat_of(COLLECTOR, 1)).await;
    let offer = answer.remote_config.expect("the push is offered");
    assert_eq!(offer.config_hash, hash);
    let files = offer.config.unwrap().config_map;
    assert_eq!(files.len(), 1);
    let file = &files["collector.yaml"];
    assert_eq!(file.body, body.as_bytes());
    assert_eq!(file.content_type, "application/x-collector+yaml");
    assert_eq!(
        answer.capabilities & pb::ServerCapabilities::OffersRemoteConfig as u64,
        pb::ServerCapabilities::OffersRemoteConfig as u64
    );
    let push = push_state(&c, &created.id).await;
    assert_eq!(push.config_kind, ConfigKind::Opaque);
    assert_eq!(
        (push.file.as_str(), push.counts.applying),
        ("collector.yaml", 1)
    );

    // APPLYING with the push's hash: in progress, and no offer again.
    let answer = post(
        &c,
        &reporting(COLLECTOR, 2, &hash, pb::RemoteConfigStatuses::Applying, ""),
    )
    .await;
    assert!(answer.remote_config.is_none());
    assert_eq!(push_state(&c, &created.id).await.counts.applying, 1);
    // A status naming another hash says nothing about this push.
    post(
        &c,
        &reporting(
            COLLECTOR,
            3,
            &[0xee; 32],
            pb::RemoteConfigStatuses::Failed,
            "old",
        ),
    )
    .await;
    assert_eq!(push_state(&c, &created.id).await.counts.applying, 1);
    // APPLIED, reported again and again as agents repeat their state:
    // applied once.
    for seq in 4..7 {
        let answer = post(
            &c,
            &reporting(COLLECTOR, seq, &hash, pb::RemoteConfigStatuses::Applied, ""),
        )
        .await;
        assert!(answer.remote_config.is_none());
    }
    let push = push_state(&c, &created.id).await;
    assert_eq!((push.counts.applied, push.total), (1, 1), "{push:?}");
    assert_eq!(push.targets[0].hash, created.hash);
    assert_eq!(audited(&c, &created.id, "push.applied").await, 1);
    let detail: AgentDetail = c.http.get_as(&format!("/api/v1/agents/{COLLECTOR}")).await;
    let remote = detail.agent.opamp.unwrap().remote_config_status.unwrap();
    assert_eq!(
        (remote.last_remote_config_hash, remote.status),
        (created.hash.clone(), "applied".to_string())
    );

    // A second push the agent refuses: failed with its error, once.
    let second = create_push(
        &c,
        json!({"selector": {"agents": [COLLECTOR]}, "yaml": "bad: [", "config_kind": "opaque"}),
    )
    .await;
    let answer = post(
        &c,
        &reporting(COLLECTOR, 7, &hash, pb::RemoteConfigStatuses::Applied, ""),
    )
    .await;
    let offer = answer.remote_config.expect("the new push is offered");
    // Defaults: the agent's only file, as YAML.
    let files = offer.config.unwrap().config_map;
    assert_eq!(files[""].content_type, "text/yaml");
    let second_hash = unhex(&second.hash);
    for seq in 8..10 {
        post(
            &c,
            &reporting(
                COLLECTOR,
                seq,
                &second_hash,
                pb::RemoteConfigStatuses::Failed,
                "yaml: line 1: did not find expected node content",
            ),
        )
        .await;
    }
    let push = push_state(&c, &second.id).await;
    assert_eq!(push.counts.failed, 1, "{push:?}");
    assert!(push.targets[0].error.contains("did not find expected node"));
    assert_eq!(audited(&c, &second.id, "push.failed").await, 1);
    // A refused config is not offered again (it would only fail again).
    let answer = post(&c, &heartbeat_of(COLLECTOR, 10)).await;
    assert!(answer.remote_config.is_none());
    // The first push was superseded; the later statuses did not touch it.
    assert_eq!(push_state(&c, &created.id).await.counts.applied, 1);

    // An agent that stopped declaring AcceptsRemoteConfig is offered
    // nothing until it declares it again.
    let third = create_push(
        &c,
        json!({"selector": {"agents": [COLLECTOR]}, "yaml": "third", "config_kind": "opaque"}),
    )
    .await;
    let mut deaf = heartbeat_of(COLLECTOR, 11);
    deaf.capabilities = 0x1;
    assert!(post(&c, &deaf).await.remote_config.is_none());
    assert_eq!(push_state(&c, &third.id).await.counts.pending, 1);
    let offer = post(&c, &heartbeat_of(COLLECTOR, 12)).await.remote_config;
    assert_eq!(offer.unwrap().config_hash, unhex(&third.hash));
    c.stop().await;
}

/// The reaper times out an OpAMP target as a native one, and a late
/// answer still settles it.
#[tokio::test]
async fn an_unanswered_opaque_push_times_out_and_a_late_answer_settles_it() {
    let dir = temp_dir("opamp-timeout");
    let mut settings = settings(&dir);
    settings.opamp_listen = Some("127.0.0.1:0".parse().unwrap());
    settings.push_timeout = Duration::from_millis(200);
    let c = TestController::start(settings).await;
    collector_reports(&c).await;
    let created = create_push(
        &c,
        json!({"selector": {"agents": [COLLECTOR]}, "yaml": "late", "config_kind": "opaque"}),
    )
    .await;
    let mut timed_out = false;
    for _ in 0..100 {
        if push_state(&c, &created.id).await.counts.timeout == 1 {
            timed_out = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(timed_out, "the target never timed out");
    // The desired config stands: offered at the next poll, and applied.
    let offer = post(&c, &heartbeat_of(COLLECTOR, 1)).await.remote_config;
    let hash = unhex(&created.hash);
    assert_eq!(offer.unwrap().config_hash, hash);
    post(
        &c,
        &reporting(COLLECTOR, 2, &hash, pb::RemoteConfigStatuses::Applied, ""),
    )
    .await;
    assert_eq!(push_state(&c, &created.id).await.counts.applied, 1);
    c.stop().await;
}

/// A Collector (`COLLECTOR`) that takes remote configs and reports on them
/// introduces itself.
async fn collector_reports(c: &TestController) {
    post(
        c,
        &described(
            COLLECTOR,
            "io.opentelemetry.collector",
            ACCEPTS_REMOTE_CONFIG | REPORTS_REMOTE_CONFIG,
        ),
    )
    .await;
}

fn heartbeat_of(uid: &str, seq: u64) -> pb::AgentToServer {
    pb::AgentToServer {
        instance_uid: uuid_bytes(uid),
        sequence_num: seq,
        capabilities: 0x1 | ACCEPTS_REMOTE_CONFIG | REPORTS_REMOTE_CONFIG,
        ..Default::default()
    }
}

#[tokio::test]
async fn a_phoenix_agent_over_opamp_takes_phoenix_pushes() {
    let c = start().await;
    let uid = "01933e2a-7b4c-7d10-8e01-0000000000a1";
    post(
        &c,
        &described(
            uid,
            "phoenix-agent",
            ACCEPTS_REMOTE_CONFIG | REPORTS_REMOTE_CONFIG,
        ),
    )
    .await;
    let detail: AgentDetail = c.http.get_as(&format!("/api/v1/agents/{uid}")).await;
    assert_eq!(detail.agent.config_kind, ConfigKind::Phoenix);
    // An opaque config is not for it.
    let body = refused_push(
        &c,
        json!({"selector": {"agents": [uid]}, "yaml": "x: 1", "config_kind": "opaque"}),
    )
    .await;
    assert!(body.contains("take phoenix configs"), "{body}");
    // A template is, validated as for a native agent.
    let created = create_push(
        &c,
        json!({"selector": {"agents": [uid]}, "template": "process-basic-v1"}),
    )
    .await;
    let answer = post(&c, &heartbeat_of(uid, 1)).await;
    let offer = answer.remote_config.expect("offered");
    assert_eq!(offer.config_hash, unhex(&created.hash));
    let body = &offer.config.unwrap().config_map[""].body;
    assert_eq!(
        phoenix_config::config_hash(std::str::from_utf8(body).unwrap()),
        created.hash
    );
    c.stop().await;
}

#[tokio::test]
async fn pushes_that_cannot_reach_their_targets_are_refused_and_change_nothing() {
    let c = start().await;
    let _native = FakeAgent::connect(
        c.grpc_addr(),
        FakeAgentSpec::new("node-a", &[("env", "staging")]),
    )
    .await
    .unwrap();
    post(
        &c,
        &described(
            COLLECTOR,
            "io.opentelemetry.collector",
            ACCEPTS_REMOTE_CONFIG,
        ),
    )
    .await;
    let deaf = "01933e2a-7b4c-7d10-8e01-0000000000de";
    post(&c, &described(deaf, "io.opentelemetry.collector", 0)).await;

    let refused = [
        // A mixed selector, either way.
        (
            json!({"selector": {"labels": {"env": "staging"}}, "template": "process-basic-v1"}),
            "take opaque configs",
        ),
        (
            json!({"selector": {"labels": {"env": "staging"}}, "yaml": "x", "config_kind": "opaque"}),
            "node-a",
        ),
        // The wrong kind by id.
        (
            json!({"selector": {"agents": ["node-a"]}, "yaml": "x", "config_kind": "opaque"}),
            "take phoenix configs",
        ),
        // No AcceptsRemoteConfig.
        (
            json!({"selector": {"agents": [deaf]}, "yaml": "x", "config_kind": "opaque"}),
            "do not accept remote config (no AcceptsRemoteConfig capability): 01933e2a-7b4c-7d10-8e01-0000000000de",
        ),
        // Templates are Phoenix configs.
        (
            json!({"selector": {"agents": [COLLECTOR]}, "template": "process-basic-v1", "config_kind": "opaque"}),
            "templates are Phoenix configs",
        ),
        (
            json!({"selector": {"agents": [COLLECTOR]}, "yaml": "x", "config_kind": "other"}),
            "unknown variant",
        ),
    ];
    for (request, says) in refused {
        let body = refused_push(&c, request.clone()).await;
        assert!(body.contains(says), "{request}: {body}");
    }
    // Nothing stored: no push, no desired config, nothing offered.
    let (_, list) = c.http.get("/api/v1/pushes").await;
    assert_eq!(list["pushes"].as_array().unwrap().len(), 0, "{list}");
    let detail: AgentDetail = c.http.get_as(&format!("/api/v1/agents/{COLLECTOR}")).await;
    assert!(detail.agent.desired.is_none());
    assert!(
        post(&c, &heartbeat_of(COLLECTOR, 1))
            .await
            .remote_config
            .is_none()
    );

    // An experiment needs per-variant stats: an OpAMP target is refused.
    let (status, body) = c
        .http
        .post(
            "/api/v1/experiments",
            json!({"definition": "name: t\ntargets: { labels: { env: staging } }\n\
                candidates: [ { template: process-aggressive-v1 } ]\n\
                critical_processes: ['^sshd$']\ninterval: 1s\nduration: 10s\n"}),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body.to_string().contains("not native Phoenix agents")
            && body.to_string().contains(COLLECTOR),
        "{body}"
    );
    c.stop().await;
}

/// The credential offered in a reply, if any.
fn offered_credential(answer: &pb::ServerToAgent) -> Option<String> {
    let headers = answer
        .connection_settings
        .as_ref()?
        .opamp
        .as_ref()?
        .headers
        .as_ref()?;
    headers
        .headers
        .iter()
        .find(|h| h.key == "x-phoenix-agent-credential")
        .map(|h| h.value.clone())
}

async fn enrollment(c: &TestController, uid: &str) -> AgentEnrollment {
    let detail: AgentDetail = c.http.get_as(&format!("/api/v1/agents/{uid}")).await;
    detail.agent.enrollment
}

#[tokio::test]
async fn an_agent_that_accepts_connection_settings_gets_its_own_credential() {
    let c = start().await;
    let uid = "01933e2a-7b4c-7d10-8e01-0000000000c1";
    let hello = described(uid, "io.opentelemetry.collector", ACCEPTS_SETTINGS);
    let first = post(&c, &hello).await;
    let lost = offered_credential(&first).expect("a credential is offered");
    assert_eq!(lost.len(), 64);
    assert!(!first.connection_settings.as_ref().unwrap().hash.is_empty());
    assert_eq!(
        first.capabilities & pb::ServerCapabilities::OffersConnectionSettings as u64,
        pb::ServerCapabilities::OffersConnectionSettings as u64
    );
    assert_eq!(enrollment(&c, uid).await, AgentEnrollment::Pending);
    // Back with the token while it is pending: a fresh one replaces it.
    let second = post(&c, &hello).await;
    let credential = offered_credential(&second).expect("a fresh credential");
    assert_ne!(credential, lost);
    let with = |credential: &str| [("x-phoenix-agent-credential", credential.to_string())];
    let headers = with(&lost);
    let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (status, _) = post_raw(&c, None, &headers, heartbeat_of(uid, 1).encode_to_vec()).await;
    assert_eq!(status, 401, "the replaced credential opens nothing");

    // Presenting the latest confirms it; no new offer.
    let headers = with(&credential);
    let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mut next = heartbeat_of(uid, 1);
    next.capabilities |= ACCEPTS_SETTINGS;
    let (status, body) = post_raw(&c, None, &headers, next.encode_to_vec()).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let answer = pb::ServerToAgent::decode(body.as_slice()).unwrap();
    assert!(answer.connection_settings.is_none());
    assert_eq!(enrollment(&c, uid).await, AgentEnrollment::Enrolled);
    // The token no longer speaks for this uid.
    let (status, _) = post_raw(&c, Some(AGENT_TOKEN), &[], next.encode_to_vec()).await;
    assert_eq!(status, 403);
    // The credential keeps working, and speaks for its uid only.
    next.sequence_num = 2;
    assert_eq!(
        post_raw(&c, None, &headers, next.encode_to_vec()).await.0,
        200
    );
    next.instance_uid = UID.to_vec();
    assert_eq!(
        post_raw(&c, None, &headers, next.encode_to_vec()).await.0,
        403
    );

    // An agent without the capability keeps using the token.
    let plain = described(
        COLLECTOR,
        "io.opentelemetry.collector",
        ACCEPTS_REMOTE_CONFIG,
    );
    for _ in 0..2 {
        assert!(post(&c, &plain).await.connection_settings.is_none());
    }
    assert_eq!(enrollment(&c, COLLECTOR).await, AgentEnrollment::None);
    c.stop().await;
}
