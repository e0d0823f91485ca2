//! `devsim`: serves simulated network devices on loopback ports until SIGINT or SIGTERM.
//! Prints one JSON line per device (`{"name":..,"device_type":..,"addr":..}`), then `ready`.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use devsim::server::BusyRefusal;
use devsim::{DeviceSpec, Flavor, spawn_device};
use tokio_util::sync::CancellationToken;

#[derive(Parser, Debug)]
#[command(about = "simulated network devices over real SSH")]
struct Args {
    /// Devices to serve, as `platform=count` (every built-in platform but linux: cisco_ios,
    /// juniper_junos, fortinet, nokia_sros, ...; a wrong name lists them). Repeatable.
    #[arg(
        long = "devices",
        env = "DEVSIM_DEVICES",
        value_delimiter = ',',
        default_value = "cisco_ios=1"
    )]
    devices: Vec<String>,
    #[arg(long, env = "DEVSIM_LISTEN", default_value = "127.0.0.1")]
    listen: IpAddr,
    /// First port; devices take consecutive ports. 0 picks free ports.
    #[arg(long, env = "DEVSIM_BASE_PORT", default_value_t = 0)]
    base_port: u16,
    #[arg(long, env = "DEVSIM_USERNAME", default_value = "admin")]
    username: String,
    #[arg(
        long,
        env = "DEVSIM_PASSWORD",
        default_value = "admin",
        hide_env_values = true
    )]
    password: String,
    #[arg(
        long,
        env = "DEVSIM_ENABLE_SECRET",
        default_value = "enable",
        hide_env_values = true
    )]
    enable_secret: String,
    /// Delay before a login succeeds, in milliseconds (real devices take 2000-5000).
    #[arg(long, env = "DEVSIM_LOGIN_DELAY_MS", default_value_t = 0)]
    login_delay_ms: u64,
    /// Delay before each command's answer, in milliseconds.
    #[arg(long, env = "DEVSIM_COMMAND_DELAY_MS", default_value_t = 0)]
    command_delay_ms: u64,
    /// Close sessions idle this many seconds (a device's exec-timeout); 0 disables.
    #[arg(long, env = "DEVSIM_EXEC_TIMEOUT_S", default_value_t = 0)]
    exec_timeout_s: u64,
    /// Lines of the large-output command (show tech-support and equivalents).
    #[arg(long, env = "DEVSIM_TECH_SUPPORT_LINES", default_value_t = 1000)]
    tech_support_lines: usize,
    /// An OpenSSH public key (`ssh-ed25519 AAAA... comment`) every device accepts for its
    /// user, besides the password.
    #[arg(long, env = "DEVSIM_AUTHORIZED_KEY")]
    authorized_key: Option<String>,
    /// Offer only the SSH algorithms of old devices (SHA-1 key exchange, CBC, hmac-sha1).
    #[arg(long, env = "DEVSIM_LEGACY_SSH_ONLY")]
    legacy_ssh_only: bool,
    /// A line every device prints above its prompt outside configuration mode (a Junos
    /// virtual chassis prints `{master:0}`).
    #[arg(long, env = "DEVSIM_PROMPT_LINE_ABOVE")]
    prompt_line_above: Option<String>,
    /// Prompts show the hostname without the user (`r1>` where Junos shows `admin@r1>`).
    #[arg(long, env = "DEVSIM_BARE_PROMPT")]
    bare_prompt: bool,
    /// How long a minute of a confirmed commit's timer lasts, in milliseconds (tests hurry it).
    #[arg(long, env = "DEVSIM_CONFIRM_MINUTE_MS", default_value_t = 60_000)]
    confirm_minute_ms: u64,
    /// Connections each device serves at once (its VTY lines); 0: no limit.
    #[arg(long, env = "DEVSIM_MAX_SESSIONS", default_value_t = 0)]
    max_sessions: usize,
    /// How a device with every line in use refuses one more connection.
    #[arg(long, env = "DEVSIM_BUSY_REFUSAL", value_enum, default_value_t = BusyRefusal::Close)]
    busy_refusal: BusyRefusal,
    /// Host key file (OpenSSH format). Created when missing, so restarts keep the same key.
    #[arg(long, env = "DEVSIM_HOST_KEY")]
    host_key: Option<std::path::PathBuf>,
}

fn parse_devices(specs: &[String]) -> anyhow::Result<Vec<(Flavor, usize)>> {
    specs
        .iter()
        .map(|s| {
            let (name, count) = s.split_once('=').unwrap_or((s.as_str(), "1"));
            let flavor: Flavor = name.parse().map_err(anyhow::Error::msg)?;
            let count: usize = count
                .parse()
                .with_context(|| format!("device count in {s:?} must be a number"))?;
            Ok((flavor, count))
        })
        .collect()
}

/// Raises the soft descriptor limit to the hard one and checks that `devices` fit: each takes
/// a listener and, while a client is logged in, a connection.
fn descriptors_for(devices: usize) -> Result<(), String> {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).map_err(|e| e.to_string())?;
    if soft < hard {
        setrlimit(Resource::RLIMIT_NOFILE, hard, hard).map_err(|e| e.to_string())?;
    }
    let need = 2 * devices as u64 + 64;
    if hard < need {
        return Err(format!(
            "{devices} devices need {need} file descriptors (a listener and a connection each), \
             but the hard RLIMIT_NOFILE is {hard}: serve them from several devsim processes \
             (at most {} each) or raise the limit",
            hard.saturating_sub(64) / 2
        ));
    }
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .init();
    let args = Args::parse();
    let devices = match parse_devices(&args.devices) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("devsim: {e:#}");
            std::process::exit(64);
        }
    };
    let count: usize = devices.iter().map(|(_, n)| n).sum();
    if let Err(e) = descriptors_for(count) {
        eprintln!("devsim: {e}");
        std::process::exit(64);
    }
    let key = match &args.host_key {
        Some(path) => devsim::server::load_or_create_host_key(path)?,
        None => devsim::server::random_host_key(),
    };
    let authorized = match &args.authorized_key {
        Some(k) => match russh::keys::PublicKey::from_openssh(k) {
            Ok(k) => vec![k],
            Err(e) => {
                eprintln!("devsim: --authorized-key is not an OpenSSH public key: {e}");
                std::process::exit(64);
            }
        },
        None => Vec::new(),
    };
    let shutdown = CancellationToken::new();
    let mut port = args.base_port;
    for (flavor, count) in devices {
        for i in 1..=count {
            let name = format!("{}-{i}", flavor.device_type().replace('_', "-"));
            let mut spec = DeviceSpec::new(flavor, &name);
            spec.bind = SocketAddr::new(args.listen, port);
            spec.username = args.username.clone();
            spec.password = args.password.clone();
            spec.enable_secret = Some(args.enable_secret.clone()).filter(|s| !s.is_empty());
            spec.login_delay = Duration::from_millis(args.login_delay_ms);
            spec.confirm_minute = Duration::from_millis(args.confirm_minute_ms.max(1));
            spec.command_delay = Duration::from_millis(args.command_delay_ms);
            spec.exec_timeout =
                (args.exec_timeout_s > 0).then(|| Duration::from_secs(args.exec_timeout_s));
            spec.tech_support_lines = args.tech_support_lines;
            spec.authorized_keys = authorized.clone();
            spec.legacy_ssh_only = args.legacy_ssh_only;
            spec.max_sessions = (args.max_sessions > 0).then_some(args.max_sessions);
            spec.busy_refusal = args.busy_refusal;
            spec.prompt.line_above = args.prompt_line_above.clone();
            spec.prompt.bare = args.bare_prompt;
            let dev = spawn_device(spec, key.clone(), shutdown.clone())
                .await
                .with_context(|| format!("binding {}:{port}", args.listen))?;
            println!(
                "{{\"name\":\"{name}\",\"device_type\":\"{}\",\"addr\":\"{}\"}}",
                flavor.device_type(),
                dev.addr()
            );
            if port != 0 {
                port = port.checked_add(1).context("ran out of ports")?;
            }
        }
    }
    println!("ready");
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    shutdown.cancel();
    Ok(())
}
