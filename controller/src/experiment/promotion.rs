//! Promotion in waves: the winner goes to a share of the targets at a time
//! (`10%,50%,100%`), and each wave is watched before the next. A promoted
//! agent that fails the config, runs another one, stops reporting, exports
//! fewer series than the experiment measured on it (beyond a tolerance), or
//! keeps fewer critical processes visible than it did, stops the rollout:
//! the experiment is rolled back, every target getting its pre-experiment
//! config again.
//!
//! The plan and each wave's progress live in the store; the scheduler moves
//! a `promoting` experiment one step per tick, so a restarted controller
//! goes on with the wave it was on.

use std::collections::HashMap;
use std::sync::Arc;

use phoenix_api::{WavePercent, WaveState};
use serde::Deserialize;

use super::spec::ExperimentSpec;
use super::state::State;
use super::{ExperimentError, internal, transition};
use crate::fleet::rollout::InternalError;
use crate::store::promotions::{NewPromotion, PromotionRecord, WaveChange, WaveRecord};
use crate::store::{Actor, ExperimentRecord, ReportedState, Stamp, TargetState};
use crate::{Shared, blocking, now_ms, rfc3339_ms};

/// How a promotion rolls out, from the request and the definition.
#[derive(Debug, Clone, PartialEq)]
pub struct Rollout {
    pub waves: Vec<WavePercent>,
    pub watch_ms: i64,
    pub max_series_drop: f64,
}

impl Rollout {
    /// In waves when the request or the definition names them; `None`: all
    /// at once. The request's values win over the definition's.
    pub fn resolve(
        spec: &ExperimentSpec,
        waves: Option<Vec<WavePercent>>,
        watch: Option<&str>,
    ) -> Result<Option<Rollout>, String> {
        let defaults = spec.promotion.clone().unwrap_or_default();
        let waves = waves.unwrap_or(defaults.waves);
        if waves.is_empty() {
            return match watch {
                Some(_) => Err("watch: only a promotion in waves is watched (give waves)".into()),
                None => Ok(None),
            };
        }
        WavePercent::check(&waves).map_err(|e| format!("waves: {e}"))?;
        let watch_ms = super::spec::watch_ms(watch.unwrap_or(&defaults.watch))
            .map_err(|e| format!("watch: {e}"))?;
        Ok(Some(Rollout {
            waves,
            watch_ms,
            max_series_drop: defaults.max_series_drop,
        }))
    }

    /// `3 waves (10%, 50%, 100%)`.
    fn describe(&self) -> String {
        let shares: Vec<String> = self.waves.iter().map(ToString::to_string).collect();
        format!(
            "{} wave(s) ({}), each watched for {}",
            self.waves.len(),
            shares.join(", "),
            short_duration(self.watch_ms)
        )
    }
}

/// `90000` → `90s`, `120000` → `2m`: the way a definition writes it.
fn short_duration(ms: i64) -> String {
    match ms {
        m if m % 60_000 == 0 => format!("{}m", m / 60_000),
        m if m % 1000 == 0 => format!("{}s", m / 1000),
        m => format!("{m}ms"),
    }
}

/// Split `targets` into waves: wave i brings the promoted share to its
/// percent of them (rounded up, at least one agent more than the wave
/// before). Agents go in id order; a wave that would add none is left out.
pub fn plan(targets: &[String], waves: &[WavePercent]) -> Vec<(u8, Vec<String>)> {
    let mut sorted = targets.to_vec();
    sorted.sort();
    sorted.dedup();
    let n = sorted.len();
    let mut out = Vec::new();
    let mut done = 0;
    for w in waves {
        let reach = (n * usize::from(w.0)).div_ceil(100).max(done + 1).min(n);
        if reach > done {
            out.push((w.0, sorted[done..reach].to_vec()));
            done = reach;
        }
    }
    out
}

/// `succeeded → promoting`, with the plan. The scheduler pushes the first
/// wave at its next tick.
pub async fn start(
    shared: &Arc<Shared>,
    record: &ExperimentRecord,
    variant: &str,
    config_hash: String,
    targets: &[String],
    rollout: Rollout,
    actor: &Actor,
) -> Result<ExperimentRecord, ExperimentError> {
    let waves = plan(targets, &rollout.waves);
    let sizes: Vec<String> = waves.iter().map(|(_, a)| a.len().to_string()).collect();
    let reason = format!(
        "promoting {variant:?} to {} agent(s) in {}: {} agent(s) per wave (config {})",
        targets.len(),
        rollout.describe(),
        sizes.join(", "),
        phoenix_config::short_hash(&config_hash)
    );
    transition(
        shared,
        &record.id,
        Some(State::Succeeded),
        State::Promoting,
        actor,
        reason,
        Stamp {
            promotion: Some(NewPromotion {
                variant: variant.to_string(),
                config_hash,
                watch_ms: rollout.watch_ms,
                max_series_drop: rollout.max_series_drop,
                waves,
            }),
            ..Stamp::default()
        },
    )
    .await
}

/// The scheduler's actions are the controller's own.
fn controller() -> Actor {
    Actor::system(crate::auth::system::CONTROLLER)
}

/// One step of a promoting experiment.
pub async fn advance(
    shared: &Arc<Shared>,
    record: ExperimentRecord,
) -> Result<(), ExperimentError> {
    let store = shared.store.clone();
    let id = record.id.clone();
    let Some(promotion) = blocking(move || store.promotion(&id))
        .await
        .map_err(internal)?
        .map_err(internal)?
    else {
        // Written with the transition: only a database edited by hand
        // lacks it. Nothing can be judged; the targets go back.
        return stop(
            shared,
            &record,
            None,
            "the promotion plan is missing".into(),
        )
        .await;
    };
    let total = promotion.waves.len();
    let Some(wave) = promotion
        .waves
        .iter()
        .find(|w| w.state != WaveState::Passed)
    else {
        return finish(shared, &record, &promotion).await;
    };
    let step = Step {
        shared,
        record: &record,
        promotion: &promotion,
        wave,
        label: format!("wave {} of {total}", wave.number),
    };
    match wave.state {
        WaveState::Pending => push_wave(&step).await,
        WaveState::Deploying => watch_deploy(&step).await,
        WaveState::Watching => watch_wave(&step).await,
        // Failed, and the controller stopped before the rollback: do it now.
        WaveState::Failed | WaveState::Skipped => {
            let reason = format!("{} stopped the promotion: {}", step.label, wave.reason);
            stop(shared, &record, None, reason).await
        }
        WaveState::Passed => Ok(()),
    }
}

/// The wave a step acts on, with what it needs.
struct Step<'a> {
    shared: &'a Arc<Shared>,
    record: &'a ExperimentRecord,
    promotion: &'a PromotionRecord,
    wave: &'a WaveRecord,
    /// `wave 2 of 3`, what the reasons start with.
    label: String,
}

impl<'a> Step<'a> {
    fn parts(
        &self,
    ) -> (
        &'a Arc<Shared>,
        &'a ExperimentRecord,
        &'a PromotionRecord,
        &'a WaveRecord,
    ) {
        (self.shared, self.record, self.promotion, self.wave)
    }

    /// The wave fails for `why`, and the rollout stops.
    async fn fail(&self, why: String) -> Result<(), ExperimentError> {
        let reason = format!("{}: {why}", self.label);
        stop(self.shared, self.record, Some(self.wave), reason).await
    }
}

async fn push_wave(step: &Step<'_>) -> Result<(), ExperimentError> {
    let (shared, record, promotion, wave) = step.parts();
    let yaml = super::promoted_config(record, &promotion.variant)?.yaml;
    // A crash between the push and the row below pushes the wave again at
    // the next start: the same config to the same agents, which they
    // already run.
    let actor = Actor::system(format!(
        "{}{}",
        crate::auth::system::EXPERIMENT_PREFIX,
        record.id
    ));
    let pushed = super::push_promoted(shared, &record.id, yaml, wave.agents.clone(), actor).await;
    match pushed {
        Ok(p) => {
            let change = WaveChange {
                push_id: Some(p.id),
                started_at: Some(now_ms()),
                ..WaveChange::to(WaveState::Deploying)
            };
            advance_wave(shared, record, wave, change).await?;
            Ok(())
        }
        Err(e) => {
            let why = format!("the push was refused: {e}");
            step.fail(why).await
        }
    }
}

async fn watch_deploy(step: &Step<'_>) -> Result<(), ExperimentError> {
    let (shared, record, promotion, wave) = step.parts();
    let Some(push_id) = wave.push_id.clone() else {
        return step.fail("no push recorded".into()).await;
    };
    let store = shared.store.clone();
    let push = blocking(move || store.push(&push_id, None))
        .await
        .map_err(internal)?
        .map_err(internal)?
        .ok_or_else(|| internal(InternalError::Vanished("a wave's push".into())))?;
    let bad = super::scheduler::failed_targets(&push.targets);
    if !bad.is_empty() {
        let why = format!("the promoted config failed: {}", bad.join("; "));
        return step.fail(why).await;
    }
    if push.targets.iter().all(|t| t.state == TargetState::Applied) {
        // The first intervals of a new pipeline lack what needs two scrapes
        // (rates): the watch judges from after the experiment's own warm-up.
        let (_, timing) = super::spec_of(record)?;
        let from = now_ms() + timing.warmup_ms;
        let change = WaveChange {
            watch_until: Some(from + promotion.watch_ms),
            ..WaveChange::to(WaveState::Watching)
        };
        if advance_wave(shared, record, wave, change).await? {
            note(
                shared,
                record,
                format!(
                    "{}: {} agent(s) run the promoted config; watching from {} until {}",
                    step.label,
                    wave.agents.len(),
                    rfc3339_ms(from),
                    rfc3339_ms(from + promotion.watch_ms)
                ),
            )
            .await;
        }
    }
    Ok(())
}

/// A pipeline of an agent's latest stats, as far as the watch needs it.
#[derive(Debug, Deserialize)]
struct PipelineSeen {
    pipeline: String,
    series: u64,
    /// Absent from agents that do not count critical processes per
    /// pipeline.
    #[serde(default)]
    critical_total: u64,
    #[serde(default)]
    critical_visible: u64,
}

#[derive(Debug, Deserialize)]
struct StatsSeen {
    pipelines: Vec<PipelineSeen>,
}

/// What the watch holds against one promoted agent.
#[derive(Debug, Clone, PartialEq)]
pub struct Expectation {
    /// The lowest series the experiment measured on it, less the tolerance.
    pub min_series: Option<f64>,
    pub min_coverage: Option<f64>,
}

/// Judge one promoted agent's latest report of the promoted pipeline
/// against what the experiment measured on it. The reason, when it falls
/// short.
pub fn judge(
    agent: &str,
    pipeline: &str,
    stats: &str,
    expected: &Expectation,
    max_series_drop: f64,
) -> Option<String> {
    let seen: StatsSeen = match serde_json::from_str(stats) {
        Ok(s) => s,
        Err(_) => {
            return Some(format!(
                "agent {agent} sent stats this controller cannot read"
            ));
        }
    };
    let Some(p) = seen.pipelines.iter().find(|p| p.pipeline == pipeline) else {
        return Some(format!("agent {agent} reports no pipeline {pipeline}"));
    };
    if let Some(min) = expected.min_series
        && (p.series as f64) < min
    {
        return Some(format!(
            "agent {agent} exports {} series on {pipeline}, more than {:.0}% below the {:.0} \
             the experiment measured at least",
            p.series,
            max_series_drop * 100.0,
            min / (1.0 - max_series_drop).max(f64::MIN_POSITIVE)
        ));
    }
    if let Some(min) = expected.min_coverage
        && p.critical_total > 0
    {
        let coverage = p.critical_visible as f64 / p.critical_total as f64;
        if coverage + 1e-9 < min {
            return Some(format!(
                "agent {agent} keeps {} of {} critical processes visible ({:.0}%), below the {:.0}% \
                 the experiment measured",
                p.critical_visible,
                p.critical_total,
                coverage * 100.0,
                min * 100.0
            ));
        }
    }
    None
}

async fn watch_wave(step: &Step<'_>) -> Result<(), ExperimentError> {
    let (shared, record, promotion, wave) = step.parts();
    // Every agent promoted so far, this wave's and the earlier ones'.
    let promoted: Vec<String> = promotion
        .waves
        .iter()
        .take_while(|w| w.number <= wave.number)
        .flat_map(|w| w.agents.iter().cloned())
        .collect();
    let watch_until = wave.watch_until.unwrap_or(0);
    // Judged: what the agents report after the warm-up.
    let since = watch_until - promotion.watch_ms;
    if now_ms() < since {
        return Ok(());
    }
    let store = shared.store.clone();
    let (id, variant, agents) = (
        record.id.clone(),
        promotion.variant.clone(),
        promoted.clone(),
    );
    let (targets, stats, floors) = blocking(move || {
        Ok::<_, crate::store::StoreError>((
            store.experiment_targets(&id)?,
            store.latest_stats(&agents)?,
            store.promotion_floors(&id, &variant)?,
        ))
    })
    .await
    .map_err(internal)?
    .map_err(internal)?;
    for t in targets.iter().filter(|t| promoted.contains(&t.agent_id)) {
        let problem = if t.config_state == ReportedState::Failed {
            Some(format!(
                "agent {} reports a config failure: {}",
                t.agent_id, t.config_error
            ))
        } else if t.effective_hash != promotion.config_hash {
            Some(format!(
                "agent {} runs config {} instead of the promoted {}",
                t.agent_id,
                phoenix_config::short_hash(&t.effective_hash),
                phoenix_config::short_hash(&promotion.config_hash)
            ))
        } else {
            None
        };
        if let Some(p) = problem {
            return step.fail(p).await;
        }
    }
    let tolerance = 1.0 - promotion.max_series_drop;
    let expected: HashMap<&str, Expectation> = floors
        .iter()
        .map(|f| {
            (
                f.agent_id.as_str(),
                Expectation {
                    min_series: Some(f.series as f64 * tolerance),
                    min_coverage: f.critical_coverage,
                },
            )
        })
        .collect();
    let pipeline = format!("metrics/{}", promotion.variant);
    let none = Expectation {
        min_series: None,
        min_coverage: None,
    };
    let mut fresh = 0;
    for (agent, s) in stats.iter().filter(|(_, s)| s.received_at >= since) {
        fresh += 1;
        let expect = expected.get(agent.as_str()).unwrap_or(&none);
        if let Some(p) = judge(
            agent,
            &pipeline,
            &s.stats,
            expect,
            promotion.max_series_drop,
        ) {
            return step.fail(p).await;
        }
    }
    let now = now_ms();
    if now < watch_until {
        return Ok(());
    }
    // The watch may be shorter than the agents' scrape interval: it ends
    // once every promoted agent has been judged at least once, and an
    // agent still silent a deploy timeout later fails it.
    let (_, timing) = super::spec_of(record)?;
    if fresh < promoted.len() && now < watch_until + timing.deploy_timeout_ms {
        return Ok(());
    }
    if fresh < promoted.len() {
        let reported: Vec<&str> = stats
            .iter()
            .filter(|(_, s)| s.received_at >= since)
            .map(|(a, _)| a.as_str())
            .collect();
        let silent: Vec<&str> = promoted
            .iter()
            .map(String::as_str)
            .filter(|a| !reported.contains(a))
            .collect();
        let why = format!(
            "no stats since the warm-up from {} ({} ms after the watch ended)",
            silent.join(", "),
            timing.deploy_timeout_ms
        );
        return step.fail(why).await;
    }
    let reason = format!(
        "{} promoted agent(s) watched: none failed, each kept its series and critical processes",
        promoted.len()
    );
    let change = WaveChange {
        finished_at: Some(now),
        reason: Some(reason.clone()),
        ..WaveChange::to(WaveState::Passed)
    };
    if advance_wave(shared, record, wave, change).await? {
        note(shared, record, format!("{} passed: {reason}", step.label)).await;
        // The next wave goes out at once.
        shared.scheduler_wake.notify_one();
    }
    Ok(())
}

/// Every wave passed: `promoting → promoted`.
async fn finish(
    shared: &Arc<Shared>,
    record: &ExperimentRecord,
    promotion: &PromotionRecord,
) -> Result<(), ExperimentError> {
    let agents: usize = promotion.waves.iter().map(|w| w.agents.len()).sum();
    let last_push = promotion.waves.last().and_then(|w| w.push_id.clone());
    transition(
        shared,
        &record.id,
        Some(State::Promoting),
        State::Promoted,
        &controller(),
        format!(
            "promoted {:?} to {agents} agent(s) in {} wave(s), each watched (config {})",
            promotion.variant,
            promotion.waves.len(),
            phoenix_config::short_hash(&promotion.config_hash)
        ),
        Stamp {
            promoted_push: last_push,
            ..Stamp::finished(now_ms())
        },
    )
    .await?;
    Ok(())
}

/// Stop the rollout: the wave failed (when there is one), and the
/// experiment is rolled back, every target getting its pre-experiment
/// config, those already promoted first among them.
async fn stop(
    shared: &Arc<Shared>,
    record: &ExperimentRecord,
    wave: Option<&WaveRecord>,
    reason: String,
) -> Result<(), ExperimentError> {
    if let Some(w) = wave.filter(|w| w.state != WaveState::Failed) {
        let change = WaveChange {
            finished_at: Some(now_ms()),
            reason: Some(reason.clone()),
            ..WaveChange::to(WaveState::Failed)
        };
        if !advance_wave(shared, record, w, change).await? {
            // Moved meanwhile (a rollback by hand): nothing left to do.
            return Ok(());
        }
    }
    shared.metrics.promotion_stopped.inc();
    tracing::warn!(experiment = %record.id, reason = %reason, "promotion stopped");
    super::rollback(shared, &record.id, &controller(), &reason)
        .await
        .map(|_| ())
}

/// Compare-and-set one wave from the state it was read in.
async fn advance_wave(
    shared: &Arc<Shared>,
    record: &ExperimentRecord,
    wave: &WaveRecord,
    change: WaveChange,
) -> Result<bool, ExperimentError> {
    let store = shared.store.clone();
    let (id, number, from) = (record.id.clone(), wave.number, wave.state);
    let moved = blocking(move || store.advance_wave(&id, number, from, &change))
        .await
        .map_err(internal)?
        .map_err(internal)?;
    if moved {
        shared.changes.bump();
    }
    Ok(moved)
}

/// A line in the timeline (a wave applied or passed).
async fn note(shared: &Arc<Shared>, record: &ExperimentRecord, reason: String) {
    let store = shared.store.clone();
    let id = record.id.clone();
    let noted = blocking(move || {
        store.timeline_note(
            &id,
            State::Promoting,
            &controller(),
            "experiment.wave",
            &reason,
            now_ms(),
        )
    })
    .await;
    match noted {
        Ok(Ok(_)) => shared.changes.bump(),
        _ => shared.metrics.store_errors.inc(),
    }
}

/// The API's view of a stored promotion.
pub fn view(p: PromotionRecord) -> phoenix_api::Promotion {
    phoenix_api::Promotion {
        variant: p.variant,
        config_hash: p.config_hash,
        watch_ms: p.watch_ms,
        max_series_drop: p.max_series_drop,
        waves: p
            .waves
            .into_iter()
            .map(|w| phoenix_api::Wave {
                number: w.number,
                percent: WavePercent(w.percent),
                agents: w.agents,
                state: w.state,
                push: w.push_id,
                started_at: w.started_at.map(rfc3339_ms),
                watch_until: w.watch_until.map(rfc3339_ms),
                finished_at: w.finished_at.map(rfc3339_ms),
                reason: w.reason,
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("a{i:02}")).collect()
    }

    fn waves(text: &str) -> Vec<WavePercent> {
        WavePercent::parse_list(text).unwrap()
    }

    #[test]
    fn waves_reach_their_share_rounded_up_each_adding_at_least_one_agent() {
        let plan10 = plan(&ids(10), &waves("10%,50%,100%"));
        let sizes: Vec<usize> = plan10.iter().map(|(_, a)| a.len()).collect();
        assert_eq!(sizes, [1, 4, 5]);
        assert_eq!(plan10[0].1, ["a00"]);
        // Two agents: 10% and 50% both round up to one; the 50% wave adds
        // the second, and 100% has nothing left to add.
        let plan2 = plan(&ids(2), &waves("10%,50%,100%"));
        assert_eq!(
            plan2,
            [(10, vec!["a00".to_string()]), (50, vec!["a01".to_string()])]
        );
        // Every agent once, in id order, whatever the order given.
        let mut shuffled = ids(7);
        shuffled.reverse();
        let all: Vec<String> = plan(&shuffled, &waves("30%,100%"))
            .into_iter()
            .flat_map(|(_, a)| a)
            .collect();
        assert_eq!(all, ids(7));
        assert_eq!(plan(&ids(3), &waves("100%")).len(), 1);
        assert!(plan(&[], &waves("50%,100%")).is_empty());
    }

    fn stats(series: u64, total: u64, visible: u64) -> String {
        serde_json::json!({
            "pipelines": [
                { "pipeline": "metrics/lean", "series": series,
                  "critical_total": total, "critical_visible": visible },
            ]
        })
        .to_string()
    }

    #[test]
    fn a_promoted_agent_is_held_to_what_the_experiment_measured_on_it() {
        let expect = Expectation {
            min_series: Some(80.0),
            min_coverage: Some(1.0),
        };
        assert_eq!(
            judge("a", "metrics/lean", &stats(90, 2, 2), &expect, 0.2),
            None
        );
        let fewer = judge("a", "metrics/lean", &stats(40, 2, 2), &expect, 0.2).unwrap();
        assert_eq!(
            fewer,
            "agent a exports 40 series on metrics/lean, more than 20% below the 100 \
             the experiment measured at least"
        );
        let hidden = judge("a", "metrics/lean", &stats(90, 2, 1), &expect, 0.2).unwrap();
        assert!(
            hidden.contains("keeps 1 of 2 critical processes visible (50%)"),
            "{hidden}"
        );
        // No critical process seen now, or none measured: nothing to judge.
        assert_eq!(
            judge("a", "metrics/lean", &stats(90, 0, 0), &expect, 0.2),
            None
        );
        let unmeasured = Expectation {
            min_series: None,
            min_coverage: None,
        };
        assert_eq!(
            judge("a", "metrics/lean", &stats(1, 2, 0), &unmeasured, 0.2),
            None
        );
        // Another pipeline, or stats that do not parse, fail the watch.
        let other = judge("a", "metrics/other", &stats(90, 2, 2), &expect, 0.2).unwrap();
        assert_eq!(other, "agent a reports no pipeline metrics/other");
        assert!(judge("a", "metrics/lean", "{", &expect, 0.2).is_some());
    }
}
