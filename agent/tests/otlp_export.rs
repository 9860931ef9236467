//! The OTLP exporters against real in-process OTLP servers: a tonic
//! `MetricsService` for gRPC and an axum server for OTLP/HTTP. Everything
//! runs on 127.0.0.1 with short retry intervals; no assertion depends on
//! timing beyond generous "this must happen eventually" bounds.

use std::collections::VecDeque;
use std::io::Read as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::{
    MetricsService, MetricsServiceServer,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsPartialSuccess, ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{KeyValue as PbKeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::{AggregationTemporality, metric, number_data_point};
use phoenix_agent::exporter::{self, BuildContext, Exporter, ExporterConfig, ExporterMetrics};
use phoenix_processors::model::{
    Attributes, Batch, KeyValue, Metric, MetricDesc, MetricKind, Number, Point, Resource, Value,
};
use phoenix_telemetry::registry::{Counter, Registry};
use prost::Message as _;
use smallvec::smallvec;
use tokio::sync::mpsc;
use tonic::codec::CompressionEncoding;
use tonic::metadata::MetadataMap;

/// Long enough for any healthy machine, short enough to fail a hung test.
const EVENTUALLY: Duration = Duration::from_secs(20);

/// Fast retries so that retry tests take milliseconds.
const FAST_RETRY: &str =
    "retry_on_failure: { initial_interval: 10ms, max_interval: 50ms, max_elapsed_time: 60s }";

// ---------------------------------------------------------------- the batch

fn kv(key: &str, value: Value) -> KeyValue {
    KeyValue::new(key.into(), value)
}

/// Two processes with CPU time (a counter with two points) and memory
/// usage (an up-down counter), plus batch-wide attributes.
fn sample_batch() -> Batch {
    let cpu = Arc::new(MetricDesc {
        name: "process.cpu.time".into(),
        description: "Total CPU seconds broken down by different states.".into(),
        unit: "s".into(),
        kind: MetricKind::COUNTER,
    });
    let memory = Arc::new(MetricDesc {
        name: "process.memory.usage".into(),
        description: "The amount of physical memory in use.".into(),
        unit: "By".into(),
        kind: MetricKind::UP_DOWN_COUNTER,
    });
    let process = |pid: i64, name: &str, user: f64, system: f64, rss: i64| Resource {
        identity: Some(pid as u64),
        attributes: Attributes::new(vec![
            kv("process.pid", Value::Int(pid)),
            kv("process.executable.name", Value::Str(name.into())),
        ]),
        metrics: vec![
            Metric {
                desc: cpu.clone(),
                points: smallvec![
                    Point {
                        attributes: Attributes::new(vec![kv(
                            "cpu.mode",
                            Value::Str("user".into())
                        )]),
                        start_time_unix_nano: 1_000,
                        value: Number::Double(user),
                    },
                    Point {
                        attributes: Attributes::new(vec![kv(
                            "cpu.mode",
                            Value::Str("system".into()),
                        )]),
                        start_time_unix_nano: 1_000,
                        value: Number::Double(system),
                    },
                ],
            },
            Metric {
                desc: memory.clone(),
                points: smallvec![Point {
                    attributes: Attributes::empty(),
                    start_time_unix_nano: 0,
                    value: Number::Int(rss),
                }],
            },
        ],
    };
    Batch {
        time_unix_nano: 1_700_000_000_000_000_000,
        common_attributes: Attributes::new(vec![
            kv("host.name", Value::Str("node-1".into())),
            kv("phoenix.pipeline", Value::Str("metrics/baseline".into())),
        ]),
        resources: vec![
            process(101, "nginx", 1.5, 0.25, 4096),
            process(202, "postgres", 7.0, 2.0, 1 << 20),
        ],
    }
}

fn attr<'a>(attrs: &'a [PbKeyValue], key: &str) -> Option<&'a any_value::Value> {
    attrs
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref()?.value.as_ref())
}

fn str_value(s: &str) -> any_value::Value {
    any_value::Value::StringValue(s.to_string())
}

/// The request carries exactly [`sample_batch`]: resources, names, kinds,
/// temporality and values.
fn assert_is_sample(req: &ExportMetricsServiceRequest) {
    assert_eq!(
        req.resource_metrics.len(),
        2,
        "one ResourceMetrics per process"
    );
    let expected = [
        (101, "nginx", 1.5, 0.25, 4096),
        (202, "postgres", 7.0, 2.0, 1 << 20),
    ];
    for (rm, (pid, name, user, system, rss)) in req.resource_metrics.iter().zip(expected) {
        let attrs = &rm.resource.as_ref().expect("resource").attributes;
        assert_eq!(attr(attrs, "host.name"), Some(&str_value("node-1")));
        assert_eq!(
            attr(attrs, "phoenix.pipeline"),
            Some(&str_value("metrics/baseline"))
        );
        assert_eq!(
            attr(attrs, "process.pid"),
            Some(&any_value::Value::IntValue(pid))
        );
        assert_eq!(
            attr(attrs, "process.executable.name"),
            Some(&str_value(name))
        );
        assert_eq!(rm.scope_metrics.len(), 1);
        let metrics = &rm.scope_metrics[0].metrics;
        let names: Vec<&str> = metrics.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(names, ["process.cpu.time", "process.memory.usage"]);

        let Some(metric::Data::Sum(cpu)) = &metrics[0].data else {
            panic!("process.cpu.time must be a Sum: {:?}", metrics[0].data)
        };
        assert!(cpu.is_monotonic);
        assert_eq!(
            cpu.aggregation_temporality,
            AggregationTemporality::Cumulative as i32
        );
        assert_eq!(metrics[0].unit, "s");
        let cpu_points: Vec<(Option<&any_value::Value>, Option<&number_data_point::Value>)> = cpu
            .data_points
            .iter()
            .map(|p| (attr(&p.attributes, "cpu.mode"), p.value.as_ref()))
            .collect();
        assert_eq!(
            cpu_points,
            [
                (
                    Some(&str_value("user")),
                    Some(&number_data_point::Value::AsDouble(user))
                ),
                (
                    Some(&str_value("system")),
                    Some(&number_data_point::Value::AsDouble(system))
                ),
            ]
        );
        assert!(cpu.data_points.iter().all(|p| {
            p.time_unix_nano == 1_700_000_000_000_000_000 && p.start_time_unix_nano == 1_000
        }));

        let Some(metric::Data::Sum(mem)) = &metrics[1].data else {
            panic!("process.memory.usage must be a Sum: {:?}", metrics[1].data)
        };
        assert!(!mem.is_monotonic, "memory usage is an up-down counter");
        assert_eq!(mem.data_points.len(), 1);
        assert_eq!(
            mem.data_points[0].value,
            Some(number_data_point::Value::AsInt(rss))
        );
    }
}

// ------------------------------------------------------------ the exporter

struct Built {
    exporter: Arc<dyn Exporter>,
    metrics: ExporterMetrics,
    rejected_points: Arc<Counter>,
}

fn build(kind: &str, yaml: &str) -> Built {
    let value: serde_norway::Value = serde_norway::from_str(yaml).expect("test YAML");
    let config = ExporterConfig::from_yaml(kind, value).expect("config parses");
    assert!(config.validate().is_empty(), "{:?}", config.validate());
    let ctx = BuildContext {
        id: format!("{kind}/test"),
        registry: Registry::new(),
    };
    let exporter = exporter::build(&config, &ctx).expect("exporter builds");
    Built {
        exporter,
        // The registry hands out the same counters the exporter holds.
        metrics: ExporterMetrics::new(&ctx),
        rejected_points: ctx.registry.counter(
            "phoenix_exporter_rejected_points_total",
            "",
            &["exporter"],
            &[ctx.id.as_str()],
        ),
    }
}

async fn eventually(what: &str, cond: impl Fn() -> bool) {
    let give_up = tokio::time::Instant::now() + EVENTUALLY;
    while !cond() {
        assert!(
            tokio::time::Instant::now() < give_up,
            "timed out waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn recv<T>(rx: &mut mpsc::UnboundedReceiver<T>) -> T {
    tokio::time::timeout(EVENTUALLY, rx.recv())
        .await
        .expect("the server received nothing in time")
        .expect("server gone")
}

// ------------------------------------------------------- the gRPC collector

/// A collector that fails the first calls with scripted codes, then
/// accepts and forwards what it got.
struct GrpcCollector {
    failures: Mutex<VecDeque<tonic::Code>>,
    partial: Option<ExportMetricsPartialSuccess>,
    calls: AtomicUsize,
    received: mpsc::UnboundedSender<(MetadataMap, ExportMetricsServiceRequest)>,
}

#[tonic::async_trait]
impl MetricsService for GrpcCollector {
    async fn export(
        &self,
        request: tonic::Request<ExportMetricsServiceRequest>,
    ) -> Result<tonic::Response<ExportMetricsServiceResponse>, tonic::Status> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        if let Some(code) = self.failures.lock().unwrap().pop_front() {
            return Err(tonic::Status::new(code, "scripted failure"));
        }
        let (metadata, _, message) = request.into_parts();
        let _ = self.received.send((metadata, message));
        Ok(tonic::Response::new(ExportMetricsServiceResponse {
            partial_success: self.partial.clone(),
        }))
    }
}

type GrpcReceived = mpsc::UnboundedReceiver<(MetadataMap, ExportMetricsServiceRequest)>;

async fn start_grpc(
    failures: &[tonic::Code],
    partial: Option<ExportMetricsPartialSuccess>,
) -> (SocketAddr, Arc<GrpcCollector>, GrpcReceived) {
    let (tx, rx) = mpsc::unbounded_channel();
    let collector = Arc::new(GrpcCollector {
        failures: Mutex::new(failures.iter().copied().collect()),
        partial,
        calls: AtomicUsize::new(0),
        received: tx,
    });
    let incoming =
        tonic::transport::server::TcpIncoming::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = incoming.local_addr().unwrap();
    let service = MetricsServiceServer::from_arc(collector.clone())
        .accept_compressed(CompressionEncoding::Gzip);
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming(incoming),
    );
    (addr, collector, rx)
}

fn grpc_yaml(addr: SocketAddr, extra: &str) -> String {
    format!("endpoint: http://{addr}\n{FAST_RETRY}\n{extra}")
}

#[tokio::test]
async fn grpc_delivers_the_batch_gzipped_with_headers_as_metadata() {
    let (addr, _collector, mut rx) = start_grpc(&[], None).await;
    let b = build(
        "otlp_grpc",
        &grpc_yaml(
            addr,
            "compression: gzip\nheaders: { x-api-key: key-123, X-Tenant: team-a }",
        ),
    );
    b.exporter.submit(Arc::new(sample_batch()));

    let (metadata, request) = recv(&mut rx).await;
    assert_is_sample(&request);
    let get = |k: &str| {
        metadata
            .get(k)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    assert_eq!(get("x-api-key").as_deref(), Some("key-123"));
    assert_eq!(
        get("x-tenant").as_deref(),
        Some("team-a"),
        "names are lowercased"
    );
    assert_eq!(get("grpc-encoding").as_deref(), Some("gzip"));

    let report = b.exporter.shutdown(Duration::from_secs(5)).await;
    assert_eq!(report.dropped, 0);
    assert_eq!(b.metrics.sent.get(), 1);
    assert_eq!(b.metrics.failed.get(), 0);
    assert_eq!(b.metrics.retried.get(), 0);
    assert_eq!(b.metrics.dropped.get(), 0);
    assert!(b.metrics.bytes.get() > 0);
    assert_eq!(b.metrics.queue_length.get(), 0.0);
}

#[tokio::test]
async fn grpc_without_compression_counts_the_exact_wire_bytes() {
    let (addr, _collector, mut rx) = start_grpc(&[], None).await;
    let b = build("otlp_grpc", &grpc_yaml(addr, "compression: none"));
    b.exporter.submit(Arc::new(sample_batch()));
    let (metadata, request) = recv(&mut rx).await;
    assert_is_sample(&request);
    assert!(metadata.get("grpc-encoding").is_none());
    b.exporter.shutdown(Duration::from_secs(5)).await;
    // Uncompressed gRPC framing: 1 flag byte + 4 length bytes + message.
    assert_eq!(b.metrics.bytes.get(), request.encoded_len() as u64 + 5);
}

#[tokio::test]
async fn grpc_retries_unavailable_and_delivers_exactly_once() {
    use tonic::Code::Unavailable;
    let (addr, collector, mut rx) = start_grpc(&[Unavailable, Unavailable], None).await;
    let b = build("otlp_grpc", &grpc_yaml(addr, ""));
    b.exporter.submit(Arc::new(sample_batch()));
    let (_, request) = recv(&mut rx).await;
    assert_is_sample(&request);
    b.exporter.shutdown(Duration::from_secs(5)).await;

    assert_eq!(collector.calls.load(Ordering::SeqCst), 3);
    assert!(rx.try_recv().is_err(), "delivered exactly once");
    assert_eq!(b.metrics.retried.get(), 2);
    assert_eq!(b.metrics.failed.get(), 2);
    assert_eq!(b.metrics.sent.get(), 1);
    assert_eq!(b.metrics.dropped.get(), 0);
}

#[tokio::test]
async fn grpc_invalid_argument_is_dropped_without_retry() {
    let (addr, collector, mut rx) = start_grpc(&[tonic::Code::InvalidArgument], None).await;
    let b = build("otlp_grpc", &grpc_yaml(addr, ""));
    b.exporter.submit(Arc::new(sample_batch()));
    eventually("the rejected batch is dropped", || {
        b.metrics.dropped.get() == 1
    })
    .await;
    assert_eq!(collector.calls.load(Ordering::SeqCst), 1);
    assert_eq!(b.metrics.retried.get(), 0);
    assert_eq!(b.metrics.failed.get(), 1);
    assert_eq!(b.metrics.sent.get(), 0);

    // The exporter carries on with the next batch.
    b.exporter.submit(Arc::new(sample_batch()));
    assert_is_sample(&recv(&mut rx).await.1);
    b.exporter.shutdown(Duration::from_secs(5)).await;
    assert_eq!(b.metrics.sent.get(), 1);
    assert_eq!(b.metrics.dropped.get(), 1);
}

#[tokio::test]
async fn grpc_partial_success_counts_rejected_points() {
    let partial = ExportMetricsPartialSuccess {
        rejected_data_points: 3,
        error_message: "3 points too old".into(),
    };
    let (addr, _collector, mut rx) = start_grpc(&[], Some(partial)).await;
    let b = build("otlp_grpc", &grpc_yaml(addr, ""));
    b.exporter.submit(Arc::new(sample_batch()));
    recv(&mut rx).await;
    b.exporter.shutdown(Duration::from_secs(5)).await;
    assert_eq!(b.rejected_points.get(), 3);
    assert_eq!(
        b.metrics.sent.get(),
        1,
        "a partial success is still delivered"
    );
    assert_eq!(b.metrics.dropped.get(), 0);
}

// ------------------------------------------------------- the HTTP collector

struct HttpReceived {
    method: Method,
    path: String,
    headers: HeaderMap,
    body: Bytes,
}

/// Scripted failure: status and an optional `Retry-After`.
type HttpFailure = (StatusCode, Option<&'static str>);

struct HttpCollector {
    failures: Mutex<VecDeque<HttpFailure>>,
    /// Content type and body of the 2xx answer.
    success: (&'static str, Vec<u8>),
    calls: AtomicUsize,
    received: mpsc::UnboundedSender<HttpReceived>,
}

async fn http_handler(
    axum::extract::State(c): axum::extract::State<Arc<HttpCollector>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    c.calls.fetch_add(1, Ordering::SeqCst);
    if let Some((status, retry_after)) = c.failures.lock().unwrap().pop_front() {
        let mut response = (status, "scripted failure").into_response();
        if let Some(seconds) = retry_after {
            response
                .headers_mut()
                .insert("retry-after", seconds.parse().unwrap());
        }
        return response;
    }
    let _ = c.received.send(HttpReceived {
        method,
        path: uri.path().to_string(),
        headers,
        body,
    });
    let (content_type, body) = c.success.clone();
    ([("content-type", content_type)], body).into_response()
}

async fn start_http(
    failures: &[HttpFailure],
    success: (&'static str, Vec<u8>),
) -> (
    SocketAddr,
    Arc<HttpCollector>,
    mpsc::UnboundedReceiver<HttpReceived>,
) {
    let (tx, rx) = mpsc::unbounded_channel();
    let collector = Arc::new(HttpCollector {
        failures: Mutex::new(failures.iter().copied().collect()),
        success,
        calls: AtomicUsize::new(0),
        received: tx,
    });
    let app = axum::Router::new()
        .fallback(http_handler)
        .with_state(collector.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (addr, collector, rx)
}

fn empty_proto_response() -> (&'static str, Vec<u8>) {
    (
        "application/x-protobuf",
        ExportMetricsServiceResponse::default().encode_to_vec(),
    )
}

fn http_yaml(addr: SocketAddr, extra: &str) -> String {
    format!("endpoint: http://{addr}\n{FAST_RETRY}\n{extra}")
}

/// The body as the server got it, gunzipped when so labelled, decoded per
/// its content type.
fn decode_http(r: &HttpReceived) -> ExportMetricsServiceRequest {
    let gzipped = r
        .headers
        .get("content-encoding")
        .is_some_and(|v| v == "gzip");
    let raw = if gzipped {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&r.body[..])
            .read_to_end(&mut out)
            .expect("valid gzip");
        out
    } else {
        r.body.to_vec()
    };
    match r.headers.get("content-type").and_then(|v| v.to_str().ok()) {
        Some("application/x-protobuf") => {
            ExportMetricsServiceRequest::decode(raw.as_slice()).expect("valid protobuf")
        }
        Some("application/json") => {
            let text = std::str::from_utf8(&raw).expect("UTF-8 JSON");
            // The OTLP/JSON mapping: camelCase keys, 64-bit integers as strings.
            assert!(text.contains("\"resourceMetrics\""), "{text}");
            assert!(
                text.contains("\"timeUnixNano\":\"1700000000000000000\""),
                "{text}"
            );
            serde_json::from_str(text).expect("valid OTLP/JSON")
        }
        other => panic!("unexpected content type {other:?}"),
    }
}

#[tokio::test]
async fn http_delivers_proto_and_json_with_and_without_gzip() {
    let (addr, _collector, mut rx) = start_http(&[], empty_proto_response()).await;
    for encoding in ["proto", "json"] {
        for compression in ["none", "gzip"] {
            let case = format!("{encoding}/{compression}");
            let b = build(
                "otlp_http",
                &http_yaml(
                    addr,
                    &format!(
                        "encoding: {encoding}\ncompression: {compression}\nheaders: {{ X-Api-Key: key-123 }}"
                    ),
                ),
            );
            b.exporter.submit(Arc::new(sample_batch()));
            let got = recv(&mut rx).await;
            assert_eq!(got.method, Method::POST, "{case}");
            assert_eq!(got.path, "/v1/metrics", "{case}");
            assert_eq!(
                got.headers.get("content-type").unwrap(),
                if encoding == "proto" {
                    "application/x-protobuf"
                } else {
                    "application/json"
                },
                "{case}"
            );
            assert_eq!(
                got.headers.get("content-encoding").is_some(),
                compression == "gzip",
                "{case}"
            );
            assert_eq!(got.headers.get("x-api-key").unwrap(), "key-123", "{case}");
            assert_is_sample(&decode_http(&got));

            b.exporter.shutdown(Duration::from_secs(5)).await;
            assert_eq!(b.metrics.sent.get(), 1, "{case}");
            assert_eq!(
                b.metrics.bytes.get(),
                got.body.len() as u64,
                "{case}: bytes counts the body as sent"
            );
        }
    }
}

#[tokio::test]
async fn http_endpoint_with_a_path_prefix_keeps_it() {
    let (addr, _collector, mut rx) = start_http(&[], empty_proto_response()).await;
    let yaml = format!("endpoint: http://{addr}/otlp/\n{FAST_RETRY}");
    let b = build("otlp_http", &yaml);
    b.exporter.submit(Arc::new(sample_batch()));
    assert_eq!(recv(&mut rx).await.path, "/otlp/v1/metrics");
    b.exporter.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn http_retries_503_and_delivers_exactly_once() {
    let failures = [
        (StatusCode::SERVICE_UNAVAILABLE, Some("0")),
        (StatusCode::SERVICE_UNAVAILABLE, None),
    ];
    let (addr, collector, mut rx) = start_http(&failures, empty_proto_response()).await;
    let b = build("otlp_http", &http_yaml(addr, ""));
    b.exporter.submit(Arc::new(sample_batch()));
    assert_is_sample(&decode_http(&recv(&mut rx).await));
    b.exporter.shutdown(Duration::from_secs(5)).await;

    assert_eq!(collector.calls.load(Ordering::SeqCst), 3);
    assert!(rx.try_recv().is_err(), "delivered exactly once");
    assert_eq!(b.metrics.retried.get(), 2);
    assert_eq!(b.metrics.failed.get(), 2);
    assert_eq!(b.metrics.sent.get(), 1);
    assert_eq!(b.metrics.dropped.get(), 0);
}

#[tokio::test]
async fn http_400_is_dropped_without_retry() {
    let failures = [(StatusCode::BAD_REQUEST, None)];
    let (addr, collector, mut rx) = start_http(&failures, empty_proto_response()).await;
    let b = build("otlp_http", &http_yaml(addr, ""));
    b.exporter.submit(Arc::new(sample_batch()));
    eventually("the rejected batch is dropped", || {
        b.metrics.dropped.get() == 1
    })
    .await;
    assert_eq!(collector.calls.load(Ordering::SeqCst), 1);
    assert_eq!(b.metrics.retried.get(), 0);
    assert_eq!(b.metrics.failed.get(), 1);

    b.exporter.submit(Arc::new(sample_batch()));
    recv(&mut rx).await;
    b.exporter.shutdown(Duration::from_secs(5)).await;
    assert_eq!(b.metrics.sent.get(), 1);
    assert_eq!(b.metrics.dropped.get(), 1);
}

#[tokio::test]
async fn http_json_partial_success_counts_rejected_points() {
    // As a Go collector writes it: int64 as a JSON string.
    let body = br#"{"partialSuccess":{"rejectedDataPoints":"4","errorMessage":"bad unit"}}"#;
    let (addr, _collector, mut rx) = start_http(&[], ("application/json", body.to_vec())).await;
    let b = build("otlp_http", &http_yaml(addr, "encoding: json"));
    b.exporter.submit(Arc::new(sample_batch()));
    recv(&mut rx).await;
    b.exporter.shutdown(Duration::from_secs(5)).await;
    assert_eq!(b.rejected_points.get(), 4);
    assert_eq!(b.metrics.sent.get(), 1);
}

// ------------------------------------------------------ a dead endpoint

/// A local port with nothing listening (bound, then released).
fn dead_endpoint() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap()
}

async fn queue_stays_bounded(kind: &str) {
    let addr = dead_endpoint();
    let yaml = format!(
        "endpoint: http://{addr}\nsending_queue: {{ queue_size: 10 }}\n\
         retry_on_failure: {{ initial_interval: 20ms, max_interval: 100ms, max_elapsed_time: 60s }}"
    );
    let b = build(kind, &yaml);
    let batch = Arc::new(sample_batch());
    for _ in 0..1000 {
        b.exporter.submit(batch.clone());
        assert!(b.metrics.queue_length.get() <= 10.0, "queue over its bound");
    }
    // Everything beyond the queue and the one batch being retried is gone.
    let overflowed = b.metrics.dropped.get();
    assert!(
        (1000 - 10 - 1..=1000 - 10).contains(&overflowed),
        "dropped {overflowed}"
    );

    let report = tokio::time::timeout(EVENTUALLY, b.exporter.shutdown(Duration::from_millis(300)))
        .await
        .expect("shutdown keeps to its deadline");
    assert_eq!(report.flushed, 0);
    assert_eq!(report.dropped + overflowed, 1000, "{report:?}");
    assert_eq!(b.metrics.dropped.get(), 1000);
    assert_eq!(b.metrics.sent.get(), 0);
    assert!(b.metrics.failed.get() >= 1);
    assert_eq!(b.metrics.queue_length.get(), 0.0);

    // After shutdown nothing is accepted, and what is refused is counted.
    b.exporter.submit(batch);
    assert_eq!(b.metrics.dropped.get(), 1001);
    assert_eq!(b.metrics.queue_length.get(), 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_dead_endpoint_keeps_the_queue_bounded() {
    queue_stays_bounded("otlp_grpc").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_dead_endpoint_keeps_the_queue_bounded() {
    queue_stays_bounded("otlp_http").await;
}

#[tokio::test]
async fn dropping_without_shutdown_counts_what_was_held() {
    let addr = dead_endpoint();
    let yaml = format!("endpoint: http://{addr}\n{FAST_RETRY}");
    let b = build("otlp_grpc", &yaml);
    for _ in 0..5 {
        b.exporter.submit(Arc::new(sample_batch()));
    }
    eventually("one batch is in flight", || b.metrics.failed.get() >= 1).await;
    drop(b.exporter);
    // Four still queued and the one being retried.
    assert_eq!(b.metrics.dropped.get(), 5);
    assert_eq!(b.metrics.queue_length.get(), 0.0);
}

#[tokio::test]
async fn retries_give_up_after_max_elapsed_time() {
    let addr = dead_endpoint();
    let yaml = format!(
        "endpoint: http://{addr}\n\
         retry_on_failure: {{ initial_interval: 5ms, max_interval: 10ms, max_elapsed_time: 50ms }}"
    );
    let b = build("otlp_grpc", &yaml);
    b.exporter.submit(Arc::new(sample_batch()));
    eventually("the batch is given up", || b.metrics.dropped.get() == 1).await;
    assert!(b.metrics.retried.get() >= 1);
    assert_eq!(b.metrics.failed.get(), b.metrics.retried.get() + 1);
    let report = b.exporter.shutdown(Duration::from_secs(1)).await;
    assert_eq!(report, Default::default(), "nothing left to flush or drop");
}

// ------------------------------------------------------------------- TLS

// A private CA and a server certificate it signed for localhost and
// 127.0.0.1, valid 2000–2099 (generated once with openssl; test-only keys).
// Files, so that every test that needs TLS shares them.
const TEST_CA_PEM: &str = include_str!("tls/ca.pem");
const TEST_SERVER_CERT_PEM: &str = include_str!("tls/server.pem");
const TEST_SERVER_KEY_PEM: &str = include_str!("tls/server-key.pem");

/// The CA written to a file, as `tls.ca_file` wants it; one file per test
/// (tests run in parallel). It is read when building, so tests delete it
/// right after.
fn test_ca_file(test: &str) -> std::path::PathBuf {
    let path =
        std::env::temp_dir().join(format!("phoenix-otlp-{test}-{}-ca.pem", std::process::id()));
    std::fs::write(&path, TEST_CA_PEM).unwrap();
    path
}

async fn start_grpc_tls() -> (SocketAddr, GrpcReceived) {
    let (tx, rx) = mpsc::unbounded_channel();
    let collector = GrpcCollector {
        failures: Mutex::new(VecDeque::new()),
        partial: None,
        calls: AtomicUsize::new(0),
        received: tx,
    };
    let incoming =
        tonic::transport::server::TcpIncoming::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = incoming.local_addr().unwrap();
    let tls = tonic::transport::ServerTlsConfig::new().identity(
        tonic::transport::Identity::from_pem(TEST_SERVER_CERT_PEM, TEST_SERVER_KEY_PEM),
    );
    let server = tonic::transport::Server::builder()
        .tls_config(tls)
        .unwrap()
        .add_service(
            MetricsServiceServer::new(collector).accept_compressed(CompressionEncoding::Gzip),
        );
    tokio::spawn(server.serve_with_incoming(incoming));
    (addr, rx)
}

#[tokio::test]
async fn grpc_over_tls_trusts_the_configured_ca() {
    let (addr, mut rx) = start_grpc_tls().await;
    let ca = test_ca_file("grpc");
    let yaml = format!(
        "endpoint: https://{addr}\ntls: {{ ca_file: {} }}\n{FAST_RETRY}",
        ca.display()
    );
    let b = build("otlp_grpc", &yaml);
    let _ = std::fs::remove_file(&ca);
    b.exporter.submit(Arc::new(sample_batch()));
    assert_is_sample(&recv(&mut rx).await.1);
    b.exporter.shutdown(Duration::from_secs(5)).await;
    assert_eq!(b.metrics.sent.get(), 1);
    assert_eq!(b.metrics.retried.get(), 0, "the first handshake succeeded");
}

#[tokio::test]
async fn http_over_tls_trusts_the_configured_ca() {
    // There is no OTLP/HTTP TLS server at hand without another dependency,
    // so this talks to the gRPC one: whatever HTTP status it answers
    // /v1/metrics with, an answer at all means the handshake against the
    // private CA succeeded, while a TLS failure would be retried.
    let (addr, _rx) = start_grpc_tls().await;
    let ca = test_ca_file("http");
    let yaml = format!(
        "endpoint: https://{addr}\ntls: {{ ca_file: {} }}\n{FAST_RETRY}",
        ca.display()
    );
    let b = build("otlp_http", &yaml);
    let _ = std::fs::remove_file(&ca);
    b.exporter.submit(Arc::new(sample_batch()));
    eventually("an HTTP answer over TLS", || {
        b.metrics.sent.get() + b.metrics.dropped.get() == 1
    })
    .await;
    b.exporter.shutdown(Duration::from_secs(5)).await;
    assert_eq!(b.metrics.retried.get(), 0, "no TLS failure to retry");
    assert!(b.metrics.bytes.get() > 0, "the body went out over TLS");
}

// ------------------------------------------------------------- building

#[tokio::test]
async fn build_fails_on_an_unreadable_ca_file() {
    for kind in ["otlp_grpc", "otlp_http"] {
        let yaml = "endpoint: https://localhost:4317\ntls: { ca_file: /nonexistent/ca.pem }";
        let value: serde_norway::Value = serde_norway::from_str(yaml).unwrap();
        let config = ExporterConfig::from_yaml(kind, value).unwrap();
        assert!(config.validate().is_empty(), "validation reads no files");
        let ctx = BuildContext {
            id: format!("{kind}/tls"),
            registry: Registry::new(),
        };
        let error = match exporter::build(&config, &ctx) {
            Ok(_) => panic!("{kind}: built with a missing CA file"),
            Err(e) => e.to_string(),
        };
        assert!(error.contains("ca_file"), "{kind}: {error}");
    }
}

#[test]
fn build_outside_a_runtime_is_an_error_not_a_panic() {
    for kind in ["otlp_grpc", "otlp_http"] {
        let value: serde_norway::Value =
            serde_norway::from_str("endpoint: http://127.0.0.1:1").unwrap();
        let config = ExporterConfig::from_yaml(kind, value).unwrap();
        let ctx = BuildContext {
            id: format!("{kind}/noruntime"),
            registry: Registry::new(),
        };
        assert!(exporter::build(&config, &ctx).is_err(), "{kind}");
    }
}

// ------------------------------------------------------ the disk queue

/// The batch time a request carries (its first data point's).
fn batch_time(request: &ExportMetricsServiceRequest) -> u64 {
    let metric = &request.resource_metrics[0].scope_metrics[0].metrics[0];
    match &metric.data {
        Some(metric::Data::Sum(sum)) => sum.data_points[0].time_unix_nano,
        other => panic!("the sample's first metric is a Sum: {other:?}"),
    }
}

fn batch_at(time: u64) -> Arc<Batch> {
    Arc::new(Batch {
        time_unix_nano: time,
        ..sample_batch()
    })
}

/// A reload rebuilds an exporter while the old one still runs: the new one
/// waits for the directory, the old one's shutdown keeps (not drops) what
/// it could not send, and the new one sends that first, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disk_queue_survives_shutdown_and_a_successor_replays_it_first() {
    let dir = phoenix_tests::TempDir::new("otlp-disk-queue");
    let storage = format!(
        "sending_queue: {{ queue_size: 2, storage: {{ directory: {} }} }}",
        dir.path().join("q").display()
    );
    let old = build("otlp_grpc", &grpc_yaml(dead_endpoint(), &storage));
    for t in 1..=5 {
        old.exporter.submit(batch_at(t));
        // One at a time, so the small memory queue never overflows.
        eventually("the batch left the memory queue", || {
            old.metrics.queue_length.get() == 0.0
        })
        .await;
    }
    eventually("five batches on disk", || {
        phoenix_tests::files_with_extension(&dir.path().join("q"), "batch").len() == 5
    })
    .await;

    let (addr, _collector, mut rx) = start_grpc(&[], None).await;
    let new = build("otlp_grpc", &grpc_yaml(addr, &storage));
    new.exporter.submit(batch_at(6));
    let report = old.exporter.shutdown(Duration::from_millis(200)).await;
    assert_eq!((report.flushed, report.dropped), (0, 0), "kept on disk");
    assert_eq!(old.metrics.dropped.get(), 0);

    let mut times = Vec::new();
    for _ in 1..=6 {
        times.push(batch_time(&recv(&mut rx).await.1));
    }
    assert_eq!(
        times,
        [1, 2, 3, 4, 5, 6],
        "the old batches first, once each"
    );
    eventually("all acked", || new.metrics.sent.get() == 6).await;
    eventually("the disk is empty", || {
        phoenix_tests::files_with_extension(&dir.path().join("q"), "batch").is_empty()
    })
    .await;
    let report = new.exporter.shutdown(Duration::from_secs(1)).await;
    assert_eq!(report.dropped, 0);
    assert!(rx.try_recv().is_err(), "nothing sent twice");
}

/// A permanent error gives a batch up from the disk too: counted, deleted,
/// and the next one goes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disk_queue_drops_a_batch_the_backend_refuses_for_good() {
    let dir = phoenix_tests::TempDir::new("otlp-disk-queue-refused");
    let (addr, _collector, mut rx) = start_grpc(&[tonic::Code::InvalidArgument], None).await;
    let b = build(
        "otlp_grpc",
        &grpc_yaml(
            addr,
            &format!(
                "sending_queue: {{ storage: {{ directory: {} }} }}",
                dir.path().display()
            ),
        ),
    );
    b.exporter.submit(batch_at(1));
    b.exporter.submit(batch_at(2));
    assert_eq!(batch_time(&recv(&mut rx).await.1), 2);
    eventually("one dropped, one sent", || {
        b.metrics.dropped.get() == 1 && b.metrics.sent.get() == 1
    })
    .await;
    eventually("the disk is empty", || {
        phoenix_tests::files_with_extension(dir.path(), "batch").is_empty()
    })
    .await;
    b.exporter.shutdown(Duration::from_secs(1)).await;
}
