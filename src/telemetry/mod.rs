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
/// bridge and the demo server), filtered by `RUST_LOG` (default `info`), coloured only
/// where [`use_ansi`] says so.
pub fn init_logging(format: LogFormat, default_filter: &str) {
    use std::io::IsTerminal;
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let ansi = use_ansi(std::io::stderr().is_terminal(), std::env::var_os("NO_COLOR").as_deref());
    let builder =
        tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

/// Whether text log lines carry ANSI colour codes: only when stderr is a terminal (a log
/// file, such as the one Claude Desktop keeps of the bridge's stderr, or a pipe gets plain
/// text) and `NO_COLOR` is unset or empty (<https://no-color.org>).
pub fn use_ansi(stderr_is_terminal: bool, no_color: Option<&std::ffi::OsStr>) -> bool {
    stderr_is_terminal && no_color.is_none_or(|v| v.is_empty())
}

#[cfg(test)]
mod tests;
