//! Opening the SSH transport: TCP with `TCP_NODELAY`, the handshake with a host-key policy,
//! authentication, and an interactive shell channel on a PTY.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use russh::client::{self, Handle, Msg};
use russh::keys::{PrivateKey, PrivateKeyWithHashAlg, PublicKeyOrCertificate};
use russh::{Channel, keys};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tracing::{info, warn};

use crate::error::SessionError;

mod algorithms;
pub use algorithms::preferred;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HostKeyPolicy {
    /// Trust on first use and record the key; reject a key that differs from the record.
    AcceptNew(PathBuf),
    /// Accept only keys already recorded.
    Strict(PathBuf),
    /// Accept anything. Explicit opt-in only.
    InsecureAcceptAny,
}

/// Everything needed to open a transport. `Debug` is implemented by hand so secrets never
/// reach a log line.
#[derive(Clone, PartialEq, Eq)]
pub struct Target {
    pub host: String,
    pub port: u16,
    pub username: String,
    pub password: String,
    pub private_key_pem: String,
    pub private_key_passphrase: String,
    pub host_key_policy: HostKeyPolicy,
    pub connect_timeout: Duration,
    pub auth_timeout: Duration,
    pub ssh_keepalive_interval: Duration,
    pub ssh_keepalive_max: usize,
    /// Also offer the algorithms old devices need (see [`preferred`]).
    pub legacy_algorithms: bool,
    /// Reach the device through this SSH server (direct-tcpip over its session): its own
    /// address and credentials, the same host-key policy and timeouts.
    pub jump: Option<Box<Target>>,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Target")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("username", &self.username)
            .field(
                "password",
                &if self.password.is_empty() {
                    ""
                } else {
                    "<redacted>"
                },
            )
            .field(
                "private_key",
                &if self.private_key_pem.is_empty() {
                    ""
                } else {
                    "<redacted>"
                },
            )
            .field("host_key_policy", &self.host_key_policy)
            .field("jump", &self.jump)
            .finish_non_exhaustive()
    }
}

impl Target {
    pub fn addr(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    /// The passwords and passphrases of this target and its jump host.
    pub fn secrets(&self) -> Vec<String> {
        let mut all = vec![self.password.clone(), self.private_key_passphrase.clone()];
        if let Some(j) = &self.jump {
            all.extend(j.secrets());
        }
        all
    }
}

pub struct HostKeyCheck {
    host: String,
    port: u16,
    policy: HostKeyPolicy,
    notes: Arc<Mutex<Notes>>,
}

/// What the handler saw that russh's errors do not carry.
#[derive(Default)]
struct Notes {
    /// Why the host key was rejected (russh only sees `false`).
    rejection: Option<String>,
    /// The server's disconnect message: its reason code and text.
    disconnect: Option<(russh::Disconnect, String)>,
}

/// Words devices use when every line or session is taken.
fn says_busy(text: &str) -> bool {
    static BUSY: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
        regex::Regex::new(
            r"(?i)too many (sessions|connections|users|logins)|lines are (all )?(busy|in use)|maximum (number of )?(sessions|connections|users|vty)|(session|user|connection|vty) limit|wait for previous session",
        )
        .expect("busy pattern")
    });
    BUSY.is_match(text)
}

impl Notes {
    /// The device refused for lack of lines: a "too many connections" disconnect, or one
    /// whose text says so.
    fn busy(&self) -> Option<String> {
        let (code, text) = self.disconnect.as_ref()?;
        (matches!(code, russh::Disconnect::TooManyConnections) || says_busy(text))
            .then(|| format!("it disconnected with {code:?}: {text:?}"))
    }
}

impl HostKeyCheck {
    fn verdict(&self, key: &keys::PublicKey) -> Result<(), String> {
        let (path, learn) = match &self.policy {
            HostKeyPolicy::InsecureAcceptAny => return Ok(()),
            HostKeyPolicy::AcceptNew(p) => (p, true),
            HostKeyPolicy::Strict(p) => (p, false),
        };
        let known = if path.exists() {
            keys::check_known_hosts_path(&self.host, self.port, key, path).map_err(|e| match e {
                keys::Error::KeyChanged { line } => format!(
                    "the host key of {}:{} changed (known_hosts {} line {line}); if the device was \
                     replaced, remove that line",
                    self.host,
                    self.port,
                    path.display()
                ),
                other => format!("reading {}: {other}", path.display()),
            })?
        } else {
            false
        };
        match (known, learn) {
            (true, _) => Ok(()),
            (false, true) => {
                keys::known_hosts::learn_known_hosts_path(&self.host, self.port, key, path)
                    .map_err(|e| format!("recording the host key in {}: {e}", path.display()))?;
                info!(host = %self.host, port = self.port, "recorded new host key");
                Ok(())
            }
            (false, false) => Err(format!(
                "{}:{} is not in {} and the policy is strict",
                self.host,
                self.port,
                path.display()
            )),
        }
    }
}

impl client::Handler for HostKeyCheck {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        key: &PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        let verdict = match key {
            PublicKeyOrCertificate::PublicKey { key, .. } => self.verdict(key),
            PublicKeyOrCertificate::Certificate(_)
                if self.policy == HostKeyPolicy::InsecureAcceptAny =>
            {
                Ok(())
            }
            PublicKeyOrCertificate::Certificate(_) => {
                Err("host certificates are not supported".into())
            }
        };
        match verdict {
            Ok(()) => Ok(true),
            Err(why) => {
                self.notes.lock().expect("lock").rejection = Some(why);
                Ok(false)
            }
        }
    }

    async fn disconnected(
        &mut self,
        reason: client::DisconnectReason<Self::Error>,
    ) -> Result<(), Self::Error> {
        match reason {
            client::DisconnectReason::ReceivedDisconnect(info) => {
                self.notes.lock().expect("lock").disconnect =
                    Some((info.reason_code, info.message));
                Ok(())
            }
            client::DisconnectReason::Error(e) => Err(e),
        }
    }
}

/// How a session was set up: each step's time, and the prompt it found.
#[derive(Clone, Debug, Default)]
pub struct Setup {
    /// TCP connect; through a jump host, its whole login and the forwarded channel.
    pub tcp: Duration,
    pub handshake: Duration,
    pub auth: Duration,
    pub shell: Duration,
    /// Set by the session: the first prompt, login questions and paging off.
    pub prompt: Duration,
    pub prompt_line: String,
}

pub struct Transport {
    pub handle: Handle<HostKeyCheck>,
    pub channel: Channel<Msg>,
    pub setup: Setup,
    notes: Arc<Mutex<Notes>>,
    /// The jump host's session, which carries the device's; dropping it ends both.
    jump: Option<Handle<HostKeyCheck>>,
}

impl Transport {
    /// Why the device refused the session for lack of lines, when it did: its disconnect
    /// message, or what it printed before it closed the session.
    pub fn refusal(&self, printed: &str) -> Option<String> {
        self.notes.lock().expect("lock").busy().or_else(|| {
            says_busy(printed).then(|| format!("it printed {printed:?} and closed the session"))
        })
    }

    /// True when the transport is known to be gone. Cheap; does not touch the device.
    pub fn is_closed(&self) -> bool {
        self.handle.is_closed() || self.jump.as_ref().is_some_and(|j| j.is_closed())
    }

    pub async fn close(self) {
        let bye = |h: Handle<HostKeyCheck>| async move {
            let _ = tokio::time::timeout(
                Duration::from_secs(1),
                h.disconnect(russh::Disconnect::ByApplication, "", "en"),
            )
            .await;
        };
        bye(self.handle).await;
        if let Some(j) = self.jump {
            bye(j).await;
        }
    }

    /// The channel's next message if one is already there (`None`: nothing yet), without
    /// waiting: the channel is polled once.
    pub fn poll_message(&mut self) -> Option<Option<russh::ChannelMsg>> {
        let waker = std::task::Waker::noop();
        let mut cx = std::task::Context::from_waker(waker);
        let mut fut = std::pin::pin!(self.channel.wait());
        match fut.as_mut().poll(&mut cx) {
            std::task::Poll::Ready(v) => Some(v),
            std::task::Poll::Pending => None,
        }
    }
}

/// Connects (directly or through the jump host), authenticates and opens a PTY shell. Each
/// step has its own timeout.
pub async fn open(t: &Target) -> Result<Transport, SessionError> {
    let addr = t.addr();
    if t.host_key_policy == HostKeyPolicy::InsecureAcceptAny {
        warn!(%addr, "host key checking is off (insecure_accept_any)");
    }
    let mut setup = Setup::default();
    let began = Instant::now();
    let ((handle, notes), jump) = match &t.jump {
        None => {
            let tcp = tcp_connect(t).await?;
            setup.tcp = began.elapsed();
            (login(t, tcp, "private_key", &mut setup).await?, None)
        }
        Some(j) => {
            let at_jump = |e| through(e, &j.addr());
            let (jh, _) = login(
                j,
                tcp_connect(j).await.map_err(at_jump)?,
                "jump_host.private_key",
                &mut Setup::default(),
            )
            .await
            .map_err(at_jump)?;
            let forwarded = tokio::time::timeout(
                t.connect_timeout,
                jh.channel_open_direct_tcpip(t.host.as_str(), t.port as u32, "127.0.0.1", 0),
            )
            .await
            .map_err(|_| SessionError::ConnectTimeout {
                addr: format!("{addr} through the jump host {}", j.addr()),
                after: t.connect_timeout,
            })?
            .map_err(|e| SessionError::ConnectFailed {
                addr: addr.clone(),
                reason: format!(
                    "the jump host {} did not open a channel to it: {e}",
                    j.addr()
                ),
            })?;
            setup.tcp = began.elapsed();
            let device = login(t, forwarded.into_stream(), "private_key", &mut setup).await?;
            (device, Some(jh))
        }
    };
    let shell_began = Instant::now();
    let channel = tokio::time::timeout(t.auth_timeout, async {
        let ch = handle.channel_open_session().await?;
        // Wide terminal so devices do not wrap long lines; replies are not awaited, a refusal
        // shows up as a missing prompt.
        ch.request_pty(false, "vt100", 511, 24, 0, 0, &[]).await?;
        ch.request_shell(false).await?;
        Ok::<_, russh::Error>(ch)
    })
    .await
    .map_err(|_| SessionError::ConnectFailed {
        addr: addr.clone(),
        reason: "opening the shell channel timed out".into(),
    })?
    .map_err(|e| {
        busy_or(
            &notes,
            &addr,
            SessionError::ConnectFailed {
                addr: addr.clone(),
                reason: format!("opening the shell channel: {e}"),
            },
        )
    })?;
    setup.shell = shell_began.elapsed();
    Ok(Transport {
        handle,
        channel,
        setup,
        notes,
        jump,
    })
}

/// `e`, unless the device's disconnect said it refused for lack of lines.
fn busy_or(notes: &Mutex<Notes>, addr: &str, e: SessionError) -> SessionError {
    match notes.lock().expect("lock").busy() {
        Some(reason) => SessionError::DeviceBusy {
            addr: addr.to_string(),
            reason,
        },
        None => e,
    }
}

/// An error of the jump host's own connection, said so.
fn through(e: SessionError, jump: &str) -> SessionError {
    match e {
        SessionError::ConnectFailed { addr, reason } => SessionError::ConnectFailed {
            addr: format!("the jump host {addr}"),
            reason,
        },
        SessionError::ConnectTimeout { addr, after } => SessionError::ConnectTimeout {
            addr: format!("the jump host {addr}"),
            after,
        },
        SessionError::AuthFailed { user, reason } => SessionError::AuthFailed {
            user,
            reason: format!("{reason} (at the jump host {jump})"),
        },
        SessionError::HostKeyRejected(why) => {
            SessionError::HostKeyRejected(format!("jump host: {why}"))
        }
        other => other,
    }
}

async fn tcp_connect(t: &Target) -> Result<TcpStream, SessionError> {
    let tcp = tokio::time::timeout(
        t.connect_timeout,
        TcpStream::connect((t.host.as_str(), t.port)),
    )
    .await
    .map_err(|_| SessionError::ConnectTimeout {
        addr: t.addr(),
        after: t.connect_timeout,
    })?
    .map_err(|e| SessionError::ConnectFailed {
        addr: t.addr(),
        reason: e.to_string(),
    })?;
    // Commands and their echoes are small writes; Nagle would hold them for a delayed ACK.
    let _ = tcp.set_nodelay(true);
    Ok(tcp)
}

/// The SSH handshake and authentication over `stream` (TCP, or a channel of the jump host).
async fn login<S>(
    t: &Target,
    stream: S,
    key_field: &str,
    setup: &mut Setup,
) -> Result<(Handle<HostKeyCheck>, Arc<Mutex<Notes>>), SessionError>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let addr = t.addr();
    let key = if t.private_key_pem.is_empty() {
        None
    } else {
        let pass = Some(t.private_key_passphrase.as_str()).filter(|p| !p.is_empty());
        Some(
            keys::decode_secret_key(&t.private_key_pem, pass).map_err(|e| {
                SessionError::InvalidArgument(format!("{key_field} does not decode: {e}"))
            })?,
        )
    };
    let config = Arc::new(client::Config {
        keepalive_interval: Some(t.ssh_keepalive_interval),
        keepalive_max: t.ssh_keepalive_max,
        inactivity_timeout: None,
        nodelay: true,
        preferred: preferred(t.legacy_algorithms),
        ..Default::default()
    });
    let notes = Arc::new(Mutex::new(Notes::default()));
    let check = HostKeyCheck {
        host: t.host.clone(),
        port: t.port,
        policy: t.host_key_policy.clone(),
        notes: notes.clone(),
    };
    let busy = |reason| SessionError::DeviceBusy {
        addr: addr.clone(),
        reason,
    };
    let began = Instant::now();
    let mut handle = match tokio::time::timeout(
        t.connect_timeout,
        client::connect_stream(config, stream, check),
    )
    .await
    {
        Err(_) => {
            return Err(SessionError::ConnectTimeout {
                addr,
                after: t.connect_timeout,
            });
        }
        Ok(Ok(h)) => h,
        Ok(Err(e)) => {
            let mut notes = notes.lock().expect("lock");
            if let Some(why) = notes.rejection.take() {
                return Err(SessionError::HostKeyRejected(why));
            }
            if let Some(why) = notes.busy() {
                return Err(busy(why));
            }
            // IOS with no free VTY line, and OpenSSH over MaxStartups, close (or reset) the
            // connection before the handshake, without a disconnect message.
            let dropped = match &e {
                russh::Error::Disconnect => true,
                russh::Error::IO(io) => io.kind() == std::io::ErrorKind::ConnectionReset,
                _ => false,
            };
            if dropped && notes.disconnect.is_none() {
                return Err(busy(format!(
                    "it dropped the connection before the SSH handshake ended ({e})"
                )));
            }
            let hint = match (&e, t.legacy_algorithms) {
                (russh::Error::NoCommonAlgo { .. }, false) => {
                    "; an old device may need connection.legacy_algorithms"
                }
                _ => "",
            };
            return Err(SessionError::ConnectFailed {
                addr,
                reason: format!("ssh handshake: {e}{hint}"),
            });
        }
    };
    setup.handshake = began.elapsed();
    let began = Instant::now();
    tokio::time::timeout(t.auth_timeout, authenticate(&mut handle, t, key))
        .await
        .map_err(|_| SessionError::AuthFailed {
            user: t.username.clone(),
            reason: format!("no answer within {:?}", t.auth_timeout),
        })?
        .map_err(|e| busy_or(&notes, &addr, e))?;
    setup.auth = began.elapsed();
    Ok((handle, notes))
}

/// Answers keyboard-interactive prompts: an echoed prompt that asks for a user gets the user
/// name, every other prompt the password. Bounded, so a server that keeps asking cannot loop.
async fn keyboard_interactive(
    handle: &mut Handle<HostKeyCheck>,
    t: &Target,
) -> Result<bool, russh::Error> {
    use russh::client::KeyboardInteractiveAuthResponse as R;
    let mut r = handle
        .authenticate_keyboard_interactive_start(t.username.clone(), None)
        .await?;
    for _ in 0..4 {
        match r {
            R::Success => return Ok(true),
            R::Failure { .. } => return Ok(false),
            R::InfoRequest { prompts, .. } => {
                let answers = prompts
                    .iter()
                    .map(|p| {
                        let asks_user = p.echo && p.prompt.to_ascii_lowercase().contains("user");
                        if asks_user {
                            t.username.clone()
                        } else {
                            t.password.clone()
                        }
                    })
                    .collect();
                r = handle
                    .authenticate_keyboard_interactive_respond(answers)
                    .await?;
            }
        }
    }
    Ok(false)
}

async fn authenticate(
    handle: &mut Handle<HostKeyCheck>,
    t: &Target,
    key: Option<PrivateKey>,
) -> Result<(), SessionError> {
    let failed = |reason: String| SessionError::AuthFailed {
        user: t.username.clone(),
        reason,
    };
    let mut tried = Vec::new();
    if let Some(key) = key {
        let hash = handle
            .best_supported_rsa_hash()
            .await
            .map_err(|e| failed(e.to_string()))?
            .flatten();
        let r = handle
            .authenticate_publickey(&t.username, PrivateKeyWithHashAlg::new(Arc::new(key), hash))
            .await
            .map_err(|e| failed(e.to_string()))?;
        if r.success() {
            return Ok(());
        }
        tried.push("publickey");
    }
    if !t.password.is_empty() {
        let r = handle
            .authenticate_password(&t.username, &t.password)
            .await
            .map_err(|e| failed(e.to_string()))?;
        if r.success() {
            return Ok(());
        }
        tried.push("password");
        // Many network devices take the password only through keyboard-interactive.
        if keyboard_interactive(handle, t)
            .await
            .map_err(|e| failed(e.to_string()))?
        {
            return Ok(());
        }
        tried.push("keyboard-interactive");
    }
    if tried.is_empty() {
        return Err(SessionError::InvalidArgument(
            "connection needs a password or a private_key_pem".into(),
        ));
    }
    Err(failed(format!(
        "the device refused {}",
        tried.join(" and ")
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_for_lack_of_lines_are_recognised_by_their_words() {
        for busy in [
            "Too many sessions: all lines are in use",
            "Maximum number of sessions reached",
            "Wait for previous session to complete",
            "% All lines are busy",
            "The VTY limit has been reached",
        ] {
            assert!(says_busy(busy), "{busy}");
        }
        for other in [
            "Permission denied",
            "Connection closed by foreign host",
            "R1#",
        ] {
            assert!(!says_busy(other), "{other}");
        }
        let busy = |code, text: &str| {
            Notes {
                rejection: None,
                disconnect: Some((code, text.into())),
            }
            .busy()
        };
        assert!(busy(russh::Disconnect::TooManyConnections, "").is_some());
        assert!(busy(russh::Disconnect::ByApplication, "bye").is_none());
        assert!(busy(russh::Disconnect::ByApplication, "Too many users").is_some());
    }
}
