//! TLS for the gRPC links (client API, manager to agent), from PEM files.

use std::path::Path;

use tonic::transport::{Certificate, ClientTlsConfig, Identity, ServerTlsConfig};

fn read(what: &str, path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("reading {what} {}: {e}", path.display()))
}

/// A server identity (certificate chain and key), and the CA its clients' certificates must be
/// signed by when `client_ca` is given (mutual TLS: a client without one is refused).
pub fn server(
    cert: &Path,
    key: &Path,
    client_ca: Option<&Path>,
) -> Result<ServerTlsConfig, String> {
    let mut tls = ServerTlsConfig::new().identity(Identity::from_pem(
        read("the TLS certificate", cert)?,
        read("the TLS key", key)?,
    ));
    if let Some(ca) = client_ca {
        tls = tls.client_ca_root(Certificate::from_pem(read("the client CA", ca)?));
    }
    Ok(tls)
}

/// [`server`] when both a certificate and a key are given (the flags require each other),
/// else plaintext (None).
pub fn server_if(
    cert: Option<&Path>,
    key: Option<&Path>,
    client_ca: Option<&Path>,
) -> Result<Option<ServerTlsConfig>, String> {
    match (cert, key) {
        (Some(cert), Some(key)) => server(cert, key, client_ca).map(Some),
        _ => Ok(None),
    }
}

/// The TLS of an etcd client from its flags: None without a CA; with a certificate and key,
/// etcd's `--client-cert-auth` takes it. The endpoints must then be `https://`.
pub fn etcd(
    ca: Option<&Path>,
    cert: Option<&Path>,
    key: Option<&Path>,
    endpoints: &[String],
) -> Result<Option<ClientTlsConfig>, String> {
    let Some(ca) = ca else {
        return Ok(None);
    };
    if let Some(e) = endpoints.iter().find(|e| !e.starts_with("https://")) {
        return Err(format!(
            "with --etcd-ca-file the etcd endpoints are https://, got {e:?}"
        ));
    }
    client(ca, cert.zip(key)).map(Some)
}

/// Trusts servers signed by `ca` (the system roots are not used) and presents `identity`
/// (certificate, key) to servers that require one.
pub fn client(ca: &Path, identity: Option<(&Path, &Path)>) -> Result<ClientTlsConfig, String> {
    let mut tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(read("the CA", ca)?));
    if let Some((cert, key)) = identity {
        tls = tls.identity(Identity::from_pem(
            read("the client certificate", cert)?,
            read("the client key", key)?,
        ));
    }
    Ok(tls)
}
