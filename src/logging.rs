//! Logs: `tracing` to stderr, never stdout, with secrets masked. Filter from `--log-level` /
//! `DEPUTY_LOG` (env-filter syntax), default `warn`; text or JSON.
//!
//! With the `otel` feature (on by default) and `OTEL_EXPORTER_OTLP_ENDPOINT` set, spans are also
//! exported over OTLP/HTTP (JSON), named after the OpenTelemetry GenAI conventions
//! (`invoke_agent`, `chat`, `execute_tool`). A `TRACEPARENT` in the environment (W3C trace
//! context) makes deputy's spans children of the caller's trace.

use std::io::Write;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use crate::cli::{GlobalArgs, LogFormat};

/// stderr, one buffered write per log line, with secrets masked.
struct RedactingStderr;

struct LineWriter(Vec<u8>);

impl Write for LineWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for LineWriter {
    fn drop(&mut self) {
        if self.0.is_empty() {
            return;
        }
        let text = String::from_utf8_lossy(&self.0);
        let text = deputy_runtime::redact::redact(&text);
        let _ = std::io::stderr().lock().write_all(text.as_bytes());
    }
}

impl<'a> MakeWriter<'a> for RedactingStderr {
    type Writer = LineWriter;

    fn make_writer(&'a self) -> Self::Writer {
        LineWriter(Vec::with_capacity(256))
    }
}

/// Keeps the exporter alive; dropping it flushes the spans.
pub struct Guard {
    #[cfg(feature = "otel")]
    otel: Option<otel::Otel>,
    #[cfg(feature = "otel")]
    _root: Option<tracing::span::EnteredSpan>,
}

impl Drop for Guard {
    fn drop(&mut self) {
        #[cfg(feature = "otel")]
        {
            self._root.take();
            if let Some(o) = self.otel.take() {
                o.shutdown();
            }
        }
    }
}

pub fn init(global: &GlobalArgs, quiet: bool) -> Guard {
    // `-q`: errors only, unless a filter was asked for.
    let default = if quiet { "error" } else { "warn" };
    let filter = match global.log_level.as_deref() {
        Some(f) => EnvFilter::try_new(f).unwrap_or_else(|e| {
            eprintln!("warning: ignoring log filter `{f}` (--log-level / DEPUTY_LOG): {e}");
            EnvFilter::new(default)
        }),
        None => EnvFilter::new(default),
    };
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let fmt_text = (global.log_format == LogFormat::Text).then(|| {
        tracing_subscriber::fmt::layer()
            .with_writer(RedactingStderr)
            .with_target(false)
            .with_ansi(ansi)
            .without_time()
            .with_filter(filter.clone())
    });
    let fmt_json = (global.log_format == LogFormat::Json).then(|| {
        tracing_subscriber::fmt::layer()
            .json()
            .with_current_span(true)
            .with_span_list(true)
            .with_writer(RedactingStderr)
            .with_filter(filter)
    });
    let registry = tracing_subscriber::registry().with(fmt_text).with(fmt_json);
    #[cfg(feature = "otel")]
    {
        let otel = otel::Otel::from_env();
        let layer = otel.as_ref().map(|o| o.layer());
        // A second init (tests embedding the CLI) is harmless.
        let _ = registry.with(layer).try_init();
        let root = otel.as_ref().map(|o| o.root_span().entered());
        Guard { otel, _root: root }
    }
    #[cfg(not(feature = "otel"))]
    {
        let _ = registry.try_init();
        Guard {}
    }
}

use tracing_subscriber::Layer;

#[cfg(feature = "otel")]
mod otel {
    use std::collections::HashMap;

    use opentelemetry::propagation::TextMapPropagator;
    use opentelemetry::trace::TracerProvider as _;
    use opentelemetry_otlp::WithExportConfig;
    use opentelemetry_sdk::propagation::TraceContextPropagator;
    use opentelemetry_sdk::trace::SdkTracerProvider;
    use tracing_opentelemetry::OpenTelemetrySpanExt;

    /// The OTLP exporter and the runtime its batches are sent from.
    pub struct Otel {
        provider: SdkTracerProvider,
        runtime: tokio::runtime::Runtime,
    }

    impl Otel {
        /// An exporter when `OTEL_EXPORTER_OTLP_ENDPOINT` (or `…_TRACES_ENDPOINT`) is set.
        pub fn from_env() -> Option<Otel> {
            let get = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
            let endpoint = match get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") {
                Some(e) => e,
                None => format!(
                    "{}/v1/traces",
                    get("OTEL_EXPORTER_OTLP_ENDPOINT")?.trim_end_matches('/')
                ),
            };
            deputy_llm::install_crypto_provider();
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .thread_name("deputy-otel")
                .enable_all()
                .build()
                .ok()?;
            let _enter = runtime.enter();
            let exporter = match opentelemetry_otlp::SpanExporter::builder()
                .with_http()
                .with_protocol(opentelemetry_otlp::Protocol::HttpJson)
                .with_endpoint(endpoint.clone())
                .build()
            {
                Ok(e) => e,
                Err(e) => {
                    eprintln!("warning: OpenTelemetry export to {endpoint} is off: {e}");
                    return None;
                }
            };
            let processor = opentelemetry_sdk::trace::span_processor_with_async_runtime::BatchSpanProcessor::builder(
                exporter,
                opentelemetry_sdk::runtime::Tokio,
            )
            .build();
            let provider = SdkTracerProvider::builder()
                .with_span_processor(processor)
                .with_resource(
                    opentelemetry_sdk::Resource::builder()
                        .with_service_name("deputy")
                        .build(),
                )
                .build();
            drop(_enter);
            Some(Otel { provider, runtime })
        }

        pub fn layer<S>(
            &self,
        ) -> tracing_opentelemetry::OpenTelemetryLayer<S, opentelemetry_sdk::trace::Tracer>
        where
            S: tracing::Subscriber + for<'span> tracing_subscriber::registry::LookupSpan<'span>,
        {
            tracing_opentelemetry::layer().with_tracer(self.provider.tracer("deputy"))
        }

        /// The process's root span, a child of the caller's trace when TRACEPARENT is set.
        pub fn root_span(&self) -> tracing::Span {
            let span = tracing::info_span!(
                "deputy",
                otel.name = "deputy",
                process.pid = std::process::id()
            );
            if let Ok(tp) = std::env::var("TRACEPARENT") {
                let mut carrier = HashMap::new();
                carrier.insert("traceparent".to_string(), tp);
                if let Ok(ts) = std::env::var("TRACESTATE") {
                    carrier.insert("tracestate".to_string(), ts);
                }
                let cx = TraceContextPropagator::new().extract(&carrier);
                let _ = span.set_parent(cx);
            }
            span
        }

        /// Flush what is buffered and stop.
        pub fn shutdown(self) {
            let provider = self.provider;
            let _enter = self.runtime.enter();
            let _ = std::thread::spawn(move || provider.shutdown()).join();
            drop(_enter);
            self.runtime
                .shutdown_timeout(std::time::Duration::from_secs(5));
        }
    }
}
