//! The audit log's hash chain: each entry's hash covers the hash of the
//! entry before it and its own fields, so an entry edited, deleted or
//! inserted behind the controller's back (in the SQLite file) breaks the
//! chain from that entry on, and `verify` names the first one.

use rusqlite::{Connection, OptionalExtension};

use super::StoreError;

/// What an entry's hash covers, besides the previous hash.
pub struct Fields<'a> {
    pub at: i64,
    pub actor: &'a str,
    pub action: &'a str,
    pub push_id: Option<&'a str>,
    pub agent_id: Option<&'a str>,
    pub detail: &'a str,
}

/// SHA-256 (hex) of `prev` and `fields`, each length-prefixed so that no
/// two different entries encode alike (`ab`+`c` is not `a`+`bc`), and an
/// absent id apart from an empty one.
pub fn entry_hash(prev: &str, fields: &Fields<'_>) -> String {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    let at = fields.at.to_string();
    let parts: [Option<&str>; 7] = [
        Some(prev),
        Some(&at),
        Some(fields.actor),
        Some(fields.action),
        fields.push_id,
        fields.agent_id,
        Some(fields.detail),
    ];
    for part in parts {
        match part {
            Some(text) => {
                ctx.update(format!("{}:", text.len()).as_bytes());
                ctx.update(text.as_bytes());
            }
            None => ctx.update(b"-"),
        }
        ctx.update(b"\n");
    }
    phoenix_processors::hash::hex(ctx.finish().as_ref())
}

/// The outcome of walking the whole chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verification {
    /// Entries whose hash was checked.
    pub chained: u64,
    /// Entries written before the chain existed (schema 5), at the start.
    pub unchained: u64,
    /// The first entry that does not hold, and why.
    pub first_broken: Option<(i64, String)>,
    /// Retention deleted every entry up to this id; the chain is checked
    /// from the first entry after it.
    pub pruned_through: Option<i64>,
}

/// Walk the log in id order and check every link.
pub fn verify(conn: &Connection) -> Result<Verification, StoreError> {
    let mut stmt = conn.prepare(
        "SELECT id, at, actor, action, push_id, agent_id, detail, prev_hash, hash
         FROM audit_log ORDER BY id",
    )?;
    let anchor: Option<(i64, String)> = conn
        .query_row(
            "SELECT through_id, hash FROM audit_anchor WHERE id = 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    let mut rows = stmt.query([])?;
    let mut out = Verification {
        chained: 0,
        unchained: 0,
        first_broken: None,
        pruned_through: anchor.as_ref().map(|a| a.0),
    };
    // The hash the next entry must name as its previous one; None until
    // the first chained entry (legacy entries come before it). After a
    // pruning, the anchor: the hash of the last entry deleted.
    let mut expected_prev: Option<String> = anchor.map(|a| a.1).filter(|h| !h.is_empty());
    while let Some(r) = rows.next()? {
        let id: i64 = r.get(0)?;
        let prev: Option<String> = r.get(7)?;
        let hash: Option<String> = r.get(8)?;
        let (Some(prev), Some(hash)) = (prev, hash) else {
            if expected_prev.is_some() {
                out.first_broken = Some((id, "has no hash inside the chain".into()));
                return Ok(out);
            }
            out.unchained += 1;
            continue;
        };
        let wanted = expected_prev.as_deref().unwrap_or("");
        if prev != wanted {
            out.first_broken = Some((
                id,
                "does not follow the entry before it (an entry was removed or inserted)".into(),
            ));
            return Ok(out);
        }
        let (actor, action, push_id, agent_id, detail): (
            String,
            String,
            Option<String>,
            Option<String>,
            String,
        ) = (r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?);
        let computed = entry_hash(
            &prev,
            &Fields {
                at: r.get(1)?,
                actor: &actor,
                action: &action,
                push_id: push_id.as_deref(),
                agent_id: agent_id.as_deref(),
                detail: &detail,
            },
        );
        if computed != hash {
            out.first_broken = Some((id, "its content was changed".into()));
            return Ok(out);
        }
        out.chained += 1;
        expected_prev = Some(hash);
    }
    Ok(out)
}
