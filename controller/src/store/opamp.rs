//! OpAMP agents' reports (schema 10): the same `agents` row as a Phoenix
//! agent, with `kind = 'opamp'` and the parts of OpAMP's state as JSON.

use rusqlite::{OptionalExtension as _, params};

use super::{
    AgentKind, Desired, OpampReport, ReportedState, StatusReport, Store, StoreError, TargetChange,
};

/// Why a report was not stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpampRefusal {
    /// The instance id is a Phoenix agent's: an OpAMP report cannot take
    /// over its record.
    OtherKind,
}

impl Store {
    /// Record an OpAMP report: the agent is online (its session began at
    /// `connected_at`), and each part it sent replaces the stored one; a
    /// part it left out stays as it was. The description, when sent, also
    /// replaces the labels, host name, version and config kind. A remote
    /// config status naming the hash of the agent's desired push answers
    /// that push (returned: the targets it moved); one naming another hash
    /// answers nothing.
    pub fn opamp_report(
        &self,
        report: &OpampReport,
        connected_at: i64,
        now: i64,
    ) -> Result<Result<Vec<TargetChange>, OpampRefusal>, StoreError> {
        self.write(|tx| {
            let kind: Option<String> = rusqlite::OptionalExtension::optional(tx.query_row(
                "SELECT kind FROM agents WHERE id = ?1",
                [&report.id],
                |r| r.get(0),
            ))?;
            if kind.is_some_and(|k| k != AgentKind::Opamp.as_str()) {
                return Ok(Err(OpampRefusal::OtherKind));
            }
            let description = report
                .description
                .as_ref()
                .and_then(|d| serde_json::to_string(&d.description).ok());
            let health = report
                .health
                .as_ref()
                .and_then(|h| serde_json::to_string(h).ok());
            let config = report
                .effective_config
                .as_ref()
                .and_then(|c| serde_json::to_string(c).ok());
            let remote = report
                .remote_config_status
                .as_ref()
                .and_then(|s| serde_json::to_string(s).ok());
            let capabilities =
                serde_json::to_string(&report.capabilities).unwrap_or_else(|_| "[]".into());
            let (host_name, version) = report
                .description
                .as_ref()
                .map(|d| (d.host_name.as_str(), d.version.as_str()))
                .unzip();
            let config_kind = report.description.as_ref().map(|d| d.config_kind.as_str());
            tx.execute(
                "INSERT INTO agents (id, kind, host_name, version, capabilities, status, first_seen,
                     last_seen, connected_at, opamp_capabilities, opamp_description, opamp_health,
                     opamp_effective_config, opamp_remote_config_status, config_kind)
                 VALUES (?1, 'opamp', COALESCE(?2, ''), COALESCE(?3, ''), ?4, 'online', ?5, ?5, ?6,
                     ?7, ?8, ?9, ?10, ?11, COALESCE(?12, 'opaque'))
                 ON CONFLICT (id) DO UPDATE SET
                     host_name = COALESCE(?2, host_name), version = COALESCE(?3, version),
                     capabilities = ?4, status = 'online', last_seen = ?5, connected_at = ?6,
                     opamp_capabilities = ?7,
                     opamp_description = COALESCE(?8, opamp_description),
                     opamp_health = COALESCE(?9, opamp_health),
                     opamp_effective_config = COALESCE(?10, opamp_effective_config),
                     opamp_remote_config_status = COALESCE(?11, opamp_remote_config_status),
                     config_kind = COALESCE(?12, config_kind)",
                params![
                    report.id,
                    host_name,
                    version,
                    capabilities,
                    now,
                    connected_at,
                    i64::try_from(report.capability_bits).unwrap_or(i64::MAX),
                    description,
                    health,
                    config,
                    remote,
                    config_kind
                ],
            )?;
            if let Some(d) = &report.description {
                super::replace_labels(tx, &report.id, &d.labels)?;
            }
            let changes = match &report.remote_config_status {
                Some(status) => answer_desired(tx, &report.id, status, now)?,
                None => Vec::new(),
            };
            Ok(Ok(changes))
        })
    }

    /// The desired config to offer an OpAMP agent now, if its last
    /// reported remote config is not it (the same rule as a reconnecting
    /// Phoenix agent's, see [`super::desired_to_resend`]); a target never
    /// offered before becomes `applying`. Nothing for an agent that no
    /// longer declares `AcceptsRemoteConfig` (a push checked it when it
    /// was created; the agent may have changed since).
    pub fn opamp_offer(&self, agent_id: &str, now: i64) -> Result<Option<Desired>, StoreError> {
        self.write(|tx| {
            let bits: Option<i64> = tx
                .prepare_cached("SELECT opamp_capabilities FROM agents WHERE id = ?1")?
                .query_row([agent_id], |r| r.get(0))
                .optional()?
                .flatten();
            if bits.unwrap_or(0) & super::ACCEPTS_REMOTE_CONFIG == 0 {
                return Ok(None);
            }
            super::desired_to_resend(tx, agent_id, now)
        })
    }
}

/// A remote config status as the answer to the agent's desired push, when
/// it names that push's hash: OpAMP statuses carry no push id, only the
/// hash, and one for an older config says nothing about this push. Judged
/// by the native rules ([`super::apply_status`]), so a status repeated in
/// every report moves the target once.
fn answer_desired(
    tx: &rusqlite::Transaction<'_>,
    agent_id: &str,
    status: &phoenix_api::RemoteConfigStatus,
    now: i64,
) -> Result<Vec<TargetChange>, rusqlite::Error> {
    let desired: Option<(String, String)> = tx
        .prepare_cached(
            "SELECT p.id, p.config_hash FROM agents a JOIN pushes p ON p.id = a.desired_push_id
             WHERE a.id = ?1",
        )?
        .query_row([agent_id], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    let Some((push_id, hash)) = desired else {
        return Ok(Vec::new());
    };
    if hash != status.last_remote_config_hash {
        return Ok(Vec::new());
    }
    // The API's names are the native ones; `unset` says nothing.
    let state = ReportedState::parse(&status.status).unwrap_or(ReportedState::Unspecified);
    let report = StatusReport {
        push_id,
        hash,
        state,
        error: status.error_message.clone(),
        effective_hash: String::new(),
        applied_at_unix_s: 0,
    };
    super::apply_status(tx, agent_id, &report, now)
}

/// The OpAMP part of an agent row, read from the columns `kind` (at
/// `start - 1`), then capabilities, description, health, effective config
/// and remote config status (from `start`). `None` for a Phoenix agent; a
/// stored part that no longer parses reads as not reported.
pub(super) fn from_columns(
    r: &rusqlite::Row<'_>,
    start: usize,
) -> rusqlite::Result<Option<phoenix_api::OpampAgent>> {
    let kind: String = r.get(start - 1)?;
    if kind != AgentKind::Opamp.as_str() {
        return Ok(None);
    }
    fn part<T: serde::de::DeserializeOwned>(
        r: &rusqlite::Row<'_>,
        i: usize,
    ) -> rusqlite::Result<Option<T>> {
        let text: Option<String> = r.get(i)?;
        Ok(text.and_then(|t| serde_json::from_str(&t).ok()))
    }
    let bits: Option<i64> = r.get(start)?;
    Ok(Some(phoenix_api::OpampAgent {
        capability_bits: bits.and_then(|b| u64::try_from(b).ok()).unwrap_or(0),
        description: part(r, start + 1)?,
        health: part(r, start + 2)?,
        effective_config: part(r, start + 3)?,
        remote_config_status: part(r, start + 4)?,
    }))
}
