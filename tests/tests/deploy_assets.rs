//! The dashboards (`deploy/grafana/*.json`) and alert rules
//! (`deploy/prometheus/**/*.yml`) use only metrics and labels that the real
//! binaries expose: a live `phoenix-controller` and a live `phoenix-agent`
//! connected to it are scraped, and every `phoenix_*` / `process_*` name the
//! assets mention must be on one of the two `/metrics` pages, with the labels
//! the queries select and group by. A renamed metric or a typo in a
//! dashboard fails here instead of drawing an empty panel in production.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use phoenix_tests::fleet::{AGENT_TOKEN, API_TOKEN, start_controller};
use phoenix_tests::{
    Running, TempDir, binary, free_port, http_get, http_request_with, sample, wait_for,
    workspace_root,
};
use regex::Regex;

/// Labels Prometheus adds to every scraped series (target labels), and the
/// bucket label of histograms: never on a `/metrics` page as such.
const TARGET_LABELS: &[&str] = &["job", "instance", "le"];

/// What the two `/metrics` pages expose.
#[derive(Default)]
struct Exposed {
    /// Every sample name (`x_bucket`, `x_sum`, `x_count` for histograms)
    /// and every `# TYPE` name, with the label keys seen on its samples.
    labels: BTreeMap<String, BTreeSet<String>>,
    /// `# TYPE` name → type.
    types: BTreeMap<String, String>,
}

impl Exposed {
    fn add_page(&mut self, page: &str) {
        let sample_re = Regex::new(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([^}]*)\})? ").unwrap();
        let key_re = Regex::new(r#"([a-zA-Z_][a-zA-Z0-9_]*)=""#).unwrap();
        for line in page.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let mut parts = rest.split_whitespace();
                if let (Some(name), Some(kind)) = (parts.next(), parts.next()) {
                    self.types.insert(name.to_string(), kind.to_string());
                    self.labels.entry(name.to_string()).or_default();
                }
                continue;
            }
            if line.starts_with('#') {
                continue;
            }
            let Some(c) = sample_re.captures(line) else {
                continue;
            };
            let keys = self.labels.entry(c[1].to_string()).or_default();
            if let Some(set) = c.get(3) {
                keys.extend(key_re.captures_iter(set.as_str()).map(|k| k[1].to_string()));
            }
        }
    }

    /// The label keys of `name` as exposed, if it is: a sample name, a
    /// counter or gauge, or a histogram's `_bucket`/`_sum`/`_count`.
    fn label_keys(&self, name: &str) -> Option<&BTreeSet<String>> {
        if let Some(keys) = self.labels.get(name) {
            // A histogram's bare name has no samples of its own: the series
            // are its suffixed names.
            if !matches!(
                self.types.get(name).map(String::as_str),
                Some("histogram" | "summary")
            ) {
                return Some(keys);
            }
        }
        ["_bucket", "_sum", "_count"].iter().find_map(|suffix| {
            let base = name.strip_suffix(suffix)?;
            matches!(
                self.types.get(base).map(String::as_str),
                Some("histogram" | "summary")
            )
            .then(|| self.labels.get(name))
            .flatten()
        })
    }
}

/// Every problem in one asset: names neither binary exposes, and labels its
/// queries select, group by or list that their metrics do not have.
fn check_asset(exposed: &Exposed, file: &str, text: &str, expressions: &[String]) -> Vec<String> {
    let name_re = Regex::new(r"\b(?:phoenix|process)_[a-zA-Z0-9_]+").unwrap();
    let selector_re = Regex::new(r"\b((?:phoenix|process)_[a-zA-Z0-9_]+)\s*\{([^}]*)\}").unwrap();
    let matcher_re = Regex::new(r#"([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*""#).unwrap();
    let grouping_re = Regex::new(r"\b(?:by|without)\s*\(([^)]*)\)").unwrap();
    let label_values_re =
        Regex::new(r"label_values\(([^,]+),\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\)").unwrap();
    let mut problems = Vec::new();

    // Every name mentioned anywhere (queries, descriptions, comments).
    let names: BTreeSet<&str> = name_re.find_iter(text).map(|m| m.as_str()).collect();
    for name in &names {
        if exposed.label_keys(name).is_none() {
            problems.push(format!(
                "{file}: {name} is exposed by neither phoenix-agent nor phoenix-controller"
            ));
        }
    }

    let known = |name: &str, key: &str| {
        TARGET_LABELS.contains(&key)
            || exposed
                .label_keys(name)
                .is_some_and(|keys| keys.contains(key))
    };
    for expr in expressions {
        // Label matchers in selectors: metric{key="..."}.
        for c in selector_re.captures_iter(expr) {
            let name = &c[1];
            for m in matcher_re.captures_iter(&c[2]) {
                if exposed.label_keys(name).is_some() && !known(name, &m[1]) {
                    problems.push(format!(
                        "{file}: {name} has no label {:?} (in `{}`)",
                        &m[1],
                        expr.trim()
                    ));
                }
            }
        }
        // Grouping labels: each must be on some metric of the expression
        // (one that exists: an unknown name is reported above already).
        let in_expr: Vec<&str> = name_re
            .find_iter(expr)
            .map(|m| m.as_str())
            .filter(|name| exposed.label_keys(name).is_some())
            .collect();
        if in_expr.is_empty() {
            continue;
        }
        let on_some = |key: &str| in_expr.iter().any(|name| known(name, key));
        for c in grouping_re.captures_iter(expr) {
            for key in c[1].split(',').map(str::trim).filter(|k| !k.is_empty()) {
                if !on_some(key) {
                    problems.push(format!(
                        "{file}: no metric of `{}` has the label {key:?} it groups by",
                        expr.trim()
                    ));
                }
            }
        }
        for c in label_values_re.captures_iter(expr) {
            if !on_some(&c[2]) {
                problems.push(format!(
                    "{file}: label_values asks for {:?}, which {} does not have",
                    &c[2],
                    c[1].trim()
                ));
            }
        }
    }
    problems
}

/// The query strings of a dashboard or rule file: values under `expr`,
/// `query`, `definition` (Grafana) and `series` (promtool tests).
fn expressions(value: &serde_json::Value, out: &mut Vec<String>) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, v) in map {
                match (key.as_str(), v) {
                    ("expr" | "query" | "definition" | "series", serde_json::Value::String(s)) => {
                        out.push(s.clone())
                    }
                    _ => expressions(v, out),
                }
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|v| expressions(v, out)),
        _ => {}
    }
}

/// Every dashboard and rule file: (path relative to the workspace, text,
/// parsed as JSON values).
fn assets() -> Vec<(String, String, serde_json::Value)> {
    let root = workspace_root();
    let mut files = Vec::new();
    collect(&root.join("deploy/grafana"), "json", &mut files);
    collect(&root.join("deploy/prometheus"), "yml", &mut files);
    files.sort();
    let grafana = files
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .count();
    let rules = files.len() - grafana;
    assert!(
        grafana >= 3 && rules >= 1,
        "deploy/grafana and deploy/prometheus hold the dashboards and rules: found {grafana} and {rules}"
    );
    files
        .into_iter()
        .map(|path| {
            let text = std::fs::read_to_string(&path).unwrap();
            let value = if path.extension().is_some_and(|e| e == "json") {
                serde_json::from_str(&text)
                    .unwrap_or_else(|e| panic!("{}: not JSON: {e}", path.display()))
            } else {
                serde_norway::from_str(&text)
                    .unwrap_or_else(|e| panic!("{}: not YAML: {e}", path.display()))
            };
            let rel = path.strip_prefix(&root).unwrap().display().to_string();
            (rel, text, value)
        })
        .collect()
}

fn collect(dir: &Path, ext: &str, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        if path.is_dir() {
            collect(&path, ext, out);
        } else if path.extension().is_some_and(|e| e == ext) {
            out.push(path);
        }
    }
}

fn metrics_page(port: u16) -> String {
    let (status, body) = http_get(port, "/metrics").expect("/metrics answers");
    assert_eq!(status, 200, "{body}");
    body
}

#[test]
fn dashboards_and_alerts_use_only_what_the_binaries_expose() {
    let dir = TempDir::new("deploy-assets");
    let (http, grpc) = (free_port(), free_port());
    let controller = start_controller(&dir.path().join("controller"), http, grpc);

    // Everything that has metrics of its own: an experiment (baseline and a
    // shadow candidate, for phoenix_experiment_ratio), a network exporter
    // with its queue, on disk (its backend is a closed port: failures are what the
    // alerts are about), the Prometheus exporter, and the controller session.
    let telemetry = free_port();
    let config = dir.path().join("agent.yaml");
    std::fs::write(
        &config,
        format!(
            "receivers:
  procfs: {{ collection_interval: 1s }}
processors:
  topk/cpu: {{ k: 3, by: process.cpu.time }}
exporters:
  otlp_grpc:
    endpoint: \"http://127.0.0.1:{closed}\"
    timeout: 1s
    sending_queue: {{ storage: {{ directory: \"{queue}\" }} }}
  prometheus: {{ endpoint: \"127.0.0.1:{prom}\" }}
service:
  pipelines:
    metrics/baseline: {{ receivers: [procfs], exporters: [otlp_grpc, prometheus] }}
    metrics/candidate: {{ receivers: [procfs], processors: [topk/cpu], mode: shadow }}
  telemetry: {{ address: \"127.0.0.1:{telemetry}\" }}
experiment:
  id: deploy-assets
  baseline: metrics/baseline
  critical_processes: [\"^phoenix-agent$\"]
",
            closed = free_port(),
            queue = dir.path().join("queue").display(),
            prom = free_port(),
        ),
    )
    .unwrap();
    let agent = Running::start(
        &binary("phoenix-agent"),
        &[
            "--config",
            config.to_str().unwrap(),
            "--state-dir",
            dir.path().join("agent-state").to_str().unwrap(),
            "--controller",
            &format!("http://127.0.0.1:{grpc}"),
            "--controller-token",
            AGENT_TOKEN,
            "--label",
            "node=deploy-assets",
        ],
    );

    // Both live: the agent connected and compared its candidate, the
    // controller counts it online.
    let agent_page = wait_for(Duration::from_secs(30), || {
        let page = http_get(telemetry, "/metrics")?.1;
        (sample(&page, "phoenix_controller_connected") == Some(1.0)
            && page.contains("phoenix_experiment_ratio{"))
        .then_some(page)
    })
    .expect("the agent connects to the controller and compares its candidate");
    wait_for(Duration::from_secs(30), || {
        let page = http_get(http, "/metrics")?.1;
        (sample(&page, "phoenix_controller_agents{status=\"online\"}") == Some(1.0)).then_some(())
    })
    .expect("the controller counts the agent online");
    // The API's latency histogram has a series once a route has answered.
    let auth = format!("Authorization: Bearer {API_TOKEN}\r\n");
    let (status, body) =
        http_request_with(http, "GET", "/api/v1/agents", &auth, "").expect("API answers");
    assert_eq!(status, 200, "{body}");

    let mut exposed = Exposed::default();
    exposed.add_page(&agent_page);
    exposed.add_page(&metrics_page(telemetry));
    exposed.add_page(&metrics_page(http));
    assert!(
        exposed.label_keys("process_cpu_seconds_total").is_some()
            && exposed
                .label_keys("phoenix_controller_http_request_duration_seconds_bucket")
                .is_some_and(|k| k.contains("route")),
        "both pages were read"
    );

    // The checker catches what it is for, so a pass means something.
    let typo = ["sum by (pipeline) (phoenix_pipeline_seires{pipeline=\"a\"})".to_string()];
    assert_eq!(
        check_asset(&exposed, "self-test", &typo[0], &typo).len(),
        1,
        "a misspelt metric is reported"
    );
    let wrong_label = ["sum by (pipline) (phoenix_pipeline_series{kind=\"a\"})".to_string()];
    assert_eq!(
        check_asset(&exposed, "self-test", &wrong_label[0], &wrong_label).len(),
        2,
        "a label the metric does not have is reported, in a selector and in a grouping"
    );
    let histogram =
        ["histogram_quantile(0.9, sum by (le) (rate(phoenix_receiver_scrape_duration_seconds_bucket[5m])))".to_string()];
    assert!(check_asset(&exposed, "self-test", &histogram[0], &histogram).is_empty());

    let name_re = Regex::new(r"\b(?:phoenix|process)_[a-zA-Z0-9_]+").unwrap();
    let mut problems = Vec::new();
    let mut checked = BTreeSet::new();
    for (file, text, value) in assets() {
        let mut exprs = Vec::new();
        expressions(&value, &mut exprs);
        assert!(!exprs.is_empty(), "{file}: no queries found");
        problems.extend(check_asset(&exposed, &file, &text, &exprs));
        checked.extend(name_re.find_iter(&text).map(|m| m.as_str().to_string()));
    }
    assert!(
        problems.is_empty(),
        "deploy assets use what the binaries do not expose:\n  {}",
        problems.join("\n  ")
    );
    assert!(
        checked.len() >= 30,
        "only {} names checked: {checked:?}",
        checked.len()
    );

    drop(agent);
    drop(controller);
}
