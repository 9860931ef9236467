//! The agent as an OpAMP client (`--opamp URL`): the alternative to the
//! native controller session for fleets managed by an OpAMP server (the
//! Phoenix controller's `--opamp-listen`, or any other).
//!
//! Two transports, as OpAMP defines them: HTTP (`http(s)://…/v1/opamp`, one
//! `POST` of an `AgentToServer` per heartbeat or change, the answer a
//! `ServerToAgent`) and WebSocket (`ws(s)://…/v1/opamp`, binary messages
//! each behind OpAMP's varint header, the server free to speak at any
//! time). [`transport`] hides which one runs; [`client`] holds the
//! protocol: full state first, then only what changed, heartbeats, remote
//! configs through the agent's one reload path, connection settings
//! offers, backoff.
//!
//! What it shares with the native client ([`crate::controller`]): the
//! instance id and the credential file in `--state-dir`, the enrollment
//! token and TLS flags, the reconnect backoff, and the reload plumbing (a
//! remote config is a [`ReloadRequest`] like a native push, held to the
//! same local policy).

mod client;
mod transport;
pub mod uid;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use reqwest::header::HeaderValue;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::controller::{
    self, ControllerSettings, bearer, check_tls_flags, identity, refuse_credentials_in_url,
    refuse_plaintext,
};
use crate::exporter::otlp::read_ca_file;
use crate::pipeline::{ReloadRequest, Service};
use phoenix_telemetry::registry::Registry;

/// OpAMP's usual polling interval: what an HTTP client waits between two
/// requests when nothing changed, and how often a WebSocket client says it
/// is alive.
pub const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(30);
/// Bounds on a heartbeat interval, given or offered by a server: below a
/// second the agent would poll in a near loop, beyond a day a server would
/// think it gone.
pub const MIN_HEARTBEAT: Duration = Duration::from_secs(1);
pub const MAX_HEARTBEAT: Duration = Duration::from_secs(24 * 3600);

/// Which OpAMP transport the URL names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Http,
    WebSocket,
}

/// A validated way to reach the OpAMP server, built once at start so that
/// a bad flag stops the agent at once rather than failing every retry.
#[derive(Clone)]
pub struct Endpoint {
    url: reqwest::Url,
    transport: Transport,
    /// For `https://` and `wss://`.
    tls: Option<Arc<rustls::ClientConfig>>,
    authorization: Option<HeaderValue>,
    heartbeat: Duration,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("url", &self.url.as_str())
            .field("transport", &self.transport)
            .field("tls", &self.tls.is_some())
            .finish_non_exhaustive()
    }
}

impl Endpoint {
    /// From the native client's flags (`settings.url` is `--opamp`'s) and
    /// the heartbeat interval.
    pub fn new(settings: &ControllerSettings, heartbeat: Duration) -> anyhow::Result<Endpoint> {
        let text = settings.url.trim();
        refuse_credentials_in_url("--opamp", text)?;
        let url =
            reqwest::Url::parse(text).map_err(|e| anyhow::anyhow!("--opamp {text:?}: {e}"))?;
        let (transport, secure) = match url.scheme() {
            "http" => (Transport::Http, false),
            "https" => (Transport::Http, true),
            "ws" => (Transport::WebSocket, false),
            "wss" => (Transport::WebSocket, true),
            _ => anyhow::bail!(
                "--opamp {text:?}: expected an http://, https://, ws:// or wss:// URL (such as http://controller:4321/v1/opamp)"
            ),
        };
        if url.host_str().is_none_or(str::is_empty) {
            anyhow::bail!("--opamp {text:?}: the URL names no host");
        }
        check_tls_flags(settings, "--opamp", secure, "https:// or wss://")?;
        let tls = if secure {
            Some(Arc::new(tls_config(settings)?))
        } else {
            if !settings.insecure_plaintext {
                refuse_plaintext("--opamp", text, url.host_str())?;
            }
            None
        };
        // Marked sensitive: kept out of hyper's and tungstenite's debug output.
        let authorization = bearer(settings)?
            .map(|text| HeaderValue::try_from(text).map(sensitive))
            .transpose()
            .map_err(|_| anyhow::anyhow!("--controller-token: not a header value"))?;
        Ok(Endpoint {
            url,
            transport,
            tls,
            authorization,
            heartbeat: heartbeat.clamp(MIN_HEARTBEAT, MAX_HEARTBEAT),
        })
    }

    pub fn url(&self) -> &str {
        self.url.as_str()
    }

    pub fn transport(&self) -> Transport {
        self.transport
    }

    /// Whether the token and credential cross the network without TLS
    /// (`--insecure-plaintext`), worth a warning at start.
    fn in_clear_text_beyond_loopback(&self) -> bool {
        self.tls.is_none()
            && refuse_plaintext("--opamp", self.url.as_str(), self.url.host_str()).is_err()
    }
}

fn sensitive(mut value: HeaderValue) -> HeaderValue {
    value.set_sensitive(true);
    value
}

/// The TLS client setup of both transports: the `--controller-ca` roots
/// (instead of the system's) or the system roots, and the client
/// certificate when given. Only HTTP/1.1 is offered in ALPN: OpAMP's
/// HTTP transport and WebSocket upgrades both run over it.
fn tls_config(settings: &ControllerSettings) -> anyhow::Result<rustls::ClientConfig> {
    use rustls::pki_types::pem::PemObject as _;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};

    let mut roots = rustls::RootCertStore::empty();
    match &settings.ca_file {
        Some(path) => {
            let pem = read_ca_file(path).map_err(|e| anyhow::anyhow!("--controller-ca: {e}"))?;
            for cert in CertificateDer::pem_slice_iter(&pem) {
                let cert =
                    cert.map_err(|e| anyhow::anyhow!("--controller-ca {}: {e}", path.display()))?;
                roots
                    .add(cert)
                    .map_err(|e| anyhow::anyhow!("--controller-ca {}: {e}", path.display()))?;
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            for error in &found.errors {
                tracing::warn!(error = %error, "reading the system's root certificates");
            }
            let (added, _ignored) = roots.add_parsable_certificates(found.certs);
            if added == 0 {
                anyhow::bail!("--opamp: no system root certificates found; give --controller-ca");
            }
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| anyhow::anyhow!("--opamp: TLS setup failed: {e}"))?
        .with_root_certificates(roots);
    let mut config = match (&settings.client_cert, &settings.client_key) {
        (Some(cert), Some(key)) => {
            let chain = CertificateDer::pem_file_iter(cert)
                .and_then(Iterator::collect::<Result<Vec<_>, _>>)
                .map_err(|e| anyhow::anyhow!("--controller-cert {}: {e}", cert.display()))?;
            if chain.is_empty() {
                anyhow::bail!(
                    "--controller-cert {}: no PEM certificate in it",
                    cert.display()
                );
            }
            let key = PrivateKeyDer::from_pem_file(key)
                .map_err(|e| anyhow::anyhow!("--controller-key {}: {e}", key.display()))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| anyhow::anyhow!("--controller-cert/--controller-key: {e}"))?
        }
        _ => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// Start the OpAMP client for the running `service`: remote configs go to
/// `reloads` (the dispatcher `POST /-/reload` uses). It runs until `stop`
/// turns true, then sends its last message (`agent_disconnect`) and ends.
pub fn spawn(
    endpoint: Endpoint,
    labels: BTreeMap<String, String>,
    state_dir: Option<&Path>,
    service: Service,
    reloads: mpsc::Sender<ReloadRequest>,
    registry: &Registry,
    stop: watch::Receiver<bool>,
) -> JoinHandle<()> {
    let host_name = controller::own_host_name();
    let instance_id = identity::load_or_create(state_dir, &host_name);
    let uid = uid::load_or_create(state_dir, &instance_id);
    let uid_text = identity::uuid_string(&uid);
    if endpoint.in_clear_text_beyond_loopback() {
        tracing::warn!(
            opamp = %endpoint.url,
            "--insecure-plaintext: the token, the agent's credential and configs cross the network without TLS"
        );
    }
    // As for the native client: only a kept id has a kept credential. The
    // credential is bound to the uid, the agent's id on an OpAMP server.
    let keep_in = state_dir.filter(|_| instance_id.persistent);
    let credential = keep_in.and_then(|dir| identity::load_credential(dir, &uid_text));
    tracing::info!(
        opamp = %endpoint.url,
        transport = ?endpoint.transport,
        instance_id = %instance_id.id,
        instance_uid = %uid_text,
        credential_kept = credential.is_some(),
        heartbeat = ?endpoint.heartbeat,
        "OpAMP client started"
    );
    let client = client::Client::new(client::Parts {
        endpoint,
        uid,
        host_name,
        labels,
        credential,
        keep_in: keep_in.map(Path::to_path_buf),
        service,
        reloads,
        metrics: client::OpampMetrics::new(registry),
    });
    tokio::spawn(client.run(stop))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::tests::settings;

    fn endpoint(s: &ControllerSettings) -> anyhow::Result<Endpoint> {
        Endpoint::new(s, DEFAULT_HEARTBEAT)
    }

    fn err(s: ControllerSettings) -> String {
        format!("{:#}", endpoint(&s).err().unwrap())
    }

    #[test]
    fn urls_schemes_and_flags_are_checked_at_start() {
        let http = endpoint(&settings("http://127.0.0.1:4321/v1/opamp")).unwrap();
        assert_eq!(http.transport(), Transport::Http);
        let ws = endpoint(&settings("ws://localhost:4321/v1/opamp")).unwrap();
        assert_eq!(ws.transport(), Transport::WebSocket);
        assert!(err(settings("grpc://127.0.0.1:1/v1/opamp")).contains("ws://"));
        assert!(err(settings("controller:4321")).contains("http://"));
        assert!(err(settings("http://u:p@127.0.0.1:1/v1/opamp")).contains("--controller-token"));
        let refused = err(settings("ws://10.1.2.3:4321/v1/opamp"));
        assert!(refused.contains("--insecure-plaintext"), "{refused}");
        let mut insecure = settings("ws://10.1.2.3:4321/v1/opamp");
        insecure.insecure_plaintext = true;
        assert!(endpoint(&insecure).unwrap().in_clear_text_beyond_loopback());
        // The TLS flags follow the scheme: ws:// is as plain as http://.
        let mut ca_on_ws = settings("ws://127.0.0.1:4321/v1/opamp");
        ca_on_ws.ca_file = Some("/nonexistent".into());
        assert!(err(ca_on_ws).contains("https:// or wss://"));
        let mut missing_ca = settings("wss://127.0.0.1:4321/v1/opamp");
        missing_ca.ca_file = Some("/nonexistent/ca.pem".into());
        assert!(err(missing_ca).contains("--controller-ca"));
        let mut token = settings("http://127.0.0.1:4321/v1/opamp");
        token.token = Some("s3cret".into());
        let header = endpoint(&token).unwrap().authorization.unwrap();
        assert!(header.is_sensitive());
        assert_eq!(header.to_str().unwrap(), "Bearer s3cret");
        let fast = settings("http://127.0.0.1:4321/v1/opamp");
        let fast = Endpoint::new(&fast, Duration::from_millis(1)).unwrap();
        assert_eq!(fast.heartbeat, MIN_HEARTBEAT);
    }
}
