//! The running agent: one loop per receiver, the current topology behind an
//! `ArcSwap`, and the one reload path every trigger goes through (file
//! change, SIGHUP, `POST /-/reload`, a controller push).
//!
//! Exactly-once intervals: a receiver loop loads the topology once per tick
//! and runs that tick's scrape through that topology only. A reload swaps
//! the topology between two loads, so a pipeline that exists before and
//! after sees every interval once: no gap, no duplicate.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::accounting::IntervalReport;
use super::topology::{BuildSummary, Topology};
use crate::telemetry::server::Health;
use phoenix_config::{AgentConfig, ComponentId, ConfigErrors, config_hash, short_hash as short};
use phoenix_telemetry::registry::{Counter, Gauge, Registry};

/// How long shutdown, and a reload dropping an exporter, wait for each
/// exporter to deliver what it holds.
pub const DRAIN_DEADLINE: Duration = Duration::from_secs(5);

/// How long a reload waits for ticks still running on the old topology
/// before it closes the exporters that topology alone used.
const IN_FLIGHT_DEADLINE: Duration = Duration::from_secs(30);

/// Where a reload came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ReloadSource {
    /// The agent started with this config.
    Startup,
    /// The config file changed on disk.
    FileChange,
    /// SIGHUP.
    Signal,
    /// `POST /-/reload` (re-reading the file, or with a config in the body).
    Http,
    /// Pushed by a controller.
    Controller,
}

/// Whose config a reload carries: the node's own, or a remote one held to
/// the node's policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Origin {
    Local,
    Remote,
}

/// What a successful reload did.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ReloadOutcome {
    /// SHA-256 of the applied config text, hex.
    pub hash: String,
    /// False when the config was identical to the running one (nothing done).
    pub changed: bool,
    pub summary: BuildSummary,
}

/// Why a reload was refused. The running config is untouched in every case.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReloadError {
    /// The config could not be read (the file vanished, not UTF-8, ...).
    #[error("cannot read the config: {0}")]
    Source(String),
    /// The config does not parse or validate: every error, with locations.
    #[error("invalid config: {0}")]
    Invalid(ConfigErrors),
    /// The config is valid but a component could not be built (a port in
    /// use, an unreadable `/proc`, a CA file missing).
    #[error("config cannot be built: {0}")]
    Build(String),
}

/// A reload asked for by a trigger that cannot call [`Service::reload`]
/// itself (the telemetry server): `text` None means "re-read the config file".
pub struct ReloadRequest {
    pub text: Option<String>,
    pub source: ReloadSource,
    pub reply: tokio::sync::oneshot::Sender<Result<ReloadOutcome, ReloadError>>,
}

/// The applied config, as `/healthz` reports it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AppliedConfig {
    pub hash: String,
    pub applied_at_unix_seconds: u64,
    pub source: ReloadSource,
}

struct ReloadMetrics {
    succeeded: Arc<Counter>,
    failed: Arc<Counter>,
    unchanged: Arc<Counter>,
    last_success: Arc<Gauge>,
}

impl ReloadMetrics {
    fn new(registry: &Registry) -> Self {
        let counter = |result: &str| {
            registry.counter(
                "phoenix_config_reloads_total",
                "Config reloads by result: applied, rejected (invalid or not buildable; the running config stays), unchanged (same hash).",
                &["result"],
                &[result],
            )
        };
        ReloadMetrics {
            succeeded: counter("applied"),
            failed: counter("rejected"),
            unchanged: counter("unchanged"),
            last_success: registry.gauge(
                "phoenix_config_last_applied_timestamp_seconds",
                "When the running config was applied (Unix seconds).",
                &[],
                &[],
            ),
        }
    }
}

struct Shared {
    topology: ArcSwap<Topology>,
    config: ArcSwap<AgentConfig>,
    /// The running config's text, as OpAMP reports it (its effective config).
    text: ArcSwap<String>,
    /// The node's own config (its `--config` file or the embedded default):
    /// its `service.remote_config` policy and telemetry govern every remote
    /// config. Equal to `config` unless a remote config runs.
    local: ArcSwap<AgentConfig>,
    applied: Mutex<AppliedConfig>,
    registry: Registry,
    health: Arc<Health>,
    /// Serialises reloads: one is built and swapped at a time.
    reload_lock: tokio::sync::Mutex<()>,
    loops: Mutex<BTreeMap<ComponentId, JoinHandle<()>>>,
    /// Receivers that have completed a scrape (for readiness).
    scraped: Mutex<BTreeSet<ComponentId>>,
    stop: watch::Sender<bool>,
    metrics: ReloadMetrics,
    /// Every interval's report, for whoever listens (the controller client).
    reports: tokio::sync::broadcast::Sender<Arc<IntervalReport>>,
    /// Bumped by every applied reload, so receiver loops reschedule at once
    /// when their interval changed.
    generation: watch::Sender<u64>,
}

/// The running agent. Cheap to clone: clones share the same agent.
#[derive(Clone)]
pub struct Service {
    shared: Arc<Shared>,
}

impl Service {
    /// Build `config` and start scraping. Must run inside the tokio runtime.
    pub fn start(
        config: AgentConfig,
        text: &str,
        source: ReloadSource,
        registry: &Registry,
        health: Arc<Health>,
    ) -> anyhow::Result<Service> {
        let (topology, _) = Topology::build(&config, None, registry)?;
        let applied = AppliedConfig {
            hash: config_hash(text),
            applied_at_unix_seconds: unix_now(),
            source,
        };
        let metrics = ReloadMetrics::new(registry);
        metrics
            .last_success
            .set(applied.applied_at_unix_seconds as f64);
        set_hash_info(registry, None, &applied.hash);
        health.set_config(&applied.hash, applied.applied_at_unix_seconds);
        let (stop, _) = watch::channel(false);
        let service = Service {
            shared: Arc::new(Shared {
                topology: ArcSwap::from_pointee(topology),
                local: ArcSwap::from_pointee(config.clone()),
                config: ArcSwap::from_pointee(config),
                text: ArcSwap::from_pointee(text.to_string()),
                applied: Mutex::new(applied),
                registry: registry.clone(),
                health,
                reload_lock: tokio::sync::Mutex::new(()),
                loops: Mutex::new(BTreeMap::new()),
                scraped: Mutex::new(BTreeSet::new()),
                stop,
                metrics,
                reports: tokio::sync::broadcast::channel(16).0,
                generation: watch::channel(0).0,
            }),
        };
        service.start_missing_loops();
        Ok(service)
    }

    /// Pipeline ids of the running topology, in config order.
    pub fn pipeline_names(&self) -> Vec<String> {
        self.shared.topology.load().pipeline_names()
    }

    /// The running config.
    pub fn config(&self) -> Arc<AgentConfig> {
        self.shared.config.load_full()
    }

    /// The running config's text (YAML, before `${env:}` substitution).
    pub fn config_text(&self) -> Arc<String> {
        self.shared.text.load_full()
    }

    /// The node's own config, whose policy remote configs are loaded within.
    pub fn local_config(&self) -> Arc<AgentConfig> {
        self.shared.local.load_full()
    }

    /// Set the node's own config when the service started from another one
    /// (a remote config kept in `--state-dir`).
    pub fn set_local_config(&self, local: AgentConfig) {
        self.shared.local.store(Arc::new(local));
    }

    /// Every interval's report from now on (what each pipeline cost and
    /// kept). A slow listener misses reports rather than slowing the agent.
    pub fn subscribe_reports(&self) -> tokio::sync::broadcast::Receiver<Arc<IntervalReport>> {
        self.shared.reports.subscribe()
    }

    /// Hash, time and source of the running config.
    pub fn applied(&self) -> AppliedConfig {
        self.shared
            .applied
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The one reload path: parse, validate and build `text` completely,
    /// then swap it in between two intervals. On any error the running
    /// config stays and the error is logged once, counted, and returned.
    pub async fn reload(
        &self,
        text: &str,
        source: ReloadSource,
    ) -> Result<ReloadOutcome, ReloadError> {
        self.reload_from(text, source, Origin::Local).await
    }

    /// [`Service::reload`] of a remote config (pushed by a controller, or a
    /// `POST /-/reload` body): loaded within the local config's policy, which
    /// it cannot change.
    pub async fn reload_remote(
        &self,
        text: &str,
        source: ReloadSource,
    ) -> Result<ReloadOutcome, ReloadError> {
        self.reload_from(text, source, Origin::Remote).await
    }

    async fn reload_from(
        &self,
        text: &str,
        source: ReloadSource,
        origin: Origin,
    ) -> Result<ReloadOutcome, ReloadError> {
        let _one_at_a_time = self.shared.reload_lock.lock().await;
        let hash = config_hash(text);
        let previous_hash = self.applied().hash;
        if hash == previous_hash {
            self.shared.metrics.unchanged.inc();
            tracing::info!(?source, hash = %short(&hash), "reload: config unchanged");
            return Ok(ReloadOutcome {
                hash,
                changed: false,
                summary: BuildSummary::default(),
            });
        }
        // Parsing is CPU work (bounded by the YAML budget, still
        // milliseconds for a large config): off the async workers, which
        // also serve scrapes, `/metrics` and the controller session.
        let owned = text.to_string();
        let local = self.shared.local.load_full();
        let load = move || match origin {
            Origin::Local => AgentConfig::load(&owned),
            Origin::Remote => AgentConfig::load_remote(&owned, &local),
        };
        let result = match tokio::task::spawn_blocking(load).await {
            Ok(Ok(config)) => self.apply(config, text, &hash, source, origin),
            Ok(Err(errors)) => Err(ReloadError::Invalid(errors)),
            // A loader bug must not take the reload loop down: the config
            // is refused, the running one stays.
            Err(e) if e.is_panic() => Err(ReloadError::Source(
                "the config loader crashed on this input (a bug: please report it)".into(),
            )),
            Err(_) => Err(ReloadError::Source("the agent is shutting down".into())),
        };
        match &result {
            Ok(outcome) => {
                self.shared.metrics.succeeded.inc();
                tracing::info!(
                    ?source,
                    hash = %short(&hash),
                    previous = %short(&previous_hash),
                    summary = ?outcome.summary,
                    "reload applied"
                );
            }
            Err(e) => {
                self.shared.metrics.failed.inc();
                tracing::error!(?source, hash = %short(&hash), "reload rejected, the running config stays: {e}");
            }
        }
        result
    }

    fn apply(
        &self,
        config: AgentConfig,
        text: &str,
        hash: &str,
        source: ReloadSource,
        origin: Origin,
    ) -> Result<ReloadOutcome, ReloadError> {
        let running = self.shared.config.load_full();
        if config.telemetry != running.telemetry {
            tracing::warn!(
                "service.telemetry changed: the telemetry address and log settings apply at the next restart"
            );
        }
        let current = self.shared.topology.load_full();
        let (next, summary) = Topology::build(&config, Some(&current), &self.shared.registry)
            .map_err(|e| ReloadError::Build(format!("{e:#}")))?;
        let dropped = current.exporters_dropped_by(&next);
        // The swap: receiver loops pick the new topology up at their next tick.
        self.shared.topology.store(Arc::new(next));
        let config = Arc::new(config);
        if origin == Origin::Local {
            self.shared.local.store(config.clone());
        }
        self.shared.config.store(config);
        self.shared.text.store(Arc::new(text.to_string()));
        let applied = AppliedConfig {
            hash: hash.to_string(),
            applied_at_unix_seconds: unix_now(),
            source,
        };
        let previous_hash = std::mem::replace(
            &mut *self
                .shared
                .applied
                .lock()
                .unwrap_or_else(|e| e.into_inner()),
            applied.clone(),
        )
        .hash;
        set_hash_info(&self.shared.registry, Some(&previous_hash), hash);
        self.shared
            .metrics
            .last_success
            .set(applied.applied_at_unix_seconds as f64);
        self.shared
            .health
            .set_config(hash, applied.applied_at_unix_seconds);
        self.start_missing_loops();
        self.shared.generation.send_modify(|g| *g += 1);
        // A removed or changed exporter delivers what it holds before it goes.
        // First, ticks still running on the old topology finish (they hold it),
        // so their batches reach the exporter before its queue closes: a
        // pipeline whose exporter changed loses no interval.
        if !dropped.is_empty() {
            tokio::spawn(async move {
                let waited = tokio::time::Instant::now();
                while Arc::strong_count(&current) > 1 && waited.elapsed() < IN_FLIGHT_DEADLINE {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                drop(current);
                for (id, exporter) in dropped {
                    let report = exporter.shutdown(DRAIN_DEADLINE).await;
                    if report.dropped > 0 {
                        tracing::warn!(exporter = %id, flushed = report.flushed, dropped = report.dropped,
                            "exporter removed by a reload: undelivered batches dropped (counted in phoenix_exporter_dropped_batches_total)");
                    } else {
                        tracing::info!(exporter = %id, flushed = report.flushed, "exporter removed by a reload: drained");
                    }
                }
            });
        }
        Ok(ReloadOutcome {
            hash: hash.to_string(),
            changed: true,
            summary,
        })
    }

    /// Start a loop for every receiver of the current topology that has none
    /// (at start, and after a reload added one). Loops of removed receivers
    /// end by themselves at their next tick.
    fn start_missing_loops(&self) {
        let topology = self.shared.topology.load_full();
        let mut loops = self.shared.loops.lock().unwrap_or_else(|e| e.into_inner());
        loops.retain(|_, handle| !handle.is_finished());
        for id in topology.receivers.keys() {
            if !loops.contains_key(id) {
                let shared = self.shared.clone();
                loops.insert(id.clone(), tokio::spawn(receiver_loop(id.clone(), shared)));
            }
        }
    }

    /// Stop every receiver loop, then let every exporter deliver what it
    /// holds (concurrently, within one deadline).
    pub async fn shutdown(&self) {
        // `send_replace`, not `send`: a receiver loop not yet polled has
        // not subscribed, `send` would then fail and leave the value false,
        // and the loop, subscribing afterwards, would run forever.
        self.shared.stop.send_replace(true);
        let loops: Vec<JoinHandle<()>> = {
            let mut loops = self.shared.loops.lock().unwrap_or_else(|e| e.into_inner());
            std::mem::take(&mut *loops).into_values().collect()
        };
        for l in loops {
            let _ = l.await;
        }
        let topology = self.shared.topology.load_full();
        let mut draining = tokio::task::JoinSet::new();
        for (id, slot) in &topology.exporters {
            let (id, exporter) = (id.clone(), slot.exporter.clone());
            draining.spawn(async move { (id, exporter.shutdown(DRAIN_DEADLINE).await) });
        }
        for (id, report) in draining.join_all().await {
            if report.dropped > 0 {
                tracing::warn!(exporter = %id, flushed = report.flushed, dropped = report.dropped,
                    "exporter shut down with undelivered batches");
            } else {
                tracing::debug!(exporter = %id, flushed = report.flushed, "exporter shut down");
            }
        }
    }
}

/// One receiver's ticks: scrape once, run the tick's topology, report.
async fn receiver_loop(id: ComponentId, shared: Arc<Shared>) {
    let mut stop = shared.stop.subscribe();
    let mut reloads = shared.generation.subscribe();
    let mut last_tick: Option<Instant> = None;
    let mut next = Instant::now();
    loop {
        tokio::select! {
            _ = tokio::time::sleep_until(next) => {}
            _ = stop.wait_for(|stopped| *stopped) => return,
            Ok(()) = reloads.changed() => {
                // A reload may have changed the interval: the next tick is
                // one new interval after the last one, not one old interval.
                let Some(interval) = shared.topology.load().receivers.get(&id).map(|s| s.interval) else {
                    if leave(&shared, &id) {
                        return;
                    }
                    continue;
                };
                if let Some(last) = last_tick {
                    next = later(last, interval);
                }
                continue;
            }
        }
        let tick = Instant::now();
        last_tick = Some(tick);
        // The topology of this tick: everything below uses it and only it.
        let topology = shared.topology.load_full();
        let Some(slot) = topology.receivers.get(&id).cloned() else {
            if leave(&shared, &id) {
                return;
            }
            continue;
        };
        let tick_interval = slot.interval;
        let work = topology.clone();
        let receiver = id.clone();
        // Scrape and processing are file and CPU work: off the async threads.
        let report = match tokio::task::spawn_blocking(move || {
            let snapshot = slot
                .scraper
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .scrape();
            work.run_interval(&receiver, &snapshot)
        })
        .await
        {
            Ok(report) => Some(report),
            Err(e) => {
                tracing::error!(receiver = %id, error = %e, "interval failed");
                None
            }
        };
        if let Some(report) = report {
            for e in topology.exporters_of(&id) {
                e.observe_interval(&report);
            }
            mark_scraped(&shared, &id);
            if shared.reports.receiver_count() > 0 {
                let _ = shared.reports.send(Arc::new(report));
            }
        }
        // The interval of the topology running now (a reload during this tick
        // counts). A slow scrape delays the next tick rather than bursting.
        let interval = shared
            .topology
            .load()
            .receivers
            .get(&id)
            .map_or(tick_interval, |s| s.interval);
        next = later(tick, interval);
    }
}

/// Whether the loop of a receiver a reload removed should end. Decided
/// under the loops lock, against the topology of that moment: a reload that
/// added the receiver back in between keeps this loop (it saw the loop
/// still registered and started none), otherwise the loop unregisters
/// itself so the next reload that adds the receiver starts a fresh one.
fn leave(shared: &Shared, id: &ComponentId) -> bool {
    let mut loops = shared.loops.lock().unwrap_or_else(|e| e.into_inner());
    if shared.topology.load().receivers.contains_key(id) {
        return false;
    }
    loops.remove(id);
    tracing::info!(receiver = %id, "receiver removed by a reload: its loop ends");
    true
}

/// `from + interval`, but never in the past and never an overflow (the
/// config bounds the interval; this keeps the loop alive whatever it holds).
fn later(from: Instant, interval: Duration) -> Instant {
    let far = Instant::now() + Duration::from_secs(24 * 3600);
    from.checked_add(interval)
        .unwrap_or(far)
        .max(Instant::now())
}

fn mark_scraped(shared: &Shared, id: &ComponentId) {
    if shared.health.is_ready() {
        return;
    }
    let mut scraped = shared.scraped.lock().unwrap_or_else(|e| e.into_inner());
    scraped.insert(id.clone());
    let topology = shared.topology.load();
    if topology.receivers.keys().all(|r| scraped.contains(r)) {
        shared.health.set_ready();
        tracing::info!("every receiver has scraped: ready");
    }
}

/// `phoenix_config_info{hash}` = 1 for the running config (the previous
/// hash's series is removed).
fn set_hash_info(registry: &Registry, previous: Option<&str>, hash: &str) {
    if let Some(p) = previous {
        registry.remove("phoenix_config_info", &[p]);
    }
    registry
        .gauge(
            "phoenix_config_info",
            "The running config: 1, labelled with its SHA-256 hash.",
            &["hash"],
            &[hash],
        )
        .set(1.0);
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
