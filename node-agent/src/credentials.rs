//! Resolves a job's credential reference next to the worker: a profile file from
//! `--credential-profiles-dir`, or a Vault/OpenBao secret (`vault`). The resolved secrets go
//! into the job's connection and its worker frame; they never leave this node.
//!
//! A profile is one file per name, as a mounted Kubernetes Secret lays its keys out: TOML with
//! `username`, `password`, `secret`, `private_key`, `private_key_passphrase`. It is read at
//! each use, so a changed Secret takes effect with the next job.

use std::path::{Path, PathBuf};
use std::time::Duration;

use netpulse_model::AgentJob;
use netpulse_model::credential::{CredentialRef, Fields, Resolved};
use netpulse_proto::worker::ErrorKind;

use crate::vault::{Vault, VaultAuth, VaultConfig, VaultError};

/// Profiles larger than this are not credentials.
const MAX_PROFILE_BYTES: u64 = 64 << 10;

/// The agent's credential settings (flattened into its flags).
#[derive(Clone, Debug, Default, clap::Args)]
pub struct CredentialArgs {
    /// Credential profiles, one TOML file per profile name (a mounted Kubernetes Secret).
    #[arg(long, env = "NETPULSE_CREDENTIAL_PROFILES_DIR")]
    pub credential_profiles_dir: Option<PathBuf>,
    /// The Vault/OpenBao server jobs' vault references are read from, e.g.
    /// https://vault.example:8200; none: such jobs fail credentials_unavailable.
    #[arg(long, env = "NETPULSE_VAULT_ADDR")]
    pub vault_addr: Option<String>,
    #[arg(long, env = "NETPULSE_VAULT_NAMESPACE")]
    pub vault_namespace: Option<String>,
    /// Token auth: a file holding the token (read at each use).
    #[arg(long, env = "NETPULSE_VAULT_TOKEN_FILE")]
    pub vault_token_file: Option<PathBuf>,
    /// AppRole auth: the role id (with --vault-approle-secret-id-file).
    #[arg(
        long,
        env = "NETPULSE_VAULT_APPROLE_ROLE_ID",
        requires = "vault_approle_secret_id_file"
    )]
    pub vault_approle_role_id: Option<String>,
    #[arg(long, env = "NETPULSE_VAULT_APPROLE_SECRET_ID_FILE")]
    pub vault_approle_secret_id_file: Option<PathBuf>,
    #[arg(long, env = "NETPULSE_VAULT_APPROLE_MOUNT", default_value = "approle")]
    pub vault_approle_mount: String,
    /// Kubernetes auth: the Vault role bound to this pod's service account.
    #[arg(long, env = "NETPULSE_VAULT_KUBERNETES_ROLE")]
    pub vault_kubernetes_role: Option<String>,
    #[arg(
        long,
        env = "NETPULSE_VAULT_KUBERNETES_MOUNT",
        default_value = "kubernetes"
    )]
    pub vault_kubernetes_mount: String,
    #[arg(
        long,
        env = "NETPULSE_VAULT_KUBERNETES_JWT_FILE",
        default_value = "/var/run/secrets/kubernetes.io/serviceaccount/token"
    )]
    pub vault_kubernetes_jwt_file: PathBuf,
    /// `<mount>/<path>` prefixes a job may name, comma-separated (whole segments); a job
    /// naming anything else fails permission_denied. None: no vault reference is allowed.
    #[arg(long, env = "NETPULSE_VAULT_ALLOWED_PATHS", value_delimiter = ',')]
    pub vault_allowed_paths: Vec<String>,
    /// How long a secret read is reused, 0..=86400 seconds (0: read at every job).
    #[arg(long, env = "NETPULSE_VAULT_CACHE_TTL_SECONDS", default_value_t = 60)]
    pub vault_cache_ttl_seconds: u64,
    /// Each request to the vault, 1..=60 seconds.
    #[arg(long, env = "NETPULSE_VAULT_TIMEOUT_SECONDS", default_value_t = 5)]
    pub vault_timeout_seconds: u64,
    /// A CA (PEM) the vault's certificate is checked against, beside the system's.
    #[arg(long, env = "NETPULSE_VAULT_CA_FILE")]
    pub vault_ca_file: Option<PathBuf>,
}

impl CredentialArgs {
    /// The resolver these settings describe; a bad setting is named.
    pub fn load(&self) -> Result<Credentials, String> {
        let vault = match &self.vault_addr {
            None => None,
            Some(addr) => {
                let auth = match (
                    &self.vault_token_file,
                    &self.vault_approle_role_id,
                    &self.vault_kubernetes_role,
                ) {
                    (Some(f), None, None) => VaultAuth::Token(f.clone()),
                    (None, Some(role_id), None) => VaultAuth::AppRole {
                        mount: self.vault_approle_mount.clone(),
                        role_id: role_id.clone(),
                        secret_id_file: self
                            .vault_approle_secret_id_file
                            .clone()
                            .unwrap_or_default(),
                    },
                    (None, None, Some(role)) => VaultAuth::Kubernetes {
                        mount: self.vault_kubernetes_mount.clone(),
                        role: role.clone(),
                        jwt_file: self.vault_kubernetes_jwt_file.clone(),
                    },
                    _ => {
                        return Err("with --vault-addr, give exactly one of --vault-token-file, --vault-approle-role-id and --vault-kubernetes-role".into());
                    }
                };
                if self.vault_cache_ttl_seconds > 86_400 {
                    return Err(format!(
                        "vault-cache-ttl-seconds must be 0..=86400, got {}",
                        self.vault_cache_ttl_seconds
                    ));
                }
                if !(1..=60).contains(&self.vault_timeout_seconds) {
                    return Err(format!(
                        "vault-timeout-seconds must be 1..=60, got {}",
                        self.vault_timeout_seconds
                    ));
                }
                Some(Vault::new(VaultConfig {
                    addr: addr.clone(),
                    namespace: self.vault_namespace.clone().filter(|n| !n.is_empty()),
                    auth,
                    allowed_paths: self
                        .vault_allowed_paths
                        .iter()
                        .map(|p| p.trim().to_string())
                        .filter(|p| !p.is_empty())
                        .collect(),
                    cache_ttl: Duration::from_secs(self.vault_cache_ttl_seconds),
                    timeout: Duration::from_secs(self.vault_timeout_seconds),
                    ca_file: self.vault_ca_file.clone(),
                })?)
            }
        };
        if let Some(d) = &self.credential_profiles_dir
            && !d.is_dir()
        {
            return Err(format!(
                "credential-profiles-dir {} is not a directory",
                d.display()
            ));
        }
        Ok(Credentials {
            profiles_dir: self.credential_profiles_dir.clone(),
            vault,
        })
    }
}

#[derive(Debug, Default)]
pub struct Credentials {
    pub profiles_dir: Option<PathBuf>,
    pub vault: Option<Vault>,
}

/// Why a job's reference did not resolve: the kind the job fails with, and the reason.
pub type Unresolved = (ErrorKind, String);

fn unavailable(m: String) -> Unresolved {
    (ErrorKind::CredentialsUnavailable, m)
}

impl Credentials {
    /// Fills in the job's secrets when it names a reference; a job without one is untouched.
    pub async fn resolve(&self, job: &mut AgentJob) -> Result<(), Unresolved> {
        let Some(reference) = job.connection.credential.clone() else {
            return Ok(());
        };
        let resolved = match &reference {
            CredentialRef::Profile(name) => self.profile(name)?,
            CredentialRef::Vault(s) => {
                let vault = self.vault.as_ref().ok_or_else(|| {
                    unavailable("this agent has no vault (--vault-addr is not set)".into())
                })?;
                let fields = vault.read(s).await.map_err(|e| match e {
                    VaultError::Denied(_) => (ErrorKind::PermissionDenied, e.to_string()),
                    VaultError::Unavailable(m) => unavailable(m),
                })?;
                let from = format!("vault secret {}", s.full_path());
                Resolved::pick(&s.fields, &from, |k| fields.get(k).cloned()).map_err(unavailable)?
            }
        };
        job.resolve(resolved)
            .map_err(|e| unavailable(e.to_string()))
    }

    fn profile(&self, name: &str) -> Result<Resolved, Unresolved> {
        let dir = self.profiles_dir.as_ref().ok_or_else(|| {
            unavailable(format!(
                "credential profile {name}: this agent has no --credential-profiles-dir"
            ))
        })?;
        let path = dir.join(name);
        let table = read_profile(&path)
            .map_err(|e| unavailable(format!("credential profile {name}: {e}")))?;
        let from = format!("credential profile {name}");
        Resolved::pick(&Fields::default(), &from, |k| {
            table.get(k).and_then(|v| v.as_str()).map(String::from)
        })
        .map_err(unavailable)
    }
}

fn read_profile(path: &Path) -> Result<toml::Table, String> {
    let meta = std::fs::metadata(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => format!("no file {}", path.display()),
        _ => format!("{}: {e}", path.display()),
    })?;
    if meta.len() > MAX_PROFILE_BYTES {
        return Err(format!(
            "{} is larger than {MAX_PROFILE_BYTES} bytes",
            path.display()
        ));
    }
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    // The parser's message quotes the offending line, which may hold a secret: say where only.
    text.parse::<toml::Table>().map_err(|e| {
        let at = e
            .span()
            .map(|s| text[..s.start.min(text.len())].lines().count().max(1));
        match at {
            Some(line) => format!("{} is not valid TOML (line {line})", path.display()),
            None => format!("{} is not valid TOML", path.display()),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profiles_are_read_at_each_use_and_errors_show_no_secret() {
        let dir = tempfile::tempdir().unwrap();
        let c = Credentials {
            profiles_dir: Some(dir.path().to_path_buf()),
            vault: None,
        };
        std::fs::write(
            dir.path().join("core"),
            "username = \"ops\"\npassword = \"pw-1\"\n",
        )
        .unwrap();
        let r = c.profile("core").unwrap();
        assert_eq!(
            (r.username.as_deref(), r.password.expose()),
            (Some("ops"), "pw-1")
        );
        std::fs::write(
            dir.path().join("core"),
            "password = \"pw-2\"\nsecret = \"en\"\n",
        )
        .unwrap();
        let r = c.profile("core").unwrap();
        assert_eq!(
            (r.username, r.password.expose(), r.secret.expose()),
            (None, "pw-2", "en")
        );

        let e = c.profile("edge").unwrap_err();
        assert_eq!(e.0, ErrorKind::CredentialsUnavailable);
        assert!(e.1.contains("credential profile edge: no file"), "{e:?}");
        std::fs::write(dir.path().join("bad"), "password = \"pw-3\nx").unwrap();
        let e = c.profile("bad").unwrap_err();
        assert!(
            e.1.contains("is not valid TOML (line 2)") && !e.1.contains("pw-3"),
            "{e:?}"
        );
        std::fs::write(dir.path().join("empty"), "username = \"u\"\n").unwrap();
        let e = c.profile("empty").unwrap_err();
        assert!(
            e.1.contains("neither a \"password\" nor a \"private_key\""),
            "{e:?}"
        );
        let none = Credentials::default().profile("core").unwrap_err();
        assert!(none.1.contains("no --credential-profiles-dir"), "{none:?}");
    }
}
