//! Schema migrations: numbered SQL files applied in order, each in its own
//! transaction together with its row in `schema_version`, so a crash or an
//! error leaves the database at the previous version, never in between.

use rusqlite::{Connection, TransactionBehavior};

use super::StoreError;

/// Every migration, in order: (version, SQL). Append only; never edit one
/// that has shipped.
pub const MIGRATIONS: &[(i64, &str)] = &[
    (1, include_str!("migrations/0001_initial.sql")),
    (2, include_str!("migrations/0002_experiments.sql")),
    (3, include_str!("migrations/0003_agent_credentials.sql")),
    (4, include_str!("migrations/0004_agent_policy.sql")),
    (5, include_str!("migrations/0005_audit_chain.sql")),
    (6, include_str!("migrations/0006_audit_export.sql")),
    (
        7,
        include_str!("migrations/0007_measurement_conservation.sql"),
    ),
    (8, include_str!("migrations/0008_promotion_waves.sql")),
    (9, include_str!("migrations/0009_disqualified.sql")),
    (10, include_str!("migrations/0010_opamp_agents.sql")),
    (11, include_str!("migrations/0011_config_kinds.sql")),
];

/// The version this controller brings the schema to.
pub const SCHEMA_VERSION: i64 = MIGRATIONS[MIGRATIONS.len() - 1].0;

pub(super) fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_version (
             version    INTEGER PRIMARY KEY,
             applied_at INTEGER NOT NULL
         )",
    )?;
    let current: i64 = conn.query_row(
        "SELECT COALESCE(MAX(version), 0) FROM schema_version",
        [],
        |r| r.get(0),
    )?;
    if current > SCHEMA_VERSION {
        return Err(StoreError::TooNew {
            found: current,
            known: SCHEMA_VERSION,
        });
    }
    // A migration that rebuilds a table (SQLite cannot change a constraint
    // in place) drops the old one: with foreign keys on, that would delete
    // every row referencing it. They are off while migrations run (the
    // pragma cannot change inside a transaction), and each migration must
    // leave no dangling reference before it commits.
    let pending: Vec<_> = MIGRATIONS.iter().filter(|(v, _)| *v > current).collect();
    if pending.is_empty() {
        return Ok(());
    }
    conn.pragma_update(None, "foreign_keys", "OFF")?;
    let applied = apply(conn, &pending);
    conn.pragma_update(None, "foreign_keys", "ON")?;
    applied
}

fn apply(conn: &mut Connection, pending: &[&(i64, &str)]) -> Result<(), StoreError> {
    for (version, sql) in pending {
        let tx = conn.transaction_with_behavior(TransactionBehavior::Exclusive)?;
        tx.execute_batch(sql)?;
        let dangling: i64 =
            tx.query_row("SELECT COUNT(*) FROM pragma_foreign_key_check", [], |r| {
                r.get(0)
            })?;
        if dangling != 0 {
            return Err(StoreError::Migration {
                version: *version,
                problem: format!("{dangling} row(s) would reference rows that do not exist"),
            });
        }
        tx.execute(
            "INSERT INTO schema_version (version, applied_at) VALUES (?1, ?2)",
            rusqlite::params![version, crate::now_ms()],
        )?;
        tx.commit()?;
        tracing::info!(version, "store schema migrated");
    }
    Ok(())
}
