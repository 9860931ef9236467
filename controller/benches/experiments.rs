//! Experiments at scale (issue 6): 100 concurrent experiments over 1,000
//! simulated agents. How long until every experiment runs, the stats ingest
//! rate the controller sustains, how long the analysis takes, and the API's
//! latency while it all runs.
//!
//! The controller runs in this process (`phoenix_controller::start`) on its
//! own tokio runtime, whose threads are all named `phoenix-ctl` (2 workers,
//! at most 8 blocking threads, as `main.rs` builds it), so its CPU time can
//! be told apart from the simulated agents' and the API clients' (runtime
//! `bench-sim`): the per-thread `/proc/self/task/*/stat` of `phoenix-ctl`
//! threads is the controller's, `/proc/self/stat` the whole process.
//!
//! Agent `k` has the label `group=g<k mod E>`; experiment `k` targets
//! `group=g<k>` (10 agents each at 1,000 agents and 100 experiments),
//! baseline against `process-aggressive-v1`, interval 1 s, warm-up 1 s.
//! The agents answer the deploy push with APPLIED and then send, every
//! second, `IntervalStats` for both pipelines tagged with the experiment id
//! of the config they run (see `sim_agent`). Once every experiment
//! measures, the ingest runs alone for a third of that steady window (at
//! most 6 s), then a few clients call the read routes back to back until
//! the first window ends; /metrics and the CPU are read at each boundary.
//! Once every experiment has its verdict the stats stop and the same
//! routes are timed again on a quiet controller. Last,
//! `experiment::analysis::analyse` is timed directly on every experiment's
//! stored rows.
//!
//! Knobs: `EXP_AGENTS` (1000), `EXP_EXPERIMENTS` (100), `EXP_SECONDS` (the
//! measured duration, 20), `EXP_CLIENTS` (4), `EXP_QUIET_SECONDS` (5), and
//! `EXP_HISTORY` (0): that many finished experiments stored before the run,
//! as on a controller that has been running experiments for a while.
//!
//! ```sh
//! cargo bench -p phoenix-controller --bench experiments
//! EXP_HISTORY=10000 cargo bench -p phoenix-controller --bench experiments
//! ```

mod sim_agent;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use phoenix_controller::auth::{AuthSource, Token};
use phoenix_controller::experiment::analysis::Measurement;
use phoenix_controller::experiment::state::State;
use phoenix_controller::store::{ExperimentRecord, Stamp, Store, Transition};
use phoenix_controller::{Settings, now_ms};
use sim_agent::{AGENT_TOKEN, API_TOKEN, SimAgent, StatsPlan, env_usize, percentile};
use tokio::sync::Semaphore;

/// The read routes timed while the experiments run.
const ROUTES: [&str; 4] = [
    "GET /api/v1/experiments",
    "GET /api/v1/experiments/{id}",
    "GET /api/v1/experiments/{id}/results",
    "GET /api/v1/experiments/{id}/report",
];

/// What the controller runtime's threads are called.
const CONTROLLER_THREADS: &str = "phoenix-ctl";

fn definition(k: usize, seconds: usize) -> String {
    format!(
        "name: bench-{k:03}
description: experiments at scale (issue 6), group g{k}
targets: {{ labels: {{ group: g{k} }} }}
candidates: [ {{ template: process-aggressive-v1 }} ]
critical_processes: ['^sshd$']
interval: 1s
warmup: 1s
duration: {seconds}s
criteria: {{ min_series_reduction: 0.5, min_critical_coverage: 1.0, min_topn_fidelity: 0.8 }}
"
    )
}

/// `count` finished experiments before the run, as a controller that has
/// run experiments for a while holds: created through the API (the real
/// definition, composed config and hash), then taken through their
/// lifecycle in the store: targets and a verdict of the real shape, and
/// `cancelled` (which holds no agent).
async fn seed_history(
    http: &reqwest::Client,
    base: &str,
    store: &Arc<Store>,
    count: usize,
    groups: usize,
    seconds: usize,
) {
    let mut members = Vec::with_capacity(groups);
    for g in 0..groups {
        let store = store.clone();
        let labels = [("group".to_string(), format!("g{g}"))].into();
        members.push(
            tokio::task::spawn_blocking(move || store.online_agents(&labels, &[]))
                .await
                .expect("store task")
                .expect("group members"),
        );
    }
    let members = Arc::new(members);
    for h in 0..count {
        let g = h % groups;
        let r = http
            .post(format!("{base}/api/v1/experiments"))
            .bearer_auth(API_TOKEN)
            .header("content-type", "application/yaml")
            .body(definition(g, seconds).replacen("name: bench-", "name: history-", 1))
            .send()
            .await
            .expect("create sent");
        assert_eq!(
            r.status().as_u16(),
            201,
            "history experiment {h} not created"
        );
        let body: serde_json::Value =
            serde_json::from_str(&r.text().await.expect("create answer")).expect("json");
        let id = body["id"].as_str().expect("id").to_string();
        let (store, members) = (store.clone(), members.clone());
        tokio::task::spawn_blocking(move || {
            let record = store.experiment(&id).expect("read").expect("created");
            let (spec, timing) =
                phoenix_controller::experiment::spec_of(&record).expect("stored definition");
            let targets = &members[g];
            // A verdict of the real shape and size.
            let rows: Vec<Measurement> = targets
                .iter()
                .flat_map(|agent| {
                    (0..seconds as i64).flat_map(move |i| {
                        [("baseline", 10_000, None), ("aggressive", 2_300, Some(0.9))].map(
                            |(variant, series, topn_fidelity)| Measurement {
                                variant: variant.into(),
                                agent_id: agent.clone(),
                                interval_ns: i * 1_000_000_000,
                                series: series + (i as u64 % 7) * 10,
                                datapoints: series,
                                bytes: series * 95,
                                bytes_gzip: series * 11,
                                cpu_seconds: 0.003,
                                critical_total: 2,
                                critical_visible: 2,
                                topn_fidelity,
                                // Candidates lose a little to dropped idle processes.
                                cpu_total: Some(if topn_fidelity.is_some() { 1.96 } else { 2.0 }),
                                memory_total: Some(4e9),
                                losses: Vec::new(),
                            },
                        )
                    })
                })
                .collect();
            let report = phoenix_controller::experiment::analysis::analyse(
                &spec,
                &timing,
                targets.len(),
                &id,
                &rows,
                &[],
                &Default::default(),
            );
            store
                .set_experiment_targets(&id, targets)
                .expect("history targets");
            let now = now_ms();
            // Straight from draft: through the active states, the
            // scheduler would act on them.
            let change = Transition {
                from: Some(State::Draft),
                to: State::Cancelled,
                actor: phoenix_controller::store::Actor::system("bench"),
                reason: "history".into(),
                stamp: Stamp {
                    analysis: Some(serde_json::to_string(&report).expect("report json")),
                    finished_at: Some(now),
                    ..Stamp::default()
                },
            };
            store
                .transition(&id, &change, now)
                .expect("history transition");
        })
        .await
        .expect("store task");
    }
}

/// CPU seconds: (whole process, controller threads).
fn cpu_now() -> (f64, f64) {
    let process = sim_agent::stat_cpu_seconds(
        &std::fs::read_to_string("/proc/self/stat").unwrap_or_default(),
    );
    let mut controller = 0.0;
    if let Ok(tasks) = std::fs::read_dir("/proc/self/task") {
        for task in tasks.flatten() {
            let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
            if comm.trim_end() == CONTROLLER_THREADS {
                controller += sim_agent::stat_cpu_seconds(
                    &std::fs::read_to_string(task.path().join("stat")).unwrap_or_default(),
                );
            }
        }
    }
    (process, controller)
}

/// A counter's value in a Prometheus text exposition.
fn counter(text: &str, name_and_labels: &str) -> f64 {
    text.lines()
        .find(|l| {
            l.strip_prefix(name_and_labels)
                .is_some_and(|rest| rest.starts_with(' '))
        })
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

const STATS: &str = "phoenix_controller_agent_messages_total{type=\"stats\"}";
const ROWS: &str = "phoenix_controller_experiment_measurements_total";
const STORE_ERRORS: &str = "phoenix_controller_store_errors_total";

/// One scrape of /metrics: (unix ms, stats messages, measurement rows, store errors).
async fn scrape(http: &reqwest::Client, base: &str) -> Option<(i64, f64, f64, f64)> {
    let text = http
        .get(format!("{base}/metrics"))
        .send()
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    Some((
        now_ms(),
        counter(&text, STATS),
        counter(&text, ROWS),
        counter(&text, STORE_ERRORS),
    ))
}

/// The bench's experiments as stored now.
async fn our_experiments(store: &Arc<Store>, ids: &Arc<Vec<String>>) -> Vec<ExperimentRecord> {
    let (store, ids) = (store.clone(), ids.clone());
    tokio::task::spawn_blocking(move || {
        ids.iter()
            .map(|id| store.experiment(id).expect("read").expect("stored"))
            .collect()
    })
    .await
    .expect("store task")
}

/// The counters and CPU at one moment.
#[derive(Clone)]
struct Mark {
    at_ms: i64,
    /// (whole process, controller threads).
    cpu: (f64, f64),
    stats: f64,
    rows: f64,
}

impl Mark {
    async fn now(http: &reqwest::Client, base: &str) -> Mark {
        let (at_ms, stats, rows, _) = scrape(http, base).await.expect("metrics");
        Mark {
            at_ms,
            cpu: cpu_now(),
            stats,
            rows,
        }
    }
}

/// Every latency of one route, and its failures.
#[derive(Default)]
struct RouteTimes {
    ok: Vec<f64>,
    errors: BTreeMap<u16, usize>,
}

/// `clients` clients call the read routes back to back (round robin over
/// the routes, random experiments) until `stop`.
async fn hammer(
    http: reqwest::Client,
    base: String,
    ids: Arc<Vec<String>>,
    clients: usize,
    stop: Arc<AtomicBool>,
) -> (Vec<RouteTimes>, f64) {
    let started = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..clients {
        let (http, base, ids, stop) = (http.clone(), base.clone(), ids.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let mut times: Vec<RouteTimes> =
                (0..ROUTES.len()).map(|_| RouteTimes::default()).collect();
            let mut n = c;
            let mut seed = 0x1234_5678_u64 + c as u64;
            while !stop.load(Ordering::Relaxed) {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                let id = &ids[(seed % ids.len() as u64) as usize];
                let route = n % ROUTES.len();
                n += 1;
                let path = match route {
                    0 => "/api/v1/experiments".to_string(),
                    1 => format!("/api/v1/experiments/{id}"),
                    2 => format!("/api/v1/experiments/{id}/results"),
                    _ => format!("/api/v1/experiments/{id}/report"),
                };
                let t = Instant::now();
                let status = match http
                    .get(format!("{base}{path}"))
                    .bearer_auth(API_TOKEN)
                    .send()
                    .await
                {
                    Ok(r) => {
                        let status = r.status().as_u16();
                        // The whole body, as a client would read it.
                        match r.bytes().await {
                            Ok(_) => status,
                            Err(_) => 599,
                        }
                    }
                    Err(_) => 599,
                };
                let elapsed = t.elapsed().as_secs_f64();
                if status == 200 {
                    times[route].ok.push(elapsed);
                } else {
                    *times[route].errors.entry(status).or_default() += 1;
                }
            }
            times
        }));
    }
    let mut all: Vec<RouteTimes> = (0..ROUTES.len()).map(|_| RouteTimes::default()).collect();
    for t in tasks {
        for (into, from) in all.iter_mut().zip(t.await.expect("client task")) {
            into.ok.extend(from.ok);
            for (s, n) in from.errors {
                *into.errors.entry(s).or_default() += n;
            }
        }
    }
    for r in &mut all {
        r.ok.sort_by(f64::total_cmp);
    }
    (all, started.elapsed().as_secs_f64())
}

fn print_routes(title: &str, routes: &[RouteTimes], seconds: f64) {
    let total: usize = routes.iter().map(|r| r.ok.len()).sum();
    println!(
        "  {title}: {total} requests in {seconds:.1} s ({:.0}/s)",
        total as f64 / seconds.max(1e-9)
    );
    println!(
        "    {:<40} {:>6} {:>9} {:>9} {:>9}  errors",
        "route", "n", "p50 ms", "p99 ms", "max ms"
    );
    for (name, r) in ROUTES.iter().zip(routes) {
        let ms = |s: f64| s * 1000.0;
        println!(
            "    {:<40} {:>6} {:>9.1} {:>9.1} {:>9.1}  {}",
            name,
            r.ok.len(),
            ms(percentile(&r.ok, 50.0)),
            ms(percentile(&r.ok, 99.0)),
            ms(r.ok.last().copied().unwrap_or(0.0)),
            if r.errors.is_empty() {
                "none".to_string()
            } else {
                format!("{:?}", r.errors)
            }
        );
    }
}

fn file_mib(path: &Path) -> f64 {
    std::fs::metadata(path)
        .map(|m| m.len() as f64 / (1024.0 * 1024.0))
        .unwrap_or(0.0)
}

fn sorted(mut v: Vec<f64>) -> Vec<f64> {
    v.sort_by(f64::total_cmp);
    v
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` runs us once
    // as a smoke test without it.
    let smoke = !std::env::args().any(|a| a == "--bench");
    let agents = env_usize("EXP_AGENTS", if smoke { 20 } else { 1000 }).max(1);
    let experiments = env_usize("EXP_EXPERIMENTS", if smoke { 2 } else { 100 }).clamp(1, agents);
    let seconds = env_usize("EXP_SECONDS", if smoke { 3 } else { 20 }).max(2);
    let clients = env_usize("EXP_CLIENTS", 4).max(1);
    let quiet_seconds = env_usize("EXP_QUIET_SECONDS", if smoke { 1 } else { 5 }).max(1);
    // Finished experiments already in the store before the run.
    let history = env_usize("EXP_HISTORY", 0);

    // The controller's warnings and errors (RUST_LOG to see more).
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    phoenix_controller::raise_fd_limit();

    let dir = std::env::temp_dir().join(format!("phoenix-experiments-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("bench dir");

    // Blocking threads are kept for the whole run, so that the CPU of the
    // controller's threads is all still in /proc/self/task at the end.
    let controller_runtime = tokio::runtime::Builder::new_multi_thread()
        .thread_name(CONTROLLER_THREADS)
        .worker_threads(2)
        .max_blocking_threads(8)
        .thread_keep_alive(Duration::from_secs(3600))
        .enable_all()
        .build()
        .expect("controller runtime");
    let sim_runtime = tokio::runtime::Builder::new_multi_thread()
        .thread_name("bench-sim")
        .worker_threads(2)
        .thread_keep_alive(Duration::from_secs(3600))
        .enable_all()
        .build()
        .expect("simulation runtime");

    let settings = Settings {
        grpc_listen: "127.0.0.1:0".parse().expect("address"),
        http_listen: "127.0.0.1:0".parse().expect("address"),
        opamp_listen: None,
        opamp_timeout: phoenix_controller::DEFAULT_OPAMP_TIMEOUT,
        data_dir: dir.clone(),
        templates_dir: Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs/templates"),
        api_auth: AuthSource::SingleToken(Token::new(API_TOKEN).expect("token")),
        agent_token: Token::new(AGENT_TOKEN).expect("token"),
        api_read_open: false,
        tls: None,
        agent_timeout: Duration::from_secs(600),
        push_timeout: Duration::from_secs(60),
        experiment_retention: phoenix_controller::DEFAULT_EXPERIMENT_RETENTION,
        audit_export: None,
        audit_retention: None,
    };
    let running = controller_runtime
        .block_on(phoenix_controller::start(settings))
        .expect("the controller starts");
    let base = format!("http://{}", running.http_addr);
    let grpc = running.grpc_addr;
    let store = running.shared.store.clone();
    let db = dir.join("controller.db");

    sim_runtime.block_on(async {
        let http = reqwest::Client::new();
        let cpu_begin = cpu_now();

        // 1. Connect every agent (64 handshakes in flight at a time).
        let plan = StatsPlan::new(Duration::from_secs(1));
        let connecting = Instant::now();
        let slots = Arc::new(Semaphore::new(64));
        let mut handles = Vec::with_capacity(agents);
        for i in 0..agents {
            let permit = slots.clone().acquire_owned().await.expect("semaphore");
            let agent = SimAgent {
                index: i,
                labels: [("group".to_string(), format!("g{}", i % experiments))].into(),
                stats: Some(plan.clone()),
            };
            handles.push(tokio::spawn(async move {
                let r = sim_agent::connect(grpc, agent).await;
                drop(permit);
                r
            }));
        }
        for h in handles {
            h.await.expect("agent task").expect("agent connects");
        }
        let connect_s = connecting.elapsed().as_secs_f64();
        let cpu_connected = cpu_now();

        // 1b. A store with a past, if asked.
        let mut history_s = None;
        if history > 0 {
            let t = Instant::now();
            seed_history(&http, &base, &store, history, experiments, seconds).await;
            history_s = Some(t.elapsed().as_secs_f64());
        }

        // 2. Create every experiment.
        let mut ids = Vec::with_capacity(experiments);
        let mut create_latency = Vec::with_capacity(experiments);
        for k in 0..experiments {
            let t = Instant::now();
            let r = http
                .post(format!("{base}/api/v1/experiments"))
                .bearer_auth(API_TOKEN)
                .header("content-type", "application/yaml")
                .body(definition(k, seconds))
                .send()
                .await
                .expect("create sent");
            let status = r.status().as_u16();
            let body: serde_json::Value =
                serde_json::from_str(&r.text().await.expect("create answer")).expect("json");
            create_latency.push(t.elapsed().as_secs_f64());
            assert_eq!(status, 201, "experiment {k} not created: {body}");
            ids.push(body["id"].as_str().expect("id").to_string());
        }
        let create_latency = sorted(create_latency);
        let ids = Arc::new(ids);

        // 3. Start them all, then wait for every one to run.
        let metrics_before = scrape(&http, &base).await.expect("metrics");
        let cpu_start = cpu_now();
        let start_ms = now_ms();
        let starting = Instant::now();
        let mut start_latency = Vec::with_capacity(experiments);
        for id in ids.iter() {
            let t = Instant::now();
            let r = http
                .post(format!("{base}/api/v1/experiments/{id}/start"))
                .bearer_auth(API_TOKEN)
                .send()
                .await
                .expect("start sent");
            let status = r.status().as_u16();
            let body = r.text().await.unwrap_or_default();
            start_latency.push(t.elapsed().as_secs_f64());
            assert_eq!(status, 200, "experiment {id} not started: {body}");
        }
        let start_latency = sorted(start_latency);
        let started_all_s = starting.elapsed().as_secs_f64();
        let deadline = Instant::now() + Duration::from_secs(120);
        let records = loop {
            let list = our_experiments(&store, &ids).await;
            let waiting = list
                .iter()
                .filter(|e| matches!(e.state, State::Pending | State::Deploying))
                .count();
            if waiting == 0 {
                break list;
            }
            assert!(
                Instant::now() < deadline,
                "{waiting} experiments still pending or deploying after 120 s"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let all_running_s = starting.elapsed().as_secs_f64();
        let cpu_all_running = cpu_now();
        let not_running: Vec<String> = records
            .iter()
            .filter(|e| e.running_at.is_none())
            .map(|e| format!("{} {}: {}", e.id, e.state, e.reason))
            .collect();
        for e in &not_running {
            println!("  NOT RUNNING: {e}");
        }
        let to_running = sorted(
            records
                .iter()
                .filter_map(|e| e.running_at)
                .map(|t| (t - start_ms) as f64 / 1000.0)
                .collect(),
        );
        // Every experiment measures in [measure_from, ends_at]: the steady
        // window is when all of them do.
        let window_from = records.iter().filter_map(|e| e.measure_from).max();
        let window_to = records.iter().filter_map(|e| e.ends_at).min();
        let last_end = records.iter().filter_map(|e| e.ends_at).max();

        // 4. While they all measure: first the ingest alone, then with the
        // API clients. /metrics and the CPU are read at each boundary.
        let sleep_until = |at: i64| tokio::time::sleep(Duration::from_millis((at - now_ms()).max(0) as u64));
        let steady = match (window_from, window_to) {
            (Some(from), Some(to)) if to - from >= 2_000 => Some((from, to)),
            _ => None,
        };
        let (ingest_only, with_clients, busy_routes, busy_seconds) = match steady {
            Some((from, to)) => {
                sleep_until(from).await;
                let a = Mark::now(&http, &base).await;
                sleep_until(from + ((to - from) / 3).min(6_000)).await;
                let b = Mark::now(&http, &base).await;
                let stop = Arc::new(AtomicBool::new(false));
                let clients_task =
                    tokio::spawn(hammer(http.clone(), base.clone(), ids.clone(), clients, stop.clone()));
                sleep_until(to).await;
                let c = Mark::now(&http, &base).await;
                stop.store(true, Ordering::Relaxed);
                let (routes, seconds) = clients_task.await.expect("clients");
                (Some((a, b.clone())), Some((b, c)), routes, seconds)
            }
            None => {
                // The starts were spread over more than a window: time
                // the API until the last window ends, and no rate.
                let stop = Arc::new(AtomicBool::new(false));
                let clients_task =
                    tokio::spawn(hammer(http.clone(), base.clone(), ids.clone(), clients, stop.clone()));
                sleep_until(last_end.unwrap_or_else(now_ms)).await;
                stop.store(true, Ordering::Relaxed);
                let (routes, seconds) = clients_task.await.expect("clients");
                (None, None, routes, seconds)
            }
        };

        // 5. Wait for every verdict.
        let deadline = Instant::now() + Duration::from_secs(120);
        let finished = loop {
            let list = our_experiments(&store, &ids).await;
            let active = list
                .iter()
                .filter(|e| {
                    matches!(
                        e.state,
                        State::Pending | State::Deploying | State::Running | State::Analyzing
                    )
                })
                .count();
            if active == 0 {
                break list;
            }
            assert!(
                Instant::now() < deadline,
                "{active} experiments still active 120 s after the first window ended"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let all_finished_ms = now_ms();
        let cpu_finished = cpu_now();
        let metrics_after = scrape(&http, &base).await.expect("metrics");

        let mut states: BTreeMap<&str, usize> = BTreeMap::new();
        for e in &finished {
            *states.entry(e.state.as_str()).or_default() += 1;
            if e.state != State::Succeeded {
                println!("  NOT SUCCEEDED: {} {}: {}", e.id, e.state, e.reason);
            }
        }
        // Analyzing → verdict, from the recorded transitions.
        let mut verdict_after = Vec::new();
        for e in &finished {
            let store = store.clone();
            let id = e.id.clone();
            let transitions = tokio::task::spawn_blocking(move || store.transitions(&id))
                .await
                .expect("store task")
                .expect("transitions");
            let analyzing = transitions.iter().find(|t| t.to == "analyzing").map(|t| t.at);
            let verdict = transitions
                .iter()
                .find(|t| t.from == "analyzing")
                .map(|t| t.at);
            if let (Some(a), Some(v)) = (analyzing, verdict) {
                verdict_after.push((v - a) as f64 / 1000.0);
            }
        }
        let verdict_after = sorted(verdict_after);
        let window_end_to_all_verdicts =
            last_end.map(|end| (all_finished_ms - end) as f64 / 1000.0);

        // 6. The same routes on a quiet controller: no stats, no scheduler work.
        plan.paused.store(true, Ordering::Relaxed);
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let stop_quiet = Arc::new(AtomicBool::new(false));
        let quiet_task = tokio::spawn(hammer(
            http.clone(),
            base.clone(),
            ids.clone(),
            clients,
            stop_quiet.clone(),
        ));
        tokio::time::sleep(Duration::from_secs(quiet_seconds as u64)).await;
        stop_quiet.store(true, Ordering::Relaxed);
        let (quiet_routes, quiet_seconds_run) = quiet_task.await.expect("quiet clients");

        // 7. The analysis itself, on every experiment's stored rows.
        let mut load_s = Vec::new();
        let mut analyse_s = Vec::new();
        let mut rows_total = 0usize;
        let mut paired_total = 0usize;
        // Experiments that stored fewer rows than their window holds, and
        // the longest stretch at the window's start without any row.
        let mut short = 0usize;
        let mut first_row_late_s: f64 = 0.0;
        for e in &finished {
            let t = Instant::now();
            let rows = store.measurements(&e.id, None).expect("measurements");
            let targets = store.experiment_targets(&e.id).expect("targets").len();
            load_s.push(t.elapsed().as_secs_f64());
            let (spec, timing) =
                phoenix_controller::experiment::spec_of(e).expect("stored definition");
            let t = Instant::now();
            let report = phoenix_controller::experiment::analysis::analyse(
                &spec,
                &timing,
                targets,
                &e.id,
                &rows,
                &[],
                &Default::default(),
            );
            analyse_s.push(t.elapsed().as_secs_f64());
            if rows.len() < targets * 2 * seconds {
                short += 1;
            }
            if let (Some(from), Some(first)) = (e.measure_from, rows.first()) {
                let late = (first.interval_ns / 1_000_000 - from) as f64 / 1000.0;
                first_row_late_s = first_row_late_s.max(late);
            }
            rows_total += rows.len();
            paired_total += report
                .candidates
                .iter()
                .map(|c| c.paired_intervals)
                .sum::<usize>();
        }
        let load_total: f64 = load_s.iter().sum();
        let analyse_total: f64 = analyse_s.iter().sum();
        let load_s = sorted(load_s);
        let analyse_s = sorted(analyse_s);

        let cpu_end = cpu_now();
        let db_mib = file_mib(&db);
        let wal_mib = file_mib(&dir.join("controller.db-wal"));
        let rss_peak = sim_agent::status_mib(std::process::id(), "VmHWM:");

        let stats_total = metrics_after.1 - metrics_before.1;
        let rows_counted = metrics_after.2 - metrics_before.2;
        let store_errors = metrics_after.3;
        let offered_stats = agents as f64 / plan.interval.as_secs_f64();
        let targets_total = finished.len() * agents / experiments;
        let expected_rows = (targets_total * 2 * seconds) as f64;

        let ms = |s: f64| s * 1000.0;
        println!();
        println!(
            "experiments at scale: {experiments} experiments x {} agents = {agents} agents, \
             interval 1 s, warm-up 1 s, duration {seconds} s, {clients} API clients",
            agents / experiments
        );
        println!("  connect {agents} agents: {connect_s:.2} s");
        if let Some(t) = history_s {
            println!(
                "  history: {history} finished (cancelled) experiments of {} targets each stored first, in {t:.1} s",
                agents / experiments
            );
        }
        println!(
            "  create {experiments} experiments (POST, sequential): p50 {:.1} ms  p99 {:.1} ms",
            ms(percentile(&create_latency, 50.0)),
            ms(percentile(&create_latency, 99.0))
        );
        println!(
            "  start {experiments} (POST .../start, sequential): {started_all_s:.2} s for all; \
             each p50 {:.1} ms  p99 {:.1} ms",
            ms(percentile(&start_latency, 50.0)),
            ms(percentile(&start_latency, 99.0))
        );
        println!(
            "  first start -> every experiment running: {all_running_s:.2} s \
             (per experiment p50 {:.2} s, p99 {:.2} s; {} not running)",
            percentile(&to_running, 50.0),
            percentile(&to_running, 99.0),
            not_running.len()
        );
        let print_phase = |title: &str, phase: &Option<(Mark, Mark)>, per_message: bool| {
            let Some((a, b)) = phase else {
                println!("  {title}: no steady window (the starts were spread over more than the duration)");
                return;
            };
            let dt = (b.at_ms - a.at_ms) as f64 / 1000.0;
            let stats = b.stats - a.stats;
            let (p, c) = (b.cpu.0 - a.cpu.0, b.cpu.1 - a.cpu.1);
            println!(
                "  {title} ({dt:.1} s): {:.0} stats messages/s (offered {offered_stats:.0}/s), \
                 {:.0} measurement rows/s; CPU: process {:.0}% of a core, controller {:.0}%{}",
                stats / dt,
                (b.rows - a.rows) / dt,
                100.0 * p / dt,
                100.0 * c / dt,
                if per_message {
                    format!(" ({:.2} ms per stats message)", 1000.0 * c / stats.max(1.0))
                } else {
                    String::new()
                }
            );
        };
        print_phase("ingest alone, all experiments measuring", &ingest_only, true);
        print_phase("ingest with the API clients", &with_clients, false);
        println!(
            "  ingest, whole run: {stats_total:.0} stats messages, {rows_counted:.0} measurement rows \
             counted ({rows_total} stored; {expected_rows:.0} expected = targets x 2 variants x {seconds} intervals), \
             {:.0} sent by the agents, {store_errors:.0} store errors",
            plan.sent.load(Ordering::Relaxed) as f64
        );
        println!(
            "  experiments with fewer rows than targets x 2 x {seconds}: {short}; \
             latest first row after its window opened: {first_row_late_s:.2} s \
             (an agent's first tick comes within 1 s; later means lost intervals)"
        );
        print_routes("API while running", &busy_routes, busy_seconds);
        print_routes("API afterwards, quiet (no stats)", &quiet_routes, quiet_seconds_run);
        println!(
            "  analyzing -> verdict (scheduler, {} experiments): p50 {:.2} s  p99 {:.2} s  max {:.2} s; \
             last window end -> all verdicts {:.2} s",
            verdict_after.len(),
            percentile(&verdict_after, 50.0),
            percentile(&verdict_after, 99.0),
            verdict_after.last().copied().unwrap_or(0.0),
            window_end_to_all_verdicts.unwrap_or(0.0)
        );
        println!(
            "  analyse() on stored rows ({rows_total} rows, {paired_total} paired intervals): \
             total {:.1} ms for {} experiments (each p50 {:.2} ms, max {:.2} ms); \
             loading the rows {:.1} ms in total (each p50 {:.2} ms)",
            ms(analyse_total),
            analyse_s.len(),
            ms(percentile(&analyse_s, 50.0)),
            ms(analyse_s.last().copied().unwrap_or(0.0)),
            ms(load_total),
            ms(percentile(&load_s, 50.0)),
        );
        println!("  states at the end: {states:?}");
        let phase = |a: (f64, f64), b: (f64, f64)| (b.0 - a.0, b.1 - a.1);
        let (p_connect, c_connect) = phase(cpu_begin, cpu_connected);
        let (p_deploy, c_deploy) = phase(cpu_start, cpu_all_running);
        let (p_run, c_run) = phase(cpu_start, cpu_finished);
        let run_s = (all_finished_ms - start_ms) as f64 / 1000.0;
        println!(
            "  CPU seconds (process = controller + simulated agents + API clients; controller = its runtime's threads):"
        );
        println!("    connect:                    process {p_connect:.2}  controller {c_connect:.2}");
        println!("    start -> all running:       process {p_deploy:.2}  controller {c_deploy:.2}");
        println!(
            "    start -> all verdicts ({run_s:.1} s): process {p_run:.2}  controller {c_run:.2}"
        );
        println!(
            "    whole bench:                process {:.2}  controller {:.2}",
            cpu_end.0 - cpu_begin.0,
            cpu_end.1 - cpu_begin.1
        );
        println!(
            "  store while running, at the end: controller.db {db_mib:.2} MiB + WAL {wal_mib:.2} MiB; process peak RSS {rss_peak:.0} MiB"
        );
    });
    // Closed, the store checkpoints its WAL into the database file.
    controller_runtime.block_on(running.shutdown());
    drop(store);
    drop(sim_runtime);
    drop(controller_runtime);
    let db_closed_mib = file_mib(&db);
    let wal_left = dir
        .join("controller.db-wal")
        .exists()
        .then(|| file_mib(&dir.join("controller.db-wal")));
    // The measurements' share, where SQLite has its dbstat table.
    let measurements_mib =
        rusqlite::Connection::open_with_flags(&db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .and_then(|c| {
                c.query_row(
                    "SELECT SUM(pgsize) FROM dbstat WHERE name = 'experiment_measurements'",
                    [],
                    |r| r.get::<_, i64>(0),
                )
            })
            .ok()
            .map(|b| b as f64 / (1024.0 * 1024.0));
    println!(
        "  store after the controller stopped: controller.db {:.2} MiB (WAL {}){}",
        db_closed_mib,
        match wal_left {
            Some(w) => format!("{w:.2} MiB"),
            None => "checkpointed and removed".to_string(),
        },
        measurements_mib
            .map(|m| format!("; experiment_measurements {m:.2} MiB"))
            .unwrap_or_default()
    );
    let _ = std::fs::remove_dir_all(&dir);
}
