//! The OTLP exporters' configs: `otlp_grpc` and `otlp_http`.
//!
//! The keys follow the OpenTelemetry Collector's `otlp` / `otlphttp`
//! exporters so that its users can copy their settings over. Validation
//! reads no files and opens no connection.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use phoenix_processors::Problem;

use crate::duration;

/// How request bodies are compressed on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    None,
    /// The Collector's default too: process metrics repeat the same keys
    /// and command lines, so they compress several-fold.
    #[default]
    Gzip,
}

/// The body format of `otlp_http` (OTLP/HTTP allows both).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Encoding {
    /// `application/x-protobuf`: smaller and cheaper to produce.
    #[default]
    Proto,
    /// `application/json`, the OTLP/JSON mapping.
    Json,
}

/// TLS settings, used when the endpoint is `https://`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    /// PEM file with the CA certificate(s) that sign the server's
    /// certificate. When set it replaces the system roots (as in the
    /// Collector), so a private CA does not also trust the public ones.
    pub ca_file: Option<PathBuf>,
}

/// Retries of failed deliveries (the Collector's `retry_on_failure`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetryConfig {
    pub enabled: bool,
    /// Wait before the first retry.
    #[serde(deserialize_with = "duration::deserialize")]
    pub initial_interval: Duration,
    /// Upper bound of the wait between retries.
    #[serde(deserialize_with = "duration::deserialize")]
    pub max_interval: Duration,
    /// Give a batch up once it has been retried for this long; `0` retries
    /// forever (the queue still bounds memory by dropping the oldest).
    /// Unset: 5 minutes, or forever with a disk queue (see
    /// [`RetryConfig::give_up_after`]).
    #[serde(default, deserialize_with = "duration::deserialize_some")]
    pub max_elapsed_time: Option<Duration>,
    /// Growth of the wait after each failed attempt.
    pub multiplier: f64,
    /// Each wait is drawn from `interval × [1 - f, 1 + f]` so that a fleet of
    /// agents that lost the backend together does not retry in lockstep.
    pub randomization_factor: f64,
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            enabled: true,
            initial_interval: Duration::from_secs(1),
            max_interval: Duration::from_secs(30),
            max_elapsed_time: None,
            multiplier: 1.5,
            randomization_factor: 0.5,
        }
    }
}

impl RetryConfig {
    /// How long a batch is retried before it is given up (`ZERO`: never).
    /// Without a setting: 5 minutes, as in the Collector, with the memory
    /// queue; with a disk queue, forever, because giving up the batch at
    /// the front every few minutes of an outage is the loss the disk queue
    /// is there to prevent (its byte cap decides what goes, oldest first).
    pub fn give_up_after(&self, disk_queue: bool) -> Duration {
        match self.max_elapsed_time {
            Some(d) => d,
            None if disk_queue => Duration::ZERO,
            None => Duration::from_secs(300),
        }
    }
}

/// The bounded queue between the pipeline and the sending task.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QueueConfig {
    /// Batches held at most; when full the oldest is dropped. One batch is
    /// one pipeline interval, so 100 covers ~17 minutes at 10s. With
    /// `storage`, this is only the hand-off in front of the disk.
    pub queue_size: usize,
    /// Keep queued batches on disk (the Collector's `sending_queue.storage`
    /// idea): they outlive the memory queue and an agent restart.
    pub storage: Option<StorageConfig>,
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig {
            queue_size: 100,
            storage: None,
        }
    }
}

/// `sending_queue.storage`: a directory of its own per exporter.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageConfig {
    /// Absolute; created (0700) if missing. No symbolic link anywhere in
    /// the path, nothing under `/proc`, `/sys` or `/dev`.
    #[serde(default)]
    pub directory: PathBuf,
    /// The queue's size on disk at most; the oldest batches go first.
    #[serde(default = "default_storage_megabytes")]
    pub max_megabytes: u64,
}

fn default_storage_megabytes() -> u64 {
    256
}

/// Bounds of `storage.max_megabytes`: below one MiB a single large batch
/// may not fit; above a TiB is a typo (and the byte count must not overflow).
pub const STORAGE_MEGABYTES: std::ops::RangeInclusive<u64> = 1..=1 << 20;

impl StorageConfig {
    pub fn max_bytes(&self) -> u64 {
        self.max_megabytes
            .clamp(*STORAGE_MEGABYTES.start(), *STORAGE_MEGABYTES.end())
            << 20
    }

    fn validate(&self, errors: &mut Vec<Problem>) {
        let dir = &self.directory;
        let field = "sending_queue.storage.directory";
        if dir.as_os_str().is_empty() {
            errors.push(Problem::new(field, "must be set"));
        } else if !dir.is_absolute()
            || dir
                .components()
                .any(|c| matches!(c, std::path::Component::ParentDir))
        {
            errors.push(Problem::sentence(
                field,
                format!("{dir:?}: must be an absolute path without `..`"),
            ));
        } else if let Some(top) = crate::exporter::file::REFUSED_DIRS
            .iter()
            .find(|top| dir.starts_with(top))
        {
            errors.push(Problem::new(field, format!("must not be under {top}")));
        }
        if !STORAGE_MEGABYTES.contains(&self.max_megabytes) {
            errors.push(Problem::new(
                "sending_queue.storage.max_megabytes",
                format!(
                    "must be between {} and {}",
                    STORAGE_MEGABYTES.start(),
                    STORAGE_MEGABYTES.end()
                ),
            ));
        }
    }
}

/// `exporters: otlp_grpc[/name]`.
#[derive(Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OtlpGrpcConfig {
    /// `http://host:4317` (plaintext) or `https://host:4317` (TLS).
    pub endpoint: String,
    pub compression: Compression,
    /// Sent as request metadata with every export (e.g. vendor API keys).
    pub headers: BTreeMap<String, String>,
    /// Per attempt, connecting included.
    #[serde(deserialize_with = "duration::deserialize")]
    pub timeout: Duration,
    pub tls: TlsConfig,
    /// `retry` is accepted too; `retry_on_failure` is the Collector's key.
    #[serde(alias = "retry")]
    pub retry_on_failure: RetryConfig,
    pub sending_queue: QueueConfig,
}

impl Default for OtlpGrpcConfig {
    fn default() -> Self {
        OtlpGrpcConfig {
            endpoint: String::new(),
            compression: Compression::default(),
            headers: BTreeMap::new(),
            timeout: DEFAULT_TIMEOUT,
            tls: TlsConfig::default(),
            retry_on_failure: RetryConfig::default(),
            sending_queue: QueueConfig::default(),
        }
    }
}

impl OtlpGrpcConfig {
    /// Every problem with this config (empty when valid). Reads no files:
    /// whether `tls.ca_file` is readable is checked when building.
    pub fn validate(&self) -> Vec<Problem> {
        let mut errors = Vec::new();
        validate_grpc_endpoint(&self.endpoint, &mut errors);
        validate_grpc_headers(&self.headers, &mut errors);
        validate_common(
            &self.endpoint,
            self.timeout,
            &self.tls,
            &self.retry_on_failure,
            &self.sending_queue,
            &mut errors,
        );
        errors
    }
}

/// `exporters: otlp_http[/name]`.
#[derive(Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OtlpHttpConfig {
    /// Base URL (`http://host:4318`); requests go to `<endpoint>/v1/metrics`
    /// unless it already ends with `/v1/metrics`.
    pub endpoint: String,
    pub encoding: Encoding,
    pub compression: Compression,
    /// Sent as HTTP headers with every export (e.g. vendor API keys).
    pub headers: BTreeMap<String, String>,
    /// Per attempt, connecting and reading the response included.
    #[serde(deserialize_with = "duration::deserialize")]
    pub timeout: Duration,
    pub tls: TlsConfig,
    /// `retry` is accepted too; `retry_on_failure` is the Collector's key.
    #[serde(alias = "retry")]
    pub retry_on_failure: RetryConfig,
    pub sending_queue: QueueConfig,
}

impl Default for OtlpHttpConfig {
    fn default() -> Self {
        OtlpHttpConfig {
            endpoint: String::new(),
            encoding: Encoding::default(),
            compression: Compression::default(),
            headers: BTreeMap::new(),
            timeout: DEFAULT_TIMEOUT,
            tls: TlsConfig::default(),
            retry_on_failure: RetryConfig::default(),
            sending_queue: QueueConfig::default(),
        }
    }
}

impl OtlpHttpConfig {
    /// Every problem with this config (empty when valid). Reads no files:
    /// whether `tls.ca_file` is readable is checked when building.
    pub fn validate(&self) -> Vec<Problem> {
        let mut errors = Vec::new();
        validate_http_endpoint(&self.endpoint, &mut errors);
        validate_http_headers(&self.headers, &mut errors);
        validate_common(
            &self.endpoint,
            self.timeout,
            &self.tls,
            &self.retry_on_failure,
            &self.sending_queue,
            &mut errors,
        );
        errors
    }
}

const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// Checks shared by both exporters (the endpoint itself is checked by each,
/// since gRPC and HTTP accept different shapes).
fn validate_common(
    endpoint: &str,
    timeout: Duration,
    tls: &TlsConfig,
    retry: &RetryConfig,
    queue: &QueueConfig,
    errors: &mut Vec<Problem>,
) {
    if timeout.is_zero() {
        errors.push(Problem::new("timeout", "must be greater than 0"));
    }
    if tls.ca_file.is_some() && !endpoint.trim().starts_with("https://") {
        // Silently sending in plaintext when the user went to the trouble of
        // naming a CA is the surprise we want to avoid.
        errors.push(Problem::new(
            "tls.ca_file",
            "set, but the endpoint is not https:// (TLS is used only for https://)",
        ));
    }
    if tls
        .ca_file
        .as_ref()
        .is_some_and(|p| p.as_os_str().is_empty())
    {
        errors.push(Problem::new("tls.ca_file", "must not be empty"));
    }
    if queue.queue_size == 0 {
        errors.push(Problem::new(
            "sending_queue.queue_size",
            "must be at least 1",
        ));
    }
    if let Some(storage) = &queue.storage {
        storage.validate(errors);
    }
    if retry.enabled {
        if retry.initial_interval.is_zero() {
            errors.push(Problem::new(
                "retry_on_failure.initial_interval",
                "must be greater than 0",
            ));
        }
        if retry.max_interval < retry.initial_interval {
            errors.push(Problem::new(
                "retry_on_failure.max_interval",
                format!(
                    "{:?} is less than initial_interval {:?}",
                    retry.max_interval, retry.initial_interval
                ),
            ));
        }
        if !(retry.multiplier.is_finite() && retry.multiplier >= 1.0) {
            errors.push(Problem::new(
                "retry_on_failure.multiplier",
                format!("{} must be a number >= 1", retry.multiplier),
            ));
        }
        if !(0.0..=1.0).contains(&retry.randomization_factor) {
            errors.push(Problem::new(
                "retry_on_failure.randomization_factor",
                format!("{} must be between 0 and 1", retry.randomization_factor),
            ));
        }
    }
}

/// Header names that the transports set themselves or that HTTP/2 forbids
/// (a request carrying them fails on every attempt, so say so up front).
const RESERVED_HEADERS: &[&str] = &[
    "connection",
    "content-encoding",
    "content-length",
    "content-type",
    "host",
    "keep-alive",
    "proxy-connection",
    "te",
    "transfer-encoding",
    "upgrade",
];

/// Checks every header name against `valid_name` and every value against
/// `valid_value`, and rejects reserved and duplicate (case-insensitive)
/// names. Values are never echoed: they are usually secrets.
fn check_headers(
    headers: &BTreeMap<String, String>,
    extra_reserved: impl Fn(&str) -> Option<&'static str>,
    valid_name: impl Fn(&str) -> bool,
    valid_value: impl Fn(&str) -> bool,
    errors: &mut Vec<Problem>,
) {
    let mut seen = std::collections::BTreeSet::new();
    for (name, value) in headers {
        let lower = name.to_ascii_lowercase();
        if !valid_name(name) {
            errors.push(Problem::new(
                "headers",
                format!(
                    "{name:?} is not a valid header name (letters, digits and -_.!#$%&'*+^`|~ only)"
                ),
            ));
            continue;
        }
        if RESERVED_HEADERS.contains(&lower.as_str()) {
            errors.push(Problem::new(
                "headers",
                format!("{name:?} is set by the exporter itself and cannot be overridden"),
            ));
        } else if let Some(why) = extra_reserved(&lower) {
            errors.push(Problem::new("headers", format!("{name:?} {why}")));
        }
        if !seen.insert(lower) {
            errors.push(Problem::new(
                "headers",
                format!("{name:?} is given twice (header names are case-insensitive)"),
            ));
        }
        if !valid_value(value) {
            errors.push(Problem::new(
"headers",
format!("the value of {name:?} is not a valid header value (printable ASCII only, no line breaks)"),
));
        }
    }
}

fn validate_grpc_endpoint(endpoint: &str, errors: &mut Vec<Problem>) {
    let e = endpoint.trim();
    if e.is_empty() {
        errors.push(Problem::new(
            "endpoint",
            "must be set, e.g. http://localhost:4317 (https:// for TLS)",
        ));
        return;
    }
    let uri: http::Uri = match e.parse() {
        Ok(uri) => uri,
        Err(err) => {
            errors.push(Problem::new(
                "endpoint",
                format!("{e:?} is not a valid URL: {err}"),
            ));
            return;
        }
    };
    match uri.scheme_str() {
        Some("http" | "https") => {}
        None => errors.push(Problem::new(
            "endpoint",
            format!("{e:?} has no scheme: write http://{e} (plaintext) or https://{e} (TLS)"),
        )),
        Some(other) => errors.push(Problem::new(
            "endpoint",
            format!("scheme {other:?} is not supported (use http:// or https://)"),
        )),
    }
    if uri.host().is_none_or(str::is_empty) {
        errors.push(Problem::new("endpoint", format!("{e:?} has no host")));
    }
    let path = uri.path();
    if (path != "/" && !path.is_empty()) || uri.query().is_some() {
        errors.push(Problem::new(
            "endpoint",
            format!(
                "{e:?} has a path; a gRPC endpoint is host:port only (the service path is fixed)"
            ),
        ));
    }
}

fn validate_grpc_headers(headers: &BTreeMap<String, String>, errors: &mut Vec<Problem>) {
    check_headers(
        headers,
        |lower| {
            if lower.starts_with("grpc-") {
                Some("is reserved by gRPC")
            } else if lower.ends_with("-bin") {
                Some("is binary metadata (-bin suffix), which is not supported")
            } else {
                None
            }
        },
        |name| http::HeaderName::from_bytes(name.as_bytes()).is_ok(),
        |value| http::HeaderValue::from_str(value).is_ok(),
        errors,
    );
}

fn validate_http_endpoint(endpoint: &str, errors: &mut Vec<Problem>) {
    let e = endpoint.trim();
    if e.is_empty() {
        errors.push(Problem::new(
            "endpoint",
            "must be set, e.g. http://localhost:4318 (https:// for TLS)",
        ));
        return;
    }
    if !e.contains("://") {
        errors.push(Problem::new(
            "endpoint",
            format!("{e:?} has no scheme: write http://{e} (plaintext) or https://{e} (TLS)"),
        ));
        return;
    }
    let url = match url::Url::parse(e) {
        Ok(url) => url,
        Err(err) => {
            errors.push(Problem::new(
                "endpoint",
                format!("{e:?} is not a valid URL: {err}"),
            ));
            return;
        }
    };
    match url.scheme() {
        "http" | "https" => {}
        other => errors.push(Problem::new(
            "endpoint",
            format!("scheme {other:?} is not supported (use http:// or https://)"),
        )),
    }
    if url.host_str().is_none_or(str::is_empty) {
        errors.push(Problem::new("endpoint", format!("{e:?} has no host")));
    }
    if url.query().is_some() || url.fragment().is_some() {
        errors.push(Problem::new(
            "endpoint",
            format!("{e:?} has a query or fragment; give the base URL (/v1/metrics is appended)"),
        ));
    }
}

fn validate_http_headers(headers: &BTreeMap<String, String>, errors: &mut Vec<Problem>) {
    check_headers(
        headers,
        |_| None,
        |name| http::HeaderName::from_bytes(name.as_bytes()).is_ok(),
        |value| http::HeaderValue::from_str(value).is_ok(),
        errors,
    );
}

/// Prints header names but not their values, which are typically API keys
/// and must not end up in logs through a `{:?}` of the config.
struct RedactedHeaders<'a>(&'a BTreeMap<String, String>);

impl fmt::Debug for RedactedHeaders<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.0.keys().map(|k| (k, "<redacted>")))
            .finish()
    }
}

impl fmt::Debug for OtlpGrpcConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OtlpGrpcConfig")
            .field("endpoint", &self.endpoint)
            .field("compression", &self.compression)
            .field("headers", &RedactedHeaders(&self.headers))
            .field("timeout", &self.timeout)
            .field("tls", &self.tls)
            .field("retry_on_failure", &self.retry_on_failure)
            .field("sending_queue", &self.sending_queue)
            .finish()
    }
}

impl fmt::Debug for OtlpHttpConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OtlpHttpConfig")
            .field("endpoint", &self.endpoint)
            .field("encoding", &self.encoding)
            .field("compression", &self.compression)
            .field("headers", &RedactedHeaders(&self.headers))
            .field("timeout", &self.timeout)
            .field("tls", &self.tls)
            .field("retry_on_failure", &self.retry_on_failure)
            .field("sending_queue", &self.sending_queue)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grpc(yaml: &str) -> Result<OtlpGrpcConfig, String> {
        serde_norway::from_str(yaml).map_err(|e| e.to_string())
    }

    fn http(yaml: &str) -> Result<OtlpHttpConfig, String> {
        serde_norway::from_str(yaml).map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_match_the_collector() {
        let c = grpc("endpoint: http://localhost:4317").unwrap();
        assert_eq!(c.compression, Compression::Gzip);
        assert_eq!(c.timeout, Duration::from_secs(10));
        assert!(c.retry_on_failure.enabled);
        assert_eq!(c.retry_on_failure.initial_interval, Duration::from_secs(1));
        assert_eq!(c.retry_on_failure.max_interval, Duration::from_secs(30));
        assert_eq!(c.retry_on_failure.max_elapsed_time, None);
        assert_eq!(
            c.retry_on_failure.give_up_after(false),
            Duration::from_secs(300)
        );
        // With a disk queue the byte cap decides, not the clock.
        assert_eq!(c.retry_on_failure.give_up_after(true), Duration::ZERO);
        assert_eq!(c.sending_queue.queue_size, 100);
        assert!(c.validate().is_empty(), "{:?}", c.validate());
        let h = http("endpoint: http://localhost:4318").unwrap();
        assert_eq!(h.encoding, Encoding::Proto);
        assert!(h.validate().is_empty(), "{:?}", h.validate());
    }

    #[test]
    fn parses_every_field() {
        let c = http(
            "endpoint: https://otlp.example.com\n\
             encoding: json\ncompression: none\ntimeout: 3s\n\
             headers: { x-api-key: secret }\n\
             tls: { ca_file: /etc/ca.pem }\n\
             retry: { enabled: false, initial_interval: 5ms, max_interval: 1s, max_elapsed_time: 0s, multiplier: 2 }\n\
             sending_queue: { queue_size: 7 }",
        )
        .unwrap();
        assert_eq!(c.encoding, Encoding::Json);
        assert_eq!(c.compression, Compression::None);
        assert_eq!(c.timeout, Duration::from_secs(3));
        assert_eq!(c.headers["x-api-key"], "secret");
        assert!(!c.retry_on_failure.enabled);
        assert_eq!(c.retry_on_failure.multiplier, 2.0);
        // Said explicitly, it holds with a disk queue too.
        assert_eq!(c.retry_on_failure.give_up_after(true), Duration::ZERO);
        let minute =
            http("endpoint: http://localhost:4318\nretry: { max_elapsed_time: 1m }").unwrap();
        assert_eq!(
            minute.retry_on_failure.give_up_after(true),
            Duration::from_secs(60)
        );
        assert_eq!(c.sending_queue.queue_size, 7);
        assert!(c.validate().is_empty(), "{:?}", c.validate());
        assert!(
            !format!("{c:?}").contains("secret"),
            "header values are redacted"
        );
    }

    #[test]
    fn storage_needs_a_safe_directory_and_a_sane_cap() {
        let problems = |yaml: &str| {
            let c = grpc(&format!("endpoint: http://x:4317\nsending_queue: {yaml}")).unwrap();
            c.validate()
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
        };
        let ok = problems("{ storage: { directory: /var/lib/phoenix/queue/a } }");
        assert!(ok.is_empty(), "{ok:?}");
        let c = grpc("endpoint: http://x:4317\nsending_queue: { storage: { directory: /q, max_megabytes: 2 } }")
            .unwrap();
        assert_eq!(c.sending_queue.storage.unwrap().max_bytes(), 2 << 20);
        for (yaml, needle) in [
            (
                "{ storage: {} }",
                "sending_queue.storage.directory: must be set",
            ),
            (
                "{ storage: { directory: rel/q } }",
                "must be an absolute path",
            ),
            (
                "{ storage: { directory: /var/../proc/q } }",
                "must be an absolute path",
            ),
            (
                "{ storage: { directory: /proc/q } }",
                "must not be under /proc",
            ),
            (
                "{ storage: { directory: /dev/shm/q } }",
                "must not be under /dev",
            ),
            (
                "{ storage: { directory: /q, max_megabytes: 0 } }",
                "sending_queue.storage.max_megabytes: must be between 1 and",
            ),
        ] {
            let got = problems(yaml);
            assert!(got.iter().any(|p| p.contains(needle)), "{yaml}: {got:?}");
        }
        assert!(grpc("endpoint: http://x:4317\nsending_queue: { storage: { dir: /q } }").is_err());
    }

    #[test]
    fn unknown_keys_are_rejected() {
        assert!(grpc("endpoint: http://x:4317\nendpont: y").is_err());
        assert!(grpc("endpoint: http://x:4317\ncompression: zstd").is_err());
        assert!(http("endpoint: http://x\nsending_queue: { enabled: true }").is_err());
    }

    #[test]
    fn validate_reports_every_problem() {
        let c = OtlpGrpcConfig {
            endpoint: String::new(),
            timeout: Duration::ZERO,
            sending_queue: QueueConfig {
                queue_size: 0,
                storage: None,
            },
            headers: BTreeMap::from([
                ("bad name".to_string(), "v".to_string()),
                ("x-ok".to_string(), "sekret\nvalue".to_string()),
                ("grpc-timeout".to_string(), "1".to_string()),
            ]),
            retry_on_failure: RetryConfig {
                multiplier: 0.5,
                max_interval: Duration::from_millis(1),
                ..RetryConfig::default()
            },
            ..OtlpGrpcConfig::default()
        };
        let errors = c.validate();
        for needle in [
            "endpoint",
            "timeout",
            "queue_size",
            "\"bad name\"",
            "value of \"x-ok\"",
            "grpc-timeout",
            "multiplier",
            "max_interval",
        ] {
            assert!(
                errors.iter().any(|e| e.to_string().contains(needle)),
                "{needle}: {errors:#?}"
            );
        }
        assert!(
            !errors.iter().any(|e| e.to_string().contains("sekret")),
            "values not echoed"
        );
    }

    #[test]
    fn grpc_endpoint_shapes() {
        let check = |e: &str| {
            let mut errors = Vec::new();
            validate_grpc_endpoint(e, &mut errors);
            errors
        };
        assert!(check("http://localhost:4317").is_empty());
        assert!(check("https://otlp.example.com").is_empty());
        assert!(check("localhost:4317")[0].message.contains("no scheme"));
        assert!(check("ftp://x:1")[0].message.contains("ftp"));
        assert!(
            check("http://x:4317/v1/metrics")[0]
                .message
                .contains("path")
        );
        assert!(check("  ")[0].message.contains("must be set"));
    }

    #[test]
    fn http_endpoint_shapes() {
        let check = |e: &str| {
            let mut errors = Vec::new();
            validate_http_endpoint(e, &mut errors);
            errors
        };
        assert!(check("http://localhost:4318").is_empty());
        assert!(check("https://otlp.example.com/otlp").is_empty());
        assert!(check("localhost:4318")[0].message.contains("no scheme"));
        assert!(check("ftp://c/")[0].message.contains("ftp"));
        assert!(check("otlp.example.com")[0].message.contains("no scheme"));
        assert!(check("http://c:4318/?a=b")[0].message.contains("query"));
        assert!(check("")[0].message.contains("must be set"));
    }

    #[test]
    fn ca_file_requires_https() {
        let c = http("endpoint: http://x:4318\ntls: { ca_file: ca.pem }").unwrap();
        assert!(c.validate().iter().any(|e| e.field == "tls.ca_file"));
    }
}
