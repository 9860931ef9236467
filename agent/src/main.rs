//! `phoenix-agent`: scrape every process from /proc, run pipeline variants
//! side by side, export OTLP, Prometheus, files and a console report.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{ArgGroup, Parser, Subcommand};
use phoenix_agent::agent::{
    Agent, AgentSettings, ConfigSources, ControllerLink, LoadedConfig, load_file,
};
use phoenix_agent::controller::{self, ControllerSettings};
use phoenix_agent::opamp;
use phoenix_config::{AgentConfig, LogFormat};

/// Exit codes: 0 clean stop, 1 runtime failure, 2 bad command line, 3 invalid config.
const EXIT_RUNTIME: u8 = 1;
const EXIT_USAGE: u8 = 2;
const EXIT_INVALID_CONFIG: u8 = 3;

#[derive(Parser, Debug)]
#[command(group(ArgGroup::new("link").args(["controller", "opamp"])))]
#[command(
    name = "phoenix-agent",
    version,
    about = "Process-metrics agent: scrapes /proc once per interval, runs pipeline variants side by side, exports OTLP.",
    long_about = "Process-metrics agent: scrapes every process from /proc once per interval, runs \
several pipeline variants side by side on that one scrape, and exports OTLP (gRPC/HTTP), \
Prometheus, OTLP/JSON files and a console report.\n\n\
Without --config it runs an embedded default: procfs every 10s, a console summary, and a \
Prometheus endpoint on 127.0.0.1:9464. Its own metrics are on http://127.0.0.1:8888/metrics.\n\n\
Exit codes: 0 stopped cleanly, 1 runtime failure (e.g. a port in use), 2 bad command line, \
3 invalid config."
)]
struct Cli {
    /// Agent config (YAML, OpenTelemetry Collector shape). Default: the embedded config.
    #[arg(long, short = 'c', global = true, value_name = "FILE")]
    config: Option<PathBuf>,

    /// Log level or tracing filter (overrides service.telemetry.logs.level; RUST_LOG wins over both).
    #[arg(long, value_name = "LEVEL")]
    log_level: Option<String>,

    /// Log format (overrides service.telemetry.logs.format). Logs go to stderr.
    #[arg(long, value_enum)]
    log_format: Option<LogFormat>,

    /// Directory where the last config applied through POST /-/reload (or a
    /// controller) is kept, with the agent's instance id; at start the kept
    /// config wins over --config.
    #[arg(long, value_name = "DIR")]
    state_dir: Option<PathBuf>,

    /// Controller to connect to (http://HOST:PORT or https://HOST:PORT): it
    /// pushes configs and receives per-pipeline stats. Without it (or
    /// --opamp) the agent runs standalone.
    #[arg(long, value_name = "URL", conflicts_with = "opamp")]
    controller: Option<String>,

    /// OpAMP server to connect to instead of --controller:
    /// http(s)://HOST:PORT/v1/opamp (HTTP transport, polled every heartbeat)
    /// or ws(s)://HOST:PORT/v1/opamp (WebSocket). The agent reports its
    /// description, health and effective config, and applies the remote
    /// config the server offers (one YAML file; an empty one reverts to the
    /// local config) within the local policy. The token, CA, client
    /// certificate, --label and --insecure-plaintext flags apply to it too.
    #[arg(long, value_name = "URL", conflicts_with = "controller")]
    opamp: Option<String>,

    /// How often the OpAMP client polls (HTTP) or sends a heartbeat
    /// (WebSocket) when nothing changed, e.g. 10s, 1m (1s to 24h; default
    /// 30s). A server's connection settings may set another.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, requires = "opamp")]
    opamp_heartbeat: Option<Duration>,

    /// Enrollment token presented to the controller or OpAMP server
    /// (`authorization: Bearer`). On first contact the controller issues
    /// this agent its own credential (over OpAMP: in a connection settings
    /// offer), kept in --state-dir (`agent-credential`, mode 0600) and
    /// required from then on. Prefer --controller-token-file or the
    /// environment variable: arguments show in `ps`.
    #[arg(
        long,
        value_name = "TOKEN",
        env = "PHOENIX_CONTROLLER_TOKEN",
        hide_env_values = true,
        conflicts_with = "controller_token_file"
    )]
    controller_token: Option<String>,

    /// File holding the enrollment token (surrounding whitespace such as
    /// the final newline is ignored).
    #[arg(
        long,
        value_name = "FILE",
        env = "PHOENIX_CONTROLLER_TOKEN_FILE",
        requires = "link"
    )]
    controller_token_file: Option<PathBuf>,

    /// Allow a plain http:// (or ws://) --controller or --opamp URL to a
    /// host that is not loopback: the token, the agent's credential and
    /// configs then cross the network in clear text.
    #[arg(long, requires = "link")]
    insecure_plaintext: bool,

    /// PEM CA certificate(s) the controller's (or OpAMP server's)
    /// certificate must chain to, instead of the system roots (https:// and
    /// wss:// only).
    #[arg(long, value_name = "FILE", requires = "link")]
    controller_ca: Option<PathBuf>,

    /// PEM client certificate for controllers (and OpAMP servers) that
    /// require one (with --controller-key).
    #[arg(long, value_name = "FILE", requires_all = ["link", "controller_key"])]
    controller_cert: Option<PathBuf>,

    /// PEM private key of --controller-cert.
    #[arg(long, value_name = "FILE", requires_all = ["link", "controller_cert"])]
    controller_key: Option<PathBuf>,

    /// A label the controller selects this agent by, e.g. `--label env=prod`
    /// (repeatable). Over OpAMP each is a non-identifying attribute under
    /// its own key.
    #[arg(long = "label", value_name = "KEY=VALUE", value_parser = controller::parse_label, requires = "link")]
    labels: Vec<(String, String)>,

    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Check a config and print every error (component, line, column); exit 0 if valid, 3 if not.
    Validate,
    /// Print the embedded default config, a starting point for your own.
    PrintDefaultConfig,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Validate) => validate(cli.config.as_deref()),
        Some(Command::PrintDefaultConfig) => {
            print!("{}", phoenix_config::EMBEDDED_DEFAULT);
            ExitCode::SUCCESS
        }
        None => run(&cli),
    }
}

fn validate(path: Option<&Path>) -> ExitCode {
    if path.is_none() {
        eprintln!("phoenix-agent validate: --config FILE is required");
        return ExitCode::from(2);
    }
    match load_file(path) {
        Ok(LoadedConfig { config, source, .. }) => {
            println!(
                "{source}: valid ({} receiver(s), {} exporter(s), {} pipeline(s))",
                config.receivers.len(),
                config.exporters.len(),
                config.pipelines.len()
            );
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("{message}");
            ExitCode::from(EXIT_INVALID_CONFIG)
        }
    }
}

fn init_logging(cli: &Cli, config: &AgentConfig) {
    let level = cli
        .log_level
        .as_deref()
        .unwrap_or(&config.telemetry.logs.level);
    let format = cli.log_format.unwrap_or(config.telemetry.logs.format);
    phoenix_telemetry::logging::init(level, format == LogFormat::Json);
}

/// The controller (or OpAMP) flags, checked before anything starts: a bad
/// URL or an unreadable certificate would otherwise fail every reconnect,
/// forever.
fn controller_link(cli: &Cli) -> Result<Option<ControllerLink>, String> {
    if cli.controller.is_none() && cli.opamp.is_none() {
        return Ok(None);
    }
    let mut labels = BTreeMap::new();
    for (key, value) in &cli.labels {
        if labels.insert(key.clone(), value.clone()).is_some() {
            return Err(format!("--label {key}: given more than once"));
        }
    }
    let token = match &cli.controller_token_file {
        Some(path) => Some(token_from_file(path)?),
        None => cli.controller_token.clone(),
    };
    let settings = ControllerSettings {
        url: cli
            .opamp
            .clone()
            .or_else(|| cli.controller.clone())
            .unwrap_or_default(),
        token,
        insecure_plaintext: cli.insecure_plaintext,
        ca_file: cli.controller_ca.clone(),
        client_cert: cli.controller_cert.clone(),
        client_key: cli.controller_key.clone(),
        labels,
    };
    if cli.opamp.is_some() {
        let heartbeat = cli.opamp_heartbeat.unwrap_or(opamp::DEFAULT_HEARTBEAT);
        let endpoint = opamp::Endpoint::new(&settings, heartbeat).map_err(|e| format!("{e:#}"))?;
        return Ok(Some(ControllerLink::Opamp {
            endpoint,
            labels: settings.labels,
        }));
    }
    let connection = controller::Connection::new(&settings).map_err(|e| format!("{e:#}"))?;
    Ok(Some(ControllerLink::Native {
        connection: Box::new(connection),
        labels: settings.labels,
    }))
}

/// `--opamp-heartbeat`: `30s`, `1m`, within the bounds a heartbeat may have.
fn parse_duration(text: &str) -> Result<Duration, String> {
    let d = phoenix_processors::time::parse_duration(text)?;
    if !(opamp::MIN_HEARTBEAT..=opamp::MAX_HEARTBEAT).contains(&d) {
        return Err(format!("{text:?}: must be between 1s and 24h"));
    }
    Ok(d)
}

/// The token in `path`, without surrounding whitespace. Errors name the
/// file, never its content.
fn token_from_file(path: &Path) -> Result<String, String> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        format!(
            "--controller-token-file {}: cannot read: {e}",
            path.display()
        )
    })?;
    let token = text.trim();
    if token.is_empty() {
        return Err(format!(
            "--controller-token-file {}: the file is empty",
            path.display()
        ));
    }
    Ok(token.to_string())
}

fn run(cli: &Cli) -> ExitCode {
    let controller = match controller_link(cli) {
        Ok(c) => c,
        Err(message) => {
            eprintln!("phoenix-agent: {message}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let sources = ConfigSources {
        file: cli.config.clone(),
        state_dir: cli.state_dir.clone(),
    };
    let initial = match sources.initial() {
        Ok(c) => c,
        Err(message) => {
            eprintln!("{message}");
            return ExitCode::from(EXIT_INVALID_CONFIG);
        }
    };
    init_logging(cli, &initial.config);
    tracing::info!(config = %initial.source, "config loaded");
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(4)
        .thread_name("phoenix")
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the runtime");
            return ExitCode::from(EXIT_RUNTIME);
        }
    };
    let settings = AgentSettings {
        initial,
        sources,
        controller,
    };
    let result = runtime.block_on(async {
        let agent = Agent::start(settings).await?;
        agent
            .run_until(phoenix_telemetry::signals::shutdown("agent"))
            .await;
        anyhow::Ok(())
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("phoenix-agent: {e:#}");
            ExitCode::from(EXIT_RUNTIME)
        }
    }
}
