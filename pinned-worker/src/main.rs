//! `pinned-worker`: holds one SSH session to one device; see the library docs and
//! `exit_code` for the protocol and exit codes. Started by the node agent, which writes frames
//! to its stdin and reads frames from its stdout. Logs go to stderr.

use std::os::fd::AsFd;

use clap::Parser;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::unix::pipe;

#[derive(Parser, Debug)]
#[command(about = "one device session, driven by frames on stdin/stdout")]
struct Args {
    /// Log format on stderr: json (structured lines for the parent) or pretty.
    #[arg(long, env = "NETPULSE_LOG_FORMAT", default_value = "json", value_parser = ["json", "pretty"])]
    log_format: String,
    /// Log filter, e.g. info or pinned_worker=debug.
    #[arg(long, env = "NETPULSE_LOG", default_value = "info")]
    log: String,
}

/// stdin/stdout as non-blocking pipes when they are pipes (no blocking-pool thread hop per
/// frame); the plain tokio handles otherwise.
fn stdio() -> (
    Box<dyn AsyncRead + Unpin + Send>,
    Box<dyn AsyncWrite + Unpin + Send>,
) {
    let input: Box<dyn AsyncRead + Unpin + Send> = match std::io::stdin()
        .as_fd()
        .try_clone_to_owned()
        .map(pipe::Receiver::from_owned_fd)
    {
        Ok(Ok(r)) => Box::new(r),
        _ => Box::new(tokio::io::stdin()),
    };
    let output: Box<dyn AsyncWrite + Unpin + Send> = match std::io::stdout()
        .as_fd()
        .try_clone_to_owned()
        .map(pipe::Sender::from_owned_fd)
    {
        Ok(Ok(w)) => Box::new(w),
        _ => Box::new(tokio::io::stdout()),
    };
    (input, output)
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let filter =
        tracing_subscriber::EnvFilter::try_new(&args.log).unwrap_or_else(|_| "info".into());
    let builder = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(filter);
    if args.log_format == "json" {
        builder.json().flatten_event(true).init();
    } else {
        builder.init();
    }
    // One device, one job at a time: a single-threaded runtime avoids cross-thread wake-ups.
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("pinned-worker: cannot start the runtime: {e}");
            return std::process::ExitCode::from(pinned_worker::exit_code::INTERNAL as u8);
        }
    };
    let code = rt.block_on(async {
        let (input, output) = stdio();
        pinned_worker::worker::run(input, output).await
    });
    std::process::ExitCode::from(code as u8)
}
