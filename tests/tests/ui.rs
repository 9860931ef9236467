//! The dashboard, end to end, in a real headless browser (Debian's chromium
//! through chromedriver): the real `phoenix-controller`, two real
//! `phoenix-agent`s, and a user who signs in, sees the two agents, creates
//! an experiment through the form, watches it reach its verdict live,
//! promotes it, sees the agents' config hash change, and rolls it back.
//! Then the controller restarts under the open page, which reconnects by
//! itself. With principals of an auth file, a viewer and an operator each
//! see who they are, and find the controls their role may not use disabled,
//! saying why; a role taken away under an open page is explained when the
//! API refuses.
//!
//! With `PHOENIX_UI_SCREENSHOTS=<dir>` the main pages are saved there as
//! PNGs at 1440×900 (the ones in docs/screenshots/ come from this).

use std::path::{Path, PathBuf};
use std::time::Duration;

use phoenix_tests::fleet::{
    API_TOKEN, Agent, api, api_as, hash_of, hash_token, online, start_agent_with_env,
    start_controller, start_controller_with,
};
use phoenix_tests::tools::missing_tool;
use phoenix_tests::webdriver::{ChromeDriver, INSTALL_BROWSER, Session, find_browser};
use phoenix_tests::{Named, TempDir, free_port, wait_for, workspace_root};
use serde_json::{Value, json};

/// Where to save screenshots, if asked (relative paths are from the
/// workspace root).
fn screenshot_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("PHOENIX_UI_SCREENSHOTS")?;
    let dir = PathBuf::from(dir);
    let dir = if dir.is_absolute() {
        dir
    } else {
        workspace_root().join(dir)
    };
    std::fs::create_dir_all(&dir).expect("create the screenshot directory");
    Some(dir)
}

fn shoot(s: &Session, dir: &Option<PathBuf>, name: &str) {
    if let Some(dir) = dir {
        // Let charts and fonts settle, and take the page from its top.
        s.execute("window.scrollTo(0, 0); document.activeElement && document.activeElement.blur && document.activeElement.blur();", json!([]));
        std::thread::sleep(Duration::from_millis(400));
        s.save_screenshot(&dir.join(format!("{name}.png")));
    }
}

const BASE_YAML: &str = "receivers:
  procfs: {}
exporters:
  file: { path: \"${env:PHOENIX_EXPERIMENT_OUT:-/dev/null}\" }
service:
  pipelines:
    metrics: { receivers: [procfs], exporters: [file] }
";

/// `document.querySelector(css).textContent`, or "".
fn text_of(s: &Session, css: &str) -> String {
    s.execute(
        "const e = document.querySelector(arguments[0]); return e ? e.textContent : '';",
        json!([css]),
    )
    .as_str()
    .unwrap_or_default()
    .to_string()
}

fn wait_js(s: &Session, what: &str, script: &str) -> Value {
    s.wait_until(Duration::from_secs(30), what, script)
}

/// Console errors, except the connection errors a controller restart
/// causes.
fn console_errors(s: &Session) -> Vec<String> {
    s.console()
        .into_iter()
        .filter(|(level, _)| level == "SEVERE")
        .map(|(_, m)| m)
        .collect()
}

#[test]
fn a_user_runs_judges_and_promotes_an_experiment_from_the_dashboard() {
    if let Err(missing) = find_browser() {
        missing_tool(missing, INSTALL_BROWSER);
        return;
    }
    let driver = ChromeDriver::start().expect("chromedriver starts");
    let shots = screenshot_dir();

    // A controller, two agents labelled env=ui, and two `etcd` processes
    // (the critical ones).
    let dir = TempDir::new("ui");
    let _population = [
        Named::spawn(dir.path(), "etcd", 2),
        Named::spawn(dir.path(), "idle-worker", 30),
    ];
    let data = dir.path().join("data");
    let mut controller = start_controller(&data, free_port(), free_port());
    let http = controller.http;
    let grpc = controller.grpc;
    let agents: Vec<Agent> = (1..=2)
        .map(|i| {
            let out = dir.path().join(format!("experiment-{i}.jsonl"));
            start_agent_with_env(
                dir.path(),
                &format!("ui-{i}"),
                "ui",
                grpc,
                &[("PHOENIX_EXPERIMENT_OUT", out.to_str().unwrap())],
            )
        })
        .collect();
    wait_for(Duration::from_secs(30), || {
        (online(http).len() == 2).then_some(())
    })
    .expect("both agents online");
    let local_hashes: Vec<String> = agents.iter().map(hash_of).collect();

    let s = Session::new(&driver, 1440, 900).expect("a headless chromium session");
    let base = format!("http://127.0.0.1:{http}");

    // ---- sign in ----------------------------------------------------------------
    s.goto(&format!("{base}/"));
    // A wrong token is refused, next to the field.
    s.wait("#token").send_keys("not-the-token");
    s.wait("#signin").click();
    wait_js(
        &s,
        "the refusal of a wrong token",
        "return document.querySelector('#signin-error').textContent.includes('refused')",
    );
    // (The browser logs that 401; nothing else may be logged from here.)
    let _ = s.console();
    s.wait("#token").fill(API_TOKEN);
    s.wait("#author").send_keys("e2e");
    s.wait("#signin").click();

    // ---- the fleet: two agents online -------------------------------------------------
    wait_js(
        &s,
        "two online agents on the fleet page",
        "return location.hash === '#/fleet' && document.querySelectorAll('#fleet-table tbody tr[data-status=\"online\"]').length === 2",
    );
    let page = text_of(&s, "#fleet-table");
    for i in 1..=2 {
        assert!(page.contains(&format!("name=ui-{i}")), "{page}");
    }
    assert!(page.contains("env=ui"), "{page}");
    // Each row shows the hash the agent runs (its local config).
    let shown: Vec<String> = serde_json::from_value(s.execute(
        "return [...document.querySelectorAll('#fleet-table td.hash')].map(td => td.dataset.hash)",
        json!([]),
    ))
    .unwrap();
    let mut expected = local_hashes.clone();
    expected.sort();
    let mut sorted = shown.clone();
    sorted.sort();
    assert_eq!(sorted, expected);
    // The label filter narrows the list with the API's selector.
    s.wait("#filter-label").send_keys("name=ui-1");
    wait_js(
        &s,
        "the label filter",
        "return document.querySelectorAll('#fleet-table tbody tr').length === 1",
    );
    s.wait("#filter-label").clear();
    s.wait("#filter-label").send_keys(" ");
    wait_js(
        &s,
        "the filter cleared",
        "return document.querySelectorAll('#fleet-table tbody tr').length === 2",
    );

    // Keyboard focus survives the live refreshes (agents report every second).
    let key = s.execute(
        "document.querySelector('#fleet-table').dataset.before = '1'; \
         const c = document.querySelector('#fleet-table .chip'); c.focus(); return document.activeElement.dataset.key",
        json!([]),
    );
    assert!(key.is_string(), "{key}");
    wait_js(
        &s,
        "a live refresh of the fleet table",
        "return !document.querySelector('#fleet-table').dataset.before",
    );
    assert_eq!(
        s.execute(
            "return document.activeElement && document.activeElement.dataset.key",
            json!([])
        ),
        key
    );

    // ---- the templates ------------------------------------------------------------------
    s.wait("a[data-nav='templates']").click();
    wait_js(
        &s,
        "the template cards with their measured reductions",
        "return document.querySelectorAll('.template-card').length >= 5 && document.querySelectorAll('.template-card .measured').length >= 5",
    );
    assert!(text_of(&s, "[data-template='process-aggressive-v1']").contains("fewer series"));
    shoot(&s, &shots, "templates");

    // ---- create an experiment through the form -------------------------------------------
    s.wait("a[data-nav='new']").click();
    s.wait("#f-name").send_keys("aggressive on the ui fleet");
    s.wait("#f-description")
        .send_keys("Top-10 consumers individually, the rest rolled up: do we keep etcd?");
    s.wait("#f-labels").send_keys("env=ui");
    wait_js(
        &s,
        "the count of matching agents",
        "return document.querySelector('#match-count').dataset.count === '2'",
    );
    s.wait("#f-base option[value='inline']").click();
    s.wait("#f-base-yaml").fill(BASE_YAML);
    s.wait("#cand-process-aggressive-v1").click();
    s.wait("#mode-process-aggressive-v1 option[value='export']")
        .click();
    s.wait("#f-critical").send_keys("^etcd$");
    s.wait("#f-interval").fill("1s");
    s.wait("#f-warmup").fill("2s");
    s.wait("#f-min-series").send_keys("30");
    // A bad value is reported next to its field, by the API's validator.
    s.wait("#f-duration").fill("soon");
    wait_js(
        &s,
        "the duration error next to the duration field",
        "return document.querySelector('#err-f-duration').textContent.includes('soon') && document.querySelector('#f-duration').getAttribute('aria-invalid') === 'true'",
    );
    s.wait("#f-duration").fill("6s");
    wait_js(
        &s,
        "a valid definition",
        "return document.querySelector('#validation').dataset.valid === 'true' && document.querySelector('#err-f-duration').textContent === ''",
    );
    let yaml = s.wait("#f-yaml").property("value");
    let yaml = yaml.as_str().unwrap();
    for needle in [
        "template: \"process-aggressive-v1\"",
        "mode: export",
        "\"^etcd$\"",
        "min_series_reduction: 0.3",
        // The form's default, the controller's too.
        "min_cpu_conservation: 0.75",
        "duration: \"6s\"",
        "PHOENIX_EXPERIMENT_OUT",
    ] {
        assert!(yaml.contains(needle), "{needle} not in\n{yaml}");
    }
    shoot(&s, &shots, "create");
    assert_eq!(s.wait("#f-start").property("checked"), true);
    s.wait("#create").click();

    // ---- watch it live until the verdict ---------------------------------------------------
    let hash = wait_js(
        &s,
        "the new experiment's page",
        "return /^#\\/experiments\\/exp-/.test(location.hash) && location.hash",
    );
    let id = hash
        .as_str()
        .unwrap()
        .trim_start_matches("#/experiments/")
        .to_string();
    // Marks this page: a reload would lose it.
    s.execute("window.__phoenixNoReload = true;", json!([]));
    let mut seen: Vec<String> = Vec::new();
    let final_state = wait_for(Duration::from_secs(90), || {
        let state = s
            .execute(
                "const e = document.querySelector('#exp-state'); return e ? (e.dataset.state || '') : ''",
                json!([]),
            )
            .as_str()
            .unwrap_or_default()
            .to_string();
        if !state.is_empty() && seen.last() != Some(&state) {
            seen.push(state.clone());
        }
        let final_verdict = s.execute(
            "const v = document.querySelector('#verdict'); return !!v && v.dataset.final === 'true'",
            json!([]),
        ) == true;
        (["succeeded", "failed", "rolled_back"].contains(&state.as_str()) && final_verdict)
            .then_some(state)
    })
    .unwrap_or_else(|| panic!("no verdict on the page; states seen {seen:?}:\n{}", s.page_text()));
    assert_eq!(final_state, "succeeded", "{}", s.page_text());
    assert!(
        seen.iter().any(|st| st == "running"),
        "the page showed the run live: {seen:?}"
    );
    assert_eq!(
        s.execute("return window.__phoenixNoReload === true", json!([])),
        true,
        "the page was not reloaded"
    );
    // The verdict per criterion, with its interval, and the cost.
    assert_eq!(text_of(&s, "#verdict-word"), "succeeded");
    assert_eq!(text_of(&s, "#verdict-winner"), "aggressive");
    let criterion = text_of(
        &s,
        "#verdict [data-candidate='aggressive'] tr[data-kpi='series_reduction']",
    );
    assert!(
        criterion.contains('[') && criterion.contains("≥ 30.0%") && criterion.contains("pass"),
        "{criterion}"
    );
    let cost = text_of(&s, "#cost-table");
    assert!(
        cost.contains("baseline") && cost.contains("aggressive") && cost.contains('$'),
        "{cost}"
    );
    // Charts per variant: a line for the baseline and one for the candidate.
    let lines = s.execute(
        "return document.querySelectorAll('#chart-series path.line').length",
        json!([]),
    );
    assert_eq!(lines, 2, "two lines in the series chart");
    let charts = s.execute(
        "return document.querySelectorAll('#charts figure svg').length",
        json!([]),
    );
    assert_eq!(charts, 6, "{}", s.page_text());
    assert!(text_of(&s, "#latest-table").contains("aggressive"));
    shoot(&s, &shots, "experiment");
    if let Some(dir) = &shots {
        std::fs::write(dir.join("experiment-full.png"), s.full_page_screenshot()).unwrap();
    }
    if let Some(dir) = &shots {
        s.cdp(
            "Emulation.setEmulatedMedia",
            json!({ "features": [{ "name": "prefers-color-scheme", "value": "dark" }] }),
        );
        std::thread::sleep(Duration::from_millis(300));
        s.save_screenshot(&dir.join("experiment-dark.png"));
        s.cdp("Emulation.setEmulatedMedia", json!({ "features": [] }));
    }

    // ---- promote, through the confirmation ---------------------------------------------------
    s.wait("#action-promote").click();
    s.wait("dialog[open] #dialog-confirm");
    let dialog = text_of(&s, "dialog");
    let (_, exp) = api(http, "GET", &format!("/api/v1/experiments/{id}"), "");
    for t in exp["targets"].as_array().unwrap() {
        let agent = t["agent_id"].as_str().unwrap();
        assert!(dialog.contains(agent), "the dialog names {agent}: {dialog}");
    }
    assert!(
        dialog.contains("“aggressive” pipeline alone") && dialog.contains("2 target agent(s)"),
        "{dialog}"
    );
    // One watched wave: the agents must report after the warm-up before
    // it passes (the base scrapes every 10 s).
    s.wait("#promote-waves").fill("100%");
    s.wait("#promote-watch").fill("1s");
    s.wait("#dialog-confirm").click();
    wait_js(
        &s,
        "the promoting state with its wave",
        "return !document.querySelector('dialog[open]') && document.querySelector('#exp-state').dataset.state === 'promoting' && document.querySelectorAll('#waves tbody tr').length === 1",
    );
    wait_js(
        &s,
        "the promoted state, its wave passed",
        "return document.querySelector('#exp-state').dataset.state === 'promoted' && document.querySelector('#waves tbody tr').dataset.state === 'passed'",
    );
    let (_, exp) = api(http, "GET", &format!("/api/v1/experiments/{id}"), "");
    assert_eq!(exp["state"], "promoted");
    assert_eq!(exp["promotion"]["waves"][0]["state"], "passed", "{exp}");
    let push = exp["promoted_push"].as_str().unwrap().to_string();
    let (_, push) = api(http, "GET", &format!("/api/v1/pushes/{push}"), "");
    let promoted_hash = push["hash"].as_str().unwrap().to_string();
    assert!(!local_hashes.contains(&promoted_hash));

    // ---- the fleet shows the new config hash, and the agents run it ----------------------------
    s.wait("a[data-nav='fleet']").click();
    wait_js(
        &s,
        "the promoted hash on both agents' rows",
        &format!(
            "const cells = [...document.querySelectorAll('#fleet-table td.hash')]; \
             return cells.length === 2 && cells.every(td => td.dataset.hash === '{promoted_hash}')"
        ),
    );
    for agent in &agents {
        wait_for(Duration::from_secs(20), || {
            (hash_of(agent) == promoted_hash).then_some(())
        })
        .expect("the agent runs the promoted config");
    }
    if shots.is_some() {
        // The agents' own CPU and memory come with their heartbeat (10 s).
        wait_js(
            &s,
            "the agents' CPU rate and memory",
            "return [...document.querySelectorAll('#fleet-table tbody tr')].every(tr => \
             !tr.children[6].textContent.includes('—') && !tr.children[6].textContent.includes('total') \
             && !tr.children[7].textContent.includes('—'))",
        );
        shoot(&s, &shots, "fleet");
    }

    // ---- the list of experiments --------------------------------------------------------
    s.wait("a[data-nav='experiments']").click();
    wait_js(
        &s,
        "the promoted experiment in the list",
        &format!(
            "const r = document.querySelector('#experiments-table tr[data-experiment=\"{id}\"]'); \
             return !!r && r.dataset.state === 'promoted'"
        ),
    );
    shoot(&s, &shots, "experiments");

    // ---- and roll it back: each agent gets its own file back ---------------------------------
    s.click_on(&format!("#experiments-table tr[data-experiment='{id}'] a"));
    s.wait("#action-rollback").click();
    s.wait("dialog[open] #dialog-confirm");
    let dialog = text_of(&s, "dialog");
    assert!(
        dialog.matches("its own --config file").count() == 2
            && dialog.contains("Roll back 2 agent(s)"),
        "{dialog}"
    );
    s.wait("#rollback-reason")
        .send_keys("e2e: back to the local files");
    s.wait("#dialog-confirm").click();
    wait_js(
        &s,
        "the rolled-back state",
        "return !document.querySelector('dialog[open]') && document.querySelector('#exp-state').dataset.state === 'rolled_back'",
    );
    assert!(text_of(&s, "#history").contains("e2e: back to the local files"));
    for (agent, local) in agents.iter().zip(&local_hashes) {
        wait_for(Duration::from_secs(20), || {
            (hash_of(agent) == *local).then_some(())
        })
        .expect("the agent runs its local config again");
    }
    let errors = console_errors(&s);
    assert!(errors.is_empty(), "console errors: {errors:?}");

    // ---- a controller restart under the open page ------------------------------------------------
    s.wait("a[data-nav='fleet']").click();
    s.wait("#fleet-table");
    let _ = controller.running.stop(Duration::from_secs(10));
    wait_js(
        &s,
        "the reconnecting banner",
        "const b = document.querySelector('#banner'); return !b.hidden && b.textContent.includes('reconnecting')",
    );
    controller = start_controller(&data, http, grpc);
    wait_for(Duration::from_secs(30), || {
        (online(http).len() == 2).then_some(())
    })
    .expect("both agents back online");
    wait_js(
        &s,
        "the page live again, without the banner, with both agents online",
        "return document.querySelector('#banner').hidden && document.querySelector('#conn').textContent === 'Live' \
         && document.querySelectorAll('#fleet-table tbody tr[data-status=\"online\"]').length === 2",
    );
    drop(s);
    drop(controller);
}

const VIEWER_TOKEN: &str = "ui-viewer-token-0123456789abcdef";
const OPERATOR_TOKEN: &str = "ui-operator-token-0123456789abcdef";

/// A draft on the viewer's team (a scoped principal sees only experiments
/// within its scope).
const DRAFT: &str = "
name: roles
targets: { labels: { team: payments } }
base:
  yaml: |
    receivers: { procfs: {} }
    exporters: { file: { path: /dev/null } }
    service: { pipelines: { metrics: { receivers: [procfs], exporters: [file] } } }
candidates:
  - { template: process-aggressive-v1 }
critical_processes: ['^etcd$']
duration: 1m
";

/// The auth file: vera, a viewer of team=payments, and otto with `otto_role`.
fn write_principals(path: &Path, viewer_hash: &str, operator_hash: &str, otto_role: &str) {
    std::fs::write(
        path,
        format!(
            "principals:
  - name: vera
    role: viewer
    scope: {{ labels: {{ team: payments }} }}
    tokens: [\"{viewer_hash}\"]
  - name: otto
    role: {otto_role}
    tokens: [\"{operator_hash}\"]
"
        ),
    )
    .unwrap();
}

/// Sign in from the sign-in page; returns once the dashboard shows.
fn sign_in(s: &Session, token: &str) {
    s.wait("#token").fill(token);
    s.wait("#signin").click();
    wait_js(
        s,
        "the dashboard after sign-in",
        "return !document.querySelector('#topbar').hidden",
    );
}

fn show(s: &Session, hash: &str) {
    s.execute("location.hash = arguments[0]", json!([hash]));
}

/// Shown, and disabled (a link: without its href) with `title`.
fn wait_refused(s: &Session, css: &str, title: &str) {
    let script = format!(
        "const e = document.querySelector({css}); \
         return !!e && !e.hidden && e.title === {title} && \
           (e.tagName === 'A' ? !e.hasAttribute('href') && e.getAttribute('aria-disabled') === 'true' : e.disabled)",
        css = json!(css),
        title = json!(title),
    );
    wait_js(s, &format!("{css} disabled, titled {title:?}"), &script);
}

/// Shown, enabled (a link: with its href), with no refusal in its title.
fn wait_allowed(s: &Session, css: &str) {
    let script = format!(
        "const e = document.querySelector({css}); \
         return !!e && !e.hidden && !e.hasAttribute('title') && \
           (e.tagName === 'A' ? e.hasAttribute('href') && !e.hasAttribute('aria-disabled') : !e.disabled)",
        css = json!(css),
    );
    wait_js(s, &format!("{css} enabled"), &script);
}

#[test]
fn the_dashboard_shows_the_principal_and_disables_what_its_role_may_not_do() {
    if let Err(missing) = find_browser() {
        missing_tool(missing, INSTALL_BROWSER);
        return;
    }
    let driver = ChromeDriver::start().expect("chromedriver starts");
    let dir = TempDir::new("ui-roles");
    let auth = dir.path().join("auth.yaml");
    let (viewer_hash, operator_hash) = (hash_token(VIEWER_TOKEN), hash_token(OPERATOR_TOKEN));
    write_principals(&auth, &viewer_hash, &operator_hash, "operator");
    let controller = start_controller_with(
        &dir.path().join("data"),
        free_port(),
        free_port(),
        &["--auth-file", auth.to_str().unwrap()],
    );
    let http = controller.http;
    let body = json!({ "definition": DRAFT }).to_string();
    let (status, created) = api_as(OPERATOR_TOKEN, http, "POST", "/api/v1/experiments", &body);
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().unwrap();
    let experiment = format!("#/experiments/{id}");
    // What the page disables, the API refuses.
    let (status, refused) = api_as(VIEWER_TOKEN, http, "POST", "/api/v1/experiments", &body);
    assert_eq!(status, 403, "{refused}");
    assert_eq!(refused["missing_permission"], "experiments.write");

    // Every control that changes something, on the page that has it.
    let controls = [
        ("#/experiments", "a[data-nav='new']"),
        ("#/experiments", "#new-experiment"),
        (experiment.as_str(), "#action-start"),
        (experiment.as_str(), "#action-stop"),
        ("#/new", "#create"),
        (
            "#/templates",
            "[data-template='process-aggressive-v1'] .meta a",
        ),
    ];

    let s = Session::new(&driver, 1440, 900).expect("a headless chromium session");
    s.goto(&format!("http://127.0.0.1:{http}/"));

    // ---- a viewer sees everything and may change nothing, and is told why ---------------
    sign_in(&s, VIEWER_TOKEN);
    wait_js(
        &s,
        "the viewer and its scope in the header",
        "return document.querySelector('#who').textContent === 'vera · viewer · team=payments'",
    );
    let why = "Needs the permission experiments.write (you are viewer)";
    for (page, css) in controls {
        show(&s, page);
        wait_refused(&s, css, why);
    }
    // The form still checks a definition; the page says who may create it.
    show(&s, "#/new");
    wait_js(
        &s,
        "the create page telling the viewer why it cannot create",
        "return document.querySelector('.page-head .sub').textContent.includes('creating it needs the permission experiments.write (you are viewer)')",
    );

    // ---- an operator may use them all -----------------------------------------------------
    s.wait("#signout").click();
    sign_in(&s, OPERATOR_TOKEN);
    wait_js(
        &s,
        "the operator in the header, without a scope",
        "return document.querySelector('#who').textContent === 'otto · operator'",
    );
    for (page, css) in controls {
        show(&s, page);
        wait_allowed(&s, css);
    }

    // ---- the role taken away on the server under the open page -------------------------------
    show(&s, &experiment);
    s.click_on("#action-stop");
    s.wait("dialog[open] #dialog-confirm");
    write_principals(&auth, &viewer_hash, &operator_hash, "viewer");
    controller.running.signal(libc::SIGHUP);
    wait_for(Duration::from_secs(20), || {
        let (_, who) = api_as(OPERATOR_TOKEN, http, "GET", "/api/v1/whoami", "");
        (who["role"] == "viewer").then_some(())
    })
    .expect("the auth file reloaded");
    s.wait("#dialog-confirm").click();
    // The refusal reads as the API's message, with the likely cause.
    wait_js(
        &s,
        "the refusal in the dialog",
        "return document.querySelector('#dialog-error').textContent === \
         'Refused (403): otto (viewer) lacks the permission experiments.write; your role may have changed since you signed in'",
    );
    s.wait("#dialog-cancel").click();
    // The page learnt the new role: the header and the controls follow.
    wait_js(
        &s,
        "the new role in the header",
        "return document.querySelector('#who').textContent === 'otto · viewer'",
    );
    wait_refused(&s, "#action-start", why);
    wait_refused(&s, "a[data-nav='new']", why);
    let (_, exp) = api_as(
        VIEWER_TOKEN,
        http,
        "GET",
        &format!("/api/v1/experiments/{id}"),
        "",
    );
    assert_eq!(exp["state"], "draft", "{exp}");
    drop(s);
    drop(controller);
}

/// What an OpenTelemetry Collector's OpAMP extension would report, as the
/// bytes it would `POST`.
fn collector_report(uid: &[u8; 16]) -> Vec<u8> {
    use phoenix_proto::opamp as pb;
    use prost::Message as _;
    let attribute = |key: &str, value: &str| pb::KeyValue {
        key: key.into(),
        value: Some(pb::AnyValue {
            value: Some(pb::any_value::Value::StringValue(value.into())),
        }),
    };
    pb::AgentToServer {
        instance_uid: uid.to_vec(),
        capabilities: 0x1 | 0x4 | 0x800,
        agent_description: Some(pb::AgentDescription {
            identifying_attributes: vec![
                attribute("service.name", "io.opentelemetry.collector"),
                attribute("service.version", "0.120.0"),
            ],
            non_identifying_attributes: vec![attribute("host.name", "node-ui")],
        }),
        health: Some(pb::ComponentHealth {
            healthy: false,
            status: "StatusRecoverableError".into(),
            component_health_map: [(
                "pipeline:metrics".to_string(),
                pb::ComponentHealth {
                    healthy: false,
                    last_error: "exporter unreachable".into(),
                    ..Default::default()
                },
            )]
            .into(),
            ..Default::default()
        }),
        effective_config: Some(pb::EffectiveConfig {
            config_map: Some(pb::AgentConfigMap {
                config_map: [(
                    "collector.yaml".to_string(),
                    pb::AgentConfigFile {
                        body: b"receivers:\n  hostmetrics: {}\n".to_vec(),
                        content_type: "text/yaml".into(),
                    },
                )]
                .into(),
            }),
        }),
        remote_config_status: Some(pb::RemoteConfigStatus {
            last_remote_config_hash: vec![0xab, 0xcd],
            status: pb::RemoteConfigStatuses::Failed as i32,
            error_message: "unknown receiver \"hostmetricz\"".into(),
        }),
        ..Default::default()
    }
    .encode_to_vec()
}

#[test]
fn an_opamp_agents_page_shows_its_description_health_and_effective_config() {
    if let Err(missing) = find_browser() {
        missing_tool(missing, INSTALL_BROWSER);
        return;
    }
    let driver = ChromeDriver::start().expect("chromedriver starts");
    let dir = TempDir::new("ui-opamp");
    let opamp = free_port();
    let opamp_listen = format!("127.0.0.1:{opamp}");
    let controller = start_controller_with(
        &dir.path().join("data"),
        free_port(),
        free_port(),
        &["--api-token", API_TOKEN, "--opamp-listen", &opamp_listen],
    );
    let uid = [
        0x01, 0x93, 0x3e, 0x2a, 0x7b, 0x4c, 0x7d, 0x10, 0x8e, 0x01, 0x23, 0x45, 0x67, 0x89, 0xab,
        0x77,
    ];
    let id = "01933e2a-7b4c-7d10-8e01-23456789ab77";
    let (status, body) = phoenix_tests::http_request_with(
        opamp,
        "POST",
        "/v1/opamp",
        &format!(
            "Content-Type: application/x-protobuf\r\nAuthorization: Bearer {}\r\n",
            phoenix_tests::fleet::AGENT_TOKEN
        ),
        collector_report(&uid),
    )
    .expect("the OpAMP port answers");
    assert_eq!(status, 200, "{body}");

    let s = Session::new(&driver, 1440, 900).expect("a headless chromium session");
    s.goto(&format!("http://127.0.0.1:{}/", controller.http));
    sign_in(&s, API_TOKEN);
    // From the fleet, the agent's id leads to its page.
    s.wait(&format!("#fleet-table a[href='#/agents/{id}']"))
        .click();
    wait_js(
        &s,
        "the OpAMP agent's page",
        "return document.querySelector('#agent-kind')?.textContent === 'OpAMP' \
         && !!document.querySelector('#agent-effective pre')",
    );
    let effective = text_of(&s, "#agent-effective");
    assert!(effective.contains("collector.yaml"), "{effective}");
    assert!(effective.contains("hostmetrics: {}"), "{effective}");
    assert!(effective.contains("text/yaml"), "{effective}");
    let health = text_of(&s, "#agent-health [data-component='pipeline:metrics']");
    assert!(health.contains("unhealthy"), "{health}");
    assert!(health.contains("exporter unreachable"), "{health}");
    assert!(
        text_of(&s, "#agent-health").contains("StatusRecoverableError"),
        "the top-level status shows"
    );
    assert_eq!(text_of(&s, "#agent-remote-status"), "failed");
    assert!(text_of(&s, "#agent-remote").contains("unknown receiver \"hostmetricz\""));
    let description = text_of(&s, "#agent-description");
    assert!(
        description.contains("io.opentelemetry.collector"),
        "{description}"
    );
    assert!(description.contains("node-ui"), "{description}");
    let capabilities = text_of(&s, "#agent-capabilities");
    assert!(
        capabilities.contains("ReportsEffectiveConfig"),
        "{capabilities}"
    );
    assert!(text_of(&s, "#agent-labels").contains("service.name=io.opentelemetry.collector"));

    // An unknown id says so instead of an empty page.
    show(&s, "#/agents/no-such-agent");
    wait_js(
        &s,
        "the unknown agent's message",
        "return document.querySelector('#agent-error')?.textContent.includes('No agent no-such-agent')",
    );
    let errors: Vec<String> = console_errors(&s)
        .into_iter()
        .filter(|e| !e.contains("404"))
        .collect();
    assert!(errors.is_empty(), "console errors: {errors:?}");
    drop(s);
    drop(controller);
}
