//! `phoenix-controller`: agents connect over gRPC, operators push configs
//! over the JSON API (or `phoenixctl`), and everything is kept in SQLite.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use phoenix_config::LogFormat;
use phoenix_controller::audit::AuditSink;
use phoenix_controller::auth::{AuthSource, RECOMMENDED_MIN_LEN, Token};
use phoenix_controller::tls::{TlsFiles, TlsMaterial};
use phoenix_controller::{DEFAULT_GRPC_LISTEN, DEFAULT_HTTP_LISTEN, Settings};

/// Exit codes: 0 stopped cleanly, 1 runtime failure, 2 bad command line.
const EXIT_RUNTIME: u8 = 1;
const EXIT_USAGE: u8 = 2;

#[derive(Parser, Debug)]
#[command(
    name = "phoenix-controller",
    version,
    about = "Phoenix controller: pushes pipeline configs to a fleet of agents and tracks every rollout.",
    long_about = "Phoenix controller: agents connect over gRPC (phoenix.agent.v1, port 4320) and \
operators push pipeline configs over a JSON API (port 8080, /api/v1, or `phoenixctl`). Every agent, \
config version, push and outcome is kept in SQLite under --data-dir, so a restart loses nothing.\n\n\
The API needs principals: --api-token (one admin, the simple default) or --auth-file (named \
principals with roles viewer/operator/admin, scopes, hashed tokens and OIDC; re-read on SIGHUP and \
when it changes; see docs/SECURITY.md). Agents need --agent-token to enroll (gRPC metadata `authorization: Bearer <token>`): on first contact each agent is \
issued its own credential, bound to its instance id and required from then on. Give the tokens as \
flags, environment variables or files (the file keeps them out of `ps`). Both ports listen on \
loopback by default; to open them, give --grpc-listen/--http-listen 0.0.0.0:PORT together with \
--tls-cert/--tls-key (plain text beyond loopback needs --insecure-plaintext).\n\n\
Exit codes: 0 stopped cleanly (SIGINT/SIGTERM), 1 runtime failure (a port in use, the store cannot \
be opened, an invalid auth file), 2 bad command line (including missing tokens or unreadable TLS files)."
)]
struct Cli {
    /// Where agents connect (gRPC).
    #[arg(long, env = "PHOENIX_GRPC_LISTEN", default_value = DEFAULT_GRPC_LISTEN, value_name = "ADDR")]
    grpc_listen: SocketAddr,

    /// Serve OpAMP's HTTP transport (`POST /v1/opamp`) here, for OpAMP
    /// agents (a Collector's OpAMP extension, ...); off unless given. Same
    /// TLS, agent token and credentials as the gRPC port.
    #[arg(long, env = "PHOENIX_OPAMP_LISTEN", value_name = "ADDR")]
    opamp_listen: Option<SocketAddr>,

    /// An OpAMP agent that sends no request for this long is offline
    /// (3 × the 30 s polling interval OpAMP agents use by default).
    #[arg(long, default_value = "90s", value_parser = duration, value_name = "DURATION")]
    opamp_timeout: Duration,

    /// Where the API, /metrics, /healthz and /readyz are served (HTTP).
    #[arg(long, env = "PHOENIX_HTTP_LISTEN", default_value = DEFAULT_HTTP_LISTEN, value_name = "ADDR")]
    http_listen: SocketAddr,

    /// Directory of the store (controller.db, WAL files). Created if missing.
    #[arg(
        long,
        global = true,
        env = "PHOENIX_DATA_DIR",
        default_value = "./phoenix-data",
        value_name = "DIR"
    )]
    data_dir: PathBuf,

    /// Directory of *.yaml configs pushable by name (read on each request).
    #[arg(
        long,
        env = "PHOENIX_TEMPLATES_DIR",
        default_value = "configs/templates",
        value_name = "DIR"
    )]
    templates_dir: PathBuf,

    /// Bearer token for the API: one admin principal named `admin`. This,
    /// its env var, --api-token-file or --auth-file is required.
    #[arg(
        long,
        env = "PHOENIX_API_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN"
    )]
    api_token: Option<String>,

    /// File holding the API token.
    #[arg(long, env = "PHOENIX_API_TOKEN_FILE", value_name = "FILE")]
    api_token_file: Option<PathBuf>,

    /// YAML file of API principals (roles, scopes, token hashes, OIDC)
    /// instead of the single API token. Re-read on SIGHUP and on change; an
    /// invalid file keeps the principals in force.
    #[arg(long, env = "PHOENIX_AUTH_FILE", value_name = "FILE")]
    auth_file: Option<PathBuf>,

    /// Token agents must present. Required (this, its env var, or --agent-token-file).
    #[arg(
        long,
        env = "PHOENIX_AGENT_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN"
    )]
    agent_token: Option<String>,

    /// File holding the agent token.
    #[arg(long, env = "PHOENIX_AGENT_TOKEN_FILE", value_name = "FILE")]
    agent_token_file: Option<PathBuf>,

    /// Let reads (GET, config and experiment validation) through without a
    /// credential, as a viewer named `anonymous`. The audit log, pushes,
    /// experiments and revocations still need one.
    #[arg(long)]
    api_read_open: bool,

    /// PEM certificate (chain) for TLS on both ports. Needs --tls-key.
    #[arg(long, requires = "tls_key", value_name = "FILE")]
    tls_cert: Option<PathBuf>,

    /// PEM private key of --tls-cert.
    #[arg(long, requires = "tls_cert", value_name = "FILE")]
    tls_key: Option<PathBuf>,

    /// PEM CA: agents must present a client certificate it signed (gRPC
    /// port only), whose subject Common Name is the agent's instance id.
    #[arg(long, requires = "tls_cert", value_name = "FILE")]
    client_ca: Option<PathBuf>,

    /// Allow listening on a non-loopback address without TLS: tokens,
    /// credentials and configs then cross the network in clear text. Only
    /// for networks that are encrypted otherwise (a service mesh, a VPN).
    #[arg(long, env = "PHOENIX_INSECURE_PLAINTEXT")]
    insecure_plaintext: bool,

    /// An agent that sends nothing for this long is offline (3 × its 10 s heartbeat).
    #[arg(long, default_value = "30s", value_parser = duration, value_name = "DURATION")]
    agent_timeout: Duration,

    /// Targets of a push that have not answered after this are marked `timeout`.
    #[arg(long, default_value = "60s", value_parser = duration, value_name = "DURATION")]
    push_timeout: Duration,

    /// Measurements of experiments that finished longer ago than this are deleted.
    #[arg(long, default_value = "30d", value_parser = retention, value_name = "DURATION")]
    experiment_retention: Duration,

    /// Also write every audit entry as a JSON line to FILE (appended,
    /// created 0600), or to stdout with `-`, for a log pipeline. Resumes
    /// where it stopped after a restart; a new destination gets the whole
    /// log first.
    #[arg(long, env = "PHOENIX_AUDIT_EXPORT", value_name = "FILE|-")]
    audit_export: Option<String>,

    /// Delete audit entries older than this (at least 1h; default: keep
    /// them all). With --audit-export, never before they were exported.
    #[arg(long, value_parser = retention, value_name = "DURATION")]
    audit_retention: Option<Duration>,

    /// Log level or tracing filter (RUST_LOG wins).
    #[arg(long, default_value = "info", value_name = "LEVEL")]
    log_level: String,

    /// Log format. Logs go to stderr.
    #[arg(long, value_enum, default_value = "text")]
    log_format: LogFormat,

    /// Without a command the controller runs.
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(clap::Subcommand, Debug)]
enum Command {
    /// Write a consistent snapshot of the store in --data-dir (SQLite VACUUM
    /// INTO; safe while the controller runs, never migrates or writes the
    /// store). Restore: stop the controller, put the snapshot in place as
    /// <data-dir>/controller.db (remove controller.db-wal and -shm), start it.
    Backup {
        /// A file to create, or a directory (existing, or ending in /): the
        /// snapshot is then named controller-<UTC time>.db.
        #[arg(long, short, value_name = "PATH")]
        output: PathBuf,
        /// When --output is a directory, keep only the newest N snapshots
        /// there (0: keep all).
        #[arg(long, default_value_t = 0, value_name = "N")]
        keep: usize,
    },
    /// Print the hash of an API token for the auth file (`sha256:<hex>`).
    /// The token is read from stdin (first line), so it stays out of `ps`
    /// and shell history; with --generate a new random token is made and
    /// printed first, then its hash. Tokens shorter than 24 characters are
    /// refused.
    HashToken {
        /// Make a new random token (43 characters) instead of reading one.
        #[arg(long)]
        generate: bool,
    },
}

/// `phoenix-controller hash-token`: exit 0 printed, 2 refused token.
fn hash_token(generate: bool) -> ExitCode {
    use phoenix_controller::auth::file;
    let token = if generate {
        match file::generate_token() {
            Ok(t) => t,
            Err(e) => {
                eprintln!("phoenix-controller hash-token: {e}");
                return ExitCode::from(EXIT_RUNTIME);
            }
        }
    } else {
        let mut line = String::new();
        if let Err(e) = std::io::stdin().read_line(&mut line) {
            eprintln!("phoenix-controller hash-token: cannot read stdin: {e}");
            return ExitCode::from(EXIT_RUNTIME);
        }
        line.trim().to_string()
    };
    if let Err(e) = file::check_new_token(&token) {
        eprintln!("phoenix-controller hash-token: {e}");
        return ExitCode::from(EXIT_USAGE);
    }
    if generate {
        println!("{token}");
    }
    println!("{}", file::format_hash(&file::hash_token(token.as_bytes())));
    ExitCode::SUCCESS
}

/// `phoenix-controller backup`: exit 0 written, 1 failed.
fn backup(data_dir: &Path, output: &Path, keep: usize) -> ExitCode {
    match phoenix_controller::store::backup::backup_data_dir(data_dir, output, keep) {
        Ok(b) => {
            println!(
                "backup written: {} ({} bytes, schema version {})",
                b.path.display(),
                b.bytes,
                b.schema_version
            );
            for old in &b.pruned {
                println!("removed old backup: {}", old.display());
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("phoenix-controller backup: {e}");
            ExitCode::from(EXIT_RUNTIME)
        }
    }
}

/// At least an hour, at most ten years (`7d`, `720h`).
fn retention(text: &str) -> Result<Duration, String> {
    let d = phoenix_config::duration::parse_duration(text)?;
    if d < Duration::from_secs(3600) || d > Duration::from_secs(10 * 365 * 86_400) {
        return Err(format!("{text:?} must be from 1h to 10 years"));
    }
    Ok(d)
}

/// `500ms`, `30s`, `2m`: the agent's duration syntax, bounded to a day and
/// above zero.
fn duration(text: &str) -> Result<Duration, String> {
    // Guard the float conversion below against absurd values.
    if text.len() > 16 {
        return Err(format!("invalid duration {text:?}"));
    }
    let d = phoenix_config::duration::parse_duration(text)?;
    if d.is_zero() || d > Duration::from_secs(86_400) {
        return Err(format!(
            "duration {text:?} must be above zero and at most 24h"
        ));
    }
    Ok(d)
}

/// Everything from the command line that can be wrong before starting.
fn settings(cli: &Cli) -> Result<Settings, String> {
    let token = |name: &str, value: Option<&str>, file: Option<&PathBuf>, env: &str| {
        let t = Token::from_flag_or_file(name, value, file.map(|p| p.as_path()))?.ok_or_else(|| {
            format!("--{name} is required (or the environment variable {env}, or --{name}-file FILE)")
        })?;
        if t.len() < RECOMMENDED_MIN_LEN {
            tracing::warn!(
                "the {name} is shorter than {RECOMMENDED_MIN_LEN} characters: easy to guess"
            );
        }
        Ok::<_, String>(t)
    };
    let api_auth = match &cli.auth_file {
        Some(path) => {
            if cli.api_token.is_some() || cli.api_token_file.is_some() {
                return Err(
                    "give --api-token (one admin) or --auth-file (principals), not both".into(),
                );
            }
            AuthSource::File(path.clone())
        }
        None => AuthSource::SingleToken(token(
            "api-token",
            cli.api_token.as_deref(),
            cli.api_token_file.as_ref(),
            "PHOENIX_API_TOKEN",
        )?),
    };
    let agent_token = token(
        "agent-token",
        cli.agent_token.as_deref(),
        cli.agent_token_file.as_ref(),
        "PHOENIX_AGENT_TOKEN",
    )?;
    let tls = match (&cli.tls_cert, &cli.tls_key) {
        (Some(cert), Some(key)) => Some(TlsMaterial::load(&TlsFiles {
            cert: cert.clone(),
            key: key.clone(),
            client_ca: cli.client_ca.clone(),
        })?),
        _ => None,
    };
    if tls.is_none() {
        let opamp = cli.opamp_listen.map(|a| ("--opamp-listen", a));
        for (what, addr) in [
            ("--grpc-listen", cli.grpc_listen),
            ("--http-listen", cli.http_listen),
        ]
        .into_iter()
        .chain(opamp)
        {
            if addr.ip().is_loopback() {
                continue;
            }
            if !cli.insecure_plaintext {
                return Err(format!(
                    "{what} {addr} is not a loopback address and there is no TLS: give \
                     --tls-cert/--tls-key, or --insecure-plaintext to send tokens, credentials \
                     and configs in clear text"
                ));
            }
            tracing::warn!(
                "{what} {addr} is reachable from the network without TLS (--insecure-plaintext): tokens, credentials and configs travel in clear text"
            );
        }
    }
    if !cli.templates_dir.is_dir() {
        tracing::warn!(
            dir = %cli.templates_dir.display(),
            "the templates directory does not exist: pushes by template name will find nothing"
        );
    }
    Ok(Settings {
        grpc_listen: cli.grpc_listen,
        http_listen: cli.http_listen,
        opamp_listen: cli.opamp_listen,
        opamp_timeout: cli.opamp_timeout,
        data_dir: cli.data_dir.clone(),
        templates_dir: cli.templates_dir.clone(),
        api_auth,
        agent_token,
        api_read_open: cli.api_read_open,
        tls,
        agent_timeout: cli.agent_timeout,
        push_timeout: cli.push_timeout,
        experiment_retention: cli.experiment_retention,
        audit_export: cli.audit_export.as_deref().map(AuditSink::parse),
        audit_retention: cli.audit_retention,
    })
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match &cli.command {
        Some(Command::Backup { output, keep }) => return backup(&cli.data_dir, output, *keep),
        Some(Command::HashToken { generate }) => return hash_token(*generate),
        None => {}
    }
    phoenix_telemetry::logging::init(&cli.log_level, cli.log_format == LogFormat::Json);
    let settings = match settings(&cli) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("phoenix-controller: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    phoenix_controller::raise_fd_limit();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .thread_name("phoenix-ctl")
        // Store calls run on blocking threads and take one lock: a few
        // threads keep the store busy, hundreds (a fan-out's answers all at
        // once) would only wait on the lock and cost memory.
        .max_blocking_threads(8)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("phoenix-controller: cannot start the runtime: {e}");
            return ExitCode::from(EXIT_RUNTIME);
        }
    };
    let result = runtime.block_on(async {
        let running = phoenix_controller::start(settings).await?;
        running
            .run_until(phoenix_telemetry::signals::shutdown("controller"))
            .await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("phoenix-controller: {e:#}");
            ExitCode::from(EXIT_RUNTIME)
        }
    }
}
