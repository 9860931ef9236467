//! The real binaries: `phoenixctl` against a running controller, and the
//! `phoenix-controller` command line (exit codes, TLS on both ports).

mod common;

use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::*;
use phoenix_api::{AgentList, AgentStatus, Push, PushCreated, PushStatus};

/// Run phoenixctl against `base` off the async workers.
async fn ctl(base: &str, token: Option<&str>, args: &[&str]) -> Output {
    let mut cmd = Command::new(phoenixctl_binary());
    cmd.env_remove("PHOENIX_API_TOKEN")
        .env_remove("PHOENIX_SERVER")
        .arg("--server")
        .arg(base)
        .args(args);
    if let Some(t) = token {
        cmd.env("PHOENIX_API_TOKEN", t);
    }
    tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn phoenixctl_lists_pushes_follows_and_validates() {
    let dir = temp_dir("ctl");
    let c = TestController::start(settings(&dir)).await;
    let base = c.http.base.clone();
    let mut spec = FakeAgentSpec::new("web-1", &[("env", "prod"), ("role", "web")]);
    spec.answer = Answer::Apply;
    let _web = FakeAgent::connect(c.grpc_addr(), spec).await.unwrap();
    let mut spec = FakeAgentSpec::new("db-1", &[("env", "prod"), ("role", "db")]);
    spec.answer =
        Answer::Fail("processors::topk/cpu: k must be at least 1 (line 3, column 5)".into());
    let _db = FakeAgent::connect(c.grpc_addr(), spec).await.unwrap();

    // agents list: a table, then JSON, then filtered.
    let out = ctl(&base, Some(API_TOKEN), &["agents", "list"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let table = stdout(&out);
    assert!(table.starts_with("ID"), "{table}");
    assert!(
        table.contains("web-1") && table.contains("online") && table.contains("role=web"),
        "{table}"
    );
    let out = ctl(
        &base,
        Some(API_TOKEN),
        &["agents", "list", "--label", "role=db", "-o", "json"],
    )
    .await;
    let list: AgentList = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(list.agents.len(), 1);
    assert_eq!(list.agents[0].id, "db-1");
    assert_eq!(list.agents[0].status, AgentStatus::Online);
    let out = ctl(&base, Some(API_TOKEN), &["agents", "get", "web-1"]).await;
    assert!(stdout(&out).contains("web-1.test"), "{}", stdout(&out));

    // Without a token: refused, with a hint, exit 1.
    let out = ctl(&base, None, &["agents", "list"]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("401") && stderr(&out).contains("PHOENIX_API_TOKEN"),
        "{}",
        stderr(&out)
    );

    // Push a template to role=web and wait: applied, exit 0.
    let out = ctl(
        &base,
        Some(API_TOKEN),
        &[
            "config",
            "push",
            "--selector",
            "role=web",
            "--template",
            "process-basic-v1",
            "--wait",
            "--author",
            "ci",
        ],
    )
    .await;
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    let text = stdout(&out);
    assert!(
        text.contains("applied") && text.contains("web-1") && !text.contains("db-1"),
        "{text}"
    );

    // Push a file to env=prod without waiting, then follow it: db-1 fails, exit 3.
    let file = dir.join("standard.yaml");
    std::fs::write(&file, template("process-standard-v1")).unwrap();
    let out = ctl(
        &base,
        Some(API_TOKEN),
        &[
            "config",
            "push",
            "-s",
            "env=prod",
            "-f",
            file.to_str().unwrap(),
            "-o",
            "json",
        ],
    )
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    let created: PushCreated = serde_json::from_slice(&out.stdout).unwrap();
    let id = created.id.as_str();
    let out = ctl(
        &base,
        Some(API_TOKEN),
        &["config", "status", id, "--wait", "--timeout", "10s"],
    )
    .await;
    assert_eq!(out.status.code(), Some(3), "{}", stdout(&out));
    let text = stdout(&out);
    assert!(
        text.contains("failed") && text.contains("k must be at least 1"),
        "{text}"
    );
    let out = ctl(
        &base,
        Some(API_TOKEN),
        &["config", "status", id, "-o", "json"],
    )
    .await;
    let push: Push = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!((push.counts.applied, push.counts.failed), (1, 1));
    assert_eq!(push.status, PushStatus::Failed);
    assert_eq!(push.targets.len(), 2);
    let out = ctl(&base, Some(API_TOKEN), &["config", "list"]).await;
    assert_eq!(stdout(&out).lines().count(), 3, "{}", stdout(&out));

    // validate: valid exits 0, invalid prints every error and exits 3.
    let out = ctl(
        &base,
        Some(API_TOKEN),
        &["config", "validate", "-f", file.to_str().unwrap()],
    )
    .await;
    assert!(
        out.status.success() && stdout(&out).contains("valid"),
        "{}",
        stdout(&out)
    );
    let bad = dir.join("bad.yaml");
    std::fs::write(&bad, "receivers:\n  nope: {}\n").unwrap();
    let out = ctl(
        &base,
        Some(API_TOKEN),
        &["config", "validate", "-f", bad.to_str().unwrap()],
    )
    .await;
    assert_eq!(out.status.code(), Some(3));
    assert!(stdout(&out).contains("receivers::nope"), "{}", stdout(&out));
    // Pushing it is refused with the same errors, exit 3.
    let out = ctl(
        &base,
        Some(API_TOKEN),
        &[
            "config",
            "push",
            "-s",
            "env=prod",
            "-f",
            bad.to_str().unwrap(),
        ],
    )
    .await;
    assert_eq!(out.status.code(), Some(3));
    assert!(
        stderr(&out).contains("400") && stderr(&out).contains("receivers::nope"),
        "{}",
        stderr(&out)
    );

    let out = ctl(&base, Some(API_TOKEN), &["templates", "list"]).await;
    assert!(
        stdout(&out).contains("process-critical-v1"),
        "{}",
        stdout(&out)
    );
    let out = ctl(&base, Some(API_TOKEN), &["config", "push", "-s", "nothing"]).await;
    assert_eq!(out.status.code(), Some(2), "bad command line");
    c.stop().await;
}

/// Start the real binary; returns the child (stderr captured).
fn spawn_controller(args: &[&str]) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_phoenix-controller"))
        .env_remove("PHOENIX_API_TOKEN")
        .env_remove("PHOENIX_AGENT_TOKEN")
        .env("RUST_LOG", "warn")
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn wait_exit(child: &mut std::process::Child) -> (Option<i32>, String) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let mut err = String::new();
            if let Some(mut e) = child.stderr.take() {
                let _ = std::io::Read::read_to_string(&mut e, &mut err);
            }
            return (status.code(), err);
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the controller did not exit"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn the_controller_binary_explains_bad_command_lines_with_exit_2_and_runtime_failures_with_1() {
    let dir = temp_dir("bin");
    let data = dir.to_str().unwrap();
    let (code, err) = wait_exit(&mut spawn_controller(&["--data-dir", data]));
    assert_eq!(code, Some(2));
    assert!(err.contains("--api-token is required"), "{err}");
    let tokens = [
        "--data-dir",
        data,
        "--api-token",
        "a-token-long-enough",
        "--agent-token",
        "b-token-long-enough",
    ];
    let (code, err) = wait_exit(&mut spawn_controller(
        &[
            &tokens[..],
            &[
                "--tls-cert",
                "/nonexistent/cert.pem",
                "--tls-key",
                "/nonexistent/key.pem",
            ],
        ]
        .concat(),
    ));
    assert_eq!(code, Some(2));
    assert!(err.contains("/nonexistent/cert.pem"), "{err}");
    // Plain text beyond loopback only when asked for by name.
    let (code, err) = wait_exit(&mut spawn_controller(
        &[&tokens[..], &["--grpc-listen", "0.0.0.0:0"]].concat(),
    ));
    assert_eq!(code, Some(2));
    assert!(
        err.contains("--grpc-listen 0.0.0.0:0") && err.contains("--insecure-plaintext"),
        "{err}"
    );
    let (code, err) = wait_exit(&mut spawn_controller(
        &[&tokens[..], &["--http-listen", "0.0.0.0:0"]].concat(),
    ));
    assert_eq!(code, Some(2));
    assert!(err.contains("--insecure-plaintext"), "{err}");
    let (code, _) = wait_exit(&mut spawn_controller(&[
        "--push-timeout",
        "99999999999999999999999s",
    ]));
    assert_eq!(code, Some(2));

    // A port in use is a runtime failure: exit 1, naming the address.
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = busy.local_addr().unwrap().to_string();
    let (code, err) = wait_exit(&mut spawn_controller(&[
        "--data-dir",
        data,
        "--api-token",
        "a-token-long-enough",
        "--agent-token",
        "b-token-long-enough",
        "--http-listen",
        &addr,
        "--grpc-listen",
        "127.0.0.1:0",
    ]));
    assert_eq!(code, Some(1));
    assert!(err.contains(&addr), "{err}");

    let help = Command::new(env!("CARGO_BIN_EXE_phoenix-controller"))
        .arg("--help")
        .output()
        .unwrap();
    assert!(help.status.success());
    assert!(String::from_utf8_lossy(&help.stdout).contains("Exit codes"));
}

#[tokio::test]
async fn tls_on_both_ports_with_client_certificates_for_agents() {
    let dir = temp_dir("tls");
    let mut s = settings(&dir);
    s.tls = Some(
        phoenix_controller::tls::TlsMaterial::load(&phoenix_controller::tls::TlsFiles {
            cert: fixture("server.pem"),
            key: fixture("server.key"),
            client_ca: Some(fixture("ca.pem")),
        })
        .unwrap(),
    );
    let c = TestController::start(s).await;
    let ca = std::fs::read(fixture("ca.pem")).unwrap();

    // HTTPS API, trusted through the test CA.
    let https = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&ca).unwrap())
        .build()
        .unwrap();
    let api = Http::new(
        format!("https://localhost:{}", c.running.http_addr.port()),
        Some(API_TOKEN),
    )
    .with_client(https);
    let (status, _) = api.get("/api/v1/agents").await;
    assert_eq!(status, 200);
    // Plain HTTP on the TLS port gets nowhere.
    assert!(
        reqwest::get(format!("http://{}/healthz", c.running.http_addr))
            .await
            .is_err()
    );

    // gRPC with an agent certificate signed by the client CA.
    let tls = |with_identity: bool| {
        let mut t = tonic::transport::ClientTlsConfig::new()
            .ca_certificate(tonic::transport::Certificate::from_pem(&ca))
            .domain_name("localhost");
        if with_identity {
            t = t.identity(tonic::transport::Identity::from_pem(
                std::fs::read(fixture("agent.pem")).unwrap(),
                std::fs::read(fixture("agent.key")).unwrap(),
            ));
        }
        t
    };
    let endpoint = format!("https://localhost:{}", c.grpc_addr().port());
    let channel = tonic::transport::Endpoint::from_shared(endpoint.clone())
        .unwrap()
        .tls_config(tls(true))
        .unwrap()
        .connect()
        .await
        .expect("mutual TLS connects");
    // The certificate's Common Name is the instance id it may claim.
    let refused = FakeAgent::connect_on(
        channel.clone(),
        FakeAgentSpec::new("secure", &[("env", "prod")]),
    )
    .await
    .err()
    .expect("a certificate for another instance id is refused");
    assert_eq!(refused.code(), tonic::Code::PermissionDenied, "{refused}");
    assert!(refused.message().contains("Common Name"), "{refused}");
    let _agent = FakeAgent::connect_on(
        channel,
        FakeAgentSpec::new("test-agent", &[("env", "prod")]),
    )
    .await
    .unwrap();
    api.wait_agent("test-agent", |a| a["status"] == "online")
        .await;
    let (_, metrics) = api.get("/metrics").await;
    assert!(
        metrics.as_str().unwrap_or_default().contains(
            "phoenix_controller_sessions_refused_total{reason=\"certificate_mismatch\"} 1"
        ),
        "{metrics}"
    );

    // Without a client certificate the handshake (or the first call) fails.
    let refused = match tonic::transport::Endpoint::from_shared(endpoint)
        .unwrap()
        .tls_config(tls(false))
        .unwrap()
        .connect()
        .await
    {
        Err(_) => true,
        Ok(channel) => FakeAgent::connect_on(channel, FakeAgentSpec::new("nocert", &[]))
            .await
            .is_err(),
    };
    assert!(refused);
    let (_, agents) = api.get("/api/v1/agents").await;
    assert_eq!(agents["agents"].as_array().unwrap().len(), 1);
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn phoenixctl_revokes_an_agent_and_shows_it() {
    let dir = temp_dir("ctl-revoke");
    let c = TestController::start(settings(&dir)).await;
    let base = c.http.base.clone();
    let mut spec = FakeAgentSpec::new("old-node", &[("env", "prod")]);
    spec.keep_credential = true;
    let mut agent = FakeAgent::connect(c.grpc_addr(), spec).await.unwrap();
    agent.credential().await;

    let out = ctl(
        &base,
        Some(API_TOKEN),
        &[
            "agents", "revoke", "old-node", "--reason", "retired", "--note", "bob",
        ],
    )
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("agent old-node revoked at") && stdout(&out).contains("closed"),
        "{}",
        stdout(&out)
    );
    agent.wait_closed().await;
    let out = ctl(&base, Some(API_TOKEN), &["agents", "get", "old-node"]).await;
    assert!(
        stdout(&out).contains("revoked") && stdout(&out).contains("enrollment: revoked at"),
        "{}",
        stdout(&out)
    );
    let out = ctl(&base, Some(API_TOKEN), &["agents", "revoke", "no-such"]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("404"), "{}", stderr(&out));
    let out = ctl(&base, None, &["agents", "revoke", "old-node"]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("401"), "{}", stderr(&out));
    c.stop().await;
}
