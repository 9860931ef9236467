//! The Phoenix agent as an OpAMP client (`--opamp`), end to end: the real
//! `phoenix-agent` and `phoenix-controller` binaries. The agent shows in
//! the fleet (API and `phoenixctl agents get`) as an OpAMP agent with its
//! description, labels, health and effective config.
//!
//! The transport is a parameter ([`shows_in_the_fleet`] takes the URL):
//! HTTP now; the WebSocket case joins when the controller serves it.

use std::time::Duration;

use phoenix_tests::fleet::{
    Controller, api, phoenixctl, start_controller_with_opamp, start_opamp_agent,
};
use phoenix_tests::{TempDir, free_port, wait_for};

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
/// endpoints) and check what the fleet shows of it.
fn shows_in_the_fleet(controller: &Controller, url: &str, dir: &std::path::Path) {
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

    // SIGTERM: its last message says goodbye, and it is offline at once
    // (well before --opamp-timeout).
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
fn the_agent_over_opamp_http_shows_in_the_fleet() {
    let data = TempDir::new("agent-opamp-http");
    let (controller, opamp) = start_controller_with_opamp(data.path(), free_port(), free_port());
    let url = format!("http://127.0.0.1:{opamp}/v1/opamp");
    shows_in_the_fleet(&controller, &url, data.path());
}
