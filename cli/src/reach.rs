//! How a device is reached and recognised, beyond its user and password: a private key, a jump
//! host, legacy SSH algorithms, a prompt pattern. The same flags for `exec`, `bulk` and `test`.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use netpulse_proto::api::{Connection, JumpHost};

#[derive(Args, Debug, Default)]
pub struct Reach {
    /// A private key file (OpenSSH or PKCS#8 PEM), tried before the password (which may then
    /// be left unset).
    #[arg(long)]
    key_file: Option<PathBuf>,
    /// The variable that holds the key's passphrase.
    #[arg(long, default_value = "NETPULSE_KEY_PASSPHRASE")]
    key_passphrase_env: String,
    /// Replaces the platform's prompt pattern: a regular expression for the whole last line.
    #[arg(long)]
    prompt_pattern: Option<String>,
    /// Also offer the SSH algorithms old devices need (SHA-1 key exchange, CBC, ssh-rsa,
    /// ssh-dss). Off by default.
    #[arg(long)]
    legacy_algorithms: bool,
    /// Reach the device through this SSH server: [USER@]HOST[:PORT] (the device's user and
    /// port 22 when left out).
    #[arg(long)]
    jump_host: Option<String>,
    /// The jump host's private key file.
    #[arg(long, requires = "jump_host")]
    jump_key_file: Option<PathBuf>,
    /// The variable that holds the jump host's password.
    #[arg(long, default_value = "NETPULSE_JUMP_PASSWORD")]
    jump_password_env: String,
}

fn read_key(flag: &str, path: &PathBuf) -> anyhow::Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("reading {flag} {}", path.display()))
}

fn env(var: &str) -> String {
    std::env::var(var).unwrap_or_default()
}

/// `[user@]host[:port]`, with `[v6]:port` for IPv6 addresses.
fn parse_jump(spec: &str, default_user: &str) -> anyhow::Result<JumpHost> {
    let (user, addr) = match spec.rsplit_once('@') {
        Some((u, a)) => (u.to_string(), a),
        None => (default_user.to_string(), spec),
    };
    let (host, port) = match addr.strip_prefix('[') {
        Some(rest) => {
            let (h, tail) = rest
                .split_once(']')
                .with_context(|| format!("--jump-host {spec:?}: no closing ]"))?;
            (h, tail.strip_prefix(':'))
        }
        None if addr.matches(':').count() == 1 => {
            let (h, p) = addr.split_once(':').expect("one colon");
            (h, Some(p))
        }
        None => (addr, None),
    };
    let port = match port {
        None => 0,
        Some(p) => p
            .parse()
            .with_context(|| format!("--jump-host {spec:?}: the port must be a number"))?,
    };
    anyhow::ensure!(!host.is_empty(), "--jump-host {spec:?}: no host");
    Ok(JumpHost {
        host: host.to_string(),
        port,
        username: user,
        ..Default::default()
    })
}

impl Reach {
    pub fn apply(&self, c: &mut Connection) -> anyhow::Result<()> {
        if let Some(path) = &self.key_file {
            c.private_key = read_key("--key-file", path)?;
            c.private_key_passphrase = env(&self.key_passphrase_env);
        }
        if let Some(p) = &self.prompt_pattern {
            c.prompt_pattern = p.clone();
        }
        c.legacy_algorithms |= self.legacy_algorithms;
        if let Some(spec) = &self.jump_host {
            let mut j = parse_jump(spec, &c.username)?;
            j.password = env(&self.jump_password_env);
            if let Some(path) = &self.jump_key_file {
                j.private_key = read_key("--jump-key-file", path)?;
            }
            c.jump_host = Some(j);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jump_host_specs() {
        let j = parse_jump("ops@bastion:2222", "admin").unwrap();
        assert_eq!(
            (j.username.as_str(), j.host.as_str(), j.port),
            ("ops", "bastion", 2222)
        );
        let j = parse_jump("10.0.0.5", "admin").unwrap();
        assert_eq!(
            (j.username.as_str(), j.host.as_str(), j.port),
            ("admin", "10.0.0.5", 0)
        );
        let j = parse_jump("[2001:db8::1]:22", "admin").unwrap();
        assert_eq!((j.host.as_str(), j.port), ("2001:db8::1", 22));
        assert!(
            parse_jump("bastion:ssh", "a")
                .unwrap_err()
                .to_string()
                .contains("number")
        );
        assert!(parse_jump("ops@", "a").is_err());
    }
}
