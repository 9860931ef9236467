//! The `prometheus` exporter's config.

use serde::Deserialize;

use phoenix_processors::Problem;

/// Where the exporter listens when no endpoint is given.
pub const DEFAULT_ENDPOINT: &str = "127.0.0.1:9464";

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrometheusConfig {
    /// `host:port` to listen on (`[::1]:9464` for IPv6, `0.0.0.0:9464` for
    /// every interface, port 0 for any free port).
    #[serde(default = "default_endpoint")]
    pub endpoint: String,
}

fn default_endpoint() -> String {
    DEFAULT_ENDPOINT.to_string()
}

impl Default for PrometheusConfig {
    fn default() -> Self {
        PrometheusConfig {
            endpoint: default_endpoint(),
        }
    }
}

impl PrometheusConfig {
    pub fn validate(&self) -> Vec<Problem> {
        match check_endpoint(&self.endpoint) {
            Ok(()) => Vec::new(),
            Err(e) => vec![Problem::sentence(
                "endpoint",
                format!("{:?}: {e}", self.endpoint),
            )],
        }
    }
}

/// Accept `host:port` as written for a listener; say what is wrong otherwise.
/// Host names are resolved only when binding.
pub fn check_endpoint(endpoint: &str) -> Result<(), String> {
    if endpoint.trim().is_empty() {
        return Err("must not be empty".into());
    }
    if endpoint.contains("://") {
        return Err("expected host:port to listen on, not a URL".into());
    }
    let Some((host, port)) = endpoint.rsplit_once(':') else {
        return Err("expected host:port (e.g. 127.0.0.1:9464)".into());
    };
    if host.is_empty() {
        return Err("host is missing: write 0.0.0.0:PORT to listen on every interface".into());
    }
    if host.contains(':') && !(host.starts_with('[') && host.ends_with(']')) {
        return Err("an IPv6 address needs brackets, e.g. [::1]:9464".into());
    }
    if host.chars().any(char::is_whitespace) {
        return Err("host must not contain spaces".into());
    }
    port.parse::<u16>()
        .map_err(|_| format!("port {port:?} is not a number from 0 to 65535"))?;
    Ok(())
}
