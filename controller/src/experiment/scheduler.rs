//! The scheduler: every tick, each active experiment in the store is moved
//! along its lifecycle. It keeps no state of its own beyond the in-memory
//! view of running experiments it rebuilds each tick, so a restarted
//! controller picks up every experiment where the store says it is.
//!
//! - pending: deploy at the start time (targets resolved now, among online
//!   agents; the config each runs is recorded for the rollback).
//! - deploying: every target applied → running, with the warm-up and the
//!   window fixed from now; a target failed, timed out or was superseded,
//!   or the deploy timeout passed → failed, then rolled back.
//! - running: a guardrail breach → failed, then rolled back; the window
//!   over → analyzing.
//! - analyzing: the verdict → succeeded (promoted at once with
//!   `auto_promote`) or failed, then rolled back.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::guardrails::{self, BreachNote};
use super::state::State;
use super::{ExperimentError, internal, live_of, restore, spec_of, transition};
use crate::fleet::rollout::{self, ConfigSource, InternalError, PushRequest};
use crate::store::{Actor, ExperimentRecord, Selector, Stamp, TargetState};
use crate::{Shared, blocking, now_ms};

/// How often experiments are looked at (a guardrail breach wakes it early).
pub const TICK: Duration = Duration::from_millis(500);
/// How often old measurements are pruned.
const PRUNE_EVERY: u32 = 120;

/// The scheduler's actions are the controller's own.
fn controller() -> Actor {
    Actor::system(crate::auth::system::CONTROLLER)
}

pub fn spawn(
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
) -> JoinHandle<anyhow::Result<()>> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut ticks: u32 = 0;
        loop {
            tokio::select! {
                _ = crate::stopped(&mut stop) => return Ok(()),
                _ = tick.tick() => {}
                _ = shared.scheduler_wake.notified() => {}
            }
            run_once(&shared).await;
            ticks = ticks.wrapping_add(1);
            if ticks.is_multiple_of(PRUNE_EVERY) {
                prune(&shared).await;
            }
        }
    })
}

/// One pass over the active experiments.
pub async fn run_once(shared: &Arc<Shared>) {
    redo_restores(shared).await;
    let store = shared.store.clone();
    let active = match blocking(move || store.active_experiments()).await {
        Ok(Ok(a)) => a,
        Ok(Err(e)) => {
            shared.metrics.store_errors.inc();
            tracing::error!(error = %e, "cannot read the active experiments");
            return;
        }
        Err(e) => {
            tracing::error!(error = %e, "cannot read the active experiments");
            return;
        }
    };
    let mut still_running = HashSet::new();
    for record in active {
        let id = record.id.clone();
        let result = match record.state {
            State::Pending => deploy_when_due(shared, record).await,
            State::Deploying => watch_deploy(shared, record).await,
            State::Running => watch_run(shared, record).await,
            State::Analyzing => conclude(shared, record).await,
            State::Promoting => super::promotion::advance(shared, record)
                .await
                .map(|_| None),
            _ => Ok(None),
        };
        match result {
            Ok(Some(running)) => {
                let store = shared.store.clone();
                let lookup = id.clone();
                let targets = match blocking(move || store.experiment_targets(&lookup)).await {
                    Ok(Ok(t)) => t.into_iter().map(|t| t.agent_id).collect(),
                    _ => Default::default(),
                };
                if let Some(view) = live_of(&running, targets) {
                    still_running.insert(id.clone());
                    shared.live.insert(id, Arc::new(view));
                }
            }
            Ok(None) => {}
            // A concurrent user action won: nothing to do.
            Err(ExperimentError::Conflict(m)) => tracing::debug!(experiment = %id, "{m}"),
            Err(e) => tracing::error!(experiment = %id, error = %e, "experiment step failed"),
        }
    }
    shared.live.retain(&still_running);
}

/// Fail (from `from`), then give the targets their previous config back.
async fn fail_and_restore(
    shared: &Arc<Shared>,
    record: &ExperimentRecord,
    from: State,
    reason: String,
    mut stamp: Stamp,
) -> Result<(), ExperimentError> {
    stamp.finished_at.get_or_insert_with(now_ms);
    stamp.restore = true;
    let failed = transition(
        shared,
        &record.id,
        Some(from),
        State::Failed,
        &controller(),
        reason,
        stamp,
    )
    .await?;
    if let Some(restored) = super::restore_claimed(shared, &failed, &controller()).await {
        conclude_restore(shared, failed, restored).await?;
    }
    Ok(())
}

/// After a restore: a failed experiment is rolled back; any other keeps its
/// state, its reason completed with what was restored.
async fn conclude_restore(
    shared: &Arc<Shared>,
    mut record: ExperimentRecord,
    restored: super::Restored,
) -> Result<(), ExperimentError> {
    let reason = format!("{}; {}", record.reason, restored.describe());
    if record.state == State::Failed {
        transition(
            shared,
            &record.id,
            Some(State::Failed),
            State::RolledBack,
            &controller(),
            reason,
            Stamp::default(),
        )
        .await?;
    } else {
        record.reason = reason;
        super::complete_reason(shared, &record).await;
    }
    Ok(())
}

/// Restores their transitions asked for and nobody ran: a crash came in
/// between (or the controller stopped during one).
async fn redo_restores(shared: &Arc<Shared>) {
    let store = shared.store.clone();
    let pending = match blocking(move || store.pending_restores()).await {
        Ok(Ok(p)) => p,
        _ => {
            shared.metrics.store_errors.inc();
            return;
        }
    };
    for record in pending {
        let id = record.id.clone();
        tracing::warn!(experiment = %id, state = %record.state, "restoring the previous configs an interrupted step left");
        if let Some(restored) = super::restore_claimed(shared, &record, &controller()).await
            && let Err(e) = conclude_restore(shared, record, restored).await
        {
            tracing::error!(experiment = %id, error = %e, "cannot record the restore");
        }
    }
}

/// [`fail_and_restore`] for a step that has nothing else to record; the
/// step's answer (no running experiment to publish).
async fn abort(
    shared: &Arc<Shared>,
    record: &ExperimentRecord,
    from: State,
    reason: String,
) -> Result<Option<ExperimentRecord>, ExperimentError> {
    fail_and_restore(shared, record, from, reason, Stamp::default()).await?;
    Ok(None)
}

async fn deploy_when_due(
    shared: &Arc<Shared>,
    record: ExperimentRecord,
) -> Result<Option<ExperimentRecord>, ExperimentError> {
    let now = now_ms();
    if record.start_at.is_some_and(|at| at > now)
        || shared
            .reconnect_grace_until
            .is_some_and(|until| std::time::Instant::now() < until)
    {
        return Ok(None);
    }
    let (spec, timing) = spec_of(&record)?;
    let store = shared.store.clone();
    let (labels, hosts, id) = (
        spec.targets.labels.clone(),
        spec.targets.hosts.clone(),
        record.id.clone(),
    );
    let (targets, busy) = blocking(move || {
        let targets = store.online_agents(&labels, &hosts)?;
        let busy = store.agents_in_experiments(&targets, &id)?;
        Ok::<_, crate::store::StoreError>((targets, busy))
    })
    .await
    .map_err(internal)?
    .map_err(internal)?;
    let refuse = if targets.is_empty() {
        Some("no online agent matches the targets".to_string())
    } else if !busy.is_empty() {
        let list: Vec<String> = busy.iter().map(|(a, e)| format!("{a} (in {e})")).collect();
        Some(format!(
            "targets are in another experiment: {}; an agent runs one experiment at a time",
            list.join(", ")
        ))
    } else {
        None
    };
    if let Some(reason) = refuse {
        // Nothing was pushed: failed, with nothing to roll back.
        transition(
            shared,
            &record.id,
            Some(State::Pending),
            State::Deploying,
            &controller(),
            "deploying".into(),
            Stamp {
                deploying_at: Some(now),
                ..Stamp::default()
            },
        )
        .await?;
        transition(
            shared,
            &record.id,
            Some(State::Deploying),
            State::Failed,
            &controller(),
            reason,
            Stamp::finished(now_ms()),
        )
        .await?;
        return Ok(None);
    }
    let store = shared.store.clone();
    let (id, t) = (record.id.clone(), targets.clone());
    blocking(move || store.set_experiment_targets(&id, &t))
        .await
        .map_err(internal)?
        .map_err(internal)?;
    // Deploying before the push: a stop from now on restores the targets.
    let n = targets.len();
    transition(
        shared,
        &record.id,
        Some(State::Pending),
        State::Deploying,
        &controller(),
        format!("pushing the experiment config to {n} agent(s)"),
        Stamp {
            deploying_at: Some(now),
            ..Stamp::default()
        },
    )
    .await?;
    let push = rollout::create_push(
        shared,
        PushRequest {
            selector: Selector::Agents(targets),
            source: ConfigSource::Yaml(record.config.clone()),
            actor: Actor::system(format!(
                "{}{}",
                crate::auth::system::EXPERIMENT_PREFIX,
                record.id
            )),
            experiment_id: Some(record.id.clone()),
            within: None,
            // The experiment's own deadline, not the controller's default.
            timeout: Some(std::time::Duration::from_millis(
                u64::try_from(timing.deploy_timeout_ms).unwrap_or(0),
            )),
        },
    )
    .await;
    match push {
        Ok(p) => {
            let store = shared.store.clone();
            let (id, push_id) = (record.id.clone(), p.id.clone());
            let still_deploying = blocking(move || store.set_deploy_push(&id, &push_id))
                .await
                .map_err(internal)?
                .map_err(internal)?;
            if !still_deploying {
                // Stopped while the push was made: undo it too.
                let restored = restore(shared, &record, &controller()).await;
                tracing::info!(experiment = %record.id, "stopped during the deploy; {}", restored.describe());
            }
        }
        Err(e) => {
            transition(
                shared,
                &record.id,
                Some(State::Deploying),
                State::Failed,
                &controller(),
                format!("the deploy push was refused: {e}"),
                Stamp::finished(now_ms()),
            )
            .await?;
        }
    }
    Ok(None)
}

async fn watch_deploy(
    shared: &Arc<Shared>,
    record: ExperimentRecord,
) -> Result<Option<ExperimentRecord>, ExperimentError> {
    let (_, timing) = spec_of(&record)?;
    let Some(push_id) = record.deploy_push.clone() else {
        // The push is being made (or the controller stopped in between:
        // the deploy timeout below ends that).
        let since = record.deploying_at.unwrap_or(record.updated_at);
        if now_ms() - since > timing.deploy_timeout_ms {
            let reason = "deploy timed out: no deploy push was recorded".to_string();
            return abort(shared, &record, State::Deploying, reason).await;
        }
        return Ok(None);
    };
    let store = shared.store.clone();
    let push = blocking(move || store.push(&push_id, None))
        .await
        .map_err(internal)?
        .map_err(internal)?
        .ok_or_else(|| internal(InternalError::Vanished("the deploy push".into())))?;
    let bad = failed_targets(&push.targets);
    let now = now_ms();
    if !bad.is_empty() {
        let reason = format!("deploy failed: {}", bad.join("; "));
        return abort(shared, &record, State::Deploying, reason).await;
    }
    if push.targets.iter().all(|t| t.state == TargetState::Applied) {
        let measure_from = now + timing.warmup_ms;
        let ends_at = measure_from + timing.duration_ms;
        let running = transition(
            shared,
            &record.id,
            Some(State::Deploying),
            State::Running,
            &controller(),
            format!(
                "all {} agent(s) run the experiment config; measuring from {} to {}",
                push.targets.len(),
                crate::rfc3339_ms(measure_from),
                crate::rfc3339_ms(ends_at)
            ),
            Stamp {
                running_at: Some(now),
                measure_from: Some(measure_from),
                ends_at: Some(ends_at),
                ..Stamp::default()
            },
        )
        .await?;
        return Ok(Some(running));
    }
    let since = record.deploying_at.unwrap_or(record.updated_at);
    if now - since > timing.deploy_timeout_ms {
        let waiting: Vec<String> = push
            .targets
            .iter()
            .filter(|t| t.state != TargetState::Applied)
            .map(|t| format!("{} ({})", t.agent_id, t.state.as_str()))
            .collect();
        let reason = format!(
            "deploy timed out after {} ms waiting for {}",
            timing.deploy_timeout_ms,
            waiting.join(", ")
        );
        return abort(shared, &record, State::Deploying, reason).await;
    }
    Ok(None)
}

/// The targets of a push that will not apply it (failed, timed out or
/// superseded), each as `agent state: error`.
pub(super) fn failed_targets(targets: &[crate::store::TargetRecord]) -> Vec<String> {
    targets
        .iter()
        .filter(|t| {
            matches!(
                t.state,
                TargetState::Failed | TargetState::Timeout | TargetState::Superseded
            )
        })
        .map(|t| {
            format!(
                "{} {}{}",
                t.agent_id,
                t.state.as_str(),
                if t.error.is_empty() {
                    String::new()
                } else {
                    format!(": {}", t.error)
                }
            )
        })
        .collect()
}

async fn watch_run(
    shared: &Arc<Shared>,
    record: ExperimentRecord,
) -> Result<Option<ExperimentRecord>, ExperimentError> {
    let (spec, _) = spec_of(&record)?;
    let now = now_ms();
    let breach = match &record.breach {
        Some(stored) => Some(BreachNote::parse(stored)),
        None if spec.guardrails.agent_errors => agent_error(shared, &record).await?,
        None => None,
    };
    if let Some(BreachNote { guardrail, message }) = breach {
        shared.metrics.breach(guardrail);
        let reason = format!("guardrail {guardrail} breached: {message}");
        // The numbers up to the breach stay with the experiment; the
        // verdict is the abort, whatever they would have said.
        let analysis = super::analyse(shared, &record)
            .await
            .ok()
            .and_then(|mut r| {
                r.verdict = "failed".into();
                r.winner = None;
                r.recommendation = format!("Aborted: {reason}.");
                serde_json::to_string(&r).ok()
            });
        let stamp = Stamp {
            analysis,
            ..Stamp::default()
        };
        return fail_and_restore(shared, &record, State::Running, reason, stamp)
            .await
            .map(|_| None);
    }
    if record.ends_at.is_some_and(|end| now >= end) {
        transition(
            shared,
            &record.id,
            Some(State::Running),
            State::Analyzing,
            &controller(),
            "the measurement window is over".into(),
            Stamp::default(),
        )
        .await?;
        return Ok(None);
    }
    Ok(Some(record))
}

/// A target that does not run the experiment's config any more.
async fn agent_error(
    shared: &Arc<Shared>,
    record: &ExperimentRecord,
) -> Result<Option<BreachNote>, ExperimentError> {
    let store = shared.store.clone();
    let id = record.id.clone();
    let targets = blocking(move || store.experiment_targets(&id))
        .await
        .map_err(internal)?
        .map_err(internal)?;
    Ok(guardrails::agent_error(&targets, &record.config_hash)
        .as_ref()
        .map(BreachNote::from))
}

async fn conclude(
    shared: &Arc<Shared>,
    record: ExperimentRecord,
) -> Result<Option<ExperimentRecord>, ExperimentError> {
    let (spec, _) = spec_of(&record)?;
    let report = super::analyse(shared, &record).await?;
    let json = serde_json::to_string(&report).map_err(internal)?;
    let stamp = Stamp {
        analysis: Some(json),
        finished_at: Some(now_ms()),
        ..Stamp::default()
    };
    if report.winner.is_some() {
        transition(
            shared,
            &record.id,
            Some(State::Analyzing),
            State::Succeeded,
            &controller(),
            report.recommendation.clone(),
            stamp,
        )
        .await?;
        if spec.auto_promote
            && let Err(e) =
                super::promote(shared, &record.id, Default::default(), &controller()).await
        {
            tracing::error!(experiment = %record.id, error = %e, "auto-promote failed: promote it by hand");
        }
    } else {
        fail_and_restore(
            shared,
            &record,
            State::Analyzing,
            report.recommendation.clone(),
            stamp,
        )
        .await?;
    }
    Ok(None)
}

/// Drop measurements past the retention.
async fn prune(shared: &Arc<Shared>) {
    let before = now_ms() - shared.settings.experiment_retention.as_millis() as i64;
    let store = shared.store.clone();
    match blocking(move || store.prune_measurements(before)).await {
        Ok(Ok(0)) => {}
        Ok(Ok(n)) => tracing::info!(
            rows = n,
            "pruned experiment measurements past their retention"
        ),
        Ok(Err(e)) => {
            shared.metrics.store_errors.inc();
            tracing::error!(error = %e, "cannot prune experiment measurements");
        }
        Err(e) => tracing::error!(error = %e, "cannot prune experiment measurements"),
    }
}
