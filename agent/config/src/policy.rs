//! What a remote config may do on this node.
//!
//! The agent runs as root in the host's PID namespace, and a remote config
//! (pushed by a controller, sent in a `POST /-/reload` body, or kept in
//! `--state-dir` from one of those) can replace its config at any moment.
//! The node's own `--config` file sets, under `service.remote_config`, what
//! such a config may do: where its `file` exporters may write, which
//! environment variables it may read, where it may send OTLP, whether it
//! may move `procfs.root_path`, and which CA files it may name. A remote
//! config can never change `service.telemetry` or the policy itself.
//!
//! The same rules run in two places: the agent enforces them on every
//! remote config, and the controller checks a push against the policy each
//! target agent reported, before anything is stored. The controller knows
//! no environment, so it checks names and literal values only.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use phoenix_processors::processors::k8s::DEFAULT_NODE_ENV;
use phoenix_processors::{Problem, ProcessorConfig};

use crate::exporter::ExporterConfig;
use crate::exporter::file::{FileConfig, FileTarget, REFUSED_DIRS, lexically_absolute};
use crate::receiver::ReceiverConfig;
use crate::{AgentConfig, ComponentId};

/// The variables a remote config may read when the local config does not
/// say: what the shipped templates use (the node's name, where the host's
/// `/` is mounted, where to send OTLP). Secrets such as tokens stay out.
pub const DEFAULT_ENV: &[&str] = &["NODE_NAME", "PHOENIX_ROOT_PATH", "OTLP_ENDPOINT"];

/// `service.remote_config` of the local config.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RemotePolicy {
    /// Directories under which a remote config's `file` exporters may
    /// write (relative ones are relative to the agent's working directory).
    /// Default: none, so a remote config cannot write files.
    pub file_export_dirs: Vec<PathBuf>,
    /// Environment variables a remote config may reference with
    /// `${env:NAME}`. Default: [`DEFAULT_ENV`].
    pub env: Vec<String>,
    /// OTLP endpoints a remote config may send to (`host:port`, or a URL
    /// whose scheme must match too). Default: empty, meaning any.
    pub otlp_endpoints: Vec<String>,
    /// Whether a remote config may set `procfs.root_path` to anything else
    /// than the local config's. Default: false.
    pub allow_root_path: bool,
    /// CA files a remote config's exporters may name (`tls.ca_file`).
    /// Default: none.
    pub ca_files: Vec<PathBuf>,
}

impl Default for RemotePolicy {
    fn default() -> Self {
        RemotePolicy {
            file_export_dirs: Vec::new(),
            env: DEFAULT_ENV.iter().map(|s| s.to_string()).collect(),
            otlp_endpoints: Vec::new(),
            allow_root_path: false,
            ca_files: Vec::new(),
        }
    }
}

/// A breach of the policy: the component, the field inside it, and the
/// rule, named so an operator finds it in the local config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Breach {
    /// `exporters::file/x`, or None for the config as a whole.
    pub component: Option<String>,
    /// The YAML path from the section (`exporters`, `file/x`, `path`),
    /// used to locate the line.
    pub path: Vec<String>,
    pub message: String,
}

impl RemotePolicy {
    /// Every problem with the policy itself (as written in the local config).
    pub fn validate(&self) -> Vec<Problem> {
        let mut problems = Vec::new();
        for (i, name) in self.env.iter().enumerate() {
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                problems.push(Problem::new(
                    format!("env[{i}]"),
                    format!("{name:?} is not an environment variable name"),
                ));
            }
        }
        for (i, dir) in self.file_export_dirs.iter().enumerate() {
            if dir.as_os_str().is_empty() {
                problems.push(Problem::new(
                    format!("file_export_dirs[{i}]"),
                    "must not be empty",
                ));
            } else if under_kernel_tree(&normalise(dir)) {
                problems.push(Problem::new(
                    format!("file_export_dirs[{i}]"),
                    "must not be under /proc, /sys or /dev",
                ));
            }
        }
        for (i, e) in self.otlp_endpoints.iter().enumerate() {
            if Endpoint::parse(e).is_none() {
                problems.push(Problem::new(
                    format!("otlp_endpoints[{i}]"),
                    format!("{e:?} is not host:port or a URL with a host"),
                ));
            }
        }
        problems
    }

    /// Whether a remote config may read `${env:name}`.
    pub fn allows_env(&self, name: &str) -> bool {
        self.env.iter().any(|n| n == name)
    }

    /// Check a loaded remote config against this policy. `local_root_path`
    /// is the local config's `procfs.root_path` (None: not known, e.g. an
    /// agent that did not report it; then only an explicit
    /// `allow_root_path` lets a config set one).
    pub fn check(&self, config: &AgentConfig, local_root_path: Option<&Path>) -> Vec<Breach> {
        let mut breaches = Vec::new();
        for (id, receiver) in &config.receivers {
            let ReceiverConfig::Procfs(procfs) = receiver;
            let same =
                local_root_path.is_some_and(|l| normalise(l) == normalise(&procfs.root_path));
            if !self.allow_root_path && !same {
                breaches.push(breach(
                    "receivers",
                    id,
                    "root_path",
                    "policy allow_root_path: a remote config must keep the local procfs.root_path \
                     (set service.remote_config.allow_root_path in the local config to allow it)",
                ));
            }
        }
        for (id, processor) in &config.processors {
            let ProcessorConfig::K8sAttributes(k) = processor else {
                continue;
            };
            // The service-account token goes to the cluster's own API
            // server only, which the pod's environment names.
            if k.endpoint.is_some() {
                breaches.push(breach(
                    "processors",
                    id,
                    "endpoint",
                    "a remote config may not set the API server endpoint of k8sattributes \
                     (the agent asks the in-cluster API server, KUBERNETES_SERVICE_HOST)",
                ));
            }
            // The variable's value goes into the request: only names the
            // policy allows, or the node name the DaemonSet sets.
            if k.node_from_env_var != DEFAULT_NODE_ENV && !self.allows_env(&k.node_from_env_var) {
                breaches.push(breach(
                    "processors",
                    id,
                    "node_from_env_var",
                    format!(
                        "policy env: a remote config may read only {DEFAULT_NODE_ENV} or a variable \
                         of service.remote_config.env of the local config (not {})",
                        k.node_from_env_var
                    ),
                ));
            }
        }
        for (id, exporter) in &config.exporters {
            match exporter {
                ExporterConfig::File(file) => {
                    if !self.allows_file(file) {
                        let rule = if self.file_export_dirs.is_empty() {
                            "policy file_export_dirs: a remote config may not write files on this node \
                             (service.remote_config.file_export_dirs of the local config allows none)"
                                .to_string()
                        } else {
                            format!(
                                "policy file_export_dirs: a remote config may write files only under {} \
                                 (service.remote_config.file_export_dirs of the local config)",
                                self.dirs_text()
                            )
                        };
                        breaches.push(breach("exporters", id, "path", rule));
                    }
                }
                ExporterConfig::OtlpGrpc(c) => {
                    self.check_otlp(id, &c.endpoint, c.tls.ca_file.as_deref(), &mut breaches)
                }
                ExporterConfig::OtlpHttp(c) => {
                    self.check_otlp(id, &c.endpoint, c.tls.ca_file.as_deref(), &mut breaches)
                }
                ExporterConfig::Prometheus(_) | ExporterConfig::Console(_) => {}
            }
            // A disk queue writes files as root, so it obeys the same rule
            // as a file exporter.
            if let Some(dir) = exporter.queue_directory() {
                let dir = normalise(dir);
                if !self
                    .file_export_dirs
                    .iter()
                    .any(|d| dir.starts_with(normalise(d)))
                {
                    breaches.push(breach(
                        "exporters",
                        id,
                        "sending_queue.storage.directory",
                        format!(
                            "policy file_export_dirs: a remote config may keep a disk queue only under \
                             an allowed directory ({}; service.remote_config.file_export_dirs of the local config)",
                            if self.file_export_dirs.is_empty() { "none".to_string() } else { self.dirs_text() }
                        ),
                    ));
                }
            }
        }
        breaches
    }

    fn check_otlp(
        &self,
        id: &ComponentId,
        endpoint: &str,
        ca_file: Option<&Path>,
        breaches: &mut Vec<Breach>,
    ) {
        if !self.otlp_endpoints.is_empty() {
            let allowed = Endpoint::parse(endpoint)
                .is_some_and(|e| self.otlp_endpoints.iter().any(|a| e.matches(a)));
            if !allowed {
                breaches.push(breach(
                    "exporters",
                    id,
                    "endpoint",
                    format!(
                        "policy otlp_endpoints: a remote config may send only to {} \
                         (service.remote_config.otlp_endpoints of the local config)",
                        self.otlp_endpoints.join(", ")
                    ),
                ));
            }
        }
        if let Some(ca) = ca_file {
            let ca = normalise(ca);
            if !self.ca_files.iter().any(|a| normalise(a) == ca) {
                breaches.push(breach(
                    "exporters",
                    id,
                    "tls.ca_file",
                    "policy ca_files: this CA file is not in service.remote_config.ca_files of the local config",
                ));
            }
        }
    }

    /// Whether a remote config may use this file exporter: `/dev/null`
    /// (it writes nothing), or a file under an allowed directory.
    fn allows_file(&self, file: &FileConfig) -> bool {
        match file.target(&working_dir()) {
            Ok(FileTarget::Discard) => true,
            Ok(FileTarget::File(path)) => self
                .file_export_dirs
                .iter()
                .any(|dir| path.starts_with(normalise(dir)) && path != normalise(dir)),
            Err(_) => false,
        }
    }

    fn dirs_text(&self) -> String {
        self.file_export_dirs
            .iter()
            .map(|d| d.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

fn breach(section: &str, id: &ComponentId, field: &str, message: impl Into<String>) -> Breach {
    let key = id.to_string();
    let mut path = vec![section.to_string(), key.clone()];
    path.extend(field.split('.').map(str::to_string));
    Breach {
        component: Some(format!("{section}::{key}")),
        path,
        message: format!("{field}: {}", message.into()),
    }
}

/// `path` made absolute against the working directory, `.` and `..`
/// resolved by name: the policy compares what a path names, and `..` must
/// not climb out of an allowed directory. Symbolic links are the file
/// exporter's business: it refuses to follow any.
pub fn normalise(path: &Path) -> PathBuf {
    lexically_absolute(path, &working_dir())
}

fn working_dir() -> PathBuf {
    std::env::current_dir().unwrap_or_else(|_| PathBuf::from("/"))
}

/// Under `/proc`, `/sys` or `/dev`: never a place for an export file.
fn under_kernel_tree(normalised: &Path) -> bool {
    REFUSED_DIRS.iter().any(|top| normalised.starts_with(top))
}

/// An OTLP endpoint reduced to what the allow-list compares.
#[derive(Debug, PartialEq, Eq)]
struct Endpoint {
    scheme: Option<String>,
    host: String,
    port: Option<u16>,
}

impl Endpoint {
    fn parse(text: &str) -> Option<Endpoint> {
        let text = text.trim();
        if text.contains("://") {
            let url = url::Url::parse(text).ok()?;
            Some(Endpoint {
                scheme: Some(url.scheme().to_ascii_lowercase()),
                host: url.host_str()?.to_ascii_lowercase(),
                port: url.port_or_known_default(),
            })
        } else {
            let url = url::Url::parse(&format!("any://{text}")).ok()?;
            Some(Endpoint {
                scheme: None,
                host: url.host_str()?.to_ascii_lowercase(),
                port: url.port(),
            })
        }
    }

    /// Whether this endpoint is the allowed one: same host, the same port
    /// when the entry names one, the same scheme when the entry has one.
    fn matches(&self, allowed: &str) -> bool {
        let Some(allowed) = Endpoint::parse(allowed) else {
            return false;
        };
        allowed.host == self.host
            && (allowed.port.is_none() || allowed.port == self.port)
            && (allowed.scheme.is_none() || allowed.scheme == self.scheme)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_normalised_before_they_are_compared() {
        assert_eq!(
            normalise(Path::new("/var/lib/phoenix/../../../proc/1/root")),
            PathBuf::from("/proc/1/root")
        );
        let policy = RemotePolicy {
            file_export_dirs: vec!["/var/lib/phoenix/exports".into()],
            ..RemotePolicy::default()
        };
        let file = |path: &str| FileConfig {
            path: path.into(),
            rotation: None,
        };
        assert!(policy.allows_file(&file("/var/lib/phoenix/exports/a.jsonl")));
        assert!(policy.allows_file(&file("/dev/null")), "writes nothing");
        assert!(!policy.allows_file(&file("/var/lib/phoenix/exports/../x.jsonl")));
        assert!(!policy.allows_file(&file("/var/lib/phoenix/exports")));
        assert!(!policy.allows_file(&file("/var/lib/phoenix/exportsx/a")));
    }

    #[test]
    fn endpoints_match_host_then_port_and_scheme_when_named() {
        let e = Endpoint::parse("https://Collector.example:4317").unwrap();
        assert!(e.matches("collector.example"));
        assert!(e.matches("collector.example:4317"));
        assert!(e.matches("https://collector.example:4317"));
        assert!(!e.matches("http://collector.example:4317"));
        assert!(!e.matches("collector.example:4318"));
        assert!(!e.matches("evil.example:4317"));
        let default_port = Endpoint::parse("https://collector.example").unwrap();
        assert!(default_port.matches("collector.example:443"));
    }

    #[test]
    fn a_bad_policy_names_the_field() {
        let policy = RemotePolicy {
            env: vec!["OK_1".into(), "NOT-OK".into()],
            file_export_dirs: vec!["/sys/fs".into()],
            otlp_endpoints: vec!["://".into()],
            ..RemotePolicy::default()
        };
        let fields: Vec<String> = policy.validate().into_iter().map(|p| p.field).collect();
        assert_eq!(
            fields,
            ["env[1]", "file_export_dirs[0]", "otlp_endpoints[0]"]
        );
    }
}
