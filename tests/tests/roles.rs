//! Principals, roles and scopes through the real binaries: a controller
//! with an `--auth-file` (token hashes made by `phoenix-controller
//! hash-token`), two real agents of two teams, and each principal's
//! requests answered as its role and scope allow, audited with who asked.

use std::time::Duration;

use phoenix_tests::fleet::{
    agent_config, api_as, hash_token, phoenixctl_as, start_agent, start_controller_with,
};
use phoenix_tests::{TempDir, free_port, http_get, sample, wait_for};

const ADMIN: &str = "admin-token-0123456789abcdefgh";
const VIEWER: &str = "viewer-token-0123456789abcdefg";
const VIEWER_NEXT: &str = "viewer-token-rotated-0123456789";
const PAYMENTS: &str = "payments-token-0123456789abcde";
const PAYMENTS_TEMPLATES: &str = "pay-templates-token-0123456789";

fn auth_file(viewer_tokens: &[&str]) -> String {
    let viewers = viewer_tokens
        .iter()
        .map(|t| format!("\"{}\"", hash_token(t)))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "principals:
  - {{ name: root, role: admin, tokens: [\"{}\"] }}
  - {{ name: watcher, role: viewer, tokens: [{viewers}] }}
  - name: pay-ops
    role: operator
    scope: {{ labels: {{ env: payments }} }}
    tokens: [\"{}\"]
  - name: pay-templates
    role: operator
    scope: {{ labels: {{ env: payments }}, templates: [process-basic-v1] }}
    tokens: [\"{}\"]
",
        hash_token(ADMIN),
        hash_token(PAYMENTS),
        hash_token(PAYMENTS_TEMPLATES),
    )
}

fn agent_ids(token: &str, http: u16) -> Vec<String> {
    let (status, body) = api_as(token, http, "GET", "/api/v1/agents", "");
    assert_eq!(status, 200, "{body}");
    let mut ids: Vec<String> = body["agents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["labels"]["name"].as_str().unwrap().to_string())
        .collect();
    ids.sort();
    ids
}

fn id_of(http: u16, name: &str) -> String {
    let (_, body) = api_as(
        ADMIN,
        http,
        "GET",
        &format!("/api/v1/agents?label=name={name}"),
        "",
    );
    body["agents"][0]["id"].as_str().unwrap().to_string()
}

#[test]
fn each_role_and_scope_gets_what_it_may_and_every_refusal_is_audited() {
    let dir = TempDir::new("roles");
    let file = dir.path().join("auth.yaml");
    std::fs::write(&file, auth_file(&[VIEWER])).unwrap();
    let (http, grpc) = (free_port(), free_port());
    let controller = start_controller_with(
        &dir.path().join("data"),
        http,
        grpc,
        &["--auth-file", file.to_str().unwrap()],
    );
    let _pay = start_agent(dir.path(), "pay-1", "payments", grpc);
    let _search = start_agent(dir.path(), "search-1", "search", grpc);
    wait_for(Duration::from_secs(30), || {
        (agent_ids(ADMIN, http).len() == 2).then_some(())
    })
    .expect("both agents are known");
    let (pay_id, search_id) = (id_of(http, "pay-1"), id_of(http, "search-1"));

    // whoami, as phoenixctl shows it.
    let me = phoenixctl_as(PAYMENTS_TEMPLATES, http, &["whoami"]);
    let text = String::from_utf8_lossy(&me.stdout);
    assert!(me.status.success(), "{text}");
    for needle in [
        "principal:   pay-templates",
        "role:        operator",
        "scope:       agents with env=payments",
        "templates:   process-basic-v1",
    ] {
        assert!(text.contains(needle), "{needle:?} in {text}");
    }

    // A viewer reads everything, changes nothing, and is told what it lacks.
    assert_eq!(agent_ids(VIEWER, http), ["pay-1", "search-1"]);
    // One config for agents of both teams: without the telemetry section,
    // which is each agent's own (local-only).
    let yaml: String = agent_config(
        &dir.path().join("pushed.jsonl"),
        free_port(),
        "metrics/pushed",
        None,
    )
    .lines()
    .filter(|l| !l.contains("telemetry:"))
    .map(|l| format!("{l}\n"))
    .collect();
    let push_to = |labels: serde_json::Value| {
        serde_json::json!({ "selector": { "labels": labels }, "yaml": yaml, "note": "change 42" })
            .to_string()
    };
    let (status, body) = api_as(
        VIEWER,
        http,
        "POST",
        "/api/v1/pushes",
        &push_to(serde_json::json!({"env": "payments"})),
    );
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["missing_permission"], "pushes.create");
    assert!(
        body["error"].as_str().unwrap().contains("watcher (viewer)"),
        "{body}"
    );
    let (status, body) = api_as(VIEWER, http, "GET", "/api/v1/audit", "");
    assert_eq!(
        (status, body["missing_permission"].as_str()),
        (403, Some("audit.read"))
    );

    // A scoped operator sees its team's agents only; the other team's do
    // not exist for it.
    assert_eq!(agent_ids(PAYMENTS, http), ["pay-1"]);
    let (status, _) = api_as(
        PAYMENTS,
        http,
        "GET",
        &format!("/api/v1/agents/{search_id}"),
        "",
    );
    assert_eq!(status, 404);
    let (status, _) = api_as(
        PAYMENTS,
        http,
        "GET",
        &format!("/api/v1/agents/{pay_id}"),
        "",
    );
    assert_eq!(status, 200);

    // Pushing outside its scope is refused before anything is stored: by
    // label, and by naming agents.
    let (status, body) = api_as(
        PAYMENTS,
        http,
        "POST",
        "/api/v1/pushes",
        &push_to(serde_json::json!({"env": "search"})),
    );
    assert_eq!(status, 403, "{body}");
    let by_ids = serde_json::json!({ "selector": { "agents": [pay_id, search_id] }, "yaml": yaml })
        .to_string();
    let (status, body) = api_as(PAYMENTS, http, "POST", "/api/v1/pushes", &by_ids);
    assert_eq!(status, 403, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains(&search_id),
        "{body}"
    );
    let (_, pushes) = api_as(ADMIN, http, "GET", "/api/v1/pushes", "");
    assert_eq!(pushes["pushes"].as_array().unwrap().len(), 0, "{pushes}");

    // Inside it, the push is made, and recorded as the principal's.
    let (status, created) = api_as(
        PAYMENTS,
        http,
        "POST",
        "/api/v1/pushes",
        &push_to(serde_json::json!({"env": "payments"})),
    );
    assert_eq!(status, 202, "{created}");
    let push_id = created["id"].as_str().unwrap().to_string();
    assert_eq!(created["targets"].as_array().unwrap().len(), 1, "{created}");
    let (_, push) = api_as(ADMIN, http, "GET", &format!("/api/v1/pushes/{push_id}"), "");
    assert_eq!(push["author"], "pay-ops");
    // The admin's push to the other team is invisible to the scoped operator.
    let (status, other) = api_as(
        ADMIN,
        http,
        "POST",
        "/api/v1/pushes",
        &push_to(serde_json::json!({"env": "search"})),
    );
    assert_eq!(status, 202, "{other}");
    let (_, listed) = api_as(PAYMENTS, http, "GET", "/api/v1/pushes", "");
    let listed: Vec<&str> = listed["pushes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_str().unwrap())
        .collect();
    assert_eq!(listed, [push_id.as_str()]);
    let (status, _) = api_as(
        PAYMENTS,
        http,
        "GET",
        &format!("/api/v1/pushes/{}", other["id"].as_str().unwrap()),
        "",
    );
    assert_eq!(status, 404);

    // Operators do not revoke agents.
    let (status, body) = api_as(
        PAYMENTS,
        http,
        "POST",
        &format!("/api/v1/agents/{pay_id}/revoke"),
        "",
    );
    assert_eq!(
        (status, body["missing_permission"].as_str()),
        (403, Some("agents.revoke"))
    );

    // An operator limited to templates: no raw YAML, only its templates.
    let (status, body) = api_as(
        PAYMENTS_TEMPLATES,
        http,
        "POST",
        "/api/v1/pushes",
        &push_to(serde_json::json!({"env": "payments"})),
    );
    assert_eq!(status, 403, "{body}");
    let template = |name: &str| {
        serde_json::json!({ "selector": { "labels": { "env": "payments" } }, "template": name })
            .to_string()
    };
    let (status, body) = api_as(
        PAYMENTS_TEMPLATES,
        http,
        "POST",
        "/api/v1/pushes",
        &template("process-aggressive-v1"),
    );
    assert_eq!(status, 403, "{body}");
    let (status, body) = api_as(
        PAYMENTS_TEMPLATES,
        http,
        "POST",
        "/api/v1/pushes",
        &template("process-basic-v1"),
    );
    assert_ne!(status, 403, "{body}");
    let (_, templates) = api_as(PAYMENTS_TEMPLATES, http, "GET", "/api/v1/templates", "");
    let names: Vec<&str> = templates["templates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["process-basic-v1"]);

    // An experiment whose targets could reach another team is refused.
    let definition = r#"
name: reach
targets: { labels: { role: web } }
base:
  yaml: |
    receivers: { procfs: {} }
    exporters: { file: { path: "${env:PHOENIX_EXPERIMENT_OUT:-/dev/null}" } }
    service: { pipelines: { metrics: { receivers: [procfs], exporters: [file] } } }
candidates: [{ template: process-basic-v1 }]
critical_processes: ['^etcd$']
interval: 1s
duration: 1m
"#;
    let body = serde_json::json!({ "definition": definition }).to_string();
    let (status, refused) = api_as(PAYMENTS, http, "POST", "/api/v1/experiments", &body);
    assert_eq!(status, 403, "{refused}");
    assert!(
        refused["error"].as_str().unwrap().contains("env=payments"),
        "{refused}"
    );

    // A wrong token is refused, and the refusal of a state change audited.
    let (status, _) = api_as(
        "not-a-valid-token-at-all-000000",
        http,
        "POST",
        "/api/v1/pushes",
        "{}",
    );
    assert_eq!(status, 401);

    // The audit log names the principal, its address and request id, the
    // note, and every refusal.
    let (status, audit) = api_as(ADMIN, http, "GET", "/api/v1/audit?limit=100", "");
    assert_eq!(status, 200, "{audit}");
    let entries = audit["entries"].as_array().unwrap();
    let created = entries
        .iter()
        .find(|e| e["action"] == "push.created" && e["push_id"] == push_id.as_str())
        .expect("the push is audited");
    assert_eq!(created["actor"], "pay-ops");
    assert_eq!(created["detail"]["request"]["client"], "127.0.0.1");
    assert_eq!(created["detail"]["request"]["note"], "change 42");
    assert_eq!(
        created["detail"]["request"]["id"].as_str().unwrap().len(),
        16
    );
    let refused: Vec<(String, u64)> = entries
        .iter()
        .filter(|e| e["action"] == "request.refused")
        .map(|e| {
            (
                e["actor"].as_str().unwrap().to_string(),
                e["detail"]["status"].as_u64().unwrap(),
            )
        })
        .collect();
    for expected in [
        ("watcher", 403),
        ("pay-ops", 403),
        ("pay-templates", 403),
        ("unauthenticated", 401),
    ] {
        assert!(
            refused.contains(&(expected.0.to_string(), expected.1)),
            "{expected:?} in {refused:?}"
        );
    }
    // Reads refused are not state changes: the viewer's audit read is not there.
    assert!(
        !entries
            .iter()
            .any(|e| e["detail"]["path"] == "/api/v1/audit")
    );
    let verify = phoenixctl_as(ADMIN, http, &["audit", "verify"]);
    assert!(verify.status.success(), "{verify:?}");

    // Rotation without downtime: a second token for the viewer, then the
    // old one removed; the file is re-read when it changes. (Each step
    // waits on the reload counter, not by retrying a token: failed tries
    // would count against this address.)
    let reloads = |result: &str| {
        let (_, page) = http_get(http, "/metrics").unwrap();
        sample(
            &page,
            &format!("phoenix_controller_auth_reloads_total{{result=\"{result}\"}}"),
        )
        .unwrap_or(0.0)
    };
    let reloaded = |result: &str, n: f64| {
        wait_for(Duration::from_secs(15), || {
            (reloads(result) >= n).then_some(())
        })
        .unwrap_or_else(|| panic!("{n} {result} reload(s) of the auth file"));
    };
    std::fs::write(&file, auth_file(&[VIEWER, VIEWER_NEXT])).unwrap();
    reloaded("ok", 1.0);
    assert_eq!(
        api_as(VIEWER_NEXT, http, "GET", "/api/v1/whoami", "").0,
        200
    );
    assert_eq!(api_as(VIEWER, http, "GET", "/api/v1/whoami", "").0, 200);
    std::fs::write(&file, auth_file(&[VIEWER_NEXT])).unwrap();
    reloaded("ok", 2.0);
    assert_eq!(api_as(VIEWER, http, "GET", "/api/v1/whoami", "").0, 401);
    // An invalid file keeps the principals in force; SIGHUP re-reads too.
    std::fs::write(&file, "principals: [{ name: x, role: root }]\n").unwrap();
    reloaded("error", 1.0);
    controller.running.signal(libc::SIGHUP);
    reloaded("error", 2.0);
    assert_eq!(
        api_as(VIEWER_NEXT, http, "GET", "/api/v1/whoami", "").0,
        200
    );

    // Guessing tokens from one address: after ten failures (two happened
    // above: the wrong token, the removed one), 429 for the rest of the
    // minute, even with a valid token (so this runs last).
    let guesses: Vec<u16> = (0..9)
        .map(|_| {
            let guess = "guess-0123456789abcdefghijklmn";
            api_as(guess, http, "GET", "/api/v1/agents", "").0
        })
        .collect();
    assert_eq!(guesses, [[401; 8].as_slice(), &[429]].concat());
    let (status, body) = api_as(ADMIN, http, "GET", "/api/v1/agents", "");
    assert_eq!(status, 429, "{body}");
    let (_, page) = http_get(http, "/metrics").unwrap();
    assert!(
        sample(
            &page,
            "phoenix_controller_api_auth_failures_total{reason=\"unknown_token\"}"
        )
        .is_some_and(|n| n >= 10.0),
        "{page}"
    );
}
