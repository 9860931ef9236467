//! The local exporters end to end: the file exporter's lines read back as
//! OTLP requests, the Prometheus endpoint scraped over real HTTP and checked
//! by the reference parsers (Python's `prometheus_client`, and `promtool`
//! when installed).

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value;
use opentelemetry_proto::tonic::metrics::v1::{metric, number_data_point};
use phoenix_agent::exporter::prometheus::PrometheusExporter;
use phoenix_agent::exporter::{BuildContext, Exporter, build};
use phoenix_config::exporter::{ExporterConfig, FileConfig, PrometheusConfig};
use phoenix_processors::model::{
    Attributes, Batch, KeyValue, Metric, MetricDesc, MetricKind, Number, Point, Resource, Value,
};
use phoenix_telemetry::registry::Registry;
use phoenix_tests::tools::{missing_tool, on_path};
use serde_json::Value as Json;
use smallvec::smallvec;

/// A command line with every character the text format must escape.
const TRICKY: &str = "sh -c \"echo \\\"hi\\\"\" \\\\share\nsecond line";

fn kv(k: &str, v: Value) -> KeyValue {
    KeyValue::new(k.into(), v)
}

fn s(v: &str) -> Value {
    Value::Str(v.into())
}

fn desc(name: &str, unit: &str, kind: MetricKind) -> Arc<MetricDesc> {
    Arc::new(MetricDesc {
        name: name.into(),
        description: format!("{name} help").into(),
        unit: unit.into(),
        kind,
    })
}

fn point(attrs: Vec<KeyValue>, value: Number) -> Point {
    Point {
        attributes: Attributes::new(attrs),
        start_time_unix_nano: 1_600_000_000_000_000_000,
        value,
    }
}

fn process(pid: i64, name: &str, command_line: &str, cpu_user: f64, memory: i64) -> Resource {
    Resource {
        identity: Some(pid as u64),
        attributes: Attributes::new(vec![
            kv("process.pid", Value::Int(pid)),
            kv("process.executable.name", s(name)),
            kv("process.command_line", s(command_line)),
        ]),
        metrics: vec![
            Metric {
                desc: desc("process.cpu.time", "s", MetricKind::COUNTER),
                points: smallvec![
                    point(vec![kv("cpu.mode", s("user"))], Number::Double(cpu_user)),
                    point(vec![kv("cpu.mode", s("system"))], Number::Double(0.25)),
                ],
            },
            Metric {
                desc: desc("process.cpu.utilization", "1", MetricKind::Gauge),
                points: smallvec![point(vec![], Number::Double(0.125))],
            },
            Metric {
                desc: desc("process.memory.usage", "By", MetricKind::UP_DOWN_COUNTER),
                points: smallvec![point(vec![], Number::Int(memory))],
            },
            Metric {
                desc: desc(
                    "process.thread.count",
                    "{thread}",
                    MetricKind::UP_DOWN_COUNTER,
                ),
                points: smallvec![point(vec![], Number::Int(3))],
            },
        ],
    }
}

fn batch(pipeline: &str, time_unix_nano: u64, resources: Vec<Resource>) -> Batch {
    Batch {
        time_unix_nano,
        common_attributes: Attributes::new(vec![
            kv("host.name", s("node-1")),
            kv("phoenix.pipeline", s(pipeline)),
        ]),
        resources,
    }
}

fn ctx(id: &str) -> BuildContext {
    BuildContext {
        id: id.into(),
        registry: Registry::new(),
    }
}

use phoenix_tests::scratch_dir as temp_dir;

/// `name{labels} value` of a metric line in the registry's rendering.
fn self_metric(registry: &Registry, name: &str) -> f64 {
    let text = registry.render();
    text.lines()
        .find(|l| l.starts_with(&format!("{name}{{")))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{name} not in self-metrics:\n{text}"))
}

// ---------------------------------------------------------------- file

#[tokio::test]
async fn file_exporter_writes_one_otlp_json_request_per_line() {
    let dir = temp_dir("file");
    let path = dir.join("nested/dir/metrics.jsonl");
    let ctx = ctx("file/test");
    let config = ExporterConfig::File(FileConfig {
        path: path.clone(),
        rotation: None,
    });
    assert!(config.validate().is_empty());
    let exporter = build(&config, &ctx).expect("builds");
    assert!(
        path.exists(),
        "created with its parent directories at build"
    );

    exporter.submit(Arc::new(batch(
        "metrics/baseline",
        1_700_000_000_000_000_000,
        vec![process(42, "postgres", TRICKY, 1.5, 1 << 20)],
    )));
    exporter.submit(Arc::new(batch(
        "metrics/candidate",
        1_700_000_010_000_000_000,
        vec![process(7, "nginx", "nginx -g daemon off;", 2.0, -1)],
    )));
    let report = exporter.shutdown(Duration::from_secs(10)).await;
    assert_eq!(report.dropped, 0);

    let text = std::fs::read_to_string(&path).expect("reads the file");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "one line per batch:\n{text}");

    // The OTLP/JSON mapping: camelCase names, 64-bit integers as strings,
    // enums as integers.
    let raw: Json = serde_json::from_str(lines[0]).expect("valid JSON");
    let rm = &raw["resourceMetrics"][0];
    let metrics = &rm["scopeMetrics"][0]["metrics"];
    let cpu = &metrics[0];
    assert_eq!(cpu["name"], "process.cpu.time");
    assert_eq!(
        cpu["sum"]["aggregationTemporality"], 2,
        "cumulative as a number"
    );
    assert_eq!(cpu["sum"]["isMonotonic"], true);
    assert_eq!(
        cpu["sum"]["dataPoints"][0]["timeUnixNano"],
        "1700000000000000000"
    );
    assert_eq!(
        cpu["sum"]["dataPoints"][0]["startTimeUnixNano"],
        "1600000000000000000"
    );
    assert_eq!(cpu["sum"]["dataPoints"][0]["asDouble"], 1.5);
    assert_eq!(metrics[2]["sum"]["dataPoints"][0]["asInt"], "1048576");
    let pid = rm["resource"]["attributes"]
        .as_array()
        .expect("attributes")
        .iter()
        .find(|a| a["key"] == "process.pid")
        .expect("process.pid");
    assert_eq!(pid["value"]["intValue"], "42");

    // And every line reads back into the protobuf message.
    let requests: Vec<ExportMetricsServiceRequest> = lines
        .iter()
        .map(|l| serde_json::from_str(l).expect("an ExportMetricsServiceRequest"))
        .collect();
    let second = &requests[1].resource_metrics[0];
    let attrs = &second.resource.as_ref().expect("resource").attributes;
    let get = |k: &str| {
        attrs
            .iter()
            .find(|a| a.key == k)
            .and_then(|a| a.value.as_ref())
            .and_then(|v| v.value.clone())
    };
    assert_eq!(
        get("phoenix.pipeline"),
        Some(any_value::Value::StringValue("metrics/candidate".into()))
    );
    assert_eq!(get("process.pid"), Some(any_value::Value::IntValue(7)));
    let memory = &second.scope_metrics[0].metrics[2];
    assert_eq!(memory.name, "process.memory.usage");
    assert_eq!(memory.unit, "By");
    let Some(metric::Data::Sum(sum)) = &memory.data else {
        panic!("memory is a sum");
    };
    assert!(!sum.is_monotonic);
    assert_eq!(sum.data_points[0].time_unix_nano, 1_700_000_010_000_000_000);
    assert_eq!(
        sum.data_points[0].value,
        Some(number_data_point::Value::AsInt(-1))
    );
    let first_attrs = &requests[0].resource_metrics[0]
        .resource
        .as_ref()
        .expect("resource")
        .attributes;
    let command_line = first_attrs
        .iter()
        .find(|a| a.key == "process.command_line")
        .and_then(|a| a.value.as_ref())
        .and_then(|v| v.value.clone());
    assert_eq!(
        command_line,
        Some(any_value::Value::StringValue(TRICKY.into()))
    );

    assert_eq!(
        self_metric(&ctx.registry, "phoenix_exporter_sent_batches_total"),
        2.0
    );
    assert_eq!(
        self_metric(&ctx.registry, "phoenix_exporter_sent_bytes_total"),
        text.len() as f64
    );
    assert_eq!(
        self_metric(&ctx.registry, "phoenix_exporter_queue_length"),
        0.0
    );

    // Submitting after shutdown is refused and counted, not written.
    exporter.submit(Arc::new(batch("metrics/baseline", 1, vec![])));
    assert_eq!(
        self_metric(&ctx.registry, "phoenix_exporter_dropped_batches_total"),
        1.0
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn file_exporter_counts_write_errors_without_panicking() {
    // A file of ours already as long as its file system allows: every
    // append fails with EFBIG, a full disk on demand (the exporter refuses
    // /dev/full, as everything under /dev).
    let dir = temp_dir("full");
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("metrics.jsonl");
    {
        use std::io::Write as _;
        use std::os::unix::fs::OpenOptionsExt as _;
        let mut f = std::fs::OpenOptions::new()
            .create_new(true)
            .write(true)
            .mode(0o600)
            .open(&path)
            .expect("creates");
        f.write_all(b"{\"resourceMetrics\":[]}\n").expect("writes");
        let (mut ok, mut too_long) = (0u64, i64::MAX as u64 + 1);
        while too_long - ok > 1 {
            let mid = ok + (too_long - ok) / 2;
            if f.set_len(mid).is_ok() {
                ok = mid;
            } else {
                too_long = mid;
            }
        }
        f.set_len(ok).expect("the longest length");
    }
    let ctx = ctx("file/full");
    let config = ExporterConfig::File(FileConfig {
        path: path.clone(),
        rotation: None,
    });
    let exporter = build(&config, &ctx).expect("opening our own file succeeds");
    for t in 0..3 {
        exporter.submit(Arc::new(batch("p", t, vec![process(1, "a", "a", 1.0, 1)])));
    }
    let report = exporter.shutdown(Duration::from_secs(10)).await;
    assert_eq!(report.flushed, 0);
    assert_eq!(
        self_metric(&ctx.registry, "phoenix_exporter_send_failed_total"),
        3.0
    );
    assert_eq!(
        self_metric(&ctx.registry, "phoenix_exporter_dropped_batches_total"),
        3.0
    );
    assert_eq!(
        self_metric(&ctx.registry, "phoenix_exporter_sent_batches_total"),
        0.0
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn file_exporter_to_dev_null_discards_without_opening() {
    let ctx = ctx("file/null");
    let config = ExporterConfig::File(FileConfig {
        path: "/dev/null".into(),
        rotation: Some(phoenix_config::exporter::RotationConfig {
            max_megabytes: 1,
            max_backups: 0,
        }),
    });
    assert!(config.validate().is_empty());
    let exporter = build(&config, &ctx).expect("builds");
    exporter.submit(Arc::new(batch("p", 1, vec![process(1, "a", "a", 1.0, 1)])));
    let report = exporter.shutdown(Duration::from_secs(10)).await;
    assert_eq!(report.dropped, 0);
    assert_eq!(
        self_metric(&ctx.registry, "phoenix_exporter_sent_batches_total"),
        1.0
    );
}

#[tokio::test]
async fn file_exporter_build_fails_naming_an_unwritable_path() {
    let dir = temp_dir("blocked");
    std::fs::create_dir_all(&dir).expect("temp dir");
    let blocker = dir.join("not-a-dir");
    std::fs::write(&blocker, b"x").expect("writes");
    let path = blocker.join("metrics.jsonl");
    let config = ExporterConfig::File(FileConfig {
        path: path.clone(),
        rotation: None,
    });
    let err = build(&config, &ctx("file/blocked"))
        .err()
        .expect("a file as parent directory fails the build")
        .to_string();
    assert!(err.contains("metrics.jsonl"), "{err}");
    let _ = std::fs::remove_dir_all(dir);
}

// ---------------------------------------------------------- prometheus

async fn scrape(addr: std::net::SocketAddr) -> (String, String) {
    let response = reqwest::get(format!("http://{addr}/metrics"))
        .await
        .expect("GET /metrics");
    assert_eq!(response.status(), 200);
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    (content_type, response.text().await.expect("body"))
}

/// Parse `text` with `prometheus_client.parser.text_string_to_metric_families`
/// and return `[{name, type, samples: [{name, labels, value}]}]`, or `None`
/// when the package is not installed (see [`missing_tool`]).
fn parse_with_prometheus_client(text: &str) -> Option<Json> {
    const SCRIPT: &str = r#"
import json, math, sys
from prometheus_client.parser import text_string_to_metric_families
out = []
for f in text_string_to_metric_families(sys.stdin.read()):
    out.append({"name": f.name, "type": f.type, "documentation": f.documentation,
                "samples": [{"name": s.name, "labels": s.labels,
                             "value": None if math.isnan(s.value) else s.value}
                            for s in f.samples]})
print(json.dumps(out))
"#;
    let available = Command::new("python3")
        .args(["-c", "import prometheus_client"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !available {
        missing_tool(
            "python3's prometheus-client",
            "pip install prometheus-client",
        );
        return None;
    }
    let output =
        run_with_stdin(Command::new("python3").args(["-c", SCRIPT]), text).expect("runs python3");
    assert!(
        output.status.success(),
        "prometheus_client rejected the exposition: {}\n{text}",
        String::from_utf8_lossy(&output.stderr)
    );
    Some(serde_json::from_slice(&output.stdout).expect("parser output is JSON"))
}

fn run_with_stdin(cmd: &mut Command, input: &str) -> std::io::Result<std::process::Output> {
    use std::io::Write as _;
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(input.as_bytes())?;
    }
    child.wait_with_output()
}

/// `promtool check metrics` (Debian package `prometheus`) when installed
/// (see [`missing_tool`]): the Prometheus server's own parser plus its
/// naming lints.
fn check_with_promtool(text: &str) {
    if !on_path("promtool") {
        missing_tool("promtool", "apt-get install prometheus");
        return;
    }
    let output = run_with_stdin(Command::new("promtool").args(["check", "metrics"]), text)
        .expect("runs promtool");
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    // Exit 1 is a parse error, 3 is lint problems only. The one lint we
    // accept is about OpenTelemetry's own names (`process.thread.count` →
    // `process_thread_count`): renaming them would break the Collector
    // compatibility users rely on.
    let only_accepted_lints = output.status.code() == Some(3)
        && report
            .lines()
            .filter(|l| !l.trim().is_empty())
            .all(|l| l.contains("should not have \"_count\" suffix"));
    assert!(
        output.status.success() || only_accepted_lints,
        "promtool check metrics failed ({}):\n{report}\n{text}",
        output.status
    );
}

fn family<'a>(families: &'a Json, name: &str) -> &'a Json {
    families
        .as_array()
        .expect("families")
        .iter()
        .find(|f| f["name"] == name)
        .unwrap_or_else(|| panic!("family {name} missing: {families}"))
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

#[tokio::test]
async fn prometheus_endpoint_serves_latest_batches_accepted_by_reference_parsers() {
    let ctx = ctx("prometheus/test");
    let exporter = PrometheusExporter::start(
        &PrometheusConfig {
            endpoint: "127.0.0.1:0".into(),
        },
        &ctx,
    )
    .expect("binds");
    let addr = exporter.local_addr();

    // Baseline: an older batch, then the latest, which must replace it.
    exporter.submit(Arc::new(batch(
        "metrics/baseline",
        1,
        vec![process(1, "old", "old", 100.0, 1)],
    )));
    exporter.submit(Arc::new(batch(
        "metrics/baseline",
        2,
        vec![
            process(42, "postgres", TRICKY, 1.5, 1 << 20),
            process(7, "nginx", "nginx", 2.0, 2048),
            // Same attributes as pid 7: every one of its series collides.
            process(7, "nginx", "nginx", 9.0, 4096),
        ],
    )));
    // Candidate: the same process, told apart by phoenix_pipeline.
    exporter.submit(Arc::new(batch(
        "metrics/candidate",
        2,
        vec![process(42, "postgres", TRICKY, 1.5, 1 << 20)],
    )));

    let (content_type, text) = scrape(addr).await;
    assert_eq!(content_type, "text/plain; version=0.0.4; charset=utf-8");
    assert!(
        !text.contains("\"old\""),
        "the older batch was replaced:\n{text}"
    );
    check_with_promtool(&text);

    // Each family once, its samples together.
    for name in [
        "process_cpu_time_seconds_total",
        "process_cpu_utilization_ratio",
        "process_memory_usage_bytes",
        "process_thread_count",
    ] {
        let type_lines = text
            .lines()
            .filter(|l| l.starts_with(&format!("# TYPE {name} ")))
            .count();
        assert_eq!(type_lines, 1, "{name}:\n{text}");
        let sample_lines: Vec<usize> = text
            .lines()
            .enumerate()
            .filter(|(_, l)| l.starts_with(&format!("{name}{{")))
            .map(|(i, _)| i)
            .collect();
        assert!(
            sample_lines.windows(2).all(|w| w[1] == w[0] + 1),
            "{name} samples are contiguous:\n{text}"
        );
    }
    assert_eq!(
        self_metric(
            &ctx.registry,
            "phoenix_exporter_prometheus_duplicate_series"
        ),
        5.0,
        "the second pid 7 resource: 2 cpu + utilization + memory + threads"
    );
    assert_eq!(
        self_metric(&ctx.registry, "phoenix_exporter_prometheus_series"),
        15.0
    );

    let Some(families) = parse_with_prometheus_client(&text) else {
        return;
    };
    // prometheus_client names a counter family without `_total`.
    let cpu = family(&families, "process_cpu_time_seconds");
    assert_eq!(cpu["type"], "counter");
    assert_eq!(cpu["documentation"], "process.cpu.time help");
    let samples = cpu["samples"].as_array().expect("samples");
    assert_eq!(samples.len(), 6, "3 processes x 2 modes: {cpu}");
    let postgres_user = samples
        .iter()
        .find(|s| {
            s["labels"]["process_pid"] == "42"
                && s["labels"]["cpu_mode"] == "user"
                && s["labels"]["phoenix_pipeline"] == "metrics/baseline"
        })
        .unwrap_or_else(|| panic!("postgres user sample: {cpu}"));
    assert_eq!(postgres_user["name"], "process_cpu_time_seconds_total");
    assert_eq!(postgres_user["value"], 1.5);
    let labels = postgres_user["labels"].as_object().expect("labels");
    let mut names: Vec<&str> = labels.keys().map(String::as_str).collect();
    names.sort_unstable();
    assert_eq!(
        names,
        [
            "cpu_mode",
            "host_name",
            "phoenix_pipeline",
            "process_command_line",
            "process_executable_name",
            "process_pid"
        ]
    );
    assert_eq!(labels["host_name"], "node-1");
    assert_eq!(
        labels["process_command_line"], TRICKY,
        "quotes, backslashes and newlines survive escaping"
    );
    let nginx_user = samples
        .iter()
        .find(|s| s["labels"]["process_pid"] == "7" && s["labels"]["cpu_mode"] == "user")
        .expect("nginx user sample");
    assert_eq!(
        nginx_user["value"], 2.0,
        "the first of two identical series is kept"
    );

    let util = family(&families, "process_cpu_utilization_ratio");
    assert_eq!(util["type"], "gauge");
    assert_eq!(util["samples"].as_array().map(Vec::len), Some(3));
    assert_eq!(util["samples"][0]["value"], 0.125);

    let memory = family(&families, "process_memory_usage_bytes");
    assert_eq!(memory["type"], "gauge");
    let candidate = memory["samples"]
        .as_array()
        .expect("samples")
        .iter()
        .find(|s| s["labels"]["phoenix_pipeline"] == "metrics/candidate")
        .expect("candidate sample");
    assert_eq!(candidate["value"], 1_048_576.0);

    let threads = family(&families, "process_thread_count");
    assert_eq!(threads["type"], "gauge");
    assert_eq!(threads["samples"].as_array().map(Vec::len), Some(3));

    assert!(self_metric(&ctx.registry, "phoenix_exporter_sent_bytes_total") >= text.len() as f64);
    exporter.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn prometheus_shutdown_frees_the_port_for_the_next_config() {
    let port = free_port();
    let config = ExporterConfig::Prometheus(PrometheusConfig {
        endpoint: format!("127.0.0.1:{port}"),
    });
    let first = build(&config, &ctx("prometheus/a")).expect("binds");
    let addr: std::net::SocketAddr = ([127, 0, 0, 1], port).into();
    // Open a keep-alive connection, as Prometheus does between scrapes.
    let client = reqwest::Client::new();
    let response = client
        .get(format!("http://{addr}/metrics"))
        .send()
        .await
        .expect("scrapes");
    assert_eq!(response.status(), 200);

    // While it runs, the port is taken: a second build fails naming it.
    let err = build(&config, &ctx("prometheus/b"))
        .err()
        .expect("the port is busy")
        .to_string();
    assert!(err.contains(&format!("127.0.0.1:{port}")), "{err}");

    let report = first.shutdown(Duration::from_secs(5)).await;
    assert_eq!(report, Default::default());
    // The listener is closed when shutdown returns; on a loaded machine the
    // kernel may take a moment to release the port from the connections the
    // server just closed, so allow a short settling time (not a timing bound:
    // the port must come free, and a busy port would fail every attempt).
    let mut second = None;
    for _ in 0..50 {
        if let Ok(built) = build(&config, &ctx("prometheus/b")) {
            second = Some(built);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let second = second.expect("rebinds after shutdown");
    second.submit(Arc::new(batch("p", 1, vec![process(1, "a", "a", 1.0, 1)])));
    let (_, text) = scrape(addr).await;
    assert!(text.contains("process_pid=\"1\""), "{text}");
    second.shutdown(Duration::from_secs(5)).await;
}
