//! A Vault/OpenBao client for what the agent needs: log in (token, AppRole or Kubernetes),
//! read a KV version 2 secret, keep what it read for a while.
//!
//! Tokens from a login are kept until three quarters of their TTL; a read refused with 403
//! logs in again once (the token was revoked or expired early). Reads are cached per path and
//! version for `cache_ttl`, so a burst of jobs for one device costs one request. No secret
//! value, token or response body is ever logged or put in an error.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use netpulse_model::Secret;
use netpulse_model::credential::{VaultSecret, allowed};
use tokio::time::Instant;

/// How the agent logs in.
#[derive(Clone, Debug)]
pub enum VaultAuth {
    /// A token read from this file at each use (a mounted Secret can rotate it).
    Token(PathBuf),
    AppRole {
        mount: String,
        role_id: String,
        secret_id_file: PathBuf,
    },
    /// The pod's service-account token (`jwt_file`) exchanged for a Vault token.
    Kubernetes {
        mount: String,
        role: String,
        jwt_file: PathBuf,
    },
}

#[derive(Clone, Debug)]
pub struct VaultConfig {
    /// e.g. `https://vault.example:8200`.
    pub addr: String,
    pub namespace: Option<String>,
    pub auth: VaultAuth,
    /// `<mount>/<path>` prefixes requests may name; empty: none.
    pub allowed_paths: Vec<String>,
    pub cache_ttl: Duration,
    /// Of each request.
    pub timeout: Duration,
    /// A CA (PEM) to trust beside the system's.
    pub ca_file: Option<PathBuf>,
}

/// Why a secret was not had.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum VaultError {
    #[error("vault path {0} is not under --vault-allowed-paths")]
    Denied(String),
    #[error("{0}")]
    Unavailable(String),
}

type Fields = Arc<HashMap<String, String>>;

pub struct Vault {
    cfg: VaultConfig,
    http: reqwest::Client,
    /// A token from a login and when to log in again.
    token: Mutex<Option<(Secret, Option<Instant>)>>,
    cache: Mutex<HashMap<(String, u32), (Instant, Fields)>>,
}

impl std::fmt::Debug for Vault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Vault({})", self.cfg.addr)
    }
}

fn unavailable(what: impl Into<String>) -> VaultError {
    VaultError::Unavailable(what.into())
}

impl Vault {
    pub fn new(cfg: VaultConfig) -> Result<Vault, String> {
        if !(cfg.addr.starts_with("http://") || cfg.addr.starts_with("https://")) {
            return Err(format!(
                "vault-addr must start with http:// or https://, got {:?}",
                cfg.addr
            ));
        }
        let mut http = reqwest::Client::builder()
            .timeout(cfg.timeout)
            .connect_timeout(cfg.timeout);
        if let Some(ca) = &cfg.ca_file {
            let pem = std::fs::read(ca)
                .map_err(|e| format!("reading the vault CA {}: {e}", ca.display()))?;
            let cert = reqwest::Certificate::from_pem(&pem)
                .map_err(|e| format!("the vault CA {}: {e}", ca.display()))?;
            http = http.add_root_certificate(cert);
        }
        let http = http.build().map_err(|e| format!("the vault client: {e}"))?;
        Ok(Vault {
            cfg,
            http,
            token: Mutex::new(None),
            cache: Mutex::new(HashMap::new()),
        })
    }

    pub fn allows(&self, s: &VaultSecret) -> bool {
        allowed(&self.cfg.allowed_paths, &s.full_path())
    }

    /// The secret's keys and string values (from the cache while fresh).
    pub async fn read(&self, s: &VaultSecret) -> Result<Fields, VaultError> {
        let full = s.full_path();
        if !self.allows(s) {
            return Err(VaultError::Denied(full));
        }
        let key = (full.clone(), s.version);
        if let Some((at, fields)) = self.cache.lock().expect("lock").get(&key)
            && at.elapsed() < self.cfg.cache_ttl
        {
            return Ok(fields.clone());
        }
        let mut relogged = false;
        let fields = loop {
            let token = self.token().await?;
            match self.fetch(s, &token).await {
                Err(Fetch::Forbidden) if !relogged && self.logs_in() => {
                    *self.token.lock().expect("lock") = None;
                    relogged = true;
                }
                Err(Fetch::Forbidden) => {
                    return Err(unavailable(format!(
                        "vault refused to read {full} (403: the token's policy does not allow it)"
                    )));
                }
                Err(Fetch::Failed(e)) => return Err(e),
                Ok(f) => break Arc::new(f),
            }
        };
        if !self.cfg.cache_ttl.is_zero() {
            self.cache
                .lock()
                .expect("lock")
                .insert(key, (Instant::now(), fields.clone()));
        }
        Ok(fields)
    }

    fn logs_in(&self) -> bool {
        !matches!(self.cfg.auth, VaultAuth::Token(_))
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let url = format!("{}/v1/{path}", self.cfg.addr.trim_end_matches('/'));
        let mut r = self.http.request(method, url);
        if let Some(ns) = &self.cfg.namespace {
            r = r.header("X-Vault-Namespace", ns);
        }
        r
    }

    async fn fetch(
        &self,
        s: &VaultSecret,
        token: &Secret,
    ) -> Result<HashMap<String, String>, Fetch> {
        let full = s.full_path();
        let mut path = format!("{}/data/{}", s.mount, s.path);
        if s.version > 0 {
            path.push_str(&format!("?version={}", s.version));
        }
        let resp = self
            .request(reqwest::Method::GET, &path)
            .header("X-Vault-Token", token.expose())
            .send()
            .await
            .map_err(|e| Fetch::Failed(self.unreachable(&e)))?;
        let status = resp.status();
        if status == reqwest::StatusCode::FORBIDDEN {
            return Err(Fetch::Forbidden);
        }
        let version = if s.version > 0 {
            format!(" version {}", s.version)
        } else {
            String::new()
        };
        if status == reqwest::StatusCode::NOT_FOUND {
            return Err(Fetch::Failed(unavailable(format!(
                "vault has no secret at {full}{version} (KV v2 mount {})",
                s.mount
            ))));
        }
        if !status.is_success() {
            return Err(Fetch::Failed(unavailable(format!(
                "vault answered {status} reading {full}"
            ))));
        }
        let body: serde_json::Value = resp.json().await.map_err(|e| {
            Fetch::Failed(unavailable(format!(
                "vault's answer for {full} is not JSON: {e}"
            )))
        })?;
        let data = body.pointer("/data/data");
        // A deleted or destroyed version reads as 200 with null data.
        let Some(data) = data.and_then(|d| d.as_object()) else {
            return Err(Fetch::Failed(unavailable(format!(
                "vault's secret at {full}{version} is deleted or not a KV v2 secret"
            ))));
        };
        Ok(data
            .iter()
            .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_string())))
            .collect())
    }

    fn unreachable(&self, e: &reqwest::Error) -> VaultError {
        let how = if e.is_timeout() {
            format!("did not answer within {:?}", self.cfg.timeout)
        } else {
            "is not reachable".to_string()
        };
        unavailable(format!("vault at {} {how}", self.cfg.addr))
    }

    /// A token: the token file's, or a login's while it is fresh.
    async fn token(&self) -> Result<Secret, VaultError> {
        let (mount, body) = match &self.cfg.auth {
            VaultAuth::Token(file) => return read_secret(file, "vault token file"),
            VaultAuth::AppRole {
                mount,
                role_id,
                secret_id_file,
            } => {
                if let Some(t) = self.fresh_token() {
                    return Ok(t);
                }
                let secret_id = read_secret(secret_id_file, "AppRole secret-id file")?;
                let body = serde_json::json!({"role_id": role_id, "secret_id": secret_id.expose()});
                (mount, body)
            }
            VaultAuth::Kubernetes {
                mount,
                role,
                jwt_file,
            } => {
                if let Some(t) = self.fresh_token() {
                    return Ok(t);
                }
                let jwt = read_secret(jwt_file, "service-account token file")?;
                (
                    mount,
                    serde_json::json!({"role": role, "jwt": jwt.expose()}),
                )
            }
        };
        let resp = self
            .request(reqwest::Method::POST, &format!("auth/{mount}/login"))
            .json(&body)
            .send()
            .await
            .map_err(|e| self.unreachable(&e))?;
        let status = resp.status();
        if !status.is_success() {
            return Err(unavailable(format!(
                "vault refused the login at auth/{mount} ({status})"
            )));
        }
        let body: serde_json::Value = resp
            .json()
            .await
            .map_err(|e| unavailable(format!("vault's login answer is not JSON: {e}")))?;
        let token = body
            .pointer("/auth/client_token")
            .and_then(|t| t.as_str())
            .filter(|t| !t.is_empty())
            .ok_or_else(|| unavailable(format!("vault's login at auth/{mount} gave no token")))?;
        let ttl = body
            .pointer("/auth/lease_duration")
            .and_then(|t| t.as_u64())
            .unwrap_or(0);
        // TTL 0: a token that does not expire.
        let renew_at = (ttl > 0).then(|| Instant::now() + Duration::from_secs(ttl) * 3 / 4);
        let token = Secret::new(token.to_string());
        *self.token.lock().expect("lock") = Some((token.clone(), renew_at));
        Ok(token)
    }

    fn fresh_token(&self) -> Option<Secret> {
        let held = self.token.lock().expect("lock");
        held.as_ref()
            .filter(|(_, at)| at.is_none_or(|at| Instant::now() < at))
            .map(|(t, _)| t.clone())
    }
}

enum Fetch {
    Forbidden,
    Failed(VaultError),
}

fn read_secret(path: &std::path::Path, what: &str) -> Result<Secret, VaultError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| unavailable(format!("cannot read the {what} {}: {e}", path.display())))?;
    let t = text.trim();
    if t.is_empty() {
        return Err(unavailable(format!(
            "the {what} {} is empty",
            path.display()
        )));
    }
    Ok(Secret::new(t.to_string()))
}
