use std::time::Duration;

use netpulse_proto::{api, worker};

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

/// The credential rule: a user, and a password or a private key.
fn credentials(username: &str, no_password: bool, no_key: bool) -> Result<(), ModelError> {
    if username.is_empty() {
        return Err(invalid("connection.username must not be empty"));
    }
    if no_password && no_key {
        return Err(invalid(
            "connection.password must not be empty unless connection.private_key is given",
        ));
    }
    Ok(())
}

impl Connection {
    fn checked(self) -> Result<Self, ModelError> {
        credentials(
            &self.username,
            self.password.is_empty(),
            self.private_key.is_empty(),
        )?;
        if !self.prompt_pattern.is_empty() {
            crate::command::pattern("connection.prompt_pattern", &self.prompt_pattern)?;
        }
        Ok(self)
    }

    /// Checks a worker-wire connection by the same rule without copying it (the worker does
    /// so for every job); returns its device.
    pub fn check(c: &worker::Connection) -> Result<DeviceKey, ModelError> {
        let device = DeviceKey::new("connection", &c.host, c.port)?;
        credentials(
            &c.username,
            c.password.is_empty(),
            c.private_key_pem.is_empty(),
        )?;
        Ok(device)
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
        }
        .checked()
    }
}

impl TryFrom<&worker::Connection> for Connection {
    type Error = ModelError;

    fn try_from(c: &worker::Connection) -> Result<Self, ModelError> {
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
        }
        .checked()
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
