//! Every agent its own identity, in-process over real gRPC: the enrollment
//! token enrolls, the credential is required from then on, a session that
//! claims another agent's id is refused without touching the real one, and
//! revocation is final.

mod common;

use common::*;
use phoenix_api::{AgentDetail, AgentEnrollment, AgentRevoked, AuditLog};
use serde_json::json;

fn keeping<'a>(id: &'a str, labels: &'a [(&'a str, &'a str)]) -> FakeAgentSpec<'a> {
    let mut spec = FakeAgentSpec::new(id, labels);
    spec.keep_credential = true;
    spec
}

async fn metrics(c: &TestController) -> String {
    reqwest::get(format!("{}/metrics", c.http.base))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

async fn enrollment(c: &TestController, id: &str) -> AgentEnrollment {
    c.http
        .get_as::<AgentDetail>(&format!("/api/v1/agents/{id}"))
        .await
        .agent
        .enrollment
}

#[tokio::test]
async fn a_copied_instance_id_is_refused_and_the_real_agent_keeps_its_session() {
    let dir = temp_dir("impostor");
    let c = TestController::start(settings(&dir)).await;
    let mut real = FakeAgent::connect(c.grpc_addr(), keeping("node-1", &[("env", "prod")]))
        .await
        .unwrap();
    let credential = real.credential().await;
    c.http
        .wait_agent("node-1", |a| a["enrollment"] == "enrolled")
        .await;
    let mut other = FakeAgent::connect(c.grpc_addr(), keeping("node-2", &[("env", "dev")]))
        .await
        .unwrap();
    let other_credential = other.credential().await;
    assert_ne!(credential, other_credential);

    let yaml = template("process-basic-v1");
    let (status, created) = c
        .http
        .post(
            "/api/v1/pushes",
            json!({ "selector": { "agents": ["node-1"] }, "yaml": yaml }),
        )
        .await;
    assert_eq!(status, 202, "{created}");
    real.next_push().await;
    let desired = c
        .http
        .wait_agent("node-1", |a| a["desired"]["state"] == "applied")
        .await;

    // The id alone, a made-up credential, another agent's credential: all
    // refused, with the enrollment token or without.
    let impostor = |credential: Option<String>, token: &'static str| {
        let mut spec = FakeAgentSpec::new("node-1", &[("env", "evil")]);
        spec.credential = credential;
        spec.token = token;
        spec
    };
    for (spec, code) in [
        (impostor(None, AGENT_TOKEN), tonic::Code::PermissionDenied),
        (
            impostor(Some("f".repeat(64)), AGENT_TOKEN),
            tonic::Code::PermissionDenied,
        ),
        (
            impostor(Some(other_credential.clone()), ""),
            tonic::Code::PermissionDenied,
        ),
        (
            impostor(Some("f".repeat(64)), ""),
            tonic::Code::Unauthenticated,
        ),
    ] {
        let refused = FakeAgent::connect(c.grpc_addr(), spec)
            .await
            .err()
            .expect("an impostor is refused");
        assert_eq!(refused.code(), code, "{refused}");
        assert!(!refused.message().contains(&credential), "{refused}");
        assert!(!refused.message().contains(&other_credential), "{refused}");
    }

    // The real agent is untouched: same session (a push still reaches it),
    // same labels, same desired config.
    let after = c.http.get("/api/v1/agents/node-1").await.1;
    assert_eq!(after["status"], "online");
    assert_eq!(after["labels"], json!({ "env": "prod" }));
    assert_eq!(after["desired"], desired["desired"]);
    let (status, _) = c
        .http
        .post(
            "/api/v1/pushes",
            json!({ "selector": { "agents": ["node-1"] }, "template": "process-standard-v1" }),
        )
        .await;
    assert_eq!(status, 202);
    real.next_push().await;
    let text = metrics(&c).await;
    assert!(
        text.contains("phoenix_controller_sessions_refused_total{reason=\"wrong_credential\"} 3"),
        "{text}"
    );
    assert!(
        text.contains("phoenix_controller_agent_credentials_issued_total 2"),
        "{text}"
    );
    assert!(!text.contains(&credential));

    // The real agent comes back with its credential alone: no token needed,
    // and nothing new is issued.
    real.disconnect().await;
    let mut spec = keeping("node-1", &[("env", "prod")]);
    spec.credential = Some(credential.clone());
    spec.token = "";
    let back = FakeAgent::connect(c.grpc_addr(), spec).await.unwrap();
    c.http
        .wait_agent("node-1", |a| a["status"] == "online")
        .await;
    assert!(!back.was_enrolled());
    assert_eq!(enrollment(&c, "node-1").await, AgentEnrollment::Enrolled);
    let audit: AuditLog = c.http.get_as("/api/v1/audit").await;
    assert!(
        audit
            .entries
            .iter()
            .any(|e| e.action == "agent.enrolled" && e.agent_id.as_deref() == Some("node-1")),
        "{audit:?}"
    );
    c.stop().await;
}

#[tokio::test]
async fn an_agent_that_never_kept_its_credential_can_enroll_again() {
    let dir = temp_dir("pending");
    let c = TestController::start(settings(&dir)).await;
    // It never says EnrollmentKept (it could not store it, or it is older).
    let mut first = FakeAgent::connect(c.grpc_addr(), FakeAgentSpec::new("lossy", &[]))
        .await
        .unwrap();
    let issued = first.credential().await;
    assert_eq!(enrollment(&c, "lossy").await, AgentEnrollment::Pending);
    first.disconnect().await;
    let mut again = FakeAgent::connect(c.grpc_addr(), FakeAgentSpec::new("lossy", &[]))
        .await
        .unwrap();
    let reissued = again.credential().await;
    assert_ne!(issued, reissued);
    // The first credential was replaced.
    let mut stale = FakeAgentSpec::new("lossy", &[]);
    stale.credential = Some(issued);
    stale.token = "";
    assert!(FakeAgent::connect(c.grpc_addr(), stale).await.is_err());
    // Presenting the pending credential proves it was kept.
    again.disconnect().await;
    let mut spec = FakeAgentSpec::new("lossy", &[]);
    spec.credential = Some(reissued);
    let _kept = FakeAgent::connect(c.grpc_addr(), spec).await.unwrap();
    c.http
        .wait_agent("lossy", |a| a["enrollment"] == "enrolled")
        .await;
    c.stop().await;
}

#[tokio::test]
async fn revocation_closes_the_session_and_nothing_readmits_the_id() {
    let dir = temp_dir("revoke");
    let c = TestController::start(settings(&dir)).await;
    let mut agent = FakeAgent::connect(c.grpc_addr(), keeping("gone", &[("env", "prod")]))
        .await
        .unwrap();
    let credential = agent.credential().await;
    c.http
        .wait_agent("gone", |a| a["enrollment"] == "enrolled")
        .await;

    let (status, _) = c
        .http
        .without_token()
        .post("/api/v1/agents/gone/revoke", json!({}))
        .await;
    assert_eq!(status, 401);
    let (status, body) = c
        .http
        .post(
            "/api/v1/agents/gone/revoke",
            json!({ "author": "alice", "reason": "node decommissioned" }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let revoked: AgentRevoked = typed(body);
    assert!(revoked.session_closed && !revoked.already_revoked);
    agent.wait_closed().await;

    let view: AgentDetail = c.http.get_as("/api/v1/agents/gone").await;
    assert_eq!(view.agent.enrollment, AgentEnrollment::Revoked);
    assert_eq!(
        view.agent.revoked_at.as_deref(),
        Some(revoked.revoked_at.as_str())
    );
    assert_eq!(view.agent.status, phoenix_api::AgentStatus::Offline);

    // Neither its credential nor the enrollment token brings it back.
    let mut with_credential = keeping("gone", &[]);
    with_credential.credential = Some(credential);
    for spec in [with_credential, keeping("gone", &[])] {
        let refused = FakeAgent::connect(c.grpc_addr(), spec)
            .await
            .err()
            .expect("a revoked agent is refused");
        assert_eq!(refused.code(), tonic::Code::PermissionDenied);
        assert!(refused.message().contains("revoked"), "{refused}");
    }
    let text = metrics(&c).await;
    assert!(
        text.contains("phoenix_controller_sessions_refused_total{reason=\"revoked\"} 2"),
        "{text}"
    );

    // Pushes leave it out; revoking twice changes nothing; unknown ids are 404.
    let (status, body) = c
        .http
        .post(
            "/api/v1/pushes",
            json!({ "selector": { "agents": ["gone"] }, "template": "process-basic-v1" }),
        )
        .await;
    assert_eq!(status, 422, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("revoked"),
        "{body}"
    );
    let (status, body) = c.http.post("/api/v1/agents/gone/revoke", json!({})).await;
    assert_eq!(status, 200);
    assert_eq!(body["already_revoked"], true);
    let (status, _) = c.http.post("/api/v1/agents/nobody/revoke", json!({})).await;
    assert_eq!(status, 404);
    let audit: AuditLog = c.http.get_as("/api/v1/audit").await;
    let entries: Vec<_> = audit
        .entries
        .iter()
        .filter(|e| e.action == "agent.revoked")
        .collect();
    assert_eq!(entries.len(), 1, "{audit:?}");
    // The actor is the signed-in principal; the body's `author` (the old
    // name of `note`) is only a note.
    assert_eq!(entries[0].actor, "admin");
    assert_eq!(entries[0].detail["request"]["note"], "alice");
    assert_eq!(entries[0].detail["reason"], "node decommissioned");

    // It stays revoked across a restart.
    c.stop().await;
    let c = TestController::start(settings(&dir)).await;
    let refused = FakeAgent::connect(c.grpc_addr(), keeping("gone", &[]))
        .await
        .err()
        .expect("still revoked");
    assert_eq!(refused.code(), tonic::Code::PermissionDenied);
    c.stop().await;
}
