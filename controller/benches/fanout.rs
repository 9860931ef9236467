//! Fan-out: 1,000 agent sessions (each its own gRPC connection, all in this
//! process) receive one push; how long until every agent's APPLIED is
//! recorded in the store, and what it costs the controller.
//!
//! The controller is the real `phoenix-controller` binary in its own
//! process, so its CPU time and memory (read from /proc/<pid>) are its own,
//! not the fake agents'. "Recorded" is observed in the store itself: a
//! read-only SQLite connection polls the push's targets every millisecond.
//!
//! ```sh
//! cargo bench -p phoenix-controller --bench fanout
//! FANOUT_AGENTS=1000 FANOUT_ROUNDS=30 cargo bench -p phoenix-controller --bench fanout
//! ```

mod sim_agent;

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rusqlite::{Connection, OpenFlags};
use sim_agent::{AGENT_TOKEN, API_TOKEN, SimAgent, cpu_seconds, env_usize, percentile, status_mib};
use tokio::sync::Semaphore;

fn free_port() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").expect("a free port");
    l.local_addr().expect("its address")
}

struct Controller {
    child: Child,
    http: String,
    grpc: SocketAddr,
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

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` runs us once
    // as a smoke test without it.
    let smoke = !std::env::args().any(|a| a == "--bench");
    let agents = env_usize("FANOUT_AGENTS", if smoke { 20 } else { 1000 });
    let rounds = env_usize("FANOUT_ROUNDS", if smoke { 2 } else { 30 });
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

        // Connect every agent (64 handshakes in flight at a time).
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
        loop {
            let online: i64 = db
                .query_row("SELECT COUNT(*) FROM agents WHERE status = 'online'", [], |r| r.get(0))
                .unwrap_or(0);
            if online as usize == agents {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let connect_time = connecting.elapsed();
        let cpu_connect = cpu_seconds(pid) - cpu_before_connect;
        let rss_connected = status_mib(pid, "VmRSS:");

        let template = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs/templates/process-standard-v1.yaml"),
        )
        .expect("template");
        let mut all_recorded = Vec::with_capacity(rounds);
        let mut post_latency = Vec::with_capacity(rounds);
        let mut per_agent = Vec::with_capacity(rounds * agents);
        let mut cpu_per_push = Vec::with_capacity(rounds);
        for round in 0..rounds {
            // A distinct config each round: a new hash, a real rollout.
            let yaml = format!("{template}\n# fan-out round {round}\n");
            let body = serde_json::json!({
                "selector": { "labels": { "bench": "fanout" } },
                "yaml": yaml,
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
            assert_eq!(response.status().as_u16(), 202);
            post_latency.push(started.elapsed().as_secs_f64());
            let created: serde_json::Value =
                serde_json::from_str(&response.text().await.expect("body")).expect("json");
            let id = created["id"].as_str().expect("push id").to_string();
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                let applied = count(
                    &db,
                    "SELECT COUNT(*) FROM push_targets WHERE push_id = ?1 AND state = 'applied'",
                    &id,
                );
                if applied == agents {
                    break;
                }
                assert!(Instant::now() < deadline, "round {round}: only {applied}/{agents} applied");
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
        let rss_after = status_mib(pid, "VmRSS:");
        let threads = std::fs::read_to_string(format!("/proc/{pid}/status"))
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix("Threads:").map(|t| t.trim().to_string()))
            .unwrap_or_default();
        let rss_peak = status_mib(pid, "VmHWM:");
        let sort = |v: &mut Vec<f64>| v.sort_by(|a, b| a.total_cmp(b));
        sort(&mut all_recorded);
        sort(&mut post_latency);
        sort(&mut per_agent);
        sort(&mut cpu_per_push);
        let ms = |s: f64| s * 1000.0;
        println!("fan-out: {agents} agent sessions (one gRPC connection each), {rounds} pushes");
        println!(
            "  connect: {:.2} s for all Hellos recorded; controller CPU {:.2} s",
            connect_time.as_secs_f64(),
            cpu_connect
        );
        println!(
            "  push -> every APPLIED recorded:  p50 {:.0} ms  p99 {:.0} ms  max {:.0} ms",
            ms(percentile(&all_recorded, 50.0)),
            ms(percentile(&all_recorded, 99.0)),
            ms(*all_recorded.last().unwrap_or(&0.0)),
        );
        println!(
            "  push -> one agent's APPLIED recorded (all agents x rounds, ms resolution):  p50 {:.0} ms  p99 {:.0} ms",
            ms(percentile(&per_agent, 50.0)),
            ms(percentile(&per_agent, 99.0)),
        );
        println!(
            "  POST /api/v1/pushes answered (202):  p50 {:.1} ms  p99 {:.1} ms",
            ms(percentile(&post_latency, 50.0)),
            ms(percentile(&post_latency, 99.0)),
        );
        println!(
            "  controller CPU per push:  p50 {:.0} ms  p99 {:.0} ms",
            ms(percentile(&cpu_per_push, 50.0)),
            ms(percentile(&cpu_per_push, 99.0)),
        );
        println!(
            "  controller RSS: {rss_empty:.1} MiB empty, {rss_connected:.1} MiB with {agents} sessions, \
             {rss_after:.1} MiB after the pushes (peak {rss_peak:.1} MiB), {threads} threads"
        );
        let p99 = percentile(&all_recorded, 99.0);
        if !smoke && agents >= 1000 && p99 >= 2.0 {
            println!("  TARGET MISSED: p99 {p99:.2} s >= 2 s");
        }
    });
    drop(controller);
    drop(runtime);
    let _ = std::fs::remove_dir_all(&dir);
}
