//! The audit log holds against edits made behind the controller's back:
//! the real controller, a real push, the SQLite file changed by hand, and
//! `phoenixctl audit verify` naming the entry; the exported copy (JSON
//! lines) keeps what the store said before the edit.

use std::time::Duration;

use phoenix_api::AuditEntry;
use phoenix_tests::fleet::{
    API_TOKEN, agent_config, api, online, phoenixctl, start_agent, start_controller_with,
};
use phoenix_tests::{TempDir, free_port, wait_for};

#[test]
fn audit_verify_names_an_entry_edited_in_the_store_file() {
    let dir = TempDir::new("audit");
    let data = dir.path().join("data");
    let export = dir.path().join("audit.jsonl");
    let controller = start_controller_with(
        &data,
        free_port(),
        free_port(),
        &[
            "--api-token",
            API_TOKEN,
            "--audit-export",
            export.to_str().unwrap(),
        ],
    );
    let agent = start_agent(dir.path(), "node-1", "prod", controller.grpc);
    wait_for(Duration::from_secs(30), || {
        (online(controller.http).len() == 1).then_some(())
    })
    .expect("the agent is online");
    let pushed = agent_config(&agent.out, agent.telemetry, "metrics/pushed", None);
    let body = serde_json::json!({ "selector": { "labels": { "env": "prod" } }, "yaml": pushed });
    let (status, created) = api(controller.http, "POST", "/api/v1/pushes", &body.to_string());
    assert_eq!(status, 202, "{created}");
    let id = created["id"].as_str().unwrap().to_string();
    wait_for(Duration::from_secs(30), || {
        let (_, p) = api(controller.http, "GET", &format!("/api/v1/pushes/{id}"), "");
        (p["complete"] == true).then_some(())
    })
    .expect("the push completes");

    let verify = || {
        let out = phoenixctl(controller.http, &["audit", "verify"]);
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let (code, text) = verify();
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("intact"), "{text}");
    let list = phoenixctl(controller.http, &["audit", "list", "--push", &id]);
    let listed = String::from_utf8_lossy(&list.stdout);
    assert!(listed.contains(&id), "{listed}");

    // The export has every entry, chained, as the API shows them.
    let exported = || -> Vec<AuditEntry> {
        std::fs::read_to_string(&export)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).expect("a JSON line"))
            .collect()
    };
    let (_, listed) = api(controller.http, "GET", "/api/v1/audit?limit=1000", "");
    let count = listed["entries"].as_array().unwrap().len();
    let lines = wait_for(Duration::from_secs(15), || {
        let lines = exported();
        (lines.len() >= count).then_some(lines)
    })
    .expect("every entry is exported");
    assert!(
        lines
            .windows(2)
            .all(|w| w[1].prev_hash == w[0].hash && w[1].id > w[0].id)
    );
    let created = lines
        .iter()
        .find(|e| e.action == "push.created")
        .expect("the push is exported");
    assert_eq!(created.actor, "admin");
    assert_eq!(created.detail["request"]["client"], "127.0.0.1");

    // Someone with the file rewrites who created the push.
    let db = rusqlite::Connection::open(data.join("controller.db")).unwrap();
    db.busy_timeout(Duration::from_secs(5)).unwrap();
    let first: i64 = db
        .query_row("SELECT MIN(id) FROM audit_log", [], |r| r.get(0))
        .unwrap();
    db.execute(
        "UPDATE audit_log SET actor = 'controller' WHERE id = ?1",
        [first],
    )
    .unwrap();
    drop(db);
    let (code, text) = verify();
    assert_eq!(code, Some(3), "{text}");
    assert!(
        text.contains(&format!("BROKEN at entry {first}")),
        "names the entry: {text}"
    );
    // The exported copy still says who it was.
    let copy = exported();
    let original = copy.iter().find(|e| e.id == first).unwrap();
    assert_ne!(original.actor, "controller", "{original:?}");
}
