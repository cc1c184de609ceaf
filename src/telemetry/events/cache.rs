//! Cache lookups: results, tool lists, warm pools.

use super::{Emit, Metrics};

/// The outcome of one lookup, the `op` label of `switchboard_cache_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheOp {
    /// A fresh cached result was served; nothing spawned.
    Hit,
    /// Served from the result another worker's identical call just stored.
    HitAfterWait,
    /// Cacheable, not cached: the call runs and its result is stored.
    Miss,
    /// Not cacheable (policy, annotations, or `cache: false`): the call runs.
    Bypass,
    /// Not cached, and the policy needs a tool list nobody has: the call's own child lists
    /// the tools, and its result is stored if the tool qualifies.
    MissPolicyUnknown,
    /// A tool list found in the shared store.
    ToolsHit,
    /// A tool list fetched from the server.
    ToolsMiss,
    /// One of several servers failed to list its tools; the others were served.
    ToolsServerFailed,
    /// A request took a pre-spawned child.
    PrespawnHit,
    /// A server with a warm pool had no child ready: a cold start.
    PrespawnMiss,
}

impl CacheOp {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Hit => "hit",
            Self::HitAfterWait => "hit_after_wait",
            Self::Miss => "miss",
            Self::Bypass => "bypass",
            Self::MissPolicyUnknown => "miss_policy_unknown",
            Self::ToolsHit => "tools_hit",
            Self::ToolsMiss => "tools_miss",
            Self::ToolsServerFailed => "tools_server_failed",
            Self::PrespawnHit => "prespawn_hit",
            Self::PrespawnMiss => "prespawn_miss",
        }
    }
}

/// One cache lookup and its outcome (counted; logged at trace level only: it is the hot path).
#[derive(Debug, Clone, Copy)]
pub struct CacheLookup(pub CacheOp);

impl Emit for CacheLookup {
    fn emit(self, metrics: &Metrics) {
        tracing::trace!(op = self.0.as_str(), "cache lookup");
        metrics.cache(self.0.as_str());
    }
}
