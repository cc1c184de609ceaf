//! MCP server processes: spawned, failed to start, ready (initialised).

use std::time::Duration;

use super::{Emit, Metrics};

/// A server process was started.
#[derive(Debug)]
pub struct Spawned<'a> {
    pub server: &'a str,
}

impl Emit for Spawned<'_> {
    fn emit(self, metrics: &Metrics) {
        tracing::trace!(server = self.server, "MCP server spawned");
        metrics.spawned(self.server);
    }
}

/// A server process could not be started (the program is missing, not executable…).
#[derive(Debug)]
pub struct SpawnFailed<'a> {
    pub server: &'a str,
    pub error: &'a std::io::Error,
}

impl Emit for SpawnFailed<'_> {
    fn emit(self, metrics: &Metrics) {
        tracing::warn!(server = self.server, error = %self.error, "MCP server could not be started");
        metrics.spawn_failed(self.server);
    }
}

/// A spawned server finished `initialize`: the spawn latency.
#[derive(Debug)]
pub struct SpawnReady<'a> {
    pub server: &'a str,
    pub elapsed: Duration,
}

impl Emit for SpawnReady<'_> {
    fn emit(self, metrics: &Metrics) {
        tracing::trace!(
            server = self.server,
            elapsed_ms = self.elapsed.as_secs_f64() * 1e3,
            "MCP server ready"
        );
        metrics.observe_spawn(self.server, self.elapsed);
    }
}
