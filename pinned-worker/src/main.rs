//! `pinned-worker`: holds one SSH session to one device; see the library docs and
//! `exit_code` for the protocol and exit codes. Started by the node agent, which writes frames
//! to its stdin and reads frames from its stdout. Logs go to stderr.

use std::os::fd::AsFd;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::unix::pipe;

const USAGE: &str = "pinned-worker: one device session, driven by frames on stdin/stdout

Usage: pinned-worker [--log-format json|pretty] [--log FILTER] [--worker-id ID] [--device HOST:PORT]
                     [--platforms-dir DIR] [--ntc-templates-dir DIR] [--templates-dir DIR]

  --log-format  log format on stderr: json (structured lines, the default) or pretty
                [env: NETPULSE_LOG_FORMAT]
  --log         log filter, e.g. info (the default) or pinned_worker=debug [env: NETPULSE_LOG]
  --worker-id   named in every log line (the parent's stderr is shared by all its workers)
  --device      named in every log line
  --platforms-dir  operator platform definitions (<name>.toml) beside the built-in ones
  --ntc-templates-dir  ntc-templates' templates and index, for parsing outputs
                (default /usr/local/share/netpulse/ntc-templates/ntc_templates/templates)
  --templates-dir  the operator's TextFSM templates, named by file in requests
";

/// The flags, parsed by hand: a command-line parser would add ~0.4 MB of code to every
/// worker process, and a worker's RSS is mostly its binary.
#[derive(Debug)]
struct Args {
    log_format: String,
    log: String,
    worker_id: String,
    device: String,
    platforms_dir: String,
    ntc_templates_dir: String,
    templates_dir: String,
}

impl Args {
    fn parse(mut argv: impl Iterator<Item = String>) -> Result<Args, String> {
        let env = |k: &str, d: &str| std::env::var(k).unwrap_or_else(|_| d.to_string());
        let mut a = Args {
            log_format: env("NETPULSE_LOG_FORMAT", "json"),
            log: env("NETPULSE_LOG", "info"),
            worker_id: String::new(),
            device: String::new(),
            platforms_dir: String::new(),
            ntc_templates_dir: String::new(),
            templates_dir: String::new(),
        };
        while let Some(flag) = argv.next() {
            let (name, inline) = match flag.split_once('=') {
                Some((n, v)) => (n.to_string(), Some(v.to_string())),
                None => (flag, None),
            };
            if name == "--help" || name == "-h" {
                return Err(String::new());
            }
            let slot = match name.as_str() {
                "--log-format" => &mut a.log_format,
                "--log" => &mut a.log,
                "--worker-id" => &mut a.worker_id,
                "--device" => &mut a.device,
                "--platforms-dir" => &mut a.platforms_dir,
                "--ntc-templates-dir" => &mut a.ntc_templates_dir,
                "--templates-dir" => &mut a.templates_dir,
                other => return Err(format!("unknown argument {other:?}")),
            };
            *slot = match inline.or_else(|| argv.next()) {
                Some(v) => v,
                None => return Err(format!("{name} needs a value")),
            };
        }
        if !matches!(a.log_format.as_str(), "json" | "pretty") {
            return Err(format!(
                "--log-format must be json or pretty, got {:?}",
                a.log_format
            ));
        }
        Ok(a)
    }
}

/// stdin/stdout as non-blocking sockets or pipes when they are (no blocking-pool thread hop
/// per frame); the plain tokio handles otherwise. The node agent passes one socket as both.
fn stdio() -> (
    Box<dyn AsyncRead + Unpin + Send>,
    Box<dyn AsyncWrite + Unpin + Send>,
) {
    let socket = |fd: std::os::fd::BorrowedFd<'_>| {
        let s = std::os::unix::net::UnixStream::from(fd.try_clone_to_owned().ok()?);
        // Not a socket: the peer address cannot be read.
        s.peer_addr().ok()?;
        s.set_nonblocking(true).ok()?;
        tokio::net::UnixStream::from_std(s).ok()
    };
    if let (Some(r), Some(w)) = (
        socket(std::io::stdin().as_fd()),
        socket(std::io::stdout().as_fd()),
    ) {
        return (Box::new(r), Box::new(w));
    }
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
    let args = match Args::parse(std::env::args().skip(1)) {
        Ok(a) => a,
        Err(e) if e.is_empty() => {
            print!("{USAGE}");
            return std::process::ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("pinned-worker: {e}\n\n{USAGE}");
            return std::process::ExitCode::from(2);
        }
    };
    let filter =
        tracing_subscriber::EnvFilter::try_new(&args.log).unwrap_or_else(|_| "info".into());
    let builder = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(filter);
    if args.log_format == "json" {
        builder
            .json()
            .flatten_event(true)
            .with_span_list(false)
            .init();
    } else {
        builder.init();
    }
    if !args.platforms_dir.is_empty() {
        let dir = std::path::Path::new(&args.platforms_dir);
        pinned_worker::platform::install(pinned_worker::platform::Catalog::with_dir_or_broken(dir));
    }
    let dir = |s: &str| (!s.is_empty()).then(|| std::path::PathBuf::from(s));
    pinned_worker::parse::configure(dir(&args.ntc_templates_dir), dir(&args.templates_dir));
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
    let span = if args.worker_id.is_empty() && args.device.is_empty() {
        tracing::Span::none()
    } else {
        tracing::info_span!("worker", worker_id = %args.worker_id, device = %args.device)
    };
    let code = rt.block_on(tracing::Instrument::instrument(
        async {
            let (input, output) = stdio();
            pinned_worker::worker::run(input, output).await
        },
        span,
    ));
    std::process::ExitCode::from(code as u8)
}

#[cfg(test)]
mod tests {
    use super::Args;

    fn parse(args: &[&str]) -> Result<Args, String> {
        Args::parse(args.iter().map(|s| s.to_string()))
    }

    #[test]
    fn flags_parse_and_bad_ones_say_what_is_allowed() {
        let a = parse(&[
            "--log-format",
            "pretty",
            "--log=debug",
            "--worker-id",
            "w1",
            "--platforms-dir",
            "/p",
        ])
        .unwrap();
        assert_eq!(a.platforms_dir, "/p");
        assert_eq!((a.log_format.as_str(), a.log.as_str()), ("pretty", "debug"));
        assert_eq!((a.worker_id.as_str(), a.device.as_str()), ("w1", ""));
        assert!(
            parse(&["--log-format", "xml"])
                .unwrap_err()
                .contains("json or pretty")
        );
        assert!(parse(&["--log"]).unwrap_err().contains("needs a value"));
        assert!(
            parse(&["--bogus"])
                .unwrap_err()
                .contains("unknown argument")
        );
        assert_eq!(parse(&["--help"]).unwrap_err(), "");
    }
}
