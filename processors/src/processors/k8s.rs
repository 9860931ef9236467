//! `k8sattributes`: add the pod, namespace, container and workload of a
//! process's container to its resource, looked up by `container.id`.
//!
//! ```yaml
//! k8sattributes:
//!   auth_type: serviceAccount      # or none (tests, a proxy without auth)
//!   # endpoint: https://10.0.0.1:443   # default: KUBERNETES_SERVICE_HOST/PORT
//!   node_from_env_var: K8S_NODE_NAME  # or node_name: worker-1
//!   refresh_interval: 60s
//!   extract:
//!     metadata: [k8s.pod.name, k8s.namespace.name, k8s.deployment.name]
//!     labels: [{ key: app.kubernetes.io/name, tag_name: app }]
//!     annotations: [{ key: team }]   # k8s.pod.annotation.team
//! ```
//!
//! This crate does no I/O: the agent fetches the node's pods in a
//! background task, turns them into [`PodMeta`]s, builds a [`PodIndex`]
//! with [`PodIndex::build`] and publishes it in the shared
//! [`PodMetadata`]. The processor only reads the published snapshot (one
//! `Arc` clone per interval) and asks for an early refresh when it meets a
//! container id the snapshot does not know. A resource without
//! `container.id`, or with one no pod claims (a container outside
//! Kubernetes, a pod newer than the snapshot), passes unchanged.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use serde::{Deserialize, Deserializer};

use crate::hash::IdMap;
use crate::model::{Attributes, Batch, Interner, KeyValue, Str, Value};
use crate::problem::Problem;
use crate::processor::Processor;
use crate::semconv;

/// How the agent authenticates to the API server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
pub enum AuthType {
    /// The pod's service-account token and CA
    /// (`/var/run/secrets/kubernetes.io/serviceaccount/`).
    #[default]
    #[serde(rename = "serviceAccount")]
    ServiceAccount,
    /// No credentials (tests, or an authenticating proxy on localhost).
    #[serde(rename = "none")]
    None,
}

/// A label or annotation to copy, and the attribute it becomes.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FieldExtract {
    pub key: String,
    /// Default `k8s.pod.label.<key>` / `k8s.pod.annotation.<key>`.
    #[serde(default)]
    pub tag_name: Option<String>,
}

/// What to put on the resource.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Extract {
    /// Attribute names out of [`METADATA`]; default all of them.
    #[serde(default = "default_metadata")]
    pub metadata: Vec<String>,
    #[serde(default)]
    pub labels: Vec<FieldExtract>,
    #[serde(default)]
    pub annotations: Vec<FieldExtract>,
}

impl Default for Extract {
    fn default() -> Self {
        Extract {
            metadata: default_metadata(),
            labels: Vec::new(),
            annotations: Vec::new(),
        }
    }
}

/// Every attribute `extract.metadata` may name.
pub const METADATA: &[&str] = &[
    semconv::K8S_POD_NAME,
    semconv::K8S_POD_UID,
    semconv::K8S_NAMESPACE_NAME,
    semconv::K8S_CONTAINER_NAME,
    semconv::K8S_NODE_NAME,
    semconv::K8S_DEPLOYMENT_NAME,
    semconv::K8S_REPLICASET_NAME,
    semconv::K8S_STATEFULSET_NAME,
    semconv::K8S_DAEMONSET_NAME,
    semconv::K8S_JOB_NAME,
    semconv::K8S_CRONJOB_NAME,
];

fn default_metadata() -> Vec<String> {
    METADATA.iter().map(|s| s.to_string()).collect()
}

/// The variable the DaemonSet sets from `spec.nodeName` (downward API).
pub const DEFAULT_NODE_ENV: &str = "K8S_NODE_NAME";

fn default_node_env() -> String {
    DEFAULT_NODE_ENV.to_owned()
}

fn default_refresh() -> Duration {
    Duration::from_secs(60)
}

/// A duration as the other processors write them (`30s`, `1m`, `1h30m`).
fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    crate::units::opt_duration(d)?
        .ok_or_else(|| serde::de::Error::custom("a duration is required (e.g. 60s)"))
}

/// Shortest periodic refresh: each one lists every pod of the node.
pub const MIN_REFRESH: Duration = Duration::from_secs(5);
/// At most this many labels plus annotations copied.
const MAX_FIELDS: usize = 64;

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct K8sAttributesConfig {
    #[serde(default)]
    pub auth_type: AuthType,
    /// The API server (`https://host:port`); default from
    /// `KUBERNETES_SERVICE_HOST` and `KUBERNETES_SERVICE_PORT`.
    #[serde(default)]
    pub endpoint: Option<String>,
    /// The node whose pods to list; when absent, read from `node_from_env_var`.
    #[serde(default)]
    pub node_name: Option<String>,
    #[serde(default = "default_node_env")]
    pub node_from_env_var: String,
    /// How often the node's pods are listed (a container id the snapshot
    /// does not know also asks for a refresh, at most one per 5 s).
    #[serde(default = "default_refresh", deserialize_with = "duration")]
    pub refresh_interval: Duration,
    #[serde(default)]
    pub extract: Extract,
}

impl Default for K8sAttributesConfig {
    fn default() -> Self {
        K8sAttributesConfig {
            auth_type: AuthType::default(),
            endpoint: None,
            node_name: None,
            node_from_env_var: default_node_env(),
            refresh_interval: default_refresh(),
            extract: Extract::default(),
        }
    }
}

fn is_env_name(name: &str) -> bool {
    !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

impl K8sAttributesConfig {
    pub fn validate(&self) -> Vec<Problem> {
        let mut problems = Vec::new();
        if let Some(endpoint) = &self.endpoint {
            let lower = endpoint.to_ascii_lowercase();
            let rest = lower
                .strip_prefix("https://")
                .or_else(|| lower.strip_prefix("http://"));
            match rest {
                Some(host) if !host.is_empty() && !host.starts_with('/') => {
                    if self.auth_type == AuthType::ServiceAccount && lower.starts_with("http://") {
                        problems.push(Problem::new(
                            "endpoint",
                            "auth_type serviceAccount needs https:// (the token must not travel in plain text)",
                        ));
                    }
                }
                _ => problems.push(Problem::new(
                    "endpoint",
                    format!("{endpoint:?} is not an http:// or https:// URL with a host"),
                )),
            }
        }
        if self
            .node_name
            .as_deref()
            .is_some_and(|n| n.trim().is_empty())
        {
            problems.push(Problem::sentence("node_name", "is empty"));
        }
        if !is_env_name(&self.node_from_env_var) {
            problems.push(Problem::new(
                "node_from_env_var",
                format!(
                    "{:?} is not an environment variable name",
                    self.node_from_env_var
                ),
            ));
        }
        if self.refresh_interval < MIN_REFRESH {
            problems.push(Problem::sentence(
                "refresh_interval",
                format!(
                    "must be at least {}s (got {:?})",
                    MIN_REFRESH.as_secs(),
                    self.refresh_interval
                ),
            ));
        }
        for (i, name) in self.extract.metadata.iter().enumerate() {
            if !METADATA.contains(&name.as_str()) {
                problems.push(Problem::new(
                    format!("extract.metadata[{i}]"),
                    format!(
                        "unknown attribute {name:?} (known: {})",
                        METADATA.join(", ")
                    ),
                ));
            }
        }
        let fields = self.extract.labels.len() + self.extract.annotations.len();
        if fields > MAX_FIELDS {
            problems.push(Problem::new(
                "extract",
                format!("at most {MAX_FIELDS} labels and annotations (got {fields})"),
            ));
        }
        let mut tags = HashSet::new();
        for (section, list, prefix) in [
            (
                "labels",
                &self.extract.labels,
                semconv::K8S_POD_LABEL_PREFIX,
            ),
            (
                "annotations",
                &self.extract.annotations,
                semconv::K8S_POD_ANNOTATION_PREFIX,
            ),
        ] {
            for (i, f) in list.iter().enumerate() {
                if f.key.is_empty() {
                    problems.push(Problem::sentence(
                        format!("extract.{section}[{i}].key"),
                        "is empty",
                    ));
                }
                if f.tag_name.as_deref() == Some("") {
                    problems.push(Problem::sentence(
                        format!("extract.{section}[{i}].tag_name"),
                        "is empty",
                    ));
                }
                let tag = tag_name(f, prefix);
                if tag.starts_with("phoenix.") || METADATA.contains(&tag.as_str()) {
                    problems.push(Problem::new(
                        format!("extract.{section}[{i}].tag_name"),
                        format!("{tag:?} is reserved"),
                    ));
                } else if !tags.insert(tag.clone()) {
                    problems.push(Problem::new(
                        format!("extract.{section}[{i}]"),
                        format!("attribute {tag:?} is extracted twice"),
                    ));
                }
            }
        }
        problems
    }
}

fn tag_name(f: &FieldExtract, prefix: &str) -> String {
    f.tag_name
        .clone()
        .unwrap_or_else(|| format!("{prefix}{}", f.key))
}

/// The controlling owner of a pod, as its `ownerReferences` say.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Owner {
    pub kind: String,
    pub name: String,
}

/// One container of a pod and its runtime id (64 hex digits, without the
/// `containerd://` scheme).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ContainerMeta {
    pub name: String,
    pub id: String,
}

/// What the agent read about one pod.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PodMeta {
    pub name: String,
    pub namespace: String,
    pub uid: String,
    pub node_name: String,
    pub labels: Vec<(String, String)>,
    pub annotations: Vec<(String, String)>,
    pub owner: Option<Owner>,
    pub containers: Vec<ContainerMeta>,
}

/// The label the ReplicaSet controller puts on its pods, whose value its
/// name ends with (`<deployment>-<hash>`).
const POD_TEMPLATE_HASH: &str = "pod-template-hash";

/// The workload names a pod's owner implies: (attribute, name) pairs.
///
/// A ReplicaSet `web-7d9c5b` whose pods carry `pod-template-hash: 7d9c5b`
/// belongs to the Deployment `web`; without that label (a ReplicaSet made
/// by hand) only the ReplicaSet is named. A Job `backup-29300160` (a dash
/// and at least eight digits: the CronJob controller names its jobs after
/// the scheduled minute since the epoch) belongs to the CronJob `backup`.
/// Both are heuristics: reading the ReplicaSet or Job itself would need
/// more RBAC than `pods` get/list.
pub fn workload(pod: &PodMeta) -> Vec<(&'static str, &str)> {
    let Some(owner) = &pod.owner else {
        return Vec::new();
    };
    let name = owner.name.as_str();
    match owner.kind.as_str() {
        "ReplicaSet" => {
            let mut out = vec![(semconv::K8S_REPLICASET_NAME, name)];
            let hash = pod
                .labels
                .iter()
                .find(|(k, _)| k == POD_TEMPLATE_HASH)
                .map(|(_, v)| v.as_str());
            if let Some(deployment) = hash
                .filter(|h| !h.is_empty())
                .and_then(|h| name.strip_suffix(h))
                .and_then(|n| n.strip_suffix('-'))
                .filter(|n| !n.is_empty())
            {
                out.push((semconv::K8S_DEPLOYMENT_NAME, deployment));
            }
            out
        }
        "StatefulSet" => vec![(semconv::K8S_STATEFULSET_NAME, name)],
        "DaemonSet" => vec![(semconv::K8S_DAEMONSET_NAME, name)],
        "Job" => {
            let mut out = vec![(semconv::K8S_JOB_NAME, name)];
            if let Some((cronjob, digits)) = name.rsplit_once('-')
                && !cronjob.is_empty()
                && digits.len() >= 8
                && digits.bytes().all(|b| b.is_ascii_digit())
            {
                out.push((semconv::K8S_CRONJOB_NAME, cronjob));
            }
            out
        }
        _ => Vec::new(),
    }
}

/// The config's `extract`, ready to apply.
#[derive(Debug, Clone)]
pub struct Extraction {
    metadata: Vec<&'static str>,
    labels: Vec<(String, String)>,
    annotations: Vec<(String, String)>,
}

impl Extraction {
    pub fn new(extract: &Extract) -> Extraction {
        let rules = |list: &[FieldExtract], prefix: &str| {
            list.iter()
                .map(|f| (f.key.clone(), tag_name(f, prefix)))
                .collect()
        };
        Extraction {
            metadata: METADATA
                .iter()
                .copied()
                .filter(|m| extract.metadata.iter().any(|e| e == m))
                .collect(),
            labels: rules(&extract.labels, semconv::K8S_POD_LABEL_PREFIX),
            annotations: rules(&extract.annotations, semconv::K8S_POD_ANNOTATION_PREFIX),
        }
    }
}

/// One published snapshot: container id → the attributes its resource gets.
#[derive(Debug, Default)]
pub struct PodIndex {
    by_container: HashMap<Str, Arc<[KeyValue]>>,
    pods: usize,
}

impl PodIndex {
    /// Index `pods` by container id. Containers without an id (not started
    /// yet) are skipped; strings repeated across pods (namespace, node,
    /// keys) are shared.
    pub fn build(pods: &[PodMeta], extraction: &Extraction) -> PodIndex {
        let mut interner = Interner::new();
        let mut by_container = HashMap::new();
        for pod in pods {
            let workload = workload(pod);
            let mut shared: Vec<KeyValue> = Vec::new();
            let mut container_name_wanted = false;
            for &m in &extraction.metadata {
                let value = match m {
                    semconv::K8S_POD_NAME => Some(pod.name.as_str()),
                    semconv::K8S_POD_UID => Some(pod.uid.as_str()),
                    semconv::K8S_NAMESPACE_NAME => Some(pod.namespace.as_str()),
                    semconv::K8S_NODE_NAME => Some(pod.node_name.as_str()),
                    semconv::K8S_CONTAINER_NAME => {
                        container_name_wanted = true;
                        None
                    }
                    other => workload.iter().find(|(k, _)| *k == other).map(|(_, v)| *v),
                };
                if let Some(v) = value.filter(|v| !v.is_empty()) {
                    shared.push(KeyValue::new(
                        interner.intern(m),
                        Value::Str(interner.intern(v)),
                    ));
                }
            }
            for (rules, fields) in [
                (&extraction.labels, &pod.labels),
                (&extraction.annotations, &pod.annotations),
            ] {
                for (key, tag) in rules {
                    if let Some((_, v)) = fields.iter().find(|(k, _)| k == key) {
                        shared.push(KeyValue::new(
                            interner.intern(tag),
                            Value::Str(interner.intern(v)),
                        ));
                    }
                }
            }
            for c in pod.containers.iter().filter(|c| !c.id.is_empty()) {
                let mut attrs = shared.clone();
                if container_name_wanted && !c.name.is_empty() {
                    attrs.push(KeyValue::new(
                        interner.intern(semconv::K8S_CONTAINER_NAME),
                        Value::Str(interner.intern(&c.name)),
                    ));
                }
                by_container.insert(Str::from(c.id.as_str()), Arc::from(attrs));
            }
        }
        PodIndex {
            by_container,
            pods: pods.len(),
        }
    }

    /// The attributes for a container id.
    pub fn get(&self, container_id: &str) -> Option<&Arc<[KeyValue]>> {
        self.by_container.get(container_id)
    }

    pub fn pods(&self) -> usize {
        self.pods
    }

    pub fn containers(&self) -> usize {
        self.by_container.len()
    }
}

/// The snapshot the agent's background task publishes and every
/// `k8sattributes` processor of the same config reads.
pub struct PodMetadata {
    snapshot: RwLock<Arc<PodIndex>>,
    /// Called (from a scrape) when a processor meets an unknown container
    /// id; must not block (the agent wakes its refresh task).
    on_miss: Box<dyn Fn() + Send + Sync>,
}

impl std::fmt::Debug for PodMetadata {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PodMetadata")
            .field("snapshot", &self.current())
            .finish_non_exhaustive()
    }
}

impl PodMetadata {
    pub fn new(on_miss: impl Fn() + Send + Sync + 'static) -> PodMetadata {
        PodMetadata {
            snapshot: RwLock::new(Arc::new(PodIndex::default())),
            on_miss: Box::new(on_miss),
        }
    }

    /// The last published snapshot. The lock is only ever held for an
    /// `Arc` clone or swap, so a scrape never waits on a refresh.
    pub fn current(&self) -> Arc<PodIndex> {
        self.snapshot
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn publish(&self, index: PodIndex) {
        let index = Arc::new(index);
        let old = std::mem::replace(
            &mut *self.snapshot.write().unwrap_or_else(|e| e.into_inner()),
            index,
        );
        // The old snapshot is freed here, outside the lock.
        drop(old);
    }

    fn request_refresh(&self) {
        (self.on_miss)();
    }
}

/// Unknown container ids remembered (each asks for one refresh); beyond
/// this many the memory is forgotten, not grown.
const MAX_REPORTED: usize = 4096;

/// What one process's resource became last time: reused while the process
/// keeps its attribute set and its pod entry is the same (until a refresh
/// publishes a new one), so a steady process costs no allocation.
#[derive(Debug)]
struct Enriched {
    input: Attributes,
    pod: Arc<[KeyValue]>,
    output: Attributes,
    generation: u64,
}

/// The `k8sattributes` processor.
#[derive(Debug)]
pub struct K8sAttributes {
    source: Arc<PodMetadata>,
    /// By process identity.
    cache: IdMap<Enriched>,
    generation: u64,
    /// Container ids already reported as unknown: each asks for a refresh
    /// once, so a container Kubernetes does not know (run by hand with
    /// the runtime) does not cause a refresh every few seconds.
    reported: HashSet<Str>,
}

impl K8sAttributes {
    pub fn new(config: &K8sAttributesConfig, source: Arc<PodMetadata>) -> Result<Self, String> {
        super::into_result(
            K8sAttributes {
                source,
                cache: IdMap::default(),
                generation: 0,
                reported: HashSet::new(),
            },
            config.validate(),
        )
    }
}

impl Processor for K8sAttributes {
    fn process(&mut self, batch: &mut Batch) {
        let index = self.source.current();
        self.generation += 1;
        let generation = self.generation;
        let mut missed = false;
        for resource in &mut batch.resources {
            let Some(Value::Str(id)) = resource.attributes.get(semconv::CONTAINER_ID) else {
                continue;
            };
            match index.get(id) {
                Some(extra) => {
                    let Some(identity) = resource.identity else {
                        resource.attributes = resource.attributes.with_all(extra);
                        continue;
                    };
                    let reusable = self.cache.get_mut(&identity).filter(|e| {
                        e.input.same(&resource.attributes) && Arc::ptr_eq(&e.pod, extra)
                    });
                    let output = match reusable {
                        Some(e) => {
                            e.generation = generation;
                            e.output.clone()
                        }
                        None => {
                            let output = resource.attributes.with_all(extra);
                            self.cache.insert(
                                identity,
                                Enriched {
                                    input: resource.attributes.clone(),
                                    pod: extra.clone(),
                                    output: output.clone(),
                                    generation,
                                },
                            );
                            output
                        }
                    };
                    resource.attributes = output;
                }
                None => {
                    if !self.reported.contains(&**id) {
                        if self.reported.len() >= MAX_REPORTED {
                            self.reported.clear();
                        }
                        self.reported.insert(id.clone());
                        missed = true;
                    }
                }
            }
        }
        if missed {
            self.source.request_refresh();
        }
        if self.cache.len() > 2 * batch.resources.len() + 64 {
            self.cache.retain(|_, e| e.generation == generation);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::model::{Attributes, Resource};

    fn pod(name: &str, owner: Option<(&str, &str)>, containers: &[(&str, &str)]) -> PodMeta {
        PodMeta {
            name: name.into(),
            namespace: "shop".into(),
            uid: format!("uid-{name}"),
            node_name: "worker-1".into(),
            labels: vec![
                ("pod-template-hash".into(), "7d9c5b".into()),
                ("app".into(), "web".into()),
            ],
            annotations: vec![("team".into(), "payments".into())],
            owner: owner.map(|(kind, name)| Owner {
                kind: kind.into(),
                name: name.into(),
            }),
            containers: containers
                .iter()
                .map(|(n, id)| ContainerMeta {
                    name: n.to_string(),
                    id: id.to_string(),
                })
                .collect(),
        }
    }

    fn names(pod: &PodMeta) -> Vec<(&'static str, &str)> {
        workload(pod)
    }

    #[test]
    fn owners_name_their_workloads() {
        let rs = pod("web-7d9c5b-x2", Some(("ReplicaSet", "web-7d9c5b")), &[]);
        assert_eq!(
            names(&rs),
            [
                (semconv::K8S_REPLICASET_NAME, "web-7d9c5b"),
                (semconv::K8S_DEPLOYMENT_NAME, "web")
            ]
        );
        let mut bare = rs.clone();
        bare.labels.clear();
        assert_eq!(names(&bare), [(semconv::K8S_REPLICASET_NAME, "web-7d9c5b")]);
        let job = pod("backup-29300160-q", Some(("Job", "backup-29300160")), &[]);
        assert_eq!(
            names(&job),
            [
                (semconv::K8S_JOB_NAME, "backup-29300160"),
                (semconv::K8S_CRONJOB_NAME, "backup")
            ]
        );
        let manual = pod("migrate-2-q", Some(("Job", "migrate-2")), &[]);
        assert_eq!(names(&manual), [(semconv::K8S_JOB_NAME, "migrate-2")]);
        for (kind, key) in [
            ("StatefulSet", semconv::K8S_STATEFULSET_NAME),
            ("DaemonSet", semconv::K8S_DAEMONSET_NAME),
        ] {
            assert_eq!(names(&pod("p", Some((kind, "db")), &[])), [(key, "db")]);
        }
        assert!(names(&pod("p", Some(("Node", "worker-1")), &[])).is_empty());
        assert!(names(&pod("p", None, &[])).is_empty());
    }

    fn id(n: u8) -> String {
        format!("{n:02x}").repeat(32)
    }

    fn resource(identity: u64, container: Option<&str>) -> Resource {
        let mut attrs = vec![KeyValue::new(
            semconv::PROCESS_EXECUTABLE_NAME.into(),
            Value::Str("nginx".into()),
        )];
        if let Some(c) = container {
            attrs.push(KeyValue::new(
                semconv::CONTAINER_ID.into(),
                Value::Str(c.into()),
            ));
        }
        Resource {
            attributes: Attributes::new(attrs),
            metrics: Vec::new(),
            identity: Some(identity),
        }
    }

    fn config(yaml: &str) -> K8sAttributesConfig {
        serde_norway::from_str(yaml).expect("test YAML")
    }

    #[test]
    fn resources_get_the_attributes_of_their_pod_and_the_rest_pass_unchanged() {
        let misses = Arc::new(AtomicUsize::new(0));
        let counted = misses.clone();
        let source = Arc::new(PodMetadata::new(move || {
            counted.fetch_add(1, Ordering::Relaxed);
        }));
        let c = config(
            "extract: { labels: [{ key: app }, { key: missing }], annotations: [{ key: team, tag_name: team }] }",
        );
        let pods = [pod(
            "web-7d9c5b-x2",
            Some(("ReplicaSet", "web-7d9c5b")),
            &[("nginx", &id(1)), ("sidecar", &id(2)), ("pending", "")],
        )];
        source.publish(PodIndex::build(&pods, &Extraction::new(&c.extract)));
        let mut p = K8sAttributes::new(&c, source.clone()).expect("valid");
        let mut batch = Batch {
            resources: vec![
                resource(1, Some(&id(1))),
                resource(2, Some(&id(2))),
                resource(3, Some(&id(9))),
                resource(4, None),
            ],
            ..Batch::default()
        };
        let before = batch.clone();
        p.process(&mut batch);
        let a = &batch.resources[0].attributes;
        for (k, v) in [
            (semconv::K8S_POD_NAME, "web-7d9c5b-x2"),
            (semconv::K8S_POD_UID, "uid-web-7d9c5b-x2"),
            (semconv::K8S_NAMESPACE_NAME, "shop"),
            (semconv::K8S_NODE_NAME, "worker-1"),
            (semconv::K8S_CONTAINER_NAME, "nginx"),
            (semconv::K8S_REPLICASET_NAME, "web-7d9c5b"),
            (semconv::K8S_DEPLOYMENT_NAME, "web"),
            ("k8s.pod.label.app", "web"),
            ("team", "payments"),
            (semconv::PROCESS_EXECUTABLE_NAME, "nginx"),
        ] {
            assert_eq!(a.get_str(k), Some(v), "{k} in {a:?}");
        }
        assert_eq!(a.get("k8s.pod.label.missing"), None);
        assert_eq!(a.get(semconv::K8S_JOB_NAME), None);
        assert_eq!(
            batch.resources[1]
                .attributes
                .get_str(semconv::K8S_CONTAINER_NAME),
            Some("sidecar")
        );
        // A steady process gets the very same set next interval: no allocation.
        let mut next = before.clone();
        p.process(&mut next);
        assert!(
            next.resources[0]
                .attributes
                .same(&batch.resources[0].attributes)
        );
        // A refresh that changes the pod (a label edited) is followed.
        let mut relabelled = pods.clone();
        relabelled[0].labels[1].1 = "shop".into();
        source.publish(PodIndex::build(&relabelled, &Extraction::new(&c.extract)));
        let mut after = before.clone();
        p.process(&mut after);
        assert_eq!(
            after.resources[0].attributes.get_str("k8s.pod.label.app"),
            Some("shop")
        );
        source.publish(PodIndex::build(&pods, &Extraction::new(&c.extract)));
        // Unknown container id and no container id: left alone.
        assert_eq!(batch.resources[2], before.resources[2]);
        assert_eq!(batch.resources[3], before.resources[3]);
        assert_eq!(misses.load(Ordering::Relaxed), 1, "one refresh asked");

        // The same unknown id again does not ask again; a new one does.
        p.process(&mut before.clone());
        assert_eq!(misses.load(Ordering::Relaxed), 1);
        let mut other = Batch {
            resources: vec![resource(5, Some(&id(8)))],
            ..Batch::default()
        };
        p.process(&mut other);
        assert_eq!(misses.load(Ordering::Relaxed), 2);
    }

    #[test]
    fn only_the_metadata_asked_for_is_added() {
        let c = config("extract: { metadata: [k8s.namespace.name, k8s.pod.name] }");
        let pods = [pod("db-0", Some(("StatefulSet", "db")), &[("pg", &id(3))])];
        let index = PodIndex::build(&pods, &Extraction::new(&c.extract));
        let attrs = index.get(&id(3)).expect("indexed");
        let keys: Vec<&str> = attrs.iter().map(|kv| &*kv.key).collect();
        assert_eq!(keys, [semconv::K8S_POD_NAME, semconv::K8S_NAMESPACE_NAME]);
        assert_eq!((index.pods(), index.containers()), (1, 1));
    }

    #[test]
    fn every_problem_names_its_field() {
        let fields = |yaml: &str| -> Vec<String> {
            config(yaml)
                .validate()
                .into_iter()
                .map(|p| p.field)
                .collect()
        };
        assert!(fields("{}").is_empty());
        assert_eq!(
            fields(
                "{ endpoint: 'http://api:6443', node_name: ' ', node_from_env_var: 'A-B', refresh_interval: 1s }"
            ),
            [
                "endpoint",
                "node_name",
                "node_from_env_var",
                "refresh_interval"
            ]
        );
        assert!(fields("{ auth_type: none, endpoint: 'http://127.0.0.1:1' }").is_empty());
        assert_eq!(fields("{ endpoint: 'ftp://x' }"), ["endpoint"]);
        assert_eq!(
            config("refresh_interval: 1h30m").refresh_interval.as_secs(),
            5400
        );
        assert!(serde_norway::from_str::<K8sAttributesConfig>("refresh_interval: 60").is_err());
        assert_eq!(
            fields(
                "extract: { metadata: [k8s.pod.nope], labels: [{ key: '' }, { key: a, tag_name: t }], annotations: [{ key: b, tag_name: t }, { key: c, tag_name: k8s.pod.name }] }"
            ),
            [
                "extract.metadata[0]",
                "extract.labels[0].key",
                "extract.annotations[0]",
                "extract.annotations[1].tag_name"
            ]
        );
    }
}
