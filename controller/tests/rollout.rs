//! The controller end to end in-process: fake agents over real gRPC streams,
//! the real HTTP API, the real SQLite store.

mod common;

use std::time::Duration;

use common::*;
use phoenix_api::{AgentDetail, AuditLog, Push, PushList, PushStatus, PushTargetState};
use phoenix_proto::v1::{
    AgentMessage, ConfigState, ConfigStatus, IntervalStats, PipelineStats, agent_message,
};
use serde_json::{Value, json};

fn push_body(labels: Value, yaml: &str) -> Value {
    json!({ "selector": { "labels": labels }, "yaml": yaml, "author": "tester" })
}

fn target<'a>(push: &'a Value, agent: &str) -> &'a Value {
    push["targets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["agent_id"] == agent)
        .unwrap_or_else(|| panic!("no target {agent} in {push}"))
}

#[tokio::test]
async fn hello_lists_the_agent_online_with_its_labels() {
    let dir = temp_dir("hello");
    let c = TestController::start(settings(&dir)).await;
    let agent = FakeAgent::connect(
        c.grpc_addr(),
        FakeAgentSpec::new("node-a", &[("env", "prod"), ("zone", "eu")]),
    )
    .await
    .unwrap();

    let (status, body) = c.http.get("/api/v1/agents").await;
    assert_eq!(status, 200);
    let agents = body["agents"].as_array().unwrap();
    assert_eq!(agents.len(), 1, "{body}");
    assert_eq!(agents[0]["id"], "node-a");
    assert_eq!(agents[0]["status"], "online");
    assert_eq!(agents[0]["labels"], json!({ "env": "prod", "zone": "eu" }));
    assert_eq!(agents[0]["host_name"], "node-a.test");

    let (_, filtered) = c
        .http
        .get("/api/v1/agents?label=env=prod&status=online")
        .await;
    assert_eq!(filtered["agents"].as_array().unwrap().len(), 1);
    let (_, none) = c.http.get("/api/v1/agents?label=env=dev").await;
    assert!(none["agents"].as_array().unwrap().is_empty());
    let (_, offline) = c.http.get("/api/v1/agents?status=offline").await;
    assert!(offline["agents"].as_array().unwrap().is_empty());
    let (status, _) = c.http.get("/api/v1/agents?status=sleepy").await;
    assert_eq!(status, 400);

    // Heartbeats and stats land on the agent's record.
    agent.heartbeat().await;
    agent
        .send(AgentMessage {
            body: Some(agent_message::Body::Stats(IntervalStats {
                time_unix_nano: 42,
                receiver: "procfs".into(),
                scraped_resources: 200,
                experiment_id: String::new(),
                pipelines: vec![PipelineStats {
                    pipeline: "metrics/baseline".into(),
                    mode: "export".into(),
                    series: 1944,
                    ..Default::default()
                }],
            })),
        })
        .await;
    let one = c
        .http
        .wait_agent("node-a", |a| {
            !a["stats"].is_null() && !a["resources"]["resident_memory_bytes"].is_null()
        })
        .await;
    assert_eq!(one["stats"]["pipelines"][0]["series"], 1944);
    assert_eq!(one["resources"]["resident_memory_bytes"], 12 << 20);
    let (status, _) = c.http.get("/api/v1/agents/nobody").await;
    assert_eq!(status, 404);

    // Leaving takes it offline at once.
    agent.disconnect().await;
    c.http
        .wait_agent("node-a", |a| a["status"] == "offline")
        .await;
    let metrics = reqwest::get(format!("{}/metrics", c.http.base))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("phoenix_controller_agents{status=\"offline\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("phoenix_controller_agent_messages_total{type=\"hello\"} 1"),
        "{metrics}"
    );
    c.stop().await;
}

#[tokio::test]
async fn a_push_reaches_only_matching_agents_and_applied_shows_the_hash() {
    let dir = temp_dir("push");
    let c = TestController::start(settings(&dir)).await;
    let mut prod1 = FakeAgent::connect(
        c.grpc_addr(),
        FakeAgentSpec::new("prod-1", &[("env", "prod")]),
    )
    .await
    .unwrap();
    let mut prod2 = FakeAgent::connect(
        c.grpc_addr(),
        FakeAgentSpec::new("prod-2", &[("env", "prod"), ("zone", "b")]),
    )
    .await
    .unwrap();
    let mut dev = FakeAgent::connect(
        c.grpc_addr(),
        FakeAgentSpec::new("dev-1", &[("env", "dev")]),
    )
    .await
    .unwrap();

    let yaml = template("process-basic-v1");
    let hash = phoenix_config::config_hash(&yaml);
    let (status, created) = c
        .http
        .post("/api/v1/pushes", push_body(json!({ "env": "prod" }), &yaml))
        .await;
    assert_eq!(status, 202, "{created}");
    assert_eq!(created["hash"], hash.as_str());
    let id = created["id"].as_str().unwrap().to_string();
    let targets: Vec<&str> = created["targets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["agent_id"].as_str().unwrap())
        .collect();
    assert_eq!(targets, ["prod-1", "prod-2"]);

    for agent in [&mut prod1, &mut prod2] {
        let push = agent.next_push().await;
        assert_eq!(push.push_id, id);
        assert_eq!(push.hash, hash);
        assert_eq!(push.yaml, yaml);
    }
    assert!(
        !dev.got_push_within(Duration::from_millis(300)).await,
        "dev must not get the push"
    );

    let push: Push = typed(c.http.wait_push(&id, |p| p["complete"] == true).await);
    assert_eq!(push.status, PushStatus::Applied, "{push:?}");
    assert_eq!(push.counts.applied, 2);
    assert_eq!(push.total, 2);
    let mut ids: Vec<&str> = push.targets.iter().map(|t| t.agent_id.as_str()).collect();
    ids.sort_unstable();
    assert_eq!(ids, ["prod-1", "prod-2"]);
    for t in &push.targets {
        assert_eq!(t.state, PushTargetState::Applied);
        assert_eq!(t.hash, hash);
        assert_eq!(t.error, "");
    }
    let agent: AgentDetail = c.http.get_as("/api/v1/agents/prod-1").await;
    assert_eq!(agent.agent.config.effective_hash, hash);
    let desired = agent.agent.desired.expect("a desired config");
    assert_eq!(desired.push_id, id);
    assert_eq!(desired.state, Some(PushTargetState::Applied));

    // The same config again is the same config version (deduplicated) but a new push.
    let (status, again) = c
        .http
        .post("/api/v1/pushes", push_body(json!({ "zone": "b" }), &yaml))
        .await;
    assert_eq!(status, 202);
    assert_ne!(again["id"], id.as_str());
    assert_eq!(again["hash"], hash.as_str());
    assert_eq!(prod2.next_push().await.hash, hash);

    // A template by name, to ids.
    let (status, by_template) = c
        .http
        .post(
            "/api/v1/pushes",
            json!({ "selector": { "agents": ["dev-1"] }, "template": "process-critical-v1" }),
        )
        .await;
    assert_eq!(status, 202, "{by_template}");
    assert_eq!(dev.next_push().await.yaml, template("process-critical-v1"));
    let push = c
        .http
        .wait_push(by_template["id"].as_str().unwrap(), |p| {
            p["complete"] == true
        })
        .await;
    assert_eq!(push["template"], "process-critical-v1");
    // Who pushed is the signed-in principal (the single token's admin),
    // whatever the body says.
    assert_eq!(push["author"], "admin");

    // Every push and outcome is in the audit log.
    let audit: AuditLog = c.http.get_as(&format!("/api/v1/audit?push={id}")).await;
    let actions: Vec<&str> = audit.entries.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(
        actions.iter().filter(|a| **a == "push.applied").count(),
        2,
        "{actions:?}"
    );
    assert!(actions.contains(&"push.created"), "{actions:?}");
    assert!(
        audit
            .entries
            .iter()
            .all(|e| e.push_id.as_deref() == Some(id.as_str()))
    );
    let list: PushList = c.http.get_as("/api/v1/pushes?limit=10").await;
    assert_eq!(list.pushes.len(), 3);
    // Listed pushes carry no targets.
    assert!(list.pushes.iter().all(|p| p.targets.is_empty()));
    c.stop().await;
}

#[tokio::test]
async fn a_failed_answer_is_shown_with_the_agents_error() {
    let dir = temp_dir("failed");
    let c = TestController::start(settings(&dir)).await;
    let mut spec = FakeAgentSpec::new("picky", &[("env", "prod")]);
    spec.answer =
        Answer::Fail("exporters::otlp_grpc: cannot bind 127.0.0.1:9464 (address in use)".into());
    let mut agent = FakeAgent::connect(c.grpc_addr(), spec).await.unwrap();
    let mut ok = FakeAgent::connect(
        c.grpc_addr(),
        FakeAgentSpec::new("fine", &[("env", "prod")]),
    )
    .await
    .unwrap();
    let (status, created) = c
        .http
        .post(
            "/api/v1/pushes",
            push_body(json!({ "env": "prod" }), &template("process-standard-v1")),
        )
        .await;
    assert_eq!(status, 202);
    agent.next_push().await;
    ok.next_push().await;
    let push = c
        .http
        .wait_push(created["id"].as_str().unwrap(), |p| p["complete"] == true)
        .await;
    assert_eq!(push["status"], "failed");
    let t = target(&push, "picky");
    assert_eq!(t["state"], "failed");
    assert!(
        t["error"].as_str().unwrap().contains("address in use"),
        "{t}"
    );
    assert_eq!(target(&push, "fine")["state"], "applied");
    let (_, a) = c.http.get("/api/v1/agents/picky").await;
    assert_eq!(a["config"]["state"], "failed");
    assert!(
        a["config"]["error"]
            .as_str()
            .unwrap()
            .contains("address in use")
    );

    // A refused config is not re-sent on reconnect: it would only fail again.
    agent.disconnect().await;
    let mut spec = FakeAgentSpec::new("picky", &[("env", "prod")]);
    spec.answer = Answer::Fail("again".into());
    let mut back = FakeAgent::connect(c.grpc_addr(), spec).await.unwrap();
    assert!(!back.got_push_within(Duration::from_millis(300)).await);
    c.stop().await;
}

#[tokio::test]
async fn an_invalid_config_is_400_with_every_error_and_nothing_is_stored() {
    let dir = temp_dir("invalid");
    let c = TestController::start(settings(&dir)).await;
    let mut agent = FakeAgent::connect(c.grpc_addr(), FakeAgentSpec::new("a", &[("env", "prod")]))
        .await
        .unwrap();
    let bad = "receivers:\n  procfs:\n    collection_interval: soon\nexporters:\n  nope: {}\nservice:\n  pipelines:\n    metrics/x: { receivers: [procfs], exporters: [nope] }\n";
    let (status, body) = c
        .http
        .post("/api/v1/pushes", push_body(json!({ "env": "prod" }), bad))
        .await;
    assert_eq!(status, 400, "{body}");
    let errors = body["errors"].as_array().unwrap();
    assert!(errors.len() >= 2, "every error, not just the first: {body}");
    assert!(errors.iter().any(|e| e["line"].is_number()), "{body}");

    // Not YAML at all, and YAML built to explode when expanded.
    let (status, _) = c
        .http
        .post(
            "/api/v1/pushes",
            push_body(json!({ "env": "prod" }), "{{{{ ["),
        )
        .await;
    assert_eq!(status, 400);
    let mut laughs = String::from(
        "a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n",
    );
    for (i, prev) in ["b", "c", "d", "e", "f", "g", "h", "i"]
        .iter()
        .zip(["a", "b", "c", "d", "e", "f", "g", "h"])
    {
        laughs.push_str(&format!(
            "{i}: &{i} [*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev}]\n"
        ));
    }
    let started = std::time::Instant::now();
    let (status, body) = c
        .http
        .post(
            "/api/v1/pushes",
            push_body(json!({ "env": "prod" }), &laughs),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(started.elapsed() < Duration::from_secs(5));
    let budget = format!(
        "YAML budget: more than {} nodes once aliases are expanded",
        phoenix_config::yaml::MAX_NODES
    );
    assert!(body.to_string().contains(&budget), "{body}");

    // A duration too large for the agent's parser: whatever the loader
    // does with it, the controller answers 400 and stays up.
    let huge = template("process-basic-v1").replace(
        "collection_interval: 10s",
        "collection_interval: 99999999999999999999999s",
    );
    let (status, body) = c
        .http
        .post("/api/v1/pushes", push_body(json!({ "env": "prod" }), &huge))
        .await;
    assert_eq!(status, 400, "{body}");

    let (_, pushes) = c.http.get("/api/v1/pushes").await;
    assert!(pushes["pushes"].as_array().unwrap().is_empty(), "{pushes}");
    // The audit log has the refusals, as the principal, and nothing else.
    let (_, audit) = c.http.get("/api/v1/audit").await;
    let entries = audit["entries"].as_array().unwrap();
    assert!(!entries.is_empty());
    assert!(
        entries.iter().all(|e| e["action"] == "request.refused"
            && e["actor"] == "admin"
            && e["detail"]["status"] == 400),
        "{audit}"
    );
    assert!(!agent.got_push_within(Duration::from_millis(200)).await);

    // Validation alone says the same without pushing.
    let (status, v) = c
        .http
        .post("/api/v1/configs/validate", json!({ "yaml": bad }))
        .await;
    assert_eq!(status, 200);
    assert_eq!(v["valid"], false);
    assert!(v["errors"].as_array().unwrap().len() >= 2);
    let (_, v) = c
        .http
        .post(
            "/api/v1/configs/validate",
            json!({ "yaml": template("process-basic-v1") }),
        )
        .await;
    assert_eq!(v["valid"], true, "{v}");

    // A bomb that is wide rather than deep (500 aliases of a 500-item
    // list) and nesting past the depth limit: refused by the YAML budget
    // before anything is expanded or parsed deeply.
    let wide = format!(
        "a: &a [{}]\nb: &b [{}]\n",
        vec!["lol"; 500].join(","),
        vec!["*a"; 500].join(",")
    );
    let nested = "[".repeat(100) + &"]".repeat(100);
    for hostile in [wide, nested] {
        let (status, v) = c
            .http
            .post("/api/v1/configs/validate", json!({ "yaml": hostile }))
            .await;
        assert_eq!(status, 200);
        assert_eq!(v["valid"], false);
        let message = v["errors"][0]["message"].as_str().unwrap_or_default();
        assert!(message.starts_with("YAML budget: "), "{v}");
    }
    c.stop().await;
}

#[tokio::test]
async fn requests_that_make_no_sense_are_refused_and_change_nothing() {
    let dir = temp_dir("hostile");
    let c = TestController::start(settings(&dir)).await;
    let _agent = FakeAgent::connect(c.grpc_addr(), FakeAgentSpec::new("a", &[("env", "prod")]))
        .await
        .unwrap();
    let yaml = template("process-basic-v1");
    let cases: Vec<(Option<String>, u16)> = vec![
        (Some("{not json".into()), 400),
        (Some(String::new()), 400),
        (Some("[]".into()), 400),
        (Some(json!({ "selector": {}, "yaml": yaml }).to_string()), 400),
        (Some(json!({ "selector": { "labels": { "env": "prod" } } }).to_string()), 400),
        (Some(json!({ "selector": { "labels": { "env": "prod" } }, "yaml": yaml, "template": "x" }).to_string()), 400),
        (Some(json!({ "selector": { "labels": { "env": "prod" } }, "yaml": yaml, "extra": 1 }).to_string()), 400),
        (Some(json!({ "selector": { "labels": { "env": "nowhere" } }, "yaml": yaml }).to_string()), 422),
        (Some(json!({ "selector": { "agents": ["ghost"] }, "yaml": yaml }).to_string()), 422),
        (Some(json!({ "selector": { "labels": { "env": "prod" } }, "template": "no-such" }).to_string()), 404),
        (Some(json!({ "selector": { "labels": { "env": "prod" } }, "template": "../../etc/passwd" }).to_string()), 404),
        (Some(json!({ "selector": { "labels": { "env": "prod" } }, "yaml": "x".repeat(2 << 20) }).to_string()), 413),
        (Some("[".repeat(100_000)), 400),
    ];
    for (body, expected) in cases {
        let shown: String = body.clone().unwrap_or_default().chars().take(80).collect();
        let (status, answer) = c
            .http
            .request(reqwest::Method::POST, "/api/v1/pushes", body)
            .await;
        assert_eq!(status, expected, "{shown}: {answer}");
        assert!(answer["error"].is_string(), "{shown}: {answer}");
    }
    let (_, pushes) = c.http.get("/api/v1/pushes").await;
    assert!(pushes["pushes"].as_array().unwrap().is_empty());
    let (status, _) = c.http.get("/api/v1/templates/..%2F..%2Fetc%2Fpasswd").await;
    assert_eq!(status, 404);
    let (status, _) = c.http.get("/api/v1/nothing-here").await;
    assert_eq!(status, 404);
    let (status, _) = c.http.get("/api/v1/pushes/unknown").await;
    assert_eq!(status, 404);
    let (status, _) = c.http.get("/api/v1/pushes?limit=-1").await;
    assert_eq!(status, 400);
    let (status, t) = c.http.get("/api/v1/templates/process-basic-v1").await;
    assert_eq!(status, 200);
    assert_eq!(t["content"], template("process-basic-v1"));
    c.stop().await;
}

#[tokio::test]
async fn a_wrong_agent_token_or_a_first_message_that_is_not_hello_is_refused_and_nothing_is_stored()
{
    let dir = temp_dir("agent-token");
    let c = TestController::start(settings(&dir)).await;
    let mut spec = FakeAgentSpec::new("intruder", &[("env", "prod")]);
    spec.token = "wrong-token";
    let refused = FakeAgent::connect(c.grpc_addr(), spec)
        .await
        .err()
        .expect("refused");
    assert_eq!(refused.code(), tonic::Code::Unauthenticated);
    let mut spec = FakeAgentSpec::new("intruder", &[("env", "prod")]);
    spec.token = "";
    let refused = FakeAgent::connect(c.grpc_addr(), spec)
        .await
        .err()
        .expect("refused");
    assert_eq!(refused.code(), tonic::Code::Unauthenticated);

    // A stream whose first message is a heartbeat.
    let mut client = phoenix_proto::v1::agent_control_client::AgentControlClient::new(
        channel(c.grpc_addr()).await,
    );
    let first = AgentMessage {
        body: Some(agent_message::Body::Heartbeat(Default::default())),
    };
    let mut request = tonic::Request::new(tokio_stream::iter(vec![first]));
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {AGENT_TOKEN}").parse().unwrap(),
    );
    let Err(status) = client.session(request).await else {
        panic!("a session starting with a heartbeat was accepted")
    };
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status}");
    // A Hello without an instance id.
    let mut spec = FakeAgentSpec::new("", &[]);
    spec.token = AGENT_TOKEN;
    let status = FakeAgent::connect(c.grpc_addr(), spec)
        .await
        .err()
        .expect("refused");
    assert_eq!(status.code(), tonic::Code::InvalidArgument);

    let (_, agents) = c.http.get("/api/v1/agents").await;
    assert!(agents["agents"].as_array().unwrap().is_empty(), "{agents}");
    let metrics = reqwest::get(format!("{}/metrics", c.http.base))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("phoenix_controller_sessions_refused_total{reason=\"unauthenticated\"} 2"),
        "{metrics}"
    );
    c.stop().await;
}

#[tokio::test]
async fn an_api_call_without_the_token_is_401_and_changes_nothing() {
    let dir = temp_dir("api-token");
    let c = TestController::start(settings(&dir)).await;
    let mut agent = FakeAgent::connect(c.grpc_addr(), FakeAgentSpec::new("a", &[("env", "prod")]))
        .await
        .unwrap();
    let anonymous = c.http.without_token();
    let mut wrong = c.http.clone();
    wrong.token = Some("not-the-token".into());
    let body = push_body(json!({ "env": "prod" }), &template("process-basic-v1"));
    for client in [&anonymous, &wrong] {
        let (status, answer) = client.post("/api/v1/pushes", body.clone()).await;
        assert_eq!(status, 401, "{answer}");
        let (status, _) = client.get("/api/v1/agents").await;
        assert_eq!(
            status, 401,
            "reads need the token too unless --api-read-open"
        );
        let (status, _) = client
            .post("/api/v1/configs/validate", json!({ "yaml": "" }))
            .await;
        assert_eq!(status, 401);
    }
    assert!(!agent.got_push_within(Duration::from_millis(200)).await);
    let (_, pushes) = c.http.get("/api/v1/pushes").await;
    assert!(pushes["pushes"].as_array().unwrap().is_empty());
    // Probes and metrics are open.
    let (status, _) = anonymous.get("/healthz").await;
    assert_eq!(status, 200);
    let (status, _) = anonymous.get("/readyz").await;
    assert_eq!(status, 200);
    c.stop().await;

    // --api-read-open lets reads through, never pushes, nor the audit log,
    // nor the agents' error texts.
    let mut s = settings(&dir);
    s.api_read_open = true;
    let c = TestController::start(s).await;
    let mut failing = FakeAgentSpec::new("f", &[("env", "fails")]);
    failing.answer = Answer::Fail("cannot open /etc/secret-thing".into());
    let _failing = FakeAgent::connect(c.grpc_addr(), failing).await.unwrap();
    let (_, created) = c
        .http
        .post(
            "/api/v1/pushes",
            push_body(json!({ "env": "fails" }), &template("process-basic-v1")),
        )
        .await;
    let push_id = created["id"].as_str().unwrap().to_string();
    c.http.wait_push(&push_id, |p| p["complete"] == true).await;
    let anonymous = c.http.without_token();
    let (status, _) = anonymous.get("/api/v1/agents").await;
    assert_eq!(status, 200);
    let (_, seen) = anonymous.get(&format!("/api/v1/pushes/{push_id}")).await;
    let error = seen["targets"][0]["error"].as_str().unwrap();
    assert!(error.contains("withheld"), "{seen}");
    let (_, agent) = anonymous.get("/api/v1/agents/f").await;
    assert!(!agent.to_string().contains("secret-thing"), "{agent}");
    let (_, agent) = c.http.get("/api/v1/agents/f").await;
    assert!(agent.to_string().contains("secret-thing"), "{agent}");
    let (status, _) = anonymous.get("/api/v1/audit").await;
    assert_eq!(status, 401);
    let (status, _) = anonymous
        .post("/api/v1/configs/validate", json!({ "yaml": "" }))
        .await;
    assert_eq!(status, 200);
    let (status, _) = anonymous.post("/api/v1/pushes", body).await;
    assert_eq!(status, 401);
    c.stop().await;
}

#[tokio::test]
async fn a_restart_keeps_agents_and_pushes_and_offline_agents_get_their_push_on_reconnect() {
    let dir = temp_dir("restart");
    let c = TestController::start(settings(&dir)).await;
    let mut online = FakeAgent::connect(
        c.grpc_addr(),
        FakeAgentSpec::new("stays", &[("env", "prod")]),
    )
    .await
    .unwrap();
    let away = FakeAgent::connect(
        c.grpc_addr(),
        FakeAgentSpec::new("away", &[("env", "prod")]),
    )
    .await
    .unwrap();
    away.disconnect().await;
    c.http
        .wait_agent("away", |a| a["status"] == "offline")
        .await;

    let yaml = template("process-aggressive-v1");
    let hash = phoenix_config::config_hash(&yaml);
    let (_, created) = c
        .http
        .post("/api/v1/pushes", push_body(json!({ "env": "prod" }), &yaml))
        .await;
    let id = created["id"].as_str().unwrap().to_string();
    assert_eq!(target(&created, "away")["state"], "pending");
    assert_eq!(target(&created, "stays")["state"], "applying");
    online.next_push().await;
    c.http
        .wait_push(&id, |p| target(p, "stays")["state"] == "applied")
        .await;
    online.disconnect().await;
    c.stop().await;

    // Same --data-dir: everything is still there, every agent offline
    // until it says Hello again.
    let c = TestController::start(settings(&dir)).await;
    let (_, agents) = c.http.get("/api/v1/agents").await;
    let agents = agents["agents"].as_array().unwrap();
    assert_eq!(agents.len(), 2);
    assert!(
        agents.iter().all(|a| a["status"] == "offline"),
        "{agents:?}"
    );
    let push = c.http.wait_push(&id, |_| true).await;
    assert_eq!(target(&push, "stays")["state"], "applied");
    assert_eq!(target(&push, "away")["state"], "pending");

    // The agent that was away gets its desired config as soon as it is back.
    let mut back = FakeAgent::connect(
        c.grpc_addr(),
        FakeAgentSpec::new("away", &[("env", "prod")]),
    )
    .await
    .unwrap();
    let p = back.next_push().await;
    assert_eq!(
        (p.push_id.as_str(), p.hash.as_str()),
        (id.as_str(), hash.as_str())
    );
    let push = c.http.wait_push(&id, |p| p["complete"] == true).await;
    assert_eq!(push["status"], "applied", "{push}");

    // The other reconnects already running it and reports so: nothing to send.
    let mut spec = FakeAgentSpec::new("stays", &[("env", "prod")]);
    spec.status = Some(ConfigStatus {
        hash: hash.clone(),
        state: ConfigState::Applied as i32,
        error: String::new(),
        push_id: id.clone(),
        applied_at_unix_seconds: 1_700_000_000,
        effective_hash: hash.clone(),
    });
    let mut stays = FakeAgent::connect(c.grpc_addr(), spec).await.unwrap();
    assert!(!stays.got_push_within(Duration::from_millis(300)).await);
    let a = c
        .http
        .wait_agent("stays", |a| a["status"] == "online")
        .await;
    assert_eq!(a["config"]["effective_hash"], hash.as_str());
    assert_eq!(a["config"]["applied_at"], "2023-11-14T22:13:20.000Z");
    c.stop().await;

    // An agent that restarted without its state (runs something else)
    // gets its desired config again.
    let c = TestController::start(settings(&dir)).await;
    let mut spec = FakeAgentSpec::new("stays", &[("env", "prod")]);
    spec.status = Some(ConfigStatus {
        hash: "0000".into(),
        state: ConfigState::Applied as i32,
        effective_hash: "0000".into(),
        ..Default::default()
    });
    let mut fresh = FakeAgent::connect(c.grpc_addr(), spec).await.unwrap();
    assert_eq!(fresh.next_push().await.hash, hash);
    c.stop().await;
}

#[tokio::test]
async fn an_agent_without_heartbeats_goes_offline_and_its_session_is_closed() {
    let dir = temp_dir("heartbeat");
    let mut s = settings(&dir);
    s.agent_timeout = Duration::from_millis(600);
    let c = TestController::start(s).await;
    let beating = FakeAgent::connect(c.grpc_addr(), FakeAgentSpec::new("beating", &[]))
        .await
        .unwrap();
    let _silent = FakeAgent::connect(c.grpc_addr(), FakeAgentSpec::new("silent", &[]))
        .await
        .unwrap();
    let beat = tokio::spawn(async move {
        for _ in 0..30 {
            beating.heartbeat().await;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        beating
    });
    c.http
        .wait_agent("silent", |a| a["status"] == "offline")
        .await;
    let (_, a) = c.http.get("/api/v1/agents/beating").await;
    assert_eq!(a["status"], "online", "heartbeats keep it online");
    let (_, online) = c.http.get("/api/v1/agents?status=online").await;
    assert_eq!(online["agents"].as_array().unwrap().len(), 1);
    let metrics = reqwest::get(format!("{}/metrics", c.http.base))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("phoenix_controller_agent_timeouts_total 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("phoenix_controller_open_streams 1"),
        "{metrics}"
    );
    beat.abort();
    c.stop().await;
}

#[tokio::test]
async fn targets_that_do_not_answer_time_out_and_a_late_answer_still_counts() {
    let dir = temp_dir("timeout");
    let mut s = settings(&dir);
    s.push_timeout = Duration::from_millis(500);
    let c = TestController::start(s).await;
    let mut spec = FakeAgentSpec::new("hung", &[("env", "prod")]);
    spec.answer = Answer::Ignore;
    let mut hung = FakeAgent::connect(c.grpc_addr(), spec).await.unwrap();
    let (_, created) = c
        .http
        .post(
            "/api/v1/pushes",
            push_body(json!({ "env": "prod" }), &template("process-basic-v1")),
        )
        .await;
    let id = created["id"].as_str().unwrap().to_string();
    let push = hung.next_push().await;
    let done = c.http.wait_push(&id, |p| p["complete"] == true).await;
    assert_eq!(done["status"], "failed");
    assert_eq!(target(&done, "hung")["state"], "timeout");

    hung.send(AgentMessage {
        body: Some(agent_message::Body::ConfigStatus(ConfigStatus {
            hash: push.hash.clone(),
            state: ConfigState::Applied as i32,
            push_id: id.clone(),
            effective_hash: push.hash.clone(),
            ..Default::default()
        })),
    })
    .await;
    let late = c
        .http
        .wait_push(&id, |p| target(p, "hung")["state"] == "applied")
        .await;
    assert_eq!(late["status"], "applied");
    c.stop().await;
}

#[tokio::test]
async fn an_applied_answer_with_another_hash_is_a_failure() {
    let dir = temp_dir("hash-mismatch");
    let c = TestController::start(settings(&dir)).await;
    let mut spec = FakeAgentSpec::new("liar", &[("env", "prod")]);
    spec.answer = Answer::Ignore;
    let mut agent = FakeAgent::connect(c.grpc_addr(), spec).await.unwrap();
    let (_, created) = c
        .http
        .post(
            "/api/v1/pushes",
            push_body(json!({ "env": "prod" }), &template("process-basic-v1")),
        )
        .await;
    let id = created["id"].as_str().unwrap();
    agent.next_push().await;
    agent
        .send(AgentMessage {
            body: Some(agent_message::Body::ConfigStatus(ConfigStatus {
                hash: "f00d".into(),
                state: ConfigState::Applied as i32,
                push_id: id.to_string(),
                ..Default::default()
            })),
        })
        .await;
    let push = c.http.wait_push(id, |p| p["complete"] == true).await;
    let t = target(&push, "liar");
    assert_eq!(t["state"], "failed");
    assert!(t["error"].as_str().unwrap().contains("f00d"), "{t}");
    c.stop().await;
}

#[tokio::test]
async fn a_newer_push_supersedes_an_open_one() {
    let dir = temp_dir("supersede");
    let c = TestController::start(settings(&dir)).await;
    let mut spec = FakeAgentSpec::new("slow", &[("env", "prod")]);
    spec.answer = Answer::Ignore;
    let mut agent = FakeAgent::connect(c.grpc_addr(), spec).await.unwrap();
    let (_, first) = c
        .http
        .post(
            "/api/v1/pushes",
            push_body(json!({ "env": "prod" }), &template("process-basic-v1")),
        )
        .await;
    agent.next_push().await;
    let (_, second) = c
        .http
        .post(
            "/api/v1/pushes",
            push_body(json!({ "env": "prod" }), &template("process-standard-v1")),
        )
        .await;
    agent.next_push().await;
    let first = c
        .http
        .wait_push(first["id"].as_str().unwrap(), |_| true)
        .await;
    let t = target(&first, "slow");
    assert_eq!(t["state"], "superseded");
    assert!(
        t["error"]
            .as_str()
            .unwrap()
            .contains(second["id"].as_str().unwrap())
    );
    let (_, a) = c.http.get("/api/v1/agents/slow").await;
    assert_eq!(a["desired"]["push_id"], second["id"]);
    c.stop().await;
}

#[tokio::test]
async fn a_state_report_within_a_session_updates_the_agent_without_a_push() {
    let dir = temp_dir("report");
    let c = TestController::start(settings(&dir)).await;
    let mut agent = FakeAgent::connect(
        c.grpc_addr(),
        FakeAgentSpec::new("edited", &[("env", "prod")]),
    )
    .await
    .unwrap();
    let (_, created) = c
        .http
        .post(
            "/api/v1/pushes",
            push_body(json!({ "env": "prod" }), &template("process-basic-v1")),
        )
        .await;
    agent.next_push().await;
    c.http
        .wait_push(created["id"].as_str().unwrap(), |p| p["complete"] == true)
        .await;

    // The operator edits the agent's local file: it reports a new hash.
    agent
        .send(AgentMessage {
            body: Some(agent_message::Body::Hello(phoenix_proto::v1::Hello {
                instance_id: "edited".into(),
                host_name: "edited.test".into(),
                version: "0.1.0-test".into(),
                labels: [
                    ("env".to_string(), "prod".to_string()),
                    ("new".to_string(), "label".to_string()),
                ]
                .into(),
                capabilities: vec![],
                policy: None,
                config_status: Some(ConfigStatus {
                    hash: "abcd".into(),
                    state: ConfigState::Applied as i32,
                    effective_hash: "abcd".into(),
                    ..Default::default()
                }),
            })),
        })
        .await;
    let a = c
        .http
        .wait_agent("edited", |a| a["config"]["effective_hash"] == "abcd")
        .await;
    assert_eq!(a["labels"]["new"], "label");
    assert!(
        !agent.got_push_within(Duration::from_millis(300)).await,
        "a local change is not fought over mid-session"
    );
    c.stop().await;
}
