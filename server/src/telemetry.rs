//! Logging: one tracing subscriber, human-readable or JSON. Every request
//! runs in a span carrying `request_id`, `tenant` and `user`, so every line
//! logged while serving it carries them too. With `log.otlp_endpoint` set,
//! the same spans (requests, executions, their steps) are also exported as
//! OpenTelemetry traces over OTLP/HTTP; without it nothing leaves the node.

use std::{sync::OnceLock, time::Duration};

use actix_web::{
    body::MessageBody,
    dev::{ServiceRequest, ServiceResponse},
};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{SpanExporter, WithExportConfig};
use opentelemetry_sdk::{
    trace::{Sampler, SdkTracerProvider},
    Resource,
};
use tracing::Span;
use tracing_actix_web::{DefaultRootSpanBuilder, RootSpanBuilder};
use tracing_subscriber::{fmt::format::FmtSpan, layer::SubscriberExt, util::SubscriberInitExt, EnvFilter};

use crate::config::{LogConfig, LogFormat};

/// The exporter's provider, kept to flush it when the process ends.
static TRACES: OnceLock<SdkTracerProvider> = OnceLock::new();

/// Install the global subscriber (once per process; later calls are no-ops,
/// which lets tests build several apps in one process).
pub fn init(log: &LogConfig) {
    let filter = EnvFilter::try_new(&log.level).unwrap_or_else(|e| {
        eprintln!("log.level '{}' is not a valid filter ({e}); using 'info'", log.level);
        EnvFilter::new("info")
    });
    let traces = log.otlp_endpoint.as_deref().and_then(|endpoint| match trace_exporter(endpoint, log) {
        Ok(provider) => {
            let tracer = provider.tracer("tessera");
            let _ = TRACES.set(provider);
            Some(tracing_opentelemetry::layer().with_tracer(tracer))
        }
        Err(e) => {
            eprintln!("log.otlp_endpoint: traces are not exported ({e})");
            None
        }
    });
    let lines = tracing_subscriber::fmt::layer().with_span_events(FmtSpan::CLOSE).with_writer(std::io::stderr);
    let subscriber = tracing_subscriber::registry().with(filter).with(traces);
    let _ = match log.format {
        LogFormat::Json => subscriber.with(lines.json().with_current_span(true).with_span_list(false)).try_init(),
        LogFormat::Pretty => subscriber.with(lines).try_init(),
    };
}

/// Spans batched and sent by a thread of the SDK's own, sampled by trace.
fn trace_exporter(endpoint: &str, log: &LogConfig) -> Result<SdkTracerProvider, String> {
    let endpoint = endpoint.to_string();
    // The exporter's blocking HTTP client may not be built on an async
    // runtime's thread, which is where `serve` calls this.
    let exporter = std::thread::spawn(move || SpanExporter::builder().with_http().with_endpoint(endpoint).with_timeout(Duration::from_secs(10)).build())
        .join()
        .map_err(|_| "building the exporter panicked".to_string())?
        .map_err(|e| e.to_string())?;
    let sampler = Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(log.otlp_sample_ratio)));
    let resource = Resource::builder().with_service_name(log.otlp_service_name.clone()).build();
    Ok(SdkTracerProvider::builder().with_batch_exporter(exporter).with_sampler(sampler).with_resource(resource).build())
}

/// Send the spans still buffered (when the process stops).
pub fn flush() {
    if let Some(provider) = TRACES.get() {
        if let Err(e) = provider.shutdown() {
            eprintln!("exporting the last traces failed: {e}");
        }
    }
}

/// The request span: tracing-actix-web's fields plus ours, filled in once the
/// host and the caller are known.
pub struct RequestSpan;

impl RootSpanBuilder for RequestSpan {
    fn on_request_start(request: &ServiceRequest) -> Span {
        tracing_actix_web::root_span!(request, tenant = tracing::field::Empty, user = tracing::field::Empty)
    }

    fn on_request_end<B: MessageBody>(span: Span, outcome: &Result<ServiceResponse<B>, actix_web::Error>) {
        DefaultRootSpanBuilder::on_request_end(span, outcome);
    }
}

/// An error and its sources as one line: tokio-postgres, for one, says only
/// "db error" at the top and keeps PostgreSQL's message in the source.
pub fn with_causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(c) = cause {
        let part = c.to_string();
        if !text.contains(&part) {
            text = format!("{text}: {part}");
        }
        cause = c.source();
    }
    text
}
