//! Getting audit entries out of the store and, past their retention, away:
//! the export cursor per destination, the entries after it, and pruning
//! that leaves the hash chain verifiable (the last deleted hash becomes the
//! anchor the first remaining entry must follow).

use rusqlite::{OptionalExtension, params};

use super::{AUDIT_COLUMNS, Actor, AuditRecord, Store, StoreError, audit, audit_from_row};
use crate::auth::system;

/// What one pruning removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditPruned {
    /// Every entry up to this id is gone.
    pub through_id: i64,
    pub entries: u64,
}

impl Store {
    /// The id of the last entry exported to `destination` (0: none yet).
    pub fn audit_export_cursor(&self, destination: &str) -> Result<i64, StoreError> {
        Ok(self
            .conn()
            .query_row(
                "SELECT last_id FROM audit_export WHERE destination = ?1",
                [destination],
                |r| r.get(0),
            )
            .optional()?
            .unwrap_or(0))
    }

    /// Entries were written to `destination` up to `last_id`.
    pub fn set_audit_export_cursor(
        &self,
        destination: &str,
        last_id: i64,
    ) -> Result<(), StoreError> {
        self.write(|tx| {
            tx.execute(
                "INSERT INTO audit_export (destination, last_id) VALUES (?1, ?2)
                 ON CONFLICT (destination) DO UPDATE SET last_id = excluded.last_id",
                params![destination, last_id],
            )?;
            Ok(())
        })
    }

    /// Up to `limit` entries after `after_id`, oldest first.
    pub fn audit_after(&self, after_id: i64, limit: u32) -> Result<Vec<AuditRecord>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {AUDIT_COLUMNS} FROM audit_log WHERE id > ?1 ORDER BY id LIMIT ?2"
        ))?;
        let out = stmt
            .query_map(params![after_id, limit], audit_from_row)?
            .collect::<Result<_, _>>()?;
        Ok(out)
    }

    /// Delete the entries written before `before` (unix ms), but none after
    /// `exported_through` when an export must see them first. The last
    /// deleted entry's hash becomes the chain's anchor, and the pruning is
    /// itself an entry. `None` when nothing was due.
    pub fn prune_audit(
        &self,
        before: i64,
        exported_through: Option<i64>,
        now: i64,
    ) -> Result<Option<AuditPruned>, StoreError> {
        self.write(|tx| {
            let through: Option<i64> = tx.query_row(
                "SELECT MAX(id) FROM audit_log WHERE at < ?1 AND (?2 IS NULL OR id <= ?2)",
                params![before, exported_through],
                |r| r.get(0),
            )?;
            let Some(through) = through else {
                return Ok(None);
            };
            let anchor: Option<String> = tx.query_row(
                "SELECT hash FROM audit_log WHERE id = ?1",
                [through],
                |r| r.get(0),
            )?;
            let entries = tx.execute("DELETE FROM audit_log WHERE id <= ?1", [through])? as u64;
            // Entries from before the chain have no hash: nothing to follow.
            let anchor = anchor.unwrap_or_default();
            tx.execute(
                "INSERT INTO audit_anchor (id, through_id, hash) VALUES (1, ?1, ?2)
                 ON CONFLICT (id) DO UPDATE SET through_id = excluded.through_id, hash = excluded.hash",
                params![through, anchor],
            )?;
            audit(
                tx,
                now,
                &Actor::system(system::CONTROLLER),
                "audit.pruned",
                None,
                None,
                serde_json::json!({ "through_id": through, "entries": entries, "anchor": anchor }),
            )?;
            Ok(Some(AuditPruned {
                through_id: through,
                entries,
            }))
        })
    }
}
