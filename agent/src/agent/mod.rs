//! The agent as a library: one running config, its telemetry endpoint, an
//! optional controller session, and the loop that routes every reload
//! trigger (file change, SIGHUP, `POST /-/reload`, controller pushes and
//! reverts) through one [`Service::reload`]. `main.rs` only parses flags,
//! sets logging up and waits for a signal; tests start and stop agents in
//! process to check the reload rules.

mod sources;

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

use phoenix_config::{TelemetryConfig, config_hash};
use phoenix_telemetry::registry::Registry;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

pub use sources::{ConfigSources, LoadedConfig, REMOTE_CONFIG_FILE, load_file};

use crate::controller::{self, Connection};
use crate::opamp;
use crate::pipeline::{ReloadError, ReloadOutcome, ReloadRequest, ReloadSource, Service};
use crate::telemetry::server::{self, Health, ReloadEndpoint};

/// How often the config file is checked for changes.
const FILE_POLL_INTERVAL: Duration = Duration::from_secs(1);

/// How long the OpAMP client may take for its last message at shutdown.
const GOODBYE_DEADLINE: Duration = Duration::from_secs(5);

/// How to reach a controller and what to tell it about this agent.
pub enum ControllerLink {
    /// The native gRPC session (`--controller`). Boxed: tonic's endpoint
    /// is large, and a link is built once.
    Native {
        connection: Box<Connection>,
        labels: BTreeMap<String, String>,
    },
    /// An OpAMP server (`--opamp`).
    Opamp {
        endpoint: opamp::Endpoint,
        labels: BTreeMap<String, String>,
    },
}

/// The running controller client, and whether it has a last message to
/// send when the agent stops (OpAMP's `agent_disconnect`) or is simply
/// aborted (the native session's end tells the controller).
struct Session {
    task: JoinHandle<()>,
    says_goodbye: bool,
}

/// Everything an agent starts from.
pub struct AgentSettings {
    /// The first config, usually [`ConfigSources::initial`]'s.
    pub initial: LoadedConfig,
    pub sources: ConfigSources,
    pub controller: Option<ControllerLink>,
}

/// A running agent. Stop it with [`Agent::stop`] (or let
/// [`Agent::run_until`] do it): pipelines drain their exporters first.
pub struct Agent {
    service: Service,
    reloads: mpsc::Sender<ReloadRequest>,
    /// Ends the run loop (and the controller session).
    stop: watch::Sender<bool>,
    run_loop: JoinHandle<()>,
    /// Closes the telemetry endpoint: sent last, so that `/metrics` and
    /// `/healthz` stay up while the exporters drain.
    stop_telemetry: watch::Sender<bool>,
    telemetry: JoinHandle<()>,
}

impl Agent {
    /// Build the config's topology, bind the telemetry address, connect to
    /// the controller (when given) and start the reload loop. Fails when the
    /// topology cannot be built or the telemetry address cannot be bound;
    /// nothing keeps running then.
    pub async fn start(settings: AgentSettings) -> anyhow::Result<Agent> {
        let AgentSettings {
            initial,
            sources,
            controller,
        } = settings;
        let registry = Registry::new();
        let health = Health::new();
        let (service, telemetry_config) =
            start_service(initial, &sources, &registry, health.clone())?;
        let (stop, stop_rx) = watch::channel(false);
        let (stop_telemetry, telemetry_stopped) = watch::channel(false);
        let (reloads, reload_rx) = mpsc::channel::<ReloadRequest>(8);
        let telemetry = server::serve(
            telemetry_config.address,
            registry.clone(),
            health,
            Some(ReloadEndpoint {
                requests: reloads.clone(),
                allow_remote: telemetry_config.remote_reload,
                accept_body: telemetry_config.accept_config_body,
            }),
            stopped(telemetry_stopped),
        )
        .await;
        let telemetry = match telemetry {
            Ok(t) => t,
            Err(e) => {
                service.shutdown().await;
                return Err(e);
            }
        };
        tracing::info!(
            pipelines = ?service.pipeline_names(),
            hash = %service.applied().hash,
            telemetry = %telemetry_config.address,
            version = env!("CARGO_PKG_VERSION"),
            "phoenix-agent started"
        );
        // Started once the agent is up (a telemetry port in use ends it
        // first), so a controller never sees an agent about to exit. Pushes
        // come through the same loop as `POST /-/reload`.
        let session = controller.map(|link| match link {
            ControllerLink::Native { connection, labels } => Session {
                task: controller::spawn(
                    *connection,
                    labels,
                    sources.state_dir.as_deref(),
                    service.clone(),
                    reloads.clone(),
                    &registry,
                ),
                says_goodbye: false,
            },
            ControllerLink::Opamp { endpoint, labels } => Session {
                task: opamp::spawn(
                    endpoint,
                    labels,
                    sources.state_dir.as_deref(),
                    service.clone(),
                    reloads.clone(),
                    &registry,
                    stop_rx.clone(),
                ),
                says_goodbye: true,
            },
        });
        // The file as it is now, before the loop runs: an edit made while
        // the loop task is still being scheduled must count as a change.
        let file_hash = sources.read_file().ok().map(|t| config_hash(&t));
        let run_loop = tokio::spawn(run_loop(
            service.clone(),
            sources,
            file_hash,
            reload_rx,
            session,
            stop_rx,
        ));
        Ok(Agent {
            service,
            reloads,
            stop,
            run_loop,
            stop_telemetry,
            telemetry,
        })
    }

    /// The pipelines' runtime: what runs, and its reload path.
    pub fn service(&self) -> &Service {
        &self.service
    }

    /// Ask for a reload the way `POST /-/reload` and the controller do:
    /// `text: None` re-reads the `--config` file (from the controller: goes
    /// back to the local config). Answers with the outcome.
    pub async fn reload(
        &self,
        text: Option<String>,
        source: ReloadSource,
    ) -> Result<ReloadOutcome, ReloadError> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        let request = ReloadRequest {
            text,
            source,
            reply,
        };
        let stopped = || ReloadError::Source("the agent is stopping".into());
        self.reloads.send(request).await.map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }

    /// Run until `signal` resolves, then stop.
    pub async fn run_until(self, signal: impl Future<Output = ()>) {
        signal.await;
        self.stop().await;
    }

    /// Stop: end the controller session, drain the exporters, close the
    /// telemetry endpoint.
    pub async fn stop(self) {
        self.stop.send_replace(true);
        let _ = self.run_loop.await;
        self.service.shutdown().await;
        self.stop_telemetry.send_replace(true);
        let _ = self.telemetry.await;
        tracing::info!("phoenix-agent stopped");
    }
}

/// Build the first topology. A kept remote config that cannot be built
/// (it loaded, but a port is taken or a CA file is gone) would stop every
/// restart the same way: the local config runs instead, and the kept one
/// is forgotten (a controller offers its desired config again anyway).
fn start_service(
    initial: LoadedConfig,
    sources: &ConfigSources,
    registry: &Registry,
    health: std::sync::Arc<Health>,
) -> anyhow::Result<(Service, TelemetryConfig)> {
    let start = |loaded: LoadedConfig| {
        let telemetry = loaded.config.telemetry.clone();
        let service = Service::start(
            loaded.config,
            &loaded.text,
            ReloadSource::Startup,
            registry,
            health.clone(),
        )?;
        if let Some(local) = loaded.local {
            service.set_local_config(local);
        }
        anyhow::Ok((service, telemetry))
    };
    let kept_remote = initial.kept_remote;
    let source = initial.source.clone();
    match start(initial) {
        Ok(started) => Ok(started),
        Err(e) if kept_remote => {
            tracing::error!(config = %source, error = %e, "the kept remote config cannot be built: starting from the local config");
            sources.forget_remote();
            let local = load_file(sources.file.as_deref()).map_err(anyhow::Error::msg)?;
            start(local)
        }
        Err(e) => Err(e),
    }
}

async fn stopped(mut stop: watch::Receiver<bool>) {
    let _ = stop.wait_for(|stopped| *stopped).await;
}

/// Every trigger goes through the same `Service::reload`; this loop owns
/// the rules between the local and the kept remote config.
async fn run_loop(
    service: Service,
    sources: ConfigSources,
    mut file_hash: Option<String>,
    mut requests: mpsc::Receiver<ReloadRequest>,
    session: Option<Session>,
    stop: watch::Receiver<bool>,
) {
    let mut hangup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for SIGHUP; the config file is still polled");
            None
        }
    };
    let mut poll = tokio::time::interval(FILE_POLL_INTERVAL);
    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let stopping = stopped(stop);
    tokio::pin!(stopping);
    loop {
        tokio::select! {
            _ = &mut stopping => break,
            Some(()) = async { hangup.as_mut()?.recv().await } => {
                tracing::info!("SIGHUP received: reloading the config file");
                if let Err(e) = reload_file(&service, &sources, ReloadSource::Signal).await {
                    tracing::debug!("{e}");
                }
            }
            _ = poll.tick(), if sources.file.is_some() => {
                let Ok(text) = sources.read_file() else { continue };
                let hash = config_hash(&text);
                if file_hash.as_deref() != Some(hash.as_str()) {
                    file_hash = Some(hash);
                    tracing::info!("config file changed: reloading");
                    let _ = reload_local(&service, &sources, &text, ReloadSource::FileChange).await;
                }
            }
            Some(request) = requests.recv() => {
                let result = match request.text {
                    Some(text) => {
                        let result = service.reload_remote(&text, request.source).await;
                        if matches!(&result, Ok(outcome) if outcome.changed) {
                            sources.persist_remote(&text);
                        }
                        result
                    }
                    // A controller asking for no text is a revert: back
                    // to the local config, whatever the kept remote one.
                    None if request.source == ReloadSource::Controller => {
                        revert_to_local(&service, &sources).await
                    }
                    None => reload_file(&service, &sources, request.source).await,
                };
                let _ = request.reply.send(result);
            }
        }
    }
    // The native session holds nothing that needs flushing: the controller
    // sees the stream end and marks the agent offline. The OpAMP client
    // says goodbye first (it watches the same stop signal), within a bound.
    // A remote config the OpAMP client asked for now fails at once
    // ("shutting down") instead of waiting on a loop that has ended.
    drop(requests);
    if let Some(mut session) = session {
        if session.says_goodbye
            && tokio::time::timeout(GOODBYE_DEADLINE, &mut session.task)
                .await
                .is_err()
        {
            tracing::debug!("the OpAMP client did not finish its goodbye in time");
        }
        session.task.abort();
    }
}

async fn reload_file(
    service: &Service,
    sources: &ConfigSources,
    source: ReloadSource,
) -> Result<ReloadOutcome, ReloadError> {
    match sources.read_file() {
        Ok(text) => reload_local(service, sources, &text, source).await,
        Err(e) => {
            tracing::error!("reload refused, the running config stays: {e}");
            Err(e)
        }
    }
}

/// Apply the `--config` file's text. Once it runs, a kept remote config no
/// longer describes what the agent runs: it is forgotten, so a restart
/// comes back with the file, as the operator last chose.
async fn reload_local(
    service: &Service,
    sources: &ConfigSources,
    text: &str,
    source: ReloadSource,
) -> Result<ReloadOutcome, ReloadError> {
    let result = service.reload(text, source).await;
    if matches!(&result, Ok(outcome) if outcome.changed) {
        sources.forget_remote();
    }
    result
}

/// The controller undoes its pushes: the local config runs again, and the
/// kept remote config is forgotten even when the texts are equal, so a
/// restart starts from the local config too.
async fn revert_to_local(
    service: &Service,
    sources: &ConfigSources,
) -> Result<ReloadOutcome, ReloadError> {
    let text = sources.local_text()?;
    let result = service.reload(&text, ReloadSource::Controller).await;
    if result.is_ok() {
        sources.forget_remote();
    }
    result
}
