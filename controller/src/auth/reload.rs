//! Re-reading the auth file: on SIGHUP, and when the file changes (its
//! modification time or size, polled). An invalid file keeps the
//! principals in force and the log says why; so does a file that
//! disappears for a moment during an editor's save.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::Shared;

const POLL: Duration = Duration::from_secs(2);

/// Watch the auth file until `stop`; `None` in single-token mode.
pub fn spawn(
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
) -> Option<JoinHandle<anyhow::Result<()>>> {
    let path = shared.auth.file()?.to_path_buf();
    Some(tokio::spawn(async move {
        let stamp = |path: &std::path::Path| -> Option<(SystemTime, u64)> {
            let m = std::fs::metadata(path).ok()?;
            Some((m.modified().ok()?, m.len()))
        };
        let mut seen = stamp(&path);
        let mut hangup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGHUP; the auth file is still polled");
                None
            }
        };
        loop {
            let trigger = tokio::select! {
                _ = crate::stopped(&mut stop) => return Ok(()),
                _ = tokio::time::sleep(POLL) => "change",
                Some(()) = async {
                    match hangup.as_mut() {
                        Some(h) => h.recv().await,
                        None => std::future::pending().await,
                    }
                } => "SIGHUP",
            };
            let now = stamp(&path);
            if trigger == "change" && (now == seen || now.is_none()) {
                continue;
            }
            seen = now;
            match shared.auth.reload().await {
                Ok(summary) => {
                    shared.metrics.auth_reload(true);
                    tracing::info!(
                        file = %path.display(),
                        trigger,
                        principals = summary.principals,
                        oidc = summary.oidc,
                        "auth file reloaded"
                    );
                }
                Err(e) => {
                    shared.metrics.auth_reload(false);
                    tracing::error!(
                        file = %path.display(),
                        trigger,
                        error = %e,
                        "auth file not reloaded: the principals in force stay"
                    );
                }
            }
        }
    }))
}
