//! OIDC through the whole API: a controller whose auth file has an `oidc`
//! section pointing at a key set this test serves over HTTP, JWTs the test
//! signs with a key it generated, and the answers each token gets (the
//! verifier's own rules are unit-tested in `auth/oidc.rs`).

mod common;

use std::collections::BTreeMap;

use axum::Router;
use axum::routing::get;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::{FakeAgent, FakeAgentSpec, Http, TestController, settings, temp_dir};
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode, get_current_timestamp};
use phoenix_api::{AgentList, WhoAmI};
use phoenix_controller::auth::AuthSource;
use ring::signature::{Ed25519KeyPair, KeyPair};
use serde_json::{Value, json};

const ISSUER: &str = "https://id.example.test";
const AUDIENCE: &str = "phoenix";

/// An Ed25519 key made for this test: its signer and its JWKS document.
fn key() -> (EncodingKey, String) {
    let pkcs8 = Ed25519KeyPair::generate_pkcs8(&ring::rand::SystemRandom::new()).unwrap();
    let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
    let x = URL_SAFE_NO_PAD.encode(pair.public_key().as_ref());
    let jwks = json!({ "keys": [{ "kty": "OKP", "crv": "Ed25519", "kid": "k1", "alg": "EdDSA", "x": x }] });
    (EncodingKey::from_ed_der(pkcs8.as_ref()), jwks.to_string())
}

fn jwt(key: &EncodingKey, sub: &str, groups: &[&str], expires_in: i64) -> String {
    let now = get_current_timestamp() as i64;
    let claims = json!({
        "iss": ISSUER, "aud": AUDIENCE, "sub": sub, "groups": groups,
        "iat": now, "exp": now + expires_in,
    });
    let mut header = Header::new(Algorithm::EdDSA);
    header.kid = Some("k1".into());
    encode(&header, &claims, key).unwrap()
}

/// Serve `jwks` at `/jwks` on a free loopback port.
async fn serve_key_set(jwks: String) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = Router::new().route("/jwks", get(move || async move { jwks }));
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}/jwks")
}

#[tokio::test]
async fn a_jwt_from_the_issuer_signs_in_with_the_role_and_scope_its_groups_grant() {
    let (signer, jwks) = key();
    let url = serve_key_set(jwks).await;
    let dir = temp_dir("oidc");
    let auth = dir.join("auth.yaml");
    std::fs::write(
        &auth,
        format!(
            "oidc:
  issuer: {ISSUER}
  audience: {AUDIENCE}
  jwks_url: {url}
  grants:
    - {{ value: sre, role: viewer }}
    - {{ value: payments-oncall, role: operator, scope: {{ labels: {{ team: payments }} }} }}
"
        ),
    )
    .unwrap();
    let mut s = settings(&dir.join("data"));
    s.api_auth = AuthSource::File(auth);
    let c = TestController::start(s).await;
    let base = format!("http://{}", c.running.http_addr);
    let as_token = |t: &str| Http::new(base.clone(), Some(t));
    let _pay = FakeAgent::connect(
        c.grpc_addr(),
        FakeAgentSpec::new("pay-1", &[("team", "payments")]),
    )
    .await
    .unwrap();
    let _search = FakeAgent::connect(
        c.grpc_addr(),
        FakeAgentSpec::new("search-1", &[("team", "search")]),
    )
    .await
    .unwrap();

    // Both groups match: the higher role wins, with its grant's scope.
    let alice = as_token(&jwt(&signer, "alice", &["sre", "payments-oncall"], 300));
    let me: WhoAmI = alice.get_as("/api/v1/whoami").await;
    assert_eq!(
        (me.name.as_str(), me.role.as_str(), me.method.as_str()),
        ("oidc:alice", "operator", "oidc")
    );
    let expected: BTreeMap<String, String> = [("team".into(), "payments".into())].into();
    assert_eq!(me.scope.unwrap().labels, expected);
    let agents: AgentList = alice.get_as("/api/v1/agents").await;
    let ids: Vec<&str> = agents.agents.iter().map(|a| a.id.as_str()).collect();
    assert_eq!(ids, ["pay-1"], "the scope filters the fleet");

    // A viewer may read, not push; the 403 names the permission.
    let bob = as_token(&jwt(&signer, "bob", &["sre"], 300));
    let (status, body) = bob
        .post(
            "/api/v1/pushes",
            json!({ "selector": { "agents": ["pay-1"] }, "template": "process-basic-v1" }),
        )
        .await;
    assert_eq!(
        (status, body["missing_permission"].clone()),
        (403, Value::from("pushes.create"))
    );

    // No grant, an expired token, a token of another key: 401, counted by reason.
    let (status, _) = as_token(&jwt(&signer, "carol", &["marketing"], 300))
        .get("/api/v1/whoami")
        .await;
    assert_eq!(status, 401);
    let (status, body) = as_token(&jwt(&signer, "alice", &["sre"], -3600))
        .get("/api/v1/whoami")
        .await;
    assert_eq!(status, 401, "{body}");
    let (other, _) = key();
    let (status, _) = as_token(&jwt(&other, "alice", &["sre"], 300))
        .get("/api/v1/whoami")
        .await;
    assert_eq!(status, 401);
    let metrics = reqwest::get(format!("{base}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for reason in ["no_grant", "expired", "bad_signature"] {
        let series = format!("phoenix_controller_api_auth_failures_total{{reason=\"{reason}\"}} 1");
        assert!(metrics.contains(&series), "{series} in\n{metrics}");
    }
    c.stop().await;
}
