//! Generates Rust code from the protocol files with protox (a protobuf
//! compiler in Rust), so no system `protoc` is needed:
//! `phoenix/agent/v1/agent.proto` (the native protocol, with its gRPC
//! service) and `opamp/opamp.proto` (OpAMP's messages, no service).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = ["phoenix/agent/v1/agent.proto", "opamp/opamp.proto"];
    for proto in protos {
        println!("cargo:rerun-if-changed={proto}");
    }
    let descriptors = protox::compile(protos, ["."])?;
    tonic_prost_build::configure().compile_fds(descriptors)?;
    Ok(())
}
