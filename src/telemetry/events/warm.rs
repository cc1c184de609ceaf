//! Warm starts keyed by session: a request found its session's warm child or not, a warm
//! child was started ahead, dropped unused, and what the pool holds.

use super::{Emit, Metrics};

/// A request of a session on a server with warm starts.
#[derive(Debug)]
pub struct WarmStart<'a> {
    pub server: &'a str,
    /// A warm child of the session was ready (or starting) and served it.
    pub hit: bool,
}

impl Emit for WarmStart<'_> {
    fn emit(self, metrics: &Metrics) {
        tracing::trace!(server = self.server, hit = self.hit, "warm start lookup");
        metrics.warm_start(self.server, self.hit);
    }
}

/// A session's next child was started ahead of its request.
#[derive(Debug)]
pub struct WarmSpawned<'a> {
    pub server: &'a str,
}

impl Emit for WarmSpawned<'_> {
    fn emit(self, metrics: &Metrics) {
        tracing::trace!(server = self.server, "warm child started");
        metrics.warm_spawned(self.server);
    }
}

/// A warm child dropped unused, and why: `idle`, `count`, `rss`, `capacity` (a request needed
/// its slot), `stale` (credentials or config changed), `forgotten` (session ended), `drain`,
/// `failed` (it did not start).
#[derive(Debug)]
pub struct WarmEvicted {
    pub reason: &'static str,
}

impl Emit for WarmEvicted {
    fn emit(self, metrics: &Metrics) {
        tracing::debug!(reason = self.reason, "warm child dropped unused");
        metrics.warm_evicted(self.reason);
    }
}

/// What the warm pool holds now (children starting or ready; resident memory of the ready ones).
#[derive(Debug)]
pub struct WarmHeld {
    pub children: usize,
    pub rss_bytes: u64,
}

impl Emit for WarmHeld {
    fn emit(self, metrics: &Metrics) {
        metrics.set_warm(self.children, self.rss_bytes);
    }
}
