//! Credentials by reference: a job names where its device login's secrets are (a profile on
//! the agents, or a Vault/OpenBao KV v2 secret), and the node agent resolves the name next to
//! the worker, so the secrets never pass through the manager or etcd.

use netpulse_proto::api;

use crate::error::{ModelError, invalid};
use crate::secret::Secret;

const MAX_PROFILE: usize = 128;
const MAX_PATH: usize = 512;
const MAX_FIELD: usize = 128;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CredentialRef {
    /// A file of the agents' profile directory.
    Profile(String),
    Vault(VaultSecret),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VaultSecret {
    pub mount: String,
    pub path: String,
    /// 0: the latest.
    pub version: u32,
    pub fields: Fields,
}

/// Which key of a secret (or profile) holds each credential.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fields {
    pub username: String,
    pub password: String,
    pub secret: String,
    pub private_key: String,
    pub private_key_passphrase: String,
}

impl Default for Fields {
    fn default() -> Self {
        Fields {
            username: "username".into(),
            password: "password".into(),
            secret: "secret".into(),
            private_key: "private_key".into(),
            private_key_passphrase: "private_key_passphrase".into(),
        }
    }
}

impl VaultSecret {
    /// `<mount>/<path>`, the form allow-lists name.
    pub fn full_path(&self) -> String {
        format!("{}/{}", self.mount, self.path)
    }
}

/// Whether `path` is one of `prefixes` or below one (whole segments: `secret/net` allows
/// `secret/net/core-1`, not `secret/network`).
pub fn allowed(prefixes: &[String], path: &str) -> bool {
    prefixes.iter().any(|p| {
        let p = p.trim_matches('/');
        !p.is_empty()
            && (path == p
                || path
                    .strip_prefix(p)
                    .is_some_and(|rest| rest.starts_with('/')))
    })
}

/// A vault path or mount: segments of printable characters, no `.`/`..` segment, no empty one.
fn path(name: &str, v: &str, max: usize) -> Result<String, ModelError> {
    let ok = !v.is_empty()
        && v.len() <= max
        && v.chars().all(|c| c.is_ascii_graphic())
        && v.split('/').all(|s| !s.is_empty() && s != "." && s != "..");
    if !ok {
        return Err(invalid(format!(
            "{name} must be 1..={max} bytes of printable characters in '/'-separated segments, none empty, '.' or '..', got {v:?}"
        )));
    }
    Ok(v.to_string())
}

fn field(name: &str, v: &str, default: &str) -> Result<String, ModelError> {
    if v.is_empty() {
        return Ok(default.to_string());
    }
    if v.len() > MAX_FIELD || !v.chars().all(|c| c.is_ascii_graphic()) {
        return Err(invalid(format!(
            "{name} must be 1..={MAX_FIELD} printable characters (empty for \"{default}\"), got {v:?}"
        )));
    }
    Ok(v.to_string())
}

pub fn profile_name(name: &str, v: &str) -> Result<String, ModelError> {
    let ok = !v.is_empty()
        && v.len() <= MAX_PROFILE
        && !v.starts_with('.')
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
    if !ok {
        return Err(invalid(format!(
            "{name} must be 1..={MAX_PROFILE} of [A-Za-z0-9._-], not starting with '.', got {v:?}"
        )));
    }
    Ok(v.to_string())
}

impl TryFrom<&api::CredentialRef> for CredentialRef {
    type Error = ModelError;

    fn try_from(c: &api::CredentialRef) -> Result<Self, ModelError> {
        use api::credential_ref::Source;
        const AT: &str = "connection.credential";
        match &c.source {
            None => Err(invalid(format!("{AT} needs a profile or a vault secret"))),
            Some(Source::Profile(p)) => Ok(CredentialRef::Profile(profile_name(
                "connection.credential.profile",
                p,
            )?)),
            Some(Source::Vault(v)) => {
                let d = Fields::default();
                let f =
                    |n: &str, v: &str, default: &str| field(&format!("{AT}.vault.{n}"), v, default);
                let mount = if v.mount.is_empty() {
                    "secret"
                } else {
                    &v.mount
                };
                Ok(CredentialRef::Vault(VaultSecret {
                    mount: path(&format!("{AT}.vault.mount"), mount, MAX_PROFILE)?,
                    path: path(&format!("{AT}.vault.path"), &v.path, MAX_PATH)?,
                    version: v.version,
                    fields: Fields {
                        username: f("username_field", &v.username_field, &d.username)?,
                        password: f("password_field", &v.password_field, &d.password)?,
                        secret: f("secret_field", &v.secret_field, &d.secret)?,
                        private_key: f("private_key_field", &v.private_key_field, &d.private_key)?,
                        private_key_passphrase: f(
                            "private_key_passphrase_field",
                            &v.private_key_passphrase_field,
                            &d.private_key_passphrase,
                        )?,
                    },
                }))
            }
        }
    }
}

impl From<&CredentialRef> for api::CredentialRef {
    fn from(c: &CredentialRef) -> Self {
        use api::credential_ref::Source;
        let source = match c {
            CredentialRef::Profile(p) => Source::Profile(p.clone()),
            CredentialRef::Vault(v) => Source::Vault(api::VaultSecret {
                mount: v.mount.clone(),
                path: v.path.clone(),
                version: v.version,
                username_field: v.fields.username.clone(),
                password_field: v.fields.password.clone(),
                secret_field: v.fields.secret.clone(),
                private_key_field: v.fields.private_key.clone(),
                private_key_passphrase_field: v.fields.private_key_passphrase.clone(),
            }),
        };
        api::CredentialRef {
            source: Some(source),
        }
    }
}

/// What a reference resolved to. `Debug` shows no secret.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Resolved {
    /// None: the connection's own username.
    pub username: Option<String>,
    pub password: Secret,
    pub secret: Secret,
    pub private_key: Secret,
    pub private_key_passphrase: Secret,
}

impl Resolved {
    /// Picks the credentials out of a secret's keys by `fields`; `lookup` answers a key's
    /// value. `from` names the source in errors.
    pub fn pick(
        fields: &Fields,
        from: &str,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Resolved, String> {
        let r = Resolved {
            username: lookup(&fields.username).filter(|u| !u.is_empty()),
            password: Secret::new(lookup(&fields.password).unwrap_or_default()),
            secret: Secret::new(lookup(&fields.secret).unwrap_or_default()),
            private_key: Secret::new(lookup(&fields.private_key).unwrap_or_default()),
            private_key_passphrase: Secret::new(
                lookup(&fields.private_key_passphrase).unwrap_or_default(),
            ),
        };
        if r.password.is_empty() && r.private_key.is_empty() {
            return Err(format!(
                "{from} has neither a \"{}\" nor a \"{}\" value",
                fields.password, fields.private_key
            ));
        }
        Ok(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use api::credential_ref::Source;

    fn vault(path: &str) -> api::CredentialRef {
        api::CredentialRef {
            source: Some(Source::Vault(api::VaultSecret {
                path: path.into(),
                ..Default::default()
            })),
        }
    }

    #[test]
    fn references_are_checked_and_defaulted() {
        let CredentialRef::Vault(v) = CredentialRef::try_from(&vault("net/core-1")).unwrap() else {
            panic!()
        };
        assert_eq!(v.full_path(), "secret/net/core-1");
        assert_eq!(v.fields, Fields::default());
        let back =
            CredentialRef::try_from(&api::CredentialRef::from(&CredentialRef::Vault(v.clone())));
        assert_eq!(back.unwrap(), CredentialRef::Vault(v), "round trip");
        for bad in ["", "/net", "net/", "net//x", "net/../x", "a b"] {
            let e = CredentialRef::try_from(&vault(bad))
                .unwrap_err()
                .to_string();
            assert!(
                e.contains("connection.credential.vault.path"),
                "{bad:?}: {e}"
            );
        }
        let profile = |p: &str| api::CredentialRef {
            source: Some(Source::Profile(p.into())),
        };
        assert_eq!(
            CredentialRef::try_from(&profile("core_rtr-1.v2")).unwrap(),
            CredentialRef::Profile("core_rtr-1.v2".into())
        );
        for bad in ["", "..", ".hidden", "a/b", "x y"] {
            let e = CredentialRef::try_from(&profile(bad))
                .unwrap_err()
                .to_string();
            assert!(e.contains("[A-Za-z0-9._-]"), "{bad:?}: {e}");
        }
        let e = CredentialRef::try_from(&api::CredentialRef::default()).unwrap_err();
        assert!(e.to_string().contains("needs a profile or a vault secret"));
    }

    #[test]
    fn allow_lists_match_whole_segments() {
        let prefixes = vec!["secret/net/".to_string(), "kv/lab".to_string()];
        assert!(allowed(&prefixes, "secret/net/core-1"));
        assert!(allowed(&prefixes, "kv/lab"));
        assert!(!allowed(&prefixes, "secret/network/x"));
        assert!(!allowed(&prefixes, "secret/other"));
        assert!(
            !allowed(&[], "secret/net/core-1"),
            "an empty list allows nothing"
        );
        assert!(!allowed(&["/".to_string()], "secret/x"));
    }

    #[test]
    fn picking_needs_a_password_or_a_key() {
        let f = Fields {
            password: "pw".into(),
            ..Default::default()
        };
        let r = Resolved::pick(&f, "secret/x", |k| {
            (k == "pw").then(|| "hunter2".to_string())
        });
        let r = r.unwrap();
        assert_eq!(
            (r.username.as_deref(), r.password.expose()),
            (None, "hunter2")
        );
        let e = Resolved::pick(&f, "secret/x", |_| None).unwrap_err();
        assert_eq!(
            e,
            "secret/x has neither a \"pw\" nor a \"private_key\" value"
        );
        assert!(!format!("{r:?}").contains("hunter2"));
    }
}
