fn main() -> Result<(), Box<dyn std::error::Error>> {
    // protoc comes from the distro (protobuf-compiler); see README.
    tonic_prost_build::configure()
        .build_server(false)
        .build_client(false)
        .compile_protos(&["netpulse/worker/v1/worker.proto"], &["."])?;
    println!("cargo:rerun-if-changed=netpulse");
    Ok(())
}
