//! `prometheus` exporter: serves the latest batch of every pipeline that
//! submits to it on `GET /metrics`, in the text exposition format 0.0.4.
//!
//! Names follow the OpenTelemetry Collector's Prometheus translation (with
//! suffixes): the metric name is split on every character outside
//! `[a-zA-Z0-9:]` and re-joined with `_`, the unit becomes a suffix
//! (`s` → `_seconds`, `By` → `_bytes`, `By/s` → `_bytes_per_second`,
//! annotations such as `{thread}` are dropped), monotonic cumulative sums get
//! `_total` and are counters, gauges with unit `1` get `_ratio`; everything
//! else is a gauge.
//!
//! Resource attributes always become labels (the Collector's
//! `resource_to_telemetry_conversion: enabled`), because Phoenix's resources
//! are processes: without `process_pid` and friends, every process would
//! collapse into one series. Labels are the batch's common attributes, the
//! resource's own, then the point's (a later one wins on an identical key);
//! names are sanitized (each run of characters outside `[a-zA-Z0-9]` → `_`,
//! a leading digit gets `key_`), and attributes whose names sanitize to the
//! same label have their values joined with `;` in key order, as the
//! Collector does. Empty values are left out (Prometheus treats an empty
//! label as an absent one).
//!
//! Delta sums are exposed as gauges without `_total`: the value is the
//! change over the last interval, not a running count, and Prometheus'
//! `rate()` on it would be wrong.
//!
//! Rendering happens on scrape, not on submit, so the pipeline thread only
//! swaps an `Arc`; the rendered text is cached until a new batch arrives.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use anyhow::Context as _;
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::Bytes;
use phoenix_processors::model::{Attributes, Batch, MetricKind, Number, Temporality, Value};
use phoenix_processors::semconv::PHOENIX_PIPELINE;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use phoenix_config::exporter::PrometheusConfig;
use phoenix_config::exporter::prometheus::check_endpoint;

use super::{BoxFuture, BuildContext, ExportBatch, Exporter, ExporterMetrics, ShutdownReport};
use phoenix_telemetry::registry::{Gauge, escape_label, format_float};

/// The content type of the text exposition format 0.0.4.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Build the exporter and start its HTTP server. Fails, naming the
/// endpoint, when the address cannot be bound.
pub fn build(c: &PrometheusConfig, ctx: &BuildContext) -> anyhow::Result<Arc<dyn Exporter>> {
    Ok(PrometheusExporter::start(c, ctx)?)
}

pub struct PrometheusExporter {
    shared: Arc<Shared>,
    local_addr: SocketAddr,
    /// The shutdown signal and the server task; taken by `shutdown`.
    server: Mutex<Option<(oneshot::Sender<()>, JoinHandle<()>)>>,
}

struct Shared {
    /// Latest batch per pipeline. Held only to swap or clone `Arc`s, so
    /// `submit` never waits for a render.
    slots: Mutex<Slots>,
    /// The last rendering, reused until a batch arrives. Held across a
    /// render, which also keeps concurrent scrapes from rendering twice.
    cache: Mutex<Cache>,
    metrics: ExporterMetrics,
    duplicate_series: Arc<Gauge>,
    exposed_series: Arc<Gauge>,
    closed: AtomicBool,
}

#[derive(Default)]
struct Slots {
    by_pipeline: BTreeMap<String, ExportBatch>,
    /// Bumped on every submit; the cache is valid for one generation.
    generation: u64,
}

#[derive(Default)]
struct Cache {
    generation: Option<u64>,
    body: Bytes,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // The guarded data is replaced wholesale, never left half-updated.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl PrometheusExporter {
    /// Bind `c.endpoint` and serve. Must run inside the tokio runtime.
    pub fn start(c: &PrometheusConfig, ctx: &BuildContext) -> anyhow::Result<Arc<Self>> {
        let endpoint = c.endpoint.as_str();
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| {
            anyhow::anyhow!(
                "prometheus exporter {}: must be built inside the tokio runtime",
                ctx.id
            )
        })?;
        check_endpoint(endpoint).map_err(|e| {
            anyhow::anyhow!("prometheus exporter {}: endpoint {endpoint:?}: {e}", ctx.id)
        })?;
        // Bound here (synchronously) so a busy port fails the build, and
        // with it the reload, instead of a background task later.
        let listener = {
            let _entered = runtime.enter();
            bind_reusable(endpoint).with_context(|| {
                format!(
                    "prometheus exporter {}: cannot listen on {endpoint}",
                    ctx.id
                )
            })?
        };
        let local_addr = listener.local_addr()?;

        let labels = &["exporter"];
        let values = &[ctx.id.as_str()];
        let shared = Arc::new(Shared {
            slots: Mutex::new(Slots::default()),
            cache: Mutex::new(Cache::default()),
            metrics: ExporterMetrics::new(ctx),
            duplicate_series: ctx.registry.gauge(
                "phoenix_exporter_prometheus_duplicate_series",
                "Series left out of the last /metrics rendering: same name and labels as an \
                 earlier series, a name taken by a family of another type, or no usable name.",
                labels,
                values,
            ),
            exposed_series: ctx.registry.gauge(
                "phoenix_exporter_prometheus_series",
                "Series in the last /metrics rendering.",
                labels,
                values,
            ),
            closed: AtomicBool::new(false),
        });

        let app = Router::new()
            .route("/metrics", get(serve_metrics))
            .with_state(shared.clone());
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let id = ctx.id.clone();
        let task = runtime.spawn(async move {
            // A dropped sender (exporter dropped without shutdown) also stops it.
            let stop = async {
                let _ = stop_rx.await;
            };
            if let Err(e) = axum::serve(listener, app)
                .with_graceful_shutdown(stop)
                .await
            {
                tracing::warn!(exporter = %id, error = %e, "prometheus exporter server stopped");
            }
        });
        tracing::info!(exporter = %ctx.id, address = %local_addr, "prometheus exporter listening");
        Ok(Arc::new(PrometheusExporter {
            shared,
            local_addr,
            server: Mutex::new(Some((stop_tx, task))),
        }))
    }

    /// The address actually bound (tells the port when the config said 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }
}

impl Exporter for PrometheusExporter {
    fn submit(&self, batch: ExportBatch) {
        if self.shared.closed.load(Ordering::Relaxed) {
            self.shared.metrics.dropped.inc();
            return;
        }
        let key = batch
            .common_attributes
            .get_str(PHOENIX_PIPELINE)
            .unwrap_or_default()
            .to_string();
        let mut slots = lock(&self.shared.slots);
        slots.by_pipeline.insert(key, batch);
        slots.generation += 1;
        drop(slots);
        // For a pull exporter "delivered" means "ready to be scraped".
        self.shared.metrics.sent.inc();
    }

    fn shutdown(&self, deadline: Duration) -> BoxFuture<'_, ShutdownReport> {
        Box::pin(async move {
            self.shared.closed.store(true, Ordering::Relaxed);
            let server = lock(&self.server).take();
            if let Some((stop, mut task)) = server {
                let _ = stop.send(());
                // Graceful: in-flight scrapes finish. A client that keeps a
                // request open past the deadline is cut off, so the port is
                // free for the next config either way.
                if tokio::time::timeout(deadline, &mut task).await.is_err() {
                    task.abort();
                    let _ = task.await;
                }
            }
            lock(&self.shared.slots).by_pipeline.clear();
            *lock(&self.shared.cache) = Cache::default();
            // Nothing is queued: the latest batches are simply not served.
            ShutdownReport::default()
        })
    }
}

/// Listen on `endpoint` with `SO_REUSEADDR` (not `SO_REUSEPORT`): the
/// connections a stopped server closed, left in TIME_WAIT on this port, do
/// not keep the next config (or a restart) from listening again, while a
/// second live listener on the port still fails.
fn bind_reusable(endpoint: &str) -> std::io::Result<tokio::net::TcpListener> {
    use std::net::ToSocketAddrs;
    let address = endpoint.to_socket_addrs()?.next().ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::NotFound,
            "the address resolves to nothing",
        )
    })?;
    let socket = if address.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(address)?;
    socket.listen(1024)
}

async fn serve_metrics(State(shared): State<Arc<Shared>>) -> Response {
    // Rendering a few thousand processes takes milliseconds of CPU: keep it
    // off the async workers.
    let rendered = tokio::task::spawn_blocking({
        let shared = shared.clone();
        move || shared.exposition()
    })
    .await;
    match rendered {
        Ok(body) => {
            shared.metrics.bytes.add(body.len() as u64);
            ([(header::CONTENT_TYPE, CONTENT_TYPE)], body).into_response()
        }
        Err(e) => {
            tracing::warn!(error = %e, "prometheus exporter failed to render /metrics");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

impl Shared {
    /// The current exposition, rendered again only if a batch arrived since.
    fn exposition(&self) -> Bytes {
        let mut cache = lock(&self.cache);
        let (generation, batches) = {
            let slots = lock(&self.slots);
            if cache.generation == Some(slots.generation) {
                return cache.body.clone();
            }
            let batches: Vec<ExportBatch> = slots.by_pipeline.values().cloned().collect();
            (slots.generation, batches)
        };
        // Pre-size from the last rendering: the output is about as big
        // every interval, so this avoids regrowing a multi-megabyte string.
        let mut out = String::with_capacity(cache.body.len() + cache.body.len() / 8 + 1024);
        let refs: Vec<&Batch> = batches.iter().map(|b| b.as_ref()).collect();
        let stats = render(&refs, &mut out);
        self.duplicate_series.set(stats.duplicates as f64);
        self.exposed_series.set(stats.series as f64);
        cache.generation = Some(generation);
        cache.body = Bytes::from(out);
        cache.body.clone()
    }
}

/// What a rendering produced.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RenderStats {
    /// Series written.
    pub series: usize,
    /// Series left out: identical name and labels as an earlier one, a
    /// family name already taken by a family of another type, or a metric
    /// name with no character usable in a Prometheus name.
    pub duplicates: usize,
}

/// How a metric is exposed, which also decides its name suffixes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Shape {
    /// Monotonic cumulative sum: `counter`, `_total`.
    Counter,
    /// OTLP gauge: `gauge`, `_ratio` for unit `1`.
    Gauge,
    /// Non-monotonic or delta sum: `gauge`, no type suffix.
    OtherSum,
}

impl Shape {
    fn of(kind: MetricKind) -> Shape {
        match kind {
            MetricKind::Gauge => Shape::Gauge,
            MetricKind::Sum {
                monotonic: true,
                temporality: Temporality::Cumulative,
            } => Shape::Counter,
            MetricKind::Sum { .. } => Shape::OtherSum,
        }
    }

    fn type_name(self) -> &'static str {
        match self {
            Shape::Counter => "counter",
            Shape::Gauge | Shape::OtherSum => "gauge",
        }
    }
}

struct Family<'a> {
    name: String,
    help: &'a str,
    type_name: &'static str,
    samples: Vec<Sample>,
}

struct Sample {
    /// Rendered label pairs without braces (`a="1",b="2"`); sorted by name,
    /// so equal label sets render to equal strings. Shared by the points of
    /// a resource that have no attributes of their own.
    labels: Rc<str>,
    value: Number,
}

/// One label of a series, before rendering.
struct Label<'a> {
    name: String,
    key: &'a str,
    value: Cow<'a, str>,
}

/// Render `batches` in the text exposition format 0.0.4, appending to `out`.
///
/// Families are sorted by name, each with one `# HELP` and `# TYPE` and all
/// its samples together, sorted by label set. A series identical to an
/// earlier one (two resources with the same attributes) is left out and
/// counted: Prometheus rejects a scrape with duplicate series.
pub fn render(batches: &[&Batch], out: &mut String) -> RenderStats {
    let mut stats = RenderStats::default();
    let no_attributes = Attributes::empty();
    let mut families: Vec<Family<'_>> = Vec::new();
    // Family index by Prometheus name.
    let mut by_name: HashMap<String, usize> = HashMap::new();
    // Name translation per distinct (name, unit, shape): done once per
    // scrape, not once per process. `None` when the name translates to
    // nothing usable or its family has another type.
    let mut by_desc: HashMap<(&str, &str, Shape), Option<usize>> = HashMap::new();

    for batch in batches {
        for resource in &batch.resources {
            let resource_labels = labels_of(&batch.common_attributes, &resource.attributes);
            // Most points have no attributes of their own: render the
            // resource's labels once and share them.
            let mut resource_only: Option<Rc<str>> = None;
            for metric in &resource.metrics {
                let desc = &metric.desc;
                let shape = Shape::of(desc.kind);
                let family = *by_desc
                    .entry((&*desc.name, &*desc.unit, shape))
                    .or_insert_with(|| {
                        let name = shaped_name(&desc.name, &desc.unit, shape);
                        if name.is_empty() {
                            return None;
                        }
                        match by_name.get(&name) {
                            Some(&i) if families[i].type_name == shape.type_name() => Some(i),
                            Some(_) => None,
                            None => {
                                by_name.insert(name.clone(), families.len());
                                families.push(Family {
                                    name,
                                    help: if desc.description.is_empty() {
                                        &desc.name
                                    } else {
                                        &desc.description
                                    },
                                    type_name: shape.type_name(),
                                    samples: Vec::new(),
                                });
                                Some(families.len() - 1)
                            }
                        }
                    });
                let Some(family) = family else {
                    stats.duplicates += metric.points.len();
                    continue;
                };
                let samples = &mut families[family].samples;
                for point in &metric.points {
                    let labels = if point.attributes.is_empty() {
                        resource_only
                            .get_or_insert_with(|| {
                                let refs: Vec<&Label<'_>> = resource_labels.iter().collect();
                                Rc::from(render_labels(&refs))
                            })
                            .clone()
                    } else {
                        let own = labels_of(&no_attributes, &point.attributes);
                        let mut refs: Vec<&Label<'_>> = resource_labels
                            .iter()
                            .filter(|l| point.attributes.get(l.key).is_none())
                            .chain(own.iter())
                            .collect();
                        refs.sort_by(|a, b| (&a.name, a.key).cmp(&(&b.name, b.key)));
                        Rc::from(render_labels(&refs))
                    };
                    samples.push(Sample {
                        labels,
                        value: point.value,
                    });
                }
            }
        }
    }

    families.sort_by(|a, b| a.name.cmp(&b.name));
    for family in &mut families {
        // Stable: among identical series the first submitted stays first.
        family.samples.sort_by(|a, b| a.labels.cmp(&b.labels));
        let before = family.samples.len();
        family
            .samples
            .dedup_by(|later, earlier| later.labels == earlier.labels);
        stats.duplicates += before - family.samples.len();
        stats.series += family.samples.len();

        let name = &family.name;
        let _ = writeln!(out, "# HELP {name} {}", escape_help(family.help));
        let _ = writeln!(out, "# TYPE {name} {}", family.type_name);
        for sample in &family.samples {
            out.push_str(name);
            if !sample.labels.is_empty() {
                out.push('{');
                out.push_str(&sample.labels);
                out.push('}');
            }
            out.push(' ');
            match sample.value {
                Number::Int(v) => {
                    let _ = write!(out, "{v}");
                }
                Number::Double(v) => out.push_str(&format_float(v)),
            }
            out.push('\n');
        }
    }
    stats
}

/// The labels of `common` merged with `own` (own wins on an identical key),
/// sanitized, without empty values, sorted by (label name, key).
fn labels_of<'a>(common: &'a Attributes, own: &'a Attributes) -> Vec<Label<'a>> {
    let mut labels: Vec<Label<'a>> = common
        .iter()
        .filter(|kv| own.get(&kv.key).is_none())
        .chain(own.iter())
        .filter_map(|kv| {
            let value = match &kv.value {
                Value::Str(s) => Cow::Borrowed(&**s),
                Value::Int(v) => Cow::Owned(v.to_string()),
                Value::Double(v) => Cow::Owned(format_float(*v)),
                Value::Bool(v) => Cow::Borrowed(if *v { "true" } else { "false" }),
            };
            if value.is_empty() {
                return None;
            }
            Some(Label {
                name: label_name(&kv.key)?,
                key: &kv.key,
                value,
            })
        })
        .collect();
    labels.sort_by(|a, b| (&a.name, a.key).cmp(&(&b.name, b.key)));
    labels
}

/// `name="value",...` from labels sorted by name; labels sharing a name get
/// their values joined with `;` (in key order).
fn render_labels(sorted: &[&Label<'_>]) -> String {
    let mut out = String::with_capacity(sorted.len() * 32);
    let mut i = 0;
    while i < sorted.len() {
        let name = &sorted[i].name;
        if i > 0 {
            out.push(',');
        }
        out.push_str(name);
        out.push_str("=\"");
        push_escaped(&mut out, &sorted[i].value);
        i += 1;
        while i < sorted.len() && sorted[i].name == *name {
            out.push(';');
            push_escaped(&mut out, &sorted[i].value);
            i += 1;
        }
        out.push('"');
    }
    out
}

fn push_escaped(out: &mut String, value: &str) {
    // Most values need no escaping: skip the copy `escape_label` makes.
    if value.contains(['\\', '"', '\n']) {
        out.push_str(&escape_label(value));
    } else {
        out.push_str(value);
    }
}

fn escape_help(help: &str) -> Cow<'_, str> {
    if help.contains(['\\', '\n']) {
        Cow::Owned(help.replace('\\', "\\\\").replace('\n', "\\n"))
    } else {
        Cow::Borrowed(help)
    }
}

/// A Prometheus label name for an attribute key: each run of characters
/// outside `[a-zA-Z0-9]` becomes one `_` (which also rules out the reserved
/// `__` prefix), a leading digit gets `key_`. `None` when nothing but
/// underscores would remain.
pub fn label_name(key: &str) -> Option<String> {
    let mut name = String::with_capacity(key.len() + 4);
    let mut last_underscore = false;
    for c in key.chars() {
        if c.is_ascii_alphanumeric() {
            name.push(c);
            last_underscore = false;
        } else if !last_underscore {
            name.push('_');
            last_underscore = true;
        }
    }
    if name.bytes().all(|b| b == b'_') {
        return None;
    }
    if name.starts_with(|c: char| c.is_ascii_digit()) {
        name.insert_str(0, "key_");
    }
    Some(name)
}

/// OTLP unit → Prometheus unit word, as the Collector's translator maps them.
fn unit_word(unit: &str) -> &str {
    match unit {
        "d" => "days",
        "h" => "hours",
        "min" => "minutes",
        "s" => "seconds",
        "ms" => "milliseconds",
        "us" => "microseconds",
        "ns" => "nanoseconds",
        "By" => "bytes",
        "KiBy" => "kibibytes",
        "MiBy" => "mebibytes",
        "GiBy" => "gibibytes",
        "TiBy" => "tibibytes",
        "KBy" => "kilobytes",
        "MBy" => "megabytes",
        "GBy" => "gigabytes",
        "TBy" => "terabytes",
        "m" => "meters",
        "V" => "volts",
        "A" => "amperes",
        "J" => "joules",
        "W" => "watts",
        "g" => "grams",
        "Cel" => "celsius",
        "Hz" => "hertz",
        "1" => "",
        "%" => "percent",
        other => other,
    }
}

/// The denominator of `X/unit`, singular (`By/s` → bytes per second).
fn per_unit_word(unit: &str) -> &str {
    match unit {
        "s" => "second",
        "m" => "minute",
        "h" => "hour",
        "d" => "day",
        "w" => "week",
        "mo" => "month",
        "y" => "year",
        other => other,
    }
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == ':'
}

/// Tokens of `s` split on every character outside `[a-zA-Z0-9:]`.
fn tokens(s: &str) -> impl Iterator<Item = &str> {
    s.split(|c: char| !is_name_char(c))
        .filter(|t| !t.is_empty())
}

/// The Prometheus metric name of an OTLP metric, with unit and type
/// suffixes (see the module docs). Empty when nothing usable remains.
pub fn metric_name(name: &str, unit: &str, kind: MetricKind) -> String {
    shaped_name(name, unit, Shape::of(kind))
}

fn shaped_name(name: &str, unit: &str, shape: Shape) -> String {
    let mut parts: Vec<&str> = tokens(name).collect();
    let (main, per) = match unit.split_once('/') {
        Some((main, per)) => (main.trim(), Some(per.trim())),
        None => (unit.trim(), None),
    };
    // `{thread}`-style annotations carry no unit: no suffix.
    let usable = |u: &str| !u.is_empty() && !u.contains(['{', '}']);
    let main_word = if usable(main) { unit_word(main) } else { "" };
    let main_tokens: Vec<&str> = tokens(main_word).collect();
    let per_tokens: Vec<&str> = match per {
        Some(p) if usable(p) => tokens(per_unit_word(p)).collect(),
        _ => Vec::new(),
    };
    let main_suffix = main_tokens.join("_");
    let per_suffix = per_tokens.join("_");
    // Not repeated when the name already says it (`process.uptime.seconds`).
    if !main_suffix.is_empty() && !parts.contains(&main_suffix.as_str()) {
        parts.extend(main_tokens.iter().copied());
    }
    if !per_suffix.is_empty() && !parts.contains(&per_suffix.as_str()) {
        parts.push("per");
        parts.extend(per_tokens.iter().copied());
    }
    match shape {
        Shape::Counter => {
            parts.retain(|t| *t != "total");
            parts.push("total");
        }
        Shape::Gauge if unit == "1" => {
            parts.retain(|t| *t != "ratio");
            parts.push("ratio");
        }
        _ => {}
    }
    let mut out = parts.join("_");
    if out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert(0, '_');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use phoenix_processors::model::{KeyValue, Metric, MetricDesc, Point, Resource};
    use smallvec::smallvec;

    fn name(n: &str, unit: &str, kind: MetricKind) -> String {
        metric_name(n, unit, kind)
    }

    #[test]
    fn names_follow_the_collector_translation() {
        const COUNTER: MetricKind = MetricKind::COUNTER;
        const UP_DOWN_COUNTER: MetricKind = MetricKind::UP_DOWN_COUNTER;
        use MetricKind::Gauge;
        assert_eq!(
            name("process.cpu.time", "s", COUNTER),
            "process_cpu_time_seconds_total"
        );
        assert_eq!(
            name("process.cpu.utilization", "1", Gauge),
            "process_cpu_utilization_ratio"
        );
        assert_eq!(
            name("process.memory.usage", "By", UP_DOWN_COUNTER),
            "process_memory_usage_bytes"
        );
        assert_eq!(
            name("process.thread.count", "{thread}", UP_DOWN_COUNTER),
            "process_thread_count"
        );
        assert_eq!(
            name("process.context_switches", "{context_switch}", COUNTER),
            "process_context_switches_total"
        );
        assert_eq!(
            name("process.disk.io", "By", COUNTER),
            "process_disk_io_bytes_total"
        );
        assert_eq!(name("process.uptime", "s", Gauge), "process_uptime_seconds");
        assert_eq!(
            name("up.seconds", "s", Gauge),
            "up_seconds",
            "unit not repeated"
        );
        assert_eq!(name("requests.total", "1", COUNTER), "requests_total");
        assert_eq!(name("net.io", "By/s", Gauge), "net_io_bytes_per_second");
        assert_eq!(name("packets", "{packet}/s", Gauge), "packets_per_second");
        assert_eq!(
            name("ratio.1", "1", UP_DOWN_COUNTER),
            "ratio_1",
            "no _ratio on sums"
        );
        assert_eq!(name("9lives", "", Gauge), "_9lives");
        assert_eq!(name("a..b__c", "", Gauge), "a_b_c");
        assert_eq!(name("...", "{x}", Gauge), "");
        let delta = MetricKind::Sum {
            monotonic: true,
            temporality: Temporality::Delta,
        };
        assert_eq!(
            name("process.cpu.time", "s", delta),
            "process_cpu_time_seconds"
        );
    }

    #[test]
    fn label_names_are_sanitized() {
        assert_eq!(label_name("process.pid").as_deref(), Some("process_pid"));
        assert_eq!(label_name("k8s.pod.name").as_deref(), Some("k8s_pod_name"));
        assert_eq!(label_name("1st").as_deref(), Some("key_1st"));
        assert_eq!(label_name("__name__").as_deref(), Some("_name_"));
        assert_eq!(label_name("ünïcode").as_deref(), Some("_n_code"));
        assert_eq!(label_name("..."), None);
    }

    #[test]
    fn endpoints_are_checked() {
        let bad = |e: &str| {
            !PrometheusConfig { endpoint: e.into() }
                .validate()
                .is_empty()
        };
        assert!(PrometheusConfig::default().validate().is_empty());
        for ok in ["0.0.0.0:9464", "localhost:0", "[::1]:9464"] {
            assert!(!bad(ok), "{ok}");
        }
        for e in [
            "",
            "9464",
            ":9464",
            "http://x:1",
            "::1:9464",
            "h:99999",
            "h:port",
        ] {
            assert!(bad(e), "{e}");
        }
        let errors = PrometheusConfig {
            endpoint: "h:x".into(),
        }
        .validate();
        assert!(errors[0].to_string().contains("\"h:x\""), "{errors:?}");
    }

    fn kv(k: &str, v: Value) -> KeyValue {
        KeyValue::new(k.into(), v)
    }

    fn s(v: &str) -> Value {
        Value::Str(v.into())
    }

    fn resource(pid: i64, cpu: f64) -> Resource {
        let cpu_desc = Arc::new(MetricDesc {
            name: "process.cpu.time".into(),
            description: "Total CPU seconds.".into(),
            unit: "s".into(),
            kind: MetricKind::COUNTER,
        });
        let threads = Arc::new(MetricDesc {
            name: "process.thread.count".into(),
            description: "".into(),
            unit: "{thread}".into(),
            kind: MetricKind::UP_DOWN_COUNTER,
        });
        Resource {
            identity: None,
            attributes: Attributes::new(vec![
                kv("process.pid", Value::Int(pid)),
                kv("process.owner", s("")),
            ]),
            metrics: vec![
                Metric {
                    desc: cpu_desc,
                    points: smallvec![
                        Point {
                            attributes: Attributes::new(vec![kv("cpu.mode", s("user"))]),
                            start_time_unix_nano: 1,
                            value: Number::Double(cpu),
                        },
                        Point {
                            attributes: Attributes::new(vec![kv("cpu.mode", s("system"))]),
                            start_time_unix_nano: 1,
                            value: Number::Double(0.5),
                        }
                    ],
                },
                Metric {
                    desc: threads,
                    points: smallvec![Point {
                        attributes: Attributes::empty(),
                        start_time_unix_nano: 0,
                        value: Number::Int(4),
                    }],
                },
            ],
        }
    }

    #[test]
    fn renders_grouped_families_and_drops_duplicate_series() {
        let batch = Batch {
            time_unix_nano: 5,
            common_attributes: Attributes::new(vec![
                kv("host.name", s("h")),
                kv("host_name", s("alias")),
            ]),
            resources: vec![resource(2, 1.5), resource(1, 3.0), resource(2, 9.0)],
        };
        let mut out = String::new();
        let stats = render(&[&batch], &mut out);
        assert_eq!(stats.duplicates, 3, "the second pid 2 collides\n{out}");
        assert_eq!(stats.series, 6);
        let expected = "\
# HELP process_cpu_time_seconds_total Total CPU seconds.
# TYPE process_cpu_time_seconds_total counter
process_cpu_time_seconds_total{cpu_mode=\"system\",host_name=\"h;alias\",process_pid=\"1\"} 0.5
process_cpu_time_seconds_total{cpu_mode=\"system\",host_name=\"h;alias\",process_pid=\"2\"} 0.5
process_cpu_time_seconds_total{cpu_mode=\"user\",host_name=\"h;alias\",process_pid=\"1\"} 3
process_cpu_time_seconds_total{cpu_mode=\"user\",host_name=\"h;alias\",process_pid=\"2\"} 1.5
# HELP process_thread_count process.thread.count
# TYPE process_thread_count gauge
process_thread_count{host_name=\"h;alias\",process_pid=\"1\"} 4
process_thread_count{host_name=\"h;alias\",process_pid=\"2\"} 4
";
        assert_eq!(out, expected);
    }

    #[test]
    fn point_attributes_win_and_values_are_escaped() {
        let desc = Arc::new(MetricDesc {
            name: "x".into(),
            description: "line\\one\nline two".into(),
            unit: "".into(),
            kind: MetricKind::Gauge,
        });
        let batch = Batch {
            time_unix_nano: 0,
            common_attributes: Attributes::new(vec![kv("k", s("common"))]),
            resources: vec![Resource {
                identity: None,
                attributes: Attributes::new(vec![kv("cmd", s("a \"b\" \\c\nd"))]),
                metrics: vec![Metric {
                    desc,
                    points: smallvec![Point {
                        attributes: Attributes::new(vec![kv("k", s("point"))]),
                        start_time_unix_nano: 0,
                        value: Number::Double(f64::NAN),
                    }],
                }],
            }],
        };
        let mut out = String::new();
        render(&[&batch], &mut out);
        assert_eq!(
            out,
            "# HELP x line\\\\one\\nline two\n# TYPE x gauge\n\
             x{cmd=\"a \\\"b\\\" \\\\c\\nd\",k=\"point\"} NaN\n"
        );
    }

    #[test]
    fn a_family_name_taken_by_another_type_is_not_mixed() {
        let counter = Arc::new(MetricDesc {
            name: "a".into(),
            description: "".into(),
            unit: "".into(),
            kind: MetricKind::COUNTER,
        });
        let gauge = Arc::new(MetricDesc {
            name: "a.total".into(),
            description: "".into(),
            unit: "".into(),
            kind: MetricKind::Gauge,
        });
        let point = Point {
            attributes: Attributes::empty(),
            start_time_unix_nano: 0,
            value: Number::Int(1),
        };
        let batch = Batch {
            time_unix_nano: 0,
            common_attributes: Attributes::empty(),
            resources: vec![Resource {
                identity: None,
                attributes: Attributes::empty(),
                metrics: vec![
                    Metric {
                        desc: counter,
                        points: smallvec![point.clone()],
                    },
                    Metric {
                        desc: gauge,
                        points: smallvec![point],
                    },
                ],
            }],
        };
        let mut out = String::new();
        let stats = render(&[&batch], &mut out);
        assert_eq!(
            stats,
            RenderStats {
                series: 1,
                duplicates: 1
            }
        );
        assert_eq!(out, "# HELP a_total a\n# TYPE a_total counter\na_total 1\n");
    }
}
