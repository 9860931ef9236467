//! The source against a small API server in the test, answering PodList
//! JSON in the shape the Kubernetes API returns.

use std::collections::HashMap;
use std::sync::Mutex;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::get;
use phoenix_processors::processors::k8s::Extract;
use phoenix_processors::semconv;

use super::*;

const NODE: &str = "worker-1";

/// What the fake API server answers, and what it saw.
#[derive(Default)]
struct Api {
    status: u16,
    body: String,
    hits: usize,
    authorization: Vec<String>,
}

type Shared = Arc<Mutex<Api>>;

async fn list_pods(
    State(api): State<Shared>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> (StatusCode, String) {
    let mut api = api.lock().unwrap();
    api.hits += 1;
    if let Some(auth) = headers.get("authorization") {
        let auth = auth.to_str().unwrap_or("?").to_owned();
        api.authorization.push(auth);
    }
    if query.get("fieldSelector").map(String::as_str) != Some("spec.nodeName=worker-1") {
        return (StatusCode::BAD_REQUEST, "field selector".into());
    }
    (
        StatusCode::from_u16(api.status).unwrap_or(StatusCode::OK),
        api.body.clone(),
    )
}

/// Serve `api` on a free localhost port; the URL.
async fn serve(api: Shared) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = axum::Router::new()
        .route("/api/v1/pods", get(list_pods))
        .with_state(api);
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    format!("http://{addr}")
}

fn cid(n: u8) -> String {
    format!("{n:02x}").repeat(32)
}

/// One pod, as the API server writes it (fields the agent ignores included).
fn pod_json(name: &str, owner: (&str, &str), containers: &[(&str, u8)]) -> String {
    let statuses: Vec<String> = containers
        .iter()
        .map(|(c, id)| {
            format!(
                r#"{{"name":"{c}","state":{{"running":{{"startedAt":"2026-12-01T10:00:00Z"}}}},"ready":true,"restartCount":0,"image":"nginx:1.27","imageID":"docker.io/library/nginx@sha256:00","containerID":"containerd://{}","started":true}}"#,
                cid(*id)
            )
        })
        .collect();
    format!(
        r#"{{"metadata":{{"name":"{name}","generateName":"web-","namespace":"shop","uid":"uid-{name}","resourceVersion":"812","creationTimestamp":"2026-12-01T10:00:00Z","labels":{{"app":"web","pod-template-hash":"7d9c5b"}},"annotations":{{"team":"payments"}},"ownerReferences":[{{"apiVersion":"apps/v1","kind":"{}","name":"{}","uid":"owner-uid","controller":true,"blockOwnerDeletion":true}}]}},"spec":{{"nodeName":"{NODE}","containers":[{{"name":"nginx","image":"nginx:1.27"}}]}},"status":{{"phase":"Running","podIP":"10.1.2.3","containerStatuses":[{}]}}}}"#,
        owner.0,
        owner.1,
        statuses.join(",")
    )
}

fn pod_list(pods: &[String]) -> String {
    format!(
        r#"{{"kind":"PodList","apiVersion":"v1","metadata":{{"resourceVersion":"1234"}},"items":[{}]}}"#,
        pods.join(",")
    )
}

fn settings(url: &str) -> SourceSettings {
    let config = K8sAttributesConfig {
        auth_type: AuthType::None,
        endpoint: Some(url.to_owned()),
        node_name: Some(NODE.into()),
        extract: Extract {
            labels: vec![phoenix_processors::processors::k8s::FieldExtract {
                key: "app".into(),
                tag_name: None,
            }],
            ..Extract::default()
        },
        ..K8sAttributesConfig::default()
    };
    let mut s = SourceSettings::resolve(&config, "k8sattributes", &|_| None).unwrap();
    s.refresh_interval = Duration::from_secs(3600);
    s.miss_refresh_min = Duration::from_millis(50);
    s
}

/// Wait (up to 10 s) until `check` holds.
async fn until(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn pod_of(metadata: &PodMetadata, id: u8) -> Option<String> {
    let index = metadata.current();
    let attrs = index.get(&cid(id))?;
    attrs
        .iter()
        .find(|kv| &*kv.key == semconv::K8S_POD_NAME)
        .map(|kv| kv.value.to_string())
}

fn counter(registry: &Registry, result: &str) -> u64 {
    let text = registry.render();
    let line = format!(
        "phoenix_k8s_metadata_refreshes_total{{processor=\"k8sattributes\",result=\"{result}\"}} "
    );
    text.lines()
        .find_map(|l| l.strip_prefix(&line))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

fn set(api: &Shared, status: u16, body: String) {
    let mut api = api.lock().unwrap();
    api.status = status;
    api.body = body;
}

#[tokio::test]
async fn pods_come_and_go_and_a_miss_refreshes_early() {
    let api: Shared = Arc::default();
    set(
        &api,
        200,
        pod_list(&[pod_json(
            "web-7d9c5b-a",
            ("ReplicaSet", "web-7d9c5b"),
            &[("nginx", 1)],
        )]),
    );
    let url = serve(api.clone()).await;
    let registry = Registry::new();
    let source = PodSource::start(settings(&url), &registry).unwrap();
    let metadata = source.metadata();
    until("first snapshot", || pod_of(&metadata, 1).is_some()).await;
    let index = metadata.current();
    let attrs = index.get(&cid(1)).unwrap();
    let get = |k: &str| {
        attrs
            .iter()
            .find(|kv| &*kv.key == k)
            .map(|kv| kv.value.to_string())
    };
    assert_eq!(get(semconv::K8S_DEPLOYMENT_NAME).as_deref(), Some("web"));
    assert_eq!(get(semconv::K8S_NAMESPACE_NAME).as_deref(), Some("shop"));
    assert_eq!(get(semconv::K8S_CONTAINER_NAME).as_deref(), Some("nginx"));
    assert_eq!(get(semconv::K8S_NODE_NAME).as_deref(), Some(NODE));
    assert_eq!(get("k8s.pod.label.app").as_deref(), Some("web"));

    // Pod a goes, b and a StatefulSet pod c come. The periodic refresh is
    // an hour away: a processor meeting c's container asks for it.
    set(
        &api,
        200,
        pod_list(&[
            pod_json(
                "web-7d9c5b-b",
                ("ReplicaSet", "web-7d9c5b"),
                &[("nginx", 2)],
            ),
            pod_json("db-0", ("StatefulSet", "db"), &[("pg", 3), ("exporter", 4)]),
        ]),
    );
    let mut processor = phoenix_processors::processors::K8sAttributes::new(
        &K8sAttributesConfig::default(),
        metadata.clone(),
    )
    .unwrap();
    let mut batch = phoenix_processors::Batch {
        resources: vec![phoenix_processors::Resource {
            attributes: phoenix_processors::Attributes::new(vec![
                phoenix_processors::KeyValue::new(
                    semconv::CONTAINER_ID.into(),
                    phoenix_processors::Value::Str(cid(3).into()),
                ),
            ]),
            metrics: Vec::new(),
            identity: Some(1),
        }],
        ..Default::default()
    };
    use phoenix_processors::Processor as _;
    processor.process(&mut batch);
    until("the miss to refresh", || pod_of(&metadata, 3).is_some()).await;
    assert_eq!(pod_of(&metadata, 3).as_deref(), Some("db-0"));
    assert_eq!(pod_of(&metadata, 4).as_deref(), Some("db-0"));
    assert_eq!(pod_of(&metadata, 2).as_deref(), Some("web-7d9c5b-b"));
    assert_eq!(pod_of(&metadata, 1), None, "the pod that went is gone");
    processor.process(&mut batch);
    assert_eq!(
        batch.resources[0]
            .attributes
            .get_str(semconv::K8S_STATEFULSET_NAME),
        Some("db")
    );
    assert_eq!(counter(&registry, "ok"), 2);
    assert_eq!(api.lock().unwrap().hits, 2);
}

#[tokio::test]
async fn failures_keep_the_last_snapshot_and_are_counted() {
    let api: Shared = Arc::default();
    set(
        &api,
        200,
        pod_list(&[pod_json("db-0", ("StatefulSet", "db"), &[("pg", 5)])]),
    );
    let url = serve(api.clone()).await;
    let registry = Registry::new();
    let mut s = settings(&url);
    s.refresh_interval = Duration::from_millis(50);
    s.max_response_bytes = 4096;
    let source = PodSource::start(s, &registry).unwrap();
    let metadata = source.metadata();
    until("first snapshot", || pod_of(&metadata, 5).is_some()).await;

    let cases: [(u16, String, &str); 5] = [
        (500, "oops".into(), "refused"),
        (403, r#"{"kind":"Status","code":403}"#.into(), "refused"),
        (200, "<html>not json</html>".into(), "invalid"),
        (200, r#"{"kind":"Status"}"#.into(), "invalid"),
        (
            200,
            pod_list(&vec![pod_json("big", ("Job", "big"), &[("x", 6)]); 40]),
            "invalid",
        ),
    ];
    for (status, body, result) in cases {
        let before = counter(&registry, result);
        set(&api, status, body);
        until(result, || counter(&registry, result) > before).await;
        assert_eq!(pod_of(&metadata, 5).as_deref(), Some("db-0"), "{result}");
    }
    // Recovers.
    set(&api, 200, pod_list(&[]));
    until("an empty list", || pod_of(&metadata, 5).is_none()).await;
}

#[tokio::test]
async fn an_unreachable_server_is_counted_and_nothing_is_published() {
    // A port nobody listens on.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let registry = Registry::new();
    let mut s = settings(&url);
    s.refresh_interval = Duration::from_millis(50);
    let source = PodSource::start(s, &registry).unwrap();
    until("two failures", || counter(&registry, "unreachable") >= 2).await;
    assert_eq!(source.metadata().current().pods(), 0);
    assert_eq!(counter(&registry, "ok"), 0);
}

#[tokio::test]
async fn the_token_is_read_again_for_every_refresh() {
    let dir = std::env::temp_dir().join(format!("phoenix-k8s-token-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let token = dir.join("token");
    std::fs::write(&token, "first\n").unwrap();
    let api: Shared = Arc::default();
    set(&api, 200, pod_list(&[]));
    let url = serve(api.clone()).await;
    let mut s = settings(&url);
    s.token_path = Some(token.clone());
    s.refresh_interval = Duration::from_millis(50);
    let registry = Registry::new();
    let _source = PodSource::start(s, &registry).unwrap();
    until("a first request", || api.lock().unwrap().hits >= 1).await;
    std::fs::write(&token, "second").unwrap();
    until("the rotated token", || {
        api.lock()
            .unwrap()
            .authorization
            .iter()
            .any(|a| a == "Bearer second")
    })
    .await;
    assert_eq!(api.lock().unwrap().authorization[0], "Bearer first");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn settings_come_from_the_environment_in_a_pod() {
    let env = |name: &str| match name {
        "KUBERNETES_SERVICE_HOST" => Some("10.96.0.1".to_string()),
        "KUBERNETES_SERVICE_PORT" => Some("443".to_string()),
        "K8S_NODE_NAME" => Some(NODE.to_string()),
        _ => None,
    };
    let s =
        SourceSettings::resolve(&K8sAttributesConfig::default(), "k8sattributes", &env).unwrap();
    assert_eq!(
        s.url(),
        "https://10.96.0.1:443/api/v1/pods?fieldSelector=spec.nodeName%3Dworker-1"
    );
    assert_eq!(
        s.token_path.as_deref(),
        Some(Path::new(
            "/var/run/secrets/kubernetes.io/serviceaccount/token"
        ))
    );
    let v6 = |name: &str| match name {
        "KUBERNETES_SERVICE_HOST" => Some("fd00::1".to_string()),
        other => env(other),
    };
    let s = SourceSettings::resolve(&K8sAttributesConfig::default(), "k8sattributes", &v6).unwrap();
    assert!(
        s.base_url.starts_with("https://[fd00::1]:443"),
        "{}",
        s.base_url
    );

    let missing = |name: &str| (name != "K8S_NODE_NAME").then(|| env(name)).flatten();
    let e = SourceSettings::resolve(&K8sAttributesConfig::default(), "k8sattributes", &missing)
        .unwrap_err();
    assert!(e.to_string().contains("K8S_NODE_NAME"), "{e}");
    let hostile = |name: &str| match name {
        "K8S_NODE_NAME" => Some("a&b=c".to_string()),
        other => env(other),
    };
    assert!(
        SourceSettings::resolve(&K8sAttributesConfig::default(), "k8sattributes", &hostile)
            .is_err()
    );
    let outside = |_: &str| None;
    assert!(
        SourceSettings::resolve(&K8sAttributesConfig::default(), "k8sattributes", &outside)
            .is_err()
    );
}
