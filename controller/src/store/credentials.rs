//! Agents' own credentials: issued on first contact, kept as a SHA-256,
//! confirmed once the agent kept them, revoked for good (schema 3).

use rusqlite::{OptionalExtension, params};

use super::{Store, StoreError, audit};

pub use phoenix_api::AgentEnrollment;

/// The state of an instance id's credential (a row in `agent_credentials`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CredentialState {
    Pending,
    Enrolled,
    Revoked,
}

impl CredentialState {
    pub fn as_str(self) -> &'static str {
        match self {
            CredentialState::Pending => "pending",
            CredentialState::Enrolled => "enrolled",
            CredentialState::Revoked => "revoked",
        }
    }

    pub fn parse(s: &str) -> Option<CredentialState> {
        [
            CredentialState::Pending,
            CredentialState::Enrolled,
            CredentialState::Revoked,
        ]
        .into_iter()
        .find(|c| c.as_str() == s)
    }

    /// As the API shows it.
    pub fn enrollment(state: Option<CredentialState>) -> AgentEnrollment {
        match state {
            None => AgentEnrollment::None,
            Some(CredentialState::Pending) => AgentEnrollment::Pending,
            Some(CredentialState::Enrolled) => AgentEnrollment::Enrolled,
            Some(CredentialState::Revoked) => AgentEnrollment::Revoked,
        }
    }
}

/// What issuing a credential for an instance id did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Issue {
    /// Stored (replacing a pending one): send it to the agent.
    Issued,
    /// The id is enrolled or revoked: only its credential (or nothing) admits it.
    Refused(CredentialState),
}

/// What a revocation did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revocation {
    pub revoked_at: i64,
    /// It was revoked before; nothing changed and nothing was audited.
    pub already: bool,
}

impl Store {
    /// The instance id a credential (by its hash) belongs to, and its state.
    pub fn credential_owner(
        &self,
        credential_hash: &str,
    ) -> Result<Option<(String, CredentialState)>, StoreError> {
        let conn = self.conn();
        let row = conn
            .query_row(
                "SELECT agent_id, state FROM agent_credentials WHERE credential_hash = ?1",
                [credential_hash],
                |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)),
            )
            .optional()?;
        Ok(row.and_then(|(id, state)| Some((id, CredentialState::parse(&state)?))))
    }

    /// The kind of the agent known by `agent_id`, if any.
    pub fn agent_kind(&self, agent_id: &str) -> Result<Option<super::AgentKind>, StoreError> {
        let conn = self.conn();
        let kind: Option<String> = conn
            .query_row("SELECT kind FROM agents WHERE id = ?1", [agent_id], |r| {
                r.get(0)
            })
            .optional()?;
        Ok(kind.and_then(|k| super::AgentKind::parse(&k)))
    }

    /// The state of `agent_id`'s credential; `None` when none was ever
    /// issued.
    pub fn credential_state(&self, agent_id: &str) -> Result<Option<CredentialState>, StoreError> {
        let conn = self.conn();
        let state: Option<String> = conn
            .query_row(
                "SELECT state FROM agent_credentials WHERE agent_id = ?1",
                [agent_id],
                |r| r.get(0),
            )
            .optional()?;
        Ok(state.and_then(|s| CredentialState::parse(&s)))
    }

    /// Store the hash of a new credential for `agent_id`, unless the id is
    /// enrolled or revoked. A pending credential is replaced: its agent
    /// never said it kept it. One statement, so two sessions enrolling the
    /// same id at once cannot both win.
    pub fn issue_credential(
        &self,
        agent_id: &str,
        credential_hash: &str,
        now: i64,
    ) -> Result<Issue, StoreError> {
        self.write(|tx| {
            let changed = tx.execute(
                "INSERT INTO agent_credentials (agent_id, credential_hash, state, issued_at)
                 VALUES (?1, ?2, 'pending', ?3)
                 ON CONFLICT (agent_id) DO UPDATE SET credential_hash = ?2, issued_at = ?3
                 WHERE agent_credentials.state = 'pending'",
                params![agent_id, credential_hash, now],
            )?;
            if changed == 1 {
                return Ok(Issue::Issued);
            }
            let state: String = tx.query_row(
                "SELECT state FROM agent_credentials WHERE agent_id = ?1",
                [agent_id],
                |r| r.get(0),
            )?;
            // The CHECK constraint admits nothing else; a row that is not
            // pending is enrolled or revoked, and both refuse.
            Ok(Issue::Refused(
                CredentialState::parse(&state).unwrap_or(CredentialState::Revoked),
            ))
        })
    }

    /// The agent kept its pending credential: from now on it is required.
    /// Returns whether this confirmed it (false: already enrolled, replaced
    /// by a newer issue, or revoked meanwhile).
    pub fn confirm_credential(
        &self,
        agent_id: &str,
        credential_hash: &str,
        now: i64,
    ) -> Result<bool, StoreError> {
        self.write(|tx| {
            let changed = tx.execute(
                "UPDATE agent_credentials SET state = 'enrolled', enrolled_at = ?3
                 WHERE agent_id = ?1 AND credential_hash = ?2 AND state = 'pending'",
                params![agent_id, credential_hash, now],
            )?;
            if changed == 1 {
                audit(
                    tx,
                    now,
                    &super::Actor::system(format!(
                        "{}{agent_id}",
                        crate::auth::system::AGENT_PREFIX
                    )),
                    "agent.enrolled",
                    None,
                    Some(agent_id),
                    serde_json::json!({}),
                )?;
            }
            Ok(changed == 1)
        })
    }

    /// Revoke an agent: its credential is refused from now on, and the
    /// enrollment token cannot enroll its instance id again. `None` when
    /// the controller never heard of the id.
    pub fn revoke_agent(
        &self,
        agent_id: &str,
        actor: &super::Actor,
        reason: &str,
        now: i64,
    ) -> Result<Option<Revocation>, StoreError> {
        self.write(|tx| {
            let known_agent = tx
                .prepare_cached("SELECT 1 FROM agents WHERE id = ?1")?
                .exists([agent_id])?;
            let credential: Option<(String, Option<i64>)> = tx
                .query_row(
                    "SELECT state, revoked_at FROM agent_credentials WHERE agent_id = ?1",
                    [agent_id],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()?;
            if let Some((state, revoked_at)) = &credential
                && state == CredentialState::Revoked.as_str()
            {
                return Ok(Some(Revocation {
                    revoked_at: revoked_at.unwrap_or(now),
                    already: true,
                }));
            }
            if !known_agent && credential.is_none() {
                return Ok(None);
            }
            tx.execute(
                "INSERT INTO agent_credentials (agent_id, state, revoked_at) VALUES (?1, 'revoked', ?2)
                 ON CONFLICT (agent_id) DO UPDATE SET state = 'revoked', revoked_at = ?2",
                params![agent_id, now],
            )?;
            tx.execute(
                "UPDATE agents SET status = 'offline' WHERE id = ?1",
                [agent_id],
            )?;
            audit(
                tx,
                now,
                actor,
                "agent.revoked",
                None,
                Some(agent_id),
                serde_json::json!({ "reason": reason }),
            )?;
            Ok(Some(Revocation {
                revoked_at: now,
                already: false,
            }))
        })
    }
}
