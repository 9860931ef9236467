//! `phoenixctl`: the command line of the controller's API.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Args, Parser, Subcommand, ValueEnum};
use phoenix_controller::experiment::state::State;
use serde_json::{Value, json};

/// Exit codes: 0 done, 1 the request failed, 2 bad command line, 3 the
/// config is invalid or the rollout did not apply everywhere.
const EXIT_FAILED: u8 = 1;
const EXIT_NOT_APPLIED: u8 = 3;

#[derive(Parser, Debug)]
#[command(
    name = "phoenixctl",
    version,
    about = "Command line for the Phoenix controller: list agents, push configs, follow rollouts, run experiments.",
    long_about = "Command line for the Phoenix controller's API: list agents, push configs to a \
label selector, follow a rollout agent by agent, validate configs, run experiments and read \
their verdicts.\n\n\
Exit codes: 0 done, 1 the request failed (unreachable server, refused, not found, not allowed in \
the experiment's state), 2 bad command line, 3 the config or experiment definition is invalid, \
or (with --wait) the rollout ended with failures or timeouts; 130 `experiment watch` was \
interrupted (Ctrl-C)."
)]
struct Cli {
    /// The controller's HTTP address.
    #[arg(
        long,
        global = true,
        env = "PHOENIX_SERVER",
        default_value = "http://127.0.0.1:8080"
    )]
    server: String,

    /// API token (sent as `Authorization: Bearer`).
    #[arg(long, global = true, env = "PHOENIX_API_TOKEN", hide_env_values = true)]
    token: Option<String>,

    /// PEM CA certificate to trust for an https:// server (besides the system's).
    #[arg(long, global = true, env = "PHOENIX_CA_CERT", value_name = "FILE")]
    ca_cert: Option<PathBuf>,

    /// Output: human tables, or the API's JSON.
    #[arg(long, short = 'o', global = true, value_enum, default_value = "table")]
    output: Output,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Output {
    Table,
    Json,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Agents known to the controller.
    #[command(subcommand)]
    Agents(AgentsCommand),
    /// Push configs, follow rollouts, validate.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Configs pushable by name.
    #[command(subcommand)]
    Templates(TemplatesCommand),
    /// Experiments: create, start, watch, judge, promote or roll back.
    #[command(subcommand, visible_alias = "experiments")]
    Experiment(ExperimentCommand),
}

#[derive(Subcommand, Debug)]
enum AgentsCommand {
    /// List agents, optionally by label and status.
    List {
        /// Only agents with these labels: k=v[,k=v].
        #[arg(long, short = 'l', value_name = "K=V,...")]
        label: Option<String>,
        #[arg(long, value_parser = ["online", "offline", "all"])]
        status: Option<String>,
    },
    /// One agent: identity, labels, config, latest stats.
    Get { id: String },
}

#[derive(Args, Debug)]
struct WaitArgs {
    /// Wait until every target has a final state.
    #[arg(long)]
    wait: bool,
    /// Give up waiting after this long.
    #[arg(long, default_value = "120s", value_parser = duration, value_name = "DURATION")]
    timeout: Duration,
}

#[derive(Subcommand, Debug)]
enum ConfigCommand {
    /// Push a config to the agents matching a selector.
    Push {
        /// Agents with all these labels: k=v[,k=v].
        #[arg(
            long,
            short = 's',
            value_name = "K=V,...",
            required_unless_present = "agent",
            conflicts_with = "agent"
        )]
        selector: Option<String>,
        /// These agents, by id (repeatable).
        #[arg(long, value_name = "ID")]
        agent: Vec<String>,
        /// The config file to push.
        #[arg(
            long = "file",
            short = 'f',
            value_name = "FILE",
            required_unless_present = "template",
            conflicts_with = "template"
        )]
        file: Option<PathBuf>,
        /// A template name from the controller's templates directory.
        #[arg(long, value_name = "NAME")]
        template: Option<String>,
        /// Who pushes, for the audit log (default: $USER).
        #[arg(long)]
        author: Option<String>,
        #[command(flatten)]
        wait: WaitArgs,
    },
    /// The rollout of a push, agent by agent.
    Status {
        push_id: String,
        #[command(flatten)]
        wait: WaitArgs,
    },
    /// Recent pushes.
    List {
        #[arg(long, default_value_t = 20)]
        limit: u32,
    },
    /// Check a config with the agent's validator, without pushing it.
    Validate {
        #[arg(long = "file", short = 'f', value_name = "FILE")]
        file: PathBuf,
    },
}

#[derive(Subcommand, Debug)]
enum TemplatesCommand {
    /// Template names, descriptions and hashes.
    List,
    /// Print a template's YAML.
    Get { name: String },
}

#[derive(Subcommand, Debug)]
enum ExperimentCommand {
    /// Create an experiment (a draft) from a definition; --start also starts it.
    Create {
        /// The definition (YAML or JSON); `-` reads standard input.
        #[arg(long = "file", short = 'f', value_name = "FILE")]
        file: PathBuf,
        /// Start it right away (deployed at its `start_at`, or now).
        #[arg(long)]
        start: bool,
        /// Who creates it, for the audit trail (default: $USER).
        #[arg(long)]
        author: Option<String>,
    },
    /// Check a definition without storing it: errors by field, matching agents.
    Validate {
        /// The definition (YAML or JSON); `-` reads standard input.
        #[arg(long = "file", short = 'f', value_name = "FILE")]
        file: PathBuf,
        /// Also print the composed agent config it would deploy.
        #[arg(long)]
        show_config: bool,
    },
    /// Experiments, newest first, with their verdicts.
    List {
        /// Only experiments in this state.
        #[arg(long, value_parser = clap::builder::PossibleValuesParser::new(State::ALL.map(State::as_str)))]
        state: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
    /// One experiment: state, reason, timeline, targets.
    Get { id: String },
    /// Start a draft: it deploys at its `start_at`, or now.
    Start {
        id: String,
        /// Who acts, for the timeline (default: $USER).
        #[arg(long)]
        author: Option<String>,
    },
    /// Cancel a draft, pending, deploying or running experiment (targets get
    /// their previous config back).
    Stop {
        id: String,
        /// Who acts, for the timeline (default: $USER).
        #[arg(long)]
        author: Option<String>,
    },
    /// Give the targets of a finished or promoted experiment their previous config back.
    Rollback {
        id: String,
        /// Why, for the timeline (default: "rolled back by AUTHOR").
        #[arg(long)]
        reason: Option<String>,
        /// Who acts, for the timeline (default: $USER).
        #[arg(long)]
        author: Option<String>,
    },
    /// Push a succeeded experiment's winner (or --variant) to its targets.
    Promote {
        id: String,
        /// The variant to promote (default: the verdict's winner).
        #[arg(long, value_name = "NAME")]
        variant: Option<String>,
        /// Who acts, for the timeline (default: $USER).
        #[arg(long)]
        author: Option<String>,
    },
    /// The measurements: per interval, per variant, summed over the agents.
    Results {
        id: String,
        /// Only this agent's measurements.
        #[arg(long, value_name = "AGENT")]
        agent: Option<String>,
        /// Print the API's JSON (same as -o json).
        #[arg(long)]
        json: bool,
        /// Print the API's JSON with every stored measurement, agent by agent.
        #[arg(long)]
        raw: bool,
        /// Only the last N intervals in the table.
        #[arg(long, value_name = "N")]
        last: Option<usize>,
    },
    /// The verdict: every criterion with its confidence interval, costs, recommendation.
    Report {
        id: String,
        /// Print the API's JSON (same as -o json).
        #[arg(long)]
        json: bool,
    },
    /// Follow an experiment live until it is decided (exit 0) or Ctrl-C (exit 130).
    Watch {
        id: String,
        /// Time between refreshes.
        #[arg(long, default_value = "2s", value_parser = watch_interval, value_name = "DURATION")]
        interval: Duration,
    },
}

/// Whether the controller still has work to do on an experiment in this
/// state (a draft waits to be started): `Some(false)` once it is decided
/// (succeeded, failed) or over, `None` for a state this phoenixctl does not
/// know (a newer controller).
fn ongoing(state: &str) -> Option<bool> {
    State::parse(state).map(|s| s == State::Draft || s.is_active())
}

/// Exit code of an interrupted `watch` (128 + SIGINT).
const EXIT_INTERRUPTED: u8 = 130;

fn watch_interval(text: &str) -> Result<Duration, String> {
    let d = duration(text)?;
    if d < Duration::from_millis(200) {
        return Err(format!("{text:?} is too short: at least 200ms"));
    }
    Ok(d)
}

fn duration(text: &str) -> Result<Duration, String> {
    if text.len() > 16 {
        return Err(format!("invalid duration {text:?}"));
    }
    phoenix_config::duration::parse_duration(text)
}

/// A failed command: the message, and the exit code.
struct Failure(String, u8);

impl Failure {
    fn new(message: impl Into<String>) -> Failure {
        Failure(message.into(), EXIT_FAILED)
    }
}

struct Client {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
}

impl Client {
    fn new(cli: &Cli) -> Result<Client, Failure> {
        let mut builder = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .user_agent(concat!("phoenixctl/", env!("CARGO_PKG_VERSION")));
        if let Some(path) = &cli.ca_cert {
            let pem = std::fs::read(path)
                .map_err(|e| Failure::new(format!("cannot read {}: {e}", path.display())))?;
            let cert = reqwest::Certificate::from_pem(&pem).map_err(|e| {
                Failure::new(format!("{}: not a PEM certificate: {e}", path.display()))
            })?;
            builder = builder.add_root_certificate(cert);
        }
        let http = builder
            .build()
            .map_err(|e| Failure::new(format!("cannot set up HTTP: {e}")))?;
        Ok(Client {
            http,
            base: cli.server.trim_end_matches('/').to_string(),
            token: cli.token.clone(),
        })
    }

    /// Send a request; the JSON answer of a 2xx, or a failure with the
    /// server's message (and every config error it lists).
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, Failure> {
        let url = format!("{}{path}", self.base);
        let mut request = self.http.request(method, &url);
        if let Some(t) = &self.token {
            request = request.bearer_auth(t);
        }
        if let Some(b) = body {
            request = request
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(b.to_string());
        }
        let response = request.send().await.map_err(|e| {
            Failure::new(format!("cannot reach the controller at {}: {e}", self.base))
        })?;
        let status = response.status();
        let text = response
            .text()
            .await
            .map_err(|e| Failure::new(format!("reading the answer from {url}: {e}")))?;
        let value: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        if status.is_success() {
            return Ok(value);
        }
        let mut message = format!(
            "{} {}: {}",
            status.as_u16(),
            status.canonical_reason().unwrap_or(""),
            value
                .get("error")
                .and_then(Value::as_str)
                .unwrap_or("(no message)")
        );
        if status == reqwest::StatusCode::UNAUTHORIZED && self.token.is_none() {
            message.push_str("\n  (give --token or set PHOENIX_API_TOKEN)");
        }
        let invalid = value.get("errors").and_then(Value::as_array).is_some();
        for e in value
            .get("errors")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            message.push_str(&format!("\n  - {}", error_line(e).replace('\n', "\n    ")));
        }
        Err(Failure(
            message,
            if invalid {
                EXIT_NOT_APPLIED
            } else {
                EXIT_FAILED
            },
        ))
    }

    async fn get(&self, path: &str) -> Result<Value, Failure> {
        self.call(reqwest::Method::GET, path, None).await
    }

    async fn post(&self, path: &str, body: Value) -> Result<Value, Failure> {
        self.call(reqwest::Method::POST, path, Some(body)).await
    }
}

/// Percent-encode a query or path value.
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// One listed error: a config error's `text`, or an experiment
/// definition's `field: message`.
fn error_line(e: &Value) -> String {
    if let Some(t) = e.get("text").and_then(Value::as_str) {
        return t.to_string();
    }
    match (s(e, "field"), s(e, "message")) {
        ("", m) => m.to_string(),
        (f, m) => format!("{f}: {m}"),
    }
}

fn s<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or("")
}

fn short(hash: &str) -> &str {
    hash.get(..12).unwrap_or(hash)
}

/// Left-aligned columns, two spaces apart.
fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut l = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                l.push_str(c);
            } else {
                l.push_str(&format!("{c:<w$}  ", w = widths[i]));
            }
        }
        l.trim_end().to_string() + "\n"
    };
    let mut out = line(header.to_vec());
    for row in rows {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    out
}

fn labels_text(v: &Value) -> String {
    v.as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default()
}

fn agents_table(agents: &[Value]) -> String {
    let rows: Vec<Vec<String>> = agents
        .iter()
        .map(|a| {
            let config = &a["config"];
            let hash = short(s(config, "effective_hash"));
            vec![
                s(a, "id").to_string(),
                s(a, "status").to_string(),
                s(a, "host_name").to_string(),
                if hash.is_empty() {
                    "-".into()
                } else {
                    format!("{hash} ({})", s(config, "state"))
                },
                labels_text(&a["labels"]),
                s(a, "last_seen").to_string(),
            ]
        })
        .collect();
    table(
        &["ID", "STATUS", "HOST", "CONFIG", "LABELS", "LAST SEEN"],
        &rows,
    )
}

fn push_text(p: &Value) -> String {
    let counts = &p["counts"];
    let mut out = format!(
        "push {}  {}  hash {}  by {}  at {}\n",
        s(p, "id"),
        s(p, "status"),
        short(s(p, "hash")),
        s(p, "author"),
        s(p, "created_at"),
    );
    out.push_str(&format!(
        "targets {}: applied {}, failed {}, timeout {}, applying {}, pending {}, superseded {}\n",
        p["total"],
        counts["applied"],
        counts["failed"],
        counts["timeout"],
        counts["applying"],
        counts["pending"],
        counts["superseded"],
    ));
    let targets = p["targets"].as_array().cloned().unwrap_or_default();
    if !targets.is_empty() {
        out.push('\n');
        let rows: Vec<Vec<String>> = targets
            .iter()
            .map(|t| {
                vec![
                    s(t, "agent_id").to_string(),
                    s(t, "state").to_string(),
                    short(s(t, "hash")).to_string(),
                    s(t, "updated_at").to_string(),
                    s(t, "error").lines().next().unwrap_or_default().to_string(),
                ]
            })
            .collect();
        out.push_str(&table(
            &["AGENT", "STATE", "HASH", "UPDATED", "ERROR"],
            &rows,
        ));
        let multi: Vec<&Value> = targets
            .iter()
            .filter(|t| s(t, "error").lines().count() > 1)
            .collect();
        for t in multi {
            out.push_str(&format!("\n{} error:\n", s(t, "agent_id")));
            for l in s(t, "error").lines() {
                out.push_str(&format!("  {l}\n"));
            }
        }
    }
    out
}

fn print(output: Output, value: &Value, human: impl FnOnce(&Value) -> String) {
    match output {
        Output::Json => println!(
            "{}",
            serde_json::to_string_pretty(value).unwrap_or_default()
        ),
        Output::Table => print!("{}", human(value)),
    }
}

/// Poll a push until every target is final or `timeout` passes.
async fn wait_for(client: &Client, id: &str, timeout: Duration) -> Result<Value, Failure> {
    let deadline = Instant::now() + timeout;
    loop {
        let push = client
            .get(&format!("/api/v1/pushes/{}", encode(id)))
            .await?;
        if push["complete"].as_bool() == Some(true) || Instant::now() >= deadline {
            return Ok(push);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// 0 when every target applied, 3 otherwise.
fn rollout_code(push: &Value) -> u8 {
    if s(push, "status") == "applied" {
        0
    } else {
        EXIT_NOT_APPLIED
    }
}

async fn run(cli: &Cli) -> Result<u8, Failure> {
    let client = Client::new(cli)?;
    let out = cli.output;
    match &cli.command {
        Command::Agents(AgentsCommand::List { label, status }) => {
            let mut query = Vec::new();
            if let Some(l) = label {
                query.push(format!("label={}", encode(l)));
            }
            if let Some(st) = status {
                query.push(format!("status={}", encode(st)));
            }
            let v = client
                .get(&format!("/api/v1/agents?{}", query.join("&")))
                .await?;
            print(out, &v, |v| {
                agents_table(
                    v["agents"]
                        .as_array()
                        .map(Vec::as_slice)
                        .unwrap_or_default(),
                )
            });
        }
        Command::Agents(AgentsCommand::Get { id }) => {
            let v = client
                .get(&format!("/api/v1/agents/{}", encode(id)))
                .await?;
            print(out, &v, |a| {
                let mut t = agents_table(std::slice::from_ref(a));
                if let Some(d) = a["desired"].as_object() {
                    t.push_str(&format!(
                        "\ndesired: push {} hash {} ({})\n",
                        d.get("push_id").and_then(Value::as_str).unwrap_or(""),
                        short(d.get("hash").and_then(Value::as_str).unwrap_or("")),
                        d.get("state").and_then(Value::as_str).unwrap_or("-"),
                    ));
                }
                let err = s(&a["config"], "error");
                if !err.is_empty() {
                    t.push_str(&format!(
                        "last config error:\n  {}\n",
                        err.replace('\n', "\n  ")
                    ));
                }
                if let Some(pipelines) = a["stats"]["pipelines"].as_array() {
                    let rows: Vec<Vec<String>> = pipelines
                        .iter()
                        .map(|p| {
                            vec![
                                s(p, "pipeline").to_string(),
                                s(p, "mode").to_string(),
                                p["series"].to_string(),
                                p["datapoints"].to_string(),
                                p["bytes_gzip"].to_string(),
                            ]
                        })
                        .collect();
                    t.push_str(&format!("\nstats at {}:\n", s(&a["stats"], "received_at")));
                    t.push_str(&table(
                        &["PIPELINE", "MODE", "SERIES", "POINTS", "GZIP BYTES"],
                        &rows,
                    ));
                }
                t
            });
        }
        Command::Config(ConfigCommand::Push {
            selector,
            agent,
            file,
            template,
            author,
            wait,
        }) => {
            let selector = match selector {
                Some(sel) => {
                    let labels =
                        phoenix_controller::api::parse_labels(sel).map_err(|e| Failure(e, 2))?;
                    if labels.is_empty() {
                        return Err(Failure("--selector needs at least one k=v".into(), 2));
                    }
                    json!({ "labels": labels })
                }
                None => json!({ "agents": agent }),
            };
            let mut body = json!({
                "selector": selector,
                "author": author.clone().or_else(|| std::env::var("USER").ok()).unwrap_or_default(),
            });
            match (file, template) {
                (Some(f), _) => {
                    body["yaml"] =
                        Value::String(std::fs::read_to_string(f).map_err(|e| {
                            Failure::new(format!("cannot read {}: {e}", f.display()))
                        })?)
                }
                (None, Some(t)) => body["template"] = Value::String(t.clone()),
                (None, None) => return Err(Failure("give -f FILE or --template NAME".into(), 2)),
            }
            let created = client.post("/api/v1/pushes", body).await?;
            let id = s(&created, "id").to_string();
            if !wait.wait {
                print(out, &created, |c| {
                    let targets = c["targets"].as_array().cloned().unwrap_or_default();
                    let sent = targets
                        .iter()
                        .filter(|t| s(t, "state") == "applying")
                        .count();
                    format!(
                        "push {id} created: hash {}, {} target(s), {sent} sent now, {} waiting for their agent to connect\n\
                         follow it with: phoenixctl config status {id} --wait\n",
                        short(s(c, "hash")),
                        targets.len(),
                        targets.len() - sent
                    )
                });
                return Ok(0);
            }
            let push = wait_for(&client, &id, wait.timeout).await?;
            print(out, &push, push_text);
            return Ok(rollout_code(&push));
        }
        Command::Config(ConfigCommand::Status { push_id, wait }) => {
            let push = if wait.wait {
                wait_for(&client, push_id, wait.timeout).await?
            } else {
                client
                    .get(&format!("/api/v1/pushes/{}", encode(push_id)))
                    .await?
            };
            print(out, &push, push_text);
            if wait.wait {
                return Ok(rollout_code(&push));
            }
        }
        Command::Config(ConfigCommand::List { limit }) => {
            let v = client.get(&format!("/api/v1/pushes?limit={limit}")).await?;
            print(out, &v, |v| {
                let rows: Vec<Vec<String>> = v["pushes"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|p| {
                        vec![
                            s(p, "id").to_string(),
                            s(p, "status").to_string(),
                            short(s(p, "hash")).to_string(),
                            format!("{}/{}", p["counts"]["applied"], p["total"]),
                            s(p, "author").to_string(),
                            s(p, "created_at").to_string(),
                        ]
                    })
                    .collect();
                table(
                    &["ID", "STATUS", "HASH", "APPLIED", "AUTHOR", "CREATED"],
                    &rows,
                )
            });
        }
        Command::Config(ConfigCommand::Validate { file }) => {
            let yaml = std::fs::read_to_string(file)
                .map_err(|e| Failure::new(format!("cannot read {}: {e}", file.display())))?;
            let v = client
                .post("/api/v1/configs/validate", json!({ "yaml": yaml }))
                .await?;
            let valid = v["valid"].as_bool() == Some(true);
            print(out, &v, |v| {
                if valid {
                    format!("{}: valid (hash {})\n", file.display(), short(s(v, "hash")))
                } else {
                    let errors = v["errors"].as_array().cloned().unwrap_or_default();
                    let mut t = format!("{}: {} error(s):\n", file.display(), errors.len());
                    for e in errors {
                        t.push_str(&format!("  - {}\n", s(&e, "text")));
                    }
                    t
                }
            });
            return Ok(if valid { 0 } else { EXIT_NOT_APPLIED });
        }
        Command::Templates(TemplatesCommand::List) => {
            let v = client.get("/api/v1/templates").await?;
            print(out, &v, |v| {
                let rows: Vec<Vec<String>> = v["templates"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|t| {
                        vec![
                            s(t, "name").to_string(),
                            short(s(t, "hash")).to_string(),
                            s(t, "description").to_string(),
                        ]
                    })
                    .collect();
                table(&["NAME", "HASH", "DESCRIPTION"], &rows)
            });
        }
        Command::Templates(TemplatesCommand::Get { name }) => {
            let v = client
                .get(&format!("/api/v1/templates/{}", encode(name)))
                .await?;
            print(out, &v, |v| s(v, "content").to_string());
        }
        Command::Experiment(cmd) => return experiment::run(&client, out, cmd).await,
    }
    Ok(0)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("phoenixctl: cannot start: {e}");
            return ExitCode::from(EXIT_FAILED);
        }
    };
    match runtime.block_on(run(&cli)) {
        Ok(code) => ExitCode::from(code),
        Err(Failure(message, code)) => {
            eprintln!("phoenixctl: {message}");
            ExitCode::from(code)
        }
    }
}

/// `phoenixctl experiment ...`: the experiments API as tables and a live view.
mod experiment;

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn listed_errors_are_config_texts_or_field_and_message() {
        assert_eq!(
            error_line(&json!({"component": "x", "text": "receivers::nope: unknown"})),
            "receivers::nope: unknown"
        );
        assert_eq!(
            error_line(&json!({"field": "criteria.min_series_reduction", "message": "too big"})),
            "criteria.min_series_reduction: too big"
        );
        assert_eq!(
            error_line(&json!({"field": "", "message": "empty"})),
            "empty"
        );
    }

    #[test]
    fn experiment_subcommands_parse() {
        let cli = Cli::try_parse_from([
            "phoenixctl",
            "experiment",
            "watch",
            "exp-1",
            "--interval",
            "500ms",
        ])
        .unwrap();
        assert!(matches!(
            cli.command,
            Command::Experiment(ExperimentCommand::Watch { interval, .. })
                if interval == Duration::from_millis(500)
        ));
        assert!(
            Cli::try_parse_from([
                "phoenixctl",
                "experiment",
                "watch",
                "e",
                "--interval",
                "1ms"
            ])
            .is_err()
        );
        assert!(Cli::try_parse_from(["phoenixctl", "experiment", "list", "--state", "x"]).is_err());
        assert!(Cli::try_parse_from(["phoenixctl", "experiment", "create"]).is_err());
        assert!(
            Cli::try_parse_from([
                "phoenixctl",
                "experiments",
                "promote",
                "e",
                "--variant",
                "v"
            ])
            .is_ok()
        );
    }
}
