fn main() -> Result<(), Box<dyn std::error::Error>> {
    // protoc comes from the distro (protobuf-compiler); see README.
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    tonic_prost_build::configure()
        // For gRPC server reflection.
        .file_descriptor_set_path(out.join("netpulse_descriptor.bin"))
        .compile_protos(
            &[
                "netpulse/worker/v1/worker.proto",
                "netpulse/agent/v1/agent.proto",
                "netpulse/v1/netpulse.proto",
                "netpulse/manager/v1/records.proto",
            ],
            &["."],
        )?;
    println!("cargo:rerun-if-changed=netpulse");
    Ok(())
}
