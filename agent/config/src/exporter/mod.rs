//! Exporter configs, one module per exporter type, beside each other so
//! that the config crate knows every exporter without linking any of them.

pub mod console;
pub mod file;
pub mod otlp;
pub mod prometheus;

use phoenix_processors::Problem;

pub use console::{ConsoleConfig, Verbosity};
pub use file::{FileConfig, FileTarget, RotationConfig};
pub use otlp::{
    Compression, Encoding, OtlpGrpcConfig, OtlpHttpConfig, QueueConfig, RetryConfig, TlsConfig,
};
pub use prometheus::PrometheusConfig;

/// The typed config of an exporter, chosen by the type part of its id.
#[derive(Debug, Clone, PartialEq)]
pub enum ExporterConfig {
    OtlpGrpc(otlp::OtlpGrpcConfig),
    OtlpHttp(otlp::OtlpHttpConfig),
    File(file::FileConfig),
    Prometheus(prometheus::PrometheusConfig),
    Console(console::ConsoleConfig),
}

/// Exporter type names as written in the config (`otlp_grpc/primary`).
pub const EXPORTER_TYPES: &[&str] = &["otlp_grpc", "otlp_http", "file", "prometheus", "console"];

impl ExporterConfig {
    /// Parse the config of an exporter of type `kind` from its YAML value.
    pub fn from_yaml(kind: &str, value: serde_norway::Value) -> Result<Self, String> {
        fn parse<T: serde::de::DeserializeOwned>(v: serde_norway::Value) -> Result<T, String> {
            // `exporters: { console: }` means "all defaults".
            let v = if v.is_null() {
                serde_norway::Value::Mapping(Default::default())
            } else {
                v
            };
            serde_norway::from_value(v).map_err(|e| e.to_string())
        }
        match kind {
            "otlp_grpc" => parse(value).map(ExporterConfig::OtlpGrpc),
            "otlp_http" => parse(value).map(ExporterConfig::OtlpHttp),
            "file" => parse(value).map(ExporterConfig::File),
            "prometheus" => parse(value).map(ExporterConfig::Prometheus),
            "console" => parse(value).map(ExporterConfig::Console),
            other => Err(format!(
                "unknown exporter type {other:?} (known: {})",
                EXPORTER_TYPES.join(", ")
            )),
        }
    }

    /// Every problem with this config (empty when valid).
    pub fn validate(&self) -> Vec<Problem> {
        match self {
            ExporterConfig::OtlpGrpc(c) => c.validate(),
            ExporterConfig::OtlpHttp(c) => c.validate(),
            ExporterConfig::File(c) => c.validate(),
            ExporterConfig::Prometheus(c) => c.validate(),
            ExporterConfig::Console(c) => c.validate(),
        }
    }

    /// The directory of an OTLP exporter's disk queue, when it has one.
    pub fn queue_directory(&self) -> Option<&std::path::Path> {
        let queue = match self {
            ExporterConfig::OtlpGrpc(c) => &c.sending_queue,
            ExporterConfig::OtlpHttp(c) => &c.sending_queue,
            _ => return None,
        };
        queue.storage.as_ref().map(|s| s.directory.as_path())
    }
}
