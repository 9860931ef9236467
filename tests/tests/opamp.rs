//! Interoperability: third-party OpAMP clients against the real
//! `phoenix-controller` binary's OpAMP server (HTTP transport).
//!
//! - The OpenTelemetry Python OpAMP client (`opentelemetry-opamp-client`
//!   from PyPI), driven by `tests/scripts/opamp_agent.py`: what it reports
//!   (its description, health, capabilities and effective config) shows in
//!   the API and in `phoenixctl agents get`; the server's ReportFullState
//!   after a missed sequence number makes the client send its full state
//!   again; its AgentDisconnect takes it offline. It takes opaque pushes:
//!   a JSON config it decodes is APPLIED, one its decoder refuses FAILED
//!   with the decoder's error, and the push targets and its remote config
//!   status show both.
//! - Elastic's Node.js OpAMP client (`@elastic/opamp-client-node` from npm,
//!   pinned in `tests/scripts/package.json`), driven by
//!   `tests/scripts/opamp_agent.mjs`: its description, capabilities and
//!   remote config status show the same way (it has no API for health or
//!   effective config); an opaque push (`phoenixctl config push
//!   --config-kind opaque`) reaches it through its `onMessage` and its
//!   APPLIED answer settles the push target; its heartbeats keep
//!   it online, and as it sends no AgentDisconnect when it stops, it goes
//!   offline at `--opamp-timeout`.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use phoenix_tests::fleet::{
    AGENT_TOKEN, API_TOKEN, Controller, api, phoenixctl, start_controller_with,
};
use phoenix_tests::tools::missing_tool;
use phoenix_tests::{TempDir, free_port, wait_for, workspace_root};

/// The real controller with its OpAMP server on a free loopback port, and
/// the URL of its OpAMP endpoint. `extra`: more flags.
fn start_opamp_controller(data: &Path, extra: &[&str]) -> (Controller, String) {
    let (http, grpc, opamp) = (free_port(), free_port(), free_port());
    let opamp_listen = format!("127.0.0.1:{opamp}");
    let mut args = vec!["--api-token", API_TOKEN, "--opamp-listen", &opamp_listen];
    args.extend_from_slice(extra);
    let controller = start_controller_with(data, http, grpc, &args);
    (controller, format!("http://{opamp_listen}/v1/opamp"))
}

/// A third-party OpAMP client's script, running: it was given the endpoint
/// and the agent token, printed one JSON line (`summary`) once it had
/// talked to the controller, and stops at a line on its stdin. Killed on
/// drop, so a failing test leaves nothing behind.
struct OpampClient {
    child: Child,
    summary: serde_json::Value,
}

impl OpampClient {
    /// Run `program` with `args`, then the endpoint and the agent token,
    /// and read its first line.
    fn start(program: &str, args: &[&str], endpoint: &str) -> OpampClient {
        let mut child = Command::new(program)
            .args(args)
            .arg(endpoint)
            .arg(AGENT_TOKEN)
            // The controller is on loopback: no proxy in between.
            .env_remove("HTTP_PROXY")
            .env_remove("http_proxy")
            .env("NO_PROXY", "127.0.0.1,localhost")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("{program} runs: {e}"));
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let mut client = OpampClient {
            child,
            summary: serde_json::Value::Null,
        };
        let line = rx
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|_| panic!("the OpAMP client said nothing within 60 s"));
        client.summary = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line:?}"));
        assert_eq!(
            client.summary["errors"],
            serde_json::json!([]),
            "{}",
            client.summary
        );
        client
    }

    /// The instance uid it reported with.
    fn uid(&self) -> String {
        self.summary["uid"]
            .as_str()
            .unwrap_or_else(|| panic!("no uid: {}", self.summary))
            .to_string()
    }

    /// Ask it to stop, and check that it stopped cleanly.
    fn stop(mut self) {
        self.child
            .stdin
            .take()
            .unwrap()
            .write_all(b"stop\n")
            .unwrap();
        let status = self.child.wait().unwrap();
        assert!(status.success(), "the OpAMP client failed: {status}");
    }
}

impl Drop for OpampClient {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The agent as the API shows it, checked to be an online OpAMP agent.
fn opamp_agent(http: u16, uid: &str) -> serde_json::Value {
    let (status, agent) = api(http, "GET", &format!("/api/v1/agents/{uid}"), "");
    assert_eq!(status, 200, "{agent}");
    assert_eq!(agent["kind"], "opamp", "{agent}");
    assert_eq!(agent["status"], "online", "{agent}");
    agent
}

fn assert_capabilities(agent: &serde_json::Value, expected: &[&str]) {
    let capabilities: Vec<&str> = agent["capabilities"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c.as_str())
        .collect();
    for c in expected {
        assert!(capabilities.contains(c), "{c} missing: {capabilities:?}");
    }
}

/// The agent is the one listed for its `service.name`, and `phoenixctl
/// agents get` shows every `expected` text.
fn assert_listed_and_shown(http: u16, uid: &str, service: &str, expected: &[&str]) {
    let (status, list) = api(
        http,
        "GET",
        &format!("/api/v1/agents?label=service.name={service}"),
        "",
    );
    assert_eq!(status, 200, "{list}");
    assert_eq!(list["agents"][0]["id"], uid, "{list}");

    let out = phoenixctl(http, &["agents", "get", uid]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for e in expected {
        assert!(text.contains(e), "{e:?} missing from:\n{text}");
    }
}

/// Whether the agent goes offline within `timeout`.
fn goes_offline(http: u16, uid: &str, timeout: Duration) -> bool {
    wait_for(timeout, || {
        let (_, a) = api(http, "GET", &format!("/api/v1/agents/{uid}"), "");
        (a["status"] == "offline").then_some(())
    })
    .is_some()
}

/// Push `config` to the agent `uid` as an opaque JSON config and wait
/// until its target has a final state: the push as the API shows it.
fn push_settled(http: u16, uid: &str, config: &str) -> serde_json::Value {
    let request = serde_json::json!({
        "selector": {"agents": [uid]},
        "yaml": config,
        "config_kind": "opaque",
        "content_type": "application/json",
    });
    let (status, created) = api(http, "POST", "/api/v1/pushes", &request.to_string());
    assert_eq!(status, 202, "{created}");
    let id = created["id"].as_str().unwrap().to_string();
    wait_for(Duration::from_secs(30), || {
        let (_, push) = api(http, "GET", &format!("/api/v1/pushes/{id}"), "");
        (push["complete"] == true).then_some(push)
    })
    .unwrap_or_else(|| panic!("push {id} did not finish"))
}

/// The push's only target is in `state`, the agent reports that state for
/// the push's hash, and `phoenixctl config status` says so too.
fn assert_settled(http: u16, uid: &str, push: &serde_json::Value, state: &str) {
    let target = &push["targets"][0];
    assert_eq!(
        (target["agent_id"].as_str(), target["state"].as_str()),
        (Some(uid), Some(state)),
        "{push}"
    );
    let agent = opamp_agent(http, uid);
    let remote = &agent["opamp"]["remote_config_status"];
    assert_eq!(remote["status"], state, "{remote}");
    assert_eq!(remote["last_remote_config_hash"], push["hash"], "{remote}");
    let id = push["id"].as_str().unwrap();
    let out = phoenixctl(http, &["config", "status", id]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("opaque config") && text.contains(&format!("{uid}  {state}")),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

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
    let (controller, endpoint) = start_opamp_controller(data.path(), &[]);
    let http = controller.http;
    let script = workspace_root().join("tests/scripts/opamp_agent.py");
    let client = OpampClient::start("python3", &[script.to_str().unwrap()], &endpoint);
    let summary = &client.summary;
    // The first message, and the one the server asked for after the gap.
    assert!(
        summary["full_states"].as_u64().unwrap() >= 2,
        "the client was not asked for its full state again: {summary}"
    );
    let uid = client.uid();

    let agent = opamp_agent(http, &uid);
    assert_eq!(agent["host_name"], "interop-host");
    assert_eq!(agent["version"], "1.2.3");
    let labels = &agent["labels"];
    assert_eq!(labels["service.name"], "interop.python.agent", "{agent}");
    assert_eq!(labels["deployment.environment"], "test");
    assert_eq!(labels["replicas"], "3");
    assert_eq!(labels["canary"], "true");
    assert_capabilities(
        &agent,
        &[
            "ReportsStatus",
            "ReportsEffectiveConfig",
            "ReportsHealth",
            "ReportsHeartbeat",
        ],
    );
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

    // Listed with the fleet, selectable by its labels; phoenixctl shows
    // the same.
    assert_listed_and_shown(
        http,
        &uid,
        "interop.python.agent",
        &[
            "kind: opamp",
            "ReportsHealth",
            "service.name = interop.python.agent",
            "receiver:hostmetrics: unhealthy",
            "effective config collector.yaml (text/yaml, utf-8):",
            "collection_interval: 10s",
        ],
    );

    // A config its decoder takes, then one it refuses.
    let applied = push_settled(http, &uid, r#"{"sampling": {"ratio": 0.25}}"#);
    assert_settled(http, &uid, &applied, "applied");
    let failed = push_settled(http, &uid, r#"{"sampling": "#);
    assert_settled(http, &uid, &failed, "failed");
    let error = failed["targets"][0]["error"].as_str().unwrap();
    assert!(error.starts_with("Failed to decode"), "{error}");

    // Stopping sends AgentDisconnect: offline at once (well before the
    // default 90 s --opamp-timeout).
    client.stop();
    assert!(
        goes_offline(http, &uid, Duration::from_secs(10)),
        "still online after AgentDisconnect"
    );
    drop(controller);
}

/// Whether `node` runs and finds the Node OpAMP client from
/// tests/scripts/node_modules.
fn node_client_installed() -> bool {
    Command::new("node")
        .args(["-e", "require.resolve('@elastic/opamp-client-node')"])
        .current_dir(workspace_root().join("tests/scripts"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

#[test]
fn the_node_opamp_client_shows_in_the_fleet() {
    if !node_client_installed() {
        missing_tool(
            "node with @elastic/opamp-client-node",
            "npm ci --prefix tests/scripts",
        );
        return;
    }
    let data = TempDir::new("opamp-node-interop");
    // The client heartbeats every 0.5 s and sends no AgentDisconnect when it
    // stops: a short timeout shows both.
    let (controller, endpoint) = start_opamp_controller(data.path(), &["--opamp-timeout", "2s"]);
    let http = controller.http;
    let script = workspace_root().join("tests/scripts/opamp_agent.mjs");
    let client = OpampClient::start("node", &[script.to_str().unwrap()], &endpoint);
    let uid = client.uid();

    let agent = opamp_agent(http, &uid);
    assert_eq!(agent["host_name"], "interop-node-host", "{agent}");
    assert_eq!(agent["version"], "4.5.6");
    let labels = &agent["labels"];
    assert_eq!(labels["service.name"], "interop.node.agent", "{agent}");
    assert_eq!(labels["deployment.environment"], "test");
    // A JS BigInt travels as an int, a number as a double.
    assert_eq!(labels["replicas"], "3");
    assert_eq!(labels["ratio"], "0.5");
    assert_eq!(labels["canary"], "true");
    // What the client sent, and what the controller made of it.
    let sent = client.summary["capabilities"].as_str().unwrap();
    let sent: u64 = sent.parse().unwrap();
    // ReportsStatus, AcceptsRemoteConfig, ReportsRemoteConfig, ReportsHeartbeat.
    assert_eq!(sent, 0x1 | 0x2 | 0x1000 | 0x2000, "{}", client.summary);
    assert_capabilities(
        &agent,
        &[
            "ReportsStatus",
            "AcceptsRemoteConfig",
            "ReportsRemoteConfig",
            "ReportsHeartbeat",
        ],
    );
    let opamp = &agent["opamp"];
    assert_eq!(
        opamp["description"]["identifying"]["service.version"],
        "4.5.6"
    );
    assert_eq!(
        opamp["description"]["non_identifying"]["deployment.environment"], "test",
        "{opamp}"
    );
    // The client reports neither health nor effective config.
    let capabilities = agent["capabilities"].to_string();
    assert!(!capabilities.contains("ReportsHealth"), "{capabilities}");
    assert!(opamp["health"].is_null(), "{opamp}");
    assert!(opamp["effective_config"].is_null(), "{opamp}");
    let remote = &opamp["remote_config_status"];
    assert_eq!(remote["status"], "applied", "{opamp}");
    // SHA-256 of the config the script says it applied.
    assert_eq!(
        remote["last_remote_config_hash"],
        "51c2bd038b78f23f6927489abf4cbb031e3a903bc0cf6cb9c2db348e6df62f18"
    );

    assert_listed_and_shown(
        http,
        &uid,
        "interop.node.agent",
        &[
            "kind: opamp",
            "ReportsRemoteConfig",
            "service.name = interop.node.agent",
            "host.name = interop-node-host",
            "remote config: applied",
        ],
    );

    // Pushed with phoenixctl this time: `--wait` returns once it settled.
    let config = data.path().join("node-agent.json");
    std::fs::write(&config, r#"{"logging": {"level": "debug"}}"#).unwrap();
    let out = phoenixctl(
        http,
        &[
            "-o",
            "json",
            "config",
            "push",
            "--agent",
            &uid,
            "--config-kind",
            "opaque",
            "--content-type",
            "application/json",
            "-f",
            config.to_str().unwrap(),
            "--wait",
            "--timeout",
            "30s",
        ],
    );
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let pushed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(pushed["config_kind"], "opaque", "{pushed}");
    assert_eq!(pushed["content_type"], "application/json", "{pushed}");
    assert_settled(http, &uid, &pushed, "applied");

    // Its heartbeats keep it online past the timeout.
    std::thread::sleep(Duration::from_secs(3));
    opamp_agent(http, &uid);

    // Stopped, it only stops polling: offline once the timeout passed.
    client.stop();
    assert!(
        goes_offline(http, &uid, Duration::from_secs(15)),
        "still online after the client stopped polling"
    );
    drop(controller);
}
