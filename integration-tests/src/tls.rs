//! Certificates for TLS tests: a CA, a server certificate for 127.0.0.1 and localhost, and a
//! client certificate, as PEM files in a temp dir; plus a second CA nothing trusts.

use std::path::{Path, PathBuf};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};

#[derive(Debug)]
pub struct TestPki {
    _dir: tempfile::TempDir,
    pub ca: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
    /// A client certificate signed by another CA.
    pub stranger_cert: PathBuf,
    pub stranger_key: PathBuf,
}

fn new_ca(name: &str) -> anyhow::Result<(String, Issuer<'static, KeyPair>)> {
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    let cert = params.self_signed(&key)?;
    Ok((cert.pem(), Issuer::new(params, key)))
}

fn leaf(
    dir: &Path,
    name: &str,
    sans: &[&str],
    issuer: &Issuer<'_, KeyPair>,
) -> anyhow::Result<(PathBuf, PathBuf)> {
    let key = KeyPair::generate()?;
    let mut params =
        CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>())?;
    params.distinguished_name.push(DnType::CommonName, name);
    let cert = params.signed_by(&key, issuer)?;
    let (c, k) = (
        dir.join(format!("{name}.crt")),
        dir.join(format!("{name}.key")),
    );
    std::fs::write(&c, cert.pem())?;
    std::fs::write(&k, key.serialize_pem())?;
    Ok((c, k))
}

impl TestPki {
    pub fn new() -> anyhow::Result<TestPki> {
        let dir = tempfile::tempdir()?;
        let (ca_pem, issuer) = new_ca("netpulse test CA")?;
        let ca = dir.path().join("ca.crt");
        std::fs::write(&ca, ca_pem)?;
        let (server_cert, server_key) =
            leaf(dir.path(), "server", &["127.0.0.1", "localhost"], &issuer)?;
        let (client_cert, client_key) = leaf(dir.path(), "client", &["client"], &issuer)?;
        let (_, other) = new_ca("some other CA")?;
        let (stranger_cert, stranger_key) = leaf(dir.path(), "stranger", &["client"], &other)?;
        Ok(TestPki {
            _dir: dir,
            ca,
            server_cert,
            server_key,
            client_cert,
            client_key,
            stranger_cert,
            stranger_key,
        })
    }
}
