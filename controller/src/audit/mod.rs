//! The audit log beyond the store: every entry exported as a JSON line (to
//! a file or stdout, for a log pipeline), and entries past their retention
//! pruned. The export is at least once: lines are written, flushed, then
//! the cursor is stored; a crash in between writes a few lines again
//! (each carries its id and hash, so duplicates are plain to drop).

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::{Shared, blocking, now_ms};

/// Where exported entries go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuditSink {
    Stdout,
    /// Appended to, created 0600 if missing.
    File(PathBuf),
}

impl AuditSink {
    /// `-` is stdout.
    pub fn parse(text: &str) -> AuditSink {
        if text == "-" {
            AuditSink::Stdout
        } else {
            AuditSink::File(PathBuf::from(text))
        }
    }

    /// The key of its cursor in the store.
    fn key(&self) -> String {
        match self {
            AuditSink::Stdout => "-".into(),
            AuditSink::File(p) => p.display().to_string(),
        }
    }
}

/// How often new entries are looked for.
const EXPORT_EVERY: Duration = Duration::from_secs(1);
/// Entries written per round.
const EXPORT_BATCH: u32 = 1000;
/// How often entries past the retention are pruned.
const PRUNE_EVERY: Duration = Duration::from_secs(3600);

/// Export new entries until `stop`, if a sink is configured.
pub fn spawn_export(
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
) -> Option<JoinHandle<anyhow::Result<()>>> {
    let sink = shared.settings.audit_export.clone()?;
    Some(tokio::spawn(async move {
        let mut failing = false;
        loop {
            match export_round(&shared, &sink).await {
                Ok(n) => {
                    if failing {
                        tracing::info!(sink = %sink.key(), "audit export resumed");
                        failing = false;
                    }
                    shared.metrics.audit_exported.add(n as u64);
                    // A full batch: more are waiting.
                    if n == EXPORT_BATCH as usize {
                        continue;
                    }
                }
                Err(e) => {
                    shared.metrics.audit_export_errors.inc();
                    // Once per outage, not once a second.
                    if !failing {
                        tracing::error!(sink = %sink.key(), error = %e, "audit export failed; retrying");
                        failing = true;
                    }
                }
            }
            tokio::select! {
                _ = crate::stopped(&mut stop) => {
                    // What was written by now goes out before the exit.
                    let _ = export_round(&shared, &sink).await;
                    return Ok(());
                }
                _ = tokio::time::sleep(EXPORT_EVERY) => {}
            }
        }
    }))
}

/// Write the entries after the sink's cursor; how many were written.
async fn export_round(shared: &Arc<Shared>, sink: &AuditSink) -> Result<usize, String> {
    let store = shared.store.clone();
    let sink = sink.clone();
    blocking(move || {
        let key = sink.key();
        let after = store.audit_export_cursor(&key).map_err(|e| e.to_string())?;
        let entries = store
            .audit_after(after, EXPORT_BATCH)
            .map_err(|e| e.to_string())?;
        let Some(last) = entries.last().map(|e| e.id) else {
            return Ok(0);
        };
        let mut text = String::new();
        for e in &entries {
            let line =
                serde_json::to_string(&crate::api::audit_view(e)).map_err(|e| e.to_string())?;
            text.push_str(&line);
            text.push('\n');
        }
        write_all(&sink, text.as_bytes())?;
        store
            .set_audit_export_cursor(&key, last)
            .map_err(|e| e.to_string())?;
        Ok(entries.len())
    })
    .await
    .map_err(|e| e.to_string())?
}

fn write_all(sink: &AuditSink, bytes: &[u8]) -> Result<(), String> {
    match sink {
        AuditSink::Stdout => {
            let mut out = std::io::stdout().lock();
            out.write_all(bytes)
                .and_then(|()| out.flush())
                .map_err(|e| format!("stdout: {e}"))
        }
        AuditSink::File(path) => {
            use std::os::unix::fs::OpenOptionsExt;
            let mut file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .mode(0o600)
                .open(path)
                .map_err(|e| format!("{}: {e}", path.display()))?;
            file.write_all(bytes)
                .and_then(|()| file.sync_data())
                .map_err(|e| format!("{}: {e}", path.display()))
        }
    }
}

/// Prune entries past `--audit-retention` every hour, if it is set. With an
/// export, no entry is pruned before it was exported.
pub fn spawn_retention(
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
) -> Option<JoinHandle<anyhow::Result<()>>> {
    let retention = shared.settings.audit_retention?;
    Some(tokio::spawn(async move {
        loop {
            let store = shared.store.clone();
            let sink = shared.settings.audit_export.as_ref().map(AuditSink::key);
            let before = now_ms() - i64::try_from(retention.as_millis()).unwrap_or(i64::MAX);
            let pruned = blocking(move || {
                let exported = match &sink {
                    Some(key) => Some(store.audit_export_cursor(key)?),
                    None => None,
                };
                store.prune_audit(before, exported, now_ms())
            })
            .await;
            match pruned {
                Ok(Ok(Some(p))) => {
                    shared.metrics.audit_pruned.add(p.entries);
                    tracing::info!(
                        entries = p.entries,
                        through_id = p.through_id,
                        "pruned audit entries past their retention"
                    );
                }
                Ok(Ok(None)) => {}
                Ok(Err(e)) => tracing::error!(error = %e, "cannot prune the audit log"),
                Err(e) => tracing::error!(error = %e, "cannot prune the audit log"),
            }
            tokio::select! {
                _ = crate::stopped(&mut stop) => return Ok(()),
                _ = tokio::time::sleep(PRUNE_EVERY) => {}
            }
        }
    }))
}
