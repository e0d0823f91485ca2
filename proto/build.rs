fn main() -> Result<(), Box<dyn std::error::Error>> {
    // protoc comes from the distro (protobuf-compiler); see README.
    tonic_prost_build::configure().compile_protos(
        &[
            "netpulse/worker/v1/worker.proto",
            "netpulse/agent/v1/agent.proto",
            "netpulse/v1/netpulse.proto",
        ],
        &["."],
    )?;
    println!("cargo:rerun-if-changed=netpulse");
    Ok(())
}
