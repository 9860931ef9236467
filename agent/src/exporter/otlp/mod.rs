//! OTLP exporters: gRPC (`otlp_grpc`) and HTTP (`otlp_http`).
//!
//! Both share one shape, borrowed from the OpenTelemetry Collector's
//! exporterhelper: `submit` pushes the batch into a bounded queue
//! ([`queue::BatchQueue`], the oldest batch goes when it is full) and a
//! sending task ([`sender`]) encodes, sends and retries with exponential
//! backoff ([`retry`]). Only the wire differs ([`grpc`], [`http`]).
//! With `sending_queue.storage` the memory queue hands batches to a disk
//! queue ([`disk`], driven by [`durable`]) that outlives restarts.
//!
//! Their configs (keys following the Collector's `otlp` / `otlphttp`
//! exporters) are in `phoenix_config::exporter::otlp`.

mod disk;
mod durable;
pub mod encode;
pub mod grpc;
pub mod http;
mod queue;
pub(crate) mod retry;
mod sender;

/// Read and sanity-check a CA file at build time, so that a typo fails the
/// config instead of every later TLS handshake.
pub(crate) fn read_ca_file(path: &std::path::Path) -> anyhow::Result<Vec<u8>> {
    let pem = std::fs::read(path)
        .map_err(|e| anyhow::anyhow!("tls.ca_file {}: cannot read: {e}", path.display()))?;
    // rustls skips what it cannot parse, so a file without any certificate
    // would otherwise surface only as "unknown issuer" on every connect.
    if !pem
        .windows(b"-----BEGIN CERTIFICATE-----".len())
        .any(|w| w == b"-----BEGIN CERTIFICATE-----")
    {
        anyhow::bail!(
            "tls.ca_file {}: no PEM certificate (-----BEGIN CERTIFICATE-----) in it",
            path.display()
        );
    }
    Ok(pem)
}

/// An error and its sources on one line: the top-level message of
/// transport errors ("error sending request") hides the useful part.
pub(crate) fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        // Wrappers often repeat their source's message.
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

/// Server-provided text made safe for a log line: control characters
/// replaced (no forged log lines), length capped (no log flooding).
pub(crate) fn sanitize(text: &str, max_chars: usize) -> String {
    let mut out: String = text
        .chars()
        .take(max_chars)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if text.chars().nth(max_chars).is_some() {
        out.push('…');
    }
    out
}

/// The few `google.rpc` messages the exporters read: the error body of
/// OTLP/HTTP and gRPC's `grpc-status-details-bin` are a `google.rpc.Status`,
/// whose details may hold a `RetryInfo`. Declared here (four small
/// messages) rather than pulling in a crate of generated types.
mod google_rpc {
    use std::time::Duration;

    #[derive(Clone, PartialEq, prost::Message)]
    pub(super) struct Status {
        #[prost(int32, tag = "1")]
        pub code: i32,
        #[prost(string, tag = "2")]
        pub message: String,
        #[prost(message, repeated, tag = "3")]
        pub details: Vec<Any>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub(super) struct Any {
        #[prost(string, tag = "1")]
        pub type_url: String,
        #[prost(bytes = "vec", tag = "2")]
        pub value: Vec<u8>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub(super) struct RetryInfo {
        #[prost(message, optional, tag = "1")]
        pub retry_delay: Option<ProtoDuration>,
    }

    /// `google.protobuf.Duration`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub(super) struct ProtoDuration {
        #[prost(int64, tag = "1")]
        pub seconds: i64,
        #[prost(int32, tag = "2")]
        pub nanos: i32,
    }

    impl ProtoDuration {
        /// Negative or malformed delays count as "retry now".
        pub(super) fn to_duration(&self) -> Duration {
            if self.seconds < 0 {
                return Duration::ZERO;
            }
            Duration::new(self.seconds as u64, self.nanos.clamp(0, 999_999_999) as u32)
        }
    }

    /// The `RetryInfo` delay in a serialized `google.rpc.Status`, if any.
    pub(super) fn retry_delay(status_bytes: &[u8]) -> Option<Duration> {
        use prost::Message as _;
        let status = Status::decode(status_bytes).ok()?;
        status
            .details
            .iter()
            .filter(|d| d.type_url.ends_with("/google.rpc.RetryInfo"))
            .find_map(|d| RetryInfo::decode(d.value.as_slice()).ok()?.retry_delay)
            .map(|d| d.to_duration())
    }
}
