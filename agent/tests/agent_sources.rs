//! The rules between the local config and a kept remote one, checked on
//! agents started in process: a kept remote config wins at start, a change
//! of the `--config` file forgets it, a controller's revert runs the file
//! again and forgets it, a refused config changes nothing.

use std::path::{Path, PathBuf};
use std::time::Duration;

use phoenix_agent::agent::{Agent, AgentSettings, ConfigSources, REMOTE_CONFIG_FILE};
use phoenix_agent::pipeline::{ReloadError, ReloadSource, Service};
use phoenix_agent::telemetry::server::Health;
use phoenix_config::config_hash;
use phoenix_telemetry::registry::Registry;

/// A config whose one pipeline is named `name`, with the telemetry endpoint
/// on a free port so that several agents can run at once.
fn config(name: &str) -> String {
    format!(
        "receivers: {{ procfs: {{ collection_interval: 1h }} }}
exporters: {{ console: }}
service:
  pipelines:
    metrics/{name}: {{ receivers: [procfs], exporters: [console] }}
  telemetry: {{ address: \"127.0.0.1:0\" }}
"
    )
}

struct Scratch(PathBuf);

impl Scratch {
    fn new(test: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("phoenix-agent-{test}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }

    fn sources(&self) -> ConfigSources {
        ConfigSources {
            file: Some(self.0.join("agent.yaml")),
            state_dir: Some(self.0.join("state")),
        }
    }

    fn kept(&self) -> Option<String> {
        std::fs::read_to_string(self.0.join("state").join(REMOTE_CONFIG_FILE)).ok()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

async fn start(sources: ConfigSources) -> Agent {
    let initial = sources.initial().expect("a valid config to start with");
    Agent::start(AgentSettings {
        initial,
        sources,
        controller: None,
    })
    .await
    .expect("the agent starts")
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kept_remote_config_wins_at_start_until_the_file_changes() {
    let scratch = Scratch::new("kept");
    let sources = scratch.sources();
    write(sources.file.as_ref().unwrap(), &config("local"));

    // A remote config applies and is kept.
    let agent = start(sources.clone()).await;
    let remote = config("remote");
    let outcome = agent
        .reload(Some(remote.clone()), ReloadSource::Controller)
        .await
        .expect("the remote config applies");
    assert!(outcome.changed);
    assert_eq!(scratch.kept().as_deref(), Some(remote.as_str()));
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(scratch.0.join("state").join(REMOTE_CONFIG_FILE))
            .unwrap()
            .permissions(),
    );
    assert_eq!(mode & 0o777, 0o600, "the kept config is the agent's alone");
    agent.stop().await;

    // A restart comes back with it, not with the file.
    let agent = start(sources.clone()).await;
    assert_eq!(agent.service().applied().hash, config_hash(&remote));

    // The operator edits the file: it runs (the poll notices within a
    // second) and the kept config is forgotten.
    let edited = config("edited");
    write(sources.file.as_ref().unwrap(), &edited);
    let mut waited = Duration::ZERO;
    while agent.service().applied().hash != config_hash(&edited) {
        assert!(waited < Duration::from_secs(10), "the file change applies");
        tokio::time::sleep(Duration::from_millis(100)).await;
        waited += Duration::from_millis(100);
    }
    assert_eq!(
        scratch.kept(),
        None,
        "the file's change forgets the remote config"
    );
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_controller_revert_runs_the_file_and_forgets_the_kept_config() {
    let scratch = Scratch::new("revert");
    let sources = scratch.sources();
    let local = config("local");
    write(sources.file.as_ref().unwrap(), &local);
    let agent = start(sources.clone()).await;
    agent
        .reload(Some(config("remote")), ReloadSource::Controller)
        .await
        .expect("the remote config applies");
    assert!(scratch.kept().is_some());

    let outcome = agent
        .reload(None, ReloadSource::Controller)
        .await
        .expect("the revert applies");
    assert!(outcome.changed);
    assert_eq!(agent.service().applied().hash, config_hash(&local));
    assert_eq!(scratch.kept(), None);
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_config_changes_nothing_and_is_not_kept() {
    let scratch = Scratch::new("refused");
    let sources = scratch.sources();
    let local = config("local");
    write(sources.file.as_ref().unwrap(), &local);
    let agent = start(sources.clone()).await;

    let refused = agent
        .reload(Some("receivers: {}\n".into()), ReloadSource::Http)
        .await
        .expect_err("an invalid config is refused");
    assert!(matches!(refused, ReloadError::Invalid(_)), "{refused}");
    assert_eq!(agent.service().applied().hash, config_hash(&local));
    assert_eq!(scratch.kept(), None);

    // An empty request re-reads the file; a broken file is refused too.
    write(sources.file.as_ref().unwrap(), "service: [\n");
    let refused = agent
        .reload(None, ReloadSource::Http)
        .await
        .expect_err("a broken file is refused");
    assert!(matches!(refused, ReloadError::Invalid(_)), "{refused}");
    assert_eq!(agent.service().applied().hash, config_hash(&local));
    agent.stop().await;
}

#[test]
fn an_invalid_kept_config_is_skipped_for_the_file() {
    let scratch = Scratch::new("invalid-kept");
    let sources = scratch.sources();
    let local = config("local");
    write(sources.file.as_ref().unwrap(), &local);
    std::fs::create_dir_all(scratch.0.join("state")).unwrap();
    write(
        &scratch.0.join("state").join(REMOTE_CONFIG_FILE),
        "not: [valid\n",
    );
    let initial = sources.initial().expect("the file is used");
    assert_eq!(initial.text, local);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kept_config_that_cannot_be_built_gives_way_to_the_file() {
    let scratch = Scratch::new("unbuildable-kept");
    let sources = scratch.sources();
    let local = config("local");
    write(sources.file.as_ref().unwrap(), &local);
    // Valid, but its Prometheus port is taken: it cannot be built.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let kept = format!(
        "receivers: {{ procfs: {{ collection_interval: 1h }} }}
exporters: {{ prometheus: {{ endpoint: \"{}\" }} }}
service:
  pipelines:
    metrics/kept: {{ receivers: [procfs], exporters: [prometheus] }}
  telemetry: {{ address: \"127.0.0.1:0\" }}
",
        taken.local_addr().unwrap()
    );
    std::fs::create_dir_all(scratch.0.join("state")).unwrap();
    write(&scratch.0.join("state").join(REMOTE_CONFIG_FILE), &kept);

    let agent = start(sources).await;
    assert_eq!(agent.service().applied().hash, config_hash(&local));
    assert_eq!(
        scratch.kept(),
        None,
        "the unbuildable kept config is forgotten"
    );
    agent.stop().await;
}

/// A remote config may change what is measured, never how the node is
/// reached: one that turns `POST /-/reload` open is refused as a whole and
/// not kept; one kept from before (an older agent accepted it) is passed
/// over at start, so the telemetry endpoint runs as the local file says.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remote_config_cannot_change_the_local_telemetry() {
    let scratch = Scratch::new("local-telemetry");
    let sources = scratch.sources();
    let local = config("local");
    write(sources.file.as_ref().unwrap(), &local);
    let open = config("open").replace(
        "telemetry: { address: \"127.0.0.1:0\" }",
        "telemetry: { address: \"127.0.0.1:0\", remote_reload: true, accept_config_body: true }",
    );
    assert!(open.contains("remote_reload"));

    let agent = start(sources.clone()).await;
    let refused = agent
        .reload(Some(open.clone()), ReloadSource::Controller)
        .await
        .expect_err("a remote config that opens /-/reload is refused");
    assert!(
        refused
            .to_string()
            .contains("service.telemetry is local-only"),
        "{refused}"
    );
    assert_eq!(agent.service().applied().hash, config_hash(&local));
    assert_eq!(scratch.kept(), None);
    // Leaving telemetry out is fine: the local settings stay.
    let without = config("without").replace("  telemetry: { address: \"127.0.0.1:0\" }\n", "");
    agent
        .reload(Some(without), ReloadSource::Controller)
        .await
        .expect("a remote config without telemetry applies");
    assert_eq!(
        agent.service().config().telemetry,
        agent.service().local_config().telemetry
    );
    agent.stop().await;

    write(&scratch.0.join("state").join(REMOTE_CONFIG_FILE), &open);
    let initial = sources.initial().expect("the file is used");
    assert_eq!(initial.text, local, "the kept config breaks the policy");
    assert!(!initial.config.telemetry.remote_reload);
}

/// On one thread nothing spawned has run yet when a start that failed late
/// (a telemetry port in use) shuts the pipelines down again: the receiver
/// loops have not subscribed to the stop signal. They must still see it.
#[tokio::test(flavor = "current_thread")]
async fn pipelines_shut_down_before_their_loops_ran_still_stop() {
    let scratch = Scratch::new("early-stop");
    let sources = scratch.sources();
    write(sources.file.as_ref().unwrap(), &config("early"));
    let loaded = sources.initial().expect("a valid config");
    let service = Service::start(
        loaded.config,
        &loaded.text,
        ReloadSource::Startup,
        &Registry::new(),
        Health::new(),
    )
    .expect("the config builds");
    tokio::time::timeout(Duration::from_secs(10), service.shutdown())
        .await
        .expect("the receiver loops end although they had not started");
}
