//! A fleet for end-to-end tests: the real `phoenix-controller` and
//! `phoenix-agent` binaries, the API, and `phoenixctl`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::{Running, binary, free_port, http_get, http_request_with, wait_for, workspace_root};

pub const API_TOKEN: &str = "api-secret";
pub const AGENT_TOKEN: &str = "agent-secret";

pub struct Controller {
    pub running: Running,
    pub http: u16,
    pub grpc: u16,
}

pub fn start_controller(data: &Path, http: u16, grpc: u16) -> Controller {
    start_controller_with(data, http, grpc, &["--api-token", API_TOKEN])
}

/// [`start_controller`] with the API's principals given by `auth`
/// (`--api-token T`, or `--auth-file F`).
pub fn start_controller_with(data: &Path, http: u16, grpc: u16, auth: &[&str]) -> Controller {
    let templates = workspace_root().join("configs/templates");
    let (grpc_listen, http_listen) = (format!("127.0.0.1:{grpc}"), format!("127.0.0.1:{http}"));
    let mut args = vec![
        "--data-dir",
        data.to_str().unwrap(),
        "--grpc-listen",
        &grpc_listen,
        "--http-listen",
        &http_listen,
        "--agent-token",
        AGENT_TOKEN,
        "--templates-dir",
        templates.to_str().unwrap(),
    ];
    args.extend_from_slice(auth);
    let running = Running::start(&binary("phoenix-controller"), &args);
    wait_for(Duration::from_secs(20), || {
        http_get(http, "/readyz").filter(|(s, _)| *s == 200)
    })
    .expect("controller ready");
    Controller {
        running,
        http,
        grpc,
    }
}

/// `sha256:<hex>` of `token` for an auth file, made by the real
/// `phoenix-controller hash-token` from its standard input, as an operator
/// would.
pub fn hash_token(token: &str) -> String {
    use std::io::Write;
    use std::process::Stdio;
    let mut child = Command::new(binary("phoenix-controller"))
        .arg("hash-token")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("phoenix-controller hash-token runs");
    // Dropping stdin after the line ends the input.
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{token}\n").as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let hash = String::from_utf8(out.stdout).unwrap().trim().to_string();
    assert!(hash.starts_with("sha256:"), "{hash}");
    hash
}

pub fn api(port: u16, method: &str, path: &str, body: &str) -> (u16, serde_json::Value) {
    api_as(API_TOKEN, port, method, path, body)
}

/// [`api`] with another bearer token.
pub fn api_as(
    token: &str,
    port: u16,
    method: &str,
    path: &str,
    body: &str,
) -> (u16, serde_json::Value) {
    let auth = format!("Authorization: Bearer {token}\r\nContent-Type: application/json\r\n");
    let (status, text) = http_request_with(port, method, path, &auth, body).expect("API answers");
    (
        status,
        serde_json::from_str(&text).unwrap_or(serde_json::Value::Null),
    )
}

pub struct Agent {
    pub running: Running,
    pub telemetry: u16,
    pub out: PathBuf,
}

/// An agent config with a 1 s procfs receiver, a file exporter and, if
/// given, a Prometheus exporter on `prometheus`; its policy lets remote
/// configs write files in `out`'s directory (the test's own) and read
/// `PHOENIX_EXPERIMENT_OUT` (where experiments write), so the same text
/// serves as a node's local config and as a pushed one.
pub fn agent_config(out: &Path, telemetry: u16, pipeline: &str, prometheus: Option<u16>) -> String {
    let (extra, names) = match prometheus {
        Some(port) => (
            format!("  prometheus: {{ endpoint: 127.0.0.1:{port} }}\n"),
            "file, prometheus",
        ),
        None => (String::new(), "file"),
    };
    format!(
        "receivers:
  procfs: {{ collection_interval: 1s }}
exporters:
  file: {{ path: {} }}
{extra}service:
  pipelines:
    {pipeline}: {{ receivers: [procfs], exporters: [{names}] }}
  telemetry: {{ address: 127.0.0.1:{telemetry} }}
  remote_config:
    file_export_dirs: [\"{}\"]
    env: [NODE_NAME, PHOENIX_ROOT_PATH, OTLP_ENDPOINT, PHOENIX_EXPERIMENT_OUT]
",
        out.display(),
        out.parent().unwrap_or(Path::new("/")).display()
    )
}

pub fn start_agent(dir: &Path, name: &str, env: &str, grpc: u16) -> Agent {
    start_agent_with_env(dir, name, env, grpc, &[])
}

/// [`start_agent`] with environment variables for the agent process
/// (pushed configs may use them: `${env:NAME}`).
pub fn start_agent_with_env(
    dir: &Path,
    name: &str,
    env: &str,
    grpc: u16,
    vars: &[(&str, &str)],
) -> Agent {
    start_agent_with(
        dir,
        name,
        env,
        grpc,
        vars,
        &["--controller-token", AGENT_TOKEN],
    )
}

/// [`start_agent_with_env`] with the credential flags given
/// (`--controller-token-file FILE`, or none at all).
pub fn start_agent_with(
    dir: &Path,
    name: &str,
    env: &str,
    grpc: u16,
    vars: &[(&str, &str)],
    credentials: &[&str],
) -> Agent {
    let controller = format!("http://127.0.0.1:{grpc}");
    start_linked_agent(
        dir,
        name,
        env,
        &["--controller", &controller],
        vars,
        credentials,
    )
}

/// The real controller with its OpAMP server (`--opamp-listen`) on a free
/// loopback port too, which is returned with it.
pub fn start_controller_with_opamp(data: &Path, http: u16, grpc: u16) -> (Controller, u16) {
    let opamp = free_port();
    let listen = format!("127.0.0.1:{opamp}");
    let controller = start_controller_with(
        data,
        http,
        grpc,
        &["--api-token", API_TOKEN, "--opamp-listen", &listen],
    );
    (controller, opamp)
}

/// [`start_agent`] as an OpAMP client of `url` (`--opamp`), with the
/// enrollment token.
pub fn start_opamp_agent(dir: &Path, name: &str, env: &str, url: &str) -> Agent {
    start_linked_agent(
        dir,
        name,
        env,
        &["--opamp", url, "--opamp-heartbeat", "1s"],
        &[],
        &["--controller-token", AGENT_TOKEN],
    )
}

/// An agent with its config, state dir and labels, linked to a controller
/// by `link` (`--controller URL` or `--opamp URL`).
fn start_linked_agent(
    dir: &Path,
    name: &str,
    env: &str,
    link: &[&str],
    vars: &[(&str, &str)],
    credentials: &[&str],
) -> Agent {
    let telemetry = free_port();
    let out = dir.join(format!("{name}.jsonl"));
    let config = dir.join(format!("{name}.yaml"));
    std::fs::write(
        &config,
        agent_config(&out, telemetry, "metrics/local", None),
    )
    .unwrap();
    let state = dir.join(format!("{name}-state"));
    let (env_label, name_label) = (format!("env={env}"), format!("name={name}"));
    let mut args = vec![
        "--config",
        config.to_str().unwrap(),
        "--state-dir",
        state.to_str().unwrap(),
        "--label",
        &env_label,
        "--label",
        &name_label,
    ];
    args.extend_from_slice(link);
    args.extend_from_slice(credentials);
    let running = Running::start_with_env(&binary("phoenix-agent"), &args, vars);
    Agent {
        running,
        telemetry,
        out,
    }
}

pub fn hash_of(agent: &Agent) -> String {
    let (_, body) = http_get(agent.telemetry, "/healthz").expect("healthz");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    v["config"]["hash"].as_str().unwrap().to_string()
}

pub fn online(http: u16) -> Vec<serde_json::Value> {
    let (status, body) = api(http, "GET", "/api/v1/agents?status=online", "");
    assert_eq!(status, 200, "{body}");
    body["agents"].as_array().cloned().unwrap_or_default()
}

pub fn phoenixctl(http: u16, args: &[&str]) -> std::process::Output {
    phoenixctl_as(API_TOKEN, http, args)
}

/// [`phoenixctl`] with another token.
pub fn phoenixctl_as(token: &str, http: u16, args: &[&str]) -> std::process::Output {
    Command::new(binary("phoenixctl"))
        .args([
            "--server",
            &format!("http://127.0.0.1:{http}"),
            "--token",
            token,
        ])
        .args(args)
        .output()
        .expect("phoenixctl runs")
}
