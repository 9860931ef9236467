//! Simulated agents for the controller benches, and the few measuring
//! helpers the benches share. Each agent is its own gRPC connection and
//! `AgentControl/Session` stream (the client generated in `phoenix-proto`,
//! over real TCP), so the controller sees exactly what real agents send.
//!
//! An agent sends a Hello with its labels and answers every `ConfigPush`
//! with `APPLIED` at once (hash, push id, effective hash = the push's
//! hash). With a [`StatsPlan`] it also behaves like an agent running the
//! pushed config: once it runs a config with an `experiment:` block, it
//! sends `IntervalStats` every interval for the `metrics/baseline` and
//! `metrics/aggressive` pipelines, tagged with that experiment's id, and a
//! heartbeat every 10 s.
//!
//! Used by `fanout.rs` and `experiments.rs` (`mod sim_agent;`); each uses
//! part of it. [`opamp`] holds OpAMP agents (WebSocket and HTTP).
#![allow(dead_code)]

pub mod opamp;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use phoenix_controller::experiment::analysis::SplitMix64;
use phoenix_proto::v1::agent_control_client::AgentControlClient;
use phoenix_proto::v1::{
    AgentMessage, Comparison, ConfigPush, ConfigState, ConfigStatus, ControllerMessage, Heartbeat,
    Hello, IntervalStats, PipelineStats, agent_message, controller_message,
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

pub const API_TOKEN: &str = "bench-api-token-0123456789";
pub const AGENT_TOKEN: &str = "bench-agent-token-0123456789";

/// How often a simulated agent with a [`StatsPlan`] sends a heartbeat (the
/// agent's default).
pub const HEARTBEAT_EVERY: Duration = Duration::from_secs(10);

pub fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The `p`th percentile (nearest rank) of sorted values.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// utime + stime, in seconds, of a `/proc/.../stat` text.
pub fn stat_cpu_seconds(stat: &str) -> f64 {
    let Some(end) = stat.rfind(')') else {
        return 0.0;
    };
    let fields: Vec<&str> = stat[end + 2..].split_ascii_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    let hz = phoenix_telemetry::sys::sysconf(libc::_SC_CLK_TCK).unwrap_or(100) as f64;
    (ticks(11) + ticks(12)) / hz
}

/// utime + stime of a process (all its threads, live and exited), in seconds.
pub fn cpu_seconds(pid: u32) -> f64 {
    stat_cpu_seconds(&std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default())
}

/// A `VmRSS:`-style line of /proc/<pid>/status, in MiB.
pub fn status_mib(pid: u32, key: &str) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_ascii_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map(|kb| kb / 1024.0)
        .unwrap_or(0.0)
}

/// What agents with stats do, shared by all of them.
pub struct StatsPlan {
    /// The scrape interval.
    pub interval: Duration,
    /// While true, no stats and no heartbeats are sent.
    pub paused: AtomicBool,
    /// `IntervalStats` messages handed to the gRPC stream.
    pub sent: AtomicU64,
    /// Pushes answered.
    pub pushes: AtomicU64,
}

impl StatsPlan {
    pub fn new(interval: Duration) -> Arc<StatsPlan> {
        Arc::new(StatsPlan {
            interval,
            paused: AtomicBool::new(false),
            sent: AtomicU64::new(0),
            pushes: AtomicU64::new(0),
        })
    }
}

/// One simulated agent.
pub struct SimAgent {
    pub index: usize,
    pub labels: HashMap<String, String>,
    pub stats: Option<Arc<StatsPlan>>,
}

/// The id in a config's `experiment:` block, if it has one.
pub fn experiment_id_of(yaml: &str) -> Option<String> {
    let doc: serde_norway::Value = serde_norway::from_str(yaml).ok()?;
    doc.get("experiment")?
        .get("id")?
        .as_str()
        .map(str::to_string)
}

/// Connect, say Hello, and answer pushes from now on (in spawned tasks).
/// Returns once the session is open: the controller has recorded the Hello.
pub async fn connect(grpc: SocketAddr, agent: SimAgent) -> Result<(), String> {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{grpc}"))
        .map_err(|e| e.to_string())?
        .connect()
        .await
        .map_err(|e| e.to_string())?;
    let mut client = AgentControlClient::new(channel);
    let (tx, rx) = mpsc::channel(16);
    let index = agent.index;
    let hello = Hello {
        instance_id: format!("bench-{index:04}"),
        host_name: format!("bench-{index:04}.local"),
        version: "bench".into(),
        labels: agent.labels,
        capabilities: vec!["config.push".into()],
        config_status: None,
        policy: None,
    };
    tx.send(AgentMessage {
        body: Some(agent_message::Body::Hello(hello)),
    })
    .await
    .map_err(|e| e.to_string())?;
    let mut request = tonic::Request::new(ReceiverStream::new(rx));
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {AGENT_TOKEN}")
            .parse()
            .map_err(|_| "token")?,
    );
    let mut inbound = client
        .session(request)
        .await
        .map_err(|e| e.to_string())?
        .into_inner();
    // The experiment of the config it runs, for the stats.
    let running: Arc<Mutex<Option<String>>> = Arc::default();
    if let Some(plan) = agent.stats.clone() {
        tokio::spawn(send_stats(index, plan, running.clone(), tx.clone()));
    }
    tokio::spawn(async move {
        while let Ok(Some(ControllerMessage { body })) = inbound.message().await {
            if let Some(controller_message::Body::ConfigPush(push)) = body {
                if let Some(plan) = &agent.stats {
                    *running.lock().unwrap_or_else(|e| e.into_inner()) = experiment_of(&push);
                    plan.pushes.fetch_add(1, Ordering::Relaxed);
                }
                let _ = tx
                    .send(AgentMessage {
                        body: Some(agent_message::Body::ConfigStatus(ConfigStatus {
                            hash: push.hash.clone(),
                            state: ConfigState::Applied as i32,
                            error: String::new(),
                            push_id: push.push_id,
                            applied_at_unix_seconds: 1,
                            effective_hash: push.hash,
                        })),
                    })
                    .await;
            }
        }
    });
    Ok(())
}

fn experiment_of(push: &ConfigPush) -> Option<String> {
    if push.revert_to_local || push.yaml.is_empty() {
        return None;
    }
    experiment_id_of(&push.yaml)
}

fn now_unix_nano() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// Every interval, while the agent runs an experiment's config: one
/// `IntervalStats` for the baseline and the aggressive candidate. Every
/// 10 s: a heartbeat.
async fn send_stats(
    index: usize,
    plan: Arc<StatsPlan>,
    running: Arc<Mutex<Option<String>>>,
    tx: mpsc::Sender<AgentMessage>,
) {
    // Seeded per agent: plausible, repeatable noise.
    let mut noise = SplitMix64::from_seed(0x5eed_0000 + index as u64);
    // A host of 100 to 2,000 processes, of which 1 to 4 critical.
    let processes = noise.between(100.0, 2000.0);
    let critical = 1 + noise.next_u64() % 4;
    let mut tick = tokio::time::interval(plan.interval);
    // On a fixed grid, as an agent's scrapes: a late tick does not shift
    // the ones after it.
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut last_heartbeat = tokio::time::Instant::now();
    loop {
        tick.tick().await;
        if plan.paused.load(Ordering::Relaxed) {
            continue;
        }
        if last_heartbeat.elapsed() >= HEARTBEAT_EVERY {
            last_heartbeat = tokio::time::Instant::now();
            let hb = Heartbeat {
                time_unix_nano: now_unix_nano(),
                cpu_seconds_total: 1.0,
                resident_memory_bytes: 27 << 20,
            };
            if tx
                .send(AgentMessage {
                    body: Some(agent_message::Body::Heartbeat(hb)),
                })
                .await
                .is_err()
            {
                return;
            }
        }
        let Some(experiment_id) = running.lock().unwrap_or_else(|e| e.into_inner()).clone() else {
            continue;
        };
        let procs = (processes * noise.between(0.98, 1.02)).round();
        let series = (procs * 9.0) as u64;
        let bytes = (series as f64 * noise.between(90.0, 100.0)) as u64;
        let cpu = 0.0004 + procs * 1.5e-6 * noise.between(0.8, 1.2);
        let baseline = PipelineStats {
            pipeline: "metrics/baseline".into(),
            mode: "export".into(),
            resources: procs as u64,
            series,
            datapoints: series,
            bytes_raw: bytes,
            bytes_gzip: bytes / 9,
            processing_cpu_seconds: cpu,
            series_added: noise.next_u64() % 10,
            series_removed: noise.next_u64() % 10,
            cpu_total: procs * 0.002,
            memory_total: procs * 2.0e7,
            critical_total: critical,
            critical_visible: critical,
            comparison: None,
        };
        let keep = noise.between(0.2, 0.26);
        let cand_series = (series as f64 * keep) as u64;
        let cand_bytes = (bytes as f64 * keep * noise.between(0.95, 1.05)) as u64;
        let reduction = |b: u64, c: u64| 1.0 - c as f64 / b.max(1) as f64;
        let aggressive = PipelineStats {
            pipeline: "metrics/aggressive".into(),
            mode: "shadow".into(),
            resources: (procs * keep) as u64,
            series: cand_series,
            datapoints: cand_series,
            bytes_raw: cand_bytes,
            bytes_gzip: cand_bytes / 8,
            processing_cpu_seconds: cpu * noise.between(1.2, 1.4),
            series_added: noise.next_u64() % 5,
            series_removed: noise.next_u64() % 5,
            cpu_total: procs * 0.002,
            memory_total: procs * 2.0e7,
            critical_total: critical,
            critical_visible: critical,
            comparison: Some(Comparison {
                baseline: "baseline".into(),
                series_reduction: reduction(series, cand_series),
                datapoints_reduction: reduction(series, cand_series),
                bytes_reduction: reduction(bytes, cand_bytes),
                critical_total: critical,
                critical_visible: critical,
                topn_fidelity: 0.9,
                cpu_conservation: 1.0,
                memory_conservation: 1.0,
                losses: Vec::new(),
            }),
        };
        let stats = IntervalStats {
            time_unix_nano: now_unix_nano(),
            receiver: "procfs".into(),
            scraped_resources: procs as u64,
            experiment_id,
            pipelines: vec![baseline, aggressive],
        };
        if tx
            .send(AgentMessage {
                body: Some(agent_message::Body::Stats(stats)),
            })
            .await
            .is_err()
        {
            return;
        }
        plan.sent.fetch_add(1, Ordering::Relaxed);
    }
}
