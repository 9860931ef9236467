//! `phoenixctl experiment ...`: the experiments API as tables and a live view.

use std::io::{IsTerminal, Read, Write};
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value, json};

use super::{
    Client, EXIT_INTERRUPTED, ExperimentCommand, Failure, Output, encode, error_line, ongoing,
    print, s, short, table,
};

pub(super) async fn run(
    client: &Client,
    out: Output,
    cmd: &ExperimentCommand,
) -> Result<u8, Failure> {
    match cmd {
        ExperimentCommand::Create {
            file,
            start,
            author,
        } => {
            let definition = read_definition(file)?;
            let author = author_or_user(author);
            let created = client
                .post(
                    "/api/v1/experiments",
                    json!({ "definition": definition, "author": author }),
                )
                .await?;
            let id = s(&created, "id").to_string();
            if !start {
                print(out, &created, |c| {
                    format!(
                        "experiment {id} created: {:?}, {}\n\
                         start it with: phoenixctl experiment start {id}\n",
                        s(c, "name"),
                        s(c, "state"),
                    )
                });
                return Ok(0);
            }
            if out == Output::Table {
                println!(
                    "experiment {id} created: {:?}, {}",
                    s(&created, "name"),
                    s(&created, "state")
                );
            }
            let started = act(client, &id, "start", json!({ "author": author }))
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
            let definition = read_definition(file)?;
            let v = client
                .post(
                    "/api/v1/experiments/validate",
                    json!({ "definition": definition }),
                )
                .await?;
            let valid = v["valid"].as_bool() == Some(true);
            let name = file_label(file);
            print(out, &v, |v| validate_text(&name, v, *show_config));
            return Ok(if valid { 0 } else { super::EXIT_NOT_APPLIED });
        }
        ExperimentCommand::List { state, limit } => {
            let mut path = format!("/api/v1/experiments?limit={limit}");
            if let Some(st) = state {
                path.push_str(&format!("&state={}", encode(st)));
            }
            let v = client.get(&path).await?;
            print(out, &v, list_text);
        }
        ExperimentCommand::Get { id } => {
            let v = client
                .get(&format!("/api/v1/experiments/{}", encode(id)))
                .await?;
            print(out, &v, get_text);
        }
        ExperimentCommand::Start { id, author } => {
            let v = act(
                client,
                id,
                "start",
                json!({ "author": author_or_user(author) }),
            )
            .await?;
            print(out, &v, |v| {
                format!(
                    "{}follow it with: phoenixctl experiment watch {id}\n",
                    state_line(v)
                )
            });
        }
        ExperimentCommand::Stop { id, author } => {
            let v = act(
                client,
                id,
                "stop",
                json!({ "author": author_or_user(author) }),
            )
            .await?;
            print(out, &v, state_line);
        }
        ExperimentCommand::Rollback { id, reason, author } => {
            let mut body = json!({ "author": author_or_user(author) });
            if let Some(r) = reason {
                body["reason"] = Value::String(r.clone());
            }
            let v = act(client, id, "rollback", body).await?;
            print(out, &v, state_line);
        }
        ExperimentCommand::Promote {
            id,
            variant,
            author,
        } => {
            let mut body = json!({ "author": author_or_user(author) });
            if let Some(name) = variant {
                body["variant"] = Value::String(name.clone());
            }
            let v = act(client, id, "promote", body).await?;
            print(out, &v, state_line);
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
            let v = client
                .get(&format!(
                    "/api/v1/experiments/{}/results?{}",
                    encode(id),
                    query.join("&")
                ))
                .await?;
            let out = if *json || *raw { Output::Json } else { out };
            print(out, &v, |v| results_text(v, *last));
        }
        ExperimentCommand::Report { id, json } => {
            let v = client
                .get(&format!("/api/v1/experiments/{}/report", encode(id)))
                .await?;
            let out = if *json { Output::Json } else { out };
            print(out, &v, report_text);
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

fn author_or_user(author: &Option<String>) -> String {
    author
        .clone()
        .or_else(|| std::env::var("USER").ok())
        .unwrap_or_default()
}

/// POST `/api/v1/experiments/{id}/{action}`.
async fn act(client: &Client, id: &str, action: &str, body: Value) -> Result<Value, Failure> {
    client
        .post(
            &format!("/api/v1/experiments/{}/{action}", encode(id)),
            body,
        )
        .await
}

/// `experiment ID: STATE` and the reason.
fn state_line(v: &Value) -> String {
    let mut t = format!("experiment {}: {}", s(v, "id"), s(v, "state"));
    if !s(v, "reason").is_empty() {
        t.push_str(&format!(" ({})", s(v, "reason")));
    }
    t.push('\n');
    t
}

fn validate_text(name: &str, v: &Value, show_config: bool) -> String {
    if v["valid"].as_bool() != Some(true) {
        let errors = v["errors"].as_array().cloned().unwrap_or_default();
        let mut t = format!("{name}: {} error(s):\n", errors.len());
        for e in &errors {
            t.push_str(&format!("  {}\n", error_line(e).replace('\n', "\n    ")));
        }
        return t;
    }
    let mut t = format!("{name}: valid\n");
    let variants: Vec<&str> = v["variants"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    t.push_str(&format!("variants: {}\n", variants.join(", ")));
    let agents: Vec<&str> = v["matching_agents"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
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
        t.push_str(s(v, "config"));
        if !t.ends_with('\n') {
            t.push('\n');
        }
    }
    t
}

fn list_text(v: &Value) -> String {
    let rows: Vec<Vec<String>> = v["experiments"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| {
            let h = &e["headline"];
            vec![
                s(e, "id").to_string(),
                s(e, "name").to_string(),
                s(e, "state").to_string(),
                s(e, "created_at").to_string(),
                verdict_cell(h),
                reductions_cell(h),
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
fn verdict_cell(headline: &Value) -> String {
    if headline.is_null() {
        return "-".into();
    }
    match (s(headline, "verdict"), s(headline, "winner")) {
        ("", _) => "-".into(),
        (v, "") => v.to_string(),
        (v, w) => format!("{v}/{w}"),
    }
}

/// `aggressive 77.0%, critical 41.2%` from a headline.
fn reductions_cell(headline: &Value) -> String {
    let parts: Vec<String> = headline["candidates"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| format!("{} {}", s(c, "name"), pct(&c["series_reduction"])))
        .collect();
    if parts.is_empty() {
        "-".into()
    } else {
        parts.join(", ")
    }
}

fn get_text(e: &Value) -> String {
    let mut t = format!(
        "experiment {}  {:?}  {}\n",
        s(e, "id"),
        s(e, "name"),
        s(e, "state")
    );
    if !s(e, "reason").is_empty() {
        t.push_str(&format!("reason: {}\n", s(e, "reason")));
    }
    if !s(e, "description").is_empty() {
        t.push_str(&format!("description: {}\n", s(e, "description")));
    }
    t.push_str(&format!(
        "by {}, config {}\n",
        s(e, "author"),
        short(s(e, "config_hash"))
    ));
    let variants: Vec<String> = e["variants"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|v| {
            let mut d = format!("{} ({}, {}", s(v, "name"), s(v, "role"), s(v, "mode"));
            if !s(v, "template").is_empty() {
                d.push_str(&format!(", {}", s(v, "template")));
            }
            d + ")"
        })
        .collect();
    t.push_str(&format!("variants: {}\n", variants.join(", ")));
    for (key, label) in [
        ("created_at", "created"),
        ("start_at", "starts at"),
        ("running_at", "running since"),
        ("measure_from", "measuring from"),
        ("ends_at", "window ends"),
        ("finished_at", "finished"),
    ] {
        if !s(e, key).is_empty() {
            t.push_str(&format!("{label}: {}\n", s(e, key)));
        }
    }
    for (key, label) in [
        ("deploy_push", "deploy push"),
        ("promoted_push", "promoted push"),
    ] {
        if !s(e, key).is_empty() {
            t.push_str(&format!("{label}: {}\n", s(e, key)));
        }
    }
    if !e["headline"].is_null() {
        t.push_str(&format!(
            "verdict: {}; series reduction: {}\n",
            verdict_cell(&e["headline"]),
            reductions_cell(&e["headline"])
        ));
    }
    if let Some(b) = e["breach"].as_object() {
        let b = Value::Object(b.clone());
        t.push_str(&format!(
            "guardrail breached: {}: {}\n",
            s(&b, "guardrail"),
            s(&b, "message")
        ));
    }
    let transitions: Vec<Vec<String>> = e["transitions"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|tr| {
            vec![
                s(tr, "at").to_string(),
                or_dash(s(tr, "from")),
                s(tr, "to").to_string(),
                s(tr, "actor").to_string(),
                s(tr, "reason").to_string(),
            ]
        })
        .collect();
    t.push_str("\ntimeline:\n");
    if transitions.is_empty() {
        t.push_str("  (no transitions)\n");
    } else {
        t.push_str(&table(&["AT", "FROM", "TO", "BY", "REASON"], &transitions));
    }
    let targets: Vec<Vec<String>> = e["targets"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|tg| {
            vec![
                s(tg, "agent_id").to_string(),
                s(tg, "status").to_string(),
                if tg["runs_experiment"].as_bool() == Some(true) {
                    "yes".into()
                } else {
                    "no".into()
                },
                or_dash(short(s(tg, "effective_hash"))),
                or_dash(short(s(tg, "previous_hash"))),
                or_dash(s(tg, "config_state")),
                s(tg, "config_error")
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

fn or_dash(text: &str) -> String {
    if text.is_empty() {
        "-".into()
    } else {
        text.to_string()
    }
}

/// A fraction as a percentage: `0.77` → `77.0%`; `-` when absent.
fn pct(v: &Value) -> String {
    v.as_f64()
        .map_or_else(|| "-".into(), |x| format!("{:.1}%", x * 100.0))
}

/// A CPU share, already in percent of one core.
fn cpu(v: &Value) -> String {
    v.as_f64()
        .map_or_else(|| "-".into(), |x| format!("{x:.2}%"))
}

/// A KPI's value in its unit: cpu in percent of a core, the rest fractions.
fn kpi_value(kpi: &str, v: &Value) -> String {
    if kpi == "cpu_overhead_percent" {
        cpu(v)
    } else {
        pct(v)
    }
}

/// An estimate's value and `[low, high]`.
fn estimate(kpi: &str, e: &Value) -> (String, String) {
    if e.is_null() {
        return ("-".into(), "-".into());
    }
    (
        kpi_value(kpi, &e["value"]),
        format!(
            "[{}, {}]",
            kpi_value(kpi, &e["low"]),
            kpi_value(kpi, &e["high"])
        ),
    )
}

fn outcome(o: &str) -> String {
    match o {
        "no_data" => "NO DATA".into(),
        "" => "-".into(),
        other => other.to_uppercase(),
    }
}

/// A count, exact when it is whole.
fn count(v: &Value) -> String {
    if let Some(n) = v.as_u64() {
        n.to_string()
    } else if let Some(x) = v.as_f64() {
        format!("{x:.1}")
    } else {
        "-".into()
    }
}

/// Bytes in SI units: `812 B`, `12.3 kB`, `4.5 MB`.
fn bytes(v: &Value) -> String {
    let Some(x) = v.as_f64() else {
        return "-".into();
    };
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
fn big(v: &Value) -> String {
    let Some(x) = v.as_f64() else {
        return "-".into();
    };
    for (div, suffix) in [(1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")] {
        if x >= div {
            return format!("{:.1}{suffix}", x / div);
        }
    }
    format!("{x:.0}")
}

/// Variant names of a results answer: the baseline first.
fn ordered_variants(results: &Value) -> Vec<String> {
    let baseline = s(results, "baseline");
    let mut names: Vec<String> = results["variants"]
        .as_object()
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default();
    names.sort_by_key(|n| (n != baseline, n.clone()));
    names
}

fn point_cells(p: &Value) -> Vec<String> {
    vec![
        count(&p["series"]),
        count(&p["datapoints"]),
        bytes(&p["bytes"]),
        bytes(&p["bytes_gzip"]),
        pct(&p["critical_coverage"]),
        pct(&p["topn_fidelity"]),
        cpu(&p["cpu_overhead_percent"]),
    ]
}

const POINT_HEADER: [&str; 7] = [
    "SERIES", "POINTS", "BYTES", "GZIP", "COVERAGE", "FIDELITY", "CPU",
];

fn results_text(v: &Value, last: Option<usize>) -> String {
    let mut t = format!(
        "experiment {} ({}): interval {}ms, baseline {}\n",
        s(v, "id"),
        s(v, "state"),
        v["interval_ms"],
        s(v, "baseline")
    );
    let mut rows: Vec<(String, usize, String, &Value)> = Vec::new();
    for (order, name) in ordered_variants(v).into_iter().enumerate() {
        for p in v["variants"][&name].as_array().into_iter().flatten() {
            rows.push((s(p, "time").to_string(), order, name.clone(), p));
        }
    }
    if rows.is_empty() {
        t.push_str("no measurements yet\n");
        return t;
    }
    rows.sort_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
    if let Some(n) = last {
        let mut times: Vec<&str> = rows.iter().map(|r| r.0.as_str()).collect();
        times.dedup();
        if times.len() > n {
            let from = times[times.len() - n].to_string();
            rows.retain(|r| r.0 >= from);
        }
    }
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|(time, _, name, p)| {
            let mut row = vec![time.clone(), name.clone(), count(&p["agents"])];
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
fn report_text(r: &Value) -> String {
    let is_final = r["final"].as_bool() == Some(true);
    let ongoing = ongoing(s(r, "state")) == Some(true);
    let mut t = format!("experiment {}  {}\n", s(r, "id"), s(r, "state"));
    if !s(r, "reason").is_empty() {
        t.push_str(&format!("reason: {}\n", s(r, "reason")));
    }
    t.push_str(&match (is_final, s(r, "winner")) {
        (true, "") => format!("verdict: {}, no winner\n", s(r, "verdict").to_uppercase()),
        (true, w) => format!("verdict: {}, winner {w}\n", s(r, "verdict").to_uppercase()),
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
        pct(&r["confidence"]),
        r["resamples"],
        r["target_agents"]
    ));
    for c in r["candidates"].as_array().into_iter().flatten() {
        t.push_str(&format!(
            "\ncandidate {}: {}  ({} paired interval(s) on {} agent(s))\n",
            s(c, "name"),
            outcome(s(c, "outcome")),
            c["paired_intervals"],
            c["agents"]
        ));
        let criteria: Vec<Vec<String>> = c["criteria"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|cr| {
                let kpi = s(cr, "kpi");
                let (value, ci) = estimate(kpi, &cr["estimate"]);
                vec![
                    format!("  {}", s(cr, "criterion")),
                    value,
                    ci,
                    format!("{} {}", s(cr, "op"), kpi_value(kpi, &cr["threshold"])),
                    outcome(s(cr, "outcome")),
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
        let judged: Vec<&str> = c["criteria"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|cr| s(cr, "kpi"))
            .collect();
        let others: Vec<String> = c["kpis"]
            .as_object()
            .into_iter()
            .flatten()
            .filter(|(k, e)| !judged.contains(&k.as_str()) && !e.is_null())
            .map(|(k, e)| {
                let (value, ci) = estimate(k, e);
                format!("{} {value} {ci}", k.replace('_', " "))
            })
            .collect();
        if !others.is_empty() {
            t.push_str(&format!("  also: {}\n", others.join("; ")));
        }
    }
    let variants: Vec<Vec<String>> = r["variants"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|v| {
            if v["intervals"].as_u64() == Some(0) {
                let mut row = vec![s(v, "name").to_string(), "0".into()];
                row.extend(std::iter::repeat_n("-".to_string(), 7));
                return row;
            }
            vec![
                s(v, "name").to_string(),
                count(&v["intervals"]),
                count(&v["series"]),
                count(&v["datapoints"]),
                bytes(&v["bytes"]),
                cpu(&v["cpu_overhead_percent"]),
                big(&v["monthly_datapoints"]),
                v["monthly_gb"]
                    .as_f64()
                    .map_or_else(|| "-".into(), |x| format!("{x:.2}")),
                v["monthly_cost"]
                    .as_f64()
                    .map_or_else(|| "-".into(), |x| format!("{x:.2} {}", s(r, "currency"))),
            ]
        })
        .collect();
    if !variants.is_empty() {
        t.push_str(&format!(
            "\nper variant (means per agent and interval; monthly for {} agent(s) over 30 days):\n",
            r["target_agents"]
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
    if !s(r, "recommendation").is_empty() {
        t.push_str(&format!("\nrecommendation: {}\n", s(r, "recommendation")));
    }
    t.push_str(if is_final {
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
fn window_text(e: &Value, now: i64) -> String {
    let at = |k: &str| parse_ms(s(e, k));
    match s(e, "state") {
        "draft" => "not started".into(),
        "pending" => match at("start_at") {
            Some(t) if t > now => {
                format!("deploys in {} (at {})", human(t - now), s(e, "start_at"))
            }
            _ => "deploying now".into(),
        },
        "deploying" => "deploying: waiting for every target to apply the config".into(),
        "running" => match (at("measure_from"), at("ends_at")) {
            (Some(m), Some(end)) if now < m => format!(
                "warm-up: measuring in {}, then for {} (until {})",
                human(m - now),
                human(end - m),
                s(e, "ends_at")
            ),
            (_, Some(end)) if now < end => {
                format!("{} left (ends {})", human(end - now), s(e, "ends_at"))
            }
            (_, Some(_)) => "over: analysing".into(),
            _ => "running".into(),
        },
        "analyzing" => "over: analysing".into(),
        _ => match s(e, "finished_at") {
            "" => "over".into(),
            f => format!("over (finished {f})"),
        },
    }
}

/// What one refresh of `watch` shows.
struct Snapshot {
    experiment: Value,
    results: Value,
    report: Value,
}

/// Fetch the experiment and its results; the report only when the
/// state or the data changed (it runs a bootstrap on the controller).
async fn snapshot(
    client: &Client,
    id: &str,
    cache: &mut Option<(String, Value)>,
) -> Result<Snapshot, Failure> {
    let base = format!("/api/v1/experiments/{}", encode(id));
    let experiment = client.get(&base).await?;
    let results = client.get(&format!("{base}/results")).await?;
    let points: usize = results["variants"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(_, p)| p.as_array().map_or(0, Vec::len))
        .sum();
    let key = format!(
        "{}|{}|{points}",
        s(&experiment, "state"),
        s(&experiment, "updated_at")
    );
    let report = match cache {
        Some((k, r)) if *k == key => r.clone(),
        _ => {
            let r = client.get(&format!("{base}/report")).await?;
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
fn latest(results: &Value) -> Map<String, Value> {
    ordered_variants(results)
        .into_iter()
        .filter_map(|name| {
            let p = results["variants"][&name].as_array()?.last()?.clone();
            Some((name, p))
        })
        .collect()
}

/// One line on the verdict so far.
fn verdict_line(r: &Value) -> String {
    let candidates: Vec<&Value> = r["candidates"].as_array().into_iter().flatten().collect();
    let is_final = r["final"].as_bool() == Some(true);
    if !is_final
        && candidates
            .iter()
            .all(|c| s(c, "outcome") == "no_data" || s(c, "outcome").is_empty())
    {
        return "interim verdict: no paired measurements yet".into();
    }
    let each: Vec<String> = candidates
        .iter()
        .map(|c| {
            format!(
                "{} {} (series reduction {}, critical coverage {})",
                s(c, "name"),
                outcome(s(c, "outcome")),
                pct(&c["kpis"]["series_reduction"]["value"]),
                pct(&c["kpis"]["critical_coverage"]["value"])
            )
        })
        .collect();
    let head = match (is_final, s(r, "winner")) {
        (true, "") => format!("final verdict: {}, no winner", s(r, "verdict")),
        (true, w) => format!("final verdict: {}, winner {w}", s(r, "verdict")),
        (false, "") => "interim verdict: no winner yet".into(),
        (false, w) => format!("interim verdict: {w} would win"),
    };
    format!("{head} | {}", each.join("; "))
}

fn watch_text(snap: &Snapshot, problem: Option<&str>) -> String {
    let e = &snap.experiment;
    let mut t = format!(
        "experiment {}  {:?}  {}\n",
        s(e, "id"),
        s(e, "name"),
        s(e, "state").to_uppercase()
    );
    if !s(e, "reason").is_empty() {
        t.push_str(&format!("reason:  {}\n", s(e, "reason")));
    }
    t.push_str(&format!("window:  {}\n", window_text(e, now_ms())));
    let targets = e["targets"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    if !targets.is_empty() {
        let running = targets
            .iter()
            .filter(|tg| tg["runs_experiment"].as_bool() == Some(true))
            .count();
        t.push_str(&format!(
            "targets: {}, {running} running the experiment config\n",
            targets.len()
        ));
    }
    let latest = latest(&snap.results);
    let names: Vec<String> = e["variants"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|v| s(v, "name").to_string())
        .collect();
    let rows: Vec<Vec<String>> = names
        .iter()
        .map(|name| {
            let mode = e["variants"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|v| s(v, "name") == name)
                .map(|v| s(v, "mode").to_string())
                .unwrap_or_default();
            let mut row = vec![name.clone(), mode];
            match latest.get(name) {
                Some(p) => {
                    row.push(s(p, "time").get(11..19).unwrap_or("-").to_string());
                    row.push(count(&p["agents"]));
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
    t.push_str(&verdict_line(&snap.report));
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
                let decided = ongoing(s(&snap.experiment, "state")) == Some(false);
                if out == Output::Json {
                    let line = json!({
                        "experiment": snap.experiment,
                        "latest": latest(&snap.results),
                        "report": snap.report,
                    });
                    println!("{line}");
                } else {
                    show(tty, &watch_text(&snap, None));
                }
                if decided {
                    // The report was fetched after the state was read:
                    // it is the decided one.
                    if out == Output::Table {
                        println!("\n{}", report_text(&snap.report).trim_end());
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
        assert_eq!(pct(&json!(0.77)), "77.0%");
        assert_eq!(pct(&json!(1)), "100.0%");
        assert_eq!(pct(&Value::Null), "-");
        assert_eq!(cpu(&json!(0.034)), "0.03%");
        assert_eq!(bytes(&json!(812)), "812 B");
        assert_eq!(bytes(&json!(12_345)), "12.3 kB");
        assert_eq!(bytes(&json!(4_500_000)), "4.5 MB");
        assert_eq!(big(&json!(518_400_000.0)), "518.4M");
        assert_eq!(human(12_000), "12s");
        assert_eq!(human(250_000), "4m 10s");
        assert_eq!(human(3_723_000), "1h 02m 03s");
        assert_eq!(
            estimate(
                "series_reduction",
                &json!({"value": 0.5, "low": 0.4, "high": 0.6})
            ),
            ("50.0%".to_string(), "[40.0%, 60.0%]".to_string())
        );
        assert_eq!(outcome("no_data"), "NO DATA");
    }

    #[test]
    fn the_window_counts_down_from_the_controller_times() {
        let e = json!({
            "state": "running",
            "measure_from": "2026-01-01T00:00:30.000Z",
            "ends_at": "2026-01-01T00:10:30.000Z",
        });
        let t0 = parse_ms("2026-01-01T00:00:00.000Z").unwrap();
        assert!(window_text(&e, t0).starts_with("warm-up: measuring in 30s, then for 10m 00s"));
        assert!(window_text(&e, t0 + 90_000).starts_with("9m 00s left"));
        assert_eq!(window_text(&e, t0 + 700_000), "over: analysing");
    }

    #[test]
    fn a_report_shows_each_criterion_with_its_interval() {
        let r = json!({
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
                ]
            }]
        });
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
        assert!(text.ends_with("final: yes\n"), "{text}");
    }
}
