//! Interoperability: a third-party OpAMP client, the OpenTelemetry Python
//! OpAMP client (`opentelemetry-opamp-client` from PyPI), driven by
//! `tests/scripts/opamp_agent.py`, against the real `phoenix-controller`
//! binary's OpAMP server (HTTP transport). What the client reports (its
//! description, health, capabilities and effective config) shows in the
//! API and in `phoenixctl agents get`; the server's ReportFullState after
//! a missed sequence number makes the client send its full state again;
//! its AgentDisconnect takes it offline.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use phoenix_tests::fleet::{AGENT_TOKEN, API_TOKEN, api, phoenixctl, start_controller_with};
use phoenix_tests::tools::missing_tool;
use phoenix_tests::{TempDir, free_port, wait_for, workspace_root};

fn python_client_installed() -> bool {
    Command::new("python3")
        .args(["-c", "import opentelemetry._opamp.agent"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

#[test]
fn the_python_opamp_client_shows_in_the_fleet() {
    if !python_client_installed() {
        missing_tool(
            "python3 with opentelemetry-opamp-client",
            "python3 -m pip install opentelemetry-opamp-client",
        );
        return;
    }
    let data = TempDir::new("opamp-interop");
    let (http, grpc, opamp) = (free_port(), free_port(), free_port());
    let opamp_listen = format!("127.0.0.1:{opamp}");
    let controller = start_controller_with(
        data.path(),
        http,
        grpc,
        &["--api-token", API_TOKEN, "--opamp-listen", &opamp_listen],
    );

    let script = workspace_root().join("tests/scripts/opamp_agent.py");
    let mut child = Command::new("python3")
        .arg(&script)
        .arg(format!("http://{opamp_listen}/v1/opamp"))
        .arg(AGENT_TOKEN)
        // The controller is on loopback: no proxy in between.
        .env_remove("HTTP_PROXY")
        .env_remove("http_proxy")
        .env("NO_PROXY", "127.0.0.1,localhost")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("python3 runs");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    let line = match rx.recv_timeout(Duration::from_secs(60)) {
        Ok(l) => l,
        Err(_) => {
            let _ = child.kill();
            panic!("the OpAMP client said nothing within 60 s");
        }
    };
    let summary: serde_json::Value =
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line:?}"));
    assert_eq!(summary["errors"], serde_json::json!([]), "{summary}");
    // The first message, and the one the server asked for after the gap.
    assert!(
        summary["full_states"].as_u64().unwrap() >= 2,
        "the client was not asked for its full state again: {summary}"
    );
    let uid = summary["uid"].as_str().unwrap().to_string();

    let (status, agent) = api(http, "GET", &format!("/api/v1/agents/{uid}"), "");
    assert_eq!(status, 200, "{agent}");
    assert_eq!(agent["kind"], "opamp", "{agent}");
    assert_eq!(agent["status"], "online", "{agent}");
    assert_eq!(agent["host_name"], "interop-host");
    assert_eq!(agent["version"], "1.2.3");
    let labels = &agent["labels"];
    assert_eq!(labels["service.name"], "interop.python.agent", "{agent}");
    assert_eq!(labels["deployment.environment"], "test");
    assert_eq!(labels["replicas"], "3");
    assert_eq!(labels["canary"], "true");
    let capabilities: Vec<&str> = agent["capabilities"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c.as_str())
        .collect();
    for c in [
        "ReportsStatus",
        "ReportsEffectiveConfig",
        "ReportsHealth",
        "ReportsHeartbeat",
    ] {
        assert!(capabilities.contains(&c), "{c} missing: {capabilities:?}");
    }
    let opamp = &agent["opamp"];
    assert_eq!(
        opamp["description"]["identifying"]["service.name"],
        "interop.python.agent"
    );
    let health = &opamp["health"];
    assert_eq!(health["healthy"], true, "{health}");
    assert_eq!(health["status"], "StatusOK");
    let receiver = &health["components"]["receiver:hostmetrics"];
    assert_eq!(receiver["healthy"], false, "{health}");
    assert_eq!(
        receiver["last_error"],
        "permission denied reading /proc/1/io"
    );
    let file = &opamp["effective_config"]["files"]["collector.yaml"];
    assert_eq!(
        file["body"],
        "receivers:\n  hostmetrics:\n    collection_interval: 10s\n"
    );
    assert_eq!(file["content_type"], "text/yaml");

    // Listed with the fleet, and selectable by its labels.
    let (status, list) = api(
        http,
        "GET",
        "/api/v1/agents?label=service.name=interop.python.agent",
        "",
    );
    assert_eq!(status, 200, "{list}");
    assert_eq!(list["agents"][0]["id"], uid.as_str(), "{list}");

    // phoenixctl shows the same.
    let out = phoenixctl(http, &["agents", "get", &uid]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for expected in [
        "kind: opamp",
        "ReportsHealth",
        "service.name = interop.python.agent",
        "receiver:hostmetrics: unhealthy",
        "effective config collector.yaml (text/yaml, utf-8):",
        "collection_interval: 10s",
    ] {
        assert!(
            text.contains(expected),
            "{expected:?} missing from:\n{text}"
        );
    }

    // Stopping sends AgentDisconnect: offline at once.
    child.stdin.take().unwrap().write_all(b"stop\n").unwrap();
    let status = child.wait().unwrap();
    assert!(status.success(), "the OpAMP client failed: {status}");
    let offline = wait_for(Duration::from_secs(10), || {
        let (_, a) = api(http, "GET", &format!("/api/v1/agents/{uid}"), "");
        (a["status"] == "offline").then_some(())
    });
    assert!(offline.is_some(), "still online after AgentDisconnect");
    drop(controller);
}
