//! Pod attribution end to end: a real process in a cgroup named as
//! containerd names a pod's container, the real agent binary scraping the
//! real `/proc`, and an API server in the test that lists the node's pods
//! in the shape Kubernetes returns. The exported resource carries the
//! container read from the cgroup and the pod and workload the API names.
//!
//! Needs root and a writable cgroup v2 hierarchy; without them the test
//! skips, except in CI (`CI` set), where it fails.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use phoenix_tests::cgroup::{Placed, unique, writable_v2};
use phoenix_tests::{Running, TempDir, binary, free_port, http_get, sample, wait_for};
use serde_json::Value;

/// The node's pods as `GET /api/v1/pods?fieldSelector=spec.nodeName=node-1`
/// returns them: one pod of a Deployment's ReplicaSet with one container.
fn pod_list(pod_uid: &str, container_id: &str) -> String {
    serde_json::json!({
        "kind": "PodList",
        "apiVersion": "v1",
        "metadata": { "resourceVersion": "48213" },
        "items": [{
            "metadata": {
                "name": "web-7d9c5b-x2x4q",
                "generateName": "web-7d9c5b-",
                "namespace": "shop",
                "uid": pod_uid,
                "resourceVersion": "48190",
                "creationTimestamp": "2026-12-07T05:00:00Z",
                "labels": { "app": "web", "pod-template-hash": "7d9c5b" },
                "ownerReferences": [{
                    "apiVersion": "apps/v1",
                    "kind": "ReplicaSet",
                    "name": "web-7d9c5b",
                    "uid": "5d1c0f3e-8a55-4c1e-9a40-3f0c2b9e7d11",
                    "controller": true,
                    "blockOwnerDeletion": true
                }]
            },
            "spec": {
                "nodeName": "node-1",
                "containers": [{ "name": "server", "image": "registry.example/web:1.4" }]
            },
            "status": {
                "phase": "Running",
                "podIP": "10.1.2.3",
                "containerStatuses": [{
                    "name": "server",
                    "ready": true,
                    "restartCount": 0,
                    "image": "registry.example/web:1.4",
                    "imageID": "registry.example/web@sha256:0f0e",
                    "containerID": format!("containerd://{container_id}"),
                    "started": true,
                    "state": { "running": { "startedAt": "2026-12-07T05:00:02Z" } }
                }]
            }
        }]
    })
    .to_string()
}

/// An API server answering every request with `body`; the request lines it
/// saw.
fn api_server(body: String) -> (u16, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut request = Vec::new();
            let mut buf = [0u8; 4096];
            while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                match stream.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => request.extend_from_slice(&buf[..n]),
                }
            }
            let text = String::from_utf8_lossy(&request);
            log.lock()
                .unwrap()
                .push(text.lines().next().unwrap_or_default().to_string());
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    (port, seen)
}

/// A string resource attribute of an OTLP/JSON resource.
fn attribute<'a>(resource: &'a Value, key: &str) -> Option<&'a str> {
    resource["attributes"]
        .as_array()?
        .iter()
        .find(|a| a["key"] == key)?["value"]["stringValue"]
        .as_str()
}

#[test]
fn a_process_in_a_pod_container_is_exported_with_its_container_pod_and_workload() {
    let Some(v2) = writable_v2() else {
        return;
    };
    let u = unique();
    let container_id = format!("{u:016x}{:048x}", 0xe2e);
    let pod_uid = format!("{:08x}-0e2e-4000-8000-{:012x}", u >> 32, u & 0xffff_ffff);
    let placed = Placed::new(
        &v2,
        &format!(
            "phoenix-e2e-kubepods.slice/kubepods-besteffort.slice/\
             kubepods-besteffort-pod{}.slice/cri-containerd-{container_id}.scope",
            pod_uid.replace('-', "_")
        ),
    )
    .expect("a cgroup v2 for the test process");
    let (api, requests) = api_server(pod_list(&pod_uid, &container_id));

    let dir = TempDir::new("k8s-e2e");
    let out = dir.path().join("out.jsonl");
    let telemetry = free_port();
    let config = format!(
        r#"receivers:
  procfs: {{ collection_interval: 1s }}
processors:
  k8sattributes:
    auth_type: none
    endpoint: http://127.0.0.1:{api}
    node_name: node-1
    extract:
      labels: [{{ key: app, tag_name: app }}]
  filter/pod:
    include: {{ match_type: strict, attributes: [{{ key: container.id, value: "{container_id}" }}] }}
exporters:
  file: {{ path: {} }}
service:
  pipelines:
    metrics: {{ receivers: [procfs], processors: [k8sattributes, filter/pod], exporters: [file] }}
  telemetry: {{ address: "127.0.0.1:{telemetry}" }}
"#,
        out.display()
    );
    let config_path = dir.path().join("agent.yaml");
    std::fs::write(&config_path, config).unwrap();
    let _agent = Running::start(
        &binary("phoenix-agent"),
        &[
            "--config",
            config_path.to_str().unwrap(),
            "--state-dir",
            dir.path().join("state").to_str().unwrap(),
        ],
    );

    // The first scrape may come before the first listing: the miss asks
    // for an early refresh, and a later interval carries the pod.
    let resource = wait_for(Duration::from_secs(30), || {
        let text = std::fs::read_to_string(&out).ok()?;
        text.lines().rev().find_map(|line| {
            let v: Value = serde_json::from_str(line).ok()?;
            v["resourceMetrics"]
                .as_array()?
                .iter()
                .map(|rm| rm["resource"].clone())
                .find(|r| attribute(r, "k8s.pod.name").is_some())
        })
    })
    .unwrap_or_else(|| {
        panic!(
            "no exported resource with its pod; exported: {:?}",
            std::fs::read_to_string(&out).unwrap_or_default()
        )
    });
    let pid = placed.pid().to_string();
    let expected = [
        ("container.id", container_id.as_str()),
        ("container.runtime.name", "containerd"),
        ("k8s.pod.uid", pod_uid.as_str()),
        ("k8s.pod.name", "web-7d9c5b-x2x4q"),
        ("k8s.namespace.name", "shop"),
        ("k8s.container.name", "server"),
        ("k8s.node.name", "node-1"),
        ("k8s.replicaset.name", "web-7d9c5b"),
        ("k8s.deployment.name", "web"),
        ("app", "web"),
        ("process.executable.name", "sleep"),
    ];
    for (key, value) in expected {
        assert_eq!(
            attribute(&resource, key),
            Some(value),
            "{key} in {resource}"
        );
    }
    let exported_pid = resource["attributes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["key"] == "process.pid")
        .and_then(|a| a["value"]["intValue"].as_str().map(str::to_string));
    assert_eq!(exported_pid.as_deref(), Some(pid.as_str()), "{resource}");
    // Only the node's pods were asked for.
    let asked = requests.lock().unwrap().clone();
    assert!(
        asked
            .iter()
            .all(|r| r.starts_with("GET /api/v1/pods?fieldSelector=spec.nodeName%3Dnode-1 ")),
        "{asked:?}"
    );
    let (_, metrics) = http_get(telemetry, "/metrics").expect("the agent's metrics");
    let ok = metrics
        .lines()
        .find(|l| {
            l.starts_with("phoenix_k8s_metadata_refreshes_total") && l.contains("result=\"ok\"")
        })
        .unwrap_or_else(|| panic!("refreshes counted: {metrics}"));
    assert!(
        sample(&metrics, ok.split_whitespace().next().unwrap()).is_some_and(|n| n >= 1.0),
        "{ok}"
    );
    drop(placed);
}
