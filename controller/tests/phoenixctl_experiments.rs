//! `phoenixctl experiment ...` as a real binary against a controller started
//! in this process: create (from a file and from stdin), validate, list,
//! get, start, stop, promote, results, report and watch, with the exit codes
//! and messages of every refusal. No agent is connected: an experiment that
//! should stay `pending` is scheduled an hour ahead.

mod common;

use std::io::BufRead;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::*;
use phoenix_api::{ExperimentReport, ExperimentState};

const MINIMAL: &str = "\
name: test
targets: { labels: { env: test } }
candidates: [ { template: process-aggressive-v1 } ]
critical_processes: ['^sshd$']
interval: 1s
duration: 10s
";

/// Three mistakes the definition checks find at once.
const INVALID: &str = "\
name: ''
targets: { labels: { env: test } }
candidates: []
critical_processes: ['^sshd$']
interval: 1s
duration: 10s
criteria: { min_series_reduction: 5 }
";

fn command(base: &str, args: &[&str]) -> Command {
    let mut cmd = Command::new(phoenixctl_binary());
    cmd.env_remove("PHOENIX_SERVER")
        .env("PHOENIX_API_TOKEN", API_TOKEN)
        .env("USER", "tester")
        .arg("--server")
        .arg(base)
        .args(args);
    cmd
}

/// Run phoenixctl off the async workers; `stdin` is piped to it when given.
async fn ctl_with(base: &str, args: &[&str], stdin: Option<&str>) -> Output {
    let mut cmd = command(base, args);
    let input = stdin.map(str::to_string);
    tokio::task::spawn_blocking(move || {
        cmd.stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        if let Some(text) = input {
            use std::io::Write;
            let mut pipe = child.stdin.take().unwrap();
            pipe.write_all(text.as_bytes()).unwrap();
        }
        child.wait_with_output().unwrap()
    })
    .await
    .unwrap()
}

async fn ctl(base: &str, args: &[&str]) -> Output {
    ctl_with(base, args, None).await
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn both(o: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        stdout(o),
        stderr(o)
    )
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_string()
}

/// The id in `experiment exp-... created: ...`.
fn created_id(o: &Output) -> String {
    let text = stdout(o);
    let line = text
        .lines()
        .find(|l| l.starts_with("experiment exp-") && l.contains(" created: "))
        .unwrap_or_else(|| panic!("no id printed: {}", both(o)));
    line.split_whitespace().nth(1).unwrap().to_string()
}

fn in_an_hour() -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    phoenix_controller::rfc3339_ms(now + 3_600_000)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn phoenixctl_creates_starts_stops_and_reports_experiments() {
    let dir = temp_dir("ctl-exp");
    let c = TestController::start(settings(&dir)).await;
    let base = c.http.base.clone();
    let minimal = write(&dir, "exp.yaml", MINIMAL);
    let invalid = write(&dir, "invalid.yaml", INVALID);

    // validate: a valid definition, its variants, and no agent online.
    let out = ctl(
        &base,
        &["experiment", "validate", "-f", &minimal, "--show-config"],
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", both(&out));
    let text = stdout(&out);
    assert!(text.contains("exp.yaml: valid"), "{text}");
    assert!(text.contains("variants: baseline, aggressive"), "{text}");
    assert!(text.contains("none online"), "{text}");
    assert!(
        text.contains("composed agent config:") && text.contains("metrics/aggressive"),
        "{text}"
    );

    // An invalid definition: every error as `field: message`, exit 3, for
    // validate (stdout) and create (stderr); nothing is stored.
    let expected = [
        "name: must not be empty",
        "candidates: name at least one candidate",
        "criteria.min_series_reduction: 5 must be a fraction from 0 to 1",
    ];
    let out = ctl(&base, &["experiment", "validate", "-f", &invalid]).await;
    assert_eq!(out.status.code(), Some(3), "{}", both(&out));
    assert!(stdout(&out).contains("3 error(s)"), "{}", both(&out));
    for e in expected {
        assert!(stdout(&out).contains(e), "{e:?} missing: {}", both(&out));
    }
    let out = ctl(&base, &["experiment", "create", "-f", &invalid]).await;
    assert_eq!(out.status.code(), Some(3), "{}", both(&out));
    assert!(stderr(&out).contains("400"), "{}", both(&out));
    for e in expected {
        assert!(stderr(&out).contains(e), "{e:?} missing: {}", both(&out));
    }
    // An unknown template is named with its field.
    let out = ctl_with(
        &base,
        &["experiment", "create", "-f", "-"],
        Some(&MINIMAL.replace("process-aggressive-v1", "no-such-template")),
    )
    .await;
    assert_eq!(out.status.code(), Some(3), "{}", both(&out));
    assert!(
        stderr(&out).contains("candidates[0].template: no template \"no-such-template\""),
        "{}",
        both(&out)
    );
    let (_, listed) = c.http.get("/api/v1/experiments").await;
    assert_eq!(listed["experiments"].as_array().unwrap().len(), 0);

    // create prints the id; the experiment is a draft.
    let out = ctl(&base, &["experiment", "create", "-f", &minimal]).await;
    assert_eq!(out.status.code(), Some(0), "{}", both(&out));
    let draft = created_id(&out);
    assert!(stdout(&out).contains("draft"), "{}", both(&out));
    let (status, e) = c.http.get(&format!("/api/v1/experiments/{draft}")).await;
    assert_eq!(status, 200, "{e}");
    assert_eq!(e["state"], "draft");
    // The principal, not the --author (now --note) text.
    assert_eq!(e["author"], "admin");

    // From stdin, scheduled an hour ahead, and started at once: pending.
    let scheduled_yaml =
        MINIMAL.replace("name: test", "name: scheduled") + &format!("start_at: {}\n", in_an_hour());
    let out = ctl_with(
        &base,
        &[
            "experiment",
            "create",
            "-f",
            "-",
            "--start",
            "--author",
            "ci",
        ],
        Some(&scheduled_yaml),
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", both(&out));
    let scheduled = created_id(&out);
    assert!(
        stdout(&out).contains(&format!("experiment {scheduled}: pending")),
        "{}",
        both(&out)
    );

    // list: both, newest first; --state filters.
    let out = ctl(&base, &["experiment", "list"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", both(&out));
    let text = stdout(&out);
    let header = text.lines().next().unwrap();
    for column in [
        "ID",
        "NAME",
        "STATE",
        "CREATED",
        "VERDICT/WINNER",
        "SERIES REDUCTION",
    ] {
        assert!(header.contains(column), "{text}");
    }
    assert_eq!(text.lines().count(), 3, "{text}");
    assert!(
        text.lines()
            .any(|l| l.starts_with(&draft) && l.contains(" test ") && l.contains(" draft ")),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.starts_with(&scheduled) && l.contains("pending")),
        "{text}"
    );
    let out = ctl(&base, &["experiment", "list", "--state", "pending"]).await;
    let text = stdout(&out);
    assert!(
        text.contains(&scheduled) && !text.contains(&draft),
        "{text}"
    );
    let out = ctl(&base, &["experiment", "list", "--state", "nonsense"]).await;
    assert_eq!(
        out.status.code(),
        Some(2),
        "bad command line: {}",
        both(&out)
    );

    // report on a draft: an interim verdict, no data, not final.
    let out = ctl(&base, &["experiment", "report", &draft]).await;
    assert_eq!(out.status.code(), Some(0), "{}", both(&out));
    let text = stdout(&out);
    assert!(text.contains("interim verdict"), "{text}");
    assert!(text.contains("candidate aggressive: NO DATA"), "{text}");
    assert!(
        text.contains("min_critical_coverage") && text.contains(">= 100.0%"),
        "{text}"
    );
    assert!(text.contains("final: no"), "{text}");
    let out = ctl(&base, &["experiment", "report", &draft, "--json"]).await;
    let report: ExperimentReport = serde_json::from_slice(&out.stdout).expect("report JSON");
    assert!(!report.is_final);
    assert_eq!(report.state, ExperimentState::Draft);
    let out = ctl(&base, &["experiment", "results", &draft]).await;
    assert_eq!(out.status.code(), Some(0), "{}", both(&out));
    assert!(
        stdout(&out).contains("no measurements yet"),
        "{}",
        both(&out)
    );

    // get: state, reason, timeline.
    let out = ctl(&base, &["experiment", "get", &draft]).await;
    assert_eq!(out.status.code(), Some(0), "{}", both(&out));
    let text = stdout(&out);
    assert!(
        text.starts_with(&format!("experiment {draft}  \"test\"  draft")),
        "{text}"
    );
    assert!(
        text.contains("timeline:") && text.contains("created"),
        "{text}"
    );
    assert!(text.contains("targets: none yet"), "{text}");

    // start, then stop: cancelled, and the timeline shows every step.
    let out = ctl(&base, &["experiment", "stop", &scheduled, "--author", "ci"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", both(&out));
    assert!(
        stdout(&out).contains(&format!("experiment {scheduled}: cancelled")),
        "{}",
        both(&out)
    );
    let out = ctl(&base, &["experiment", "get", &scheduled]).await;
    let text = stdout(&out);
    assert!(text.contains("cancelled"), "{text}");
    let timeline: Vec<&str> = text
        .lines()
        .skip_while(|l| !l.starts_with("timeline:"))
        .skip(2)
        .take_while(|l| !l.is_empty())
        .collect();
    assert_eq!(timeline.len(), 3, "{text}");
    assert!(
        timeline[0].contains(" draft ") && timeline[0].contains("created"),
        "{text}"
    );
    assert!(
        timeline[1].contains("draft") && timeline[1].contains("pending"),
        "{text}"
    );
    assert!(
        timeline[2].contains("pending") && timeline[2].contains("cancelled"),
        "{text}"
    );
    // The timeline names the principal; `--author ci` (now `--note`) is a
    // note in the audit log.
    assert!(timeline[2].contains(" admin "), "{text}");

    // A cancelled experiment cannot be promoted, stopped or started: 409, exit 1.
    let out = ctl(&base, &["experiment", "promote", &scheduled]).await;
    assert_eq!(out.status.code(), Some(1), "{}", both(&out));
    assert!(
        stderr(&out).contains("409")
            && stderr(&out).contains("only a succeeded experiment can be promoted"),
        "{}",
        both(&out)
    );
    for action in ["stop", "start"] {
        let out = ctl(&base, &["experiment", action, &scheduled]).await;
        assert_eq!(out.status.code(), Some(1), "{}", both(&out));
        assert!(stderr(&out).contains("409"), "{}", both(&out));
    }
    let out = ctl(
        &base,
        &[
            "experiment",
            "rollback",
            &scheduled,
            "--reason",
            "nothing to undo",
        ],
    )
    .await;
    assert_eq!(out.status.code(), Some(1), "{}", both(&out));

    // watch on an experiment that is over: one block, the report, exit 0.
    let out = ctl(&base, &["experiment", "watch", &scheduled]).await;
    assert_eq!(out.status.code(), Some(0), "{}", both(&out));
    let text = stdout(&out);
    assert!(
        !text.contains('\x1b'),
        "no ANSI codes into a pipe: {text:?}"
    );
    assert!(
        text.contains("CANCELLED") && text.contains("window:"),
        "{text}"
    );
    assert!(
        text.contains("VARIANT") && text.contains("aggressive"),
        "{text}"
    );
    assert!(text.contains("final: no"), "{text}");

    // Started with no agent online, the experiment fails at once; watch
    // follows it there and exits 0.
    let out = ctl(&base, &["experiment", "start", &draft]).await;
    assert_eq!(out.status.code(), Some(0), "{}", both(&out));
    let out = ctl(
        &base,
        &["experiment", "watch", &draft, "--interval", "200ms"],
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", both(&out));
    let text = stdout(&out);
    assert!(
        text.contains("FAILED") && text.contains("no online agent matches the targets"),
        "{text}"
    );

    // Unknown ids: exit 1, naming the id.
    for args in [
        vec!["experiment", "get", "exp-nope"],
        vec!["experiment", "report", "exp-nope"],
        vec!["experiment", "results", "exp-nope"],
        vec!["experiment", "start", "exp-nope"],
        vec!["experiment", "watch", "exp-nope"],
    ] {
        let out = ctl(&base, &args).await;
        assert_eq!(out.status.code(), Some(1), "{args:?}: {}", both(&out));
        assert!(
            stderr(&out).contains("404") && stderr(&out).contains("no experiment \"exp-nope\""),
            "{args:?}: {}",
            both(&out)
        );
    }
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_refreshes_until_interrupted_and_exits_130() {
    let dir = temp_dir("ctl-watch");
    let c = TestController::start(settings(&dir)).await;
    let base = c.http.base.clone();
    let file = write(
        &dir,
        "scheduled.yaml",
        &format!("{MINIMAL}start_at: {}\n", in_an_hour()),
    );
    let out = ctl(&base, &["experiment", "create", "-f", &file, "--start"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", both(&out));
    let id = created_id(&out);

    let mut cmd = command(&base, &["experiment", "watch", &id, "--interval", "200ms"]);
    let (code, text) = tokio::task::spawn_blocking(move || {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
        // Two full refreshes: each block ends with the verdict line.
        let mut seen = Vec::new();
        let mut blocks = 0;
        while blocks < 2 {
            let line = lines.next().expect("watch keeps printing").unwrap();
            if line.starts_with("interim verdict") {
                blocks += 1;
            }
            seen.push(line);
        }
        // Ctrl-C.
        let pid = i32::try_from(child.id()).unwrap();
        assert_eq!(unsafe { libc::kill(pid, libc::SIGINT) }, 0);
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let status = loop {
            if let Some(s) = child.try_wait().unwrap() {
                break s;
            }
            assert!(std::time::Instant::now() < deadline, "watch did not stop");
            std::thread::sleep(Duration::from_millis(20));
        };
        let mut err = String::new();
        std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
        (status.code(), format!("{}\n{err}", seen.join("\n")))
    })
    .await
    .unwrap();
    assert_eq!(code, Some(130), "{text}");
    assert!(
        text.contains("PENDING") && text.contains("deploys in"),
        "{text}"
    );
    assert!(text.contains("stopped watching"), "{text}");
    // The experiment goes on.
    let (_, e) = c.http.get(&format!("/api/v1/experiments/{id}")).await;
    assert_eq!(e["state"], "pending");
    c.stop().await;
}
