//! Where the agent's config comes from and where a remote one is kept.
//!
//! Two sources: the `--config` file (or the embedded default without one),
//! which the operator owns, and a remote config (pushed by a controller or
//! posted to `/-/reload`), kept in `--state-dir` so that a restart comes
//! back as the agent was. The rules between them live here and in the run
//! loop ([`super::Agent`]):
//! - at start, a kept remote config wins over the file; one that does not
//!   load, or loads but cannot be built (a port taken, a CA file gone), is
//!   passed over for the file, so it can never keep the agent from starting;
//! - a change of the file (poll, SIGHUP, an empty `/-/reload`) that applies
//!   forgets the kept remote config: the operator's last choice wins;
//! - a controller's revert runs the file again and forgets the kept config.

use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

use phoenix_config::{AgentConfig, ConfigErrors, EMBEDDED_DEFAULT};

use crate::pipeline::ReloadError;

/// The file under `--state-dir` holding the last applied remote config.
pub const REMOTE_CONFIG_FILE: &str = "remote-config.yaml";

/// A config ready to run: loaded, its text, and where it came from.
#[derive(Debug)]
pub struct LoadedConfig {
    pub config: AgentConfig,
    pub text: String,
    /// The file's path or "embedded default", for logs.
    pub source: String,
    /// Whether this is the remote config kept in `--state-dir`.
    pub kept_remote: bool,
    /// For a kept remote config: the local config whose policy it was
    /// loaded within (a local config is its own).
    pub local: Option<AgentConfig>,
}

/// The config file the agent runs, for re-reads (SIGHUP, file change, an
/// empty `POST /-/reload`), and where a remote config is kept.
#[derive(Debug, Clone, Default)]
pub struct ConfigSources {
    pub file: Option<PathBuf>,
    pub state_dir: Option<PathBuf>,
}

impl ConfigSources {
    /// The config to start with: the kept remote config when there is a
    /// valid one within the local config's policy (another one is reported
    /// and skipped), else the file, else the embedded default. The file is
    /// always read: its policy governs the kept config, so an invalid file
    /// is an error that lists every problem, kept config or not.
    pub fn initial(&self) -> Result<LoadedConfig, String> {
        let local = load_file(self.file.as_deref())?;
        if let Some(path) = self.remote_config_path()
            && let Ok(text) = std::fs::read_to_string(&path)
        {
            match AgentConfig::load_remote(&text, &local.config) {
                Ok(config) => {
                    return Ok(LoadedConfig {
                        config,
                        text,
                        source: path.display().to_string(),
                        kept_remote: true,
                        local: Some(local.config),
                    });
                }
                Err(errors) => eprintln!("ignoring {}: {errors}", path.display()),
            }
        }
        Ok(local)
    }

    /// The text of the `--config` file (the embedded default has none to
    /// re-read).
    pub fn read_file(&self) -> Result<String, ReloadError> {
        let path = self.file.as_ref().ok_or_else(|| {
            ReloadError::Source(
                "the agent runs the embedded default config: there is no --config file to re-read"
                    .into(),
            )
        })?;
        std::fs::read_to_string(path)
            .map_err(|e| ReloadError::Source(format!("{}: {e}", path.display())))
    }

    /// The local config's text: the file's, or the embedded default's.
    pub fn local_text(&self) -> Result<String, ReloadError> {
        match &self.file {
            Some(_) => self.read_file(),
            None => Ok(EMBEDDED_DEFAULT.to_string()),
        }
    }

    pub fn remote_config_path(&self) -> Option<PathBuf> {
        self.state_dir.as_ref().map(|d| d.join(REMOTE_CONFIG_FILE))
    }

    /// Keep a remote config so that a restart comes back with it: written
    /// to a temporary file, synced, then renamed over the old one, so a
    /// crash leaves either the old or the new config, never half of one.
    pub fn persist_remote(&self, text: &str) {
        let (Some(dir), Some(path)) = (&self.state_dir, self.remote_config_path()) else {
            return;
        };
        let result = (|| -> std::io::Result<()> {
            std::fs::create_dir_all(dir)?;
            let tmp = dir.join(format!(".{REMOTE_CONFIG_FILE}.tmp"));
            // 0600: what the node runs is the node's business (the config
            // names endpoints and variables), like the credential beside it.
            // A leftover from a crash may have another mode: start afresh.
            let _ = std::fs::remove_file(&tmp);
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)?;
            std::io::Write::write_all(&mut f, text.as_bytes())?;
            f.sync_all()?;
            std::fs::rename(&tmp, &path)?;
            std::fs::File::open(dir)?.sync_all()
        })();
        if let Err(e) = result {
            tracing::error!(path = %path.display(), error = %e, "cannot keep the applied remote config in --state-dir");
        }
    }

    /// Remove the kept remote config (the local config replaced it).
    pub fn forget_remote(&self) {
        if let Some(path) = self.remote_config_path()
            && let Err(e) = std::fs::remove_file(&path)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::error!(path = %path.display(), error = %e, "cannot remove the replaced remote config from --state-dir");
        }
    }
}

/// Read and load a config file, or the embedded default without one. The
/// error lists every problem, one a line.
pub fn load_file(path: Option<&Path>) -> Result<LoadedConfig, String> {
    let Some(path) = path else {
        return Ok(LoadedConfig {
            config: AgentConfig::embedded_default(),
            text: EMBEDDED_DEFAULT.to_string(),
            source: "embedded default".into(),
            kept_remote: false,
            local: None,
        });
    };
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read config {}: {e}", path.display()))?;
    match AgentConfig::load(&text) {
        Ok(config) => Ok(LoadedConfig {
            config,
            text,
            source: path.display().to_string(),
            kept_remote: false,
            local: None,
        }),
        Err(ConfigErrors(errors)) => {
            let mut out = format!("{}: {} error(s):", path.display(), errors.len());
            for e in errors {
                out.push_str(&format!("\n  - {e}"));
            }
            Err(out)
        }
    }
}
