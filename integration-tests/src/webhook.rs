//! A real HTTP receiver for webhook tests (hyper, on a free loopback port): it records every
//! request, can fail a number of first attempts, refuse until told otherwise, or hold its
//! answers until released (a receiver that is slow for as long as a test wants).

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response, StatusCode};
use tokio::sync::watch;
use tokio::time::Instant;

#[derive(Clone, Debug)]
pub struct Received {
    /// Lower-case names.
    pub headers: HashMap<String, String>,
    pub body: Vec<u8>,
    /// What the receiver answered (0: not yet, while held).
    pub status: u16,
    /// When it arrived, or when it was answered.
    pub at: Instant,
}

impl Received {
    pub fn header(&self, name: &str) -> &str {
        self.headers.get(name).map_or("", String::as_str)
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap()
    }

    /// Whether the signature is HMAC-SHA256 of `<timestamp>.<body>` with `secret`, as
    /// docs/webhooks.md tells a receiver to check it.
    pub fn signed_with(&self, secret: &[u8]) -> bool {
        let ts = self.header("x-netpulse-timestamp");
        let Some(hex) = self.header("x-netpulse-signature").strip_prefix("v1=") else {
            return false;
        };
        let Some(given) = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
            .collect::<Option<Vec<u8>>>()
        else {
            return false;
        };
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret);
        let signed = [ts.as_bytes(), b".", &self.body].concat();
        ring::hmac::verify(&key, &signed, &given).is_ok()
    }
}

#[derive(Default)]
struct State {
    received: Vec<Received>,
    fail_first: usize,
    refusing: bool,
}

pub struct Receiver {
    pub url: String,
    state: Arc<Mutex<State>>,
    hold: watch::Sender<bool>,
    _stop: tokio_util::sync::DropGuard,
}

impl Receiver {
    pub async fn start() -> Receiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hooks/netpulse", listener.local_addr().unwrap());
        let state = Arc::new(Mutex::new(State::default()));
        let (hold, held) = watch::channel(false);
        let stop = tokio_util::sync::CancellationToken::new();
        let (s, st) = (state.clone(), stop.clone());
        tokio::spawn(async move {
            loop {
                let (conn, _) = tokio::select! {
                    c = listener.accept() => match c { Ok(c) => c, Err(_) => return },
                    _ = st.cancelled() => return,
                };
                let (s, held) = (s.clone(), held.clone());
                tokio::spawn(async move {
                    let svc =
                        hyper::service::service_fn(move |req| answer(s.clone(), held.clone(), req));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(conn), svc)
                        .await;
                });
            }
        });
        Receiver {
            url,
            state,
            hold,
            _stop: stop.drop_guard(),
        }
    }

    /// Answers 503 to the next `n` requests.
    pub fn fail_first(&self, n: usize) {
        self.state.lock().unwrap().fail_first = n;
    }

    /// Answers 503 to every request while set.
    pub fn refuse(&self, on: bool) {
        self.state.lock().unwrap().refusing = on;
    }

    /// While set, requests are read and recorded but not answered.
    pub fn hold(&self, on: bool) {
        self.hold.send_replace(on);
    }

    pub fn received(&self) -> Vec<Received> {
        self.state.lock().unwrap().received.clone()
    }

    /// Waits (at most `limit`) until `done` holds for what arrived; returns it.
    pub async fn wait_for(
        &self,
        limit: Duration,
        done: impl Fn(&[Received]) -> bool,
    ) -> Vec<Received> {
        let deadline = Instant::now() + limit;
        loop {
            let got = self.received();
            if done(&got) {
                return got;
            }
            assert!(
                Instant::now() < deadline,
                "the receiver did not get what was expected within {limit:?}: {got:#?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

async fn answer(
    state: Arc<Mutex<State>>,
    mut held: watch::Receiver<bool>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let headers = req
        .headers()
        .iter()
        .map(|(k, v)| (k.as_str().to_string(), v.to_str().unwrap_or("").to_string()))
        .collect();
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes().to_vec())
        .unwrap_or_default();
    // Recorded on arrival (status 0: not answered yet), answered once not held.
    let index = {
        let mut s = state.lock().unwrap();
        s.received.push(Received {
            headers,
            body,
            status: 0,
            at: Instant::now(),
        });
        s.received.len() - 1
    };
    let _ = held.wait_for(|h| !*h).await;
    let status = {
        let mut s = state.lock().unwrap();
        let fail = s.refusing || s.fail_first > 0;
        s.fail_first = s.fail_first.saturating_sub(1);
        let status = if fail { 503 } else { 204 };
        s.received[index].status = status;
        s.received[index].at = Instant::now();
        status
    };
    let mut r = Response::new(Full::new(Bytes::new()));
    *r.status_mut() = StatusCode::from_u16(status).unwrap();
    Ok(r)
}
