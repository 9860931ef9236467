//! Pushes and their rollout: validate, store, send to the agents online,
//! record their answers, re-offer the desired config on reconnect, and
//! time out what nobody answers. The gRPC service and the API call these;
//! they hold no state of their own beyond the store and the fleet.

use std::sync::Arc;
use std::time::{Duration, Instant};

use std::collections::BTreeMap;

use phoenix_config::{AgentConfig, ConfigError, RemoteRules};
use phoenix_proto::v1::{ConfigPush, ControllerMessage, controller_message};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::store::{
    Actor, AgentHello, AgentPolicy, ConfigKind, CreatePushError, Desired, NewPush, Selector,
    StatusReport, StoreError, TargetChange, TargetState,
};
use crate::{Shared, blocking, now_ms, templates};

/// Where the pushed config comes from.
#[derive(Debug, Clone)]
pub enum ConfigSource {
    Yaml(String),
    Template(String),
    /// Back to the agents' local config, expected to hash to this.
    RevertToLocal(String),
}

/// Largest config an `opaque` push carries: a Phoenix config's bound
/// (`phoenix_config::yaml::MAX_BYTES`, 1 MiB), so every push is bounded
/// the same whether the controller parses it or not.
pub const MAX_OPAQUE_BYTES: usize = phoenix_config::yaml::MAX_BYTES;

/// Which agents a push's config is for, and how OpAMP agents receive it.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivery {
    pub config_kind: ConfigKind,
    /// `AgentConfigFile.content_type`.
    pub content_type: String,
    /// The key in OpAMP's `AgentConfigMap` (empty: the agent's only file,
    /// as OpAMP recommends for single-file agents).
    pub file: String,
}

impl Default for Delivery {
    /// A Phoenix config, as a single YAML file.
    fn default() -> Self {
        Delivery {
            config_kind: ConfigKind::Phoenix,
            content_type: phoenix_api::DEFAULT_CONTENT_TYPE.to_string(),
            file: String::new(),
        }
    }
}

/// A push as the API asks for it.
#[derive(Debug, Clone)]
pub struct PushRequest {
    pub selector: Selector,
    pub source: ConfigSource,
    pub delivery: Delivery,
    /// Who asks: a principal, `experiment:<id>` or the controller.
    pub actor: Actor,
    /// Every target must carry these labels (the asking principal's scope).
    pub within: Option<BTreeMap<String, String>>,
    /// The experiment this push deploys, promotes or rolls back.
    pub experiment_id: Option<String>,
    /// Open targets time out after this instead of `--push-timeout` (an
    /// experiment's `deploy_timeout`).
    pub timeout: Option<std::time::Duration>,
}

/// A created push: its id, config hash and where each target stands.
#[derive(Debug, Clone)]
pub struct PushCreated {
    pub id: String,
    pub hash: String,
    pub created_at: i64,
    pub deadline: i64,
    pub targets: Vec<(String, TargetState)>,
}

/// Why a push was refused. Nothing was stored or sent.
#[derive(Debug, thiserror::Error)]
pub enum PushError {
    /// The config does not validate: every error.
    #[error("the config is invalid: {}", messages(.0))]
    Invalid(Vec<ConfigError>),
    /// The config breaks the reported policy of some targets: every
    /// problem, each naming its agent.
    #[error("the config breaks the policy of some targets: {}", messages(.0))]
    Policy(Vec<ConfigError>),
    #[error("no template {0:?}")]
    UnknownTemplate(String),
    /// The selector matched no agent, or named unknown ones.
    #[error("{0}")]
    NoTarget(String),
    /// Some targets lack the labels of the caller's scope.
    #[error("{0}")]
    OutOfScope(String),
    /// The push cannot reach its targets as asked: they take the other
    /// config kind or no remote config, or an opaque push asks for what
    /// only a Phoenix config has (a template, a revert) or is too large.
    #[error("{0}")]
    Unfit(String),
    #[error(transparent)]
    Internal(#[from] InternalError),
}

/// The controller, not the request, failed.
#[derive(Debug, thiserror::Error)]
pub enum InternalError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("a blocking task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
    /// A record the controller wrote does not (de)serialize.
    #[error(transparent)]
    Json(#[from] serde_json::Error),
    /// A row this request just wrote or read is gone (a concurrent delete).
    #[error("{0} vanished")]
    Vanished(String),
}

fn messages(errors: &[ConfigError]) -> String {
    errors
        .iter()
        .map(|e| e.message.as_str())
        .collect::<Vec<_>>()
        .join("; ")
}

/// Validate a config with the agent's own loader (what the agent will do
/// on receipt). Runs off the async workers: hostile YAML costs CPU, and a
/// panic in the loader must not take the controller down.
///
/// `${env:...}` is resolved against an EMPTY environment, never the
/// controller's own: its variables hold its tokens, and an error message
/// quoting a substituted value would hand them to the caller. Variables
/// only agents have need a default (`${env:NAME:-default}`) to validate.
pub async fn validate(text: String) -> Result<(), Vec<ConfigError>> {
    match blocking(move || AgentConfig::load_with_env(&text, &|_| None).map(|_| ())).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(errors)) => Err(errors.0),
        Err(_) => Err(vec![ConfigError {
            component: None,
            field: None,
            message: "the config validator crashed on this input".into(),
            location: None,
        }]),
    }
}

/// Check `yaml` against the reported policy of every target, as each agent
/// will (with no environment: values read from `${env:...}` are the
/// agent's to check). Agents that share a policy are checked once; an
/// agent that reported none is left to itself. Every problem names the
/// agent (and how many more share its policy).
pub fn check_policies(
    yaml: &str,
    targets: &[(String, Option<String>)],
) -> Result<(), Vec<ConfigError>> {
    let mut by_policy: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (agent, policy) in targets {
        if let Some(p) = policy {
            by_policy
                .entry(p.as_str())
                .or_default()
                .push(agent.as_str());
        }
    }
    let mut problems = Vec::new();
    for (json, agents) in by_policy {
        let who = match agents.len() {
            1 => format!("agent {}", agents[0]),
            n => format!("agent {} (and {} more with its policy)", agents[0], n - 1),
        };
        let Ok(reported) = serde_json::from_str::<AgentPolicy>(json) else {
            continue;
        };
        let rules = RemoteRules {
            policy: &reported.policy,
            telemetry: reported.telemetry.as_ref(),
            root_path: Some(&reported.root_path),
            env_known: false,
        };
        if let Err(errors) = AgentConfig::load_with_rules(yaml, &|_| None, rules) {
            problems.extend(errors.0.into_iter().map(|mut e| {
                e.message = format!("{who}: {}", e.message);
                e
            }));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems)
    }
}

/// A fresh push id: 96 random bits in hex, unique across restarts.
pub fn new_push_id() -> String {
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; 12];
    if ring::rand::SystemRandom::new().fill(&mut bytes).is_err() {
        // No OS randomness is next to impossible on Linux; time and a
        // counter are still unique within this controller.
        static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let seq = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        bytes[..8].copy_from_slice(&(now_ms() as u64).to_be_bytes());
        bytes[8..].copy_from_slice(&(seq as u32).to_be_bytes());
    }
    phoenix_processors::hash::hex(&bytes)
}

fn config_push(desired: &Desired) -> ControllerMessage {
    ControllerMessage {
        body: Some(controller_message::Body::ConfigPush(ConfigPush {
            push_id: desired.push_id.clone(),
            hash: desired.hash.clone(),
            yaml: desired.yaml.clone(),
            experiment_id: desired.experiment_id.clone(),
            revert_to_local: desired.revert_to_local,
        })),
    }
}

/// Validate, store and send a push.
pub async fn create_push(
    shared: &Arc<Shared>,
    request: PushRequest,
) -> Result<PushCreated, PushError> {
    if request.delivery.config_kind == ConfigKind::Opaque {
        check_opaque(&request.source)?;
    }
    let mut revert_hash = None;
    let (yaml, template) = match request.source {
        ConfigSource::Yaml(y) => (y, None),
        ConfigSource::RevertToLocal(hash) => {
            revert_hash = Some(hash);
            (String::new(), None)
        }
        ConfigSource::Template(name) => {
            let dir = shared.settings.templates_dir.clone();
            let lookup = name.clone();
            let t = blocking(move || templates::get(&dir, &lookup))
                .await
                .map_err(InternalError::from)?;
            match t.and_then(|t| t.content) {
                Some(content) => (content, Some(name)),
                None => return Err(PushError::UnknownTemplate(name)),
            }
        }
    };
    // An opaque config is the agents' business: OpAMP defines no format.
    if revert_hash.is_none() && request.delivery.config_kind == ConfigKind::Phoenix {
        validate(yaml.clone()).await.map_err(PushError::Invalid)?;
    }

    let now = now_ms();
    let timeout = request.timeout.unwrap_or(shared.settings.push_timeout);
    let deadline = now.saturating_add(i64::try_from(timeout.as_millis()).unwrap_or(i64::MAX));
    let push = NewPush {
        id: new_push_id(),
        hash: revert_hash
            .clone()
            .unwrap_or_else(|| phoenix_config::config_hash(&yaml)),
        selector: request.selector,
        yaml,
        template,
        actor: request.actor,
        within: request.within,
        deadline,
        revert_to_local: revert_hash.is_some(),
        experiment_id: request.experiment_id,
        config_kind: request.delivery.config_kind,
        content_type: request.delivery.content_type,
        file: request.delivery.file,
    };
    let store = shared.store.clone();
    let (push, result) = blocking(move || {
        let admit = |targets: &[(String, Option<String>)]| {
            if push.revert_to_local || push.config_kind == ConfigKind::Opaque {
                return Ok(());
            }
            check_policies(&push.yaml, targets).map_err(CreatePushError::Policy)
        };
        let r = store.create_push(&push, now, &admit);
        (push, r)
    })
    .await
    .map_err(InternalError::from)?;
    let (targets, superseded) = match result {
        Ok(t) => t,
        Err(CreatePushError::NoMatch(m)) => return Err(PushError::NoTarget(m)),
        Err(e @ (CreatePushError::UnknownAgents(_) | CreatePushError::RevokedAgents(_))) => {
            return Err(PushError::NoTarget(e.to_string()));
        }
        Err(e @ (CreatePushError::OtherConfigKind { .. } | CreatePushError::NoRemoteConfig(_))) => {
            return Err(PushError::Unfit(e.to_string()));
        }
        Err(CreatePushError::Policy(errors)) => return Err(PushError::Policy(errors)),
        Err(e @ CreatePushError::OutOfScope(_)) => {
            return Err(PushError::OutOfScope(e.to_string()));
        }
        Err(CreatePushError::Store(e)) => {
            shared.metrics.store_errors.inc();
            return Err(InternalError::from(e).into());
        }
    };
    shared.metrics.pushes_created.inc();
    shared.changes.bump();
    shared.pushes.bump();
    for _ in 0..superseded {
        shared.metrics.outcome(TargetState::Superseded);
    }

    // Send after the commit, so an answer can never arrive for a push the
    // store does not know yet. Offline agents get it on their next Hello.
    let desired = Desired {
        push_id: push.id.clone(),
        hash: push.hash.clone(),
        yaml: push.yaml,
        revert_to_local: push.revert_to_local,
        experiment_id: push.experiment_id.clone().unwrap_or_default(),
        content_type: push.content_type,
        file: push.file,
    };
    let message = config_push(&desired);
    let sent: Vec<String> = targets
        .iter()
        .filter(|agent| shared.fleet.send(agent, message.clone()).is_ok())
        .cloned()
        .collect();
    let store = shared.store.clone();
    let push_id = push.id.clone();
    let sent_for_store = sent.clone();
    match blocking(move || store.mark_applying(&push_id, &sent_for_store, now_ms())).await {
        Ok(Ok(())) => {}
        _ => shared.metrics.store_errors.inc(),
    }
    tracing::info!(
        push = %push.id,
        hash = %push.hash,
        actor = %push.actor.name,
        targets = targets.len(),
        sent = sent.len(),
        "push created"
    );
    let sent: std::collections::HashSet<String> = sent.into_iter().collect();
    let targets = targets
        .into_iter()
        .map(|a| {
            let state = if sent.contains(&a) {
                TargetState::Applying
            } else {
                TargetState::Pending
            };
            (a, state)
        })
        .collect();
    Ok(PushCreated {
        id: push.id,
        hash: push.hash,
        created_at: now,
        deadline,
        targets,
    })
}

/// What an `opaque` push may not ask for; its text is not parsed, only
/// bounded (the API takes it as a JSON string, so it is UTF-8 already).
fn check_opaque(source: &ConfigSource) -> Result<(), PushError> {
    match source {
        ConfigSource::Yaml(text) if text.len() > MAX_OPAQUE_BYTES => Err(PushError::Unfit(
            format!(
                "the config is {} bytes; an opaque push carries at most {MAX_OPAQUE_BYTES}",
                text.len()
            ),
        )),
        ConfigSource::Yaml(_) => Ok(()),
        ConfigSource::Template(name) => Err(PushError::Unfit(format!(
            "templates are Phoenix configs: the template {name:?} cannot be an opaque push"
        ))),
        ConfigSource::RevertToLocal(_) => Err(PushError::Unfit(
            "an opaque push cannot revert to the agents' local config: OpAMP has no way to \
             tell an agent other than Phoenix to go back to its own config; push that config instead"
                .into(),
        )),
    }
}

/// Count what moved: metrics, a log line per finished target, and a
/// change for whoever watches the fleet.
pub(crate) fn count_outcomes(shared: &Shared, changes: &[TargetChange]) {
    if !changes.is_empty() {
        shared.changes.bump();
    }
    for c in changes.iter().filter(|c| c.state.is_final()) {
        shared.metrics.outcome(c.state);
        tracing::info!(push = %c.push_id, agent = %c.agent_id, state = c.state.as_str(), "push target finished");
    }
}

/// Record a Hello and re-offer the agent's desired config if it does not
/// run it.
/// `connected_at` identifies the session (unix ms of its first Hello);
/// `opens_session` is false for a state report within a session.
pub async fn on_hello(
    shared: &Arc<Shared>,
    hello: AgentHello,
    connected_at: i64,
    opens_session: bool,
) -> Result<(), InternalError> {
    let store = shared.store.clone();
    let id = hello.id.clone();
    let outcome = blocking(move || store.hello(&hello, connected_at, now_ms(), opens_session))
        .await?
        .inspect_err(|_| shared.metrics.store_errors.inc())?;
    count_outcomes(shared, &outcome.changes);
    if let Some(desired) = outcome.resend {
        tracing::info!(agent = %id, push = %desired.push_id, hash = %desired.hash, "agent does not run its desired config: sending it");
        let _ = shared.fleet.send(&id, config_push(&desired));
    }
    Ok(())
}

/// Record a ConfigStatus.
pub async fn on_status(shared: &Arc<Shared>, agent_id: &str, report: StatusReport) {
    let store = shared.store.clone();
    let id = agent_id.to_string();
    match blocking(move || store.config_status(&id, &report, now_ms())).await {
        Ok(Ok(changes)) => count_outcomes(shared, &changes),
        Ok(Err(e)) => {
            shared.metrics.store_errors.inc();
            tracing::error!(agent = agent_id, error = %e, "cannot record a config status");
        }
        Err(e) => tracing::error!(agent = agent_id, error = %e, "cannot record a config status"),
    }
}

/// Every tick: close sessions silent past the heartbeat timeout (the agent
/// is offline) and time out pushes past their deadline.
pub fn spawn_reaper(
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
) -> JoinHandle<anyhow::Result<()>> {
    let period =
        (shared.fleet.timeout() / 4).clamp(Duration::from_millis(50), Duration::from_secs(1));
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = crate::stopped(&mut stop) => return Ok(()),
                _ = tick.tick() => {}
            }
            let expired = shared.fleet.expire(Instant::now());
            if !expired.is_empty() {
                shared.changes.bump();
            }
            let store = shared.store.clone();
            let metrics_shared = shared.clone();
            let result = blocking(move || {
                for (agent, connected_at) in &expired {
                    tracing::warn!(agent = %agent, "no message within the heartbeat timeout: agent offline");
                    metrics_shared.metrics.agents_timed_out.inc();
                    store.set_offline(agent, *connected_at)?;
                }
                store.expire_pushes(now_ms())
            })
            .await;
            match result {
                Ok(Ok(changes)) => count_outcomes(&shared, &changes),
                Ok(Err(e)) => {
                    shared.metrics.store_errors.inc();
                    tracing::error!(error = %e, "store maintenance failed");
                }
                Err(e) => tracing::error!(error = %e, "store maintenance failed"),
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_opaque_push_is_text_within_the_bound_and_nothing_phoenix_only() {
        assert!(check_opaque(&ConfigSource::Yaml("anything: [".into())).is_ok());
        let big = ConfigSource::Yaml("x".repeat(MAX_OPAQUE_BYTES + 1));
        assert!(matches!(check_opaque(&big), Err(PushError::Unfit(m)) if m.contains("at most")));
        let template = ConfigSource::Template("process-basic-v1".into());
        assert!(
            matches!(check_opaque(&template), Err(PushError::Unfit(m)) if m.contains("templates are Phoenix configs"))
        );
        let revert = ConfigSource::RevertToLocal("ab".into());
        assert!(
            matches!(check_opaque(&revert), Err(PushError::Unfit(m)) if m.contains("cannot revert"))
        );
    }

    #[test]
    fn a_refused_push_reads_as_before_and_keeps_its_cause() {
        let invalid = PushError::Invalid(vec![
            ConfigError {
                component: Some("exporters.file".into()),
                field: None,
                message: "path outside the allowed directories".into(),
                location: None,
            },
            ConfigError {
                component: None,
                field: None,
                message: "no pipeline".into(),
                location: None,
            },
        ]);
        assert_eq!(
            invalid.to_string(),
            "the config is invalid: path outside the allowed directories; no pipeline"
        );
        let store = PushError::from(InternalError::from(StoreError::TooNew {
            found: 9,
            known: 2,
        }));
        assert!(
            store
                .to_string()
                .starts_with("the database schema is version 9")
        );
        assert!(matches!(
            store,
            PushError::Internal(InternalError::Store(StoreError::TooNew { .. }))
        ));
    }
}
