//! The Phoenix agent as an OpAMP client (`--opamp`), end to end: the real
//! `phoenix-agent` and `phoenix-controller` binaries, over each of OpAMP's
//! transports. The agent shows in the fleet (API and `phoenixctl agents
//! get`) as an OpAMP agent with its description, labels, health and
//! effective config, takes the credential it is offered, applies a pushed
//! Phoenix config through its reload path (the push target `applied`, the
//! effective config the pushed one), refuses one its local policy forbids
//! (`failed` with the agent's reason, the running config kept), and says
//! goodbye when it stops.

use std::time::Duration;

use phoenix_tests::fleet::{
    Agent, Controller, agent_config, api, phoenixctl, start_controller_with_opamp,
    start_opamp_agent,
};
use phoenix_tests::{TempDir, free_port, wait_for};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(30);

/// The id the agent has in the fleet: its instance id (a UUID, which is
/// also its OpAMP instance uid), once the agent has written it.
fn instance_id(state: &std::path::Path) -> String {
    wait_for(WAIT, || {
        let text = std::fs::read_to_string(state.join("instance-id")).ok()?;
        Some(text.trim().to_string()).filter(|t| !t.is_empty())
    })
    .expect("the agent keeps its instance id")
}

/// Start an agent speaking OpAMP to `url` (one of `controller`'s OpAMP
/// endpoints), check what the fleet shows of it, push to it, stop it.
fn managed_over_opamp(controller: &Controller, url: &str, dir: &std::path::Path) {
    let (agent, id) = shows_in_the_fleet(controller, url, dir);
    takes_its_credential(controller, &id);
    applies_a_push_and_refuses_what_its_policy_forbids(controller, &agent, &id);
    says_goodbye(controller, agent, &id);
}

/// Start the agent and check what the fleet shows of it: the agent and its
/// id.
fn shows_in_the_fleet(
    controller: &Controller,
    url: &str,
    dir: &std::path::Path,
) -> (Agent, String) {
    let http = controller.http;
    let agent = start_opamp_agent(dir, "edge-1", "e2e", url);
    let id = instance_id(&dir.join("edge-1-state"));

    let shown = wait_for(WAIT, || {
        let (status, a) = api(http, "GET", &format!("/api/v1/agents/{id}"), "");
        (status == 200 && a["status"] == "online" && !a["opamp"]["effective_config"].is_null())
            .then_some(a)
    })
    .unwrap_or_else(|| {
        let (_, all) = api(http, "GET", "/api/v1/agents", "");
        panic!("the agent {id} is not in the fleet with its effective config: {all}")
    });
    assert_eq!(shown["kind"], "opamp", "{shown}");
    assert_eq!(shown["version"], env!("CARGO_PKG_VERSION"), "{shown}");
    assert!(
        !shown["host_name"].as_str().unwrap_or("").is_empty(),
        "{shown}"
    );
    let labels = &shown["labels"];
    assert_eq!(labels["service.name"], "phoenix-agent", "{shown}");
    assert_eq!(labels["env"], "e2e", "{shown}");
    assert_eq!(labels["name"], "edge-1", "{shown}");
    let capabilities: Vec<&str> = shown["capabilities"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c.as_str())
        .collect();
    for c in [
        "ReportsStatus",
        "AcceptsRemoteConfig",
        "ReportsEffectiveConfig",
        "ReportsHealth",
        "ReportsRemoteConfig",
        "ReportsHeartbeat",
        "AcceptsOpAMPConnectionSettings",
    ] {
        assert!(capabilities.contains(&c), "{c} missing: {capabilities:?}");
    }
    let opamp = &shown["opamp"];
    assert_eq!(
        opamp["description"]["identifying"]["service.instance.id"],
        id
    );
    let health = &opamp["health"];
    assert_eq!(health["healthy"], true, "{health}");
    assert_eq!(
        health["components"]["pipeline:metrics/local"]["healthy"], true,
        "{health}"
    );
    let file = &opamp["effective_config"]["files"][""];
    assert_eq!(file["content_type"], "text/yaml", "{opamp}");
    let config = std::fs::read_to_string(dir.join("edge-1.yaml")).unwrap();
    assert_eq!(file["body"], config.as_str());

    // Selectable by its labels with the rest of the fleet; phoenixctl shows
    // the same.
    let (status, list) = api(http, "GET", "/api/v1/agents?label=env=e2e", "");
    assert_eq!(status, 200, "{list}");
    assert_eq!(list["agents"][0]["id"], id.as_str(), "{list}");
    let out = phoenixctl(http, &["agents", "get", &id]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for expected in [
        "kind: opamp",
        "service.name = phoenix-agent",
        "AcceptsRemoteConfig",
        "pipeline:metrics/local",
        "collection_interval: 1s",
    ] {
        assert!(
            text.contains(expected),
            "{expected:?} missing from:\n{text}"
        );
    }

    (agent, id)
}

/// The agent declares AcceptsOpAMPConnectionSettings: the controller
/// issues it a credential, which it presents from then on.
fn takes_its_credential(controller: &Controller, id: &str) {
    let enrolled = wait_for(WAIT, || {
        let (_, a) = api(controller.http, "GET", &format!("/api/v1/agents/{id}"), "");
        (a["enrollment"] == "enrolled").then_some(())
    });
    assert!(
        enrolled.is_some(),
        "the agent never confirmed its credential"
    );
}

/// A push, waited for until no target is open: the push.
fn push_and_wait(http: u16, request: Value) -> Value {
    let (status, created) = api(http, "POST", "/api/v1/pushes", &request.to_string());
    assert_eq!(status, 202, "{created}");
    let id = created["id"].as_str().unwrap().to_string();
    wait_for(WAIT, || {
        let (_, push) = api(http, "GET", &format!("/api/v1/pushes/{id}"), "");
        let counts = &push["counts"];
        (counts["pending"] == 0 && counts["applying"] == 0).then_some(push)
    })
    .unwrap_or_else(|| panic!("push {id} never settled"))
}

fn applies_a_push_and_refuses_what_its_policy_forbids(
    controller: &Controller,
    agent: &Agent,
    id: &str,
) {
    let http = controller.http;
    // A Phoenix config (the default config kind): validated by the
    // controller, applied by the agent, reported as its effective config.
    let pushed = agent_config(&agent.out, agent.telemetry, "metrics/pushed", None);
    let push = push_and_wait(http, json!({"selector": {"agents": [id]}, "yaml": pushed}));
    assert_eq!(push["counts"]["applied"], 1, "{push}");
    assert_eq!(push["config_kind"], "phoenix", "{push}");
    let shown = wait_for(WAIT, || {
        let (_, a) = api(http, "GET", &format!("/api/v1/agents/{id}"), "");
        (a["opamp"]["effective_config"]["files"][""]["body"] == pushed.as_str()).then_some(a)
    })
    .expect("the effective config is the pushed one");
    assert_eq!(
        shown["opamp"]["remote_config_status"]["status"], "applied",
        "{shown}"
    );
    assert_eq!(
        shown["opamp"]["remote_config_status"]["last_remote_config_hash"], push["hash"],
        "{shown}"
    );
    assert_eq!(
        shown["opamp"]["health"]["components"]["pipeline:metrics/pushed"]["healthy"], true,
        "{shown}"
    );

    // A file outside the directories its local policy allows: the
    // controller cannot know (an OpAMP agent reports no policy), the agent
    // refuses it and keeps running the pushed config.
    let elsewhere = std::env::temp_dir()
        .join(format!("phoenix-not-allowed-{}", std::process::id()))
        .join("out.jsonl");
    let forbidden = pushed.replace(
        &format!("path: {}", agent.out.display()),
        &format!("path: {}", elsewhere.display()),
    );
    assert_ne!(forbidden, pushed);
    let push = push_and_wait(
        http,
        json!({"selector": {"agents": [id]}, "yaml": forbidden}),
    );
    assert_eq!(push["counts"]["failed"], 1, "{push}");
    let error = push["targets"][0]["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("file_export_dirs"),
        "the agent's reason: {push}"
    );
    assert!(!elsewhere.exists(), "nothing was written there");
    let (_, a) = api(http, "GET", &format!("/api/v1/agents/{id}"), "");
    assert_eq!(
        a["opamp"]["effective_config"]["files"][""]["body"],
        pushed.as_str(),
        "the running config is kept: {a}"
    );
    assert_eq!(
        a["opamp"]["remote_config_status"]["status"], "failed",
        "{a}"
    );
}

/// SIGTERM: its last message says goodbye, and it is offline at once (well
/// before --opamp-timeout).
fn says_goodbye(controller: &Controller, agent: Agent, id: &str) {
    let http = controller.http;
    let stopped = agent.running.stop(WAIT);
    assert!(
        stopped.status.success(),
        "{}",
        String::from_utf8_lossy(&stopped.stderr)
    );
    let offline = wait_for(Duration::from_secs(10), || {
        let (_, a) = api(http, "GET", &format!("/api/v1/agents/{id}"), "");
        (a["status"] == "offline").then_some(())
    });
    assert!(offline.is_some(), "still online after the agent stopped");
}

#[test]
fn the_agent_is_managed_over_opamp_http() {
    let data = TempDir::new("agent-opamp-http");
    let (controller, opamp) = start_controller_with_opamp(data.path(), free_port(), free_port());
    let url = format!("http://127.0.0.1:{opamp}/v1/opamp");
    managed_over_opamp(&controller, &url, data.path());
}

#[test]
fn the_agent_is_managed_over_opamp_websocket() {
    let data = TempDir::new("agent-opamp-ws");
    let (controller, opamp) = start_controller_with_opamp(data.path(), free_port(), free_port());
    let url = format!("ws://127.0.0.1:{opamp}/v1/opamp");
    managed_over_opamp(&controller, &url, data.path());
}
