//! Session lifecycle.

use super::{Emit, Metrics};

/// A session created, ended, or asked for and not found (the `op` label of
/// `switchboard_sessions_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionEvent {
    Created,
    Deleted,
    NotFound,
}

impl SessionEvent {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Created => "created",
            Self::Deleted => "deleted",
            Self::NotFound => "not_found",
        }
    }
}

/// Sessions ended to make room (the `reason` label of `switchboard_session_evictions_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionEvicted {
    /// The least recently used session of a principal at `limits.sessions_per_principal`.
    PrincipalQuota(u64),
    /// The least recently used sessions of the embedded store at `limits.embedded_max_sessions`.
    Lru(u64),
}

impl Emit for SessionEvicted {
    fn emit(self, metrics: &Metrics) {
        let (reason, count) = match self {
            Self::PrincipalQuota(n) => ("principal_quota", n),
            Self::Lru(n) => ("lru", n),
        };
        if count > 0 {
            // Never the ids nor the principal's credentials.
            tracing::debug!(reason, count, "sessions evicted");
            metrics.sessions_evicted(reason, count);
        }
    }
}

impl Emit for SessionEvent {
    fn emit(self, metrics: &Metrics) {
        // Never the id: it is a bearer secret of a kind.
        tracing::trace!(op = self.as_str(), "session");
        metrics.session(self.as_str());
    }
}
