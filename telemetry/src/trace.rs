//! Logs and traces: the `tracing` subscriber every binary installs, and, when an OTLP endpoint
//! is configured, OpenTelemetry spans exported over OTLP/HTTP (protobuf). With no endpoint
//! nothing is exported and nothing is said about it.
//!
//! A job is one trace: the client's `traceparent` (gRPC metadata) is the parent of the
//! manager's span, whose context travels to the agent in the `Dispatch` and to the worker in
//! the job frame ([`inject`], [`set_parent`]).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, UNIX_EPOCH};

use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{BatchConfigBuilder, BatchSpanProcessor, SdkTracerProvider};
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::Layer;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// How long finished spans may wait before they are sent.
const EXPORT_DELAY: Duration = Duration::from_millis(500);

/// Spans are exported (an endpoint was configured).
static EXPORTING: AtomicBool = AtomicBool::new(false);

pub fn exporting() -> bool {
    EXPORTING.load(Ordering::Relaxed)
}

pub struct LogConfig<'a> {
    pub service: &'static str,
    /// `json` or `pretty`.
    pub json: bool,
    pub filter: &'a str,
    /// OTLP/HTTP endpoint, e.g. `http://otel-collector:4318` (`/v1/traces` is appended).
    pub otlp_endpoint: Option<&'a str>,
}

/// Flushes and stops the span exporter when dropped (at the end of `main`).
pub struct TelemetryGuard {
    provider: Option<SdkTracerProvider>,
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        if let Some(p) = self.provider.take() {
            let _ = p.shutdown();
        }
    }
}

/// Installs the global subscriber: logs on stderr, and spans over OTLP when configured.
pub fn init(cfg: LogConfig<'_>) -> Result<TelemetryGuard, String> {
    let filter = tracing_subscriber::EnvFilter::try_new(cfg.filter)
        .map_err(|e| format!("log filter {:?}: {e}", cfg.filter))?;
    let provider = match cfg.otlp_endpoint {
        Some(endpoint) => Some(provider(cfg.service, endpoint)?),
        None => None,
    };
    type Base = tracing_subscriber::layer::Layered<
        tracing_subscriber::EnvFilter,
        tracing_subscriber::Registry,
    >;
    let mut layers: Vec<Box<dyn Layer<Base> + Send + Sync>> = Vec::new();
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    if cfg.json {
        layers.push(fmt.json().flatten_event(true).boxed());
    } else {
        layers.push(fmt.boxed());
    }
    if let Some(p) = &provider {
        layers.push(
            tracing_opentelemetry::layer()
                .with_tracer(p.tracer(cfg.service))
                .boxed(),
        );
    }
    tracing_subscriber::registry()
        .with(filter)
        .with(layers)
        .try_init()
        .map_err(|e| format!("installing the log subscriber: {e}"))?;
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    if let Some(p) = &provider {
        opentelemetry::global::set_tracer_provider(p.clone());
        EXPORTING.store(true, Ordering::Relaxed);
    }
    Ok(TelemetryGuard { provider })
}

fn provider(service: &'static str, endpoint: &str) -> Result<SdkTracerProvider, String> {
    let url = format!("{}/v1/traces", endpoint.trim_end_matches('/'));
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_endpoint(url.clone())
        .with_timeout(Duration::from_secs(5))
        .build()
        .map_err(|e| format!("OTLP exporter for {url}: {e}"))?;
    let batch = BatchSpanProcessor::builder(exporter)
        .with_batch_config(
            BatchConfigBuilder::default()
                .with_scheduled_delay(EXPORT_DELAY)
                .build(),
        )
        .build();
    Ok(SdkTracerProvider::builder()
        .with_span_processor(batch)
        .with_resource(
            opentelemetry_sdk::Resource::builder()
                .with_service_name(service)
                .build(),
        )
        .build())
}

/// The trace context of `span`, as W3C `traceparent` (and `tracestate`) entries.
pub fn inject(span: &tracing::Span) -> HashMap<String, String> {
    let mut out = HashMap::new();
    TraceContextPropagator::new().inject_context(&span.context(), &mut MapInjector(&mut out));
    out
}

/// Makes the trace context in `carrier` (if any) the parent of `span`.
pub fn set_parent(span: &tracing::Span, carrier: &HashMap<String, String>) {
    if carrier.is_empty() {
        return;
    }
    let cx = TraceContextPropagator::new().extract(&MapExtractor(carrier));
    let _ = span.set_parent(cx);
}

/// Makes the `traceparent` in gRPC metadata (if any) the parent of `span`.
pub fn set_parent_from_metadata(span: &tracing::Span, metadata: &tonic::metadata::MetadataMap) {
    let carrier: HashMap<String, String> = ["traceparent", "tracestate"]
        .into_iter()
        .filter_map(|k| Some((k.to_string(), metadata.get(k)?.to_str().ok()?.to_string())))
        .collect();
    set_parent(span, &carrier);
}

struct MapInjector<'a>(&'a mut HashMap<String, String>);

impl Injector for MapInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        self.0.insert(key.to_string(), value);
    }
}

struct MapExtractor<'a>(&'a HashMap<String, String>);

impl Extractor for MapExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }
    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(String::as_str).collect()
    }
}

/// A worker's spans of one job, rebuilt from the times in its result and reported under
/// `parent` (the agent's span of the job): the job, its connect (when it opened a session),
/// and each command in turn. Workers hold no exporter; their agent reports for them.
pub fn record_worker_spans(
    parent: &tracing::Span,
    worker_id: &str,
    started_unix_us: u64,
    connect_us: u64,
    commands: &[(&str, u64)],
) {
    use opentelemetry::KeyValue;
    use opentelemetry::trace::{Span as _, TraceContextExt, Tracer};
    if !exporting() || started_unix_us == 0 {
        return;
    }
    let tracer = opentelemetry::global::tracer("netpulse-worker");
    let at = |us: u64| UNIX_EPOCH + Duration::from_micros(us);
    let job = tracer
        .span_builder("netpulse.worker.job")
        .with_start_time(at(started_unix_us))
        .with_attributes([KeyValue::new("worker_id", worker_id.to_string())])
        .start_with_context(&tracer, &parent.context());
    let cx = parent.context().with_span(job);
    let mut t = started_unix_us;
    if connect_us > 0 {
        tracer
            .span_builder("netpulse.worker.connect")
            .with_start_time(at(t))
            .start_with_context(&tracer, &cx)
            .end_with_timestamp(at(t + connect_us));
        t += connect_us;
    }
    for (command, us) in commands {
        tracer
            .span_builder("netpulse.worker.command")
            .with_start_time(at(t))
            .with_attributes([KeyValue::new("command", command.to_string())])
            .start_with_context(&tracer, &cx)
            .end_with_timestamp(at(t + us));
        t += us;
    }
    cx.span().end_with_timestamp(at(t));
}
