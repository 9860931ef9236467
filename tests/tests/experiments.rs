//! Experiments for real: the `phoenix-controller` binary and two
//! `phoenix-agent` binaries scraping this machine's /proc, with processes
//! of chosen names as the critical ones. An experiment is deployed,
//! measured, judged, promoted and rolled back; a candidate that hides a
//! critical process is disqualified by its guardrail while the others go
//! on (and with no candidate left the experiment aborts); a candidate that
//! drops the busiest process fails on CPU conservation and the report
//! names the process; a controller killed mid-run resumes the experiment
//! after its restart; a promotion in waves reaches every target one
//! watched wave at a time (through a controller restart), and one whose
//! second wave loses series is stopped and every target restored.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use phoenix_api::{
    ExperimentAction, ExperimentDetail, ExperimentList, ExperimentReport, ExperimentState,
    ExperimentSummary,
};
use phoenix_tests::fleet::{
    Agent, api, hash_of, online, phoenixctl, start_agent_with_env, start_controller,
};
use phoenix_tests::{Named, TempDir, free_port, wait_for};
use serde_json::Value;

/// A controller, two agents labelled `env=<label>`, and a population with
/// two `etcd` processes (critical in the templates' priority rules and in
/// the experiments below).
struct Fleet {
    dir: TempDir,
    controller: phoenix_tests::fleet::Controller,
    agents: Vec<Agent>,
    local_hashes: Vec<String>,
    _population: Vec<Named>,
}

fn fleet(label: &str) -> Fleet {
    let dir = TempDir::new(label);
    let population = vec![
        Named::spawn(dir.path(), "etcd", 2),
        Named::spawn(dir.path(), "idle-worker", 30),
    ];
    let controller = start_controller(&dir.path().join("data"), free_port(), free_port());
    let agents: Vec<Agent> = (1..=2)
        .map(|i| {
            let out = dir.path().join(format!("experiment-{i}.jsonl"));
            start_agent_with_env(
                dir.path(),
                &format!("{label}-{i}"),
                label,
                controller.grpc,
                &[("PHOENIX_EXPERIMENT_OUT", out.to_str().unwrap())],
            )
        })
        .collect();
    wait_for(Duration::from_secs(30), || {
        (online(controller.http).len() == 2).then_some(())
    })
    .expect("both agents online");
    let local_hashes = agents.iter().map(hash_of).collect();
    Fleet {
        dir,
        controller,
        agents,
        local_hashes,
        _population: population,
    }
}

impl Fleet {
    fn out(&self, i: usize) -> PathBuf {
        self.dir.path().join(format!("experiment-{}.jsonl", i + 1))
    }

    /// Every agent is back on its own `--config` file.
    fn wait_local_configs(&self) {
        for (agent, local) in self.agents.iter().zip(&self.local_hashes) {
            wait_for(Duration::from_secs(20), || {
                (hash_of(agent) == *local).then_some(())
            })
            .expect("the agent runs its local config again");
        }
    }
}

/// The same POST from `n` threads at once: the status codes.
fn concurrently(http: u16, path: &str, n: usize) -> Vec<u16> {
    let handles: Vec<_> = (0..n)
        .map(|_| {
            let path = path.to_string();
            std::thread::spawn(move || api(http, "POST", &path, "").0)
        })
        .collect();
    handles.into_iter().map(|h| h.join().unwrap()).collect()
}

/// Baseline against `candidate`, exported to a file per agent so the test
/// can check the controller's numbers against what the agents sent.
fn definition(label: &str, candidate: &str, duration: &str, extra: &str) -> String {
    definition_with("{}", label, candidate, "^etcd$", duration, extra)
}

/// [`definition`] with these procfs settings and critical processes.
fn definition_with(
    procfs: &str,
    label: &str,
    candidate: &str,
    critical: &str,
    duration: &str,
    extra: &str,
) -> String {
    format!(
        r#"
name: {label}
targets: {{ labels: {{ env: {label} }} }}
base:
  yaml: |
    receivers: {{ procfs: {procfs} }}
    exporters: {{ file: {{ path: "${{env:PHOENIX_EXPERIMENT_OUT:-/dev/null}}" }} }}
    service: {{ pipelines: {{ metrics: {{ receivers: [procfs], exporters: [file] }} }} }}
candidates:
  - {candidate}
critical_processes: ['{critical}']
interval: 1s
warmup: 2s
duration: {duration}
{extra}"#
    )
}

fn create_and_start(http: u16, text: &str) -> String {
    let body = serde_json::json!({ "definition": text, "author": "e2e" }).to_string();
    let (status, created) = api(http, "POST", "/api/v1/experiments", &body);
    assert_eq!(status, 201, "{created}");
    let created: ExperimentSummary = typed(created);
    assert_eq!(created.state, ExperimentState::Draft);
    assert_eq!(
        created.actions,
        [ExperimentAction::Start, ExperimentAction::Stop]
    );
    let id = created.id;
    let (status, started) = api(http, "POST", &format!("/api/v1/experiments/{id}/start"), "");
    assert_eq!(status, 200, "{started}");
    let started: ExperimentSummary = typed(started);
    assert_eq!(started.state, ExperimentState::Pending);
    assert_eq!(started.actions, [ExperimentAction::Stop]);
    id
}

/// A JSON answer as its API type (a missing or renamed field fails here).
fn typed<T: serde::de::DeserializeOwned>(v: Value) -> T {
    let text = v.to_string();
    serde_json::from_value(v).unwrap_or_else(|e| panic!("{e}: {text}"))
}

fn get(http: u16, id: &str) -> Value {
    let (status, v) = api(http, "GET", &format!("/api/v1/experiments/{id}"), "");
    assert_eq!(status, 200, "{v}");
    v
}

/// Wait until the experiment is in one of `states`.
fn wait_state(http: u16, id: &str, states: &[&str], timeout: Duration) -> Value {
    wait_for(timeout, || {
        let v = get(http, id);
        states
            .contains(&v["state"].as_str().unwrap_or_default())
            .then_some(v)
    })
    .unwrap_or_else(|| panic!("experiment never reached {states:?}: {}", get(http, id)))
}

/// Wait for the verdict and check it is a success reached the whole way.
fn wait_succeeded(http: u16, id: &str) -> Value {
    wait_succeeded_through(http, id, &["running"])
}

/// [`wait_succeeded`], `running` being the states in the timeline from
/// the deploy to the window's end (a disqualification notes `running`
/// again).
fn wait_succeeded_through(http: u16, id: &str, running: &[&str]) -> Value {
    let done = wait_state(
        http,
        id,
        &["succeeded", "rolled_back", "failed"],
        Duration::from_secs(90),
    );
    assert_eq!(done["state"], "succeeded", "{done}");
    let mut expected = vec!["draft", "pending", "deploying"];
    expected.extend(running);
    expected.extend(["analyzing", "succeeded"]);
    assert_eq!(path(&done), expected, "{done}");
    done
}

fn path(states: &Value) -> Vec<String> {
    states["transitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["to"].as_str().unwrap().to_string())
        .collect()
}

/// Where a stored measurement stands in the exports: (pipeline, scrape time).
fn export_key(measurement: &Value) -> (String, i64) {
    (
        format!("metrics/{}", measurement["variant"].as_str().unwrap()),
        measurement["interval_unix_nano"].as_i64().unwrap(),
    )
}

/// Datapoints per (pipeline, scrape time) in an agent's OTLP/JSON file.
fn exported_datapoints(file: &Path) -> BTreeMap<(String, i64), u64> {
    let mut out = BTreeMap::new();
    for line in std::fs::read_to_string(file).unwrap_or_default().lines() {
        let request: Value = serde_json::from_str(line).expect("one JSON request per line");
        for rm in request["resourceMetrics"].as_array().into_iter().flatten() {
            let pipeline = rm["resource"]["attributes"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|a| a["key"] == "phoenix.pipeline")
                .and_then(|a| a["value"]["stringValue"].as_str())
                .unwrap_or_default()
                .to_string();
            for sm in rm["scopeMetrics"].as_array().into_iter().flatten() {
                for m in sm["metrics"].as_array().into_iter().flatten() {
                    let points = ["gauge", "sum"]
                        .iter()
                        .filter_map(|k| m[k]["dataPoints"].as_array())
                        .flatten();
                    for p in points {
                        let t: i64 = p["timeUnixNano"].as_str().unwrap().parse().unwrap();
                        *out.entry((pipeline.clone(), t)).or_default() += 1;
                    }
                }
            }
        }
    }
    out
}

#[test]
fn an_experiment_reaches_a_verdict_on_what_the_agents_exported_then_promotes_and_rolls_back() {
    let f = fleet("verdict");
    let http = f.controller.http;
    let text = definition(
        "verdict",
        "{ template: process-aggressive-v1, mode: export }",
        "6s",
        "criteria: { min_series_reduction: 0.3, min_critical_coverage: 1.0 }\n",
    );
    // As a user would: phoenixctl with a definition file.
    let file = f.dir.path().join("experiment.yaml");
    std::fs::write(&file, &text).unwrap();
    let created = phoenixctl(
        http,
        &[
            "-o",
            "json",
            "experiment",
            "create",
            "-f",
            file.to_str().unwrap(),
            "--start",
        ],
    );
    assert_eq!(created.status.code(), Some(0), "{created:?}");
    let started: ExperimentSummary =
        serde_json::from_slice(&created.stdout).expect("-o json is the experiment");
    let id = started.id;
    let done = wait_succeeded(http, &id);

    // Every stored measurement is what the agent exported for that
    // pipeline in that interval.
    let (_, results) = api(
        http,
        "GET",
        &format!("/api/v1/experiments/{id}/results?raw=true"),
        "",
    );
    let rows = results["measurements"].as_array().unwrap();
    let agent_ids: Vec<String> = done["targets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["agent_id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(agent_ids.len(), 2);
    let mut checked = 0;
    let (mut base_series, mut cand_series) = (0u64, 0u64);
    for (i, agent) in f.agents.iter().enumerate() {
        let exported = exported_datapoints(&f.out(i));
        // Which controller id is this agent: the one whose rows match.
        let mine: Vec<&Value> = rows
            .iter()
            .filter(|r| exported.contains_key(&export_key(r)))
            .collect();
        assert!(
            mine.len() >= 4,
            "agent {} has {} matching rows",
            agent.telemetry,
            mine.len()
        );
        for r in mine {
            assert_eq!(
                r["datapoints"].as_u64().unwrap(),
                exported[&export_key(r)],
                "{r}"
            );
            checked += 1;
        }
    }
    assert_eq!(checked, rows.len(), "every measurement matches an export");
    for r in rows {
        let s = r["series"].as_u64().unwrap();
        match r["variant"].as_str().unwrap() {
            "baseline" => base_series += s,
            _ => cand_series += s,
        }
    }

    // The verdict's numbers are those measurements.
    let (_, report) = api(http, "GET", &format!("/api/v1/experiments/{id}/report"), "");
    let report: ExperimentReport = typed(report);
    assert!(report.is_final);
    assert_eq!(report.analysis.verdict, "succeeded", "{report:?}");
    assert_eq!(report.analysis.winner.as_deref(), Some("aggressive"));
    let candidate = &report.analysis.candidates[0];
    let series_reduction = candidate.kpis.series_reduction.expect("measured");
    let reduction = series_reduction.value;
    let expected = 1.0 - cand_series as f64 / base_series as f64;
    assert!(
        (reduction - expected).abs() < 1e-9,
        "{reduction} vs {expected}"
    );
    let (low, high) = (series_reduction.low, series_reduction.high);
    assert!(low <= reduction && reduction <= high && high > 0.3);
    assert_eq!(candidate.kpis.critical_coverage.map(|e| e.value), Some(1.0));
    assert!(report.analysis.variants[0].monthly_cost > 0.0);
    assert!(report.analysis.recommendation.starts_with("Promote"));
    let printed = phoenixctl(http, &["experiment", "report", &id]);
    let printed = String::from_utf8_lossy(&printed.stdout);
    assert!(
        printed.contains("min_series_reduction") && printed.contains("PASS"),
        "{printed}"
    );

    // Promote: the agents run the winner's config.
    let promoted = phoenixctl(http, &["-o", "json", "experiment", "promote", &id]);
    assert_eq!(promoted.status.code(), Some(0), "{promoted:?}");
    let promoted: ExperimentSummary = serde_json::from_slice(&promoted.stdout).unwrap();
    assert_eq!(promoted.state, ExperimentState::Promoted);
    assert_eq!(promoted.actions, [ExperimentAction::Rollback]);
    let push = get(http, &id)["promoted_push"]
        .as_str()
        .unwrap()
        .to_string();
    let (_, push) = api(http, "GET", &format!("/api/v1/pushes/{push}"), "");
    let promoted_hash = push["hash"].as_str().unwrap().to_string();
    for agent in &f.agents {
        wait_for(Duration::from_secs(20), || {
            (hash_of(agent) == promoted_hash).then_some(())
        })
        .expect("the agent runs the promoted config");
    }
    assert!(!f.local_hashes.contains(&promoted_hash));

    // Rollback: each agent is back on its own local config.
    let rolled = phoenixctl(
        http,
        &[
            "-o",
            "json",
            "experiment",
            "rollback",
            &id,
            "--reason",
            "e2e says so",
        ],
    );
    assert_eq!(rolled.status.code(), Some(0), "{rolled:?}");
    let rolled: ExperimentSummary = serde_json::from_slice(&rolled.stdout).unwrap();
    assert_eq!(rolled.state, ExperimentState::RolledBack);
    assert!(rolled.actions.is_empty());
    // What was restored completes the reason (by this request, or by the
    // scheduler if it took the restore first).
    wait_for(Duration::from_secs(10), || {
        let reason = get(http, &id)["reason"].as_str().unwrap().to_string();
        reason
            .starts_with("e2e says so; restored the previous config on 2 agent(s)")
            .then_some(())
    })
    .unwrap_or_else(|| panic!("the restore in the reason: {}", get(http, &id)["reason"]));
    f.wait_local_configs();
}

/// A candidate dropping the `etcd` processes (critical in these experiments).
const HIDES_ETCD: &str = "{ name: hides-etcd, processors: [ { filter/drop: { exclude: { attributes: [ { key: process.executable.name, value: etcd } ] } } } ] }";

/// A candidate dropping the thirty sleeping `idle-worker`s: it loses
/// nothing that matters.
const NO_SLEEPERS: &str = "{ name: no-sleepers, processors: [ { filter/sleepers: { exclude: { match_type: regexp, attributes: [ { key: process.executable.name, value: '^idle-worker$' } ] } } } ] }";

#[test]
fn a_lone_candidate_hiding_a_critical_process_is_disqualified_and_nothing_is_left_to_run() {
    let f = fleet("guardrail");
    let http = f.controller.http;
    let window = Duration::from_secs(120);
    let text = definition(
        "guardrail",
        HIDES_ETCD,
        "120s",
        "guardrails: { intervals: 2 }\n",
    );
    let started = Instant::now();
    let id = create_and_start(http, &text);
    let done = wait_state(
        http,
        &id,
        &["rolled_back", "succeeded"],
        Duration::from_secs(60),
    );
    assert!(
        started.elapsed() < window,
        "stopped before the window ended"
    );
    assert_eq!(
        path(&done),
        [
            "draft",
            "pending",
            "deploying",
            "running",
            "failed",
            "rolled_back"
        ]
    );
    let failed = &done["transitions"][4];
    let reason = failed["reason"].as_str().unwrap();
    assert!(
        reason.starts_with("every candidate was disqualified: \"hides-etcd\": guardrail critical_coverage breached:"),
        "{reason}"
    );
    // Nothing to push without it: the abort restores the previous configs.
    let detail: ExperimentDetail = typed(done);
    assert_eq!(detail.disqualified.len(), 1, "{:?}", detail.disqualified);
    assert_eq!(detail.disqualified[0].push, None);
    f.wait_local_configs();
    // The disqualification, and the abort it made, are counted where
    // Prometheus sees them.
    let (_, metrics) = phoenix_tests::http_get(http, "/metrics").unwrap();
    for name in [
        "phoenix_controller_experiment_guardrail_breaches_total",
        "phoenix_controller_experiment_disqualifications_total",
    ] {
        let sample = format!("{name}{{guardrail=\"critical_coverage\"}}");
        assert_eq!(
            phoenix_tests::sample(&metrics, &sample),
            Some(1.0),
            "{metrics}"
        );
    }
}

#[test]
fn a_shadow_candidate_hiding_a_critical_process_is_disqualified_while_the_other_succeeds() {
    let f = fleet("disqualify");
    let http = f.controller.http;
    let text = definition(
        "disqualify",
        &format!("{HIDES_ETCD}\n  - {NO_SLEEPERS}"),
        "10s",
        "criteria: { min_series_reduction: 0.01 }\n\
         guardrails: { min_critical_coverage: 1.0, intervals: 2 }\n",
    );
    let id = create_and_start(http, &text);
    // Never aborted: the note keeps it running, then the verdict.
    let done = wait_succeeded_through(http, &id, &["running", "running"]);
    let detail: ExperimentDetail = typed(done);
    let [dq] = &detail.disqualified[..] else {
        panic!("one disqualification: {:?}", detail.disqualified)
    };
    assert_eq!(
        (dq.variant.as_str(), dq.disqualification.guardrail.as_str()),
        ("hides-etcd", "critical_coverage")
    );
    let push_id = dq.push.clone().expect("the config without it was pushed");
    let note = &detail.transitions[4];
    assert_eq!(
        (note.from.as_str(), note.actor.as_str()),
        ("running", "controller")
    );
    assert!(
        note.reason
            .starts_with("disqualified \"hides-etcd\": guardrail critical_coverage breached:")
            && note
                .reason
                .ends_with(&format!("the agents stop running it (push {push_id})")),
        "{}",
        note.reason
    );
    // The push of the reduced config reached every target, and they run it.
    let (status, push) = api(http, "GET", &format!("/api/v1/pushes/{push_id}"), "");
    assert_eq!(status, 200, "{push}");
    let push: phoenix_api::Push = typed(push);
    assert_eq!(push.status, phoenix_api::PushStatus::Applied, "{push:?}");
    assert_ne!(push.hash, detail.summary.config_hash);
    assert_eq!(detail.targets.len(), 2);
    for t in &detail.targets {
        assert_eq!(t.effective_hash, push.hash, "{t:?}");
        assert!(t.runs_experiment, "{t:?}");
    }
    // The verdict: the disqualified candidate fails, the other wins.
    let (_, report) = api(http, "GET", &format!("/api/v1/experiments/{id}/report"), "");
    let report: ExperimentReport = typed(report);
    assert_eq!(report.analysis.winner.as_deref(), Some("no-sleepers"));
    let hides = report
        .analysis
        .candidates
        .iter()
        .find(|c| c.name == "hides-etcd")
        .unwrap();
    assert_eq!(hides.outcome, phoenix_api::Outcome::Fail);
    let why = hides
        .disqualified
        .as_ref()
        .expect("disqualified in the report");
    assert_eq!(why.guardrail, "critical_coverage");
    assert!(
        report
            .analysis
            .recommendation
            .contains("\"hides-etcd\" was disqualified by guardrail critical_coverage"),
        "{}",
        report.analysis.recommendation
    );
    let (_, metrics) = phoenix_tests::http_get(http, "/metrics").unwrap();
    assert_eq!(
        phoenix_tests::sample(
            &metrics,
            "phoenix_controller_experiment_guardrail_breaches_total{guardrail=\"critical_coverage\"}"
        ),
        Some(0.0),
        "nothing aborted: {metrics}"
    );
    // What a guardrail took out is not promoted, even when asked by name.
    let (status, v) = api(
        http,
        "POST",
        &format!("/api/v1/experiments/{id}/promote"),
        r#"{"variant": "hides-etcd"}"#,
    );
    assert_eq!(status, 409, "{v}");
    assert!(
        v["error"]
            .as_str()
            .unwrap_or_default()
            .contains("\"hides-etcd\" was disqualified at"),
        "{v}"
    );
    // The reduced config is the experiment's: a rollback restores the agents.
    let (status, v) = api(
        http,
        "POST",
        &format!("/api/v1/experiments/{id}/rollback"),
        "",
    );
    assert_eq!(status, 200, "{v}");
    f.wait_local_configs();
}

#[test]
fn a_deploy_the_agents_refuse_fails_the_experiment_with_their_error_and_rolls_back() {
    let f = fleet("deployfail");
    let http = f.controller.http;
    // Valid everywhere, but no agent can listen where this port is taken.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let text = definition("deployfail", "{ template: process-aggressive-v1 }", "10s", "")
        .replace(
            r#"exporters: { file: { path: "${env:PHOENIX_EXPERIMENT_OUT:-/dev/null}" } }"#,
            &format!(
                r#"exporters: {{ file: {{ path: "${{env:PHOENIX_EXPERIMENT_OUT:-/dev/null}}" }}, prometheus: {{ endpoint: "127.0.0.1:{port}" }} }}"#
            ),
        );
    assert!(text.contains("prometheus"), "{text}");
    let id = create_and_start(http, &text);
    let done = wait_state(
        http,
        &id,
        &["rolled_back", "running"],
        Duration::from_secs(60),
    );
    assert_eq!(
        path(&done),
        ["draft", "pending", "deploying", "failed", "rolled_back"],
        "{done}"
    );
    let failed = done["transitions"][3]["reason"].as_str().unwrap();
    assert!(
        failed.starts_with("deploy failed:") && failed.contains(&port.to_string()),
        "the agents' own error is in the reason: {failed}"
    );
    for (agent, local) in f.agents.iter().zip(&f.local_hashes) {
        assert_eq!(hash_of(agent), *local, "the agent kept its own config");
    }
    drop(taken);
}

#[test]
fn a_controller_killed_mid_run_resumes_the_experiment_after_its_restart() {
    let mut f = fleet("restart");
    let http = f.controller.http;
    let grpc = f.controller.grpc;
    let text = definition(
        "restart",
        "{ template: process-aggressive-v1 }",
        "8s",
        "criteria: { min_series_reduction: 0.3 }\n",
    );
    let id = create_and_start(http, &text);
    wait_state(http, &id, &["running"], Duration::from_secs(60));

    // SIGKILL: no graceful anything. Then the same store and ports.
    f.controller.running.signal(libc::SIGKILL);
    let _ = f.controller.running.child.wait();
    std::thread::sleep(Duration::from_secs(1));
    f.controller = start_controller(&f.dir.path().join("data"), http, grpc);

    wait_succeeded(http, &id);
    // Measured after the restart too: both agents reconnected and kept
    // reporting into the same experiment.
    let (_, report) = api(http, "GET", &format!("/api/v1/experiments/{id}/report"), "");
    assert_eq!(report["candidates"][0]["agents"], 2, "{report}");
}

#[test]
fn illegal_transitions_are_refused_and_concurrent_requests_leave_one_history() {
    let dir = TempDir::new("experiment-states");
    let controller = start_controller(&dir.path().join("data"), free_port(), free_port());
    let http = controller.http;
    let text = definition("states", "{ template: process-aggressive-v1 }", "10s", "");
    let body = serde_json::json!({ "definition": text }).to_string();
    let (status, created) = api(http, "POST", "/api/v1/experiments", &body);
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().unwrap().to_string();

    // Not from draft.
    for action in ["promote", "rollback"] {
        let (status, v) = api(
            http,
            "POST",
            &format!("/api/v1/experiments/{id}/{action}"),
            "",
        );
        assert_eq!(status, 409, "{action}: {v}");
        assert!(v["error"].as_str().unwrap().contains("draft"), "{v}");
    }

    // Ten concurrent starts: exactly one wins.
    let codes = concurrently(http, &format!("/api/v1/experiments/{id}/start"), 10);
    assert_eq!(codes.iter().filter(|c| **c == 200).count(), 1, "{codes:?}");
    assert!(codes.iter().all(|c| *c == 200 || *c == 409), "{codes:?}");

    // No agent matches: the scheduler fails it with the reason.
    let v = wait_state(http, &id, &["failed"], Duration::from_secs(20));
    assert!(
        v["reason"].as_str().unwrap().contains("no online agent"),
        "{v}"
    );
    assert_eq!(path(&v), ["draft", "pending", "deploying", "failed"]);
    // What the answer offers is what the controller accepts.
    let failed: ExperimentDetail = typed(v);
    assert_eq!(failed.summary.actions, [ExperimentAction::Rollback]);
    // Failed with nothing deployed: start and stop are refused.
    for action in ["start", "stop"] {
        let (status, _) = api(
            http,
            "POST",
            &format!("/api/v1/experiments/{id}/{action}"),
            "",
        );
        assert_eq!(status, 409, "{action}");
    }

    // A draft stops into cancelled; concurrent stops give one transition.
    let (_, second) = api(http, "POST", "/api/v1/experiments", &body);
    let id2 = second["id"].as_str().unwrap().to_string();
    let codes = concurrently(http, &format!("/api/v1/experiments/{id2}/stop"), 6);
    assert_eq!(codes.iter().filter(|c| **c == 200).count(), 1, "{codes:?}");
    assert_eq!(path(&get(http, &id2)), ["draft", "cancelled"]);

    // Bad input changes nothing and says what is wrong.
    let (status, v) = api(
        http,
        "POST",
        "/api/v1/experiments",
        r#"{"definition": "name: x"}"#,
    );
    assert_eq!(status, 400);
    assert!(!v["errors"].as_array().unwrap().is_empty(), "{v}");
    let (status, _) = api(http, "POST", "/api/v1/experiments/nope/start", "");
    assert_eq!(status, 404);
    let (status, _) = api(
        http,
        "POST",
        &format!("/api/v1/experiments/{id2}/explode"),
        "",
    );
    assert_eq!(status, 404);
    let (_, list) = api(http, "GET", "/api/v1/experiments", "");
    let list: ExperimentList = typed(list);
    assert_eq!(list.experiments.len(), 2);
}

#[test]
fn a_candidate_dropping_the_busiest_process_fails_on_cpu_conservation() {
    let f = fleet("conserve");
    let _busy = Named::busy(f.dir.path(), "busy-batch");
    // Fewer series either way; only what is lost tells them apart. The
    // base enables utilization, so the totals are cores, not CPU seconds.
    let text = r#"
name: conserve
targets: { labels: { env: conserve } }
base:
  yaml: |
    receivers: { procfs: { metrics: { process.cpu.utilization: { enabled: true } } } }
    exporters: { file: { path: "${env:PHOENIX_EXPERIMENT_OUT:-/dev/null}" } }
    service: { pipelines: { metrics: { receivers: [procfs], exporters: [file] } } }
candidates:
  - name: no-batch
    processors:
      - filter/batch:
          exclude:
            match_type: regexp
            attributes: [{ key: process.executable.name, value: "^busy-batch$" }]
  - name: no-sleepers
    processors:
      - filter/sleepers:
          exclude:
            match_type: regexp
            attributes: [{ key: process.executable.name, value: "^idle-worker$" }]
critical_processes: ['^etcd$']
interval: 1s
warmup: 2s
duration: 6s
criteria: { min_series_reduction: 0.01 }
"#;
    let id = create_and_start(f.controller.http, text);
    let done = wait_state(
        f.controller.http,
        &id,
        &["succeeded", "failed", "rolled_back"],
        Duration::from_secs(90),
    );
    let (_, report) = api(
        f.controller.http,
        "GET",
        &format!("/api/v1/experiments/{id}/report"),
        "",
    );
    let report: ExperimentReport = typed(report);
    let judged = |name: &str| {
        let c = report
            .analysis
            .candidates
            .iter()
            .find(|c| c.name == name)
            .unwrap_or_else(|| panic!("{name} in {done}"));
        let r = c
            .criteria
            .iter()
            .find(|r| r.criterion == "min_cpu_conservation")
            .expect("judged by default")
            .clone();
        (c.clone(), r)
    };
    // Dropping the process that burns a core loses most of the CPU.
    let (no_batch, criterion) = judged("no-batch");
    let lost = criterion.estimate.expect("measured").value;
    assert!(lost < 0.75, "{lost}");
    assert_eq!(criterion.outcome, phoenix_api::Outcome::Fail);
    assert_eq!(no_batch.outcome, phoenix_api::Outcome::Fail);
    // And the report names it: dropped, not folded, with its share.
    let named = no_batch
        .losses
        .iter()
        .find(|l| l.executable == "busy-batch")
        .unwrap_or_else(|| panic!("busy-batch in {:?}", no_batch.losses));
    assert!(!named.folded && named.cpu_share > 0.25, "{named:?}");
    // Dropping thirty sleeping processes loses next to nothing and wins.
    let (_, criterion) = judged("no-sleepers");
    assert!(
        criterion.estimate.expect("measured").value > 0.9,
        "{criterion:?}"
    );
    assert_eq!(criterion.outcome, phoenix_api::Outcome::Pass);
    assert_eq!(report.analysis.winner.as_deref(), Some("no-sleepers"));
    assert!(
        report
            .analysis
            .recommendation
            .contains("of the baseline's process CPU"),
        "{}",
        report.analysis.recommendation
    );
    drop(f);
}

/// Only the `<worker>` processes, exported and critical: many fewer series
/// than the baseline, all critical processes kept, and a count no other
/// test running at the same time changes (each test names its own). The
/// base scrapes every second, so the promoted config reports as fast as
/// the experiment did.
fn waves_definition(label: &str, worker: &str, extra: &str) -> String {
    let keep = format!(
        "{{ name: workers, processors: [{{ filter/workers: {{ include: {{ match_type: regexp, \
         attributes: [{{ key: process.executable.name, value: \"^{worker}$\" }}] }} }} }}] }}"
    );
    // Keeping one kind of process loses most of the CPU: not the point here.
    let extra = format!("criteria: {{ min_cpu_conservation: null }}\n{extra}");
    definition_with(
        "{ collection_interval: 1s }",
        label,
        &keep,
        &format!("^{worker}$"),
        "5s",
        &extra,
    )
}

/// The promotion of `id` as the API shows it.
fn promotion(http: u16, id: &str) -> phoenix_api::Promotion {
    let detail: ExperimentDetail = typed(get(http, id));
    detail.promotion.expect("a promotion in waves")
}

#[test]
fn a_promotion_in_waves_from_the_definition_reaches_every_target_one_wave_at_a_time() {
    let mut f = fleet("waves-ok");
    let _workers = Named::spawn(f.dir.path(), "wok-worker", 10);
    let text = waves_definition(
        "waves-ok",
        "wok-worker",
        "auto_promote: true\npromotion: { waves: [50%, 100%], watch: 3s }\n",
    );
    let id = create_and_start(f.controller.http, &text);
    // The controller is killed while the first wave is out; the one
    // started on the same store goes on with it.
    let (http, grpc) = (f.controller.http, f.controller.grpc);
    wait_state(
        http,
        &id,
        &["promoting", "rolled_back", "failed"],
        Duration::from_secs(90),
    );
    f.controller.running.signal(libc::SIGKILL);
    let _ = f.controller.running.child.wait();
    f.controller = start_controller(&f.dir.path().join("data"), http, grpc);
    let done = wait_state(
        http,
        &id,
        &["promoted", "rolled_back", "failed"],
        Duration::from_secs(120),
    );
    assert_eq!(done["state"], "promoted", "{done}");
    let p = promotion(f.controller.http, &id);
    assert_eq!(p.variant, "workers");
    let waves: Vec<(u32, usize, phoenix_api::WaveState)> = p
        .waves
        .iter()
        .map(|w| (w.number, w.agents.len(), w.state))
        .collect();
    assert_eq!(
        waves,
        [
            (1, 1, phoenix_api::WaveState::Passed),
            (2, 1, phoenix_api::WaveState::Passed)
        ]
    );
    // The second wave went out only once the first was watched.
    let first_done = p.waves[0].finished_at.clone().expect("finished");
    let second_out = p.waves[1].started_at.clone().expect("started");
    assert!(second_out >= first_done, "{first_done} then {second_out}");
    // Every target runs the promoted config, and the timeline says how.
    for agent in &f.agents {
        wait_for(Duration::from_secs(10), || {
            (hash_of(agent) == p.config_hash).then_some(())
        })
        .expect("the agent runs the promoted config");
    }
    // The promoted config counts the critical processes its pipeline keeps
    // (what the watch judged), and compares nothing.
    for agent in p.waves.iter().flat_map(|w| &w.agents) {
        let (status, a) = api(http, "GET", &format!("/api/v1/agents/{agent}"), "");
        assert_eq!(status, 200, "{a}");
        let pipeline = &a["stats"]["pipelines"][0];
        assert_eq!(pipeline["pipeline"], "metrics/workers", "{a}");
        assert_eq!(pipeline["critical_total"], 10, "{a}");
        assert_eq!(pipeline["critical_visible"], 10, "{a}");
        assert!(pipeline["comparison"].is_null(), "{a}");
    }
    let path = path(&done);
    assert!(
        path.ends_with(
            &[
                "succeeded",
                "promoting",
                "promoting",
                "promoting",
                "promoting",
                "promoting",
                "promoted"
            ]
            .map(String::from)
        ),
        "{path:?}"
    );
    drop(f);
}

#[test]
fn a_promotion_whose_second_wave_loses_series_is_stopped_and_every_target_restored() {
    let f = fleet("waves-stop");
    let workers = Named::spawn(f.dir.path(), "wstop-worker", 20);
    let id = create_and_start(
        f.controller.http,
        &waves_definition("waves-stop", "wstop-worker", ""),
    );
    let done = wait_state(
        f.controller.http,
        &id,
        &["succeeded", "rolled_back", "failed"],
        Duration::from_secs(90),
    );
    assert_eq!(done["state"], "succeeded", "{done}");
    // The operator's command: two waves, each watched for 4 s.
    let out = phoenixctl(
        f.controller.http,
        &[
            "experiment",
            "promote",
            &id,
            "--waves",
            "50%,100%",
            "--watch",
            "4s",
        ],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("promoting"), "{stdout}");
    assert!(stdout.contains("phoenixctl experiment watch"), "{stdout}");
    // Once the first wave passed, the workers the winner keeps go away:
    // the promoted agents now export far fewer series than measured.
    wait_for(Duration::from_secs(60), || {
        let p = promotion(f.controller.http, &id);
        (p.waves[0].state == phoenix_api::WaveState::Passed).then_some(())
    })
    .unwrap_or_else(|| panic!("wave 1 never passed: {}", get(f.controller.http, &id)));
    drop(workers);
    let done = wait_state(
        f.controller.http,
        &id,
        &["rolled_back", "promoted"],
        Duration::from_secs(60),
    );
    assert_eq!(done["state"], "rolled_back", "{done}");
    // The reason is completed once the restore pushes are made.
    let done = wait_for(Duration::from_secs(10), || {
        let v = get(f.controller.http, &id);
        v["reason"].as_str()?.contains("restored").then_some(v)
    })
    .expect("the restore is recorded");
    let reason = done["reason"].as_str().unwrap_or_default();
    assert!(
        reason.starts_with("wave 2 of 2: agent ") && reason.contains("series on metrics/workers"),
        "{reason}"
    );
    assert!(
        reason.contains("restored the previous config on 2 agent(s)"),
        "{reason}"
    );
    let p = promotion(f.controller.http, &id);
    assert_eq!(p.waves[0].state, phoenix_api::WaveState::Passed);
    assert_eq!(p.waves[1].state, phoenix_api::WaveState::Failed);
    assert!(p.waves[1].reason.contains("series"), "{:?}", p.waves[1]);
    // Both agents, the one promoted in wave 1 too, run their own config again.
    f.wait_local_configs();
    // `get` shows the waves and why the second stopped.
    let out = phoenixctl(f.controller.http, &["experiment", "get", &id]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("promotion of workers"), "{text}");
    assert!(
        text.lines()
            .any(|l| l.contains("failed") && l.contains("series on metrics/workers")),
        "{text}"
    );
    drop(f);
}
