use super::*;

fn no_env(_: &str) -> Option<String> {
    None
}

fn load(text: &str) -> Result<AgentConfig, ConfigErrors> {
    AgentConfig::load_with_env(text, &no_env)
}

const MINIMAL: &str = "\
receivers:
  procfs:
    collection_interval: 5s
exporters:
  console:
service:
  pipelines:
    metrics/a:
      receivers: [procfs]
      exporters: [console]
";

#[test]
fn loads_a_minimal_config() {
    let c = load(MINIMAL).unwrap();
    let procfs = ComponentId::parse("procfs").unwrap();
    assert_eq!(
        c.receivers[&procfs].collection_interval(),
        std::time::Duration::from_secs(5)
    );
    let p = &c.pipelines[&ComponentId::parse("metrics/a").unwrap()];
    assert_eq!(p.mode, PipelineMode::Export);
    assert_eq!(p.exporters[0].to_string(), "console");
    assert_eq!(c.telemetry.address.port(), 8888);
}

#[test]
fn the_embedded_default_is_valid() {
    let c = AgentConfig::embedded_default();
    assert_eq!(c.pipelines.len(), 1);
    assert_eq!(c.exporters.len(), 2);
}

#[test]
fn reports_every_error_with_component_and_line() {
    let text = "\
receivers:
  procfs:
    colection_interval: 5s
exporters:
  console:
  kafka/x: {}
service:
  pipelines:
    metrics/a:
      receivers: [procfs]
      processors: [topk/nope]
      exporters: [console, file/missing]
";
    let errors = load(text).unwrap_err().0;
    let rendered: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
    let find = |needle: &str| {
        errors
            .iter()
            .find(|e| e.to_string().contains(needle))
            .unwrap_or_else(|| panic!("no error mentions {needle:?}: {rendered:#?}"))
    };
    let typo = find("colection_interval");
    assert_eq!(typo.component.as_deref(), Some("receivers::procfs"));
    assert_eq!(typo.location, Some((3, 5)));
    let kafka = find("unknown exporter type \"kafka\"");
    assert_eq!(kafka.location, Some((6, 3)));
    find("topk/nope");
    let missing = find("file/missing");
    assert_eq!(
        missing.component.as_deref(),
        Some("service::pipelines::metrics/a")
    );
    assert_eq!(missing.location, Some((12, 7)));
}

#[test]
fn yaml_syntax_errors_carry_their_location() {
    let errors = load("receivers:\n  procfs: [\n").unwrap_err().0;
    assert_eq!(errors.len(), 1);
    assert!(
        errors[0].message.starts_with("invalid YAML"),
        "{}",
        errors[0]
    );
    assert!(errors[0].location.is_some());
}

#[test]
fn env_substitution_fills_values_and_reports_unset_ones() {
    let text = MINIMAL.replace("5s", "${env:INTERVAL}");
    let env = |n: &str| (n == "INTERVAL").then(|| "7s".to_string());
    let c = AgentConfig::load_with_env(&text, &env).unwrap();
    assert_eq!(
        c.receivers[&ComponentId::parse("procfs").unwrap()].collection_interval(),
        std::time::Duration::from_secs(7)
    );
    let errors = load(&text).unwrap_err().0;
    assert!(
        errors
            .iter()
            .any(|e| e.message.contains("INTERVAL is not set")),
        "{errors:?}"
    );
}

#[test]
fn pipelines_need_receivers_and_exporters_unless_shadow() {
    let text = "\
receivers: { procfs: {} }
service:
  pipelines:
    metrics/a: { receivers: [procfs] }
    metrics/b: { receivers: [procfs], mode: shadow }
";
    let errors = load(text).unwrap_err().0;
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(errors[0].message.contains("needs at least one exporter"));
    assert_eq!(
        errors[0].component.as_deref(),
        Some("service::pipelines::metrics/a")
    );
}

#[test]
fn experiment_baseline_must_be_a_pipeline() {
    let text = format!(
        "{MINIMAL}experiment:\n  id: demo\n  baseline: metrics/nope\n  critical_processes: ['(']\n"
    );
    let errors = load(&text).unwrap_err().0;
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert!(errors.iter().any(|e| e.message.contains("metrics/nope")));
    assert!(errors.iter().any(|e| e.message.contains("invalid regex")));
    // Still refused, with the same words, now that a baseline is optional.
    let text = format!("{MINIMAL}experiment: {{ id: demo, baseline: metrics/nope }}\n");
    let errors = load(&text).unwrap_err().0;
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(
        errors[0].message,
        "baseline \"metrics/nope\" is not a pipeline under service.pipelines"
    );
}

#[test]
fn an_experiment_without_a_baseline_names_only_its_critical_processes() {
    let text =
        format!("{MINIMAL}experiment:\n  id: rollout-1\n  critical_processes: ['^postgres$']\n");
    let c = load(&text).unwrap();
    let e = c.experiment.expect("the experiment block");
    assert_eq!(e.id, "rollout-1");
    assert_eq!(e.baseline, None);
    assert_eq!(e.critical_processes, ["^postgres$"]);
    // The rest of the block is checked as before.
    let text = format!("{MINIMAL}experiment: {{ id: rollout-1, critical_processes: ['('] }}\n");
    let errors = load(&text).unwrap_err().0;
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(errors[0].message.contains("invalid regex"), "{errors:?}");
}

#[test]
fn unknown_sections_and_bad_ids_are_rejected() {
    let text = format!("{MINIMAL}extensions: {{}}\n");
    let errors = load(&text).unwrap_err().0;
    assert!(
        errors[0]
            .message
            .contains("unknown top-level key \"extensions\"")
    );
    let text = MINIMAL.replace("metrics/a", "traces/a");
    let errors = load(&text).unwrap_err().0;
    assert!(errors[0].message.contains("pipeline ids are metrics"));
}

#[test]
fn garbage_never_panics() {
    for text in [
        "",
        "- a\n- b",
        "receivers: 3",
        "service: {pipelines: 4}",
        "\u{0}\u{1}",
        "{{{{",
        "receivers: {procfs: {metrics: 7}}",
    ] {
        let _ = load(text);
    }
}

#[test]
fn bad_processor_configs_are_rejected_naming_the_component() {
    let text = "\
receivers: { procfs: {} }
processors:
  topk/zero: { k: 0 }
  priority: { critical: ['(unclosed'] }
  topk/unknown: { k: 3, by: process.happiness }
  magic: {}
exporters: { console: {} }
service:
  pipelines:
    metrics/a:
      receivers: [procfs]
      processors: [topk/zero, priority, topk/unknown, magic, aggregate/missing]
      exporters: [console]
";
    let errors = load(text).unwrap_err().0;
    let about = |component: &str, needle: &str| {
        assert!(
            errors.iter().any(
                |e| e.component.as_deref() == Some(component) && e.to_string().contains(needle)
            ),
            "no error for {component} mentioning {needle:?}: {errors:#?}"
        );
    };
    about("processors::topk/zero", "k");
    about("processors::priority", "(unclosed");
    about("processors::topk/unknown", "process.happiness");
    about("processors::magic", "unknown processor type");
    about("service::pipelines::metrics/a", "aggregate/missing");
    // Each points at its line.
    let zero = errors
        .iter()
        .find(|e| e.component.as_deref() == Some("processors::topk/zero"))
        .unwrap();
    assert_eq!(zero.location, Some((3, 3)));
}

#[test]
fn bad_k8sattributes_configs_name_the_component_and_field() {
    let text = "\
receivers: { procfs: {} }
processors:
  k8sattributes/a: { refresh_interval: 1s, extract: { metadata: [k8s.pod.nope] } }
  k8sattributes/b: { auth_type: serviceAccount, endpoint: 'http://api:6443' }
  k8sattributes/c: { auth_type: token }
exporters: { console: {} }
service:
  pipelines:
    metrics/a:
      receivers: [procfs]
      processors: [k8sattributes/a, k8sattributes/b, k8sattributes/c]
      exporters: [console]
";
    let errors = load(text).unwrap_err().0;
    let about = |component: &str, field: Option<&str>, needle: &str| {
        assert!(
            errors
                .iter()
                .any(|e| e.component.as_deref() == Some(component)
                    && e.field.as_deref() == field
                    && e.to_string().contains(needle)),
            "no error for {component} {field:?} mentioning {needle:?}: {errors:#?}"
        );
    };
    about(
        "processors::k8sattributes/a",
        Some("refresh_interval"),
        "at least 5s",
    );
    about(
        "processors::k8sattributes/a",
        Some("extract.metadata[0]"),
        "k8s.pod.nope",
    );
    about("processors::k8sattributes/b", Some("endpoint"), "https://");
    about("processors::k8sattributes/c", None, "unknown variant");
    // The defaults (in-cluster, the node from K8S_NODE_NAME) load.
    load("receivers: { procfs: {} }\nprocessors: { k8sattributes: }\nexporters: { console: }\n\
          service: { pipelines: { metrics/a: { receivers: [procfs], processors: [k8sattributes], exporters: [console] } } }\n")
        .expect("defaults load");
}

#[test]
fn two_exporters_sharing_a_queue_directory_are_refused_naming_both() {
    let text = "\
receivers: { procfs: {} }
exporters:
  otlp_grpc/a: { endpoint: 'http://x:4317', sending_queue: { storage: { directory: /var/lib/q } } }
  otlp_http/b:
    endpoint: http://x:4318
    sending_queue:
      storage: { directory: /var/lib/q/ }
service:
  pipelines:
    metrics/a: { receivers: [procfs], exporters: [otlp_grpc/a, otlp_http/b] }
";
    let errors = load(text).unwrap_err().0;
    assert_eq!(errors.len(), 1, "{errors:#?}");
    let text = errors[0].to_string();
    assert!(
        text.contains("otlp_http/b") && text.contains("otlp_grpc/a"),
        "{text}"
    );
    assert!(text.contains("each exporter needs its own"), "{text}");
    assert_eq!(errors[0].location, Some((7, 7)));
}

#[test]
fn a_component_problem_keeps_its_field_and_points_at_its_line() {
    let text = "\
receivers: { procfs: {} }
exporters:
  file:
    path: x
    rotation:
      max_backups: 3
      max_megabytes: 0
  otlp_grpc/flow: { endpoint: '' }
processors:
  attributes:
    actions:
      - { action: delete, key: '' }
service:
  pipelines:
    metrics/a:
      receivers: [procfs]
      processors: [attributes]
      exporters: [file, otlp_grpc/flow]
";
    let errors = load(text).unwrap_err().0;
    let of = |component: &str| {
        errors
            .iter()
            .find(|e| e.component.as_deref() == Some(component))
            .unwrap_or_else(|| panic!("no error for {component}: {errors:#?}"))
    };
    let rotation = of("exporters::file");
    assert_eq!(rotation.field.as_deref(), Some("rotation.max_megabytes"));
    assert_eq!(rotation.location, Some((7, 7)));
    // The text reads as it always did.
    assert_eq!(
        rotation.to_string(),
        "exporters::file: rotation.max_megabytes: must be at least 1 (line 7, column 7)"
    );
    // A field inside a flow mapping: the component's own line.
    let endpoint = of("exporters::otlp_grpc/flow");
    assert_eq!(endpoint.field.as_deref(), Some("endpoint"));
    assert_eq!(endpoint.location, Some((8, 3)));
    // A field inside a list: the list's key.
    let key = of("processors::attributes");
    assert_eq!(key.field.as_deref(), Some("actions[0].key"));
    assert_eq!(key.location, Some((11, 5)));
    // Errors that are not a component's own validation have no field.
    let pipeline_errors = load("receivers: { procfs: {} }\n").unwrap_err().0;
    assert!(pipeline_errors.iter().all(|e| e.field.is_none()));
}

/// The remote-config rules, checked through the loader as the agent runs
/// them: a local config with a policy, remote texts against it.
mod remote {
    use super::*;

    const LOCAL: &str = "\
receivers:
  procfs: { root_path: /host }
exporters:
  console:
service:
  pipelines:
    metrics/a: { receivers: [procfs], exporters: [console] }
  telemetry: { address: 0.0.0.0:8888 }
  remote_config:
    file_export_dirs: [/var/lib/phoenix/exports]
    otlp_endpoints: [collector.example:4317]
    ca_files: [/etc/phoenix/ca.pem]
";

    fn env(name: &str) -> Option<String> {
        match name {
            "NODE_NAME" => Some("node-7".into()),
            "PHOENIX_CONTROLLER_TOKEN" => Some("very-secret-token".into()),
            _ => None,
        }
    }

    fn remote(text: &str) -> Result<AgentConfig, ConfigErrors> {
        let local = load(LOCAL).unwrap();
        let root = local.procfs_root_path();
        let rules = RemoteRules {
            policy: &local.remote_policy,
            telemetry: Some(&local.telemetry),
            root_path: Some(&root),
            env_known: true,
        };
        AgentConfig::load_with_rules(text, &env, rules)
    }

    fn refusal(text: &str) -> String {
        remote(text).expect_err("refused").to_string()
    }

    fn with(receiver: &str, exporter: &str, service_extra: &str) -> String {
        format!(
            "receivers:\n  procfs: {receiver}\nexporters:\n  {exporter}\nservice:\n  pipelines:\n    metrics/r: {{ receivers: [procfs], exporters: [{}] }}\n{service_extra}",
            exporter.split(':').next().unwrap()
        )
    }

    #[test]
    fn a_remote_config_within_the_policy_gets_the_local_telemetry_and_policy() {
        let c = remote(&with(
            "{ root_path: /host, host_name: '${env:NODE_NAME}' }",
            "file: { path: /var/lib/phoenix/exports/m.jsonl }",
            "",
        ))
        .unwrap();
        let local = load(LOCAL).unwrap();
        assert_eq!(c.telemetry, local.telemetry);
        assert_eq!(c.remote_policy, local.remote_policy);
    }

    #[test]
    fn a_remote_disk_queue_must_live_under_an_allowed_directory() {
        let queue = |dir: &str| {
            with(
                "{ root_path: /host }",
                &format!(
                    "otlp_grpc: {{ endpoint: 'http://collector.example:4317', sending_queue: {{ storage: {{ directory: {dir} }} }} }}"
                ),
                "",
            )
        };
        remote(&queue("/var/lib/phoenix/exports/queue")).unwrap();
        let refused = refusal(&queue("/etc/cron.d"));
        assert!(
            refused.contains("sending_queue.storage.directory")
                && refused.contains("policy file_export_dirs"),
            "{refused}"
        );
    }

    #[test]
    fn telemetry_and_the_policy_are_local_only() {
        let changed = refusal(&with(
            "{ root_path: /host }",
            "console:",
            "  telemetry: { address: 0.0.0.0:8888, remote_reload: true, accept_config_body: true }\n",
        ));
        assert!(
            changed.contains("service.telemetry is local-only"),
            "{changed}"
        );
        // Repeating the local settings is fine.
        remote(&with(
            "{ root_path: /host }",
            "console:",
            "  telemetry: { address: 0.0.0.0:8888 }\n",
        ))
        .unwrap();
        let policy = refusal(&with(
            "{ root_path: /host }",
            "console:",
            "  remote_config: { file_export_dirs: [/] }\n",
        ));
        assert!(
            policy.contains("service.remote_config is local-only"),
            "{policy}"
        );
        // Repeating the local policy is fine too.
        remote(&with(
            "{ root_path: /host }",
            "console:",
            "  remote_config: { file_export_dirs: [/var/lib/phoenix/exports], otlp_endpoints: [collector.example:4317], ca_files: [/etc/phoenix/ca.pem] }\n",
        ))
        .unwrap();
    }

    #[test]
    fn files_only_under_the_allowed_directories() {
        for path in [
            "/proc/1/root/etc/profile.d/x.sh",
            "/var/lib/phoenix/exports/../../../etc/cron.d/x",
            "/etc/passwd",
            "relative.jsonl",
        ] {
            let e = refusal(&with(
                "{ root_path: /host }",
                &format!("file: {{ path: '{path}' }}"),
                "",
            ));
            assert!(
                e.contains("exporters::file: path: policy file_export_dirs"),
                "{path}: {e}"
            );
        }
    }

    #[test]
    fn variables_outside_the_list_are_refused_and_never_echoed() {
        let e = refusal(&with(
            "{ root_path: /host, collection_interval: '${env:PHOENIX_CONTROLLER_TOKEN:-10s}' }",
            "console:",
            "",
        ));
        assert!(
            e.contains("policy env") && e.contains("PHOENIX_CONTROLLER_TOKEN"),
            "{e}"
        );
        assert!(e.contains("line "), "located: {e}");
        assert!(!e.contains("very-secret-token"), "{e}");
    }

    #[test]
    fn a_local_config_never_echoes_a_substituted_value_either() {
        let text = "receivers:\n  procfs: { collection_interval: '${env:PHOENIX_CONTROLLER_TOKEN}' }\nexporters: { console: }\nservice:\n  pipelines:\n    metrics/a: { receivers: [procfs], exporters: [console] }\n";
        let e = AgentConfig::load_with_env(text, &env)
            .unwrap_err()
            .to_string();
        assert!(!e.contains("very-secret-token"), "{e}");
        assert!(e.contains("${env:PHOENIX_CONTROLLER_TOKEN}"), "{e}");
    }

    #[test]
    fn endpoints_ca_files_and_root_path_follow_the_policy() {
        let e = refusal(&with(
            "{ root_path: /host }",
            "otlp_http: { endpoint: 'http://evil.example:4318' }",
            "",
        ));
        assert!(e.contains("endpoint: policy otlp_endpoints"), "{e}");
        remote(&with(
            "{ root_path: /host }",
            "otlp_grpc: { endpoint: 'https://collector.example:4317', tls: { ca_file: /etc/phoenix/ca.pem } }",
            "",
        ))
        .unwrap();
        let e = refusal(&with(
            "{ root_path: /host }",
            "otlp_grpc: { endpoint: 'https://collector.example:4317', tls: { ca_file: /etc/ssl/private/node.key } }",
            "",
        ));
        assert!(e.contains("tls.ca_file: policy ca_files"), "{e}");
        let e = refusal(&with("{ root_path: / }", "console:", ""));
        assert!(e.contains("root_path: policy allow_root_path"), "{e}");
    }

    #[test]
    fn a_local_config_sets_its_policy_and_bad_policies_are_named() {
        let local = load(LOCAL).unwrap();
        assert_eq!(
            local.remote_policy.file_export_dirs,
            [PathBuf::from("/var/lib/phoenix/exports")]
        );
        assert_eq!(local.remote_policy.env, policy::DEFAULT_ENV);
        let e = load(&LOCAL.replace("[/var/lib/phoenix/exports]", "[/proc/self]"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("service::remote_config: file_export_dirs[0]: must not be under /proc"),
            "{e}"
        );
    }

    #[test]
    fn without_the_environment_only_literal_values_are_checked() {
        let local = load(LOCAL).unwrap();
        let rules = RemoteRules {
            policy: &local.remote_policy,
            telemetry: None,
            root_path: Some(Path::new("/host")),
            env_known: false,
        };
        let from_env = with(
            "{ root_path: '${env:PHOENIX_ROOT_PATH:-/}' }",
            "file: { path: '${env:OTLP_ENDPOINT:-/dev/null}' }",
            "",
        );
        AgentConfig::load_with_rules(&from_env, &no_env, rules)
            .expect("values from the environment are the agent's to check");
        let literal = with("{ root_path: /host }", "file: { path: /etc/cron.d/x }", "");
        let e = AgentConfig::load_with_rules(&literal, &no_env, rules).unwrap_err();
        assert!(e.to_string().contains("policy file_export_dirs"), "{e}");
        let telemetry = with(
            "{ root_path: /host }",
            "console:",
            "  telemetry: { address: 0.0.0.0:8888 }\n",
        );
        let e = AgentConfig::load_with_rules(&telemetry, &no_env, rules).unwrap_err();
        assert!(e.to_string().contains("must leave it out"), "{e}");
    }

    #[test]
    fn a_remote_k8sattributes_keeps_the_token_in_the_cluster_and_reads_no_other_variable() {
        let pipeline = |processor: &str| {
            format!(
                "receivers: {{ procfs: {{ root_path: /host }} }}\nprocessors:\n  k8sattributes: {processor}\n\
                 exporters: {{ console: }}\nservice:\n  pipelines:\n    metrics/r: {{ receivers: [procfs], processors: [k8sattributes], exporters: [console] }}\n"
            )
        };
        remote(&pipeline("{}")).expect("the defaults are fine");
        remote(&pipeline("{ node_from_env_var: NODE_NAME }"))
            .expect("a variable the policy allows");
        let endpoint = refusal(&pipeline("{ endpoint: 'https://evil.example' }"));
        assert!(
            endpoint.contains("processors::k8sattributes: endpoint: a remote config may not set"),
            "{endpoint}"
        );
        let variable = refusal(&pipeline("{ node_from_env_var: PHOENIX_CONTROLLER_TOKEN }"));
        assert!(
            variable.contains("processors::k8sattributes: node_from_env_var: policy env"),
            "{variable}"
        );
    }
}
