//! The Phoenix controller: agents connect over gRPC (`AgentControl/Session`),
//! operators push configs over a JSON API, and every push, rollout state and
//! agent is kept in an embedded SQLite store.
//!
//! The binary (`main.rs`) is a thin CLI over [`start`], so that tests and the
//! fan-out bench run the very same controller in-process.
//!
//! Components, one folder each: [`store`] (SQLite, SQL only), [`fleet`]
//! (live sessions and the rollout rules), [`experiment`] (definitions,
//! composed configs, lifecycle, scheduler, analysis, guardrails), [`grpc`]
//! (the agents' side), [`api`] (HTTP, typed by the `phoenix-api` crate),
//! [`ui`] (the dashboard's assets), [`auth`] (tokens), [`tls`] (rustls on
//! both ports); [`templates`] reads the template directory and [`metrics`]
//! holds the controller's own metrics.

pub mod api;
pub mod audit;
pub mod auth;
pub mod experiment;
pub mod fleet;
pub mod grpc;
pub mod metrics;
pub mod opamp;
pub mod store;
pub mod templates;
pub mod tls;
pub mod ui;

use std::future::Future as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::auth::{AuthSource, Authenticator, Token};
use crate::fleet::Fleet;
use crate::metrics::Metrics;
use crate::store::Store;
use crate::tls::TlsMaterial;

/// Defaults: loopback only. Opening them to the network is a deliberate
/// `--grpc-listen 0.0.0.0:4320` (with TLS, see docs/CONTROLLER.md).
pub const DEFAULT_GRPC_LISTEN: &str = "127.0.0.1:4320";
pub const DEFAULT_HTTP_LISTEN: &str = "127.0.0.1:8080";
/// 3 × the agent's 10 s heartbeat.
pub const DEFAULT_AGENT_TIMEOUT: Duration = Duration::from_secs(30);
/// 3 × the 30 s polling interval OpAMP agents use by default.
pub const DEFAULT_OPAMP_TIMEOUT: Duration = Duration::from_secs(90);
pub const DEFAULT_PUSH_TIMEOUT: Duration = Duration::from_secs(60);
/// Measurements of finished experiments are kept this long.
pub const DEFAULT_EXPERIMENT_RETENTION: Duration = Duration::from_secs(30 * 86_400);

/// Everything the controller needs to run, already checked.
#[derive(Clone)]
pub struct Settings {
    pub grpc_listen: SocketAddr,
    pub http_listen: SocketAddr,
    /// OpAMP's HTTP transport, when set.
    pub opamp_listen: Option<SocketAddr>,
    /// An OpAMP agent silent for this long is offline.
    pub opamp_timeout: Duration,
    /// Holds `controller.db`.
    pub data_dir: PathBuf,
    /// `*.yaml` files, pushable by name (the file stem).
    pub templates_dir: PathBuf,
    /// Who may use the HTTP API: the single `--api-token` or `--auth-file`.
    pub api_auth: AuthSource,
    /// Bearer token agents present in the `authorization` gRPC metadata.
    pub agent_token: Token,
    /// Reads (GET, and validation) need no credential; the audit log still
    /// does.
    pub api_read_open: bool,
    pub tls: Option<TlsMaterial>,
    /// An agent silent for this long is offline and its session closed.
    pub agent_timeout: Duration,
    /// Open targets of a push become `timeout` after this.
    pub push_timeout: Duration,
    /// Measurements of experiments finished longer ago are deleted.
    pub experiment_retention: Duration,
    /// Every audit entry is also written here as a JSON line.
    pub audit_export: Option<audit::AuditSink>,
    /// Audit entries older than this are deleted (default: kept).
    pub audit_retention: Option<Duration>,
}

/// What the gRPC service, the API and the background tasks share.
pub struct Shared {
    pub store: Arc<Store>,
    pub fleet: Fleet,
    pub metrics: Metrics,
    pub settings: Settings,
    /// Turns API credentials into principals (reloadable).
    pub auth: Authenticator,
    /// Running experiments, as the stats ingest needs them.
    pub live: experiment::LiveSet,
    /// Recent interim reports of running experiments.
    pub interim: experiment::InterimReports,
    /// What the OpAMP server remembers of each agent between requests.
    pub opamp: opamp::Sequences,
    /// The OpAMP agents' open WebSocket connections.
    pub opamp_sockets: opamp::websocket::Sockets,
    /// Wakes the experiment scheduler before its next tick.
    pub scheduler_wake: tokio::sync::Notify,
    /// Something an API reader may show changed (live updates).
    pub changes: Changes,
    /// A push was created: OpAMP agents on a WebSocket are offered it at
    /// once rather than at their next heartbeat.
    pub pushes: Changes,
    /// After a restart with agents connected: until then, due experiments
    /// wait for the agents to reconnect before resolving their targets.
    pub reconnect_grace_until: Option<std::time::Instant>,
}

/// A counter bumped whenever something changes, so that whoever watches it
/// knows when to look again: live views (the fleet, a push or an
/// experiment changed; they debounce it), OpAMP WebSocket connections (a
/// push was created).
pub struct Changes(watch::Sender<u64>);

impl Default for Changes {
    fn default() -> Self {
        Changes(watch::channel(0).0)
    }
}

impl Changes {
    pub fn bump(&self) {
        self.0.send_modify(|n| *n = n.wrapping_add(1));
    }
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.0.subscribe()
    }
}

/// Why the controller did not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot open the store in {dir}: {error}")]
    Store {
        dir: String,
        error: store::StoreError,
    },
    #[error("cannot listen for {what} on {addr}: {error}")]
    Bind {
        what: &'static str,
        addr: SocketAddr,
        error: std::io::Error,
    },
    #[error("TLS: {0}")]
    Tls(String),
    #[error("API authentication: {0}")]
    Auth(String),
}

/// A started controller.
pub struct Running {
    pub grpc_addr: SocketAddr,
    pub http_addr: SocketAddr,
    /// Set when OpAMP is served.
    pub opamp_addr: Option<SocketAddr>,
    pub shared: Arc<Shared>,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<anyhow::Result<()>>>,
}

/// Open the store, bind both ports and serve until [`Running::shutdown`].
pub async fn start(settings: Settings) -> Result<Running, StartError> {
    let auth = Authenticator::new(settings.api_auth.clone())
        .await
        .map_err(StartError::Auth)?;
    let dir = settings.data_dir.clone();
    let store = blocking(move || {
        let store = Store::open_dir(&dir)?;
        // No session survives a restart: every agent is offline until its
        // next Hello.
        let were_online = store.mark_all_offline()?;
        // A restore a crash interrupted is redone by the scheduler.
        store.requeue_restores()?;
        Ok::<_, store::StoreError>((store, were_online))
    })
    .await
    .map_err(|e| StartError::Store {
        dir: settings.data_dir.display().to_string(),
        error: store::StoreError::DataDir {
            path: settings.data_dir.display().to_string(),
            error: std::io::Error::other(e.to_string()),
        },
    })?
    .map_err(|error| StartError::Store {
        dir: settings.data_dir.display().to_string(),
        error,
    })?;

    let bind = |what: &'static str, addr: SocketAddr| async move {
        TcpListener::bind(addr)
            .await
            .map_err(|error| StartError::Bind { what, addr, error })
    };
    let grpc_listener = bind("agents (gRPC)", settings.grpc_listen).await?;
    let http_listener = bind("the API (HTTP)", settings.http_listen).await?;
    let opamp_listener = match settings.opamp_listen {
        Some(addr) => Some(bind("OpAMP (HTTP)", addr).await?),
        None => None,
    };
    let opamp_addr = opamp_listener.as_ref().and_then(|l| l.local_addr().ok());
    let grpc_addr = grpc_listener
        .local_addr()
        .map_err(|error| StartError::Bind {
            what: "agents (gRPC)",
            addr: settings.grpc_listen,
            error,
        })?;
    let http_addr = http_listener
        .local_addr()
        .map_err(|error| StartError::Bind {
            what: "the API (HTTP)",
            addr: settings.http_listen,
            error,
        })?;

    let (store, were_online) = store;
    // Agents that were connected come back over their reconnect backoff:
    // experiments due now wait for them rather than deploy to whoever is
    // back first.
    let reconnect_grace_until =
        (were_online > 0).then(|| std::time::Instant::now() + settings.agent_timeout);
    let shared = Arc::new(Shared {
        store: Arc::new(store),
        fleet: Fleet::new(settings.agent_timeout),
        metrics: Metrics::new(),
        settings,
        auth,
        live: experiment::LiveSet::default(),
        interim: experiment::InterimReports::default(),
        opamp: opamp::Sequences::default(),
        opamp_sockets: Default::default(),
        pushes: Changes::default(),
        scheduler_wake: tokio::sync::Notify::new(),
        changes: Changes::default(),
        reconnect_grace_until,
    });
    let (stop, stop_rx) = watch::channel(false);
    let mut tasks = vec![
        grpc::serve(shared.clone(), grpc_listener, stop_rx.clone())?,
        api::serve(shared.clone(), http_listener, stop_rx.clone())?,
        fleet::rollout::spawn_reaper(shared.clone(), stop_rx.clone()),
        experiment::scheduler::spawn(shared.clone(), stop_rx.clone()),
    ];
    if let Some(listener) = opamp_listener {
        tasks.push(opamp::serve(shared.clone(), listener, stop_rx.clone()));
    }
    tasks.extend(
        [
            auth::reload::spawn(shared.clone(), stop_rx.clone()),
            audit::spawn_export(shared.clone(), stop_rx.clone()),
            audit::spawn_retention(shared.clone(), stop_rx),
        ]
        .into_iter()
        .flatten(),
    );
    tracing::info!(
        grpc = %grpc_addr,
        http = %http_addr,
        opamp = ?opamp_addr,
        tls = shared.settings.tls.is_some(),
        data_dir = %shared.settings.data_dir.display(),
        version = env!("CARGO_PKG_VERSION"),
        "phoenix-controller started"
    );
    Ok(Running {
        grpc_addr,
        http_addr,
        opamp_addr,
        shared,
        stop,
        tasks,
    })
}

impl Running {
    /// Serve until `signal` resolves or a server fails, then stop.
    pub async fn run_until(
        mut self,
        signal: impl std::future::Future<Output = ()>,
    ) -> anyhow::Result<()> {
        let failed = tokio::select! {
            _ = signal => None,
            r = first_finished(&mut self.tasks) => Some(r),
        };
        self.shutdown().await;
        match failed {
            None | Some(Ok(Ok(()))) => Ok(()),
            Some(Ok(Err(e))) => Err(e),
            Some(Err(e)) => Err(anyhow::anyhow!("a controller task failed: {e}")),
        }
    }

    /// Stop serving: sessions are closed (agents reconnect elsewhere or
    /// later), listeners stop, and the store is released.
    pub async fn shutdown(self) {
        self.stop.send_replace(true);
        self.shared.fleet.close_all();
        for task in self.tasks {
            // Graceful first; a server stuck on a connection that will not
            // close is not allowed to hold the process.
            let abort = task.abort_handle();
            if tokio::time::timeout(Duration::from_secs(5), task)
                .await
                .is_err()
            {
                abort.abort();
            }
        }
        tracing::info!("phoenix-controller stopped");
    }
}

/// The first of `tasks` to finish (removed from `tasks`).
async fn first_finished<T>(tasks: &mut Vec<JoinHandle<T>>) -> Result<T, tokio::task::JoinError> {
    std::future::poll_fn(|cx| {
        for i in 0..tasks.len() {
            if let std::task::Poll::Ready(r) = std::pin::Pin::new(&mut tasks[i]).poll(cx) {
                tasks.swap_remove(i);
                return std::task::Poll::Ready(r);
            }
        }
        std::task::Poll::Pending
    })
    .await
}

/// Resolves once `stop` turns true (or its sender is gone).
pub async fn stopped(stop: &mut watch::Receiver<bool>) {
    // The guard `wait_for` returns is dropped here, so callers' futures
    // stay `Send`.
    let _ = stop.wait_for(|s| *s).await;
}

/// Unix time in milliseconds.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// RFC 3339 with milliseconds, UTC, for a unix-ms time.
pub fn rfc3339_ms(ms: i64) -> String {
    phoenix_processors::time::format_rfc3339_millis(u64::try_from(ms).unwrap_or(0) * 1_000_000)
}

/// Run blocking work (SQLite, YAML validation) off the async workers. A
/// panic in `f` comes back as an error instead of taking the caller down.
pub async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, tokio::task::JoinError> {
    tokio::task::spawn_blocking(f).await
}

/// Each agent holds a connection: lift the soft file limit to the hard one
/// so a large fleet does not hit the default 1024.
pub fn raise_fd_limit() {
    // SAFETY: getrlimit/setrlimit only read and write the struct we pass.
    unsafe {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && limit.rlim_cur < limit.rlim_max
        {
            limit.rlim_cur = limit.rlim_max;
            let _ = libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}
