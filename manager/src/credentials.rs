//! Which credentials a request may carry or name, checked at submit: inline secrets unless
//! refused, vault references under the allowed prefixes. Profiles and vault secrets are
//! resolved by the agents, never here.

use crate::error::ApiError;

/// What a request may carry: inline secrets (unless refused), and vault references under the
/// allowed prefixes (the agents' `--vault-allowed-paths`, so a bad path is refused at once).
#[derive(Clone, Debug, Default)]
pub struct CredentialPolicy {
    pub refuse_inline_secrets: bool,
    /// Empty: vault references are left to the agents to check.
    pub vault_allowed_paths: Vec<String>,
}

impl CredentialPolicy {
    pub fn check(&self, c: &netpulse_model::Connection) -> Result<(), ApiError> {
        use netpulse_model::CredentialRef;
        match &c.credential {
            None if self.refuse_inline_secrets => Err(ApiError::InvalidArgument(
                "this manager takes no inline secrets (--refuse-inline-secrets): name a credential profile or a vault secret in connection.credential".into(),
            )),
            Some(CredentialRef::Vault(v))
                if !self.vault_allowed_paths.is_empty()
                    && !netpulse_model::credential::allowed(&self.vault_allowed_paths, &v.full_path()) =>
            {
                Err(ApiError::PermissionDenied(format!(
                    "vault path {} is not under the allowed prefixes ({})",
                    v.full_path(),
                    self.vault_allowed_paths.join(", ")
                )))
            }
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use netpulse_proto::api;

    fn connection(credential: Option<api::CredentialRef>) -> netpulse_model::Connection {
        let c = api::Connection {
            host: "192.0.2.1".into(),
            username: "ops".into(),
            password: if credential.is_some() {
                String::new()
            } else {
                "pw".into()
            },
            device_type: "cisco_ios".into(),
            credential,
            ..Default::default()
        };
        netpulse_model::Connection::try_from(&c).unwrap()
    }

    fn vault(path: &str) -> Option<api::CredentialRef> {
        Some(api::CredentialRef {
            source: Some(api::credential_ref::Source::Vault(api::VaultSecret {
                path: path.into(),
                ..Default::default()
            })),
        })
    }

    #[test]
    fn inline_secrets_and_vault_paths_are_checked() {
        let open = CredentialPolicy::default();
        assert_eq!(open.check(&connection(None)), Ok(()));
        assert_eq!(
            open.check(&connection(vault("any/where"))),
            Ok(()),
            "left to the agents"
        );
        let strict = CredentialPolicy {
            refuse_inline_secrets: true,
            vault_allowed_paths: vec!["secret/net".into()],
        };
        let Err(ApiError::InvalidArgument(m)) = strict.check(&connection(None)) else {
            panic!()
        };
        assert!(m.contains("--refuse-inline-secrets"), "{m}");
        assert_eq!(strict.check(&connection(vault("net/core-1"))), Ok(()));
        let Err(ApiError::PermissionDenied(m)) = strict.check(&connection(vault("lab/x"))) else {
            panic!()
        };
        assert_eq!(
            m,
            "vault path secret/lab/x is not under the allowed prefixes (secret/net)"
        );
    }
}
