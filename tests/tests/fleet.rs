//! A fleet for real: the `phoenix-controller` binary and two `phoenix-agent`
//! binaries, driven through `phoenixctl` and the HTTP API.

use std::time::Duration;

use phoenix_tests::fleet::{
    Controller, agent_config, api, hash_of, online, phoenixctl, start_agent, start_controller,
};
use phoenix_tests::{TempDir, free_port, http_request_with, wait_for};

#[test]
fn a_fleet_takes_pushed_configs_and_explains_failures() {
    let dir = TempDir::new("fleet");
    let data = dir.path().join("controller-data");
    let controller = start_controller(&data, free_port(), free_port());
    let prod = start_agent(dir.path(), "prod-1", "prod", controller.grpc);
    let dev = start_agent(dir.path(), "dev-1", "dev", controller.grpc);
    wait_for(Duration::from_secs(30), || {
        (online(controller.http).len() == 2).then_some(())
    })
    .expect("both agents online");
    let dev_hash = hash_of(&dev);

    // A valid config pushed to env=prod applies there, and only there.
    let pushed = agent_config(&prod.out, prod.telemetry, "metrics/pushed", None);
    let file = dir.path().join("pushed.yaml");
    std::fs::write(&file, &pushed).unwrap();
    let out = phoenixctl(
        controller.http,
        &[
            "-o",
            "json",
            "config",
            "push",
            "--selector",
            "env=prod",
            "-f",
            file.to_str().unwrap(),
            "--wait",
            "--timeout",
            "30s",
        ],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let push: phoenix_api::Push = serde_json::from_str(&stdout).expect("-o json is the push");
    assert_eq!(push.status, phoenix_api::PushStatus::Applied, "{push:?}");
    assert_eq!(push.targets.len(), 1, "exactly the prod agent: {push:?}");
    let pushed_hash = push.hash.clone();
    assert_eq!(push.targets[0].hash, pushed_hash);
    assert_eq!(hash_of(&prod), pushed_hash);
    assert_eq!(hash_of(&dev), dev_hash, "the dev agent is untouched");
    wait_for(Duration::from_secs(10), || {
        std::fs::read_to_string(&prod.out)
            .ok()?
            .contains("metrics/pushed")
            .then_some(())
    })
    .expect("the prod agent's output changed");

    // A config that validates but cannot start on the agent (its port is
    // taken) fails there, with the agent's error, and changes nothing.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let broken = agent_config(
        &prod.out,
        prod.telemetry,
        "metrics/pushed",
        Some(taken.local_addr().unwrap().port()),
    );
    let body = serde_json::json!({ "selector": { "labels": { "env": "prod" } }, "yaml": broken })
        .to_string();
    let (status, created) = api(controller.http, "POST", "/api/v1/pushes", &body);
    assert_eq!(status, 202, "{created}");
    let id = created["id"].as_str().unwrap().to_string();
    let failed = wait_for(Duration::from_secs(30), || {
        let (_, p) = api(controller.http, "GET", &format!("/api/v1/pushes/{id}"), "");
        (p["complete"] == true).then_some(p)
    })
    .expect("the push completes");
    assert_eq!(failed["status"], "failed", "{failed}");
    let error = failed["targets"][0]["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("prometheus"),
        "the agent's own error: {failed}"
    );
    assert_eq!(hash_of(&prod), pushed_hash, "the old config still runs");

    // Without the token the API refuses and nothing changes.
    let (status, _) = http_request_with(
        controller.http,
        "POST",
        "/api/v1/pushes",
        "Content-Type: application/json\r\n",
        &body,
    )
    .expect("answers");
    assert_eq!(status, 401);

    // The controller goes away: agents keep exporting on their last config.
    let Controller {
        running,
        http,
        grpc,
    } = controller;
    drop(running);
    let size = std::fs::metadata(&prod.out).unwrap().len();
    wait_for(Duration::from_secs(10), || {
        (std::fs::metadata(&prod.out).ok()?.len() > size).then_some(())
    })
    .expect("the prod agent keeps exporting without its controller");

    // It comes back on the same data: agents reconnect, nothing was lost.
    let controller = start_controller(&data, http, grpc);
    wait_for(Duration::from_secs(60), || {
        (online(controller.http).len() == 2).then_some(())
    })
    .expect("both agents reconnect");
    let (status, p) = api(controller.http, "GET", &format!("/api/v1/pushes/{id}"), "");
    assert_eq!(status, 200);
    assert_eq!(
        p["status"], "failed",
        "the push history survived the restart"
    );
    let agents = online(controller.http);
    let prod_record = agents
        .iter()
        .find(|a| a["labels"]["env"] == "prod")
        .expect("prod agent listed");
    assert_eq!(
        prod_record["config"]["effective_hash"],
        pushed_hash.as_str()
    );

    drop(prod.running);
    drop(dev.running);
    drop(controller.running);
}
