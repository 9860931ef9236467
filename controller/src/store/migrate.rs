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
    (8, include_str!("migrations/0008_disqualified.sql")),
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
    for (version, sql) in MIGRATIONS.iter().filter(|(v, _)| *v > current) {
        let tx = conn.transaction_with_behavior(TransactionBehavior::Exclusive)?;
        tx.execute_batch(sql)?;
        tx.execute(
            "INSERT INTO schema_version (version, applied_at) VALUES (?1, ?2)",
            rusqlite::params![version, crate::now_ms()],
        )?;
        tx.commit()?;
        tracing::info!(version, "store schema migrated");
    }
    Ok(())
}
