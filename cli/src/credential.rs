//! Credentials by reference on the command line: a profile on the agents, or a Vault/OpenBao
//! KV v2 secret, resolved by the node agent that runs the job (no secret on this machine).

use clap::Args;
use netpulse_proto::api::{Connection, CredentialRef, VaultSecret, credential_ref::Source};

#[derive(Args, Debug, Default)]
pub struct CredentialFlags {
    /// Log in with this credential profile of the agents (--credential-profiles-dir) instead
    /// of a password.
    #[arg(long, conflicts_with = "vault_path")]
    credential_profile: Option<String>,
    /// Log in with this Vault/OpenBao KV v2 secret (its path under the mount) instead of a
    /// password.
    #[arg(long)]
    vault_path: Option<String>,
    /// The KV v2 engine's mount ("secret" when left out).
    #[arg(long, requires = "vault_path")]
    vault_mount: Option<String>,
    /// A version of the secret (the latest when left out).
    #[arg(long, requires = "vault_path")]
    vault_version: Option<u32>,
    /// Which key of the secret holds a credential, CREDENTIAL=KEY, repeatable: username,
    /// password, secret, private_key, private_key_passphrase (e.g. password=pass).
    #[arg(long, requires = "vault_path")]
    vault_field: Vec<String>,
}

impl CredentialFlags {
    /// The reference these flags name, if any.
    pub fn reference(&self) -> anyhow::Result<Option<CredentialRef>> {
        if let Some(p) = &self.credential_profile {
            return Ok(Some(CredentialRef {
                source: Some(Source::Profile(p.clone())),
            }));
        }
        let Some(path) = &self.vault_path else {
            return Ok(None);
        };
        let mut v = VaultSecret {
            mount: self.vault_mount.clone().unwrap_or_default(),
            path: path.clone(),
            version: self.vault_version.unwrap_or(0),
            ..Default::default()
        };
        for f in &self.vault_field {
            let Some((credential, key)) = f.split_once('=') else {
                anyhow::bail!("--vault-field takes CREDENTIAL=KEY, got {f:?}");
            };
            let slot = match credential {
                "username" => &mut v.username_field,
                "password" => &mut v.password_field,
                "secret" => &mut v.secret_field,
                "private_key" => &mut v.private_key_field,
                "private_key_passphrase" => &mut v.private_key_passphrase_field,
                other => anyhow::bail!(
                    "--vault-field: {other:?} is not one of username, password, secret, private_key, private_key_passphrase"
                ),
            };
            *slot = key.to_string();
        }
        Ok(Some(CredentialRef {
            source: Some(Source::Vault(v)),
        }))
    }

    /// Puts the reference in the connection, which then carries no inline secret.
    pub fn apply(&self, c: &mut Connection) -> anyhow::Result<bool> {
        let Some(r) = self.reference()? else {
            return Ok(false);
        };
        c.password.clear();
        c.secret.clear();
        c.private_key.clear();
        c.private_key_passphrase.clear();
        c.credential = Some(r);
        Ok(true)
    }
}
