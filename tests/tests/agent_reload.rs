//! Live reconfiguration of the real `phoenix-agent`: HTTP, SIGHUP and file
//! triggers, exactly-once intervals across many reloads, refused configs
//! that change nothing, exporters drained when a reload removes them.

use std::path::Path;
use std::time::Duration;

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use phoenix_tests::{
    Running, TempDir, binary, free_port, http_get, http_request, sample, wait_for,
};

/// A config with a 1 s procfs receiver, a file exporter and the given
/// pipelines (YAML lines under `pipelines:`) and extra exporters.
fn config(out: &Path, telemetry: u16, pipelines: &str, extra_exporters: &str) -> String {
    format!(
        "receivers:
  procfs:
    collection_interval: 1s
    metrics:
      process.cpu.utilization: {{ enabled: true }}
processors:
  topk/cpu: {{ k: 3, by: process.cpu.utilization }}
  aggregate/by_name: {{ group_by: [process.executable.name] }}
exporters:
  file: {{ path: {out} }}
  console: {{}}
{extra_exporters}
service:
  pipelines:
{pipelines}
  telemetry:
    address: 127.0.0.1:{telemetry}
    accept_config_body: true
  remote_config:
    file_export_dirs: [\"{dir}\"]
",
        out = out.display(),
        dir = out.parent().unwrap_or(Path::new("/")).display()
    )
}

fn healthz_hash(port: u16) -> String {
    let (status, body) = http_get(port, "/healthz").expect("healthz answers");
    assert_eq!(status, 200);
    let v: serde_json::Value = serde_json::from_str(&body).expect("healthz is JSON");
    v["config"]["hash"]
        .as_str()
        .expect("a config hash")
        .to_string()
}

fn start(dir: &TempDir, text: &str, telemetry: u16, extra: &[&str]) -> Running {
    let path = dir.path().join("agent.yaml");
    std::fs::write(&path, text).unwrap();
    let mut args = vec!["--config", path.to_str().unwrap()];
    args.extend_from_slice(extra);
    let running = Running::start(&binary("phoenix-agent"), &args);
    wait_for(Duration::from_secs(20), || {
        http_get(telemetry, "/readyz").filter(|(s, _)| *s == 200)
    })
    .expect("agent ready");
    running
}

fn post_reload(port: u16, body: &str) -> (u16, serde_json::Value) {
    let (status, text) = http_request(port, "POST", "/-/reload", body).expect("reload answers");
    (
        status,
        serde_json::from_str(&text).unwrap_or(serde_json::Value::Null),
    )
}

/// The `time_unix_nano` of every interval `pipeline` wrote to the file.
fn intervals_of(out: &Path, pipeline: &str) -> Vec<u64> {
    let text = std::fs::read_to_string(out).unwrap_or_default();
    text.lines()
        .filter_map(|l| serde_json::from_str::<ExportMetricsServiceRequest>(l).ok())
        .filter(|req| {
            req.resource_metrics.first().is_some_and(|rm| {
                rm.resource.as_ref().is_some_and(|r| {
                    r.attributes.iter().any(|kv| {
                        kv.key == "phoenix.pipeline"
                            && format!("{:?}", kv.value).contains(&format!("\"{pipeline}\""))
                    })
                })
            })
        })
        .filter_map(|req| {
            let m = req
                .resource_metrics
                .first()?
                .scope_metrics
                .first()?
                .metrics
                .first()?;
            match m.data.as_ref()? {
                opentelemetry_proto::tonic::metrics::v1::metric::Data::Sum(s) => {
                    Some(s.data_points.first()?.time_unix_nano)
                }
                opentelemetry_proto::tonic::metrics::v1::metric::Data::Gauge(g) => {
                    Some(g.data_points.first()?.time_unix_nano)
                }
                _ => None,
            }
        })
        .collect()
}

#[test]
fn fifty_reloads_lose_and_duplicate_no_interval() {
    let dir = TempDir::new("reload-50");
    let out = dir.path().join("metrics.jsonl");
    let port = free_port();
    let a = config(
        &out,
        port,
        "    metrics/keep: { receivers: [procfs], exporters: [file, console] }
    metrics/a: { receivers: [procfs], processors: [topk/cpu], exporters: [file] }",
        "",
    );
    let b = config(
        &out,
        port,
        "    metrics/keep: { receivers: [procfs], exporters: [file, console] }
    metrics/b: { receivers: [procfs], processors: [aggregate/by_name], exporters: [file] }",
        "",
    );
    let invalid = [
        a.replace("k: 3", "k: 0"),
        a.replace("exporters: [file]", "exporters: [file/nope]"),
        "receivers: [".to_string(),
    ];
    let running = start(&dir, &a, port, &[]);
    let mut applied = healthz_hash(port);
    for i in 0..50 {
        if i % 7 == 3 {
            let bad = &invalid[i % invalid.len()];
            let (status, body) = post_reload(port, bad);
            assert_eq!(status, 400, "invalid config {i} refused: {body}");
            assert_eq!(body["status"], "rejected");
            assert!(body["errors"].as_array().is_some_and(|e| !e.is_empty()));
            assert_eq!(
                healthz_hash(port),
                applied,
                "a refused reload changes nothing"
            );
        } else {
            let text = if i % 2 == 0 { &b } else { &a };
            let (status, body) = post_reload(port, text);
            assert_eq!(status, 200, "reload {i}: {body}");
            let hash = body["hash"].as_str().unwrap().to_string();
            assert_eq!(healthz_hash(port), hash);
            applied = hash;
        }
        std::thread::sleep(Duration::from_millis(150));
    }
    let output = running.stop(Duration::from_secs(15));
    assert_eq!(output.status.code(), Some(0));
    // Every interval the agent ran printed one table on the console.
    let stdout = String::from_utf8_lossy(&output.stdout);
    let intervals = stdout.matches("procfs: ").count();
    assert!(intervals >= 6, "about 8 s at 1 s intervals: {intervals}");
    let kept = intervals_of(&out, "metrics/keep");
    assert_eq!(
        kept.len(),
        intervals,
        "the pipeline that survives every reload exports every interval exactly once"
    );
    assert!(
        kept.windows(2).all(|w| w[0] < w[1]),
        "interval timestamps strictly increase: {kept:?}"
    );
}

#[test]
fn sighup_file_change_and_http_each_reload_the_real_binary() {
    let dir = TempDir::new("reload-triggers");
    let out = dir.path().join("metrics.jsonl");
    let port = free_port();
    let state = dir.path().join("state");
    let one = "    metrics/one: { receivers: [procfs], exporters: [file] }";
    let two = "    metrics/two: { receivers: [procfs], exporters: [file] }";
    let three = "    metrics/three: { receivers: [procfs], exporters: [file] }";
    let path = dir.path().join("agent.yaml");
    let running = start(
        &dir,
        &config(&out, port, one, ""),
        port,
        &["--state-dir", state.to_str().unwrap()],
    );
    let first = healthz_hash(port);

    // A file change is picked up by the watcher.
    std::fs::write(&path, config(&out, port, two, "")).unwrap();
    let second = wait_for(Duration::from_secs(10), || {
        Some(healthz_hash(port)).filter(|h| *h != first)
    })
    .expect("the file change was applied");
    wait_for(Duration::from_secs(10), || {
        (!intervals_of(&out, "metrics/two").is_empty()).then_some(())
    })
    .expect("the new pipeline exports at the next interval");

    // SIGHUP re-reads the file (written without waiting for the watcher).
    std::fs::write(&path, config(&out, port, three, "")).unwrap();
    running.signal(libc::SIGHUP);
    let third = wait_for(Duration::from_secs(10), || {
        Some(healthz_hash(port)).filter(|h| *h != second)
    })
    .expect("SIGHUP applied the file");

    // An empty POST re-reads the file too: unchanged.
    let (status, body) = post_reload(port, "");
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "unchanged");
    assert_eq!(body["hash"], third.as_str());

    // A posted config is applied and kept in --state-dir.
    let pushed = config(&out, port, one, "");
    let (status, body) = post_reload(port, &pushed);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "applied");
    let kept = std::fs::read_to_string(state.join("remote-config.yaml")).expect("state kept");
    assert_eq!(kept, pushed);

    // Bad input: not UTF-8 would be 400; a config that cannot be built is 422.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let busy = config(
        &out,
        port,
        "    metrics/one: { receivers: [procfs], exporters: [file, prometheus] }",
        &format!(
            "  prometheus: {{ endpoint: 127.0.0.1:{} }}",
            taken.local_addr().unwrap().port()
        ),
    );
    let before = healthz_hash(port);
    let (status, body) = post_reload(port, &busy);
    assert_eq!(status, 422, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("exporters::prometheus"),
        "{body}"
    );
    assert_eq!(
        healthz_hash(port),
        before,
        "a config that cannot be built changes nothing"
    );

    let (status, page) = http_get(port, "/metrics").unwrap();
    assert_eq!(status, 200);
    assert!(sample(&page, "phoenix_config_reloads_total{result=\"applied\"}").unwrap() >= 3.0);
    assert!(sample(&page, "phoenix_config_reloads_total{result=\"rejected\"}").unwrap() >= 1.0);
    assert_eq!(
        sample(&page, &format!("phoenix_config_info{{hash=\"{before}\"}}")),
        Some(1.0)
    );

    let output = running.stop(Duration::from_secs(15));
    assert_eq!(output.status.code(), Some(0));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("SIGHUP received"), "{stderr}");
    assert!(stderr.contains("config file changed"), "{stderr}");
}

#[test]
fn a_restart_comes_back_with_the_pushed_config() {
    let dir = TempDir::new("reload-restart");
    let out = dir.path().join("metrics.jsonl");
    let port = free_port();
    let state = dir.path().join("state");
    let local = config(
        &out,
        port,
        "    metrics/local: { receivers: [procfs], exporters: [file] }",
        "",
    );
    let running = start(
        &dir,
        &local,
        port,
        &["--state-dir", state.to_str().unwrap()],
    );
    let pushed = config(
        &out,
        port,
        "    metrics/pushed: { receivers: [procfs], exporters: [file] }",
        "",
    );
    let (status, body) = post_reload(port, &pushed);
    assert_eq!(status, 200, "{body}");
    let pushed_hash = body["hash"].as_str().unwrap().to_string();
    assert_eq!(running.stop(Duration::from_secs(15)).status.code(), Some(0));

    let running = start(
        &dir,
        &local,
        port,
        &["--state-dir", state.to_str().unwrap()],
    );
    assert_eq!(
        healthz_hash(port),
        pushed_hash,
        "the kept remote config wins over --config"
    );
    drop(running);
}

#[test]
fn an_exporter_removed_by_a_reload_reports_what_it_could_not_deliver() {
    let dir = TempDir::new("reload-drain");
    let out = dir.path().join("metrics.jsonl");
    let port = free_port();
    // Nothing listens on this port: every export fails and is retried.
    let dead = free_port();
    let remote = format!(
        "  otlp_grpc/dead:
    endpoint: http://127.0.0.1:{dead}
    timeout: 200ms
    retry_on_failure: {{ initial_interval: 100ms, max_interval: 200ms, max_elapsed_time: 30s }}"
    );
    let with_dead = config(
        &out,
        port,
        "    metrics/keep: { receivers: [procfs], exporters: [file] }
    metrics/remote: { receivers: [procfs], exporters: [otlp_grpc/dead] }",
        &remote,
    );
    let without = config(
        &out,
        port,
        "    metrics/keep: { receivers: [procfs], exporters: [file] }",
        "",
    );
    let running = start(&dir, &with_dead, port, &[]);
    // Let a few batches queue up behind the dead endpoint.
    wait_for(Duration::from_secs(20), || {
        let (_, page) = http_get(port, "/metrics")?;
        (sample(
            &page,
            "phoenix_pipeline_intervals_total{pipeline=\"metrics/remote\"}",
        )? >= 3.0)
            .then_some(())
    })
    .expect("three intervals for the remote pipeline");
    let (status, body) = post_reload(port, &without);
    assert_eq!(status, 200, "{body}");

    // Within the drain deadline every batch it was handed is accounted for:
    // delivered (none: nothing listens) or dropped and counted.
    let (submitted, dropped) = wait_for(Duration::from_secs(15), || {
        let (_, page) = http_get(port, "/metrics")?;
        let submitted = sample(
            &page,
            "phoenix_pipeline_intervals_total{pipeline=\"metrics/remote\"}",
        )?;
        let dropped = sample(
            &page,
            "phoenix_exporter_dropped_batches_total{exporter=\"otlp_grpc/dead\"}",
        )?;
        (dropped >= submitted).then_some((submitted, dropped))
    })
    .expect("the removed exporter drained or counted what it held");
    assert_eq!(
        dropped, submitted,
        "nothing silently disappears, nothing counted twice"
    );
    let output = running.stop(Duration::from_secs(15));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("exporter removed by a reload"), "{stderr}");
}

#[test]
fn config_bodies_and_web_pages_are_refused_unless_allowed() {
    let dir = TempDir::new("reload-guard");
    let out = dir.path().join("metrics.jsonl");
    let port = free_port();
    let text = config(
        &out,
        port,
        "    metrics/a: { receivers: [procfs], exporters: [file] }",
        "",
    )
    .replace("    accept_config_body: true\n", "");
    let running = start(&dir, &text, port, &[]);
    let before = healthz_hash(port);
    let other = text.replace("metrics/a", "metrics/b");
    let (status, body) = post_reload(port, &other);
    assert_eq!(status, 403, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("accept_config_body"),
        "{body}"
    );
    // A page in a browser cannot reload the agent, body or not.
    let (status, _) = phoenix_tests::http_request_with(
        port,
        "POST",
        "/-/reload",
        "Origin: http://evil.example\r\n",
        "",
    )
    .expect("answers");
    assert_eq!(status, 403);
    // Re-reading the file stays allowed.
    let (status, body) = post_reload(port, "");
    assert_eq!(status, 200, "{body}");
    assert_eq!(healthz_hash(port), before, "nothing changed");
    drop(running);
}
