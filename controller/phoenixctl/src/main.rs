//! `phoenixctl`: the command line of the controller's API.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Args, Parser, Subcommand, ValueEnum};
use phoenix_api::{
    Agent, AgentDetail, AgentEnrollment, AgentList, AgentRevoked, AuditEntry, AuditLog,
    AuditVerification, ComponentHealth, ConfigKind, ConfigValidation, CreatePushRequest, ErrorBody,
    ExperimentState, OpampAgent, Push, PushCreated, PushList, PushSelector, PushStatus,
    PushTargetState, RevokeAgentRequest, Template, TemplateList, ValidateConfigRequest, WhoAmI,
    parse_labels,
};
use phoenix_processors::hash::short_hash as short;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

/// Exit codes: 0 done, 1 the request failed, 2 bad command line, 3 the
/// config is invalid, the rollout did not apply everywhere, or the audit
/// chain is broken.
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
or (with --wait) the rollout ended with failures or timeouts, or `audit verify` found the \
audit log's hash chain broken; 130 `experiment watch` was interrupted (Ctrl-C)."
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

    /// API token or OIDC JWT (sent as `Authorization: Bearer`).
    #[arg(long, global = true, env = "PHOENIX_API_TOKEN", hide_env_values = true)]
    token: Option<String>,

    /// File holding the token (keeps it out of `ps` and shell history).
    #[arg(
        long,
        global = true,
        env = "PHOENIX_API_TOKEN_FILE",
        value_name = "FILE",
        conflicts_with = "token"
    )]
    token_file: Option<PathBuf>,

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
    /// The audit log: who did what, and whether it was tampered with.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Who the controller takes you for: principal, role, permissions, scope.
    Whoami,
}

#[derive(Subcommand, Debug)]
enum AuditCommand {
    /// The latest entries, newest first.
    List {
        /// Only the entries of this push.
        #[arg(long, value_name = "PUSH_ID")]
        push: Option<String>,
        /// How many entries (1-1000).
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
    /// Walk the hash chain from the first entry: exit 0 if it holds, 3 and
    /// the first broken entry if an entry was edited, removed or inserted
    /// behind the controller's back.
    Verify,
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
    /// Revoke an agent: its session is closed and its credential refused
    /// for good. Nothing re-admits the instance id: to bring the node back,
    /// clear the agent's --state-dir so that it enrolls under a new id.
    Revoke {
        id: String,
        /// Why, for the audit log.
        #[arg(long)]
        reason: Option<String>,
        /// A note for the audit log (who acts is the signed-in principal).
        #[arg(long, alias = "author", value_name = "TEXT")]
        note: Option<String>,
    },
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
        /// Which agents the config is for: `phoenix` (a Phoenix config,
        /// validated) or `opaque` (any other OpAMP agent's config, sent
        /// as it is; -f only). Every target must have this config kind.
        #[arg(long, value_name = "KIND", default_value = "phoenix", value_parser = config_kind)]
        config_kind: ConfigKind,
        /// The content type OpAMP agents receive the config with.
        #[arg(long, value_name = "TYPE")]
        content_type: Option<String>,
        /// The config's file name in OpAMP's config map (default: none,
        /// the agent's only file).
        #[arg(long, value_name = "NAME")]
        file_name: Option<String>,
        /// A note for the audit log (who acts is the signed-in principal).
        #[arg(long, alias = "author", value_name = "TEXT")]
        note: Option<String>,
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
        /// A note for the audit log (who acts is the signed-in principal).
        #[arg(long, alias = "author", value_name = "TEXT")]
        note: Option<String>,
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
        #[arg(long, value_parser = clap::builder::PossibleValuesParser::new(ExperimentState::ALL.map(ExperimentState::as_str)))]
        state: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
    /// One experiment: state, reason, timeline, targets.
    Get { id: String },
    /// Start a draft: it deploys at its `start_at`, or now.
    Start {
        id: String,
        /// A note for the audit log (who acts is the signed-in principal).
        #[arg(long, alias = "author", value_name = "TEXT")]
        note: Option<String>,
    },
    /// Cancel a draft, pending, deploying or running experiment (targets get
    /// their previous config back).
    Stop {
        id: String,
        /// A note for the audit log (who acts is the signed-in principal).
        #[arg(long, alias = "author", value_name = "TEXT")]
        note: Option<String>,
    },
    /// Give the targets of a finished or promoted experiment their previous config back.
    Rollback {
        id: String,
        /// Why, for the timeline (default: "rolled back by <principal>").
        #[arg(long)]
        reason: Option<String>,
        /// A note for the audit log (who acts is the signed-in principal).
        #[arg(long, alias = "author", value_name = "TEXT")]
        note: Option<String>,
    },
    /// Push a succeeded experiment's winner (or --variant) to its targets: at
    /// once, or in waves each watched before the next (follow it with watch).
    Promote {
        id: String,
        /// The variant to promote (default: the verdict's winner).
        #[arg(long, value_name = "NAME")]
        variant: Option<String>,
        /// Roll out in waves: the share of the targets promoted once each is
        /// out, the last 100% (default: the definition's `promotion.waves`,
        /// else all at once). A wave whose agents fail the config, stop
        /// reporting, or lose series or critical processes against the
        /// experiment's measurements stops the rollout and rolls back.
        #[arg(long, value_name = "10%,50%,100%", value_parser = Waves::parse)]
        waves: Option<Waves>,
        /// How long each wave is watched (default: the definition's
        /// `promotion.watch`, else 1m).
        #[arg(long, value_name = "DURATION")]
        watch: Option<String>,
        /// A note for the audit log (who acts is the signed-in principal).
        #[arg(long, alias = "author", value_name = "TEXT")]
        note: Option<String>,
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
/// state (a draft waits to be started): false once it is decided
/// (succeeded, failed) or over. (A state this phoenixctl does not know
/// fails to parse: the answer is refused, not guessed at.)
/// `--waves 10%,50%,100%`, checked as the controller checks it.
#[derive(Debug, Clone)]
struct Waves(Vec<phoenix_api::WavePercent>);

impl Waves {
    fn parse(text: &str) -> Result<Waves, String> {
        phoenix_api::WavePercent::parse_list(text).map(Waves)
    }
}

fn ongoing(state: ExperimentState) -> bool {
    state == ExperimentState::Draft || state.is_active()
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
    phoenix_processors::time::parse_duration(text)
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
        let token = match &cli.token_file {
            Some(path) => Some(
                std::fs::read_to_string(path)
                    .map_err(|e| Failure::new(format!("cannot read {}: {e}", path.display())))?
                    .trim()
                    .to_string(),
            ),
            None => cli.token.clone(),
        };
        Ok(Client {
            http,
            base: cli.server.trim_end_matches('/').to_string(),
            token,
        })
    }

    /// Send a request; the answer of a 2xx, or a failure with the
    /// server's message (and every config error it lists).
    async fn call<T: DeserializeOwned>(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<String>,
    ) -> Result<Reply<T>, Failure> {
        let url = format!("{}{path}", self.base);
        let mut request = self.http.request(method, &url);
        if let Some(t) = &self.token {
            request = request.bearer_auth(t);
        }
        if let Some(b) = body {
            request = request
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(b);
        }
        let response = request.send().await.map_err(|e| {
            Failure::new(format!("cannot reach the controller at {}: {e}", self.base))
        })?;
        let status = response.status();
        let text = response
            .text()
            .await
            .map_err(|e| Failure::new(format!("reading the answer from {url}: {e}")))?;
        if status.is_success() {
            return Reply::parse(&url, &text);
        }
        // Not every error comes from the API (a proxy's page): a body
        // that is not the error shape still reports the status.
        let body: Option<ErrorBody> = serde_json::from_str(&text).ok();
        let mut message = format!(
            "{} {}: {}",
            status.as_u16(),
            status.canonical_reason().unwrap_or(""),
            body.as_ref().map_or("(no message)", |b| b.error.as_str())
        );
        if status == reqwest::StatusCode::UNAUTHORIZED && self.token.is_none() {
            message.push_str("\n  (give --token, --token-file or set PHOENIX_API_TOKEN)");
        }
        let errors = body.map(|b| b.errors).unwrap_or_default();
        for e in &errors {
            message.push_str(&format!("\n  - {}", e.to_string().replace('\n', "\n    ")));
        }
        Err(Failure(
            message,
            if errors.is_empty() {
                EXIT_FAILED
            } else {
                EXIT_NOT_APPLIED
            },
        ))
    }

    async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<Reply<T>, Failure> {
        self.call(reqwest::Method::GET, path, None).await
    }

    async fn post<T: DeserializeOwned>(
        &self,
        path: &str,
        body: &impl Serialize,
    ) -> Result<Reply<T>, Failure> {
        let body = serde_json::to_string(body)
            .map_err(|e| Failure::new(format!("cannot encode the request: {e}")))?;
        self.call(reqwest::Method::POST, path, Some(body)).await
    }
}

/// An answer: the API's JSON as sent (what `-o json` prints) and the same
/// read into its type (what the tables show).
#[derive(Clone)]
struct Reply<T> {
    json: Value,
    body: T,
}

impl<T: DeserializeOwned> Reply<T> {
    /// A 2xx answer that does not have the shape this phoenixctl knows is
    /// an error, not a table of blanks.
    fn parse(url: &str, text: &str) -> Result<Reply<T>, Failure> {
        let mismatch = |e: serde_json::Error| {
            Failure::new(format!(
                "the answer from {url} is not what this phoenixctl ({}) expects: {e}",
                env!("CARGO_PKG_VERSION")
            ))
        };
        let json: Value = serde_json::from_str(text).map_err(mismatch)?;
        let body = T::deserialize(&json).map_err(mismatch)?;
        Ok(Reply { json, body })
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

fn config_kind(text: &str) -> Result<ConfigKind, String> {
    ConfigKind::parse(text)
        .ok_or_else(|| format!("{text:?} is not a config kind (phoenix, opaque)"))
}

fn labels_text(labels: &std::collections::BTreeMap<String, String>) -> String {
    labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

fn agents_table<'a>(agents: impl IntoIterator<Item = &'a Agent>) -> String {
    let rows: Vec<Vec<String>> = agents
        .into_iter()
        .map(|a| {
            let hash = short(&a.config.effective_hash);
            vec![
                a.id.clone(),
                if a.enrollment == AgentEnrollment::Revoked {
                    "revoked".to_string()
                } else {
                    a.status.as_str().to_string()
                },
                a.host_name.clone(),
                a.config_kind.as_str().to_string(),
                if hash.is_empty() {
                    "-".into()
                } else {
                    format!("{hash} ({})", a.config.state)
                },
                labels_text(&a.labels),
                a.last_seen.clone(),
            ]
        })
        .collect();
    table(
        &[
            "ID",
            "STATUS",
            "HOST",
            "CONFIG KIND",
            "CONFIG",
            "LABELS",
            "LAST SEEN",
        ],
        &rows,
    )
}

fn agent_text(a: &AgentDetail) -> String {
    let mut t = agents_table([&a.agent]);
    t.push_str(&format!("\nkind: {}", a.agent.kind.as_str()));
    t.push_str(&format!("\nconfig kind: {}", a.agent.config_kind.as_str()));
    t.push_str(&format!("\nenrollment: {}", a.agent.enrollment.as_str()));
    if let Some(at) = &a.agent.revoked_at {
        t.push_str(&format!(" at {at}"));
    }
    t.push('\n');
    if !a.agent.capabilities.is_empty() {
        t.push_str(&format!(
            "capabilities: {}\n",
            a.agent.capabilities.join(", ")
        ));
    }
    if let Some(o) = &a.agent.opamp {
        t.push_str(&opamp_text(o));
    }
    if let Some(d) = &a.agent.desired {
        t.push_str(&format!(
            "\ndesired: push {} hash {} ({})\n",
            d.push_id,
            short(d.hash.as_deref().unwrap_or("")),
            d.state.map_or("-", PushTargetState::as_str),
        ));
    }
    let err = &a.agent.config.error;
    if !err.is_empty() {
        t.push_str(&format!(
            "last config error:\n  {}\n",
            err.replace('\n', "\n  ")
        ));
    }
    // The stats are the agent's own report, passed through as it sent it.
    let stats = a.stats.as_ref();
    if let Some(pipelines) = stats
        .and_then(|s| s.get("pipelines"))
        .and_then(Value::as_array)
    {
        let field =
            |p: &Value, key: &str| p.get(key).and_then(Value::as_str).unwrap_or("").to_string();
        let rows: Vec<Vec<String>> = pipelines
            .iter()
            .map(|p| {
                vec![
                    field(p, "pipeline"),
                    field(p, "mode"),
                    p["series"].to_string(),
                    p["datapoints"].to_string(),
                    p["bytes_gzip"].to_string(),
                ]
            })
            .collect();
        let received = stats
            .and_then(|s| s.get("received_at"))
            .and_then(Value::as_str)
            .unwrap_or("");
        t.push_str(&format!("\nstats at {received}:\n"));
        t.push_str(&table(
            &["PIPELINE", "MODE", "SERIES", "POINTS", "GZIP BYTES"],
            &rows,
        ));
    }
    t
}

/// What an OpAMP agent reported: description, health, remote config
/// status and every effective config file's body.
fn opamp_text(o: &OpampAgent) -> String {
    let mut t = String::new();
    if let Some(d) = &o.description {
        for (title, attributes) in [
            ("identifying", &d.identifying),
            ("non-identifying", &d.non_identifying),
        ] {
            t.push_str(&format!("\n{title} attributes:\n"));
            for (k, v) in attributes {
                t.push_str(&format!("  {k} = {v}\n"));
            }
        }
    }
    if let Some(h) = &o.health {
        t.push_str("\nhealth:\n");
        health_text(&mut t, "agent", h, 1);
    }
    if let Some(r) = &o.remote_config_status {
        t.push_str(&format!(
            "\nremote config: {} (hash {}){}\n",
            r.status,
            if r.last_remote_config_hash.is_empty() {
                "-"
            } else {
                short(&r.last_remote_config_hash)
            },
            if r.error_message.is_empty() {
                String::new()
            } else {
                format!(": {}", r.error_message)
            }
        ));
    }
    if let Some(c) = &o.effective_config {
        for (name, file) in &c.files {
            let name = if name.is_empty() { "(unnamed)" } else { name };
            let kind = if file.content_type.is_empty() {
                file.encoding.clone()
            } else {
                format!("{}, {}", file.content_type, file.encoding)
            };
            t.push_str(&format!(
                "\neffective config {name} ({kind}):\n  {}\n",
                file.body.trim_end().replace('\n', "\n  ")
            ));
        }
    }
    t
}

fn health_text(t: &mut String, name: &str, h: &ComponentHealth, depth: usize) {
    let indent = "  ".repeat(depth);
    t.push_str(&format!(
        "{indent}{name}: {}{}{}\n",
        if h.healthy { "healthy" } else { "unhealthy" },
        if h.status.is_empty() {
            String::new()
        } else {
            format!(" ({})", h.status)
        },
        if h.last_error.is_empty() {
            String::new()
        } else {
            format!(": {}", h.last_error)
        }
    ));
    for (child, c) in &h.components {
        health_text(t, child, c, depth + 1);
    }
}

fn push_text(p: &Push) -> String {
    let counts = &p.counts;
    let mut out = format!(
        "push {}  {}  {} config  hash {}  by {}  at {}\n",
        p.id,
        p.status.as_str(),
        p.config_kind.as_str(),
        short(&p.hash),
        p.author,
        p.created_at,
    );
    out.push_str(&format!(
        "targets {}: applied {}, failed {}, timeout {}, applying {}, pending {}, superseded {}\n",
        p.total,
        counts.applied,
        counts.failed,
        counts.timeout,
        counts.applying,
        counts.pending,
        counts.superseded,
    ));
    if !p.targets.is_empty() {
        out.push('\n');
        let rows: Vec<Vec<String>> = p
            .targets
            .iter()
            .map(|t| {
                vec![
                    t.agent_id.clone(),
                    t.state.as_str().to_string(),
                    short(&t.hash).to_string(),
                    t.updated_at.clone(),
                    t.error.lines().next().unwrap_or_default().to_string(),
                ]
            })
            .collect();
        out.push_str(&table(
            &["AGENT", "STATE", "HASH", "UPDATED", "ERROR"],
            &rows,
        ));
        for t in p.targets.iter().filter(|t| t.error.lines().count() > 1) {
            out.push_str(&format!("\n{} error:\n", t.agent_id));
            for l in t.error.lines() {
                out.push_str(&format!("  {l}\n"));
            }
        }
    }
    out
}

/// The API's JSON (`-o json`), or the human text of its typed body.
fn print<T>(output: Output, reply: &Reply<T>, human: impl FnOnce(&T) -> String) {
    match output {
        Output::Json => println!(
            "{}",
            serde_json::to_string_pretty(&reply.json).unwrap_or_default()
        ),
        Output::Table => print!("{}", human(&reply.body)),
    }
}

/// Poll a push until every target is final or `timeout` passes.
async fn wait_for(client: &Client, id: &str, timeout: Duration) -> Result<Reply<Push>, Failure> {
    let deadline = Instant::now() + timeout;
    loop {
        let push: Reply<Push> = client
            .get(&format!("/api/v1/pushes/{}", encode(id)))
            .await?;
        if push.body.complete || Instant::now() >= deadline {
            return Ok(push);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// 0 when every target applied, 3 otherwise.
fn rollout_code(push: &Push) -> u8 {
    if push.status == PushStatus::Applied {
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
            let list: Reply<AgentList> = client
                .get(&format!("/api/v1/agents?{}", query.join("&")))
                .await?;
            print(out, &list, |l| agents_table(&l.agents));
        }
        Command::Agents(AgentsCommand::Get { id }) => {
            let agent: Reply<AgentDetail> = client
                .get(&format!("/api/v1/agents/{}", encode(id)))
                .await?;
            print(out, &agent, agent_text);
        }
        Command::Agents(AgentsCommand::Revoke { id, reason, note }) => {
            let request = RevokeAgentRequest {
                note: note.clone(),
                reason: reason.clone(),
            };
            let revoked: Reply<AgentRevoked> = client
                .post(&format!("/api/v1/agents/{}/revoke", encode(id)), &request)
                .await?;
            print(out, &revoked, |r| {
                if r.already_revoked {
                    format!("agent {} was already revoked at {}\n", r.id, r.revoked_at)
                } else {
                    format!(
                        "agent {} revoked at {}{}\n",
                        r.id,
                        r.revoked_at,
                        if r.session_closed {
                            " (its session is closed)"
                        } else {
                            ""
                        }
                    )
                }
            });
        }
        Command::Config(ConfigCommand::Push {
            selector,
            agent,
            file,
            template,
            config_kind,
            content_type,
            file_name,
            note,
            wait,
        }) => {
            let selector = match selector {
                Some(sel) => {
                    let labels = parse_labels(sel).map_err(|e| Failure(e, 2))?;
                    if labels.is_empty() {
                        return Err(Failure("--selector needs at least one k=v".into(), 2));
                    }
                    PushSelector {
                        labels: Some(labels),
                        agents: None,
                    }
                }
                None => PushSelector {
                    labels: None,
                    agents: Some(agent.clone()),
                },
            };
            let (yaml, template) = match (file, template) {
                (Some(f), _) => {
                    (
                        Some(std::fs::read_to_string(f).map_err(|e| {
                            Failure::new(format!("cannot read {}: {e}", f.display()))
                        })?),
                        None,
                    )
                }
                (None, Some(t)) => (None, Some(t.clone())),
                (None, None) => return Err(Failure("give -f FILE or --template NAME".into(), 2)),
            };
            let request = CreatePushRequest {
                selector,
                yaml,
                template,
                config_kind: *config_kind,
                content_type: content_type.clone(),
                file: file_name.clone(),
                note: note.clone(),
            };
            let created: Reply<PushCreated> = client.post("/api/v1/pushes", &request).await?;
            let id = created.body.id.clone();
            if !wait.wait {
                print(out, &created, |c| {
                    let sent = c
                        .targets
                        .iter()
                        .filter(|t| t.state == PushTargetState::Applying)
                        .count();
                    format!(
                        "push {id} created: hash {}, {} target(s), {sent} sent now, {} waiting for their agent to connect\n\
                         follow it with: phoenixctl config status {id} --wait\n",
                        short(&c.hash),
                        c.targets.len(),
                        c.targets.len() - sent
                    )
                });
                return Ok(0);
            }
            let push = wait_for(&client, &id, wait.timeout).await?;
            print(out, &push, push_text);
            return Ok(rollout_code(&push.body));
        }
        Command::Config(ConfigCommand::Status { push_id, wait }) => {
            let push: Reply<Push> = if wait.wait {
                wait_for(&client, push_id, wait.timeout).await?
            } else {
                client
                    .get(&format!("/api/v1/pushes/{}", encode(push_id)))
                    .await?
            };
            print(out, &push, push_text);
            if wait.wait {
                return Ok(rollout_code(&push.body));
            }
        }
        Command::Config(ConfigCommand::List { limit }) => {
            let list: Reply<PushList> =
                client.get(&format!("/api/v1/pushes?limit={limit}")).await?;
            print(out, &list, |l| {
                let rows: Vec<Vec<String>> = l
                    .pushes
                    .iter()
                    .map(|p| {
                        vec![
                            p.id.clone(),
                            p.status.as_str().to_string(),
                            short(&p.hash).to_string(),
                            format!("{}/{}", p.counts.applied, p.total),
                            p.author.clone(),
                            p.created_at.clone(),
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
            let checked: Reply<ConfigValidation> = client
                .post("/api/v1/configs/validate", &ValidateConfigRequest { yaml })
                .await?;
            let valid = checked.body.valid;
            print(out, &checked, |v| {
                if v.valid {
                    format!("{}: valid (hash {})\n", file.display(), short(&v.hash))
                } else {
                    let mut t = format!("{}: {} error(s):\n", file.display(), v.errors.len());
                    for e in &v.errors {
                        t.push_str(&format!("  - {}\n", e.text));
                    }
                    t
                }
            });
            return Ok(if valid { 0 } else { EXIT_NOT_APPLIED });
        }
        Command::Templates(TemplatesCommand::List) => {
            let list: Reply<TemplateList> = client.get("/api/v1/templates").await?;
            print(out, &list, |l| {
                let rows: Vec<Vec<String>> = l
                    .templates
                    .iter()
                    .map(|t| {
                        vec![
                            t.name.clone(),
                            short(&t.hash).to_string(),
                            t.description.clone(),
                        ]
                    })
                    .collect();
                table(&["NAME", "HASH", "DESCRIPTION"], &rows)
            });
        }
        Command::Templates(TemplatesCommand::Get { name }) => {
            let template: Reply<Template> = client
                .get(&format!("/api/v1/templates/{}", encode(name)))
                .await?;
            print(out, &template, |t| t.content.clone().unwrap_or_default());
        }
        Command::Experiment(cmd) => return experiment::run(&client, out, cmd).await,
        Command::Audit(AuditCommand::List { push, limit }) => {
            let mut query = vec![format!("limit={limit}")];
            if let Some(p) = push {
                query.push(format!("push={}", encode(p)));
            }
            let log: Reply<AuditLog> = client
                .get(&format!("/api/v1/audit?{}", query.join("&")))
                .await?;
            print(out, &log, |l| audit_table(&l.entries));
        }
        Command::Audit(AuditCommand::Verify) => {
            let v: Reply<AuditVerification> = client.get("/api/v1/audit/verify").await?;
            print(out, &v, |v| match &v.first_broken {
                None => format!(
                    "audit chain intact: {} entries checked ({} from before the chain)\n",
                    v.chained, v.unchained
                ),
                Some(b) => format!(
                    "audit chain BROKEN at entry {}: {} ({} entries before it hold)\n",
                    b.id, b.reason, v.chained
                ),
            });
            if !v.body.intact {
                return Ok(EXIT_NOT_APPLIED);
            }
        }
        Command::Whoami => {
            let me: Reply<WhoAmI> = client.get("/api/v1/whoami").await?;
            print(out, &me, whoami_text);
        }
    }
    Ok(0)
}

fn whoami_text(me: &WhoAmI) -> String {
    let mut out = format!(
        "principal:   {}\nrole:        {}\nsigned in:   {}\npermissions: {}\n",
        me.name,
        me.role,
        me.method,
        me.permissions.join(", ")
    );
    match &me.scope {
        None => out.push_str("scope:       the whole fleet\n"),
        Some(scope) => {
            let labels = scope
                .labels
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(",");
            out.push_str(&format!(
                "scope:       agents with {}\n",
                if labels.is_empty() {
                    "any labels".into()
                } else {
                    labels
                }
            ));
            if let Some(t) = &scope.templates {
                out.push_str(&format!("templates:   {}\n", t.join(", ")));
            }
        }
    }
    out
}

fn audit_table(entries: &[AuditEntry]) -> String {
    let mut out = format!(
        "{:<6} {:<24} {:<20} {:<22} {}\n",
        "ID", "AT", "ACTOR", "ACTION", "ABOUT"
    );
    for e in entries {
        let mut about = [e.push_id.as_deref(), e.agent_id.as_deref()]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join(" ");
        // A refused request: what was asked and the answer.
        if let (Some(status), Some(method), Some(path)) = (
            e.detail.get("status").and_then(|v| v.as_u64()),
            e.detail.get("method").and_then(|v| v.as_str()),
            e.detail.get("path").and_then(|v| v.as_str()),
        ) {
            about = format!("{status} {method} {path}");
        }
        if let Some(client) = e.detail.pointer("/request/client").and_then(|v| v.as_str()) {
            about.push_str(&format!(" from {client}"));
        }
        out.push_str(&format!(
            "{:<6} {:<24} {:<20} {:<22} {}\n",
            e.id, e.at, e.actor, e.action, about
        ));
    }
    out
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
