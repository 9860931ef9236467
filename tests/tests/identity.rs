//! Every agent its own identity, with the real `phoenix-controller`,
//! `phoenix-agent` and `phoenixctl` binaries: enrollment writes a 0600
//! credential, a restart reuses it, a copied instance id gets nowhere,
//! revocation is final, the token comes from a file, and plain text beyond
//! loopback needs a flag.

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::time::Duration;

use phoenix_tests::fleet::{
    AGENT_TOKEN, agent_config, api, online, phoenixctl, start_agent_with, start_controller,
};
use phoenix_tests::{Running, TempDir, binary, free_port, http_get, sample, wait_for};

const WAIT: Duration = Duration::from_secs(30);

/// An agent on `grpc` with its own state dir and the token given as `token`
/// (`--controller-token-file FILE` or `--controller-token TOKEN`).
fn agent(dir: &Path, name: &str, env: &str, grpc: u16, token: [&str; 2]) -> (Running, u16) {
    let agent = start_agent_with(dir, name, env, grpc, &[], &token);
    (agent.running, agent.telemetry)
}

fn controller_metric(http: u16, series: &str) -> f64 {
    let (_, page) = http_get(http, "/metrics").expect("controller metrics");
    sample(&page, series).unwrap_or(0.0)
}

fn agent_view(http: u16, id: &str) -> serde_json::Value {
    let (status, body) = api(http, "GET", &format!("/api/v1/agents/{id}"), "");
    assert_eq!(status, 200, "{body}");
    body
}

fn logs(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn agents_enroll_once_and_neither_a_copied_id_nor_a_revoked_one_gets_in() {
    let dir = TempDir::new("identity");
    let controller = start_controller(&dir.path().join("data"), free_port(), free_port());
    let (http, grpc) = (controller.http, controller.grpc);
    let token_file = dir.path().join("agent-token");
    std::fs::write(&token_file, format!("{AGENT_TOKEN}\n")).unwrap();
    let by_file = ["--controller-token-file", token_file.to_str().unwrap()];

    // First contact: the token from a file enrolls the agent, which keeps
    // its credential owner-only next to its instance id.
    let (first, telemetry) = agent(dir.path(), "node-1", "prod", grpc, by_file);
    let state = dir.path().join("node-1-state");
    let id = wait_for(WAIT, || {
        online(http)
            .first()
            .and_then(|a| a["id"].as_str().map(str::to_string))
    })
    .expect("the agent is online");
    wait_for(WAIT, || {
        (agent_view(http, &id)["enrollment"] == "enrolled").then_some(())
    })
    .expect("the agent kept its credential");
    let credential_file = state.join("agent-credential");
    let kept = std::fs::read_to_string(&credential_file).unwrap();
    let credential = kept
        .trim()
        .strip_prefix(&format!("{id} "))
        .expect("the credential names its instance id")
        .to_string();
    assert_eq!(credential.len(), 64, "{kept}");
    let mode = std::fs::metadata(&credential_file)
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);

    // Something for the impostor to steal: a desired config, applied.
    let pushed = agent_config(
        &dir.path().join("node-1.jsonl"),
        telemetry,
        "metrics/pushed",
        None,
    );
    let body = serde_json::json!({ "selector": { "agents": [id] }, "yaml": pushed }).to_string();
    let (status, created) = api(http, "POST", "/api/v1/pushes", &body);
    assert_eq!(status, 202, "{created}");
    let push_id = created["id"].as_str().unwrap().to_string();
    wait_for(WAIT, || {
        (agent_view(http, &id)["desired"]["state"] == "applied").then_some(())
    })
    .expect("the push applied");
    let before = agent_view(http, &id);

    // A second agent with a copy of the instance id (not the credential)
    // is refused and counted; the first keeps its session (same connect
    // time), labels and desired config.
    let copy = dir.path().join("copy-state");
    std::fs::create_dir_all(&copy).unwrap();
    std::fs::copy(state.join("instance-id"), copy.join("instance-id")).unwrap();
    let (impostor, _) = agent(
        dir.path(),
        "copy",
        "evil",
        grpc,
        ["--controller-token", AGENT_TOKEN],
    );
    let refused = "phoenix_controller_sessions_refused_total{reason=\"wrong_credential\"}";
    wait_for(WAIT, || {
        (controller_metric(http, refused) >= 1.0).then_some(())
    })
    .expect("the impostor is refused");
    let impostor_logs = logs(&impostor.stop(Duration::from_secs(10)));
    assert!(
        impostor_logs.contains("PermissionDenied"),
        "{impostor_logs}"
    );
    let after = agent_view(http, &id);
    assert_eq!(after["status"], "online");
    assert_eq!(after["connected_at"], before["connected_at"]);
    assert_eq!(after["labels"]["env"], "prod");
    assert_eq!(after["desired"]["push_id"], push_id.as_str());
    assert_eq!(after["desired"]["state"], "applied");

    // A restart reuses the credential: nothing new is issued.
    let first_logs = logs(&first.stop(Duration::from_secs(10)));
    wait_for(WAIT, || {
        (agent_view(http, &id)["status"] == "offline").then_some(())
    })
    .expect("offline after the stop");
    let (second, _) = agent(dir.path(), "node-1", "prod", grpc, by_file);
    wait_for(WAIT, || {
        (agent_view(http, &id)["status"] == "online").then_some(())
    })
    .expect("back with the same id");
    assert_eq!(std::fs::read_to_string(&credential_file).unwrap(), kept);
    assert_eq!(
        controller_metric(http, "phoenix_controller_agent_credentials_issued_total"),
        1.0
    );

    // Revoked: the session closes and every reconnect is refused.
    let out = phoenixctl(http, &["agents", "revoke", &id, "--reason", "test"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let revoked = "phoenix_controller_sessions_refused_total{reason=\"revoked\"}";
    wait_for(WAIT, || {
        (controller_metric(http, revoked) >= 1.0).then_some(())
    })
    .expect("the revoked agent tried again and was refused");
    let view = agent_view(http, &id);
    assert_eq!(view["status"], "offline");
    assert_eq!(view["enrollment"], "revoked");
    let second_logs = logs(&second.stop(Duration::from_secs(10)));
    assert!(second_logs.contains("revoked"), "{second_logs}");

    // The credential is in no log and on no metrics page.
    let (_, controller_metrics) = http_get(http, "/metrics").unwrap();
    for text in [
        &first_logs,
        &second_logs,
        &impostor_logs,
        &controller_metrics,
    ] {
        assert!(!text.contains(&credential));
        assert!(!text.contains(AGENT_TOKEN));
    }
}

#[test]
fn a_bad_token_file_or_plain_text_beyond_loopback_is_a_usage_error() {
    let dir = TempDir::new("identity-cli");
    let run = |args: &[&str]| {
        let output =
            Running::start(&binary("phoenix-agent"), args).wait_exit(Duration::from_secs(20));
        (output.status.code(), logs(&output))
    };
    let empty = dir.path().join("empty");
    std::fs::write(&empty, "\n").unwrap();
    let (code, err) = run(&[
        "--controller",
        "http://127.0.0.1:1",
        "--controller-token-file",
        empty.to_str().unwrap(),
    ]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("is empty"), "{err}");
    let (code, err) = run(&[
        "--controller",
        "http://127.0.0.1:1",
        "--controller-token-file",
        "/nonexistent/token",
    ]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("/nonexistent/token"), "{err}");
    let (code, _) = run(&[
        "--controller",
        "http://127.0.0.1:1",
        "--controller-token",
        "x",
        "--controller-token-file",
        empty.to_str().unwrap(),
    ]);
    assert_eq!(code, Some(2));

    let (code, err) = run(&["--controller", "http://192.0.2.1:4320"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("--insecure-plaintext"), "{err}");
}
