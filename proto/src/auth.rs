//! Bearer-token authentication as a tower layer in front of every gRPC service except the
//! health service, which probes reach without a token. No tokens configured: auth is off.
//! The manager's API checks clients' tokens with it, the agent checks managers' tokens.

use std::collections::HashSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tonic::body::Body;

/// The tokens in a file: one per line, blank lines and `#` comments skipped (`what` names the
/// file in the error). A token is printable ASCII without spaces, as an HTTP header carries it.
pub fn read_tokens(path: &std::path::Path, what: &str) -> Result<Vec<String>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read the {what} file {}: {e}", path.display()))?;
    let mut tokens = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if !line.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(format!(
                "the {what} file {}, line {}: a token is printable ASCII without spaces",
                path.display(),
                n + 1
            ));
        }
        tokens.push(line.to_string());
    }
    Ok(tokens)
}

/// Paths reachable without a token.
const OPEN_PREFIX: &str = "/grpc.health.v1.Health/";

#[derive(Clone, Default)]
pub struct AuthLayer {
    tokens: Arc<HashSet<String>>,
}

impl std::fmt::Debug for AuthLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the tokens themselves.
        write!(f, "AuthLayer({} tokens)", self.tokens.len())
    }
}

impl AuthLayer {
    pub fn new(tokens: impl IntoIterator<Item = String>) -> AuthLayer {
        AuthLayer {
            tokens: Arc::new(tokens.into_iter().filter(|t| !t.is_empty()).collect()),
        }
    }

    pub fn enabled(&self) -> bool {
        !self.tokens.is_empty()
    }

    /// Whether the `authorization` header carries one of the tokens; every token is compared
    /// in full so the time taken does not tell how much of a guess matched.
    fn allows(&self, header: Option<&http::HeaderValue>) -> bool {
        let Some(given) = header.and_then(|h| h.to_str().ok()).and_then(|h| {
            h.strip_prefix("Bearer ")
                .or_else(|| h.strip_prefix("bearer "))
        }) else {
            return false;
        };
        let mut ok = false;
        for t in self.tokens.iter() {
            ok |= constant_time_eq(t.as_bytes(), given.trim().as_bytes());
        }
        ok
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl<S> tower::Layer<S> for AuthLayer {
    type Service = Auth<S>;
    fn layer(&self, inner: S) -> Auth<S> {
        Auth {
            inner,
            layer: self.clone(),
        }
    }
}

#[derive(Clone)]
pub struct Auth<S> {
    inner: S,
    layer: AuthLayer,
}

type BoxFuture<T, E> = Pin<Box<dyn Future<Output = Result<T, E>> + Send>>;

impl<S, B> tower::Service<http::Request<B>> for Auth<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<Body>>,
    S::Future: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let open = !self.layer.enabled() || req.uri().path().starts_with(OPEN_PREFIX);
        if open
            || self
                .layer
                .allows(req.headers().get(http::header::AUTHORIZATION))
        {
            return Box::pin(self.inner.call(req));
        }
        let status = tonic::Status::unauthenticated(
            "a valid bearer token is required (metadata \"authorization: Bearer <token>\")",
        );
        Box::pin(async move { Ok(status.into_http()) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_configured_token_passes() {
        let l = AuthLayer::new(["s3cret".to_string(), String::new()]);
        let h = |s: &str| http::HeaderValue::from_str(s).unwrap();
        assert!(l.allows(Some(&h("Bearer s3cret"))));
        assert!(!l.allows(Some(&h("Bearer s3cre"))));
        assert!(!l.allows(Some(&h("Bearer "))));
        assert!(!l.allows(Some(&h("s3cret"))));
        assert!(!l.allows(None));
        assert!(!AuthLayer::new([String::new()]).enabled());
        assert_eq!(format!("{l:?}"), "AuthLayer(1 tokens)");
    }
}
