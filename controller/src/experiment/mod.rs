//! Experiments over the fleet: a definition ([`spec`]) is composed into one
//! agent config running every variant on the same scrape ([`compose`]),
//! deployed to the targets through the fleet's pushes, measured from the
//! agents' interval stats, judged ([`analysis`]) and promoted or rolled
//! back, along the lifecycle in [`state`].
//!
//! Everything lives in the store; the scheduler ([`scheduler`]) only reads
//! it and moves experiments along, so a restarted controller resumes where
//! it stopped. The API and the scheduler act through the functions here,
//! and every state change is a compare-and-set in the store.

pub mod analysis;
pub mod compose;
pub mod guardrails;
pub mod promotion;
pub mod scheduler;
pub mod spec;
pub mod state;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use phoenix_proto::v1::IntervalStats;

use crate::fleet::rollout::{self, ConfigSource, Delivery, InternalError, PushError, PushRequest};
use crate::store::{
    Actor, AgentKind, Disqualified, ExperimentRecord, NewExperiment, Selector, Stamp,
    TransitionError,
};
use crate::{Shared, blocking, now_ms};
use analysis::Measurement;
use compose::Shape;
use guardrails::GuardCheck;
use spec::{ExperimentSpec, SpecError, Timing};
use state::{Lifecycle, State};

/// Why an experiment request was refused. Nothing changed.
#[derive(Debug, thiserror::Error)]
pub enum ExperimentError {
    /// The definition has problems, each naming its field.
    #[error("the experiment is invalid: {}", spec::join(.0))]
    Invalid(Vec<SpecError>),
    #[error("{0}")]
    NotFound(String),
    /// Not possible in the experiment's state (or a concurrent change won).
    #[error("{0}")]
    Conflict(String),
    /// The caller's scope does not allow it.
    #[error("{0}")]
    OutOfScope(String),
    #[error(transparent)]
    Internal(#[from] InternalError),
}

impl From<TransitionError> for ExperimentError {
    fn from(e: TransitionError) -> Self {
        match e {
            TransitionError::NotFound(id) => {
                ExperimentError::NotFound(format!("no experiment {id:?}"))
            }
            e @ TransitionError::Illegal { .. } => ExperimentError::Conflict(e.to_string()),
            TransitionError::Store(e) => internal(e),
        }
    }
}

fn internal(e: impl Into<InternalError>) -> ExperimentError {
    ExperimentError::Internal(e.into())
}

/// What the ingest path needs of a running experiment, kept in memory by
/// the scheduler so that stats of agents in no experiment never touch the
/// store.
#[derive(Debug)]
pub struct Live {
    pub variants: HashSet<String>,
    pub targets: HashSet<String>,
    pub measure_from_ms: i64,
    pub ends_at_ms: i64,
    pub guard: GuardCheck,
}

/// Running experiments by id.
#[derive(Default)]
pub struct LiveSet(RwLock<HashMap<String, Arc<Live>>>);

impl LiveSet {
    fn get(&self, id: &str) -> Option<Arc<Live>> {
        self.0
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(id)
            .cloned()
    }
    /// Publish one running experiment at once: its window may already be
    /// open while the scheduler's pass goes on.
    fn insert(&self, id: String, live: Arc<Live>) {
        self.0
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id, live);
    }
    /// Forget every experiment but these (the others stopped running).
    fn retain(&self, running: &HashSet<String>) {
        self.0
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|id, _| running.contains(id));
    }
}

/// Interim reports, recomputed at most every [`INTERIM_REFRESH`] per
/// experiment: the bootstrap over a large running experiment costs
/// seconds, and live views ask on every change.
#[derive(Default)]
pub struct InterimReports(Mutex<HashMap<String, (Instant, Arc<analysis::Report>)>>);

/// How old an interim report may be.
pub const INTERIM_REFRESH: Duration = Duration::from_secs(5);

impl InterimReports {
    fn fresh(&self, id: &str) -> Option<Arc<analysis::Report>> {
        let map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        map.get(id)
            .filter(|(at, _)| at.elapsed() < INTERIM_REFRESH)
            .map(|(_, v)| v.clone())
    }
    fn keep(&self, id: &str, report: Arc<analysis::Report>) {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        map.retain(|_, (at, _)| at.elapsed() < INTERIM_REFRESH);
        map.insert(id.to_string(), (Instant::now(), report));
    }
}

/// A definition, checked: parsed, composed with the templates into the
/// experiment's config and into each variant's promoted config, and all of
/// them validated by the agent's own loader.
pub struct Checked {
    pub spec: ExperimentSpec,
    pub composed: compose::Composed,
    /// Variant name → the config promoting it pushes, pinned now so that a
    /// template edited later cannot change what was measured.
    pub promotions: BTreeMap<String, String>,
}

pub async fn check(
    shared: &Arc<Shared>,
    text: String,
    id: &str,
) -> Result<Checked, Vec<SpecError>> {
    let dir = shared.settings.templates_dir.clone();
    let id = id.to_string();
    let (spec, composed, promotions) = blocking(move || {
        let spec = ExperimentSpec::parse(&text)?;
        let composed = compose::compose(&dir, &spec, Shape::Experiment { id: &id })?;
        let mut promotions = BTreeMap::new();
        for name in std::iter::once(spec.baseline_name()).chain(spec.candidate_names()) {
            let c = compose::compose(
                &dir,
                &spec,
                Shape::Promoted {
                    id: &id,
                    variant: &name,
                },
            )?;
            promotions.insert(name, c.yaml);
        }
        Ok::<_, Vec<SpecError>>((spec, composed, promotions))
    })
    .await
    .map_err(|_| vec![SpecError::new("", "the definition crashed the validator")])??;
    // Every config the experiment may push is valid, and within the policy
    // of every agent it targets now (each push checks again at deploy).
    let store = shared.store.clone();
    let labels = spec.targets.labels.clone();
    let hosts = spec.targets.hosts.clone();
    let matching: Vec<crate::store::AgentPolicyRow> =
        match blocking(move || store.policies_matching(&labels)).await {
            Ok(Ok(rows)) => rows
                .into_iter()
                .filter(|a| hosts.is_empty() || hosts.contains(&a.host_name))
                .collect(),
            _ => Vec::new(),
        };
    let mut errors = Vec::new();
    // An experiment compares its variants by the per-variant stats only a
    // native Phoenix agent reports: an OpAMP target (even a Phoenix agent
    // speaking OpAMP) could never be measured.
    let opamp: Vec<String> = matching
        .iter()
        .filter(|a| a.kind != AgentKind::Phoenix)
        .map(|a| a.id.clone())
        .collect();
    if !opamp.is_empty() {
        errors.push(SpecError::new(
            "targets",
            format!(
                "{} target(s) are not native Phoenix agents (OpAMP agents): {}; an experiment \
                 needs each target's per-variant stats, which only the native protocol reports",
                opamp.len(),
                crate::store::few(&opamp)
            ),
        ));
    }
    let targets: Arc<Vec<(String, Option<String>)>> = Arc::new(
        matching
            .into_iter()
            .filter(|a| a.kind == AgentKind::Phoenix)
            .map(|a| (a.id, a.policy))
            .collect(),
    );
    let configs = std::iter::once(("composed config".to_string(), &composed.yaml)).chain(
        promotions
            .iter()
            .map(|(name, yaml)| (format!("promoted config of {name}"), yaml)),
    );
    for (field, yaml) in configs {
        let found = match rollout::validate(yaml.clone()).await {
            Err(found) => found,
            Ok(()) => {
                let (yaml, targets) = (yaml.clone(), targets.clone());
                match blocking(move || rollout::check_policies(&yaml, &targets)).await {
                    Ok(Err(found)) => found,
                    _ => Vec::new(),
                }
            }
        };
        errors.extend(found.into_iter().map(|e| {
            SpecError::new(
                field.clone(),
                match &e.component {
                    Some(c) => format!("{c}: {}", e.message),
                    None => e.message.clone(),
                },
            )
        }));
    }
    if errors.is_empty() {
        Ok(Checked {
            spec,
            composed,
            promotions,
        })
    } else {
        Err(errors)
    }
}

/// A fresh experiment id.
fn new_id() -> String {
    format!("exp-{}", &rollout::new_push_id()[..12])
}

/// Create a draft.
pub async fn create(
    shared: &Arc<Shared>,
    text: String,
    actor: Actor,
    scope: Option<&crate::auth::Scope>,
) -> Result<ExperimentRecord, ExperimentError> {
    let id = new_id();
    let Checked {
        spec,
        composed,
        promotions,
    } = check(shared, text, &id)
        .await
        .map_err(ExperimentError::Invalid)?;
    if let Some(why) = scope.and_then(|s| spec.outside(s)) {
        return Err(ExperimentError::OutOfScope(format!(
            "outside the scope of {}: {why}",
            actor.name
        )));
    }
    let timing = spec.timing().map_err(ExperimentError::Invalid)?;
    let new = NewExperiment {
        id: id.clone(),
        name: spec.name.clone(),
        spec: serde_json::to_string(&spec).map_err(internal)?,
        actor,
        config: composed.yaml,
        config_hash: composed.hash,
        promotions: serde_json::to_string(&promotions).map_err(internal)?,
        start_at: timing.start_at_ms,
    };
    let store = shared.store.clone();
    blocking(move || {
        store.create_experiment(&new, now_ms())?;
        store.experiment(&new.id)
    })
    .await
    .map_err(internal)?
    .map_err(internal)?
    .ok_or_else(|| internal(InternalError::Vanished(format!("experiment {id}"))))
}

/// The stored definition of a record.
pub fn spec_of(record: &ExperimentRecord) -> Result<(ExperimentSpec, Timing), ExperimentError> {
    let spec: ExperimentSpec = serde_json::from_str(&record.spec).map_err(internal)?;
    let timing = spec.timing().map_err(ExperimentError::Invalid)?;
    Ok((spec, timing))
}

async fn load(shared: &Arc<Shared>, id: &str) -> Result<ExperimentRecord, ExperimentError> {
    let store = shared.store.clone();
    let lookup = id.to_string();
    blocking(move || store.experiment(&lookup))
        .await
        .map_err(internal)?
        .map_err(internal)?
        .ok_or_else(|| ExperimentError::NotFound(format!("no experiment {id:?}")))
}

/// Move an experiment; counts the transition and logs it.
pub async fn transition(
    shared: &Arc<Shared>,
    id: &str,
    from: Option<State>,
    to: State,
    actor: &Actor,
    reason: String,
    stamp: Stamp,
) -> Result<ExperimentRecord, ExperimentError> {
    let store = shared.store.clone();
    let id_owned = id.to_string();
    let change = crate::store::Transition {
        from,
        to,
        actor: actor.clone(),
        reason: reason.clone(),
        stamp,
    };
    let record = blocking(move || store.transition(&id_owned, &change, now_ms()))
        .await
        .map_err(internal)??;
    shared.metrics.transition(to.as_str());
    shared.changes.bump();
    tracing::info!(experiment = id, state = to.as_str(), actor = %actor.name, reason = %reason, "experiment transition");
    Ok(record)
}

/// `draft → pending`: the scheduler deploys it at its start time.
pub async fn start(
    shared: &Arc<Shared>,
    id: &str,
    actor: &Actor,
) -> Result<ExperimentRecord, ExperimentError> {
    let record = load(shared, id).await?;
    let reason = match record.start_at {
        Some(at) if at > now_ms() => format!("started; deploys at {}", crate::rfc3339_ms(at)),
        _ => "started; deploying now".to_string(),
    };
    transition(
        shared,
        id,
        Some(State::Draft),
        State::Pending,
        actor,
        reason,
        Stamp::default(),
    )
    .await
}

/// Stop: a draft or pending experiment is cancelled; a deploying or running
/// one is cancelled and its targets get their previous config back.
pub async fn stop(
    shared: &Arc<Shared>,
    id: &str,
    actor: &Actor,
) -> Result<ExperimentRecord, ExperimentError> {
    let record = load(shared, id).await?;
    if !record.state.can_go(State::Cancelled) {
        return Err(ExperimentError::Conflict(format!(
            "the experiment is {}: only draft, pending, deploying or running experiments stop{}",
            record.state,
            if record.state.has_deployed() {
                " (use rollback)"
            } else {
                ""
            }
        )));
    }
    let deployed = record.state.has_deployed();
    let stamp = Stamp {
        restore: deployed,
        ..Stamp::finished(now_ms())
    };
    let mut record = transition(
        shared,
        id,
        Some(record.state),
        State::Cancelled,
        actor,
        "stopped by the user".into(),
        stamp,
    )
    .await?;
    if let Some(restored) = restore_claimed(shared, &record, actor).await {
        record.reason = format!("stopped by the user; {}", restored.describe());
        complete_reason(shared, &record).await;
    }
    Ok(record)
}

/// Run the restore the record's last transition asked for, unless another
/// task has taken it (the scheduler redoes one a crash interrupted).
pub async fn restore_claimed(
    shared: &Arc<Shared>,
    record: &ExperimentRecord,
    actor: &Actor,
) -> Option<Restored> {
    let store = shared.store.clone();
    let id = record.id.clone();
    if !matches!(
        blocking(move || store.claim_restore(&id)).await,
        Ok(Ok(true))
    ) {
        return None;
    }
    let restored = restore(shared, record, actor).await;
    let store = shared.store.clone();
    let id = record.id.clone();
    if !matches!(
        blocking(move || store.finish_restore(&id)).await,
        Ok(Ok(()))
    ) {
        shared.metrics.store_errors.inc();
    }
    Some(restored)
}

/// What a restore did.
pub struct Restored {
    pub pushes: Vec<String>,
    pub agents: usize,
    pub errors: Vec<RestoreProblem>,
}

/// A target a restore left alone, or a push it could not make.
#[derive(Debug, thiserror::Error)]
pub enum RestoreProblem {
    #[error("cannot read the targets: {0}")]
    Targets(#[source] InternalError),
    /// An operator pushed to the agent since the experiment.
    #[error("agent {agent} is meant to run push {push}, not this experiment's: left as it is")]
    DesiredElsewhere { agent: String, push: String },
    #[error("agent {0} had reported no config before the experiment: left as it is")]
    NoPreviousConfig(String),
    #[error(transparent)]
    Push(#[from] PushError),
}

impl Restored {
    pub fn describe(&self) -> String {
        let mut s = format!(
            "restored the previous config on {} agent(s) (pushes: {})",
            self.agents,
            if self.pushes.is_empty() {
                "none".to_string()
            } else {
                self.pushes.join(", ")
            }
        );
        if !self.errors.is_empty() {
            let errors: Vec<String> = self.errors.iter().map(ToString::to_string).collect();
            s += &format!("; failed: {}", errors.join("; "));
        }
        s
    }
}

/// Push each target's pre-experiment config back: the stored content when
/// the controller has it, else a revert to the agent's local config.
pub async fn restore(shared: &Arc<Shared>, record: &ExperimentRecord, actor: &Actor) -> Restored {
    let store = shared.store.clone();
    let id = record.id.clone();
    let read = match blocking(move || store.experiment_targets(&id)).await {
        Ok(read) => read.map_err(InternalError::from),
        Err(e) => Err(e.into()),
    };
    let targets = match read {
        Ok(t) => t,
        Err(e) => {
            return Restored {
                pushes: Vec::new(),
                agents: 0,
                errors: vec![RestoreProblem::Targets(e)],
            };
        }
    };
    // One push per previous config.
    let mut groups: BTreeMap<String, (Option<String>, Vec<String>)> = BTreeMap::new();
    let mut errors = Vec::new();
    for t in targets {
        if let Some(push) = t.desired_elsewhere {
            errors.push(RestoreProblem::DesiredElsewhere {
                agent: t.agent_id,
                push,
            });
            continue;
        }
        if t.previous_hash.is_empty() {
            errors.push(RestoreProblem::NoPreviousConfig(t.agent_id));
            continue;
        }
        let g = groups
            .entry(t.previous_hash.clone())
            .or_insert_with(|| (t.previous_content.clone(), Vec::new()));
        g.1.push(t.agent_id);
    }
    let mut pushes = Vec::new();
    let mut agents = 0;
    for (hash, (content, members)) in groups {
        let source = match content {
            Some(yaml) => ConfigSource::Yaml(yaml),
            None => ConfigSource::RevertToLocal(hash),
        };
        let n = members.len();
        let request = PushRequest {
            delivery: Delivery::default(),
            selector: Selector::Agents(members),
            source,
            actor: actor.clone(),
            experiment_id: Some(record.id.clone()),
            within: None,
            timeout: None,
        };
        match rollout::create_push(shared, request).await {
            Ok(p) => {
                pushes.push(p.id);
                agents += n;
            }
            Err(e) => errors.push(e.into()),
        }
    }
    if !errors.is_empty() {
        tracing::error!(experiment = %record.id, errors = ?errors, "restoring the previous configs was incomplete");
    }
    Restored {
        pushes,
        agents,
        errors,
    }
}

/// Roll back: the targets get their pre-experiment config back.
pub async fn rollback(
    shared: &Arc<Shared>,
    id: &str,
    actor: &Actor,
    reason: &str,
) -> Result<ExperimentRecord, ExperimentError> {
    let record = load(shared, id).await?;
    if !record.state.can_go(State::RolledBack) {
        return Err(ExperimentError::Conflict(format!(
            "the experiment is {}: only succeeded, failed, promoting or promoted experiments roll back{}",
            record.state,
            if record.state.can_go(State::Cancelled) {
                " (use stop)"
            } else {
                ""
            }
        )));
    }
    let stamp = Stamp {
        restore: true,
        ..Stamp::finished(now_ms())
    };
    // The state changes first: of two concurrent rollbacks, one restores.
    let mut record = transition(
        shared,
        id,
        Some(record.state),
        State::RolledBack,
        actor,
        reason.to_string(),
        stamp,
    )
    .await?;
    if let Some(restored) = restore_claimed(shared, &record, actor).await {
        record.reason = format!("{reason}; {}", restored.describe());
        complete_reason(shared, &record).await;
    }
    Ok(record)
}

/// Store `record.reason` as the reason of its current state.
pub async fn complete_reason(shared: &Arc<Shared>, record: &ExperimentRecord) {
    let store = shared.store.clone();
    let (id, state, reason) = (record.id.clone(), record.state, record.reason.clone());
    if !matches!(
        blocking(move || store.complete_reason(&id, state, &reason)).await,
        Ok(Ok(()))
    ) {
        shared.metrics.store_errors.inc();
    }
}

/// The agents an experiment targets.
async fn target_ids(shared: &Arc<Shared>, id: &str) -> Result<Vec<String>, ExperimentError> {
    let store = shared.store.clone();
    let lookup = id.to_string();
    Ok(blocking(move || store.experiment_targets(&lookup))
        .await
        .map_err(internal)?
        .map_err(internal)?
        .into_iter()
        .map(|t| t.agent_id)
        .collect())
}

/// What a promote asks for: the variant (default: the verdict's winner),
/// and waves and their watch (default: the definition's, else all at once).
#[derive(Debug, Clone, Default)]
pub struct PromoteRequest {
    pub variant: Option<String>,
    pub waves: Option<Vec<phoenix_api::WavePercent>>,
    pub watch: Option<String>,
}

/// The config promoting `variant` pushes: the one pinned at creation, what
/// was measured, whatever the templates say now.
pub fn promoted_config(
    record: &ExperimentRecord,
    variant: &str,
) -> Result<compose::Composed, ExperimentError> {
    let pinned: BTreeMap<String, String> =
        serde_json::from_str(&record.promotions).map_err(internal)?;
    let Some(yaml) = pinned.get(variant).cloned() else {
        return Err(ExperimentError::Invalid(vec![SpecError::new(
            "variant",
            format!("no variant {variant:?} in this experiment"),
        )]));
    };
    Ok(compose::Composed {
        hash: phoenix_config::config_hash(&yaml),
        yaml,
    })
}

/// Push a promoted config to `agents`, as part of experiment `id`.
pub async fn push_promoted(
    shared: &Arc<Shared>,
    id: &str,
    yaml: String,
    agents: Vec<String>,
    actor: Actor,
) -> Result<rollout::PushCreated, PushError> {
    rollout::create_push(
        shared,
        PushRequest {
            delivery: Delivery::default(),
            selector: Selector::Agents(agents),
            source: ConfigSource::Yaml(yaml),
            actor,
            experiment_id: Some(id.to_string()),
            within: None,
            timeout: None,
        },
    )
    .await
}

/// Promote a succeeded experiment's winner (or the variant asked for) as
/// the targets' new config: at once, or in waves the scheduler rolls out.
pub async fn promote(
    shared: &Arc<Shared>,
    id: &str,
    request: PromoteRequest,
    actor: &Actor,
) -> Result<ExperimentRecord, ExperimentError> {
    let record = load(shared, id).await?;
    if record.state != State::Succeeded {
        return Err(ExperimentError::Conflict(format!(
            "the experiment is {}: only a succeeded experiment can be promoted",
            record.state
        )));
    }
    let winner = record
        .analysis
        .as_deref()
        .and_then(|a| serde_json::from_str::<serde_json::Value>(a).ok())
        .and_then(|a| a.get("winner").and_then(|w| w.as_str()).map(str::to_string));
    let variant = match request.variant.or(winner) {
        Some(v) => v,
        None => {
            return Err(ExperimentError::Conflict(
                "the verdict has no winner: name the variant to promote".into(),
            ));
        }
    };
    let composed = promoted_config(&record, &variant)?;
    // A guardrail took it out of the experiment: what it hid is why.
    let store = shared.store.clone();
    let lookup = id.to_string();
    let disqualified = blocking(move || store.disqualifications(&lookup))
        .await
        .map_err(internal)?
        .map_err(internal)?;
    if let Some(d) = disqualified.iter().find(|d| d.variant == variant) {
        return Err(ExperimentError::Conflict(format!(
            "{variant:?} was disqualified at {}: {}; promote another variant",
            crate::rfc3339_ms(d.at),
            disqualification(d).reason
        )));
    }
    let (spec, _) = spec_of(&record)?;
    let rollout = promotion::Rollout::resolve(&spec, request.waves, request.watch.as_deref())
        .map_err(|e| {
            let (field, message) = e.split_once(": ").unwrap_or(("", &e));
            ExperimentError::Invalid(vec![SpecError::new(field, message)])
        })?;
    let targets = target_ids(shared, id).await?;
    if targets.is_empty() {
        return Err(ExperimentError::Conflict(
            "the experiment has no targets".into(),
        ));
    }
    if let Some(rollout) = rollout {
        return promotion::start(
            shared,
            &record,
            &variant,
            composed.hash,
            &targets,
            rollout,
            actor,
        )
        .await;
    }
    // The state changes first: of a promote and a concurrent rollback (or
    // a second promote), exactly one acts.
    let n = targets.len();
    let mut record = transition(
        shared,
        id,
        Some(State::Succeeded),
        State::Promoted,
        actor,
        format!(
            "promoting {variant:?} to {n} agent(s) (config {})",
            phoenix_config::short_hash(&composed.hash)
        ),
        Stamp::finished(now_ms()),
    )
    .await?;
    let push = push_promoted(shared, id, composed.yaml, targets, actor.clone()).await;
    record.reason = match &push {
        Ok(p) => format!(
            "promoted {variant:?} to {n} agent(s) (push {}, config {})",
            p.id,
            phoenix_config::short_hash(&p.hash)
        ),
        Err(e) => format!(
            "promoting {variant:?} failed: the push was refused: {}; the agents keep the \
             experiment config (roll back, or push a config)",
            e
        ),
    };
    if let Ok(p) = &push {
        record.promoted_push = Some(p.id.clone());
        let store = shared.store.clone();
        let (rid, pid) = (id.to_string(), p.id.clone());
        if !matches!(
            blocking(move || store.set_promoted_push(&rid, &pid)).await,
            Ok(Ok(()))
        ) {
            shared.metrics.store_errors.inc();
        }
    } else {
        tracing::error!(experiment = id, reason = %record.reason, "promotion push refused");
    }
    complete_reason(shared, &record).await;
    Ok(record)
}

/// The final verdict stored with the experiment, when there is one. One
/// that no longer loads is logged (and the caller falls back to an interim
/// analysis) rather than silently taken for "not judged yet".
pub fn stored_verdict(record: &ExperimentRecord) -> Option<analysis::Report> {
    let text = record.analysis.as_deref()?;
    serde_json::from_str(text)
        .inspect_err(|e| {
            tracing::error!(experiment = %record.id, error = %e, "the stored verdict does not load");
        })
        .ok()
}

/// The verdict: the final one, or an interim one on the data so far.
pub async fn report(
    shared: &Arc<Shared>,
    id: &str,
) -> Result<phoenix_api::ExperimentReport, ExperimentError> {
    let record = load(shared, id).await?;
    let (analysis, is_final) = match stored_verdict(&record) {
        Some(a) => (a, true),
        None => match shared.interim.fresh(id) {
            Some(a) => ((*a).clone(), false),
            None => {
                let a = analyse(shared, &record).await?;
                shared.interim.keep(id, Arc::new(a.clone()));
                (a, false)
            }
        },
    };
    // A guardrail abort keeps the numbers up to the breach; the state and
    // its reason say what happened.
    Ok(phoenix_api::ExperimentReport {
        id: record.id,
        state: record.state,
        reason: record.reason,
        is_final,
        analysis,
    })
}

/// Losses kept per candidate and interval (an agent reports at most ten).
const MAX_LOSSES: usize = 10;
/// Longest executable name kept (the kernel's comm is 15 bytes; a path-like
/// name from `cmdline` can be longer).
const MAX_EXECUTABLE: usize = 256;

/// A loss as an agent reported it, if it is one: a plain name and shares
/// from 0 to 1.
fn loss(l: &phoenix_proto::v1::ProcessLoss) -> Option<analysis::Loss> {
    let share = |v: f64| (v.is_finite() && (0.0..=1.0).contains(&v)).then_some(v);
    if l.executable.is_empty()
        || l.executable.len() > MAX_EXECUTABLE
        || l.executable.chars().any(char::is_control)
    {
        return None;
    }
    Some(analysis::Loss {
        executable: l.executable.clone(),
        processes: l.processes,
        cpu_share: share(l.cpu_share)?,
        memory_share: share(l.memory_share)?,
        folded: l.folded,
    })
}

/// A stored disqualification as the API tells it.
pub fn disqualification(d: &Disqualified) -> phoenix_api::Disqualification {
    phoenix_api::Disqualification {
        at: crate::rfc3339_ms(d.at),
        guardrail: d.guardrail.clone(),
        reason: guardrails::BreachNote::parse(&d.breach).message,
    }
}

/// Analyse what is stored so far.
pub async fn analyse(
    shared: &Arc<Shared>,
    record: &ExperimentRecord,
) -> Result<analysis::Report, ExperimentError> {
    let (spec, timing) = spec_of(record)?;
    let store = shared.store.clone();
    let id = record.id.clone();
    blocking(move || {
        let rows = store.measurements(&id, None)?;
        let targets = store.experiment_targets(&id)?.len();
        let losses = store.experiment_losses(&id)?;
        let disqualified = store
            .disqualifications(&id)?
            .iter()
            .map(|d| (d.variant.clone(), disqualification(d)))
            .collect();
        Ok::<_, crate::store::StoreError>(analysis::analyse(
            &spec,
            &timing,
            targets,
            &id,
            &rows,
            &losses,
            &disqualified,
        ))
    })
    .await
    .map_err(internal)?
    .map_err(internal)
}

/// Store the measurements in `stats` if they belong to a running
/// experiment this agent is a target of, after its warm-up and before its
/// end. Cheap when they do not: one map lookup.
pub async fn ingest(shared: &Arc<Shared>, agent_id: &str, stats: &IntervalStats) {
    if stats.experiment_id.is_empty() {
        return;
    }
    let Some(live) = shared.live.get(&stats.experiment_id) else {
        return;
    };
    // The window is the controller's: an agent's clock may be off.
    let t_ms = now_ms();
    if !live.targets.contains(agent_id) || t_ms < live.measure_from_ms || t_ms > live.ends_at_ms {
        return;
    }
    let interval_ns = i64::try_from(stats.time_unix_nano).unwrap_or(i64::MAX);
    // The baseline has no comparison with itself: its critical processes
    // are all visible, as many as the candidates saw.
    let critical_total = stats
        .pipelines
        .iter()
        .filter_map(|p| p.comparison.as_ref())
        .map(|c| c.critical_total)
        .max()
        .unwrap_or(0);
    let rows: Vec<Measurement> = stats
        .pipelines
        .iter()
        .filter_map(|p| {
            let variant = p.pipeline.strip_prefix("metrics/").unwrap_or(&p.pipeline);
            if !live.variants.contains(variant) {
                return None;
            }
            let (total, visible, fidelity) = match &p.comparison {
                Some(c) => (c.critical_total, c.critical_visible, Some(c.topn_fidelity)),
                None => (critical_total, critical_total, None),
            };
            // What an agent sends is not trusted to be a number.
            let finite = |v: f64| Some(v).filter(|f| f.is_finite() && *f >= 0.0);
            Some(Measurement {
                variant: variant.to_string(),
                agent_id: agent_id.to_string(),
                interval_ns,
                series: p.series,
                datapoints: p.datapoints,
                bytes: p.bytes_raw,
                bytes_gzip: p.bytes_gzip,
                cpu_seconds: if p.processing_cpu_seconds.is_finite() {
                    p.processing_cpu_seconds.max(0.0)
                } else {
                    0.0
                },
                critical_total: total,
                critical_visible: visible,
                topn_fidelity: fidelity.and_then(finite),
                cpu_total: finite(p.cpu_total),
                memory_total: finite(p.memory_total),
                losses: p
                    .comparison
                    .iter()
                    .flat_map(|c| &c.losses)
                    .take(MAX_LOSSES)
                    .filter_map(loss)
                    .collect(),
            })
        })
        .collect();
    if rows.is_empty() {
        return;
    }
    let store = shared.store.clone();
    let id = stats.experiment_id.clone();
    let guard = live.guard.clone();
    match blocking(move || store.record_measurements(&id, &rows, now_ms(), &guard)).await {
        Ok(Ok((inserted, disqualified))) => {
            shared.metrics.experiment_measurements.add(inserted as u64);
            for b in &disqualified {
                shared.metrics.disqualification(b.guardrail());
                tracing::warn!(experiment = %stats.experiment_id, guardrail = %b.guardrail(), breach = %b, "guardrail breached: candidate disqualified");
            }
            // The scheduler pushes the config without it at once.
            if !disqualified.is_empty() {
                shared.scheduler_wake.notify_one();
            }
        }
        Ok(Err(e)) => {
            shared.metrics.store_errors.inc();
            tracing::error!(error = %e, "cannot store experiment measurements");
        }
        Err(e) => tracing::error!(error = %e, "cannot store experiment measurements"),
    }
}

/// The in-memory view of a running experiment with these targets. The
/// `disqualified` candidates are neither measured nor checked any more:
/// their verdict is in, and the agents stop running them.
fn live_of(
    record: &ExperimentRecord,
    targets: HashSet<String>,
    disqualified: &HashSet<String>,
) -> Option<Live> {
    let (spec, timing) = spec_of(record).ok()?;
    let candidates: Vec<String> = spec
        .candidate_names()
        .into_iter()
        .filter(|c| !disqualified.contains(c))
        .collect();
    let mut variants: HashSet<String> = candidates.iter().cloned().collect();
    variants.insert(spec.baseline_name());
    Some(Live {
        variants,
        targets,
        measure_from_ms: record.measure_from?,
        ends_at_ms: record.ends_at?,
        guard: GuardCheck {
            candidates,
            min_critical_coverage: spec.guardrails.min_critical_coverage,
            max_cpu_seconds: spec
                .guardrails
                .max_cpu_overhead_percent
                .map(|p| p / 100.0 * timing.interval_ms as f64 / 1000.0),
            intervals: spec.guardrails.intervals,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_restore_names_what_it_left_alone_and_why_a_push_failed() {
        let restored = Restored {
            pushes: vec!["p1".into()],
            agents: 2,
            errors: vec![
                RestoreProblem::DesiredElsewhere {
                    agent: "a".into(),
                    push: "op".into(),
                },
                RestoreProblem::NoPreviousConfig("b".into()),
                PushError::UnknownTemplate("gone".into()).into(),
            ],
        };
        assert_eq!(
            restored.describe(),
            "restored the previous config on 2 agent(s) (pushes: p1); failed: \
             agent a is meant to run push op, not this experiment's: left as it is; \
             agent b had reported no config before the experiment: left as it is; \
             no template \"gone\""
        );
    }

    #[test]
    fn an_invalid_definition_lists_every_problem_with_its_path() {
        let e = ExperimentError::Invalid(vec![
            SpecError::new("criteria.min_series_reduction", "50 must be a fraction"),
            SpecError::new("", "the experiment definition is empty"),
        ]);
        assert_eq!(
            e.to_string(),
            "the experiment is invalid: criteria.min_series_reduction: 50 must be a fraction; \
             the experiment definition is empty"
        );
    }
}
