//! OTLP/HTTP: `POST <endpoint>/v1/metrics` with a protobuf or JSON body.

use std::io::Write as _;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use phoenix_processors::Problem;
use prost::Message;
use reqwest::header::{CONTENT_ENCODING, CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};

use super::retry::SendError;
use super::sender::{self, Accepted, Transport};
use super::{error_chain, google_rpc, sanitize};
use crate::exporter::{BoxFuture, BuildContext, Exporter, ExporterMetrics};
use phoenix_config::exporter::otlp::{Compression, Encoding, OtlpHttpConfig};
use phoenix_telemetry::registry::Counter;

/// The OTLP/HTTP path for metrics.
const METRICS_PATH: &str = "/v1/metrics";

/// Response bodies read at most: an export response is a few bytes, and a
/// misbehaving server must not make the agent buffer megabytes.
const MAX_RESPONSE_BYTES: usize = 64 * 1024;

pub fn build(c: &OtlpHttpConfig, ctx: &BuildContext) -> anyhow::Result<Arc<dyn Exporter>> {
    // Configs normally arrive validated; building from an unvalidated one
    // must still fail cleanly rather than half-work.
    let errors = c.validate();
    if !errors.is_empty() {
        anyhow::bail!("{}: {}", ctx.id, Problem::join(&errors));
    }
    let runtime = sender::runtime(ctx)?;
    let url = metrics_url(c.endpoint.trim()).map_err(|e| anyhow::anyhow!("{}: {e}", ctx.id))?;
    let mut client = reqwest::Client::builder()
        .timeout(c.timeout)
        .connect_timeout(c.timeout)
        .user_agent(concat!("phoenix-agent/", env!("CARGO_PKG_VERSION")))
        // A 301/302 would turn the POST into a body-less GET; better to
        // report the new location than to lose the data in a detour.
        .redirect(reqwest::redirect::Policy::none());
    if !url.scheme().eq_ignore_ascii_case("https") {
        // Plaintext (and redirects are off): skip reading the system's
        // root store, which reqwest would otherwise do on every build.
        client = client.tls_built_in_root_certs(false);
    } else if let Some(path) = &c.tls.ca_file {
        let pem = super::read_ca_file(path).map_err(|e| anyhow::anyhow!("{}: {e}", ctx.id))?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
            anyhow::anyhow!(
                "{}: tls.ca_file {}: {}",
                ctx.id,
                path.display(),
                error_chain(&e)
            )
        })?;
        // Same as the gRPC exporter: the given CA replaces the system roots.
        client = client.tls_built_in_root_certs(false);
        for cert in certs {
            client = client.add_root_certificate(cert);
        }
    }
    let client = client
        .build()
        .map_err(|e| anyhow::anyhow!("{}: HTTP client: {}", ctx.id, error_chain(&e)))?;
    let metrics = ExporterMetrics::new(ctx);
    let transport = HttpTransport {
        client,
        url,
        headers: request_headers(c).map_err(|e| anyhow::anyhow!("{}: {e}", ctx.id))?,
        encoding: c.encoding,
        compression: c.compression,
        bytes: metrics.bytes.clone(),
    };
    sender::start(
        &runtime,
        transport,
        ctx,
        "http",
        &c.sending_queue,
        c.retry_on_failure.clone(),
    )
}

struct HttpTransport {
    client: reqwest::Client,
    url: reqwest::Url,
    headers: HeaderMap,
    encoding: Encoding,
    compression: Compression,
    bytes: Arc<Counter>,
}

impl Transport for HttpTransport {
    /// The request body, encoded and compressed once; retries re-send it.
    type Payload = Bytes;

    fn prepare(&self, request: Vec<u8>) -> Result<Bytes, String> {
        let body = match self.encoding {
            Encoding::Proto => request,
            // opentelemetry-proto's serde derives implement the OTLP/JSON
            // mapping (camelCase, 64-bit integers as strings, enums as ints).
            // Decoding the request again costs about what building it from
            // the batch did, and keeps one input for fresh and replayed
            // batches alike.
            Encoding::Json => {
                let request = ExportMetricsServiceRequest::decode(request.as_slice())
                    .map_err(|e| format!("not an OTLP request: {e}"))?;
                serde_json::to_vec(&request).map_err(|e| e.to_string())?
            }
        };
        Ok(match self.compression {
            Compression::None => body.into(),
            Compression::Gzip => gzip(&body).map_err(|e| e.to_string())?.into(),
        })
    }

    fn send<'a>(&'a self, payload: &'a Bytes) -> BoxFuture<'a, Result<Accepted, SendError>> {
        Box::pin(async move {
            let response = self
                .client
                .post(self.url.clone())
                .headers(self.headers.clone())
                .body(payload.clone())
                .send()
                .await
                .map_err(|e| classify_transport_error(&e))?;
            // A response means the whole body went out.
            self.bytes.add(payload.len() as u64);
            let status = response.status();
            let retry_after = parse_retry_after(response.headers());
            let location = response
                .headers()
                .get(reqwest::header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .map(|v| sanitize(v, 256));
            let content_type = response
                .headers()
                .get(CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_ascii_lowercase();
            let body = read_limited(response, MAX_RESPONSE_BYTES).await;
            if status.is_success() {
                return Ok(parse_success(&body, &content_type, self.encoding));
            }
            let mut reason = format!("HTTP {status}");
            if let Some(message) = error_message(&body, &content_type) {
                reason.push_str(": ");
                reason.push_str(&message);
            }
            if let (true, Some(location)) = (status.is_redirection(), location) {
                reason.push_str(&format!(
                    " (redirected to {location}; set the endpoint to it)"
                ));
            }
            Err(match status.as_u16() {
                // The OTLP/HTTP spec's retryable statuses.
                429 | 502 | 503 | 504 => SendError {
                    retryable: true,
                    retry_after,
                    reason,
                },
                _ => SendError::permanent(reason),
            })
        })
    }
}

/// No response at all: connection refused or reset, DNS, TLS, timeout.
/// All of these may pass, so retry; only a request we could not even build
/// (never expected) is final.
fn classify_transport_error(e: &reqwest::Error) -> SendError {
    let reason = if e.is_timeout() {
        format!("no response within the timeout: {}", error_chain(e))
    } else {
        format!("request failed: {}", error_chain(e))
    };
    if e.is_builder() {
        SendError::permanent(reason)
    } else {
        SendError::retryable(reason)
    }
}

/// `Retry-After: <seconds>`. The HTTP-date form is rare for throttling
/// APIs and is treated as absent (the backoff applies instead).
pub(crate) fn parse_retry_after(headers: &HeaderMap) -> Option<Duration> {
    let text = headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    text.parse::<u64>().ok().map(Duration::from_secs)
}

pub(crate) async fn read_limited(mut response: reqwest::Response, limit: usize) -> Vec<u8> {
    let mut out = Vec::new();
    // A body that fails half-way is only used for messages: keep what came.
    while let Ok(Some(chunk)) = response.chunk().await {
        let room = limit - out.len();
        out.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if out.len() >= limit {
            break;
        }
    }
    out
}

/// The partial-success part of a 2xx response. The data was accepted in
/// any case, so a body that cannot be read only loses these details.
fn parse_success(body: &[u8], content_type: &str, encoding: Encoding) -> Accepted {
    if body.is_empty() {
        return Accepted::default();
    }
    let json = content_type.contains("json")
        || (!content_type.contains("protobuf") && encoding == Encoding::Json);
    if json {
        // Read by hand rather than with the serde derive: the OTLP/JSON
        // mapping writes int64 (rejectedDataPoints) as a string, which the
        // derive does not accept.
        let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) else {
            return Accepted::default();
        };
        let Some(partial) = v.get("partialSuccess").or_else(|| v.get("partial_success")) else {
            return Accepted::default();
        };
        let rejected = partial
            .get("rejectedDataPoints")
            .or_else(|| partial.get("rejected_data_points"));
        let rejected_points = match rejected {
            Some(serde_json::Value::Number(n)) => n.as_i64().unwrap_or(0),
            Some(serde_json::Value::String(s)) => s.trim().parse().unwrap_or(0),
            _ => 0,
        };
        let message = partial
            .get("errorMessage")
            .or_else(|| partial.get("error_message"))
            .and_then(|m| m.as_str())
            .unwrap_or("");
        Accepted {
            rejected_points,
            message: sanitize(message, 512),
        }
    } else {
        let partial = ExportMetricsServiceResponse::decode(body)
            .ok()
            .and_then(|r| r.partial_success)
            .unwrap_or_default();
        Accepted {
            rejected_points: partial.rejected_data_points,
            message: sanitize(&partial.error_message, 512),
        }
    }
}

/// The server's explanation of a failure: OTLP says the body is a
/// `google.rpc.Status` (protobuf or JSON); proxies send text or HTML.
fn error_message(body: &[u8], content_type: &str) -> Option<String> {
    if body.is_empty() {
        return None;
    }
    let message = if content_type.contains("protobuf") {
        use prost::Message as _;
        google_rpc::Status::decode(body).ok()?.message
    } else if content_type.contains("json") {
        let v: serde_json::Value = serde_json::from_slice(body).ok()?;
        match v.get("message").and_then(|m| m.as_str()) {
            Some(m) => m.to_string(),
            None => String::from_utf8_lossy(body).into_owned(),
        }
    } else {
        String::from_utf8_lossy(body).into_owned()
    };
    let message = sanitize(message.trim(), 256);
    (!message.is_empty()).then_some(message)
}

fn gzip(body: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut encoder = flate2::write::GzEncoder::new(
        Vec::with_capacity(body.len() / 4 + 64),
        flate2::Compression::default(),
    );
    encoder.write_all(body)?;
    encoder.finish()
}

/// `<endpoint>/v1/metrics`, unless the endpoint already names it.
fn metrics_url(endpoint: &str) -> Result<reqwest::Url, String> {
    let mut url =
        reqwest::Url::parse(endpoint).map_err(|e| format!("endpoint {endpoint:?}: {e}"))?;
    let path = url.path().trim_end_matches('/').to_string();
    if !path.ends_with(METRICS_PATH) {
        url.set_path(&format!("{path}{METRICS_PATH}"));
    }
    Ok(url)
}

fn request_headers(c: &OtlpHttpConfig) -> Result<HeaderMap, String> {
    let mut headers = HeaderMap::with_capacity(c.headers.len() + 2);
    for (name, value) in &c.headers {
        let name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| format!("headers: {name:?} is not a valid header name"))?;
        let mut value = HeaderValue::from_str(value)
            .map_err(|_| format!("headers: the value of {name:?} is not a valid header value"))?;
        // Keeps API keys out of debug output of the request.
        value.set_sensitive(true);
        headers.insert(name, value);
    }
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static(match c.encoding {
            Encoding::Proto => "application/x-protobuf",
            Encoding::Json => "application/json",
        }),
    );
    if c.compression == Compression::Gzip {
        headers.insert(CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    }
    Ok(headers)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_path_is_appended_once() {
        let url = |e: &str| metrics_url(e).unwrap().to_string();
        assert_eq!(url("http://c:4318"), "http://c:4318/v1/metrics");
        assert_eq!(url("http://c:4318/"), "http://c:4318/v1/metrics");
        assert_eq!(url("https://c/otlp/"), "https://c/otlp/v1/metrics");
        assert_eq!(url("http://c:4318/v1/metrics"), "http://c:4318/v1/metrics");
    }

    #[test]
    fn retry_after_seconds_only() {
        let mut h = HeaderMap::new();
        h.insert(
            reqwest::header::RETRY_AFTER,
            HeaderValue::from_static(" 7 "),
        );
        assert_eq!(parse_retry_after(&h), Some(Duration::from_secs(7)));
        h.insert(
            reqwest::header::RETRY_AFTER,
            HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT"),
        );
        assert_eq!(parse_retry_after(&h), None);
    }

    #[test]
    fn partial_success_in_json_accepts_string_and_number_counts() {
        let a = parse_success(
            br#"{"partialSuccess":{"rejectedDataPoints":"5","errorMessage":"too old"}}"#,
            "application/json",
            Encoding::Json,
        );
        assert_eq!(a.rejected_points, 5);
        assert_eq!(a.message, "too old");
        let b = parse_success(
            br#"{"partialSuccess":{"rejectedDataPoints":3}}"#,
            "application/json",
            Encoding::Json,
        );
        assert_eq!(b.rejected_points, 3);
        assert_eq!(
            parse_success(b"not json", "application/json", Encoding::Json),
            Accepted::default()
        );
        assert_eq!(
            parse_success(b"\xff\xff", "application/x-protobuf", Encoding::Proto),
            Accepted::default()
        );
    }

    #[test]
    fn error_bodies_become_short_clean_messages() {
        let status = google_rpc::Status {
            code: 3,
            message: "bad metric".into(),
            details: vec![],
        };
        assert_eq!(
            error_message(&status.encode_to_vec(), "application/x-protobuf").as_deref(),
            Some("bad metric")
        );
        assert_eq!(
            error_message(br#"{"code":3,"message":"bad"}"#, "application/json").as_deref(),
            Some("bad")
        );
        let html = format!("<html>\n{}</html>", "x".repeat(10_000));
        let m = error_message(html.as_bytes(), "text/html").unwrap();
        assert!(!m.contains('\n') && m.chars().count() <= 257, "{m}");
    }
}
