//! Device credentials at rest: a job's active entry in etcd never holds them in clear.
//!
//! The entry keeps the request so that another replica can drive the job if its owner dies.
//! Before it is written, the request's secrets (password, enable secret, private key and its
//! passphrase, the jump host's) are taken out. With `--secrets-key-file` they are written
//! beside it sealed (XChaCha20-Poly1305: 24-byte random nonces, so no counter has to be shared
//! between replicas; the job id as associated data; the key's id, so keys can rotate). Without
//! a key they stay only in the owner's memory, and a replica adopting the job fails it with
//! `credentials_unavailable`: safe by default, and a key buys failover of queued jobs.

use std::collections::HashMap;
use std::path::Path;

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use netpulse_proto::api::ExecuteRequest;
use netpulse_proto::manager::{ActiveJob, Credentials, SealedCredentials};
use prost::Message;

const KEY_BYTES: usize = 32;

/// The managers' shared keys: the first seals, all of them open.
#[derive(Clone)]
pub struct Keys {
    sealing: String,
    ciphers: HashMap<String, XChaCha20Poly1305>,
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Key ids only, never the keys.
        let mut ids: Vec<_> = self.ciphers.keys().collect();
        ids.sort();
        write!(f, "Keys(sealing {}, known {ids:?})", self.sealing)
    }
}

impl Keys {
    /// Reads `<id>:<64 hex digits>` lines (blank lines and `#` comments skipped): the first
    /// key seals new entries, the others only open older ones (rotation: put the new key
    /// first, keep the old one until the jobs it sealed are final).
    pub fn load(path: &Path) -> Result<Keys, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("reading the secrets key file {}: {e}", path.display()))?;
        Keys::parse(&text).map_err(|e| format!("the secrets key file {}: {e}", path.display()))
    }

    fn parse(text: &str) -> Result<Keys, String> {
        let mut sealing = None;
        let mut ciphers = HashMap::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let at = format!("line {}", n + 1);
            let (id, hex) = line
                .split_once(':')
                .ok_or_else(|| format!("{at}: expected <key id>:<64 hex digits>"))?;
            let id = id.trim();
            if id.is_empty() || id.len() > 64 || id.contains(char::is_whitespace) {
                return Err(format!(
                    "{at}: a key id is 1 to 64 characters without spaces"
                ));
            }
            let key = decode_hex(hex.trim())
                .filter(|k| k.len() == KEY_BYTES)
                .ok_or_else(|| {
                    format!("{at}: the key must be {KEY_BYTES} bytes as 64 hex digits (openssl rand -hex 32)")
                })?;
            let cipher = XChaCha20Poly1305::new_from_slice(&key)
                .map_err(|_| format!("{at}: not a {KEY_BYTES}-byte key"))?;
            if ciphers.insert(id.to_string(), cipher).is_some() {
                return Err(format!("{at}: key id {id} is given twice"));
            }
            sealing.get_or_insert_with(|| id.to_string());
        }
        let sealing = sealing.ok_or("it holds no key")?;
        Ok(Keys { sealing, ciphers })
    }
}

fn decode_hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// Why an active entry's credentials cannot be put back.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Unsealed {
    #[error(
        "the job's credentials were held only in the memory of manager {0}, which is gone; give every manager the same --secrets-key-file so that replicas can take over each other's jobs"
    )]
    InMemoryOnly(String),
    #[error(
        "the job's credentials are sealed with key {0}, which this manager's --secrets-key-file does not hold"
    )]
    UnknownKey(String),
    #[error("the job's sealed credentials do not open with key {0} (altered, or another job's)")]
    Corrupt(String),
}

/// Takes secrets out of requests before they are written, and puts them back on adoption.
#[derive(Clone, Debug, Default)]
pub struct Sealer {
    keys: Option<Keys>,
}

impl Sealer {
    pub fn new(keys: Option<Keys>) -> Sealer {
        Sealer { keys }
    }

    /// The active entry of job `id`: the request without its secrets, and the secrets sealed
    /// (or marked as held in memory when there is no key).
    pub fn entry(
        &self,
        id: &str,
        wire: &ExecuteRequest,
        manager_id: &str,
        node: &str,
    ) -> ActiveJob {
        let mut request = wire.clone();
        let creds = take(&mut request);
        let mut entry = ActiveJob {
            request: Some(request),
            manager_id: manager_id.to_string(),
            node_id: node.to_string(),
            credentials: None,
            credentials_in_memory: false,
        };
        if creds == Credentials::default() {
            return entry;
        }
        match &self.keys {
            Some(keys) => {
                let nonce: [u8; 24] = rand::random();
                let cipher = &keys.ciphers[&keys.sealing];
                let msg = creds.encode_to_vec();
                // Encryption with a valid key and nonce cannot fail; the plaintext is dropped.
                let ciphertext = cipher
                    .encrypt(
                        XNonce::from_slice(&nonce),
                        Payload {
                            msg: &msg,
                            aad: id.as_bytes(),
                        },
                    )
                    .unwrap_or_default();
                entry.credentials = Some(SealedCredentials {
                    key_id: keys.sealing.clone(),
                    nonce: nonce.to_vec(),
                    ciphertext,
                });
            }
            None => entry.credentials_in_memory = true,
        }
        entry
    }

    /// The entry's request with its secrets back in it.
    pub fn request(&self, id: &str, entry: &ActiveJob) -> Result<ExecuteRequest, Unsealed> {
        let mut request = entry.request.clone().unwrap_or_default();
        if entry.credentials_in_memory {
            return Err(Unsealed::InMemoryOnly(entry.manager_id.clone()));
        }
        let Some(sealed) = &entry.credentials else {
            return Ok(request);
        };
        let cipher = self
            .keys
            .as_ref()
            .and_then(|k| k.ciphers.get(&sealed.key_id))
            .ok_or_else(|| Unsealed::UnknownKey(sealed.key_id.clone()))?;
        let corrupt = || Unsealed::Corrupt(sealed.key_id.clone());
        if sealed.nonce.len() != 24 {
            return Err(corrupt());
        }
        let plain = cipher
            .decrypt(
                XNonce::from_slice(&sealed.nonce),
                Payload {
                    msg: &sealed.ciphertext,
                    aad: id.as_bytes(),
                },
            )
            .map_err(|_| corrupt())?;
        let creds = Credentials::decode(plain.as_slice()).map_err(|_| corrupt())?;
        put(&mut request, creds);
        Ok(request)
    }
}

/// Moves every secret out of the request.
fn take(r: &mut ExecuteRequest) -> Credentials {
    let mut c = Credentials::default();
    if let Some(conn) = r.connection.as_mut() {
        c.password = std::mem::take(&mut conn.password);
        c.secret = std::mem::take(&mut conn.secret);
        c.private_key = std::mem::take(&mut conn.private_key);
        c.private_key_passphrase = std::mem::take(&mut conn.private_key_passphrase);
        if let Some(j) = conn.jump_host.as_mut() {
            c.jump_password = std::mem::take(&mut j.password);
            c.jump_private_key = std::mem::take(&mut j.private_key);
            c.jump_private_key_passphrase = std::mem::take(&mut j.private_key_passphrase);
        }
    }
    c
}

fn put(r: &mut ExecuteRequest, c: Credentials) {
    let conn = r.connection.get_or_insert_with(Default::default);
    conn.password = c.password;
    conn.secret = c.secret;
    conn.private_key = c.private_key;
    conn.private_key_passphrase = c.private_key_passphrase;
    if let Some(j) = conn.jump_host.as_mut() {
        j.password = c.jump_password;
        j.private_key = c.jump_private_key;
        j.private_key_passphrase = c.jump_private_key_passphrase;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use netpulse_proto::api::{Connection, JumpHost};

    const K1: &str = "0101010101010101010101010101010101010101010101010101010101010101";
    const K2: &str = "0202020202020202020202020202020202020202020202020202020202020202";

    fn request() -> ExecuteRequest {
        ExecuteRequest {
            connection: Some(Connection {
                host: "10.0.0.1".into(),
                username: "ops".into(),
                password: "pw-Zq81".into(),
                secret: "en-Zq81".into(),
                private_key: "key-Zq81".into(),
                jump_host: Some(JumpHost {
                    host: "bastion".into(),
                    password: "jump-Zq81".into(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            commands: vec!["show clock".into()],
            ..Default::default()
        }
    }

    fn sealer(text: &str) -> Sealer {
        Sealer::new(Some(Keys::parse(text).unwrap()))
    }

    #[test]
    fn sealed_entries_hold_no_secret_and_open_to_the_same_request() {
        let s = sealer(&format!("# current\nk2:{K2}\nk1:{K1}\n"));
        let e = s.entry("job-1", &request(), "m1", "n1");
        let bytes = e.encode_to_vec();
        for secret in ["pw-Zq81", "en-Zq81", "key-Zq81", "jump-Zq81"] {
            let found = bytes.windows(secret.len()).any(|w| w == secret.as_bytes());
            assert!(!found, "{secret} is in the entry");
        }
        assert_eq!(
            e.credentials.as_ref().unwrap().key_id,
            "k2",
            "the first key seals"
        );
        assert_eq!(e.request.as_ref().unwrap().commands, ["show clock"]);
        assert_eq!(s.request("job-1", &e).unwrap(), request());
        // Rotation: a replica whose file lists k2 second still opens it.
        assert_eq!(
            sealer(&format!("k1:{K1}\nk2:{K2}"))
                .request("job-1", &e)
                .unwrap(),
            request()
        );
    }

    #[test]
    fn what_does_not_open_says_why() {
        let s = sealer(&format!("k1:{K1}"));
        let e = s.entry("job-1", &request(), "m1", "");
        assert_eq!(
            s.request("job-2", &e),
            Err(Unsealed::Corrupt("k1".into())),
            "another job's"
        );
        let mut altered = e.clone();
        altered.credentials.as_mut().unwrap().ciphertext[0] ^= 1;
        assert_eq!(
            s.request("job-1", &altered),
            Err(Unsealed::Corrupt("k1".into()))
        );
        let other = sealer(&format!("k2:{K2}"));
        assert_eq!(
            other.request("job-1", &e),
            Err(Unsealed::UnknownKey("k1".into()))
        );
        assert_eq!(
            Sealer::default().request("job-1", &e),
            Err(Unsealed::UnknownKey("k1".into()))
        );
    }

    #[test]
    fn without_a_key_secrets_stay_in_memory() {
        let e = Sealer::default().entry("job-1", &request(), "m1", "");
        assert!(e.credentials_in_memory && e.credentials.is_none());
        assert_eq!(
            e.request
                .as_ref()
                .unwrap()
                .connection
                .as_ref()
                .unwrap()
                .password,
            ""
        );
        let err = Sealer::default().request("job-1", &e).unwrap_err();
        assert_eq!(err, Unsealed::InMemoryOnly("m1".into()));
        assert!(err.to_string().contains("--secrets-key-file"), "{err}");
        // A request without secrets (a key-only login still has one) needs nothing.
        let mut bare = request();
        let c = bare.connection.as_mut().unwrap();
        (c.password, c.secret, c.private_key) = Default::default();
        c.jump_host = None;
        let e = Sealer::default().entry("job-1", &bare, "m1", "");
        assert!(!e.credentials_in_memory);
        assert_eq!(Sealer::default().request("job-1", &e).unwrap(), bare);
    }

    #[test]
    fn key_files_are_checked() {
        for (text, says) in [
            ("", "holds no key"),
            ("# only a comment\n", "holds no key"),
            ("k1 0101", "expected <key id>:<64 hex digits>"),
            ("k1:0101", "must be 32 bytes"),
            (&format!("k1:{}", &K1[..63]), "must be 32 bytes"),
            (&format!("k1:{}zz", &K1[..62]), "must be 32 bytes"),
            (&format!(":{K1}"), "key id is 1 to 64"),
            (&format!("k1:{K1}\nk1:{K2}"), "given twice"),
        ] {
            let e = Keys::parse(text).unwrap_err();
            assert!(e.contains(says), "{text:?}: {e}");
        }
        let keys = Keys::parse(&format!("k1:{K1}")).unwrap();
        assert!(!format!("{keys:?}").contains(K1), "Debug shows no key");
    }
}
