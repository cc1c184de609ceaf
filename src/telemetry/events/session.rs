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

impl Emit for SessionEvent {
    fn emit(self, metrics: &Metrics) {
        // Never the id: it is a bearer secret of a kind.
        tracing::trace!(op = self.as_str(), "session");
        metrics.session(self.as_str());
    }
}
