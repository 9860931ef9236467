//! The `console` exporter's config.

use serde::Deserialize;

use phoenix_processors::Problem;

/// How much to print per pipeline and interval.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verbosity {
    /// One line: pipeline, processes, series, datapoints.
    #[default]
    Basic,
    /// Also the top processes by CPU and by memory.
    Detailed,
}

#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsoleConfig {
    #[serde(default)]
    pub verbosity: Verbosity,
}

impl ConsoleConfig {
    pub fn validate(&self) -> Vec<Problem> {
        // Every value serde accepts is valid.
        Vec::new()
    }
}
