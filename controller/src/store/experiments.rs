//! Experiments in the store: their records, compare-and-set state
//! transitions with their history, the targets and the configs they ran
//! before, and the per-interval measurements (with the guardrail check,
//! made where the rows land).

use std::collections::BTreeMap;

use rusqlite::{OptionalExtension, Row, Transaction, params};

use super::{Actor, AgentStatus, ReportedState, Store, StoreError, agents_matching, audit, named};
use crate::experiment::analysis::{LossTotal, Measurement};
use crate::experiment::guardrails::{Breach, GuardCheck, Sample};
use crate::experiment::state::{Lifecycle, State};

/// An experiment as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct ExperimentRecord {
    pub id: String,
    pub name: String,
    /// JSON of the definition.
    pub spec: String,
    pub state: State,
    pub reason: String,
    pub author: String,
    pub config: String,
    pub config_hash: String,
    /// JSON: variant name → the config promoting it pushes.
    pub promotions: String,
    pub created_at: i64,
    pub updated_at: i64,
    pub start_at: Option<i64>,
    pub deploy_push: Option<String>,
    pub deploying_at: Option<i64>,
    pub running_at: Option<i64>,
    pub measure_from: Option<i64>,
    pub ends_at: Option<i64>,
    pub finished_at: Option<i64>,
    /// JSON of the guardrail breach, once one was seen.
    pub breach: Option<String>,
    /// JSON of the final report.
    pub analysis: Option<String>,
    pub promoted_push: Option<String>,
}

/// One stored state change.
#[derive(Debug, Clone, PartialEq)]
pub struct TransitionRecord {
    pub at: i64,
    pub from: String,
    pub to: String,
    pub actor: String,
    pub reason: String,
}

/// A candidate a guardrail disqualified, and what the scheduler did of it.
#[derive(Debug, Clone, PartialEq)]
pub struct Disqualified {
    pub variant: String,
    pub at: i64,
    pub guardrail: String,
    /// The breach as stored (see `Breach::to_json`).
    pub breach: String,
    /// The reduced config the targets are to run without it (and without
    /// every candidate disqualified before it), once composed.
    pub config_hash: Option<String>,
    /// The push that took the reduced config to the targets; `None`: not
    /// acted on yet.
    pub push_id: Option<String>,
}

/// A target and where it stands now.
#[derive(Debug, Clone, PartialEq)]
pub struct ExperimentTarget {
    pub agent_id: String,
    pub previous_hash: String,
    /// The previous config's content, when the controller has it (else the
    /// agent ran a local file: restoring it is a revert).
    pub previous_content: Option<String>,
    pub status: AgentStatus,
    pub effective_hash: String,
    pub config_state: ReportedState,
    pub config_error: String,
    /// The push the agent should run now, when it is not one of this
    /// experiment's (an operator pushed since, or the deploy never reached
    /// it): a restore leaves such an agent alone.
    pub desired_elsewhere: Option<String>,
}

/// Why a transition did not happen. Nothing changed.
#[derive(Debug, thiserror::Error)]
pub enum TransitionError {
    #[error("no experiment {0:?}")]
    NotFound(String),
    #[error("the experiment is {from}: it cannot become {to}")]
    Illegal { from: State, to: State },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Columns a transition may set besides the state.
#[derive(Debug, Clone, Default)]
pub struct Stamp {
    pub deploy_push: Option<String>,
    pub deploying_at: Option<i64>,
    pub running_at: Option<i64>,
    pub measure_from: Option<i64>,
    pub ends_at: Option<i64>,
    pub finished_at: Option<i64>,
    pub analysis: Option<String>,
    pub promoted_push: Option<String>,
    /// The targets' previous configs are to be pushed back (recorded with
    /// the transition, so a crash cannot lose it).
    pub restore: bool,
    /// The plan of a promotion in waves (with the move to `promoting`).
    pub promotion: Option<super::promotions::NewPromotion>,
}

impl Stamp {
    /// Only the end time: the experiment left its active states.
    pub fn finished(at: i64) -> Stamp {
        Stamp {
            finished_at: Some(at),
            ..Stamp::default()
        }
    }
}

/// A state change as asked: from (None: whatever it is now), to, by whom,
/// why, and the columns it sets.
#[derive(Debug, Clone)]
pub struct Transition {
    pub from: Option<State>,
    pub to: State,
    pub actor: Actor,
    pub reason: String,
    pub stamp: Stamp,
}

/// A new experiment, in `draft`.
#[derive(Debug, Clone)]
pub struct NewExperiment {
    pub id: String,
    pub name: String,
    pub spec: String,
    pub actor: Actor,
    pub config: String,
    pub config_hash: String,
    /// JSON: variant name → its promoted config.
    pub promotions: String,
    pub start_at: Option<i64>,
}

const EXPERIMENT_COLUMNS: &str = "id, name, spec, state, reason, author, config, config_hash,
    promotions, created_at, updated_at, start_at, deploy_push, deploying_at, running_at, measure_from,
    ends_at, finished_at, breach, analysis, promoted_push";

/// After the columns: newest first, read in the order of the
/// `experiments_by_created` index up to the limit.
const LIST_EXPERIMENTS: &str =
    "FROM experiments WHERE (?2 IS NULL OR state = ?2) ORDER BY created_at DESC, id LIMIT ?1";

/// The live experiment other than ?2 holding agent ?1: found through the
/// `experiment_targets_by_agent` index, whatever the number of experiments
/// ever run.
const AGENT_IN_EXPERIMENT: &str = "SELECT t.experiment_id FROM experiment_targets t
     JOIN experiments e ON e.id = t.experiment_id
     WHERE t.agent_id = ?1 AND e.id != ?2
       AND e.state IN ('deploying', 'running', 'analyzing', 'succeeded', 'promoting')
     LIMIT 1";

fn experiment_row(r: &Row<'_>) -> rusqlite::Result<ExperimentRecord> {
    Ok(ExperimentRecord {
        id: r.get(0)?,
        name: r.get(1)?,
        spec: r.get(2)?,
        state: named(r, 3, State::parse)?,
        reason: r.get(4)?,
        author: r.get(5)?,
        config: r.get(6)?,
        config_hash: r.get(7)?,
        promotions: r.get(8)?,
        created_at: r.get(9)?,
        updated_at: r.get(10)?,
        start_at: r.get(11)?,
        deploy_push: r.get(12)?,
        deploying_at: r.get(13)?,
        running_at: r.get(14)?,
        measure_from: r.get(15)?,
        ends_at: r.get(16)?,
        finished_at: r.get(17)?,
        breach: r.get(18)?,
        analysis: r.get(19)?,
        promoted_push: r.get(20)?,
    })
}

fn measurement_row(r: &Row<'_>) -> rusqlite::Result<Measurement> {
    Ok(Measurement {
        variant: r.get(0)?,
        agent_id: r.get(1)?,
        interval_ns: r.get(2)?,
        series: r.get::<_, i64>(3)?.max(0) as u64,
        datapoints: r.get::<_, i64>(4)?.max(0) as u64,
        bytes: r.get::<_, i64>(5)?.max(0) as u64,
        bytes_gzip: r.get::<_, i64>(6)?.max(0) as u64,
        cpu_seconds: r.get(7)?,
        critical_total: r.get::<_, i64>(8)?.max(0) as u64,
        critical_visible: r.get::<_, i64>(9)?.max(0) as u64,
        topn_fidelity: r.get(10)?,
        cpu_total: r.get(11)?,
        memory_total: r.get(12)?,
        losses: Vec::new(),
    })
}

fn clamp_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

impl Store {
    pub fn create_experiment(&self, e: &NewExperiment, now: i64) -> Result<(), StoreError> {
        self.write(|tx| {
            tx.execute(
                "INSERT INTO experiments (id, name, spec, state, reason, author, config, config_hash,
                     promotions, created_at, updated_at, start_at)
                 VALUES (?1, ?2, ?3, 'draft', 'created', ?4, ?5, ?6, ?7, ?8, ?8, ?9)",
                params![
                    e.id,
                    e.name,
                    e.spec,
                    e.actor.name,
                    e.config,
                    e.config_hash,
                    e.promotions,
                    now,
                    e.start_at
                ],
            )?;
            tx.execute(
                "INSERT INTO experiment_transitions (experiment_id, at, from_state, to_state, actor, reason)
                 VALUES (?1, ?2, '', 'draft', ?3, 'created')",
                params![e.id, now, e.actor.name],
            )?;
            audit(
                tx,
                now,
                &e.actor,
                "experiment.created",
                None,
                None,
                serde_json::json!({ "experiment": e.id, "name": e.name, "hash": e.config_hash }),
            )?;
            Ok(())
        })
    }

    pub fn experiment(&self, id: &str) -> Result<Option<ExperimentRecord>, StoreError> {
        let conn = self.conn();
        let sql = format!("SELECT {EXPERIMENT_COLUMNS} FROM experiments WHERE id = ?1");
        Ok(conn.query_row(&sql, [id], experiment_row).optional()?)
    }

    /// Newest first, optionally only those in `state`.
    pub fn list_experiments(
        &self,
        limit: u32,
        state: Option<State>,
    ) -> Result<Vec<ExperimentRecord>, StoreError> {
        let conn = self.conn();
        let sql = format!("SELECT {EXPERIMENT_COLUMNS} {LIST_EXPERIMENTS}");
        let mut stmt = conn.prepare_cached(&sql)?;
        let rows = stmt
            .query_map(params![limit, state.map(State::as_str)], experiment_row)?
            .collect::<Result<_, _>>()?;
        Ok(rows)
    }

    /// The experiments the scheduler drives.
    pub fn active_experiments(&self) -> Result<Vec<ExperimentRecord>, StoreError> {
        let conn = self.conn();
        let sql = format!(
            "SELECT {EXPERIMENT_COLUMNS} FROM experiments
             WHERE state IN ('pending', 'deploying', 'running', 'analyzing', 'promoting')
             ORDER BY created_at"
        );
        let mut stmt = conn.prepare_cached(&sql)?;
        let rows = stmt
            .query_map([], experiment_row)?
            .collect::<Result<_, _>>()?;
        Ok(rows)
    }

    pub fn transitions(&self, id: &str) -> Result<Vec<TransitionRecord>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT at, from_state, to_state, actor, reason FROM experiment_transitions
             WHERE experiment_id = ?1 ORDER BY id",
        )?;
        let rows = stmt
            .query_map([id], |r| {
                Ok(TransitionRecord {
                    at: r.get(0)?,
                    from: r.get(1)?,
                    to: r.get(2)?,
                    actor: r.get(3)?,
                    reason: r.get(4)?,
                })
            })?
            .collect::<Result<_, _>>()?;
        Ok(rows)
    }

    /// Move `id` from `from` to `to` if it is still in `from` and the
    /// lifecycle allows it; record why and who. `from: None` takes the
    /// current state (user actions); the scheduler always names the state
    /// it acted on, so a concurrent change wins over a stale decision.
    pub fn transition(
        &self,
        id: &str,
        change: &Transition,
        now: i64,
    ) -> Result<ExperimentRecord, TransitionError> {
        let Transition {
            from,
            to,
            actor,
            reason,
            stamp,
        } = change;
        let (from, to) = (*from, *to);
        let mut conn = self.conn();
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(StoreError::from)?;
        let current = tx
            .query_row("SELECT state FROM experiments WHERE id = ?1", [id], |r| {
                named(r, 0, State::parse)
            })
            .optional()
            .map_err(StoreError::from)?;
        let Some(current) = current else {
            return Err(TransitionError::NotFound(id.to_string()));
        };
        if from.is_some_and(|f| f != current) || !current.can_go(to) {
            return Err(TransitionError::Illegal { from: current, to });
        }
        let apply = |tx: &Transaction<'_>| -> rusqlite::Result<ExperimentRecord> {
            tx.execute(
                "UPDATE experiments SET state = ?2, reason = ?3, updated_at = ?4,
                     deploy_push = COALESCE(?5, deploy_push),
                     deploying_at = COALESCE(?6, deploying_at),
                     running_at = COALESCE(?7, running_at),
                     measure_from = COALESCE(?8, measure_from),
                     ends_at = COALESCE(?9, ends_at),
                     finished_at = COALESCE(?10, finished_at),
                     analysis = COALESCE(?11, analysis),
                     promoted_push = COALESCE(?12, promoted_push),
                     restore_pending = CASE WHEN ?13 THEN 1 ELSE restore_pending END
                 WHERE id = ?1",
                params![
                    id,
                    to.as_str(),
                    reason,
                    now,
                    stamp.deploy_push,
                    stamp.deploying_at,
                    stamp.running_at,
                    stamp.measure_from,
                    stamp.ends_at,
                    stamp.finished_at,
                    stamp.analysis,
                    stamp.promoted_push,
                    stamp.restore
                ],
            )?;
            tx.execute(
                "INSERT INTO experiment_transitions (experiment_id, at, from_state, to_state, actor, reason)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![id, now, current.as_str(), to.as_str(), actor.name, reason],
            )?;
            if let Some(plan) = &stamp.promotion {
                super::promotions::insert_promotion(tx, id, plan, now)?;
            }
            if current == State::Promoting {
                super::promotions::skip_unfinished_waves(tx, id)?;
            }
            audit(
                tx,
                now,
                actor,
                "experiment.transition",
                stamp
                    .deploy_push
                    .as_deref()
                    .or(stamp.promoted_push.as_deref()),
                None,
                serde_json::json!({
                    "experiment": id, "from": current.as_str(), "to": to.as_str(), "reason": reason,
                }),
            )?;
            let sql = format!("SELECT {EXPERIMENT_COLUMNS} FROM experiments WHERE id = ?1");
            tx.query_row(&sql, [id], experiment_row)
        };
        let record = apply(&tx).map_err(StoreError::from)?;
        tx.commit().map_err(StoreError::from)?;
        Ok(record)
    }

    /// Record the deploy push of a deploying experiment. False when it is
    /// not deploying any more (stopped meanwhile).
    pub fn set_deploy_push(&self, id: &str, push_id: &str) -> Result<bool, StoreError> {
        self.write(|tx| {
            Ok(tx.execute(
                "UPDATE experiments SET deploy_push = ?2 WHERE id = ?1 AND state = 'deploying'",
                params![id, push_id],
            )? == 1)
        })
    }

    /// Take a pending restore (1 → 2); false when there is none or another
    /// task took it.
    pub fn claim_restore(&self, id: &str) -> Result<bool, StoreError> {
        self.write(|tx| {
            Ok(tx.execute(
                "UPDATE experiments SET restore_pending = 2 WHERE id = ?1 AND restore_pending = 1",
                [id],
            )? == 1)
        })
    }

    /// The restore of `id` ran.
    pub fn finish_restore(&self, id: &str) -> Result<(), StoreError> {
        self.write(|tx| {
            tx.execute(
                "UPDATE experiments SET restore_pending = 0 WHERE id = ?1",
                [id],
            )?;
            Ok(())
        })
    }

    /// Experiments whose restore is due and not taken.
    pub fn pending_restores(&self) -> Result<Vec<ExperimentRecord>, StoreError> {
        let conn = self.conn();
        // `!= 0` spelled out: SQLite uses a partial index only when the
        // query repeats its condition.
        let sql = format!(
            "SELECT {EXPERIMENT_COLUMNS} FROM experiments
             WHERE restore_pending != 0 AND restore_pending = 1"
        );
        let mut stmt = conn.prepare_cached(&sql)?;
        let rows = stmt
            .query_map([], experiment_row)?
            .collect::<Result<_, _>>()?;
        Ok(rows)
    }

    /// At start: a restore that was running when the controller stopped is
    /// due again. Returns how many.
    pub fn requeue_restores(&self) -> Result<usize, StoreError> {
        self.write(|tx| {
            tx.execute(
                "UPDATE experiments SET restore_pending = 1 WHERE restore_pending = 2",
                [],
            )
        })
    }

    /// Record the push that promoted the experiment.
    pub fn set_promoted_push(&self, id: &str, push_id: &str) -> Result<(), StoreError> {
        self.write(|tx| {
            tx.execute(
                "UPDATE experiments SET promoted_push = ?2 WHERE id = ?1",
                params![id, push_id],
            )?;
            Ok(())
        })
    }

    /// Complete the reason of the state the experiment is in (what an
    /// action did after its transition), in the record and its history.
    pub fn complete_reason(&self, id: &str, state: State, reason: &str) -> Result<(), StoreError> {
        self.write(|tx| {
            let n = tx.execute(
                "UPDATE experiments SET reason = ?3 WHERE id = ?1 AND state = ?2",
                params![id, state.as_str(), reason],
            )?;
            if n == 1 {
                tx.execute(
                    "UPDATE experiment_transitions SET reason = ?3 WHERE id =
                         (SELECT MAX(id) FROM experiment_transitions WHERE experiment_id = ?1 AND to_state = ?2)",
                    params![id, state.as_str(), reason],
                )?;
            }
            Ok(())
        })
    }

    /// Online agents matching a selector: by labels, or on these hosts.
    pub fn online_agents(
        &self,
        labels: &BTreeMap<String, String>,
        hosts: &[String],
    ) -> Result<Vec<String>, StoreError> {
        let conn = self.conn();
        if hosts.is_empty() {
            return Ok(agents_matching(
                &conn,
                labels,
                Some(AgentStatus::Online),
                Some(super::AgentKind::Phoenix),
            )?);
        }
        let mut stmt = conn.prepare_cached(
            "SELECT id FROM agents WHERE status = 'online' AND kind = 'phoenix' AND host_name = ?1
             ORDER BY id",
        )?;
        let mut out = Vec::new();
        for h in hosts {
            for id in stmt.query_map([h], |r| r.get::<_, String>(0))? {
                let id = id?;
                if !out.contains(&id) {
                    out.push(id);
                }
            }
        }
        Ok(out)
    }

    /// Of `agents`, those a live experiment other than `except` holds
    /// (its config may be on them: deploying up to succeeded; a failed
    /// experiment is either restored at once or never deployed):
    /// (agent, experiment).
    pub fn agents_in_experiments(
        &self,
        agents: &[String],
        except: &str,
    ) -> Result<Vec<(String, String)>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(AGENT_IN_EXPERIMENT)?;
        let mut out = Vec::new();
        for a in agents {
            if let Some(e) = stmt
                .query_row(params![a, except], |r| r.get::<_, String>(0))
                .optional()?
            {
                out.push((a.clone(), e));
            }
        }
        Ok(out)
    }

    /// Record the targets and the config each runs now (what a rollback restores).
    pub fn set_experiment_targets(&self, id: &str, agents: &[String]) -> Result<(), StoreError> {
        self.write(|tx| {
            tx.execute(
                "DELETE FROM experiment_targets WHERE experiment_id = ?1",
                [id],
            )?;
            let mut insert = tx.prepare_cached(
                "INSERT INTO experiment_targets (experiment_id, agent_id, previous_hash)
                 SELECT ?1, id, effective_hash FROM agents WHERE id = ?2",
            )?;
            for a in agents {
                insert.execute(params![id, a])?;
            }
            Ok(())
        })
    }

    pub fn experiment_targets(&self, id: &str) -> Result<Vec<ExperimentTarget>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT t.agent_id, t.previous_hash, c.content, c.local, a.status, a.effective_hash,
                    a.config_state, a.config_error, d.id
             FROM experiment_targets t JOIN agents a ON a.id = t.agent_id
             LEFT JOIN config_versions c ON c.hash = t.previous_hash
             LEFT JOIN pushes d ON d.id = a.desired_push_id
                 AND COALESCE(d.experiment_id, '') != t.experiment_id
             WHERE t.experiment_id = ?1 ORDER BY t.agent_id",
        )?;
        let rows = stmt
            .query_map([id], |r| {
                let content: Option<String> = r.get(2)?;
                let local: Option<bool> = r.get(3)?;
                Ok(ExperimentTarget {
                    agent_id: r.get(0)?,
                    previous_hash: r.get(1)?,
                    previous_content: content.filter(|_| local == Some(false)),
                    status: named(r, 4, AgentStatus::parse)?,
                    effective_hash: r.get(5)?,
                    config_state: named(r, 6, ReportedState::parse)?,
                    config_error: r.get(7)?,
                    desired_elsewhere: r.get(8)?,
                })
            })?
            .collect::<Result<_, _>>()?;
        Ok(rows)
    }

    /// Store one interval's measurements of an agent in a running
    /// experiment (a repeat of the same interval changes nothing), then
    /// check the guardrails on this agent's latest intervals. A candidate's
    /// breach disqualifies it: the first one per candidate is kept, later
    /// ones (of another agent, or of an interval that landed before the
    /// scheduler saw the first) are ignored. Returns the breaches that
    /// disqualified a candidate in this call.
    pub fn record_measurements(
        &self,
        experiment_id: &str,
        rows: &[Measurement],
        now: i64,
        guard: &GuardCheck,
    ) -> Result<(usize, Vec<Breach>), StoreError> {
        self.write(|tx| {
            let mut inserted = 0;
            {
                let mut insert = tx.prepare_cached(
                    "INSERT OR IGNORE INTO experiment_measurements (experiment_id, variant, agent_id,
                         interval_ns, series, datapoints, bytes, bytes_gzip, cpu_seconds,
                         critical_total, critical_visible, topn_fidelity, received_at,
                         cpu_total, memory_total)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)",
                )?;
                let mut add_loss = tx.prepare_cached(
                    "INSERT INTO experiment_losses (experiment_id, variant, executable, folded,
                         intervals, processes, cpu_share, memory_share)
                     VALUES (?1, ?2, ?3, ?4, 1, ?5, ?6, ?7)
                     ON CONFLICT (experiment_id, variant, executable, folded) DO UPDATE SET
                         intervals = intervals + 1,
                         processes = processes + excluded.processes,
                         cpu_share = cpu_share + excluded.cpu_share,
                         memory_share = memory_share + excluded.memory_share",
                )?;
                for m in rows {
                    let new = insert.execute(params![
                        experiment_id,
                        m.variant,
                        m.agent_id,
                        m.interval_ns,
                        clamp_i64(m.series),
                        clamp_i64(m.datapoints),
                        clamp_i64(m.bytes),
                        clamp_i64(m.bytes_gzip),
                        m.cpu_seconds,
                        clamp_i64(m.critical_total),
                        clamp_i64(m.critical_visible),
                        m.topn_fidelity,
                        now,
                        m.cpu_total,
                        m.memory_total
                    ])?;
                    // A repeated report adds nothing, its losses neither.
                    if new == 1 {
                        for l in &m.losses {
                            add_loss.execute(params![
                                experiment_id,
                                m.variant,
                                l.executable,
                                l.folded,
                                l.processes,
                                l.cpu_share,
                                l.memory_share
                            ])?;
                        }
                    }
                    inserted += new;
                }
            }
            if inserted == 0 || !guard.watches_measurements() {
                return Ok((inserted, Vec::new()));
            }
            let Some(agent) = rows.first().map(|r| r.agent_id.as_str()) else {
                return Ok((0, Vec::new()));
            };
            let breaches = guard.check(agent, &latest_samples(tx, experiment_id, agent, guard)?);
            let mut disqualify = tx.prepare_cached(
                "INSERT OR IGNORE INTO experiment_disqualified
                     (experiment_id, variant, at, guardrail, breach)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )?;
            let mut first = Vec::new();
            for b in breaches {
                // Every breach `check` finds is a candidate's.
                let Some(variant) = b.variant() else { continue };
                let params = params![
                    experiment_id,
                    variant,
                    now,
                    b.guardrail().as_str(),
                    b.to_json()
                ];
                if disqualify.execute(params)? == 1 {
                    first.push(b);
                }
            }
            Ok((inserted, first))
        })
    }

    /// The candidates of an experiment disqualified so far, in the order
    /// they were.
    pub fn disqualifications(&self, experiment_id: &str) -> Result<Vec<Disqualified>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT variant, at, guardrail, breach, config_hash, push_id
             FROM experiment_disqualified WHERE experiment_id = ?1 ORDER BY at, variant",
        )?;
        let rows = stmt
            .query_map([experiment_id], |r| {
                Ok(Disqualified {
                    variant: r.get(0)?,
                    at: r.get(1)?,
                    guardrail: r.get(2)?,
                    breach: r.get(3)?,
                    config_hash: r.get(4)?,
                    push_id: r.get(5)?,
                })
            })?
            .collect::<Result<_, _>>()?;
        Ok(rows)
    }

    /// Take disqualifications not acted on for the reduced config
    /// `config_hash`, before it is pushed: from then on that hash is one
    /// the targets may run (the agent-error guardrail accepts it), and a
    /// scheduler restarted after the push finds the push by it. Returns how
    /// many rows it took (0: all were pushed meanwhile).
    pub fn claim_disqualifications(
        &self,
        experiment_id: &str,
        variants: &[String],
        config_hash: &str,
    ) -> Result<usize, StoreError> {
        self.write(|tx| {
            let mut claim = tx.prepare_cached(
                "UPDATE experiment_disqualified SET config_hash = ?3
                 WHERE experiment_id = ?1 AND variant = ?2 AND push_id IS NULL",
            )?;
            let mut n = 0;
            for v in variants {
                n += claim.execute(params![experiment_id, v, config_hash])?;
            }
            Ok(n)
        })
    }

    /// The push of this experiment that carried `config_hash`, if one was
    /// made: how a restarted scheduler tells a reduced config it pushed
    /// before a crash from one it never pushed. (No index on the pushes'
    /// experiment: this runs only for a claim left by a crash.)
    pub fn experiment_push_of(
        &self,
        experiment_id: &str,
        config_hash: &str,
    ) -> Result<Option<String>, StoreError> {
        let conn = self.conn();
        Ok(conn
            .query_row(
                "SELECT id FROM pushes WHERE experiment_id = ?1 AND config_hash = ?2
                 ORDER BY created_at DESC LIMIT 1",
                params![experiment_id, config_hash],
                |r| r.get(0),
            )
            .optional()?)
    }

    /// Record the push that took the reduced config `config_hash` to the
    /// targets for each of `notes`' candidates (claimed with that hash and
    /// not recorded yet), each with its note in the experiment's timeline
    /// (`running → running`: the lifecycle does not move, so this is not a
    /// [`Store::transition`]) and in the audit log, all at once. False,
    /// recording nothing, when the experiment is not running any more (a
    /// stop or an abort came in between: the push must be undone).
    pub fn record_disqualification_push(
        &self,
        experiment_id: &str,
        config_hash: &str,
        push_id: &str,
        notes: &[(String, String)],
        actor: &Actor,
        now: i64,
    ) -> Result<bool, StoreError> {
        self.write(|tx| {
            let state: Option<String> = tx
                .query_row(
                    "SELECT state FROM experiments WHERE id = ?1",
                    [experiment_id],
                    |r| r.get(0),
                )
                .optional()?;
            let running = State::Running.as_str();
            if state.as_deref() != Some(running) {
                return Ok(false);
            }
            for (variant, note) in notes {
                let recorded = tx.execute(
                    "UPDATE experiment_disqualified SET push_id = ?4
                     WHERE experiment_id = ?1 AND variant = ?2 AND config_hash = ?3
                       AND push_id IS NULL",
                    params![experiment_id, variant, config_hash, push_id],
                )?;
                if recorded == 0 {
                    continue;
                }
                tx.execute(
                    "INSERT INTO experiment_transitions (experiment_id, at, from_state, to_state, actor, reason)
                     VALUES (?1, ?2, ?3, ?3, ?4, ?5)",
                    params![experiment_id, now, running, actor.name, note],
                )?;
                audit(
                    tx,
                    now,
                    actor,
                    "experiment.disqualified",
                    Some(push_id),
                    None,
                    serde_json::json!({
                        "experiment": experiment_id, "variant": variant,
                        "hash": config_hash, "reason": note,
                    }),
                )?;
            }
            Ok(true)
        })
    }

    /// Every measurement of an experiment (after warm-up), optionally of one agent.
    pub fn measurements(
        &self,
        experiment_id: &str,
        agent: Option<&str>,
    ) -> Result<Vec<Measurement>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT variant, agent_id, interval_ns, series, datapoints, bytes, bytes_gzip,
                    cpu_seconds, critical_total, critical_visible, topn_fidelity,
                    cpu_total, memory_total
             FROM experiment_measurements
             WHERE experiment_id = ?1 AND (?2 IS NULL OR agent_id = ?2)
             ORDER BY interval_ns, agent_id, variant",
        )?;
        let rows = stmt
            .query_map(params![experiment_id, agent], measurement_row)?
            .collect::<Result<_, _>>()?;
        Ok(rows)
    }

    /// What each candidate of an experiment lost, per executable.
    pub fn experiment_losses(&self, experiment_id: &str) -> Result<Vec<LossTotal>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT variant, executable, folded, intervals, processes, cpu_share, memory_share
             FROM experiment_losses WHERE experiment_id = ?1
             ORDER BY variant, executable, folded",
        )?;
        let out = stmt
            .query_map([experiment_id], |r| {
                Ok(LossTotal {
                    variant: r.get(0)?,
                    executable: r.get(1)?,
                    folded: r.get(2)?,
                    intervals: r.get::<_, i64>(3)?.max(0) as u64,
                    processes: r.get::<_, i64>(4)?.max(0) as u64,
                    cpu_share: r.get(5)?,
                    memory_share: r.get(6)?,
                })
            })?
            .collect::<Result<_, _>>()?;
        Ok(out)
    }

    /// Drop the measurements of experiments finished before `before`.
    pub fn prune_measurements(&self, before: i64) -> Result<usize, StoreError> {
        self.write(|tx| {
            tx.execute(
                "DELETE FROM experiment_losses WHERE experiment_id IN
                     (SELECT id FROM experiments WHERE finished_at IS NOT NULL AND finished_at < ?1)",
                [before],
            )?;
            tx.execute(
                "DELETE FROM experiment_measurements WHERE experiment_id IN
                     (SELECT id FROM experiments WHERE finished_at IS NOT NULL AND finished_at < ?1)",
                [before],
            )
        })
    }
}

/// Per candidate, this agent's latest `intervals` intervals, newest first:
/// what the guardrails judge.
fn latest_samples(
    tx: &Transaction<'_>,
    experiment_id: &str,
    agent: &str,
    guard: &GuardCheck,
) -> rusqlite::Result<Vec<(String, Vec<Sample>)>> {
    let mut latest = tx.prepare_cached(
        "SELECT critical_total, critical_visible, cpu_seconds FROM experiment_measurements
         WHERE experiment_id = ?1 AND variant = ?2 AND agent_id = ?3
         ORDER BY interval_ns DESC LIMIT ?4",
    )?;
    guard
        .candidates
        .iter()
        .map(|variant| {
            let samples = latest
                .query_map(
                    params![experiment_id, variant, agent, guard.intervals],
                    |r| {
                        Ok(Sample {
                            critical_total: r.get::<_, i64>(0)?.max(0) as u64,
                            critical_visible: r.get::<_, i64>(1)?.max(0) as u64,
                            cpu_seconds: r.get(2)?,
                        })
                    },
                )?
                .collect::<Result<_, _>>()?;
            Ok((variant.clone(), samples))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SQLite's plan for `sql` with these arguments, one line per step.
    fn plan(store: &Store, sql: &str, args: &[&str]) -> String {
        let conn = store.conn();
        let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
        let steps: Vec<String> = stmt
            .query_map(rusqlite::params_from_iter(args), |r| r.get(3))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        steps.join("\n")
    }

    fn scratch(label: &str) -> (std::path::PathBuf, Store) {
        let dir = std::env::temp_dir().join(format!(
            "phoenix-store-experiments-{label}-{}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        let store = Store::open_dir(&dir).unwrap();
        (dir, store)
    }

    fn experiment(store: &Store, id: &str) {
        let e = NewExperiment {
            id: id.into(),
            name: id.into(),
            spec: "{}".into(),
            actor: Actor::system("t"),
            config: "# c".into(),
            config_hash: "h".into(),
            promotions: "{}".into(),
            start_at: None,
        };
        store.create_experiment(&e, 1).unwrap();
    }

    fn rows(agent: &str, n: i64) -> Vec<Measurement> {
        (0..n)
            .map(|t| Measurement {
                variant: "lean".into(),
                agent_id: agent.into(),
                interval_ns: t,
                series: 10,
                datapoints: 10,
                bytes: 100,
                bytes_gzip: 10,
                cpu_seconds: 0.001,
                critical_total: 2,
                critical_visible: 1,
                topn_fidelity: Some(1.0),
                cpu_total: Some(0.9),
                memory_total: None,
                losses: vec![crate::experiment::analysis::Loss {
                    executable: "backup-agent".into(),
                    processes: 1,
                    cpu_share: 0.5,
                    memory_share: 0.1,
                    folded: false,
                }],
            })
            .collect()
    }

    #[test]
    fn measurements_are_kept_once_checked_by_the_guardrails_and_pruned_after_retention() {
        let (dir, store) = scratch("measurements");
        experiment(&store, "old");
        experiment(&store, "live");
        let guard = GuardCheck {
            candidates: vec!["lean".into()],
            min_critical_coverage: Some(1.0),
            max_cpu_seconds: None,
            intervals: 3,
        };
        // Two intervals below the coverage floor: not yet a breach.
        let (n, breach) = store
            .record_measurements("live", &rows("a", 2), 5, &guard)
            .unwrap();
        assert_eq!((n, breach), (2, vec![]));
        // A repeat of the same intervals is ignored; the third is the breach.
        let (n, breach) = store
            .record_measurements("live", &rows("a", 3), 6, &guard)
            .unwrap();
        assert_eq!(n, 1);
        let [breach] = &breach[..] else {
            panic!("three intervals in a row below 100%: {breach:?}")
        };
        assert!(
            matches!(
                breach,
                Breach::CriticalCoverage {
                    visible: 1,
                    total: 2,
                    ..
                }
            ),
            "{breach:?}"
        );
        // The candidate is disqualified; the experiment is not aborted.
        assert_eq!(store.experiment("live").unwrap().unwrap().breach, None);
        let disqualified = store.disqualifications("live").unwrap();
        assert_eq!(
            disqualified,
            [Disqualified {
                variant: "lean".into(),
                at: 6,
                guardrail: "critical_coverage".into(),
                breach: breach.to_json(),
                config_hash: None,
                push_id: None,
            }]
        );
        // Only the first breach of a candidate counts.
        let (_, again) = store
            .record_measurements("live", &rows("a", 4), 7, &guard)
            .unwrap();
        assert_eq!(again, vec![]);
        assert_eq!(store.disqualifications("live").unwrap(), disqualified);
        assert_eq!(store.measurements("live", None).unwrap().len(), 4);
        // Losses are summed once per stored interval, repeats ignored.
        let losses = store.experiment_losses("live").unwrap();
        assert_eq!(losses.len(), 1);
        assert_eq!(
            (losses[0].intervals, losses[0].processes),
            (4, 4),
            "{losses:?}"
        );
        assert!((losses[0].cpu_share - 2.0).abs() < 1e-9);

        store
            .record_measurements("old", &rows("b", 3), 5, &guard)
            .unwrap();
        let finish = |id: &str, to: State, at: i64| {
            let change = Transition {
                from: None,
                to,
                actor: Actor::system("t"),
                reason: "t".into(),
                stamp: Stamp {
                    finished_at: Some(at),
                    ..Stamp::default()
                },
            };
            store.transition(id, &change, at).unwrap();
        };
        finish("old", State::Cancelled, 100);
        // Finished before the cut: gone; the running one stays whole.
        assert_eq!(store.prune_measurements(50).unwrap(), 0);
        assert_eq!(store.prune_measurements(101).unwrap(), 3);
        assert!(store.measurements("old", None).unwrap().is_empty());
        assert_eq!(store.measurements("live", Some("a")).unwrap().len(), 4);
        drop(store);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_disqualification_is_claimed_then_pushed_once_with_its_note_while_running() {
        let (dir, store) = scratch("disqualified");
        experiment(&store, "e");
        let guard = GuardCheck {
            candidates: vec!["lean".into()],
            min_critical_coverage: Some(1.0),
            max_cpu_seconds: None,
            intervals: 3,
        };
        store
            .record_measurements("e", &rows("a", 3), 5, &guard)
            .unwrap();
        let lean = vec!["lean".to_string()];
        let notes = vec![("lean".to_string(), "disqualified \"lean\"".to_string())];
        let actor = Actor::system("controller");
        // Not running: nothing is recorded, the push is to be undone.
        assert_eq!(store.claim_disqualifications("e", &lean, "h1").unwrap(), 1);
        assert!(
            !store
                .record_disqualification_push("e", "h1", "p1", &notes, &actor, 8)
                .unwrap()
        );
        for (from, to) in [
            (State::Draft, State::Pending),
            (State::Pending, State::Deploying),
            (State::Deploying, State::Running),
        ] {
            let change = Transition {
                from: Some(from),
                to,
                actor: actor.clone(),
                reason: "t".into(),
                stamp: Stamp::default(),
            };
            store.transition("e", &change, 7).unwrap();
        }
        // Claimed, not pushed (a crash before the push): no push to find.
        assert_eq!(store.experiment_push_of("e", "hash-p1").unwrap(), None);
        assert_eq!(
            store
                .claim_disqualifications("e", &lean, "hash-p1")
                .unwrap(),
            1
        );
        // Pushed, not recorded (a crash after it): found by its hash.
        agent_a(&store);
        push_to_a(&store, "p1", Some("e"), 8);
        assert_eq!(
            store.experiment_push_of("e", "hash-p1").unwrap().as_deref(),
            Some("p1")
        );
        assert_eq!(store.experiment_push_of("other", "hash-p1").unwrap(), None);
        assert!(
            store
                .record_disqualification_push("e", "hash-p1", "p1", &notes, &actor, 9)
                .unwrap()
        );
        let d = &store.disqualifications("e").unwrap()[0];
        assert_eq!(
            (d.config_hash.as_deref(), d.push_id.as_deref()),
            (Some("hash-p1"), Some("p1"))
        );
        // Pushed: neither claimed nor noted again.
        assert_eq!(store.claim_disqualifications("e", &lean, "h2").unwrap(), 0);
        store
            .record_disqualification_push("e", "hash-p1", "p2", &notes, &actor, 10)
            .unwrap();
        let notes: Vec<(String, String, String)> = store
            .transitions("e")
            .unwrap()
            .into_iter()
            .filter(|t| t.reason.starts_with("disqualified"))
            .map(|t| (t.from, t.to, t.reason))
            .collect();
        assert_eq!(
            notes,
            [(
                "running".to_string(),
                "running".to_string(),
                "disqualified \"lean\"".to_string()
            )]
        );
        let audited: Vec<String> = store
            .audit_log(Some("p1"), 10)
            .unwrap()
            .into_iter()
            .map(|a| a.action)
            .filter(|a| a.starts_with("experiment."))
            .collect();
        assert_eq!(audited, ["experiment.disqualified"]);
        assert_eq!(
            store.disqualifications("e").unwrap()[0].push_id.as_deref(),
            Some("p1")
        );
        drop(store);
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Agent `a`, online.
    fn agent_a(store: &Store) {
        let hello = crate::store::AgentHello {
            id: "a".into(),
            host_name: "h".into(),
            version: "1".into(),
            labels: Default::default(),
            capabilities: vec![],
            status: None,
            policy: None,
        };
        store.hello(&hello, 1, 1, true).unwrap();
    }

    /// Push `id` (config `hash-<id>`) to agent `a`, for `experiment`.
    fn push_to_a(store: &Store, id: &str, experiment: Option<&str>, now: i64) {
        let push = crate::store::NewPush {
            id: id.into(),
            selector: crate::store::Selector::Agents(vec!["a".into()]),
            yaml: format!("# {id}"),
            hash: format!("hash-{id}"),
            template: None,
            actor: Actor::system("t"),
            deadline: 1_000,
            revert_to_local: false,
            experiment_id: experiment.map(str::to_string),
            within: None,
            config_kind: crate::store::ConfigKind::Phoenix,
            content_type: "text/yaml".into(),
            file: String::new(),
        };
        store.create_push(&push, now, &|_| Ok(())).unwrap();
    }

    #[test]
    fn a_target_an_operator_pushed_to_since_is_not_restored() {
        let (dir, store) = scratch("elsewhere");
        agent_a(&store);
        experiment(&store, "e");
        store
            .set_experiment_targets("e", &["a".to_string()])
            .unwrap();
        push_to_a(&store, "deploy", Some("e"), 2);
        let targets = store.experiment_targets("e").unwrap();
        assert_eq!(targets[0].desired_elsewhere, None);
        // The push of a reduced config is the experiment's too.
        push_to_a(&store, "reduced", Some("e"), 3);
        let targets = store.experiment_targets("e").unwrap();
        assert_eq!(targets[0].desired_elsewhere, None);
        push_to_a(&store, "operator", None, 4);
        let targets = store.experiment_targets("e").unwrap();
        assert_eq!(targets[0].desired_elsewhere.as_deref(), Some("operator"));
        drop(store);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_restore_asked_for_is_kept_until_done_and_redone_after_a_crash() {
        let (dir, store) = scratch("restore");
        experiment(&store, "e");
        let cancel = Transition {
            from: Some(State::Draft),
            to: State::Cancelled,
            actor: Actor::system("t"),
            reason: "stop".into(),
            stamp: Stamp {
                restore: true,
                ..Stamp::default()
            },
        };
        store.transition("e", &cancel, 2).unwrap();
        let ids = |store: &Store| -> Vec<String> {
            store
                .pending_restores()
                .unwrap()
                .into_iter()
                .map(|e| e.id)
                .collect()
        };
        assert_eq!(ids(&store), vec!["e"]);
        // One task takes it; nobody else can.
        assert!(store.claim_restore("e").unwrap());
        assert!(!store.claim_restore("e").unwrap());
        assert!(ids(&store).is_empty());
        // The controller dies mid-restore: at the next start it is due again.
        drop(store);
        let store = Store::open_dir(&dir).unwrap();
        assert_eq!(store.requeue_restores().unwrap(), 1);
        assert_eq!(ids(&store), vec!["e"]);
        assert!(store.claim_restore("e").unwrap());
        store.finish_restore("e").unwrap();
        assert_eq!(store.requeue_restores().unwrap(), 0);
        assert!(ids(&store).is_empty());
        drop(store);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn transitions_are_compare_and_set_and_recorded() {
        let (dir, store) = scratch("transitions");
        experiment(&store, "e");
        let to = |to: State, from: Option<State>| Transition {
            from,
            to,
            actor: Actor::system("t"),
            reason: format!("to {to}"),
            stamp: Stamp::default(),
        };
        // Illegal, and a stale `from`: refused, nothing recorded.
        assert!(matches!(
            store.transition("e", &to(State::Running, None), 2),
            Err(TransitionError::Illegal { .. })
        ));
        assert!(matches!(
            store.transition("e", &to(State::Deploying, Some(State::Pending)), 2),
            Err(TransitionError::Illegal { .. })
        ));
        assert!(matches!(
            store.transition("nope", &to(State::Pending, None), 2),
            Err(TransitionError::NotFound(_))
        ));
        let e = store
            .transition("e", &to(State::Pending, Some(State::Draft)), 3)
            .unwrap();
        assert_eq!((e.state, e.reason.as_str()), (State::Pending, "to pending"));
        let history: Vec<(String, String)> = store
            .transitions("e")
            .unwrap()
            .into_iter()
            .map(|t| (t.from, t.to))
            .collect();
        assert_eq!(
            history,
            vec![
                (String::new(), "draft".to_string()),
                ("draft".to_string(), "pending".to_string())
            ]
        );
        drop(store);
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Walk `e` from draft to `to` along the lifecycle.
    fn walk(store: &Store, id: &str, path: &[State]) {
        for to in path {
            let t = Transition {
                from: None,
                to: *to,
                actor: Actor::system("t"),
                reason: format!("to {to}"),
                stamp: Stamp::default(),
            };
            store.transition(id, &t, 2).unwrap();
        }
    }

    #[test]
    fn a_promotion_plan_is_written_with_its_transition_and_waves_move_by_compare_and_set() {
        use super::super::promotions::{NewPromotion, WaveChange, WaveState};
        let (dir, store) = scratch("promotion");
        experiment(&store, "e");
        walk(
            &store,
            "e",
            &[
                State::Pending,
                State::Deploying,
                State::Running,
                State::Analyzing,
                State::Succeeded,
            ],
        );
        // The lowest the experiment measured, per agent.
        let mut measured = rows("a", 3);
        measured[1].series = 7;
        measured[2].critical_visible = 2;
        store
            .record_measurements(
                "e",
                &measured,
                1,
                &GuardCheck {
                    candidates: vec![],
                    min_critical_coverage: None,
                    max_cpu_seconds: None,
                    intervals: 3,
                },
            )
            .unwrap();
        let floors = store.promotion_floors("e", "lean").unwrap();
        assert_eq!(floors.len(), 1);
        assert_eq!(
            (floors[0].series, floors[0].critical_coverage),
            (7, Some(0.5))
        );
        assert!(store.promotion("e").unwrap().is_none());
        let plan = NewPromotion {
            variant: "lean".into(),
            config_hash: "p".into(),
            watch_ms: 5_000,
            max_series_drop: 0.2,
            waves: vec![(50, vec!["a".into()]), (100, vec!["b".into(), "c".into()])],
        };
        let promoting = Transition {
            from: Some(State::Succeeded),
            to: State::Promoting,
            actor: Actor::system("t"),
            reason: "promoting".into(),
            stamp: Stamp {
                promotion: Some(plan),
                ..Stamp::default()
            },
        };
        store.transition("e", &promoting, 3).unwrap();
        let p = store
            .promotion("e")
            .unwrap()
            .expect("written with the transition");
        assert_eq!(p.waves.len(), 2);
        assert_eq!(p.waves[1].agents, ["b", "c"]);
        assert!(p.waves.iter().all(|w| w.state == WaveState::Pending));
        // One step at a time, from the state it was read in.
        let deploying = WaveChange {
            push_id: Some("push-1".into()),
            started_at: Some(4),
            ..WaveChange::to(WaveState::Deploying)
        };
        assert!(
            store
                .advance_wave("e", 1, WaveState::Pending, &deploying)
                .unwrap()
        );
        assert!(
            !store
                .advance_wave("e", 1, WaveState::Pending, &deploying)
                .unwrap()
        );
        let w = &store.promotion("e").unwrap().unwrap().waves[0];
        assert_eq!(
            (w.state, w.push_id.as_deref()),
            (WaveState::Deploying, Some("push-1"))
        );
        // A note keeps the state; it is refused once the state moved on.
        assert!(
            store
                .timeline_note(
                    "e",
                    State::Promoting,
                    &Actor::system("t"),
                    "experiment.wave",
                    "wave 1",
                    5
                )
                .unwrap()
        );
        let last = store.transitions("e").unwrap().pop().unwrap();
        assert_eq!(
            (last.from.as_str(), last.to.as_str()),
            ("promoting", "promoting")
        );
        // Leaving promoting skips every wave not finished, and no wave
        // moves after.
        walk(&store, "e", &[State::RolledBack]);
        let p = store.promotion("e").unwrap().unwrap();
        assert!(
            p.waves.iter().all(|w| w.state == WaveState::Skipped),
            "{p:?}"
        );
        assert!(
            !store
                .advance_wave(
                    "e",
                    2,
                    WaveState::Skipped,
                    &WaveChange::to(WaveState::Deploying)
                )
                .unwrap()
        );
        assert!(
            !store
                .timeline_note(
                    "e",
                    State::Promoting,
                    &Actor::system("t"),
                    "experiment.wave",
                    "late",
                    6
                )
                .unwrap()
        );
        drop(store);
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// The queries whose cost grew with every experiment ever run (a scan
    /// of all targets per deploy target, a sort of all experiments per
    /// list) stay on their indexes.
    #[test]
    fn history_queries_use_their_indexes() {
        let (dir, store) = scratch("indexes");
        let busy = plan(&store, AGENT_IN_EXPERIMENT, &["agent", "exp"]);
        assert!(
            busy.contains("experiment_targets_by_agent") && !busy.contains("SCAN t"),
            "{busy}"
        );
        let list = plan(
            &store,
            &format!("SELECT id {LIST_EXPERIMENTS}"),
            &["100", "running"],
        );
        assert!(
            list.contains("experiments_by_created") && !list.contains("TEMP B-TREE"),
            "{list}"
        );
        drop(store);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
