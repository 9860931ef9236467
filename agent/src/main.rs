//! `phoenix-agent`: scrape every process from /proc, run pipeline variants
//! side by side, export OTLP, Prometheus, files and a console report.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use phoenix_agent::config::{AgentConfig, ConfigErrors, LogFormat};
use phoenix_agent::controller::{self, ControllerSettings};
use phoenix_agent::pipeline::{ReloadError, ReloadRequest, ReloadSource, Service, config_hash};
use phoenix_agent::telemetry::registry::Registry;
use phoenix_agent::telemetry::server::{self, Health, ReloadEndpoint};

/// Exit codes: 0 clean stop, 1 runtime failure, 2 bad command line, 3 invalid config.
const EXIT_RUNTIME: u8 = 1;
const EXIT_USAGE: u8 = 2;
const EXIT_INVALID_CONFIG: u8 = 3;

#[derive(Parser, Debug)]
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
    /// pushes configs and receives per-pipeline stats. Without it the agent
    /// runs standalone.
    #[arg(long, value_name = "URL")]
    controller: Option<String>,

    /// Token presented to the controller (gRPC `authorization: Bearer`).
    /// Prefer the environment variable: arguments show in `ps`.
    #[arg(
        long,
        value_name = "TOKEN",
        env = "PHOENIX_CONTROLLER_TOKEN",
        hide_env_values = true
    )]
    controller_token: Option<String>,

    /// PEM CA certificate(s) the controller's certificate must chain to,
    /// instead of the system roots (https:// only).
    #[arg(long, value_name = "FILE", requires = "controller")]
    controller_ca: Option<PathBuf>,

    /// PEM client certificate for controllers that require one (with --controller-key).
    #[arg(long, value_name = "FILE", requires_all = ["controller", "controller_key"])]
    controller_cert: Option<PathBuf>,

    /// PEM private key of --controller-cert.
    #[arg(long, value_name = "FILE", requires_all = ["controller", "controller_cert"])]
    controller_key: Option<PathBuf>,

    /// A label the controller selects this agent by, e.g. `--label env=prod`
    /// (repeatable).
    #[arg(long = "label", value_name = "KEY=VALUE", value_parser = controller::parse_label, requires = "controller")]
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
            print!("{}", phoenix_agent::config::EMBEDDED_DEFAULT);
            ExitCode::SUCCESS
        }
        None => run(&cli),
    }
}

/// Read and load a config file, or the embedded default: the config, its
/// text, and where it came from.
fn load(path: Option<&Path>) -> Result<(AgentConfig, String, String), String> {
    let Some(path) = path else {
        return Ok((
            AgentConfig::embedded_default(),
            phoenix_agent::config::EMBEDDED_DEFAULT.to_string(),
            "embedded default".into(),
        ));
    };
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read config {}: {e}", path.display()))?;
    AgentConfig::load(&text)
        .map(|c| (c, text.clone(), path.display().to_string()))
        .map_err(|ConfigErrors(errors)| {
            let mut out = format!("{}: {} error(s):", path.display(), errors.len());
            for e in errors {
                out.push_str(&format!("\n  - {e}"));
            }
            out
        })
}

fn validate(path: Option<&Path>) -> ExitCode {
    if path.is_none() {
        eprintln!("phoenix-agent validate: --config FILE is required");
        return ExitCode::from(2);
    }
    match load(path) {
        Ok((config, _, source)) => {
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
    use tracing_subscriber::EnvFilter;
    let level = cli
        .log_level
        .clone()
        .unwrap_or_else(|| config.telemetry.logs.level.clone());
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    match cli.log_format.unwrap_or(config.telemetry.logs.format) {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

/// The controller flags, checked before anything starts: a bad URL or an
/// unreadable certificate would otherwise fail every reconnect, forever.
fn controller_flags(cli: &Cli) -> Result<Option<ControllerFlags>, String> {
    let Some(url) = &cli.controller else {
        return Ok(None);
    };
    let mut labels = BTreeMap::new();
    for (key, value) in &cli.labels {
        if labels.insert(key.clone(), value.clone()).is_some() {
            return Err(format!("--label {key}: given more than once"));
        }
    }
    let settings = ControllerSettings {
        url: url.clone(),
        token: cli.controller_token.clone(),
        ca_file: cli.controller_ca.clone(),
        client_cert: cli.controller_cert.clone(),
        client_key: cli.controller_key.clone(),
        labels,
    };
    let connection = controller::Connection::new(&settings).map_err(|e| format!("{e:#}"))?;
    Ok(Some(ControllerFlags {
        connection,
        labels: settings.labels,
    }))
}

/// How to reach the controller and what to tell it about this agent.
struct ControllerFlags {
    connection: controller::Connection,
    labels: BTreeMap<String, String>,
}

fn run(cli: &Cli) -> ExitCode {
    let controller = match controller_flags(cli) {
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
    // A config pushed by a controller (or posted to /-/reload) and kept in
    // --state-dir wins over --config: the agent comes back as it was.
    let remote = sources.remote_config_path().and_then(|p| {
        let text = std::fs::read_to_string(&p).ok()?;
        match AgentConfig::load(&text) {
            Ok(config) => Some((config, text, p)),
            Err(errors) => {
                eprintln!("ignoring {}: {errors}", p.display());
                None
            }
        }
    });
    let (config, text, source) = match remote {
        Some((config, text, path)) => (config, text, path.display().to_string()),
        None => match load(cli.config.as_deref()) {
            Ok(c) => c,
            Err(message) => {
                eprintln!("{message}");
                return ExitCode::from(EXIT_INVALID_CONFIG);
            }
        },
    };
    init_logging(cli, &config);
    tracing::info!(config = %source, "config loaded");
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
    match runtime.block_on(serve(config, text, sources, controller)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("phoenix-agent: {e:#}");
            ExitCode::from(EXIT_RUNTIME)
        }
    }
}

/// The config file the agent runs, for re-reads (SIGHUP, file change,
/// an empty `POST /-/reload`), and where a pushed config is kept.
struct ConfigSources {
    file: Option<PathBuf>,
    state_dir: Option<PathBuf>,
}

impl ConfigSources {
    fn read_file(&self) -> Result<String, ReloadError> {
        let path = self.file.as_ref().ok_or_else(|| {
            ReloadError::Source(
                "the agent runs the embedded default config: there is no --config file to re-read"
                    .into(),
            )
        })?;
        std::fs::read_to_string(path)
            .map_err(|e| ReloadError::Source(format!("{}: {e}", path.display())))
    }

    fn remote_config_path(&self) -> Option<PathBuf> {
        self.state_dir.as_ref().map(|d| d.join(REMOTE_CONFIG_FILE))
    }

    /// Keep a pushed config so that a restart comes back with it: written
    /// to a temporary file, synced, then renamed over the old one, so a
    /// crash leaves either the old or the new config, never half of one.
    fn persist_remote(&self, text: &str) {
        let (Some(dir), Some(path)) = (&self.state_dir, self.remote_config_path()) else {
            return;
        };
        let result = (|| -> std::io::Result<()> {
            std::fs::create_dir_all(dir)?;
            let tmp = dir.join(format!(".{REMOTE_CONFIG_FILE}.tmp"));
            let mut f = std::fs::File::create(&tmp)?;
            std::io::Write::write_all(&mut f, text.as_bytes())?;
            f.sync_all()?;
            std::fs::rename(&tmp, &path)?;
            std::fs::File::open(dir)?.sync_all()
        })();
        if let Err(e) = result {
            tracing::error!(path = %path.display(), error = %e, "cannot keep the applied remote config in --state-dir");
        }
    }

    /// Remove the kept remote config (the `--config` file replaced it).
    fn forget_remote(&self) {
        if let Some(path) = self.remote_config_path()
            && let Err(e) = std::fs::remove_file(&path)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::error!(path = %path.display(), error = %e, "cannot remove the replaced remote config from --state-dir");
        }
    }
}

/// The file under `--state-dir` holding the last applied remote config.
const REMOTE_CONFIG_FILE: &str = "remote-config.yaml";

/// How often the config file is checked for changes.
const FILE_POLL_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

async fn serve(
    config: AgentConfig,
    text: String,
    sources: ConfigSources,
    controller: Option<ControllerFlags>,
) -> anyhow::Result<()> {
    let registry = Registry::new();
    let health = Health::new();
    let telemetry_config = config.telemetry.clone();
    let service = Service::start(
        config,
        &text,
        ReloadSource::Startup,
        &registry,
        health.clone(),
    )?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = move |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stopped| *stopped).await;
    };
    let (reload_tx, mut reload_rx) = tokio::sync::mpsc::channel::<ReloadRequest>(8);
    let controller_reloads = reload_tx.clone();
    let telemetry = server::serve(
        telemetry_config.address,
        registry.clone(),
        health.clone(),
        Some(ReloadEndpoint {
            requests: reload_tx,
            allow_remote: telemetry_config.remote_reload,
            accept_body: telemetry_config.accept_config_body,
        }),
        stopped(stop_rx.clone()),
    )
    .await?;
    tracing::info!(
        pipelines = ?service.pipeline_names(),
        hash = %service.applied().hash,
        telemetry = %telemetry_config.address,
        version = env!("CARGO_PKG_VERSION"),
        "phoenix-agent started"
    );
    // Started once the agent is up (a telemetry port in use ends it first),
    // so a controller never sees an agent that is about to exit. Pushes
    // come through the same dispatcher below as `POST /-/reload`: one place
    // validates, swaps and keeps the config in --state-dir.
    let controller = controller.map(|flags| {
        controller::spawn(
            flags.connection,
            flags.labels,
            sources.state_dir.as_deref(),
            service.clone(),
            controller_reloads,
            &registry,
        )
    });

    // Every trigger goes through the same `Service::reload`.
    let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
    let mut poll = tokio::time::interval(FILE_POLL_INTERVAL);
    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut file_hash = sources.read_file().ok().map(|t| config_hash(&t));
    let shutdown = shutdown_signal();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            _ = hangup.recv() => {
                tracing::info!("SIGHUP received: reloading the config file");
                if let Err(e) = reload_file(&service, &sources, ReloadSource::Signal).await {
                    tracing::debug!("{e}");
                }
            }
            _ = poll.tick(), if sources.file.is_some() => {
                let Ok(text) = sources.read_file() else { continue };
                let hash = config_hash(&text);
                if file_hash.as_deref() != Some(hash.as_str()) {
                    file_hash = Some(hash);
                    tracing::info!("config file changed: reloading");
                    let _ = reload_local(&service, &sources, &text, ReloadSource::FileChange).await;
                }
            }
            Some(request) = reload_rx.recv() => {
                let result = match request.text {
                    Some(text) => {
                        let result = service.reload(&text, request.source).await;
                        if matches!(&result, Ok(outcome) if outcome.changed) {
                            sources.persist_remote(&text);
                        }
                        result
                    }
                    // A controller asking for no text is a revert: back
                    // to the local config, whatever the kept remote one.
                    None if request.source == ReloadSource::Controller => {
                        revert_to_local(&service, &sources).await
                    }
                    None => reload_file(&service, &sources, request.source).await,
                };
                let _ = request.reply.send(result);
            }
        }
    }
    // The session holds nothing that needs flushing: the controller sees
    // the stream end and marks the agent offline.
    if let Some(session) = controller {
        session.abort();
    }
    service.shutdown().await;
    let _ = stop_tx.send(true);
    let _ = telemetry.await;
    tracing::info!("phoenix-agent stopped");
    Ok(())
}

async fn reload_file(
    service: &Service,
    sources: &ConfigSources,
    source: ReloadSource,
) -> Result<phoenix_agent::pipeline::ReloadOutcome, ReloadError> {
    match sources.read_file() {
        Ok(text) => reload_local(service, sources, &text, source).await,
        Err(e) => {
            tracing::error!("reload refused, the running config stays: {e}");
            Err(e)
        }
    }
}

/// Apply the `--config` file's text. Once it runs, a kept remote config
/// no longer describes what the agent runs: it is forgotten, so a restart
/// comes back with the file, as the operator last chose.
async fn reload_local(
    service: &Service,
    sources: &ConfigSources,
    text: &str,
    source: ReloadSource,
) -> Result<phoenix_agent::pipeline::ReloadOutcome, ReloadError> {
    let result = service.reload(text, source).await;
    if matches!(&result, Ok(outcome) if outcome.changed) {
        sources.forget_remote();
    }
    result
}

/// The controller undoes its pushes: the `--config` file (or the embedded
/// default when there is none) runs again, and the kept remote config is
/// forgotten even when the texts are equal, so a restart starts from the
/// local config too.
async fn revert_to_local(
    service: &Service,
    sources: &ConfigSources,
) -> Result<phoenix_agent::pipeline::ReloadOutcome, ReloadError> {
    let text = match &sources.file {
        Some(_) => sources.read_file()?,
        None => phoenix_agent::config::EMBEDDED_DEFAULT.to_string(),
    };
    let result = service.reload(&text, ReloadSource::Controller).await;
    if result.is_ok() {
        sources.forget_remote();
    }
    result
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for SIGTERM; only Ctrl-C stops the agent");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received, stopping"),
        _ = term.recv() => tracing::info!("SIGTERM received, stopping"),
    }
}
