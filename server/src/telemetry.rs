//! Logging: one tracing subscriber, human-readable or JSON. Every request
//! runs in a span carrying `request_id`, `tenant` and `user`, so every line
//! logged while serving it carries them too.

use actix_web::{
    body::MessageBody,
    dev::{ServiceRequest, ServiceResponse},
};
use tracing::Span;
use tracing_actix_web::{DefaultRootSpanBuilder, RootSpanBuilder};
use tracing_subscriber::{fmt::format::FmtSpan, EnvFilter};

use crate::config::{LogConfig, LogFormat};

/// Install the global subscriber (once per process; later calls are no-ops,
/// which lets tests build several apps in one process).
pub fn init(log: &LogConfig) {
    let filter = EnvFilter::try_new(&log.level).unwrap_or_else(|e| {
        eprintln!("log.level '{}' is not a valid filter ({e}); using 'info'", log.level);
        EnvFilter::new("info")
    });
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_span_events(FmtSpan::CLOSE).with_writer(std::io::stderr);
    let _ = match log.format {
        LogFormat::Json => builder.json().with_current_span(true).with_span_list(false).try_init(),
        LogFormat::Pretty => builder.try_init(),
    };
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
