//! Fan-out: 1,000 agent sessions (each its own connection, all in this
//! process) receive one push; how long until every agent's APPLIED is
//! recorded in the store, and what it costs the controller. Twice in one
//! run, on one controller: 1,000 native Phoenix agents (gRPC streams), then
//! 1,000 OpAMP agents on WebSockets receiving an opaque push, so the two
//! protocols compare as ratios. Then what an OpAMP heartbeat costs the
//! controller, over WebSocket and over HTTP (a poll).
//!
//! The controller is the real `phoenix-controller` binary in its own
//! process, so its CPU time and memory (read from /proc/<pid>) are its own,
//! not the fake agents'. "Recorded" is observed in the store itself: a
//! read-only SQLite connection polls the push's targets every millisecond.
//!
//! ```sh
//! cargo bench -p phoenix-controller --bench fanout
//! FANOUT_AGENTS=1000 FANOUT_ROUNDS=30 FANOUT_BEATS=10 cargo bench -p phoenix-controller --bench fanout
//! ```

mod sim_agent;

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rusqlite::{Connection, OpenFlags};
use sim_agent::{
    AGENT_TOKEN, API_TOKEN, SimAgent, cpu_seconds, env_usize, opamp, percentile, status_mib,
};
use tokio::sync::Semaphore;

fn free_port() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").expect("a free port");
    l.local_addr().expect("its address")
}

struct Controller {
    child: Child,
    http: String,
    grpc: SocketAddr,
    opamp: SocketAddr,
    db: PathBuf,
}

impl Drop for Controller {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_controller(dir: &Path) -> Controller {
    let grpc = free_port();
    let http = free_port();
    let opamp = free_port();
    let templates = Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs/templates");
    let child = Command::new(env!("CARGO_BIN_EXE_phoenix-controller"))
        .arg("--data-dir")
        .arg(dir)
        .arg("--templates-dir")
        .arg(templates)
        .args([
            "--grpc-listen",
            &grpc.to_string(),
            "--http-listen",
            &http.to_string(),
            "--opamp-listen",
            &opamp.to_string(),
            "--opamp-timeout",
            "10m",
        ])
        .args([
            "--agent-timeout",
            "10m",
            "--push-timeout",
            "60s",
            "--log-level",
            "warn",
        ])
        .env("PHOENIX_API_TOKEN", API_TOKEN)
        .env("PHOENIX_AGENT_TOKEN", AGENT_TOKEN)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("phoenix-controller starts");
    Controller {
        child,
        http: format!("http://{http}"),
        grpc,
        opamp,
        db: dir.join("controller.db"),
    }
}

async fn wait_ready(http: &reqwest::Client, base: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Ok(r) = http.get(format!("{base}/readyz")).send().await
            && r.status().is_success()
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the controller did not become ready");
}

fn count(db: &Connection, sql: &str, push_id: &str) -> usize {
    db.query_row(sql, [push_id], |r| r.get::<_, i64>(0))
        .map(|n| n as usize)
        .unwrap_or(0)
}

/// Wait until the store has `n` agents online.
async fn wait_online(db: &Connection, n: usize) {
    loop {
        let online: i64 = db
            .query_row(
                "SELECT COUNT(*) FROM agents WHERE status = 'online'",
                [],
                |r| r.get(0),
            )
            .unwrap_or(0);
        if online as usize == n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The figures of a series of pushes, each sorted.
struct Rounds {
    all_recorded: Vec<f64>,
    post_latency: Vec<f64>,
    per_agent: Vec<f64>,
    cpu_per_push: Vec<f64>,
}

/// `rounds` pushes of a distinct config each (a new hash, a real rollout)
/// to the agents labelled `bench=<label>`, each waited for until every
/// target's APPLIED is recorded.
async fn push_rounds(
    http: &reqwest::Client,
    controller: &Controller,
    db: &Connection,
    agents: usize,
    rounds: usize,
    label: &str,
    config_kind: &str,
) -> Rounds {
    let pid = controller.child.id();
    let template = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs/templates/process-standard-v1.yaml"),
    )
    .expect("template");
    let mut all_recorded = Vec::with_capacity(rounds);
    let mut post_latency = Vec::with_capacity(rounds);
    let mut per_agent = Vec::with_capacity(rounds * agents);
    let mut cpu_per_push = Vec::with_capacity(rounds);
    for round in 0..rounds {
        let yaml = format!("{template}\n# fan-out {label} round {round}\n");
        let body = serde_json::json!({
            "selector": { "labels": { "bench": label } },
            "yaml": yaml,
            "config_kind": config_kind,
            "author": "bench",
        });
        let cpu0 = cpu_seconds(pid);
        let wall0_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_millis() as i64;
        let started = Instant::now();
        let response = http
            .post(format!("{}/api/v1/pushes", controller.http))
            .bearer_auth(API_TOKEN)
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .expect("push sent");
        let status = response.status().as_u16();
        let text = response.text().await.expect("body");
        assert_eq!(status, 202, "{text}");
        post_latency.push(started.elapsed().as_secs_f64());
        let created: serde_json::Value = serde_json::from_str(&text).expect("json");
        let id = created["id"].as_str().expect("push id").to_string();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let applied = count(
                db,
                "SELECT COUNT(*) FROM push_targets WHERE push_id = ?1 AND state = 'applied'",
                &id,
            );
            if applied == agents {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{label} round {round}: only {applied}/{agents} applied"
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        all_recorded.push(started.elapsed().as_secs_f64());
        cpu_per_push.push(cpu_seconds(pid) - cpu0);
        let mut stmt = db
            .prepare("SELECT updated_at FROM push_targets WHERE push_id = ?1")
            .expect("query");
        let times = stmt
            .query_map([&id], |r| r.get::<_, i64>(0))
            .expect("rows")
            .filter_map(Result::ok)
            .map(|t| (t - wall0_ms).max(0) as f64 / 1000.0);
        per_agent.extend(times);
    }
    let sort = |v: &mut Vec<f64>| v.sort_by(|a, b| a.total_cmp(b));
    sort(&mut all_recorded);
    sort(&mut post_latency);
    sort(&mut per_agent);
    sort(&mut cpu_per_push);
    Rounds {
        all_recorded,
        post_latency,
        per_agent,
        cpu_per_push,
    }
}

fn print_rounds(r: &Rounds) {
    let ms = |s: f64| s * 1000.0;
    println!(
        "  push -> every APPLIED recorded:  p50 {:.0} ms  p99 {:.0} ms  max {:.0} ms",
        ms(percentile(&r.all_recorded, 50.0)),
        ms(percentile(&r.all_recorded, 99.0)),
        ms(*r.all_recorded.last().unwrap_or(&0.0)),
    );
    println!(
        "  push -> one agent's APPLIED recorded (all agents x rounds, ms resolution):  p50 {:.0} ms  p99 {:.0} ms",
        ms(percentile(&r.per_agent, 50.0)),
        ms(percentile(&r.per_agent, 99.0)),
    );
    println!(
        "  POST /api/v1/pushes answered (202):  p50 {:.1} ms  p99 {:.1} ms",
        ms(percentile(&r.post_latency, 50.0)),
        ms(percentile(&r.post_latency, 99.0)),
    );
    println!(
        "  controller CPU per push:  p50 {:.0} ms  p99 {:.0} ms",
        ms(percentile(&r.cpu_per_push, 50.0)),
        ms(percentile(&r.cpu_per_push, 99.0)),
    );
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` runs us once
    // as a smoke test without it.
    let smoke = !std::env::args().any(|a| a == "--bench");
    let agents = env_usize("FANOUT_AGENTS", if smoke { 20 } else { 1000 });
    let rounds = env_usize("FANOUT_ROUNDS", if smoke { 2 } else { 30 });
    let beats = env_usize("FANOUT_BEATS", if smoke { 2 } else { 10 });
    let dir = std::env::temp_dir().join(format!("phoenix-fanout-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("bench dir");

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let controller = start_controller(&dir);
    let pid = controller.child.id();
    runtime.block_on(async {
        let http = reqwest::Client::new();
        wait_ready(&http, &controller.http).await;
        let rss_empty = status_mib(pid, "VmRSS:");

        // Connect every native agent (64 handshakes in flight at a time).
        let cpu_before_connect = cpu_seconds(pid);
        let connecting = Instant::now();
        let slots = Arc::new(Semaphore::new(64));
        let mut handles = Vec::with_capacity(agents);
        for i in 0..agents {
            let permit = slots.clone().acquire_owned().await.expect("semaphore");
            let grpc = controller.grpc;
            handles.push(tokio::spawn(async move {
                let agent = SimAgent {
                    index: i,
                    labels: [("bench".to_string(), "fanout".to_string())].into(),
                    stats: None,
                };
                let r = sim_agent::connect(grpc, agent).await;
                drop(permit);
                r
            }));
        }
        for h in handles {
            h.await.expect("agent task").expect("agent connects");
        }
        let db = Connection::open_with_flags(&controller.db, OpenFlags::SQLITE_OPEN_READ_ONLY)
            .expect("store opens read-only");
        // Every Hello recorded.
        wait_online(&db, agents).await;
        let connect_time = connecting.elapsed();
        let cpu_connect = cpu_seconds(pid) - cpu_before_connect;
        let rss_connected = status_mib(pid, "VmRSS:");
        let native = push_rounds(&http, &controller, &db, agents, rounds, "fanout", "phoenix").await;
        let rss_after = status_mib(pid, "VmRSS:");

        // The same over OpAMP: WebSocket agents, an opaque push.
        let cpu_before_ws = cpu_seconds(pid);
        let connecting = Instant::now();
        let ws_fleet = opamp::Fleet::default();
        let mut handles = Vec::with_capacity(agents);
        for i in 0..agents {
            let permit = slots.clone().acquire_owned().await.expect("semaphore");
            let (addr, fleet) = (controller.opamp, ws_fleet.clone());
            handles.push(tokio::spawn(async move {
                let r = opamp::connect_ws(addr, i, ("bench", "opamp"), fleet).await;
                drop(permit);
                r
            }));
        }
        for h in handles {
            h.await.expect("agent task").expect("OpAMP agent connects");
        }
        wait_online(&db, 2 * agents).await;
        let ws_connect_time = connecting.elapsed();
        let cpu_ws_connect = cpu_seconds(pid) - cpu_before_ws;
        let rss_ws = status_mib(pid, "VmRSS:");
        let over_opamp = push_rounds(&http, &controller, &db, agents, rounds, "opamp", "opaque").await;

        // Heartbeats: every WebSocket agent sends `beats`, one round at a
        // time, each answered.
        // (The answers to the pushes' statuses count too: let the last
        // ones arrive, then count from there.)
        tokio::time::sleep(Duration::from_millis(200)).await;
        let answered = ws_fleet.beats_answered.load(std::sync::atomic::Ordering::Relaxed);
        let cpu0 = cpu_seconds(pid);
        let started = Instant::now();
        for round in 1..=beats as u64 {
            ws_fleet.beat.send_replace(round);
            let want = answered + round * agents as u64;
            while ws_fleet.beats_answered.load(std::sync::atomic::Ordering::Relaxed) < want {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
        let ws_beats = (beats * agents) as f64;
        let ws_beat_cpu = (cpu_seconds(pid) - cpu0) / ws_beats;
        let ws_beat_rate = ws_beats / started.elapsed().as_secs_f64();

        // Over HTTP: as many polling agents, a full report then `beats`
        // heartbeats each (64 requests in flight, keep-alive connections).
        let first = 1_000_000;
        let poll_all = |seq: u64| {
            let mut handles = Vec::with_capacity(agents);
            for i in 0..agents {
                let (http, slots, addr) = (http.clone(), slots.clone(), controller.opamp);
                handles.push(tokio::spawn(async move {
                    let _permit = slots.acquire_owned().await.expect("semaphore");
                    opamp::poll(&http, addr, first + i, seq, ("bench", "polling")).await
                }));
            }
            handles
        };
        for h in poll_all(0) {
            assert_eq!(h.await.expect("poll task").expect("report"), 200);
        }
        let cpu0 = cpu_seconds(pid);
        let started = Instant::now();
        for seq in 1..=beats as u64 {
            for h in poll_all(seq) {
                assert_eq!(h.await.expect("poll task").expect("heartbeat"), 200);
            }
        }
        let http_beat_cpu = (cpu_seconds(pid) - cpu0) / ws_beats;
        let http_beat_rate = ws_beats / started.elapsed().as_secs_f64();
        let rss_end = status_mib(pid, "VmRSS:");

        let threads = std::fs::read_to_string(format!("/proc/{pid}/status"))
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix("Threads:").map(|t| t.trim().to_string()))
            .unwrap_or_default();
        let rss_peak = status_mib(pid, "VmHWM:");
        println!("fan-out: {agents} native agent sessions (one gRPC connection each), {rounds} pushes");
        println!(
            "  connect: {:.2} s for all Hellos recorded; controller CPU {:.2} s",
            connect_time.as_secs_f64(),
            cpu_connect
        );
        print_rounds(&native);
        println!("fan-out: {agents} OpAMP agents (one WebSocket each), {rounds} opaque pushes");
        println!(
            "  connect: {:.2} s for all full reports recorded; controller CPU {:.2} s",
            ws_connect_time.as_secs_f64(),
            cpu_ws_connect
        );
        print_rounds(&over_opamp);
        let ratio = |a: &[f64], b: &[f64], p: f64| percentile(a, p) / percentile(b, p);
        println!(
            "  OpAMP / native:  every APPLIED p50 {:.2}x  p99 {:.2}x  CPU per push p50 {:.2}x",
            ratio(&over_opamp.all_recorded, &native.all_recorded, 50.0),
            ratio(&over_opamp.all_recorded, &native.all_recorded, 99.0),
            ratio(&over_opamp.cpu_per_push, &native.cpu_per_push, 50.0),
        );
        // CPU time ticks by 10 ms: a handful of heartbeats may read as 0.
        let cpu_ratio = if ws_beat_cpu > 0.0 {
            format!("{:.2}x", http_beat_cpu / ws_beat_cpu)
        } else {
            "n/a (too few heartbeats to measure)".to_string()
        };
        println!(
            "OpAMP heartbeats ({beats} per agent, {agents} agents): WebSocket {:.0} us CPU each ({:.0}/s), \
             HTTP poll {:.0} us CPU each ({:.0}/s); HTTP / WebSocket CPU {cpu_ratio}",
            ws_beat_cpu * 1e6,
            ws_beat_rate,
            http_beat_cpu * 1e6,
            http_beat_rate,
        );
        println!(
            "  controller RSS: {rss_empty:.1} MiB empty, {rss_connected:.1} MiB with {agents} native sessions, \
             {rss_after:.1} MiB after their pushes, {rss_ws:.1} MiB with {agents} WebSockets more, \
             {rss_end:.1} MiB at the end (peak {rss_peak:.1} MiB), {threads} threads"
        );
        let p99 = percentile(&native.all_recorded, 99.0);
        if !smoke && agents >= 1000 && p99 >= 2.0 {
            println!("  TARGET MISSED: p99 {p99:.2} s >= 2 s");
        }
    });
    drop(controller);
    drop(runtime);
    let _ = std::fs::remove_dir_all(&dir);
}
