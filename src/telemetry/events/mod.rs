//! Telemetry as types: each notable event is a value whose [`Emit::emit`] writes its one
//! log line and updates its metric, so names, labels, levels and redaction live here,
//! once. Call sites build the event and emit it; they never touch [`Metrics`] directly.
//!
//! One file per boundary: `http` (requests completed, refusals at the edge), `cache`
//! (result and tool-list cache lookups, warm pools), `spawn` (MCP server processes),
//! `warm` (warm starts keyed by session), `session` (session lifecycle), `limits` (bounds reached). Store failures are counted at the store boundary.

mod cache;
mod http;
mod limits;
mod session;
mod spawn;
pub mod store;
mod warm;

pub use cache::{CacheLookup, CacheOp};
pub use http::{ConnectionEvent, Refusal, RequestCompleted};
pub use limits::{Limit, LimitHit};
pub use session::{SessionEvent, SessionEvicted};
pub use spawn::{SpawnFailed, SpawnReady, Spawned};
pub use warm::{WarmEvicted, WarmHeld, WarmSpawned, WarmStart};

use super::Metrics;

/// An event that logs and counts itself.
pub trait Emit {
    /// Writes the event's log line (if it has one) and updates its metric.
    fn emit(self, metrics: &Metrics);
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may panic on purpose
mod tests;
