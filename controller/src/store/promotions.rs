//! A promotion rolled out in waves: the plan, written in the same
//! transaction as the move to `promoting`, and each wave's progress as the
//! scheduler moves it along (compare-and-set on the wave's state, so a
//! restarted controller, or a second one racing it, never acts twice on
//! one step).

use rusqlite::{OptionalExtension, Transaction, params};

use super::{Actor, StatsRecord, Store, StoreError, audit, named};
use crate::experiment::state::State;
pub use phoenix_api::WaveState;

/// The plan of a promotion, as the transition to `promoting` writes it.
#[derive(Debug, Clone, PartialEq)]
pub struct NewPromotion {
    pub variant: String,
    pub config_hash: String,
    pub watch_ms: i64,
    pub max_series_drop: f64,
    /// (percent, the agents this wave adds), in order.
    pub waves: Vec<(u8, Vec<String>)>,
}

/// A stored promotion with its waves, in order.
#[derive(Debug, Clone, PartialEq)]
pub struct PromotionRecord {
    pub variant: String,
    pub config_hash: String,
    pub watch_ms: i64,
    pub max_series_drop: f64,
    pub waves: Vec<WaveRecord>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct WaveRecord {
    pub number: u32,
    pub percent: u8,
    pub agents: Vec<String>,
    pub state: WaveState,
    pub push_id: Option<String>,
    pub started_at: Option<i64>,
    pub watch_until: Option<i64>,
    pub finished_at: Option<i64>,
    pub reason: String,
}

/// A wave's next step: its new state and the columns it sets (None keeps
/// what is there).
#[derive(Debug, Clone)]
pub struct WaveChange {
    pub state: WaveState,
    pub push_id: Option<String>,
    pub started_at: Option<i64>,
    pub watch_until: Option<i64>,
    pub finished_at: Option<i64>,
    pub reason: Option<String>,
}

impl WaveChange {
    pub fn to(state: WaveState) -> WaveChange {
        WaveChange {
            state,
            push_id: None,
            started_at: None,
            watch_until: None,
            finished_at: None,
            reason: None,
        }
    }
}

/// The lowest a variant measured on one agent during the experiment: what a
/// promoted agent is judged against.
#[derive(Debug, Clone, PartialEq)]
pub struct Floor {
    pub agent_id: String,
    pub series: u64,
    /// Critical processes visible / seen, over the intervals that saw any.
    pub critical_coverage: Option<f64>,
}

/// Write the plan (called inside the transition to `promoting`).
pub(super) fn insert_promotion(
    tx: &Transaction<'_>,
    id: &str,
    p: &NewPromotion,
    now: i64,
) -> rusqlite::Result<()> {
    // A promotion that was rolled back leaves its rows; an experiment is
    // promoted from `succeeded` once, so this replaces nothing in practice,
    // and the plan written is always the one in force.
    tx.execute(
        "DELETE FROM experiment_waves WHERE experiment_id = ?1",
        [id],
    )?;
    tx.execute(
        "INSERT OR REPLACE INTO experiment_promotions
             (experiment_id, variant, config_hash, watch_ms, max_series_drop, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![
            id,
            p.variant,
            p.config_hash,
            p.watch_ms,
            p.max_series_drop,
            now
        ],
    )?;
    let mut insert = tx.prepare_cached(
        "INSERT INTO experiment_waves (experiment_id, number, percent, agents)
         VALUES (?1, ?2, ?3, ?4)",
    )?;
    for (i, (percent, agents)) in p.waves.iter().enumerate() {
        let agents = serde_json::to_string(agents).unwrap_or_else(|_| "[]".into());
        insert.execute(params![id, i as i64 + 1, percent, agents])?;
    }
    Ok(())
}

/// Leaving `promoting`: the waves not finished will not be.
pub(super) fn skip_unfinished_waves(tx: &Transaction<'_>, id: &str) -> rusqlite::Result<()> {
    tx.execute(
        "UPDATE experiment_waves SET state = 'skipped'
         WHERE experiment_id = ?1 AND state IN ('pending', 'deploying', 'watching')",
        [id],
    )?;
    Ok(())
}

impl Store {
    /// The promotion of `id` in waves, if it was promoted so.
    pub fn promotion(&self, id: &str) -> Result<Option<PromotionRecord>, StoreError> {
        let conn = self.conn();
        let head = conn
            .prepare_cached(
                "SELECT variant, config_hash, watch_ms, max_series_drop
                 FROM experiment_promotions WHERE experiment_id = ?1",
            )?
            .query_row([id], |r| {
                Ok(PromotionRecord {
                    variant: r.get(0)?,
                    config_hash: r.get(1)?,
                    watch_ms: r.get(2)?,
                    max_series_drop: r.get(3)?,
                    waves: Vec::new(),
                })
            })
            .optional()?;
        let Some(mut promotion) = head else {
            return Ok(None);
        };
        let mut stmt = conn.prepare_cached(
            "SELECT number, percent, agents, state, push_id, started_at, watch_until,
                    finished_at, reason
             FROM experiment_waves WHERE experiment_id = ?1 ORDER BY number",
        )?;
        promotion.waves = stmt
            .query_map([id], |r| {
                let agents: String = r.get(2)?;
                Ok(WaveRecord {
                    number: r.get(0)?,
                    percent: r.get(1)?,
                    // Written by this controller from a list of ids.
                    agents: serde_json::from_str(&agents).unwrap_or_default(),
                    state: named(r, 3, WaveState::parse)?,
                    push_id: r.get(4)?,
                    started_at: r.get(5)?,
                    watch_until: r.get(6)?,
                    finished_at: r.get(7)?,
                    reason: r.get(8)?,
                })
            })?
            .collect::<Result<_, _>>()?;
        Ok(Some(promotion))
    }

    /// Move wave `number` of `id` from `from` as `change` says, while the
    /// experiment is still promoting; false when either moved meanwhile.
    pub fn advance_wave(
        &self,
        id: &str,
        number: u32,
        from: WaveState,
        change: &WaveChange,
    ) -> Result<bool, StoreError> {
        self.write(|tx| {
            Ok(tx.execute(
                "UPDATE experiment_waves SET state = ?4,
                     push_id = COALESCE(?5, push_id),
                     started_at = COALESCE(?6, started_at),
                     watch_until = COALESCE(?7, watch_until),
                     finished_at = COALESCE(?8, finished_at),
                     reason = COALESCE(?9, reason)
                 WHERE experiment_id = ?1 AND number = ?2 AND state = ?3
                   AND (SELECT state FROM experiments WHERE id = ?1) = 'promoting'",
                params![
                    id,
                    number,
                    from.as_str(),
                    change.state.as_str(),
                    change.push_id,
                    change.started_at,
                    change.watch_until,
                    change.finished_at,
                    change.reason
                ],
            )? == 1)
        })
    }

    /// Per agent, the lowest `variant` measured in experiment `id`.
    pub fn promotion_floors(&self, id: &str, variant: &str) -> Result<Vec<Floor>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT agent_id, MIN(series),
                    MIN(CASE WHEN critical_total > 0
                        THEN CAST(critical_visible AS REAL) / critical_total END)
             FROM experiment_measurements WHERE experiment_id = ?1 AND variant = ?2
             GROUP BY agent_id ORDER BY agent_id",
        )?;
        let rows = stmt
            .query_map(params![id, variant], |r| {
                Ok(Floor {
                    agent_id: r.get(0)?,
                    series: r.get::<_, i64>(1)?.max(0) as u64,
                    critical_coverage: r.get(2)?,
                })
            })?
            .collect::<Result<_, _>>()?;
        Ok(rows)
    }

    /// The latest stats of each of `agents` that sent any.
    pub fn latest_stats(
        &self,
        agents: &[String],
    ) -> Result<Vec<(String, StatsRecord)>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT received_at, stats FROM agent_stats_latest WHERE agent_id = ?1",
        )?;
        let mut out = Vec::with_capacity(agents.len());
        for a in agents {
            let found = stmt
                .query_row([a], |r| {
                    Ok(StatsRecord {
                        received_at: r.get(0)?,
                        stats: r.get(1)?,
                    })
                })
                .optional()?;
            if let Some(s) = found {
                out.push((a.clone(), s));
            }
        }
        Ok(out)
    }

    /// A line in the experiment's timeline that is not a state change (a
    /// wave passed): from and to are the state it is in, which must still
    /// be `state`. Audited like a transition. False when it moved on.
    pub fn timeline_note(
        &self,
        id: &str,
        state: State,
        actor: &Actor,
        action: &str,
        reason: &str,
        now: i64,
    ) -> Result<bool, StoreError> {
        self.write(|tx| {
            let current: Option<String> = tx
                .query_row("SELECT state FROM experiments WHERE id = ?1", [id], |r| {
                    r.get(0)
                })
                .optional()?;
            if current.as_deref() != Some(state.as_str()) {
                return Ok(false);
            }
            tx.execute(
                "INSERT INTO experiment_transitions (experiment_id, at, from_state, to_state, actor, reason)
                 VALUES (?1, ?2, ?3, ?3, ?4, ?5)",
                params![id, now, state.as_str(), actor.name, reason],
            )?;
            audit(
                tx,
                now,
                actor,
                action,
                None,
                None,
                serde_json::json!({ "experiment": id, "state": state.as_str(), "reason": reason }),
            )?;
            Ok(true)
        })
    }
}
