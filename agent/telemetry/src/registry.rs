//! A small self-metrics registry rendered in the Prometheus text format.
//!
//! Hot paths hold an `Arc` to their counter (an atomic), so recording costs
//! one relaxed atomic add; only the `/metrics` handler walks the registry.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// A monotonically increasing count.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    pub fn inc(&self) {
        self.add(1);
    }
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A value that goes up and down, stored as f64 bits.
#[derive(Debug, Default)]
pub struct Gauge(AtomicU64);

impl Gauge {
    pub fn set(&self, v: f64) {
        self.0.store(v.to_bits(), Ordering::Relaxed);
    }
    pub fn get(&self) -> f64 {
        f64::from_bits(self.0.load(Ordering::Relaxed))
    }
}

/// A fixed-bucket histogram (Prometheus classic histogram).
#[derive(Debug)]
pub struct Histogram {
    bounds: Vec<f64>,
    buckets: Vec<AtomicU64>,
    count: AtomicU64,
    sum_micros: AtomicU64,
}

impl Histogram {
    pub fn new(bounds: &[f64]) -> Self {
        Histogram {
            bounds: bounds.to_vec(),
            buckets: bounds.iter().map(|_| AtomicU64::new(0)).collect(),
            count: AtomicU64::new(0),
            sum_micros: AtomicU64::new(0),
        }
    }

    /// Record one observation (in the histogram's unit, e.g. seconds).
    pub fn observe(&self, v: f64) {
        if let Some(i) = self.bounds.iter().position(|b| v <= *b) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_micros
            .fetch_add((v * 1e6).max(0.0) as u64, Ordering::Relaxed);
    }

    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }
}

/// Buckets for durations in seconds, from 100µs to 10s.
pub const DURATION_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

enum Family {
    Counter(BTreeMap<Vec<String>, Arc<Counter>>),
    Gauge(BTreeMap<Vec<String>, Arc<Gauge>>),
    Histogram(BTreeMap<Vec<String>, Arc<Histogram>>),
}

struct FamilyEntry {
    help: String,
    labels: Vec<String>,
    family: Family,
}

/// The registry. Cheap to clone (shared).
#[derive(Clone, Default)]
pub struct Registry {
    families: Arc<Mutex<BTreeMap<String, FamilyEntry>>>,
}

impl Registry {
    pub fn new() -> Self {
        Self::default()
    }

    fn with_family<T>(
        &self,
        name: &str,
        help: &str,
        labels: &[&str],
        values: &[&str],
        make: impl FnOnce() -> Family,
        pick: impl FnOnce(&mut Family, Vec<String>) -> T,
    ) -> T {
        debug_assert_eq!(labels.len(), values.len(), "label arity for {name}");
        let mut families = self.families.lock().unwrap_or_else(|e| e.into_inner());
        let entry = families
            .entry(name.to_string())
            .or_insert_with(|| FamilyEntry {
                help: help.to_string(),
                labels: labels.iter().map(|s| s.to_string()).collect(),
                family: make(),
            });
        pick(
            &mut entry.family,
            values.iter().map(|s| s.to_string()).collect(),
        )
    }

    /// The counter `name{labels=values}`, created on first use.
    pub fn counter(
        &self,
        name: &str,
        help: &str,
        labels: &[&str],
        values: &[&str],
    ) -> Arc<Counter> {
        self.with_family(
            name,
            help,
            labels,
            values,
            || Family::Counter(BTreeMap::new()),
            |f, key| match f {
                Family::Counter(m) => m.entry(key).or_default().clone(),
                _ => panic!("metric {name} registered with another type"),
            },
        )
    }

    /// The gauge `name{labels=values}`, created on first use.
    pub fn gauge(&self, name: &str, help: &str, labels: &[&str], values: &[&str]) -> Arc<Gauge> {
        self.with_family(
            name,
            help,
            labels,
            values,
            || Family::Gauge(BTreeMap::new()),
            |f, key| match f {
                Family::Gauge(m) => m.entry(key).or_default().clone(),
                _ => panic!("metric {name} registered with another type"),
            },
        )
    }

    /// The histogram `name{labels=values}` with `bounds`, created on first use.
    pub fn histogram(
        &self,
        name: &str,
        help: &str,
        bounds: &[f64],
        labels: &[&str],
        values: &[&str],
    ) -> Arc<Histogram> {
        self.with_family(
            name,
            help,
            labels,
            values,
            || Family::Histogram(BTreeMap::new()),
            |f, key| match f {
                Family::Histogram(m) => m
                    .entry(key)
                    .or_insert_with(|| Arc::new(Histogram::new(bounds)))
                    .clone(),
                _ => panic!("metric {name} registered with another type"),
            },
        )
    }

    /// Forget every series of `name` whose labels match `values` (e.g. an
    /// exporter removed by a reload).
    pub fn remove(&self, name: &str, values: &[&str]) {
        let mut families = self.families.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(entry) = families.get_mut(name) {
            let key: Vec<String> = values.iter().map(|s| s.to_string()).collect();
            match &mut entry.family {
                Family::Counter(m) => drop(m.remove(&key)),
                Family::Gauge(m) => drop(m.remove(&key)),
                Family::Histogram(m) => drop(m.remove(&key)),
            }
        }
    }

    /// Render every family in the Prometheus text exposition format (0.0.4).
    pub fn render(&self) -> String {
        let families = self.families.lock().unwrap_or_else(|e| e.into_inner());
        let mut out = String::with_capacity(4096);
        for (name, entry) in families.iter() {
            let kind = match entry.family {
                Family::Counter(_) => "counter",
                Family::Gauge(_) => "gauge",
                Family::Histogram(_) => "histogram",
            };
            let _ = writeln!(out, "# HELP {name} {}", escape_help(&entry.help));
            let _ = writeln!(out, "# TYPE {name} {kind}");
            match &entry.family {
                Family::Counter(m) => {
                    for (values, c) in m {
                        let labels = label_set(&entry.labels, values, None);
                        let _ = writeln!(out, "{name}{labels} {}", c.get());
                    }
                }
                Family::Gauge(m) => {
                    for (values, g) in m {
                        let labels = label_set(&entry.labels, values, None);
                        let _ = writeln!(out, "{name}{labels} {}", format_float(g.get()));
                    }
                }
                Family::Histogram(m) => {
                    for (values, h) in m {
                        let mut cumulative = 0;
                        for (bound, bucket) in h.bounds.iter().zip(&h.buckets) {
                            cumulative += bucket.load(Ordering::Relaxed);
                            let le = format_float(*bound);
                            let labels = label_set(&entry.labels, values, Some(&le));
                            let _ = writeln!(out, "{name}_bucket{labels} {cumulative}");
                        }
                        let count = h.count();
                        let labels = label_set(&entry.labels, values, Some("+Inf"));
                        let _ = writeln!(out, "{name}_bucket{labels} {count}");
                        let labels = label_set(&entry.labels, values, None);
                        let sum = h.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
                        let _ = writeln!(out, "{name}_sum{labels} {}", format_float(sum));
                        let _ = writeln!(out, "{name}_count{labels} {count}");
                    }
                }
            }
        }
        out
    }
}

fn label_set(names: &[String], values: &[String], le: Option<&str>) -> String {
    if names.is_empty() && le.is_none() {
        return String::new();
    }
    let mut s = String::from("{");
    for (i, (n, v)) in names.iter().zip(values).enumerate() {
        if i > 0 {
            s.push(',');
        }
        let _ = write!(s, "{n}=\"{}\"", escape_label(v));
    }
    if let Some(le) = le {
        if !names.is_empty() {
            s.push(',');
        }
        let _ = write!(s, "le=\"{le}\"");
    }
    s.push('}');
    s
}

/// Escape a label value as the text format requires (`\`, `"`, newline).
pub fn escape_label(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

fn escape_help(v: &str) -> String {
    v.replace('\\', "\\\\").replace('\n', "\\n")
}

/// Format a float the way Prometheus parses it (`+Inf`, `NaN`, plain decimals).
pub fn format_float(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        }
    } else {
        format!("{v}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_gauges_and_histograms() {
        let r = Registry::new();
        r.counter("x_total", "X things.", &["kind"], &["a\"b"])
            .add(3);
        r.gauge("y", "Y.", &[], &[]).set(1.5);
        let h = r.histogram("d_seconds", "D.", &[0.1, 1.0], &[], &[]);
        h.observe(0.05);
        h.observe(0.5);
        h.observe(5.0);
        let text = r.render();
        assert!(text.contains("x_total{kind=\"a\\\"b\"} 3"), "{text}");
        assert!(text.contains("y 1.5"), "{text}");
        assert!(text.contains("d_seconds_bucket{le=\"0.1\"} 1"), "{text}");
        assert!(text.contains("d_seconds_bucket{le=\"1\"} 2"), "{text}");
        assert!(text.contains("d_seconds_bucket{le=\"+Inf\"} 3"), "{text}");
        assert!(text.contains("d_seconds_count 3"), "{text}");
    }

    #[test]
    fn same_labels_share_one_counter() {
        let r = Registry::new();
        let a = r.counter("c_total", "C.", &["k"], &["v"]);
        let b = r.counter("c_total", "C.", &["k"], &["v"]);
        a.inc();
        assert_eq!(b.get(), 1);
        r.remove("c_total", &["v"]);
        assert!(!r.render().contains("c_total{"));
    }
}
