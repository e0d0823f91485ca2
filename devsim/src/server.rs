//! The SSH server of one simulated device, and its faults.
//!
//! Every accepted TCP connection is wrapped in a [`FaultStream`] and handed to russh. The
//! stream is how faults reach a live session without russh's cooperation: when the device is
//! frozen it neither reads nor writes (the peer sees silence, SSH keepalives included); when a
//! connection is dropped it reports end of stream, so russh ends the session and the socket
//! closes without an SSH disconnect message, like a device that reboots or a link that fails.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use russh::keys::PrivateKey;
use russh::server::{Auth, Msg, Session};
use russh::{Channel, ChannelId, Pty};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::shell::{Flavor, Shell, ShellSettings};

#[derive(Clone, Debug)]
pub struct DeviceSpec {
    pub flavor: Flavor,
    pub bind: SocketAddr,
    pub hostname: String,
    pub username: String,
    pub password: String,
    pub enable_secret: Option<String>,
    /// Public keys accepted for the user, besides the password.
    pub authorized_keys: Vec<russh::keys::PublicKey>,
    /// Delay before a successful login is accepted (real devices take 2-5 s).
    pub login_delay: Duration,
    /// Delay before the answer to each command.
    pub command_delay: Duration,
    /// Close a session after this long without input, like a device's exec-timeout.
    pub exec_timeout: Option<Duration>,
    /// Reject every login.
    pub refuse_auth: bool,
    pub tech_support_lines: usize,
    pub page_lines: usize,
    /// The shell never prints anything (a device that never shows a prompt).
    pub mute_shell: bool,
    pub prompt: crate::shell::PromptVariant,
    /// Offer only algorithms of old devices: SHA-1 key exchange, CBC ciphers, hmac-sha1.
    pub legacy_ssh_only: bool,
    /// Refuse the password method; take the password only through keyboard-interactive, as
    /// many network devices do.
    pub keyboard_interactive_only: bool,
    /// Connections served at once (a device's VTY lines); one more is refused.
    pub max_sessions: Option<usize>,
    pub busy_refusal: BusyRefusal,
    /// How long a minute of a confirmed commit's timer lasts.
    pub confirm_minute: Duration,
    /// Bytes the device's flash holds.
    pub flash_bytes: u64,
}

/// How a device whose lines are all in use refuses one more connection.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum BusyRefusal {
    /// Close the TCP connection before the SSH banner, as IOS does with no free VTY line.
    #[default]
    Close,
    /// Log the user in, then send an SSH disconnect "too many connections" (reason 12).
    Disconnect,
}

impl DeviceSpec {
    pub fn new(flavor: Flavor, hostname: &str) -> Self {
        DeviceSpec {
            flavor,
            bind: SocketAddr::from(([127, 0, 0, 1], 0)),
            hostname: hostname.to_string(),
            username: "admin".into(),
            password: "admin".into(),
            enable_secret: Some("enable".into()),
            authorized_keys: Vec::new(),
            login_delay: Duration::ZERO,
            command_delay: Duration::ZERO,
            exec_timeout: None,
            refuse_auth: false,
            tech_support_lines: 1000,
            page_lines: 24,
            mute_shell: false,
            prompt: Default::default(),
            legacy_ssh_only: false,
            keyboard_interactive_only: false,
            max_sessions: None,
            busy_refusal: BusyRefusal::Close,
            confirm_minute: Duration::from_secs(60),
            flash_bytes: 1 << 30,
        }
    }
}

/// What a switch of the 2000s offers, and nothing newer.
fn legacy_only() -> russh::Preferred {
    use russh::{cipher, kex, mac};
    russh::Preferred {
        kex: vec![kex::DH_G14_SHA1, kex::DH_G1_SHA1].into(),
        cipher: vec![cipher::AES_128_CBC, cipher::TRIPLE_DES_CBC].into(),
        mac: vec![mac::HMAC_SHA1].into(),
        ..Default::default()
    }
}

/// Fault switches shared by all connections of one device.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Faults {
    frozen: bool,
    /// Connections accepted before this generation was bumped are dropped.
    drop_generation: u64,
}

struct Shared {
    spec: DeviceSpec,
    faults: watch::Sender<Faults>,
    logins: AtomicU64,
    commands: AtomicU64,
    /// TCP connections being served now.
    sessions: AtomicUsize,
    /// Connections refused because every line was in use.
    refused: AtomicU64,
    /// Becomes true once the listener is closed.
    closed: watch::Sender<bool>,
    flash: Arc<crate::flash::Flash>,
}

/// A running simulated device. Dropping it does not stop it; cancel the token it was spawned
/// with.
#[derive(Clone)]
pub struct Device {
    addr: SocketAddr,
    shared: Arc<Shared>,
}

impl Device {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
    pub fn spec(&self) -> &DeviceSpec {
        &self.shared.spec
    }
    /// Successful logins so far: a reused session does not add one.
    pub fn logins(&self) -> u64 {
        self.shared.logins.load(Ordering::Relaxed)
    }
    /// Connections refused because every line was in use.
    pub fn refused(&self) -> u64 {
        self.shared.refused.load(Ordering::Relaxed)
    }
    /// Command lines executed so far, across sessions.
    pub fn commands(&self) -> u64 {
        self.shared.commands.load(Ordering::Relaxed)
    }
    /// Waits until the device's listener is closed (after its shutdown token is cancelled).
    pub async fn closed(&self) {
        let _ = self.shared.closed.subscribe().wait_for(|c| *c).await;
    }
    /// Closes every open connection abruptly (no SSH disconnect message).
    pub fn drop_connections(&self) {
        self.shared.faults.send_modify(|f| f.drop_generation += 1);
    }
    /// The device's files.
    pub fn flash(&self) -> &crate::flash::Flash {
        &self.shared.flash
    }
    /// Stops (or resumes) reading and writing on every connection, new ones included.
    pub fn set_frozen(&self, frozen: bool) {
        self.shared.faults.send_modify(|f| f.frozen = frozen);
    }
}

/// Binds the device's port and serves it until `shutdown` is cancelled.
pub async fn spawn_device(
    spec: DeviceSpec,
    host_key: PrivateKey,
    shutdown: CancellationToken,
) -> std::io::Result<Device> {
    let listener = TcpListener::bind(spec.bind).await?;
    let addr = listener.local_addr()?;
    let config = Arc::new(russh::server::Config {
        keys: vec![host_key],
        auth_rejection_time: Duration::from_millis(50),
        auth_rejection_time_initial: Some(Duration::ZERO),
        nodelay: true,
        inactivity_timeout: None,
        preferred: if spec.legacy_ssh_only {
            legacy_only()
        } else {
            Default::default()
        },
        ..Default::default()
    });
    let shared = Arc::new(Shared {
        flash: Arc::new(crate::flash::Flash::new(spec.flash_bytes)),
        spec,
        faults: watch::Sender::new(Faults::default()),
        logins: AtomicU64::new(0),
        commands: AtomicU64::new(0),
        sessions: AtomicUsize::new(0),
        refused: AtomicU64::new(0),
        closed: watch::Sender::new(false),
    });
    let device = Device {
        addr,
        shared: shared.clone(),
    };
    tokio::spawn(async move {
        loop {
            let (tcp, peer) = tokio::select! {
                _ = shutdown.cancelled() => break,
                r = listener.accept() => match r {
                    Ok(x) => x,
                    Err(e) => {
                        warn!(%addr, error = %e, "accept failed");
                        continue;
                    }
                },
            };
            let _ = tcp.set_nodelay(true);
            let full = shared
                .spec
                .max_sessions
                .is_some_and(|max| shared.sessions.load(Ordering::Relaxed) >= max);
            if full && shared.spec.busy_refusal == BusyRefusal::Close {
                shared.refused.fetch_add(1, Ordering::Relaxed);
                debug!(%peer, "every line is in use: connection closed");
                continue;
            }
            tokio::spawn(serve_connection(
                tcp,
                peer,
                config.clone(),
                shared.clone(),
                shutdown.clone(),
            ));
        }
        drop(listener);
        shared.closed.send_replace(true);
        debug!(%addr, "device stopped");
    });
    Ok(device)
}

async fn serve_connection(
    tcp: TcpStream,
    peer: SocketAddr,
    config: Arc<russh::server::Config>,
    shared: Arc<Shared>,
    shutdown: CancellationToken,
) {
    shared.sessions.fetch_add(1, Ordering::Relaxed);
    struct Served(Arc<Shared>);
    impl Drop for Served {
        fn drop(&mut self) {
            self.0.sessions.fetch_sub(1, Ordering::Relaxed);
        }
    }
    let _served = Served(shared.clone());
    let faults = shared.faults.subscribe();
    let generation = faults.borrow().drop_generation;
    let (kill_tx, kill_rx) = watch::channel(false);
    let last_input = Arc::new(std::sync::Mutex::new(Instant::now()));
    let stream = FaultStream::new(tcp, faults.clone(), generation, kill_rx);
    let handler = Conn {
        shared: shared.clone(),
        shell: None,
        scp: std::collections::HashMap::new(),
        user: String::new(),
        last_input: last_input.clone(),
    };
    let session = match russh::server::run_stream(config, stream, handler).await {
        Ok(s) => s,
        Err(e) => {
            debug!(%peer, error = ?e, "ssh handshake failed");
            return;
        }
    };
    let exec_timeout = shared.spec.exec_timeout;
    let idle_check = async {
        let Some(limit) = exec_timeout else {
            return std::future::pending().await;
        };
        loop {
            let deadline = *last_input.lock().expect("lock") + limit;
            if Instant::now() >= deadline {
                return;
            }
            tokio::time::sleep_until(deadline).await;
        }
    };
    tokio::select! {
        r = session => debug!(%peer, result = ?r.err(), "session ended"),
        _ = idle_check => {
            info!(%peer, "exec-timeout: closing idle session");
            let _ = kill_tx.send(true);
        }
        _ = shutdown.cancelled() => { let _ = kill_tx.send(true); }
    }
}

/// An SCP transfer on one of the connection's exec channels.
enum ScpChannel {
    Sink(crate::flash::Sink),
    Source(crate::flash::Source),
}

struct Conn {
    shared: Arc<Shared>,
    shell: Option<Shell>,
    scp: std::collections::HashMap<ChannelId, ScpChannel>,
    user: String,
    last_input: Arc<std::sync::Mutex<Instant>>,
}

impl Conn {
    async fn accept_login(&mut self, user: &str) -> Auth {
        tokio::time::sleep(self.shared.spec.login_delay).await;
        self.shared.logins.fetch_add(1, Ordering::Relaxed);
        self.user = user.to_string();
        Auth::Accept
    }
}

impl russh::server::Handler for Conn {
    type Error = russh::Error;

    async fn auth_password(&mut self, user: &str, password: &str) -> Result<Auth, Self::Error> {
        let spec = &self.shared.spec;
        if spec.refuse_auth
            || spec.keyboard_interactive_only
            || user != spec.username
            || password != spec.password
        {
            return Ok(Auth::reject());
        }
        Ok(self.accept_login(user).await)
    }

    async fn auth_keyboard_interactive<'a>(
        &'a mut self,
        user: &str,
        _submethods: &str,
        response: Option<russh::server::Response<'a>>,
    ) -> Result<Auth, Self::Error> {
        let spec = &self.shared.spec;
        if spec.refuse_auth || user != spec.username {
            return Ok(Auth::reject());
        }
        match response {
            None => Ok(Auth::Partial {
                name: "".into(),
                instructions: "".into(),
                prompts: vec![("Password: ".into(), false)].into(),
            }),
            Some(mut answers) => {
                if answers
                    .next()
                    .is_some_and(|a| a.as_ref() == spec.password.as_bytes())
                {
                    Ok(self.accept_login(user).await)
                } else {
                    Ok(Auth::reject())
                }
            }
        }
    }

    async fn auth_publickey(
        &mut self,
        user: &str,
        key: russh::server::VerifiedPublicKey<'_>,
    ) -> Result<Auth, Self::Error> {
        let spec = &self.shared.spec;
        let known = spec
            .authorized_keys
            .iter()
            .any(|k| k.key_data() == key.public_key.key_data());
        if spec.refuse_auth || user != spec.username || !known {
            return Ok(Auth::reject());
        }
        Ok(self.accept_login(user).await)
    }

    async fn channel_open_session(
        &mut self,
        _channel: Channel<Msg>,
        reply: russh::server::ChannelOpenHandle,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let spec = &self.shared.spec;
        let over = spec
            .max_sessions
            .is_some_and(|max| self.shared.sessions.load(Ordering::Relaxed) > max);
        if over && spec.busy_refusal == BusyRefusal::Disconnect {
            self.shared.refused.fetch_add(1, Ordering::Relaxed);
            session.disconnect(
                russh::Disconnect::TooManyConnections,
                "Too many sessions: all lines are in use",
                "en",
            )?;
            return Ok(());
        }
        reply.accept().await;
        Ok(())
    }

    async fn pty_request(
        &mut self,
        channel: ChannelId,
        _term: &str,
        _cols: u32,
        _rows: u32,
        _pw: u32,
        _ph: u32,
        _modes: &[(Pty, u32)],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        session.channel_success(channel)?;
        Ok(())
    }

    async fn shell_request(
        &mut self,
        channel: ChannelId,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let spec = &self.shared.spec;
        let mut shell = Shell::new(
            ShellSettings {
                flavor: spec.flavor,
                hostname: spec.hostname.clone(),
                username: self.user.clone(),
                enable_secret: spec.enable_secret.clone(),
                tech_support_lines: spec.tech_support_lines,
                page_lines: spec.page_lines,
                prompt: spec.prompt.clone(),
                confirm_minute: spec.confirm_minute,
                flash: self.shared.flash.clone(),
            },
            crate::vendor::personality(spec.flavor),
        );
        session.channel_success(channel)?;
        if !spec.mute_shell {
            session.data(channel, shell.greeting())?;
            self.shell = Some(shell);
        }
        Ok(())
    }

    async fn exec_request(
        &mut self,
        channel: ChannelId,
        data: &[u8],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let cmd = String::from_utf8_lossy(data).to_string();
        let flash = &self.shared.flash;
        let (state, first) = if let Some(path) = cmd.strip_prefix("scp -t ") {
            let (sink, first) = crate::flash::Sink::start(path.trim(), flash);
            (ScpChannel::Sink(sink), first)
        } else if let Some(path) = cmd.strip_prefix("scp -f ") {
            (
                ScpChannel::Source(crate::flash::Source::start(path.trim())),
                Vec::new(),
            )
        } else {
            session.channel_failure(channel)?;
            return Ok(());
        };
        session.channel_success(channel)?;
        self.scp.insert(channel, state);
        scp_act(session, channel, first)
    }

    async fn data(
        &mut self,
        channel: ChannelId,
        data: &[u8],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        *self.last_input.lock().expect("lock") = Instant::now();
        if let Some(t) = self.scp.get_mut(&channel) {
            let flash = &self.shared.flash;
            let acts = match t {
                ScpChannel::Sink(s) => s.feed(data, flash),
                ScpChannel::Source(s) => s.feed(data, flash),
            };
            return scp_act(session, channel, acts);
        }
        let Some(shell) = self.shell.as_mut() else {
            return Ok(());
        };
        let reply = shell.input(data);
        if reply.lines > 0 {
            self.shared
                .commands
                .fetch_add(reply.lines as u64, Ordering::Relaxed);
            let delay = self.shared.spec.command_delay;
            if !delay.is_zero() {
                tokio::time::sleep(delay * reply.lines as u32).await;
            }
        }
        if !reply.output.is_empty() {
            session.data(channel, reply.output)?;
        }
        if reply.disconnect {
            session.exit_status_request(channel, 0)?;
            session.eof(channel)?;
            session.close(channel)?;
        }
        Ok(())
    }
}

fn scp_act(
    session: &mut Session,
    channel: ChannelId,
    acts: Vec<crate::flash::Scp>,
) -> Result<(), russh::Error> {
    for a in acts {
        match a {
            crate::flash::Scp::Send(bytes) => session.data(channel, bytes)?,
            crate::flash::Scp::Finish => {
                session.exit_status_request(channel, 0)?;
                session.eof(channel)?;
                session.close(channel)?;
            }
            crate::flash::Scp::Cut => session.close(channel)?,
        }
    }
    Ok(())
}

/// A TCP stream that obeys the device's faults; see the module docs.
struct FaultStream {
    inner: TcpStream,
    faults: watch::Receiver<Faults>,
    generation: u64,
    kill: watch::Receiver<bool>,
    /// Resolves when a fault switch changes, so a frozen stream wakes when it thaws or dies.
    changed: Pin<Box<dyn Future<Output = ()> + Send>>,
}

impl FaultStream {
    fn new(
        inner: TcpStream,
        faults: watch::Receiver<Faults>,
        generation: u64,
        kill: watch::Receiver<bool>,
    ) -> Self {
        let changed = Self::watch(faults.clone(), kill.clone());
        FaultStream {
            inner,
            faults,
            generation,
            kill,
            changed,
        }
    }

    fn watch(
        mut f: watch::Receiver<Faults>,
        mut k: watch::Receiver<bool>,
    ) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        f.mark_unchanged();
        k.mark_unchanged();
        Box::pin(async move {
            tokio::select! {
                r = f.changed() => if r.is_err() { std::future::pending::<()>().await },
                r = k.changed() => if r.is_err() { std::future::pending::<()>().await },
            }
        })
    }

    /// `Ready(true)`: the connection is dropped. `Ready(false)`: go ahead. `Pending`: frozen.
    fn gate(&mut self, cx: &mut Context<'_>) -> Poll<bool> {
        while self.changed.as_mut().poll(cx).is_ready() {
            self.changed = Self::watch(self.faults.clone(), self.kill.clone());
        }
        let f = *self.faults.borrow();
        if *self.kill.borrow() || f.drop_generation != self.generation {
            return Poll::Ready(true);
        }
        if f.frozen {
            Poll::Pending
        } else {
            Poll::Ready(false)
        }
    }
}

impl AsyncRead for FaultStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.gate(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(true) => Poll::Ready(Ok(())),
            Poll::Ready(false) => Pin::new(&mut self.inner).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for FaultStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.gate(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(true) => Poll::Ready(Err(std::io::ErrorKind::BrokenPipe.into())),
            Poll::Ready(false) => Pin::new(&mut self.inner).poll_write(cx, buf),
        }
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

pub fn random_host_key() -> PrivateKey {
    PrivateKey::random(&mut rand::rng(), russh::keys::Algorithm::Ed25519)
        .expect("ed25519 key generation")
}

/// Loads an OpenSSH private key, or creates and writes a new Ed25519 key when the file is missing.
pub fn load_or_create_host_key(path: &std::path::Path) -> std::io::Result<PrivateKey> {
    if path.exists() {
        return russh::keys::load_secret_key(path, None).map_err(std::io::Error::other);
    }
    let key = random_host_key();
    let pem = key
        .to_openssh(russh::keys::ssh_key::LineEnding::LF)
        .map_err(std::io::Error::other)?;
    std::fs::write(path, pem.as_bytes())?;
    Ok(key)
}
