//! OTLP/gRPC: `MetricsService/Export` over a tonic channel.
//!
//! The channel connects lazily, so building never fails because the
//! collector is down; the first export attempt connects and the retry loop
//! covers an endpoint that is not there yet.

use std::collections::BTreeMap;
use std::error::Error as _;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{BufMut, Bytes};
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceResponse;
use phoenix_processors::Problem;
use prost::Message;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::codegen::tokio_stream::Stream;
use tonic::codegen::{CompressionEncoding, Service, http};
use tonic::metadata::{AsciiMetadataKey, AsciiMetadataValue, MetadataMap};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};
use tonic::{Code, Status};

use super::retry::SendError;
use super::sender::{self, Accepted, Transport};
use super::{error_chain, google_rpc, sanitize};
use crate::exporter::{BoxFuture, BuildContext, Exporter, ExporterMetrics};
use phoenix_config::exporter::otlp::{Compression, OtlpGrpcConfig};
use phoenix_telemetry::registry::Counter;

/// The one method of the OTLP metrics service.
const EXPORT_PATH: &str = "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export";

pub fn build(c: &OtlpGrpcConfig, ctx: &BuildContext) -> anyhow::Result<Arc<dyn Exporter>> {
    // Configs normally arrive validated; building from an unvalidated one
    // must still fail cleanly rather than half-work.
    let errors = c.validate();
    if !errors.is_empty() {
        anyhow::bail!("{}: {}", ctx.id, Problem::join(&errors));
    }
    let runtime = sender::runtime(ctx)?;
    let target = c.endpoint.trim();
    let mut endpoint = Endpoint::from_shared(target.to_string())
        .map_err(|e| anyhow::anyhow!("{}: endpoint {target:?}: {e}", ctx.id))?
        .connect_timeout(c.timeout)
        .tcp_nodelay(true)
        .user_agent(concat!("phoenix-agent/", env!("CARGO_PKG_VERSION")))
        .map_err(|e| anyhow::anyhow!("{}: {e}", ctx.id))?;
    if target.starts_with("https://") {
        let tls = match &c.tls.ca_file {
            Some(path) => ClientTlsConfig::new().ca_certificate(Certificate::from_pem(
                super::read_ca_file(path).map_err(|e| anyhow::anyhow!("{}: {e}", ctx.id))?,
            )),
            None => ClientTlsConfig::new().with_native_roots(),
        };
        endpoint = endpoint
            .tls_config(tls)
            .map_err(|e| anyhow::anyhow!("{}: TLS setup failed: {}", ctx.id, error_chain(&e)))?;
    }
    let metrics = ExporterMetrics::new(ctx);
    let channel = CountingChannel {
        inner: endpoint.connect_lazy(),
        bytes: metrics.bytes.clone(),
    };
    let mut client = tonic::client::Grpc::new(channel).accept_compressed(CompressionEncoding::Gzip);
    if c.compression == Compression::Gzip {
        client = client.send_compressed(CompressionEncoding::Gzip);
    }
    let transport = GrpcTransport {
        client,
        metadata: metadata(&c.headers).map_err(|e| anyhow::anyhow!("{}: {e}", ctx.id))?,
        timeout: c.timeout,
    };
    sender::start(
        &runtime,
        transport,
        ctx,
        "grpc",
        &c.sending_queue,
        c.retry_on_failure.clone(),
    )
}

struct GrpcTransport {
    client: tonic::client::Grpc<CountingChannel>,
    metadata: MetadataMap,
    timeout: Duration,
}

impl Transport for GrpcTransport {
    /// The encoded `ExportMetricsServiceRequest`: encoded once, and a retry
    /// re-sends the same bytes (a refcount, not a copy of the message).
    type Payload = Bytes;

    fn prepare(&self, request: Vec<u8>) -> Result<Bytes, String> {
        // gRPC compresses in the channel: the request goes as it is.
        Ok(request.into())
    }

    fn send<'a>(&'a self, payload: &'a Bytes) -> BoxFuture<'a, Result<Accepted, SendError>> {
        Box::pin(async move {
            // `Grpc` is a cheap handle onto the shared channel.
            let mut client = self.client.clone();
            let mut request = tonic::Request::new(payload.clone());
            *request.metadata_mut() = self.metadata.clone();
            // grpc-timeout: lets the server give up when we do.
            request.set_timeout(self.timeout);
            let call = async {
                client
                    .ready()
                    .await
                    .map_err(|e| Status::from_error(Box::new(e)))?;
                client
                    .unary(
                        request,
                        http::uri::PathAndQuery::from_static(EXPORT_PATH),
                        RawCodec,
                    )
                    .await
            };
            // Bounds connecting plus the call, whatever the server does.
            match tokio::time::timeout(self.timeout, call).await {
                Err(_) => Err(SendError::retryable(format!(
                    "no response within the timeout ({:?})",
                    self.timeout
                ))),
                Ok(Ok(response)) => {
                    let partial = response.into_inner().partial_success.unwrap_or_default();
                    Ok(Accepted {
                        rejected_points: partial.rejected_data_points,
                        message: sanitize(&partial.error_message, 512),
                    })
                }
                Ok(Err(status)) => Err(classify(&status)),
            }
        })
    }
}

/// Retryable per the OTLP spec (and the Collector's exporter): codes that
/// describe a transient state of the server or the network.
fn classify(status: &Status) -> SendError {
    let code = status.code();
    let retryable = match code {
        Code::Cancelled
        | Code::DeadlineExceeded
        | Code::ResourceExhausted
        | Code::Aborted
        | Code::OutOfRange
        | Code::Unavailable
        | Code::DataLoss => true,
        // tonic maps local transport failures it cannot classify (an h2
        // GOAWAY, a reset stream) to Unknown and keeps the error as the
        // source; the server never answered, so it is worth another try.
        // An Unknown sent by the server has no source and is final.
        Code::Unknown => status.source().is_some(),
        _ => false,
    };
    let mut reason = format!("gRPC {code:?}: {}", sanitize(status.message(), 512));
    if let Some(source) = status.source() {
        let chain = error_chain(source);
        if !reason.contains(&chain) {
            reason.push_str(" (");
            reason.push_str(&chain);
            reason.push(')');
        }
    }
    SendError {
        retryable,
        retry_after: if retryable {
            google_rpc::retry_delay(status.details())
        } else {
            None
        },
        reason,
    }
}

fn metadata(headers: &BTreeMap<String, String>) -> Result<MetadataMap, String> {
    let mut map = MetadataMap::with_capacity(headers.len());
    for (name, value) in headers {
        let key = AsciiMetadataKey::from_bytes(name.to_ascii_lowercase().as_bytes())
            .map_err(|_| format!("headers: {name:?} is not a valid metadata key"))?;
        let value = AsciiMetadataValue::try_from(value.as_str())
            .map_err(|_| format!("headers: the value of {name:?} is not valid metadata"))?;
        map.insert(key, value);
    }
    Ok(map)
}

/// Sends pre-encoded request bytes and decodes the response: the request
/// is encoded once per batch (see [`GrpcTransport::prepare`]).
#[derive(Debug, Clone, Copy, Default)]
struct RawCodec;

impl Codec for RawCodec {
    type Encode = Bytes;
    type Decode = ExportMetricsServiceResponse;
    type Encoder = RawCodec;
    type Decoder = RawCodec;

    fn encoder(&mut self) -> Self::Encoder {
        RawCodec
    }

    fn decoder(&mut self) -> Self::Decoder {
        RawCodec
    }
}

impl Encoder for RawCodec {
    type Item = Bytes;
    type Error = Status;

    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for RawCodec {
    type Item = ExportMetricsServiceResponse;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Self::Item>, Status> {
        // The server answered OK (a failure arrives as a status, not a
        // body): an undecodable body must not turn delivered data into a
        // dropped batch, so it only loses the partial-success details.
        Ok(Some(
            ExportMetricsServiceResponse::decode(src).unwrap_or_else(|e| {
                tracing::debug!(error = %e, "undecodable OTLP export response ignored");
                ExportMetricsServiceResponse::default()
            }),
        ))
    }
}

/// The tonic channel, counting the request body bytes it puts on the wire
/// (after gRPC framing and compression, which tonic does internally; the
/// size is not known before this point).
#[derive(Clone)]
struct CountingChannel {
    inner: Channel,
    bytes: Arc<Counter>,
}

impl Service<http::Request<tonic::body::Body>> for CountingChannel {
    type Response = http::Response<tonic::body::Body>;
    type Error = tonic::transport::Error;
    type Future = <Channel as Service<http::Request<tonic::body::Body>>>::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Service::poll_ready(&mut self.inner, cx)
    }

    fn call(&mut self, request: http::Request<tonic::body::Body>) -> Self::Future {
        let bytes = self.bytes.clone();
        let request = request.map(|body| {
            // Re-wrapped as a stream of data frames (axum's body adapters,
            // so no extra dependency): a unary request body has no
            // trailers, so nothing is lost.
            let frames = axum::body::Body::new(body).into_data_stream();
            tonic::body::Body::new(axum::body::Body::from_stream(CountingStream {
                inner: frames,
                bytes,
            }))
        });
        self.inner.call(request)
    }
}

struct CountingStream {
    inner: axum::body::BodyDataStream,
    bytes: Arc<Counter>,
}

impl Stream for CountingStream {
    type Item = Result<Bytes, axum::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let poll = Pin::new(&mut self.inner).poll_next(cx);
        if let Poll::Ready(Some(Ok(chunk))) = &poll {
            self.bytes.add(chunk.len() as u64);
        }
        poll
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn retry_info_details(seconds: i64, nanos: i32) -> Bytes {
        let info = google_rpc::RetryInfo {
            retry_delay: Some(google_rpc::ProtoDuration { seconds, nanos }),
        };
        google_rpc::Status {
            code: Code::ResourceExhausted as i32,
            message: "slow down".into(),
            details: vec![google_rpc::Any {
                type_url: "type.googleapis.com/google.rpc.RetryInfo".into(),
                value: info.encode_to_vec(),
            }],
        }
        .encode_to_vec()
        .into()
    }

    #[test]
    fn retryable_codes_follow_the_otlp_spec() {
        for code in [
            Code::Unavailable,
            Code::ResourceExhausted,
            Code::Aborted,
            Code::DeadlineExceeded,
            Code::Cancelled,
            Code::OutOfRange,
            Code::DataLoss,
        ] {
            assert!(classify(&Status::new(code, "x")).retryable, "{code:?}");
        }
        for code in [
            Code::InvalidArgument,
            Code::Unauthenticated,
            Code::PermissionDenied,
            Code::NotFound,
            Code::Unimplemented,
            Code::Internal,
            Code::Unknown,
        ] {
            assert!(!classify(&Status::new(code, "x")).retryable, "{code:?}");
        }
    }

    #[test]
    fn local_transport_failures_are_retryable() {
        let io = std::io::Error::other("connection reset by a middlebox");
        let status = Status::from_error(Box::new(io));
        assert_eq!(status.code(), Code::Unknown);
        assert!(classify(&status).retryable);
    }

    #[test]
    fn retry_info_sets_the_delay() {
        let status = Status::with_details(
            Code::ResourceExhausted,
            "slow down",
            retry_info_details(3, 500_000_000),
        );
        assert_eq!(
            classify(&status).retry_after,
            Some(Duration::from_millis(3500))
        );
        let negative = Status::with_details(Code::Unavailable, "x", retry_info_details(-5, -1));
        assert_eq!(classify(&negative).retry_after, Some(Duration::ZERO));
        let garbage = Status::with_details(Code::Unavailable, "x", Bytes::from_static(b"\xff"));
        assert_eq!(classify(&garbage).retry_after, None);
    }

    #[test]
    fn server_messages_are_sanitized() {
        let e = classify(&Status::new(Code::InvalidArgument, "bad\nFAKE LOG LINE"));
        assert!(!e.reason.contains('\n'), "{}", e.reason);
    }
}
