//! The controller's durable state: one SQLite file (`controller.db` under
//! `--data-dir`), WAL-journaled so readers never wait for the writer.
//!
//! Every method is synchronous and short; async callers go through
//! [`crate::blocking`] so a slow disk never stalls the gRPC or HTTP runtime.
//! One connection behind a mutex is enough: writes are a few rows each and
//! SQLite serializes writers anyway.

pub mod audit_chain;
mod audit_retention;
pub mod backup;
pub mod credentials;
pub mod experiments;
mod migrate;
pub mod opamp;
pub mod promotions;
mod records;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Mutex, MutexGuard};

use rusqlite::{Connection, OptionalExtension, Transaction, TransactionBehavior, params};

use crate::fleet::status::{self, Offer, ReportContext, TargetRow, TargetUpdate};

pub use credentials::{CredentialState, Issue, Revocation};
pub use experiments::{
    Disqualified, ExperimentRecord, ExperimentTarget, NewExperiment, Stamp, Transition,
    TransitionError, TransitionRecord,
};
pub use migrate::{MIGRATIONS, SCHEMA_VERSION};
pub use opamp::OpampRefusal;
pub use records::*;

/// Why the store failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("SQLite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error(
        "the database schema is version {found}, newer than this controller knows ({known}); upgrade the controller"
    )]
    TooNew { found: i64, known: i64 },
    #[error("cannot create the data directory {path}: {error}")]
    DataDir { path: String, error: std::io::Error },
    #[error("schema migration {version} failed: {problem}")]
    Migration { version: i64, problem: String },
}

/// The store. Share it as `Arc<Store>`.
pub struct Store {
    conn: Mutex<Connection>,
}

/// Why a push could not be created; nothing was written.
#[derive(Debug, thiserror::Error)]
pub enum CreatePushError {
    #[error("{0}")]
    NoMatch(String),
    #[error("unknown agent id(s): {}", .0.join(", "))]
    UnknownAgents(Vec<String>),
    #[error("revoked agent id(s): {}", .0.join(", "))]
    RevokedAgents(Vec<String>),
    /// Some targets take the other config kind: a push reaches agents of
    /// one config kind (a Phoenix config means nothing to a Collector).
    #[error(
        "the push is a {} config but {} of its targets take {} configs: {}; \
         push to each config kind separately",
        .push.as_str(), .agents.len(), .push.other().as_str(), few(.agents)
    )]
    OtherConfigKind {
        push: ConfigKind,
        agents: Vec<String>,
    },
    /// OpAMP targets that did not declare `AcceptsRemoteConfig`.
    #[error(
        "{} target(s) do not accept remote config (no AcceptsRemoteConfig capability): {}",
        .0.len(), few(.0)
    )]
    NoRemoteConfig(Vec<String>),
    /// The config breaks the policy of some targets: every problem, each
    /// naming its agent.
    #[error("the config breaks the policy of some targets")]
    Policy(Vec<phoenix_config::ConfigError>),
    /// Targets outside the caller's scope (they lack its labels).
    #[error("agent(s) outside the scope: {}", .0.join(", "))]
    OutOfScope(Vec<String>),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A push's last check before it is stored: every target with its reported
/// policy (JSON; None when it reported none).
pub type Admit<'a> = dyn Fn(&[(String, Option<String>)]) -> Result<(), CreatePushError> + 'a;

impl From<rusqlite::Error> for CreatePushError {
    fn from(e: rusqlite::Error) -> Self {
        CreatePushError::Store(e.into())
    }
}

impl Store {
    /// Open (or create) `controller.db` in `dir` and bring its schema up to date.
    pub fn open_dir(dir: &Path) -> Result<Store, StoreError> {
        std::fs::create_dir_all(dir).map_err(|error| StoreError::DataDir {
            path: dir.display().to_string(),
            error,
        })?;
        Self::open(&dir.join("controller.db"))
    }

    /// Open (or create) the database file at `path` and migrate it.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let mut conn = Connection::open(path)?;
        // WAL: the API's reads and the bench's observer never block the
        // writer. NORMAL sync is durable across a process crash (the WAL is
        // synced at checkpoints), which is what a controller restart needs.
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        migrate::migrate(&mut conn)?;
        Ok(Store {
            conn: Mutex::new(conn),
        })
    }

    fn conn(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock cannot leave a half-written
        // transaction behind (it rolls back on drop), so the connection is
        // still good.
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn write<T>(
        &self,
        f: impl FnOnce(&Transaction<'_>) -> Result<T, rusqlite::Error>,
    ) -> Result<T, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let out = f(&tx)?;
        tx.commit()?;
        Ok(out)
    }

    /// The schema version in force.
    pub fn schema_version(&self) -> Result<i64, StoreError> {
        Ok(self
            .conn()
            .query_row("SELECT MAX(version) FROM schema_version", [], |r| r.get(0))?)
    }

    /// A trivial query, for `/readyz`.
    pub fn ping(&self) -> Result<(), StoreError> {
        self.conn().query_row("SELECT 1", [], |_| Ok(()))?;
        Ok(())
    }

    /// At startup no session exists yet: every agent is offline until it
    /// says Hello again.
    pub fn mark_all_offline(&self) -> Result<usize, StoreError> {
        self.write(|tx| {
            tx.execute(
                "UPDATE agents SET status = 'offline' WHERE status = 'online'",
                [],
            )
        })
    }

    /// Record a Hello: the agent is online with this identity and labels.
    /// Returns what changed in rollouts, and the desired config to send when
    /// the agent does not run it (OpAMP: the controller re-offers the
    /// desired config after every reconnect). A state report within a
    /// session (the agent's config changed locally) only updates the
    /// record: the desired config is offered again at the next connect,
    /// not fought over mid-session.
    /// `connected_at` identifies the session (see [`Store::set_offline`]).
    /// `offer_desired` is set for the Hello that opens a session, not for
    /// a state report within one.
    pub fn hello(
        &self,
        hello: &AgentHello,
        connected_at: i64,
        now: i64,
        offer_desired: bool,
    ) -> Result<HelloOutcome, StoreError> {
        self.write(|tx| {
            let capabilities = serde_json::to_string(&hello.capabilities).unwrap_or_default();
            let policy = hello
                .policy
                .as_ref()
                .and_then(|p| serde_json::to_string(p).ok());
            tx.execute(
                "INSERT INTO agents (id, host_name, version, capabilities, status, first_seen, last_seen, connected_at, policy)
                 VALUES (?1, ?2, ?3, ?4, 'online', ?5, ?5, ?6, ?7)
                 ON CONFLICT (id) DO UPDATE SET host_name = ?2, version = ?3, capabilities = ?4,
                     status = 'online', last_seen = ?5, connected_at = ?6, policy = ?7",
                params![hello.id, hello.host_name, hello.version, capabilities, now, connected_at, policy],
            )?;
            replace_labels(tx, &hello.id, &hello.labels)?;
            let changes = match &hello.status {
                Some(report) => apply_status(tx, &hello.id, report, now)?,
                None => Vec::new(),
            };
            let resend = if offer_desired {
                desired_to_resend(tx, &hello.id, now)?
            } else {
                None
            };
            Ok(HelloOutcome { changes, resend })
        })
    }

    /// Apply a ConfigStatus from an agent to its record and to the push it
    /// answers. Returns the rollout targets whose state changed.
    pub fn config_status(
        &self,
        agent_id: &str,
        report: &StatusReport,
        now: i64,
    ) -> Result<Vec<TargetChange>, StoreError> {
        self.write(|tx| {
            tx.execute(
                "UPDATE agents SET last_seen = ?2 WHERE id = ?1",
                params![agent_id, now],
            )?;
            apply_status(tx, agent_id, report, now)
        })
    }

    /// A heartbeat: the agent is alive, and this is its own cost.
    pub fn heartbeat(
        &self,
        agent_id: &str,
        now: i64,
        cpu_seconds_total: f64,
        resident_memory_bytes: u64,
    ) -> Result<(), StoreError> {
        self.write(|tx| {
            tx.execute(
                "UPDATE agents SET last_seen = ?2, cpu_seconds_total = ?3, resident_memory_bytes = ?4
                 WHERE id = ?1",
                params![
                    agent_id,
                    now,
                    finite_or_none(cpu_seconds_total),
                    i64::try_from(resident_memory_bytes).unwrap_or(i64::MAX)
                ],
            )?;
            Ok(())
        })
    }

    /// Keep the latest IntervalStats of an agent (as JSON).
    pub fn save_stats(&self, agent_id: &str, stats: &str, now: i64) -> Result<(), StoreError> {
        self.write(|tx| {
            tx.execute(
                "UPDATE agents SET last_seen = ?2 WHERE id = ?1",
                params![agent_id, now],
            )?;
            tx.execute(
                "INSERT INTO agent_stats_latest (agent_id, received_at, stats) VALUES (?1, ?2, ?3)
                 ON CONFLICT (agent_id) DO UPDATE SET received_at = ?2, stats = ?3",
                params![agent_id, now, stats],
            )?;
            Ok(())
        })
    }

    /// The session that connected at `connected_at` ended or timed out.
    /// A newer session of the same agent (another `connected_at`) keeps it
    /// online.
    pub fn set_offline(&self, agent_id: &str, connected_at: i64) -> Result<(), StoreError> {
        self.write(|tx| {
            tx.execute(
                "UPDATE agents SET status = 'offline' WHERE id = ?1 AND connected_at = ?2",
                params![agent_id, connected_at],
            )?;
            Ok(())
        })
    }

    /// Create a push in one transaction: the config version (deduplicated
    /// by hash), the push, a `pending` target per matched agent, each
    /// agent's desired config, and the audit entry. Older open targets of
    /// the same agents become `superseded`: an agent has one desired config.
    /// Returns the target agent ids and how many older targets were superseded.
    /// `admit` sees every target with its reported policy (JSON, None when
    /// it reported none) before anything is written, and may refuse the
    /// push (the fleet's policy check).
    pub fn create_push(
        &self,
        push: &NewPush,
        now: i64,
        admit: &Admit<'_>,
    ) -> Result<(Vec<String>, usize), CreatePushError> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let targets = match &push.selector {
            Selector::Labels(labels) => {
                // A revoked agent never comes back: a target for it could
                // only time out.
                let mut revoked = tx.prepare_cached(REVOKED)?;
                let mut ids = Vec::new();
                for id in agents_matching(&tx, labels, None, None)? {
                    if !revoked.exists([&id])? {
                        ids.push(id);
                    }
                }
                drop(revoked);
                if ids.is_empty() {
                    return Err(CreatePushError::NoMatch(format!(
                        "no known agent has the labels {}",
                        format_labels(labels)
                    )));
                }
                ids
            }
            Selector::Agents(ids) => {
                let mut unknown = Vec::new();
                let mut revoked_ids = Vec::new();
                let mut known = Vec::new();
                let mut exists = tx.prepare_cached("SELECT 1 FROM agents WHERE id = ?1")?;
                let mut revoked = tx.prepare_cached(REVOKED)?;
                for id in ids {
                    if known.contains(id) {
                        continue;
                    }
                    if !exists.exists([id])? {
                        unknown.push(id.clone());
                    } else if revoked.exists([id])? {
                        revoked_ids.push(id.clone());
                    } else {
                        known.push(id.clone());
                    }
                }
                drop(exists);
                drop(revoked);
                if !unknown.is_empty() {
                    return Err(CreatePushError::UnknownAgents(unknown));
                }
                if !revoked_ids.is_empty() {
                    return Err(CreatePushError::RevokedAgents(revoked_ids));
                }
                if known.is_empty() {
                    return Err(CreatePushError::NoMatch(
                        "the selector names no agent".into(),
                    ));
                }
                known
            }
        };
        if let Some(within) = &push.within {
            let inside: std::collections::HashSet<String> =
                agents_matching(&tx, within, None, None)?
                    .into_iter()
                    .collect();
            let outside: Vec<String> = targets
                .iter()
                .filter(|id| !inside.contains(*id))
                .cloned()
                .collect();
            if !outside.is_empty() {
                return Err(CreatePushError::OutOfScope(outside));
            }
        }
        // After the scope: a caller learns nothing of agents it may not see.
        check_config_kind(&tx, &targets, push.config_kind)?;
        {
            let mut policy = tx.prepare_cached("SELECT policy FROM agents WHERE id = ?1")?;
            let mut with_policies = Vec::with_capacity(targets.len());
            for id in &targets {
                let p: Option<String> = policy.query_row([id], |r| r.get(0)).optional()?.flatten();
                with_policies.push((id.clone(), p));
            }
            admit(&with_policies)?;
        }
        if push.revert_to_local {
            // Known only by hash; a body pushed later fills it in.
            tx.execute(
                "INSERT OR IGNORE INTO config_versions (hash, content, author, created_at, local)
                 VALUES (?1, '', ?2, ?3, 1)",
                params![push.hash, push.actor.name, now],
            )?;
        } else {
            tx.execute(
                "INSERT INTO config_versions (hash, content, author, created_at) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (hash) DO UPDATE SET content = excluded.content, local = 0
                 WHERE config_versions.local = 1",
                params![push.hash, push.yaml, push.actor.name, now],
            )?;
        }
        tx.execute(
            "INSERT INTO pushes (id, selector, config_hash, template, author, created_at, deadline,
                 experiment_id, config_kind, content_type, file_name)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
            params![
                push.id,
                // Maps and lists of strings always serialize.
                serde_json::to_string(&push.selector.to_api()).unwrap_or_default(),
                push.hash,
                push.template,
                push.actor.name,
                now,
                push.deadline,
                push.experiment_id,
                push.config_kind.as_str(),
                push.content_type,
                push.file
            ],
        )?;
        let mut superseded_count = 0;
        {
            let superseded = format!("superseded by push {}", push.id);
            let mut supersede = tx.prepare_cached(
                "UPDATE push_targets SET state = 'superseded', error = ?2, updated_at = ?3
                 WHERE agent_id = ?1 AND state IN ('pending', 'applying')",
            )?;
            let mut insert = tx.prepare_cached(
                "INSERT INTO push_targets (push_id, agent_id, state, updated_at) VALUES (?1, ?2, 'pending', ?3)",
            )?;
            let mut desire =
                tx.prepare_cached("UPDATE agents SET desired_push_id = ?2 WHERE id = ?1")?;
            for id in &targets {
                superseded_count += supersede.execute(params![id, superseded, now])?;
                insert.execute(params![push.id, id, now])?;
                desire.execute(params![id, push.id])?;
            }
        }
        audit(
            &tx,
            now,
            &push.actor,
            "push.created",
            Some(&push.id),
            None,
            serde_json::json!({
                "selector": push.selector.to_api(),
                "hash": push.hash,
                "template": push.template,
                "config_kind": push.config_kind.as_str(),
                "targets": targets.len(),
            }),
        )?;
        tx.commit()?;
        Ok((targets, superseded_count))
    }

    /// The targets the push was just sent to are `applying` (unless an
    /// answer already arrived: only `pending` ones move).
    pub fn mark_applying(
        &self,
        push_id: &str,
        agents: &[String],
        now: i64,
    ) -> Result<(), StoreError> {
        if agents.is_empty() {
            return Ok(());
        }
        self.write(|tx| {
            let mut update = tx.prepare_cached(
                "UPDATE push_targets SET state = 'applying', updated_at = ?3
                 WHERE push_id = ?1 AND agent_id = ?2 AND state = 'pending'",
            )?;
            for a in agents {
                update.execute(params![push_id, a, now])?;
            }
            Ok(())
        })
    }

    /// Open targets of pushes past their deadline become `timeout`.
    pub fn expire_pushes(&self, now: i64) -> Result<Vec<TargetChange>, StoreError> {
        self.write(|tx| {
            let expired: Vec<(String, String)> = {
                let mut stmt = tx.prepare_cached(
                    "UPDATE push_targets SET state = 'timeout', updated_at = ?1,
                         error = 'no answer from the agent before the push deadline'
                     WHERE state IN ('pending', 'applying')
                       AND push_id IN (SELECT id FROM pushes WHERE deadline <= ?1)
                     RETURNING push_id, agent_id",
                )?;
                stmt.query_map([now], |r| Ok((r.get(0)?, r.get(1)?)))?
                    .collect::<Result<_, _>>()?
            };
            let mut changes = Vec::with_capacity(expired.len());
            for (push_id, agent_id) in expired {
                audit(
                    tx,
                    now,
                    &Actor::system(crate::auth::system::CONTROLLER),
                    "push.timeout",
                    Some(&push_id),
                    Some(&agent_id),
                    serde_json::json!({}),
                )?;
                changes.push(TargetChange {
                    push_id,
                    agent_id,
                    state: TargetState::Timeout,
                });
            }
            Ok(changes)
        })
    }

    /// Agents matching every label in `labels` and, when given, `status`.
    pub fn list_agents(
        &self,
        labels: &BTreeMap<String, String>,
        status: Option<AgentStatus>,
    ) -> Result<Vec<AgentRecord>, StoreError> {
        let conn = self.conn();
        let ids = agents_matching(&conn, labels, status, None)?;
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(a) = load_agent(&conn, &id)? {
                out.push(a);
            }
        }
        Ok(out)
    }

    /// One agent with its latest stats.
    pub fn agent(
        &self,
        id: &str,
    ) -> Result<Option<(AgentRecord, Option<StatsRecord>)>, StoreError> {
        let conn = self.conn();
        let Some(agent) = load_agent(&conn, id)? else {
            return Ok(None);
        };
        let stats = conn
            .query_row(
                "SELECT received_at, stats FROM agent_stats_latest WHERE agent_id = ?1",
                [id],
                |r| {
                    Ok(StatsRecord {
                        received_at: r.get(0)?,
                        stats: r.get(1)?,
                    })
                },
            )
            .optional()?;
        Ok(Some((agent, stats)))
    }

    /// How many agents are online and offline.
    pub fn agent_counts(&self) -> Result<(u64, u64), StoreError> {
        Ok(self.conn().query_row(
            "SELECT COALESCE(SUM(status = 'online'), 0), COALESCE(SUM(status = 'offline'), 0) FROM agents",
            [],
            |r| Ok((r.get::<_, i64>(0)? as u64, r.get::<_, i64>(1)? as u64)),
        )?)
    }

    /// A push with the state of every target; with `within`, only its
    /// targets carrying those labels, and `None` when it has none.
    pub fn push(
        &self,
        id: &str,
        within: Option<&BTreeMap<String, String>>,
    ) -> Result<Option<PushRecord>, StoreError> {
        let conn = self.conn();
        let empty = BTreeMap::new();
        let labels = within.unwrap_or(&empty);
        let mut args: Vec<&dyn rusqlite::ToSql> = Vec::new();
        let sql = format!("{} WHERE p.id = ?", push_select(labels, &mut args));
        args.push(&id);
        let Some(mut push) = conn
            .query_row(&sql, args.as_slice(), push_from_row)
            .optional()?
        else {
            return Ok(None);
        };
        let mut args: Vec<&dyn rusqlite::ToSql> = vec![&id];
        let sql = format!(
            "SELECT agent_id, state, error, reported_hash, updated_at FROM push_targets t
             WHERE push_id = ? {} ORDER BY agent_id",
            labels_clause("t.agent_id", labels, &mut args)
        );
        let mut stmt = conn.prepare_cached(&sql)?;
        push.targets = stmt
            .query_map(args.as_slice(), |r| {
                Ok(TargetRecord {
                    agent_id: r.get(0)?,
                    state: named(r, 1, TargetState::parse)?,
                    error: r.get(2)?,
                    reported_hash: r.get(3)?,
                    updated_at: r.get(4)?,
                })
            })?
            .collect::<Result<_, _>>()?;
        if within.is_some() && push.targets.is_empty() {
            return Ok(None);
        }
        Ok(Some(push))
    }

    /// The latest pushes, newest first, without their targets.
    /// With `within`, only pushes with a target carrying those labels.
    pub fn list_pushes(
        &self,
        limit: u32,
        within: Option<&BTreeMap<String, String>>,
    ) -> Result<Vec<PushRecord>, StoreError> {
        let conn = self.conn();
        let empty = BTreeMap::new();
        let mut args: Vec<&dyn rusqlite::ToSql> = Vec::new();
        let select = push_select(within.unwrap_or(&empty), &mut args);
        let filter = match within {
            Some(labels) => format!(
                "WHERE EXISTS (SELECT 1 FROM push_targets t WHERE t.push_id = p.id {})",
                labels_clause("t.agent_id", labels, &mut args)
            ),
            None => String::new(),
        };
        args.push(&limit);
        let mut stmt = conn.prepare_cached(&format!(
            "{select} {filter} ORDER BY p.created_at DESC, p.rowid DESC LIMIT ?"
        ))?;
        let out = stmt
            .query_map(args.as_slice(), push_from_row)?
            .collect::<Result<_, _>>()?;
        Ok(out)
    }

    /// The content of a config version.
    pub fn config_version(&self, hash: &str) -> Result<Option<String>, StoreError> {
        Ok(self
            .conn()
            .query_row(
                "SELECT content FROM config_versions WHERE hash = ?1",
                [hash],
                |r| r.get(0),
            )
            .optional()?)
    }

    /// Audit a state-changing API request that was refused (401, 403, 4xx
    /// from its handler): nothing else was written.
    pub fn audit_refusal(
        &self,
        actor: &Actor,
        detail: serde_json::Value,
        now: i64,
    ) -> Result<(), StoreError> {
        self.write(|tx| audit(tx, now, actor, "request.refused", None, None, detail))
    }

    /// Walk the audit log's hash chain (see [`audit_chain`]).
    pub fn verify_audit(&self) -> Result<audit_chain::Verification, StoreError> {
        audit_chain::verify(&self.conn())
    }

    /// The latest audit entries, newest first, optionally of one push.
    pub fn audit_log(
        &self,
        push_id: Option<&str>,
        limit: u32,
    ) -> Result<Vec<AuditRecord>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {AUDIT_COLUMNS} FROM audit_log
             WHERE ?1 IS NULL OR push_id = ?1 ORDER BY id DESC LIMIT ?2"
        ))?;
        let out = stmt
            .query_map(params![push_id, limit], audit_from_row)?
            .collect::<Result<_, _>>()?;
        Ok(out)
    }
}

const AUDIT_COLUMNS: &str = "id, at, actor, action, push_id, agent_id, detail, prev_hash, hash";

fn audit_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<AuditRecord> {
    Ok(AuditRecord {
        id: r.get(0)?,
        at: r.get(1)?,
        actor: r.get(2)?,
        action: r.get(3)?,
        push_id: r.get(4)?,
        agent_id: r.get(5)?,
        detail: r.get(6)?,
        prev_hash: r.get(7)?,
        hash: r.get(8)?,
    })
}

/// Whether an agent id is revoked.
const REVOKED: &str = "SELECT 1 FROM agent_credentials WHERE agent_id = ?1 AND state = 'revoked'";

/// A push's columns and its targets counted per state, only the targets
/// carrying `labels` (a scoped reader's): a reader does not learn how many
/// agents outside its scope a push reached. The labels' values are pushed
/// to `args`, in order.
fn push_select<'a>(
    labels: &'a BTreeMap<String, String>,
    args: &mut Vec<&'a dyn rusqlite::ToSql>,
) -> String {
    let mut sql = String::from(
        "SELECT p.id, p.selector, p.config_hash, p.template, p.author, p.created_at, p.deadline",
    );
    for state in [
        "pending",
        "applying",
        "applied",
        "failed",
        "timeout",
        "superseded",
    ] {
        sql.push_str(&format!(
            ", (SELECT COUNT(*) FROM push_targets t WHERE t.push_id = p.id AND t.state = '{state}'{})",
            labels_clause("t.agent_id", labels, args)
        ));
    }
    sql.push_str(", p.config_kind, p.content_type, p.file_name FROM pushes p");
    sql
}

fn push_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<PushRecord> {
    let count = |i: usize| r.get::<_, i64>(i).map(|n| n as u64);
    Ok(PushRecord {
        id: r.get(0)?,
        selector: r.get(1)?,
        hash: r.get(2)?,
        template: r.get(3)?,
        author: r.get(4)?,
        created_at: r.get(5)?,
        deadline: r.get(6)?,
        counts: TargetCounts {
            pending: count(7)?,
            applying: count(8)?,
            applied: count(9)?,
            failed: count(10)?,
            timeout: count(11)?,
            superseded: count(12)?,
        },
        config_kind: named(r, 13, ConfigKind::parse)?,
        content_type: r.get(14)?,
        file: r.get(15)?,
        targets: Vec::new(),
    })
}

fn finite_or_none(v: f64) -> Option<f64> {
    v.is_finite().then_some(v)
}

fn format_labels(labels: &BTreeMap<String, String>) -> String {
    labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// A stored name no enum variant has: the CHECK constraints keep such
/// text out, so a row holding one is reported rather than guessed at.
#[derive(Debug, thiserror::Error)]
#[error("unknown name {0:?} in the database")]
struct UnknownName(String);

/// Column `i`, holding one of the names `parse` knows.
fn named<T>(
    r: &rusqlite::Row<'_>,
    i: usize,
    parse: impl FnOnce(&str) -> Option<T>,
) -> rusqlite::Result<T> {
    let text = r.get_ref(i)?.as_str()?;
    parse(text).ok_or_else(|| {
        rusqlite::Error::FromSqlConversionFailure(
            i,
            rusqlite::types::Type::Text,
            Box::new(UnknownName(text.to_string())),
        )
    })
}

impl Store {
    /// Every agent carrying `labels`, for checking an experiment's configs
    /// and targets before it is stored.
    pub fn policies_matching(
        &self,
        labels: &BTreeMap<String, String>,
    ) -> Result<Vec<AgentPolicyRow>, StoreError> {
        let conn = self.conn();
        let mut row =
            conn.prepare_cached("SELECT host_name, policy, kind FROM agents WHERE id = ?1")?;
        let mut out = Vec::new();
        for id in agents_matching(&conn, labels, None, None)? {
            out.push(row.query_row([&id], |r| {
                Ok(AgentPolicyRow {
                    host_name: r.get(0)?,
                    policy: r.get(1)?,
                    kind: named(r, 2, AgentKind::parse)?,
                    id: id.clone(),
                })
            })?);
        }
        Ok(out)
    }
}

/// An agent as an experiment's checks see it.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentPolicyRow {
    pub id: String,
    pub host_name: String,
    /// The reported policy (JSON), None when it reported none.
    pub policy: Option<String>,
    pub kind: AgentKind,
}

/// `AND` the agent in `column` carries every label of `labels` (the
/// values are pushed to `args`, in order).
fn labels_clause<'a>(
    column: &str,
    labels: &'a BTreeMap<String, String>,
    args: &mut Vec<&'a dyn rusqlite::ToSql>,
) -> String {
    let mut sql = String::new();
    for (k, v) in labels {
        sql.push_str(&format!(
            " AND EXISTS (SELECT 1 FROM agent_labels l WHERE l.agent_id = {column} AND l.key = ? AND l.value = ?)"
        ));
        args.push(k);
        args.push(v);
    }
    sql
}

/// The agent's labels are `labels` from now on.
fn replace_labels(
    tx: &Transaction<'_>,
    agent_id: &str,
    labels: &BTreeMap<String, String>,
) -> Result<(), rusqlite::Error> {
    tx.execute("DELETE FROM agent_labels WHERE agent_id = ?1", [agent_id])?;
    let mut insert =
        tx.prepare_cached("INSERT INTO agent_labels (agent_id, key, value) VALUES (?1, ?2, ?3)")?;
    for (k, v) in labels {
        insert.execute(params![agent_id, k, v])?;
    }
    Ok(())
}

/// Ids of agents carrying every label in `labels` and, when given, with
/// this status and of this kind, sorted.
fn agents_matching(
    conn: &Connection,
    labels: &BTreeMap<String, String>,
    status: Option<AgentStatus>,
    kind: Option<AgentKind>,
) -> Result<Vec<String>, rusqlite::Error> {
    let mut sql = String::from("SELECT a.id FROM agents a WHERE 1 = 1");
    let mut args: Vec<&dyn rusqlite::ToSql> = Vec::new();
    let status_str = status.map(|s| s.as_str());
    if let Some(s) = &status_str {
        sql.push_str(" AND a.status = ?");
        args.push(s);
    }
    let kind_str = kind.map(|k| k.as_str());
    if let Some(k) = &kind_str {
        sql.push_str(" AND a.kind = ?");
        args.push(k);
    }
    sql.push_str(&labels_clause("a.id", labels, &mut args));
    sql.push_str(" ORDER BY a.id");
    let mut stmt = conn.prepare(&sql)?;
    let ids = stmt
        .query_map(args.as_slice(), |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    Ok(ids)
}

fn load_agent(conn: &Connection, id: &str) -> Result<Option<AgentRecord>, rusqlite::Error> {
    let Some(mut agent) = conn
        .query_row(
            "SELECT a.id, a.host_name, a.version, a.capabilities, a.status, a.effective_hash,
                    a.config_state, a.config_error, a.applied_at_unix_s, a.desired_push_id,
                    p.config_hash, a.first_seen, a.last_seen, a.connected_at,
                    a.cpu_seconds_total, a.resident_memory_bytes,
                    (SELECT state FROM push_targets t WHERE t.push_id = a.desired_push_id AND t.agent_id = a.id),
                    c.state, c.revoked_at, a.kind, a.opamp_capabilities, a.opamp_description,
                    a.opamp_health, a.opamp_effective_config, a.opamp_remote_config_status,
                    a.config_kind
             FROM agents a LEFT JOIN pushes p ON p.id = a.desired_push_id
                 LEFT JOIN agent_credentials c ON c.agent_id = a.id
             WHERE a.id = ?1",
            [id],
            |r| {
                let capabilities: String = r.get(3)?;
                Ok(AgentRecord {
                    id: r.get(0)?,
                    host_name: r.get(1)?,
                    version: r.get(2)?,
                    labels: BTreeMap::new(),
                    capabilities: serde_json::from_str(&capabilities).unwrap_or_default(),
                    status: named(r, 4, AgentStatus::parse)?,
                    effective_hash: r.get(5)?,
                    config_state: named(r, 6, ReportedState::parse)?,
                    config_error: r.get(7)?,
                    applied_at_unix_s: r.get(8)?,
                    desired_push_id: r.get(9)?,
                    desired_hash: r.get(10)?,
                    first_seen: r.get(11)?,
                    last_seen: r.get(12)?,
                    connected_at: r.get(13)?,
                    cpu_seconds_total: r.get(14)?,
                    resident_memory_bytes: r.get(15)?,
                    desired_state: match r.get_ref(16)? {
                        rusqlite::types::ValueRef::Null => None,
                        _ => Some(named(r, 16, TargetState::parse)?),
                    },
                    credential: match r.get_ref(17)? {
                        rusqlite::types::ValueRef::Null => None,
                        _ => Some(named(r, 17, CredentialState::parse)?),
                    },
                    revoked_at: r.get(18)?,
                    kind: named(r, 19, AgentKind::parse)?,
                    config_kind: named(r, 25, ConfigKind::parse)?,
                    opamp: opamp::from_columns(r, 20)?,
                })
            },
        )
        .optional()?
    else {
        return Ok(None);
    };
    let mut stmt = conn
        .prepare_cached("SELECT key, value FROM agent_labels WHERE agent_id = ?1 ORDER BY key")?;
    agent.labels = stmt
        .query_map([id], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<_, _>>()?;
    Ok(Some(agent))
}

/// Append an entry to the audit log, chained to the one before it. Writes
/// run one transaction at a time, so the chain has no forks. The request an
/// action came from (id, client address, note) is kept in the detail under
/// `request`, so the chain covers it.
fn audit(
    tx: &Transaction<'_>,
    now: i64,
    actor: &Actor,
    action: &str,
    push_id: Option<&str>,
    agent_id: Option<&str>,
    mut detail: serde_json::Value,
) -> Result<(), rusqlite::Error> {
    if let (Some(request), serde_json::Value::Object(map)) = (&actor.request, &mut detail) {
        map.insert(
            "request".into(),
            serde_json::to_value(request).unwrap_or_default(),
        );
    }
    let prev: String = tx
        .prepare_cached("SELECT hash FROM audit_log ORDER BY id DESC LIMIT 1")?
        .query_row([], |r| r.get::<_, Option<String>>(0))
        .optional()?
        .flatten()
        .unwrap_or_default();
    let detail = detail.to_string();
    let hash = audit_chain::entry_hash(
        &prev,
        &audit_chain::Fields {
            at: now,
            actor: &actor.name,
            action,
            push_id,
            agent_id,
            detail: &detail,
        },
    );
    tx.prepare_cached(
        "INSERT INTO audit_log (at, actor, action, push_id, agent_id, detail, prev_hash, hash)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?
    .execute(params![
        now, actor.name, action, push_id, agent_id, detail, prev, hash
    ])?;
    Ok(())
}

/// Move one target as decided and audit a final outcome. No-op when
/// nothing changes.
fn set_target(
    tx: &Transaction<'_>,
    agent_id: &str,
    update: &TargetUpdate,
    now: i64,
) -> Result<Option<TargetChange>, rusqlite::Error> {
    let TargetUpdate {
        push_id,
        state,
        error,
        reported_hash,
        via,
    } = update;
    let changed = tx
        .prepare_cached(
            "UPDATE push_targets SET state = ?3, error = ?4, reported_hash = ?5, updated_at = ?6
             WHERE push_id = ?1 AND agent_id = ?2 AND state <> 'superseded'
               AND (state <> ?3 OR error <> ?4 OR reported_hash <> ?5)",
        )?
        .execute(params![
            push_id,
            agent_id,
            state.as_str(),
            error,
            reported_hash,
            now
        ])?;
    if changed == 0 {
        return Ok(None);
    }
    if state.is_final() {
        audit(
            tx,
            now,
            &Actor::system(format!("{}{agent_id}", crate::auth::system::AGENT_PREFIX)),
            &format!("push.{}", state.as_str()),
            Some(push_id),
            Some(agent_id),
            serde_json::json!({ "hash": reported_hash, "error": error, "via": via.as_str() }),
        )?;
    }
    Ok(Some(TargetChange {
        push_id: push_id.clone(),
        agent_id: agent_id.to_string(),
        state: *state,
    }))
}

/// A push target row: push id, the push's config hash, the target's state.
fn target_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<TargetRow> {
    Ok(TargetRow {
        push_id: r.get(0)?,
        push_hash: r.get(1)?,
        state: named(r, 2, TargetState::parse)?,
    })
}

/// Record a report on the agent and the targets it moves (the rules are
/// in [`status::judge_report`]).
fn apply_status(
    tx: &Transaction<'_>,
    agent_id: &str,
    report: &StatusReport,
    now: i64,
) -> Result<Vec<TargetChange>, rusqlite::Error> {
    let rows = ReportContext {
        answered: tx
            .prepare_cached(
                "SELECT t.push_id, p.config_hash, t.state FROM push_targets t
                 JOIN pushes p ON p.id = t.push_id
                 WHERE t.push_id = ?1 AND t.agent_id = ?2",
            )?
            .query_row(params![report.push_id, agent_id], target_row)
            .optional()?,
        desired: tx
            .prepare_cached(
                "SELECT p.id, p.config_hash, t.state FROM agents a
                 JOIN pushes p ON p.id = a.desired_push_id
                 JOIN push_targets t ON t.push_id = p.id AND t.agent_id = a.id
                 WHERE a.id = ?1",
            )?
            .query_row([agent_id], target_row)
            .optional()?,
    };
    let decision = status::judge_report(report, &rows);
    tx.prepare_cached(
        "UPDATE agents SET config_state = ?2, config_error = ?3,
             effective_hash = COALESCE(?4, effective_hash),
             applied_at_unix_s = COALESCE(?5, applied_at_unix_s)
         WHERE id = ?1",
    )?
    .execute(params![
        agent_id,
        report.state.as_str(),
        report.error,
        decision.effective_hash,
        (report.applied_at_unix_s > 0)
            .then(|| i64::try_from(report.applied_at_unix_s).unwrap_or(i64::MAX)),
    ])?;
    let mut changes = Vec::new();
    for update in &decision.targets {
        changes.extend(set_target(tx, agent_id, update, now)?);
    }
    Ok(changes)
}

/// The desired config of an agent, when [`status::offer_desired`] says to
/// (re)send it. What the agent runs is its effective hash for a native
/// agent; for an OpAMP agent, the hash of the last remote config it
/// reported on (OpAMP's rule: offer while that differs from the server's).
fn desired_to_resend(
    tx: &Transaction<'_>,
    agent_id: &str,
    now: i64,
) -> Result<Option<Desired>, rusqlite::Error> {
    let row = tx
        .prepare_cached(
            "SELECT p.id, p.config_hash, t.state, c.content,
                    CASE a.kind WHEN 'opamp'
                        THEN COALESCE(json_extract(a.opamp_remote_config_status,
                                                   '$.last_remote_config_hash'), '')
                        ELSE a.effective_hash END,
                    c.local, COALESCE(p.experiment_id, ''), p.content_type, p.file_name
             FROM agents a
             JOIN pushes p ON p.id = a.desired_push_id
             JOIN config_versions c ON c.hash = p.config_hash
             JOIN push_targets t ON t.push_id = p.id AND t.agent_id = a.id
             WHERE a.id = ?1",
        )?
        .query_row([agent_id], |r| {
            Ok((
                target_row(r)?,
                r.get::<_, String>(3)?,
                r.get::<_, String>(4)?,
                r.get::<_, bool>(5)?,
                r.get::<_, String>(6)?,
                r.get::<_, String>(7)?,
                r.get::<_, String>(8)?,
            ))
        })
        .optional()?;
    let Some((target, yaml, effective, revert_to_local, experiment_id, content_type, file)) = row
    else {
        return Ok(None);
    };
    let Offer::Send { mark_applying } = status::offer_desired(&target, &effective) else {
        return Ok(None);
    };
    if mark_applying {
        tx.execute(
            "UPDATE push_targets SET state = 'applying', updated_at = ?3
             WHERE push_id = ?1 AND agent_id = ?2 AND state = 'pending'",
            params![target.push_id, agent_id, now],
        )?;
    }
    Ok(Some(Desired {
        push_id: target.push_id,
        hash: target.push_hash,
        yaml,
        revert_to_local,
        experiment_id,
        content_type,
        file,
    }))
}

/// Refuse a push unless every target takes its config kind and every
/// OpAMP target declared `AcceptsRemoteConfig` (a config it cannot take
/// would only time out).
fn check_config_kind(
    tx: &Transaction<'_>,
    targets: &[String],
    kind: ConfigKind,
) -> Result<(), CreatePushError> {
    let mut row = tx.prepare_cached(
        "SELECT config_kind, kind = 'opamp' AND (COALESCE(opamp_capabilities, 0) & ?2) = 0
         FROM agents WHERE id = ?1",
    )?;
    let mut other = Vec::new();
    let mut no_remote = Vec::new();
    for id in targets {
        let (config_kind, refuses): (String, bool) = row
            .query_row(params![id, ACCEPTS_REMOTE_CONFIG], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })?;
        if config_kind != kind.as_str() {
            other.push(id.clone());
        } else if refuses {
            no_remote.push(id.clone());
        }
    }
    if !other.is_empty() {
        return Err(CreatePushError::OtherConfigKind {
            push: kind,
            agents: other,
        });
    }
    if !no_remote.is_empty() {
        return Err(CreatePushError::NoRemoteConfig(no_remote));
    }
    Ok(())
}

/// OpAMP's `AcceptsRemoteConfig` capability bit.
const ACCEPTS_REMOTE_CONFIG: i64 =
    phoenix_proto::opamp::AgentCapabilities::AcceptsRemoteConfig as i64;

/// A few ids of a list and how many more: enough to find them, short
/// enough for an error message about a whole fleet.
pub fn few(ids: &[String]) -> String {
    const SHOWN: usize = 3;
    let shown = ids
        .iter()
        .take(SHOWN)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    match ids.len().saturating_sub(SHOWN) {
        0 => shown,
        more => format!("{shown} and {more} more"),
    }
}

#[cfg(test)]
mod tests;
