//! The NetPulse manager: the client gRPC API and job scheduling. Not built yet (issue 4);
//! this binary refuses to start rather than pretend to serve.

fn main() -> std::process::ExitCode {
    eprintln!("netpulse manager is not implemented yet; see the issue tracker (manager API)");
    std::process::ExitCode::from(2)
}
