//! The real `phoenix-agent` binary: CLI, validate, run, export, stop.

use std::time::Duration;

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value;
use phoenix_tests::{Running, TempDir, binary, free_port, http_get, wait_for, workspace_root};

fn agent() -> std::path::PathBuf {
    binary("phoenix-agent")
}

#[test]
fn help_and_version_explain_themselves() {
    let out = std::process::Command::new(agent())
        .arg("--help")
        .output()
        .unwrap();
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(help.contains("--config"), "{help}");
    assert!(help.contains("validate"), "{help}");
    assert!(help.contains("Exit codes"), "{help}");
    let out = std::process::Command::new(agent())
        .arg("--version")
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("phoenix-agent "));
}

#[test]
fn shipped_configs_and_templates_validate() {
    let templates = [
        "process-basic-v1",
        "process-standard-v1",
        "process-aggressive-v1",
        "process-critical-v1",
        "process-dynamic-v1",
        "process-pod-v1",
    ]
    .map(|t| format!("templates/{t}.yaml"));
    for name in ["local.yaml", "agent.yaml"]
        .iter()
        .map(|s| s.to_string())
        .chain(templates)
    {
        let path = workspace_root().join("configs").join(&name);
        let out = std::process::Command::new(agent())
            .args(["validate", "--config"])
            .arg(&path)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn validate_reports_every_error_with_location_and_exits_3() {
    let dir = TempDir::new("validate");
    let path = dir.path().join("bad.yaml");
    std::fs::write(
        &path,
        "receivers:\n  procfs:\n    collection_interval: soon\nexporters:\n  console:\nservice:\n  pipelines:\n    metrics/a:\n      receivers: [procfs]\n      exporters: [console, otlp_grpc/missing]\n",
    )
    .unwrap();
    let out = std::process::Command::new(agent())
        .args(["validate", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("2 error(s)"), "{stderr}");
    assert!(stderr.contains("receivers::procfs"), "{stderr}");
    assert!(stderr.contains("invalid duration"), "{stderr}");
    assert!(stderr.contains("otlp_grpc/missing"), "{stderr}");
    assert!(stderr.contains("line 10"), "{stderr}");

    // Running with the same config refuses to start, with the same exit code.
    let out = std::process::Command::new(agent())
        .arg("--config")
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
}

#[test]
fn runs_scrapes_exports_and_stops_cleanly() {
    let dir = TempDir::new("run");
    let out_file = dir.path().join("out").join("metrics.jsonl");
    let telemetry_port = free_port();
    let prometheus_port = free_port();
    let config = format!(
        "receivers:
  procfs:
    collection_interval: 1s
    metrics:
      process.cpu.utilization: {{ enabled: true }}
      process.thread.count: {{ enabled: true }}
exporters:
  file: {{ path: {out} }}
  prometheus: {{ endpoint: 127.0.0.1:{prometheus_port} }}
  console: {{}}
service:
  pipelines:
    metrics/all:
      receivers: [procfs]
      exporters: [file, prometheus, console]
  telemetry:
    address: 127.0.0.1:{telemetry_port}
",
        out = out_file.display()
    );
    let config_path = dir.path().join("agent.yaml");
    std::fs::write(&config_path, config).unwrap();
    let running = Running::start(&agent(), &["--config", config_path.to_str().unwrap()]);
    let agent_pid = running.pid() as i64;

    // Ready once the first scrape is through.
    let ready = wait_for(Duration::from_secs(20), || {
        http_get(telemetry_port, "/readyz").filter(|(s, _)| *s == 200)
    });
    assert!(ready.is_some(), "agent never became ready");

    // Two intervals in the file: the second has CPU utilization.
    let lines = wait_for(Duration::from_secs(20), || {
        let text = std::fs::read_to_string(&out_file).ok()?;
        let lines: Vec<String> = text.lines().map(str::to_string).collect();
        (lines.len() >= 2).then_some(lines)
    })
    .expect("two intervals written to the file exporter");
    let second: ExportMetricsServiceRequest = serde_json::from_str(&lines[1])
        .expect("a line is an OTLP/JSON ExportMetricsServiceRequest");
    let own = second
        .resource_metrics
        .iter()
        .find(|rm| {
            rm.resource.as_ref().is_some_and(|r| {
                r.attributes.iter().any(|kv| {
                    kv.key == "process.pid"
                        && kv.value.as_ref().and_then(|v| v.value.clone())
                            == Some(any_value::Value::IntValue(agent_pid))
                })
            })
        })
        .expect("the agent sees itself");
    let attrs = &own.resource.as_ref().unwrap().attributes;
    for key in [
        "host.name",
        "phoenix.pipeline",
        "process.executable.name",
        "process.creation.time",
    ] {
        assert!(
            attrs.iter().any(|kv| kv.key == key),
            "missing {key}: {attrs:?}"
        );
    }
    let names: Vec<&str> = own.scope_metrics[0]
        .metrics
        .iter()
        .map(|m| m.name.as_str())
        .collect();
    for name in [
        "process.cpu.time",
        "process.memory.usage",
        "process.cpu.utilization",
        "process.thread.count",
    ] {
        assert!(names.contains(&name), "missing {name}: {names:?}");
    }

    // The Prometheus exporter and self-metrics answer.
    let (status, body) = http_get(prometheus_port, "/metrics").expect("prometheus endpoint");
    assert_eq!(status, 200);
    assert!(
        body.contains("process_memory_usage_bytes{"),
        "{}",
        &body[..body.len().min(2000)]
    );
    let (status, body) = http_get(telemetry_port, "/metrics").expect("telemetry endpoint");
    assert_eq!(status, 200);
    for name in [
        "phoenix_receiver_scrape_duration_seconds_bucket",
        "phoenix_exporter_sent_batches_total",
        "process_resident_memory_bytes",
    ] {
        assert!(body.contains(name), "self-metrics lack {name}:\n{body}");
    }
    let (status, body) = http_get(telemetry_port, "/healthz").expect("healthz");
    assert_eq!(status, 200);
    assert!(body.contains("\"status\":\"ok\""), "{body}");

    let output = running.stop(Duration::from_secs(15));
    assert_eq!(
        output.status.code(),
        Some(0),
        "stderr: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("metrics/all"),
        "console shows the pipeline: {stdout}"
    );
}

#[test]
fn a_port_in_use_is_a_clear_runtime_failure() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let dir = TempDir::new("port");
    let path = dir.path().join("agent.yaml");
    std::fs::write(
        &path,
        format!("receivers: {{ procfs: {{}} }}\nexporters: {{ console: {{}} }}\nservice:\n  pipelines:\n    metrics/a: {{ receivers: [procfs], exporters: [console] }}\n  telemetry: {{ address: 127.0.0.1:{port} }}\n"),
    )
    .unwrap();
    // A hang here once stalled CI: the agent must exit on its own.
    let out = Running::start(&agent(), &["--config", path.to_str().unwrap()])
        .wait_exit(Duration::from_secs(30));
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(&format!("127.0.0.1:{port}")), "{stderr}");
}

#[test]
fn the_local_demo_shows_the_variants_side_by_side() {
    // configs/local.yaml as shipped, with a 1 s interval, free ports and a
    // private output file.
    let dir = TempDir::new("demo");
    let telemetry = free_port();
    let prometheus = free_port();
    let text = std::fs::read_to_string(workspace_root().join("configs/local.yaml"))
        .unwrap()
        .replace("collection_interval: 5s", "collection_interval: 1s")
        .replace("127.0.0.1:8888", &format!("127.0.0.1:{telemetry}"))
        .replace("127.0.0.1:9464", &format!("127.0.0.1:{prometheus}"))
        .replace(
            "./out/metrics.jsonl",
            &dir.path().join("m.jsonl").display().to_string(),
        );
    let path = dir.path().join("local.yaml");
    std::fs::write(&path, text).unwrap();
    // A population worth reducing, whatever else the machine runs (a CI
    // container may have a dozen processes: fewer than top-k keeps).
    let _population = phoenix_benches::sleepers::Sleepers::spawn(40);
    let running = Running::start(&agent(), &["--config", path.to_str().unwrap()]);
    // Two intervals: the second has CPU utilization for every process.
    wait_for(Duration::from_secs(20), || {
        let (_, page) = http_get(telemetry, "/metrics")?;
        phoenix_tests::sample(
            &page,
            "phoenix_pipeline_intervals_total{pipeline=\"metrics/baseline\"}",
        )
        .filter(|n| *n >= 2.0)
    })
    .expect("two intervals");
    let (_, page) = http_get(telemetry, "/metrics").unwrap();
    let output = running.stop(Duration::from_secs(15));
    assert_eq!(output.status.code(), Some(0));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let table = stdout
        .split("\n\n")
        .find(|block| block.contains("experiment local-demo") && block.contains("metrics/dynamic"))
        .unwrap_or_else(|| panic!("a side-by-side table: {stdout}"));
    for pipeline in [
        "metrics/baseline",
        "metrics/standard",
        "metrics/aggressive",
        "metrics/dynamic",
    ] {
        assert!(table.contains(pipeline), "{pipeline} in {table}");
    }
    assert!(
        table.contains("baseline\n") || table.contains(" baseline"),
        "{table}"
    );
    assert!(table.contains("shadow"), "{table}");
    // Every candidate is compared with the baseline on /metrics too, and
    // lossy candidates conserve the totals (topk and budget fold into others).
    for candidate in ["metrics/standard", "metrics/aggressive", "metrics/dynamic"] {
        let kpi = |k: &str| {
            phoenix_tests::sample(
                &page,
                &format!("phoenix_experiment_ratio{{pipeline=\"{candidate}\",kpi=\"{k}\"}}"),
            )
            .unwrap_or_else(|| panic!("{candidate} {k} on /metrics"))
        };
        assert!(
            kpi("series_reduction") > 0.0,
            "{candidate} sends fewer series"
        );
        assert_eq!(
            kpi("critical_coverage"),
            1.0,
            "{candidate} keeps every critical process"
        );
    }
    for candidate in ["metrics/aggressive", "metrics/dynamic"] {
        let cpu = phoenix_tests::sample(
            &page,
            &format!(
                "phoenix_experiment_ratio{{pipeline=\"{candidate}\",kpi=\"memory_conservation\"}}"
            ),
        )
        .unwrap();
        assert!(
            (cpu - 1.0).abs() < 1e-9,
            "{candidate} conserves memory: {cpu}"
        );
    }
}
