//! Logging set-up, the same for every binary: logs go to stderr as text
//! (ANSI colours only on a terminal) or JSON lines, filtered by `RUST_LOG`
//! when set, else by the level the binary was given.

use tracing_subscriber::EnvFilter;

/// Install the global subscriber: JSON lines when `json`, else text.
/// `level` is a level (`info`) or a `tracing` filter
/// (`info,phoenix_agent=debug`); `RUST_LOG` wins over it, and a filter that
/// does not parse falls back to `info` rather than leaving the binary silent.
pub fn init(level: &str, json: bool) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}
