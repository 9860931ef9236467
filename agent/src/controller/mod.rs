//! The controller client: one long-lived gRPC session (`AgentControl/Session`
//! of `phoenix.agent.v1`) to a Phoenix controller.
//!
//! The agent says who it is and what it runs (`Hello`), streams every
//! interval's per-pipeline stats and a heartbeat, and applies the configs the
//! controller pushes through the agent's one reload path, answering each
//! push with APPLYING then APPLIED or FAILED. When the controller is away
//! the agent keeps running its last applied config and reconnects with
//! exponential backoff and jitter, forever.
//!
//! The session task never touches the pipelines itself: a push becomes a
//! [`ReloadRequest`](crate::pipeline::ReloadRequest) on the same channel
//! `POST /-/reload` uses, so validation, the swap and persistence to
//! `--state-dir` happen in one place whatever the trigger.

mod client;
pub mod convert;
pub mod identity;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tonic::metadata::AsciiMetadataValue;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};

pub use client::{CREDENTIAL_METADATA, Client, ControllerMetrics, Credentials};

use crate::exporter::otlp::retry::Backoff;
use crate::exporter::otlp::{error_chain, read_ca_file};
use crate::pipeline::{ReloadError, ReloadOutcome, ReloadRequest, ReloadSource, Service};
use phoenix_config::{AgentConfig, ReceiverConfig};
use phoenix_telemetry::registry::Registry;

/// How long establishing the TCP (and TLS) connection may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// HTTP/2 pings on an otherwise quiet session, so that a controller that
/// vanished without closing the connection (a node lost, a NAT entry
/// expired) is noticed within seconds rather than by the kernel's TCP
/// timeout, which can take many minutes.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(20);
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(10);

/// What the command line says about the controller: the native one
/// (`--controller`) or an OpAMP server (`--opamp`, see [`crate::opamp`]).
#[derive(Debug, Clone, Default)]
pub struct ControllerSettings {
    /// `http://host:port` or `https://host:port`; for OpAMP
    /// `http(s)://host:port/v1/opamp` or `ws(s)://host:port/v1/opamp`.
    pub url: String,
    /// The enrollment token, sent as `authorization: Bearer <token>` on
    /// every session: it admits an instance id the controller has not
    /// issued a credential to yet.
    pub token: Option<String>,
    /// PEM roots that replace the system roots for `https://`.
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate and key, for controllers that require one.
    pub client_cert: Option<PathBuf>,
    pub client_key: Option<PathBuf>,
    /// `--label key=value`, reported in every Hello.
    pub labels: BTreeMap<String, String>,
    /// `--insecure-plaintext`: allow `http://` to a host that is not loopback.
    pub insecure_plaintext: bool,
}

/// A validated way to reach the controller: where, how (TLS) and with
/// which credentials. Built once at start so that a bad flag stops the
/// agent at once instead of failing every reconnect forever.
#[derive(Clone)]
pub struct Connection {
    pub(crate) endpoint: Endpoint,
    pub(crate) authorization: Option<AsciiMetadataValue>,
    /// The URL, for logs (it never holds the token).
    pub(crate) url: String,
}

impl Connection {
    pub fn new(settings: &ControllerSettings) -> anyhow::Result<Connection> {
        let url = settings.url.trim().to_string();
        let https = url.starts_with("https://");
        if !https && !url.starts_with("http://") {
            anyhow::bail!("--controller {url:?}: expected an http:// or https:// URL");
        }
        refuse_credentials_in_url("--controller", &url)?;
        let mut endpoint = Endpoint::from_shared(url.clone())
            .map_err(|e| anyhow::anyhow!("--controller {url:?}: {}", error_chain(&e)))?
            .connect_timeout(CONNECT_TIMEOUT)
            .tcp_nodelay(true)
            .http2_keep_alive_interval(KEEPALIVE_INTERVAL)
            .keep_alive_timeout(KEEPALIVE_TIMEOUT)
            .keep_alive_while_idle(true)
            .user_agent(concat!("phoenix-agent/", env!("CARGO_PKG_VERSION")))
            .map_err(|e| anyhow::anyhow!("--controller: {}", error_chain(&e)))?;
        // No `Endpoint::timeout`: it bounds whole requests, and the session
        // is one request meant to last for days.

        check_tls_flags(settings, "--controller", https, "https://")?;
        let client_identity = match (&settings.client_cert, &settings.client_key) {
            (Some(cert), Some(key)) => {
                let read = |flag: &str, path: &PathBuf| {
                    std::fs::read(path)
                        .map_err(|e| anyhow::anyhow!("{flag} {}: cannot read: {e}", path.display()))
                };
                Some(Identity::from_pem(
                    read("--controller-cert", cert)?,
                    read("--controller-key", key)?,
                ))
            }
            _ => None,
        };
        if https {
            let mut tls = match &settings.ca_file {
                Some(path) => ClientTlsConfig::new().ca_certificate(Certificate::from_pem(
                    read_ca_file(path).map_err(|e| anyhow::anyhow!("--controller-ca: {e}"))?,
                )),
                None => ClientTlsConfig::new().with_native_roots(),
            };
            if let Some(identity) = client_identity {
                tls = tls.identity(identity);
            }
            endpoint = endpoint.tls_config(tls).map_err(|e| {
                anyhow::anyhow!("--controller: TLS setup failed: {}", error_chain(&e))
            })?;
        }

        if !https && !settings.insecure_plaintext {
            refuse_plaintext("--controller", &url, endpoint.uri().host())?;
        }

        let authorization = match bearer(settings)? {
            None => None,
            Some(bearer) => {
                let mut value = AsciiMetadataValue::try_from(bearer)
                    .map_err(|_| anyhow::anyhow!("--controller-token: not a metadata value"))?;
                // Kept out of tonic's and hyper's debug output.
                value.set_sensitive(true);
                Some(value)
            }
        };
        Ok(Connection {
            endpoint,
            authorization,
            url,
        })
    }

    /// Whether credentials travel without TLS to another machine (allowed
    /// by `--insecure-plaintext` only), worth a warning at start.
    pub fn token_in_clear_text(&self) -> bool {
        self.url.starts_with("http://") && !self.endpoint.uri().host().is_some_and(is_loopback_host)
    }

    pub fn url(&self) -> &str {
        &self.url
    }
}

/// Start the controller client for the running `service`: pushes go to
/// `reloads` (the dispatcher `POST /-/reload` uses). The task runs until
/// aborted, which is how the agent stops it.
pub fn spawn(
    connection: Connection,
    labels: BTreeMap<String, String>,
    state_dir: Option<&Path>,
    service: Service,
    reloads: mpsc::Sender<ReloadRequest>,
    registry: &Registry,
) -> JoinHandle<()> {
    let host_name = own_host_name();
    let instance_id = identity::load_or_create(state_dir, &host_name);
    if connection.token_in_clear_text() {
        tracing::warn!(
            controller = %connection.url,
            "--insecure-plaintext: the token, the agent's credential and configs cross the network without TLS"
        );
    }
    // Only a kept id has a kept credential; an ephemeral id enrolls anew.
    let credential_dir = state_dir.filter(|_| instance_id.persistent);
    let credential = credential_dir.and_then(|dir| identity::load_credential(dir, &instance_id.id));
    tracing::info!(
        controller = %connection.url,
        instance_id = %instance_id.id,
        instance_id_kept = instance_id.persistent,
        enrolled = credential.is_some(),
        labels = ?labels,
        "controller client started{}",
        if instance_id.persistent {
            ""
        } else {
            " (ephemeral instance id: give --state-dir to keep it across restarts)"
        }
    );
    let metrics = ControllerMetrics::new(registry);
    let client = Client::new(
        connection,
        Credentials {
            instance_id,
            credential,
            keep_in: credential_dir.map(Path::to_path_buf),
        },
        host_name,
        labels,
        service,
        reloads,
        metrics,
    );
    tokio::spawn(client.run())
}

/// The TLS flags fit the URL: a client certificate comes with its key, and
/// neither it nor a CA is given for a URL without TLS (ignoring them would
/// send the token in clear text to someone who believes it is protected).
pub(crate) fn check_tls_flags(
    settings: &ControllerSettings,
    flag: &str,
    tls: bool,
    schemes: &str,
) -> anyhow::Result<()> {
    let identity = match (&settings.client_cert, &settings.client_key) {
        (None, None) => false,
        (Some(_), Some(_)) => true,
        _ => anyhow::bail!("--controller-cert and --controller-key go together"),
    };
    if !tls && (identity || settings.ca_file.is_some()) {
        anyhow::bail!(
            "--controller-ca/--controller-cert need an {schemes} {flag} URL (got {})",
            settings.url.trim()
        );
    }
    Ok(())
}

/// `Bearer <token>` for the `authorization` header, when a token is given.
pub(crate) fn bearer(settings: &ControllerSettings) -> anyhow::Result<Option<String>> {
    match settings.token.as_deref().map(str::trim) {
        None | Some("") => Ok(None),
        Some(token) if token.bytes().all(|b| b.is_ascii_graphic() || b == b' ') => {
            Ok(Some(format!("Bearer {token}")))
        }
        Some(_) => {
            anyhow::bail!("--controller-token: must be printable ASCII without line breaks")
        }
    }
}

/// Credentials in a URL would be logged with every connection state change.
pub(crate) fn refuse_credentials_in_url(flag: &str, url: &str) -> anyhow::Result<()> {
    if url
        .split_once("://")
        .map(|(_, rest)| rest.split(['/', '?']).next().unwrap_or(rest))
        .is_some_and(|authority| authority.contains('@'))
    {
        anyhow::bail!("{flag}: credentials in the URL are not supported; use --controller-token");
    }
    Ok(())
}

/// A connection without TLS is refused unless it stays on this machine
/// (`--insecure-plaintext` skips this check).
pub(crate) fn refuse_plaintext(flag: &str, url: &str, host: Option<&str>) -> anyhow::Result<()> {
    if host.is_some_and(is_loopback_host) {
        return Ok(());
    }
    anyhow::bail!(
        "{flag} {url}: a connection without TLS to a host that is not loopback would send the \
         token, the agent's credential and every config in clear text; use TLS (https://, \
         wss://), or give --insecure-plaintext if the network is encrypted otherwise"
    )
}

/// Reconnect waits: 1 s growing ×1.5 to 30 s, each ±50 %, so that a fleet
/// that lost its controller together does not come back in lockstep.
const BACKOFF_INITIAL: Duration = Duration::from_secs(1);
pub(crate) const BACKOFF_MAX: Duration = Duration::from_secs(30);
const BACKOFF_MULTIPLIER: f64 = 1.5;
const BACKOFF_JITTER: f64 = 0.5;
/// A session that lasted this long was healthy: the next reconnect starts
/// from the first step again. A controller that accepts and drops at once
/// keeps the waits growing instead of being hammered every second.
pub(crate) const STABLE_SESSION: Duration = Duration::from_secs(10);

/// The waits between reconnects, for the native and the OpAMP client alike.
pub(crate) fn reconnect_backoff() -> Backoff {
    Backoff::exponential(
        BACKOFF_INITIAL,
        BACKOFF_MAX,
        BACKOFF_MULTIPLIER,
        BACKOFF_JITTER,
    )
}

/// Waits logged to the millisecond read as noise.
pub(crate) fn round(d: Duration) -> Duration {
    Duration::from_millis(d.as_millis().min(u128::from(u64::MAX)) as u64 / 100 * 100)
}

/// Apply a config from a controller (`None`: revert to the local config)
/// through the dispatcher, as `POST /-/reload` does: the same validation
/// within the local policy, the same swap, and the config is kept in
/// `--state-dir` there.
pub(crate) async fn request_reload(
    reloads: &mpsc::Sender<ReloadRequest>,
    text: Option<String>,
) -> Result<ReloadOutcome, ReloadError> {
    let (reply, answer) = oneshot::channel();
    let request = ReloadRequest {
        text,
        source: ReloadSource::Controller,
        reply,
    };
    let stopping = || ReloadError::Source("the agent is shutting down".into());
    match reloads.send(request).await {
        Ok(()) => answer.await.unwrap_or_else(|_| Err(stopping())),
        Err(_) => Err(stopping()),
    }
}

/// The error text of a FAILED status is bounded: it ends up in the
/// controller's store and UI, and a hostile config can have endless errors.
const MAX_ERROR_LINES: usize = 100;
const MAX_ERROR_BYTES: usize = 32 * 1024;

/// The error of a refused push as the controller shows it: for an invalid
/// config every error on its own line, with component and location, as
/// `phoenix-agent validate` prints them.
pub(crate) fn error_text(e: &ReloadError) -> String {
    let ReloadError::Invalid(errors) = e else {
        return e.to_string();
    };
    let mut out = format!("invalid config: {} error(s):", errors.0.len());
    for (i, error) in errors.0.iter().enumerate() {
        let line = format!("\n  - {error}");
        if i == MAX_ERROR_LINES || out.len() + line.len() > MAX_ERROR_BYTES {
            out.push_str(&format!("\n  … and {} more", errors.0.len() - i));
            break;
        }
        out.push_str(&line);
    }
    out
}

/// The host name a controller is told: a DaemonSet names the node in the
/// procfs receiver's `host_name` (its pod has a host name of its own), so
/// that one wins over `gethostname(2)`.
pub(crate) fn reported_host_name(config: &AgentConfig, own: &str) -> String {
    config
        .receivers
        .values()
        .find_map(|r| match r {
            ReceiverConfig::Procfs(p) => p.host_name.clone(),
        })
        .unwrap_or_else(|| own.to_string())
}

/// `gethostname(2)`, or empty (with a warning) when it fails.
pub(crate) fn own_host_name() -> String {
    crate::receiver::procfs::hostname().unwrap_or_else(|e| {
        tracing::warn!(error = %e, "gethostname failed; the controller sees no host name");
        String::new()
    })
}

/// `localhost` or a loopback address (`127.0.0.1`, `[::1]`).
fn is_loopback_host(host: &str) -> bool {
    host == "localhost"
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Longest label key and value accepted on the command line.
const MAX_LABEL_LEN: usize = 256;

/// Parse `--label key=value`. Keys are kept to the characters label
/// selectors use (letters, digits, `_ - . /`) so that a selector can always
/// name them; values may be anything printable.
pub fn parse_label(arg: &str) -> Result<(String, String), String> {
    let (key, value) = arg
        .split_once('=')
        .ok_or_else(|| format!("{arg:?}: expected key=value"))?;
    let key = key.trim();
    if key.is_empty() || key.len() > MAX_LABEL_LEN {
        return Err(format!(
            "{arg:?}: the key must be 1 to {MAX_LABEL_LEN} characters"
        ));
    }
    if let Some(c) = key
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '/')))
    {
        return Err(format!(
            "{arg:?}: {c:?} is not allowed in a label key (letters, digits, _ - . /)"
        ));
    }
    if value.len() > MAX_LABEL_LEN || value.chars().any(char::is_control) {
        return Err(format!(
            "{arg:?}: the value must be at most {MAX_LABEL_LEN} printable characters"
        ));
    }
    Ok((key.to_string(), value.to_string()))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use phoenix_config::{ConfigError, ConfigErrors};

    /// Settings with only a URL, for the checks of the other flags (the
    /// OpAMP client's tests use them too).
    pub(crate) fn settings(url: &str) -> ControllerSettings {
        ControllerSettings {
            url: url.into(),
            ..ControllerSettings::default()
        }
    }

    #[test]
    fn labels_parse_and_refuse_what_a_selector_cannot_name() {
        assert_eq!(parse_label("env=prod"), Ok(("env".into(), "prod".into())));
        assert_eq!(
            parse_label("topology.kubernetes.io/zone=eu-1a"),
            Ok(("topology.kubernetes.io/zone".into(), "eu-1a".into()))
        );
        assert_eq!(parse_label("empty="), Ok(("empty".into(), String::new())));
        assert_eq!(parse_label("a=b=c"), Ok(("a".into(), "b=c".into())));
        assert!(parse_label("novalue").is_err());
        assert!(parse_label("=x").is_err());
        assert!(parse_label("sp ace=x").is_err());
        assert!(parse_label("k=line\nbreak").is_err());
    }

    #[test]
    fn every_validation_error_is_in_the_failure_text() {
        let errors = phoenix_config::AgentConfig::load(
            "receivers:\n  procfs: { collection_interval: soon }\nservice:\n  pipelines:\n    metrics/a: { receivers: [procfs], exporters: [missing] }\n",
        )
        .unwrap_err();
        let n = errors.0.len();
        assert!(n >= 2, "{errors}");
        let text = error_text(&ReloadError::Invalid(errors.clone()));
        assert!(
            text.starts_with(&format!("invalid config: {n} error(s):")),
            "{text}"
        );
        for e in &errors.0 {
            assert!(text.contains(&e.to_string()), "{text}");
        }
        assert_eq!(
            error_text(&ReloadError::Build("port in use".into())),
            "config cannot be built: port in use"
        );
    }

    #[test]
    fn endless_errors_are_cut_short() {
        let one = ConfigError {
            component: None,
            field: None,
            message: "x".repeat(1000),
            location: None,
        };
        let errors = ConfigErrors(vec![one; 10_000]);
        let text = error_text(&ReloadError::Invalid(errors));
        assert!(text.len() <= MAX_ERROR_BYTES + 100, "{}", text.len());
        assert!(text.ends_with("more"), "{}", &text[text.len() - 40..]);
    }

    #[test]
    fn tls_flags_and_token_are_checked_for_either_protocol() {
        let mut half = settings("https://127.0.0.1:4320");
        half.client_key = Some("/x".into());
        let e = check_tls_flags(&half, "--opamp", true, "wss://").unwrap_err();
        assert!(e.to_string().contains("go together"), "{e}");
        let mut ca = settings("ws://127.0.0.1:4320");
        ca.ca_file = Some("/ca.pem".into());
        let e = check_tls_flags(&ca, "--opamp", false, "wss://").unwrap_err();
        assert_eq!(
            e.to_string(),
            "--controller-ca/--controller-cert need an wss:// --opamp URL (got ws://127.0.0.1:4320)"
        );
        assert!(check_tls_flags(&ca, "--opamp", true, "wss://").is_ok());
        let mut token = settings("http://127.0.0.1:4320");
        assert_eq!(bearer(&token).unwrap(), None);
        token.token = Some("  t0k en \n".into());
        assert_eq!(bearer(&token).unwrap().as_deref(), Some("Bearer t0k en"));
        token.token = Some("a\u{7f}b".into());
        assert!(bearer(&token).is_err());
    }

    #[test]
    fn waits_are_logged_to_the_tenth_of_a_second() {
        assert_eq!(
            round(Duration::from_millis(1234)),
            Duration::from_millis(1200)
        );
    }

    #[tokio::test]
    async fn urls_and_credentials_are_checked_at_start() {
        assert!(Connection::new(&settings("http://127.0.0.1:4320")).is_ok());
        assert!(Connection::new(&settings("https://controller.example:4320")).is_ok());
        let err = |s: ControllerSettings| Connection::new(&s).err().unwrap().to_string();
        assert!(err(settings("controller:4320")).contains("http:// or https://"));
        assert!(err(settings("ftp://x")).contains("http:// or https://"));
        assert!(err(settings("http://user:pw@host:4320")).contains("--controller-token"));
        let mut insecure = settings("http://host:4320/path@x");
        insecure.insecure_plaintext = true;
        assert!(Connection::new(&insecure).is_ok());
        // Plain text beyond loopback only on request.
        let refused = err(settings("http://10.1.2.3:4320"));
        assert!(refused.contains("--insecure-plaintext"), "{refused}");
        assert!(Connection::new(&settings("http://localhost:4320")).is_ok());
        assert!(Connection::new(&settings("http://[::1]:4320")).is_ok());
        let mut ca_on_http = settings("http://127.0.0.1:4320");
        ca_on_http.ca_file = Some("/nonexistent".into());
        assert!(err(ca_on_http).contains("https://"));
        let mut missing_ca = settings("https://127.0.0.1:4320");
        missing_ca.ca_file = Some("/nonexistent/ca.pem".into());
        assert!(err(missing_ca).contains("--controller-ca"));
        let mut half_identity = settings("https://127.0.0.1:4320");
        half_identity.client_cert = Some("/x".into());
        assert!(err(half_identity).contains("go together"));
        let mut bad_token = settings("http://127.0.0.1:4320");
        bad_token.token = Some("a\nb".into());
        assert!(err(bad_token).contains("--controller-token"));
    }

    #[tokio::test]
    async fn a_token_sent_in_clear_text_to_another_host_is_noticed() {
        let with_token = |url: &str| {
            let mut s = settings(url);
            s.token = Some("t".into());
            s.insecure_plaintext = true;
            Connection::new(&s).unwrap()
        };
        assert!(with_token("http://controller.example:4320").token_in_clear_text());
        assert!(!with_token("http://127.0.0.1:4320").token_in_clear_text());
        assert!(!with_token("http://localhost:4320").token_in_clear_text());
        assert!(!with_token("http://[::1]:4320").token_in_clear_text());
        assert!(!with_token("https://controller.example:4320").token_in_clear_text());
        let mut s = settings("http://127.0.0.1:4320");
        s.token = Some("s3cret-token".into());
        let token = Connection::new(&s).unwrap().authorization.unwrap();
        assert!(token.is_sensitive());
        assert!(!format!("{token:?}").contains("s3cret"), "{token:?}");
    }
}
