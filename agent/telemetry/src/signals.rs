//! Shutdown signals, handled alike by every binary.

use tokio::signal::unix::{SignalKind, signal};

/// Resolves on SIGINT or SIGTERM, logging which one arrived. `binary` names
/// the program in the warning given when SIGTERM cannot be watched.
pub async fn shutdown(binary: &str) {
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for SIGTERM; only Ctrl-C stops the {binary}");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received, stopping"),
        _ = term.recv() => tracing::info!("SIGTERM received, stopping"),
    }
}
