//! The part of the Kubernetes API's `PodList` (core/v1) the agent reads,
//! and its conversion into [`PodMeta`]. Everything else in the answer is
//! ignored; a field of the wrong type makes the whole answer invalid
//! (the last good snapshot stays).

use std::collections::BTreeMap;

use serde::Deserialize;

use phoenix_processors::processors::k8s::{ContainerMeta, Owner, PodMeta};

/// At most this many pods in one answer (a node runs 110 by default and
/// rarely more than a few hundred).
pub const MAX_PODS: usize = 5000;
/// Container ids longer than this are not ids.
const MAX_CONTAINER_ID: usize = 128;

#[derive(Debug, Deserialize)]
struct PodList {
    #[serde(default)]
    kind: String,
    #[serde(default)]
    items: Option<Vec<Pod>>,
}

#[derive(Debug, Deserialize)]
struct Pod {
    #[serde(default)]
    metadata: ObjectMeta,
    #[serde(default)]
    spec: Option<PodSpec>,
    #[serde(default)]
    status: Option<PodStatus>,
}

#[derive(Debug, Default, Deserialize)]
struct ObjectMeta {
    #[serde(default)]
    name: String,
    #[serde(default)]
    namespace: String,
    #[serde(default)]
    uid: String,
    #[serde(default)]
    labels: Option<BTreeMap<String, String>>,
    #[serde(default)]
    annotations: Option<BTreeMap<String, String>>,
    #[serde(default, rename = "ownerReferences")]
    owner_references: Option<Vec<OwnerReference>>,
}

#[derive(Debug, Deserialize)]
struct OwnerReference {
    #[serde(default)]
    kind: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    controller: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
struct PodSpec {
    #[serde(default, rename = "nodeName")]
    node_name: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct PodStatus {
    #[serde(default, rename = "containerStatuses")]
    container_statuses: Option<Vec<ContainerStatus>>,
    #[serde(default, rename = "initContainerStatuses")]
    init_container_statuses: Option<Vec<ContainerStatus>>,
    #[serde(default, rename = "ephemeralContainerStatuses")]
    ephemeral_container_statuses: Option<Vec<ContainerStatus>>,
}

#[derive(Debug, Deserialize)]
struct ContainerStatus {
    #[serde(default)]
    name: String,
    #[serde(default, rename = "containerID")]
    container_id: Option<String>,
}

/// `containerd://<id>`, `cri-o://<id>`, `docker://<id>` → `<id>`, lower
/// case as the cgroup path has it; None for anything that is not an id.
pub fn container_id(text: &str) -> Option<String> {
    let (_, id) = text.split_once("://")?;
    (!id.is_empty()
        && id.len() <= MAX_CONTAINER_ID
        && id.bytes().all(|b| b.is_ascii_alphanumeric()))
    .then(|| id.to_ascii_lowercase())
}

/// Parse a PodList answer, keeping the pods scheduled on `node` (the field
/// selector asked for just those; a server that sends others is not
/// believed).
pub fn parse_pod_list(body: &[u8], node: &str) -> Result<Vec<PodMeta>, String> {
    let list: PodList = serde_json::from_slice(body).map_err(|e| format!("not a PodList: {e}"))?;
    if list.kind != "PodList" {
        return Err(format!(
            "not a PodList (kind {:?})",
            list.kind.chars().take(40).collect::<String>()
        ));
    }
    let items = list.items.unwrap_or_default();
    if items.len() > MAX_PODS {
        return Err(format!("{} pods, more than {MAX_PODS}", items.len()));
    }
    Ok(items
        .into_iter()
        .filter(|p| p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(node))
        .map(|p| pod_meta(p, node))
        .collect())
}

fn pod_meta(pod: Pod, node: &str) -> PodMeta {
    let meta = pod.metadata;
    let owner = meta
        .owner_references
        .unwrap_or_default()
        .into_iter()
        .find(|o| o.controller == Some(true))
        .map(|o| Owner {
            kind: o.kind,
            name: o.name,
        });
    let status = pod.status.unwrap_or_default();
    let containers = [
        status.container_statuses,
        status.init_container_statuses,
        status.ephemeral_container_statuses,
    ]
    .into_iter()
    .flatten()
    .flatten()
    .filter_map(|c| {
        let id = container_id(c.container_id.as_deref()?)?;
        Some(ContainerMeta { name: c.name, id })
    })
    .collect();
    PodMeta {
        name: meta.name,
        namespace: meta.namespace,
        uid: meta.uid,
        node_name: node.to_owned(),
        labels: meta.labels.unwrap_or_default().into_iter().collect(),
        annotations: meta.annotations.unwrap_or_default().into_iter().collect(),
        owner,
        containers,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_ids_lose_their_runtime_scheme() {
        let id = "a".repeat(64);
        for scheme in ["containerd", "cri-o", "docker"] {
            assert_eq!(container_id(&format!("{scheme}://{id}")), Some(id.clone()));
        }
        assert_eq!(
            container_id(&format!("containerd://{}", "AB".repeat(32))),
            Some("ab".repeat(32))
        );
        for bad in [
            "",
            "containerd://",
            "abc",
            "docker://../etc",
            &format!("x://{}", "a".repeat(200)),
        ] {
            assert_eq!(container_id(bad), None, "{bad}");
        }
    }

    #[test]
    fn answers_that_are_no_pod_list_are_refused() {
        for body in [
            &b"<html>"[..],
            br#"{"kind":"Status","status":"Failure"}"#,
            br#"{"kind":"PodList","items":[{"metadata":{"labels":7}}]}"#,
            b"[]",
        ] {
            assert!(
                parse_pod_list(body, "n").is_err(),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
        assert_eq!(
            parse_pod_list(br#"{"kind":"PodList","items":null}"#, "n"),
            Ok(vec![])
        );
    }
}
