//! Telemetry: log set-up, the metrics registry and the typed events that feed it.
//! Metrics live in an explicit [`Metrics`] value in the app state (no globals),
//! rendered at `/metrics`; code elsewhere emits [`events`], never raw metric calls.

pub mod events;
mod metrics;

pub use metrics::Metrics;

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// Installs the global tracing subscriber: stderr only (stdout belongs to MCP in the
/// bridge and the demo server), filtered by `RUST_LOG` (default `info`).
pub fn init_logging(format: LogFormat, default_filter: &str) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}
