//! Telemetry shared by the manager and the node agent: logs and OTLP traces (`trace`), and the
//! Prometheus metrics endpoint.
//!
//! Each binary keeps its metrics in a [`prometheus_client`] registry and hands this crate a
//! render function, called per scrape, so gauges read from live state (queues, workers) are
//! current without a background task.

pub mod trace;

use std::sync::Arc;

use axum::Router;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::routing::get;
pub use prometheus_client;
use prometheus_client::metrics::histogram::Histogram;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// The OpenMetrics text format, which Prometheus scrapes natively.
pub const CONTENT_TYPE_OPENMETRICS: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

pub type Render = Arc<dyn Fn() -> String + Send + Sync>;

/// Serves `GET /metrics` (the render function's text) on `listener` until `shutdown`.
pub async fn serve_metrics(
    listener: TcpListener,
    render: Render,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let app = Router::new().route(
        "/metrics",
        get(move || {
            let render = render.clone();
            async move { ([(CONTENT_TYPE, CONTENT_TYPE_OPENMETRICS)], render()).into_response() }
        }),
    );
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
}

/// Encodes a registry in the text format.
pub fn encode(registry: &prometheus_client::registry::Registry) -> String {
    let mut out = String::new();
    // Writing to a String cannot fail.
    let _ = prometheus_client::encoding::text::encode(&mut out, registry);
    out
}

/// A latency histogram in seconds, from 100 µs to ~100 s (factor 2 per bucket).
pub fn seconds_histogram() -> Histogram {
    Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
        0.0001, 2.0, 21,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::metrics::counter::Counter;
    use prometheus_client::registry::Registry;

    #[tokio::test]
    async fn scrapes_return_the_current_registry_text() {
        let mut registry = Registry::default();
        let jobs = Counter::<u64>::default();
        registry.register("demo_jobs", "Jobs seen", jobs.clone());
        let registry = Arc::new(registry);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = CancellationToken::new();
        let r = registry.clone();
        let server = tokio::spawn(serve_metrics(
            listener,
            Arc::new(move || encode(&r)),
            stop.clone(),
        ));
        jobs.inc_by(3);
        let body = scrape(&addr.to_string(), "/metrics").await;
        assert!(body.contains("demo_jobs_total 3"), "{body}");
        assert!(
            scrape(&addr.to_string(), "/nope")
                .await
                .starts_with("HTTP/1.1 404")
        );
        stop.cancel();
        server.await.unwrap().unwrap();
    }

    async fn scrape(addr: &str, path: &str) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(
            format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        out
    }
}
