//! The NetPulse node agent: etcd registration and pinned-worker supervision. Not built yet
//! (issue 3); this binary refuses to start rather than pretend to serve.

fn main() -> std::process::ExitCode {
    eprintln!("netpulse node-agent is not implemented yet; see the issue tracker (node agent)");
    std::process::ExitCode::from(2)
}
