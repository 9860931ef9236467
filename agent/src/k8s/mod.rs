//! Pod metadata for the `k8sattributes` processor: the node's pods, listed
//! from the API server with a field selector (`spec.nodeName=<node>`) in a
//! background task, published as a [`PodIndex`] snapshot the processors
//! read without waiting.
//!
//! Why the API server and not the kubelet's `/pods`: the kubelet
//! authorizes that endpoint as `nodes/proxy`, which also allows exec into
//! every pod of the node; `pods` get/list on the API server only reads.
//!
//! A refresh runs every `refresh_interval`, and early (at most once per
//! [`MISS_REFRESH_MIN`]) when a processor meets a container id the
//! snapshot does not know. A failed refresh (unreachable, refused, too big,
//! not a PodList) keeps the last good snapshot, is counted in
//! `phoenix_k8s_metadata_refreshes_total{result}`, and is logged once per
//! outage (and once more when it ends).

pub mod api;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use reqwest::header::{ACCEPT, AUTHORIZATION, HeaderValue};
use tokio::sync::Notify;
use tokio::time::Instant;

use phoenix_processors::processors::k8s::{
    AuthType, Extraction, K8sAttributesConfig, PodIndex, PodMetadata,
};
use phoenix_telemetry::registry::{Counter, Gauge, Registry};

use crate::exporter::otlp::error_chain;

/// Where Kubernetes mounts a pod's service-account token and CA.
pub const SERVICE_ACCOUNT_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";
/// Largest answer read (a node's pods are usually well under 1 MiB).
pub const MAX_RESPONSE_BYTES: usize = 64 << 20;
/// Shortest time between two refreshes that a miss asked for.
pub const MISS_REFRESH_MIN: Duration = Duration::from_secs(5);
const MAX_TOKEN_BYTES: u64 = 64 << 10;
const MAX_CA_BYTES: u64 = 1 << 20;
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// A `k8sattributes` config resolved against the environment: where to
/// ask, for which node, with which credentials.
#[derive(Debug, Clone)]
pub struct SourceSettings {
    /// `https://host:port`, no trailing slash.
    pub base_url: String,
    pub node: String,
    /// Read again before every request: projected tokens rotate.
    pub token_path: Option<PathBuf>,
    pub ca_path: Option<PathBuf>,
    pub refresh_interval: Duration,
    /// Shortest time between a refresh and one a miss asks for.
    pub miss_refresh_min: Duration,
    /// Largest answer accepted.
    pub max_response_bytes: usize,
    pub extraction: Extraction,
    /// The processor id, the `processor` label of the metrics.
    pub id: String,
}

impl SourceSettings {
    /// Resolve `config` for processor `id`, reading the environment
    /// through `env` (the service host and port, the node name variable).
    pub fn resolve(
        config: &K8sAttributesConfig,
        id: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> anyhow::Result<SourceSettings> {
        let base_url = match &config.endpoint {
            Some(e) => e.trim_end_matches('/').to_owned(),
            None => {
                let host = env("KUBERNETES_SERVICE_HOST").filter(|h| !h.is_empty());
                let Some(host) = host else {
                    anyhow::bail!(
                        "KUBERNETES_SERVICE_HOST is not set (not in a pod?): set endpoint to reach the API server"
                    );
                };
                let port = env("KUBERNETES_SERVICE_PORT").unwrap_or_else(|| "443".into());
                if host.contains(':') {
                    format!("https://[{host}]:{port}")
                } else {
                    format!("https://{host}:{port}")
                }
            }
        };
        let node = match &config.node_name {
            Some(n) => n.trim().to_owned(),
            None => env(&config.node_from_env_var).unwrap_or_default(),
        };
        if node.is_empty() {
            anyhow::bail!(
                "node_from_env_var: {} is not set (the DaemonSet sets it from spec.nodeName); or set node_name",
                config.node_from_env_var
            );
        }
        if !node
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
        {
            anyhow::bail!("node name {node:?} is not a Kubernetes node name");
        }
        let (token_path, ca_path) = match config.auth_type {
            AuthType::None => (None, None),
            AuthType::ServiceAccount => {
                let dir = Path::new(SERVICE_ACCOUNT_DIR);
                (Some(dir.join("token")), Some(dir.join("ca.crt")))
            }
        };
        Ok(SourceSettings {
            base_url,
            node,
            token_path,
            ca_path,
            refresh_interval: config.refresh_interval,
            miss_refresh_min: MISS_REFRESH_MIN,
            max_response_bytes: MAX_RESPONSE_BYTES,
            extraction: Extraction::new(&config.extract),
            id: id.to_owned(),
        })
    }

    fn url(&self) -> String {
        format!(
            "{}/api/v1/pods?fieldSelector=spec.nodeName%3D{}",
            self.base_url, self.node
        )
    }
}

/// Read a small file whole, refusing one larger than `max`.
fn read_bounded(path: &Path, max: u64) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let mut out = Vec::new();
    std::fs::File::open(path)?
        .take(max + 1)
        .read_to_end(&mut out)?;
    if out.len() as u64 > max {
        return Err(std::io::Error::other(format!("larger than {max} bytes")));
    }
    Ok(out)
}

fn client(settings: &SourceSettings) -> anyhow::Result<reqwest::Client> {
    let mut builder = reqwest::Client::builder()
        .timeout(REQUEST_TIMEOUT)
        .connect_timeout(Duration::from_secs(10))
        .user_agent(concat!("phoenix-agent/", env!("CARGO_PKG_VERSION")))
        // The token goes to the API server only, never where a redirect points.
        .redirect(reqwest::redirect::Policy::none());
    match &settings.ca_path {
        Some(path) => {
            let pem = read_bounded(path, MAX_CA_BYTES)
                .map_err(|e| anyhow::anyhow!("CA {}: cannot read: {e}", path.display()))?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| anyhow::anyhow!("CA {}: {}", path.display(), error_chain(&e)))?;
            if certs.is_empty() {
                anyhow::bail!("CA {}: no PEM certificate in it", path.display());
            }
            // The cluster's CA, and only it, vouches for the API server.
            builder = builder.tls_built_in_root_certs(false);
            for cert in certs {
                builder = builder.add_root_certificate(cert);
            }
        }
        None if !settings.base_url.starts_with("https") => {
            builder = builder.tls_built_in_root_certs(false);
        }
        None => {}
    }
    builder
        .build()
        .map_err(|e| anyhow::anyhow!("HTTP client: {}", error_chain(&e)))
}

/// Why a refresh failed: the `result` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// No answer: connection refused, TLS, timeout, token unreadable.
    Unreachable,
    /// An answer other than 2xx (401 expired token, 403 missing RBAC, ...).
    Refused,
    /// A 2xx answer that is too big or no PodList.
    Invalid,
}

impl Failure {
    fn label(self) -> &'static str {
        match self {
            Failure::Unreachable => "unreachable",
            Failure::Refused => "refused",
            Failure::Invalid => "invalid",
        }
    }
}

/// One list of the node's pods.
async fn fetch(
    client: &reqwest::Client,
    settings: &SourceSettings,
) -> Result<Vec<phoenix_processors::processors::k8s::PodMeta>, (Failure, String)> {
    let mut request = client
        .get(settings.url())
        .header(ACCEPT, HeaderValue::from_static("application/json"));
    if let Some(path) = &settings.token_path {
        let token = read_bounded(path, MAX_TOKEN_BYTES).map_err(|e| {
            (
                Failure::Unreachable,
                format!("token {}: {e}", path.display()),
            )
        })?;
        let token = String::from_utf8_lossy(&token);
        let mut value = HeaderValue::from_str(&format!("Bearer {}", token.trim()))
            .map_err(|_| (Failure::Unreachable, "token is not a header value".into()))?;
        value.set_sensitive(true);
        request = request.header(AUTHORIZATION, value);
    }
    let mut response = request
        .send()
        .await
        .map_err(|e| (Failure::Unreachable, error_chain(&e)))?;
    let status = response.status();
    if !status.is_success() {
        return Err((Failure::Refused, format!("HTTP {status}")));
    }
    let max = settings.max_response_bytes;
    let too_big = || (Failure::Invalid, format!("answer larger than {max} bytes"));
    if response.content_length().is_some_and(|n| n > max as u64) {
        return Err(too_big());
    }
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| (Failure::Unreachable, error_chain(&e)))?
    {
        if body.len() + chunk.len() > max {
            return Err(too_big());
        }
        body.extend_from_slice(&chunk);
    }
    api::parse_pod_list(&body, &settings.node).map_err(|e| (Failure::Invalid, e))
}

/// The source's self-metrics.
struct SourceMetrics {
    ok: Arc<Counter>,
    failed: [Arc<Counter>; 3],
    pods: Arc<Gauge>,
    containers: Arc<Gauge>,
    last_success: Arc<Gauge>,
}

impl SourceMetrics {
    fn new(registry: &Registry, id: &str) -> SourceMetrics {
        let refreshes = |result: &str| {
            registry.counter(
                "phoenix_k8s_metadata_refreshes_total",
                "Lists of the node's pods from the API server, by result (ok, unreachable, refused, invalid).",
                &["processor", "result"],
                &[id, result],
            )
        };
        SourceMetrics {
            ok: refreshes("ok"),
            failed: [Failure::Unreachable, Failure::Refused, Failure::Invalid]
                .map(|f| refreshes(f.label())),
            pods: registry.gauge(
                "phoenix_k8s_metadata_pods",
                "Pods in the published pod metadata snapshot.",
                &["processor"],
                &[id],
            ),
            containers: registry.gauge(
                "phoenix_k8s_metadata_containers",
                "Container ids in the published pod metadata snapshot.",
                &["processor"],
                &[id],
            ),
            last_success: registry.gauge(
                "phoenix_k8s_metadata_last_success_timestamp_seconds",
                "When the pod metadata snapshot was last refreshed (Unix seconds); 0 before the first success.",
                &["processor"],
                &[id],
            ),
        }
    }

    fn failed(&self, failure: Failure) -> &Counter {
        &self.failed[failure as usize]
    }
}

/// A running source: the snapshot and the task that refreshes it. The
/// task stops when the last handle is dropped (a reload that no longer
/// uses this config).
pub struct PodSource {
    metadata: Arc<PodMetadata>,
    task: tokio::task::AbortHandle,
}

impl Drop for PodSource {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl PodSource {
    /// Build the client (reading the CA) and start refreshing. Must run
    /// inside the tokio runtime.
    pub fn start(settings: SourceSettings, registry: &Registry) -> anyhow::Result<PodSource> {
        if let Some(token) = &settings.token_path {
            read_bounded(token, MAX_TOKEN_BYTES).map_err(|e| {
                anyhow::anyhow!(
                    "service-account token {}: {e} (mount one, or set auth_type: none)",
                    token.display()
                )
            })?;
        }
        let client = client(&settings)?;
        let wake = Arc::new(Notify::new());
        let waker = wake.clone();
        let metadata = Arc::new(PodMetadata::new(move || waker.notify_one()));
        let metrics = SourceMetrics::new(registry, &settings.id);
        let task = tokio::spawn(refresh_loop(
            settings,
            client,
            metadata.clone(),
            wake,
            metrics,
        ))
        .abort_handle();
        Ok(PodSource { metadata, task })
    }

    /// The snapshot the processors read.
    pub fn metadata(&self) -> Arc<PodMetadata> {
        self.metadata.clone()
    }
}

async fn refresh_loop(
    settings: SourceSettings,
    client: reqwest::Client,
    metadata: Arc<PodMetadata>,
    wake: Arc<Notify>,
    metrics: SourceMetrics,
) {
    let mut outage: Option<Failure> = None;
    loop {
        match fetch(&client, &settings).await {
            Ok(pods) => {
                let index = PodIndex::build(&pods, &settings.extraction);
                metrics.pods.set(index.pods() as f64);
                metrics.containers.set(index.containers() as f64);
                metadata.publish(index);
                metrics.ok.inc();
                let now = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .unwrap_or_default();
                metrics.last_success.set(now.as_secs_f64());
                if outage.take().is_some() {
                    tracing::info!(processor = %settings.id, pods = pods.len(), "pod metadata refreshed again");
                }
            }
            Err((failure, reason)) => {
                metrics.failed(failure).inc();
                let reason = crate::exporter::otlp::sanitize(&reason, 300);
                if outage.replace(failure).is_none() {
                    tracing::warn!(
                        processor = %settings.id,
                        url = %settings.url(),
                        result = failure.label(),
                        %reason,
                        "cannot list the node's pods; keeping the last pod metadata (logged once until it recovers)"
                    );
                } else {
                    tracing::debug!(processor = %settings.id, result = failure.label(), %reason, "pod metadata refresh failed");
                }
            }
        }
        let done = Instant::now();
        tokio::select! {
            _ = tokio::time::sleep(settings.refresh_interval) => {}
            _ = wake.notified() => {
                tokio::time::sleep_until(done + settings.miss_refresh_min).await;
            }
        }
    }
}

#[cfg(test)]
mod tests;
