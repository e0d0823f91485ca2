use std::time::Duration;

use netpulse_proto::{api, worker};

use crate::credential::{CredentialRef, Resolved};
use crate::device::DeviceKey;
use crate::error::{ModelError, invalid, seconds};
use crate::secret::Secret;

/// Where a job runs and how to log in: the same rule for the public API and for the link
/// from an agent to its worker. `Debug` shows no secret.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Connection {
    pub device: DeviceKey,
    pub username: String,
    pub password: Secret,
    /// OpenSSH or PKCS#8 PEM.
    pub private_key: Secret,
    pub private_key_passphrase: Secret,
    /// As given: an alias such as `cisco_xe` is kept, the worker resolves it.
    pub device_type: String,
    /// The enable secret.
    pub secret: Secret,
    /// Replaces the platform's prompt pattern (checked to compile); empty: the platform's.
    pub prompt_pattern: String,
    /// Offer the legacy SSH algorithms too (an explicit opt-in per device).
    pub legacy_algorithms: bool,
    /// The SSH server the device is reached through; `None`: directly.
    pub jump_host: Option<JumpHost>,
    /// Where the login's secrets come from (the agent resolves it); `None`: the fields above.
    pub credential: Option<CredentialRef>,
}

/// A jump host (bastion) and its own login. `Debug` shows no secret.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JumpHost {
    pub addr: DeviceKey,
    pub username: String,
    pub password: Secret,
    pub private_key: Secret,
    pub private_key_passphrase: Secret,
}

/// How the pinned session is kept: from the public `Connection`, carried in the dispatch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SessionOptions {
    /// Application keepalive (RETURN must bring the prompt back).
    pub keepalive: Duration,
    /// TCP connect and SSH handshake.
    pub connect_timeout: Duration,
    /// Per-command read timeout.
    pub command_timeout: Duration,
}

impl Default for SessionOptions {
    fn default() -> Self {
        SessionOptions {
            keepalive: Duration::from_secs(60),
            connect_timeout: Duration::from_secs(10),
            command_timeout: Duration::from_secs(30),
        }
    }
}

/// The credential rule, for the device and for a jump host: a user, and a password or a
/// private key.
fn credentials(
    field: &str,
    username: &str,
    no_password: bool,
    no_key: bool,
) -> Result<(), ModelError> {
    if username.is_empty() {
        return Err(invalid(format!("{field}.username must not be empty")));
    }
    if no_password && no_key {
        return Err(invalid(format!(
            "{field}.password must not be empty unless {field}.private_key is given"
        )));
    }
    Ok(())
}

const JUMP: &str = "connection.jump_host";

impl JumpHost {
    /// One rule for both wire forms: an address, a user, and a password or a key.
    fn checked(
        host: &str,
        port: u32,
        username: &str,
        password: &str,
        private_key: &str,
        private_key_passphrase: &str,
    ) -> Result<Self, ModelError> {
        credentials(JUMP, username, password.is_empty(), private_key.is_empty())?;
        Ok(JumpHost {
            addr: DeviceKey::new(JUMP, host, port)?,
            username: username.to_string(),
            password: Secret::new(password.to_string()),
            private_key: Secret::new(private_key.to_string()),
            private_key_passphrase: Secret::new(private_key_passphrase.to_string()),
        })
    }
}

impl TryFrom<&api::JumpHost> for JumpHost {
    type Error = ModelError;

    fn try_from(j: &api::JumpHost) -> Result<Self, ModelError> {
        JumpHost::checked(
            &j.host,
            j.port,
            &j.username,
            &j.password,
            &j.private_key,
            &j.private_key_passphrase,
        )
    }
}

impl TryFrom<&worker::JumpHost> for JumpHost {
    type Error = ModelError;

    fn try_from(j: &worker::JumpHost) -> Result<Self, ModelError> {
        JumpHost::checked(
            &j.host,
            j.port,
            &j.username,
            &j.password,
            &j.private_key_pem,
            &j.private_key_passphrase,
        )
    }
}

impl From<&JumpHost> for worker::JumpHost {
    fn from(j: &JumpHost) -> Self {
        worker::JumpHost {
            host: j.addr.host().to_string(),
            port: j.addr.port() as u32,
            username: j.username.clone(),
            password: j.password.expose().to_string(),
            private_key_pem: j.private_key.expose().to_string(),
            private_key_passphrase: j.private_key_passphrase.expose().to_string(),
        }
    }
}

impl Connection {
    fn checked(self) -> Result<Self, ModelError> {
        if self.credential.is_some() {
            let inline = [
                &self.password,
                &self.secret,
                &self.private_key,
                &self.private_key_passphrase,
            ];
            if inline.iter().any(|s| !s.is_empty()) {
                return Err(invalid(
                    "connection.credential replaces connection.password, secret, private_key and private_key_passphrase: leave them empty",
                ));
            }
        } else {
            credentials(
                "connection",
                &self.username,
                self.password.is_empty(),
                self.private_key.is_empty(),
            )?;
        }
        if !self.prompt_pattern.is_empty() {
            crate::command::pattern("connection.prompt_pattern", &self.prompt_pattern)?;
        }
        Ok(self)
    }

    /// Checks a worker-wire connection by the same rule without copying it (the worker does
    /// so for every job); returns its device and its jump host's address.
    pub fn check(c: &worker::Connection) -> Result<(DeviceKey, Option<DeviceKey>), ModelError> {
        let device = DeviceKey::new("connection", &c.host, c.port)?;
        credentials(
            "connection",
            &c.username,
            c.password.is_empty(),
            c.private_key_pem.is_empty(),
        )?;
        let jump = match &c.jump_host {
            None => None,
            Some(j) => Some(JumpHost::try_from(j)?.addr),
        };
        Ok((device, jump))
    }
}

impl TryFrom<&api::Connection> for Connection {
    type Error = ModelError;

    fn try_from(c: &api::Connection) -> Result<Self, ModelError> {
        Connection {
            device: DeviceKey::new("connection", &c.host, c.port)?,
            username: c.username.clone(),
            password: Secret::new(c.password.clone()),
            private_key: Secret::new(c.private_key.clone()),
            private_key_passphrase: Secret::new(c.private_key_passphrase.clone()),
            device_type: c.device_type.clone(),
            secret: Secret::new(c.secret.clone()),
            prompt_pattern: c.prompt_pattern.clone(),
            legacy_algorithms: c.legacy_algorithms,
            jump_host: c.jump_host.as_ref().map(JumpHost::try_from).transpose()?,
            credential: c
                .credential
                .as_ref()
                .map(CredentialRef::try_from)
                .transpose()?,
        }
        .checked()
    }
}

impl TryFrom<&worker::Connection> for Connection {
    type Error = ModelError;

    fn try_from(c: &worker::Connection) -> Result<Self, ModelError> {
        Connection::from_worker(c, None)
    }
}

impl Connection {
    /// A worker-wire connection whose secrets, with `credential`, the agent resolves later.
    pub fn from_worker(
        c: &worker::Connection,
        credential: Option<CredentialRef>,
    ) -> Result<Self, ModelError> {
        Connection {
            device: DeviceKey::new("connection", &c.host, c.port)?,
            username: c.username.clone(),
            password: Secret::new(c.password.clone()),
            private_key: Secret::new(c.private_key_pem.clone()),
            private_key_passphrase: Secret::new(c.private_key_passphrase.clone()),
            device_type: c.device_type.clone(),
            secret: Secret::new(c.secret.clone()),
            prompt_pattern: c.prompt_pattern.clone(),
            legacy_algorithms: c.legacy_algorithms,
            jump_host: c.jump_host.as_ref().map(JumpHost::try_from).transpose()?,
            credential,
        }
        .checked()
    }
}

impl Connection {
    /// Takes the secrets a reference resolved to; the connection then carries them as if
    /// given inline, and must satisfy the same rule.
    pub fn resolve(&mut self, r: Resolved) -> Result<(), ModelError> {
        if let Some(u) = r.username {
            self.username = u;
        }
        self.password = r.password;
        self.secret = r.secret;
        self.private_key = r.private_key;
        self.private_key_passphrase = r.private_key_passphrase;
        self.credential = None;
        credentials(
            "the resolved credential",
            &self.username,
            self.password.is_empty(),
            self.private_key.is_empty(),
        )
    }
}

impl From<&Connection> for worker::Connection {
    fn from(c: &Connection) -> Self {
        worker::Connection {
            host: c.device.host().to_string(),
            port: c.device.port() as u32,
            username: c.username.clone(),
            password: c.password.expose().to_string(),
            private_key_pem: c.private_key.expose().to_string(),
            private_key_passphrase: c.private_key_passphrase.expose().to_string(),
            device_type: c.device_type.clone(),
            secret: c.secret.expose().to_string(),
            prompt_pattern: c.prompt_pattern.clone(),
            legacy_algorithms: c.legacy_algorithms,
            jump_host: c.jump_host.as_ref().map(worker::JumpHost::from),
        }
    }
}

impl TryFrom<&api::Connection> for SessionOptions {
    type Error = ModelError;

    fn try_from(c: &api::Connection) -> Result<Self, ModelError> {
        Ok(SessionOptions {
            keepalive: seconds(
                "connection.keepalive_seconds",
                c.keepalive_seconds,
                3600,
                60,
            )?,
            connect_timeout: seconds(
                "connection.connect_timeout_seconds",
                c.connect_timeout_seconds,
                300,
                10,
            )?,
            command_timeout: seconds(
                "connection.command_timeout_seconds",
                c.command_timeout_seconds,
                3600,
                30,
            )?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api_conn() -> api::Connection {
        api::Connection {
            host: "192.0.2.1".into(),
            username: "admin".into(),
            password: "hunter2".into(),
            device_type: "cisco_ios".into(),
            secret: "en-secret".into(),
            ..Default::default()
        }
    }

    #[test]
    fn one_credential_rule_for_both_edges() {
        let c = Connection::try_from(&api_conn()).unwrap();
        let debug = format!("{c:?}");
        assert!(
            !debug.contains("hunter2") && !debug.contains("en-secret"),
            "{debug}"
        );
        let wire = worker::Connection::from(&c);
        assert_eq!((wire.password.as_str(), wire.port), ("hunter2", 22));
        assert_eq!(Connection::try_from(&wire).unwrap(), c);

        let mut no_password = api_conn();
        no_password.password.clear();
        let e = Connection::try_from(&no_password).unwrap_err().to_string();
        assert!(
            e.starts_with("connection.password must not be empty"),
            "{e}"
        );
        let keyed = worker::Connection {
            password: String::new(),
            private_key_pem: "-----BEGIN OPENSSH PRIVATE KEY-----".into(),
            ..wire.clone()
        };
        assert!(
            Connection::try_from(&keyed).is_ok(),
            "a key stands in for the password"
        );
        let mut api_keyed = api_conn();
        api_keyed.password.clear();
        api_keyed.private_key = "-----BEGIN OPENSSH PRIVATE KEY-----".into();
        api_keyed.private_key_passphrase = "pass-phrase".into();
        let c = Connection::try_from(&api_keyed).unwrap();
        assert!(!format!("{c:?}").contains("pass-phrase"));
        let w = worker::Connection::from(&c);
        assert_eq!(w.private_key_passphrase, "pass-phrase");
        let mut bad_prompt = api_conn();
        bad_prompt.prompt_pattern = "R1[".into();
        let e = Connection::try_from(&bad_prompt).unwrap_err().to_string();
        assert!(
            e.starts_with("connection.prompt_pattern is not a valid regular expression"),
            "{e}"
        );
        bad_prompt.prompt_pattern = r"^(?P<host>R1)[>#]$".into();
        let w = worker::Connection::from(&Connection::try_from(&bad_prompt).unwrap());
        assert_eq!(w.prompt_pattern, r"^(?P<host>R1)[>#]$");
        let mut no_user = api_conn();
        no_user.username.clear();
        assert_eq!(
            Connection::try_from(&no_user).unwrap_err().to_string(),
            "connection.username must not be empty"
        );
    }

    #[test]
    fn a_jump_host_has_its_own_login_checked_by_the_same_rule() {
        let mut c = api_conn();
        c.jump_host = Some(api::JumpHost {
            host: "bastion".into(),
            username: "jumper".into(),
            private_key: "-----BEGIN OPENSSH PRIVATE KEY-----".into(),
            private_key_passphrase: "jump-phrase".into(),
            ..Default::default()
        });
        let m = Connection::try_from(&c).unwrap();
        let j = m.jump_host.as_ref().unwrap();
        assert_eq!(
            (j.addr.to_string().as_str(), j.username.as_str()),
            ("bastion:22", "jumper")
        );
        assert!(!format!("{m:?}").contains("jump-phrase"));
        let wire = worker::Connection::from(&m);
        assert_eq!(
            wire.jump_host
                .as_ref()
                .map(|j| j.private_key_passphrase.as_str()),
            Some("jump-phrase")
        );
        assert_eq!(Connection::try_from(&wire).unwrap(), m);
        let (device, jump) = Connection::check(&wire).unwrap();
        assert_eq!(
            (device.to_string(), jump.map(|j| j.to_string())),
            ("192.0.2.1:22".into(), Some("bastion:22".into()))
        );

        let no_key = api::JumpHost {
            private_key: String::new(),
            ..c.jump_host.clone().unwrap()
        };
        c.jump_host = Some(no_key);
        assert_eq!(
            Connection::try_from(&c).unwrap_err().to_string(),
            "connection.jump_host.password must not be empty unless \
             connection.jump_host.private_key is given"
        );
        c.jump_host = Some(api::JumpHost {
            host: String::new(),
            ..c.jump_host.clone().unwrap()
        });
        c.jump_host.as_mut().unwrap().password = "x".into();
        assert!(
            Connection::try_from(&c)
                .unwrap_err()
                .to_string()
                .starts_with("connection.jump_host.host must be a host name")
        );
    }

    #[test]
    fn session_options_have_ranges_and_defaults() {
        let d = SessionOptions::try_from(&api_conn()).unwrap();
        assert_eq!(d, SessionOptions::default());
        let mut c = api_conn();
        c.connect_timeout_seconds = 301;
        assert_eq!(
            SessionOptions::try_from(&c).unwrap_err().to_string(),
            "connection.connect_timeout_seconds must be 1..=300 (0 for 10), got 301"
        );
        c.connect_timeout_seconds = 2;
        assert_eq!(
            SessionOptions::try_from(&c).unwrap().connect_timeout,
            Duration::from_secs(2)
        );
    }
}
