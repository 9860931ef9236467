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
//! - running: a candidate a guardrail disqualified → the config without it
//!   pushed to the targets, the experiment going on with the others (none
//!   left → failed, then rolled back); an agent error → failed, then rolled
//!   back; the window over → analyzing.
//! - analyzing: the verdict → succeeded (promoted at once with
//!   `auto_promote`) or failed, then rolled back.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::guardrails::{self, BreachNote};
use super::spec::ExperimentSpec;
use super::state::State;
use super::{ExperimentError, compose, internal, live_of, restore, spec_of, transition};
use crate::fleet::rollout::{self, ConfigSource, Delivery, InternalError, PushRequest};
use crate::store::{
    Actor, Disqualified, ExperimentRecord, Selector, Stamp, StoreError, TargetState,
};
use crate::{Shared, blocking, now_ms};

/// How often experiments are looked at (a guardrail breach wakes it early).
pub const TICK: Duration = Duration::from_millis(500);
/// How often old measurements are pruned.
const PRUNE_EVERY: u32 = 120;

/// The scheduler's actions are the controller's own.
fn controller() -> Actor {
    Actor::system(crate::auth::system::CONTROLLER)
}

/// Who makes an experiment's deploy push and its reduced configs' pushes.
fn experiment_actor(record: &ExperimentRecord) -> Actor {
    Actor::system(format!(
        "{}{}",
        crate::auth::system::EXPERIMENT_PREFIX,
        record.id
    ))
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
                let read = blocking(move || {
                    let targets = store.experiment_targets(&lookup)?;
                    let disqualified = store.disqualifications(&lookup)?;
                    Ok::<_, StoreError>((targets, disqualified))
                })
                .await;
                let (targets, disqualified) = match read {
                    Ok(Ok((t, d))) => (
                        t.into_iter().map(|t| t.agent_id).collect(),
                        d.into_iter().map(|d| d.variant).collect(),
                    ),
                    _ => Default::default(),
                };
                if let Some(view) = live_of(&running, targets, &disqualified) {
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
            delivery: Delivery::default(),
            selector: Selector::Agents(targets),
            source: ConfigSource::Yaml(record.config.clone()),
            actor: experiment_actor(&record),
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
    // Stored by a controller from before disqualifications: it aborts, as
    // it did then.
    if let Some(stored) = &record.breach {
        return abort_on_breach(shared, &record, BreachNote::parse(stored)).await;
    }
    let Some(accepted) = act_on_disqualifications(shared, &record, &spec).await? else {
        return Ok(None);
    };
    if spec.guardrails.agent_errors
        && let Some(breach) = agent_error(shared, &record, &accepted).await?
    {
        return abort_on_breach(shared, &record, breach).await;
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

/// Abort a running experiment for a breach of the whole experiment.
async fn abort_on_breach(
    shared: &Arc<Shared>,
    record: &ExperimentRecord,
    BreachNote { guardrail, message }: BreachNote,
) -> Result<Option<ExperimentRecord>, ExperimentError> {
    shared.metrics.breach(guardrail);
    abort_running(
        shared,
        record,
        format!("guardrail {guardrail} breached: {message}"),
    )
    .await
}

/// Fail a running experiment, then roll it back. The numbers up to now
/// stay with the experiment; the verdict is the abort, whatever they would
/// have said.
async fn abort_running(
    shared: &Arc<Shared>,
    record: &ExperimentRecord,
    reason: String,
) -> Result<Option<ExperimentRecord>, ExperimentError> {
    let analysis = super::analyse(shared, record).await.ok().and_then(|mut r| {
        r.verdict = "failed".into();
        r.winner = None;
        r.recommendation = format!("Aborted: {reason}.");
        serde_json::to_string(&r).ok()
    });
    let stamp = Stamp {
        analysis,
        ..Stamp::default()
    };
    fail_and_restore(shared, record, State::Running, reason, stamp).await?;
    Ok(None)
}

/// `"lean": guardrail critical_coverage breached: <its message>`.
fn disqualified_reason(d: &Disqualified) -> String {
    let note = BreachNote::parse(&d.breach);
    format!(
        "{:?}: guardrail {} breached: {}",
        d.variant, note.guardrail, note.message
    )
}

/// Act on the candidates a guardrail disqualified and the scheduler has not
/// acted on: push the experiment's config without them to the targets,
/// the experiment going on with the other candidates; with no candidate
/// left, abort. Returns the config hashes the targets may run now (the
/// composed config's, then each reduced one's), or `None` when the
/// experiment was aborted.
///
/// At most one push per reduced config, across crashes: the rows are
/// claimed with the reduced config's hash before the push, and the push is
/// recorded on them after it. A crash before the push leaves a claim with
/// no push of that hash: it is pushed at the next tick. A crash after it
/// leaves a claim whose push the store has: that push is recorded, not made
/// again (pushing twice would supersede the first on every target for
/// nothing, and push the targets out of step for a moment).
async fn act_on_disqualifications(
    shared: &Arc<Shared>,
    record: &ExperimentRecord,
    spec: &ExperimentSpec,
) -> Result<Option<Vec<String>>, ExperimentError> {
    let store = shared.store.clone();
    let id = record.id.clone();
    let rows = blocking(move || store.disqualifications(&id))
        .await
        .map_err(internal)?
        .map_err(internal)?;
    let mut accepted = vec![record.config_hash.clone()];
    for hash in rows.iter().filter_map(|d| d.config_hash.clone()) {
        if !accepted.contains(&hash) {
            accepted.push(hash);
        }
    }
    let pending: Vec<&Disqualified> = rows.iter().filter(|d| d.push_id.is_none()).collect();
    if pending.is_empty() {
        return Ok(Some(accepted));
    }
    if recover_claims(shared, record, &pending).await? {
        // The rest, if any, at the next tick, on the rows as they are now.
        return Ok(Some(accepted));
    }
    let gone: Vec<String> = rows.iter().map(|d| d.variant.clone()).collect();
    if spec.candidate_names().iter().all(|c| gone.contains(c)) {
        if let Some(last) = rows.last() {
            shared
                .metrics
                .breach(BreachNote::parse(&last.breach).guardrail);
        }
        let reasons: Vec<String> = rows.iter().map(disqualified_reason).collect();
        let reason = format!("every candidate was disqualified: {}", reasons.join("; "));
        abort_running(shared, record, reason).await?;
        return Ok(None);
    }
    match push_without(shared, record, &pending, &gone).await? {
        Some(hash) if !accepted.contains(&hash) => accepted.push(hash),
        Some(_) => {}
        None => return Ok(None),
    }
    Ok(Some(accepted))
}

/// Push the targets the experiment's config without the `gone` candidates
/// (every one disqualified so far), for the `pending` disqualifications.
/// Returns the reduced config's hash, or `None` when the experiment is not
/// running any more (aborted here, or stopped meanwhile).
async fn push_without(
    shared: &Arc<Shared>,
    record: &ExperimentRecord,
    pending: &[&Disqualified],
    gone: &[String],
) -> Result<Option<String>, ExperimentError> {
    let without = gone.join(", ");
    let reduced = match compose::without(&record.config, &record.id, gone) {
        Ok(c) => c,
        // The stored config is the controller's own: this is not expected,
        // and not worth retrying every tick.
        Err(e) => {
            let why = format!("cannot compose the config without {without}: {e}");
            return give_up(shared, record, pending, why).await;
        }
    };
    let store = shared.store.clone();
    let (id, hash) = (record.id.clone(), reduced.hash.clone());
    let variants: Vec<String> = pending.iter().map(|d| d.variant.clone()).collect();
    let claimed = blocking(move || store.claim_disqualifications(&id, &variants, &hash))
        .await
        .map_err(internal)?
        .map_err(internal)?;
    if claimed == 0 {
        // Pushed meanwhile: nothing left to push.
        return Ok(Some(reduced.hash));
    }
    let push = rollout::create_push(
        shared,
        PushRequest {
            delivery: Delivery::default(),
            selector: Selector::Agents(super::target_ids(shared, &record.id).await?),
            source: ConfigSource::Yaml(reduced.yaml),
            actor: experiment_actor(record),
            // The experiment's: a stop or rollback still restores these
            // agents, and an operator's push since is still told apart.
            experiment_id: Some(record.id.clone()),
            within: None,
            timeout: None,
        },
    )
    .await;
    let push = match push {
        Ok(p) => p,
        Err(e) => {
            let why = format!("the config without {without} was refused: {e}");
            return give_up(shared, record, pending, why).await;
        }
    };
    let running = record_push(shared, record, &reduced.hash, &push.id, pending).await?;
    Ok(running.then_some(reduced.hash))
}

/// Abort for want of the config without the `pending` disqualifications:
/// `why` it could not be had.
async fn give_up(
    shared: &Arc<Shared>,
    record: &ExperimentRecord,
    pending: &[&Disqualified],
    why: String,
) -> Result<Option<String>, ExperimentError> {
    let reasons: Vec<String> = pending.iter().map(|d| disqualified_reason(d)).collect();
    let reason = format!("disqualified {}; {why}", reasons.join("; "));
    abort_running(shared, record, reason).await?;
    Ok(None)
}

/// Record `push_id`, which took the config `hash` to the targets, on the
/// `disqualified` rows claimed with that hash, each with its note in the
/// timeline. False when the experiment is not running any more (stopped
/// or aborted while the push was made): the push is undone too.
async fn record_push(
    shared: &Arc<Shared>,
    record: &ExperimentRecord,
    hash: &str,
    push_id: &str,
    disqualified: &[&Disqualified],
) -> Result<bool, ExperimentError> {
    let notes: Vec<(String, String)> = disqualified
        .iter()
        .map(|d| {
            let note = format!(
                "disqualified {}; the agents stop running it (push {push_id})",
                disqualified_reason(d)
            );
            (d.variant.clone(), note)
        })
        .collect();
    for (variant, note) in &notes {
        tracing::warn!(experiment = %record.id, variant = %variant, "{note}");
    }
    let store = shared.store.clone();
    let (id, hash, push_id) = (record.id.clone(), hash.to_string(), push_id.to_string());
    let recorded = blocking(move || {
        store.record_disqualification_push(&id, &hash, &push_id, &notes, &controller(), now_ms())
    })
    .await
    .map_err(internal)?
    .map_err(internal)?;
    shared.changes.bump();
    if !recorded {
        let restored = restore(shared, record, &controller()).await;
        tracing::info!(experiment = %record.id, "stopped while disqualifying; {}", restored.describe());
    }
    Ok(recorded)
}

/// Claims a crash left between a reduced config's push and its record:
/// those whose push the store has are recorded now. True when any was.
async fn recover_claims(
    shared: &Arc<Shared>,
    record: &ExperimentRecord,
    pending: &[&Disqualified],
) -> Result<bool, ExperimentError> {
    let mut hashes: Vec<&str> = pending
        .iter()
        .filter_map(|d| d.config_hash.as_deref())
        .collect();
    hashes.sort_unstable();
    hashes.dedup();
    let mut recovered = false;
    for hash in hashes {
        let store = shared.store.clone();
        let (id, lookup) = (record.id.clone(), hash.to_string());
        let Some(push_id) = blocking(move || store.experiment_push_of(&id, &lookup))
            .await
            .map_err(internal)?
            .map_err(internal)?
        else {
            continue;
        };
        let claimed: Vec<&Disqualified> = pending
            .iter()
            .filter(|d| d.config_hash.as_deref() == Some(hash))
            .copied()
            .collect();
        tracing::warn!(experiment = %record.id, push = %push_id, "recording a disqualification push an interrupted step left");
        record_push(shared, record, hash, &push_id, &claimed).await?;
        recovered = true;
    }
    Ok(recovered)
}

/// A target that does not run one of the experiment's configs (`accepted`).
async fn agent_error(
    shared: &Arc<Shared>,
    record: &ExperimentRecord,
    accepted: &[String],
) -> Result<Option<BreachNote>, ExperimentError> {
    let store = shared.store.clone();
    let id = record.id.clone();
    let targets = blocking(move || store.experiment_targets(&id))
        .await
        .map_err(internal)?
        .map_err(internal)?;
    Ok(guardrails::agent_error(&targets, accepted)
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
