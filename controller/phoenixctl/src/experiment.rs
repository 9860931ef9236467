//! `phoenixctl experiment ...`: the experiments API as tables and a live view.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Read, Write};
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use phoenix_api::{
    ActionRequest, DefinitionRequest, Estimate, ExperimentAction, ExperimentDetail, ExperimentList,
    ExperimentReport, ExperimentResults, ExperimentState, ExperimentSummary, Headline, Outcome,
    ResultPoint, ValidationReport,
};
use serde_json::json;

use super::{
    Client, EXIT_INTERRUPTED, ExperimentCommand, Failure, Output, Reply, encode, ongoing, print,
    short, table,
};

pub(super) async fn run(
    client: &Client,
    out: Output,
    cmd: &ExperimentCommand,
) -> Result<u8, Failure> {
    match cmd {
        ExperimentCommand::Create { file, start, note } => {
            let request = DefinitionRequest {
                definition: read_definition(file)?,
                note: note.clone(),
            };
            let created: Reply<ExperimentSummary> =
                client.post("/api/v1/experiments", &request).await?;
            let id = created.body.id.clone();
            if !start {
                print(out, &created, |c| {
                    format!(
                        "experiment {id} created: {:?}, {}\n\
                         start it with: phoenixctl experiment start {id}\n",
                        c.name, c.state,
                    )
                });
                return Ok(0);
            }
            if out == Output::Table {
                println!(
                    "experiment {id} created: {:?}, {}",
                    created.body.name, created.body.state
                );
            }
            let started = act(
                client,
                &id,
                ExperimentAction::Start,
                &ActionRequest {
                    note: request.note,
                    ..ActionRequest::default()
                },
            )
            .await
            .map_err(|Failure(m, code)| {
                Failure(
                    format!("experiment {id} was created but not started: {m}"),
                    code,
                )
            })?;
            print(out, &started, |v| {
                format!(
                    "{}follow it with: phoenixctl experiment watch {id}\n",
                    state_line(v)
                )
            });
        }
        ExperimentCommand::Validate { file, show_config } => {
            let request = DefinitionRequest {
                definition: read_definition(file)?,
                note: None,
            };
            let checked: Reply<ValidationReport> = client
                .post("/api/v1/experiments/validate", &request)
                .await?;
            let name = file_label(file);
            print(out, &checked, |v| validate_text(&name, v, *show_config));
            return Ok(if checked.body.valid {
                0
            } else {
                super::EXIT_NOT_APPLIED
            });
        }
        ExperimentCommand::List { state, limit } => {
            let mut path = format!("/api/v1/experiments?limit={limit}");
            if let Some(st) = state {
                path.push_str(&format!("&state={}", encode(st)));
            }
            let list: Reply<ExperimentList> = client.get(&path).await?;
            print(out, &list, list_text);
        }
        ExperimentCommand::Get { id } => {
            let detail: Reply<ExperimentDetail> = client
                .get(&format!("/api/v1/experiments/{}", encode(id)))
                .await?;
            print(out, &detail, get_text);
        }
        ExperimentCommand::Start { id, note } => {
            let v = act(client, id, ExperimentAction::Start, &by(note)).await?;
            print(out, &v, |v| {
                format!(
                    "{}follow it with: phoenixctl experiment watch {id}\n",
                    state_line(v)
                )
            });
        }
        ExperimentCommand::Stop { id, note } => {
            let v = act(client, id, ExperimentAction::Stop, &by(note)).await?;
            print(out, &v, state_line);
        }
        ExperimentCommand::Rollback { id, reason, note } => {
            let request = ActionRequest {
                reason: reason.clone(),
                ..by(note)
            };
            let v = act(client, id, ExperimentAction::Rollback, &request).await?;
            print(out, &v, state_line);
        }
        ExperimentCommand::Promote {
            id,
            variant,
            waves,
            watch,
            note,
        } => {
            let request = ActionRequest {
                variant: variant.clone(),
                waves: waves.as_ref().map(|w| w.0.clone()),
                watch: watch.clone(),
                ..by(note)
            };
            let v = act(client, id, ExperimentAction::Promote, &request).await?;
            print(out, &v, |v| {
                let follow = if v.state == ExperimentState::Promoting {
                    format!("follow the waves with: phoenixctl experiment watch {id}\n")
                } else {
                    String::new()
                };
                state_line(v) + &follow
            });
        }
        ExperimentCommand::Results {
            id,
            agent,
            json,
            raw,
            last,
        } => {
            let mut query = Vec::new();
            if let Some(a) = agent {
                query.push(format!("agent={}", encode(a)));
            }
            if *raw {
                query.push("raw=true".to_string());
            }
            let results: Reply<ExperimentResults> = client
                .get(&format!(
                    "/api/v1/experiments/{}/results?{}",
                    encode(id),
                    query.join("&")
                ))
                .await?;
            let out = if *json || *raw { Output::Json } else { out };
            print(out, &results, |v| results_text(v, *last));
        }
        ExperimentCommand::Report { id, json } => {
            let report: Reply<ExperimentReport> = client
                .get(&format!("/api/v1/experiments/{}/report", encode(id)))
                .await?;
            let out = if *json { Output::Json } else { out };
            print(out, &report, report_text);
        }
        ExperimentCommand::Watch { id, interval } => {
            return watch(client, out, id, *interval).await;
        }
    }
    Ok(0)
}

/// The definition's text: a file, or standard input for `-`.
fn read_definition(file: &Path) -> Result<String, Failure> {
    if file == Path::new("-") {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .map_err(|e| Failure::new(format!("cannot read standard input: {e}")))?;
        return Ok(text);
    }
    std::fs::read_to_string(file)
        .map_err(|e| Failure::new(format!("cannot read {}: {e}", file.display())))
}

fn file_label(file: &Path) -> String {
    if file == Path::new("-") {
        "<stdin>".into()
    } else {
        file.display().to_string()
    }
}

/// An action's body with the caller's note.
fn by(note: &Option<String>) -> ActionRequest {
    ActionRequest {
        note: note.clone(),
        ..ActionRequest::default()
    }
}

/// POST `/api/v1/experiments/{id}/{action}`.
async fn act(
    client: &Client,
    id: &str,
    action: ExperimentAction,
    body: &ActionRequest,
) -> Result<Reply<ExperimentSummary>, Failure> {
    client
        .post(
            &format!("/api/v1/experiments/{}/{}", encode(id), action.as_str()),
            body,
        )
        .await
}

/// `experiment ID: STATE` and the reason.
fn state_line(e: &ExperimentSummary) -> String {
    let mut t = format!("experiment {}: {}", e.id, e.state);
    if !e.reason.is_empty() {
        t.push_str(&format!(" ({})", e.reason));
    }
    t.push('\n');
    t
}

fn validate_text(name: &str, v: &ValidationReport, show_config: bool) -> String {
    if !v.valid {
        let mut t = format!("{name}: {} error(s):\n", v.errors.len());
        for e in &v.errors {
            t.push_str(&format!("  {}\n", e.to_string().replace('\n', "\n    ")));
        }
        return t;
    }
    let mut t = format!("{name}: valid\n");
    let variants = v.variants.as_deref().unwrap_or_default();
    t.push_str(&format!("variants: {}\n", variants.join(", ")));
    let agents = v.matching_agents.as_deref().unwrap_or_default();
    if agents.is_empty() {
        t.push_str("matching agents: none online now (it can be created, but a start fails until some connect)\n");
    } else {
        t.push_str(&format!(
            "matching agents: {} online now: {}\n",
            agents.len(),
            agents.join(", ")
        ));
    }
    if show_config {
        t.push_str("\ncomposed agent config:\n");
        t.push_str(v.config.as_deref().unwrap_or_default());
        if !t.ends_with('\n') {
            t.push('\n');
        }
    }
    t
}

fn list_text(list: &ExperimentList) -> String {
    let rows: Vec<Vec<String>> = list
        .experiments
        .iter()
        .map(|e| {
            vec![
                e.id.clone(),
                e.name.clone(),
                e.state.to_string(),
                e.created_at.clone(),
                verdict_cell(e.headline.as_ref()),
                reductions_cell(e.headline.as_ref()),
            ]
        })
        .collect();
    if rows.is_empty() {
        return "no experiments\n".into();
    }
    table(
        &[
            "ID",
            "NAME",
            "STATE",
            "CREATED",
            "VERDICT/WINNER",
            "SERIES REDUCTION",
        ],
        &rows,
    )
}

/// `succeeded/aggressive`, `failed`, or `-` before a verdict.
fn verdict_cell(headline: Option<&Headline>) -> String {
    let Some(h) = headline.filter(|h| !h.verdict.is_empty()) else {
        return "-".into();
    };
    match &h.winner {
        Some(w) if !w.is_empty() => format!("{}/{w}", h.verdict),
        _ => h.verdict.clone(),
    }
}

/// `aggressive 77.0%, critical 41.2%` from a headline.
fn reductions_cell(headline: Option<&Headline>) -> String {
    let parts: Vec<String> = headline
        .into_iter()
        .flat_map(|h| &h.candidates)
        .map(|c| format!("{} {}", c.name, pct(c.series_reduction)))
        .collect();
    if parts.is_empty() {
        "-".into()
    } else {
        parts.join(", ")
    }
}

fn get_text(d: &ExperimentDetail) -> String {
    let e = &d.summary;
    let mut t = format!("experiment {}  {:?}  {}\n", e.id, e.name, e.state);
    if !e.reason.is_empty() {
        t.push_str(&format!("reason: {}\n", e.reason));
    }
    if !e.description.is_empty() {
        t.push_str(&format!("description: {}\n", e.description));
    }
    t.push_str(&format!(
        "by {}, config {}\n",
        e.author,
        short(&e.config_hash)
    ));
    let variants: Vec<String> = e
        .variants
        .iter()
        .map(|v| {
            let mut d = format!("{} ({}, {}", v.name, v.role.as_str(), v.mode);
            if let Some(template) = v.template.as_deref().filter(|t| !t.is_empty()) {
                d.push_str(&format!(", {template}"));
            }
            d + ")"
        })
        .collect();
    t.push_str(&format!("variants: {}\n", variants.join(", ")));
    let times = [
        (Some(&e.created_at), "created"),
        (e.start_at.as_ref(), "starts at"),
        (e.running_at.as_ref(), "running since"),
        (e.measure_from.as_ref(), "measuring from"),
        (e.ends_at.as_ref(), "window ends"),
        (e.finished_at.as_ref(), "finished"),
        (d.deploy_push.as_ref(), "deploy push"),
        (d.promoted_push.as_ref(), "promoted push"),
    ];
    for (value, label) in times {
        if let Some(v) = value.filter(|v| !v.is_empty()) {
            t.push_str(&format!("{label}: {v}\n"));
        }
    }
    if e.headline.is_some() {
        t.push_str(&format!(
            "verdict: {}; series reduction: {}\n",
            verdict_cell(e.headline.as_ref()),
            reductions_cell(e.headline.as_ref())
        ));
    }
    // The breach's shape is the guardrail check's; these two it always has.
    if let Some(b) = d.breach.as_ref().filter(|b| b.is_object()) {
        let text = |key: &str| {
            b.get(key)
                .and_then(|v| v.as_str())
                .unwrap_or("")
                .to_string()
        };
        t.push_str(&format!(
            "guardrail breached: {}: {}\n",
            text("guardrail"),
            text("message")
        ));
    }
    for dq in &d.disqualified {
        let why = &dq.disqualification;
        t.push_str(&format!(
            "disqualified: {} at {}: {}: {} ({})\n",
            dq.variant,
            why.at,
            why.guardrail,
            why.reason,
            dq.push
                .as_deref()
                .map_or("not pushed yet".to_string(), |p| format!("push {p}"))
        ));
    }
    t.push_str(&waves_text(d));
    let transitions: Vec<Vec<String>> = d
        .transitions
        .iter()
        .map(|tr| {
            vec![
                tr.at.clone(),
                or_dash(&tr.from),
                tr.to.clone(),
                tr.actor.clone(),
                tr.reason.clone(),
            ]
        })
        .collect();
    t.push_str("\ntimeline:\n");
    if transitions.is_empty() {
        t.push_str("  (no transitions)\n");
    } else {
        t.push_str(&table(&["AT", "FROM", "TO", "BY", "REASON"], &transitions));
    }
    let targets: Vec<Vec<String>> = d
        .targets
        .iter()
        .map(|tg| {
            vec![
                tg.agent_id.clone(),
                tg.status.as_str().into(),
                if tg.runs_experiment { "yes" } else { "no" }.into(),
                or_dash(short(&tg.effective_hash)),
                or_dash(short(&tg.previous_hash)),
                or_dash(&tg.config_state),
                tg.config_error
                    .lines()
                    .next()
                    .unwrap_or_default()
                    .to_string(),
            ]
        })
        .collect();
    if targets.is_empty() {
        t.push_str("\ntargets: none yet (chosen when it deploys)\n");
    } else {
        t.push_str(&format!("\ntargets: {}\n", targets.len()));
        t.push_str(&table(
            &[
                "AGENT",
                "STATUS",
                "RUNS EXPERIMENT",
                "EFFECTIVE",
                "PREVIOUS",
                "CONFIG",
                "ERROR",
            ],
            &targets,
        ));
    }
    t
}

/// A promotion in waves: one line for the plan, a row per wave.
fn waves_text(d: &ExperimentDetail) -> String {
    let Some(p) = &d.promotion else {
        return String::new();
    };
    let rows: Vec<Vec<String>> = p
        .waves
        .iter()
        .map(|w| {
            vec![
                w.number.to_string(),
                w.percent.to_string(),
                w.agents.len().to_string(),
                w.state.as_str().into(),
                or_dash(w.push.as_deref().unwrap_or("")),
                or_dash(w.watch_until.as_deref().unwrap_or("")),
                w.reason.clone(),
            ]
        })
        .collect();
    format!(
        "\npromotion of {} (config {}), each wave watched {} s, series may drop {:.0}%:\n{}",
        p.variant,
        short(&p.config_hash),
        p.watch_ms / 1000,
        p.max_series_drop * 100.0,
        table(
            &[
                "WAVE",
                "REACH",
                "AGENTS",
                "STATE",
                "PUSH",
                "WATCHED UNTIL",
                "WHY"
            ],
            &rows
        )
    )
}

fn or_dash(text: &str) -> String {
    if text.is_empty() {
        "-".into()
    } else {
        text.to_string()
    }
}

/// A fraction as a percentage: `0.77` → `77.0%`; `-` when absent.
fn pct(v: Option<f64>) -> String {
    v.map_or_else(|| "-".into(), |x| format!("{:.1}%", x * 100.0))
}

/// A CPU share, already in percent of one core.
fn cpu(v: Option<f64>) -> String {
    v.map_or_else(|| "-".into(), |x| format!("{x:.2}%"))
}

/// A KPI's value in its unit: cpu in percent of a core, the rest fractions.
fn kpi_value(kpi: &str, v: f64) -> String {
    if kpi == "cpu_overhead_percent" {
        cpu(Some(v))
    } else {
        pct(Some(v))
    }
}

/// An estimate's value and `[low, high]`.
fn estimate(kpi: &str, e: Option<Estimate>) -> (String, String) {
    let Some(e) = e else {
        return ("-".into(), "-".into());
    };
    (
        kpi_value(kpi, e.value),
        format!("[{}, {}]", kpi_value(kpi, e.low), kpi_value(kpi, e.high)),
    )
}

fn outcome(o: Outcome) -> &'static str {
    match o {
        Outcome::Pass => "PASS",
        Outcome::Fail => "FAIL",
        Outcome::Inconclusive => "INCONCLUSIVE",
        Outcome::NoData => "NO DATA",
    }
}

/// A mean per agent and interval.
fn mean(x: f64) -> String {
    format!("{x:.1}")
}

/// Bytes in SI units: `812 B`, `12.3 kB`, `4.5 MB`.
fn bytes(x: f64) -> String {
    if x < 1000.0 {
        return format!("{x:.0} B");
    }
    for (div, unit) in [(1e12, "TB"), (1e9, "GB"), (1e6, "MB")] {
        if x >= div {
            return format!("{:.1} {unit}", x / div);
        }
    }
    format!("{:.1} kB", x / 1e3)
}

/// A large number: `518.4M`.
fn big(x: f64) -> String {
    for (div, suffix) in [(1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")] {
        if x >= div {
            return format!("{:.1}{suffix}", x / div);
        }
    }
    format!("{x:.0}")
}

/// Variant names of a results answer: the baseline first.
fn ordered_variants(results: &ExperimentResults) -> Vec<&str> {
    let mut names: Vec<&str> = results.variants.keys().map(String::as_str).collect();
    names.sort_by_key(|n| (*n != results.baseline, *n));
    names
}

fn point_cells(p: &ResultPoint) -> Vec<String> {
    vec![
        p.series.to_string(),
        p.datapoints.to_string(),
        bytes(p.bytes as f64),
        bytes(p.bytes_gzip as f64),
        pct(p.critical_coverage),
        pct(p.topn_fidelity),
        cpu(p.cpu_overhead_percent),
    ]
}

const POINT_HEADER: [&str; 7] = [
    "SERIES", "POINTS", "BYTES", "GZIP", "COVERAGE", "FIDELITY", "CPU",
];

fn results_text(v: &ExperimentResults, last: Option<usize>) -> String {
    let mut t = format!(
        "experiment {} ({}): interval {}ms, baseline {}\n",
        v.id, v.state, v.interval_ms, v.baseline
    );
    let mut rows: Vec<(&str, usize, &str, &ResultPoint)> = Vec::new();
    for (order, name) in ordered_variants(v).into_iter().enumerate() {
        for p in v.variants.get(name).into_iter().flatten() {
            rows.push((p.time.as_str(), order, name, p));
        }
    }
    if rows.is_empty() {
        t.push_str("no measurements yet\n");
        return t;
    }
    rows.sort_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));
    if let Some(n) = last {
        let mut times: Vec<&str> = rows.iter().map(|r| r.0).collect();
        times.dedup();
        if times.len() > n {
            let from = times[times.len() - n];
            rows.retain(|r| r.0 >= from);
        }
    }
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|(time, _, name, p)| {
            let mut row = vec![time.to_string(), name.to_string(), p.agents.to_string()];
            row.extend(point_cells(p));
            row
        })
        .collect();
    let mut header = vec!["TIME", "VARIANT", "AGENTS"];
    header.extend(POINT_HEADER);
    t.push_str(&table(&header, &cells));
    t.push_str("coverage: critical processes kept visible; fidelity: the baseline's top consumers kept; cpu: percent of one core\n");
    t
}

/// The readable verdict.
fn report_text(r: &ExperimentReport) -> String {
    let a = &r.analysis;
    let ongoing = ongoing(r.state);
    let mut t = format!("experiment {}  {}\n", r.id, r.state);
    if !r.reason.is_empty() {
        t.push_str(&format!("reason: {}\n", r.reason));
    }
    let winner = a.winner.as_deref().unwrap_or("");
    t.push_str(&match (r.is_final, winner) {
        (true, "") => format!("verdict: {}, no winner\n", a.verdict.to_uppercase()),
        (true, w) => format!("verdict: {}, winner {w}\n", a.verdict.to_uppercase()),
        (false, w) => {
            let prefix = if ongoing {
                "interim verdict (on the data so far)"
            } else {
                "no verdict recorded; on the data measured"
            };
            match w {
                "" => format!("{prefix}: no candidate passes every criterion\n"),
                w => format!("{prefix}: {w} passes every criterion\n"),
            }
        }
    });
    t.push_str(&format!(
        "{} confidence intervals ({} resamples), {} target agent(s)\n",
        pct(Some(a.confidence)),
        a.resamples,
        a.target_agents
    ));
    for c in &a.candidates {
        t.push_str(&format!(
            "\ncandidate {}: {}  ({} paired interval(s) on {} agent(s))\n",
            c.name,
            outcome(c.outcome),
            c.paired_intervals,
            c.agents
        ));
        if let Some(why) = &c.disqualified {
            t.push_str(&format!(
                "  DISQUALIFIED {}: {}: {}\n",
                why.at, why.guardrail, why.reason
            ));
        }
        let criteria: Vec<Vec<String>> = c
            .criteria
            .iter()
            .map(|cr| {
                let (value, ci) = estimate(&cr.kpi, cr.estimate);
                vec![
                    format!("  {}", cr.criterion),
                    value,
                    ci,
                    format!("{} {}", cr.op, kpi_value(&cr.kpi, cr.threshold)),
                    outcome(cr.outcome).to_string(),
                ]
            })
            .collect();
        if criteria.is_empty() {
            t.push_str("  no criteria\n");
        } else {
            t.push_str(&table(
                &["  CRITERION", "MEASURED", "CI", "THRESHOLD", "OUTCOME"],
                &criteria,
            ));
        }
        // The KPIs no criterion names, for the record.
        let others: Vec<String> = c
            .kpis
            .named()
            .into_iter()
            .filter(|(k, _)| !c.criteria.iter().any(|cr| cr.kpi == *k))
            .filter_map(|(k, e)| {
                e?;
                let (value, ci) = estimate(k, e);
                Some(format!("{} {value} {ci}", k.replace('_', " ")))
            })
            .collect();
        if !others.is_empty() {
            t.push_str(&format!("  also: {}\n", others.join("; ")));
        }
        for (folded, label) in [(false, "drops"), (true, "folds into rollups")] {
            let named: Vec<String> = c
                .losses
                .iter()
                .filter(|l| l.folded == folded)
                .map(|l| {
                    format!(
                        "{} ({} CPU, {} memory)",
                        l.executable,
                        pct(Some(l.cpu_share)),
                        pct(Some(l.memory_share))
                    )
                })
                .collect();
            if !named.is_empty() {
                t.push_str(&format!("  {label}: {}\n", named.join(", ")));
            }
        }
    }
    let variants: Vec<Vec<String>> = a
        .variants
        .iter()
        .map(|v| {
            if v.intervals == 0 {
                let mut row = vec![v.name.clone(), "0".into()];
                row.extend(std::iter::repeat_n("-".to_string(), 7));
                return row;
            }
            vec![
                v.name.clone(),
                v.intervals.to_string(),
                mean(v.series),
                mean(v.datapoints),
                bytes(v.bytes),
                cpu(Some(v.cpu_overhead_percent)),
                big(v.monthly_datapoints),
                format!("{:.2}", v.monthly_gb),
                format!("{:.2} {}", v.monthly_cost, a.currency),
            ]
        })
        .collect();
    if !variants.is_empty() {
        t.push_str(&format!(
            "\nper variant (means per agent and interval; monthly for {} agent(s) over 30 days):\n",
            a.target_agents
        ));
        t.push_str(&table(
            &[
                "VARIANT",
                "INTERVALS",
                "SERIES",
                "POINTS",
                "BYTES",
                "CPU",
                "POINTS/MONTH",
                "GB/MONTH",
                "COST/MONTH",
            ],
            &variants,
        ));
    }
    if !a.recommendation.is_empty() {
        t.push_str(&format!("\nrecommendation: {}\n", a.recommendation));
    }
    t.push_str(if r.is_final {
        "final: yes\n"
    } else if ongoing {
        "final: no (the window is not over: numbers and verdict can still change)\n"
    } else {
        "final: no (the experiment ended without a verdict: these are the numbers it had)\n"
    });
    t
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn parse_ms(text: &str) -> Option<i64> {
    phoenix_processors::time::parse_rfc3339_nanos(text).map(|n| (n / 1_000_000) as i64)
}

/// `1h 02m 03s`, `4m 10s`, `12s`.
fn human(ms: i64) -> String {
    let secs = (ms.max(0) + 999) / 1000;
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    if h > 0 {
        format!("{h}h {m:02}m {s:02}s")
    } else if m > 0 {
        format!("{m}m {s:02}s")
    } else {
        format!("{s}s")
    }
}

/// Where the measuring window stands.
fn window_text(e: &ExperimentSummary, now: i64) -> String {
    let at = |t: &Option<String>| t.as_deref().and_then(parse_ms);
    let text = |t: &Option<String>| t.clone().unwrap_or_default();
    match e.state {
        ExperimentState::Draft => "not started".into(),
        ExperimentState::Pending => match at(&e.start_at) {
            Some(t) if t > now => {
                format!("deploys in {} (at {})", human(t - now), text(&e.start_at))
            }
            _ => "deploying now".into(),
        },
        ExperimentState::Deploying => {
            "deploying: waiting for every target to apply the config".into()
        }
        ExperimentState::Running => match (at(&e.measure_from), at(&e.ends_at)) {
            (Some(m), Some(end)) if now < m => format!(
                "warm-up: measuring in {}, then for {} (until {})",
                human(m - now),
                human(end - m),
                text(&e.ends_at)
            ),
            (_, Some(end)) if now < end => {
                format!("{} left (ends {})", human(end - now), text(&e.ends_at))
            }
            (_, Some(_)) => "over: analysing".into(),
            _ => "running".into(),
        },
        ExperimentState::Analyzing => "over: analysing".into(),
        _ => match e.finished_at.as_deref() {
            None | Some("") => "over".into(),
            Some(f) => format!("over (finished {f})"),
        },
    }
}

/// What one refresh of `watch` shows.
struct Snapshot {
    experiment: Reply<ExperimentDetail>,
    results: Reply<ExperimentResults>,
    report: Reply<ExperimentReport>,
}

/// The report's cache key: it changes with the state or the data.
type ReportKey = (ExperimentState, String, usize);

/// Fetch the experiment and its results; the report only when the
/// state or the data changed (it runs a bootstrap on the controller).
async fn snapshot(
    client: &Client,
    id: &str,
    cache: &mut Option<(ReportKey, Reply<ExperimentReport>)>,
) -> Result<Snapshot, Failure> {
    let base = format!("/api/v1/experiments/{}", encode(id));
    let experiment: Reply<ExperimentDetail> = client.get(&base).await?;
    let results: Reply<ExperimentResults> = client.get(&format!("{base}/results")).await?;
    let points: usize = results.body.variants.values().map(Vec::len).sum();
    let key = (
        experiment.body.summary.state,
        experiment.body.summary.updated_at.clone(),
        points,
    );
    let report = match cache {
        Some((k, r)) if *k == key => r.clone(),
        _ => {
            let r: Reply<ExperimentReport> = client.get(&format!("{base}/report")).await?;
            *cache = Some((key, r.clone()));
            r
        }
    };
    Ok(Snapshot {
        experiment,
        results,
        report,
    })
}

/// The latest point of each variant.
fn latest(results: &ExperimentResults) -> BTreeMap<&str, &ResultPoint> {
    results
        .variants
        .iter()
        .filter_map(|(name, points)| Some((name.as_str(), points.last()?)))
        .collect()
}

/// One line on the verdict so far.
fn verdict_line(r: &ExperimentReport) -> String {
    let a = &r.analysis;
    if !r.is_final && a.candidates.iter().all(|c| c.outcome == Outcome::NoData) {
        return "interim verdict: no paired measurements yet".into();
    }
    let each: Vec<String> = a
        .candidates
        .iter()
        .map(|c| {
            format!(
                "{} {} (series reduction {}, critical coverage {})",
                c.name,
                outcome(c.outcome),
                pct(c.kpis.series_reduction.map(|e| e.value)),
                pct(c.kpis.critical_coverage.map(|e| e.value))
            )
        })
        .collect();
    let head = match (r.is_final, a.winner.as_deref().unwrap_or("")) {
        (true, "") => format!("final verdict: {}, no winner", a.verdict),
        (true, w) => format!("final verdict: {}, winner {w}", a.verdict),
        (false, "") => "interim verdict: no winner yet".into(),
        (false, w) => format!("interim verdict: {w} would win"),
    };
    format!("{head} | {}", each.join("; "))
}

fn watch_text(snap: &Snapshot, problem: Option<&str>) -> String {
    let d = &snap.experiment.body;
    let e = &d.summary;
    let mut t = format!(
        "experiment {}  {:?}  {}\n",
        e.id,
        e.name,
        e.state.as_str().to_uppercase()
    );
    if !e.reason.is_empty() {
        t.push_str(&format!("reason:  {}\n", e.reason));
    }
    t.push_str(&format!("window:  {}\n", window_text(e, now_ms())));
    if !d.targets.is_empty() {
        let running = d.targets.iter().filter(|tg| tg.runs_experiment).count();
        t.push_str(&format!(
            "targets: {}, {running} running the experiment config\n",
            d.targets.len()
        ));
    }
    t.push_str(&waves_text(d));
    let latest = latest(&snap.results.body);
    let rows: Vec<Vec<String>> = e
        .variants
        .iter()
        .map(|v| {
            let mut row = vec![v.name.clone(), v.mode.clone()];
            match latest.get(v.name.as_str()) {
                Some(p) => {
                    row.push(p.time.get(11..19).unwrap_or("-").to_string());
                    row.push(p.agents.to_string());
                    row.extend(point_cells(p));
                }
                None => row.extend(std::iter::repeat_n("-".to_string(), 9)),
            }
            row
        })
        .collect();
    let mut header = vec!["VARIANT", "MODE", "INTERVAL", "AGENTS"];
    header.extend(POINT_HEADER);
    t.push('\n');
    t.push_str(&table(&header, &rows));
    t.push('\n');
    t.push_str(&verdict_line(&snap.report.body));
    t.push('\n');
    if let Some(p) = problem {
        t.push_str(&format!("(refresh failed: {p}; retrying)\n"));
    }
    t
}

/// A failure worth retrying: the controller is away or overloaded.
fn transient(f: &Failure) -> bool {
    f.0.starts_with("cannot reach") || f.0.starts_with("reading the answer") || f.0.starts_with('5')
}

fn show(tty: bool, text: &str) {
    let mut stdout = std::io::stdout().lock();
    let _ = if tty {
        // Home, every line cleared to its end, the rest of the screen cleared.
        let body: String = text.lines().map(|l| format!("{l}\x1b[K\n")).collect();
        write!(stdout, "\x1b[H{body}\x1b[J")
    } else {
        writeln!(stdout, "{text}")
    };
    let _ = stdout.flush();
}

async fn watch(client: &Client, out: Output, id: &str, every: Duration) -> Result<u8, Failure> {
    let tty = out == Output::Table && std::io::stdout().is_terminal();
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    // Without a handler (it could not be installed), SIGINT kills as usual.
    let mut handler = true;
    let mut cache = None;
    let mut last: Option<Snapshot> = None;
    if tty {
        print!("\x1b[2J");
    }
    loop {
        let fetched = tokio::select! {
            r = snapshot(client, id, &mut cache) => r,
            r = &mut ctrl_c, if handler => match r {
                Ok(()) => return Ok(interrupted(tty, id)),
                Err(_) => { handler = false; continue; }
            },
        };
        match fetched {
            Ok(snap) => {
                let decided = !ongoing(snap.experiment.body.summary.state);
                if out == Output::Json {
                    let line = json!({
                        "experiment": snap.experiment.json,
                        "latest": latest(&snap.results.body),
                        "report": snap.report.json,
                    });
                    println!("{line}");
                } else {
                    show(tty, &watch_text(&snap, None));
                }
                if decided {
                    // The report was fetched after the state was read:
                    // it is the decided one.
                    if out == Output::Table {
                        println!("\n{}", report_text(&snap.report.body).trim_end());
                    }
                    return Ok(0);
                }
                last = Some(snap);
            }
            Err(f) if last.is_none() || !transient(&f) => return Err(f),
            Err(f) => {
                if let (Some(snap), Output::Table) = (&last, out) {
                    show(tty, &watch_text(snap, Some(&f.0)));
                } else {
                    eprintln!("phoenixctl: refresh failed: {}; retrying", f.0);
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            r = &mut ctrl_c, if handler => match r {
                Ok(()) => return Ok(interrupted(tty, id)),
                Err(_) => handler = false,
            },
        }
    }
}

fn interrupted(tty: bool, id: &str) -> u8 {
    if tty {
        println!();
    }
    let _ = std::io::stdout().flush();
    eprintln!(
        "phoenixctl: stopped watching; experiment {id} goes on (phoenixctl experiment stop {id} stops it)"
    );
    EXIT_INTERRUPTED
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_read_as_people_write_them() {
        assert_eq!(pct(Some(0.77)), "77.0%");
        assert_eq!(pct(Some(1.0)), "100.0%");
        assert_eq!(pct(None), "-");
        assert_eq!(cpu(Some(0.034)), "0.03%");
        assert_eq!(bytes(812.0), "812 B");
        assert_eq!(bytes(12_345.0), "12.3 kB");
        assert_eq!(bytes(4_500_000.0), "4.5 MB");
        assert_eq!(big(518_400_000.0), "518.4M");
        assert_eq!(human(12_000), "12s");
        assert_eq!(human(250_000), "4m 10s");
        assert_eq!(human(3_723_000), "1h 02m 03s");
        assert_eq!(
            estimate(
                "series_reduction",
                Some(Estimate {
                    value: 0.5,
                    low: 0.4,
                    high: 0.6
                })
            ),
            ("50.0%".to_string(), "[40.0%, 60.0%]".to_string())
        );
        assert_eq!(outcome(Outcome::NoData), "NO DATA");
    }

    #[test]
    fn the_window_counts_down_from_the_controller_times() {
        let e: ExperimentSummary = serde_json::from_value(json!({
            "id": "exp-1", "name": "n", "description": "", "state": "running", "reason": "",
            "author": "a", "config_hash": "h", "variants": [], "actions": ["stop"],
            "created_at": "2026-01-01T00:00:00.000Z", "updated_at": "2026-01-01T00:00:00.000Z",
            "start_at": null, "running_at": "2026-01-01T00:00:00.000Z",
            "measure_from": "2026-01-01T00:00:30.000Z",
            "ends_at": "2026-01-01T00:10:30.000Z",
            "finished_at": null, "headline": null,
        }))
        .unwrap();
        let t0 = parse_ms("2026-01-01T00:00:00.000Z").unwrap();
        assert!(window_text(&e, t0).starts_with("warm-up: measuring in 30s, then for 10m 00s"));
        assert!(window_text(&e, t0 + 90_000).starts_with("9m 00s left"));
        assert_eq!(window_text(&e, t0 + 700_000), "over: analysing");
    }

    #[test]
    fn a_report_shows_each_criterion_with_its_interval() {
        let r: ExperimentReport = serde_json::from_value(json!({
            "id": "exp-1", "state": "succeeded", "reason": "done", "final": true,
            "verdict": "succeeded", "winner": "aggressive", "recommendation": "Promote it.",
            "confidence": 0.95, "resamples": 1000, "target_agents": 2, "currency": "USD",
            "variants": [
                {"name": "baseline", "intervals": 10, "series": 200.0, "datapoints": 200.0,
                 "bytes": 48000.0, "bytes_gzip": 6000.0, "cpu_overhead_percent": 0.0,
                 "monthly_datapoints": 5.0e8, "monthly_gb": 120.0, "monthly_cost": 110.0}
            ],
            "candidates": [{
                "name": "aggressive", "paired_intervals": 10, "agents": 2, "outcome": "pass",
                "kpis": {"series_reduction": {"value": 0.77, "low": 0.75, "high": 0.79},
                         "topn_fidelity": null},
                "criteria": [
                    {"criterion": "min_series_reduction", "kpi": "series_reduction", "op": ">=",
                     "threshold": 0.5, "estimate": {"value": 0.77, "low": 0.75, "high": 0.79},
                     "outcome": "pass"},
                    {"criterion": "max_cpu_overhead_percent", "kpi": "cpu_overhead_percent",
                     "op": "<=", "threshold": 1.0, "estimate": null, "outcome": "no_data"}
                ],
                "losses": [
                    {"executable": "backup-agent", "folded": false, "cpu_share": 0.58,
                     "memory_share": 0.02, "processes": 1.0},
                    {"executable": "sleep", "folded": true, "cpu_share": 0.0,
                     "memory_share": 0.01, "processes": 30.0}
                ]
            }]
        }))
        .unwrap();
        let text = report_text(&r);
        assert!(
            text.contains("verdict: SUCCEEDED, winner aggressive"),
            "{text}"
        );
        let line = text
            .lines()
            .find(|l| l.contains("min_series_reduction"))
            .unwrap();
        for part in ["77.0%", "[75.0%, 79.0%]", ">= 50.0%", "PASS"] {
            assert!(line.contains(part), "{line}");
        }
        let line = text.lines().find(|l| l.contains("max_cpu")).unwrap();
        assert!(
            line.contains("<= 1.00%") && line.contains("NO DATA"),
            "{line}"
        );
        assert!(
            text.contains("110.00 USD") && text.contains("500.0M"),
            "{text}"
        );
        assert!(text.contains("recommendation: Promote it."), "{text}");
        assert!(
            text.contains("  drops: backup-agent (58.0% CPU, 2.0% memory)\n"),
            "{text}"
        );
        assert!(
            text.contains("  folds into rollups: sleep (0.0% CPU, 1.0% memory)\n"),
            "{text}"
        );
        assert!(text.ends_with("final: yes\n"), "{text}");
        assert!(!text.contains("DISQUALIFIED"), "{text}");
    }

    #[test]
    fn a_disqualified_candidate_is_marked_with_when_and_why() {
        let why = json!({
            "at": "2026-01-01T00:01:00.000Z", "guardrail": "critical_coverage",
            "reason": "\"hides-etcd\" kept 0 of 2 critical processes visible on agent a"
        });
        let r: ExperimentReport = serde_json::from_value(json!({
            "id": "exp-1", "state": "succeeded", "reason": "done", "final": true,
            "verdict": "succeeded", "winner": "lean", "recommendation": "Promote it.",
            "confidence": 0.95, "resamples": 1000, "target_agents": 2, "currency": "USD",
            "variants": [],
            "candidates": [{
                "name": "hides-etcd", "paired_intervals": 2, "agents": 2, "outcome": "fail",
                "kpis": {"series_reduction": null, "datapoints_reduction": null,
                         "bytes_reduction": null, "critical_coverage": null,
                         "topn_fidelity": null, "cpu_overhead_percent": null},
                "criteria": [], "disqualified": why
            }]
        }))
        .unwrap();
        let text = report_text(&r);
        assert!(
            text.contains(
                "candidate hides-etcd: FAIL  (2 paired interval(s) on 2 agent(s))\n  \
                 DISQUALIFIED 2026-01-01T00:01:00.000Z: critical_coverage: \
                 \"hides-etcd\" kept 0 of 2 critical processes visible on agent a\n"
            ),
            "{text}"
        );

        let mut entry = why.clone();
        entry["variant"] = json!("hides-etcd");
        entry["push"] = json!("p-7");
        let d: ExperimentDetail = serde_json::from_value(json!({
            "id": "exp-1", "name": "n", "description": "", "state": "running", "reason": "",
            "author": "a", "config_hash": "h", "variants": [], "actions": ["stop"],
            "created_at": "2026-01-01T00:00:00.000Z", "updated_at": "2026-01-01T00:00:00.000Z",
            "start_at": null, "running_at": null, "measure_from": null, "ends_at": null,
            "finished_at": null, "headline": null, "spec": {}, "config": "",
            "deploy_push": null, "promoted_push": null, "breach": null,
            "disqualified": [entry], "transitions": [], "targets": []
        }))
        .unwrap();
        let text = get_text(&d);
        assert!(
            text.contains(
                "disqualified: hides-etcd at 2026-01-01T00:01:00.000Z: critical_coverage: \
                 \"hides-etcd\" kept 0 of 2 critical processes visible on agent a (push p-7)\n"
            ),
            "{text}"
        );
    }

    #[test]
    fn a_promotion_in_waves_shows_each_wave_with_its_state_and_why() {
        let mut detail = json!({
            "id": "exp-1", "name": "topk", "description": "", "state": "rolled_back",
            "reason": "wave 2 of 2 stopped the promotion", "author": "ana",
            "config_hash": "ab12", "variants": [], "actions": [],
            "created_at": "2026-01-01T00:00:00.000Z", "updated_at": "2026-01-01T00:10:00.000Z",
            "start_at": null, "running_at": null, "measure_from": null, "ends_at": null,
            "finished_at": null, "headline": null, "spec": {}, "config": "",
            "deploy_push": null, "promoted_push": null, "breach": null,
            "transitions": [], "targets": []
        });
        let wave = |number: u32, percent: &str, agent: &str, state: &str, reason: &str| {
            json!({"number": number, "percent": percent, "agents": [agent], "state": state,
                   "push": format!("push-{number}"), "started_at": null,
                   "watch_until": "2026-01-01T00:05:00.000Z", "finished_at": null,
                   "reason": reason})
        };
        detail["promotion"] = json!({
            "variant": "lean", "config_hash": "cd34ef56aa001122", "watch_ms": 30000,
            "max_series_drop": 0.2,
            "waves": [
                wave(1, "50%", "a", "passed", "1 promoted agent(s) watched"),
                wave(2, "100%", "b", "failed", "agent b exports 3 series"),
            ]
        });
        let d: ExperimentDetail = serde_json::from_value(detail).unwrap();
        let text = get_text(&d);
        assert!(
            text.contains("promotion of lean (config cd34ef56aa00), each wave watched 30 s, series may drop 20%:"),
            "{text}"
        );
        let row = |n: &str| {
            text.lines()
                .find(|l| l.trim_start().starts_with(n) && l.contains('%'))
                .unwrap_or_else(|| panic!("wave {n} in {text}"))
                .to_string()
        };
        for part in ["50%", "passed", "push-1", "2026-01-01T00:05:00.000Z"] {
            assert!(row("1 ").contains(part), "{text}");
        }
        for part in ["100%", "failed", "push-2", "agent b exports 3 series"] {
            assert!(row("2 ").contains(part), "{text}");
        }
    }
}
