//! The agent <-> controller protocol, `phoenix.agent.v1`: one bidirectional
//! gRPC stream per agent (`AgentControl/Session`). See
//! `phoenix/agent/v1/agent.proto` for the semantics of every message.
//!
//! [`opamp`] holds OpAMP's messages (`opamp.proto`, wire-compatible with
//! the specification), as far as the controller's OpAMP server uses them.

/// Version 1 of the protocol.
// A Hello (sent once a session) is larger than the messages sent every
// interval; boxing it in generated code would only move the allocation.
#[allow(clippy::large_enum_variant)]
pub mod v1 {
    tonic::include_proto!("phoenix.agent.v1");
}

/// OpAMP's messages (package `opamp.proto`): what an OpAMP agent sends
/// (`AgentToServer`) and what the server answers (`ServerToAgent`). No
/// service: OpAMP runs over plain HTTP POSTs or WebSocket frames.
pub mod opamp {
    tonic::include_proto!("opamp.proto");
}
