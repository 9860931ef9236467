//! OTLP exporters (gRPC and HTTP). STUB: being written.
pub mod encode;
pub mod grpc;
pub mod http;

use serde::Deserialize;

#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OtlpGrpcConfig {}
impl OtlpGrpcConfig {
    pub fn validate(&self) -> Vec<String> {
        Vec::new()
    }
}
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OtlpHttpConfig {}
impl OtlpHttpConfig {
    pub fn validate(&self) -> Vec<String> {
        Vec::new()
    }
}
