//! Agent configuration: YAML in the OpenTelemetry Collector's shape.

pub mod duration;
